"""`sidbench train-teacher`: train the small teacher of an embedded suite (API: `sidbench.train_teacher`)."""

from __future__ import annotations

import argparse

from sidbench import api
from sidbench.commands.options import alias_note, api_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", required=True, choices=api.TRAINABLE_SUITES, help="embedded suite")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder (network.json, network.safetensors, training.json)")
    parser.add_argument("--kimg", type=float, default=None,
                        help="training length in thousands of images (default: the suite's)")
    parser.add_argument("--batch-size", "--batch", type=int, default=None,
                        help="batch size (default: the suite's)" + alias_note("--batch"))
    parser.add_argument("--lr", type=float, default=None, help="Adam learning rate (default: the suite's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of init, batches and noise (default 0)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")


def run(args: argparse.Namespace) -> int:
    summary = api.train_teacher(**api_arguments(args))
    print(f"trained {summary.suite} teacher: {summary.kimg:g} kimg, {summary.steps} steps, "
          f"loss {summary.loss_first:.4f} -> {summary.loss_last:.4f}, {summary.wall_time_s:.1f} s "
          f"on {summary.device} ({summary.threads} threads); wrote {summary.network_json}")
    return 0
