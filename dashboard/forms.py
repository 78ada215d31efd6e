"""The form that starts a backtest from the dashboard (validated by the same code as the API and the command)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from django import forms

from analytics.models import INTERVAL_SECONDS
from backtest import runs
from backtest.strategies import STRATEGIES
from ingest.records import EXCHANGES


def parse_params(text: str) -> dict[str, str]:
    """``fast=10 slow=30`` (spaces or commas between pairs) to a dict; a ``ValueError`` names a bad pair."""
    out = {}
    for pair in text.replace(",", " ").split():
        key, sep, value = pair.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"expected name=value, not {pair!r}")
        out[key] = value
    return out


# The form's field for each field name of a :class:`~backtest.runs.SpecError` (``params.<key>`` goes to ``params``).
_FORM_FIELDS = {
    "strategy": "strategy",
    "interval": "interval",
    "from": "date_from",
    "to": "date_to",
    "cash": "cash",
    "fee": "fee",
}


class BacktestForm(forms.Form):
    """The backtest form; once valid, :attr:`spec` holds the run it describes, validated as the API's would be."""

    strategy = forms.ChoiceField()
    params = forms.CharField(required=False, help_text="name=value pairs; empty for the defaults")
    exchange = forms.ChoiceField(choices=[(e, e) for e in sorted(EXCHANGES)], initial="binance")
    symbol = forms.CharField(max_length=32, initial="BTCUSDT")
    interval = forms.ChoiceField(choices=[(i, i) for i in INTERVAL_SECONDS], initial="1h")
    date_from = forms.DateField(label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(label="To", widget=forms.DateInput(attrs={"type": "date"}))
    cash = forms.DecimalField(initial=Decimal(10000), min_value=Decimal("0.01"), max_digits=20, decimal_places=2)
    fee = forms.DecimalField(initial=Decimal("0.001"), min_value=Decimal(0), max_digits=8, decimal_places=6)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        strategy_field = self.fields["strategy"]
        assert isinstance(strategy_field, forms.ChoiceField)
        strategy_field.choices = [(name, name) for name in sorted(STRATEGIES)]
        self.spec: runs.RunSpec | None = None

    def clean(self) -> dict[str, Any]:
        """Parse ``params`` and validate the run with :func:`backtest.runs.prepare`; errors go to the field at fault."""
        data = super().clean() or {}
        if self.errors:
            return data
        try:
            params = parse_params(data.get("params") or "")
        except ValueError as exc:
            self.add_error("params", str(exc))
            return data
        date_from: date = data["date_from"]
        date_to: date = data["date_to"]
        spec = runs.RunSpec(
            strategy=data["strategy"],
            exchange=data["exchange"],
            symbol=data["symbol"].strip().upper(),
            interval=data["interval"],
            date_from=date_from,
            date_to=date_to,
            params=params,
            cash=data["cash"],
            fee=data["fee"],
        )
        try:
            runs.prepare(spec)
        except runs.SpecError as exc:
            self.add_error(_FORM_FIELDS.get(exc.field, "params"), str(exc))
            return data
        self.spec = spec
        return data
