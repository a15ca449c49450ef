"""The model builders: name -> `build(cfg, input_shape, num_classes) -> nn.Module`.

Each name's typed config is in `initsweep.catalog.models`. Add a model: a config class there, a builder
here; `tests/test_models.py` runs the same checks over every entry.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import nn

from initsweep.catalog.models import CNNConfig, MLPConfig

__all__ = ["ACTIVATION_MODULES", "BUILDERS", "build_model"]

ACTIVATION_MODULES: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "selu": nn.SELU,
    "identity": nn.Identity,
}


def _activation_dropout(activation: str, dropout: float) -> list[nn.Module]:
    return [ACTIVATION_MODULES[activation]()] + ([nn.Dropout(dropout)] if dropout > 0 else [])


def build_mlp(cfg: MLPConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    for h in cfg.hidden:
        layers += [nn.Linear(width, h), *_activation_dropout(cfg.activation, cfg.dropout)]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, num_classes))


def build_cnn(cfg: CNNConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    channels, height, width = input_shape
    layers: list[nn.Module] = []
    for c in cfg.channels:
        layers += [nn.Conv2d(channels, c, 3, padding=1), ACTIVATION_MODULES[cfg.activation](), nn.MaxPool2d(2)]
        channels, height, width = c, height // 2, width // 2
    return nn.Sequential(
        *layers,
        nn.Flatten(),
        nn.Linear(channels * height * width, cfg.hidden),
        *_activation_dropout(cfg.activation, cfg.dropout),
        nn.Linear(cfg.hidden, num_classes),
    )


BUILDERS: dict[str, Callable[..., nn.Module]] = {"mlp": build_mlp, "cnn": build_cnn}
"""`build(cfg, input_shape, num_classes) -> nn.Module`, weights left for a scheme to set."""


def build_model(cfg, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return BUILDERS[cfg.name](cfg, input_shape, num_classes)
