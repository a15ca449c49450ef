"""Optuna behind Ray Tune's public `Searcher` API: a define-by-run space, the sampler, and a searcher that
draws the same trials for the same seed whatever the timing, and resumes after a killed driver.

The space is built from the scheme registry: a categorical scheme and, conditional on it, that scheme's
parameters (named `scheme.param`, so each scheme's parameters are their own dimensions), plus the search's
`params`, settings such as `init.bias_std` under their dotted keys.
"""

from __future__ import annotations

import pickle
import warnings
from typing import Any

import optuna
from ray.tune.search import Searcher

from initsweep.catalog.schemes import Range
from initsweep.config import SearchConfig
from initsweep.sweep.storage import write_whole

__all__ = ["BatchedOptunaSearch", "OptunaSpace", "PickledSearcher", "make_sampler", "study_name"]


def study_name(sweep_name: str, sweep_id: str) -> str:
    """The Optuna study of one sweep (in its storage, beside other sweeps' studies)."""
    return f"{sweep_name}-{sweep_id}"


class OptunaSpace:
    """A define-by-run space (a picklable callable). Fixed parameters come back as constants, so a trial's
    config alone says what it trained."""

    def __init__(self, search: SearchConfig):
        self.space = search.space()
        self.settings = search.params

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        for key, spec in self.settings.items():  # settings first: the same dimensions whatever the scheme
            if isinstance(spec, list):
                trial.suggest_categorical(key, spec)
            else:
                trial.suggest_float(key, spec.low, spec.high, log=spec.log)
        scheme = trial.suggest_categorical("scheme", list(self.space))
        fixed = {}
        for param, r in self.space[scheme].items():
            key = f"{scheme}.{param}"
            if not isinstance(r, Range):
                fixed[key] = r
            elif r.choices:
                trial.suggest_categorical(key, list(r.choices))
            elif r.integer:
                trial.suggest_int(key, int(r.low), int(r.high), log=r.log)
            else:
                trial.suggest_float(key, r.low, r.high, log=r.log)
        return fixed


def make_sampler(search: SearchConfig) -> optuna.samplers.BaseSampler:
    """TPE models each scheme's parameters jointly (`group`), which suits a conditional space."""
    with warnings.catch_warnings():  # QMC and TPE's multivariate/group options are "experimental"
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if search.sampler == "random":
            return optuna.samplers.RandomSampler(seed=search.seed)
        if search.sampler == "qmc":
            return optuna.samplers.QMCSampler(seed=search.seed, warn_independent_sampling=False)
        return optuna.samplers.TPESampler(seed=search.seed, multivariate=True, group=True)


class PickledSearcher(Searcher):
    """A Tune searcher whose state is its attributes, less what `__getstate__` leaves out (live studies);
    Tune saves it with the experiment and a resumed sweep restores it."""

    def save(self, checkpoint_path: str) -> None:
        """Written whole, so a driver killed mid-write leaves the last state whole."""
        write_whole(checkpoint_path, pickle.dumps(self.__getstate__()))

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))


class BatchedOptunaSearch(PickledSearcher):
    """Optuna's ask-and-tell, a batch at a time.

    Reproducible: the next batch of `batch_size` trials is asked only once every trial of the previous one
    has been told, so a seeded sampler sees the same study at each ask whichever result came back first
    (Ray's OptunaSearch asks as soon as a slot frees, so its draws depend on timing).
    Resumable: the study lives in `storage`; Tune saves this searcher's state (Tune trial id -> Optuna
    trial number) a moment after it saves its trials, so after a killed driver a restored trial may be
    unknown here: it is matched to its RUNNING Optuna trial by its parameters, and a trial the dead
    driver already told is not told twice.
    """

    def __init__(
        self,
        search: SearchConfig,
        *,
        study: str,
        storage: str | optuna.storages.BaseStorage,
        metric: str,
        mode: str,
        batch_size: int,
    ):
        super().__init__(metric=metric, mode=mode)
        self.space, self.sampler = OptunaSpace(search), make_sampler(search)
        self.study_name, self.storage, self.batch_size = study, storage, batch_size
        self.numbers: dict[str, int] = {}
        """Tune trial id -> Optuna trial number."""
        self.waiting: set[int] = set()
        """Numbers of this batch not told yet."""
        self.asked_in_batch = 0
        self._study: optuna.Study | None = None

    @property
    def study(self) -> optuna.Study:
        if self._study is None:
            self._study = optuna.create_study(
                study_name=self.study_name,
                storage=self.storage,
                sampler=self.sampler,
                direction="maximize" if self.mode == "max" else "minimize",
                load_if_exists=True,
            )
        return self._study

    def __getstate__(self) -> dict:
        return self.__dict__ | {"_study": None}

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        self.batch_size = min(self.batch_size, max_concurrent)
        return True  # batches bound the trials in flight

    def suggest(self, trial_id: str) -> dict | None:
        if self.asked_in_batch >= self.batch_size:
            self.waiting -= {t.number for t in self._trials() if t.state.is_finished()}  # told by a dead driver
            if self.waiting:
                return None  # Tune asks again later
            self.asked_in_batch = 0
        trial = self.study.ask()
        fixed = self.space(trial)
        self.numbers[trial_id] = trial.number
        self.waiting.add(trial.number)
        self.asked_in_batch += 1
        return trial.params | fixed

    def _trials(self, *states: optuna.trial.TrialState) -> list[optuna.trial.FrozenTrial]:
        return self.study.get_trials(deepcopy=False, states=states or None)

    def _number(self, trial_id: str, result: dict | None) -> int | None:
        """The Optuna trial of a Tune trial, matching a trial this state does not know by its parameters."""
        if trial_id not in self.numbers:
            config = (result or {}).get("config", {})
            known = set(self.numbers.values())
            running = self._trials(optuna.trial.TrialState.RUNNING)
            match = next((t for t in running if t.number not in known and t.params.items() <= config.items()), None)
            if match is None:
                return None
            self.numbers[trial_id] = match.number
        return self.numbers[trial_id]

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        number = self._number(trial_id, result)
        if number is None:
            return
        self.waiting.discard(number)
        if self._trials()[number].state.is_finished():
            return
        if error or not result or self.metric not in result:
            self.study.tell(number, state=optuna.trial.TrialState.FAIL)
        else:
            self.study.tell(number, result[self.metric])
