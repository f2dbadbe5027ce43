"""The ledger on real SQLite files: states, illegal transitions, decisions on re-run,
durability across close and reopen, and recorded migrations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from importer.errors import LedgerError
from importer.ledger import (
    MIGRATIONS,
    TRANSITIONS,
    Admission,
    AttemptRecord,
    Ledger,
    Status,
    Verdict,
)


def admission(key: str, row: int, status: Status = Status.PENDING, fingerprint: str = "f1",
              manifest: str = "/m.csv") -> Admission:
    return Admission(key=key, external_id=key, manifest=manifest, row_number=row,
                     source=f"{key}.wav", status=status, fingerprint=fingerprint,
                     fields={"group_id": "1"} if status is Status.PENDING else None,
                     error="row: bad" if status is Status.INVALID else None)


def attempt(key: str, outcome: str = "succeeded", status: int | None = 200) -> AttemptRecord:
    return AttemptRecord(key, "2026-01-01T00:00:00+00:00", 0.1, outcome, status)


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger.open(tmp_path / "ledger.sqlite")


def test_a_row_moves_through_its_states_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger.open(path)
    run = ledger.begin_run("run", "/m.csv")
    assert ledger.admit(run, [admission("a", 2)])[0].verdict is Verdict.SEND
    ledger.mark_uploading("a", 1234)
    ledger.record_attempt(attempt("a", "error", 500))
    ledger.finish("a", Status.SUCCEEDED, attempt("a"))
    ledger.close()

    reopened = Ledger.open(path, create=False)
    [row] = list(reopened.rows())
    assert (row.status, row.attempts, row.size, row.http_status) == (Status.SUCCEEDED, 2, 1234,
                                                                      200)
    with sqlite3.connect(path) as conn:
        outcomes = [r[0] for r in conn.execute("SELECT outcome FROM attempts ORDER BY id")]
    assert outcomes == ["error", "succeeded"]


def test_every_illegal_transition_raises(ledger: Ledger) -> None:
    run = ledger.begin_run("run", "/m.csv")
    movers = {
        Status.UPLOADING: lambda k: ledger.mark_uploading(k, None),
        Status.INVALID: lambda k: ledger.mark_invalid(k, "bad"),
        Status.PENDING: lambda k: ledger.mark_pending(k),
        Status.SUCCEEDED: lambda k: ledger.finish(k, Status.SUCCEEDED, attempt(k)),
        Status.FAILED: lambda k: ledger.finish(k, Status.FAILED, attempt(k, "error", 500)),
    }
    reach = {  # how to put a fresh row into each state
        Status.PENDING: [],
        Status.UPLOADING: [Status.UPLOADING],
        Status.SUCCEEDED: [Status.UPLOADING, Status.SUCCEEDED],
        Status.FAILED: [Status.UPLOADING, Status.FAILED],
        Status.INVALID: [Status.INVALID],
    }
    illegal = 0
    for n, (start, path) in enumerate(reach.items()):
        for target in Status:
            key = f"{start.value}-{target.value}-{n}"
            ledger.admit(run, [admission(key, 2)])
            for step in path:
                movers[step](key)
            if target in TRANSITIONS[start]:
                movers[target](key)
                continue
            illegal += 1
            with pytest.raises(LedgerError, match="illegal ledger transition"):
                movers[target](key)
            assert dict((r.key, r.status) for r in ledger.rows())[key] is start
    assert illegal >= 5  # succeeded alone refuses all five moves


def test_rerun_decisions(ledger: Ledger) -> None:
    first = ledger.begin_run("run", "/m.csv")
    ledger.admit(first, [admission("done", 2), admission("lost", 3), admission("bad", 4),
                         admission("gone", 5), admission("flaky", 6),
                         admission("broken", 7, Status.INVALID)])
    ledger.mark_uploading("done", None)
    ledger.finish("done", Status.SUCCEEDED, attempt("done"))
    ledger.mark_uploading("lost", None)  # crash: outcome unknown
    ledger.mark_uploading("bad", None)
    ledger.finish("bad", Status.FAILED, attempt("bad", "error", 400), retryable=False)
    ledger.mark_uploading("flaky", None)
    ledger.finish("flaky", Status.FAILED, attempt("flaky", "error", 503), retryable=True)

    second = ledger.begin_run("run", "/m.csv")
    decisions = ledger.admit(second, [
        admission("done", 2), admission("lost", 3), admission("bad", 4),
        admission("flaky", 6), admission("broken", 7), admission("new", 8)])
    assert [d.verdict for d in decisions] == [
        Verdict.DONE, Verdict.UNKNOWN, Verdict.REJECTED, Verdict.SEND, Verdict.SEND,
        Verdict.SEND]
    # Data changed since a final refusal: worth sending again.
    third = ledger.begin_run("run", "/m.csv")
    [changed] = ledger.admit(third, [admission("bad", 4, fingerprint="f2")])
    assert changed.verdict is Verdict.SEND


def test_same_key_twice_in_one_run_is_a_duplicate(ledger: Ledger) -> None:
    run = ledger.begin_run("run", "/m.csv")
    decisions = ledger.admit(run, [admission("a", 2), admission("a", 9)])
    assert decisions[1].verdict is Verdict.DUPLICATE
    assert decisions[1].duplicate_of == 2
    # Across chunks too.
    [later] = ledger.admit(run, [admission("a", 15)])
    assert later.verdict is Verdict.DUPLICATE


def test_one_ledger_serves_many_manifests(ledger: Ledger) -> None:
    night1 = ledger.begin_run("run", "/night1.csv")
    ledger.admit(night1, [admission("a", 2, manifest="/night1.csv")])
    ledger.mark_uploading("a", None)
    ledger.finish("a", Status.SUCCEEDED, attempt("a"))
    night2 = ledger.begin_run("run", "/night2.csv")
    decisions = ledger.admit(night2, [admission("a", 2, manifest="/night2.csv"),
                                      admission("b", 3, manifest="/night2.csv")])
    assert [d.verdict for d in decisions] == [Verdict.DONE, Verdict.SEND]


def test_migrations_are_recorded_and_not_rerun(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    Ledger.open(path).close()
    Ledger.open(path).close()
    with sqlite3.connect(path) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM migrations")]
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert names == [name for name, _ in MIGRATIONS]
    assert mode == "wal"


def test_not_a_ledger(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LedgerError, match=r"junk\.sqlite"):
        Ledger.open(junk)
    with pytest.raises(LedgerError, match="no such ledger"):
        Ledger.open(tmp_path / "absent.sqlite", create=False)
    with pytest.raises(LedgerError, match="does not exist"):
        Ledger.open(tmp_path / "no" / "dir" / "l.sqlite")


def recorded(key: str, row: int, recording: str, status: Status = Status.PENDING) -> Admission:
    return admission(key, row, status)._replace(recording=recording)


def test_same_recording_under_another_key_is_a_recorded_duplicate(ledger: Ledger) -> None:
    run = ledger.begin_run("run", "/m.csv")
    decisions = ledger.admit(run, [recorded("a", 2, "file:/x/a.wav"),
                                   recorded("b", 3, "file:/x/a.wav")])
    assert [d.verdict for d in decisions] == [Verdict.SEND, Verdict.DUPLICATE]
    assert decisions[1].duplicate_of == 2
    assert decisions[1].error == "row 3: duplicate of row 2: the same recording (b.wav)"
    # Across chunks, and with the row's own problems kept in front.
    [later] = ledger.admit(run, [recorded("c", 9, "file:/x/a.wav", Status.INVALID)])
    assert later.error is not None and later.error.startswith("row: bad; duplicate of row 2")
    rows = {r.key: r for r in ledger.rows()}
    assert rows["b"].status is Status.INVALID and "duplicate of row 2" in (rows["b"].error or "")


def test_a_rerun_still_sees_recordings_of_rows_already_done(ledger: Ledger) -> None:
    first = ledger.begin_run("run", "/m.csv")
    ledger.admit(first, [recorded("a", 2, "url:https://x/1.wav")])
    ledger.mark_uploading("a", None)
    ledger.finish("a", Status.SUCCEEDED, attempt("a"))
    second = ledger.begin_run("run", "/m.csv")
    decisions = ledger.admit(second, [recorded("a", 2, "url:https://x/1.wav"),
                                      recorded("b", 3, "url:https://x/1.wav")])
    assert [d.verdict for d in decisions] == [Verdict.DONE, Verdict.DUPLICATE]
    # Another night, another run: the same URL is not a duplicate of last night's row.
    third = ledger.begin_run("run", "/night2.csv")
    [fresh] = ledger.admit(third, [recorded("c", 2, "url:https://x/1.wav")])
    assert fresh.verdict is Verdict.SEND


def test_deciding_without_recording_writes_no_row(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    ledger = Ledger.open(path, durable=False)
    run = ledger.begin_run("validate", "/m.csv")
    decisions = ledger.admit(run, [recorded("a", 2, "file:/a"), recorded("b", 3, "file:/a")],
                             record=False)
    assert [d.verdict for d in decisions] == [Verdict.SEND, Verdict.DUPLICATE]
    assert list(ledger.rows()) == []
    ledger.close()
    with sqlite3.connect(path) as conn:  # the per-run table never reaches the file
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "run_rows" not in tables
