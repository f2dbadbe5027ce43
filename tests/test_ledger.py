"""The ledger on real SQLite files: states, illegal transitions, decisions on re-run,
durability across close and reopen, and recorded migrations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from importer.errors import LedgerError
from importer.ledger.admission import Admission, Verdict
from importer.ledger.books import AttemptRecord
from importer.ledger.schema import MIGRATIONS
from importer.ledger.states import TRANSITIONS, Status
from importer.ledger.store import SAME_AUDIO_QUERY, Ledger, SameAudio


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
    ledger.mark_uploading("a", 1234, run)
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
        Status.UPLOADING: lambda k: ledger.mark_uploading(k, None, run),
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
    ledger.mark_uploading("done", None, first)
    ledger.finish("done", Status.SUCCEEDED, attempt("done"))
    ledger.mark_uploading("lost", None, first)  # crash: outcome unknown
    ledger.mark_uploading("bad", None, first)
    ledger.finish("bad", Status.FAILED, attempt("bad", "error", 400), retryable=False)
    ledger.mark_uploading("flaky", None, first)
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
    ledger.mark_uploading("a", None, night1)
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


def test_an_older_ledger_is_upgraded_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    name, script = MIGRATIONS[0]
    with sqlite3.connect(path) as conn:  # a ledger written before the sha256 index existed
        conn.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
        conn.executescript(script)
        conn.execute("INSERT INTO migrations VALUES (?, '2025-01-01T00:00:00+00:00')", (name,))
        conn.execute("INSERT INTO recordings (key, status, size, sha256, updated_at) "
                     "VALUES ('ext:1', 'succeeded', 10, 'ab', '2025-01-01')")
    conn.close()

    Ledger.open(path).close()

    with sqlite3.connect(path) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM migrations ORDER BY name")]
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master "
                                              "WHERE type = 'index'")}
        kept = conn.execute("SELECT key, status, sha256 FROM recordings").fetchall()
    conn.close()
    assert names == sorted(name for name, _ in MIGRATIONS)
    assert "recordings_audio_call" in indexes
    assert kept == [("ext:1", "succeeded", "ab")]


def test_record_audio_names_a_recording_imported_or_in_doubt_with_the_same_content(
        ledger: Ledger) -> None:
    run = ledger.begin_run("run", "/m.csv")
    ledger.admit(run, [admission(k, n) for n, k in enumerate("abcde", start=2)])
    same, call = "5" * 64, "1741097722|6175550142|12"

    assert ledger.record_audio("a", 100, same, call=call) is None
    # "a" is only pending: not a twin yet
    assert ledger.record_audio("b", 100, same, call=call) is None
    ledger.mark_uploading("a", 100, run)
    assert ledger.record_audio("b", 100, same, call=call) == SameAudio(
        "a", "/m.csv", 2, Status.UPLOADING)
    ledger.mark_uploading("c", 100, run)
    ledger.finish("c", Status.SUCCEEDED, AttemptRecord("c", "t", 0.1, "succeeded"))
    ledger.record_audio("c", 100, same, call=call)
    # Imported beats in doubt, whatever the order.
    assert ledger.record_audio("d", 100, same, call=call) == SameAudio(
        "c", "/m.csv", 4, Status.SUCCEEDED)
    ledger.mark_already_imported("d", "c")
    # A row found already imported stands for the key it was imported under.
    assert ledger.record_audio("e", 100, "6" * 64, call=call) is None
    ledger.record_audio("d", 100, "6" * 64, call=call)
    assert ledger.record_audio("e", 100, "6" * 64, call=call) == SameAudio(
        "c", "/m.csv", 5, Status.SUCCEEDED)
    assert ledger.record_audio("e", 100, None) is None  # not hashed: nothing to compare

    stored = {r.key: (r.size, r.sha256, r.same_as) for r in ledger.rows()}
    assert stored["b"] == (100, same, None) and stored["d"] == (100, "6" * 64, "c")


def test_the_same_audio_under_other_call_facts_or_explicit_ids_is_another_call(
        ledger: Ledger) -> None:
    run = ledger.begin_run("run", "/m.csv")
    keys = ["file:/a.wav", "file:/b.wav", "ext:X", "ext:Y", "file:/c.wav"]
    ledger.admit(run, [admission(k, n) for n, k in enumerate(keys, start=2)])
    same, call = "7" * 64, "1741097722|6175550142|12"
    ledger.record_audio("file:/a.wav", 100, same, call=call)
    ledger.mark_uploading("file:/a.wav", 100, run)

    # Another second (or caller, or group): another call with the same bytes.
    other = ledger.record_audio("file:/b.wav", 100, same, call="1741097723|6175550142|12")
    assert other == SameAudio("file:/a.wav", "/m.csv", 2, Status.UPLOADING, same_call=False)
    # An explicit id against an id-less row of the same facts: one call.
    assert ledger.record_audio("ext:X", 100, same, call=call) == SameAudio(
        "file:/a.wav", "/m.csv", 2, Status.UPLOADING)
    ledger.mark_uploading("ext:X", 100, run)
    ledger.finish("file:/a.wav", Status.FAILED, AttemptRecord("file:/a.wav", "t", 0.1, "error"))
    # Two explicit ids: two calls, whatever the audio and facts.
    assert ledger.record_audio("ext:Y", 100, same, call=call) == SameAudio(
        "ext:X", "/m.csv", 4, Status.UPLOADING, same_call=False)
    # Facts unknown (None) never make the same call.
    unknown = ledger.record_audio("file:/c.wav", 100, same, call=None)
    assert unknown is not None and unknown.same_call is False


def test_same_audio_lookup_uses_the_index(ledger: Ledger) -> None:
    with sqlite3.connect(ledger.path) as conn:
        plan = " ".join(str(r[-1]) for r in conn.execute("EXPLAIN QUERY PLAN " + SAME_AUDIO_QUERY,
                                                         ("x", "c", "k", False)))
    conn.close()
    assert "USING INDEX recordings_audio_call" in plan, plan


def test_not_a_ledger(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LedgerError, match=r"junk\.sqlite"):
        Ledger.open(junk)
    with pytest.raises(LedgerError, match="no such ledger"):
        Ledger.open(tmp_path / "absent.sqlite", create=False)
    with pytest.raises(LedgerError, match="does not exist"):
        Ledger.open(tmp_path / "no" / "dir" / "l.sqlite")


async def test_group_commit_batches_concurrent_calls(tmp_path: Path) -> None:
    import asyncio

    from importer.ledger.writer import AsyncLedger

    ledger = AsyncLedger(Ledger.open(tmp_path / "l.sqlite"))
    run = await ledger.call(ledger.ledger.begin_run, "run", "/m.csv")
    keys = [f"k{i}" for i in range(200)]
    await ledger.call(ledger.ledger.admit, run, [admission(k, i) for i, k in enumerate(keys)])
    before = ledger.batches
    await asyncio.gather(*(ledger.call(ledger.ledger.mark_uploading, k, 1, run) for k in keys))
    assert ledger.batches - before < len(keys)   # many calls shared a commit

    # One illegal call in a batch fails alone; its neighbours commit.
    results = await asyncio.gather(
        ledger.call(ledger.ledger.finish, "k0", Status.SUCCEEDED, attempt("k0")),
        ledger.call(ledger.ledger.mark_pending, "no-such-key"),
        ledger.call(ledger.ledger.finish, "k1", Status.SUCCEEDED, attempt("k1")),
        return_exceptions=True)
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], LedgerError)
    await ledger.close()

    reopened = Ledger.open(tmp_path / "l.sqlite")
    states = {r.key: r.status for r in reopened.rows()}
    assert states["k0"] is states["k1"] is Status.SUCCEEDED
    assert states["k2"] is Status.UPLOADING


def test_candidates_page_by_rowid(ledger: Ledger) -> None:
    run = ledger.begin_run("run", "/m.csv")
    ledger.admit(run, [admission(f"k{i}", i) for i in range(5)])
    for i in range(5):
        ledger.mark_uploading(f"k{i}", None, run)
        ledger.finish(f"k{i}", Status.FAILED, attempt(f"k{i}", "error", 400 if i == 2 else 503),
                      retryable=i != 2)
    first = ledger.candidates([Status.FAILED], include_rejected=False, since=None, after=0,
                              limit=2)
    rest = ledger.candidates([Status.FAILED], include_rejected=False, since=None,
                             after=first[-1].rowid, limit=10)
    assert [c.key for c in first + rest] == ["k0", "k1", "k3", "k4"]
    everything = ledger.candidates([Status.FAILED], include_rejected=True, since=None, after=0,
                                   limit=10)
    assert len(everything) == 5 and everything[0].fields == {"group_id": "1"}
    assert ledger.candidates([Status.FAILED], include_rejected=True, since="2999-01-01",
                             after=0, limit=10) == []


def recorded(key: str, row: int, recording: str, status: Status = Status.PENDING) -> Admission:
    return admission(key, row, status)._replace(recording=recording)


def test_same_recording_under_another_key_is_a_recorded_duplicate(ledger: Ledger) -> None:
    run = ledger.begin_run("run", "/m.csv")
    decisions = ledger.admit(run, [recorded("a", 2, "file:/x/a.wav"),
                                   recorded("b", 3, "file:/x/a.wav")])
    assert [d.verdict for d in decisions] == [Verdict.SEND, Verdict.DUPLICATE]
    assert (decisions[1].duplicate_of, decisions[1].by) == (2, "recording")
    # Across chunks, and with the row's own problems kept in front.
    [later] = ledger.admit(run, [recorded("c", 9, "file:/x/a.wav", Status.INVALID)])
    assert (later.verdict, later.duplicate_of) == (Verdict.DUPLICATE, 2)
    rows = {r.key: r for r in ledger.rows()}
    assert rows["b"].status is Status.INVALID
    assert rows["b"].error == "row 3: duplicate of row 2: the same recording (b.wav)"
    assert (rows["c"].error or "").startswith("row: bad; duplicate of row 2")


def test_a_rerun_still_sees_recordings_of_rows_already_done(ledger: Ledger) -> None:
    first = ledger.begin_run("run", "/m.csv")
    ledger.admit(first, [recorded("a", 2, "url:https://x/1.wav")])
    ledger.mark_uploading("a", None, first)
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
