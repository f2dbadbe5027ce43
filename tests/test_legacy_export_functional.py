"""A legacy export imports as it is (issue 22): names resolved to ids through the sandbox's
lookups, words translated by value maps, formatted numbers repaired, ignored columns, and
every problem of a row listed at once, file included."""

from __future__ import annotations

import csv
import importlib.util
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from importer.cli.commands import main
from importer.sandbox import SandboxConfig
from importer.sandbox.seed import default_seed

from .conftest import ROOT, TOKEN, SandboxThread
from .helpers import status_counts

EXAMPLES = ROOT / "manifests" / "examples"
COLUMNS = EXAMPLES / "legacy-pbx-export.columns.toml"


def _maker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_legacy_export",
                                                  EXAMPLES / "make_legacy_export.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def export(tmp_path: Path, n: int) -> Path:
    """``n`` rows as the example's generator writes them, with their recordings."""
    manifest = tmp_path / "export" / "calls.csv"
    manifest.parent.mkdir()
    _maker().write(manifest, n)
    shutil.copy(COLUMNS, tmp_path / "columns.toml")
    return manifest


def rewrite(manifest: Path, changes: dict[int, dict[str, str]]) -> None:
    """Change cells of some rows (0-based data rows) in place."""
    with manifest.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for index, cells in changes.items():
        rows[index].update(cells)
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture
def shared_names() -> Iterator[SandboxThread]:
    """An account where two groups share a name, as happens after a reorganisation."""
    seed = default_seed()
    seed["groups"] = [*seed["groups"], {**seed["groups"][1], "group_id": 18}]
    with SandboxThread(SandboxConfig(static_tokens=frozenset({TOKEN}), seed=seed)) as server:
        yield server


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("CONVIRZA_USERNAME", "CONVIRZA_PASSWORD", "CONVIRZA_LEDGER", "CONVIRZA_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    yield


def _point(monkeypatch: pytest.MonkeyPatch, server: SandboxThread) -> None:
    monkeypatch.setenv("CONVIRZA_API_URL", server.url)
    monkeypatch.setenv("CONVIRZA_TOKEN", TOKEN)


def test_a_legacy_export_imports_with_a_columns_file_and_no_edit_of_the_sheet(
        tmp_path: Path, sandbox: SandboxThread, monkeypatch: pytest.MonkeyPatch,
        api: None) -> None:
    _point(monkeypatch, sandbox)
    manifest = export(tmp_path, 60)
    ledger = tmp_path / "calls.ledger.sqlite"
    assert main(["run", str(manifest), "--columns", str(tmp_path / "columns.toml"),
                 "--ledger", str(ledger), "--timezone", "America/New_York", "--quiet",
                 "--rate", "200", "--concurrency", "8"]) == 0
    assert status_counts(ledger) == Counter({"succeeded": 60})
    calls = {c.external_id: c.fields for c in sandbox.store.calls()}
    assert len(calls) == 60
    first, second, third = (calls[f"PBX-240301-000{i}"] for i in range(3))
    # "Acme Plumbing", "acme hvac", "Acme Plumbing " (a trailing space)
    assert [c["group_id"] for c in (first, second, third)] == ["12", "14", "12"]
    # "Spring Promo", "HVAC Tune-up", "spring promo"
    assert [c["campaign_id"] for c in (first, second, third)] == ["301", "303", "301"]
    # "Answered", "Voicemail" (the columns file), "No Answer"; "Inbound", "Outbound", "inbound"
    assert [c["disposition"] for c in (first, second, third)] == \
        ["ANSWERED", "NO ANSWER", "NO ANSWER"]
    assert [c["is_outbound"] for c in (first, second, third)] == ["false", "true", "false"]
    assert first["caller_id"] == "6175551000" and first["tracking_number"] == "8005550100"
    assert first["call_date"] == "2024-03-01T09:00:00-05:00"  # 9:00 AM, in New York
    assert not any("Notes" in c or "follow up" in c.values() for c in calls.values())


def test_unknown_and_ambiguous_names_are_invalid_rows_with_suggestions(
        tmp_path: Path, shared_names: SandboxThread, monkeypatch: pytest.MonkeyPatch,
        api: None) -> None:
    _point(monkeypatch, shared_names)
    manifest = export(tmp_path, 6)
    # rows 0 and 2 say "Acme Plumbing", which two groups now share; row 1 a typo
    rewrite(manifest, {1: {"Location": "Acme Plumbin"}, 3: {"Location": "Acme HVAC"},
                       4: {"Location": "acme hvac"}, 5: {"Location": "Acme Dental Partners"}})
    errors = tmp_path / "errors.csv"
    code = main(["validate", str(manifest), "--columns", str(tmp_path / "columns.toml"),
                 "--errors-out", str(errors), "--timezone", "America/New_York"])
    assert code == 1
    with errors.open(newline="", encoding="utf-8-sig") as handle:
        by_id = {r["external_id"]: r["errors"] for r in csv.DictReader(handle)}
    assert set(by_id) == {"PBX-240301-0000", "PBX-240301-0001", "PBX-240301-0002"}
    assert by_id["PBX-240301-0000"] == (
        "group_name: a group name only one group has (2 have it: ids 12, 18; give group_id for "
        "these rows, or rename one in Convirza) (got 'Acme Plumbing')")
    assert by_id["PBX-240301-0001"] == (
        "group_name: the group name of a group the API lists (closest: 'Acme Plumbing', "
        "'Acme Holdings') (got 'Acme Plumbin')")


def test_one_row_with_three_problems_lists_three(
        tmp_path: Path, sandbox: SandboxThread, monkeypatch: pytest.MonkeyPatch,
        api: None) -> None:
    _point(monkeypatch, sandbox)
    manifest = export(tmp_path, 3)
    rewrite(manifest, {1: {"Disposition": "Transferred", "Location": "Nowhere Inc",
                           "Recording Path": "recordings/REC-999999.wav"}})
    errors = tmp_path / "errors.csv"
    assert main(["validate", str(manifest), "--columns", str(tmp_path / "columns.toml"),
                 "--errors-out", str(errors), "--timezone", "America/New_York"]) == 1
    with errors.open(newline="", encoding="utf-8-sig") as handle:
        (row,) = list(csv.DictReader(handle))
    problems = row["errors"].split("; ")
    assert len(problems) == 3, problems
    assert problems[0].startswith("recording_file: ")  # the file: not found
    assert "REC-999999.wav" in problems[0]
    assert problems[1].startswith("group_name: the group name of a group the API lists")
    assert problems[2].startswith("disposition: one of ANSWERED, BUSY, NO ANSWER (map other "
                                  "words under [values.disposition]")


def test_validate_without_credentials_says_names_are_unresolved_and_checks_the_rest(
        tmp_path: Path, api: None, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = export(tmp_path, 4)
    rewrite(manifest, {2: {"From": "not a phone"}})
    errors = tmp_path / "errors.csv"
    assert main(["validate", str(manifest), "--columns", str(tmp_path / "columns.toml"),
                 "--timezone", "America/New_York", "--errors-out", str(errors)]) == 1
    err = capsys.readouterr().err
    assert "the names in its campaign_name, group_name column(s) are not resolved to ids " \
        "without API credentials; the rest of every row is checked" in err
    with errors.open(newline="", encoding="utf-8-sig") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["external_id"] == "PBX-240301-0002" and row["errors"].startswith("caller_id: ")


def test_explain_mapping_names_each_columns_field_and_first_values(
        tmp_path: Path, api: None, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = export(tmp_path, 4)
    main(["validate", str(manifest), "--columns", str(tmp_path / "columns.toml"),
          "--timezone", "America/New_York", "--explain-mapping", "--set", "line_type=landline"])
    out = capsys.readouterr().out
    table = out.split("\n\n", 1)[0].splitlines()
    assert table[0] == "How calls.csv is read (header in row 1):"
    lines = {line.split()[0]: line.split() for line in table[2:12]}
    assert lines["From"][1:3] == ["caller_id", "mapped"]
    assert lines["Notes"][1:3] == ["-", "ignored"]
    assert "(617) 555-1000, (617) 555-1001, (617) 555-1002" in out
    assert any(line.split()[:3] == ["(no", "column)", "line_type"] for line in table)
    assert "'Voicemail' -> NO ANSWER" in out


def test_a_column_that_matches_a_field_by_itself_can_be_ignored(
        tmp_path: Path, sandbox: SandboxThread, monkeypatch: pytest.MonkeyPatch,
        api: None) -> None:
    _point(monkeypatch, sandbox)
    manifest = export(tmp_path, 2)
    rewrite(manifest, {0: {"Disposition": "Transferred"}})
    ledger = tmp_path / "l.sqlite"
    assert main(["run", str(manifest), "--columns", str(tmp_path / "columns.toml"),
                 "--map", "Disposition=", "--ledger", str(ledger),
                 "--timezone", "America/New_York", "--quiet"]) == 0
    assert all("disposition" not in c.fields for c in sandbox.store.calls())


def test_an_unknown_field_in_a_map_suggests_the_nearest(
        tmp_path: Path, api: None, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = export(tmp_path, 2)
    assert main(["validate", str(manifest), "--columns", str(tmp_path / "columns.toml"),
                 "--map", "From=caller_number"]) == 2
    assert "caller_number (did you mean caller_name or caller_id?)" in capsys.readouterr().err
    assert main(["validate", str(manifest), "--columns", str(tmp_path / "columns.toml"),
                 "--value", "dispositon:Voicemail=NO ANSWER"]) == 2
    assert "(did you mean disposition?)" in capsys.readouterr().err


def test_the_errors_csv_fixed_and_fed_back_with_the_same_columns_file_is_clean(
        tmp_path: Path, sandbox: SandboxThread, monkeypatch: pytest.MonkeyPatch,
        api: None) -> None:
    _point(monkeypatch, sandbox)
    manifest = export(tmp_path, 3)
    rewrite(manifest, {1: {"Location": "Acme Plumbin"}})  # its Disposition is "Voicemail"
    errors = tmp_path / "errors.csv"
    columns = ["--columns", str(tmp_path / "columns.toml"), "--timezone", "America/New_York"]
    assert main(["validate", str(manifest), "--errors-out", str(errors), *columns]) == 1
    rewrite_errors = errors.read_text(encoding="utf-8-sig").replace("Acme Plumbin,",
                                                                    "Acme Plumbing,")
    errors.write_text(rewrite_errors, encoding="utf-8-sig")
    ledger = tmp_path / "l.sqlite"
    assert main(["run", str(errors), "--ledger", str(ledger), "--quiet", *columns]) == 0
    (call,) = sandbox.store.calls()
    assert (call.external_id, call.fields["group_id"], call.fields["disposition"]) == \
        ("PBX-240301-0001", "12", "NO ANSWER")
