"""EDM's preconditioners: D(x; sigma) = c_skip * x + c_out * F(c_in * x; c_noise).

`VPPrecond`, `VEPrecond` and `EDMPrecond` take EDM's constructor arguments and hold
the raw network as `self.model`, so their state dicts are EDM's (`model.*`). The
three differ only in the four coefficients, and the same weights give different
denoisers under each: the released "vp" teachers are DDPM++ networks trained with
*EDM* preconditioning, and VP preconditioning on them loads cleanly but is wrong.
"""

from __future__ import annotations

import importlib
import inspect
import math
from typing import Any

import torch

from sidbench.errors import ConfigError
from sidbench.registry import suggest

# model_type -> "module:Class"; imported on first use (MLPDenoiser lives in another helper's module).
MODEL_TYPES = {
    "SongUNet": "sidbench.nets.songunet:SongUNet",
    "DhariwalUNet": "sidbench.nets.dhariwal:DhariwalUNet",
    "MLPDenoiser": "sidbench.nets.mlp:MLPDenoiser",
}


def model_class(model_type: str) -> type[torch.nn.Module]:
    """The network class named by an EDM `model_type`."""
    if model_type not in MODEL_TYPES:
        raise ConfigError(f"unknown model_type '{model_type}'.{suggest(str(model_type), list(MODEL_TYPES))}",
                          hint=f"valid: {', '.join(MODEL_TYPES)}")
    module, name = MODEL_TYPES[model_type].split(":")
    return getattr(importlib.import_module(module), name)


def _check_model_kwargs(cls: type, model_kwargs: dict[str, Any], precond_names: list[str]) -> None:
    """Refuse keyword arguments that neither the preconditioner nor the model accepts."""
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    reserved = {"self", "img_resolution", "in_channels", "out_channels", "label_dim"}
    valid = [n for n in params if n not in reserved] + precond_names
    for key in model_kwargs:
        if key in reserved:
            raise ConfigError(f"'{key}' is set by the preconditioner and cannot be given to {cls.__name__}",
                              hint="remove it from init_kwargs")
        if key not in valid:
            accepted = ", ".join(n for n in params if n not in reserved)
            raise ConfigError(f"unknown network setting '{key}'.{suggest(key, valid)}",
                              hint=f"{cls.__name__} accepts: {accepted}")


class Precond(torch.nn.Module):
    """Shared machinery; subclasses define `coefficients(sigma)`."""

    _precond_names: list[str] = []

    def __init__(self, img_resolution: int, img_channels: int, label_dim: int, use_fp16: bool,
                 model_type: str, model_kwargs: dict[str, Any], init_kwargs: dict[str, Any]):
        super().__init__()
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.label_dim = label_dim
        self.use_fp16 = use_fp16
        self.model_type = model_type
        cls = model_class(model_type)
        _check_model_kwargs(cls, model_kwargs, self._precond_names)
        self.model = cls(img_resolution=img_resolution, in_channels=img_channels, out_channels=img_channels,
                         label_dim=label_dim, **model_kwargs)
        # What rebuilds this network (EDM's pickles record the same as `init_kwargs`).
        self.init_kwargs = {**init_kwargs, "model_type": model_type, **model_kwargs}

    def coefficients(self, sigma: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(c_skip, c_out, c_in, c_noise) for a float32 sigma tensor."""
        raise NotImplementedError

    def round_sigma(self, sigma: float | torch.Tensor) -> torch.Tensor:
        """Noise levels the network supports; the identity for continuous-time preconditioners."""
        return torch.as_tensor(sigma)

    def _prepare(self, x: torch.Tensor, sigma: float | torch.Tensor, class_labels: torch.Tensor | None,
                 force_fp32: bool):
        x = x.to(torch.float32)
        sigma = torch.as_tensor(sigma, device=x.device).to(torch.float32).reshape(-1)
        if sigma.numel() == 1 and x.shape[0] != 1:
            sigma = sigma.expand(x.shape[0])  # one embedding per sample, so label dropout stays per sample
        sigma = sigma.reshape(-1, *([1] * (x.ndim - 1)))  # broadcast over any image rank
        if self.label_dim == 0:
            class_labels = None
        elif class_labels is None:  # EDM uses zeros; one row per sample also suits non-broadcasting models
            class_labels = torch.zeros([x.shape[0], self.label_dim], device=x.device)
        else:
            class_labels = class_labels.to(torch.float32).reshape(-1, self.label_dim)
        fp16 = self.use_fp16 and not force_fp32 and x.device.type == "cuda"
        dtype = torch.float16 if fp16 else torch.float32
        return x, sigma, class_labels, dtype

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor, class_labels: torch.Tensor | None = None,
                force_fp32: bool = False, **model_kwargs: Any) -> torch.Tensor:
        x, sigma, class_labels, dtype = self._prepare(x, sigma, class_labels, force_fp32)
        c_skip, c_out, c_in, c_noise = self.coefficients(sigma)
        F_x = self.model((c_in * x).to(dtype), c_noise.flatten(), class_labels=class_labels, **model_kwargs)
        return c_skip * x + c_out * F_x.to(torch.float32)

    def encoder_features(self, x: torch.Tensor, sigma: float | torch.Tensor,
                         class_labels: torch.Tensor | None = None, augment_labels: torch.Tensor | None = None,
                         force_fp32: bool = False) -> torch.Tensor:
        """Lowest-resolution encoder map (last encoder block's output), float32.

        Uses the network's own modules on the preconditioned input, so it is exactly the
        tensor the full forward pass computes there; SiDA's discriminator reads it.
        """
        if not hasattr(self.model, "encoder_features"):
            raise ConfigError(f"{type(self.model).__name__} has no encoder to read features from",
                              hint="use a U-Net model_type (SongUNet or DhariwalUNet)")
        x, sigma, class_labels, dtype = self._prepare(x, sigma, class_labels, force_fp32)
        _, _, c_in, c_noise = self.coefficients(sigma)
        feats = self.model.encoder_features((c_in * x).to(dtype), c_noise.flatten(), class_labels,
                                            augment_labels=augment_labels)
        return feats.to(torch.float32)


def _vp_sigma(t: float | torch.Tensor, beta_d: float, beta_min: float) -> torch.Tensor:
    # A number is a CPU scalar even under `with torch.device("meta")` (shape checks), where it needs a value.
    t = t if isinstance(t, torch.Tensor) else torch.as_tensor(t, device="cpu")
    return ((0.5 * beta_d * t**2 + beta_min * t).exp() - 1).sqrt()


class VPPrecond(Precond):
    """Variance preserving (Song et al. 2021): c_skip 1, c_out -sigma, c_in 1/sqrt(sigma^2+1),
    c_noise (M-1) t(sigma)."""

    _precond_names = ["use_fp16", "beta_d", "beta_min", "M", "epsilon_t", "model_type", "sigma_data",
                      "sigma_min", "sigma_max"]

    def __init__(self, img_resolution: int, img_channels: int, label_dim: int = 0, use_fp16: bool = False,
                 beta_d: float = 19.9, beta_min: float = 0.1, M: int = 1000, epsilon_t: float = 1e-5,
                 model_type: str = "SongUNet", sigma_data: float = 0.5, sigma_min: float | str | None = None,
                 sigma_max: float | str | None = None, **model_kwargs: Any):
        # sigma_data is not used by VP; it is kept as an attribute for the common interface.
        # sigma_min / sigma_max follow from the schedule; given ones must agree with it.
        derived = {"sigma_min": float(_vp_sigma(epsilon_t, beta_d, beta_min)),
                   "sigma_max": float(_vp_sigma(1, beta_d, beta_min))}
        for name, given in (("sigma_min", sigma_min), ("sigma_max", sigma_max)):
            if given is not None and not math.isclose(float(given), derived[name], rel_tol=1e-5):
                raise ConfigError(f"VPPrecond {name}={given} disagrees with its schedule "
                                  f"({derived[name]:.6g})",
                                  hint="drop it, or change beta_d/beta_min/epsilon_t")
        init = dict(img_resolution=img_resolution, img_channels=img_channels, label_dim=label_dim,
                    use_fp16=use_fp16, beta_d=beta_d, beta_min=beta_min, M=M, epsilon_t=epsilon_t,
                    sigma_data=sigma_data)
        super().__init__(img_resolution, img_channels, label_dim, use_fp16, model_type, model_kwargs, init)
        self.beta_d, self.beta_min, self.M, self.epsilon_t = beta_d, beta_min, M, epsilon_t
        self.sigma_data = sigma_data
        self.sigma_min = derived["sigma_min"]
        self.sigma_max = derived["sigma_max"]

    def sigma(self, t: float | torch.Tensor) -> torch.Tensor:
        """Noise level at diffusion time t in [0, 1]."""
        return _vp_sigma(t, self.beta_d, self.beta_min)

    def sigma_inv(self, sigma: float | torch.Tensor) -> torch.Tensor:
        """Diffusion time t of a noise level (inverse of `sigma`)."""
        sigma = torch.as_tensor(sigma)
        root = (self.beta_min**2 + 2 * self.beta_d * (1 + sigma**2).log()).sqrt()
        return (root - self.beta_min) / self.beta_d

    def coefficients(self, sigma: torch.Tensor) -> tuple[torch.Tensor, ...]:
        c_skip = torch.ones_like(sigma)
        c_out = -sigma
        c_in = 1 / (sigma**2 + 1).sqrt()
        c_noise = (self.M - 1) * self.sigma_inv(sigma)
        return c_skip, c_out, c_in, c_noise


class VEPrecond(Precond):
    """Variance exploding (Song et al. 2021): c_skip 1, c_out sigma, c_in 1, c_noise log(sigma/2)."""

    _precond_names = ["use_fp16", "sigma_min", "sigma_max", "model_type", "sigma_data"]

    def __init__(self, img_resolution: int, img_channels: int, label_dim: int = 0, use_fp16: bool = False,
                 sigma_min: float | str = 0.02, sigma_max: float | str = 100, model_type: str = "SongUNet",
                 sigma_data: float = 0.5, **model_kwargs: Any):
        init = dict(img_resolution=img_resolution, img_channels=img_channels, label_dim=label_dim,
                    use_fp16=use_fp16, sigma_min=float(sigma_min), sigma_max=float(sigma_max),
                    sigma_data=sigma_data)
        super().__init__(img_resolution, img_channels, label_dim, use_fp16, model_type, model_kwargs, init)
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self.sigma_data = sigma_data  # not used by VE; kept for the common interface

    def coefficients(self, sigma: torch.Tensor) -> tuple[torch.Tensor, ...]:
        c_skip = torch.ones_like(sigma)
        c_out = sigma
        c_in = torch.ones_like(sigma)
        c_noise = (0.5 * sigma).log()
        return c_skip, c_out, c_in, c_noise


class EDMPrecond(Precond):
    """EDM (Karras et al. 2022): c_skip = sd^2/(s^2+sd^2), c_out = s*sd/sqrt(s^2+sd^2),
    c_in = 1/sqrt(s^2+sd^2), c_noise = ln(s)/4."""

    _precond_names = ["use_fp16", "sigma_min", "sigma_max", "sigma_data", "model_type"]

    def __init__(self, img_resolution: int, img_channels: int, label_dim: int = 0, use_fp16: bool = False,
                 sigma_min: float | str = 0, sigma_max: float | str = float("inf"), sigma_data: float = 0.5,
                 model_type: str = "DhariwalUNet", **model_kwargs: Any):
        init = dict(img_resolution=img_resolution, img_channels=img_channels, label_dim=label_dim,
                    use_fp16=use_fp16, sigma_min=float(sigma_min), sigma_max=float(sigma_max),
                    sigma_data=sigma_data)
        super().__init__(img_resolution, img_channels, label_dim, use_fp16, model_type, model_kwargs, init)
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self.sigma_data = sigma_data

    def coefficients(self, sigma: torch.Tensor) -> tuple[torch.Tensor, ...]:
        sd = self.sigma_data
        c_skip = sd**2 / (sigma**2 + sd**2)
        c_out = sigma * sd / (sigma**2 + sd**2).sqrt()
        c_in = 1 / (sd**2 + sigma**2).sqrt()
        c_noise = sigma.log() / 4
        return c_skip, c_out, c_in, c_noise


PRECONDITIONERS: dict[str, type[Precond]] = {
    "EDMPrecond": EDMPrecond,
    "VPPrecond": VPPrecond,
    "VEPrecond": VEPrecond,
}
