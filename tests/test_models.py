"""The same checks for every registered model (timm's habit): shape, finite output, all params learn."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from initsweep.catalog.models import ACTIVATIONS, MODEL_CONFIGS, CNNConfig, MLPConfig
from initsweep.engine.models import ACTIVATION_MODULES, BUILDERS, build_model


def test_every_model_config_has_a_builder():
    assert set(MODEL_CONFIGS) == set(BUILDERS)
    assert set(ACTIVATIONS) == set(ACTIVATION_MODULES)


EXAMPLES = {"gpt": ((16,), lambda: torch.randint(0, 10, (8, 16)), (8, 16, 10))}
"""A model's example input when it is not 28x28 images: (input shape, a batch, the output's shape); the
gpt's inputs are windows of 16 token ids over a 10-token vocabulary."""
IMAGES = ((1, 28, 28), lambda: torch.rand(8, 1, 28, 28), (8, 10))


@pytest.mark.parametrize("name", list(MODEL_CONFIGS))
def test_every_model_forwards_and_every_parameter_gets_a_gradient(name):
    input_shape, batch, output_shape = EXAMPLES.get(name, IMAGES)
    model = build_model(MODEL_CONFIGS[name](), input_shape, 10)
    out = model(batch())
    assert out.shape == output_shape and torch.isfinite(out).all()
    targets = torch.arange(out[..., 0].numel()) % 10
    nn.functional.cross_entropy(out.reshape(-1, 10), targets).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


def test_mlp_is_the_founding_net_by_default():
    model = build_model(MLPConfig(), (1, 28, 28), 10)
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Flatten", "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    shapes = [tuple(m.weight.shape) for m in model if isinstance(m, nn.Linear)]
    assert shapes == [(256, 784), (128, 256), (10, 128)]
    assert all(m.p == 0.2 for m in model if isinstance(m, nn.Dropout))


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_mlp_options(activation):
    model = build_model(MLPConfig(hidden=[64, 32, 16], activation=activation, dropout=0.0), (1, 28, 28), 10)
    assert not any(isinstance(m, nn.Dropout) for m in model)
    assert sum(isinstance(m, ACTIVATION_MODULES[activation]) for m in model) == 3
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_cnn_has_conv_layers_for_schemes_to_initialize():
    model = build_model(CNNConfig(channels=[8, 16, 32]), (1, 28, 28), 10)
    convs = [m for m in model if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 16, 32]
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_mlp_depth_and_width_stack_equal_hidden_layers(activation):
    deep = MLPConfig(depth=8, width=64, activation=activation, dropout=0.0)
    assert deep.hidden == [64] * 8
    model = build_model(deep, (1, 28, 28), 10)
    shapes = [tuple(m.weight.shape) for m in model if isinstance(m, nn.Linear)]
    assert shapes == [(64, 784)] + [(64, 64)] * 7 + [(10, 64)]
    assert [type(m) for m in model][2:-1:2] == [ACTIVATION_MODULES[activation]] * 8  # after each hidden Linear
    assert torch.isfinite(model(torch.rand(2, 1, 28, 28))).all()
    assert MLPConfig.model_validate(deep.model_dump()) == deep  # a dumped config (MLflow, Tune) reloads


@pytest.mark.parametrize(
    "raw,problem",
    [
        ({"depth": 4, "hidden": [32, 32]}, "give depth and width, or hidden, not both"),
        ({"depth": 0}, "greater than 0"),
    ],
)
def test_mlp_depth_errors_name_the_key(raw, problem):
    with pytest.raises(ValueError, match=problem):
        MLPConfig.model_validate(raw)
