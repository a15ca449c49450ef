"""The report people read: the ranked table with intervals and paired comparisons, the grid section,
published numbers, plots, and the same content as Markdown, self-contained HTML and CSV.

It reads `TrialResult`s only, built from in-process results or read back from MLflow, so the report
written at the end of a sweep and one rebuilt from MLflow alone are the same files.
"""

from __future__ import annotations

import base64
import csv
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import markdown

from initsweep.catalog.schemes import Range
from initsweep.catalog.tasks import TASKS
from initsweep.config import SweepConfig
from initsweep.report import grid, meanfield, plots, transfer, tuning
from initsweep.report.stats import ADJUSTMENT
from initsweep.report.summary import (
    RowSummary,
    baseline_of,
    boundary_warnings,
    importances,
    reference_section,
    result_table,
    summarize,
    terminal_table,
)
from initsweep.report.tables import ci_cell, digits_of, md_table, shorten
from initsweep.results import TrialResult

__all__ = ["Report", "build_report"]


@dataclass
class Report:
    folder: Path
    files: list[Path]
    summaries: list[RowSummary]
    sweep: SweepConfig
    failed: Sequence[tuple[str, str]] = ()
    chosen: dict[str, dict] = field(default_factory=dict)
    """A tuned sweep's choices: row (and grid values) -> the values it chose on the tuning seeds."""

    def table(self, width: int = 120) -> str:
        """The result table for a terminal `width` columns wide (the essential columns; report.md has all)."""
        text, shortened = terminal_table(self.summaries, self.sweep, width)
        if shortened:
            text += "\n(names shortened; report.md has them in full)"
        if self.failed:
            lines = [shorten(f"  {n}: {e}", width) for n, e in self.failed]
            text += "\n\nfailed (no result, after their retries):\n" + "\n".join(lines)
        return text

    @property
    def text(self) -> str:
        """The result table at 120 columns."""
        return self.table()


def build_report(
    results: list[TrialResult],
    sweep: SweepConfig,
    folder: Path,
    title_note: str = "",
    failed: Sequence[tuple[str, str]] = (),
) -> Report:
    """Write report.md, report.html (images inlined), results.csv and plots/*.png into `folder`;
    `failed` lists the trials that ended in an error, as (name, the error's last line)."""
    folder.mkdir(parents=True, exist_ok=True)
    chosen = tuning.choices(results, sweep)
    tuning_pngs = {}
    if chosen:
        tuning_pngs["Sensitivity to the tuned settings"] = plots.tuning_sensitivity(
            chosen, sweep.objective.metric, folder / "plots" / "tuning_sensitivity.png"
        )
    tuning_md = tuning.tuning_section(chosen, sweep, tuning_pngs)
    results = [r for r in results if r.config.stage != "tune"]  # judged on the evaluation seeds only
    summaries = summarize(results, sweep)
    ranked = [s.trial for s in summaries]
    obj = sweep.objective
    shown_metric = TASKS[sweep.task].intervals[0]  # val_accuracy, an LM's val_loss
    transfers = transfer.transfer_panels(results, sweep)
    transfer_pngs = {}
    if transfers:
        transfer_pngs[f"{obj.metric} against log2 lr, one curve per width"] = plots.lr_transfer(
            transfers, obj.metric, folder / "plots" / "lr_transfer.png"
        )
    transfer_md = transfer.transfer_section(transfers, sweep, transfer_pngs)
    panels = [] if transfers else grid.grid_panels(results, sweep)  # a width x lr grid's answer is its transfer
    grid_pngs = {}
    if panels:
        grid_pngs = {
            f"Mean {obj.metric} across the grid": plots.grid_heatmap(
                panels, obj.metric, folder / "plots" / "grid_heatmap.png", meanfield.depth_marks(panels, sweep)
            ),
            "Signal propagation at init, deepest network of each scheme": plots.signal_by_layer(
                panels, folder / "plots" / "signal_by_depth.png"
            ),
        }
    grid_md = grid.grid_section(panels, sweep, grid_pngs)
    theory_md, theory_pngs = meanfield.theory_section(results, panels, sweep, folder)
    pngs = {
        f"{shown_metric} per scheme": plots.metric_by_scheme(
            ranked, summaries, shown_metric, folder / "plots" / f"{shown_metric}.png"
        ),
        "Training loss": plots.loss_curves(ranked[:12], folder / "plots" / "loss_curves.png"),
        "Signal propagation at init": plots.signal_propagation(
            ranked[:12], folder / "plots" / "signal_propagation.png"
        ),
    }
    notes: list[str] = []
    if sweep.search is not None:
        space = sweep.search.space()
        settings = {
            k: Range(v.low, v.high, log=v.log) for k, v in sweep.search.params.items() if not isinstance(v, list)
        }
        pngs["Objective against each searched parameter"] = plots.objective_vs_params(
            results, space, obj.metric, folder / "plots" / "objective_vs_params.png", settings
        )
        pngs["Optimization history"] = plots.optimization_history(
            results, obj.mode, obj.metric, folder / "plots" / "optimization_history.png"
        )
        imp = importances(results, sweep)
        if imp:
            pngs["Parameter importances"] = plots.param_importances(imp, folder / "plots" / "param_importances.png")
        notes = boundary_warnings(summaries, sweep)

    header, cells = result_table(summaries, sweep)
    with open(folder / "results.csv", "w", newline="") as f:
        csv.writer(f).writerows([header, *cells])

    sections = "\n".join(
        filter(None, [transfer_md, grid_md, theory_md, tuning_md])
    )  # the answer, theory, what was chosen
    md = _markdown(sweep, summaries, header, cells, pngs, notes, title_note, failed, sections)
    (folder / "report.md").write_text(md)
    (folder / "report.html").write_text(_html(md, sweep.name, folder))
    files = [folder / "report.md", folder / "report.html", folder / "results.csv", *grid_pngs.values()]
    files += theory_pngs.values()
    files += transfer_pngs.values()
    files += tuning_pngs.values()
    files += pngs.values()
    chosen_values = {c.name: c.chosen for c in chosen if c.chosen is not None}
    return Report(folder, files, summaries, sweep, list(failed), chosen_values)


def _tuned_note(sweep: SweepConfig) -> str:
    if sweep.tune is None:
        return ""
    keys = ", ".join(f"`{k}`" for k in sweep.tune.params)
    return f"Tuned per row on the tuning seeds {sweep.tune.seeds} (the settings above are replaced): {keys}. "


def _markdown(sweep, summaries, header, cells, pngs, notes, title_note, failed=(), grid_md="") -> str:
    obj, pct = sweep.objective, round(sweep.report.level * 100)
    kind = "Optuna search" if sweep.search else "grid"
    best = next((s for s in summaries if not s.diverged), None)
    n_compared = sum(s.vs_baseline is not None for s in summaries)
    baseline_trial = baseline_of([s.trial for s in summaries], sweep)
    baseline = baseline_trial.row_name if baseline_trial else None
    unit = "tokens" if sweep.data.text else "images"
    parts = [
        f"# initsweep report: {sweep.name}",
        f"{kind} sweep, {len(summaries)} trials x {len(sweep.seeds)} seeds ({sweep.seeds}); "
        f"{sweep.model.name} on {sweep.data.dataset}"
        f"{f' ({sweep.data.limit} {unit})' if sweep.data.limit else ''}, {sweep.train.optimizer} "
        f"lr {sweep.train.lr:g}, batch {sweep.train.batch_size}, {sweep.train.epochs} epochs. "
        f"Objective: mean `{obj.metric}` over seeds ({obj.mode}). {_tuned_note(sweep)}{title_note}".strip(),
    ]
    if best is not None:
        best_ci = ci_cell(best.intervals[obj.metric], digits_of(obj.metric))
        parts.append(f"**Best:** {best.trial.name}, {obj.metric} {best_ci} ({pct}% CI).")
    if grid_md:
        parts.append(grid_md.rstrip())
    parts.append(
        f"## Results\n\nMeans over seeds with {pct}% t-intervals. {TASKS[sweep.task].about} "
        + (
            f"Δ is each row minus the baseline ({baseline}{', with the same grid values' if sweep.grid else ''}), "
            "paired by seed (seeds share data order and dropout streams), with a paired t-test; its p-value "
            f"is also given adjusted for the {n_compared} comparisons in this table ({ADJUSTMENT}, SciPy's "
            "`false_discovery_control`). "
            if baseline
            else ""
        )
        + "Rows with a diverged seed are ranked last.\n\n"
        + md_table(header, cells)
    )
    if failed:
        parts.append(
            "## Failed trials\n\nThese trials raised an error on every attempt (see `error.txt` in their MLflow "
            "runs) and have no result:\n\n" + "\n".join(f"- {n}: `{e}`" for n, e in failed)
        )
    ref = reference_section(summaries, sweep)
    if ref:
        parts.append(ref)
    if notes:
        parts.append("## Search range\n\n" + "\n".join(f"- {n}" for n in notes))
    for title, png in pngs.items():
        parts.append(f"## {title}\n\n![{title}](plots/{png.name})")
    return "\n\n".join(parts) + "\n"


def _html(md: str, title: str, folder: Path) -> str:
    """The Markdown as one self-contained HTML page (images inlined, so it opens inside MLflow's UI)."""
    body = markdown.markdown(md, extensions=["tables"])
    for png in sorted((folder / "plots").glob("*.png")):
        data = base64.b64encode(png.read_bytes()).decode()
        body = body.replace(f'src="plots/{png.name}"', f'src="data:image/png;base64,{data}"')
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}"
        "img{max-width:100%}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{body}</body></html>\n"
    )
