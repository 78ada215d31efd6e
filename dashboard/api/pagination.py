"""Keyset pagination, newest first: ``WHERE (time, tiebreak) < (cursor) ORDER BY time DESC, tiebreak DESC LIMIT n``.

Never ``OFFSET``: every page is one index range scan however deep the client goes. The cursor is opaque to
clients (URL-safe base64 of the last row's time in microseconds and its tie-breaker).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from django.db.models import Model, Q, QuerySet

from cryptoproject.timeutil import datetime_to_us, us_to_datetime
from dashboard.api.errors import ParamError
from dashboard.api.params import BIGINT_MAX

M = TypeVar("M", bound=Model)


@dataclass(frozen=True)
class Cursor:
    """The position after which the next page starts."""

    time: datetime
    tiebreak: int

    def encode(self) -> str:
        """Opaque string for the ``cursor`` parameter."""
        micros = datetime_to_us(self.time)
        return base64.urlsafe_b64encode(f"{micros}:{self.tiebreak}".encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, raw: str) -> Cursor:
        """Parse a ``cursor`` parameter; a :class:`ParamError` names it when it is not one of ours."""
        try:
            text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
            micros, tiebreak = (int(part) for part in text.split(":"))
            if not 0 <= tiebreak <= BIGINT_MAX:  # no row's id: PostgreSQL would refuse the comparison (a 500)
                raise ValueError(f"tie-breaker {tiebreak} out of range")
            return cls(us_to_datetime(micros), tiebreak)
        except (ValueError, binascii.Error, UnicodeDecodeError, OverflowError) as exc:
            raise ParamError("cursor", "invalid cursor; pass the 'cursor' value of a previous page.") from exc


def keyset_page(
    queryset: QuerySet[M], time_field: str, tie_field: str, cursor: Cursor | None, limit: int
) -> tuple[list[M], Cursor | None]:
    """One page of ``queryset`` newest first, and the cursor of the next page (None on the last page)."""
    if cursor is not None:
        # The redundant "time <= cursor" is what the index can seek to; the OR alone would be a filter applied
        # while walking from the newest row, making deep pages slower the deeper they are.
        queryset = queryset.filter(**{f"{time_field}__lte": cursor.time}).filter(
            Q(**{f"{time_field}__lt": cursor.time})
            | Q(**{time_field: cursor.time, f"{tie_field}__lt": cursor.tiebreak})
        )
    rows = list(queryset.order_by(f"-{time_field}", f"-{tie_field}")[: limit + 1])
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    last: Any = rows[-1]
    return rows, Cursor(getattr(last, time_field), int(getattr(last, tie_field)))
