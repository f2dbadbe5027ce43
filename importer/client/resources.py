"""What the lookup endpoints return, as typed models, and how to ask for it.

The models name the fields the API notes document and keep every other field the API sends
(``extra="allow"``): the API returns more than we know, and a lookup must not lose it. No I/O
here; ``client.py`` does the requests.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from ..errors import UsageError


class ApiObject(BaseModel):
    """Base of every lookup result: known fields typed, unknown ones kept as they came."""

    model_config = ConfigDict(extra="allow", frozen=True)

    def raw(self) -> dict[str, Any]:
        """The object as the API gave it."""
        return self.model_dump(mode="json", exclude_unset=True)


class Group(ApiObject):
    group_id: int
    group_ext_id: str | None = None
    group_name: str | None = None
    group_parent_id: int | None = None
    top_group_id: int | None = None
    group_status: str | None = None


class User(ApiObject):
    ct_user_id: int
    first_name: str | None = None
    last_name: str | None = None
    user_email: str | None = None
    role_id: int | None = None
    group_id: int | None = None


class Campaign(ApiObject):
    campaign_id: int
    campaign_ext_id: str | None = None
    campaign_name: str | None = None
    group_id: int | None = None
    campaign_status: str | None = None
    users: list[User] | None = None


class CustomSource(ApiObject):
    custom_source_id: int
    custom_source_name: str | None = None
    org_unit_id: int | None = None


class CallFlow(ApiObject):
    call_flow_id: int
    campaign_id: int | None = None
    group_id: int | None = None
    channel: str | None = None
    tracking_number: str | None = None


class Channel(ApiObject):
    channel_id: int
    channel_name: str | None = None


class Number(ApiObject):
    number: str
    number_status: str | None = None
    group_id: int | None = None


class Call(ApiObject):
    """GUESS beyond ``call_id``/``external_id``: no public source shows a V2 call record."""

    call_id: int
    external_id: str | None = None
    group_id: int | None = None
    call_started: str | None = None


@dataclass(frozen=True)
class Resource:
    """One lookup: its path, its model, the columns a table shows, and whether it takes
    ``?id=`` (a single object) or needs a query parameter of its own."""

    name: str
    path: str
    model: type[ApiObject]
    columns: tuple[str, ...]
    single: bool = False
    required_param: str | None = None
    help: str = ""


RESOURCES: dict[str, Resource] = {r.name: r for r in (
    Resource("groups", "/v2/group/list", Group,
             ("group_id", "group_name", "group_parent_id", "group_status"),
             help="groups this user can see"),
    Resource("group", "/v2/group", Group,
             ("group_id", "group_name", "group_parent_id", "group_status"), single=True,
             help="one group by id"),
    Resource("campaigns", "/v2/campaign/list", Campaign,
             ("campaign_id", "campaign_name", "group_id", "campaign_status"),
             help="campaigns"),
    Resource("campaign", "/v2/campaign", Campaign,
             ("campaign_id", "campaign_name", "group_id", "campaign_status"), single=True,
             help="one campaign by id"),
    Resource("campaign-users", "/v2/campaign/user", Campaign,
             ("campaign_id", "campaign_name", "group_id", "users"),
             help="campaigns with their users"),
    Resource("custom-sources", "/v2/customsource", CustomSource,
             ("custom_source_id", "custom_source_name", "org_unit_id"),
             required_param="ouId", help="custom sources of a group (--group)"),
    Resource("callflows", "/v2/callflow", CallFlow,
             ("call_flow_id", "campaign_id", "channel", "tracking_number"),
             help="call flows"),
    # GUESS: the notes list "List Channels" without its path.
    Resource("channels", "/v2/channel/list", Channel, ("channel_id", "channel_name"),
             help="channels (path guessed)"),
    Resource("numbers", "/v2/number/search", Number, ("number", "number_status", "group_id"),
             help="phone numbers"),
    Resource("calls", "/v2/call/list", Call,
             ("call_id", "external_id", "group_id", "call_started"), help="calls"),
    Resource("call", "/v2/call", Call, ("call_id", "external_id", "group_id", "call_started"),
             single=True, help="one call by id"),
    Resource("call-details", "/v2/call/detail", Call,
             ("call_id", "external_id", "group_id", "call_started"),
             help="calls with details (filter by external_id)"),
)}

_OPERATORS = {"": "=", "ne": "!=", "gte": ">=", "lte": "<="}
_RAW_RULE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|!=|=)\s*(.+?)\s*$")


def _value(column: str, value: object) -> str:
    text = str(value).strip()
    if not text:
        raise UsageError(f"filter on {column}: empty value")
    if "," in text:
        # The API separates rules with commas and documents no escape for them.
        raise UsageError(f"filter on {column}: a value cannot contain a comma ({text!r})")
    return text


def build_filter(filters: Mapping[str, object]) -> str:
    """``filter`` from keywords: ``group_id=12`` -> ``group_id=12``,
    ``call_started__gte="2024-01-01"`` -> ``call_started>=2024-01-01`` (also ``__lte``,
    ``__ne``); rules are joined with commas, which values therefore may not contain."""
    rules = []
    for key, value in filters.items():
        column, _, suffix = key.partition("__")
        if suffix not in _OPERATORS:
            raise UsageError(f"unknown filter operator __{suffix} (use __gte, __lte, __ne)")
        rules.append(f"{column}{_OPERATORS[suffix]}{_value(column, value)}")
    return ",".join(rules)


def parse_rules(rules: list[str]) -> str:
    """``filter`` from rules typed on the command line (``"group_id=12"``, ``"duration>=30"``),
    checked for form so that a typo fails here, before a request."""
    checked = []
    for rule in rules:
        for part in rule.split(","):
            match = _RAW_RULE.match(part)
            if match is None:
                raise UsageError(f"--filter {part!r}: expected COLUMN=VALUE, COLUMN!=VALUE, "
                                 "COLUMN>=VALUE or COLUMN<=VALUE")
            column, op, value = match.groups()
            checked.append(f"{column}{op}{_value(column, value)}")
    return ",".join(checked)
