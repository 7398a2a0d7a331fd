"""Recording without transcoding: real aiortc publishers through the SFU, the
recording converted to WebM and decoded with PyAV, content checked."""

from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack

from pysfu import SFU, Room
from pysfu.recording import (
    BadRecording,
    RecordingWriter,
    convert,
    read_recording,
)
from pysfu.recording.__main__ import main as recording_cli
from pysfu.recording.assemble import check_codecs

from ..helpers import eventually
from ..peers import Peer, PeerFactory, draw_pattern, read_pattern

FPS = 30
COUNTER_MODULO = 1 << 16


class WallClockVideo(VideoStreamTrack):
    """Each frame shows the wall-clock time it stands for, in 1/30 s units, so
    a decoded frame says when it was captured."""

    def __init__(self, code: int) -> None:
        super().__init__()
        self.code = code
        self.start: float | None = None
        self.frames = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        if self.start is None:
            self.start = time.time()
        counter = round((self.start + float(pts * time_base)) * FPS) % COUNTER_MODULO
        frame = av.VideoFrame.from_ndarray(draw_pattern(self.code, counter), "rgb24")
        frame.pts, frame.time_base = pts, time_base
        self.frames += 1
        return frame


class WallClockBeeps(AudioStreamTrack):
    """A 440 Hz beep during the first 200 ms of every wall-clock second."""

    def __init__(self) -> None:
        super().__init__()
        self.start: float | None = None
        self.sample = 0

    async def recv(self) -> av.AudioFrame:
        frame = await super().recv()
        if self.start is None:
            self.start = time.time()
        n, rate = frame.samples, frame.sample_rate
        wall = self.start + (np.arange(n) + self.sample) / rate
        self.sample += n
        on = (wall % 1.0) < 0.2
        samples = np.sin(2 * math.pi * 440 * wall) * 8000 * on
        frame.planes[0].update(samples.astype("<i2").tobytes())
        return frame


def decode(path: Path) -> tuple[list[tuple[float, int]], np.ndarray, int, float]:
    """``[(time, counter)]`` of the video, the audio samples, the audio rate and
    the time of the first audio sample."""
    video: list[tuple[float, int]] = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            pattern = read_pattern(frame)
            assert pattern is not None, "a decoded frame does not show the pattern"
            video.append((float(frame.time), pattern[1]))
    chunks = []
    with av.open(str(path)) as container:
        first = None
        rate = 48000
        for audio in container.decode(audio=0):
            if first is None:
                first = float(audio.time)
            rate = audio.sample_rate
            samples = audio.to_ndarray()[0]  # first channel (planar float)
            if samples.dtype.kind == "f":
                samples = samples * 32768
            chunks.append(samples)
    return video, np.concatenate(chunks).astype(float), rate, first or 0.0


def check_content(output: Path, seconds: float) -> None:
    """The file holds every frame the publisher sent from the first keyframe
    on, about ``seconds`` of them, its 440 Hz tone, and audio and video start
    together and stay in sync."""
    frames, audio, rate, audio_start = decode(output)

    # every frame from the first keyframe on, none missing or repeated
    counters = [c for _, c in frames]
    expected = (counters[-1] - counters[0]) % COUNTER_MODULO + 1
    assert len(counters) >= 0.98 * expected, (len(counters), expected)
    print(f"{output.name}: {len(counters)} frames of {expected} sent from the first")
    assert len(set(counters)) == len(counters)
    # and about as many as the publisher sent while recording
    assert len(counters) >= 0.9 * seconds * FPS

    # the tone is the publisher's
    spectrum = np.abs(np.fft.rfft(audio))
    spectrum[0] = 0
    frequency = np.fft.rfftfreq(len(audio), 1 / rate)[int(spectrum.argmax())]
    assert abs(frequency - 440) < 20

    # audio and video start together ...
    assert abs(audio_start - frames[0][0]) < 0.1
    # ... and stay in sync: what the picture says the time is, against when
    # the beeps start (each on a whole wall-clock second), in the file's time
    now = round(time.time() * FPS)
    video_offsets = []
    for at, counter in frames:
        wall = (now - (now - counter) % COUNTER_MODULO) / FPS
        video_offsets.append(at - wall)
    video_offset = float(np.median(video_offsets))
    window = rate // 100
    envelope = np.abs(audio[: len(audio) // window * window]).reshape(-1, window).max(1)
    onsets = [
        (i * window) / rate + audio_start
        for i in range(1, len(envelope))
        if envelope[i] > 2000 and envelope[i - 1] < 500
    ]
    assert len(onsets) >= seconds - 2
    audio_offsets = [(t - video_offset) % 1.0 for t in onsets]
    skew = float(np.median([(d + 0.5) % 1.0 - 0.5 for d in audio_offsets]))
    assert abs(skew) < 0.1, f"audio is {skew * 1000:.0f} ms off the picture"


async def lesson(
    sfu: SFU, peers: PeerFactory, codec: str = "VP8"
) -> tuple[Room, WallClockVideo, Peer]:
    """A room with a host showing wall-clock frames and beeps, and a guest."""
    room = sfu.create_room("lesson", video_codecs=(codec,))
    host = peers("host", code=5)
    video = WallClockVideo(5)
    host.video, host.audio = video, WallClockBeeps()
    await host.join(room, "host")
    guest = await peers("guest", code=9).join(room)
    await guest.wait_video_from(host)
    await host.wait_video_from(guest)
    return room, video, guest


async def record_host(
    sfu: SFU, peers: PeerFactory, directory: Path, seconds: float, codec: str = "VP8"
) -> tuple[list[Path], WallClockVideo, Peer]:
    room, video, guest = await lesson(sfu, peers, codec)
    # --8<-- [start:record]
    recording = room.record(directory)  # every track, and those published later
    # --8<-- [end:record]
    assert len(recording.recorders) == 4  # host and guest, audio and video
    start = video.frames
    await eventually(lambda: video.frames - start >= seconds * FPS, timeout=120)
    # --8<-- [start:stop]
    files = await room.stop_recording()  # once every file is written
    for stats in recording.stats():
        print(stats.track_id, stats.records_written, stats.records_dropped)
    # --8<-- [end:stop]
    assert all(s.records_dropped == 0 and s.error is None for s in recording.stats())
    return [f for f in files if "host" in f.name], video, guest


@pytest.mark.parametrize(
    ("codec", "container"), [("VP8", "webm"), ("H264", "mkv"), ("H264", "mp4")]
)
async def test_a_recorded_room_converts_to_a_file_that_plays(
    sfu: SFU, peers: PeerFactory, tmp_path: Path, codec: str, container: str
) -> None:
    files, _, _ = await record_host(sfu, peers, tmp_path, seconds=10, codec=codec)
    assert len(files) == 2
    output = tmp_path / f"host.{container}"
    # --8<-- [start:convert]
    result = convert(files, output)  # one participant's audio and video
    for track in result.tracks:
        print(track.track_id, track.frames_written, track.frames_dropped)
    # --8<-- [end:convert]
    assert result.aligned_by == "sender_reports"
    check_content(output, seconds=10)

    # from a shell: one playable file per participant
    options = [f"--format={container}"] if container == "mp4" else []  # not auto
    assert recording_cli(["convert-room", str(files[0].parent), *options]) == 0
    for name in ("host", "guest"):
        with av.open(str(files[0].parent / f"{name}.{container}")) as played:
            assert sum(1 for _ in played.decode(video=0)) > 0.9 * 10 * FPS


async def test_a_recording_with_lost_packets_still_plays(
    sfu: SFU, peers: PeerFactory, tmp_path: Path
) -> None:
    room = sfu.create_room("lossy")
    host = await peers("host", code=5).join(room, "host")
    guest = await peers("guest", code=9).join(room)
    await guest.wait_video_from(host)
    recording = room.record(tmp_path)
    video = recording.recorders["host/video"]
    # 5 % of the host's video never reaches the file (after retransmissions)
    chance = random.Random(7)
    record_rtp = video.record_rtp
    video.record_rtp = lambda data: None if chance.random() < 0.05 else record_rtp(data)  # type: ignore[method-assign]
    assert host.video is not None
    start = host.video.counter
    await eventually(lambda: host.video.counter - start >= 150, timeout=120)  # type: ignore[union-attr]
    # the guest's decoder asks for keyframes when it misses frames; so does
    # anyone watching a lossy stream: here the test asks
    for _ in range(3):
        video.forwarder.keyframes.request()
        await eventually(lambda: host.video.counter - start >= 150, timeout=120)  # type: ignore[union-attr]
    files = await room.stop_recording()
    host_files = [f for f in files if "host" in f.name]
    result = convert(host_files, tmp_path / "lossy.webm")
    track = next(t for t in result.tracks if t.kind == "video")
    assert track.packets_missing > 0
    assert track.frames_dropped > 0
    # never a corrupt picture: decode() fails on a frame without the pattern
    frames, _, _, _ = decode(tmp_path / "lossy.webm")
    assert len(frames) == track.frames_written > 0


async def test_a_slow_disk_drops_records_and_never_blocks(tmp_path: Path) -> None:
    writer = RecordingWriter(max_pending_bytes=10_000)
    handle = writer.open(tmp_path / "x.pysfurec", b"header")
    accepted = sum(writer.write(handle, bytes(1200)) for _ in range(100))
    assert 0 < accepted < 100
    assert handle.records_dropped == 100 - accepted
    writer.close_file(handle)
    await writer.close()
    assert handle.bytes_written == len(b"header") + 1200 * accepted


def test_bad_files_get_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.pysfurec"
    bogus.write_bytes(b"not a recording at all")
    with pytest.raises(BadRecording), open(bogus, "rb") as file:
        read_recording(file)
    assert recording_cli(["convert", "-o", str(tmp_path / "x.webm"), str(bogus)]) == 1
    with pytest.raises(ValueError, match="unknown output format"):
        convert([bogus], tmp_path / "x.avi")


def test_mp4_holds_h264_and_opus_only(tmp_path: Path) -> None:
    """VP8 or VP9 in MP4 are not what players expect: refused, and a live
    file is never an MP4 (unreadable until its index is written at the
    end)."""
    from pysfu.recording import LiveMuxer, TrackHeader
    from pysfu.recording.opushead import opus_head

    for mime in ("video/VP8", "video/VP9"):
        header = TrackHeader("r", "p", "p/video", "video", mime, 90000)
        with pytest.raises(ValueError, match=r"MP4 here holds H\.264 and Opus"):
            check_codecs([header], "mp4")
    with pytest.raises(ValueError, match="a live file is WebM or Matroska"):
        LiveMuxer(tmp_path / "x.mp4")
    # RFC 7845's OpusHead: magic, version 1, channels, pre-skip, rate, gain, family
    assert opus_head(2) == b"OpusHead\x01\x02\x00\x00\x80\xbb\x00\x00\x00\x00\x00"
    with pytest.raises(ValueError, match="mono or stereo"):
        opus_head(6)


# -- the host's record message ------------------------------------------------


async def test_only_the_host_records_and_only_where_the_app_allows(
    sfu: SFU, tmp_path: Path
) -> None:
    from pysfu.messages import Error, Record, Recording, ServerMessage

    room = sfu.create_room("rec-control")
    inbox: dict[str, list[ServerMessage]] = {"host": [], "guest": [], "late": []}

    def outbox(name: str) -> Any:
        async def send(message: ServerMessage) -> None:
            inbox[name].append(message)

        return send

    host = await room.join("host", "host", outbox("host"))
    guest = await room.join("guest", "participant", outbox("guest"))

    await host.handle(Record(on=True))  # no app hook: the library writes nothing
    assert (
        Error("recording_disabled", "this server does not record rooms")
        in (inbox["host"])
    )
    assert not room.is_recording

    calls: list[bool] = []

    async def control(target: Any, on: bool) -> None:
        calls.append(on)
        if on:
            target.record(tmp_path)
        else:
            await target.stop_recording()

    room.recording_control = control
    await guest.handle(Record(on=True))
    assert Error("not_host", "only the host may record the room") in inbox["guest"]
    assert calls == []

    await host.handle(Record(on=True))
    assert room.is_recording
    for name in ("host", "guest"):
        await eventually(lambda n=name: Recording(True) in inbox[n])  # type: ignore[misc]
    room.max_participants = 2
    await room.join("late", "participant", outbox("late"))
    assert Recording(True) in inbox["late"]  # told on joining, before media

    await host.handle(Record(on=False))
    assert calls == [True, False] and not room.is_recording
    for name in ("host", "guest", "late"):
        assert inbox[name][-1] == Recording(False) or Recording(False) in inbox[name]


def test_the_record_message_parses_with_a_boolean_only() -> None:
    from pysfu.messages import Record, SignallingError, parse_client_message, to_json

    assert parse_client_message({"type": "record", "on": True}) == Record(True)
    assert to_json(Record(False)) == {"type": "record", "on": False}
    for bad in ({"type": "record"}, {"type": "record", "on": 1}):
        with pytest.raises(SignallingError) as caught:
            parse_client_message(bad)
        assert caught.value.code == "bad_message"
