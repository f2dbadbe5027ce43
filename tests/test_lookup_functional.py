"""Lookups against the sandbox over loopback: every resource, paging, filters and their
errors, the command line's output formats, and preflight."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from importer.cli.commands import main
from importer.client.resources import RESOURCES, Call, Group, build_filter, parse_rules
from importer.client.session import ConvirzaClient
from importer.errors import RequestRejected, UsageError
from importer.ledger.states import Status
from importer.ledger.store import Ledger
from importer.sandbox import STORE, SandboxConfig, start
from importer.sandbox.seed import default_seed
from importer.settings.resolve import Settings

from .conftest import SandboxThread
from .helpers import good_row, write_manifest

SEED = default_seed()


@pytest.fixture
async def client() -> AsyncIterator[ConvirzaClient]:
    runner, url = await start(SandboxConfig(static_tokens=frozenset({"tok"})))
    store = runner.app[STORE]
    for n in range(250):
        store.add(f"req-{n}", {"external_id": f"E-{n:03d}", "group_id": "12",
                               "call_date": "2025-01-01T00:00:00Z", "caller_id": "6175550142"},
                  "a.wav", 10, "0" * 64)
    settings = Settings.load({"api_url": url, "token": "tok", "rate": 1000.0}, environ={})
    async with ConvirzaClient(settings) as c:
        yield c
    await runner.cleanup()


async def test_every_list_resource_answers(client: ConvirzaClient) -> None:
    for name, resource in RESOURCES.items():
        if resource.single:
            continue
        params = {"ouId": 12} if resource.required_param else None
        objects = [o async for o in client.iterate(resource, params=params, limit=5)]
        assert objects, name
        assert all(isinstance(o, resource.model) for o in objects), name


async def test_single_objects(client: ConvirzaClient) -> None:
    group = await client.get_one(RESOURCES["group"], 12)
    assert isinstance(group, Group) and group.group_name == "Acme Plumbing"
    assert group.raw()["industry_name"] == "Home Services"   # unknown fields are kept
    assert await client.get_one(RESOURCES["group"], 999) is None
    call = await client.get_one(RESOURCES["call"], 7)
    assert isinstance(call, Call) and call.external_id == "E-006"


async def test_paging_returns_every_call_exactly_once(client: ConvirzaClient) -> None:
    calls = [c async for c in client.iterate(RESOURCES["calls"])]
    ids = [c.raw()["call_id"] for c in calls]
    assert len(ids) == 250 and len(set(ids)) == 250
    few = [c async for c in client.iterate(RESOURCES["calls"], limit=120, page_size=50)]
    assert [c.raw()["call_id"] for c in few] == ids[:120]


async def test_pages_are_fetched_only_when_needed(client: ConvirzaClient) -> None:
    pages = client.iterate(RESOURCES["calls"], page_size=100)
    first = await anext(pages)
    assert first.raw()["call_id"] == 1
    await pages.aclose()   # nothing more was fetched: no error, no waiting on 3 pages


async def test_filters(client: ConvirzaClient) -> None:
    rule = build_filter({"group_id__gte": 14})
    names = [g.raw()["group_name"] async for g in client.iterate(RESOURCES["groups"],
                                                                 filter=rule)]
    assert names == ["Acme HVAC", "Acme Dental Partners"]
    found = await client.find_calls("E-042")
    assert [c.call_id for c in found] == [43]
    assert await client.find_calls("nobody") == []


@pytest.mark.parametrize(("rule", "message"), [
    ("colour=red", "Invalid column specified in filter on rule 1 : colour=red"),
    ("group_id=12,group_id~3", "Unsupported comparator used in filter on rule 2"),
    ("group_id=", "Please provide valid data."),
])
async def test_filter_errors_carry_the_api_message(client: ConvirzaClient, rule: str,
                                                   message: str) -> None:
    with pytest.raises(RequestRejected) as caught:
        [o async for o in client.iterate(RESOURCES["groups"], filter=rule)]
    assert message in str(caught.value)


def test_filter_building() -> None:
    assert build_filter({"group_id": 12, "call_started__gte": "2025-01-01",
                         "duration__lte": 30, "disposition__ne": "BUSY"}) == \
        "group_id=12,call_started>=2025-01-01,duration<=30,disposition!=BUSY"
    assert parse_rules(["group_id=12", "call_started >= 2025-01-01"]) == \
        "group_id=12,call_started>=2025-01-01"
    for bad in ({"name": "a,b"}, {"name": " "}, {"group_id__gt": 1}):
        with pytest.raises(UsageError):
            build_filter(bad)
    with pytest.raises(UsageError, match="expected COLUMN=VALUE"):
        parse_rules(["group_id~12"])


@pytest.fixture
def lookup_env(monkeypatch: pytest.MonkeyPatch, sandbox: SandboxThread) -> SandboxThread:
    monkeypatch.setenv("CONVIRZA_API_URL", sandbox.url)
    monkeypatch.setenv("CONVIRZA_TOKEN", "tok-3f9a1c7e-5b2d-4e8f-9a6c-1d2e3f4a5b6c")
    for n in range(250):
        sandbox.store.add(f"r{n}", {"external_id": f"E-{n}", "group_id": "12"}, None, None,
                          None)
    return sandbox


def test_cli_groups_as_json(lookup_env: SandboxThread,
                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lookup", "groups", "--format", "json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == SEED["groups"]


def test_cli_pages_over_250_calls(lookup_env: SandboxThread,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lookup", "calls", "--format", "json"]) == 0
    ids = [c["call_id"] for c in json.loads(capsys.readouterr().out)]
    assert sorted(ids) == list(range(1, 251))
    assert main(["lookup", "calls", "--format", "csv", "--limit", "7"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 7 and rows[0]["external_id"] == "E-0"


def test_cli_table_fits_80_columns(lookup_env: SandboxThread,
                                   capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    for resource in ("groups", "campaigns", "calls", "custom-sources"):
        extra = ["--group", "12"] if resource == "custom-sources" else []
        assert main(["lookup", resource, *extra]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) > 1 and max(map(len, lines)) <= 80, resource


def test_cli_errors(lookup_env: SandboxThread, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lookup", "groups", "--filter", "colour=red"]) == 2
    assert "Invalid column specified in filter on rule 1 : colour=red" in capsys.readouterr().err
    assert main(["lookup", "group"]) == 2
    assert main(["lookup", "groups", "12"]) == 2
    assert "--filter group_id=12" in capsys.readouterr().err
    assert main(["lookup", "custom-sources"]) == 2
    assert main(["lookup", "call-details", "--filter", "external_id=none"]) == 0
    assert "no records found" in capsys.readouterr().err


def test_preflight_marks_exactly_the_rows_with_unknown_ids(
        workdir: Path, sandbox: SandboxThread, token_env: str) -> None:
    manifest = write_manifest(workdir / "manifests" / "m.csv", [
        good_row(external_id="A", group_id="12", campaign_id="301",
                 recording_file="../sample_data/call-0001-pcm8k.wav"),
        good_row(external_id="B", group_id="99",
                 recording_file="../sample_data/call-0002-ulaw8k.wav"),
        good_row(external_id="C", group_id="14", campaign_id="777",
                 recording_file="../sample_data/call-0003-alaw8k.wav"),
        good_row(external_id="D", group_id="99",
                 recording_file="../sample_data/call-0004-stereo16k.wav"),
        good_row(external_id="E", group_id="16",
                 recording_file="../sample_data/call-0005-cbr.mp3"),
    ])
    ledger = workdir / "l.sqlite"

    assert main(["run", str(manifest), "--ledger", str(ledger), "--preflight"]) == 1

    opened = Ledger.open(ledger)
    rows = {r.external_id: r for r in opened.rows()}
    opened.close()
    assert {k: r.status for k, r in rows.items()} == {
        "A": Status.SUCCEEDED, "B": Status.INVALID, "C": Status.INVALID,
        "D": Status.INVALID, "E": Status.SUCCEEDED}
    assert "group_id" in (rows["B"].error or "") and "99" in (rows["B"].error or "")
    assert "campaign_id" in (rows["C"].error or "") and "777" in (rows["C"].error or "")
    assert sorted(c.external_id or "" for c in sandbox.store.calls()) == ["A", "E"]


def test_validate_preflight_sends_nothing(workdir: Path, sandbox: SandboxThread,
                                          token_env: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write_manifest(workdir / "manifests" / "m.csv", [
        good_row(external_id="A"), good_row(external_id="B", group_id="99")])
    assert main(["validate", str(manifest), "--preflight"]) == 1
    assert sandbox.store.count() == 0
    assert "1 invalid" in capsys.readouterr().out
