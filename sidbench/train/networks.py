"""The networks of a run: the frozen teacher and the method's networks, built and initialised.

Every method network has the teacher's architecture (its network.json, or the recipe's
`training.architecture` when there is no teacher, as in teacher training) with the
recipe's per-network dropout and, for fp16 precision, EDM's network-level `use_fp16`.
Initialisation follows each `NetworkSpec.init`: "teacher" (a copy of its weights),
"scratch" (fresh weights drawn under a seed derived from the run seed and the network's
index), another network's name (a copy of that one) or "none"; then `NetworkSpec.build`,
when given, makes the final module from that (heads, discriminators). `training.init_generator`
replaces the product network's weights and its EMA (SiD²A starts from a SiD generator).
The teacher is frozen: eval mode, requires_grad False.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sidbench.errors import ConfigError
from sidbench.train.config import RunConfig
from sidbench.train.ema import EMA
from sidbench.train.seeds import INIT, scalar_seed


@dataclass
class Networks:
    teacher: torch.nn.Module | None
    nets: dict[str, torch.nn.Module]
    emas: dict[str, EMA] = field(default_factory=dict)
    configs: dict[str, dict] = field(default_factory=dict)  # name -> network config (class_name, init_kwargs)
    teacher_info: dict[str, Any] = field(default_factory=dict)
    init_generator: dict[str, Any] | None = None
    conditioning: Any = None  # text-to-image runs: sidbench.train.conditioning.Conditioning
    t2i: Any = None  # text-to-image runs: the teacher's sidbench.nets.t2i.T2ITeacher (prompts, decoder)

    def for_update(self) -> dict[str, torch.nn.Module]:
        """What an UpdateContext gets: the method's networks plus "teacher" when there is one."""
        return {**self.nets, **({"teacher": self.teacher} if self.teacher is not None else {})}


def teacher_needed(config: RunConfig, method: Any) -> bool:
    """A teacher is loaded unless every network starts from scratch (or copies one that does) and no
    teacher is named: teacher training needs none."""
    if config.training.teacher is not None:
        return True
    by_name = {s.name: s for s in method.networks}

    def roots(spec: Any, seen: tuple[str, ...] = ()) -> str:
        if spec.init in ("teacher", "scratch") or spec.init in seen or spec.init not in by_name:
            return spec.init
        return roots(by_name[spec.init], (*seen, spec.name))

    return any(roots(s) != "scratch" for s in method.networks)


def network_config(architecture: dict, dropout: float | None, fp16: bool) -> dict:
    """The architecture with this network's training dropout and use_fp16."""
    cfg = copy.deepcopy({"class_name": architecture["class_name"],
                         "init_kwargs": dict(architecture["init_kwargs"])})
    kwargs = cfg["init_kwargs"]
    if dropout is not None:
        kwargs["dropout"] = float(dropout)
    kwargs["use_fp16"] = bool(fp16)
    return cfg


def _scratch(cfg: dict, seed: int, index: int) -> torch.nn.Module:
    from sidbench.nets.build import build_network

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(scalar_seed(seed, INIT, index))
        return build_network(cfg)


def _copy_of(cfg: dict, source: torch.nn.Module, what: str) -> torch.nn.Module:
    from sidbench.nets.build import build_network
    from sidbench.nets.native import check_state_dict

    with torch.device("meta"):
        shapes = build_network(cfg)
    tensors = source.state_dict()
    check_state_dict(shapes, tensors, what)
    with torch.random.fork_rng(devices=[]):  # the fresh init is overwritten: leave the global RNG alone
        net = build_network(cfg)
    with torch.no_grad():
        net.load_state_dict(tensors, strict=True)
    return net


def _built(spec: Any, base: torch.nn.Module | None, index: int, config: RunConfig,
           teacher: torch.nn.Module | None, architecture: dict) -> torch.nn.Module:
    """`spec.build(base, inputs)` under the network's init seed; the result must be a Module."""
    from sidbench.methods.base import BuildInputs

    kwargs = architecture["init_kwargs"]
    res = int(kwargs["img_resolution"])
    inputs = BuildInputs(teacher=teacher, settings=config.method_settings,
                         img_shape=(int(kwargs["img_channels"]), res, res),
                         label_dim=int(kwargs.get("label_dim") or 0))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(scalar_seed(config.training.seed, INIT, index))
        net = spec.build(base, inputs)
    if not isinstance(net, torch.nn.Module):
        raise ConfigError(f"the build hook of network {spec.name} returned {type(net).__name__}, "
                          "not a Module")
    return net


def load_teacher(path: str | os.PathLike, suite: Any, fp16: bool, device: torch.device
                 ) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The suite-checked teacher, frozen, on `device`; and what records say about it.

    A text-to-image suite's teacher (a diffusers folder or a native EpsDenoiser with its text
    encoder) also gives its frozen prompt encoder and decoder under "t2i".
    """
    from sidbench.nets.native import load_network, read_network_record
    from sidbench.suites.resolve import check_teacher

    if suite.settings.get("text_to_image"):
        from sidbench.nets.t2i import is_diffusers_folder, load_t2i_teacher

        if not is_diffusers_folder(path):
            check_teacher(suite, read_network_record(path), where=f"the teacher {path}")
        t2i = load_t2i_teacher(path, device=device)
        t2i.denoiser.use_fp16 = bool(fp16)
        t2i.denoiser.init_kwargs["use_fp16"] = bool(fp16)
        t2i.prompts.to(device)
        return t2i.denoiser, {"info": t2i.info, "config": t2i.config, "t2i": t2i}

    record = read_network_record(path)
    check_teacher(suite, record, where=f"the teacher {path}")
    teacher = load_network(path, device=device)
    teacher.use_fp16 = bool(fp16)
    if hasattr(teacher, "init_kwargs"):
        teacher.init_kwargs = {**teacher.init_kwargs, "use_fp16": bool(fp16)}
    teacher.eval().requires_grad_(False)
    config = {"class_name": record["class_name"], "init_kwargs": record["init_kwargs"]}
    info = {"path": str(path), "sha256": record["weights_sha256"], "class_name": record["class_name"]}
    return teacher, {"info": info, "config": config}


def resolve_init_generator(path: str | os.PathLike) -> Path:
    """The native network folder `init_generator` names: a network folder, a checkpoint's product, or the
    product of the newest valid checkpoint of a run folder."""
    from sidbench.errors import AssetError
    from sidbench.train.checkpoint import CHECKPOINTS, PRODUCT, STATE, newest_valid, read_state

    p = Path(path).expanduser()
    if (p / "network.json").is_file() or (p.is_file() and p.name == "network.json"):
        return p if p.is_dir() else p.parent
    if (p / STATE).is_file():
        read_state(p)
        return p / PRODUCT
    if (p / CHECKPOINTS).is_dir():
        found = newest_valid(p)
        if found is None:
            raise AssetError(f"init_generator {p}: the run folder has no valid checkpoint",
                             hint="give a checkpoint folder or a native generator folder")
        return found[0] / PRODUCT
    raise AssetError(f"init_generator {p} is not a network folder, a checkpoint or a run folder",
                     hint="give a folder with network.json (e.g. from `sidbench convert`), a "
                          "checkpoints/step-XXXXXXXX folder or a run folder")


def build_networks(config: RunConfig, method: Any, device: torch.device, teacher_path: str | None = None,
                   architecture: dict | None = None) -> Networks:
    """Teacher and method networks on `device`, initialised per spec, with EMA copies where declared.

    The architecture is the recipe's `training.architecture`, else `architecture`, else the teacher's.
    """
    from sidbench.nets.native import load_network, read_network_record

    suite = config.get_suite()
    training = config.training
    fp16 = training.precision == "fp16"
    teacher, teacher_info, t2i = None, {}, None
    architecture = training.architecture or architecture
    if teacher_path is not None:
        teacher, loaded = load_teacher(teacher_path, suite, fp16, device)
        teacher_info = loaded["info"]
        t2i = loaded.get("t2i")
        architecture = loaded["config"] if t2i is not None else architecture or loaded["config"]
    if architecture is None:
        raise ConfigError(f"method {method.name} trains from scratch and no architecture is known",
                          hint="set training.architecture (a network config) or training.teacher")

    nets: dict[str, torch.nn.Module] = {}
    configs: dict[str, dict] = {}
    names = [s.name for s in method.networks]
    for index, spec in enumerate(method.networks):
        settings = training.networks[spec.name]
        cfg = network_config(architecture, settings.dropout, fp16)
        if spec.build is not None and spec.name == method.product:
            raise ConfigError(f"method {method.name}: its product '{spec.name}' has a build hook",
                              hint="the product must be a plain denoiser that generate/eval can load")
        if spec.init == "none":
            net = None
        elif spec.init == "scratch":
            net = _scratch(cfg, training.seed, index)
        elif spec.init == "teacher":
            if teacher is None:
                raise ConfigError(f"network {spec.name} copies the teacher, but there is none",
                                  hint="set training.teacher")
            net = _copy_of(cfg, teacher, f"the teacher as {spec.name}")
        elif spec.init in nets:
            net = _copy_of(cfg, nets[spec.init], f"{spec.init} as {spec.name}")
        else:
            known = "a later network" if spec.init in names else "not a network of the method"
            raise ConfigError(f"method {method.name}: network {spec.name} copies '{spec.init}', {known}",
                              hint="init is 'teacher', 'scratch', 'none' or the name of an earlier network")
        if net is not None:
            net.train(spec.trainable).requires_grad_(spec.trainable)
        if spec.build is not None:
            net = _built(spec, net, index, config, teacher, architecture)
            cfg = {**cfg, "builder": f"{spec.build.__module__}:{spec.build.__qualname__}"}
        elif net is None:
            raise ConfigError(f"method {method.name}: network {spec.name} has init 'none' and no build hook",
                              hint="a network made from nothing needs NetworkSpec.build")
        net = net.to(device)
        if training.gradient_checkpointing and spec.trainable and hasattr(getattr(net, "model", None),
                                                                           "enable_gradient_checkpointing"):
            net.model.enable_gradient_checkpointing()
        if not spec.trainable:
            net.eval().requires_grad_(False)
        nets[spec.name], configs[spec.name] = net, cfg

    init_info = None
    if training.init_generator is not None:
        folder = resolve_init_generator(training.init_generator)
        record = read_network_record(folder)
        source = load_network(folder, device="cpu")
        target = nets[method.product]
        loaded = _copy_of(configs[method.product], source, f"init_generator {folder} as {method.product}")
        with torch.no_grad():
            target.load_state_dict(loaded.state_dict(), strict=True)
        init_info = {"path": str(folder), "sha256": record["weights_sha256"]}

    emas = {}
    for spec in method.networks:
        if spec.ema:
            s = training.networks[spec.name]
            emas[spec.name] = EMA(nets[spec.name], s.ema_halflife_kimg, s.ema_rampup)
    conditioning = None
    if suite.settings.get("text_to_image"):
        from sidbench.train.conditioning import Conditioning, open_prompts

        prompts, described = open_prompts(suite, training.prompts) if t2i is not None else (None, {})
        if t2i is not None and prompts is None:
            raise ConfigError(f"suite {suite.name} has no built-in training prompts",
                              hint="set training.prompts to a caption list (.txt, .json or COCO annotations)")
        conditioning = Conditioning(prompts, t2i.prompts if t2i is not None else None,
                                    suite.settings.get("label_captions"), described)
    return Networks(teacher=teacher, nets=nets, emas=emas, configs=configs, teacher_info=teacher_info,
                    init_generator=init_info, conditioning=conditioning, t2i=t2i)
