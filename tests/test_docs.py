"""The README stays true to the registries and the config model."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from initsweep.catalog.schemes import SCHEMES
from initsweep.config import SweepConfig

README = (Path(__file__).parents[1] / "README.md").read_text()


def test_readme_lists_every_scheme_with_its_parameters():
    for name, scheme in SCHEMES.items():
        rows = [line for line in README.splitlines() if line.startswith("| `")]
        row = next((r for r in rows if f"`{name}`" in r.split("|")[1]), None)
        assert row is not None, f"README has no row for scheme {name}"
        for param, spec in scheme.params.items():
            default = f"{spec.default:g}" if isinstance(spec.default, int | float) else spec.default
            assert f"{param} ({default})" in row, (name, param)


def test_readme_documents_every_top_level_and_section_key():
    documented = set(re.findall(r"^\| `([a-z_.]+)` \|", README, flags=re.M))
    for key, field in SweepConfig.model_fields.items():
        sub = getattr(field.annotation, "model_fields", None)
        if sub and key != "model":
            assert {f"{key}.{k}" for k in sub} <= documented, key
        else:
            assert key in documented or any(d.startswith(f"{key}.") for d in documented), key


def test_readme_gives_the_two_setup_commands_that_ci_runs():
    assert "scripts/setup.sh initsweep run" in README
    assert "scripts/setup.sh python -m pytest" in README
    assert "scripts/setup.sh python -m pytest" in (Path(__file__).parents[1] / ".ci" / "run").read_text()


def test_readme_generated_tables_match_the_config_model_and_the_registry():
    sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
    import readme_tables

    assert readme_tables.main(["--check"]) == 0, "run: python scripts/readme_tables.py"
    keys = [row[0] for row in readme_tables.config_rows()]
    assert {"seeds", "train.lr", "resources.max_failures", "model.hidden (mlp)", "report.reference.values"} <= set(keys)
    assert all(row[3] for row in readme_tables.config_rows()), "every config key needs a docstring"
