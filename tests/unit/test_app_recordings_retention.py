"""Retention of the app's recordings (``--record-keep-days``,
``--record-max-gb``): what :meth:`AppRecordings.prune` removes and keeps."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pysfu.app.recordings import AppRecordings

DAY = 86400.0
NOW = 1_800_000_000.0


def put(path: Path, size: int, age_days: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    stamp = NOW - age_days * DAY
    os.utime(path, (stamp, stamp))
    return path


def test_older_than_keep_days_goes_with_what_it_says(tmp_path: Path) -> None:
    old = put(tmp_path / "room" / "a.webm", 10, 8)
    put(tmp_path / "room" / ".a.webm.json", 5, 8)
    new = put(tmp_path / "room" / "b.mkv", 10, 6)
    raw = put(tmp_path / "room" / "20200101T000000Z" / "room" / "t.pysfurec", 10, 9)
    os.utime(raw.parent.parent, (NOW - 9 * DAY, NOW - 9 * DAY))
    os.utime(raw.parent, (NOW - 9 * DAY, NOW - 9 * DAY))
    converting = put(tmp_path / "room" / ".c.webm.partial.webm", 10, 30)
    removed = AppRecordings(tmp_path, keep_days=7).prune(NOW)
    assert sorted(removed) == sorted([old, raw.parent.parent])
    assert sorted(p.name for p in (tmp_path / "room").iterdir()) == sorted(
        [new.name, converting.name]
    )


def test_max_bytes_removes_the_oldest_first(tmp_path: Path) -> None:
    oldest = put(tmp_path / "r1" / "1.webm", 400, 3)
    put(tmp_path / "r2" / "2.webm", 400, 2)
    put(tmp_path / "r1" / "3.webm", 400, 1)
    recordings = AppRecordings(tmp_path, max_bytes=900)
    assert recordings.prune(NOW) == [oldest]
    assert recordings.prune(NOW) == []  # 800 bytes: within the limit


def test_without_a_limit_nothing_goes(tmp_path: Path) -> None:
    put(tmp_path / "room" / "a.webm", 10, 3650)
    assert AppRecordings(tmp_path).prune(NOW) == []
    assert (tmp_path / "room" / "a.webm").exists()


def test_a_bad_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mp3"):
        AppRecordings(tmp_path, mode="mp3")
