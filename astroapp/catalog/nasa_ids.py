"""NASA photo ids (`MISSION-ROLL-FRAME`, e.g. `ISS064-E-358`) found in file names.

NASA writes ids with dashes and unpadded frames (`ISS064-E-358`); downloaded files and camera
exports also appear as `iss064e000358.jpg`, `ISS064-E-000358.JPG` or `ISS064_E_358`. All
parse to the same normalised id so photos and NASA's metadata meet.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath

# Missions NASA's catalogue uses: ISS expeditions, Shuttle, Skylab, Apollo, Gemini, Mercury...
_MISSION = r"(?:ISS|STS|ISD|SL|AS|GT|MA|NM)\d{1,3}[A-Z]?"
_SEPARATED = re.compile(
    rf"(?<![A-Z0-9])(?P<mission>{_MISSION})[-_ ](?P<roll>[A-Z0-9]{{1,4}})[-_ ](?P<frame>\d{{1,7}})(?!\d)",
    re.IGNORECASE,
)
# Compact: ISS + 3 digits + one roll letter + frame digits (`iss064e000358`).
_COMPACT = re.compile(
    r"(?<![A-Z0-9])(?P<mission>ISS\d{3})(?P<roll>[A-Z])(?P<frame>\d{1,7})(?!\d)", re.IGNORECASE
)


@dataclass(frozen=True)
class NasaId:
    mission: str  # e.g. "ISS064"
    roll: str  # e.g. "E" (digital)
    frame: int  # e.g. 358

    def __str__(self) -> str:
        return f"{self.mission}-{self.roll}-{self.frame}"


def _normalise_mission(mission: str) -> str:
    m = re.fullmatch(r"([A-Z]+)(\d+)([A-Z]?)", mission.upper())
    if not m:
        return mission.upper()
    prefix, number, suffix = m.groups()
    if prefix in ("ISS", "STS"):
        number = f"{int(number):03d}"
    return f"{prefix}{number}{suffix}"


def parse_nasa_id(text: str | PurePath) -> NasaId | None:
    """The NASA photo id in a file name or id string, None when there is none."""
    name = PurePath(text).name if isinstance(text, PurePath) else str(text)
    name = name.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    for pattern in (_SEPARATED, _COMPACT):
        m = pattern.search(name)
        if m:
            return NasaId(
                _normalise_mission(m["mission"]), m["roll"].upper(), int(m["frame"])
            )
    return None


def normalize_nasa_id(text: str) -> str | None:
    """`iss064e000358` / `ISS064-E-000358` / ... -> `ISS064-E-358`; None if not an id."""
    parsed = parse_nasa_id(text.strip())
    return str(parsed) if parsed else None
