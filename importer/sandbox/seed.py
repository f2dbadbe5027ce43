"""The sandbox's seeded account: groups, campaigns with users, custom sources, call flows and
numbers, shaped as the API notes record the V2 list endpoints (field names from Convirza's QA
suite). ``load_seed`` replaces it with a JSON file of the same shape (``--seed-data``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

Seed = dict[str, list[dict[str, Any]]]

_CREATED = "2023-01-05T14:00:00.000Z"


def _group(gid: int, name: str, parent: int | None, city: str, zip_code: str) -> dict[str, Any]:
    return {"group_id": gid, "group_ext_id": f"EXT-{gid}", "group_name": name,
            "group_parent_id": parent, "top_group_id": 10, "group_status": "active",
            "billing_id": 10, "address": "1 Main St", "city": city, "state": "MA",
            "zip": zip_code, "phone_number": "6175550100", "group_created": _CREATED,
            "group_modified": None, "industry_id": 7, "industry_name": "Home Services"}


def default_seed() -> Seed:
    groups = [
        _group(10, "Acme Holdings", None, "Boston", "02110"),
        _group(12, "Acme Plumbing", 10, "Boston", "02110"),
        _group(14, "Acme HVAC", 10, "Worcester", "01608"),
        _group(16, "Acme Dental Partners", 10, "Newton", "02458"),
    ]
    users = [{"ct_user_id": 501, "first_name": "Dana", "last_name": "Whitfield",
              "user_email": "dana@example.com", "user_status": "active", "role_id": 1,
              "group_id": 12, "user_ext_id": None, "user_title": "Office manager"}]
    campaigns = [
        {"campaign_id": cid, "campaign_ext_id": f"CMP-{cid}", "campaign_name": name,
         "campaign_owner_user_id": 501, "group_id": gid, "campaign_status": "active",
         "campaign_start_date": "2024-01-01", "campaign_end_date": None,
         "campaign_created": _CREATED, "campaign_modified": None, "users": users}
        for cid, name, gid in ((301, "Spring Promo", 12), (302, "Dental Referrals", 12),
                               (303, "HVAC Tune-up", 14))
    ]
    custom_sources = [
        {"custom_source_id": sid, "custom_source_name": name, "org_unit_id": ou}
        for sid, name, ou in ((901, "Google Ads", 12), (902, "Yelp", 12),
                              (903, "Direct Mail", 14), (904, "Organic", 14))
    ]
    callflows = [
        {"call_flow_id": 7001, "campaign_id": 301, "group_id": 12, "channel": "Google: Paid",
         "tracking_number": "8005550100", "ring_to": "6175550199", "call_flow_status": "active"},
        {"call_flow_id": 7002, "campaign_id": 302, "group_id": 12, "channel": "Yelp: Organic",
         "tracking_number": "8005550111", "ring_to": "6175550198", "call_flow_status": "active"},
    ]
    channels = [{"channel_id": 41, "channel_name": "Google: Paid"},
                {"channel_id": 42, "channel_name": "Yelp: Organic"},
                {"channel_id": 43, "channel_name": "Linkedin: Paid"}]
    numbers = [{"number": "8005550100", "number_status": "assigned", "group_id": 12},
               {"number": "8005550111", "number_status": "assigned", "group_id": 12},
               {"number": "8005550122", "number_status": "reserved", "group_id": 14}]
    return {"groups": groups, "campaigns": campaigns, "custom_sources": custom_sources,
            "callflows": callflows, "channels": channels, "numbers": numbers}


def load_seed(path: str) -> Seed:
    """A seed from a JSON file ``{"groups": [...], "campaigns": [...], ...}``; resources the
    file leaves out keep the default data."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of resource lists")
    seed = default_seed()
    for name, rows in data.items():
        if name not in seed or not isinstance(rows, list):
            raise ValueError(f"{path}: unknown resource {name!r} or not a list "
                             f"(known: {', '.join(seed)})")
        seed[name] = rows
    return seed
