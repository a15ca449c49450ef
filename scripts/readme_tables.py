"""Regenerate the README's generated tables: the config reference (every key of the config model, with
its type, default and docstring) and the init-scheme table (the registry). `python scripts/readme_tables.py`
rewrites README.md between the `<!-- generated: NAME -->` markers; `--check` exits 1 when they are stale
(tests/test_docs.py runs it)."""

from __future__ import annotations

import argparse
import math
import re
import sys
import types
import typing
from pathlib import Path

from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from initsweep.catalog.models import MODEL_CONFIGS  # noqa: E402
from initsweep.catalog.schemes import SCHEMES  # noqa: E402
from initsweep.config import SweepConfig  # noqa: E402

README = ROOT / "README.md"


def type_name(annotation) -> str:
    """A reader's name for a field's type: `adam` \\| `sgd`, int or null, list of int, ..."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return r" \| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        names = [type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in args else "")
    if origin is list:
        return f"list of {type_name(args[0])}"
    if origin is dict:
        return "mapping"
    if origin is typing.Annotated:
        return type_name(args[0])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    return getattr(annotation, "__name__", str(annotation))


def default_text(field) -> str:
    if field.is_required():
        return "(required)"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "null"
    if isinstance(value, BaseModel):
        return "(section)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and math.isfinite(value):
        return f"`{value:g}`"
    return f"`{value}`" if value != "" else '`""`'


def _section(annotation) -> type[BaseModel] | None:
    """The config section a field holds (a model, or an optional one), else None."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def config_rows(model: type[BaseModel] = SweepConfig, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, default, meaning) for every key a sweep config takes, sections expanded."""
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        if key == "model":  # a tagged union: the name, then each registered model's own keys
            names = r" \| ".join(f"`{m}`" for m in MODEL_CONFIGS)
            rows.append(("model.name", names, "`mlp`", "the network; its keys follow, marked by model"))
            for model_name, config_class in MODEL_CONFIGS.items():
                own = [r for r in config_rows(config_class, "model.") if r[0] != "model.name"]
                rows += [(f"{k} ({model_name})", t, d, m) for k, t, d, m in own]
            continue
        section = _section(field.annotation)
        if section is not None and name not in ("schemes",):
            if field.description:
                rows.append((key, "section", default_text(field), field.description))
            rows += config_rows(section, f"{key}.")
            continue
        meaning = " ".join((field.description or "").split()).replace("|", r"\|")
        rows.append((key, type_name(field.annotation), default_text(field), meaning))
    return rows


def config_table() -> str:
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    lines += [f"| `{k}` | {t} | {d} | {m} |" for k, t, d, m in config_rows()]
    return "\n".join(lines)


def scheme_table() -> str:
    lines = ["| scheme | parameters (default) | weight rule |", "|---|---|---|"]
    for name, scheme in SCHEMES.items():
        params = ", ".join(
            f"{p} ({spec.default:g})" if isinstance(spec.default, int | float) else f"{p} ({spec.default})"
            for p, spec in scheme.params.items()
        )
        lines.append(f"| `{name}` | {params or 'none'} | {scheme.description} |")
    return "\n".join(lines)


TABLES = {"config": config_table, "schemes": scheme_table}


def render(text: str) -> str:
    for name, make in TABLES.items():
        pattern = re.compile(rf"(<!-- generated: {name} -->\n)(?:.*?\n)?(<!-- end generated: {name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"README.md: no <!-- generated: {name} --> markers")
        text = pattern.sub(lambda m, make=make: m.group(1) + make() + "\n" + m.group(2), text)
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 if README.md's generated tables are stale")
    args = p.parse_args(argv)
    old = README.read_text()
    new = render(old)
    if args.check:
        if new != old:
            print("README.md: generated tables are stale; run python scripts/readme_tables.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
