"""The last resort of ``consume_trades``: end the process when one loop turn is stuck past every timeout.

The in-loop watchdog (:mod:`analytics.watchdog`) cannot see a call that never returns; this thread can. Only the
command asks for it (``hard_exit_on_hang``): in-process runs (tests, benchmarks) never end their process. Nothing is
committed; the supervisor restarts the worker, which re-reads from the last commit.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)


def hard_exit(code: int) -> None:  # pragma: no cover - ends the process without cleanup
    """``os._exit``: no cleanup, no flush; the only way out of a thread stuck in a call."""
    os._exit(code)


class Backstop:
    """Calls ``exit(70)`` when :meth:`tick` has not been called for longer than ``limit_s`` (checked every
    ``check_s`` seconds by a daemon thread started by :meth:`start`)."""

    def __init__(
        self,
        limit_s: float,
        exit: Callable[[int], None] = hard_exit,
        clock: Callable[[], float] = time.monotonic,
        check_s: float = 1.0,
    ) -> None:
        self.limit_s, self.exit, self.clock, self.check_s = limit_s, exit, clock, check_s
        self.last_tick = clock()
        self._done = threading.Event()

    @classmethod
    def for_loop(
        cls, hard_exit_on_hang: bool, stall_timeout_s: float | None, max_poll_interval_ms: int
    ) -> Backstop | None:
        """The consumer's backstop (the watchdog bound plus the poll interval), or ``None`` when not asked for."""
        if not (hard_exit_on_hang and stall_timeout_s):
            return None
        return cls(stall_timeout_s + max_poll_interval_ms / 1000)

    def tick(self) -> None:
        """A loop turn starts."""
        self.last_tick = self.clock()

    def stuck_for(self) -> float:
        """Seconds since the last :meth:`tick`."""
        return self.clock() - self.last_tick

    def start(self) -> None:
        """Watch in a daemon thread until :meth:`stop`."""
        threading.Thread(target=self._watch, name="consumer-backstop", daemon=True).start()

    def stop(self) -> None:
        """Stop watching."""
        self._done.set()

    def _watch(self) -> None:
        while not self._done.wait(self.check_s):
            stuck = self.stuck_for()
            if stuck > self.limit_s:
                logger.critical("consumer loop stuck, exiting", extra={"stuck_s": round(stuck, 1)})
                self.exit(70)
