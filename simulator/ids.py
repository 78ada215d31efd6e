"""Trade ids that survive a restart of the simulator (``simulate_exchange --state FILE``).

A real exchange never issues a trade id twice. A simulator replaying a recording would, each time it starts: the
ingest resumes after the last id Kafka holds (:mod:`ingest.resume`) and PostgreSQL keeps the first trade of each
(exchange, symbol, trade_id), so every trade of a restarted demo market would be dropped as already seen until its
ids passed the previous run's. With a state file the simulator remembers each symbol's last id sent and starts the
next run right after it: the market looks paused while it was down, as a closed market does.

The file is rewritten (atomically) every second and at shutdown. After a crash it may lag the last second of
trades: those ids are issued again with other trades, which the ingest drops as duplicates (never stored twice).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from ingest.records import TradeRecord

logger = logging.getLogger(__name__)

FORMAT = 1


class StateError(ValueError):
    """The state file cannot be used; the message names it and says why."""


def load_last_ids(path: Path, exchange: str) -> dict[str, int]:
    """Each symbol's last id sent by an earlier run for ``exchange`` ({} when ``path`` does not exist yet)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise StateError(f"--state {path}: cannot read it ({exc}); remove it to start the ids afresh") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("last_ids"), dict):
        raise StateError(f"--state {path}: not a simulator state file (format {FORMAT})")
    if data.get("exchange") != exchange:
        raise StateError(f"--state {path}: it belongs to the {data.get('exchange')!r} simulator, not {exchange!r}")
    last_ids = data["last_ids"]
    if not all(isinstance(k, str) and type(v) is int for k, v in last_ids.items()):
        raise StateError(f"--state {path}: last_ids must map symbols to integer ids")
    return dict(last_ids)


def save_last_ids(path: Path, exchange: str, last_ids: Mapping[str, int]) -> None:
    """Write the state atomically: a crash leaves the old file or the new one, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps({"format": FORMAT, "exchange": exchange, "last_ids": dict(last_ids)}))
    os.replace(temporary, path)


def continue_ids(records: Iterable[TradeRecord], last_ids: Mapping[str, int]) -> Iterator[TradeRecord]:
    """``records`` with each symbol's ids shifted to start right after ``last_ids[symbol]`` (consecutive ids stay
    consecutive); a symbol the state does not know, or whose ids are already past it, is left as it is."""
    shifts: dict[str, int] = {}
    for record in records:
        shift = shifts.get(record.symbol)
        if shift is None:
            last = last_ids.get(record.symbol)
            shift = shifts[record.symbol] = max(last + 1 - record.trade_id, 0) if last is not None else 0
            if shift:
                logger.info(
                    "simulator: trade ids continue after the last run's",
                    extra={"symbol": record.symbol, "first_id": record.trade_id + shift},
                )
        yield record._replace(trade_id=record.trade_id + shift) if shift else record
