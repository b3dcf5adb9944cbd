"""The embedded suite's protocols run through `evaluate` with their pinned options."""

import pytest
import torch

from sidbench.data.digits import DigitsDataset
from sidbench.metrics.evaluate import evaluate
from sidbench.metrics.extractors import build_extractor
from sidbench.metrics.kid import kid
from sidbench.metrics.protocols import get_protocol


@pytest.fixture(scope="module")
def digits():
    ds = DigitsDataset(resolution=16)
    return ds, torch.tensor(ds.arrays()[0])


def test_digits_kid_uses_its_pinned_kernel_scale(digits):
    ds, images = digits
    fake = images[:1000]
    opts = {"kid": {"num_subsets": 10, "subset_size": 500}}
    out = evaluate(fake, ref=ds, metrics="kid", protocols="digits-kid", options=opts, batch_size=500)
    ext = build_extractor("digits-classifier")
    f_fake = ext(fake)["features"].double().numpy()
    f_real = ext(images)["features"].double().numpy()
    gamma = get_protocol("digits-kid").options["gamma"]
    expected = kid(f_fake, f_real, num_subsets=10, subset_size=500, gamma=gamma)
    assert out["metrics"]["kid"]["value"] == pytest.approx(expected.mean, rel=1e-9)
    # with the 1/d default, the cubic kernel on these features is ~3e3 per pair and the estimate is noise
    loose = kid(f_fake, f_real, num_subsets=10, subset_size=500)
    assert expected.std < 0.01 * loose.std


def test_real_held_out_kid_is_near_zero():
    # KID is unbiased: held-out real digits against the training split must score ~0
    # (disjoint sets: shared images would bias the cross term; FD has an O(d/N) bias instead).
    held_out = DigitsDataset(resolution=16, split="held_out")
    train = DigitsDataset(resolution=16, split="train")
    out = evaluate(held_out, ref=train, metrics="kid", protocols="digits-kid",
                   options={"kid": {"num_subsets": 20, "subset_size": 300}}, batch_size=500)
    k = out["metrics"]["kid"]
    # 300 of 359 images per subset: the subsets overlap, so one subset's spread is the uncertainty
    assert abs(k["value"]) < 3 * k["std"]
