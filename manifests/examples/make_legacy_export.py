"""Writes legacy-pbx-export.csv and its recordings: an export as a legacy PBX gives it
(names for locations and campaigns, words for dispositions and directions, US dates, phones
as people write them), for docs/manifest.md's walk-through. Run from anywhere:
``python manifests/examples/make_legacy_export.py``. The recordings are short real wavs, each
its own tone, so that no two rows share audio."""

from __future__ import annotations

import csv
import math
import struct
import wave
from pathlib import Path

HERE = Path(__file__).resolve().parent
LOCATIONS = ("Acme Plumbing", "acme hvac", "Acme Plumbing ")
CAMPAIGNS = ("Spring Promo", "HVAC Tune-up", "spring promo")
DISPOSITIONS = ("Answered", "Voicemail", "No Answer", "Busy", "Missed", "ANSWERED")
DIRECTIONS = ("Inbound", "Outbound", "inbound")


def tone(path: Path, hertz: float, seconds: float = 0.3, rate: int = 8000) -> None:
    frames = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * hertz * i / rate)))
                      for i in range(int(seconds * rate)))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames)


def rows(n: int, folder: str) -> list[dict[str, str]]:
    out = []
    for i in range(n):
        hour, minute = 9 + i % 8, (7 * i) % 60
        out.append({
            "Call ID": f"PBX-{240301 + i // 20}-{i:04d}",
            "Recording Path": f"{folder}/REC-{100041 + i}.wav",
            "Start Time": f"03/{1 + i // 20:02d}/2024 {(hour - 1) % 12 + 1}:{minute:02d} "
                          f"{'AM' if hour < 12 else 'PM'}",
            "From": f"(617) 555-{1000 + i:04d}",
            "To": "(800) 555-0100",
            "Location": LOCATIONS[i % len(LOCATIONS)],
            "Campaign": CAMPAIGNS[i % len(CAMPAIGNS)],
            "Disposition": DISPOSITIONS[i % len(DISPOSITIONS)],
            "Direction": DIRECTIONS[i % len(DIRECTIONS)],
            "Notes": "follow up" if i % 5 == 0 else "",
        })
    return out


def write(manifest: Path, n: int) -> None:
    """``n`` rows in ``manifest`` and their recordings in ``recordings/`` beside it."""
    folder = manifest.parent / "recordings"
    folder.mkdir(parents=True, exist_ok=True)
    found = rows(n, "recordings")
    for i, row in enumerate(found):
        tone(manifest.parent / row["Recording Path"], 220 + 10 * i)
    with manifest.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=list(found[0]))
        writer.writeheader()
        writer.writerows(found)


if __name__ == "__main__":
    write(HERE / "legacy-pbx-export.csv", 12)
