"""The model registry: name -> `ModelSpec` (its typed config and its builder).

Each config class is a pydantic model whose `name` field is the registry key; `initsweep.config` joins
them into one tagged union, so a model's keys are validated with the rest of the sweep config.
Add a model: a config class, a builder, one `ModelSpec` in `MODELS`; `tests/test_models.py` runs
the same checks over every entry.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

__all__ = ["ACTIVATIONS", "MODELS", "CNNConfig", "MLPConfig", "ModelSpec", "build_model"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "selu": nn.SELU,
    "identity": nn.Identity,
}
Activation = Literal["relu", "tanh", "gelu", "selu", "identity"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class MLPConfig(_Strict):
    """The founding experiment's net: 784-256-128-10, ReLU, dropout 0.2 after each hidden layer."""

    name: Literal["mlp"] = "mlp"
    hidden: list[int] = Field(default=[256, 128], min_length=1)
    """Width of each hidden layer, input side first."""
    depth: int | None = Field(default=None, gt=0)
    """Or this many hidden layers, each `width` units wide (for depth studies); sets `hidden`."""
    width: int = Field(default=256, gt=0)
    """The width of each hidden layer when `depth` is given (ignored without it)."""
    activation: Activation = "relu"
    """The nonlinearity after each hidden layer."""
    dropout: float = Field(default=0.2, ge=0.0, lt=1.0)
    """Dropout probability after each hidden activation; 0 leaves dropout out."""

    @model_validator(mode="after")
    def _depth_sets_hidden(self) -> MLPConfig:
        if self.depth is None:  # width alone changes nothing: hidden lists the widths
            return self
        if "hidden" in self.model_fields_set and self.hidden != [self.width] * self.depth:
            raise ValueError("depth: give depth and width, or hidden, not both")
        object.__setattr__(self, "hidden", [self.width] * self.depth)
        return self


class CNNConfig(_Strict):
    """A small conv net for 28x28 images, so that schemes are tried on conv weights too."""

    name: Literal["cnn"] = "cnn"
    channels: list[int] = Field(default=[16, 32], min_length=1)
    """Channels of each 3x3 conv block (conv, activation, 2x2 max-pool)."""
    hidden: int = Field(default=128, gt=0)
    """Width of the dense layer before the classifier."""
    activation: Activation = "relu"
    """The nonlinearity after each conv block and the dense layer."""
    dropout: float = Field(default=0.2, ge=0.0, lt=1.0)
    """Dropout probability after the dense layer's activation; 0 leaves dropout out."""


def _activation_dropout(activation: str, dropout: float) -> list[nn.Module]:
    return [ACTIVATIONS[activation]()] + ([nn.Dropout(dropout)] if dropout > 0 else [])


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
        layers += [nn.Conv2d(channels, c, 3, padding=1), ACTIVATIONS[cfg.activation](), nn.MaxPool2d(2)]
        channels, height, width = c, height // 2, width // 2
    return nn.Sequential(
        *layers,
        nn.Flatten(),
        nn.Linear(channels * height * width, cfg.hidden),
        *_activation_dropout(cfg.activation, cfg.dropout),
        nn.Linear(cfg.hidden, num_classes),
    )


@dataclass(frozen=True)
class ModelSpec:
    config: type[_Strict]
    build: Callable[..., nn.Module]
    """`build(cfg, input_shape, num_classes) -> nn.Module`, weights left for a scheme to set."""


MODELS: dict[str, ModelSpec] = {
    "mlp": ModelSpec(MLPConfig, build_mlp),
    "cnn": ModelSpec(CNNConfig, build_cnn),
}


def build_model(cfg: MLPConfig | CNNConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return MODELS[cfg.name].build(cfg, input_shape, num_classes)
