"""REST endpoints of price prediction: the model registry (``/models``, ``/models/<id>``) and the live
predictions (``/predictions``). Errors are the API's 400 envelope naming the bad parameter."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.ownership import visible_to
from dashboard.api import params
from dashboard.api.errors import ParamError
from dashboard.api.views import _ERRORS, ApiView, _p
from prediction.models import Prediction, PredictionModel
from prediction.summary import model_item, prediction_item

_MARKET = [
    _p("exchange", params.EXCHANGE_CHOICES),
    _p("symbol", "the exchange's symbol, e.g. BTCUSDT"),
]


def _flag(request: Request, name: str) -> bool | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise ParamError(name, f"'{name}' must be true or false, got {raw!r}.")


class ModelsView(ApiView):
    """Trained price-prediction models, newest first."""

    @extend_schema(
        parameters=[*_MARKET, _p("active", "true: only the active models"), _p("limit", "1..1000 (100)", type_=int)],
        responses={200: OpenApiTypes.OBJECT, **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        """Each model's series, training range, data hash, out-of-sample accuracy against the best baseline."""
        q = request.query_params
        rows = visible_to(PredictionModel.objects.all(), request.user)
        if (exchange := params.exchange(q)) is not None:
            rows = rows.filter(exchange=exchange)
        if (symbol := params.symbol(q)) is not None:
            rows = rows.filter(symbol=symbol)
        if (active := _flag(request, "active")) is not None:
            rows = rows.filter(active=active)
        limit = params.limit(q)
        return Response({"results": [model_item(m) for m in rows.order_by("-created_at", "-id")[:limit]]})


class ModelView(ApiView):
    """One model with its walk-forward folds, baselines and the equity of its signals."""

    @extend_schema(operation_id="prediction_model", responses={200: OpenApiTypes.OBJECT, **_ERRORS})
    def get(self, request: Request, model_id: int) -> Response:
        """Fold metrics against the baselines, overall verdict, equity against buy-and-hold."""
        visible = visible_to(PredictionModel.objects.all(), request.user)
        return Response(model_item(get_object_or_404(visible, pk=model_id), full=True))


class PredictionsView(ApiView):
    """Live predictions, newest predicted bar first."""

    @extend_schema(
        parameters=[*_MARKET, _p("model", "a model id", type_=int), _p("limit", "1..1000 (100)", type_=int)],
        responses={200: OpenApiTypes.OBJECT, **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        """P(up) and predicted return per bar; ``correct`` once the bar has closed (null before)."""
        q = request.query_params
        # Only the predictions of the models the user may see.
        rows = visible_to(Prediction.objects.all(), request.user, field="model__owner")
        if (exchange := params.exchange(q)) is not None:
            rows = rows.filter(exchange=exchange)
        if (symbol := params.symbol(q)) is not None:
            rows = rows.filter(symbol=symbol)
        if (model := params.identifier(q, "model")) is not None:
            rows = rows.filter(model_id=model)
        limit = params.limit(q)
        return Response({"results": [prediction_item(p) for p in rows.order_by("-open_time", "-id")[:limit]]})
