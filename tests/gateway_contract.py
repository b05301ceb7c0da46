"""The gateway's OpenAPI document as a contract the tests hold every answer to: an answer's
status must be documented for its operation, and its body must validate against the schema
documented for that status and content type."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import httpx
from jsonschema import Draft202012Validator, FormatChecker

FORMATS = FormatChecker(formats=("uuid", "email"))


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    # RFC 3339 requires the offset, which fromisoformat alone would not.
    if not isinstance(value, str):
        return True
    return datetime.fromisoformat(value).tzinfo is not None


def validator(document: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """A validator of ``schema``, whose references point into ``document``'s components."""
    return Draft202012Validator({**schema, "components": document["components"]},
                                format_checker=FORMATS)


class Contract:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.routes = [
            (method.upper(), re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/:]+",
                                                     re.escape(path)) + "$"), path, spec)
            for path, item in document["paths"].items() for method, spec in item.items()
        ]
        self.checked = 0

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]] | None:
        for route_method, pattern, template, spec in self.routes:
            if route_method == method and pattern.match(path):
                return template, spec
        return None

    def check(self, response: httpx.Response) -> None:
        request = response.request
        found = self.operation(request.method, request.url.path)
        if found is None:  # not an operation of the document (/healthz, an unknown path)
            return
        template, spec = found
        where = f"{request.method} {template} answered {response.status_code}"
        documented = spec["responses"].get(str(response.status_code))
        assert documented is not None, f"{where}, which its document does not list"
        media = response.headers.get("content-type", "").split(";")[0]
        assert media in documented.get("content", {}), f"{where} as {media}, undocumented"
        schema = documented["content"][media]["schema"]
        # A CSV answer is the document's string; its rows are the tests' to check.
        body = response.json() if media.endswith("json") else response.text
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in validator(self.document, schema).iter_errors(body)]
        assert not errors, f"{where} with a body off its schema: {errors}"
        self.checked += 1

    async def hook(self, response: httpx.Response) -> None:
        """An httpx response hook: every answer a test receives is checked."""
        await response.aread()
        self.check(response)
