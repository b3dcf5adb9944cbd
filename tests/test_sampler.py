"""EDM Heun sampler against the closed-form probability-flow ODE of Gaussian data."""

import math

import pytest
import torch

from sidbench.errors import ConfigError
from sidbench.nets.sampler import (
    MAX_STEPS,
    check_sampler_settings,
    default_steps,
    edm_sampler,
    edm_time_steps,
    heun_nfe,
    onestep_generate,
)
from sidbench.nets.seeds import latents_and_labels


class GaussDenoiser(torch.nn.Module):
    """Exact denoiser of data N(m, s^2 I): D(x, sigma) = m + (x - m) s^2 / (s^2 + sigma^2).

    Follows the preconditioned-denoiser interface; counts its calls.
    """

    def __init__(self, res=4, ch=3, label_dim=0, mean=0.3, std=0.5, sigma_min=0.0, sigma_max=math.inf,
                 out_dtype=torch.float32, augment_dim=0):
        super().__init__()
        self.img_resolution, self.img_channels, self.label_dim = res, ch, label_dim
        self.sigma_min, self.sigma_max, self.sigma_data = sigma_min, sigma_max, 0.5
        self.augment_dim = augment_dim
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float64))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float64))
        self.out_dtype = out_dtype
        self.calls = []

    def round_sigma(self, sigma):
        return torch.as_tensor(sigma)

    def class_mean(self, class_labels):
        if class_labels is None:
            return self.mean
        offsets = torch.linspace(-0.8, 0.8, self.label_dim, dtype=torch.float64)
        return (self.mean + class_labels.to(torch.float64) @ offsets).reshape(-1, 1, 1, 1)

    def forward(self, x, sigma, class_labels=None, force_fp32=False, **kwargs):
        self.calls.append((x.clone(), torch.as_tensor(sigma).clone(), kwargs))
        x = x.to(torch.float64)
        sigma = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1, *([1] * (x.ndim - 1)))
        m, s2 = self.class_mean(class_labels), self.std**2
        return (m + (x - m) * s2 / (s2 + sigma**2)).to(self.out_dtype)


def exact_solution(net, latents, t0):
    """x(0) of the probability-flow ODE started at x(T) = T * latents."""
    s = float(net.std)
    x_t = latents.to(torch.float64) * t0
    return net.mean + (x_t - net.mean) * s / math.sqrt(s**2 + t0**2)


def test_time_steps_match_hand_formula():
    net = GaussDenoiser()
    t = edm_time_steps(net, 18)
    assert t.dtype == torch.float64 and len(t) == 19 and t[-1] == 0
    for i in range(18):
        hand = (80 ** (1 / 7) + i / 17 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
        assert float(t[i]) == pytest.approx(hand, rel=1e-13)
    assert float(t[0]) == pytest.approx(80) and float(t[17]) == pytest.approx(0.002)
    assert torch.all(t[:-1] > t[1:])


def test_time_steps_clamped_to_network_range():
    net = GaussDenoiser(sigma_min=0.01, sigma_max=50.0)
    t = edm_time_steps(net, 5, sigma_min=0.002, sigma_max=80)
    assert float(t[0]) == pytest.approx(50) and float(t[4]) == pytest.approx(0.01)


def test_time_steps_rounded_by_network():
    class Rounding(GaussDenoiser):
        def round_sigma(self, sigma):
            return torch.as_tensor(sigma).round()

    t = edm_time_steps(Rounding(), 6)
    assert torch.equal(t, t.round())


def test_too_few_steps_refused():
    with pytest.raises(ConfigError):
        edm_time_steps(GaussDenoiser(), 1)


def test_nfe_is_2n_minus_1_and_last_step_euler():
    for n in (2, 5, 18):
        net = GaussDenoiser()
        edm_sampler(net, torch.randn(2, 3, 4, 4), num_steps=n)
        assert len(net.calls) == heun_nfe(n) == 2 * n - 1
        sigmas = [float(c[1]) for c in net.calls]
        assert 0.0 not in sigmas  # the net is never asked to denoise at sigma = 0
        t = edm_time_steps(net, n)
        assert sigmas[0] == pytest.approx(float(t[0])) and sigmas[-1] == pytest.approx(float(t[n - 1]))


def test_heun_matches_closed_form_and_is_second_order():
    torch.manual_seed(0)
    latents = torch.randn(4, 3, 4, 4)
    errors = []
    for n in (16, 32, 64, 128):
        net = GaussDenoiser(out_dtype=torch.float64)
        x = edm_sampler(net, latents, num_steps=n)
        assert x.dtype == torch.float64
        t0 = float(edm_time_steps(net, n)[0])
        errors.append(float((x - exact_solution(net, latents, t0)).abs().max()))
    assert errors[-1] < 3e-3
    ratios = [a / b for a, b in zip(errors, errors[1:], strict=False)]
    for r in ratios:
        assert 3.5 < r < 5.5, (errors, ratios)  # 2nd order: error / 4 per doubling (Euler: / 2)


def euler_sampler(net, latents, n):
    t = edm_time_steps(net, n)
    x = latents.to(torch.float64) * t[0]
    for i in range(n):
        x = x + (t[i + 1] - t[i]) * (x - net(x, t[i]).to(torch.float64)) / t[i]
    return x


def test_oracle_tells_first_from_second_order():
    """The ratio test above can fail: plain Euler on the same problem halves its error per doubling."""
    torch.manual_seed(0)
    latents = torch.randn(4, 3, 4, 4)
    net = GaussDenoiser(out_dtype=torch.float64)
    exact = exact_solution(net, latents, 80.0)
    e = [float((euler_sampler(net, latents, n) - exact).abs().max()) for n in (64, 128)]
    assert 1.6 < e[0] / e[1] < 2.6


def reference_stochastic(net, seed, shape, n, S_churn, S_min, S_max, S_noise):
    """EDM's stochastic sampler for one seed, written out by hand with its own generator."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g).to(torch.float64)[None]
    t = edm_time_steps(net, n)
    x = x * t[0]
    for i in range(n):
        gamma = min(S_churn / n, math.sqrt(2) - 1) if S_min <= float(t[i]) <= S_max else 0.0
        t_hat = t[i] * (1 + gamma)
        eps = torch.randn(shape, generator=g, dtype=torch.float64)[None]
        x_hat = x + (t_hat**2 - t[i] ** 2).sqrt() * S_noise * eps
        d = (x_hat - net(x_hat, t_hat).double()) / t_hat
        x = x_hat + (t[i + 1] - t_hat) * d
        if i < n - 1:
            d2 = (x - net(x, t[i + 1]).double()) / t[i + 1]
            x = x_hat + (t[i + 1] - t_hat) * (d + d2) / 2
    return x[0]


def test_stochastic_sampler_reproducible_per_seed():
    kw = dict(num_steps=8, S_churn=40, S_min=0.05, S_max=50, S_noise=1.003)
    seeds = [4, 0, 9]
    shape = [3, 4, 4]
    net = GaussDenoiser()
    latents, _, rng = latents_and_labels(seeds, shape, 0)
    batch = edm_sampler(net, latents, randn_like=rng.randn_like, **kw)
    latents1, _, rng1 = latents_and_labels([9], shape, 0)
    alone = edm_sampler(net, latents1, randn_like=rng1.randn_like, **kw)
    assert torch.equal(batch[2], alone[0])
    for i, s in enumerate(seeds):
        ref = reference_stochastic(net, s, shape, 8, 40, 0.05, 50, 1.003)
        torch.testing.assert_close(batch[i], ref, rtol=1e-12, atol=1e-12)
    latents, _, _ = latents_and_labels(seeds, shape, 0)
    deterministic = edm_sampler(net, latents, num_steps=8)
    assert (deterministic - batch).abs().max() > 1e-3  # the churn really adds noise


def test_zero_churn_ignores_noise_stream():
    net = GaussDenoiser()
    latents = torch.randn(2, 3, 4, 4)
    a = edm_sampler(net, latents, num_steps=6)
    b = edm_sampler(net, latents, randn_like=lambda x: torch.full_like(x, 1e6), num_steps=6)
    assert torch.equal(a, b)


def test_conditional_labels_reach_the_net():
    net = GaussDenoiser(label_dim=4, out_dtype=torch.float64)
    latents = torch.zeros(4, 3, 4, 4)
    x = edm_sampler(net, latents, torch.eye(4), num_steps=64)
    t0 = float(edm_time_steps(net, 64)[0])
    m = net.class_mean(torch.eye(4)).flatten()
    expected = m * (1 - float(net.std) / math.hypot(float(net.std), t0))  # x(0) for x(T) = 0
    torch.testing.assert_close(x.mean(dim=(1, 2, 3)), expected, atol=1e-4, rtol=0)
    assert (expected.max() - expected.min()) > 1


def test_onestep_generate_convention():
    net = GaussDenoiser(augment_dim=9, label_dim=3)
    z = torch.randn(2, 3, 4, 4)
    labels = torch.eye(3)[[0, 2]]
    out = onestep_generate(net, z, labels, sigma_init=2.5)
    assert len(net.calls) == 1 and out.dtype == torch.float64
    x, sigma, kwargs = net.calls[0]
    torch.testing.assert_close(x, z.double() * 2.5)
    assert torch.all(sigma == 2.5) and sigma.numel() == 2
    assert torch.equal(kwargs["augment_labels"], torch.zeros(2, 9))
    torch.testing.assert_close(out, net(z.double() * 2.5, 2.5, labels).double())


def test_onestep_without_augment_passes_no_augment_labels():
    net = GaussDenoiser()
    onestep_generate(net, torch.randn(1, 3, 4, 4))
    assert "augment_labels" not in net.calls[0][2]


def test_check_sampler_settings_defaults_and_types():
    settings = check_sampler_settings()
    assert settings == {"num_steps": 18, "sigma_min": 0.002, "sigma_max": 80.0, "rho": 7.0, "S_churn": 0.0,
                        "S_min": 0.0, "S_max": math.inf, "S_noise": 1.0, "sigma_init": 2.5}
    import numpy as np

    got = check_sampler_settings(np.int64(4), np.float32(0.5), 10, 3, S_max=50)
    assert type(got["num_steps"]) is int and all(type(got[k]) is float for k in got if k != "num_steps")
    assert check_sampler_settings(1, sampler="onestep")["num_steps"] == 1  # steps matter only to Heun
    assert check_sampler_settings(S_churn=40, S_min=0.05, S_max=50, S_noise=1.003)["S_noise"] == 1.003


NAN, INF = math.nan, math.inf
BAD_SETTINGS = [
    ("num_steps", 1), ("num_steps", MAX_STEPS + 1), ("num_steps", 3.0), ("num_steps", None),
    ("sigma_min", 0), ("sigma_min", -1e-3), ("sigma_min", NAN), ("sigma_min", INF), ("sigma_min", "0.002"),
    ("sigma_max", NAN), ("sigma_max", INF), ("sigma_max", 0.001), ("sigma_max", False),
    ("rho", 0), ("rho", -7), ("rho", NAN), ("rho", INF),
    ("S_churn", -1), ("S_churn", NAN), ("S_min", -0.1), ("S_min", INF), ("S_max", NAN), ("S_max", -INF),
    ("S_max", -1), ("S_noise", -1), ("S_noise", NAN), ("sigma_init", 0), ("sigma_init", NAN),
    ("sigma_init", -INF), ("sampler", "euler"),
]


@pytest.mark.parametrize(("name", "value"), BAD_SETTINGS)
def test_check_sampler_settings_refuses(name, value):
    with pytest.raises(ConfigError) as info:
        check_sampler_settings(**{name: value})
    assert info.value.hint and (name in str(info.value) or name == "sampler")


def test_samplers_check_their_settings():
    net = GaussDenoiser()
    with pytest.raises(ConfigError, match="S_noise"):
        edm_sampler(net, torch.randn(1, 3, 4, 4), num_steps=3, S_churn=1.0, S_noise=NAN)
    with pytest.raises(ConfigError, match="rho"):
        edm_time_steps(net, 4, rho=0.0)
    with pytest.raises(ConfigError, match="sigma_init"):
        onestep_generate(net, torch.randn(1, 3, 4, 4), sigma_init=0.0)


def test_network_range_leaving_no_noise_levels_refused():
    net = GaussDenoiser(sigma_min=0.5, sigma_max=1.0)
    with pytest.raises(ConfigError, match="network supports sigma 0.5..1"):
        edm_time_steps(net, 4, sigma_min=2.0, sigma_max=80.0)
    t = edm_time_steps(net, 4, sigma_min=0.002, sigma_max=80.0)  # clamping alone is fine
    assert float(t[0]) == pytest.approx(1.0) and float(t[3]) == pytest.approx(0.5)


def test_default_steps_follow_edm():
    assert [default_steps(r) for r in (8, 32, 64, 512)] == [18, 18, 40, 40]
    assert heun_nfe(default_steps(32)) == 35 and heun_nfe(default_steps(64)) == 79
