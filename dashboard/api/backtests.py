"""REST endpoints of backtest runs: list and start (``/backtests``), one run, its chart data, the strategies.

Starting a run stores it ``pending`` and queues ``backtest.tasks.run_backtest`` (queue ``backtest``) after the commit;
clients poll the run for ``status`` and ``progress``. Errors are the API's 400 envelope naming the bad field; too many
starts a minute (``API_THROTTLE_BACKTEST``) or too many runs waiting or running (``BACKTEST_MAX_CONCURRENT_PER_USER``)
are a 429 in the same envelope.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.http import QueryDict
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import APIException, NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.ownership import visible_to
from analytics.bars import has_candles
from backtest import runs
from backtest.charts import run_chart
from backtest.models import BacktestRun
from backtest.strategies import STRATEGIES
from backtest.tasks import run_backtest
from dashboard.api import params
from dashboard.api.errors import ParamError
from dashboard.api.pagination import Cursor, keyset_page
from dashboard.api.throttling import BacktestStartThrottle
from dashboard.api.views import _ERRORS, CURSOR, ApiView, _keyset_response, _p


def run_item(run: BacktestRun, full: bool = False) -> dict[str, Any]:
    """One run; ``full`` adds the equity curve and the trades."""
    item: dict[str, Any] = {
        "id": run.pk,
        "url": f"/backtests/{run.pk}/",
        "strategy": run.strategy,
        "params": run.params,
        "exchange": run.exchange,
        "symbol": run.symbol,
        "interval": run.interval,
        "from": run.date_from.isoformat(),
        "to": run.date_to.isoformat(),
        "cash": float(run.cash),
        "fee": float(run.fee),
        "status": run.status,
        "progress": run.progress,
        "error": run.error,
        "bars": run.bars,
        "bars_hash": run.bars_hash,
        "metrics": run.metrics,
        "created_at": run.created_at.isoformat() if run.created_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }
    if full:
        item["equity"] = run.equity
        item["trades"] = run.trades
    return item


def _field(body: dict[str, Any], name: str, default: Any = None) -> Any:
    value = body.get(name, default)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ParamError(name, f"'{name}' is required.")
    return value


def _day(body: dict[str, Any], name: str) -> date:
    raw = _field(body, name)
    try:
        return date.fromisoformat(str(raw))
    except ValueError as exc:
        raise ParamError(name, f"'{name}' must be a date (YYYY-MM-DD), not {raw!r}.") from exc


def _number(body: dict[str, Any], name: str, default: str) -> Decimal:
    raw = body.get(name, default)
    try:
        value = Decimal(str(raw))
    except InvalidOperation as exc:
        raise ParamError(name, f"'{name}' must be a number, not {raw!r}.") from exc
    if not value.is_finite():
        raise ParamError(name, f"'{name}' must be finite.")
    return value


def spec_from_body(body: Any) -> runs.RunSpec:
    """A :class:`~backtest.runs.RunSpec` from a request body; a :class:`ParamError` names the bad field.

    ``exchange``, ``symbol`` and ``interval`` go through the same parsers as the query parameters of the other
    endpoints (same rules, same messages).
    """
    if not isinstance(body, dict):
        raise ParamError("body", "the body must be a JSON object.")
    query = QueryDict(mutable=True)
    query.update({"exchange": "binance", "interval": "1h"})
    query.update({k: str(body[k]) for k in ("exchange", "symbol", "interval") if body.get(k) is not None})
    exchange = params.exchange(query, required=True) or ""
    symbol = params.symbol(query, required=True) or ""
    interval = params.interval(query)
    strategy_params = body.get("params") or {}
    if not isinstance(strategy_params, dict):
        raise ParamError("params", "'params' must be an object of parameter values.")
    return runs.RunSpec(
        strategy=str(_field(body, "strategy")),
        exchange=exchange,
        symbol=symbol,
        interval=interval,
        date_from=_day(body, "from"),
        date_to=_day(body, "to"),
        params=strategy_params,
        cash=_number(body, "cash", "10000"),
        fee=_number(body, "fee", "0.001"),
    )


class TooManyRuns(APIException):
    """HTTP 429: the caller already has ``BACKTEST_MAX_CONCURRENT_PER_USER`` runs waiting or running."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "too_many_runs"


def user_id_of(user: Any) -> int | None:
    """The id a run is counted against: the signed-in user's, ``None`` for an anonymous visitor (one shared budget)."""
    return int(user.pk) if user is not None and user.is_authenticated else None


def start_run(spec: runs.RunSpec, user_id: int | None = None) -> BacktestRun:
    """Validate, store ``pending`` owned by ``user_id`` (None: shared) and queue the task after the commit (a
    ``ValueError`` says what is wrong; a :class:`~backtest.runs.RunLimitError` that the user has too many runs
    waiting or running)."""
    return queue_run(runs.prepare(spec), user_id)


def queue_run(run: BacktestRun, user_id: int | None) -> BacktestRun:
    """Store a prepared run ``pending`` for ``user_id`` within ``BACKTEST_MAX_CONCURRENT_PER_USER``, and queue the
    task after the commit."""
    with transaction.atomic():
        runs.save_within_limit(run, user_id, settings.BACKTEST_MAX_CONCURRENT_PER_USER)
        run_id = run.pk
        transaction.on_commit(lambda: run_backtest.delay(run_id))
    return run


class BacktestsView(ApiView):
    """Backtest runs, newest first (keyset-paginated on created_at, id); POST starts one (rate-limited per user by
    ``API_THROTTLE_BACKTEST``, at most ``BACKTEST_MAX_CONCURRENT_PER_USER`` waiting or running)."""

    throttle_classes = [*ApiView.throttle_classes, BacktestStartThrottle]

    @extend_schema(
        operation_id="backtest_list",
        parameters=[_p("limit", f"1..{params.MAX_LIMIT} (default {params.DEFAULT_LIMIT})", type_=int), CURSOR],
        responses={200: OpenApiTypes.OBJECT, **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        """Runs without their curves."""
        limit = params.limit(request.query_params)
        cursor_raw = request.query_params.get("cursor")
        cursor = Cursor.decode(cursor_raw) if cursor_raw else None
        rows, next_cursor = keyset_page(
            visible_to(BacktestRun.objects.defer("equity", "trades"), request.user), "created_at", "id", cursor, limit
        )
        return _keyset_response(request, rows, next_cursor, run_item)

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        description=(
            'Body: {"strategy": "sma_cross", "symbol": "BTCUSDT", "from": "2021-01-01", "to": "2021-12-31", '
            '"exchange": "binance", "interval": "1h", "params": {"fast": 10}, "cash": 10000, "fee": 0.001}'
        ),
        responses={202: OpenApiTypes.OBJECT, **_ERRORS},
    )
    def post(self, request: Request) -> Response:
        """Start a run: stored ``pending``, executed by a Celery worker; poll its URL for progress."""
        spec = spec_from_body(request.data)
        try:
            run = runs.prepare(spec)
        except runs.SpecError as exc:
            raise ParamError(exc.field, str(exc)) from exc
        # Said now rather than by a run that fails in the worker later: one index probe.
        if not has_candles(run.exchange, run.symbol, run.interval):
            raise ParamError(
                "symbol",
                f"no {run.interval} candles stored for {run.exchange}:{run.symbol}; "
                "import them first (manage.py import_history) or choose a symbol that has some.",
            )
        try:
            queue_run(run, user_id_of(request.user))
        except runs.RunLimitError as exc:
            raise TooManyRuns(str(exc)) from exc
        return Response(run_item(run), status=status.HTTP_202_ACCEPTED)


class BacktestView(ApiView):
    """One run with its equity curve and trades."""

    @extend_schema(
        operation_id="backtest_run",
        parameters=[_p("curves", "0 leaves out the equity curve and the trades (default 1)")],
        responses={200: OpenApiTypes.OBJECT, **_ERRORS},
    )
    def get(self, request: Request, run_id: int) -> Response:
        """The run; ``?curves=0`` leaves out the equity curve and trades (for progress polling)."""
        full = request.query_params.get("curves", "1") != "0"
        queryset = BacktestRun.objects.all() if full else BacktestRun.objects.defer("equity", "trades")
        return Response(run_item(_run_or_404(visible_to(queryset, request.user), run_id), full=full))


class BacktestChartView(ApiView):
    """What the run page draws (see :func:`backtest.charts.run_chart`)."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT, **_ERRORS})
    def get(self, request: Request, run_id: int) -> Response:
        """Equity vs buy-and-hold, drawdown, merged candles and trades of a run."""
        return Response(run_chart(_run_or_404(visible_to(BacktestRun.objects.all(), request.user), run_id)))


def _run_or_404(queryset: QuerySet[BacktestRun], run_id: int) -> BacktestRun:
    try:
        return queryset.get(pk=run_id)
    except BacktestRun.DoesNotExist:
        raise NotFound(f"no backtest run {run_id}") from None


class StrategiesView(ApiView):
    """The registered strategies and their parameter defaults."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT, **_ERRORS})
    def get(self, request: Request) -> Response:
        """Strategies by name."""
        return Response({"results": strategy_list()})


def strategy_list() -> list[dict[str, Any]]:
    """Every registered strategy: name, description and parameter defaults."""
    return [
        {"name": s.name, "description": s.description, "params": s.defaults}
        for s in sorted(STRATEGIES.values(), key=lambda s: s.name)
    ]
