"""The toy2d MLP backbone under EDM preconditioning."""

import pytest
import torch

from sidbench.errors import ConfigError
from sidbench.nets.build import build_network
from sidbench.nets.mlp import MLPDenoiser, sinusoidal_embedding
from sidbench.suites.toy2d import TEACHER_NETWORK


def test_builds_through_edmprecond_and_denoises_points():
    torch.manual_seed(0)
    net = build_network(TEACHER_NETWORK).eval()
    assert type(net.model) is MLPDenoiser
    x = torch.randn(7, 2, 1, 1)
    with torch.no_grad():
        out = net(x, torch.rand(7) + 0.1)
        scalar = net(x, 0.5)
    assert out.shape == x.shape and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert scalar.shape == x.shape


def test_labels_and_augment_labels_condition_the_output():
    torch.manual_seed(0)
    model = MLPDenoiser(1, 2, 2, label_dim=3, augment_dim=9)
    x, t = torch.randn(4, 2, 1, 1), torch.zeros(4)
    a = model(x, t, torch.eye(3)[[0, 0, 0, 0]])
    b = model(x, t, torch.eye(3)[[1, 1, 1, 1]])
    c = model(x, t, torch.eye(3)[[0, 0, 0, 0]], augment_labels=torch.ones(4, 9))
    assert not torch.allclose(a, b) and not torch.allclose(a, c)
    assert model.encoder_features(x, t, None).shape == (4, 128, 1, 1)


def test_a_batch_element_does_not_depend_on_the_others():
    torch.manual_seed(0)
    model = MLPDenoiser(1, 2, 2).eval()
    x, t = torch.randn(5, 2, 1, 1), torch.linspace(-1, 1, 5)
    torch.testing.assert_close(model(x, t, None)[2:3], model(x[2:3], t[2:3], None))


def test_sinusoidal_embedding_shape_and_values():
    e = sinusoidal_embedding(torch.tensor([0.0, 1.0]), 8)
    assert e.shape == (2, 8)
    torch.testing.assert_close(e[0], torch.tensor([1.0] * 4 + [0.0] * 4))
    assert float(e[1, 0]) == pytest.approx(torch.cos(torch.tensor(1.0)).item())


def test_misspelt_setting_is_refused():
    cfg = {"class_name": "EDMPrecond", "init_kwargs": {**TEACHER_NETWORK["init_kwargs"], "hiden": 64}}
    with pytest.raises(ConfigError, match="hidden"):
        build_network(cfg)
