"""Readers for the bundled real recordings, shared by the ingest tests."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import zstandard

from tests.conftest import DATA

COINBASE_RECORDING = DATA / "coinbase-ws" / "COINBASE.jsonl.zst"


def coinbase_frames(path: Path = COINBASE_RECORDING) -> list[str]:
    """Every frame the recorded Coinbase connection received, in order."""
    with path.open("rb") as raw:
        text = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(raw), encoding="utf-8")
        frames = []
        for line in text:
            if line.strip():
                entry = orjson.loads(line)
                if entry.get("t") == "recv":
                    frames.append(entry["data"])
    return frames
