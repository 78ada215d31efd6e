"""The consumer's fan-out step, once a batch is durable: the live trade tape, then the Celery tasks per symbol window.

The tape goes first and is best effort (:class:`analytics.live.TapePublisher` never raises): the trades are
durable, the slower steps after it (task dispatch, dead-letter acknowledgement, offset commit) only decide whether
a restart re-reads the batch. A retried batch may push a trade twice; the page de-duplicates the tape by trade id.
The dispatch (:func:`analytics.dispatch.dispatch_batch`: one task per symbol and window, never per trade) raises
when the Celery broker is down, and the batch is retried.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from analytics.live import TapePublisher
from analytics.windows import SymbolWindow
from ingest.records import TradeRecord

Dispatch = Callable[[list[SymbolWindow]], Any]


class FanOut:
    """Pushes a stored batch's trades to the tape and dispatches its windows' tasks."""

    def __init__(self, dispatch: Dispatch, tape: TapePublisher) -> None:
        self.dispatch, self.tape = dispatch, tape

    def __call__(self, records: list[TradeRecord], windows: list[SymbolWindow]) -> None:
        """Push ``records`` (throttled per symbol), then dispatch ``windows`` (if any)."""
        self.tape.add(records)
        self.tape.flush()
        if windows:
            self.dispatch(windows)

    def flush(self) -> None:
        """Send the tape's throttled leftovers whose time has come (the loop calls this every turn)."""
        if self.tape.pending:
            self.tape.flush()


def default_dispatch(windows: list[SymbolWindow]) -> Any:
    """:func:`analytics.dispatch.dispatch_batch`, imported late (it loads the Celery tasks)."""
    from analytics.dispatch import dispatch_batch

    return dispatch_batch(windows)
