"""Checks that (mu, sigma) describe a Gaussian: a numeric vector, a finite symmetric PSD matrix of its size.

Why: FID's matrix square root clips negative eigenvalues to zero, so a covariance that is not
positive semi-definite gives a plausible-looking number (a non-PSD reference gave FID 3220)
instead of an error. Tolerances admit rounding (float32-stored statistics, rank-deficient
covariances of few images) and nothing more. The PSD test is one Cholesky factorisation of
sigma + tol * I (~0.2 s at 2048-d on one thread); the eigenvalues are computed only to word the
error.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sidbench.errors import ConfigError, SidbenchError

SYMMETRY_RTOL = 1e-6  # max |S - S^T| relative to max |S|
PSD_RTOL = 1e-5  # smallest eigenvalue allowed: -PSD_RTOL * max diagonal entry


def _numeric(x: Any, name: str, error: type[SidbenchError], where: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind not in "fiu":
        raise error(f"{where}{name} is a {a.dtype} array; expected real numbers",
                    hint="statistics hold float arrays mu [D] and sigma [D, D]")
    return a.astype(np.float64, copy=False)


def check_gaussian(mu: Any, sigma: Any, name: str = "", *, error: type[SidbenchError] = ConfigError,
                   where: str = "", psd: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """float64 (mu, sigma) after checking them; sigma is returned exactly symmetrised.

    `name` suffixes the array names in messages ("mu1"), `where` prefixes them ("ref.npz: "),
    `error` is the class raised (AssetError for files, ConfigError for arrays passed in).
    `psd=False` skips the symmetry and PSD tests (~0.3 s at 2048-d) for a sigma already known to
    be a covariance (`FeatureStats.cov()`, a reference `load_reference` checked); dtype, shapes
    and finiteness are always checked.
    """
    mu = _numeric(mu, f"mu{name}", error, where)
    sigma = _numeric(sigma, f"sigma{name}", error, where)
    if mu.ndim != 1 or mu.shape[0] == 0:
        raise error(f"{where}mu{name} must be a non-empty vector [D], got shape {mu.shape}")
    d = mu.shape[0]
    if sigma.shape != (d, d):
        raise error(f"{where}sigma{name} has shape {sigma.shape}, expected {(d, d)} to match mu{name}")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise error(f"{where}mu{name}/sigma{name} contain NaN or Inf")
    sym = (sigma + sigma.T) / 2
    if not psd:
        return mu, sym
    scale = max(float(sigma.max()), -float(sigma.min()))
    asym = 2 * float(np.abs(sigma - sym).max())  # max |S - S^T|, one transposed pass fewer
    if asym > SYMMETRY_RTOL * scale:
        raise error(f"{where}sigma{name} is not symmetric (max |S - S^T| = {asym:.3g}, "
                    f"max |S| = {scale:.3g})",
                    hint="a covariance matrix is symmetric: check how the statistics were computed")
    sigma = sym
    tol = PSD_RTOL * max(float(np.diag(sigma).max()), np.finfo(np.float64).tiny)
    shifted = sigma.copy()
    shifted.flat[:: d + 1] += tol  # sigma + tol * I
    try:
        np.linalg.cholesky(shifted)
    except np.linalg.LinAlgError:
        low = float(np.linalg.eigvalsh(sigma).min())
        raise error(f"{where}sigma{name} is not positive semi-definite (smallest eigenvalue {low:.3g}, "
                    f"tolerance {-tol:.3g}): the distance would be meaningless",
                    hint="a covariance has no negative eigenvalues: recompute the statistics") from None
    return mu, sigma
