"""In-process micro-benchmark of pysfu's forwarding hot path.

One publisher link and up to 32 subscriber links are real aiortc peer
connections over 127.0.0.1 (ICE, DTLS, SRTP), wired as ``Participant`` wires
them: the SFU side of every link is a ``PeerTransport``; the publisher's tap
feeds a real ``Forwarder``, and each subscriber's ``Subscriptions`` gives it a
``DownTrack`` (configured from the negotiated parameters) writing through the
transport's ``RtpOutput``. Pre-encrypted VP8-shaped RTP packets are handed
to the SFU's UDP protocol (``datagram_received``), one per event-loop
iteration, as the kernel would deliver them, so everything from aioice's
datagram handler to the subscribers' ``sendto`` runs as in a server. The
subscribers' sockets are paused while a batch is timed and drained (and
counted) afterwards.

CPU time is ``time.process_time()`` over a batch of packets (the process's
user + system time, so the kernel's loopback delivery of the sends counts too),
median of several runs. Reported per subscriber count N:

- ``µs/in``: CPU per incoming packet (all of its N copies included);
- ``µs/fwd``: the same divided by N (CPU per forwarded packet);
- ``marginal``: extra CPU per extra forwarded packet, the slope between
  successive subscriber counts.

``loop`` is the cost of an empty event-loop iteration (the injector alone);
it is included in ``µs/in`` because a real datagram costs one iteration too.

    python -m benchmarks.hotpath --subscribers 0,1,4,16,32 --packets 400 --runs 5

``--compare-estimator`` also times every batch with aiortc's REMB estimator
(with pysfu's rate counter, as pysfu ran it until 2026-12-07) in place of
pysfu's, interleaved with the plain batches in the same process (the order
alternating from run to run), and adds ``µs/in aiortc est.``.

``--record DIR`` also times every batch with the track being recorded
(:mod:`pysfu.recording`, files in DIR), interleaved with the plain batches,
and adds CPU per incoming packet while recording raw (``µs/in rec``), while
muxing live into WebM (``µs/in live``, :class:`pysfu.recording.LiveMuxer`)
and with nothing recorded (``(no rec)``), the writer thread's time included
(``process_time`` counts every thread; each of these batches also waits for
the writer to finish with it, inside its CPU window).

Run it inside a loopback-only network namespace (``unshare --net`` with ``lo``
up) or anywhere 127.0.0.1 works; it raises the subscribers' receive buffers
with ``SO_RCVBUFFORCE`` when root, so a paused batch is not dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import socket
import statistics
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpTransceiver
from aiortc.rate import RemoteBitrateEstimator

import pysfu._aiortc
from pysfu import IceConfig, SFUConfig
from pysfu._aiortc import (
    RtpTap,
    announced_ssrcs,
    configure_ice,
    datagram_endpoint,
    dtls_transport_of,
    negotiated_header_extensions,
    protect_rtp,
    rtcp_ssrc_of,
    sender_ssrc_of,
    take_over_receiver,
    take_over_sender,
)
from pysfu._aiortc.bitrate import WindowedRate
from pysfu.forwarding import CodecInfo, DownTrack, Forwarder
from pysfu.peer import PeerTransport, Subscriptions
from pysfu.recording import LiveMuxer, RecordingWriter, TrackRecorder
from pysfu.rtp.estimator import RembEstimator

ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
PAYLOAD_SIZE = 1150  # + headers: ~1.2 kB, a typical full video packet
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # Linux, root only
#: Awaited inside a batch's CPU window, after its last packet.
Settle = Callable[[], Awaitable[None]]


async def _noop_rtcp(_packet: Any, _now: float) -> None:
    return None


#: The SFU side's settings: loopback only, everything else as by default.
CONFIG = SFUConfig(ice=IceConfig(host_addresses=("127.0.0.1",)))


@dataclass
class Link:
    """One connected pair: the SFU's side and the client's side."""

    sfu: PeerTransport
    client: RTCPeerConnection
    sfu_transceiver: RTCRtpTransceiver
    client_transceiver: RTCRtpTransceiver

    async def close(self) -> None:
        await self.client.close()
        await self.sfu.close()


async def connect(
    sfu: PeerTransport, sfu_t: RTCRtpTransceiver, on_client_rtp: Callable[..., None]
) -> Link:
    """Connect the SFU's transport, offering ``sfu_t`` (already wired), to a
    client-side peer connection over 127.0.0.1.

    The client runs no aiortc encoders, decoders or RTP tasks either: its
    sender or receiver is taken over with pysfu's seam."""
    sfu_receives = sfu_t.direction == "recvonly"
    client = RTCPeerConnection()
    sfu.start()
    pc = sfu.pc
    await pc.setLocalDescription(await pc.createOffer())
    await client.setRemoteDescription(pc.localDescription)
    client_t = client.getTransceivers()[0]
    if sfu_receives:
        client_t.direction = "sendonly"
        take_over_sender(client_t.sender)
    else:
        take_over_receiver(client_t.receiver, lambda _p: None, _noop_rtcp)
        tap = RtpTap(dtls_transport_of(client_t))
        tap.attach(client_t.receiver, on_client_rtp)
    configure_ice(client, host_addresses=["127.0.0.1"])
    await client.setLocalDescription(await client.createAnswer())
    await pc.setRemoteDescription(client.localDescription)
    for _ in range(400):
        if pc.connectionState == "connected" == client.connectionState:
            break
        await asyncio.sleep(0.05)
    else:
        raise RuntimeError("link did not connect")
    return Link(sfu, client, sfu_t, client_t)


class Vp8Stream:
    """VP8-shaped RTP packets of one publisher, 4 per frame.

    Each :meth:`batch` is whole frames and starts with a keyframe, so that
    subscribers left out of a batch (a jump of more than 3000 sequence
    numbers makes a downtrack wait for a keyframe) resume on the next one.
    """

    def __init__(
        self,
        ssrc: int,
        payload_type: int,
        ext_ids: dict[str, int],
        first_seq: int = 1000,
    ) -> None:
        self.ssrc = ssrc
        self.payload_type = payload_type
        mid_id, self.ast_id = ext_ids[MID], ext_ids[ABS_SEND_TIME]
        # one-byte extensions (RFC 8285): mid "0" and abs-send-time, padded to 4
        elements = bytes([mid_id << 4 | 0, ord("0"), self.ast_id << 4 | 2, 0, 0, 0])
        self.elements = elements + bytes(-len(elements) % 4)
        self.sequence = first_seq
        self.frame = 0

    def batch(self, count: int) -> list[bytes]:
        """At least ``count`` packets: whole frames, the first a keyframe."""
        packets: list[bytes] = []
        while len(packets) < count:
            packets += self._frame(keyframe=not packets)
        return packets

    def _frame(self, keyframe: bool) -> list[bytes]:
        frame = self.frame
        self.frame += 1
        packets = []
        for part in range(4):
            header = struct.pack(
                "!BBHII",
                0x90,
                (0x80 if part == 3 else 0) | self.payload_type,  # marker: last
                self.sequence & 0xFFFF,
                (frame * 3000) & 0xFFFFFFFF,
                self.ssrc,
            )
            self.sequence += 1
            ext = bytearray(
                struct.pack("!HH", 0xBEDE, len(self.elements) // 4) + self.elements
            )
            ext[7:10] = ((frame * 4000) & 0xFFFFFF).to_bytes(3, "big")  # abs-send-time
            descriptor = bytes(
                [0x90 if part == 0 else 0x80, 0x80, 0x80 | (frame >> 8) & 0x7F]
            )
            descriptor += bytes([frame & 0xFF])
            # VP8 payload header: P bit 0 marks a keyframe (first partition)
            if keyframe and part == 0:
                # a keyframe's header: start code and a picture size (what a
                # live recording's muxer reads), the rest zeros
                vp8 = b"\x00\x00\x00\x9d\x01\x2a" + struct.pack("<HH", 640, 360)
            else:
                vp8 = b"\x01"
            packets.append(
                header + bytes(ext) + descriptor + vp8 + bytes(PAYLOAD_SIZE - len(vp8))
            )
        return packets


class SwitchedEstimator:
    """The forwarder's REMB estimator for ``--compare-estimator``: pysfu's or
    aiortc's, switched between batches. ``add`` is the chosen estimator's
    own bound method, so the forwarder's call costs what it costs without
    the switch."""

    def __init__(self) -> None:
        stock = RemoteBitrateEstimator()
        stock.incoming_bitrate = WindowedRate(1000, 8000)  # type: ignore[assignment]
        self.arms: dict[str, Any] = {"pysfu": RembEstimator(), "aiortc": stock}
        self.add = self.arms["pysfu"].add

    def use(self, name: str) -> None:
        self.add = self.arms[name].add


@dataclass
class Row:
    subscribers: int
    us_per_incoming: float
    us_per_forwarded: float | None
    marginal_us: float | None
    delivered_percent: float
    us_per_incoming_recording: float | None = None
    us_per_incoming_live: float | None = None
    us_per_incoming_settled: float | None = None
    us_per_incoming_aiortc_estimator: float | None = None


class Bench:
    def __init__(
        self, max_subscribers: int, direct: bool = True, switched: bool = False
    ) -> None:
        self.max_subscribers = max_subscribers
        self.direct = direct
        #: the forwarder's estimator when comparing estimators
        self.estimator: SwitchedEstimator | None = (
            SwitchedEstimator() if switched else None
        )
        self.received = 0
        self.links: list[Link] = []

    def _count(self, _packet: Any, _data: bytes, _arrival: int, _now: float) -> None:
        self.received += 1

    async def setup(self) -> None:
        # the publisher's link, as Participant._on_track wires a published track
        sfu = PeerTransport(CONFIG, direct_receive=self.direct)
        sfu_t = sfu.add_transceiver("video", "recvonly")
        factory = pysfu._aiortc.remote_bitrate_estimator
        if self.estimator is not None:  # the forwarder gets the switch
            switch = self.estimator
            pysfu._aiortc.remote_bitrate_estimator = lambda: switch  # type: ignore[assignment,return-value]
        try:
            forwarder = self.forwarder = Forwarder(
                track_id="pub/video",
                kind="video",
                publisher_id="pub",
                upstream=sfu.start(),
                rtcp_ssrc=rtcp_ssrc_of(sfu_t),
                config=CONFIG.forwarding,
            )
        finally:
            pysfu._aiortc.remote_bitrate_estimator = factory

        def on_parameters(parameters: Any) -> None:
            forwarder.set_codecs(
                [CodecInfo.from_aiortc(c) for c in parameters.codecs],
                {e.uri: e.id for e in parameters.headerExtensions},
                ssrcs=announced_ssrcs(parameters),
            )

        sfu.attach_receiver(
            sfu_t.receiver, on_parameters, forwarder.on_rtcp, forwarder.on_rtp
        )
        self.publisher = await connect(sfu, sfu_t, self._count)
        self.links.append(self.publisher)
        sfu_dtls = dtls_transport_of(sfu_t)
        self.pub_dtls = dtls_transport_of(self.publisher.client_transceiver)
        self.ext_ids = {e.uri: e.id for e in negotiated_header_extensions(sfu_t)}
        self.ssrc = sender_ssrc_of(self.publisher.client_transceiver.sender)
        self.vp8 = next(c for c in forwarder.codecs.values() if c.name == "vp8")
        assert sfu.tap is not None
        self.tap = sfu.tap
        endpoint = datagram_endpoint(sfu_dtls)
        assert endpoint is not None
        _, self.sfu_protocol, self.pub_addr = endpoint
        self.client_sockets: list[asyncio.DatagramTransport] = []
        self.downtracks: list[DownTrack] = []
        for i in range(self.max_subscribers):
            # a subscriber's link, as an offering session subscribes: the
            # downtrack is configured from the negotiated parameters
            transport = PeerTransport(CONFIG)
            subscriptions = Subscriptions(
                transport, CONFIG, f"sub{i}", retire=lambda _d: None
            )
            transceiver = subscriptions.take_transceiver("video")
            subscription = subscriptions.attach(forwarder, transceiver)
            link = await connect(transport, transceiver, self._count)
            self.links.append(link)
            self.downtracks.append(subscription.downtrack)
            client_end = datagram_endpoint(dtls_transport_of(link.client_transceiver))
            assert client_end is not None
            udp = client_end[0]
            sock = udp.get_extra_info("socket")
            try:  # hold a whole paused batch (we are root in the netns)
                sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, 16 << 20)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
            self.client_sockets.append(udp)
        self.stream = Vp8Stream(self.ssrc, self.vp8.payload_type, self.ext_ids)
        # the keyframe that starts every downtrack
        self.forwarder.downtracks = list(self.downtracks)
        await self.run_batch(8, inject=True)
        await self.drain()

    async def run_batch(
        self, count: int, inject: bool, settle: Settle | None = None
    ) -> tuple[float, int]:
        """CPU seconds to feed about ``count`` datagrams (whole frames), one
        per loop iteration, and how many; ``inject=False``: the empty loop,
        which takes no packets from the stream (a gap would make the
        forwarder send NACKs)."""
        loop = asyncio.get_running_loop()
        if inject:
            datagrams = [
                protect_rtp(self.pub_dtls, packet)
                for packet in self.stream.batch(count)
            ]
        else:
            datagrams = [b""] * count
        count = len(datagrams)
        stats = self.forwarder.stats
        target = stats.packets_received + (count if inject else 0)
        receive = self.sfu_protocol.datagram_received  # type: ignore[attr-defined]
        addr = self.pub_addr
        done = loop.create_future()
        checks = itertools.count()

        def check() -> None:
            if stats.packets_received >= target:
                done.set_result(None)
            elif next(checks) > 10_000:
                done.set_exception(RuntimeError("the forwarder did not get them"))
            else:
                loop.call_soon(check)

        def step(i: int) -> None:
            if inject:
                receive(datagrams[i], addr)
            if i + 1 < count:
                loop.call_soon(step, i + 1)
            else:
                loop.call_soon(check)

        start = time.process_time()
        loop.call_soon(step, 0)
        await done
        if settle is not None:  # e.g. the recording thread's share
            await settle()
        return time.process_time() - start, count

    async def drain(self) -> None:
        for udp in self.client_sockets:
            udp.resume_reading()
        expected = sum(d.stats.packets_sent for d in self.downtracks)
        for _ in range(200):
            if self.received >= expected:
                break
            await asyncio.sleep(0.02)
        for udp in self.client_sockets:
            udp.pause_reading()

    async def measure(
        self, subscribers: int, count: int, settle: Settle | None = None
    ) -> tuple[float, float]:
        self.forwarder.downtracks = self.downtracks[:subscribers]
        # anything sent before (e.g. --record's warm-up batches, to every
        # subscriber) is read now, not counted as this batch's delivery
        await self.drain()
        sent_before = sum(d.stats.packets_sent for d in self.downtracks)
        received_before = self.received
        cpu, count = await self.run_batch(count, inject=True, settle=settle)
        await self.drain()
        sent = sum(d.stats.packets_sent for d in self.downtracks) - sent_before
        delivered = 100.0
        if subscribers:
            delivered = (
                100.0 * (self.received - received_before) / (count * subscribers)
            )
            assert sent == count * subscribers, (sent, count, subscribers)
        return cpu / count * 1e6, delivered

    async def close(self) -> None:
        for link in self.links:
            await link.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    counts = sorted({int(n) for n in args.subscribers.split(",")})
    bench = Bench(
        max(counts), direct=not args.queued_receive, switched=args.compare_estimator
    )
    await bench.setup()
    writer = RecordingWriter()
    recorder: TrackRecorder | None = None
    live: TrackRecorder | None = None
    settle: Settle | None = None
    if args.record is not None:
        recorder = TrackRecorder(
            bench.forwarder, args.record / "hotpath.pysfurec", writer
        )
        # no sender reports here: the muxer starts on arrival times. It sees
        # a jump in sequence numbers from one of its batches to the next (the
        # other variants' packets): with no reorder window it gives the gap
        # up at once, and each batch's muxing falls in its own CPU window
        muxer = LiveMuxer(
            args.record / "hotpath.webm", start_timeout=0.2, reorder_window=0.0
        )
        live = TrackRecorder(bench.forwarder, Path(), writer, muxer=muxer)
        await bench.run_batch(args.packets, inject=True)  # header and first frames
        await asyncio.sleep(0.3)
        await bench.run_batch(args.packets, inject=True)
        await asyncio.sleep(0.1)
        await bench.drain()  # the warm-up's packets reached every subscriber
        assert muxer.aligned_by is not None, "the live muxer did not start"
        bench.forwarder.recorders.clear()  # attached only for the timed batches

        async def settle_writer() -> None:
            # the writer thread's work for the batch counts (process_time
            # covers every thread): wait until it has taken everything, and
            # one drain interval more; every variant waits alike
            while writer.pending_bytes:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.06)

        settle = settle_writer
    recorded: dict[int, list[float]] = {n: [] for n in counts}
    muxed: dict[int, list[float]] = {n: [] for n in counts}
    settled: dict[int, list[float]] = {n: [] for n in counts}
    stock_estimator: dict[int, list[float]] = {n: [] for n in counts}
    try:
        loop_costs: list[float] = []
        samples: dict[int, list[float]] = {n: [] for n in counts}
        delivered: dict[int, list[float]] = {n: [] for n in counts}
        for run_index in range(args.runs):
            empty_loop, _ = await bench.run_batch(args.packets, inject=False)
            loop_costs.append(empty_loop / args.packets * 1e6)
            for n in counts:
                switch = bench.estimator
                if switch is not None:
                    # aiortc's first in every other run: no order bias
                    arms = ["aiortc", "pysfu"][:: 1 if run_index % 2 else -1]
                    for arm in arms:
                        switch.use(arm)
                        us, percent = await bench.measure(n, args.packets)
                        if arm == "aiortc":
                            stock_estimator[n].append(us)
                        else:
                            samples[n].append(us)
                            delivered[n].append(percent)
                    switch.use("pysfu")
                    continue
                us, percent = await bench.measure(n, args.packets)
                samples[n].append(us)
                delivered[n].append(percent)
                if recorder is None or live is None:
                    continue
                # same run, each with the writer's share: nothing recorded,
                # the raw recording, live muxing
                us, _ = await bench.measure(n, args.packets, settle)
                settled[n].append(us)
                for attached, into in ((recorder, recorded), (live, muxed)):
                    bench.forwarder.add_recorder(attached)
                    us, _ = await bench.measure(n, args.packets, settle)
                    bench.forwarder.remove_recorder(attached)
                    into[n].append(us)
        rows: list[Row] = []
        previous: tuple[int, float] | None = None
        for n in counts:
            us = statistics.median(samples[n])
            marginal = None
            if previous is not None and n > previous[0]:
                marginal = (us - previous[1]) / (n - previous[0])
            rows.append(
                Row(
                    n,
                    round(us, 2),
                    round(us / n, 2) if n else None,
                    round(marginal, 2) if marginal is not None else None,
                    round(
                        max(delivered[n], key=lambda p: abs(p - 100)), 1
                    ),  # worst run
                    _median(recorded[n]),
                    _median(muxed[n]),
                    _median(settled[n]),
                    _median(stock_estimator[n]),
                )
            )
            previous = (n, us)
        return {
            "direct_receive": bench.direct,
            "loop_us": round(statistics.median(loop_costs), 2),
            "packets": args.packets,
            "runs": args.runs,
            "tap_errors": bench.tap.parse_errors + bench.tap.sink_errors,
            "rows": [asdict(r) for r in rows],
            "recording": None
            if recorder is None
            else {**asdict(recorder.stats()), "path": str(recorder.path)},
            "live": None
            if live is None or live.muxer is None
            else {
                **asdict(live.stats()),
                "path": str(live.path),
                "aligned_by": live.muxer.aligned_by,
            },
        }
    finally:
        for track_recorder in (recorder, live):
            if track_recorder is not None:
                track_recorder.stop()
        await writer.close()
        await bench.close()


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def print_table(result: dict[str, Any]) -> None:
    print(f"empty loop iteration: {result['loop_us']} µs (included below)")
    print(
        f"{'N':>4} {'µs/in':>8} {'µs/fwd':>8} {'marginal':>9} {'delivered%':>11}"
        f" {'µs/in rec':>10} {'µs/in live':>10} {'(no rec)':>9}"
        f" {'µs/in aiortc est.':>17}"
    )
    for r in result["rows"]:
        fwd = "" if r["us_per_forwarded"] is None else f"{r['us_per_forwarded']:.2f}"
        marg = "" if r["marginal_us"] is None else f"{r['marginal_us']:.2f}"
        rec, live, settled, stock = (
            "" if r.get(key) is None else r[key]
            for key in (
                "us_per_incoming_recording",
                "us_per_incoming_live",
                "us_per_incoming_settled",
                "us_per_incoming_aiortc_estimator",
            )
        )
        print(
            f"{r['subscribers']:>4} {r['us_per_incoming']:>8.2f} {fwd:>8} {marg:>9}"
            f" {r['delivered_percent']:>11} {rec:>10} {live:>10} {settled:>9}"
            f" {stock:>17}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", default="0,1,4,16,32")
    parser.add_argument("--packets", type=int, default=400, help="per batch")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--queued-receive",
        action="store_true",
        help="the publisher's SRTP through aiortc's queue and receive task"
        " (RtpTap(direct=False)), for comparison",
    )
    parser.add_argument(
        "--compare-estimator",
        action="store_true",
        help="also time each batch with aiortc's REMB estimator, interleaved",
    )
    parser.add_argument(
        "--record",
        type=Path,
        metavar="DIR",
        help="also time each batch while recording the track to DIR",
    )
    parser.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "hotpath.json"
    )
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    print_table(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"[hotpath] wrote {args.json}")
    if result["tap_errors"]:
        sys.exit(f"the tap dropped {result['tap_errors']} packets")


if __name__ == "__main__":
    main()
