"""Retention of the app's recordings (``--record-keep-days``,
``--record-max-gb``): what :meth:`AppRecordings.prune` removes and keeps."""

from __future__ import annotations

import os
import pickle
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


def test_prune_leaves_the_unfinished_recordings_of_open_rooms(
    tmp_path: Path,
) -> None:
    """Rooms in worker processes record there: their directories may be
    recordings under way, which the main process does not know of."""
    busy = put(tmp_path / "open" / "20200101T000000Z" / "open" / "p.webm", 10, 9)
    gone = put(tmp_path / "gone" / "20200101T000000Z" / "gone" / "p.webm", 10, 9)
    old = put(tmp_path / "open" / "a.webm", 10, 9)  # finished: pruned all the same
    for directory in (busy.parent, busy.parent.parent, gone.parent, gone.parent.parent):
        os.utime(directory, (NOW - 9 * DAY, NOW - 9 * DAY))
    removed = AppRecordings(tmp_path, keep_days=7).prune(NOW, open_rooms={"open"})
    assert sorted(removed) == sorted([old, gone.parent.parent])
    assert busy.exists()


def test_pickled_to_a_worker_it_keeps_its_settings_not_its_state(
    tmp_path: Path,
) -> None:
    recordings = AppRecordings(tmp_path, mode="raw", keep_days=3, max_bytes=10)
    recordings._names["room"] = {"p": "Pat"}  # what a recording under way knows
    copy = pickle.loads(pickle.dumps(recordings))
    assert (copy.directory, copy.mode, copy.keep_days, copy.max_bytes) == (
        tmp_path,
        "raw",
        3,
        10,
    )
    assert copy._names == {}


def test_recover_lists_a_crash_s_live_files_as_incomplete(tmp_path: Path) -> None:
    stamp = tmp_path / "room" / "20261207T101010Z"
    live = stamp / "room"
    put(live / "20261207T101011-host%201.webm", 100, 0)
    put(live / "20261207T101011-host%201-2.webm", 50, 0)  # came back: a 2nd file
    put(live / "20261207T101011-guest.mkv", 70, 0)
    put(live / "20261207T101011-silent.webm", 0, 0)  # nothing written: removed
    recordings = AppRecordings(tmp_path)
    recovered = recordings.recover()
    names = [f["name"] for f in recordings.finished("room")]
    assert sorted(names) == [
        "20261207T101010Z-guest-incomplete.mkv",
        "20261207T101010Z-host%201-2-incomplete.webm",
        "20261207T101010Z-host%201-incomplete.webm",
    ]
    assert sorted(p.name for p in recovered) == sorted(names)
    assert {f["participant"] for f in recordings.finished("room")} == {
        "guest",
        "host 1",
        "host 1-2",
    }
    assert not stamp.exists()  # the leftover directory is gone
    assert recordings.recover() == []  # nothing left to do


def test_recover_leaves_raw_leftovers_to_retention(tmp_path: Path) -> None:
    raw = put(tmp_path / "room" / "20261207T101010Z" / "room" / "t.pysfurec", 10, 0)
    assert AppRecordings(tmp_path).recover() == []
    assert raw.exists()
