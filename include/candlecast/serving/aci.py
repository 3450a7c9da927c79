"""The online state of a return target's intervals (adaptive conformal inference), as persisted.

Monitoring (:mod:`candlecast.monitoring.aci`) moves each level's miss level ``alpha`` after
every realized outcome and writes the state to ``<models>/<stream>/targets/<target key>/aci.json``
(one file per (stream, target, horizon), its levels inside); the service reads it when it
rebuilds a stream's snapshot and uses each level's current multiplier instead of the card's.

A state belongs to the calibration it started from (:func:`identity`: the champion's version and
its calibration): when a new champion is served, or the main target is recalibrated, the old
state no longer applies and the card's multipliers are used until monitoring starts a new one.
A calibration with volatility bins has one state per bin (``aci-bin<k>.json``), each of the
bin's rows only, started from the bin's multipliers.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from candlecast.modeling.card import IntervalCalibration

#: The state's file, in the target's folder.
FILE = "aci.json"


class AciLevel(BaseModel):
    """One level's state: ACI's miss level, the multiplier it gives now, how it did so far."""

    model_config = ConfigDict(extra="forbid")

    coverage: float
    alpha: float = Field(description="The miss level in force (starts at 1 - coverage)")
    multiplier: float = Field(description="Normalized half-width the next forecast uses")
    misses: int = 0
    judged: int = 0


class AciFile(BaseModel):
    """What ``aci.json`` holds."""

    model_config = ConfigDict(extra="forbid")

    identity: str = Field(description="The calibration the state started from")
    horizon: int
    #: The newest row (candle open, unix ms) whose interval is fixed (-1: none yet), and the
    #: data time (unix ms) of the newest check that moved the state.
    through: int = -1
    as_of: int = 0
    levels: dict[str, AciLevel]
    #: Recent normalized scores (``|y - forecast| / sigma``), shared by the levels; the
    #: calibration's prior first.
    scores: list[float] = Field(default_factory=list)
    #: Rows forecast but not yet realized: row -> level -> the multiplier served for it.
    pending: dict[int, dict[str, float]] = Field(default_factory=dict)
    #: (as_of, level -> alpha) after each check that moved the state, oldest first (bounded):
    #: what a re-run of an earlier check reports.
    history: list[tuple[int, dict[str, float]]] = Field(default_factory=list)


def state_path(folder: Path, number: int | None = None) -> Path:
    """The state file of the target whose folder is ``folder`` (of its volatility bin
    ``number``, for a calibration with bins)."""
    return folder / (FILE if number is None else f"aci-bin{number}.json")


def identity(calibration: IntervalCalibration, version: str | None) -> str:
    """The calibration a state starts from: the champion's version and its multipliers."""
    digest = hashlib.sha256(calibration.model_dump_json().encode()).hexdigest()[:12]
    return f"{version or 'main'}:{digest}"


def read_state(path: Path) -> AciFile | None:
    """The persisted state, or None when there is none (or it cannot be read)."""
    try:
        return AciFile.model_validate_json(path.read_bytes())
    except (OSError, ValueError):
        return None


def write_state(path: Path, state: AciFile) -> None:
    """Write atomically: a reader sees the old state or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staged.write_text(state.model_dump_json())
    staged.replace(path)


class StateReader:
    """Reads state files, each parsed again only when it was replaced: every write renames a
    new file into place, so its inode changes even when the clock's granularity leaves the
    modification time as it was."""

    def __init__(self) -> None:
        self._cache: dict[Path, tuple[tuple[int, int], AciFile | None]] = {}

    def read(self, path: Path) -> AciFile | None:
        try:
            found = path.stat()
        except OSError:
            self._cache.pop(path, None)
            return None
        stamp = (found.st_ino, found.st_mtime_ns)
        cached = self._cache.get(path)
        if cached is None or cached[0] != stamp:
            cached = (stamp, read_state(path))
            self._cache[path] = cached
        return cached[1]


def levels_in_use(
    calibration: IntervalCalibration, version: str | None, state: AciFile | None
) -> dict[str, tuple[float, float | None]]:
    """Level -> (multiplier, ACI's alpha) to serve: the state's where it belongs to this
    calibration, else the card's multiplier (alpha None: the nominal level)."""
    mine = state is not None and state.identity == identity(calibration, version)
    current = state if mine else None
    found: dict[str, tuple[float, float | None]] = {}
    for level, multiplier in calibration.multipliers.items():
        online = current.levels.get(level) if current is not None else None
        found[level] = (multiplier, None) if online is None else (online.multiplier, online.alpha)
    return found
