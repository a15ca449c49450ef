"""The language-model task end to end, as for classification: a grid and an Optuna search of a GPT on the
embedded text corpus through real Ray Tune (the Python API, in a process of its own as a user's script
runs it), recorded in a real MLflow store; the report and the results read back from MLflow alone, and a
finished sweep run again without training anything again."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pandas as pd
import pytest

import initsweep

LM = {
    "name": "lm_test",
    "task": "language_model",
    "seeds": [0, 1],
    "data": {"dataset": "fortunes", "limit": 24_000, "context": 32},
    "model": {"name": "gpt", "width": 16, "depth": 2, "heads": 2},
    "train": {"epochs": 2, "batch_size": 16, "lr": 0.003},
    "schemes": [{"scheme": "pytorch_default"}, {"scheme": "gpt2", "label": "gpt2"}, {"scheme": "zero_residual"}],
    "resources": {"cpus_per_trial": 1},
    "report": {"reference": {"metric": "val_loss", "source": "a made-up run", "values": {"gpt2": {"run": 9.0}}}},
}
LM_COLUMNS = {"val_loss", "val_bits_per_token", "test_loss", "train_loss", "last_batch_loss"}
SCRIPT = """
import json, sys
import initsweep
config, uri, out = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
results = initsweep.run_sweep(config, tracking_uri=uri, storage_path=out + "/ray", report_dir=out + "/reports")
results.to_dataframe().to_pickle(out + "/frame.pkl")
best = results.best
print(json.dumps({"complete": results.complete, "failed": len(results.failed), "table": results.report.text,
                  "folder": str(results.report.folder), "best": best.name, "best_value": best.mean("val_loss"),
                  "params": [t.params for t in results.trials], "values": [t.mean("val_loss") for t in results.trials],
                  "summary_sorted": results.summary()["val_loss"].is_monotonic_increasing}))
"""


def run_api(config: dict, uri: str, out) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(config), uri, str(out)], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_language_model_sweeps_reports_and_reads_back_from_mlflow(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    first = run_api(LM, uri, tmp_path)
    assert first["complete"] and not first["failed"] and first["summary_sorted"]  # lower is better: best first
    frame = pd.read_pickle(tmp_path / "frame.pkl")
    assert len(frame) == 6 and set(frame.columns) >= LM_COLUMNS
    assert not [c for c in frame.columns if "accuracy" in c]  # a language model measures no accuracy
    assert (frame["val_loss"] < 5.0).all()  # below uniform over bytes (ln 256 = 5.55): they learn
    assert frame["val_bits_per_token"].tolist() == pytest.approx((frame["val_loss"] / math.log(2)).tolist())
    table = first["table"]
    assert "val loss (95% CI)" in table and "test loss" in table and "acc" not in table
    md = (tmp_path / "reports").joinpath(first["folder"].split("/reports/")[1], "report.md").read_text()
    assert "val_loss per scheme" in md and "plots/val_loss.png" in md and "(24000 tokens)" in md
    assert "9.000 OUTSIDE" in md  # a published number beside our interval of val_loss

    again = initsweep.load_results(uri, "lm_test", report_dir=str(tmp_path / "from_mlflow"))
    keys = ["trial", "seed"]
    columns = [*keys, *sorted(LM_COLUMNS)]
    mine = frame.sort_values(keys).reset_index(drop=True)[columns]
    assert again.to_dataframe().sort_values(keys).reset_index(drop=True)[columns].equals(mine)
    assert again.report.text == table

    resumed = run_api(LM, uri, tmp_path)  # the same config again: resumed, nothing trains twice
    assert resumed["table"] == table
    assert pd.read_pickle(tmp_path / "frame.pkl").sort_values(keys).reset_index(drop=True)[columns].equals(mine)


@pytest.mark.slow
def test_optuna_searches_a_transformer_schemes_scale_on_text(tmp_path):
    search = {k: v for k, v in LM.items() if k not in ("schemes", "report")} | {
        "name": "lm_search",
        "seeds": [0],
        "train": {"epochs": 1, "batch_size": 16, "lr": 0.003},
        "search": {"n_trials": 3, "sampler": "tpe", "seed": 0, "schemes": {"gpt2": {"std": [0.002, 0.2]}}},
    }
    out = run_api(search, f"sqlite:///{tmp_path}/mlflow.db", tmp_path)
    stds = sorted(p["std"] for p in out["params"])
    assert len(stds) == 3 and all(0.002 <= s <= 0.2 for s in stds) and len(set(stds)) == 3
    assert out["best_value"] == min(out["values"])  # minimized, not maximized
