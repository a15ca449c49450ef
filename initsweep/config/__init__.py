"""Typed sweep and trial configs, validated in one place: YAML (plus `--set` overrides) in, one clear
error out.

A sweep config is the shared settings (`data`, `model`, `train`, `init`), the replicate `seeds`, and the
`schemes` rows, optionally crossed with `grid` axes over any shared key (`model.depth: [2, 4, 8]`).
Each row and axis combination becomes one `TrialConfig`: one scheme with its parameters and settings,
trained on every seed. Every error is a `ConfigError` whose message is one line: the dotted key path,
then the problem.

One module per concern (`errors` < `base` < the sections < `sweep` < `loading`, no circles); import from
here, the one public surface.
"""

from __future__ import annotations

from initsweep.config.base import MAX_SEARCH_SEED, MAX_SEED, check_seeds
from initsweep.config.coordcheck import CoordCheckConfig
from initsweep.config.data import DATA_CHECKED, DataConfig, window_count
from initsweep.config.errors import ConfigError, shown
from initsweep.config.init import (
    DEFAULT_LAYER_TYPES,
    LAYER_TYPES,
    InitConfig,
    LayersConfig,
    LayerType,
    OverrideRule,
    SchemeRow,
    resolve_scheme,
)
from initsweep.config.loading import MAX_VALUES, apply_override, load_config, parse_config
from initsweep.config.model import ModelConfig
from initsweep.config.paths import set_path
from initsweep.config.report import ObjectiveConfig, ReferenceConfig, ReportConfig
from initsweep.config.resources import ResourcesConfig, SchedulerConfig
from initsweep.config.search import TUNABLE, SearchConfig, TuneRange, TuningConfig, check_settings, range_ends
from initsweep.config.sweep import DERIVED, GRID_SECTIONS, MAX_GRID_TRIALS, SweepConfig, TrialConfig, axis_label
from initsweep.config.train import TrainConfig

__all__ = [
    "DATA_CHECKED",
    "DEFAULT_LAYER_TYPES",
    "DERIVED",
    "GRID_SECTIONS",
    "LAYER_TYPES",
    "MAX_GRID_TRIALS",
    "MAX_SEARCH_SEED",
    "MAX_SEED",
    "MAX_VALUES",
    "TUNABLE",
    "ConfigError",
    "CoordCheckConfig",
    "DataConfig",
    "InitConfig",
    "LayerType",
    "LayersConfig",
    "ModelConfig",
    "ObjectiveConfig",
    "OverrideRule",
    "ReferenceConfig",
    "ReportConfig",
    "ResourcesConfig",
    "SchedulerConfig",
    "SchemeRow",
    "SearchConfig",
    "SweepConfig",
    "TrainConfig",
    "TrialConfig",
    "TuneRange",
    "TuningConfig",
    "apply_override",
    "axis_label",
    "check_seeds",
    "check_settings",
    "load_config",
    "parse_config",
    "range_ends",
    "resolve_scheme",
    "set_path",
    "shown",
    "window_count",
]
