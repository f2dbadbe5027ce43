"""Settings declared once: the flags, the variables, the job file's keys and ``config`` all
come from the fields of ``Settings``; values are parsed the same way wherever they come from,
and each source's precedence holds (flag > environment > job file > default)."""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import pytest

from importer.cli.commands import main
from importer.cli.parser import build_parser
from importer.errors import UsageError
from importer.run.jobs import plan
from importer.settings.jobfile import read_job, valid_keys
from importer.settings.resolve import DECLARED, Settings, resolve
from importer.settings.units import ErrorBudget, Shard, parse_size

from .conftest import SandboxThread

SECRET = "s3cr3t-token-0123456789abcdef"


def parsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_flag_of_a_setting_comes_from_its_declaration() -> None:
    by_flag = {d.flag: d for d in DECLARED if d.flag}
    for name, sub in parsers().items():
        if name in ("sandbox", "demo"):  # the server's own options, and the demo's
            continue
        for action in sub._actions:
            flag = next((o for o in action.option_strings if o.startswith("--")), None)
            # a command may have an option of its own of the same name where the setting
            # does not apply (retry's --since: rows last tried since; scan's: files modified)
            if flag in by_flag and (name == "config" or name in by_flag[flag].opt.commands):
                assert action.dest == by_flag[flag].name, (name, flag)
                assert by_flag[flag].opt.help in (action.help or ""), (name, flag)
    # config takes every setting that has a flag, to show what wins.
    config = {o for a in parsers()["config"]._actions for o in a.option_strings}
    assert set(by_flag) <= config


def test_names_follow_one_rule() -> None:
    d = {d.name: d for d in DECLARED}
    assert (d["read_timeout"].flag, d["read_timeout"].env, d["read_timeout"].job) == \
        ("--timeout", "CONVIRZA_TIMEOUT", "timeout")
    assert (d["auto_external_id"].flag, d["auto_external_id"].env) == \
        ("--no-auto-external-id", "CONVIRZA_AUTO_EXTERNAL_ID")
    assert (d["token"].flag, d["token"].env, d["token"].job) == \
        (None, "CONVIRZA_TOKEN", "token_env")
    assert (d["column_map"].job, d["defaults"].job, d["columns_file"].job) == \
        ("columns", "defaults", "columns_file")
    assert "token" not in valid_keys() and "password" not in valid_keys()


def test_sizes_and_durations_read_alike_from_every_source(tmp_path: Path) -> None:
    job = tmp_path / "job.toml"
    job.write_text('max_file_size = "1MiB"\nmax_duration = "90m"\ntimeout = 1\n')
    from_job = plan({}, job=job, environ={}).settings
    from_env = Settings.load({}, environ={"CONVIRZA_MAX_FILE_SIZE": "1MiB",
                                          "CONVIRZA_MAX_DURATION": "90m",
                                          "CONVIRZA_TIMEOUT": "1s"})
    from_flags = Settings.load({"max_file_size": "1MiB", "max_duration": "1h30m",
                                "read_timeout": "1"}, environ={})
    direct = Settings(max_file_size="1MiB", max_duration="5400", read_timeout=1)
    for s in (from_job, from_env, from_flags, direct):
        assert (s.max_file_size, s.max_duration, s.read_timeout) == (1 << 20, 5400.0, 1.0)
    assert parse_size("50MB") == 50_000_000


def test_shard_and_max_errors_are_typed_at_load() -> None:
    s = Settings.load({"shard": "1/4", "max_errors": "5%"}, environ={})
    assert s.shard == Shard(1, 4) and s.shard_of == (1, 4) and str(s.shard) == "1/4"
    assert s.max_errors == ErrorBudget(5.0, True) and s.error_budget == (5.0, True)
    assert str(s.max_errors) == "5%"
    assert Settings.load({"max_errors": "100"}, environ={}).error_budget == (100.0, False)
    assert Settings.load({}, environ={}).shard_of == (0, 1)
    with pytest.raises(UsageError, match="--shard: shard K/N needs 0 <= K < N"):
        Settings.load({"shard": "4/4"}, environ={})
    with pytest.raises(UsageError, match="CONVIRZA_MAX_ERRORS: expected a number"):
        Settings.load({}, environ={"CONVIRZA_MAX_ERRORS": "many"})
    assert math.isinf(Settings.load({"wait_for_ledger": "forever"}, environ={})
                      .wait_for_ledger or 0)


def test_settings_built_directly_read_the_columns_file(tmp_path: Path) -> None:
    mapping = tmp_path / "m.toml"
    mapping.write_text('[columns]\n"Call Start" = "call_date"\n[defaults]\ngroup_id = 12\n')
    s = Settings(columns_file=mapping, defaults={"group_id": "14"})
    assert s.column_map == {"Call Start": "call_date"}
    assert s.defaults == {"group_id": "14"}  # given directly, it wins over the file
    with pytest.raises(UsageError, match="cannot read the columns file"):
        Settings(columns_file=tmp_path / "absent.toml")


def test_precedence_flag_over_environment_over_job_over_default(tmp_path: Path) -> None:
    job = tmp_path / "nightly.toml"
    job.write_text('rate = 3\nconcurrency = 6\nmax_attempts = 7\nsheet = "March"\n'
                   '[columns]\n"From" = "caller_id"\n"Start" = "call_date"\n')
    environ = {"CONVIRZA_CONCURRENCY": "5", "CONVIRZA_MAX_ATTEMPTS": "2",
               "CONVIRZA_MAP": "Start=call_date;Acct=group_id"}
    chosen = plan({"max_attempts": "9", "column_map": ["From=ring_to"]}, job=job,
                  environ=environ)
    s = chosen.settings
    assert (s.rate, s.concurrency, s.max_attempts, s.burst) == (3.0, 5, 9, 1)
    assert s.column_map == {"From": "ring_to", "Start": "call_date", "Acct": "group_id"}
    sources = {k: [str(x) for x in v] for k, v in chosen.resolved.sources.items()}
    assert sources["rate"] == [f"job {job}"]
    assert sources["concurrency"] == ["env"]
    assert sources["max_attempts"] == ["flag"]
    assert "burst" not in sources  # the default
    # A job keeps its ledger beside itself when it names none; CONVIRZA_LEDGER wins.
    assert s.ledger == tmp_path / "nightly.ledger.sqlite"
    other = tmp_path / "other.sqlite"
    assert plan({}, job=job, environ={"CONVIRZA_LEDGER": str(other)}).settings.ledger == other


def test_job_file_refuses_unknown_keys_naming_the_nearest(tmp_path: Path) -> None:
    job = tmp_path / "job.toml"
    job.write_text("rte = 3\n")
    with pytest.raises(UsageError) as caught:
        read_job(job)
    message = str(caught.value)
    assert "unknown key 'rte' (did you mean 'rate'?)" in message
    assert "valid keys: " in message and "max_uploads" in message and "manifest" in message


def test_job_file_never_holds_a_secret(tmp_path: Path) -> None:
    job = tmp_path / "job.toml"
    job.write_text(f'token = "{SECRET}"\n')
    with pytest.raises(UsageError, match='token_env = "CONVIRZA_TOKEN"') as caught:
        read_job(job)
    assert SECRET not in str(caught.value)
    job.write_text(f'password_env = "{SECRET}!"\n')
    with pytest.raises(UsageError, match="names the environment variable"):
        read_job(job)
    job.write_text('password_env = "NIGHTLY_PW"\nusername = "ops@example.com"\n')
    with pytest.raises(UsageError, match="NIGHTLY_PW, which is not set"):
        plan({}, job=job, environ={})
    s = plan({}, job=job, environ={"NIGHTLY_PW": "pw-1234"}).settings
    assert s.password is not None and s.password.get_secret_value() == "pw-1234"


def test_job_paths_are_relative_to_the_job_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "token").write_text(SECRET + "\n")
    for name in ("b.csv", "a.csv", "c.txt"):
        (tmp_path / "conf" / name).write_text("x\n")
    job = tmp_path / "conf" / "job.toml"
    job.write_text('token_file = "token"\nmanifest = "*.csv"\nsummary_json = "out/s.json"\n')
    chosen = plan({}, job=job, environ={"CONVIRZA_TOKEN": "from-env"})
    s = chosen.settings
    # A token file wins over CONVIRZA_TOKEN only from a flag or a variable, not from a job.
    assert s.token is not None and s.token.get_secret_value() == "from-env"
    assert s.token_file is None
    s = plan({}, job=job, environ={}).settings
    assert s.token is not None and s.token.get_secret_value() == SECRET
    assert s.summary_json == tmp_path / "conf" / "out" / "s.json"
    assert chosen.manifests == (tmp_path / "conf" / "a.csv", tmp_path / "conf" / "b.csv")


def test_a_token_file_flag_wins_over_the_token_variable(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("from-file\n")
    s = resolve({"token_file": str(token)}, {"CONVIRZA_TOKEN": "from-env"}).settings
    assert s.token is not None and s.token.get_secret_value() == "from-file"
    with pytest.raises(UsageError, match="not both"):
        resolve({"token_file": str(token), "token": "x"}, {}, given_as="keyword")


def test_errors_name_the_setting_as_its_source_spells_it(tmp_path: Path) -> None:
    job = tmp_path / "nightly.toml"
    job.write_text("concurrency = 0\n")
    with pytest.raises(UsageError, match=f"concurrency in {job}: Input should be greater"):
        plan({}, job=job, environ={})
    with pytest.raises(UsageError, match="CONVIRZA_RATE: Input should be a valid number"):
        Settings.load({}, environ={"CONVIRZA_RATE": "fast"})
    with pytest.raises(UsageError, match="--rate: Input should be greater than 0"):
        Settings.load({"rate": "0"}, environ={})
    with pytest.raises(UsageError, match="rate=: Input should be greater than 0"):
        resolve({"rate": 0}, {}, given_as="keyword")
    with pytest.raises(UsageError, match=re.escape("unknown setting 'concurency' (did you "
                                                   "mean 'concurrency'?)")):
        resolve({"concurency": 2}, {}, given_as="keyword")


def test_config_shows_values_and_sources_with_secrets_masked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("CONVIRZA_RATE", "CONVIRZA_LEDGER", "CONVIRZA_API_URL", "CONVIRZA_TOKEN",
                 "CONVIRZA_PASSWORD", "CONVIRZA_USERNAME", "TZ", "CONVIRZA_TIMEZONE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CONVIRZA_CONCURRENCY", "7")
    monkeypatch.setenv("NIGHTLY_TOKEN", SECRET)
    job = tmp_path / "nightly.toml"
    job.write_text('rate = 3\ntoken_env = "NIGHTLY_TOKEN"\nmanifest = "exports/*.csv"\n'
                   '[defaults]\ngroup_id = 12\n')
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "a.csv").write_text("x\n")

    assert main(["config", "--job", str(job), "--max-attempts", "2"]) == 0
    out = capsys.readouterr().out
    assert SECRET not in out
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert "****************" + SECRET[-4:] in lines["token"]
    assert "token_env = NIGHTLY_TOKEN" in lines["token"]
    assert lines["rate"].split()[1:] == ["3", "job", str(job)]
    assert lines["concurrency"].split()[1:] == ["7", "env", "CONVIRZA_CONCURRENCY"]
    assert lines["max_attempts"].split()[1:] == ["2", "flag", "--max-attempts"]
    assert lines["burst"].split()[1:] == ["1", "default"]
    assert "group_id=12" in lines["defaults"]
    assert "(1 file)" in lines["manifest"]

    assert main(["config", "--job", str(job), "--format", "json"]) == 0
    found = {e["name"]: e for e in json.loads(capsys.readouterr().out)}
    assert found["rate"]["value"] == 3.0 and found["rate"]["source"] == f"job {job}"
    assert found["timeout"]["flag"] == "--timeout"
    assert found["timeout"]["env"] == "CONVIRZA_TIMEOUT"
    assert found["token"]["value"] == "****************" + SECRET[-4:]
    assert found["password"]["value"] is None


def test_config_names_the_columns_file_as_the_source_of_what_it_gave(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("CONVIRZA_DEFAULTS", raising=False)
    columns = tmp_path / "mapping.toml"
    columns.write_text('[columns]\n"Call Start" = "call_date"\n[defaults]\ngroup_id = 12\n'
                       '[values.direction]\nIn = "inbound"\n')
    assert main(["config", "--columns", str(columns), "--set", "caller_id=6175550100"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert f"file {columns} [columns]" in lines["columns"]
    assert f"file {columns} [defaults]" in lines["defaults"]
    assert "flag --set" in lines["defaults"]  # both gave entries
    assert f"file {columns} [values]" in lines["values"]
    assert "direction:In=inbound" in lines["values"]  # FIELD:WORD=VALUE, as --value takes it
    assert lines["columns"].split()[-2:] != ["default"]


@pytest.mark.parametrize(("given", "named"), [
    ("flag", "the token file {file} (--token-file)"),
    ("env", "CONVIRZA_TOKEN"),
    ("job", "the variable CONVIRZA_NIGHTLY_TOKEN (token_env in {job})"),
    ("job-file", "the token file {file} (token_file in {job})"),
])
def test_a_refused_token_is_named_by_where_it_came_from(
        workdir: Path, given: str, named: str, monkeypatch: pytest.MonkeyPatch,
        sandbox: SandboxThread, capsys: pytest.CaptureFixture[str]) -> None:
    tmp_path = workdir
    for name in ("CONVIRZA_TOKEN", "CONVIRZA_TOKEN_FILE", "CONVIRZA_USERNAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CONVIRZA_API_URL", sandbox.url)
    token_file, job = tmp_path / "token.txt", tmp_path / "nightly.toml"
    token_file.write_text("wrong-token-1234\n")
    argv = ["run", str(workdir / "manifests" / "sample.csv"), "--ledger",
            str(workdir / "l.sqlite"), "--timezone", "UTC"]
    if given == "flag":
        argv += ["--token-file", str(token_file)]
    elif given == "env":
        monkeypatch.setenv("CONVIRZA_TOKEN", "wrong-token-1234")
    else:
        monkeypatch.setenv("CONVIRZA_NIGHTLY_TOKEN", "wrong-token-1234")
        job.write_text('token_env = "CONVIRZA_NIGHTLY_TOKEN"\n' if given == "job" else
                       f'token_file = "{token_file}"\n')
        argv += ["--job", str(job)]
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert f"refused the token from {named.format(file=token_file, job=job)}" in err, err
    assert "wrong-token-1234" not in err
    assert "CONVIRZA_TOKEN / --token-file" not in err  # not a guess at where it came from


def test_where_recordings_are_is_set_as_every_setting_is() -> None:
    """--recordings-root, --path-map, --presign and --url-header: flags, variables, a secret
    read from the variable the header names, and bounds."""
    env = {"CONVIRZA_PATH_MAP": "C:\\exports=/mnt/exports;\\\\nas\\calls=/mnt/nas",
           "CONVIRZA_RECORDINGS_ROOT": "/mnt/calls", "VENDOR_AUTH": "Bearer v-0123456789"}
    s = resolve({"presign": "1h", "fetch_urls": True, "url_header": "Authorization=VENDOR_AUTH"},
                env).settings
    assert s.path_map == {"C:\\exports": "/mnt/exports", "\\\\nas\\calls": "/mnt/nas"}
    assert s.recordings_root == Path("/mnt/calls") and s.presign == 3600
    assert s.url_header_value is not None and "Bearer v-0123456789" in s.secrets()
    with pytest.raises(UsageError, match="presign"):
        resolve({"presign": "8d"}, {})
    with pytest.raises(UsageError, match="NAME=VARIABLE"):
        resolve({"url_header": "Authorization: Bearer x"}, {})
