"""The OpenAPI description of the users' API tokens (drf-spectacular finds it once this module is imported)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object

from accounts.authentication import KEYWORD


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """``Authorization: Bearer <token>`` (:class:`accounts.authentication.ApiTokenAuthentication`)."""

    target_class = "accounts.authentication.ApiTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        """An HTTP bearer scheme."""
        return dict(build_bearer_security_scheme_object(header_name="Authorization", token_prefix=KEYWORD))
