"""The model registry's configs: name -> its typed config class (pydantic; no torch here).

Each config class's `name` field is its registry key; `initsweep.config` looks the name up when it
validates a sweep's `model` (`model_config_class`), so a model's keys are validated with the rest of the
sweep config. The builder behind each built-in name is in `initsweep.engine.models.BUILDERS`;
`tests/test_models.py` runs the same checks over every entry.

Your own networks (`UserModelConfig`): `name: import` with a `target` import path, a name given to
`register_model` in this process, or an entry point of an installed package (group `initsweep.models`).
Each is `factory(input_shape, num_classes, **kwargs) -> nn.Module`, imported and called by the engine.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from initsweep.catalog import IMPORT, Registered, check_target, entry_point_targets, import_path
from initsweep.catalog.parametrizations import DEPTH_SCALINGS, PARAMETRIZATIONS

__all__ = [
    "ACTIVATIONS",
    "ENTRY_POINT_GROUP",
    "MAX_DEPTH",
    "MODEL_CONFIGS",
    "REGISTERED_MODELS",
    "Activation",
    "CNNConfig",
    "GPTConfig",
    "MLPConfig",
    "UserModelConfig",
    "ViTConfig",
    "model_config_class",
    "register_model",
]

ACTIVATIONS = ("relu", "tanh", "gelu", "selu", "identity")
Activation = Literal["relu", "tanh", "gelu", "selu", "identity"]
MAX_DEPTH = 1000
"""The most hidden layers `depth` may ask for (each one a layer to build, init and train)."""
_Size = Annotated[int, Field(gt=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True, allow_inf_nan=False)


class _Parametrized(_Strict):
    """The keys every model with a width shares: how its init and lrs move with width
    (`initsweep.catalog.parametrizations`)."""

    name: str  # each model's own Literal; declared here so that `name` comes first
    parametrization: Literal[tuple(PARAMETRIZATIONS)] = "sp"
    """`sp` (every layer as it is) or `mup` (muP: init scale, lrs and attention scale move with width
    relative to `base_width`, where the two agree)."""
    base_width: int | None = Field(default=None, gt=0)
    """The width muP is relative to (where mup trains exactly as sp): tune there, train wider."""

    @model_validator(mode="after")
    def _base_width_for_mup(self) -> _Parametrized:
        if not PARAMETRIZATIONS[self.parametrization].width_free and self.base_width is None:
            raise ValueError(
                f"base_width: parametrization {self.parametrization} needs the width it is relative to "
                "(the width you tune at)"
            )
        return self

    @property
    def model_width(self) -> int:
        """The width a parametrization scales by."""
        return self.width

    def at_width(self, width: int) -> _Parametrized:
        """This model at another width; nothing else changes."""
        return self.model_copy(update={"width": width})

    def base_config(self) -> _Parametrized:
        """This model at its base width: the base shapes a parametrization scales from."""
        return self.at_width(self.base_width or self.model_width)


class MLPConfig(_Parametrized):
    """The founding experiment's net: 784-256-128-10, ReLU, dropout 0.2 after each hidden layer."""

    name: Literal["mlp"] = "mlp"
    hidden: list[_Size] = Field(default=[256, 128], min_length=1)
    """Width of each hidden layer, input side first."""
    depth: int | None = Field(default=None, gt=0, le=MAX_DEPTH)
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

    @property
    def model_width(self) -> int:
        """The widest hidden layer (`width` with `depth`)."""
        return max(self.hidden)

    def at_width(self, width: int) -> MLPConfig:
        """Every hidden layer scaled by width / model_width (the same shape of net, narrower or wider)."""
        hidden = [max(1, round(h * width / self.model_width)) for h in self.hidden]
        return self.model_copy(update={"hidden": hidden, "width": width})


class CNNConfig(_Strict):
    """A small conv net for 28x28 images, so that schemes are tried on conv weights too."""

    name: Literal["cnn"] = "cnn"
    channels: list[_Size] = Field(default=[16, 32], min_length=1)
    """Channels of each 3x3 conv block (conv, activation, 2x2 max-pool)."""
    hidden: int = Field(default=128, gt=0)
    """Width of the dense layer before the classifier."""
    activation: Activation = "relu"
    """The nonlinearity after each conv block and the dense layer."""
    dropout: float = Field(default=0.2, ge=0.0, lt=1.0)
    """Dropout probability after the dense layer's activation; 0 leaves dropout out."""
    parametrization: Literal["sp"] = "sp"
    """Only `sp`: muP here scales Linear, Embedding and attention widths, not conv channels."""


class _TransformerConfig(_Parametrized):
    """The keys `gpt` and `vit` share: a stack of `depth` blocks, each multi-head self-attention then an
    MLP, on `width`-wide token vectors (the builders are in `initsweep.engine.transformers`)."""

    name: str  # each model's own Literal; declared here so that `name` comes first, as in the other configs
    width: int = Field(default=128, gt=0)
    """The model width d (d_model): every token vector, embedding and residual stream has d numbers."""
    depth: int = Field(default=4, gt=0, le=MAX_DEPTH)
    """Transformer blocks (each attention then MLP, on the residual stream)."""
    heads: int = Field(default=4, gt=0)
    """Attention heads per block; `width` must divide by it (each head gets width / heads dimensions)."""
    mlp_ratio: float = Field(default=4.0, gt=0, le=64)
    """The MLP's hidden width as a multiple of `width` (round(mlp_ratio * width) units; 4 in GPT-2 and ViT)."""
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Dropout on the embeddings and on each residual branch's output; 0 leaves dropout out. Attention
    probabilities get none (it would draw outside the per-seed masks packed seeds use)."""
    norm: Literal["pre", "post", "none"] = "pre"
    """Where LayerNorm goes: `pre` (GPT-2, ViT: LN on each branch's input, and a final LN), `post` (the
    original Transformer and DeepNet: LN after each residual sum) or `none` (no LayerNorm: T-Fixup's setting)."""
    activation: Activation = "gelu"
    """The MLP's nonlinearity: `auto` gains follow it."""
    residual_scaling: Literal[DEPTH_SCALINGS] = "none"
    """`depth_mup`: every residual branch times 1/sqrt(depth) (Depth-muP), so that an lr can transfer
    across depth; `none`: x + f(x)."""

    @model_validator(mode="after")
    def _heads_divide_width(self) -> _TransformerConfig:
        for key, width in (("width", self.width), ("base_width", self.base_width)):
            if width is not None and width % self.heads:
                raise ValueError(
                    f"heads: {key} {width} does not split into {self.heads} heads "
                    f"({key} must be a multiple of heads; each head gets {key} / heads dimensions)"
                )
        return self

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def mlp_width(self) -> int:
        """The MLP's hidden width: round(mlp_ratio * width), at least 1."""
        return max(1, round(self.mlp_ratio * self.width))


class GPTConfig(_TransformerConfig):
    """A GPT-2-style decoder-only language model: token and learned position embeddings, `depth` causal
    self-attention blocks, a readout to the vocabulary. Its context and vocabulary come from the data:
    token ids (batch, context) -> next-token logits (batch, context, vocab)."""

    name: Literal["gpt"] = "gpt"
    tie_embeddings: bool = False
    """Read out through the token embedding's own matrix (GPT-2 does): one parameter, no separate readout layer."""


class ViTConfig(_TransformerConfig):
    """A Vision Transformer: the image cut into `patch` x `patch` patches, each projected to a token, with
    learned position embeddings; `depth` (non-causal) self-attention blocks; the tokens' mean, then a
    linear classifier: images (batch, channels, height, width) -> logits (batch, classes)."""

    name: Literal["vit"] = "vit"
    patch: int = Field(default=7, gt=0)
    """The side of each square patch in pixels; it must divide the images' height and width (7: 16 patches of 28x28)."""

    def patch_problem(self, input_shape: tuple[int, ...]) -> str | None:
        """The one-line problem (naming `model.patch`) with images of `input_shape` (channels, height,
        width), or None when the patches tile them."""
        if len(input_shape) != 3:
            return f"model.name: vit takes images (channels, height, width); these inputs are {tuple(input_shape)}"
        _, height, width = input_shape
        if height % self.patch or width % self.patch:
            side = math.gcd(height, width)
            fits = [str(p) for p in range(1, side + 1) if side % p == 0]
            return (
                f"model.patch: {self.patch} does not divide the {height}x{width} images into whole patches "
                f"(patch sizes that do: {', '.join(fits)})"
            )
        return None


MODEL_CONFIGS: dict[str, type[_Strict]] = {"mlp": MLPConfig, "cnn": CNNConfig, "gpt": GPTConfig, "vit": ViTConfig}
"""The built-in models (your own are `UserModelConfig`s or registered config classes)."""
ENTRY_POINT_GROUP = "initsweep.models"
REGISTERED_MODELS: dict[str, Registered] = {}
"""Models given to `register_model` in this process: name -> factory, its import path, its config class."""


class UserModelConfig(_Strict):
    """A network from your code: `factory(input_shape, num_classes, **kwargs) -> nn.Module`, with
    `input_shape` one input's shape (no batch dimension)."""

    name: str = IMPORT
    """`import` (the factory is `target`), a registered name, an entry point's name, or any name with a `target`."""
    target: str | None = None
    """The factory as `package.module:function`, imported from the working folder or the installed packages."""
    kwargs: dict[str, Any] = {}
    """Keyword arguments for the factory (YAML values)."""
    activation: Activation = "relu"
    """Your network's nonlinearity: `auto` gains follow it (as for the built-in models)."""
    parametrization: Literal[tuple(PARAMETRIZATIONS)] = "sp"
    """`sp`, or `mup`: each parameter's width dimensions are told apart by comparing its shape with the
    same parameter built with `base_kwargs` (as the `mup` package's `set_base_shapes` does)."""
    base_kwargs: dict[str, Any] = {}
    """Under mup: the keyword arguments that build your model at its base width, over `kwargs`
    (`{width: 64}`); mup equals sp where `kwargs` give the same shapes."""

    @field_validator("target")
    @classmethod
    def _import_path(cls, target: str | None) -> str | None:
        return None if target is None else check_target(target)

    @model_validator(mode="after")
    def _import_needs_target(self) -> UserModelConfig:
        if self.target is None and self.name == IMPORT:
            raise ValueError("target: missing (name: import needs target: package.module:factory)")
        if self.target is None and self.name not in REGISTERED_MODELS:
            raise ValueError(f"name: {self.name!r} is not registered in this process and has no target")
        if not PARAMETRIZATIONS[self.parametrization].width_free and not self.base_kwargs:
            raise ValueError(
                f"base_kwargs: parametrization {self.parametrization} needs the kwargs that build your model "
                "at its base width (e.g. {width: 64})"
            )
        if self.base_kwargs and PARAMETRIZATIONS[self.parametrization].width_free:
            raise ValueError("base_kwargs: only used with parametrization mup")
        return self

    def base_config(self) -> UserModelConfig:
        """This model as `base_kwargs` build it: the base shapes a parametrization scales from."""
        return self.model_copy(update={"kwargs": self.kwargs | self.base_kwargs, "base_kwargs": {}})


def register_model(name: str, factory: Callable[..., Any], config_class: type[BaseModel] | None = None) -> None:
    """Make `model: {name: NAME, ...}` build `factory(input_shape, num_classes, **kwargs)`.

    Without `config_class` the model takes `kwargs` (and `activation`), as `name: import` does. A
    `config_class` is a pydantic model with a field `name: Literal[NAME]` and an `activation` field (for
    `auto` gains); its other fields are validated with the sweep config and passed as keyword arguments.
    Ray workers are other processes: they find the factory by its import path (a module-level function),
    and a config class's module is imported there when the sweep arrives, so register at module level.
    """
    if not isinstance(name, str) or not name or name in MODEL_CONFIGS or name == IMPORT:
        raise ValueError(f"register_model: {name!r} is a built-in model name or not a name")
    if not callable(factory):
        raise TypeError(f"register_model: factory {factory!r} is not callable")
    if config_class is not None:
        fields = getattr(config_class, "model_fields", None)
        if not (isinstance(config_class, type) and issubclass(config_class, BaseModel)):
            raise TypeError(f"register_model: config_class {config_class!r} is not a pydantic model")
        if "name" not in fields or typing.get_args(fields["name"].annotation) != (name,):
            raise TypeError(f"register_model: {config_class.__name__} needs a field name: Literal[{name!r}]")
        if "activation" not in fields:
            raise TypeError(f"register_model: {config_class.__name__} needs an activation field (for auto gains)")
    REGISTERED_MODELS[name] = Registered(factory, import_path(factory), config_class)


def model_config_class(name: Any, raw: dict) -> tuple[type[BaseModel], dict]:
    """The config class that validates a `model` section named `name`, and the section to validate: a
    registered or entry-point name without a config class gets its factory's import path as `target`
    (so a fresh process, a Ray worker, finds it). `ValueError` for an unknown name."""
    if isinstance(name, str) and name in MODEL_CONFIGS:
        return MODEL_CONFIGS[name], raw
    registered = REGISTERED_MODELS.get(name) if isinstance(name, str) else None
    if registered is not None and registered.config_class is not None:
        return registered.config_class, raw
    if registered is not None:
        return UserModelConfig, ({"target": registered.target} | raw) if registered.target else raw
    if name == IMPORT or (isinstance(name, str) and "target" in raw):
        return UserModelConfig, raw
    entry = entry_point_targets(ENTRY_POINT_GROUP).get(name) if isinstance(name, str) else None
    if entry is not None:
        return UserModelConfig, {"target": entry} | raw
    known = [*MODEL_CONFIGS, IMPORT, *REGISTERED_MODELS, *entry_point_targets(ENTRY_POINT_GROUP)]
    raise ValueError(
        f"input tag {str(name)!r} found using 'name' does not match any of the expected tags: "
        + ", ".join(repr(k) for k in dict.fromkeys(known))
    )
