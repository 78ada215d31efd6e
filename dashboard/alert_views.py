"""Each signed-in user's alert pages: rules (list, create, edit, delete), destinations, notifications and recent
alerts. Server-rendered forms; rules are validated by the same code as the API (:func:`dashboard.api.alerts.save_rule`).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from alerts.models import AlertKind, AlertRule
from alerts.validation import DIRECTIONS, INDICATORS, RuleError
from analytics.models import INTERVAL_SECONDS
from analytics.queries import known_pairs
from dashboard.api.alerts import QuotaExceeded, own_alerts, save_rule
from dashboard.destinations import DestinationError, clean_destination, create_destination
from ingest.records import EXCHANGES
from notifications.models import ChannelKind, Destination, Notification, WebhookFormat

RECENT_ALERTS = 100
RECENT_NOTIFICATIONS = 100
#: the form fields of each kind's parameters (the rest of the form is common to every kind)
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    AlertKind.PRICE_CROSS: ("level", "direction"),
    AlertKind.PCT_MOVE: ("pct", "window_s", "direction"),
    AlertKind.INDICATOR: ("interval", "indicator", "level", "period", "direction"),
    AlertKind.VOLUME_SPIKE: ("interval", "factor", "n"),
    AlertKind.WHALE: ("min_notional",),
}
_INTEGER_PARAMS = ("window_s", "n", "period")


def _choices(values: Any, blank: str | None = None) -> list[tuple[str, str]]:
    out = [("", blank)] if blank is not None else []
    return out + [(v, v) for v in values]


class RuleForm(forms.Form):
    """A rule: the common fields and every kind's parameters (the page script shows the chosen kind's only)."""

    kind = forms.ChoiceField(choices=AlertKind.choices)
    exchange = forms.ChoiceField(choices=_choices(sorted(EXCHANGES), "any (whale only)"), required=False)
    symbol = forms.CharField(max_length=32, required=False, help_text="e.g. BTCUSDT, BTC-USD, BTC/USD")
    level = forms.CharField(max_length=40, required=False, help_text="price, or the RSI level")
    direction = forms.ChoiceField(choices=_choices(DIRECTIONS), required=False, initial="both")
    pct = forms.CharField(max_length=40, required=False, label="Percent")
    window_s = forms.CharField(max_length=10, required=False, label="Window (s)")
    interval = forms.ChoiceField(choices=_choices(INTERVAL_SECONDS), required=False)
    indicator = forms.ChoiceField(choices=_choices(INDICATORS), required=False)
    period = forms.CharField(max_length=5, required=False, help_text="SMA/EMA period")
    factor = forms.CharField(max_length=40, required=False, help_text="times the mean volume of n candles")
    n = forms.CharField(max_length=5, required=False, label="Candles (n)")
    min_notional = forms.CharField(max_length=40, required=False, label="Min. notional")
    channels = forms.MultipleChoiceField(
        choices=ChannelKind.choices, widget=forms.CheckboxSelectMultiple, initial=[ChannelKind.IN_APP]
    )
    cooldown_s = forms.IntegerField(min_value=0, initial=0, label="Cooldown (s)")
    active = forms.BooleanField(required=False, initial=True)

    def rule_data(self) -> dict[str, Any]:
        """The API's body for the cleaned form: only the chosen kind's parameters, the blank ones left out."""
        data = self.cleaned_data
        params: dict[str, Any] = {}
        for name in KIND_FIELDS[data["kind"]]:
            value = data.get(name)
            if value not in (None, ""):
                params[name] = value
        return {
            "kind": data["kind"],
            "exchange": data["exchange"],
            "symbol": data["symbol"],
            "params": params,
            "channels": list(data["channels"]),
            "cooldown_s": data["cooldown_s"],
            "active": data["active"],
        }

    @classmethod
    def initial_for(cls, rule: AlertRule) -> dict[str, Any]:
        """The form's initial values for an existing rule."""
        return {
            "kind": rule.kind,
            "exchange": rule.exchange,
            "symbol": rule.symbol,
            "channels": rule.channels,
            "cooldown_s": rule.cooldown_s,
            "active": rule.active,
            **{k: str(v) for k, v in rule.params.items()},
        }

    def add_rule_error(self, exc: RuleError) -> None:
        """Show a validation error at its field (``params.level`` -> ``level``)."""
        field = exc.param.removeprefix("params.")
        self.add_error(field if field in self.fields else None, exc.message)


class DestinationForm(forms.Form):
    """A new destination."""

    kind = forms.ChoiceField(choices=ChannelKind.choices)
    target = forms.CharField(max_length=500, required=False, help_text="address, +E.164 number, chat id or URL")
    format = forms.ChoiceField(choices=WebhookFormat.choices, required=False, help_text="webhooks only")


def _rules(request: HttpRequest) -> QuerySet[AlertRule]:
    return AlertRule.objects.filter(owner=request.user.pk).prefetch_related("destinations")


def _render(request: HttpRequest, template: str, page: str, **context: Any) -> HttpResponse:
    # The rule forms' script shows the chosen kind's parameters only (config: which fields each kind has).
    config = {"kindFields": {str(k): list(f) for k, f in KIND_FIELDS.items()}}
    return render(request, template, {"page": page, "config": config, **context})


def _save(request: HttpRequest, form: RuleForm, rule: AlertRule | None) -> AlertRule | None:
    """Validate and save through the API's code; errors land on the form."""
    if not form.is_valid():
        return None
    try:
        return save_rule(request.user, form.rule_data(), rule)
    except RuleError as exc:
        form.add_rule_error(exc)
    except QuotaExceeded as exc:
        form.add_error(None, str(exc.detail))
    return None


@login_required
def rules(request: HttpRequest) -> HttpResponse:
    """The user's rules and the form that adds one."""
    form = RuleForm(request.POST or None)
    if request.method == "POST" and _save(request, form, None) is not None:
        return redirect("dashboard:alert-rules")
    status = 400 if request.method == "POST" else 200
    markets = [f"{e}:{s}" for e, s in known_pairs()]
    response = _render(
        request,
        "dashboard/alert_rules.html",
        "alerts",
        form=form,
        rules=_rules(request).order_by("-id"),
        markets=markets,
    )
    response.status_code = status
    return response


@login_required
def rule_edit(request: HttpRequest, rule_id: int) -> HttpResponse:
    """Change one of the user's rules (someone else's: 404)."""
    rule = get_object_or_404(_rules(request), pk=rule_id)
    form = RuleForm(request.POST or None, initial=RuleForm.initial_for(rule))
    if request.method == "POST" and _save(request, form, rule) is not None:
        return redirect("dashboard:alert-rules")
    response = _render(request, "dashboard/alert_rule_edit.html", "alerts", form=form, rule=rule)
    response.status_code = 400 if request.method == "POST" else 200
    return response


@login_required
@require_POST
def rule_delete(request: HttpRequest, rule_id: int) -> HttpResponse:
    """Delete one of the user's rules."""
    get_object_or_404(_rules(request), pk=rule_id).delete()
    return redirect("dashboard:alert-rules")


@login_required
def destinations(request: HttpRequest) -> HttpResponse:
    """The user's destinations and the form that adds one; a generic webhook's secret is shown once, here."""
    form = DestinationForm(request.POST or None)
    secret = ""
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            try:
                created = create_destination(int(request.user.pk or 0), clean_destination(dict(form.cleaned_data)))
            except DestinationError as exc:
                form.add_error(exc.param if exc.param in form.fields else None, exc.message)
            else:
                status, secret, form = 200, created.secret, DestinationForm()
    rows = Destination.objects.filter(owner=request.user.pk).order_by("id")
    response = _render(
        request, "dashboard/alert_destinations.html", "alerts", form=form, destinations=rows, secret=secret
    )
    response.status_code = status
    return response


@login_required
@require_POST
def destination_delete(request: HttpRequest, destination_id: int) -> HttpResponse:
    """Delete one of the user's destinations."""
    get_object_or_404(Destination.objects.filter(owner=request.user.pk), pk=destination_id).delete()
    return redirect("dashboard:alert-destinations")


@login_required
def notifications(request: HttpRequest) -> HttpResponse:
    """The user's in-app notifications, newest first; POST marks them all read."""
    own = Notification.objects.filter(owner=request.user.pk)
    if request.method == "POST":
        own.filter(read_at__isnull=True).update(read_at=timezone.now())
        return redirect("dashboard:notifications")
    rows = list(own.order_by("-created_at", "-id")[:RECENT_NOTIFICATIONS])
    unread = own.filter(read_at__isnull=True).count()
    return _render(request, "dashboard/notifications.html", "notifications", notifications=rows, unread=unread)


@login_required
def recent_alerts(request: HttpRequest) -> HttpResponse:
    """The user's latest alerts."""
    rows = list(own_alerts(int(request.user.pk or 0)).order_by("-fired_at", "-id")[:RECENT_ALERTS])
    return _render(request, "dashboard/alerts_recent.html", "alerts-recent", alerts=rows)
