"""initsweep: which weight initialization trains a network best, across replicate seeds.

`run_sweep(config)` runs a sweep and `load_results(tracking_uri, sweep)` reads one back from MLflow; both
return a `SweepResults` with `.to_dataframe()` and `.summary()` (`initsweep.api`).

Library users add their own networks and datasets here (`register_model`, `register_dataset`); a sweep
YAML can also name them by import path (`target: "package.module:factory"`), and an installed package by
entry points (groups `initsweep.models`, `initsweep.datasets`). Importing this package loads no torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SweepResults", "load_results", "register_dataset", "register_model", "run_sweep"]
_API = ("SweepResults", "load_results", "run_sweep")


def __getattr__(name: str) -> Any:
    """The API on first use: `import initsweep` stays light (no pandas, Ray or MLflow until then)."""
    if name in _API:
        from initsweep import api

        return getattr(api, name)
    raise AttributeError(f"module 'initsweep' has no attribute {name!r}")


def register_model(name: str, factory: Any, config_class: Any = None) -> None:
    """`model: {name: NAME, ...}` builds `factory(input_shape, num_classes, **kwargs)` (an `nn.Module`).

    See `initsweep.catalog.models.register_model`."""
    from initsweep.catalog.models import register_model as register

    register(name, factory, config_class)


def register_dataset(name: str, loader: Any) -> None:
    """`data: {dataset: NAME, kwargs: {...}}` loads `loader(**kwargs) -> (x_train, y_train, x_test, y_test)`.

    See `initsweep.catalog.datasets.register_dataset`."""
    from initsweep.catalog.datasets import register_dataset as register

    register(name, loader)
