"""The model registry's configs: name -> its typed config class (pydantic; no torch here).

Each config class's `name` field is its registry key; `initsweep.config` joins them into one tagged union,
so a model's keys are validated with the rest of the sweep config. The builder behind each name is in
`initsweep.engine.models.BUILDERS`; `tests/test_models.py` runs the same checks over every entry.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["ACTIVATIONS", "MODEL_CONFIGS", "Activation", "CNNConfig", "MLPConfig"]

ACTIVATIONS = ("relu", "tanh", "gelu", "selu", "identity")
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


MODEL_CONFIGS: dict[str, type[_Strict]] = {"mlp": MLPConfig, "cnn": CNNConfig}
