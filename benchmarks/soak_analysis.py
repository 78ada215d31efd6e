"""The figures and verdicts of ``make soak`` (:mod:`benchmarks.soak`), as plain functions of the samples.

Nothing here starts a process or reads a clock: the harness records samples (seconds since the start, a value) and
these functions turn them into windows, percentiles, slopes and one verdict per target, so that the unit tests can
feed them synthetic samples.

Scaling for short runs: the nominal window (and warm-up) is 10 minutes; a run shorter than ``MIN_WINDOWS`` x 10
minutes uses ``duration / MIN_WINDOWS`` instead, so a 4-minute run has six 40-second windows, its first one the
warm-up.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import median
from typing import Any

NOMINAL_WINDOW_S = 600.0
MIN_WINDOWS = 6
RSS_GROWTH_LIMIT_PCT = 10.0
# p99 is flat when no later window's p99 exceeds the first post-warm-up window's by more than this factor and more
# than P99_FLAT_SLACK_MS (a few milliseconds of noise on a small p99 is not a trend).
P99_FLAT_FACTOR = 1.5
P99_FLAT_SLACK_MS = 100.0
# Lag is bounded when it ends no higher than twice the first post-warm-up window's peak (or LAG_FLOOR_S seconds of
# trades at the offered rate, whichever is larger), and in every window after the warm-up it drops below that floor
# at least once: the consumer keeps catching up.
LAG_GROWTH_FACTOR = 2.0
LAG_FLOOR_S = 5.0

Point = tuple[float, float]  # (seconds since the start, value)


def window_seconds(duration_s: float, nominal_s: float = NOMINAL_WINDOW_S, min_windows: int = MIN_WINDOWS) -> float:
    """The window (and warm-up) length: ``nominal_s``, or ``duration_s / min_windows`` for a shorter run."""
    if duration_s <= 0:
        raise ValueError("duration_s must be positive")
    return min(nominal_s, duration_s / min_windows)


def window_bounds(duration_s: float, window_s: float) -> list[tuple[float, float]]:
    """The consecutive windows ``[start, end)`` covering ``[0, duration_s]``; the last one may be shorter (a tail
    shorter than a tenth of a window is merged into the one before it)."""
    count = max(1, math.floor(duration_s / window_s + 1e-9))
    bounds = [(i * window_s, (i + 1) * window_s) for i in range(count)]
    tail = duration_s - count * window_s
    if tail > window_s / 10:
        bounds.append((count * window_s, duration_s))
    else:
        bounds[-1] = (bounds[-1][0], duration_s)
    return bounds


def in_window(points: Iterable[Point], start: float, end: float, last: bool) -> list[float]:
    """The values of the points in ``[start, end)`` (``[start, end]`` for the last window)."""
    return [v for t, v in points if start <= t < end or (last and t == end)]


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..1) of ``values`` (any order); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


def slope_per_hour(points: Sequence[Point]) -> float | None:
    """Least-squares slope of the values against time, per hour; None for fewer than two distinct times."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return None
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return cov / var * 3600.0


def after_warmup(rows: list[dict[str, Any]], warmup_s: float) -> list[dict[str, Any]]:
    """The window rows after the warm-up. The rows' starts are rounded to 0.1 s, so they are compared with the
    warm-up rounded the same way (the first window after it starts exactly at its end)."""
    return [w for w in rows if w["start_s"] >= round(warmup_s, 1)]


def _r(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def rss_summary(points: Sequence[Point], warmup_s: float, window_s: float, duration_s: float) -> dict[str, Any]:
    """One process's RSS (MB) over the run: start, peak, end, slope per hour (whole run and after the warm-up), and
    its growth after the warm-up.

    Growth compares window medians, so a momentary spike (a garbage collection, a burst) is not growth: the
    baseline is the median of the first window after the warm-up, and the growth is the highest median of a later
    window over it, in percent.
    """
    if not points:
        return {"samples": 0}
    ordered = sorted(points)
    after = [p for p in ordered if p[0] >= warmup_s]
    medians = []
    bounds = window_bounds(duration_s, window_s)
    for i, (start, end) in enumerate(bounds):
        if start < warmup_s:
            continue
        values = in_window(ordered, start, end, i == len(bounds) - 1)
        if values:
            medians.append(median(values))
    growth = None
    if len(medians) >= 2 and medians[0] > 0:
        growth = (max(medians[1:]) - medians[0]) / medians[0] * 100.0
    return {
        "samples": len(ordered),
        "start_mb": _r(ordered[0][1]),
        "peak_mb": _r(max(v for _, v in ordered)),
        "end_mb": _r(ordered[-1][1]),
        "slope_mb_per_h": _r(slope_per_hour(ordered)),
        "slope_after_warmup_mb_per_h": _r(slope_per_hour(after)),
        "baseline_mb": _r(medians[0] if medians else None),
        "growth_after_warmup_pct": _r(growth),
    }


def window_percentiles(points: Sequence[Point], window_s: float, duration_s: float) -> list[dict[str, Any]]:
    """Per window: its bounds, the count, p50 and p99 of the values (milliseconds)."""
    bounds = window_bounds(duration_s, window_s)
    rows = []
    for i, (start, end) in enumerate(bounds):
        values = in_window(points, start, end, i == len(bounds) - 1)
        rows.append(
            {
                "start_s": round(start, 1),
                "end_s": round(end, 1),
                "count": len(values),
                "p50_ms": _r(percentile(values, 0.50)),
                "p99_ms": _r(percentile(values, 0.99)),
                "max_ms": _r(max(values) if values else None),
            }
        )
    return rows


def window_lag(points: Sequence[Point], window_s: float, duration_s: float) -> list[dict[str, Any]]:
    """Per window: the Kafka consumer lag's samples, minimum, median and maximum (records)."""
    bounds = window_bounds(duration_s, window_s)
    rows = []
    for i, (start, end) in enumerate(bounds):
        values = in_window(points, start, end, i == len(bounds) - 1)
        rows.append(
            {
                "start_s": round(start, 1),
                "end_s": round(end, 1),
                "samples": len(values),
                "min": int(min(values)) if values else None,
                "median": int(median(values)) if values else None,
                "max": int(max(values)) if values else None,
            }
        )
    return rows


# --------------------------------------------------------------------------------------------- error lines
_ERROR = re.compile(
    r'"level":\s*"(ERROR|CRITICAL)"'  # the project's JSON lines (cryptoproject/logging.py)
    r"|\[[^\]]*\b(ERROR|CRITICAL)/[A-Za-z]+"  # Celery's own format: [time: ERROR/MainProcess]
    r"|^(ERROR|CRITICAL):"  # logging's default format
    r"|^Traceback \(most recent call last\):"  # an uncaught exception printed to stderr
)


def is_error_line(line: str) -> bool:
    """True for a log line at level ERROR or CRITICAL, or the start of a traceback."""
    return _ERROR.search(line) is not None


def error_lines(logs: dict[str, str], first: int = 10) -> tuple[int, list[str]]:
    """The number of error lines over every process's log (name -> text), and the first ``first`` of them
    (prefixed with the process name, cut at 300 characters)."""
    count = 0
    found: list[str] = []
    for name in sorted(logs):
        for line in logs[name].splitlines():
            if is_error_line(line):
                count += 1
                if len(found) < first:
                    found.append(f"{name}: {line[:300]}")
    return count, found


# --------------------------------------------------------------------------------------------- verdicts
@dataclass(frozen=True)
class Verdict:
    """One target: met (True), missed (False) or not measurable (None, never a pass), and why."""

    target: str
    ok: bool | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"target": self.target, "ok": self.ok, "detail": self.detail}

    @property
    def word(self) -> str:
        """``met``, ``NOT met`` or ``no data``."""
        return "met" if self.ok else "no data" if self.ok is None else "NOT met"


def rss_verdict(
    summaries: dict[str, dict[str, Any]], limit_pct: float = RSS_GROWTH_LIMIT_PCT, exempt: Iterable[str] = ()
) -> Verdict:
    """No process's RSS grows more than ``limit_pct`` after the warm-up (:func:`rss_summary`'s growth); the
    processes named in ``exempt`` (the exchanges' stand-ins) are reported but not judged."""
    target = f"no process's RSS grows more than {limit_pct:g} % after the warm-up"
    skipped = set(exempt)
    growth = {n: s.get("growth_after_warmup_pct") for n, s in summaries.items() if n not in skipped}
    measured = {n: g for n, g in growth.items() if g is not None}
    unmeasured = sorted(n for n, g in growth.items() if g is None)
    if not measured:
        return Verdict(target, None, "no process has two windows after the warm-up")
    over = {n: g for n, g in measured.items() if g > limit_pct}
    worst = max(measured, key=lambda n: measured[n])
    note = f"; not measured: {', '.join(unmeasured)}" if unmeasured else ""
    if over:
        listed = ", ".join(f"{n} {g:+.1f} %" for n, g in sorted(over.items(), key=lambda kv: -kv[1]))
        return Verdict(target, False, f"grew more: {listed}{note}")
    return Verdict(target, True if not unmeasured else None, f"largest: {worst} {measured[worst]:+.1f} %{note}")


def lag_verdict(lag_windows: list[dict[str, Any]], warmup_s: float, rate: float) -> Verdict:
    """Lag bounded: after the warm-up it ends no higher than ``LAG_GROWTH_FACTOR`` x the first post-warm-up
    window's peak (or the floor of ``LAG_FLOOR_S`` seconds of trades), and it drops below that floor in every
    post-warm-up window."""
    floor = rate * LAG_FLOOR_S
    target = f"lag bounded (ends <= {LAG_GROWTH_FACTOR:g} x its first peak, drops below {floor:,.0f} every window)"
    after = [w for w in after_warmup(lag_windows, warmup_s) if w["samples"]]
    if len(after) < 2:
        return Verdict(target, None, "fewer than two windows with lag samples after the warm-up")
    bound = max(floor, LAG_GROWTH_FACTOR * after[0]["max"])
    stuck = [w for w in after if w["min"] > floor]
    problems = []
    if after[-1]["max"] > bound:
        problems.append(f"last window's peak {after[-1]['max']:,} > {bound:,.0f}")
    if stuck:
        problems.append(f"never below {floor:,.0f} in {len(stuck)} window(s), from {stuck[0]['start_s']:.0f} s")
    peaks = ", ".join(f"{w['max']:,}" for w in after)
    if problems:
        return Verdict(target, False, "; ".join(problems) + f" (window peaks {peaks})")
    return Verdict(target, True, f"window peaks {peaks}")


def p99_verdict(latency_windows: list[dict[str, Any]], warmup_s: float) -> Verdict:
    """p99 flat: no post-warm-up window's p99 above ``P99_FLAT_FACTOR`` x the first post-warm-up window's and
    ``P99_FLAT_SLACK_MS`` above it."""
    target = f"push p99 flat (no window above {P99_FLAT_FACTOR:g} x the first and +{P99_FLAT_SLACK_MS:g} ms)"
    after = [w for w in after_warmup(latency_windows, warmup_s) if w["p99_ms"] is not None]
    empty = [w for w in after_warmup(latency_windows, warmup_s) if not w["count"]]
    if len(after) < 2:
        return Verdict(target, None, "fewer than two windows with pushes after the warm-up")
    first = after[0]["p99_ms"]
    limit = max(first * P99_FLAT_FACTOR, first + P99_FLAT_SLACK_MS)
    high = [w for w in after[1:] if w["p99_ms"] > limit]
    series = ", ".join(f"{w['p99_ms']:.0f}" for w in after)
    if high or empty:
        what = [f"{len(high)} window(s) above {limit:.0f} ms"] if high else []
        what += [f"{len(empty)} window(s) without a push"] if empty else []
        return Verdict(target, False, "; ".join(what) + f" (p99 ms per window: {series})")
    return Verdict(target, True, f"p99 ms per window: {series}")


def errors_verdict(count: int) -> Verdict:
    """0 error lines in every process's log."""
    return Verdict("0 error lines", count == 0, f"{count} error line(s)")


def restarts_verdict(restarts: dict[str, int]) -> Verdict:
    """No process exited during the run (the harness restarts one that does, and counts it)."""
    exited = {n: c for n, c in restarts.items() if c}
    detail = ", ".join(f"{n} {c}" for n, c in sorted(exited.items())) or "none"
    return Verdict("no process exited", not exited, f"restarts: {detail}")


def api_verdict(statuses: Sequence[int]) -> Verdict:
    """Every API poll answered 2xx."""
    if not statuses:
        return Verdict("every API poll answered 2xx", None, "no poll")
    bad = [s for s in statuses if not 200 <= s < 300]
    codes = ", ".join(f"{c} x{bad.count(c)}" for c in sorted(set(bad)))
    return Verdict("every API poll answered 2xx", not bad, f"{len(statuses):,} polls" + (f"; {codes}" if bad else ""))
