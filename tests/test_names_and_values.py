"""Names to ids and value maps as pure functions (issue 22): how names compare, what an
unknown or shared name says, which words are built in, which columns a plan takes."""

from __future__ import annotations

import pytest

from importer.errors import ManifestError
from importer.manifest.columns import plan_columns
from importer.manifest.names import NameTable
from importer.manifest.values import BUILT_IN, value_key, value_maps

GROUPS = NameTable.build({"group_name": [("Acme Plumbing", "12"), ("Acme  HVAC", "14"),
                                         ("Main Office", "20"), ("main office", "22")]})


def test_names_compare_without_case_or_repeated_spaces() -> None:
    assert GROUPS.resolve("group_name", " acme   plumbing ") == "12"
    assert GROUPS.resolve("group_name", "ACME HVAC") == "14"


def test_a_shared_name_names_its_ids_and_an_unknown_one_the_closest() -> None:
    with pytest.raises(ValueError, match=r"2 have it: ids 20, 22; give group_id"):
        GROUPS.resolve("group_name", "Main Office")
    with pytest.raises(ValueError, match=r"closest: 'Acme Plumbing'"):
        GROUPS.resolve("group_name", "Acme Plumbin")
    with pytest.raises(ValueError, match=r"none is near it among the 3"):
        GROUPS.resolve("group_name", "Zebra")


def test_value_maps_put_the_users_words_over_the_built_in_ones() -> None:
    maps = value_maps({"disposition": {"Voice  Mail": "NO ANSWER", "Missed": "BUSY"}},
                      ["disposition", "is_outbound"])
    assert maps["disposition"][value_key("voice mail")] == "NO ANSWER"
    assert maps["disposition"]["missed"] == "BUSY"  # the user's word wins
    assert maps["is_outbound"] == BUILT_IN["is_outbound"]
    assert value_key(" No_Answer ") == "no answer"


def test_a_name_column_is_read_by_its_header_only_where_no_column_gives_the_id() -> None:
    base = ["recording_file", "call_date", "caller_id"]
    alone = plan_columns([*base, "group_name"], {}, {}, "m.csv")
    assert alone.fields[-1] == "group_name" and alone.how[-1] == "auto"
    beside = plan_columns([*base, "group_id", "Group Name"], {}, {}, "m.csv")
    assert beside.fields[-1] is None and beside.how[-1] == "unknown"
    ignored = plan_columns([*base, "group_id", "disposition"], {"Disposition": ""}, {}, "m.csv")
    assert ignored.fields[-1] is None and ignored.how[-1] == "ignored"
    with pytest.raises(ManifestError, match=r"group_nam \(did you mean group_name or group_id\?\)"):
        plan_columns([*base, "Location"], {"Location": "group_nam"}, {}, "m.csv")
