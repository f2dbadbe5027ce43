"""File names read as call facts: the presets, user templates and their mistakes (pure)."""

from __future__ import annotations

import pytest

from importer.manifest.templates import PRESETS, compile_template


def test_asterisk_names_give_direction_caller_date_and_uniqueid() -> None:
    t = compile_template("asterisk")
    assert t.match("2024/03/01/in-5551234567-201-20240301-141503-1709302503.123.wav") == {
        "is_outbound": "false", "caller_id": "5551234567", "call_date": "2024-03-01T14:15:03",
        "external_id": "1709302503.123"}
    assert t.match("out-6175550142-201-20240301-141503-1709302503.124.mp3")["is_outbound"] \
        == "true"  # type: ignore[index]
    for name in ("sideways-5551234567-201-20240301-141503-1.wav",  # no such direction
                 "in-5551234567-201-20241301-141503-1.wav",  # month 13
                 "voicemail-greeting.wav", "in-55512x4567-201-20240301-141503-1.wav"):
        assert t.match(name) is None, name


def test_connect_names_give_the_contact_and_a_utc_date() -> None:
    name = ("instance/CallRecordings/2024/03/01/"
            "4e6a7b48-1b2c-4d5e-8f90-123456789abc_20240301T14:15_UTC.wav")
    assert compile_template("connect").match(name) == {
        "external_id": "4e6a7b48-1b2c-4d5e-8f90-123456789abc",
        "call_date": "2024-03-01T14:15:00+00:00"}


def test_a_user_template_with_folders_wildcards_and_epoch_seconds() -> None:
    t = compile_template("{group_id}/*/{caller_id}_{call_date:%s}_{_}.wav")
    assert t.match("12/anything/6175550142_1709302503_x.wav") == {
        "group_id": "12", "caller_id": "6175550142", "call_date": "2024-03-01T14:15:03+00:00"}
    assert t.match("6175550142_1709302503_x.wav") is None  # the folders are part of it


@pytest.mark.parametrize(("text", "says"), [
    ("{caller}.wav", "not a field"), ("{external_id}-{external_id}.wav", "twice"),
    ("{caller_id:%Y}.wav", "only call_date"), ("{call_date:%Q}.wav", "%Q"),
    ("recording.wav", "names no field"), ("{external_id.wav", "brace"),
    ("{recording_file}.wav", "not a field"),
])
def test_a_bad_template_says_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        compile_template(text)


def test_every_preset_compiles() -> None:
    assert all(compile_template(name).fields for name in PRESETS)
