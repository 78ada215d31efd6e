"""What every exchange's sync state machine shares: the book, the ``valid`` flag, the break and the resync count.

A sync machine is fed the exchange's messages (already decoded from JSON) and does no I/O: when it needs a new
snapshot (:attr:`BookSync.snapshot_needed`) the caller fetches one (Binance: REST) or re-subscribes (Coinbase,
Kraken: the snapshot comes on the socket) and hands it over. That keeps each exchange's documented procedure
testable frame by frame on the recordings.

A *break* is anything that means the local book may no longer be the exchange's: a broken sequence, a failed
checksum, a crossed book, a malformed level. It clears the book, sets ``valid`` False, counts one resync and asks for
a new snapshot. ``valid`` is True only from a successful sync to the next break: a book is never silently wrong.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from books.book import L2Book

logger = logging.getLogger(__name__)

#: the reasons a break names (``BookSync.last_break``)
SEQUENCE_GAP = "sequence_gap"
CHECKSUM_MISMATCH = "checksum_mismatch"
CROSSED = "crossed"
BAD_DATA = "bad_data"
STALE_SNAPSHOT = "stale_snapshot"
DISCONNECTED = "disconnected"


@dataclass(frozen=True, slots=True)
class Break:
    """Why a book stopped being valid: one of the reasons above and a short human detail."""

    reason: str
    detail: str


class BookSync:
    """One market's book and its sync status; the exchange subclasses implement the documented procedure."""

    exchange = ""

    def __init__(self, symbol: str) -> None:
        """A book not yet synced: empty, not valid, waiting for its first snapshot."""
        self.symbol = symbol
        self.book = L2Book()
        #: True only between a successful sync and the next break
        self.valid = False
        #: whether the caller must get a new snapshot (at start, and after every break)
        self.snapshot_needed = True
        #: how many breaks asked for a new snapshot
        self.resyncs = 0
        #: how many snapshots were applied successfully
        self.syncs = 0
        self.last_break: Break | None = None

    def on_gap(self, reason: str, detail: str) -> None:
        """Something outside the machine says the book may have missed updates (a sequence gap on its connection,
        the connection lost, a malformed message the caller refused): a break."""
        self._break(reason, detail)

    def _synced(self) -> None:
        """A snapshot was applied and checked: the book is valid from here."""
        self.valid = True
        self.snapshot_needed = False
        self.syncs += 1

    def _break(self, reason: str, detail: str) -> None:
        """The book may be wrong: clear it, flag it not valid and ask for a new snapshot, counting one resync.

        A break while already waiting for a snapshot (a sync attempt that failed) counts nothing more: one resync
        is pending either way.
        """
        self.last_break = Break(reason, detail)
        self.book.clear()
        self.valid = False
        if not self.snapshot_needed:
            logger.warning("%s %s book break (%s): %s; resyncing", self.exchange, self.symbol, reason, detail)
            self.snapshot_needed = True
            self.resyncs += 1

    def _check_crossed(self) -> bool:
        """Break if the book is crossed; True when it is fine."""
        book = self.book
        if book.crossed():
            self._break(CROSSED, f"best bid {book.bids.best_price()} >= best ask {book.asks.best_price()}")
            return False
        return True
