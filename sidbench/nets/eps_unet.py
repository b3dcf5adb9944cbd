"""An epsilon-predicting text-conditional UNet (diffusers' UNet2DConditionModel) as a sidbench network.

Latent-diffusion teachers (Stable Diffusion 1.5 / 2.1-base) and the digits-t2i teacher predict the
noise eps of x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps at integer DDPM steps t, conditioned on text
embeddings [b, L, D] through cross-attention. `EpsDenoiser` wraps such a UNet with its schedule and is
a native network like EDMPrecond: its `init_kwargs` hold the UNet's diffusers config and the schedule
(plus, for a teacher trained here, the text encoder's config and word vocabulary), so it saves to and
loads from a network folder, copies strictly and has an EMA like any other network. Views:

- `eps(x_t, t, text)`: the UNet's output; `x0(x_t, t, text)`: x0 from it (`sidbench.nets.ddpm`);
- `guided_eps(x_t, t, cond, uncond, kappa)`: classifier-free guidance eps_u + kappa (eps_c - eps_u),
  one UNet call on the concatenated batch [uncond; cond] as SiD-LSG does; kappa 1 is the conditional
  call alone (no unconditional branch is computed);
- `forward(x, sigma, class_labels=None, text=...)`: EDM's interface, x = x0 + sigma n, at the step
  whose sigma_t is nearest to sigma (x_t = x / sqrt(1 + sigma^2) there).

diffusers (the `t2i` extra) is imported when one is built, never at import time.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Mapping
from typing import Any

import torch

from sidbench.errors import ConfigError
from sidbench.nets import ddpm
from sidbench.nets.precond import PRECONDITIONERS, Precond
from sidbench.nets.prompts import WordTokenizer

T2I_INSTALL_HINT = 'install the text-to-image extra: pip install -e ".[t2i]"'


def _import_extra(name: str) -> Any:
    """A module of the `t2i` extra, or one ConfigError saying how to install it."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ConfigError(f"text-to-image networks need {name} ({exc.name or exc} is missing)",
                          hint=T2I_INSTALL_HINT) from None


def import_diffusers() -> Any:
    return _import_extra("diffusers")


def import_transformers() -> Any:
    return _import_extra("transformers")


def unet_config_of(unet: Any) -> dict[str, Any]:
    """The JSON-safe diffusers config that rebuilds `unet` (private `_` keys dropped)."""
    import json

    cfg = {k: v for k, v in dict(unet.config).items() if not str(k).startswith("_")}
    return json.loads(json.dumps(cfg, default=list))


def _text_model(config: Mapping[str, Any]) -> Any:
    transformers = import_transformers()
    cfg = transformers.CLIPTextConfig(**dict(config))
    return transformers.CLIPTextModel(cfg)


class EpsDenoiser(Precond):
    """A text-conditional eps-prediction UNet and its DDPM schedule; see the module docstring."""

    def __init__(self, img_resolution: int, img_channels: int, unet: Mapping[str, Any],
                 schedule: Mapping[str, Any] | None = None, label_dim: int = 0, use_fp16: bool = False,
                 text_encoder: Mapping[str, Any] | None = None, tokenizer: Mapping[str, Any] | None = None,
                 dropout: float | None = None, _module: Any = None):
        torch.nn.Module.__init__(self)
        if label_dim:
            raise ConfigError("EpsDenoiser is text-conditional; label_dim must be 0",
                              hint="condition it on prompts instead of class labels")
        if not isinstance(unet, Mapping):
            raise ConfigError("EpsDenoiser needs init_kwargs['unet']",
                              hint="give a diffusers UNet2DConditionModel config (unet/config.json)")
        schedule = ddpm.check_schedule(schedule or ddpm.SD15_SCHEDULE)
        if dropout is not None:  # a recipe's per-network dropout: the UNet's own `dropout` setting
            unet = {**dict(unet), "dropout": float(dropout)}
        self.img_resolution, self.img_channels = int(img_resolution), int(img_channels)
        self.label_dim, self.use_fp16, self.model_type = 0, bool(use_fp16), "UNet2DConditionModel"
        if _module is None:
            diffusers = import_diffusers()
            try:
                _module = diffusers.UNet2DConditionModel.from_config(dict(unet))
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"cannot build a UNet2DConditionModel from init_kwargs['unet']: {exc}",
                                  hint="give the unet/config.json of a diffusers folder") from None
        cfg = _module.config
        if (cfg.in_channels, cfg.out_channels) != (self.img_channels, self.img_channels):
            raise ConfigError(f"the UNet has {cfg.in_channels}/{cfg.out_channels} in/out channels, "
                              f"img_channels is {self.img_channels}")
        self.model = _module
        self.text_encoder = _text_model(text_encoder) if text_encoder is not None else None
        # the word tokenizer of a teacher trained here (its text encoder's vocabulary), built once
        self.tokenizer = WordTokenizer.from_spec(tokenizer) if tokenizer is not None else None
        self.register_buffer("alphas_cumprod", ddpm.alphas_cumprod(schedule), persistent=False)
        self.num_train_timesteps = schedule["num_train_timesteps"]
        self.init_kwargs = {"img_resolution": self.img_resolution, "img_channels": self.img_channels,
                            "label_dim": 0, "use_fp16": self.use_fp16, "unet": copy.deepcopy(dict(unet)),
                            "schedule": schedule,
                            "text_encoder": copy.deepcopy(dict(text_encoder)) if text_encoder else None,
                            "tokenizer": copy.deepcopy(dict(tokenizer)) if tokenizer else None}

    @classmethod
    def wrap(cls, unet: Any, schedule: Mapping[str, Any], use_fp16: bool = False) -> EpsDenoiser:
        """Wrap a loaded UNet2DConditionModel (its weights are kept, not copied)."""
        return cls(img_resolution=int(unet.config.sample_size), img_channels=int(unet.config.in_channels),
                   unet=unet_config_of(unet), schedule=schedule, use_fp16=use_fp16, _module=unet)

    def without_text_encoder(self) -> tuple[EpsDenoiser, Any]:
        """(this denoiser without its text encoder, the text encoder): a teacher trained here carries
        its text encoder; distillation freezes it apart and copies only the UNet."""
        encoder = self.text_encoder
        self.text_encoder = None
        self.init_kwargs = {**self.init_kwargs, "text_encoder": None}
        return self, encoder

    # --- the three views ------------------------------------------------------------------------
    def _autocast(self, x: torch.Tensor) -> Any:
        if self.use_fp16 and x.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    @staticmethod
    def _steps(t: Any, x: torch.Tensor) -> torch.Tensor:
        """Integer steps as a long [b] tensor on x's device; one step is shared by the whole batch."""
        t = torch.as_tensor(t, device=x.device).long().reshape(-1)
        return t.expand(x.shape[0]) if t.numel() == 1 else t

    def eps(self, x_t: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """The UNet's noise prediction at integer steps t [b] (float32)."""
        t = self._steps(t, x_t)
        if text.ndim != 3 or text.shape[0] != x_t.shape[0] or t.shape[0] != x_t.shape[0]:
            raise ConfigError(f"EpsDenoiser got {x_t.shape[0]} inputs, {t.shape[0]} timesteps and text "
                              f"embeddings of shape {tuple(text.shape)}",
                              hint="give one timestep and one [L, D] text embedding per input")
        with self._autocast(x_t):
            out = self.model(x_t, t, encoder_hidden_states=text.to(x_t.dtype), return_dict=False)[0]
        return out.to(torch.float32)

    def guided_eps(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor | None,
                   kappa: float) -> torch.Tensor:
        """eps_u + kappa (eps_c - eps_u); kappa == 1 calls the UNet on the conditional input only."""
        if float(kappa) == 1.0:
            return self.eps(x_t, t, cond)
        if uncond is None:
            raise ConfigError(f"guidance scale {kappa} needs the empty-prompt embedding")
        t = self._steps(t, x_t)
        both = self.eps(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([uncond.expand_as(cond), cond]))
        eps_u, eps_c = both.chunk(2)
        return eps_u + float(kappa) * (eps_c - eps_u)

    def x0(self, x_t: torch.Tensor, t: torch.Tensor, text: torch.Tensor, uncond: torch.Tensor | None = None,
           kappa: float = 1.0) -> torch.Tensor:
        """x0 from the (guided) eps at steps t."""
        t = self._steps(t, x_t)
        eps = self.guided_eps(x_t, t, text, uncond, kappa)
        return ddpm.x0_from_eps(self.alphas_cumprod, x_t.to(torch.float32), eps, t)

    def round_sigma(self, sigma: float | torch.Tensor) -> torch.Tensor:
        t = ddpm.timestep_of_sigma(self.alphas_cumprod, torch.as_tensor(sigma, dtype=torch.float32))
        return ddpm.sigmas(self.alphas_cumprod)[t]

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor | None = None,
                class_labels: torch.Tensor | None = None, force_fp32: bool = False, *,
                text: torch.Tensor | None = None, uncond: torch.Tensor | None = None, kappa: float = 1.0,
                timesteps: torch.Tensor | None = None, output: str = "x0", augment_labels: Any = None
                ) -> torch.Tensor:
        """With `timesteps`: x is x_t at those DDPM steps; else EDM's x = x0 + sigma n at the nearest step.

        Returns the (guided) x0, or with output="eps" the guided eps. Methods call the network
        this way (not `.x0`) so that a DistributedDataParallel wrapper sees the forward pass.
        """
        if text is None:
            raise ConfigError("EpsDenoiser needs text embeddings (text=...)",
                              hint="encode the prompts with the teacher's PromptEncoder")
        if output not in ("x0", "eps"):
            raise ConfigError(f"output must be 'x0' or 'eps', not {output!r}")
        x = x.to(torch.float32)
        if timesteps is None:
            if sigma is None:
                raise ConfigError("give sigma (EDM form) or timesteps (DDPM form)")
            s = torch.as_tensor(sigma, device=x.device, dtype=torch.float32).reshape(-1).expand(x.shape[0])
            timesteps = ddpm.timestep_of_sigma(self.alphas_cumprod, s)
            x = x / (1 + s.reshape(-1, *([1] * (x.ndim - 1))) ** 2) ** 0.5
        if output == "eps":
            return self.guided_eps(x, timesteps, text, uncond, kappa)
        return self.x0(x, timesteps, text, uncond, kappa)

    def encoder_features(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        raise ConfigError("EpsDenoiser has no EDM encoder features", hint="use an EDM network")


PRECONDITIONERS["EpsDenoiser"] = EpsDenoiser  # type: ignore[assignment]


def one_step(generator: torch.nn.Module, z: torch.Tensor, text: torch.Tensor, t_init: int) -> torch.Tensor:
    """G(z, c): x0 of the (possibly DDP-wrapped) generator's unguided eps at t_init on its input
    add_noise(0, z, t_init) = sqrt(1 - abar_t_init) z."""
    ddp = isinstance(generator, torch.nn.parallel.DistributedDataParallel)
    inner = generator.module if ddp else generator
    t = torch.full((z.shape[0],), int(t_init), dtype=torch.long, device=z.device)
    x = ddpm.add_noise(inner.alphas_cumprod, torch.zeros_like(z), z, t)
    return generator(x, None, timesteps=t, text=text)
