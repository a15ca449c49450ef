"""The `coord_check` section: which widths, parametrizations and steps `sweeps/coord_check.py` trains, to see
whether each layer's activations keep their size as the network widens (muP's coord check)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from initsweep.catalog.parametrizations import PARAMETRIZATIONS
from initsweep.config.base import _Strict
from initsweep.config.errors import shown


class CoordCheckConfig(_Strict):
    """A coord check: the sweep's first `schemes` row on its `seeds`, at each width under each parametrization."""

    widths: list[int] = Field(min_length=2)
    """The `model.width` values to train at (distinct, positive; sorted ascending): the figure's x axis."""
    steps: int = Field(default=10, gt=0)
    """Training steps per model; step 1 is measured before any update (as the `mup` package counts)."""
    parametrizations: list[Literal[tuple(PARAMETRIZATIONS)]] = Field(default=["sp", "mup"], min_length=1)
    """The `model.parametrization` values compared: one row of panels each."""

    @field_validator("widths")
    @classmethod
    def _distinct_positive(cls, widths: list[int]) -> list[int]:
        bad = next((w for w in widths if w <= 0), None)
        if bad is not None:
            raise ValueError(f"every width must be positive (got {shown(bad)})")
        dup = sorted({w for w in widths if widths.count(w) > 1})
        if dup:
            raise ValueError(f"width {dup[0]} appears twice")
        return sorted(widths)

    @field_validator("parametrizations")
    @classmethod
    def _distinct_names(cls, names: list[str]) -> list[str]:
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"{dup[0]} appears twice")
        return names
