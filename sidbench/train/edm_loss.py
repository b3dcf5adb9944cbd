"""EDM's denoising score-matching loss (Karras et al. 2022, config F).

sigma is log-normal (ln sigma ~ N(P_mean, P_std^2)), the target is the clean
image, and the weight lambda(sigma) = (sigma^2 + sigma_d^2) / (sigma * sigma_d)^2
makes the effective loss on the raw network output unit-weighted at every sigma.
All randomness comes from an explicit `torch.Generator`, so a run is
reproducible from its seed whatever else touches the global RNG.
"""

from __future__ import annotations

import torch


def edm_loss_weight(sigma: torch.Tensor, sigma_data: float = 0.5) -> torch.Tensor:
    """lambda(sigma) = (sigma^2 + sigma_d^2) / (sigma * sigma_d)^2."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def sample_sigma(batch: int, generator: torch.Generator, device: torch.device | str = "cpu",
                 P_mean: float = -1.2, P_std: float = 1.2) -> torch.Tensor:
    """Per-sample noise levels, shape [batch]: exp(P_mean + P_std * n), n ~ N(0, 1)."""
    n = torch.randn([batch], generator=generator, device=device)
    return (n * P_std + P_mean).exp()


def drop_labels(labels: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Zero each sample's one-hot label with probability p (the 'unconditional' label of CFG)."""
    if p <= 0:
        return labels
    keep = torch.rand([labels.shape[0]], generator=generator, device=labels.device) >= p
    return labels * keep.to(labels.dtype).reshape(-1, *([1] * (labels.ndim - 1)))


def edm_loss(net: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor | None = None, *,
             generator: torch.Generator, P_mean: float = -1.2, P_std: float = 1.2,
             sigma_data: float | None = None, label_dropout: float = 0.0,
             augment_labels: torch.Tensor | None = None) -> torch.Tensor:
    """Per-element weighted loss lambda(sigma) * (D(x + sigma n, sigma) - x)^2, shape of `images`.

    The caller reduces it (EDM sums over everything and divides by the batch).
    Draw order from `generator`: sigma [B], then noise [B, C, H, W], then label dropout.
    """
    if sigma_data is None:
        sigma_data = float(getattr(net, "sigma_data", 0.5))
    b = images.shape[0]
    sigma = sample_sigma(b, generator, images.device, P_mean, P_std)
    noise = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
    if labels is not None and label_dropout > 0:
        labels = drop_labels(labels, label_dropout, generator)
    sigma_b = sigma.reshape(-1, *([1] * (images.ndim - 1)))
    kwargs = {} if augment_labels is None else {"augment_labels": augment_labels}
    denoised = net(images + sigma_b * noise, sigma, labels, **kwargs)
    return edm_loss_weight(sigma_b, sigma_data) * (denoised - images) ** 2
