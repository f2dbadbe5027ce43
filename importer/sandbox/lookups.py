"""The V2 lookup endpoints, with the conventions the API notes record (section 4): the
``{"result", "err", "data"}`` envelope, ``limit``/``offset`` paging (default 100, limit >= 1,
offset >= 0, swagger-style errors otherwise), ``filter=col=value,col>=value`` with the exact
error strings of Convirza's QA suite, and an empty result answered as the error
``"no records found."``.

What the notes do not show is marked GUESS: the shape of a call record, the HTTP status of
envelope errors (400 here), and the channel list's path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from aiohttp import web

NO_RECORDS = "no records found."
DEFAULT_LIMIT = 100
_RULE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(>=|<=|!=|=)(.*)$")
_COMPARATOR = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)([^A-Za-z0-9_\s]+)")

Rows = Callable[[web.Request], list[dict[str, Any]]]


def envelope(data: list[dict[str, Any]]) -> web.Response:
    if not data:
        return web.json_response({"result": "error", "err": NO_RECORDS, "data": []})
    return web.json_response({"result": "success", "err": None, "data": data})


def envelope_error(message: str, status: int = 400) -> web.Response:
    return web.json_response({"result": "error", "err": message}, status=status)  # GUESS: 400


def swagger_error(name: str, code: str, message: str) -> web.Response:
    detail = f"Invalid parameter ({name}): {message}"
    return web.json_response({"message": "Validation errors", "errors": [{
        "code": "INVALID_REQUEST_PARAMETER", "in": "query", "name": name, "message": detail,
        "path": [], "errors": [{"code": code, "message": message, "path": []}]}]}, status=400)


class LookupError_(Exception):
    """A request the API would refuse; carries the response to send."""

    def __init__(self, response: web.Response) -> None:
        super().__init__("lookup refused")
        self.response = response


def _int_param(request: web.Request, name: str, default: int, minimum: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"-?\d+", raw.strip()):
        raise LookupError_(swagger_error(name, "INVALID_TYPE",
                                         "Expected type integer but found type string"))
    value = int(raw)
    if value < minimum:
        raise LookupError_(swagger_error(name, "MINIMUM",
                                         f"Value {value} is less than minimum {minimum}"))
    return value


def parse_filter(text: str, columns: frozenset[str]) -> list[tuple[str, str, str]]:
    """``col=value,col>=value`` as (column, operator, value) rules, refused as the API does."""
    rules = []
    for number, rule in enumerate((r for r in text.split(",") if r.strip()), 1):
        rule = rule.strip()
        match = _RULE.match(rule)
        if match is None or (match.group(2) == "=" and match.group(3).startswith(tuple("=<>!"))):
            raise LookupError_(envelope_error(
                f"Unsupported comparator used in filter on rule {number} : {rule}"))
        column, op, value = match.groups()
        if column not in columns:
            raise LookupError_(envelope_error(
                f"Invalid column specified in filter on rule {number} : {rule}"))
        if not value.strip():
            raise LookupError_(envelope_error("Please provide valid data."))
        rules.append((column, op, value))
    return rules


def _compare(actual: Any, op: str, wanted: str) -> bool:
    if actual is None:
        return op == "!="
    left: Any = actual
    right: Any = wanted
    try:
        left, right = float(actual), float(wanted)
    except (TypeError, ValueError):
        left, right = str(actual), wanted
    return bool({"=": left == right, "!=": left != right, ">=": left >= right,
                 "<=": left <= right}[op])


def lookup(rows: Rows, columns: frozenset[str],
           id_column: str | None = None) -> Callable[[web.Request], Any]:
    """A list endpoint over ``rows(request)``: filter, then page. With ``id_column``, the
    single-object form ``?id=N`` selects on that column."""

    async def handler(request: web.Request) -> web.Response:
        try:
            limit = _int_param(request, "limit", DEFAULT_LIMIT, 1)
            offset = _int_param(request, "offset", 0, 0)
            rules = parse_filter(request.query.get("filter", ""), columns)
            if id_column is not None:
                if "id" not in request.query:
                    raise LookupError_(swagger_error("id", "OBJECT_MISSING_REQUIRED_PROPERTY",
                                                     "Value is required but was not provided"))
                rules.append((id_column, "=", request.query["id"]))
        except LookupError_ as exc:
            return exc.response
        found = [r for r in rows(request) if all(_compare(r.get(c), op, v) for c, op, v in rules)]
        return envelope(found[offset:offset + limit])

    return handler

