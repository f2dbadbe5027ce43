"""Settings declared once: the flags and the variables come from the fields of ``Settings``;
values are parsed the same way wherever they come from."""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

import pytest

from importer.cli import build_parser
from importer.errors import UsageError
from importer.settings import DECLARED, Settings, resolve
from importer.units import ErrorBudget, Shard, parse_size

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
            if flag in by_flag:
                assert action.dest == by_flag[flag].name, (name, flag)
                assert by_flag[flag].opt.help in (action.help or ""), (name, flag)


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


def test_sizes_and_durations_read_alike_from_every_source() -> None:
    from_env = Settings.load({}, environ={"CONVIRZA_MAX_FILE_SIZE": "1MiB",
                                          "CONVIRZA_MAX_DURATION": "90m",
                                          "CONVIRZA_TIMEOUT": "1s"})
    from_flags = Settings.load({"max_file_size": "1MiB", "max_duration": "1h30m",
                                "read_timeout": "1"}, environ={})
    direct = Settings(max_file_size="1MiB", max_duration="5400", read_timeout=1)
    for s in (from_env, from_flags, direct):
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


def test_a_token_file_flag_wins_over_the_token_variable(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("from-file\n")
    s = resolve({"token_file": str(token)}, {"CONVIRZA_TOKEN": "from-env"}).settings
    assert s.token is not None and s.token.get_secret_value() == "from-file"
    with pytest.raises(UsageError, match="not both"):
        resolve({"token_file": str(token), "token": "x"}, {}, given_as="keyword")


def test_errors_name_the_setting_as_its_source_spells_it() -> None:
    with pytest.raises(UsageError, match="CONVIRZA_RATE: Input should be a valid number"):
        Settings.load({}, environ={"CONVIRZA_RATE": "fast"})
    with pytest.raises(UsageError, match="--rate: Input should be greater than 0"):
        Settings.load({"rate": "0"}, environ={})
    with pytest.raises(UsageError, match="rate=: Input should be greater than 0"):
        resolve({"rate": 0}, {}, given_as="keyword")
    with pytest.raises(UsageError, match=re.escape("unknown setting 'concurency' (did you "
                                                   "mean 'concurrency'?)")):
        resolve({"concurency": 2}, {}, given_as="keyword")


