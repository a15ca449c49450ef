"""Number and table formatting shared by the terminal table, Markdown, CSV and the grid section."""

from __future__ import annotations

import math

from initsweep.catalog.tasks import DIVERGED_LOSS
from initsweep.report.stats import Interval

__all__ = ["ci_cell", "fmt", "md_table", "p_cell", "shorten", "signed_ci", "text_table"]


def fmt(x: float | None, digits: int = 2) -> str:
    """`x` to `digits` decimals; `-` for nothing; a mean holding divergence penalties says so."""
    return "-" if x is None or math.isnan(x) else (diverged_note(x) or f"{x:.{digits}f}")


def ci_cell(ci: Interval | None, digits: int = 2) -> str:
    """`mean [low, high]`; `mean (n=1)` for one seed; `-` for nothing."""
    if ci is None:
        return "-"
    if diverged_note(ci.mean):
        return diverged_note(ci.mean)
    if math.isnan(ci.low):
        return f"{ci.mean:.{digits}f} (n=1)"
    return f"{ci.mean:.{digits}f} [{ci.low:.{digits}f}, {ci.high:.{digits}f}]"


def diverged_note(mean: float) -> str:
    """`diverged` for a mean loss that is every seed's divergence penalty (`DIVERGED_LOSS`), `a seed
    diverged` for one that holds some seeds' penalty; `` for a real loss (none comes near 1e6)."""
    if mean >= DIVERGED_LOSS:
        return "diverged"
    return "a seed diverged" if mean >= DIVERGED_LOSS / 1000 else ""


def signed_ci(ci: Interval, digits: int = 2) -> str:
    if abs(ci.mean) >= DIVERGED_LOSS / 1000:  # against a diverged seed's penalty: no difference to tell
        return "diverged"
    if math.isnan(ci.low):
        return f"{ci.mean:+.{digits}f} (n=1)"
    return f"{ci.mean:+.{digits}f} [{ci.low:+.{digits}f}, {ci.high:+.{digits}f}]"


def digits_of(metric: str) -> int:
    """Decimals a metric is shown with: accuracies (%) 2, losses and bits per token 3."""
    return 2 if "accuracy" in metric else 3


def p_cell(p: float) -> str:
    return "-" if math.isnan(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")


def text_table(header: list[str], cells: list[list[str]], left: int = 1) -> str:
    """A fixed-width table for the terminal; column `left` (the names) aligned left, numbers right."""
    widths = [max(len(r[i]) for r in [header, *cells]) for i in range(len(header))]
    line = "  ".join(f"{{:{'<' if i == left else '>'}{w}}}" for i, w in enumerate(widths))
    return "\n".join([line.format(*header), line.format(*("-" * w for w in widths))] + [line.format(*c) for c in cells])


def shorten(text: str, width: int) -> str:
    """`text` cut in the middle to `width` characters, keeping its start (the scheme) and its end (the grid
    values): `kaiming_normal(a=0, m…) depth=16`."""
    if len(text) <= width:
        return text
    tail = (width - 1) // 2
    return text[: width - 1 - tail] + "…" + (text[len(text) - tail :] if tail else "")


def md_table(header: list[str], cells: list[list[str]]) -> str:
    esc = [[c.replace("|", "\\|") for c in row] for row in [header, *cells]]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in esc[1:]])
