"""``make soak``'s harness end to end, shrunk to 45 seconds: every process of the Procfile on real servers (a stack
of its own, ``scripts/stack_env.sh 16``; ``SOAK_TEST_STACK`` moves it), the page open in headless Chromium, the API
polled, and the report, the JSON and the plot written.

The verdicts themselves depend on the machine (a loaded one falls behind at 2,000 trades/s); what this test holds
is what a short run on a working pipeline always shows: every process sampled, pushes reaching the browser, lag
read from Kafka, the API answering, nothing restarted and no error line logged.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from benchmarks import soak

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(
        not soak.CHROMIUM.exists(), reason="Debian's chromium is not installed (scripts/stack.sh install)"
    ),
]

PROCESSES = {
    *(f"{kind}-{exchange}" for kind in ("sim", "ingest") for exchange, _ in soak.EXCHANGES),
    *("web", "consumer", "worker", "notify-worker", "standins", "ml-worker", "backtest-worker", "beat", "chromium"),
    *("server-kafka", "server-postgres", "server-redis"),
}


@pytest.mark.timeout(600)
def test_a_short_soak_samples_every_process_and_writes_its_report(tmp_path: Path) -> None:
    report_path, png = tmp_path / "soak.json", tmp_path / "soak.png"
    stack = os.environ.get("SOAK_TEST_STACK", "16")
    argv = ["--minutes", "0.75", "--stack", stack, "--sample", "2", "--rate", "600"]
    code = soak.main([*argv, "--json", str(report_path), "--png", str(png), "--logs", str(tmp_path / "logs")])

    report = json.loads(report_path.read_text())
    assert code == (0 if report["ok"] else 1)
    assert report["window_s"] == round(report["run"]["duration_s"] / 6, 1)  # about 45 s: six windows
    assert len(report["push_latency"]["windows"]) == 6
    assert set(report["rss"]) == PROCESSES
    assert all(s["samples"] >= 2 and s["peak_mb"] > 0 for s in report["rss"].values()), report["rss"]
    assert [v["target"].split(" ")[0] for v in report["verdicts"]] == ["no", "lag", "push", "0", "no", "every"]
    assert all(v["ok"] in (True, False, None) for v in report["verdicts"])
    # What a working pipeline shows in any short run, loaded machine or not.
    assert report["push_latency"]["all"]["count"] > 0, "no trade push reached the page"
    assert report["series"]["lag"], "the consumer group's lag was never read"
    assert report["api"]["polls"] > 0
    verdicts = {v["target"]: v for v in report["verdicts"]}
    assert verdicts["every API poll answered 2xx"]["ok"] is True, verdicts["every API poll answered 2xx"]
    assert verdicts["no process exited"]["ok"] is True, verdicts["no process exited"]
    assert report["errors"] == {"count": 0, "first": []}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
