"""A fair comparison in one Ray Tune sweep: stage 1 tries each row's candidate settings on the tuning
seeds, stage 2 runs each row at the candidate it chose on the evaluation seeds.

Behind Tune's public `Searcher` API: Tune asks for the next trial, and gets a row's stage-2 trial as soon
as all of that row's candidates have reported, else the next candidate, else "not now". Listed values are
tried in order; a range is drawn by a per-row Optuna study (one candidate of a row at a time, so a seeded
study sees the same results whatever the timing). Tune saves this searcher's state with its own, so a
resumed sweep carries on between the stages.

A suggestion carries only the cell, the stage and the tuned values (a `row.PARAM` among them, drawn like
any other key); `SweepConfig.trial` makes the trial from them, and adds `tune.confirm` (a larger width, say)
to a stage-2 trial alone, so every cell is chosen at the same settings with the same `n_trials` budget.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import optuna
from ray.tune.search import Searcher

from initsweep.config import SweepConfig, TuneRange
from initsweep.results import rank_key
from initsweep.sweep.search import PickledSearcher
from initsweep.sweep.space import grid_cells

__all__ = ["StagedSearch"]


@dataclass
class _Cell:
    """One row under one grid combination: its candidates' objectives and, once they are in, its choice."""

    cell: dict[str, Any]
    scores: dict[int, tuple[bool, float]] = field(default_factory=dict)
    """Candidate index -> (diverged, objective over the tuning seeds); a failed candidate is absent."""
    told: set[int] = field(default_factory=set)
    values: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Candidate index -> its tuned values, for every candidate suggested so far."""
    numbers: dict[int, int] = field(default_factory=dict)
    """Candidate index -> its Optuna trial number (ranges only)."""
    evaluated: bool = False


class StagedSearch(PickledSearcher):
    """Stage 1 (candidates on the tuning seeds) and stage 2 (each row at its choice on the evaluation
    seeds) of a tuned grid sweep."""

    def __init__(self, sweep: SweepConfig, *, study: str, storage: str | optuna.storages.BaseStorage, metric: str):
        super().__init__(metric=metric, mode=sweep.objective.mode)
        self.tune = sweep.tune
        self.listed = self.tune.candidates()
        self.cells = [_Cell(c) for c in grid_cells(sweep)]
        self.n_rows = len(sweep.schemes)
        self.study_prefix, self.storage = study, storage
        self.trials: dict[str, tuple[int, int | None]] = {}
        """Tune trial id -> (cell index, candidate index; None for the cell's stage-2 trial)."""
        self._studies: dict[int, optuna.Study] = {}

    def __getstate__(self) -> dict:
        return self.__dict__ | {"_studies": {}}

    def _study(self, index: int) -> optuna.Study:
        """The Optuna study that draws cell `index`'s candidates (ranges only). Its sampler is seeded by the
        cell's row, not the cell: one row under every grid value (sp and mup, say) is tuned from the same
        seeded proposals, so a grid value never wins stage 1 by the luck of its draws."""
        if index not in self._studies:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                seed = self.tune.seed + index % self.n_rows  # cells run axes-major, rows inner (grid_cells)
                sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True)
            self._studies[index] = optuna.create_study(
                study_name=f"{self.study_prefix}-cell{index}",
                storage=self.storage,
                sampler=sampler,
                direction="maximize" if self.mode == "max" else "minimize",
                load_if_exists=True,
            )
        return self._studies[index]

    def chosen(self, index: int) -> dict[str, Any] | None:
        """The candidate values cell `index` chose: the best mean objective over the tuning seeds (a
        candidate with a diverged seed never wins); None until every candidate has reported."""
        c = self.cells[index]
        if len(c.told) < self.tune.n_candidates or not c.scores:
            return None
        best = min(sorted(c.scores), key=lambda k: rank_key(self.mode, c.scores[k][1], c.scores[k][0]))  # ties: first
        return c.values[best]

    def suggest(self, trial_id: str) -> dict | None:
        for i, c in enumerate(self.cells):  # stage 2 first: a row is judged as soon as it has chosen
            values = None if c.evaluated else self.chosen(i)
            if values is not None:
                c.evaluated = True
                self.trials[trial_id] = (i, None)
                return {"cell": c.cell, "stage": "eval", "tuned": values}
        for i, c in enumerate(self.cells):
            k = self._next_candidate(c)
            if k is None:
                continue
            c.values[k] = self.listed[k] if self.listed is not None else self._draw(i, k)
            self.trials[trial_id] = (i, k)
            return {"cell": c.cell, "stage": "tune", "tuned": c.values[k]}
        if all(c.evaluated or (len(c.told) == self.tune.n_candidates and not c.scores) for c in self.cells):
            return Searcher.FINISHED
        return None

    def _next_candidate(self, c: _Cell) -> int | None:
        """The cell's next candidate to suggest: the first listed one not yet suggested, or the next draw
        of a range once the last one has reported."""
        if self.listed is not None:
            return next((k for k in range(len(self.listed)) if k not in c.values), None)
        if len(c.values) >= self.tune.n_candidates or len(c.values) > len(c.told):
            return None
        return len(c.values)

    def _draw(self, index: int, k: int) -> dict[str, Any]:
        trial = self._study(index).ask()
        self.cells[index].numbers[k] = trial.number
        values = {}
        for key, spec in self.tune.params.items():
            if isinstance(spec, TuneRange):
                values[key] = trial.suggest_float(key, spec.low, spec.high, log=spec.log)
            else:
                values[key] = trial.suggest_categorical(key, spec)
        return values

    def _locate(self, trial_id: str, result: dict | None) -> tuple[int, int | None] | None:
        """(cell, candidate) of a Tune trial; one this state never suggested (restored after a killed
        driver: Tune saves its trials a moment before this searcher) is found by its config."""
        if trial_id in self.trials:
            return self.trials[trial_id]
        config = (result or {}).get("config", {})
        index = next((i for i, c in enumerate(self.cells) if c.cell == config.get("cell")), None)
        if index is None:
            return None
        c = self.cells[index]
        if config.get("stage") == "eval":
            c.evaluated = True
            return index, None
        tuned = config.get("tuned", {})
        k = next((k for k, v in c.values.items() if v == tuned), None)
        if k is None:
            k = self.listed.index(tuned) if self.listed is not None and tuned in self.listed else len(c.values)
            c.values[k] = tuned
        self.trials[trial_id] = (index, k)
        return index, k

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        located = self._locate(trial_id, result)
        if located is None:
            return
        index, k = located
        c = self.cells[index]
        if k is None or k in c.told:
            return
        c.told.add(k)
        ok = not error and result is not None and self.metric in result
        if ok:
            c.scores[k] = (bool(result.get("diverged")), float(result[self.metric]))
        if k in c.numbers:
            study, number = self._study(index), c.numbers[k]
            if not study.trials[number].state.is_finished():
                if ok:
                    study.tell(number, c.scores[k][1])
                else:
                    study.tell(number, state=optuna.trial.TrialState.FAIL)
