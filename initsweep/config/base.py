"""What every section shares: the strict base model, and the seed bounds and check that several take."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from initsweep.config.errors import shown

MAX_SEED = 2**63 - 1
"""The largest replicate or split seed: an int64, as torch's generators and NumPy's SeedSequence take it."""
MAX_SEARCH_SEED = 2**32 - 1
"""The largest search seed: Optuna's samplers seed a NumPy RandomState, which takes 32 bits."""


class _Strict(BaseModel):
    # Attribute docstrings become field descriptions: the README's config reference is generated from them.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True, allow_inf_nan=False)


def check_seeds(seeds: list[int]) -> list[int]:
    """Replicate seeds: distinct, and in the range every random stream accepts."""
    dup = sorted({s for s in seeds if seeds.count(s) > 1})
    if dup:
        raise ValueError(f"seed {shown(dup[0])} appears twice; seeds are distinct replicates")
    bad = next((s for s in seeds if not 0 <= s <= MAX_SEED), None)
    if bad is not None:
        raise ValueError(f"seeds must be >= 0 and <= {MAX_SEED} (2**63 - 1) (got {shown(bad)})")
    return seeds
