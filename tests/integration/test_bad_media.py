"""Bad media from a publisher: malformed RTP and RTCP, unknown payload types or
SSRCs, floods. Such packets are dropped and counted; they never crash the
forwarder, never disconnect anyone, and the subscriber keeps decoding the
publisher's real frames.

Packets are injected from a real aiortc publisher through its real SRTP
session: ``RTCDtlsTransport._send_rtp`` encrypts whatever looks like RTP or
RTCP (libsrtp itself refuses truncated headers, so those go unencrypted over
the ICE transport instead), or the publisher's own outgoing packets are
rewritten on their way out. Packets carrying the publisher's real SSRC can
only be made that way: libsrtp's replay protection refuses to encrypt a
sequence number of that SSRC twice.

The counters read here are partly internal (``Participant.transport.tap``);
that is fine in tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import struct
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import pytest
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpparameters import (
    RTCRtpHeaderExtensionParameters,
    RTCRtpParameters,
)
from aiortc.rtp import HeaderExtensionsMap, RtcpPacket, RtpPacket, is_rtcp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pysfu import SFU, CodecInfo, DownTrack, Forwarder, Participant, Room

from ..helpers import LIVENESS, eventually, ice_sockets, udp_backlog
from ..peers import Peer, PeerFactory, ReceivedTrack

ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
#: Packets sent before waiting for the server to read them: far fewer than
#: its socket buffer holds, with the real stream arriving alongside.
PACED_BATCH = 20
UNKNOWN_PT = 35  # with the marker bit set, 72-80 would read as RTCP (RFC 5761)
_ssrcs = itertools.count(random.randrange(1 << 20, 1 << 30))


def fresh_ssrc() -> int:
    """An SSRC nobody announced (libsrtp makes a new stream for each)."""
    return next(_ssrcs)


def rtp(
    payload_type: int,
    sequence_number: int,
    ssrc: int,
    payload: bytes = b"",
    *,
    timestamp: int = 0,
    padding: bool = False,
    extension: bytes | None = None,
) -> bytes:
    """An RTP packet, byte by byte (``extension``: profile, length and data)."""
    first = 0x80 | (0x20 if padding else 0) | (0x10 if extension is not None else 0)
    header = bytes([first, payload_type & 0x7F])
    header += struct.pack("!HII", sequence_number & 0xFFFF, timestamp, ssrc)
    return header + (extension or b"") + payload


def rtcp(packet_type: int, count: int, body: bytes, words: int | None = None) -> bytes:
    """An RTCP packet whose length field says ``words`` (default: the truth)."""
    length = len(body) // 4 if words is None else words
    return bytes([0x80 | count, packet_type]) + struct.pack("!H", length) + body


def one_byte_extensions(elements: bytes) -> bytes:
    """An RFC 8285 one-byte header extension block around ``elements``."""
    elements += bytes(-len(elements) % 4)
    return b"\xbe\xde" + struct.pack("!H", len(elements) // 4) + elements


@dataclass
class Media:
    """A live room: ``host`` publishes (and injects), ``guest`` subscribes."""

    room: Room
    host: Peer
    guest: Peer
    track: ReceivedTrack  # the guest's copy of the host's video
    publisher: Participant  # the server side of the host
    transport: RTCDtlsTransport  # the host's client-side transport

    @property
    def video(self) -> Forwarder:
        return self.publisher.publications["host/video"]

    def payload_type(self, name: str) -> int:
        kinds = self.publisher.publications.values()
        return next(
            c.payload_type for f in kinds for c in f.codecs.values() if c.name == name
        )

    def known_payload_types(self) -> set[int]:
        forwarders = self.publisher.publications.values()
        return {pt for f in forwarders for pt in f.codecs}

    def dropped(self) -> int:
        """Every packet of the publisher the server counted as dropped."""
        tap = self.publisher.transport.tap
        assert tap is not None
        total = tap.parse_errors + tap.unrouted + tap.sink_errors
        for forwarder in self.publisher.publications.values():
            stats = forwarder.stats
            total += stats.unknown_payload_type + stats.unknown_ssrc
        return total

    def real_frames(self) -> int:
        return sum(1 for code, _ in self.track.patterns if code == self.host.code)

    async def keeps_decoding(self, frames: int = 30, timeout: float = LIVENESS) -> None:
        """The guest decodes ``frames`` more of the host's real frames."""
        before = self.real_frames()
        await eventually(
            lambda: self.real_frames() >= before + frames,
            timeout,
            what="the subscriber to keep decoding the publisher's video",
        )

    def assert_intact(self) -> None:
        """Nobody left, nothing closed, both tracks still published."""
        assert not self.room.closed
        assert self.room.members.get("host") is self.publisher
        assert set(self.room.members) == {"host", "guest"}
        for member in self.room.members.values():
            assert not member.closed
            assert member.pc.connectionState == "connected"
        assert set(self.publisher.publications) == {"host/audio", "host/video"}
        assert not self.video.closed and self.video.downtracks

    async def inject(self, packets: list[bytes], *, pace: bool = True) -> None:
        """Send ``packets`` through the host's SRTP session.

        Paced, a few at a time, each batch once the server has read the
        previous one from its socket, so none is lost in the socket buffer
        however slowly a busy machine runs the server.
        """
        batch = PACED_BATCH if pace else len(packets)
        for start in range(0, len(packets), batch):
            for data in packets[start : start + batch]:
                await self.transport._send_rtp(data)
            if pace:
                await self.server_read_everything()

    async def server_read_everything(self) -> None:
        ports = [
            p.transport.get_extra_info("sockname")[1]
            for p in ice_sockets(self.publisher.pc)
        ]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LIVENESS
        while udp_backlog(ports):
            assert loop.time() < deadline, "the server stopped reading"
            await asyncio.sleep(0.001)

    async def wait_dropped(self, at_least: int, what: str) -> None:
        await eventually(lambda: self.dropped() >= at_least, what=what)

    async def ask_keyframe_as_subscriber(self) -> None:
        """The guest reports picture loss, as a browser does on a decode error."""
        transceiver = next(
            t
            for t in self.guest.pc.getTransceivers()
            if t.receiver.track is not None and t.receiver.track.id == "host/video"
        )
        subscription = self.room.members["guest"].subscriptions["host/video"]
        await transceiver.receiver._send_rtcp_pli(subscription.downtrack.ssrc)


@pytest.fixture
async def media(sfu: SFU, peers: PeerFactory) -> AsyncIterator[Media]:
    room = sfu.create_room("live")
    host = await peers("host", code=1).join(room, "host")
    guest = await peers("guest", code=2).join(room)
    track = await guest.wait_video_from(host)
    await host.wait_video_from(guest)
    publisher = room.members["host"]
    transport = host.pc.getTransceivers()[0].sender.transport
    media = Media(room, host, guest, track, publisher, transport)
    media.assert_intact()
    yield media


@contextlib.contextmanager
def rewriting(
    transport: RTCDtlsTransport, rewrite: Callable[[bytes], bytes]
) -> Iterator[None]:
    """Pass every RTP/RTCP packet the host's aiortc sends through ``rewrite``."""
    original = transport._send_rtp

    async def send(data: bytes) -> None:
        await original(rewrite(data))

    transport._send_rtp = send  # type: ignore[method-assign]
    try:
        yield
    finally:
        del transport._send_rtp


def first_video_packets(
    payload_type: int, count: int, change: Callable[[bytes], bytes]
) -> tuple[Callable[[bytes], bytes], list[int]]:
    """A rewrite applying ``change`` to the next ``count`` video packets."""
    done: list[int] = []

    def rewrite(data: bytes) -> bytes:
        if len(done) < count and not is_rtcp(data) and data[1] & 0x7F == payload_type:
            done.append(1)
            return change(data)
        return data

    return rewrite, done


# ---------------------------------------------------------------------------
# RTP


async def test_unknown_payload_types_are_dropped_and_counted(media: Media) -> None:
    before = media.dropped()
    ssrc = fresh_ssrc()
    unknown = [
        pt for pt in (34, 72, 77, 96, 120, 127) if pt not in media.known_payload_types()
    ]
    await media.inject(
        [rtp(UNKNOWN_PT, i, ssrc, os.urandom(100)) for i in range(200)]
        + [rtp(pt, i, fresh_ssrc(), b"x") for i, pt in enumerate(unknown)]
    )
    await media.wait_dropped(
        before + 200 + len(unknown), "the unknown payload types counted"
    )
    # the publisher's own packets with an unknown payload type: counted, and
    # the gap they leave is repaired (NACK, retransmission)
    vp8 = media.payload_type("vp8")
    rewrite, done = first_video_packets(
        vp8, 20, lambda d: d[:1] + bytes([(d[1] & 0x80) | UNKNOWN_PT]) + d[2:]
    )
    with rewriting(media.transport, rewrite):
        await eventually(lambda: len(done) == 20, what="20 rewritten packets")
    await media.wait_dropped(
        before + 220 + len(unknown), "the rewritten packets counted"
    )
    await media.keeps_decoding()
    media.assert_intact()


async def test_invalid_padding_is_a_counted_parse_error(media: Media) -> None:
    tap = media.publisher.transport.tap
    assert tap is not None
    before = tap.parse_errors
    vp8, ssrc = media.payload_type("vp8"), fresh_ssrc()
    packets = [
        rtp(vp8, i, ssrc, os.urandom(20) + bytes([pad]), padding=True)
        for i, pad in enumerate([0, 22, 200, 255] * 25)  # 0, or more than there is
    ]
    await media.inject(packets)
    await eventually(lambda: tap.parse_errors >= before + 100, what="parse errors")
    await media.keeps_decoding()
    media.assert_intact()


async def test_malformed_header_extension_elements_are_counted(media: Media) -> None:
    tap = media.publisher.transport.tap
    assert tap is not None
    before = tap.parse_errors
    ssrc = fresh_ssrc()
    extensions = [
        one_byte_extensions(b"\x1f" + b"m" * 3),  # says 16 bytes, has 3
        one_byte_extensions(b"\xe5" + b"z" * 2),  # says 6 bytes, has 3
        b"\x10\x00\x00\x01" + b"\x05\x09ab",  # two-byte: says 9 bytes, has 2
        b"\x10\x00\x00\x01" + b"\x00\x00\x00\x07",  # two-byte: element cut short
    ]
    packets = [
        rtp(UNKNOWN_PT, i, ssrc, b"payload", extension=extension)
        for i, extension in enumerate(extensions * 10)
    ]
    await media.inject(packets)
    await eventually(lambda: tap.parse_errors >= before + 40, what="parse errors")
    # well-formed blocks of unknown profiles and ids parse; then dropped as
    # unrouted (unknown payload type)
    before_total = media.dropped()
    odd = [
        b"\x12\x34\x00\x01" + os.urandom(4),  # unknown profile
        one_byte_extensions(b"\xf0\xa0a\xd1bc"),  # id 15, id 10 and 13: unknown
        b"\x10\x00\x00\x00",  # empty two-byte block
    ]
    await media.inject(
        [rtp(UNKNOWN_PT, 100 + i, ssrc, b"p", extension=e) for i, e in enumerate(odd)]
    )
    await media.wait_dropped(before_total + 3, "the odd extensions counted")
    await media.keeps_decoding()
    media.assert_intact()


@pytest.mark.parametrize(
    ("uri", "length"), [(ABS_SEND_TIME, 1), (ABS_SEND_TIME, 4), (AUDIO_LEVEL, 2)]
)
async def test_a_known_header_extension_of_the_wrong_length_is_a_parse_error(
    media: Media, uri: str, length: int
) -> None:
    forwarder = next(
        f for f in media.publisher.publications.values() if uri in f.header_extensions
    )
    ext_id = forwarder.header_extensions[uri]
    element = bytes([(ext_id << 4) | (length - 1)]) + os.urandom(length)
    before = media.dropped()
    packet = rtp(
        UNKNOWN_PT, 1, fresh_ssrc(), b"p", extension=one_byte_extensions(element)
    )
    await media.inject([packet])
    await eventually(
        lambda: media.dropped() > before or media.publisher.closed,
        10,
        what="the packet counted (or the publisher gone)",
    )
    assert not media.publisher.closed, "one malformed packet disconnected the host"
    await media.keeps_decoding()
    media.assert_intact()


async def test_packets_on_an_unknown_ssrc_are_dropped_and_counted(
    media: Media,
) -> None:
    real_ssrc = media.video.media_ssrc
    before = media.dropped()
    vp8, ssrc = media.payload_type("vp8"), fresh_ssrc()
    # VP8 payloads that look like the start of a keyframe, then garbage
    payloads = [b"\x10\x00\x00" + os.urandom(60), bytes(60)] * 25
    await media.inject(
        [rtp(vp8, 1000 + i, ssrc, p, timestamp=i) for i, p in enumerate(payloads)]
    )
    await eventually(
        lambda: media.dropped() >= before + 50 or media.video.media_ssrc != real_ssrc,
        10,
        what="the packets counted (or taken for the track)",
    )
    assert media.video.media_ssrc == real_ssrc
    await media.wait_dropped(before + 50, "the packets on the unknown SSRC counted")
    await media.keeps_decoding()
    media.assert_intact()


async def test_garbage_payloads_in_the_real_stream_do_not_break_forwarding(
    media: Media,
) -> None:
    """The SFU cannot tell garbage from video; it forwards it, keeps going, and
    the subscriber recovers with a keyframe it asks for."""
    vp8 = media.payload_type("vp8")
    received = media.video.stats.packets_received

    def garble(data: bytes) -> bytes:
        packet = RtpPacket.parse(data)
        return data[: len(data) - len(packet.payload)] + os.urandom(len(packet.payload))

    rewrite, done = first_video_packets(vp8, 30, garble)
    with rewriting(media.transport, rewrite):
        await eventually(lambda: len(done) == 30, what="30 garbled packets")
    await eventually(lambda: media.video.stats.packets_received >= received + 30)
    await media.ask_keyframe_as_subscriber()
    await media.keeps_decoding()
    tap = media.publisher.transport.tap
    assert tap is not None and tap.sink_errors == 0
    assert all(d.stats.errors == 0 for d in media.video.downtracks)
    media.assert_intact()


async def test_unencrypted_garbage_and_truncated_headers_are_ignored(
    media: Media,
) -> None:
    """What libsrtp would not encrypt reaches the server in the clear, where SRTP
    authentication fails and the datagram is discarded."""
    ice = media.transport.transport
    datagrams = [
        b"\x80",
        b"\x80\x60\x00\x01",
        b"\x80" + os.urandom(10),  # an RTP header cut short
        b"\x8f\x60" + os.urandom(14),  # 15 CSRCs announced, none there
        b"\x90\x60" + os.urandom(10) + b"\xbe\xde\xff\xff",  # extension past the end
        b"\x80\xc8\x00\x06" + os.urandom(4),  # RTCP sender report cut short
        b"\x17\xfe\xfd" + os.urandom(40),  # a DTLS record of garbage
        b"\x15\xfe\xfd" + bytes(8) + b"\x00\x02\x02\x00",  # an unprotected alert
        bytes(range(256)),
        b"\xff" * 50,
        b"\x00\x01\x00\x00" + os.urandom(16),  # a STUN header of garbage
    ] + [os.urandom(random.randrange(1, 300)) for _ in range(100)]
    for data in datagrams:
        await ice._send(data)
        await media.server_read_everything()  # none lost in the socket buffer
    await media.keeps_decoding()
    await media.host.wait_video_from(media.guest, frames=30)
    media.assert_intact()
    # what looked like SRTP and failed authentication shows in the stats
    looks_like_srtp = [d for d in datagrams[:5] if len(d) >= 12]
    assert media.publisher.stats().malformed_packets >= len(looks_like_srtp) == 2


async def test_a_flood_of_bad_packets_is_counted_and_survived(media: Media) -> None:
    """5,000 bad packets back to back (the socket buffers drop most; what gets
    through is counted), then 5,000 paced by the server's reading (all
    counted); the real stream carries on."""
    before = media.dropped()
    vp8, ssrc = media.payload_type("vp8"), fresh_ssrc()
    kinds = [
        lambda i: rtp(UNKNOWN_PT, i, ssrc, os.urandom(random.randrange(0, 1000))),
        lambda i: rtp(vp8, i, ssrc, os.urandom(50) + b"\x00", padding=True),
        lambda i: rtp(
            UNKNOWN_PT, i, ssrc, b"p", extension=one_byte_extensions(b"\x1fabc")
        ),
    ]
    await media.inject([kinds[i % 3](i) for i in range(5000)], pace=False)
    await media.wait_dropped(before + 1, "the flood counted")
    await asyncio.sleep(0.5)
    burst = media.dropped() - before
    assert 0 < burst <= 5000
    # a flood paced by the server's reading: no packet is lost in the socket
    # buffer, so every one is counted
    before = media.dropped()
    await media.inject([kinds[i % 3](i) for i in range(5000, 10_000)])
    await media.wait_dropped(before + 5000, "the paced flood counted")
    await media.keeps_decoding()
    media.assert_intact()


# ---------------------------------------------------------------------------
# RTCP


async def test_malformed_and_hostile_rtcp_does_not_break_anything(
    media: Media,
) -> None:
    host_side = media.publisher
    own_ssrc = media.video.media_ssrc
    assert own_ssrc is not None
    # the SSRCs the host's client receives the guest's tracks on
    incoming = [s.downtrack.ssrc for s in host_side.subscriptions.values()]
    ssrc = struct.pack("!L", fresh_ssrc())
    packets = [
        rtcp(200, 0, struct.pack("!L", own_ssrc) + os.urandom(20), words=6),  # SR short
        rtcp(200, 3, struct.pack("!L", own_ssrc) + os.urandom(24)),  # SR, 3 reports?
        rtcp(201, 1, ssrc + os.urandom(40)),  # RR with garbage after the report
        rtcp(201, 31, ssrc),  # 31 reports announced, none there
        rtcp(202, 3, os.urandom(8)),  # SDES cut short
        rtcp(202, 1, ssrc + b"\x01\xff" + b"x" * 2),  # SDES item longer than it is
        rtcp(203, 15, ssrc),  # BYE for 15 sources, one given
        rtcp(205, 1, ssrc + ssrc + b"\x00\x01\x00"),  # NACK with an odd length
        rtcp(206, 1, ssrc),  # PLI without a media SSRC
        rtcp(206, 15, ssrc + bytes(4) + b"REMX1234"),  # not REMB
        rtcp(204, 0, ssrc + b"name" + os.urandom(12)),  # APP: not parsed
        rtcp(207, 0, os.urandom(16)),  # XR: not parsed
        bytes([0xA0, 201, 0, 1]) + ssrc[:3] + b"\x00",  # padding length 0
        rtcp(201, 0, ssrc) + os.urandom(13),  # a compound packet ending in garbage
        rtcp(201, 0, ssrc, words=40),  # longer than the packet
    ]
    for target in incoming:
        media_ssrc = struct.pack("!L", target)
        lost = b"".join(
            struct.pack("!HH", random.getrandbits(16), 0xFFFF) for _ in range(50)
        )
        report = media_ssrc + os.urandom(20)
        packets += [
            rtcp(205, 1, ssrc + media_ssrc + lost),  # NACKs for random packets
            rtcp(206, 1, ssrc + media_ssrc),  # PLI
            rtcp(206, 4, ssrc + media_ssrc + os.urandom(8)),  # FIR
            rtcp(201, 1, ssrc + report),  # RR with random statistics
            rtcp(206, 15, ssrc + bytes(4) + b"REMB\x01\xff\xff\xff" + media_ssrc),
        ]
    packets += [
        rtcp(200, 0, struct.pack("!L", own_ssrc) + os.urandom(20)),  # random clock
        rtcp(203, 1, struct.pack("!L", own_ssrc)),  # BYE for its own stream
    ]
    for data in packets * 5:
        await media.inject([data])
    await media.keeps_decoding()
    await media.host.wait_video_from(media.guest, frames=30)
    media.assert_intact()


async def test_a_remb_with_missing_ssrcs_is_ignored(media: Media) -> None:
    tap = media.publisher.transport.tap
    assert tap is not None
    before = tap.rtcp_errors
    remb = b"REMB" + bytes([5, 0x10, 0, 0])  # five SSRCs announced, none there
    await media.inject([rtcp(206, 15, struct.pack("!L", 1) + bytes(4) + remb)])
    await eventually(
        lambda: tap.rtcp_errors > before or media.publisher.closed,
        10,
        what="the REMB counted (or the host gone)",
    )
    assert not media.publisher.closed, "one RTCP packet disconnected the host"
    await media.keeps_decoding()
    media.assert_intact()


# ---------------------------------------------------------------------------
# the forwarder alone, with arbitrary packets (no network)

EXTENSION_IDS = {"urn:ietf:params:rtp-hdrext:sdes:mid": 1, AUDIO_LEVEL: 2}
EXTENSION_IDS[ABS_SEND_TIME] = 3
VP8 = CodecInfo(96, "video/VP8", 90000)
RTX = CodecInfo(97, "video/rtx", 90000, parameters={"apt": 96})
H264 = CodecInfo(98, "video/H264", 90000, parameters={"packetization-mode": "1"})


class Recorder:
    def __init__(self) -> None:
        self.rtp: list[bytes] = []
        self.rtcp: list[bytes] = []

    def send_rtp(self, data: bytes | bytearray) -> bool:
        self.rtp.append(bytes(data))
        return True

    def send_rtcp(self, data: bytes) -> bool:
        self.rtcp.append(data)
        return True


def extensions_map() -> HeaderExtensionsMap:
    extensions = HeaderExtensionsMap()
    extensions.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(id=i, uri=uri)
                for uri, i in EXTENSION_IDS.items()
            ]
        )
    )
    return extensions


@st.composite
def raw_rtp(draw: st.DrawFn) -> bytes:
    """RTP-ish bytes: mostly well-formed headers around arbitrary content."""
    flags = draw(st.integers(0, 0x3F))  # padding, extension, CSRC count
    marker_pt = draw(
        st.sampled_from([96, 97, 98, 0x80 | 96, 0x80 | 97]) | st.integers(0, 255)
    )
    header = bytes([0x80 | flags, marker_pt]) + struct.pack(
        "!HII",
        draw(st.integers(0, 0xFFFF) | st.sampled_from([0, 1, 0xFFFF, 0x8000])),
        draw(st.integers(0, 0xFFFFFFFF)),
        draw(st.sampled_from([1, 2, 3]) | st.integers(0, 0xFFFFFFFF)),
    )
    header += draw(st.binary(min_size=0, max_size=4 * (flags & 0x0F) + 2))
    if flags & 0x10:
        profile = draw(
            st.sampled_from([b"\xbe\xde", b"\x10\x00", b"\x10\x0f"])
            | st.binary(min_size=2, max_size=2)
        )
        elements = draw(st.binary(max_size=24))
        words = draw(st.integers(0, 8) | st.just(len(elements) // 4))
        header += profile + struct.pack("!H", words) + elements
    payload = draw(
        st.binary(max_size=64)
        | st.sampled_from([b"\x10\x00\x9d\x01\x2a", b"\x90\xe0\x80\x01", b"\x10\x01"])
    )
    return header + payload


@settings(
    max_examples=300,
    deadline=None,
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    packets=st.lists(raw_rtp(), min_size=1, max_size=40), nacks=st.binary(max_size=80)
)
async def test_the_forwarder_never_raises_on_any_packet_aiortc_parses(
    packets: list[bytes], nacks: bytes
) -> None:
    """Every packet the tap hands over (it parsed) is forwarded or dropped;
    nothing raises, and what a subscriber gets is a header-rewritten copy."""
    upstream, downstream = Recorder(), Recorder()
    forwarder = Forwarder(
        track_id="p/video",
        kind="video",
        publisher_id="p",
        upstream=upstream,
        rtcp_ssrc=9,
    )
    forwarder.set_codecs([VP8, RTX, H264], EXTENSION_IDS)
    downtrack = DownTrack(forwarder, downstream, ssrc=0xABCD, subscriber_id="s")
    forwarder.add_downtrack(downtrack)
    downtrack.configure({96: 100, 98: 102}, [0, 5, 0, 7] + [0] * 252, 90000)
    extensions = extensions_map()
    sizes = set()
    handed = 0
    try:
        for arrival, data in enumerate(packets):
            try:
                packet = RtpPacket.parse(data, extensions)
            except Exception:  # the tap's business, not the forwarder's
                continue
            handed += 1
            sizes.add(len(data) - (2 if packet.payload_type == 97 else 0))
            forwarder.on_rtp(packet, data, arrival * 20, forwarder.clock())
        # the subscriber NACKs arbitrary packets; its reports say anything
        nack = struct.pack("!LL", 1, 0xABCD) + nacks[: len(nacks) // 4 * 4]
        for parsed in RtcpPacket.parse(rtcp(205, 1, nack)):
            await downtrack.on_rtcp(parsed, forwarder.clock())
        forwarder.receiver_report(forwarder.clock())
        downtrack.sender_report("cname", forwarder.clock())
    finally:
        forwarder.close()
        downtrack.close()
    assert forwarder.stats.packets_received == handed
    assert downtrack.stats.errors == 0
    for data in downstream.rtp:
        packet = RtpPacket.parse(data)
        assert packet.ssrc == 0xABCD and packet.payload_type in (100, 102)
        assert len(data) in sizes
