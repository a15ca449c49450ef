"""The installed environment is the one the suite was locked with (constraints.txt, `scripts/lock.sh`)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).parents[1]


def locked() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, pinned = line.partition("==")
            assert sep, f"constraints.txt: {line!r} is not an exact pin NAME==VERSION"
            pins[canonicalize_name(name)] = pinned.strip()
    return pins


def test_every_locked_package_is_installed_at_its_locked_version():
    wrong = {}
    for name, pinned in locked().items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = "missing"
        if installed != pinned:
            wrong[name] = f"locked {pinned}, installed {installed}"
    assert not wrong, f"the environment differs from constraints.txt (run scripts/setup.sh): {wrong}"


def test_every_requirement_of_pyproject_is_locked():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    pins = locked()
    names = {canonicalize_name(Requirement(r).name) for r in requirements}
    assert names - set(pins) == set(), "pyproject.toml names packages constraints.txt does not pin"
    for text in requirements:  # the lock sits inside pyproject's compatible ranges
        req = Requirement(text)
        assert req.specifier.contains(pins[canonicalize_name(req.name)]), f"{req} excludes the locked version"
    extras = {e for r in requirements for e in Requirement(r).extras}
    assert extras <= {"tune", "default"}, "a new extra: check that its packages are locked too"


def test_setup_installs_the_lock():
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert "-c constraints.txt" in setup and "INITSWEEP_UNLOCKED" in setup
    assert "scripts/setup.sh" in (ROOT / "scripts" / "lock.sh").read_text()
