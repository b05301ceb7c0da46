"""The token endpoint, ``POST /oauth/token`` (RFC 6749 §4.4): answers in OAuth's own error
format (§5.2), not as problems, since OAuth client libraries read ``error``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from oms_gateway.auth import TOKEN_PATH
from oms_gateway.oauth.domain import (
    MAX_FORM_BYTES,
    OAuthError,
    granted,
    issue,
    parse_form,
)
from oms_gateway.partners import store
from oms_gateway.problems import PROBLEM_JSON

router = APIRouter()
# §5.1: a token answer is never cached.
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

TOKEN_SCHEMA = {
    "type": "object", "title": "AccessToken", "additionalProperties": False,
    "required": ["access_token", "token_type", "expires_in", "scope"],
    "properties": {
        "access_token": {"type": "string", "description": "Send as Authorization: Bearer"},
        "token_type": {"type": "string", "enum": ["Bearer"]},
        "expires_in": {"type": "integer", "minimum": 1, "examples": [900]},
        "scope": {"type": "string", "description": "The token's scopes, space-separated",
                  "examples": ["orders:read orders:write"]},
    },
}
OAUTH_ERROR_SCHEMA = {
    "type": "object", "title": "OAuthError", "additionalProperties": False,
    "required": ["error", "error_description"],
    "properties": {
        "error": {"type": "string", "enum": ["invalid_request", "invalid_client",
                                             "unsupported_grant_type", "invalid_scope"]},
        "error_description": {"type": "string"},
    },
}
FORM_SCHEMA = {
    "type": "object", "title": "TokenRequest", "required": ["grant_type"],
    "properties": {
        "grant_type": {"type": "string", "enum": ["client_credentials"]},
        "client_id": {"type": "string", "description": "The partner's id (or HTTP Basic)"},
        "client_secret": {"type": "string", "description": "The partner's API key"},
        "scope": {"type": "string", "description": "Space-separated; default: all the "
                  "partner's scopes"},
    },
}


def _error(error: OAuthError, basic: bool) -> JSONResponse:
    headers = dict(_NO_STORE)
    if error.status == 401:  # §5.2: the scheme the client tried, or the one it may use
        headers["WWW-Authenticate"] = 'Basic realm="oms"' if basic else 'Bearer realm="oms"'
    return JSONResponse({"error": error.error, "error_description": error.description},
                        status_code=error.status, headers=headers)


async def _bounded_body(request: Request) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            raise OAuthError("invalid_request", f"the body is over {MAX_FORM_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    TOKEN_PATH, tags=["oauth"], response_model=None,
    summary="Trade the partner's id and API key for an access token",
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {
            "schema": {"$ref": "#/components/schemas/TokenRequest"}}}},
        "security": [],
    },
    responses={
        200: {"description": "An access token",
              "content": {"application/json": {"schema": {
                  "$ref": "#/components/schemas/AccessToken"}}}},
        400: {"description": "A malformed request, another grant type, or a scope the "
                             "partner does not hold",
              "content": {"application/json": {"schema": {
                  "$ref": "#/components/schemas/OAuthError"}}}},
        401: {"description": "Unknown client, or a secret that is not its live API key",
              "content": {"application/json": {"schema": {
                  "$ref": "#/components/schemas/OAuthError"}}}},
        503: {"description": "Retry later: the gateway's database is unavailable",
              "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
              "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}},
    },
)
async def token(request: Request) -> JSONResponse:
    """OAuth 2.0 client credentials (RFC 6749 §4.4): a form with `grant_type=client_credentials`,
    the client's id and secret in the form or as HTTP Basic, and optionally `scope`."""
    authorization = request.headers.get("authorization", "")
    basic = authorization.lower().startswith("basic ")
    try:
        form = parse_form(await _bounded_body(request), request.headers.get("content-type", ""),
                          authorization)
        partner = await store.authenticate(request.app.state.engine, form.client_secret)
        if partner is None or partner.partner_id != form.client_id:
            raise OAuthError("invalid_client", "unknown client or wrong secret", 401)
        scopes = granted(form.scopes, partner.scopes)
    except OAuthError as error:
        return _error(error, basic)
    ttl = timedelta(seconds=request.app.state.token_ttl_seconds)
    access_token = issue(partner.partner_id, scopes, secret=request.app.state.token_secret,
                         ttl=ttl, now=datetime.now(UTC))
    return JSONResponse({"access_token": access_token, "token_type": "Bearer",
                         "expires_in": int(ttl.total_seconds()),
                         "scope": " ".join(sorted(scopes))}, headers=_NO_STORE)
