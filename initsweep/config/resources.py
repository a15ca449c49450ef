"""The `resources` and `scheduler` sections: what a trial holds on Ray, and when Tune stops one early."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from initsweep.config.base import _Strict


class ResourcesConfig(_Strict):
    cpus_per_trial: float = Field(default=1.0, gt=0.0)
    """CPUs a trial holds; it trains with that many torch threads (at least one)."""
    gpus_per_trial: float = Field(default=0.0, ge=0.0)
    """GPUs a trial holds (fractions share a GPU); a trial holding one trains on CUDA."""
    max_concurrent: int | None = Field(default=None, gt=0)
    """Trials running at once; default: as many as the cluster's resources allow."""
    reuse_actors: bool = True
    """Run the next trial in a finished trial's process (under 1 s to start instead of ~12 s)."""
    max_failures: int = Field(default=2, ge=-1)
    """Retries of a failed trial (an error, a lost node), each from its last epoch's checkpoint; -1: no limit."""
    memory_gb_per_trial: float | None = Field(default=None, gt=0.0)
    """Memory a trial reserves, in GiB (Ray's `memory` resource: placement only, not a limit); default: none."""
    custom: dict[str, Annotated[float, Field(gt=0.0)]] = Field(default_factory=dict)
    """Custom Ray resources a trial holds, e.g. {"accelerator_type:H100": 1} (a node declares its own)."""
    split_tail: bool = True
    """A plain fifo grid: split each cell of the last, partial round into seed shards across the slots that
    would idle (9 cells of 5 seeds on 2 slots: the ninth as 3 + 2 seeds), merged back into one trial before
    it is printed or recorded. A shard's seeds train as in the whole cell up to float rounding (a batched
    kernel's reduction order follows the pack), so a tail cell's metrics move in their last digits only,
    with the cluster's slot count; false keeps every cell whole, bit for bit the same on any cluster."""
    stall_warning_s: float = Field(default=60.0, gt=0.0)
    """Seconds with trials pending and none running or started before one line says what they wait for."""


class SchedulerConfig(_Strict):
    kind: Literal["fifo", "asha"] = "fifo"
    """fifo runs every trial to the end; asha stops poor trials early (by the objective, per epoch)."""
    grace_period: int = Field(default=1, gt=0)
    """Epochs every trial runs before ASHA may stop it."""
    reduction_factor: float = Field(default=2.0, gt=1.0)
    """ASHA keeps the best 1/factor of the trials at each rung."""

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, raw: Any) -> Any:
        return {"kind": raw} if isinstance(raw, str) else raw
