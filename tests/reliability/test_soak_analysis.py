"""``make soak``'s analysis (:mod:`benchmarks.soak_analysis`) on synthetic samples: windows, percentiles, slopes,
RSS growth, lag, p99, error lines and the verdicts they give."""

from __future__ import annotations

import pytest

from benchmarks import soak_analysis as sa

pytestmark = pytest.mark.unit


def test_window_is_ten_minutes_for_an_hour_and_scales_down_for_short_runs() -> None:
    assert sa.window_seconds(3600) == 600
    assert sa.window_seconds(7200) == 600
    assert sa.window_seconds(240) == 40  # 4 minutes: six windows of 40 s
    assert len(sa.window_bounds(240, sa.window_seconds(240))) == 6
    assert len(sa.window_bounds(3600, sa.window_seconds(3600))) == 6
    with pytest.raises(ValueError, match="positive"):
        sa.window_seconds(0)


def test_window_bounds_cover_the_run_and_merge_a_tiny_tail() -> None:
    assert sa.window_bounds(65, 10) == [(0, 10), (10, 20), (20, 30), (30, 40), (40, 50), (50, 60), (60, 65)]
    # A run that ended a fraction of a second late: the tail joins the last window.
    assert sa.window_bounds(60.4, 10)[-1] == (50, 60.4)
    assert len(sa.window_bounds(60.4, 10)) == 6


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))  # 1..100
    assert sa.percentile(values, 0.5) == 50
    assert sa.percentile(values, 0.99) == 99
    assert sa.percentile(values[::-1], 0.99) == 99  # order does not matter
    assert sa.percentile([7.0], 0.99) == 7.0
    assert sa.percentile([], 0.5) is None


def test_slope_per_hour_of_a_line_and_of_flat_or_single_samples() -> None:
    # 1 MB per minute is 60 MB per hour, whatever the noise-free offset.
    assert sa.slope_per_hour([(t, 100 + t / 60) for t in range(0, 600, 5)]) == pytest.approx(60.0)
    assert sa.slope_per_hour([(t, 42.0) for t in range(0, 600, 5)]) == pytest.approx(0.0)
    assert sa.slope_per_hour([(0.0, 1.0)]) is None
    assert sa.slope_per_hour([(5.0, 1.0), (5.0, 2.0)]) is None


def test_rss_growth_compares_window_medians_after_the_warm_up() -> None:
    # Warm-up (first 60 s) climbs from 50 to 100 MB; afterwards flat at 100 with a one-sample spike to 150.
    points = [(t, 50 + t * 50 / 60) for t in range(0, 60, 5)]
    points += [(t, 100.0) for t in range(60, 360, 5)]
    points[30] = (points[30][0], 150.0)
    summary = sa.rss_summary(points, warmup_s=60, window_s=60, duration_s=360)
    assert summary["start_mb"] == 50
    assert summary["peak_mb"] == 150
    assert summary["end_mb"] == 100
    assert summary["baseline_mb"] == 100
    assert summary["growth_after_warmup_pct"] == 0  # the spike is not growth; the warm-up's climb is not counted
    assert summary["slope_mb_per_h"] > 0
    assert abs(summary["slope_after_warmup_mb_per_h"]) < summary["slope_mb_per_h"]


def test_rss_growth_of_a_steady_leak() -> None:
    # 100 MB after the warm-up, +1 MB a minute: the last window's median is about 4.5 % above the first's.
    points = [(float(t), 100 + max(0, t - 60) / 60) for t in range(0, 361, 5)]
    summary = sa.rss_summary(points, warmup_s=60, window_s=60, duration_s=360)
    assert summary["growth_after_warmup_pct"] == pytest.approx(4.0, abs=0.6)
    assert summary["slope_after_warmup_mb_per_h"] == pytest.approx(60.0, rel=0.01)


def test_rss_without_samples_after_the_warm_up_has_no_growth() -> None:
    summary = sa.rss_summary([(0.0, 10.0), (5.0, 11.0)], warmup_s=60, window_s=60, duration_s=360)
    assert summary["growth_after_warmup_pct"] is None
    assert sa.rss_summary([], 60, 60, 360) == {"samples": 0}


def test_rss_verdict_names_the_processes_that_grew_and_skips_exempt_ones() -> None:
    flat = {"growth_after_warmup_pct": 2.0}
    assert sa.rss_verdict({"consumer": flat, "web": {"growth_after_warmup_pct": 9.9}}).ok is True
    missed = sa.rss_verdict({"consumer": flat, "web": {"growth_after_warmup_pct": 12.5}})
    assert missed.ok is False
    assert "web +12.5 %" in missed.detail
    assert "consumer" not in missed.detail
    exempt = sa.rss_verdict(
        {"consumer": flat, "sim-binance": {"growth_after_warmup_pct": 40.0}}, exempt=["sim-binance"]
    )
    assert exempt.ok is True
    # A judged process that could not be measured is never a pass.
    assert sa.rss_verdict({"consumer": flat, "web": {"growth_after_warmup_pct": None}}).ok is None
    assert sa.rss_verdict({}).ok is None


def test_window_percentiles_put_each_sample_in_its_window() -> None:
    points = [(t / 10, 10.0) for t in range(0, 300)]  # 10 ms in the first 30 s
    points += [(30 + t / 10, 100.0) for t in range(0, 300)]  # 100 ms in the next 30 s
    rows = sa.window_percentiles(points, 30, 60)
    assert [(r["start_s"], r["end_s"], r["count"]) for r in rows] == [(0, 30, 300), (30, 60, 300)]
    assert (rows[0]["p50_ms"], rows[0]["p99_ms"]) == (10, 10)
    assert (rows[1]["p50_ms"], rows[1]["p99_ms"]) == (100, 100)
    assert sa.window_percentiles([], 30, 60)[0] == {
        "start_s": 0,
        "end_s": 30,
        "count": 0,
        "p50_ms": None,
        "p99_ms": None,
        "max_ms": None,
    }


def test_p99_flat_within_the_factor_and_the_slack() -> None:
    def windows(p99s: list[float | None]) -> list[dict[str, object]]:
        return [
            {"start_s": 10 * i, "count": 0 if p is None else 100, "p99_ms": p, "p50_ms": p} for i, p in enumerate(p99s)
        ]

    # Warm-up window (first) ignored; 200 then up to 290 ms: within max(1.5 x 200, 200 + 100) = 300.
    assert sa.p99_verdict(windows([5000, 200, 250, 290]), warmup_s=10).ok is True
    rising = sa.p99_verdict(windows([50, 200, 250, 400]), warmup_s=10)
    assert rising.ok is False
    assert "1 window(s) above 300 ms" in rising.detail
    # A small p99 may move by the slack: 20 -> 110 ms is flat, 20 -> 130 is not.
    assert sa.p99_verdict(windows([0, 20, 110]), warmup_s=10).ok is True
    assert sa.p99_verdict(windows([0, 20, 130]), warmup_s=10).ok is False
    # A window without any push after the warm-up is a failure, not a gap to skip.
    assert sa.p99_verdict(windows([0, 20, None, 20]), warmup_s=10).ok is False
    assert sa.p99_verdict(windows([0, 20]), warmup_s=10).ok is None


def test_lag_bounded_when_it_keeps_draining() -> None:
    lag = [(t, 500.0 if t % 20 else 30_000.0) for t in range(0, 120, 5)]  # bursts, drained between them
    rows = sa.window_lag(lag, 20, 120)
    assert rows[0] == {"start_s": 0, "end_s": 20, "samples": 4, "min": 500, "median": 500, "max": 30_000}
    assert sa.lag_verdict(rows, warmup_s=20, rate=2000).ok is True


def test_lag_not_bounded_when_it_grows_or_never_drains() -> None:
    growing = sa.window_lag([(float(t), t * 1000.0) for t in range(0, 120, 5)], 20, 120)
    verdict = sa.lag_verdict(growing, warmup_s=20, rate=2000)
    assert verdict.ok is False
    assert "last window's peak" in verdict.detail
    # Steady at 50,000 (25 s behind at 2,000/s): never grows, but never catches up either.
    stuck = sa.window_lag([(float(t), 50_000.0) for t in range(0, 120, 5)], 20, 120)
    verdict = sa.lag_verdict(stuck, warmup_s=20, rate=2000)
    assert verdict.ok is False
    assert "never below 10,000" in verdict.detail
    assert sa.lag_verdict(sa.window_lag([], 20, 120), warmup_s=20, rate=2000).ok is None


def test_error_lines_of_every_format_counted_and_the_first_kept() -> None:
    logs = {
        "consumer": '{"time": "t", "level": "INFO", "message": "stored"}\n'
        '{"time": "t", "level": "ERROR", "logger": "analytics", "message": "store failed"}\n',
        "worker": "[2026-12-07 18:00:00,000: ERROR/MainProcess] Task failed\n"
        "[2026-12-07 18:00:00,000: INFO/MainProcess] Task succeeded\n"
        "[2026-12-07 18:00:01,000: WARNING/ForkPoolWorker-1] retrying\n",
        "web": "Traceback (most recent call last):\n  File x\nValueError: boom\n",
        "beat": "CRITICAL:root:gone\nan ERROR mentioned inside a message is not a level\n",
        "ingest": '{"level": "WARNING", "message": "ERROR in the text"}\n',
    }
    count, first = sa.error_lines(logs, first=2)
    assert count == 4
    assert first == [
        "beat: CRITICAL:root:gone",
        'consumer: {"time": "t", "level": "ERROR", "logger": "analytics", "message": "store failed"}',
    ]
    assert sa.errors_verdict(count).ok is False
    assert sa.errors_verdict(0).ok is True


def test_restarts_and_api_verdicts() -> None:
    assert sa.restarts_verdict({"consumer": 0, "web": 0}).ok is True
    restarted = sa.restarts_verdict({"consumer": 2, "web": 0})
    assert restarted.ok is False
    assert restarted.detail == "restarts: consumer 2"
    assert sa.api_verdict([200, 200, 204]).ok is True
    failed = sa.api_verdict([200, 500, 0, 500])
    assert failed.ok is False
    assert failed.detail == "4 polls; 0 x1, 500 x2"
    assert sa.api_verdict([]).ok is None
    assert sa.Verdict("x", None, "").word == "no data"


def test_the_verdicts_count_every_window_after_the_warm_up_whatever_the_rounding() -> None:
    # A 46.3 s run: windows of 7.7167 s, whose starts the rows round to 7.7, 15.4, ...: the first window after the
    # warm-up must still count (it was dropped when the rounded start was compared with the exact warm-up).
    duration = 46.3
    window = sa.window_seconds(duration)
    lag = sa.window_lag([(t / 2, 100.0 * (1 + (t % 7))) for t in range(0, 93)], window, duration)
    assert "window peaks" in sa.lag_verdict(lag, window, rate=600).detail
    assert len(sa.lag_verdict(lag, window, rate=600).detail.split(":")[-1].split(",")) == 5
    latency = sa.window_percentiles([(t / 2, 100.0) for t in range(0, 93)], window, duration)
    assert sa.p99_verdict(latency, window).detail == "p99 ms per window: 100, 100, 100, 100, 100"
