"""Alert rules (:class:`AlertRule`) and their firings (:class:`Alert`).

An alert is unique per (rule, trigger): the trigger names what fired it (``trade:<trade id>`` or
``candle:<interval>:<open time ms>``), so a replayed Kafka batch or a restarted worker never fires a rule twice
for the same thing. Each kind's exact semantics: docs/ALERTS.md.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models.functions import Now

from analytics.models import price_field
from notifications.models import Destination


class AlertKind(models.TextChoices):
    """What a rule watches."""

    PRICE_CROSS = "price_cross", "Price crosses a level"
    PCT_MOVE = "pct_move", "Price moves by a percentage within a window"
    INDICATOR = "indicator", "An indicator crosses (closed candles)"
    VOLUME_SPIKE = "volume_spike", "A candle's volume spikes"
    WHALE = "whale", "A whale trade"


#: Kinds evaluated on each stored trade batch; the others on closed candles.
TRADE_KINDS = frozenset({AlertKind.PRICE_CROSS, AlertKind.PCT_MOVE, AlertKind.WHALE})


class AlertRule(models.Model):
    """One user's rule: a kind, a market (blank exchange/symbol: every one, whale rules only), the kind's
    parameters, the channels it is delivered on, and a cooldown in seconds of trade time."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="alert_rules")
    kind = models.CharField(max_length=16, choices=AlertKind.choices)
    exchange = models.CharField(max_length=16, blank=True)
    symbol = models.CharField(max_length=32, blank=True)
    params = models.JSONField(default=dict, blank=True)
    channels = models.JSONField(default=list, blank=True, help_text='Channel names, e.g. ["in_app", "email"].')
    destinations = models.ManyToManyField(
        Destination,
        blank=True,
        related_name="rules",
        help_text="Only these of the owner's destinations (none chosen: every active one of the rule's channels).",
    )
    cooldown_s = models.PositiveIntegerField(default=0)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(db_default=Now(), editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    #: the trade time (ms) of the rule's last firing: the cooldown counts from it
    last_fired_ms = models.BigIntegerField(null=True, blank=True)
    #: firings the cooldown suppressed (counted, not stored)
    suppressed = models.PositiveBigIntegerField(default=0)
    #: what the evaluator keeps between batches (e.g. the last price a price_cross rule saw)
    state = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [models.Index(fields=["active", "exchange", "symbol"], name="alert_rule_market")]

    def __str__(self) -> str:
        market = f"{self.exchange or '*'}:{self.symbol or '*'}"
        return f"{self.kind} {market} {self.params}"


class Alert(models.Model):
    """One firing of a rule: the market, what fired it, when, and the message sent."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts")
    kind = models.CharField(max_length=16, choices=AlertKind.choices)
    exchange = models.CharField(max_length=16)
    symbol = models.CharField(max_length=32)
    trigger = models.CharField(max_length=64, help_text="trade:<trade id> or candle:<interval>:<open time ms>.")
    trade_id = models.BigIntegerField(null=True, blank=True, help_text="Null for candle kinds.")
    price = price_field(null=True, blank=True)
    traded_at = models.DateTimeField(help_text="The trade's time, or the candle's close time.")
    fired_at = models.DateTimeField(db_default=Now(), editable=False)
    message = models.TextField()
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["rule", "trigger"], name="alert_per_rule_trigger")]
        indexes = [models.Index(fields=["rule", "-id"], name="alert_rule_recent")]

    def __str__(self) -> str:
        return f"{self.kind} {self.exchange}:{self.symbol} {self.trigger}"


class RuleBookVersion(models.Model):
    """One row whose ``version`` PostgreSQL triggers raise with every change to the rules or their destinations
    (migration 0002): the consumer reads it once per batch to know whether its rule book is still current, instead
    of counting the rules table. The evaluator's own writes (state, last firing, suppressed) do not raise it."""

    version = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"rule book version {self.version}"
