"""The market page's live book: each market's book pushed at most ``BOOK_PUSH_MAX_HZ`` times a second, never losing
its latest state.

:class:`BookPusher` is the book consumer's ``on_books`` callback. It remembers which markets changed and pushes each
one's *current* book when its throttle slot is free, through the dashboard's one push path
(:func:`analytics.live.publish_many`: every market due goes out in one event-loop round trip, one message per
market, never one per level) to the group the market page listens on (:func:`analytics.groups.market_group`). A
market updated while throttled is held, not dropped: :meth:`BookPusher.flush` sends it once its slot frees, so the
consumer calls ``flush()`` on every poll, including the polls that bring nothing (the trailing push of a market
that went quiet). :meth:`BookPusher.wait_s` says how long the poll may block before a held market is due.

The pusher keeps a reference to each book, not a copy: a push shows the book as it is when sent, which is the
latest state. It is therefore called from the thread that updates the books (the consumer's), never another.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable

from django.conf import settings

from analytics.groups import market_group
from analytics.live import publish_many
from analytics.payloads import BookPush, Push, book_item, book_push
from books.book import L2Book

logger = logging.getLogger(__name__)

#: what the book consumer hands over per processed batch: (exchange, symbol, book, valid) for each changed market
BookUpdate = tuple[str, str, L2Book, bool]


def book_payload(exchange: str, symbol: str, book: L2Book, valid: bool, levels: int) -> BookPush:
    """The ``book`` push of ``book``: its ``levels`` best levels a side, event time, flag and metrics.

    A book that is not valid carries no level and no metrics (the page shows it as resyncing).
    """
    bids, asks = book.top(levels) if valid else ([], [])
    metrics = book.metrics() if valid else None
    return book_push(
        book_item(exchange, symbol, book.event_ms, valid, bids, asks),
        {f.name: getattr(metrics, f.name) for f in dataclasses.fields(metrics)} if metrics is not None else None,
    )


class BookPusher:
    """Pushes changed books to the market pages, at most ``max_hz`` times a second per market, the last state
    always delivered.

    Args:
        max_hz: pushes per second per market (default ``settings.BOOK_PUSH_MAX_HZ``).
        levels: levels per side in each push (default ``settings.BOOK_PUSH_LEVELS``).
        clock: monotonic seconds (tests inject one).
        send: sends ``(group, payload)`` pairs in one batch and returns how many went
            (default :func:`analytics.live.publish_many`).
    """

    def __init__(
        self,
        max_hz: float | None = None,
        levels: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        send: Callable[[Iterable[tuple[str, Push]]], int] | None = None,
    ) -> None:
        hz = settings.BOOK_PUSH_MAX_HZ if max_hz is None else max_hz
        if not hz > 0:
            raise ValueError(f"max_hz must be positive, got {hz}")
        self.interval = 1 / hz
        # Slots are kept in whole nanoseconds: float seconds would let a wait computed from them fall a rounding
        # short of the slot, and a poll loop spin on it.
        self._interval_ns = round(1e9 / hz)
        self.levels = settings.BOOK_PUSH_LEVELS if levels is None else levels
        if self.levels < 1:
            raise ValueError(f"levels must be at least 1, got {self.levels}")
        self._clock = clock
        self._send = send or publish_many
        # Markets changed since their last push, in the order they first changed: (exchange, symbol) -> (book, valid).
        self._pending: dict[tuple[str, str], tuple[L2Book, bool]] = {}
        # When each market last took its slot (ns of the clock): it may push again ``interval`` later.
        self._last: dict[tuple[str, str], int] = {}
        #: pushes sent, and pushes the channel layer did not take (held for the next slot)
        self.pushed = 0
        self.failed = 0

    def __call__(self, updated: list[BookUpdate]) -> int:
        """The consumer's ``on_books``: note every changed market, then push those whose slot is free.

        Returns the number of pushes sent.
        """
        for exchange, symbol, book, valid in updated:
            self._pending[(exchange, symbol)] = (book, valid)
        return self.flush()

    def flush(self, now: float | None = None) -> int:
        """Push every held market whose slot is free (``now`` from the clock unless given); returns how many went.

        Call it on every poll: a market throttled at its last update goes out here once its slot frees.
        """
        t = _ns(self._clock() if now is None else now)
        due: list[tuple[str, str]] = []
        messages: list[tuple[str, Push]] = []
        for key, (book, valid) in self._pending.items():
            last = self._last.get(key)
            if last is not None and t - last < self._interval_ns:
                continue
            due.append(key)
            messages.append((market_group(*key), book_payload(key[0], key[1], book, valid, self.levels)))
        if not messages:
            return 0
        sent = self._send(messages)
        # publish_many sends in order and stops at a failure: the first ``sent`` went. The others stay held (with
        # the slot they took) so their latest state goes at their next slot, not at their next update.
        for key in due[:sent]:
            del self._pending[key]
            self._last[key] = t
        for key in due[sent:]:
            self._last[key] = t
        self.pushed += sent
        if sent < len(due):
            self.failed += len(due) - sent
            logger.warning("live book: %d of %d pushes not sent; held for the next slot", len(due) - sent, len(due))
        return sent

    def wait_s(self, now: float | None = None) -> float | None:
        """Seconds until the first held market may push (0: now), or None when none is held.

        A consumer caps its poll timeout with it, so a quiet market's last state is not left waiting on the poll.
        """
        if not self._pending:
            return None
        t = _ns(self._clock() if now is None else now)
        # A market that never took a slot is due at once.
        first = min(self._last.get(key, t - self._interval_ns) for key in self._pending)
        return max(0, first + self._interval_ns - t) / 1e9

    @property
    def pending(self) -> int:
        """Markets changed since their last push (held by the throttle, or by a failed send)."""
        return len(self._pending)


def _ns(seconds: float) -> int:
    """Clock seconds as whole nanoseconds."""
    return round(seconds * 1e9)
