"""The front door as users meet it: the installed `initsweep` command (on a terminal and off one), the
`sweeps/` scripts, and the Python API from the README's example (real Ray, real MLflow stores)."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest
from conftest import ROOT, progress_lines

import initsweep
from initsweep.config import ConfigError

COMMAND = Path(sys.executable).with_name("initsweep")
"""The console script pip installed beside this interpreter."""
HEAVY = {"torch", "ray", "mlflow", "optuna", "pandas", "pydantic", "numpy"}


def clean_env(**more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "COLUMNS")}
    return env | more


def readme_api_example() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### From Python") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_command_lists_its_commands_and_its_help_loads_nothing_heavy():
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", str(COMMAND), "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    for command in ("run", "ui", "report"):
        assert re.search(rf"^\s+{command}\s+\S", proc.stdout, re.M), proc.stdout
    modules = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines() if "|" in line}
    assert not HEAVY & modules
    run_help = subprocess.run([str(COMMAND), "run", "--help"], capture_output=True, text=True, timeout=60)
    assert "usage: initsweep run" in run_help.stdout and "--dry-run" in run_help.stdout
    script_help = subprocess.run(
        [sys.executable, str(ROOT / "sweeps" / "run.py"), "--help"], capture_output=True, text=True, timeout=60
    )
    assert script_help.stdout.split("options:")[1] == run_help.stdout.split("options:")[1]  # the same command


def test_bad_input_through_the_command_and_the_api(tmp_path):
    proc = subprocess.run(
        [str(COMMAND), "run", str(ROOT / "sweeps" / "smoke.yaml"), "--set", "train.lr=-1"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=clean_env(),
    )
    assert proc.returncode == 2 and proc.stderr.strip() == "error: train.lr: input should be greater than 0 (got -1)"
    assert list(tmp_path.iterdir()) == []  # no store, no Tune folder
    with pytest.raises(ConfigError, match=r"^train.epochs: input should be greater than 0"):
        initsweep.run_sweep(
            ROOT / "sweeps" / "smoke.yaml", ["train.epochs=0"], tracking_uri=f"sqlite:///{tmp_path}/x.db"
        )
    with pytest.raises(LookupError):
        initsweep.load_results(f"sqlite:///{tmp_path}/none.db", "smoke")


def run_on_a_terminal(args: list[str], cwd: Path, columns: int, timeout: float = 600) -> tuple[int, str]:
    """`args` with a pseudo-terminal `columns` wide as standard output, as a user at a terminal runs it."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    proc = subprocess.Popen(args, stdin=follower, stdout=follower, stderr=follower, cwd=cwd, env=clean_env())
    os.close(follower)
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the other end closed
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    code = proc.wait(timeout=timeout)
    reader.join(timeout=10)
    os.close(leader)
    return code, b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
def test_the_api_the_command_and_the_script_give_the_same_results(tmp_path):
    """The README's API example runs as written; `initsweep run` on an 80-column terminal shows a live bar
    and a table that fits; `python sweeps/run.py` off a terminal logs a line per trial; all three record
    the very same metrics (CPU training is deterministic), which `load_results` reads back from MLflow."""
    (tmp_path / "sweeps").symlink_to(ROOT / "sweeps")
    api_dir, cli_dir, script_dir = (tmp_path / d for d in ("api", "cli", "script"))
    for d in (api_dir, cli_dir, script_dir):
        d.mkdir()
        (d / "sweeps").symlink_to(ROOT / "sweeps")
    (api_dir / "example.py").write_text(readme_api_example())
    example = subprocess.run(
        [sys.executable, "example.py"], capture_output=True, text=True, timeout=600, cwd=api_dir, env=clean_env()
    )
    assert example.returncode == 0, example.stderr[-3000:]
    assert "val_accuracy" in example.stdout and "uniform_fan_in(c=1)" in example.stdout

    args = ["sweeps/smoke.yaml", "--set", "train.epochs=1", "--storage-path", "ray_results"]
    code, screen = run_on_a_terminal(
        [str(COMMAND), "run", *args],
        cli_dir,
        columns=80,
    )
    assert code == 0, screen[-3000:]
    assert re.search(r"trials 3/3 \|.*\| \d+:\d+<00:00, best \S+", screen), screen  # the bar, at its end
    assert "\r" in screen and "[1/3]" not in screen  # redrawn in place, not a line per trial
    table = screen[screen.index("#  scheme") : screen.index("\nbest: ")].replace("\r", "")
    assert max(len(line) for line in table.splitlines()) <= 80, table

    script = subprocess.run(
        [sys.executable, str(ROOT / "sweeps" / "run.py"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=script_dir,
        env=clean_env(),
    )
    assert script.returncode == 0, script.stderr[-3000:]
    assert [line.split("]")[0] for line in progress_lines(script.stdout.splitlines())] == [
        "[1/3",
        "[2/3",
        "[3/3",
    ]
    assert "trials 3/3 |" not in script.stdout  # no bar off a terminal

    frames = {
        d.name: initsweep.load_results(f"sqlite:///{d}/mlflow.db", "smoke").to_dataframe()
        for d in (api_dir, cli_dir, script_dir)
    }
    keys = ["trial", "seed"]
    metrics = ["val_accuracy", "val_accuracy_train_mode", "test_accuracy", "train_loss", "last_batch_loss", "val_loss"]
    api = frames["api"].sort_values(keys).reset_index(drop=True)
    assert len(api) == 6 and set(api["seed"]) == {0, 1} and api["param.c"].notna().any()
    for name in ("cli", "script"):
        other = frames[name].sort_values(keys).reset_index(drop=True)
        assert other[keys + metrics].equals(api[keys + metrics]), name
