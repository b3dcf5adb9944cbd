"""EDM's augmentation pipeline: closed forms, label layout, draw order, per-sample independence, refusals.

The comparison with EDM's own `training/augment.py` (same draws, all operations, 32/64 px,
1/3 channels) is tests/tools/edm_augment_check.py; EDM is not available in CI.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from sidbench.data.augment import SYM6, AugmentParams, AugmentPipe, apply_augment, draw_augment_params
from sidbench.errors import ConfigError
from sidbench.methods.base import Draws

NINE = ("xflip", "yflip", "scale", "rotate_frac.cos", "rotate_frac.sin", "aniso.cos", "aniso.sin",
        "translate_frac.x", "translate_frac.y")
EVERYTHING = dict(xflip=1, yflip=1, rotate_int=1, translate_int=1, scale=1, rotate_frac=1, aniso=1,
                  translate_frac=1, brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1)


class Scripted:
    """A DrawSource that returns given values in order (broadcast to [b, *shape]) and records the calls."""

    def __init__(self, b: int, values: list):
        self.b, self.values, self.calls = b, list(values), []

    def _next(self, call: tuple, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        self.calls.append(call)
        value = self.values.pop(0) if self.values else 0
        return torch.as_tensor(value, dtype=dtype).expand(self.b, *shape).clone()

    def rand(self, *shape: int) -> torch.Tensor:
        return self._next(("rand", *shape), shape, torch.float32)

    def randn(self, *shape: int) -> torch.Tensor:
        return self._next(("randn", *shape), shape, torch.float32)

    def randint(self, high: int, *shape: int) -> torch.Tensor:
        return self._next(("randint", high, *shape), shape, torch.int64)


def draws(b: int, seed: int = 0, first: int = 0) -> Draws:
    """Per-sample generators as the trainer makes them (sample j seeded from (seed, first + j))."""
    return Draws([torch.Generator().manual_seed(seed * 100003 + first + j) for j in range(b)])


def images(b: int = 4, c: int = 3, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, c, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def smooth(b: int = 1, c: int = 3, size: int = 32) -> torch.Tensor:
    """Images with only low frequencies, which the 2x resampling reproduces almost exactly."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    base = torch.stack([torch.sin(2.1 * x + 0.7 * y), torch.cos(1.3 * x - 1.9 * y), x * y])[:c]
    return base.expand(b, c, size, size).clone()


# ---------------------------------------------------------------------------------------------
# Settings.

def test_defaults_are_edms():
    expected = dict(p=1, xflip=0, yflip=0, rotate_int=0, translate_int=0, translate_int_max=0.125, scale=0,
                    rotate_frac=0, aniso=0, translate_frac=0, scale_std=0.2, rotate_frac_max=1, aniso_std=0.2,
                    aniso_rotate_prob=0.5, translate_frac_std=0.125, brightness=0, contrast=0, lumaflip=0,
                    hue=0, saturation=0, brightness_std=0.2, contrast_std=0.5, hue_max=1, saturation_std=1)
    assert dataclasses.asdict(AugmentPipe()) == expected
    assert [f.name for f in dataclasses.fields(AugmentPipe)] == list(expected)  # EDM's positional order
    assert all(isinstance(v, float) for v in dataclasses.asdict(AugmentPipe(xflip=1)).values())


def test_edm_train_set():
    pipe = AugmentPipe.edm_train(0.12)
    ops = (pipe.p, pipe.xflip, pipe.yflip, pipe.scale, pipe.rotate_frac, pipe.aniso, pipe.translate_frac)
    assert ops == (0.12, 1e8, 1, 1, 1, 1, 1)
    assert pipe.rotate_int == pipe.translate_int == pipe.brightness == pipe.hue == 0


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(AugmentPipe)])
@pytest.mark.parametrize("value", [-0.1, -1e8, math.nan, math.inf, -math.inf, "1", None, True])
def test_bad_settings_are_refused(name, value):
    with pytest.raises(ConfigError, match=name) as err:
        AugmentPipe(**{name: value})
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name,value", [("p", 1.5), ("p", 1 + 1e-9), ("aniso_rotate_prob", 2)])
def test_probabilities_above_one_are_refused(name, value):
    with pytest.raises(ConfigError, match=rf"{name}=.*in \[0, 1\]"):
        AugmentPipe(**{name: value})


def test_edge_values_are_accepted():
    AugmentPipe(p=0, aniso_rotate_prob=1, xflip=1e8, scale_std=0, hue_max=0)
    AugmentPipe(p=1, aniso_rotate_prob=0)
    with pytest.raises(ConfigError, match="translate_int_max"):
        AugmentPipe(translate_int=1, translate_int_max=0)


# ---------------------------------------------------------------------------------------------
# Labels and draw order.

def test_label_layout():
    assert AugmentPipe().label_names == NINE
    assert AugmentPipe.edm_train(0.12).label_names == NINE and AugmentPipe.edm_train(1).label_dim == 9
    assert AugmentPipe(xflip=1).label_names == NINE  # EDM would give just one column; the nets take nine
    names = AugmentPipe(**EVERYTHING).label_names
    assert names == ("xflip", "yflip", "rotate_int.x", "rotate_int.y", "translate_int.x", "translate_int.y",
                     *NINE[2:], "brightness", "contrast", "lumaflip", "hue.cos", "hue.sin", "saturation")
    assert AugmentPipe(hue=1).label_names == (*NINE, "hue.cos", "hue.sin")


def test_draw_order_is_edms():
    src = Scripted(2, [])
    draw_augment_params(src, 2, AugmentPipe.edm_train(0.5))
    assert src.calls == [("randint", 2), ("rand",), ("randint", 2), ("rand",),  # xflip, yflip
                         ("randn",), ("rand",),  # scale
                         ("rand",), ("rand",),  # rotate_frac
                         ("randn",), ("rand",), ("rand",), ("rand",),  # aniso: w, axis, gate, axis gate
                         ("randn", 2), ("rand",)]  # translate_frac
    src = Scripted(2, [])
    draw_augment_params(src, 2, AugmentPipe(**EVERYTHING))
    assert src.calls[4:8] == [("randint", 4), ("rand",), ("rand", 2), ("rand",)]
    assert src.calls[-10:] == [("randn",), ("rand",), ("randn",), ("rand",), ("randint", 2), ("rand",),
                               ("rand",), ("rand",), ("randn",), ("rand",)]
    src = Scripted(2, [])
    assert draw_augment_params(src, 2, AugmentPipe()) == AugmentParams() and src.calls == []


def test_gates_compare_with_multiplier_times_p():
    """An operation applies where its gate draw is below multiplier * p (EDM's rule)."""
    pipe = AugmentPipe(p=0.12, xflip=1, scale=2)
    gate = torch.tensor([0.11, 0.13])
    q = draw_augment_params(Scripted(2, [1, gate, 0.5, torch.tensor([0.23, 0.25])]), 2, pipe)
    assert q.xflip.tolist() == [1, 0] and q.scale.tolist() == [0.5, 0]
    q = draw_augment_params(Scripted(2, [1, 0.999999]), 2, AugmentPipe(p=1e-8, xflip=1e8))
    assert q.xflip.tolist() == [1, 1]  # EDM's xflip=1e8: always gated on, flips half the samples


def test_each_draw_means_what_edm_means():
    pipe = AugmentPipe(p=0.5, translate_int=1, rotate_frac=1, aniso=1, rotate_frac_max=0.5,
                       aniso_rotate_prob=0.7)
    values = [torch.tensor([[0.75, 0.25], [1.0, 0.0]]), 0.4,  # translate_int: (x, y) * 2 - 1, gate
              0.75, 0.4,  # rotate_frac: angle (u * 2 - 1) * pi * rotate_frac_max, gate
              0.7, 0.75, torch.tensor([0.4, 0.6]), torch.tensor([0.8, 0.65])]  # aniso: w, axis, gates
    q = draw_augment_params(Scripted(2, values), 2, pipe)
    assert q.translate_int.tolist() == [[0.5, -0.5], [1.0, -1.0]]
    assert q.rotate_frac.tolist() == pytest.approx([math.pi / 4] * 2)
    # The stretch's gate (p * aniso) comes before the axis's (aniso_rotate_prob), independent of each other.
    torch.testing.assert_close(q.aniso, torch.tensor([[0.7, 0.0], [0.0, math.pi / 2]]))


def test_p0_is_the_identity_with_zero_labels():
    x = images(8, 3, 16)
    for pipe in (AugmentPipe.edm_train(0), AugmentPipe(p=0, **EVERYTHING)):
        y, labels = pipe(x, draws(8))
        assert torch.equal(y, x) and labels.shape == (8, pipe.label_dim) and not labels.any()


def test_labels_follow_the_parameters():
    pipe = AugmentPipe(**EVERYTHING)
    q = AugmentParams(xflip=torch.tensor([1]), yflip=torch.tensor([0]), rotate_int=torch.tensor([3]),
                      translate_int=torch.tensor([[0.5, -0.5]]), scale=torch.tensor([0.7]),
                      rotate_frac=torch.tensor([0.3]), aniso=torch.tensor([[-1.5, 2.0]]),
                      translate_frac=torch.tensor([[0.1, -0.2]]), brightness=torch.tensor([0.4]),
                      contrast=torch.tensor([-0.6]), lumaflip=torch.tensor([1]), hue=torch.tensor([-1.0]),
                      saturation=torch.tensor([0.8]))
    _, labels = apply_augment(images(1, 3, 16), q, pipe)
    expected = [1, 0, 0, 1, 0.5, -0.5, 0.7, math.cos(0.3) - 1, math.sin(0.3), -1.5 * math.cos(2.0),
                -1.5 * math.sin(2.0), 0.1, -0.2, 0.4, -0.6, 1, math.cos(-1.0) - 1, math.sin(-1.0), 0.8]
    got = dict(zip(pipe.label_names, labels[0].tolist(), strict=True))
    assert got == pytest.approx(dict(zip(pipe.label_names, expected, strict=True)))


# ---------------------------------------------------------------------------------------------
# Closed forms.

def test_xflip_only():
    x = images(16, 3, 8)
    pipe = AugmentPipe(xflip=1)
    y, labels = pipe(x, draws(16))
    flipped = labels[:, 0] == 1
    assert 0 < flipped.sum() < 16  # both cases occur with these seeds
    assert torch.equal(y[flipped], x[flipped].flip(3)) and torch.equal(y[~flipped], x[~flipped])
    assert set(labels[:, 0].tolist()) == {0.0, 1.0} and not labels[:, 1:].any()


def test_yflip():
    x = images(2, 1, 8)
    y, labels = AugmentPipe(yflip=1)(x, Scripted(2, [torch.tensor([1, 0]), 0]))
    assert torch.equal(y[0], x[0].flip(1)) and torch.equal(y[1], x[1])
    assert labels[:, 1].tolist() == [1, 0]


def test_quarter_turns_are_rot90():
    x = images(4, 3, 8)
    pipe = AugmentPipe(rotate_int=1)
    y, labels = apply_augment(x, AugmentParams(rotate_int=torch.arange(4)), pipe)
    for k in range(4):
        assert torch.equal(y[k], torch.rot90(x[k], k, dims=(1, 2)))
    assert labels[:, 2].tolist() == [0, 1, 1, 0] and labels[:, 3].tolist() == [0, 0, 1, 1]


@pytest.mark.parametrize("shift", [(0.5, -0.75), (-1.0, 1.0), (0.06, 0.0), (0.99, -0.3)])
def test_integer_translation_mirrors_the_edges(shift):
    """out[y, x] = in[y + ty, x - tx] on the image mirrored about its edge pixels (EDM's signs)."""
    x = images(1, 3, 32)
    pipe = AugmentPipe(translate_int=1)  # translate_int_max 0.125: up to 4 pixels at 32x32
    y, labels = apply_augment(x, AugmentParams(translate_int=torch.tensor([shift])), pipe)
    tx, ty = round(shift[0] * 4), round(shift[1] * 4)
    padded = F.pad(x, [4, 4, 4, 4], mode="reflect")
    assert torch.equal(y, padded[:, :, 4 + ty:4 + ty + 32, 4 - tx:4 - tx + 32])
    assert labels[0, 2:4].tolist() == [tx / 4, ty / 4]


def test_whole_pixel_fractional_translation_is_a_shift():
    """Shifting by whole pixels moves the 2x grid by whole samples: the filter round trip is then exact
    (the Symlet filter is orthonormal), up to float32 roundoff; edges are mirrored."""
    x = images(1, 3, 16)
    pipe = AugmentPipe(translate_frac=1)  # translate_frac_std 0.125: 2 pixels per unit at 16x16
    y, labels = apply_augment(x, AugmentParams(translate_frac=torch.tensor([[1.5, -1.0]])), pipe)
    padded = F.pad(x, [3, 3, 3, 3], mode="reflect")
    torch.testing.assert_close(y, padded[:, :, 5:21, 0:16], atol=1e-5, rtol=0)  # right 3, up 2
    assert labels[0, 7:].tolist() == [1.5, -1.0]


def test_rotation_centre_is_edms():
    """EDM puts fine sample 2i at pixel i; with the asymmetric Symlet filter that turns images about a
    point 0.049 px left of the centre: a half turn of a horizontal ramp is the mirrored ramp minus
    0.0983 (EDM's own pipe gives -0.09826 for this ramp; a grid a quarter of a pixel off gives ~0.1
    more). Exact for linear images away from the edges: the filter reproduces polynomials."""
    w = 32
    ramp = torch.arange(w, dtype=torch.float64).expand(1, 1, w, w)
    pipe = AugmentPipe(rotate_frac=1)
    half = torch.tensor([math.pi], dtype=torch.float64)
    y, labels = apply_augment(ramp, AugmentParams(rotate_frac=half), pipe)
    offset = (y - ramp.flip(3))[0, 0, 10:22, 10:22]
    assert offset.mean().item() == pytest.approx(-0.09826, abs=1e-4) and offset.std() < 1e-6
    y, _ = apply_augment(ramp.transpose(2, 3), AugmentParams(rotate_frac=half / 2), pipe)
    assert (y - ramp)[0, 0, 10:22, 10:22].abs().max() < 1e-6  # a quarter turn takes rows onto columns
    assert labels[0, 3:5].tolist() == pytest.approx([-2, 0], abs=1e-7)


def test_quarter_rotation_and_scaling_of_smooth_images():
    x = smooth()
    pipe = AugmentPipe(rotate_frac=1, scale=1)
    y, labels = apply_augment(x, AugmentParams(scale=torch.zeros(1), rotate_frac=torch.tensor([math.pi / 2])),
                              pipe)
    inner = (slice(None), slice(None), slice(2, -2), slice(2, -2))
    assert (y - torch.rot90(x, 1, dims=(2, 3)))[inner].abs().max() < 0.03  # within the 0.1 px offset above
    assert labels[0, 3:5].tolist() == pytest.approx([-1, 1])
    # Zoom in 2x about the centre (scale_std 0.2: 5 units = one octave): out(u) = in(u / 2).
    y, _ = apply_augment(x, AugmentParams(scale=torch.tensor([5.0]), rotate_frac=torch.zeros(1)), pipe)
    centre = x[:, :, 8:24, 8:24]
    expected = F.interpolate(centre, scale_factor=2, mode="bilinear", align_corners=False)
    assert (y - expected)[inner].abs().max() < 0.01


def test_identity_geometry_leaves_samples_untouched():
    """Zero stretch about any axis, zero angle, zero shift: exactly the input (EDM: within ~1e-6)."""
    x = images(3, 3, 16)
    pipe = AugmentPipe(aniso=1, rotate_frac=1, translate_frac=1)
    q = AugmentParams(aniso=torch.tensor([[0.0, 1.0], [0.0, -2.0], [0.5, 1.0]]), rotate_frac=torch.zeros(3),
                      translate_frac=torch.zeros(3, 2))
    y, _ = apply_augment(x, q, pipe)
    assert torch.equal(y[:2], x[:2]) and not torch.allclose(y[2], x[2], atol=1e-3)


def test_colour_transforms():
    x = images(2, 3, 8)
    v = x.mean(dim=1, keepdim=True)  # the luma axis component (1, 1, 1)/sqrt(3), per pixel

    def colour(**params):
        pipe = AugmentPipe(**{k: 1 for k in params})
        return apply_augment(x, AugmentParams(**{k: torch.tensor(v) for k, v in params.items()}), pipe)[0]

    torch.testing.assert_close(colour(brightness=[1.5, 0.0]), torch.cat([x[:1] + 0.3, x[1:]]))
    torch.testing.assert_close(colour(contrast=[2.0, -2.0]), x * torch.tensor([2.0, 0.5]).view(2, 1, 1, 1))
    torch.testing.assert_close(colour(lumaflip=[1, 0]), torch.cat([x[:1] - 2 * v[:1], x[1:]]))
    # A third of a turn about the grey axis cycles R -> G -> B.
    third = 2 * math.pi / 3
    torch.testing.assert_close(colour(hue=[third, -third]), torch.cat([x[:1].roll(1, 1), x[1:].roll(-1, 1)]))
    torch.testing.assert_close(colour(saturation=[1.0, -1.0]),
                               v + (x - v) * torch.tensor([2.0, 0.5]).view(2, 1, 1, 1))


def test_colour_on_one_channel_uses_the_mean_of_the_rgb_rows():
    x = images(2, 1, 8)
    pipe = AugmentPipe(brightness=1, contrast=1)
    q = AugmentParams(brightness=torch.tensor([1.0, 0.0]), contrast=torch.tensor([0.0, 2.0]))
    y, _ = apply_augment(x, q, pipe)
    torch.testing.assert_close(y, torch.cat([x[:1] + 0.2, x[1:] * 2]))
    y, _ = apply_augment(x, AugmentParams(lumaflip=torch.tensor([1, 0])), AugmentPipe(lumaflip=1))
    torch.testing.assert_close(y, torch.cat([-x[:1], x[1:]]))  # a grey pixel flips to its negative


def test_symlet_filter_is_orthonormal():
    h = torch.tensor(SYM6, dtype=torch.float64)
    assert len(SYM6) == 12 and h.sum().item() == pytest.approx(math.sqrt(2), abs=1e-12)
    for n in range(6):
        assert (h[:12 - 2 * n] * h[2 * n:]).sum().item() == pytest.approx(float(n == 0), abs=1e-12)


# ---------------------------------------------------------------------------------------------
# Shapes, dtypes, determinism, independence.

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("c", [1, 3])
def test_shapes_and_dtypes(dtype, c):
    x = images(3, c, 16).to(dtype)
    pipe = AugmentPipe(p=1, **EVERYTHING)
    y, labels = pipe(x, draws(3))
    assert y.shape == x.shape and y.dtype == dtype and y.device == x.device
    assert labels.shape == (3, 19) and labels.dtype == torch.float32 and labels.device == x.device
    assert torch.isfinite(y).all() and torch.isfinite(labels).all()


def test_gradients_reach_the_images():
    """SiDA's generator loss may backpropagate through the augmentation of generated images."""
    x = images(4, 3, 16).requires_grad_()
    y, _ = AugmentPipe(p=1, **EVERYTHING)(x, draws(4))
    (y * images(4, 3, 16, seed=1)).sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad.flatten(1).abs().sum(1) > 0).all()


def test_non_square_images_without_quarter_turns():
    x = images(2, 3, 16)[:, :, :12]
    y, labels = AugmentPipe.edm_train(1)(x, draws(2))
    assert y.shape == x.shape and labels.shape == (2, 9)


def test_deterministic_and_seed_dependent():
    x = images(8, 3, 16)
    pipe = AugmentPipe.edm_train(1)
    y1, l1 = pipe(x, draws(8, seed=3))
    y2, l2 = pipe(x, draws(8, seed=3))
    y3, l3 = pipe(x, draws(8, seed=4))
    assert torch.equal(y1, y2) and torch.equal(l1, l2)
    assert not torch.equal(l1, l3) and not torch.equal(y1, y3)


def test_call_is_draw_then_apply():
    x = images(4, 3, 16)
    pipe = AugmentPipe.edm_train(0.5)
    y, labels = pipe(x, draws(4, seed=9))
    y2, labels2 = apply_augment(x, draw_augment_params(draws(4, seed=9), 4, pipe), pipe)
    assert torch.equal(y, y2) and torch.equal(labels, labels2)


@pytest.mark.parametrize("settings", [AugmentPipe.edm_train(0.12), AugmentPipe.edm_train(1),
                                      AugmentPipe(p=0.7, **EVERYTHING)])
def test_each_sample_depends_only_on_its_own_draws(settings):
    """Halves of a batch, with their samples' generators, give the same rows as the whole batch."""
    x = images(8, 3, 16, seed=5)
    y, labels = settings(x, draws(8, seed=1))
    y_a, labels_a = settings(x[:4], draws(4, seed=1))
    y_b, labels_b = settings(x[4:], draws(4, seed=1, first=4))
    # Bitwise on the CPU (its kernels do not depend on the batch size; GPU kernels may, by roundoff).
    assert torch.equal(torch.cat([y_a, y_b]), y) and torch.equal(torch.cat([labels_a, labels_b]), labels)
    # Another sample's content (here: all of them replaced) does not reach sample 0.
    other = torch.cat([x[:1], images(7, 3, 16, seed=6)])
    assert torch.equal(settings(other, draws(8, seed=1))[0][0], y[0])


# ---------------------------------------------------------------------------------------------
# Refusals.

@pytest.mark.parametrize("bad,match", [
    (torch.zeros(3, 16, 16), "batch, channels"),
    (torch.zeros(2, 3, 16, 16, dtype=torch.uint8), "floating-point"),
    (torch.zeros(2, 3, 1, 16), "2x2"),
    ([[0.0]], "list"),
])
def test_bad_images_are_refused(bad, match):
    with pytest.raises(ConfigError, match=match) as err:
        AugmentPipe.edm_train(0.12)(bad, draws(2))
    assert "\n" not in str(err.value)


def test_operations_that_need_particular_images():
    with pytest.raises(ConfigError, match="square"):
        AugmentPipe(rotate_int=1)(torch.zeros(2, 3, 16, 8), draws(2))
    for op in ("brightness", "contrast", "lumaflip", "hue", "saturation"):
        with pytest.raises(ConfigError, match="1 \\(luma\\) or 3 \\(RGB\\) channels, got 4"):
            AugmentPipe(**{op: 1})(torch.zeros(2, 4, 8, 8), draws(2))
    AugmentPipe.edm_train(1)(torch.zeros(2, 4, 8, 8), draws(2))  # geometry takes any channel count


@pytest.mark.parametrize("n", [1, 3])
def test_draws_for_another_batch_size_are_refused(n):
    with pytest.raises(ConfigError, match=rf"shape \({n},\), expected \(2,\)"):
        AugmentPipe.edm_train(0.12)(images(2), draws(n))


def test_parameters_for_another_pipe_are_refused():
    x = images(2)
    q = draw_augment_params(draws(2), 2, AugmentPipe(xflip=1))
    with pytest.raises(ConfigError, match="scale is enabled but its parameters are missing"):
        apply_augment(x, q, AugmentPipe(xflip=1, scale=1))
    with pytest.raises(ConfigError, match="xflip is disabled but its parameters are given"):
        apply_augment(x, q, AugmentPipe(yflip=1))
    with pytest.raises(ConfigError, match="for 2 samples, the batch has 3"):
        apply_augment(images(3), q, AugmentPipe(xflip=1))
