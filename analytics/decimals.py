"""Fitting computed decimals into fixed-precision columns.

A well-formed but extreme trade (a price of 1e-12 followed by one of 1e17: both fit ``numeric(30, 12)``) makes a
percentage or an indicator larger than its column holds. PostgreSQL then refuses the whole row ("numeric field
overflow") and, in a loop over symbols, every symbol after it. Derived figures are clamped to the column's range
instead; the trades themselves are stored exactly.
"""

from __future__ import annotations

from decimal import Decimal, localcontext


def column_limit(max_digits: int, decimal_places: int) -> Decimal:
    """The largest value ``numeric(max_digits, decimal_places)`` holds (99.99 for (4, 2))."""
    with localcontext() as ctx:
        ctx.prec = max(ctx.prec, max_digits + 1)  # exact: 30 nines need more than the default 28 digits
        return Decimal(10) ** (max_digits - decimal_places) - Decimal(1).scaleb(-decimal_places)


def fit_column(value: Decimal, max_digits: int, decimal_places: int) -> Decimal:
    """``value`` rounded to ``decimal_places`` and clamped into ``[-limit, limit]`` of the column."""
    limit = column_limit(max_digits, decimal_places)
    if value > limit:
        return limit
    if value < -limit:
        return -limit
    with localcontext() as ctx:
        ctx.prec = max(ctx.prec, max_digits + 1)  # quantize() refuses results longer than the context precision
        return value.quantize(Decimal(1).scaleb(-decimal_places))
