"""`ConfigError` and the one-line messages: every section raises these, so they sit below all of them."""

from __future__ import annotations

import math
import re
import reprlib
from typing import Any

from pydantic import ValidationError

from initsweep.catalog.models import MODEL_CONFIGS
from initsweep.catalog.schemes import SchemeError

_LINE_BREAKS = {c: repr(chr(c))[1:-1] for c in (0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029)}


class ConfigError(ValueError):
    """Bad configuration; the message is one line naming the key path and the problem."""

    def __init__(self, message: str):
        # One line whatever a key or value holds: characters that break lines are shown escaped.
        super().__init__(str(message).translate(_LINE_BREAKS))


class _Shown(reprlib.Repr):
    """Short reprs of config values for messages: long, deep or huge values are cut, never raise."""

    def __init__(self):
        super().__init__()
        self.maxlevel, self.maxdict, self.maxlist, self.maxstring, self.maxother, self.maxlong = 4, 4, 6, 60, 60, 40

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 128:  # repr() refuses ints of over 4300 digits
            return f"<an integer of {int(x.bit_length() * math.log10(2)) + 1} digits>"
        return super().repr_int(x, level)


def shown(value: Any) -> str:
    """A value as a message shows it: its repr, cut short."""
    return _Shown().repr(value)


_UNION_MEMBER = re.compile(r"^(list\[.*\]|function-\w+\[.*\]|TuneRange)$")
"""Where pydantic names the member of a union in an error's location (not a key of the config)."""


def _one_line(err: ValidationError) -> str:
    """The first validation error as `key.path: problem (got value)`."""
    errors = err.errors(include_url=False)
    # A value against a union (values: a list or a {low, high} range): the member its type picked.
    e = next((x for x in errors if x["type"] != "list_type"), errors[0]) if len(errors) > 1 else errors[0]
    loc = [str(p) for p in e["loc"] if not _UNION_MEMBER.match(str(p))]
    if loc[:1] == ["model"] and len(loc) > 1 and loc[1] in MODEL_CONFIGS:
        del loc[1]  # the union's tag
    cause = (e.get("ctx") or {}).get("error")
    if isinstance(cause, SchemeError):
        loc += [cause.key] if cause.key else []
        problem = cause.problem
    elif e["type"] == "extra_forbidden":
        problem = "unknown key"
    elif e["type"] == "missing":
        problem = "missing (a required key)"
    elif e["type"] in ("value_error", "assertion_error"):
        problem = e["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if ": " in problem and " " not in problem.split(": ", 1)[0]:
            key, problem = problem.split(": ", 1)
            loc.append(key)
    elif loc[-1:] == ["[key]"]:  # a mapping's key, not its value
        loc.pop()
        problem = f"keys should be strings (got {shown(e['input'])})"
    else:
        problem = f"{e['msg'][0].lower()}{e['msg'][1:]} (got {shown(e['input'])})"
    return f"{'.'.join(loc) or 'config'}: {problem}"
