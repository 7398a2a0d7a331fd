"""Live recording: each participant's WebM muxed as packets arrive (no codec),
checked like the offline conversion: real aiortc publishers, decoded with
PyAV, content checked."""

from __future__ import annotations

import contextlib
import heapq
import itertools
import random
import shutil
from pathlib import Path

import aiohttp
import av
import numpy as np
import pytest
from aiohttp import web

from pysfu import SFU
from pysfu.admission import Admission, HostKeys
from pysfu.recording import (
    LiveMuxer,
    RecordingWriter,
    convert,
    read_recording,
    record_track,
)
from pysfu.recording.assemble import ReorderBuffer, RtpUnit
from pysfu.recording.format import encode_record
from pysfu.signalling.whip import WhipEndpoint

from ..helpers import eventually
from ..peers import PeerFactory, read_pattern
from ..whip_client import whip_session
from .test_recording import COUNTER_MODULO, FPS, check_content, decode, lesson


async def test_a_room_recorded_live_plays_when_recording_stops(
    sfu: SFU, peers: PeerFactory, tmp_path: Path
) -> None:
    room, video, _guest = await lesson(sfu, peers)
    # --8<-- [start:live]
    recording = room.record(tmp_path, live=True)  # one WebM per participant
    # --8<-- [end:live]
    start = video.frames
    await eventually(lambda: video.frames - start >= 4 * FPS, timeout=120)
    host = recording.muxers["host"]
    assert host.path.suffix == ".webm" and host.aligned_by == "sender_reports"
    # the process dying now would leave a file readable up to its last cluster
    snapshot = tmp_path / "snapshot.webm"
    shutil.copyfile(host.path, snapshot)
    with av.open(str(snapshot)) as played:
        assert sum(1 for _ in played.decode(video=0)) > 2 * FPS
    await eventually(lambda: video.frames - start >= 8 * FPS, timeout=120)
    files = await room.stop_recording()

    assert sorted(f.name.split("-", 1)[1] for f in files) == [
        "guest.webm",
        "host.webm",
    ]
    assert all(s.error is None and s.records_dropped == 0 for s in recording.stats())
    check_content(host.path, seconds=8)
    tracks = {t.kind: t for t in host.results()}
    print(host.results())
    frames, _, _, _ = decode(host.path)
    assert tracks["video"].frames_written == len(frames)
    assert abs(tracks["audio"].starts_at - tracks["video"].starts_at) < 0.1


async def test_a_live_recording_with_lost_packets_has_no_broken_picture(
    sfu: SFU, peers: PeerFactory, tmp_path: Path
) -> None:
    room, video, _guest = await lesson(sfu, peers)
    recording = room.record(tmp_path, live=True)
    recorder = recording.recorders["host/video"]
    # 5 % of the host's video never reaches the muxer (after retransmissions)
    chance = random.Random(7)
    record_rtp = recorder.record_rtp
    recorder.record_rtp = lambda data: (  # type: ignore[method-assign]
        None if chance.random() < 0.05 else record_rtp(data)
    )
    start = video.frames
    for seconds in (2, 4, 6):  # a viewer missing frames asks for keyframes
        await eventually(lambda s=seconds: video.frames - start >= s * FPS, timeout=120)  # type: ignore[misc]
        recorder.forwarder.keyframes.request()
    await eventually(lambda: video.frames - start >= 8 * FPS, timeout=120)
    await room.stop_recording()
    host = recording.muxers["host"]
    track = next(t for t in host.results() if t.kind == "video")
    assert track.packets_missing > 0
    assert track.frames_dropped > 0
    # never a corrupt picture: decode() fails on a frame without the pattern
    frames, _, _, _ = decode(host.path)
    assert len(frames) == track.frames_written > 0


async def test_reordered_and_repeated_packets_cost_a_live_recording_nothing(
    sfu: SFU, peers: PeerFactory, tmp_path: Path
) -> None:
    room, video, _guest = await lesson(sfu, peers)
    recording = room.record(tmp_path, live=True)
    recorder = recording.recorders["host/video"]
    # 10 % of the host's video arrives three packets late, 3 % twice
    chance = random.Random(3)
    record_rtp = recorder.record_rtp
    late: list[tuple[int, bytes]] = []

    def jumbled(data: bytes) -> None:
        for item in [i for i in late if i[0] <= 0]:
            late.remove(item)
            record_rtp(item[1])
        late[:] = [(n - 1, d) for n, d in late]
        roll = chance.random()
        if roll < 0.10:
            late.append((3, data))
            return
        record_rtp(data)
        if roll < 0.13:
            record_rtp(data)

    recorder.record_rtp = jumbled  # type: ignore[method-assign]
    start = video.frames
    await eventually(lambda: video.frames - start >= 5 * FPS, timeout=120)
    await room.stop_recording()
    host = recording.muxers["host"]
    track = next(t for t in host.results() if t.kind == "video")
    assert track.packets_missing == 0
    frames, _, _, _ = decode(host.path)
    # every frame from the first keyframe on, each once
    counters = [c for _, c in frames]
    assert len(frames) == track.frames_written >= 0.9 * 5 * FPS
    steps = [(c - counters[0]) % COUNTER_MODULO for c in counters]
    assert steps == list(range(len(counters)))


def unit(seq: int, arrival_ms: int) -> RtpUnit:
    return RtpUnit(seq, seq * 3000, True, b"x", arrival_ms * 1_000_000)


def test_the_reorder_buffer_waits_for_a_gap_only_so_long() -> None:
    buffer = ReorderBuffer(window_ns=300_000_000, max_packets=100)
    assert [p.seq for p in buffer.push(unit(1, 0))] == [1]
    assert buffer.push(unit(3, 10)) == []  # 2 is missing: wait
    assert [p.seq for p in buffer.push(unit(2, 50))] == [2, 3]  # a retransmission
    assert buffer.push(unit(2, 60)) == []  # a duplicate
    assert buffer.push(unit(5, 100)) == []
    assert buffer.push(unit(6, 200)) == []
    # 4 never comes: given up once 5 has waited the window
    assert [p.seq for p in buffer.push(unit(7, 400))] == [5, 6, 7]
    assert buffer.push(unit(4, 410)) == []  # too late
    assert (buffer.released, buffer.missing) == (6, 1)


def test_a_live_file_needs_a_container_that_holds_the_codec(tmp_path: Path) -> None:
    from pysfu.recording import TrackHeader

    with pytest.raises(ValueError, match="unknown output format"):
        LiveMuxer(tmp_path / "x.avi")
    h264 = TrackHeader("r", "p", "p/video", "video", "video/H264", 90000)
    with pytest.raises(ValueError, match="WebM cannot hold"):
        LiveMuxer(tmp_path / "x.webm").add_track(h264)
    assert LiveMuxer(tmp_path / "x.mkv").add_track(h264) is not None


# -- WHIP publishers ----------------------------------------------------------


@pytest.mark.parametrize("live", [False, True], ids=["raw", "live"])
async def test_a_whip_publisher_in_a_recorded_room_is_recorded(
    sfu: SFU, peers: PeerFactory, tmp_path: Path, live: bool
) -> None:
    room = sfu.create_room("whip-rec", max_participants=4)
    recording = room.record(tmp_path, live=live)  # before the publisher comes
    endpoint = WhipEndpoint(Admission(sfu), host_keys=HostKeys(["whip-key"]))
    app = web.Application()
    app.add_routes(endpoint.routes())
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    publisher = peers("whip", code=3, tone=660.0)
    try:
        async with aiohttp.ClientSession() as http:
            answer = await whip_session(
                http, f"http://127.0.0.1:{port}", "whip-rec", publisher, "whip-key"
            )
            assert answer.status == 201, answer.text
            await eventually(lambda: len(recording.recorders) == 2, timeout=30)
            video = next(
                r for r in recording.recorders.values() if r.header.kind == "video"
            )
            await eventually(lambda: video.stats().records_written > 400, timeout=60)
            files = await room.stop_recording()
    finally:
        await endpoint.close()
        await runner.cleanup()

    if live:
        (output,) = files
    else:
        output = tmp_path / "whip.webm"
        convert(files, output)
    frames, audio, rate, _ = decode(output)  # every picture shows the pattern
    assert len(frames) > 2 * FPS
    spectrum = np.abs(np.fft.rfft(audio))
    spectrum[0] = 0
    frequency = np.fft.rfftfreq(len(audio), 1 / rate)[int(spectrum.argmax())]
    assert abs(frequency - 660) < 20


async def test_one_track_recorded_live_to_a_file_of_its_own(
    sfu: SFU, peers: PeerFactory, tmp_path: Path
) -> None:
    room = sfu.create_room("one-track")
    host = await peers("host", code=5).join(room, "host")
    guest = await peers("guest", code=9).join(room)
    await guest.wait_video_from(host)
    forwarder = room.members["host"].publications["host/video"]
    writer = RecordingWriter()
    recorder = record_track(forwarder, tmp_path / "video.webm", writer)
    assert recorder.muxer is not None and recorder.path == tmp_path / "video.webm"
    await eventually(lambda: recorder.stats().records_written > 300, timeout=60)
    recorder.stop()
    await writer.close()
    assert recorder.muxer.closed and recorder.muxer.error is None
    with av.open(str(recorder.path)) as played:
        patterns = [read_pattern(f) for f in played.decode(video=0)]
    assert len(patterns) > FPS and all(p is not None for p in patterns)


def replay_live(files: list[Path], output: Path) -> LiveMuxer:
    """Raw recordings fed to a :class:`LiveMuxer` in arrival order, as the
    recording thread would have fed it: live muxing of packets from any
    publisher whose raw recording we have (e.g. Chromium's)."""
    muxer = LiveMuxer(output)
    with contextlib.ExitStack() as stack:
        sinks, tracks = [], []
        for path in files:
            header, records = read_recording(stack.enter_context(open(path, "rb")))
            sink = muxer.add_track(header)
            assert sink is not None
            sinks.append(sink)
            tracks.append(records)
        merged = heapq.merge(
            *(zip(itertools.repeat(i), records) for i, records in enumerate(tracks)),
            key=lambda item: item[1].arrival_ns,
        )
        for index, record in merged:
            data = encode_record(record.type, record.arrival_ns, record.body)
            sinks[index].write(data)
        for sink in sinks:
            sink.close()
    assert muxer.closed
    return muxer


def test_a_keyframe_after_lost_frames_is_kept_what_follows_a_gap_is_not() -> None:
    from pysfu.recording import TrackHeader
    from pysfu.recording.assemble import FrameAssembler

    keyframe = bytes([0x10, 0x00, 0, 0, 0x9D, 0x01, 0x2A, 64, 0, 48, 0])
    delta = bytes([0x10, 0x01, 0xAA])
    header = TrackHeader("r", "p", "p/video", "video", "video/VP8", 90000, None, 96)
    assembler = FrameAssembler(header)
    sent = [(1, keyframe), (2, delta), (4, delta), (6, keyframe), (7, delta)]
    # sequence numbers 3 and 5 (frames of their own) are lost for good
    frames = [
        f
        for n, payload in sent
        for f in assembler.push(RtpUnit(n, n * 3000, True, payload, 0))
    ]
    frames += assembler.flush()
    assert [(f.rtp_time // 3000, f.keyframe) for f in frames] == [
        (1, True),
        (2, False),
        (6, True),  # right after a lost frame, but a keyframe
        (7, False),
    ]
    assert assembler.frames_dropped == 1  # frame 4: it needed frame 3
    assert assembler.size == (64, 48)
