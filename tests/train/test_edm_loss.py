"""EDM loss: weighting, noise draws and label dropout against hand computation."""

import math

import pytest
import torch

from sidbench.train.edm_loss import drop_labels, edm_loss, edm_loss_weight, sample_sigma


class RecordingNet(torch.nn.Module):
    """Returns zeros and records what it was called with."""

    sigma_data = 0.5

    def forward(self, x, sigma, class_labels=None, **kwargs):
        self.x, self.sigma, self.labels, self.kwargs = x.clone(), sigma.clone(), class_labels, kwargs
        return torch.zeros_like(x)


# by hand, (s^2 + 0.25) / (0.5 s)^2: 0.5 -> 0.5/0.0625 = 8; 1 -> 5; 2 -> 4.25; 0.002 -> 0.250004/1e-6
@pytest.mark.parametrize("sigma,expected", [(0.5, 8.0), (1.0, 5.0), (2.0, 4.25), (0.002, 250_004.0)])
def test_weight_matches_hand_computation(sigma, expected):
    weight = edm_loss_weight(torch.tensor(sigma, dtype=torch.float64))
    assert float(weight) == pytest.approx(expected, rel=1e-12)


def test_weight_with_other_sigma_data():
    # (1 + 1) / (1 * 1)^2 = 2 for sigma = sigma_d = 1
    assert float(edm_loss_weight(torch.tensor(1.0), sigma_data=1.0)) == pytest.approx(2.0)


def test_sigma_is_lognormal_with_given_parameters():
    g = torch.Generator().manual_seed(0)
    s = sample_sigma(200_000, g, P_mean=-1.2, P_std=1.2).double().log()
    assert float(s.mean()) == pytest.approx(-1.2, abs=0.01)
    assert float(s.std()) == pytest.approx(1.2, abs=0.01)


def test_loss_equals_hand_computation_with_zero_denoiser():
    images = torch.randn(6, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    labels = torch.eye(10)[torch.arange(6)]
    net = RecordingNet()
    loss = edm_loss(net, images, labels, generator=torch.Generator().manual_seed(7))

    g = torch.Generator().manual_seed(7)  # same draw order: sigma [B], then noise
    sigma = (torch.randn([6], generator=g) * 1.2 - 1.2).exp()
    noise = torch.randn(images.shape, generator=g)
    torch.testing.assert_close(net.sigma, sigma)
    torch.testing.assert_close(net.x, images + sigma.reshape(-1, 1, 1, 1) * noise)
    assert net.labels is labels
    lam = (sigma**2 + 0.25) / (sigma * 0.5) ** 2
    torch.testing.assert_close(loss, lam.reshape(-1, 1, 1, 1) * images**2)
    assert loss.shape == images.shape


def test_same_seed_same_loss_and_different_seed_different_loss():
    images = torch.randn(4, 2, 1, 1)
    a = edm_loss(RecordingNet(), images, generator=torch.Generator().manual_seed(3))
    b = edm_loss(RecordingNet(), images, generator=torch.Generator().manual_seed(3))
    c = edm_loss(RecordingNet(), images, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_augment_labels_are_passed_through():
    net = RecordingNet()
    aug = torch.zeros(3, 9)
    edm_loss(net, torch.zeros(3, 1, 2, 2), generator=torch.Generator().manual_seed(0), augment_labels=aug)
    assert net.kwargs["augment_labels"] is aug


def test_label_dropout_extremes_and_rate():
    labels = torch.eye(10)[torch.randint(10, (4000,), generator=torch.Generator().manual_seed(0))]
    g = torch.Generator().manual_seed(0)
    assert torch.equal(drop_labels(labels, 0.0, g), labels)
    assert float(drop_labels(labels, 1.0, g).abs().sum()) == 0.0
    dropped = drop_labels(labels, 0.25, g)
    rate = float((dropped.sum(1) == 0).double().mean())
    assert rate == pytest.approx(0.25, abs=3 * math.sqrt(0.25 * 0.75 / 4000))
    kept = dropped.sum(1) == 1
    assert torch.equal(dropped[kept], labels[kept])
