"""MLflow: one parent run per sweep, a nested run per trial, a nested run per seed under each trial.

Everything is written from the driver (one writer, so the default SQLite store never sees "database is
locked") and idempotently: runs are found again by their `sweep_id` / `trial_id` tags, a trial's runs
are written once it has finished, and its run is marked FINISHED last, after its seed runs. A trial
run that is not FINISHED is a partial write (the driver died mid-way): it is deleted and written again.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import requests
import yaml
from filelock import FileLock
from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from initsweep.catalog.schemes import typed_params
from initsweep.config import ConfigError, SchemeRow, SweepConfig, TrialConfig, parse_config
from initsweep.prediction import predict
from initsweep.results import EPOCH_METRICS, TEST_METRICS, DataLineage, SeedResult, TrialResult, aggregate

__all__ = [
    "TIMINGS_ENV",
    "Tracker",
    "TrackingUnavailable",
    "artifact_root",
    "check_tracking_server",
    "default_tracking_uri",
    "find_sweep_run",
    "is_local_uri",
    "mark",
    "masked",
    "read_failures",
    "read_sweep",
    "ui_hint",
]

EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND_TAG = (EXPERIMENT_KIND, "custom_model_development")
"""Tells the MLflow UI the experiment holds training runs: it opens on the runs table, not GenAI traces."""

MAX_BATCH = 900  # MLflow takes at most 1000 entries (metrics, params, tags) per log_batch
MAX_PARAMS = 100  # and at most 100 params

TIMINGS_ENV = "INITSWEEP_TIMINGS"
"""A seam for measuring a sweep's own costs (`bench/overhead.py`): with `INITSWEEP_TIMINGS=PATH` set, the
driver appends one JSON line per point of the sweep it passes to PATH (`mark`); unset, nothing is written."""


def mark(phase: str, t: float | None = None, **extra) -> None:
    """Append `{"phase": phase, "t": UNIX_SECONDS, **extra}` as a line to `$INITSWEEP_TIMINGS`, if set.
    `t`: when it happened (default now). A few microseconds; a no-op without the variable."""
    path = os.environ.get(TIMINGS_ENV)
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"phase": phase, "t": time.time() if t is None else t, **extra}) + "\n")


def _timed(phase: str):
    """`mark(phase, s=SECONDS)` when the decorated call returns or raises: its end and its duration."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                mark(phase, s=round(time.perf_counter() - start, 6))

        return wrapper

    return decorate


class TrackingUnavailable(RuntimeError):
    """The tracking server stopped answering, past MLflow's own retries (about 4 minutes by default,
    `MLFLOW_HTTP_REQUEST_MAX_RETRIES` and `MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR` set them)."""


RESPONSE_CUT_RETRIES = 3
"""Calls again after a response cut off mid-way (the server went away while answering): MLflow retries
only requests that got no answer, and every Tracker write is idempotent, so the call is simply made again
(and MLflow's own retries then wait out the outage). The one write MLflow's retry is not idempotent for,
`create_run`, is undone by `Tracker._drop_retried_creates`."""


def _outage_is_unavailable(method):
    """A Tracker method whose connection failures, once MLflow has given up retrying, raise
    `TrackingUnavailable` (one line naming the server) instead of MLflow's exception."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        for attempt in range(RESPONSE_CUT_RETRIES + 1):
            try:
                return method(self, *args, **kwargs)
            except MlflowException as err:
                cause = err.__cause__ or err.__context__
                if not isinstance(cause, requests.exceptions.RequestException):
                    raise
                cut = isinstance(cause, requests.exceptions.ChunkedEncodingError)
                if cut and attempt < RESPONSE_CUT_RETRIES:
                    continue
                raise TrackingUnavailable(
                    f"--tracking-uri {masked(self.tracking_uri)}: the tracking server stopped answering "
                    f"({type(cause).__name__}, after MLflow's retries)"
                ) from err

    return wrapper


def default_tracking_uri(given: str | None = None) -> str:
    """The store a command uses: the one given, else `$MLFLOW_TRACKING_URI`, else MLflow's own default
    (`sqlite:///mlflow.db` in the working folder), so `initsweep ui` run in the same folder shows the runs."""
    if given:
        return given
    import mlflow

    return os.environ.get("MLFLOW_TRACKING_URI") or mlflow.get_tracking_uri()


def artifact_root(uri: str) -> Path | None:
    """Where artifacts go for an SQLite store: `mlruns/` beside the database file (not in the working
    folder); None for other stores, which have their own rule."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlruns"


def is_local_uri(uri: str) -> bool:
    """A store only this machine can write: a folder or an SQLite file."""
    return urlparse(uri).scheme in ("", "file", "sqlite")


def _host(parts) -> str:
    """host[:port] of a parsed URL, without any credentials."""
    return parts.hostname + (f":{parts.port}" if parts.port else "")


def masked(uri: str) -> str:
    """The URI with any password replaced by ***, for printing and logging."""
    parts = urlparse(uri)
    if not parts.password:
        return uri
    return parts._replace(netloc=f"{parts.username}:***@{_host(parts)}").geturl()


def check_tracking_server(uri: str, timeout: float = 10.0) -> None:
    """Fail in seconds, with one line naming the URI, when an http(s) tracking server does not answer.

    MLflow's client retries a refused connection for minutes, which suits a server that is restarting
    mid-sweep (no write is lost) but not a mistyped URI at start."""
    parts = urlparse(uri)
    if parts.scheme not in ("http", "https"):
        return
    health = parts._replace(netloc=_host(parts), path=parts.path.rstrip("/") + "/health", query="").geturl()
    try:
        urllib.request.urlopen(health, timeout=timeout).close()
    except urllib.error.HTTPError:
        return  # something answers (perhaps asking for credentials): MLflow's own errors say the rest
    except (OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise ConfigError(f"--tracking-uri {masked(uri)}: no MLflow tracking server answers ({reason})") from None


def ui_hint(uri: str, experiment_id: str, run_id: str) -> str:
    """How to see a run: the command that opens the MLflow UI on the store, and the page to open."""
    page = f"#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"
    if urlparse(uri).scheme in ("http", "https"):
        return f"open {masked(uri).rstrip('/')}/{page}"
    return f"initsweep ui --tracking-uri '{uri}', then open http://127.0.0.1:5000/{page}"


def _code_version() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def _flat_params(trial: TrialConfig) -> dict[str, str]:
    """The params a trial run shows: scheme, its parameters, the settings a reader compares (the layers
    the init selects, `init.layers`, and its rules, `init.overrides`), and each grid axis under its own
    key (`model.depth`); the layers by name are in each seed's `init_diagnostics.json`. Mean-field
    theory's prediction for an MLP (`theory.*`) is added by `record_trial`."""
    params = {"scheme": trial.row.scheme, **trial.row.params, "task": trial.task}
    params |= {
        "model": trial.model.name,
        **{f"model.{k}": v for k, v in trial.model.model_dump().items() if k != "name"},
    }
    params |= trial.train.model_dump()
    params |= {f"data.{k}": v for k, v in trial.data.model_dump().items()}
    params |= {"init.bias": trial.init.bias, "init.layers": trial.init.layers.summary(), "n_seeds": len(trial.seeds)}
    if trial.init.bias in ("constant", "normal"):
        key = "bias_value" if trial.init.bias == "constant" else "bias_std"
        params[f"init.{key}"] = getattr(trial.init, key)
    if trial.init.overrides:  # the rules, short: `*.bn2=constant(value=0); fc=pytorch_default`
        params["init.overrides"] = "; ".join(rule.summary() for rule in trial.init.overrides)[:500]
    if trial.init.roles:  # your model's roles by name: `attention.out=*.c_proj; norm=ln_*`
        params["init.roles"] = "; ".join(f"{r}={','.join(g)}" for r, g in trial.init.roles.items())[:500]
    # grid, tuned and stage 2's confirm values under their config keys (`train.lr`, `row.gain`, `model.width`)
    params |= trial.axes | trial.tuned | trial.confirmed
    return {k: str(v) for k, v in params.items()}


def _lr_params(record: TrialResult) -> dict[str, str]:
    """Each param group's lr (`lr.hidden`, ...) where a parametrization gives several; one is `lr`."""
    lrs = record.seeds[0].lrs if record.seeds else {}
    return {} if len(lrs) <= 1 else {f"lr.{group}": f"{lr:g}" for group, lr in lrs.items()}


def _metrics(values: dict[str, float], step: int, ts: int) -> list[Metric]:
    return [Metric(k, float(v), ts, step) for k, v in values.items() if k != "n"]


def _first_use_lock(uri: str):
    """Two sweeps starting at once on one new SQLite file would both create MLflow's tables and the
    experiment; a lock file (in the temp folder, keyed by the database's path) makes them take turns."""
    if not uri.startswith("sqlite:///"):
        return contextlib.nullcontext()
    db = Path(uri.removeprefix("sqlite:///")).resolve()
    key = hashlib.sha256(str(db).encode()).hexdigest()[:16]
    return FileLock(Path(tempfile.gettempdir()) / f"initsweep-mlflow-{key}.lock", timeout=300)


DATASET_SOURCE_TYPE = "local"
"""How MLflow's dataset inputs name a source read from a path (the UI shows the `uri` in the source JSON)."""


class Tracker:
    """Writes a sweep into an MLflow store. Picklable: the client is made on first use."""

    def __init__(self, tracking_uri: str):
        self.tracking_uri = tracking_uri
        self.sweep: SweepConfig | None = None
        self.sweep_id: str | None = None
        self.experiment_id: str | None = None
        self.parent_run_id: str | None = None
        self.lineage: DataLineage | None = None
        self._client: MlflowClient | None = None

    def __getstate__(self) -> dict:
        return self.__dict__ | {"_client": None}

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(self.tracking_uri)
        return self._client

    @_outage_is_unavailable
    def open(self) -> None:
        """Open the store ahead of the first write (a new SQLite store creates its tables: seconds), taking
        turns with another sweep opening the same new file."""
        with _first_use_lock(self.tracking_uri):
            self.client.search_experiments(max_results=1)

    def _experiment(self) -> str:
        exp = self.client.get_experiment_by_name(self.sweep.name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            if EXPERIMENT_KIND not in exp.tags:
                self.client.set_experiment_tag(exp.experiment_id, *EXPERIMENT_KIND_TAG)
            return exp.experiment_id
        root = artifact_root(self.tracking_uri)
        location = root.as_uri() if root else None
        try:
            return self.client.create_experiment(
                self.sweep.name, artifact_location=location, tags=dict([EXPERIMENT_KIND_TAG])
            )
        except MlflowException as err:  # another sweep (on a tracking server) created it a moment ago
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            return self.client.get_experiment_by_name(self.sweep.name).experiment_id

    def _kind_query(self, kind: str) -> str:
        return f"tags.sweep_id = '{self.sweep_id}' AND tags.run_kind = '{kind}'"

    def _find(self, kind: str, extra: str = "") -> list:
        assert self.experiment_id is not None
        query = self._kind_query(kind) + extra
        return list(self.client.search_runs([self.experiment_id], query, max_results=10_000))

    @_timed("start_sweep")
    @_outage_is_unavailable
    def start_sweep(
        self, sweep: SweepConfig, sweep_id: str, experiment_dir: str, lineage: DataLineage | None = None
    ) -> str:
        """Find or create the sweep's parent run and mark it RUNNING; returns its id. `lineage`: the data
        every trial and seed run then records as its dataset input (MLflow's Dataset column)."""
        self.sweep, self.sweep_id, self.lineage = sweep, sweep_id, lineage
        with _first_use_lock(self.tracking_uri):
            self.experiment_id = self._experiment()
        found = self._find("sweep")
        if found:
            self.parent_run_id = found[0].info.run_id
            self.client.update_run(self.parent_run_id, status="RUNNING")
            self._log_data(self.parent_run_id)  # the same data again: MLflow keeps the one input it has
            return self.parent_run_id
        s = self.sweep
        mode = "search" if s.search else "grid"
        tags = {
            "sweep_id": self.sweep_id,
            "run_kind": "sweep",
            "mlflow.source.git.commit": _code_version(),
            "mlflow.note.content": f"initsweep {mode} sweep '{s.name}': {s.n_trials} trials x "
            f"{len(s.seeds)} seeds, {s.model.name} on {s.data.dataset}, objective {s.objective.metric} "
            f"({s.objective.mode}). Tune folder: {experiment_dir}",
        }
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=f"{s.name} ({mode})")
        self.parent_run_id = run.info.run_id
        self._drop_retried_creates(self._kind_query("sweep"), {self.parent_run_id})
        params = {
            "mode": mode,
            "n_trials": s.n_trials,
            "seeds": s.seeds,
            "dataset": s.data.dataset,
            "data.limit": s.data.limit,
            "model": s.model.name,
            "optimizer": s.train.optimizer,
            "lr": s.train.lr,
            "batch_size": s.train.batch_size,
            "epochs": s.train.epochs,
            "objective": f"{s.objective.metric} ({s.objective.mode})",
            "scheduler": s.scheduler.kind,
        }
        if s.search:
            params |= {"sampler": s.search.sampler, "search.seed": s.search.seed}
        params |= {f"grid.{key}": values for key, values in s.grid.items()}
        self.client.log_batch(self.parent_run_id, params=[Param(k, str(v)) for k, v in params.items()])
        self._log_data(self.parent_run_id)
        self.client.log_text(
            self.parent_run_id, yaml.safe_dump(s.model_dump(mode="json"), sort_keys=False), "sweep.yaml"
        )
        return self.parent_run_id

    @_timed("end_sweep")
    @_outage_is_unavailable
    def end_sweep(self, status: str = "FINISHED", summary: dict[str, float] | None = None) -> None:
        if summary:
            ts = int(time.time() * 1000)
            self.client.log_batch(self.parent_run_id, metrics=_metrics(summary, 0, ts))
        self.client.set_terminated(self.parent_run_id, status)

    @_outage_is_unavailable
    def log_chosen(self, chosen: dict[str, dict]) -> None:
        """A tuned sweep's choices on its parent run: `chosen_values.json`, row (and grid values) -> the
        values it chose."""
        self.client.log_dict(self.parent_run_id, chosen, "chosen_values.json")

    @_timed("log_report")
    @_outage_is_unavailable
    def log_report(self, folder: Path) -> None:
        """Attach a report folder to the sweep's parent run (artifacts under `report/`)."""
        self.client.log_artifacts(self.parent_run_id, str(folder), "report")

    @_timed("record_trial")
    @_outage_is_unavailable
    def record_trial(self, record: TrialResult) -> str | None:
        """Write a finished or failed trial with its seed runs, unless it is already recorded."""
        query = f"tags.sweep_id = '{self.sweep_id}' AND tags.trial_id = '{record.trial_id}'"
        existing = list(self.client.search_runs([self.experiment_id], query, max_results=10_000))  # trial, seeds
        trials = [r for r in existing if r.data.tags.get("run_kind") == "trial"]
        if any(r.info.status in ("FINISHED", "FAILED") for r in trials):
            return None
        for partial in existing:  # a driver killed mid-write left these: written again whole
            if partial.data.tags.get("run_kind") in ("trial", "seed"):
                self.client.delete_run(partial.info.run_id)

        c, ts = self.client, int(time.time() * 1000)
        prediction = predict(record.config)  # mean-field theory's chi1, xi_c, phase for an MLP
        theory = prediction.params() if prediction is not None else {}
        params = [Param(k, v) for k, v in (_flat_params(record.config) | theory | _lr_params(record)).items()]
        base_tags = {"sweep_id": self.sweep_id, "trial_id": record.trial_id, "node_id": record.node_id or ""}
        if record.config.stage:  # a tuned sweep's candidate ("tune") or judged trial ("eval")
            base_tags["stage"] = record.config.stage
        diverged = sum(s.diverged for s in record.seeds)
        trial_tags = base_tags | {
            "run_kind": "trial",
            "row": record.row_name,  # the config's row, the same under every grid combination
            "mlflow.parentRunId": self.parent_run_id,
            "diverged": str(diverged > 0).lower(),
            "n_diverged": str(diverged),
        }
        name = record.name
        trial_run = c.create_run(self.experiment_id, tags=trial_tags, run_name=name).info.run_id
        metrics = []
        if record.seeds:
            epochs = min(len(s.epochs) for s in record.seeds)
            metrics = [m for e in range(1, epochs + 1) for m in _metrics(aggregate(record.seeds, e), e, ts)]
            final = _metrics(aggregate(record.seeds), epochs, ts)
            metrics += [m for m in final if m.key.removesuffix("_std") in TEST_METRICS]
        if prediction is not None:
            metrics += _metrics(prediction.metrics(), 0, ts)
        self._log_batches(trial_run, metrics, params)
        self._log_data(trial_run)
        written = {trial_run}
        for seed in record.seeds:
            written.add(self._record_seed(record, seed, trial_run, params, base_tags, name, ts))
        self._drop_retried_creates(query, written)
        if record.error:
            c.set_tag(trial_run, "error", record.error.strip().splitlines()[-1][:500] if record.error.strip() else "")
            c.log_text(trial_run, record.error, "error.txt")
        c.set_terminated(trial_run, "FAILED" if record.error else "FINISHED")
        return trial_run

    def _record_seed(self, record, seed: SeedResult, trial_run, params, base_tags, name, ts) -> str:
        c = self.client
        tags = base_tags | {
            "run_kind": "seed",
            "mlflow.parentRunId": trial_run,
            "seed": str(seed.seed),
            "diverged": str(seed.diverged).lower(),
        }
        if seed.diverged:
            tags["diverged_step"] = str(seed.diverged_step)
        run = c.create_run(self.experiment_id, tags=tags, run_name=f"{name} seed={seed.seed}").info.run_id
        metrics = [m for e, values in enumerate(seed.epochs, 1) for m in _metrics(values, e, ts)]
        metrics += [Metric("minibatch_loss", loss, ts, step) for step, loss in seed.step_losses]
        metrics += [Metric(key, value, ts, len(seed.epochs)) for key, value in seed.test.items()]
        metrics.append(Metric("seconds", seed.seconds, ts, 0))
        self._log_batches(run, metrics, [*params, Param("seed", str(seed.seed))])
        self._log_data(run)
        c.log_text(run, json.dumps(seed.diagnostics, indent=1), "init_diagnostics.json")
        c.set_terminated(run, RunStatus.to_string(RunStatus.FINISHED))
        return run

    def _drop_retried_creates(self, query: str, written: set[str]) -> None:
        """Delete the runs `query` finds that this call did not write. Over HTTP, MLflow retries every
        request, POSTs included: a `create_run` whose answer was lost when the server went away is made
        again, and the first run, created but never answered, would stay RUNNING beside ours. Local stores
        make no such retry, so they pay no search."""
        if is_local_uri(self.tracking_uri):
            return
        for run in self.client.search_runs([self.experiment_id], query, max_results=10_000):
            if run.info.run_id not in written:
                self.client.delete_run(run.info.run_id)

    def _log_data(self, run_id: str) -> None:
        """The sweep's data as the run's dataset input: name, digest, source, and a profile with the split's
        sizes and settings. Idempotent: MLflow keeps one input per run and dataset (name and digest)."""
        if self.lineage is None:
            return
        d = self.lineage
        dataset = Dataset(
            d.name, d.digest, DATASET_SOURCE_TYPE, json.dumps({"uri": d.source}), profile=json.dumps(d.profile())
        )
        context = InputTag(MLFLOW_DATASET_CONTEXT, "training")
        self.client.log_inputs(run_id, datasets=[DatasetInput(dataset, tags=[context])])

    def _log_batches(self, run_id: str, metrics: list[Metric], params: list[Param] = ()) -> None:
        """Params and metrics in as few `log_batch` calls as MLflow takes (each call costs the driver
        ~15 ms on SQLite, a round trip on a server): at most `MAX_PARAMS` params and `MAX_BATCH` entries."""
        params, metrics = list(params), list(metrics)
        while params or metrics:
            p, params = params[:MAX_PARAMS], params[MAX_PARAMS:]
            m, metrics = metrics[: MAX_BATCH - len(p)], metrics[MAX_BATCH - len(p) :]
            self.client.log_batch(run_id, metrics=m, params=p)


def find_sweep_run(client: MlflowClient, experiment: str, run_id: str | None = None):
    """The sweep's parent run: `run_id`, or the latest sweep run of `experiment`."""
    if run_id:
        return client.get_run(run_id)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise LookupError(f"--experiment {experiment}: no such MLflow experiment")
    runs = client.search_runs(
        [exp.experiment_id], "tags.run_kind = 'sweep'", order_by=["attributes.start_time DESC"], max_results=1
    )
    if not runs:
        raise LookupError(f"--experiment {experiment}: holds no initsweep sweep run")
    return runs[0]


@_timed("read_sweep")
def read_sweep(client: MlflowClient, parent) -> tuple[SweepConfig, list[TrialResult]]:
    """A sweep's config and its finished trials, read back from MLflow alone (no Ray, no Tune files)."""
    parent_id = parent.info.run_id
    with tempfile.TemporaryDirectory() as tmp:
        sweep = parse_config(yaml.safe_load(Path(client.download_artifacts(parent_id, "sweep.yaml", tmp)).read_text()))
        exp = [parent.info.experiment_id]
        sweep_id = parent.data.tags["sweep_id"]
        base = f"tags.sweep_id = '{sweep_id}' AND attributes.status = 'FINISHED'"
        trials = client.search_runs(
            exp, f"{base} AND tags.run_kind = 'trial'", order_by=["attributes.start_time ASC"], max_results=10_000
        )
        seed_runs: dict[str, list] = {}
        for run in client.search_runs(exp, f"{base} AND tags.run_kind = 'seed'", max_results=50_000):
            seed_runs.setdefault(run.data.tags["mlflow.parentRunId"], []).append(run)
        results = []
        for trial in trials:
            runs = sorted(seed_runs.get(trial.info.run_id, []), key=lambda r: int(r.data.params["seed"]))
            seeds = [_read_seed(client, run, tmp) for run in runs]
            if not seeds:
                continue
            params = trial.data.params
            scheme = params["scheme"]
            row = SchemeRow(scheme=scheme, params=typed_params(scheme, params))
            if trial.data.tags.get("row", row.name) != row.name:  # a label, or a row with "auto" values
                row = SchemeRow(scheme=scheme, params=row.params, label=trial.data.tags["row"])
            axes = {k: next(v for v in values if str(v) == params[k]) for k, values in sweep.grid.items()}
            if sweep.search is not None:
                axes = _drawn_values(sweep.search.params, params)
            stage = trial.data.tags.get("stage")
            tuned = _tuned_values(sweep, params) if stage else None
            config = sweep.trial(row, axes, tuned, stage)
            results.append(TrialResult(config, seeds, trial_id=trial.data.tags["trial_id"]))
    return sweep, results


def _tuned_values(sweep: SweepConfig, params: dict[str, str]) -> dict:
    """A tuned trial's values, back from MLflow's strings."""
    return _drawn_values(sweep.tune.params, params)


def _drawn_values(specs: dict, params: dict[str, str]) -> dict:
    """Values a tune stage or a search chose, back from MLflow's strings: a listed value, or a number from
    a range."""
    out = {}
    for key, spec in specs.items():
        text = params[key]
        out[key] = next(v for v in spec if str(v) == text) if isinstance(spec, list) else float(text)
    return out


def _read_seed(client: MlflowClient, run, tmp: str) -> SeedResult:
    """A seed run back as the `SeedResult` it was written from (its per-epoch metrics from their history)."""
    rid, metrics = run.info.run_id, run.data.metrics
    by_epoch: dict[int, dict[str, float]] = {}
    for key in (k for k in EPOCH_METRICS if k in metrics):
        for m in client.get_metric_history(rid, key):
            by_epoch.setdefault(m.step, {})[key] = m.value
    losses = sorted((m.step, m.value) for m in client.get_metric_history(rid, "minibatch_loss"))
    diagnostics = json.loads(Path(client.download_artifacts(rid, "init_diagnostics.json", tmp)).read_text())
    step = run.data.tags.get("diverged_step")
    return SeedResult(
        int(run.data.params["seed"]),
        epochs=[by_epoch[e] for e in sorted(by_epoch)],
        step_losses=losses,
        test={k: metrics[k] for k in TEST_METRICS if k in metrics},
        diverged_step=int(step) if step else None,
        diagnostics=diagnostics,
        seconds=metrics.get("seconds", 0.0),
    )


def read_failures(client: MlflowClient, parent) -> list[tuple[str, str]]:
    """The sweep's failed trials, as (run name, the error's last line), in the order they started."""
    sweep_id = parent.data.tags["sweep_id"]
    query = f"tags.sweep_id = '{sweep_id}' AND tags.run_kind = 'trial' AND attributes.status = 'FAILED'"
    runs = client.search_runs([parent.info.experiment_id], query, order_by=["attributes.start_time ASC"])
    return [(r.info.run_name, r.data.tags.get("error", "")) for r in runs]
