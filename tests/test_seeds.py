"""Seed lists and EDM's per-image random streams (latent, then class, then sampler noise)."""

import time

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sidbench.errors import ConfigError
from sidbench.nets.seeds import (
    MAX_SEED,
    MAX_SEEDS,
    StackedRandomGenerator,
    check_class_idx,
    format_seeds,
    latents_and_labels,
    parse_seeds,
    resolve_seeds,
)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("0-4", [0, 1, 2, 3, 4]),
        ("7", [7]),
        ("1,2,5-7", [1, 2, 5, 6, 7]),
        ("60000,70-72", [60000, 70, 71, 72]),  # order is kept, as in EDM
        (" 3 , 4-5 ", [3, 4, 5]),
        ("9-9", [9]),
        ([4, 2, 8], [4, 2, 8]),
    ],
)
def test_parse_seeds(spec, expected):
    assert parse_seeds(spec) == expected


def test_parse_seeds_edm_range():
    seeds = parse_seeds("0-49999")
    assert len(seeds) == 50000 and seeds[0] == 0 and seeds[-1] == 49999


BAD = ["", "a", "1,,2", "1-", "-3", "5-2", "1.5", "0-3,2", "1-2-3", "0x10", [1, 1], [-1],
       # beyond EDM's 32-bit seeds, and lists too long to build
       str(MAX_SEED + 1), f"0-{MAX_SEED + 1}", "0-99999999999999", "9" * 5000, [MAX_SEED + 1],
       f"0-{MAX_SEEDS}", f"0-{MAX_SEEDS // 2},{MAX_SEEDS}-{MAX_SEEDS * 2}", range(MAX_SEEDS + 1),
       range(10**14), [1.5], [True], ["3"], [None], "0-10,5", " - 4", "3--4"]


@pytest.mark.parametrize("spec", BAD, ids=lambda s: repr(s)[:30])
def test_parse_seeds_errors(spec):
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        parse_seeds(spec)
    assert time.perf_counter() - start < 0.5  # refused without building a giant list
    assert info.value.hint and "\n" not in str(info.value) and len(str(info.value)) < 300


@pytest.mark.parametrize(("spec", "words"), [
    ("-3", "negative"), ([4, -1], "negative"), (str(2**32), "out of range"), ([2**40], "out of range"),
    ("0-99999999999999", "out of range"), (f"0-{MAX_SEEDS}", "more than"), ("1,2,1", "seed 1 appears"),
])
def test_parse_seeds_error_says_why(spec, words):
    with pytest.raises(ConfigError, match=words):
        parse_seeds(spec)


def test_largest_seeds_accepted():
    assert parse_seeds(f"{MAX_SEED - 1}-{MAX_SEED}") == [MAX_SEED - 1, MAX_SEED]
    assert len(parse_seeds(f"0-{MAX_SEEDS - 1}")) == MAX_SEEDS
    assert parse_seeds(np.arange(3)) == [0, 1, 2] and parse_seeds("007") == [7]


def test_resolve_seeds():
    assert resolve_seeds(None, 3) == [0, 1, 2]
    assert resolve_seeds("5-7", 3) == resolve_seeds("5-7", None) == [5, 6, 7]
    assert resolve_seeds([9, 4], None) == [9, 4]
    for seeds, num, words in [("5-7", 4, "--num is 4"), (None, None, "no seeds"), (None, 0, ">= 1"),
                              (None, -2, ">= 1"), (None, True, "whole number"), (None, 2.0, "whole number"),
                              (None, MAX_SEEDS + 1, "more than"), ("-1", None, "negative")]:
        start = time.perf_counter()
        with pytest.raises(ConfigError, match=words):
            resolve_seeds(seeds, num)
        assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize("class_idx", [1.0, "1", True])
def test_class_idx_must_be_an_int(class_idx):
    with pytest.raises(ConfigError, match="whole number"):
        check_class_idx(class_idx, 10)
    check_class_idx(np.int64(3), 10)


@given(st.lists(st.integers(0, 10**6), unique=True, max_size=40))
def test_format_seeds_round_trip(seeds):
    if seeds:
        assert parse_seeds(format_seeds(seeds)) == seeds


def test_format_seeds_compact():
    assert format_seeds([0, 1, 2, 3, 7, 9, 10]) == "0-3,7,9-10"


def test_stacked_generator_is_per_seed():
    seeds = [5, 0, 123456, 2**32 + 5]
    rng = StackedRandomGenerator("cpu", seeds)
    a = rng.randn([4, 2, 3])
    b = rng.randint(10, size=[4, 2])
    c = rng.randn_like(torch.zeros(4, 3, dtype=torch.float64))
    for i, s in enumerate(seeds):
        g = torch.Generator().manual_seed(s % 2**32)
        assert torch.equal(a[i], torch.randn([2, 3], generator=g))
        assert torch.equal(b[i], torch.randint(10, size=[2], generator=g))
        assert torch.equal(c[i], torch.randn([3], generator=g, dtype=torch.float64))
    assert torch.equal(a[0], a[3])  # seeds equal modulo 2**32 give the same image
    assert c.dtype == torch.float64
    with pytest.raises(ValueError):
        rng.randn([3, 2])


def test_unconditional_latents_by_hand():
    latents, labels, _ = latents_and_labels([3, 1], [1, 4, 4], 0)
    assert labels is None and latents.dtype == torch.float32 and latents.shape == (2, 1, 4, 4)
    assert torch.equal(latents[0], torch.randn([1, 4, 4], generator=torch.Generator().manual_seed(3)))
    assert torch.equal(latents[1], torch.randn([1, 4, 4], generator=torch.Generator().manual_seed(1)))


def test_class_label_drawn_after_latent_from_same_generator():
    seeds = list(range(20))
    latents, labels, rng = latents_and_labels(seeds, [3, 2, 2], 10)
    assert labels.shape == (20, 10) and torch.equal(labels.sum(1), torch.ones(20))
    classes = []
    for i, s in enumerate(seeds):
        g = torch.Generator().manual_seed(s)
        assert torch.equal(latents[i], torch.randn([3, 2, 2], generator=g))
        cls = int(torch.randint(10, size=[], generator=g))
        classes.append(cls)
        assert labels[i, cls] == 1
        # the generator handed back is positioned after the class draw
        assert torch.equal(rng.generators[i].get_state(), g.get_state())
    assert len(set(classes)) > 3  # labels really vary with the seed


def test_fixed_class_still_draws_random_class():
    _, labels, rng = latents_and_labels([0, 1, 2], [1, 2, 2], 5, class_idx=4)
    assert torch.equal(labels, torch.eye(5)[[4, 4, 4]])
    _, _, rng_random = latents_and_labels([0, 1, 2], [1, 2, 2], 5)
    x = torch.zeros(3, 1, 2, 2, dtype=torch.float64)
    assert torch.equal(rng.randn_like(x), rng_random.randn_like(x))


@pytest.mark.parametrize(("label_dim", "class_idx"), [(0, 1), (10, 10), (10, -1)])
def test_bad_class_idx(label_dim, class_idx):
    with pytest.raises(ConfigError):
        latents_and_labels([0], [1, 2, 2], label_dim, class_idx=class_idx)
