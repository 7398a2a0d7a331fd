"""Property-based fuzzing (hypothesis) of the signalling layer and the join API.

In process: attackers, each alone in a room of its own, are fed generated
client messages with :func:`~pysfu.signalling.deliver_json` while a live room
of the same SFU forwards video. Every input must be answered with exactly one
``error`` carrying a specific code, or with nothing when it is harmless (an
empty candidate ends trickling); the attacker stays in its room, and the live
room keeps forwarding.

Over the network: ``examples/ws_sfu.py`` in a real process gets generated
HTTP requests for its join API (every answer JSON, never a 500), WebSocket
connections for unknown participant ids and generated frames on real
sessions.

Hypothesis runs in a worker thread and hands each example to the test's
event loop (``asyncio.run_coroutine_threadsafe``): the loop, and with it the
live media, keeps running while hypothesis generates and shrinks. The tests
at the end of each part reproduce, one by one, the bugs this fuzzing found.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import pytest
import yarl
from aiortc import RTCPeerConnection, RTCSessionDescription
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pysfu import SFU, LimitsConfig, Participant, Room, SFUConfig
from pysfu._aiortc import configure_ice
from pysfu.signalling import (
    Answer,
    Error,
    MemoryClient,
    MemorySignalling,
    Offer,
    ServerMessage,
    deliver_json,
)
from pysfu.signalling.adapter import MAX_MESSAGE_LENGTH
from pysfu.signalling.messages import MAX_SDP_LENGTH

from ..conftest import LOOPBACK
from ..example_server import HOST_KEY, example_server
from ..helpers import LIVENESS, eventually
from ..peers import Peer, PeerFactory, ReceivedTrack

T = TypeVar("T")

# Hypothesis notices the global random state changing while it generates: the
# event loop thread (aiortc, pysfu's RTCP timers) uses it meanwhile. Harmless.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module"
    ":hypothesis.errors.HypothesisDeprecationWarning"
)

#: Deepest JSON generated: past the interpreter's recursion limit (~1000),
#: well within MAX_MESSAGE_LENGTH.
MAX_NESTING = 20_000
FUZZ_SETTINGS = settings(
    deadline=None,
    database=None,  # nothing written into the repository
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.large_base_example,
    ],
)


def in_loop(
    loop: asyncio.AbstractEventLoop,
) -> Callable[[Coroutine[Any, Any, T]], T]:
    """Run a coroutine on the test's loop from hypothesis's worker thread."""

    def run(coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=120)

    return run


#: The error codes a client's message may get (docs/websocket-protocol.md).
SIGNALLING_CODES = (
    "bad_json",
    "bad_message",
    "unknown_type",
    "too_large",
    "bad_sdp",
    "unexpected_answer",
    "bad_candidate",
)

# ---------------------------------------------------------------------------
# the oracle: what the server must answer, from the documented protocol


@dataclass(frozen=True)
class Input:
    """One client message; ``must_fail``: an answer whose SDP cannot be applied."""

    raw: str | bytes
    must_fail: bool = True


def candidate_parses(text: str) -> bool:
    """Whether ``text`` (after ``candidate:``) has the fields of a candidate line."""
    bits = text.split()
    if len(bits) < 8:
        return False
    try:
        int(bits[1]), int(bits[3]), int(bits[5])
        for i in range(8, len(bits) - 1, 2):
            if bits[i] == "rport":
                int(bits[i + 1])
    except ValueError:
        return False
    return True


def message_type(raw: str | bytes) -> object:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return value.get("type") if isinstance(value, dict) else None


def near_recursion_limit(raw: str | bytes) -> bool:
    """Whether ``raw`` may nest too deep for a parser called deeper in a stack
    (the limit counts frames, so the server may refuse what parses here)."""
    text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    return text.count("[") + text.count("{") > 300


def expected_replies(message: Input, *, awaiting_answer: bool) -> frozenset[str | None]:
    """The error codes the server may answer ``message`` with; None: silence."""
    expected = _expected_replies(message, awaiting_answer=awaiting_answer)
    if near_recursion_limit(message.raw) and "too_large" not in expected:
        return expected | {"bad_json"}
    return expected


def _expected_replies(
    message: Input, *, awaiting_answer: bool
) -> frozenset[str | None]:
    raw = message.raw
    if len(raw) > MAX_MESSAGE_LENGTH:
        return frozenset({"too_large"})
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested too deep
        return frozenset({"bad_json"})
    if not isinstance(value, dict):
        return frozenset({"bad_message"})
    kind = value.get("type")
    if not isinstance(kind, str):
        return frozenset({"bad_message"})
    if kind == "answer":
        sdp = value.get("sdp")
        if not isinstance(sdp, str):
            return frozenset({"bad_message"})
        if len(sdp) > MAX_SDP_LENGTH:
            return frozenset({"bad_sdp", "too_large", "unexpected_answer"})
        if not awaiting_answer:
            return frozenset({"unexpected_answer"})
        return frozenset({"bad_sdp"} if message.must_fail else {"bad_sdp", None})
    if kind == "candidate":
        index = value.get("sdp_mline_index")
        mid = value.get("sdp_mid")
        candidate = value.get("candidate")
        if (
            not isinstance(candidate, str)
            or (mid is not None and not isinstance(mid, str))
            or (
                index is not None
                and (not isinstance(index, int) or isinstance(index, bool))
            )
        ):
            return frozenset({"bad_message"})
        text = candidate.strip()
        if text.startswith("candidate:"):
            text = text[len("candidate:") :]
        if not text:
            return frozenset({None})  # end of candidates
        if candidate_parses(text):
            return frozenset({None, "bad_candidate"})
        return frozenset({"bad_candidate"})
    assert kind != "leave", "leave is not generated"
    return frozenset({"unknown_type"})


# ---------------------------------------------------------------------------
# strategies

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
types = st.sampled_from(
    [
        "offer",
        "joined",
        "error",
        "session",
        "participant-joined",
        "room-closed",
        "Answer",
        "ANSWER",
        " answer",
        "answer ",
        "candidate\x00",
        "Leave",
        "leave ",
        "",
    ]
) | st.text(max_size=20).filter(lambda t: t not in ("answer", "candidate", "leave"))
known_keys = st.sampled_from(["sdp", "candidate", "sdp_mid", "sdp_mline_index"])
one_line = st.text(st.characters(exclude_characters="\r\n"), max_size=40)


def nested(depth: int, leaf: str = "0") -> str:
    return "[" * depth + leaf + "]" * depth


@st.composite
def odd_objects(draw: st.DrawFn) -> str:
    """JSON objects of the right shape with the wrong types, or unknown types."""
    kind = draw(types | json_values | st.sampled_from(["answer", "candidate"]))
    obj: dict[str, Any] = {} if draw(st.booleans()) else {"type": kind}
    for key in draw(st.lists(known_keys | st.text(max_size=6), max_size=4)):
        obj[key] = draw(json_values)
    return json.dumps(obj)


@st.composite
def candidate_lines(draw: st.DrawFn) -> str:
    token = st.text(
        st.characters(exclude_categories=("Zs", "Cc", "Zl", "Zp")),
        min_size=1,
        max_size=10,
    )
    number = st.integers(-10, 2**64).map(str) | st.sampled_from(["0", "+1", "1_0"])
    ip = st.sampled_from(
        ["127.0.0.1", "::1", "0.0.0.0", "192.0.2.1", "255.255.255.255", "fe80::1"]
    )
    fields = [
        draw(token | number),
        draw(number | token),
        draw(st.sampled_from(["udp", "tcp", "UDP"]) | token),
        draw(number | token),
        draw(ip | token),
        draw(number | token),
        draw(st.just("typ") | token),
        draw(st.sampled_from(["host", "srflx", "relay", "prflx"]) | token),
    ]
    fields = fields[: draw(st.integers(0, 8))] if draw(st.booleans()) else fields
    extras = st.sampled_from(["raddr", "rport", "tcptype", "generation", "ufrag"])
    fields += draw(st.lists(extras | number | token, max_size=6))
    separator = draw(st.sampled_from([" ", "  ", "\t", " \u00a0"]))
    prefix = draw(st.sampled_from(["", "candidate:", "candidate: ", "a=candidate:"]))
    return prefix + separator.join(fields)


@st.composite
def candidate_messages(draw: st.DrawFn) -> str:
    candidate = draw(
        candidate_lines()
        | st.sampled_from(["", " ", "candidate:", "candidate: \t", "\r\n"])
        | st.text(max_size=60)
    )
    obj: dict[str, Any] = {"type": "candidate", "candidate": candidate}
    for key, values in (
        ("sdp_mid", st.none() | st.sampled_from(["0", "1", "9"]) | json_values),
        ("sdp_mline_index", st.none() | st.integers(-3, 3) | json_values),
    ):
        if draw(st.booleans()):
            obj[key] = draw(values)
    return json.dumps(obj)


@st.composite
def huge_messages(draw: st.DrawFn, beyond: bool = True) -> str:
    """Messages around (and, with ``beyond``, far over) the size limits."""
    near = st.integers(MAX_SDP_LENGTH - 64, MAX_MESSAGE_LENGTH + 64)
    far = st.integers(MAX_MESSAGE_LENGTH, 4 * MAX_MESSAGE_LENGTH)
    size = draw(near | far if beyond else near)
    shape = draw(st.sampled_from(["answer", "junk", "padded", "candidate", "wide"]))
    if shape == "answer":
        return json.dumps({"type": "answer", "sdp": "v=0\r\n" + "a" * size})
    if shape == "junk":
        return "x" * size
    if shape == "padded":
        return '{"type": "dance"}' + " " * size
    if shape == "candidate":
        return json.dumps({"type": "candidate", "candidate": "1 " * (size // 2)})
    emoji = "\U0001f98a" * (size // 4)  # 4 bytes each in UTF-8
    return json.dumps({"type": "answer", "sdp": emoji}, ensure_ascii=False)


@st.composite
def sdp_answers(draw: st.DrawFn, base: str) -> Input:
    """SDP answers: garbage, and a real answer truncated, cut up or bent."""
    lines = base.split("\r\n")[:-1]
    first_m = next(i for i, line in enumerate(lines) if line.startswith("m="))
    session = lines[:first_m]
    sections: list[list[str]] = []
    for line in lines[first_m:]:
        if line.startswith("m="):
            sections.append([])
        sections[-1].append(line)

    def sdp(parts: list[list[str]]) -> str:
        return "\r\n".join(session + [line for part in parts for line in part]) + "\r\n"

    how = draw(
        st.sampled_from(
            [
                "truncated",
                "garbage",
                "garbage lines",
                "no media",
                "many m-lines",
                "unsupported codecs",
                "ice attributes",
                "line edits",
                "reordered",
                "bare newlines",
            ]
        )
    )
    if how == "truncated":
        return Input(base[: draw(st.integers(0, len(base) - 1))], must_fail=False)
    if how == "garbage":
        return Input(draw(st.text(max_size=300)))
    if how == "garbage lines":
        return Input("\r\n".join(draw(st.lists(one_line, max_size=30))))
    if how == "no media":
        return Input(sdp([]))
    if how == "many m-lines":
        count = draw(st.integers(2, 500))
        keep = [ln for ln in sections[0] if ln.startswith(("a=ice-", "a=finger"))]
        extra = [
            [
                "m=audio 9 UDP/TLS/RTP/SAVPF 0",
                "c=IN IP4 0.0.0.0",
                f"a=mid:{i}",
                "a=rtcp-mux",
                "a=setup:active",
                *keep,
            ]
            for i in range(count)
        ]
        return Input(sdp(extra))
    if how == "unsupported codecs":
        # media sections only: the data channel's section has no codecs
        media = [
            i
            for i, sec in enumerate(sections)
            if sec[0].startswith("m=audio") or sec[0].startswith("m=video")
        ]
        chosen = draw(st.sets(st.sampled_from(media), min_size=1))
        bent = []
        for index, section in enumerate(sections):
            if index in chosen:
                kept = [
                    ln
                    for ln in section[1:]
                    if not ln.startswith(("a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"))
                ]
                m_line = " ".join([*section[0].split(" ")[:3], "120"])
                section = [m_line, "a=rtpmap:120 FOO/90000", *kept]
            bent.append(section)
        return Input(sdp(bent))
    if how == "ice attributes":
        name = draw(st.sampled_from(["ice-ufrag", "ice-pwd"]))
        change = draw(
            st.sampled_from(["absent", "empty", "duplicate", "conflicting", "odd"])
        )
        chosen = draw(st.sets(st.integers(0, len(sections) - 1), min_size=1))
        odd = draw(st.text(st.characters(exclude_characters="\r\n"), max_size=30))
        bent = []
        for index, section in enumerate(sections):
            if index in chosen:
                prefix = f"a={name}:"
                old = [ln for ln in section if ln.startswith(prefix)]
                rest = [ln for ln in section if not ln.startswith(prefix)]
                section = (
                    rest
                    + {
                        "absent": [],
                        "empty": [prefix],
                        "duplicate": old + old,
                        "conflicting": [*old, prefix + "Conflicting0123456789abc"],
                        "odd": [prefix + odd],
                    }[change]
                )
            bent.append(section)
        fails = change in ("absent", "empty")
        return Input(sdp(bent), must_fail=fails or (change == "odd" and not odd))
    if how == "line edits":
        edited = list(lines)
        for _ in range(draw(st.integers(1, 6))):
            if not edited:
                break
            index = draw(st.integers(0, len(edited) - 1))
            action = draw(st.sampled_from(["drop", "duplicate", "replace"]))
            if action == "drop":
                del edited[index]
            elif action == "duplicate":
                edited.insert(index, edited[index])
            else:
                edited[index] = draw(one_line)
        return Input("\r\n".join(edited) + "\r\n", must_fail=False)
    if how == "reordered":
        return Input(sdp(sections[::-1]), must_fail=len(sections) > 1)
    return Input(base.replace("\r\n", "\n"), must_fail=False)


def client_messages(base_answer: str) -> st.SearchStrategy[Input]:
    """Every kind of input, SDP answers weighed most (they reach the most code)."""
    texts = (
        st.text(max_size=200)
        | st.sampled_from(
            ["", " ", "{", "}", "null", "[]", "{}", '"answer"', "\ufeff{}"]
        )
        | json_values.map(json.dumps)
        | odd_objects()
        | st.integers(1, MAX_NESTING).map(nested)
        | st.integers(1, MAX_NESTING // 2).map(lambda n: '{"a":' * n + "1" + "}" * n)
    )
    kinds: dict[str, st.SearchStrategy[Input]] = {
        "text": texts.map(Input),
        "answer": sdp_answers(base_answer).map(
            lambda a: Input(json.dumps({"type": "answer", "sdp": a.raw}), a.must_fail)
        ),
        "candidate": candidate_messages().map(Input),
        "huge": huge_messages().map(Input),
        "bytes": st.binary(max_size=200).map(Input),
        "encoded": st.tuples(
            odd_objects() | candidate_messages(),
            st.sampled_from(["utf-8", "utf-16", "utf-32", "utf-8-sig", "latin-1"]),
        ).map(lambda t: Input(t[0].encode(t[1], errors="replace"))),
    }
    weights = {"text": 3, "answer": 4, "candidate": 2, "huge": 1, "bytes": 1}
    weights["encoded"] = 1
    names = [name for name, weight in weights.items() for _ in range(weight)]
    return st.sampled_from(names).flatmap(kinds.__getitem__)


# ---------------------------------------------------------------------------
# the in-process setup


@dataclass
class Live:
    """A room forwarding the host's video to the guest throughout."""

    room: Room
    host: Peer
    guest: Peer
    track: ReceivedTrack
    members: dict[str, Participant] = field(default_factory=dict)

    def assert_intact(self) -> None:
        assert not self.room.closed
        assert self.room.members == self.members
        for member in self.members.values():
            assert not member.closed and member.pc.connectionState == "connected"
        assert set(self.members["host"].publications) == {"host/audio", "host/video"}

    async def keeps_forwarding(self, frames: int = 10) -> None:
        before = len(self.track.patterns)
        await eventually(
            lambda: len(self.track.patterns) >= before + frames,
            30,
            what="the live room to keep forwarding",
        )


class Attackers:
    """Attackers, each alone in a room of its own.

    ``pending()``: the server's first offer waits for an answer (refused
    answers get ``bad_sdp``); ``answered()``: connected, nothing pending (any
    answer is ``unexpected_answer``). A pending attacker whose answer was
    accepted is replaced by a fresh one.
    """

    def __init__(self, sfu: SFU) -> None:
        self.sfu = sfu
        self.made = 0
        self.clients: dict[str, MemoryClient] = {}
        self.client_pcs: list[RTCPeerConnection] = []
        self._pending: MemoryClient | None = None
        self._answered: MemoryClient | None = None

    async def join(self) -> tuple[MemoryClient, Offer]:
        self.made += 1
        room = self.sfu.create_room(f"attack-{self.made}", max_participants=1)
        client = await MemorySignalling().join(room, f"attacker-{self.made}")
        self.clients[client.participant.id] = client
        offer = await client.receive_type(Offer, 10)
        return client, offer

    async def pending(self) -> MemoryClient:
        client = self._pending
        if (
            client is None
            or client.participant.closed
            or not client.participant.negotiator.awaiting_answer
        ):
            if client is not None:
                await client.participant.leave()
            self._pending, _ = await self.join()
        assert self._pending is not None
        return self._pending

    async def answered(self) -> MemoryClient:
        if self._answered is None:
            client, offer = await self.join()
            pc = RTCPeerConnection()
            self.client_pcs.append(pc)
            await answer_offer(pc, client, offer)
            await eventually(
                lambda: client.participant.pc.connectionState == "connected",
                what="the answered attacker to connect",
            )
            self._answered = client
        return self._answered

    async def base_answer(self) -> str:
        """A real answer to an attacker's offer, without candidates."""
        _, offer = await self.join()
        pc = RTCPeerConnection()
        try:
            await pc.setRemoteDescription(RTCSessionDescription(offer.sdp, "offer"))
            configure_ice(pc, host_addresses=["127.0.0.1"])
            await pc.setLocalDescription(await pc.createAnswer())
            sdp = pc.localDescription.sdp
        finally:
            await pc.close()
        return re.sub(r"a=(candidate:.*|end-of-candidates)\r\n", "", sdp)

    async def close(self) -> None:
        for pc in self.client_pcs:
            await pc.close()


async def answer_offer(
    pc: RTCPeerConnection, client: MemoryClient, offer: Offer
) -> None:
    await pc.setRemoteDescription(RTCSessionDescription(offer.sdp, "offer"))
    configure_ice(pc, host_addresses=["127.0.0.1"])
    await pc.setLocalDescription(await pc.createAnswer())
    await client.send(Answer(sdp=pc.localDescription.sdp))


def drain(client: MemoryClient) -> list[ServerMessage]:
    messages = []
    while not client.inbox.empty():
        messages.append(client.inbox.get_nowait())
    return messages


@pytest.fixture
async def fuzz_sfu() -> AsyncIterator[SFU]:
    """An SFU whose rate limit lets every fuzzed message through (the limit
    itself is not under test here)."""
    limits = LimitsConfig(messages_per_second=1e9, message_burst=10**9)
    server = SFU(SFUConfig(ice=LOOPBACK, limits=limits))
    yield server
    await server.close()
    await asyncio.sleep(0.1)


@pytest.fixture
async def live(fuzz_sfu: SFU, peers: PeerFactory) -> Live:
    room = fuzz_sfu.create_room("live")
    host = await peers("host", code=1).join(room, "host")
    guest = await peers("guest", code=2).join(room)
    track = await guest.wait_video_from(host)
    live = Live(room, host, guest, track, dict(room.members))
    live.assert_intact()
    return live


@pytest.fixture
async def attackers(fuzz_sfu: SFU) -> AsyncIterator[Attackers]:
    made = Attackers(fuzz_sfu)
    yield made
    await made.close()


# ---------------------------------------------------------------------------
# in process


async def test_fuzzed_messages_get_one_specific_error_or_nothing(
    live: Live, attackers: Attackers
) -> None:
    base = await attackers.base_answer()
    messages = client_messages(base)
    run = in_loop(asyncio.get_running_loop())
    seen: Counter[str | None] = Counter()

    async def check(target: str, message: Input) -> None:
        client = await (
            attackers.pending() if target == "pending" else attackers.answered()
        )
        participant = client.participant
        drain(client)
        awaiting = participant.negotiator.awaiting_answer
        applied = participant.negotiator.answers_applied
        expected = expected_replies(message, awaiting_answer=awaiting)
        await deliver_json(participant, message.raw)
        replies = drain(client)
        codes = [m.code for m in replies if isinstance(m, Error)]
        assert len(replies) == len(codes), f"not only errors: {replies}"
        assert len(codes) <= 1, f"more than one error: {codes}"
        code = codes[0] if codes else None
        assert code in expected, f"{code!r} is not one of {set(expected)}"
        if code is None and awaiting and message_type(message.raw) == "answer":
            # silence for an answer: it was applied
            assert participant.negotiator.answers_applied == applied + 1
        assert not participant.closed
        assert participant.room.members == {participant.id: participant}
        live.assert_intact()
        seen[code] += 1
        if seen.total() % 60 == 0:
            await live.keeps_forwarding(frames=3)

    @settings(FUZZ_SETTINGS, max_examples=500)
    @given(st.sampled_from(["pending", "answered"]), messages)
    def fuzz(target: str, message: Input) -> None:
        run(check(target, message))

    await asyncio.to_thread(fuzz)
    print("in-process replies:", dict(seen))
    # the generated inputs reached every documented refusal, and silence
    assert set(seen) >= set(SIGNALLING_CODES) | {None}
    # the live room never noticed
    await live.keeps_forwarding(frames=30)
    live.assert_intact()
    # the attacker answered only ever by the fuzzer still gets connected by a
    # real answer; the other one is still connected
    pending = await attackers.pending()
    offer = pending.participant.pc.localDescription
    pc = RTCPeerConnection()
    attackers.client_pcs.append(pc)
    await answer_offer(pc, pending, Offer(offer.sdp))
    assert [m for m in drain(pending) if isinstance(m, Error)] == []
    await eventually(
        lambda: pending.participant.pc.connectionState == "connected",
        what="a real answer after the fuzzed ones",
    )
    answered = await attackers.answered()
    assert answered.participant.pc.connectionState == "connected"
    # and a leave is a leave
    await deliver_json(answered.participant, '{"type": "leave"}')
    assert answered.participant.closed
    assert drain(answered) == []
    live.assert_intact()


async def test_leave_from_an_attacker_does_not_touch_the_live_room(
    live: Live, attackers: Attackers
) -> None:
    client = await attackers.pending()
    room = client.participant.room
    await deliver_json(client.participant, '{"type": "leave", "sdp": 5}')
    assert client.participant.closed and room.members == {}
    assert drain(client) == []
    await deliver_json(client.participant, '{"type": "leave"}')
    assert drain(client) == []
    await live.keeps_forwarding()
    live.assert_intact()


async def test_an_attacker_in_the_live_room_does_not_disturb_it(
    fuzz_sfu: SFU, peers: PeerFactory
) -> None:
    """The same junk from a member of the live room itself."""
    room = fuzz_sfu.create_room("live", max_participants=2)
    host = await peers("host", code=1).join(room, "host")
    guest = await peers("guest", code=2).join(room)
    attacker = await MemorySignalling().join(room, "attacker")
    track = await guest.wait_video_from(host)
    before = len(track.patterns)
    junk = [
        "{",
        "[1]",
        '{"type": "offer", "sdp": "v=0"}',
        '{"type": "answer", "sdp": "v=0\\r\\nm=video 9 RTP/AVP 0\\r\\n"}',
        '{"type": "candidate", "candidate": "1 1 udp 1 127.0.0.1 70000 typ host"}',
        '{"type": "candidate", "candidate": "garbage"}',
        json.dumps({"type": "answer", "sdp": "x" * (MAX_SDP_LENGTH + 1)}),
    ]
    for text in junk * 20:
        await deliver_json(attacker.participant, text)
    codes = {m.code for m in drain(attacker) if isinstance(m, Error)}
    assert codes == {"bad_json", "bad_message", "unknown_type", "bad_sdp"} | {
        "bad_candidate"
    }
    await eventually(lambda: len(track.patterns) > before + 30, what="frames flow")
    assert set(room.members) == {"host", "guest", "attacker"}
    assert all(not m.closed for m in room.members.values())


async def test_deeply_nested_json_is_refused_with_bad_json(
    attackers: Attackers,
) -> None:
    client = await attackers.pending()
    for text in (nested(10_000), '{"a":' * 5_000 + "1" + "}" * 5_000):
        assert len(text) <= MAX_MESSAGE_LENGTH
        await deliver_json(client.participant, text)
        codes = [m.code for m in drain(client) if isinstance(m, Error)]
        assert len(codes) == 1 and codes[0] in {"bad_json", "bad_message"}
    assert not client.participant.closed


async def test_a_refused_answer_does_not_spoil_the_next_one(
    fuzz_sfu: SFU, peers: PeerFactory
) -> None:
    class FirstAnswerBroken:
        """Sends a broken copy of the client's first answer before the real one."""

        def __init__(self, client: MemoryClient) -> None:
            self.client = client
            self.inbox = client.inbox
            self.broken = False

        async def send(self, message: Any) -> None:
            if isinstance(message, Answer) and not self.broken:
                self.broken = True
                audio, video = message.sdp.split("\r\nm=video")
                video = re.sub(r"a=(rtpmap|fmtp|rtcp-fb):\d+ .*\r\n", "", video)
                video = re.sub(r"^ (\S+) (\S+) [^\r\n]*", r" \1 \2 120", video)
                video = video.replace("\r\n", "\r\na=rtpmap:120 FOO/90000\r\n", 1)
                await self.client.send(Answer(sdp=audio + "\r\nm=video" + video))
            await self.client.send(message)

    room = fuzz_sfu.create_room("r1")
    host = peers("host", code=1)
    host.attach(FirstAnswerBroken(await MemorySignalling().join(room, "host", "host")))
    guest = await peers("guest", code=2).join(room)
    await guest.wait_video_from(host)
    assert [e.code for e in host.errors] == ["bad_sdp"]
    await guest.wait_track("host", "audio", timeout=LIVENESS)
    await guest.wait_audio_from(host)


# ---------------------------------------------------------------------------
# the example server over the network: join API


def room_path(slug: str) -> str:
    """A slug as one path segment (dots encoded too, so nothing normalises)."""
    return quote(slug, safe="").replace(".", "%2E")


@dataclass(frozen=True)
class Request:
    endpoint: str  # "create" or "join"
    room: int | str  # an index into the rooms made for the test, or a slug
    raw_room: bool  # send the slug as it is (not percent-encoded)
    authorization: str | None
    authorized: bool
    forwarded_proto: str | None
    content_type: str | None
    body: bytes | None


#: Characters a slug may hold when sent without percent-encoding; others (and
#: dot segments) would change the path itself.
RAW_SAFE = "abc%~-_!$&'()*+,;=:@AF019"
#: Slugs to look up. aiohttp's router never matches a path segment holding a
#: brace (it answers 404 text/plain itself); no slug has one. No URL can carry
#: a lone surrogate, so none is drawn.
slugs = st.text(
    st.characters(exclude_characters="{}", exclude_categories=["Cs"]),
    min_size=1,
    max_size=20,
)
header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40
)


@st.composite
def authorizations(draw: st.DrawFn) -> tuple[str | None, bool]:
    choice = draw(st.sampled_from(["none", "valid", "valid", "wrong", "random"]))
    if choice == "none":
        return None, False
    if choice == "valid":
        scheme = draw(st.sampled_from(["Bearer", "bearer", "BEARER"]))
        spaces = draw(st.sampled_from([" ", "  "]))
        return f"{scheme}{spaces}{HOST_KEY}", True
    if choice == "wrong":
        scheme = draw(st.sampled_from(["Bearer", "Basic", "Token", ""]))
        key = draw(
            st.sampled_from([HOST_KEY + "x", HOST_KEY[:-1], "", HOST_KEY.upper()])
        )
        return f"{scheme} {key}".strip() if scheme else key, False
    return draw(header_text.filter(lambda h: HOST_KEY not in h)).strip(), False


names = st.text(max_size=100) | st.lists(
    st.text(max_size=40) | st.characters(categories=["Cs"]), max_size=4
).map("".join)


def utf8(text: str) -> bytes:
    """UTF-8, lone surrogates included (as a careless client encodes them)."""
    return text.encode("utf-8", "surrogatepass")


def weighted(*choices: tuple[st.SearchStrategy[T], int]) -> st.SearchStrategy[T]:
    """One of ``choices``, each drawn about as often as its weight says."""
    pool = [strategy for strategy, weight in choices for _ in range(weight)]
    return st.sampled_from(pool).flatmap(lambda strategy: strategy)


json_bodies = st.fixed_dictionaries(
    {},
    optional={
        "max_participants": st.integers(-5, 60) | json_values,
        "slug": st.sampled_from(["emoji", "ascii", "EMOJI", ""]) | json_values,
        "role": st.sampled_from(["participant", "host", "HOST", ""]) | json_values,
        "name": names | json_values,
    },
)
plausible_bodies = st.fixed_dictionaries(
    {},
    optional={
        "max_participants": st.integers(0, 50),
        "slug": st.sampled_from(["emoji", "ascii"]),
        "role": st.sampled_from(["participant", "host"]),
        "name": names,
    },
)
bodies = weighted(
    (st.none() | st.sampled_from([b"", b"  ", b"{}"]), 1),
    (plausible_bodies.map(lambda v: utf8(json.dumps(v, ensure_ascii=False))), 3),
    (json_bodies.map(lambda v: json.dumps(v).encode()), 2),
    (st.binary(max_size=100), 1),
    (st.text(max_size=100).map(str.encode), 1),
    (json_values.map(lambda v: json.dumps(v).encode()), 1),
    (st.sampled_from([b"null", b"[]", b"\xef\xbb\xbf{}", b"{", b'"{}"']), 1),
    (st.integers(1, MAX_NESTING).map(lambda n: nested(n).encode()), 1),
)
requests = st.builds(
    lambda endpoint, room, raw, auth, proto, ctype, body: Request(
        endpoint, room, raw, auth[0], auth[1], proto, ctype, body
    ),
    st.sampled_from(["create", "join", "join"]),
    weighted(
        (st.integers(0, 1), 4),
        (slugs, 1),
        (st.text(RAW_SAFE, min_size=1, max_size=12), 1),
    ),
    st.booleans(),
    authorizations(),
    st.none() | st.sampled_from(["https", "http", "https, http", "ftp"]) | header_text,
    st.none()
    | st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "text/plain",
            "application/octet-stream",
            "application/json; charset=nope",
            "text/plain; charset=latin-1",
            "application/json; charset=utf-16",
        ]
    ),
    bodies,
)

STATUS_CODES = {
    400: {"bad_request"},
    401: {"unauthorized"},
    404: {"room_not_found", "room_closed"},
    409: {"room_full", "host_taken"},
    503: {"too_many_rooms", "too_many_pending"},
    429: {"rate_limited"},
}


def parse_body(
    body: bytes | None, content_type: str | None = None
) -> dict[str, Any] | None:
    """The body as the API reads it: an object, ``{}`` if empty, else None."""
    _, _, charset = (content_type or "").partition("charset=")
    try:
        text = (body or b"").decode(charset or "utf-8")
    except (LookupError, ValueError):
        return None
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def expected_statuses(request: Request, room_exists: bool) -> set[int]:
    value = parse_body(request.body, request.content_type)
    if request.endpoint == "create":
        if not request.authorized:
            return {401, 429} if request.authorization else {401}
        if value is None:
            return {400}
        size = value.get("max_participants", 1)
        if type(size) is not int or not 0 <= size <= 50:  # a bool is no size
            return {400}
        if value.get("slug", "emoji") not in ("emoji", "ascii"):
            return {400}
        return {201, 503, 429}
    if value is None:
        return {400} if room_exists else {400, 404}
    role = value.get("role", "participant")
    name = value.get("name") or ""
    if role not in ("host", "participant") or not isinstance(name, str):
        return {400} if room_exists else {400, 404}
    if not encodable(name[:64]):  # the reply could not carry it
        return {400} if room_exists else {400, 404}
    if not room_exists:
        return {404}
    if role == "host":
        # 503: this address's waiting grants; 429: its wrong host keys
        return {200, 409, 503, 429} if request.authorized else {401, 429}
    return {200, 409, 503}


async def create_room(http: aiohttp.ClientSession, base: str, size: int) -> str:
    async with http.post(
        f"{base}/api/rooms",
        json={"max_participants": size},
        headers={"Authorization": f"Bearer {HOST_KEY}"},
    ) as response:
        assert response.status == 201
        return str((await response.json())["room"])


async def join_room(http: aiohttp.ClientSession, base: str, room: str) -> Any:
    async with http.post(f"{base}/api/rooms/{room_path(room)}/join", json={}) as r:
        assert r.status == 200
        return await r.json()


async def test_fuzzed_join_api_requests_get_json_answers(
    http: aiohttp.ClientSession,
) -> None:
    async with example_server() as base:
        rooms = [await create_room(http, base, size) for size in (50, 1)]
        run = in_loop(asyncio.get_running_loop())
        statuses: Counter[int] = Counter()

        sent = itertools.count()

        async def check(request: Request) -> None:
            # each example from its own address: per-address limits (wrong
            # host keys, waiting grants) are tested elsewhere, not here
            n = next(sent)
            source = aiohttp.TCPConnector(
                local_addr=(f"127.1.{n // 200}.{n % 200 + 1}", 0)
            )
            async with aiohttp.ClientSession(connector=source) as client:
                await check_from(client, request)

        async def check_from(http: aiohttp.ClientSession, request: Request) -> None:
            if isinstance(request.room, int):
                slug, room_exists = rooms[request.room], True
            else:
                slug, room_exists = request.room, request.room in rooms
            raw = request.raw_room and set(slug) <= set(RAW_SAFE)
            segment = slug if raw else room_path(slug)
            path = "/api/rooms" if request.endpoint == "create" else ""
            path = path or f"/api/rooms/{segment}/join"
            headers = {
                name: value
                for name, value in (
                    ("Authorization", request.authorization),
                    ("X-Forwarded-Proto", request.forwarded_proto),
                    ("Content-Type", request.content_type),
                )
                if value is not None
            }
            async with http.post(
                yarl.URL(base + path, encoded=True), data=request.body, headers=headers
            ) as response:
                status, body = response.status, await response.text()
                content_type = response.content_type
            assert status != 500, body
            statuses[status] += 1
            if raw and request.endpoint == "join":
                # an unencoded slug may read as another one: only the shape counts
                allowed = {200, 400, 401, 404, 409, 503}
            else:
                allowed = expected_statuses(request, room_exists)
            assert status in allowed, (status, body)
            assert content_type == "application/json", body
            answer = json.loads(body)
            assert isinstance(answer, dict)
            if status >= 400:
                assert set(answer) == {"error", "message"}
                assert answer["error"] in STATUS_CODES[status]
                assert isinstance(answer["message"], str)
            elif status == 201:
                host_url = answer["join_url"] + "?role=host#ticket="
                assert answer["host_url"].startswith(host_url)
                assert re.match(r"https?://127\.0\.0\.1:\d+/r/", answer["join_url"])
            else:
                value = parse_body(request.body, request.content_type)
                assert value is not None
                assert answer["role"] == value.get("role", "participant")
                name = value.get("name") or ""
                assert answer["name"] == (name[:64] or answer["participant_id"])
                assert answer["ws_url"].endswith("/ws/" + answer["participant_id"])
                assert len(answer["ice"]["password"]) >= 22

        @settings(FUZZ_SETTINGS, max_examples=250)
        @given(requests)
        def fuzz(request: Request) -> None:
            run(check(request))

        await asyncio.to_thread(fuzz)
        print("join API statuses:", dict(statuses))
        assert set(statuses) >= {200, 201, 400, 401, 404, 409}
        # the server still serves
        room = await create_room(http, base, 1)
        grant = await join_room(http, base, room)
        ws = await http.ws_connect(grant["ws_url"])
        await ws.send_json({"type": "hello", "token": grant["signalling_token"]})
        try:
            kinds = []
            while "offer" not in kinds:
                kinds.append((await ws.receive_json(timeout=LIVENESS))["type"])
            assert "joined" in kinds
        finally:
            await ws.close()


participant_ids = slugs | st.sampled_from(["p-", "p-x", "%", "..", "."])
first_messages = st.text(max_size=100) | st.binary(max_size=100)
hellos = st.tuples(
    st.sampled_from(["hello", "resume"]),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=30),
)


def hello_in(frame: str | bytes) -> bool:
    """Whether ``frame`` is a well-formed hello or resume message."""
    try:
        value = json.loads(frame)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False
    return (
        isinstance(frame, str)
        and isinstance(value, dict)
        and value.get("type") in ("hello", "resume")
        and isinstance(value.get("token"), str)
    )


async def test_unknown_participant_ids_are_refused_on_the_websocket(
    http: aiohttp.ClientSession,
) -> None:
    async with example_server() as base:
        run = in_loop(asyncio.get_running_loop())

        async def check(participant_id: str, frame: str | bytes) -> None:
            url = f"{base}/ws/{room_path(participant_id)}"
            ws = await http.ws_connect(yarl.URL(url, encoded=True))
            try:
                if isinstance(frame, str):
                    await ws.send_str(frame)
                else:
                    await ws.send_bytes(frame)
                message = await ws.receive(timeout=LIVENESS)
                assert message.type == aiohttp.WSMsgType.TEXT, message
                error = json.loads(message.data)
                assert error["type"] == "error"
                closing = await ws.receive(timeout=LIVENESS)
                assert closing.type == aiohttp.WSMsgType.CLOSE
                if hello_in(frame):
                    assert error["code"].startswith("credential_")
                    assert ws.close_code == 4401
                else:
                    assert error["code"] == "hello_expected"
                    assert ws.close_code == 4400
            finally:
                await ws.close()

        @settings(FUZZ_SETTINGS, max_examples=60)
        @given(
            participant_ids,
            first_messages
            | hellos.map(lambda h: json.dumps({"type": h[0], "token": h[1]})),
        )
        def fuzz(participant_id: str, frame: str | bytes) -> None:
            run(check(participant_id, frame))

        await asyncio.to_thread(fuzz)


# ---------------------------------------------------------------------------
# the example server over the network: frames on a real WebSocket session


class WsSessions:
    """Real sessions of one room; a fresh one before the rate limit bites."""

    PER_SESSION = 20  # examples; each sends two messages (burst: 50)

    def __init__(self, http: aiohttp.ClientSession, base: str, room: str) -> None:
        self.http, self.base, self.room = http, base, room
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.used = 0
        self.probes = 0
        self.sessions = 0

    async def session(self) -> aiohttp.ClientWebSocketResponse:
        if self.ws is None or self.used >= self.PER_SESSION:
            await self.close()
            grant = await join_room(self.http, self.base, self.room)
            self.ws = await self.http.ws_connect(grant["ws_url"])
            await self.ws.send_json(
                {"type": "hello", "token": grant["signalling_token"]}
            )
            self.used, self.sessions = 0, self.sessions + 1
            while (await self.ws.receive_json(timeout=LIVENESS))["type"] != "offer":
                pass
        self.used += 1
        return self.ws

    async def replies(self, frame: str | bytes) -> list[dict[str, Any]]:
        """What the server answers ``frame`` with, up to a probe's reply."""
        ws = await self.session()
        self.probes += 1
        tag = f"fuzz-probe-{self.probes}"
        if isinstance(frame, str):
            await ws.send_str(frame)
        else:
            await ws.send_bytes(frame)
        await ws.send_str(json.dumps({"type": tag}))
        messages = []
        while True:
            message = await ws.receive(timeout=LIVENESS)
            assert message.type == aiohttp.WSMsgType.TEXT, (message, frame)
            data = json.loads(message.data)
            if data.get("code") == "unknown_type" and tag in data.get("message", ""):
                return messages
            messages.append(data)

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.ws.send_str('{"type": "leave"}')
            await self.ws.close()
            self.ws = None


@pytest.fixture
async def ws_sessions(
    http: aiohttp.ClientSession,
) -> AsyncIterator[tuple[str, WsSessions]]:
    async with example_server() as base:
        sessions = WsSessions(http, base, await create_room(http, base, 50))
        try:
            yield base, sessions
        finally:
            await sessions.close()


def ws_frames() -> st.SearchStrategy[Input]:
    """Frames up to the socket's size limit (past it, see the test's end)."""
    answers = st.builds(
        lambda sdp: json.dumps({"type": "answer", "sdp": sdp}),
        st.text(max_size=300) | st.sampled_from(["", "v=0", "v=0\r\n"]),
    )
    texts = weighted(
        (st.text(max_size=200), 1),
        (json_values.map(json.dumps), 1),
        (odd_objects(), 2),
        (candidate_messages(), 2),
        (huge_messages(beyond=False), 1),
        (st.integers(1, MAX_NESTING).map(nested), 1),
        (answers, 1),
    ).filter(lambda text: len(text.encode()) <= MAX_MESSAGE_LENGTH)
    return weighted((texts.map(Input), 6), (st.binary(max_size=200).map(Input), 1))


async def test_fuzzed_frames_on_a_websocket_session_get_one_error_each(
    ws_sessions: tuple[str, WsSessions],
) -> None:
    _base, sessions = ws_sessions
    run = in_loop(asyncio.get_running_loop())

    seen: Counter[str | None] = Counter()

    async def check(frame: Input) -> None:
        replies = await sessions.replies(frame.raw)
        if isinstance(frame.raw, bytes):
            expected: frozenset[str | None] = frozenset({"bad_message"})
        else:
            expected = expected_replies(frame, awaiting_answer=True)
        assert all(r["type"] == "error" for r in replies), replies
        assert len(replies) <= 1, replies
        code = replies[0]["code"] if replies else None
        assert code in expected, (code, set(expected))
        seen[code] += 1

    @settings(FUZZ_SETTINGS, max_examples=120)
    @given(ws_frames())
    def fuzz(frame: Input) -> None:
        run(check(frame))

    await asyncio.to_thread(fuzz)
    print("WebSocket replies:", dict(seen))
    assert set(seen) >= {"bad_json", "bad_message", "unknown_type", "bad_candidate"}
    assert sessions.sessions >= 2
    # an oversized message gets too_large and the session carries on; a frame
    # far beyond any message closes the socket (1009)
    oversized = json.dumps(
        {"type": "answer", "sdp": "é" * MAX_MESSAGE_LENGTH}, ensure_ascii=False
    )
    assert [r["code"] for r in await sessions.replies(oversized)] == ["too_large"]
    assert [r["code"] for r in await sessions.replies("{")] == ["bad_json"]
    ws = await sessions.session()
    await ws.send_str("a" * (4 * MAX_MESSAGE_LENGTH + 1))
    message = await ws.receive(timeout=LIVENESS)
    assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert ws.close_code == 1009
    sessions.ws = None
    assert [r["code"] for r in await sessions.replies("{")] == ["bad_json"]


async def test_deeply_nested_json_on_the_websocket_gets_an_error(
    ws_sessions: tuple[str, WsSessions],
) -> None:
    _, sessions = ws_sessions
    replies = await sessions.replies(nested(10_000))
    assert [r["code"] for r in replies] in (["bad_json"], ["bad_message"])


# ---------------------------------------------------------------------------
# the join API's bugs found by fuzzing, one by one


async def post_raw(
    http: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> tuple[int, str, str]:
    async with http.post(url, data=body, headers=headers) as response:
        return response.status, response.content_type, await response.text()


@pytest.fixture
async def server(http: aiohttp.ClientSession) -> AsyncIterator[tuple[str, str]]:
    async with example_server() as base:
        yield base, await create_room(http, base, 5)


def assert_json_error(answer: tuple[int, str, str], statuses: set[int]) -> None:
    status, content_type, body = answer
    assert status in statuses, (status, body)
    assert content_type == "application/json", body
    assert set(json.loads(body)) == {"error", "message"}


BAD_BODIES = {
    "unknown charset": (b"{}", {"Content-Type": "application/json; charset=nope"}),
    "deep nesting": (nested(10_000).encode(), {}),
    "lone surrogate in the name": (json.dumps({"name": "\ud800"}).encode(), {}),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
async def test_malformed_join_bodies_get_bad_request(
    http: aiohttp.ClientSession, server: tuple[str, str], case: str
) -> None:
    base, room = server
    body, headers = BAD_BODIES[case]
    url = f"{base}/api/rooms/{room_path(room)}/join"
    assert_json_error(await post_raw(http, url, body, headers), {400})
    create_headers = {"Authorization": f"Bearer {HOST_KEY}", **headers}
    answer = await post_raw(http, f"{base}/api/rooms", body, create_headers)
    if answer[0] == 201:  # the body's fields mean nothing to room creation
        assert "room" in json.loads(answer[2])
    else:
        assert_json_error(answer, {400})


async def test_a_failed_join_does_not_hold_a_seat(
    http: aiohttp.ClientSession,
) -> None:
    async with example_server() as base:
        room = await create_room(http, base, 1)
        url = f"{base}/api/rooms/{room_path(room)}/join"
        await post_raw(http, url, json.dumps({"name": "\udcff"}).encode(), {})
        status, _, body = await post_raw(http, url, b"{}", {})
        assert status == 200, body


async def test_a_boolean_room_size_is_refused(
    http: aiohttp.ClientSession, server: tuple[str, str]
) -> None:
    base, _ = server
    headers = {"Authorization": f"Bearer {HOST_KEY}"}
    for size in (b"true", b"false"):
        body = b'{"max_participants": ' + size + b"}"
        assert_json_error(
            await post_raw(http, f"{base}/api/rooms", body, headers), {400}
        )


async def test_an_oversized_body_gets_a_json_error(
    http: aiohttp.ClientSession, server: tuple[str, str]
) -> None:
    base, room = server
    body = b"x" * (2 << 20)
    url = f"{base}/api/rooms/{room_path(room)}/join"
    assert_json_error(await post_raw(http, url, body, {}), {400, 413})
