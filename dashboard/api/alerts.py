"""The alerts API: each user's rules, their alerts, destinations and in-app notifications.

Every endpoint needs a signed-in user (session or ``Authorization: Token``) whatever ``DASHBOARD_LOGIN_REQUIRED``
says: these are someone's own things. A row of someone else is answered ``404``, never ``403``, so ids reveal
nothing. Rules are validated in :mod:`alerts.validation`, destinations in :mod:`dashboard.destinations`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from alerts.models import Alert, AlertRule
from alerts.validation import RuleError, clean_rule
from cryptoproject.timeutil import datetime_to_ms
from dashboard.api import params
from dashboard.api import serializers as s
from dashboard.api.errors import ParamError
from dashboard.api.pagination import Cursor, keyset_page
from dashboard.api.views import CURSOR, ApiView, _keyset_response, _p
from dashboard.destinations import DestinationError, clean_destination, create_destination
from notifications.models import ChannelKind, Destination, Notification

#: the fields a client may send for a rule (POST, PATCH)
RULE_FIELDS = ("kind", "exchange", "symbol", "params", "channels", "destinations", "cooldown_s", "active")
# Changing what a rule watches starts it afresh: the evaluator's state (e.g. the last price seen) is of the old rule.
_RESET_ON = ("kind", "exchange", "symbol", "params")

_ERRORS = {
    400: OpenApiResponse(s.ErrorSerializer, description="a bad field, named in error.param"),
    401: OpenApiResponse(s.ErrorSerializer, description="not signed in"),
    403: OpenApiResponse(s.ErrorSerializer, description="forbidden (e.g. a session request without CSRF token)"),
    404: OpenApiResponse(s.ErrorSerializer, description="no such item of yours"),
}


class QuotaExceeded(APIException):
    """Over a per-user quota: HTTP 429 with the API's error envelope (no ``Retry-After``: waiting does not help)."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "quota_exceeded"


class OwnView(ApiView):
    """Signed-in users only, always."""

    permission_classes = [IsAuthenticated]


def _uid(request: Request) -> int:
    return int(request.user.pk or 0)  # IsAuthenticated: always a saved user


def _body(request: Request) -> Mapping[str, Any]:
    data = request.data
    if not isinstance(data, Mapping):
        raise ParamError("body", "the request body must be a JSON object.")
    return data


# --------------------------------------------------------------------------------------------- rules
def rule_item(rule: AlertRule) -> dict[str, Any]:
    """A rule as the API shows it."""
    return {
        "id": rule.pk,
        "kind": rule.kind,
        "exchange": rule.exchange,
        "symbol": rule.symbol,
        "params": rule.params,
        "channels": rule.channels,
        "destinations": sorted(d.pk for d in rule.destinations.all()),
        "cooldown_s": rule.cooldown_s,
        "active": rule.active,
        "created_at": rule.created_at,
        "updated_at": rule.updated_at,
        "last_fired_ms": rule.last_fired_ms,
        "suppressed": rule.suppressed,
    }


def _destinations(owner_id: int, channels: list[str], raw: Any) -> list[Destination]:
    """The rule's chosen destinations (own, active, on its channels); every channel but in-app needs one."""
    chosen: list[Destination] = []
    if raw:
        if not isinstance(raw, list) or any(isinstance(i, bool) or not isinstance(i, int) for i in raw):
            raise RuleError("destinations", "'destinations' must be a list of destination ids.")
        chosen = list(Destination.objects.filter(owner_id=owner_id, pk__in=raw, active=True))
        if len(chosen) != len(set(raw)):
            raise RuleError("destinations", "unknown destination id.")
        if any(d.kind not in channels for d in chosen):
            raise RuleError("destinations", "a destination is not on one of the rule's channels.")
    elif not isinstance(raw, list):
        raise RuleError("destinations", "'destinations' must be a list of destination ids.")
    pool = chosen or Destination.objects.filter(owner_id=owner_id, active=True)
    have = {d.kind for d in pool}
    missing = [c for c in channels if c != ChannelKind.IN_APP and c not in have]
    if missing:
        raise RuleError(
            "channels", f"no destination for channel(s) {', '.join(missing)}: add one first (/api/v1/destinations)."
        )
    return chosen


def save_rule(user: Any, data: Mapping[str, Any], rule: AlertRule | None = None) -> AlertRule:
    """Create a rule (``rule`` None) or update one with the fields in ``data``; :class:`RuleError` names a bad
    field, :class:`QuotaExceeded` when a new rule would exceed ``ALERTS_MAX_RULES_PER_USER``."""
    unknown = [key for key in data if key not in RULE_FIELDS]
    if unknown:
        raise RuleError(str(unknown[0]), f"unknown field {str(unknown[0])[:40]!r}.")
    current: dict[str, Any] = {}
    if rule is not None:
        current = {f: getattr(rule, f) for f in ("kind", "exchange", "symbol", "params", "channels", "cooldown_s")}
        if "kind" in data and data["kind"] != rule.kind and "params" not in data:
            current["params"] = {}  # another kind's parameters never fit
    merged = {**current, **data}
    clean = clean_rule(merged)
    active = merged.get("active", True if rule is None else rule.active)
    if not isinstance(active, bool):
        raise RuleError("active", "'active' must be true or false.")
    if "destinations" in data:
        chosen_raw = data["destinations"] if data["destinations"] is not None else []
    elif rule is not None:
        # Kept, less those no longer on the rule's channels.
        chosen_raw = [d.pk for d in rule.destinations.all() if d.kind in clean.channels]
    else:
        chosen_raw = []
    with transaction.atomic():
        # One user's creations are serialised on their user row, so concurrent requests cannot pass the quota.
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()
        chosen = _destinations(user.pk, clean.channels, chosen_raw)
        if rule is None:
            limit = settings.ALERTS_MAX_RULES_PER_USER
            if AlertRule.objects.filter(owner=user).count() >= limit:
                raise QuotaExceeded(f"you have reached your limit of {limit} alert rules; delete some first.")
            rule = AlertRule(owner=user)
        elif any(k in data and getattr(rule, k) != getattr(clean, k) for k in _RESET_ON):
            rule.state, rule.last_fired_ms = {}, None
        rule.kind, rule.exchange, rule.symbol = clean.kind, clean.exchange, clean.symbol
        rule.params, rule.channels, rule.cooldown_s, rule.active = (
            clean.params,
            clean.channels,
            clean.cooldown_s,
            active,
        )
        rule.save()
        rule.destinations.set(chosen)
    return AlertRule.objects.prefetch_related("destinations").get(pk=rule.pk)


def _rule_errors(exc: RuleError) -> ParamError:
    return ParamError(exc.param, exc.message)


def _own_rules(request: Request) -> QuerySet[AlertRule]:
    return AlertRule.objects.filter(owner=_uid(request)).prefetch_related("destinations")


class AlertRulesView(OwnView):
    """The user's alert rules: list and create."""

    @extend_schema(
        operation_id="alert_rules_list",
        responses={200: OpenApiResponse(description="{results: [rule, ...]}"), **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        """The user's rules, newest first."""
        return Response({"results": [rule_item(r) for r in _own_rules(request).order_by("-id")]})

    @extend_schema(
        request=s.AlertRuleSerializer,
        responses={
            201: s.AlertRuleSerializer,
            **_ERRORS,
            429: OpenApiResponse(s.ErrorSerializer, description="over ALERTS_MAX_RULES_PER_USER"),
        },
    )
    def post(self, request: Request) -> Response:
        """Create a rule: ``{"kind", "exchange", "symbol", "params", "channels", "cooldown_s"}``."""
        try:
            rule = save_rule(request.user, _body(request))
        except RuleError as exc:
            raise _rule_errors(exc) from exc
        return Response(rule_item(rule), status=status.HTTP_201_CREATED)


class AlertRuleView(OwnView):
    """One rule of the user's: read, change, delete."""

    @extend_schema(operation_id="alert_rule_retrieve", responses={200: s.AlertRuleSerializer, **_ERRORS})
    def get(self, request: Request, rule_id: int) -> Response:
        """The rule."""
        return Response(rule_item(get_object_or_404(_own_rules(request), pk=rule_id)))

    @extend_schema(request=s.AlertRuleSerializer, responses={200: s.AlertRuleSerializer, **_ERRORS})
    def patch(self, request: Request, rule_id: int) -> Response:
        """Change some fields; the whole rule is validated again."""
        rule = get_object_or_404(_own_rules(request), pk=rule_id)
        try:
            rule = save_rule(request.user, _body(request), rule)
        except RuleError as exc:
            raise _rule_errors(exc) from exc
        return Response(rule_item(rule))

    @extend_schema(responses={204: None, **_ERRORS})
    def delete(self, request: Request, rule_id: int) -> Response:
        """Delete the rule and its alerts."""
        get_object_or_404(_own_rules(request), pk=rule_id).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


# --------------------------------------------------------------------------------------------- alerts
def alert_item(alert: Alert) -> dict[str, Any]:
    """One firing as the API shows it; ``trade_id`` is null for candle kinds."""
    return {
        "id": alert.pk,
        "rule": alert.rule_id,
        "kind": alert.kind,
        "exchange": alert.exchange,
        "symbol": alert.symbol,
        "trade_id": alert.trade_id,
        "price": None if alert.price is None else f"{alert.price.normalize():f}",
        "traded_at": alert.traded_at,
        "t": datetime_to_ms(alert.traded_at),
        "fired_at": alert.fired_at,
        "message": alert.message,
    }


def own_alerts(user_id: int) -> QuerySet[Alert]:
    """The user's alerts (of their rules)."""
    return Alert.objects.filter(rule__owner=user_id)


class AlertsView(OwnView):
    """The user's alerts, newest first, keyset-paginated on (fired_at, id)."""

    @extend_schema(
        parameters=[
            _p("rule", "only this rule's alerts (one of yours)", type_=int),
            _p("limit", f"1..{params.MAX_LIMIT} (default {params.DEFAULT_LIMIT})", type_=int),
            CURSOR,
        ],
        responses={200: s.page_serializer(s.AlertSerializer, "AlertPage", cursor=True), **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        """Alerts, newest first."""
        query = request.query_params
        queryset = own_alerts(_uid(request))
        rule_raw = query.get("rule", "").strip()
        if rule_raw:
            if not rule_raw.isascii() or not rule_raw.isdigit() or len(rule_raw) > 18:
                raise ParamError("rule", "'rule' must be a rule id.")
            rule = get_object_or_404(AlertRule.objects.filter(owner=_uid(request)), pk=int(rule_raw))
            queryset = queryset.filter(rule=rule)
        limit = params.limit(query)
        cursor_raw = query.get("cursor")
        cursor = Cursor.decode(cursor_raw) if cursor_raw else None
        rows, next_cursor = keyset_page(queryset, "fired_at", "id", cursor, limit)
        return _keyset_response(request, rows, next_cursor, alert_item)


# --------------------------------------------------------------------------------------------- destinations
def destination_item(destination: Destination) -> dict[str, Any]:
    """A destination as its owner sees it (never the webhook secret: that is shown once, on creation)."""
    return {
        "id": destination.pk,
        "kind": destination.kind,
        "target": destination.target,
        "format": destination.format if destination.kind == ChannelKind.WEBHOOK else None,
        "active": destination.active,
        "created_at": destination.created_at,
        "has_secret": bool(destination.secret),
    }


class DestinationsView(OwnView):
    """The user's destinations: list and add."""

    @extend_schema(
        operation_id="destinations_list",
        responses={200: OpenApiResponse(description="{results: [destination, ...]}"), **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        """The user's destinations, oldest first."""
        rows = Destination.objects.filter(owner=_uid(request)).order_by("id")
        return Response({"results": [destination_item(d) for d in rows]})

    @extend_schema(request=s.DestinationSerializer, responses={201: s.DestinationSerializer, **_ERRORS})
    def post(self, request: Request) -> Response:
        """Add one: ``{"kind", "target", "format"}``; a generic webhook's ``secret`` is in this answer only."""
        try:
            destination = create_destination(_uid(request), clean_destination(dict(_body(request))))
        except DestinationError as exc:
            raise ParamError(exc.param, exc.message) from exc
        item = destination_item(destination)
        if destination.secret:
            item["secret"] = destination.secret
        return Response(item, status=status.HTTP_201_CREATED)


class DestinationView(OwnView):
    """One destination of the user's."""

    @extend_schema(responses={204: None, **_ERRORS})
    def delete(self, request: Request, destination_id: int) -> Response:
        """Delete it (its pending deliveries go with it)."""
        get_object_or_404(Destination.objects.filter(owner=_uid(request)), pk=destination_id).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


# --------------------------------------------------------------------------------------------- notifications
def notification_item(notification: Notification) -> dict[str, Any]:
    """An in-app notification."""
    return {
        "id": notification.pk,
        "subject": notification.subject,
        "body": notification.body,
        "created_at": notification.created_at,
        "read_at": notification.read_at,
    }


class NotificationsView(OwnView):
    """The user's in-app notifications, newest first, keyset-paginated on (created_at, id)."""

    @extend_schema(
        parameters=[
            _p("unread", "true: only unread ones"),
            _p("limit", f"1..{params.MAX_LIMIT} (default {params.DEFAULT_LIMIT})", type_=int),
            CURSOR,
        ],
        responses={200: OpenApiResponse(description="{results, next, cursor, unread}"), **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        """Notifications, newest first, and how many are unread."""
        query = request.query_params
        queryset = Notification.objects.filter(owner=_uid(request))
        unread = queryset.filter(read_at__isnull=True)
        flag = query.get("unread", "").strip().lower()
        if flag not in ("", "true", "false", "1", "0"):
            raise ParamError("unread", "'unread' must be true or false.")
        listed = unread if flag in ("true", "1") else queryset
        cursor_raw = query.get("cursor")
        cursor = Cursor.decode(cursor_raw) if cursor_raw else None
        rows, next_cursor = keyset_page(listed, "created_at", "id", cursor, params.limit(query))
        response = _keyset_response(request, rows, next_cursor, notification_item)
        response.data["unread"] = unread.count()
        return response


class NotificationsReadView(OwnView):
    """Mark notifications read."""

    @extend_schema(
        request=s.MarkReadSerializer,
        responses={200: OpenApiResponse(description="{updated: n}"), **_ERRORS},
    )
    def post(self, request: Request) -> Response:
        """Mark the given ids (or, without ``ids``, every unread one) read; answers how many changed."""
        ids = _body(request).get("ids")
        queryset = Notification.objects.filter(owner=_uid(request), read_at__isnull=True)
        if ids is not None:
            if not isinstance(ids, list) or any(isinstance(i, bool) or not isinstance(i, int) for i in ids):
                raise ParamError("ids", "'ids' must be a list of notification ids.")
            queryset = queryset.filter(pk__in=ids)
        return Response({"updated": queryset.update(read_at=timezone.now())})
