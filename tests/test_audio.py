"""Probing real recordings: the bundled samples pass with the right facts; files the API
would refuse are refused locally with a reason."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from importer.audio import probe
from importer.errors import AudioError

from .conftest import SAMPLES

LIMIT = 50_000_000


@pytest.mark.parametrize(("name", "fmt", "codec", "rate", "channels"), [
    ("call-0001-pcm8k.wav", "wav", "pcm", 8000, 1),
    ("call-0002-ulaw8k.wav", "wav", "mulaw", 8000, 1),
    ("call-0003-alaw8k.wav", "wav", "alaw", 8000, 1),
    ("call-0004-stereo16k.wav", "wav", "pcm", 16000, 2),
    ("call-0005-cbr.mp3", "mp3", "mpeg2.5-layer3", 8000, 1),
    ("call-0006-vbr.mp3", "mp3", "mpeg2-layer3", 22050, 1),
    ("call-0007-mpeg2.mp3", "mp3", "mpeg2-layer3", 22050, 1),
    ("call 0008 callback.wav", "wav", "pcm", 8000, 1),
])
def test_samples(name: str, fmt: str, codec: str, rate: int, channels: int) -> None:
    info = probe(SAMPLES / name, LIMIT)
    assert (info.format, info.codec, info.sample_rate, info.channels) == (fmt, codec, rate,
                                                                         channels)
    assert 2.0 < info.duration < 10.0
    assert info.size == (SAMPLES / name).stat().st_size


def copy(tmp_path: Path, name: str, new_name: str) -> Path:
    target = tmp_path / new_name
    target.write_bytes((SAMPLES / name).read_bytes())
    return target


def test_refusals(tmp_path: Path) -> None:
    cases: dict[Path, str] = {}
    cases[tmp_path / "absent.wav"] = "not found"
    (tmp_path / "folder.wav").mkdir()
    cases[tmp_path / "folder.wav"] = "folder"
    (tmp_path / "empty.mp3").write_bytes(b"")
    cases[tmp_path / "empty.mp3"] = "empty"
    (tmp_path / "notes.wav").write_text("call notes, not audio\n" * 20)
    cases[tmp_path / "notes.wav"] = "not mp3 or wav"
    (tmp_path / "song.mp3").write_bytes(b"OggS" + b"\0" * 200)
    cases[tmp_path / "song.mp3"] = "ogg"
    cases[copy(tmp_path, "call-0005-cbr.mp3", "mislabelled.wav")] = \
        "extension says wav but the content is mp3"
    cases[copy(tmp_path, "call-0001-pcm8k.wav", "call.aiff")] = "not .mp3 or .wav"
    for path, reason in cases.items():
        with pytest.raises(AudioError) as caught:
            probe(path, LIMIT)
        assert reason in caught.value.reason, path.name
        assert caught.value.path == str(path)


def test_size_limit(tmp_path: Path) -> None:
    path = copy(tmp_path, "call-0001-pcm8k.wav", "big.wav")
    with pytest.raises(AudioError, match="over the limit"):
        probe(path, 1000)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_unreadable(tmp_path: Path) -> None:
    path = copy(tmp_path, "call-0001-pcm8k.wav", "locked.wav")
    path.chmod(0)
    with pytest.raises(AudioError, match="permission"):
        probe(path, LIMIT)


def test_upper_case_extension_and_unicode_name(tmp_path: Path) -> None:
    info = probe(copy(tmp_path, "call-0005-cbr.mp3", "Llamada José.MP3"), LIMIT)
    assert info.format == "mp3"
