"""Property tests: no config input gets past `load_config` / `parse_config` / `apply_override` as anything
but a clean refusal or a config that `--dry-run` can describe.

Generated (hypothesis, derandomized): mutations of valid configs (the shipped `sweeps/*.yaml` and a few
small dicts: mlp, cnn, grid, search) that set existing or unknown dotted keys to values of the wrong type,
out-of-range or non-finite numbers, huge ints, empty or duplicate lists, None, bytes and nested junk, or
drop keys; `--set KEY=TEXT` overrides with random text; random text and bytes, and cut-up shipped YAML,
written to a file and read with `load_config`.

Asserted: either `ConfigError` with a one-line message `KEY: PROBLEM` (`MESSAGE`), where KEY is the file's
path (file-level errors), `config`, `--set ...` (a malformed override) or a dotted key path whose first
part is a top-level key of the config (a known one, or one the input holds); or a valid `SweepConfig` for
which `describe` (the `--dry-run` text) returns without raising. Never another exception type.
"""

from __future__ import annotations

import copy
import math
import re
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from initsweep.config import ConfigError, SweepConfig, apply_override, load_config, parse_config
from initsweep.sweep.plan import describe

SWEEPS = Path(__file__).parents[1] / "sweeps"
SHIPPED = {p.name: yaml.safe_load(p.read_text()) for p in sorted(SWEEPS.glob("*.yaml"))}
SMALL = {
    "mlp": {"name": "t", "seeds": [0, 1], "schemes": [{"scheme": "uniform_fan_in", "c": 1}]},
    "cnn": {
        "name": "c",
        "seeds": [3],
        "data": {"limit": 2000},
        "model": {"name": "cnn", "channels": [8, 16], "hidden": 32},
        "schemes": ["kaiming_normal", {"scheme": "normal", "std": 0.1}],
    },
    "grid": {
        "name": "g",
        "seeds": [0],
        "data": {"limit": 1000, "val_fraction": 0.25},
        "train": {"batch_size": 50},
        "model": {"dropout": 0.0},
        "schemes": ["xavier_uniform", "lsuv"],
        "grid": {"model.depth": [1, 3], "train.lr": [0.01, 0.001]},
    },
    "search": {"name": "s", "seeds": [0], "search": {"n_trials": 3, "schemes": {"uniform": {"low": [-1, 0]}}}},
}
BASES = SHIPPED | SMALL
TOP_KEYS = set(SweepConfig.model_fields)
MESSAGE = re.compile(r"^(?P<key>[^\n]+?): (?P<problem>[^\n]+)$")
"""`KEY: PROBLEM` on one line; `check` then matches KEY against what it may be."""
SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]


def check(call, top_keys=(), path: Path | None = None, override: bool = False) -> None:
    """`call()` refuses with a well-formed ConfigError, or gives a config that `describe` renders."""
    try:
        cfg = call()
    except ConfigError as err:
        text = str(err)
        assert len(text.splitlines()) == 1 and "\n" not in text and MESSAGE.match(text), text
        if path is not None and text.startswith(f"{path}: "):
            event("refused", "file")
        elif override and text.startswith("--set "):
            event("refused", "--set")
        else:  # a key path: its first part a key of the config (escaped as messages escape line breaks)
            firsts = TOP_KEYS | {"config"} | {ConfigError(str(k)).args[0] for k in top_keys}
            first = next((k for k in firsts if text.startswith((f"{k}: ", f"{k}."))), None)
            assert first is not None, text
            event("refused", first if first in TOP_KEYS | {"config"} else "an unknown key")
        return
    assert isinstance(cfg, SweepConfig)
    assert isinstance(describe(cfg), str)
    event("valid")


def value_at(raw, path: tuple):
    for part in path:
        raw = raw[part]
    return raw


def paths(node, prefix=()) -> list[tuple]:
    """Every path into a raw config: mapping keys and list indices, inner nodes included."""
    out = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        out.append((*prefix, k))
        out += paths(v, (*prefix, k))
    return out


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, -1, 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64, 10**30]),
    st.builds(lambda: 10**5000),  # too long for repr(): built, so hypothesis never prints it
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-300, 1e300, 0.5, 1.0]),
    st.text(max_size=12),
    st.sampled_from(["", "nan", "inf", "auto", "mlp", "cnn", "relu", "uniform", "fan_in", "1e999", "a\nb"]),
    st.binary(max_size=6),
)
junk = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=6) | st.integers(-3, 3), inner, max_size=3),
        inner.map(lambda v: [v, v]),  # a duplicate
        st.builds(list),  # fresh each time: later mutations change it in place
        st.builds(dict),
    ),
    max_leaves=8,
)
plausible = st.one_of(  # right kind, edge values: these often make valid configs that describe() renders
    st.integers(0, 70_000),
    st.sampled_from([1, 2, 9, 10, 11, 49, 50, 99, 100, 101, 1000, 5000, 48_000, 60_000, 60_001]),
    st.floats(0, 1),
    st.sampled_from([0.0, 1e-9, 0.001, 0.2, 0.5, 0.9999, 1.0, 2.0]),
    st.sampled_from(["relu", "tanh", "gelu", "identity", "cnn", "mlp", "sgd", "asha", "auto", "fan_out", "x"]),
    st.lists(st.integers(0, 300), max_size=6),
    st.lists(st.integers(0, 300), min_size=1, max_size=4).map(lambda v: v + v[:1]),  # a duplicate
)
edge_numbers = st.one_of(
    st.integers(-1, 70_000),
    st.sampled_from([0, 1, 9, 10, 49, 50, 99, 100, 101, 1000, 1001, 48_000, 60_001, 2**32, 2**63 - 1, 2**63]),
    st.floats(-0.1, 1.1),
    st.sampled_from([0.0, 1e-9, 0.2, 0.9999, 1.0, 1e300, math.nan, math.inf]),
)
new_keys = st.from_regex(r"[a-z_]{1,8}", fullmatch=True)


@st.composite
def mutated(draw, values=junk | plausible, kinds=("set", "set", "add", "drop"), most: int = 3, numbers=False):
    """A raw config after 1 to `most` random sets (of `values`), unknown keys added, and keys dropped;
    `numbers`: only sets, of numbers, each to a number."""
    raw = copy.deepcopy(BASES[draw(st.sampled_from(sorted(BASES)))])
    for _ in range(draw(st.integers(1, most))):
        where = paths(raw)
        if numbers:
            where = [p for p in where if type(value_at(raw, p)) in (int, float)] or [("seeds", 0)]
        kind = draw(st.sampled_from(kinds))
        target = draw(st.sampled_from(where)) if where else ()
        parent = raw
        for part in target[:-1]:
            parent = parent[part]
        if kind == "add":  # an unknown key under a random mapping (the top level included)
            node = parent[target[-1]] if target else raw
            node = node if isinstance(node, dict) else raw
            node[draw(new_keys)] = draw(values)
        elif kind == "drop" and target and isinstance(parent, dict):
            del parent[target[-1]]
        elif target:
            parent[target[-1]] = draw(values)
    return raw


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=SLOW_OK)
@given(mutated(values=edge_numbers, kinds=("set",), most=2, numbers=True))
def test_edge_values_refuse_cleanly_or_describe(raw):
    check(lambda: parse_config(raw), top_keys=list(raw))


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=SLOW_OK)
@given(mutated())
def test_mutated_configs_refuse_cleanly_or_describe(raw):
    check(lambda: parse_config(raw), top_keys=list(raw))


def as_yaml(value) -> str:
    """A junk value as YAML flow text (an int too long for str(), as its digits)."""
    try:
        return yaml.safe_dump(value, default_flow_style=True).strip()
    except ValueError:
        return "9" * 5000


override_keys = st.one_of(
    st.sampled_from(sorted({".".join(map(str, p)) for base in BASES.values() for p in paths(base)})),
    st.lists(new_keys | st.sampled_from(["0", "9", "", "grid", "model", "²"]), min_size=1, max_size=4).map(".".join),
    st.text(max_size=10),
)
override_values = st.one_of(
    st.text(max_size=20),
    st.sampled_from([".nan", ".inf", "-.inf", "[]", "[1, 1]", "{}", "null", "~", "[", "{a: [b", "!!binary AAAA"]),
    junk.map(lambda v: as_yaml(v)),
)


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=SLOW_OK)
@given(st.sampled_from(sorted(BASES)), st.lists(st.tuples(override_keys, override_values), min_size=1, max_size=3))
def test_set_overrides_refuse_cleanly_or_describe(base, assignments):
    raw = copy.deepcopy(BASES[base])

    def apply_and_parse():
        for key, text in assignments:
            apply_override(raw, f"{key}={text}")
        return parse_config(raw)

    check(
        apply_and_parse,
        top_keys=[f"{k}={v}".partition("=")[0].split(".")[0] for k, v in assignments] + list(BASES[base]),
        override=True,
    )


yaml_tokens = st.sampled_from(
    [
        "name: x\n",
        "seeds: [0, 1]\n",
        "schemes: [constant]\n",
        "- ",
        ": ",
        "[",
        "]",
        "{",
        "}",
        "&a ",
        "*a",
        "\t",
        "\n",
        "  ",
        "'",
        '"',
        "!!binary ",
        "!!python/object ",
        ".nan",
        "1" * 5000,
        "---\n",
        "%YAML 1.1\n",
        "? ",
        "model:\n  depth: ",
        "0",
        "x",
        "#",
        "|\n",
        "\x00",
        "\u2028",
        "\ufeff",
    ]
)
file_bytes = st.one_of(
    st.binary(max_size=64),
    st.text(max_size=64).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.lists(yaml_tokens, max_size=12).map(lambda parts: "".join(parts).encode()),
    st.tuples(st.sampled_from(sorted(SHIPPED)), st.integers(0, 4000), st.integers(0, 40), st.binary(max_size=4)).map(
        lambda t: (lambda b: b[: t[1]] + t[3] + b[t[1] + t[2] :])((SWEEPS / t[0]).read_bytes())
    ),
)


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=SLOW_OK)
@given(file_bytes)
def test_any_file_refuses_cleanly_or_describes(content):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sweep.yaml"
        path.write_bytes(content)
        try:
            loaded = yaml.safe_load(content.decode("utf-8"))
        except Exception:  # what YAML makes of it only widens the keys a message may start with
            loaded = None
        check(lambda: load_config(path), top_keys=list(loaded) if isinstance(loaded, dict) else (), path=path)
