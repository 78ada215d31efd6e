"""REST endpoints of the signed-in user's own things: API tokens (``/tokens``) and the watchlist (``/watchlist``).

They need a user whatever ``DASHBOARD_LOGIN_REQUIRED`` says (401 otherwise). A token's secret is in the answer
to its creation only. Another user's token is a 404, like one that does not exist.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import tokens, watchlist
from dashboard.api.errors import ParamError
from dashboard.api.views import _ERRORS, ApiView


class OwnView(ApiView):
    """A signed-in user's own resources: authentication is required always."""

    permission_classes = [IsAuthenticated]


def _body(request: Request) -> dict[str, Any]:
    if not isinstance(request.data, dict):
        raise ParamError("body", "the body must be a JSON object.")
    return request.data


class TokensView(OwnView):
    """The user's API tokens (newest first); POST creates one."""

    @extend_schema(operation_id="token_list", responses={200: OpenApiTypes.OBJECT, **_ERRORS})
    def get(self, request: Request) -> Response:
        """Each token's id, name, prefix, dates and status (active, expired, revoked); never a secret."""
        return Response({"results": [tokens.token_item(t) for t in tokens.user_tokens(request.user)]})

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        description='Body: {"name": "my script", "expires_in_days": 90}. The answer\'s "token" is shown only once.',
        responses={201: OpenApiTypes.OBJECT, **_ERRORS},
    )
    def post(self, request: Request) -> Response:
        """Create a token; 400 naming the field (or past ``ACCOUNTS_MAX_API_TOKENS`` active tokens)."""
        body = _body(request)
        try:
            row, secret = tokens.create_token(
                request.user, body.get("name", ""), body.get("expires_in_days", tokens.DEFAULT_DAYS)
            )
        except tokens.TokenError as exc:
            raise ParamError(exc.param, exc.message) from None
        return Response({**tokens.token_item(row), "token": secret}, status=status.HTTP_201_CREATED)


class TokenView(OwnView):
    """One of the user's tokens."""

    @extend_schema(operation_id="token_revoke", responses={204: None, **_ERRORS})
    def delete(self, request: Request, token_id: int) -> Response:
        """Revoke it (it answers 401 from then on); 404 for a token that is not the user's."""
        if not tokens.revoke_token(request.user, token_id):
            raise NotFound(f"no token {token_id}")
        return Response(status=status.HTTP_204_NO_CONTENT)


class WatchlistView(OwnView):
    """The user's watchlist: ordered markets from any exchange."""

    @extend_schema(operation_id="watchlist_get", responses={200: OpenApiTypes.OBJECT, **_ERRORS})
    def get(self, request: Request) -> Response:
        """The markets in order, and the quota."""
        return Response({"results": watchlist.items(request.user), "limit": settings.ACCOUNTS_MAX_WATCHLIST})

    @extend_schema(
        operation_id="watchlist_put",
        request=OpenApiTypes.OBJECT,
        description='Body: {"items": [{"exchange": "binance", "symbol": "BTCUSDT"}, ...]} replaces the list.',
        responses={200: OpenApiTypes.OBJECT, **_ERRORS},
    )
    def put(self, request: Request) -> Response:
        """Replace the list (order kept); 400 naming the bad item or ``items`` past ``ACCOUNTS_MAX_WATCHLIST``."""
        try:
            wanted = watchlist.parse_items(request.data)
        except watchlist.WatchlistError as exc:
            raise ParamError(exc.param, exc.message) from None
        watchlist.replace(request.user, wanted)
        return self.get(request)
