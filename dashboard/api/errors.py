"""JSON errors for the API: ``{"error": {"param": "<name or null>", "message": "...", "code": "..."}}``."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler

from accounts.quotas import QuotaExceeded


class ParamError(APIException):
    """A bad query parameter: HTTP 400 naming the parameter."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid_parameter"

    def __init__(self, param: str, message: str) -> None:
        super().__init__(detail=message, code=self.default_code)
        self.param = param
        self.message = message


def error_body(param: str | None, message: str, code: str) -> dict[str, Any]:
    """The error envelope every API error uses."""
    return {"error": {"param": param, "message": message, "code": code}}


def _first_message(detail: Any) -> tuple[str | None, str]:
    if isinstance(detail, dict) and detail:
        param, value = next(iter(detail.items()))
        return str(param), _first_message(value)[1]
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return None, str(detail)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler with the project's error envelope (status codes and headers unchanged)."""
    if isinstance(exc, (ParamError, QuotaExceeded)):
        # A quota's refusal names its field too (400 for a size, 429 for a rate: accounts.quotas).
        return Response(error_body(exc.param, exc.message, exc.default_code), status=exc.status_code)
    # Django's own 404 and 403 (get_object_or_404, ...): DRF answers them, but as its {"detail": ...}.
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, APIException):
        param, message = _first_message(exc.detail)
        if not isinstance(exc, ValidationError):
            param = None
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else "invalid"
        response.data = error_body(param, message, code)
    return response
