"""Dashboard pages (server-rendered shells that the page scripts fill from the API and the sockets) and healthz."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Max, Min
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render

from accounts.ownership import visible_to
from analytics.groups import InvalidMarketError, parse_market
from analytics.models import INTERVAL_SECONDS, Candle, SymbolStats, WhaleAlert
from analytics.queries import known_pairs
from backtest.models import BacktestRun
from backtest.runs import RunLimitError
from cryptoproject.security import redact_text
from dashboard.api import params
from dashboard.api.backtests import run_item, start_run, strategy_list, user_id_of
from dashboard.api.errors import ParamError
from dashboard.auth import login_required_if_configured
from dashboard.forms import BacktestForm
from dashboard.health import group_liveness
from prediction.models import BASELINES, PredictionModel
from prediction.summary import equity_paths, model_item, symbol_summary, verdict_text

logger = logging.getLogger(__name__)

# The candle intervals the symbol page offers (the API serves more).
CHART_INTERVALS = ("1m", "5m", "15m", "1h")
WAITING_HINT = "Waiting for trades: start the pipeline with make demo"


def _page(request: HttpRequest, template: str, page: str, config: dict[str, Any], **context: Any) -> HttpResponse:
    """Render a page; ``config`` reaches the page script through ``json_script`` (never string-built JS)."""
    config = {"api": "/api/v1/", "waiting": WAITING_HINT, **config}
    return render(request, template, {"page": page, "config": config, "waiting_hint": WAITING_HINT, **context})


def known_markets() -> list[dict[str, str]]:
    """The (exchange, symbol) pairs with trades or stats, for the filters."""
    return [{"exchange": e, "symbol": s} for e, s in known_pairs()]


@login_required_if_configured
def overview(request: HttpRequest) -> HttpResponse:
    """One tile per (exchange, symbol): last price, 24h change, volume and a sparkline, updated live."""
    stats = list(SymbolStats.objects.order_by("exchange", "symbol"))
    return _page(request, "dashboard/overview.html", "overview", {"ws": "/ws/overview/"}, stats=stats)


@login_required_if_configured
def symbol(request: HttpRequest, exchange: str, symbol: str) -> HttpResponse:
    """Candles with overlays, indicators, the live trade tape and the symbol's whale trades."""
    try:
        exchange, symbol = parse_market(exchange, symbol)
    except InvalidMarketError as exc:
        raise Http404(str(exc)) from exc
    interval = request.GET.get("interval", "1m")
    if interval not in CHART_INTERVALS:
        interval = "1m"
    stats = SymbolStats.objects.filter(exchange=exchange, symbol=symbol).first()
    config = {
        "exchange": exchange,
        "symbol": symbol,
        "interval": interval,
        "intervals": list(CHART_INTERVALS),
        "intervalSeconds": {i: INTERVAL_SECONDS[i] for i in CHART_INTERVALS},
        "ws": f"/ws/market/{exchange}/{symbol}/",
    }
    return _page(
        request,
        "dashboard/symbol.html",
        "symbol",
        config,
        exchange=exchange,
        symbol=symbol,
        stats=stats,
        intervals=CHART_INTERVALS,
        interval=interval,
        prediction=symbol_summary(exchange, symbol),
    )


@login_required_if_configured
def whales(request: HttpRequest) -> HttpResponse:
    """The live whale-alert feed with symbol and minimum-notional filters (kept in the query string)."""
    market = request.GET.get("market", "")
    min_notional = request.GET.get("min_notional", "")
    config = {"ws": "/ws/whales/", "market": market, "minNotional": min_notional}
    return _page(
        request,
        "dashboard/whales.html",
        "whales",
        config,
        markets=known_markets(),
        market=market,
        min_notional=min_notional,
        has_alerts=WhaleAlert.objects.exists(),
    )


@login_required_if_configured
def health(request: HttpRequest) -> HttpResponse:
    """Pipeline health for operators, refreshed from ``/api/v1/health``."""
    return _page(request, "dashboard/health.html", "health", {"refreshMs": 3000})


BACKTEST_LIST_SIZE = 50


def _form_initial() -> dict[str, Any]:
    """Defaults for the form: the days of stored binance BTCUSDT 1h candles, when there are any."""
    span = Candle.objects.filter(exchange="binance", symbol="BTCUSDT", interval="1h").aggregate(
        first=Min("open_time"), last=Max("open_time")
    )
    initial: dict[str, Any] = {"strategy": "sma_cross"}
    if span["first"] is not None:
        initial["date_from"] = span["first"].date()
        initial["date_to"] = span["last"].date()
    return initial


@login_required_if_configured
def backtests(request: HttpRequest) -> HttpResponse:
    """The runs, newest first, and the form that starts one (as a Celery task; the run page shows progress)."""
    if request.method == "POST":
        form = BacktestForm(request.POST)
        if form.is_valid() and form.spec is not None:
            try:
                run = start_run(form.spec, user_id_of(request.user))
            except RunLimitError as exc:
                form.add_error(None, str(exc))
            else:
                return redirect("dashboard:backtest", run_id=run.pk)
    else:
        form = BacktestForm(initial=_form_initial())
    runs = visible_to(BacktestRun.objects.defer("equity", "trades"), request.user)
    rows = list(runs.order_by("-created_at", "-id")[:BACKTEST_LIST_SIZE])
    config = {"strategies": strategy_list()}
    return _page(request, "dashboard/backtests.html", "backtests", config, form=form, runs=rows)


@login_required_if_configured
def backtest(request: HttpRequest, run_id: int) -> HttpResponse:
    """One run: metrics, equity against buy-and-hold, drawdown, and trade markers on the candles."""
    run = get_object_or_404(visible_to(BacktestRun.objects.defer("equity", "trades"), request.user), pk=run_id)
    config = {"run": run_item(run), "refreshMs": 1000}
    return _page(request, "dashboard/backtest.html", "backtest", config, run=run)


MODEL_LIST_SIZE = 50


@login_required_if_configured
def models(request: HttpRequest) -> HttpResponse:
    """Price-prediction models: the chosen one's (``?id=``, else the newest active) fold metrics against the
    naive baselines and the equity of its out-of-sample signals against buy-and-hold."""
    visible = visible_to(PredictionModel.objects.all(), request.user)
    rows = list(visible.order_by("-created_at", "-id")[:MODEL_LIST_SIZE])
    chosen: PredictionModel | None = None
    try:
        model_id = params.identifier(request.GET, "id")
    except ParamError as exc:
        return HttpResponseBadRequest(exc.message, content_type="text/plain; charset=utf-8")
    if model_id is not None:
        chosen = get_object_or_404(visible, pk=model_id)
    elif rows:
        chosen = next((m for m in rows if m.active), rows[0])
    item = model_item(chosen, full=True) if chosen else None
    return _page(
        request,
        "dashboard/models.html",
        "models",
        {},
        models=[model_item(m) for m in rows],
        model=item,
        baselines=BASELINES,
        verdict=verdict_text(item) if item else "",
        chart=equity_paths(chosen.backtest) if chosen else None,
    )


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness and database reachability, for load balancers and ``make demo``: 503 when the database does not
    answer or the trades consumer group is stalled (``dashboard.health.consumer_liveness``).

    Anyone may ask, so the body is one status word per component (``database``: ok/unreachable, ``consumers``:
    ok/stalled/unknown) and never a host, pid, address or server message; staff also get ``detail`` (the
    consumers' verdict with its reason, which names the member). Operators get the rest in the log.
    """
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any database failure means "not healthy"
        # The caller is a load balancer, maybe anyone: say what is down, never the server's message (it can quote
        # the connection string). Operators get the host in the log.
        db = settings.DATABASES["default"]
        logger.warning(
            "healthz: database unreachable",
            extra={"host": f"{db.get('HOST')}:{db.get('PORT')}", "error": redact_text(str(exc))},
        )
        return JsonResponse({"status": "error", "database": "unreachable"}, status=503)
    liveness = group_liveness()
    stalled = liveness["status"] == "stalled"
    body: dict[str, Any] = {"status": "error" if stalled else "ok", "database": "ok", "consumers": liveness["status"]}
    if stalled:
        logger.warning("healthz: consumers stalled", extra={"reason": liveness["reason"]})
    if request.user.is_staff:
        body["detail"] = {"consumers": liveness}
    return JsonResponse(body, status=503 if stalled else 200)
