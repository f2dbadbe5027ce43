"""The command line's surfaces: help for every option, the README and docs/ kept true (every
command in the README, every option documented, the architecture page's module list, links
that lead somewhere), the exit-code table, environment variables named after the flags."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from importer.cli.commands import exit_code_for, main
from importer.cli.parser import build_parser
from importer.errors import AuthError, LedgerError, ManifestError, ServerError, UsageError
from importer.settings.resolve import ENV_ALIASES, Settings, env_name
from importer.settings.units import parse_duration

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DOCS = {path: path.read_text() for path in sorted((ROOT / "docs").glob("*.md"))}
#: Everything a user can read: the README, the front door, and the docs/ pages it links.
DOCUMENTED = "\n".join([README, *DOCS.values()])


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_option_has_help() -> None:
    for name, sub in subcommands().items():
        for action in sub._actions:
            assert action.help and action.help.strip(), (name, action.option_strings)


def test_every_command_is_in_the_readme() -> None:
    for name in subcommands():
        assert f"`{name}" in README, name


def test_every_option_is_documented() -> None:
    missing = {option for sub in subcommands().values() for action in sub._actions
               for option in action.option_strings
               if option.startswith("--") and option != "--help"
               and not re.search(re.escape(option) + r"(?![\w-])", DOCUMENTED)}
    assert not missing


def architecture_tree() -> set[str]:
    """The files and folders the architecture page draws under ``importer/``, as paths
    (``run/pipeline.py``, ``run/``): each entry's indent (two spaces a level) says its folder."""
    page = DOCS[ROOT / "docs" / "architecture.md"]
    tree = page.split("```\n", 2)[1]
    drawn: set[str] = set()
    folders: list[str] = []
    inside = False
    for line in tree.splitlines():
        entry = re.match(r"^( *)([\w.]+/?)(?:\s|$)", line)
        if entry is None:
            continue
        depth = len(entry.group(1)) // 2
        if depth == 0:
            inside = entry.group(2) == "importer/"
            continue
        if not inside:
            continue
        del folders[depth - 1:]
        path = "".join(folders) + entry.group(2)
        drawn.add(path)
        if path.endswith("/"):
            folders.append(entry.group(2))
    return drawn


def test_the_architecture_page_lists_every_module() -> None:
    package = ROOT / "importer"
    actual = {p.relative_to(package).as_posix() for p in package.rglob("*.py")
              if p.name not in ("__init__.py", "__main__.py") and "__pycache__" not in p.parts}
    actual |= {f"{p.parent.relative_to(package).as_posix()}/" for p in package.rglob("__init__.py")
               if p.parent != package}
    assert architecture_tree() - {"_demo/"} == actual


def _slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces dashed."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(text: str) -> set[str]:
    outside = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)  # no headings in code
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", outside, re.M)}


def test_the_readme_links_every_docs_page_and_every_link_leads_somewhere() -> None:
    linked = set(re.findall(r"\]\((docs/[\w.-]+\.md)", README))
    assert linked == {f"docs/{path.name}" for path in DOCS}
    for page, text in [(ROOT / "README.md", README), *DOCS.items()]:
        for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([\w-]+))?\)", text):
            if target.startswith(("http://", "https://")):
                continue
            found = (page.parent / target).resolve() if target else page
            assert found.is_file(), (page.name, target)
            if anchor:
                assert anchor in _anchors(found.read_text()), (page.name, target, anchor)


def test_run_flags_have_environment_variables() -> None:
    run = subcommands()["run"]
    fields = set(Settings.model_fields)
    # --dry-run picks a command; --skip-duplicate-audio is kept only for old scripts; --job
    # names where settings come from, and is not one of them; --errors-out names one
    # manifest's output, as validate's does.
    no_env = {"--help", "--verbose", "--token-file", "--dry-run", "--skip-duplicate-audio",
              "--job", "--errors-out"}
    for action in run._actions:
        flag = next((o for o in action.option_strings if o.startswith("--")), None)
        if flag is None or flag in no_env:
            continue
        field = action.dest
        assert field in fields, flag
        expected = "CONVIRZA_" + flag[2:].upper().replace("-", "_").removeprefix("NO_")
        assert env_name(field) == expected, flag
    assert set(ENV_ALIASES) <= fields


def test_environment_feeds_settings() -> None:
    s = Settings.load({"rate": 2.0}, environ={
        "CONVIRZA_RATE": "9", "CONVIRZA_CONCURRENCY": "7", "CONVIRZA_TIMEOUT": "30",
        "CONVIRZA_MAP": "Call Start=call_date;From=caller_id", "CONVIRZA_SET": "group_id=12",
        "CONVIRZA_MAX_FILE_SIZE": "1MiB", "CONVIRZA_AUTO_EXTERNAL_ID": "false"})
    assert (s.rate, s.concurrency, s.read_timeout, s.max_file_size) == (2.0, 7, 30.0, 1 << 20)
    assert s.column_map == {"Call Start": "call_date", "From": "caller_id"}
    assert s.defaults == {"group_id": "12"} and s.auto_external_id is False


def test_audio_check_settings_from_flags_and_environment() -> None:
    s = Settings.load({}, environ={"CONVIRZA_MAX_RECORDING_DURATION": "90m",
                                   "CONVIRZA_SEND_SAME_AUDIO": "true",
                                   "CONVIRZA_CHECK_URLS": "1"})
    assert (s.max_recording_duration, s.send_same_audio, s.check_urls) == (5400.0, True, True)
    assert Settings.load({}, environ={}).max_recording_duration is None  # no limit unless asked
    assert Settings.load({}, environ={}).send_same_audio is False
    args = build_parser().parse_args(["validate", "m.csv", "--max-recording-duration", "2h",
                                      "--send-same-audio", "--check-urls"])
    assert (args.max_recording_duration, args.send_same_audio, args.check_urls) == \
        ("2h", True, True)
    assert parse_duration("3600") == parse_duration("60m") == parse_duration("1h") == 3600.0
    assert parse_duration("1h30m") == 5400.0


@pytest.mark.parametrize(("flags", "message"), [
    ({"concurrency": 0}, "concurrency"),
    ({"rate": -1}, "rate"),
    ({"api_url": "apicfa.convirza.com"}, "api_url"),
    ({"username": "a@b.c"}, "PASSWORD"),
    ({"max_file_size": "fifty"}, "not a size"),
    ({"max_recording_duration": "an hour"}, "not a duration"),
    ({"max_recording_duration": 0}, "--max-recording-duration"),
])
def test_nonsense_settings_are_usage_errors(flags: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        Settings.load(flags, environ={})


def test_secret_values_stay_out_of_settings_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        Settings.load({"concurrency": 0}, environ={"CONVIRZA_TOKEN": "s3cr3t-token"})
    assert "s3cr3t-token" not in str(caught.value)
    assert "s3cr3t-token" not in repr(Settings.load({}, environ={"CONVIRZA_TOKEN": "s3cr3t-token"}))
    token_file = tmp_path / "token"
    token_file.write_text("from-file-token\n")
    assert Settings.load({"token_file": str(token_file)}, environ={}).token is not None
    with pytest.raises(UsageError, match="empty"):
        (tmp_path / "blank").write_text("\n")
        Settings.load({"token_file": str(tmp_path / "blank")}, environ={})


def test_exit_codes() -> None:
    assert exit_code_for(AuthError("no", status=401)) == 3
    assert exit_code_for(UsageError("x")) == 2
    assert exit_code_for(ManifestError("m.csv", "broken")) == 2
    assert exit_code_for(LedgerError("x")) == 2
    assert exit_code_for(KeyboardInterrupt()) == 130
    assert exit_code_for(ServerError("x", status=500)) == 1


def test_usage_errors_are_one_line_exit_2(capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    assert main(["report", str(tmp_path / "none.sqlite")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "none.sqlite" in err


def test_python_dash_m_works() -> None:
    result = subprocess.run([sys.executable, "-m", "importer", "--help"], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0 and "validate" in result.stdout


def test_manifest_settings_from_the_environment_and_a_columns_file(tmp_path: Path) -> None:
    mapping = tmp_path / "m.toml"
    mapping.write_text('[columns]\n"Call Start" = "call_date"\nFrom = "caller_id"\n'
                       '[defaults]\ngroup_id = 12\ntranscribe = true\n')
    s = Settings.load({"column_map": {"From": "ring_to"}}, environ={
        "CONVIRZA_COLUMNS": str(mapping), "CONVIRZA_SHEET": "March", "CONVIRZA_DAYFIRST": "1",
        "CONVIRZA_ENCODING": "cp1252", "CONVIRZA_SET": "group_id=14"})
    assert s.column_map == {"Call Start": "call_date", "From": "ring_to"}  # the flag wins
    assert s.defaults == {"group_id": "14", "transcribe": "true"}  # the variable wins
    assert (s.sheet, s.dayfirst, s.encoding) == ("March", True, "cp1252")
    with pytest.raises(UsageError, match="unknown encoding"):
        Settings.load({"encoding": "klingon"}, environ={})
    mapping.write_text("[columns]\nFrom = 12\n")
    with pytest.raises(UsageError, match="expected a text value"):
        Settings.load({"columns_file": str(mapping)}, environ={})
    mapping.write_text("[columns\n")
    with pytest.raises(UsageError, match="not valid TOML"):
        Settings.load({"columns_file": str(mapping)}, environ={})
    with pytest.raises(UsageError, match="cannot read"):
        Settings.load({"columns_file": str(tmp_path / "absent.toml")}, environ={})


def test_concurrency_is_helped_with_the_api_settings(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    group = text[:text.index("--concurrency N")].rsplit("\n\n", 1)[-1].splitlines()[0]
    assert group == "API:"  # how many at once is said with the rate, not the manifest


@pytest.mark.parametrize("timezone", [None, "America/New_York"])
def test_naive_call_dates_are_mentioned_only_when_no_zone_was_chosen(
        tmp_path: Path, timezone: str | None, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("CONVIRZA_TIMEZONE", "TZ", "CONVIRZA_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    manifest = tmp_path / "m.csv"
    manifest.write_text("recording_file,call_date,group_id,caller_id,external_id\n"
                        "missing.wav,2025-03-04 09:15:22,12,6175550142,X-1\n")
    zone = ["--timezone", timezone] if timezone else []
    main(["validate", str(manifest), *zone])
    said = "call dates without a time zone are read as" in capsys.readouterr().err
    assert said == (timezone is None)
