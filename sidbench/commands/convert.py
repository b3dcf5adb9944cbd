"""`sidbench convert`: turn a released network file into the native safetensors + JSON folder.

EDM / SiD / SiDA pickles need `--trust-pickle` (unpickling can run code; the
reader is restricted and never runs the embedded source, but the flag states
that the file is trusted). Plain torch state dicts (DMD2) need the architecture:
`--config network.json` or `--preset NAME`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

_STATE_DICT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path, help="EDM-format .pkl, or a torch state dict (.pt/.pth/.bin)")
    parser.add_argument("-o", "--out", type=Path, required=True,
                        help="output folder (network.json + weights)")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="assert the pickle is trusted (e.g. downloaded from NVIDIA's URL); "
                        "required for .pkl")
    parser.add_argument("--key", default="ema", help="key of the network in a snapshot pickle (default: ema)")
    parser.add_argument("--config", type=Path, default=None,
                        help="network.json-style config {class_name, init_kwargs} for a plain state dict")
    parser.add_argument("--preset", default=None,
                        help="named architecture (sidbench.nets.presets): required for a state dict; "
                        "for a pickle, checks that it is that architecture")


def run(args: argparse.Namespace) -> int:
    from sidbench.nets.native import load_network, read_network_record

    path: Path = args.path
    if path.suffix.lower() in _STATE_DICT_SUFFIXES:
        from sidbench.nets.state_dict import convert_state_dict

        json_path = convert_state_dict(path, args.out, config=args.config, preset=args.preset)
    else:
        from sidbench.nets.persistence import convert_pickle

        json_path = convert_pickle(path, args.out, trust_pickle=args.trust_pickle, key=args.key,
                                   preset=args.preset)
    record = read_network_record(json_path)
    net = load_network(json_path)  # reads back what was written: sha256, strict load
    params = sum(p.numel() for p in net.parameters())
    buffers = sum(b.numel() for b in net.buffers())
    print(f"converted {path.name}: {record['class_name']}/{record['init_kwargs'].get('model_type', '?')}, "
          f"{params:,} parameters (+{buffers:,} buffer values), weights sha256 {record['weights_sha256']} "
          f"-> {json_path.parent}")
    return 0
