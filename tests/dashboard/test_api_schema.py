"""The OpenAPI schema documents exactly the items the API and the pushes send: each serializer of
``dashboard/api/serializers.py`` against its TypedDict of ``analytics/payloads.py``, field by field and type by type.

No servers: the serializers and the TypedDicts are compared as declared.
"""

from __future__ import annotations

import types
import typing
from typing import Any

import pytest
from rest_framework import serializers

from analytics import payloads
from dashboard.api import serializers as s

PAIRS: list[tuple[type[serializers.Serializer], Any]] = [
    (s.TradeSerializer, payloads.TradeItem),
    (s.CandleSerializer, payloads.CandleItem),
    (s.IndicatorSerializer, payloads.IndicatorItem),
    (s.WhaleSerializer, payloads.WhaleItem),
    (s.StatsSerializer, payloads.StatsItem),
]


def _python_type(field: serializers.Field) -> Any:
    """The Python type a serializer field documents in JSON (a date-time is an ISO 8601 string)."""
    if isinstance(field, serializers.DictField):
        return dict[str, _python_type(field.child)]  # type: ignore[misc]
    if isinstance(field, serializers.BooleanField):
        return bool
    if isinstance(field, serializers.IntegerField):
        return int
    if isinstance(field, serializers.CharField | serializers.ChoiceField | serializers.DateTimeField):
        return str
    raise AssertionError(f"no JSON type known for {type(field).__name__}")


def _split_optional(hint: Any) -> tuple[Any, bool]:
    """``str | None`` -> ``(str, True)``; ``int`` -> ``(int, False)``."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        assert len(args) == 1, f"only X | None unions are JSON types: {hint}"
        return args[0], True
    return hint, False


@pytest.mark.parametrize(("serializer", "typed"), PAIRS, ids=[p[1].__name__ for p in PAIRS])
def test_serializer_documents_the_typed_item(serializer: type[serializers.Serializer], typed: Any) -> None:
    hints = typing.get_type_hints(typed)
    fields = serializer().fields
    assert set(fields) == set(hints), f"{serializer.__name__} fields differ from {typed.__name__} keys"
    for name, field in fields.items():
        expected, nullable = _split_optional(hints[name])
        assert _python_type(field) == expected, f"{serializer.__name__}.{name}: {field!r} is not {expected}"
        assert field.allow_null == nullable, f"{serializer.__name__}.{name}: allow_null should be {nullable}"


def test_a_mismatch_is_caught() -> None:
    class Wrong(serializers.Serializer):
        t = serializers.CharField()

    class Item(typing.TypedDict):
        t: int

    with pytest.raises(AssertionError, match=r"Wrong\.t"):
        test_serializer_documents_the_typed_item(Wrong, Item)
