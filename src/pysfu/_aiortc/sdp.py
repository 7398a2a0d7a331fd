"""SDP: codecs aiortc cannot code but an SFU forwards, offers and answers
checked before aiortc applies them, and the DTLS role of an answer."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiortc import (
    RTCPeerConnection,
)
from aiortc.codecs import CODECS
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
)

from ..rtp.twcc import TRANSPORT_CC_URI

#: Pass-through video codecs and the payload types they get (after aiortc's
#: 96-102), with an RTX payload type each.
PASSTHROUGH_VIDEO_CODECS: dict[str, tuple[int, dict[str, Any]]] = {
    "VP9": (103, {"profile-id": 0}),
    "AV1": (105, {}),
}


def register_passthrough_codecs(names: Iterable[str]) -> None:
    """Let peer connections negotiate video codecs aiortc has no codec for.

    This extends aiortc's process-wide codec table, so every
    ``RTCPeerConnection`` in the process offers and accepts them: fine for an
    SFU, which never decodes, but an aiortc *client* in the same process
    cannot decode such a track. Idempotent.
    """
    video = CODECS["video"]
    known = {c.mimeType.lower() for c in video}
    feedback = next(c.rtcpFeedback for c in video if c.mimeType.lower() == "video/vp8")
    for name in names:
        payload_type, parameters = PASSTHROUGH_VIDEO_CODECS[name.upper()]
        mime_type = f"video/{name.upper()}"
        if mime_type.lower() in known:
            continue
        video.append(
            RTCRtpCodecParameters(
                mimeType=mime_type,
                clockRate=90000,
                payloadType=payload_type,
                rtcpFeedback=list(feedback),
                parameters=dict(parameters),
            )
        )
        video.append(
            RTCRtpCodecParameters(
                mimeType="video/rtx",
                clockRate=90000,
                payloadType=payload_type + 1,
                parameters={"apt": payload_type},
            )
        )


#: The fmtp parameter naming a codec's profile, and its default (RFC 9628,
#: the AV1 RTP spec): packets of one profile cannot be handed to a peer
#: that agreed to another.
_PROFILE_PARAMETERS = {"video/vp9": ("profile-id", "0"), "video/av1": ("profile", "0")}


def _same_format(local: RTCRtpCodecParameters, offered: RTCRtpCodecParameters) -> bool:
    """Whether pysfu's ``local`` codec can stand for an ``offered`` one:
    aiortc's test (name, clock rate; H.264 profile and packetization mode)
    and, which aiortc does not check, the VP9 or AV1 profile."""
    from aiortc.rtcpeerconnection import is_codec_compatible

    if not is_codec_compatible(local, offered):
        return False
    profile = _PROFILE_PARAMETERS.get(local.mimeType.lower())
    if profile is None:
        return True
    name, default = profile
    mine = str(local.parameters.get(name, default))
    return mine == str(offered.parameters.get(name, default))


def offered_codecs_in_common(
    kind: str,
    offered: list[RTCRtpCodecParameters],
    preferred: Iterable[str] | None = None,
) -> list[RTCRtpCodecParameters]:
    """The offered codecs pysfu can take, *as offered*: the offer's payload
    types, rtpmap and fmtp, with the RTCP feedback both sides support; each
    RTX after the codec it retransmits.

    An answer must use the offerer's payload types and formats. aiortc
    adopts an offered payload type only in 96-127 and answers its own
    parameters, so an offer using 35-63 (Chromium does) got answers with
    duplicate payload types, and VP9 profile 2 was answered as profile 0.
    ``preferred``: codec names to keep, in this order (the room's choice).
    """
    local_codecs = CODECS[kind]
    chosen: list[RTCRtpCodecParameters] = []
    for codec in offered:
        if codec.name.lower() == "rtx":
            continue
        local = next((c for c in local_codecs if _same_format(c, codec)), None)
        if local is None:
            continue
        chosen.append(
            RTCRtpCodecParameters(
                mimeType=codec.mimeType,
                clockRate=codec.clockRate,
                channels=codec.channels,
                payloadType=codec.payloadType,
                rtcpFeedback=[f for f in local.rtcpFeedback if f in codec.rtcpFeedback],
                parameters=dict(codec.parameters),
            )
        )
    if preferred is not None:
        order = [name.lower() for name in preferred]
        chosen = [c for c in chosen if c.name.lower() in order]
        chosen.sort(key=lambda c: order.index(c.name.lower()))  # stable
    retransmissions = [
        c
        for c in offered
        if c.name.lower() == "rtx"
        and any(c.mimeType.lower() == m.mimeType.lower() for m in local_codecs)
    ]
    common: list[RTCRtpCodecParameters] = []
    for codec in chosen:
        common.append(codec)
        rtx = next(
            (
                r
                for r in retransmissions
                if str(r.parameters.get("apt")) == str(codec.payloadType)
                and r.clockRate == codec.clockRate
            ),
            None,
        )
        if rtx is not None:
            common.append(
                RTCRtpCodecParameters(
                    mimeType=rtx.mimeType,
                    clockRate=rtx.clockRate,
                    payloadType=rtx.payloadType,
                    parameters=dict(rtx.parameters),
                )
            )
    return common


def answer_with_offered_codecs(pc: RTCPeerConnection) -> None:
    """Make the coming answer use only the offer's payload types and formats
    (see :func:`offered_codecs_in_common`).

    Call between ``setRemoteDescription(offer)`` and ``createAnswer()``. A
    transceiver whose codec preferences were set keeps only those codecs
    (by name). Raises ``ValueError`` if a section has no codec left.
    """
    from aiortc import sdp as aiortc_sdp

    remote = pc.remoteDescription
    if remote is None:
        raise RuntimeError("set the remote offer first")
    description = aiortc_sdp.SessionDescription.parse(remote.sdp)
    transceivers = {t.mid: t for t in pc.getTransceivers()}
    for media in description.media:
        transceiver = transceivers.get(media.rtp.muxId)
        if transceiver is None or media.kind not in ("audio", "video"):
            continue
        preferences = transceiver._preferred_codecs
        preferred = (
            [c.name for c in preferences if c.name.lower() != "rtx"]
            if preferences
            else None
        )
        common = offered_codecs_in_common(media.kind, media.rtp.codecs, preferred)
        if not common:
            raise ValueError(
                f"no codec in common for the {media.kind} section {media.rtp.muxId}"
            )
        transceiver._codecs = common


def section_directions(sdp: str) -> dict[str, str]:
    """The direction of each audio/video section of an SDP, by mid, as its
    author wrote it (``sendrecv`` if it says none; ``inactive`` for a section
    it rejected with port 0)."""
    directions = {}
    for section in sdp.replace("\r\n", "\n").split("\nm=")[1:]:
        lines = section.split("\n")
        if not lines[0].startswith(("audio ", "video ")):
            continue
        mid = next(
            (line[6:].strip() for line in lines if line.startswith("a=mid:")), ""
        )
        direction = next(
            (
                line[2:].strip()
                for line in lines
                if line.strip()
                in ("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive")
            ),
            "sendrecv",
        )
        rejected = lines[0].split()[1:2] == ["0"]
        directions[mid] = "inactive" if rejected else direction
    return directions


_CODEC_LINES = ("a=rtpmap:", "a=fmtp:", "a=rtcp-fb:")
_DIRECTIONS = ("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive")
_TRANSPORT_LINES = ("a=ice-ufrag:", "a=ice-pwd:", "a=fingerprint:", "a=setup:")


def _sections(sdp: str) -> tuple[str, list[list[str]]]:
    """The session part and the media sections (as lines) of an SDP."""
    head, *media = sdp.replace("\r\n", "\n").split("\nm=")
    return head, [("m=" + section).rstrip("\n").split("\n") for section in media]


def _mid(lines: list[str]) -> str | None:
    return next((line[6:].strip() for line in lines if line.startswith("a=mid:")), None)


def accept_rejected_sections(offer: str, answer: str) -> tuple[str, list[str]]:
    """Make an answer's rejected media sections (port 0) applicable as inactive.

    A client that cannot take a track, e.g. Firefox without H.264 offered an
    H.264 video, rejects its section (RFC 3264 section 6: port 0, often with a
    codec it made up). aiortc would refuse the whole answer ("no codec in
    common") and nothing would flow at all. Here such a section becomes an
    ``inactive`` one with the offer's codecs, so the rest of the answer
    applies. Returns the answer to apply and the mids that were rejected.
    """
    _, offered = _sections(offer)
    offered_by_mid = {_mid(lines): lines for lines in offered}
    head, media = _sections(answer)
    # a rejected section has no transport of its own: it takes the bundle's
    transport = next(
        (
            [line for line in lines if line.startswith(_TRANSPORT_LINES)]
            for lines in media
            if lines[0][2:].split()[1:2] != ["0"]
        ),
        [],
    )
    rejected: list[str] = []
    for index, lines in enumerate(media):
        fields = lines[0][2:].split()
        if len(fields) < 4 or fields[0] not in ("audio", "video") or fields[1] != "0":
            continue
        mid = _mid(lines)
        if mid is None and index < len(offered):
            mid = _mid(offered[index])
        source = offered_by_mid.get(mid)
        if mid is None or source is None:
            continue  # answer_problem says what is wrong with it
        offered_fields = source[0][2:].split()
        rebuilt = [f"m={fields[0]} 9 {fields[2]} {' '.join(offered_fields[3:])}"]
        rebuilt += [
            line
            for line in lines[1:]
            if not line.startswith(
                _CODEC_LINES + _DIRECTIONS + _TRANSPORT_LINES + ("a=mid:", "a=ssrc")
            )
        ]
        rebuilt += [f"a=mid:{mid}", "a=inactive", "a=rtcp-mux", *transport]
        rebuilt += [line for line in source if line.startswith(_CODEC_LINES)]
        media[index] = list(dict.fromkeys(rebuilt))  # no line twice
        rejected.append(mid)
    if not rejected:
        return answer, []
    # a rejected section is out of the BUNDLE group: put it back, it shares
    # the group's transport like every other section of this connection
    session = head.split("\n")
    for i, line in enumerate(session):
        if line.startswith("a=group:BUNDLE"):
            mids = line.split()[1:]
            session[i] = " ".join(
                ["a=group:BUNDLE", *mids, *(m for m in rejected if m not in mids)]
            )
    text = "\r\n".join(session + [line for lines in media for line in lines])
    return text + "\r\n", rejected


def _valueless_number(codecs: list[RTCRtpCodecParameters]) -> str | None:
    """Why a section's fmtp cannot be used, or ``None``: aiortc reads some
    parameters as numbers (``packetization-mode``, ``apt``...), and one given
    as a bare flag, without ``=value``, made its codec matching raise."""
    from aiortc.sdp import FMTP_INT_PARAMETERS

    numeric = {*FMTP_INT_PARAMETERS, "packetization-mode"}  # aiortc int()s both
    for codec in codecs:
        for name in sorted(numeric):
            if name in codec.parameters and codec.parameters[name] is None:
                return (
                    f"the fmtp parameter {name!r} of payload type "
                    f"{codec.payloadType} has no numeric value"
                )
    return None


def answer_problem(pc: RTCPeerConnection, sdp: str) -> str | None:
    """Why aiortc would refuse this answer half-way, or ``None``.

    ``setRemoteDescription`` applies an answer section by section and only
    then finds a section with no codec in common: the sections before it stay
    applied, and a corrected answer would not fire their track events again.
    Checking every section first keeps a refused answer from changing anything.
    """
    from aiortc import sdp as aiortc_sdp
    from aiortc.rtcpeerconnection import filter_preferred_codecs, find_common_codecs

    try:
        description = aiortc_sdp.SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser raises all sorts on garbage
        return f"unparsable SDP: {exc!r}"[:200]
    transceivers = {t.mid: t for t in pc.getTransceivers()}
    for media in description.media:
        if media.kind not in ("audio", "video"):
            continue
        transceiver = transceivers.get(media.rtp.muxId)
        if transceiver is None:
            return f"no {media.kind} section with mid {media.rtp.muxId!r} was offered"
        malformed = _valueless_number(media.rtp.codecs)
        if malformed is not None:
            return malformed
        common = filter_preferred_codecs(
            find_common_codecs(CODECS[media.kind], media.rtp.codecs),
            transceiver._preferred_codecs,
        )
        if not common:
            return f"no codec in common for the {media.kind} section {media.rtp.muxId}"
    return None


@dataclass(frozen=True)
class OfferedMedia:
    """One audio or video section of a client's offer."""

    mid: str
    kind: str
    #: The client's direction: ``sendonly``, ``recvonly``, ``sendrecv``, ``inactive``.
    direction: str


@dataclass(frozen=True)
class ParsedOffer:
    """What the server needs to know of a client's offer before applying it."""

    media: list[OfferedMedia]
    #: The client's ICE username fragment (the first section's).
    ice_username_fragment: str | None


def parse_client_offer(
    sdp: str, *, video_codecs: Iterable[str] | None = None
) -> ParsedOffer:
    """Check a client's offer before any peer connection sees it.

    Raises ``ValueError`` saying what is wrong: unparsable, no audio or video,
    a section without a mid or ICE credentials, sections not bundled on one
    transport (pysfu forwards on one transport per participant), or a section
    with no codec pysfu can forward (``video_codecs``, if given, restricts
    video to those codec names).
    """
    from aiortc import sdp as aiortc_sdp

    try:
        description = aiortc_sdp.SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser raises all sorts on garbage
        raise ValueError(f"unparsable SDP: {exc!r}"[:200]) from None
    media = [m for m in description.media if m.kind in ("audio", "video")]
    if not media:
        raise ValueError("the offer has no audio or video section")
    bundle = next((g for g in description.group if g.semantic == "BUNDLE"), None)
    bundled = set(bundle.items) if bundle is not None else set()
    allowed_video = list(video_codecs) if video_codecs else None
    offered = []
    for section in media:
        mid = section.rtp.muxId
        if not mid:
            raise ValueError(f"a {section.kind} section has no a=mid")
        if len(media) > 1 and mid not in bundled:
            raise ValueError(
                f"section {mid} is not in the BUNDLE group: use the max-bundle policy"
            )
        ice = section.ice
        if ice is None or not ice.usernameFragment or not ice.password:
            raise ValueError(f"section {mid} has no a=ice-ufrag/a=ice-pwd")
        if section.dtls is None or not section.dtls.fingerprints:
            raise ValueError(f"section {mid} has no a=fingerprint")
        malformed = _valueless_number(section.rtp.codecs)
        if malformed is not None:
            raise ValueError(f"section {mid}: {malformed}")
        common = offered_codecs_in_common(
            section.kind,
            section.rtp.codecs,
            allowed_video if section.kind == "video" else None,
        )
        common = [c for c in common if c.name.lower() != "rtx"]
        if not common:
            names = sorted({c.name for c in section.rtp.codecs})
            raise ValueError(
                f"no codec pysfu can forward in the {section.kind} section {mid} "
                f"(offered: {', '.join(names) or 'none'})"
            )
        offered.append(OfferedMedia(mid, section.kind, section.direction or "sendrecv"))
    first = media[0].ice
    return ParsedOffer(offered, first.usernameFragment if first else None)


def answer_as_dtls_server(pc: RTCPeerConnection) -> None:
    """Make the coming answer say ``a=setup:passive``: pysfu is the DTLS server.

    Call between ``setRemoteDescription(offer)`` and ``createAnswer()``. An
    offer saying ``actpass`` leaves the role to the answerer, and aiortc
    then picks the client role. As DTLS client aiortc offers only ECDSA
    cipher suites, so a peer whose certificate is RSA (GStreamer's webrtcbin)
    fails the handshake; as server it accepts any client certificate. An
    offer that insists on a role (``active``/``passive``) keeps it.
    """
    from aiortc import sdp as aiortc_sdp

    remote = pc.remoteDescription
    if remote is None:
        raise RuntimeError("set the remote offer first")
    parsed = aiortc_sdp.SessionDescription.parse(remote.sdp)
    roles = {m.dtls.role if m.dtls else None for m in parsed.media}
    if roles != {"auto"}:
        return  # the client chose its role: aiortc already took the other one
    for transceiver in pc.getTransceivers():
        transport = transceiver.receiver.transport
        if transport._role == "auto":
            transport._set_role("server")


RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
REPAIRED_RID_URI = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
#: Ids for the two rid extensions: clear of aiortc's (mid 1, audio level 2,
#: abs-send-time 3), since with BUNDLE all sections share one id space.
_RID_EXTENSION_IDS = {RID_URI: 10, REPAIRED_RID_URI: 11}


def register_simulcast_extensions() -> None:
    """Let peer connections negotiate the RTP stream id extensions (rid and
    repaired rid) for video, which tag each simulcast layer's packets.

    aiortc 1.16 negotiates only mid and abs-send-time; like
    :func:`register_passthrough_codecs` this extends its process-wide table.
    Idempotent.
    """
    from aiortc.codecs import HEADER_EXTENSIONS
    from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters

    video = HEADER_EXTENSIONS["video"]
    known = {extension.uri for extension in video}
    for uri, ext_id in _RID_EXTENSION_IDS.items():
        if uri not in known:
            video.append(RTCRtpHeaderExtensionParameters(id=ext_id, uri=uri))


#: Id for the transport-wide sequence number extension in pysfu's offers:
#: clear of aiortc's ids and of the rid extensions' (a browser's offer
#: brings its own ids, which aiortc's answer keeps).
_TRANSPORT_CC_EXTENSION_ID = 5


def register_transport_cc() -> None:
    """Let peer connections negotiate transport-wide congestion control for
    video: the transport-wide sequence number extension and the
    ``transport-cc`` feedback on every video codec registered so far (call
    it after :func:`register_passthrough_codecs`).

    With both negotiated, a browser numbers the packets it sends and
    estimates its own uplink from pysfu's feedback
    (:class:`pysfu.rtp.twcc.TransportFeedback`). aiortc 1.16 neither
    numbers its packets nor reads the feedback, so between two aiortc peers
    nothing changes; like :func:`register_passthrough_codecs` this extends
    aiortc's process-wide tables. Idempotent.
    """
    from aiortc.codecs import CODECS, HEADER_EXTENSIONS
    from aiortc.rtcrtpparameters import (
        RTCRtcpFeedback,
        RTCRtpHeaderExtensionParameters,
    )

    video = HEADER_EXTENSIONS["video"]
    if all(extension.uri != TRANSPORT_CC_URI for extension in video):
        video.append(
            RTCRtpHeaderExtensionParameters(
                id=_TRANSPORT_CC_EXTENSION_ID, uri=TRANSPORT_CC_URI
            )
        )
    feedback = RTCRtcpFeedback(type="transport-cc")
    for codec in CODECS["video"]:
        if codec.mimeType.lower() != "video/rtx" and feedback not in codec.rtcpFeedback:
            codec.rtcpFeedback.append(feedback)


def offer_simulcast(sdp: str, mids: Iterable[str], rids: Iterable[str]) -> str:
    """Add ``a=rid:<rid> recv`` and ``a=simulcast:recv`` to the sections of
    ``sdp`` (an offer) with the given mids: the offer to receive simulcast
    (RFC 8853) that makes a browser answer with one encoding per rid.

    aiortc neither writes nor parses these attributes, so they are added to
    the offer's text only; the browser's answer echoes them as ``send``.
    """
    wanted = set(mids)
    rid_list = list(rids)
    if not wanted or not rid_list:
        return sdp
    lines = sdp.split("\r\n")
    out: list[str] = []
    in_section = False

    def close_section() -> None:
        # after the section's last attribute (before trailing empty lines)
        at = len(out)
        while at and not out[at - 1]:
            at -= 1
        extra = [f"a=rid:{rid} recv" for rid in rid_list]
        extra.append("a=simulcast:recv " + ";".join(rid_list))
        out[at:at] = extra

    for line in lines:
        if line.startswith("m="):
            if in_section:
                close_section()
            in_section = False
        elif line.startswith("a=mid:") and line[6:].strip() in wanted:
            in_section = True
        out.append(line)
    if in_section:
        close_section()
    return "\r\n".join(out)


def simulcast_rids_answered(sdp: str, mid: str) -> list[str]:
    """The rids an answer's section ``mid`` accepted (``a=simulcast:send``);
    empty if it declined simulcast."""
    spec = _simulcast_send_specs(sdp).get(mid)
    if spec is None:
        return []
    return [
        rid.lstrip("~")
        for alternatives in spec.split(";")
        for rid in alternatives.split(",")
    ]


def _simulcast_send_specs(sdp: str) -> dict[str, str]:
    """mid -> the rid list of each section's ``a=simulcast:send`` line (the
    first one of a section), as written: ``q;h,~x;f``."""
    found: dict[str, str] = {}
    current: str | None = None
    for line in sdp.splitlines():
        if line.startswith("m="):
            current = None
        elif line.startswith("a=mid:"):
            current = line[6:].strip()
        elif current is not None and line.startswith("a=simulcast:send "):
            found.setdefault(current, line.split(" ", 1)[1].split(" ")[0])
    return found


def answer_simulcast(answer: str, offer: str, rids: Iterable[str]) -> str:
    """Accept an offer's simulcast (a WHIP client's ``a=simulcast:send``):
    add ``a=rid:<rid> recv`` and ``a=simulcast:recv`` to each section of
    ``answer`` whose offered section sends simulcast, listing the offered
    rids that are among ``rids`` (the layers pysfu knows) in the offer's
    order. Sections offering fewer than two known rids are left as they are
    (the client then sends one encoding). aiortc neither writes nor parses
    these attributes, so they are added to the answer's text only.
    """
    known = set(rids)
    accepted: dict[str, list[str]] = {}
    for mid, offered in _offered_simulcast(offer).items():
        usable = [rid for rid in offered if rid in known]
        if len(usable) >= 2:
            accepted[mid] = usable
    if not accepted:
        return answer
    out: list[str] = []
    current: str | None = None

    def close_section() -> None:
        if current not in accepted:
            return
        at = len(out)
        while at and not out[at - 1]:
            at -= 1
        extra = [f"a=rid:{rid} recv" for rid in accepted[current]]
        extra.append("a=simulcast:recv " + ";".join(accepted[current]))
        out[at:at] = extra

    for line in answer.split("\r\n"):
        if line.startswith("m="):
            close_section()
            current = None
        elif line.startswith("a=mid:"):
            current = line[6:].strip()
        out.append(line)
    close_section()
    return "\r\n".join(out)


def _offered_simulcast(sdp: str) -> dict[str, list[str]]:
    """mid -> the rids a section sends as simulcast (``a=simulcast:send``,
    paused ``~`` rids included, the first of each alternative list)."""
    return {
        mid: [
            alternatives.split(",")[0].lstrip("~") for alternatives in spec.split(";")
        ]
        for mid, spec in _simulcast_send_specs(sdp).items()
    }


def made_by_aiortc(sdp: str) -> bool:
    """Whether an SDP was written by aiortc, from its origin line.

    aiortc writes ``o=- N N IN IP4 0.0.0.0`` with the session id and version
    both the NTP seconds of the moment (browsers, GStreamer and werift write
    a random id and a small version). It matters to the subscriptions: an
    aiortc receiver whose track ended can never play again (its decoder
    stops for good on the RTCP BYE and no ``track`` event fires for a section
    that receives again), so an aiortc client needs a new section per track.
    """
    for line in sdp.replace("\r\n", "\n").split("\n"):
        if line.startswith("o="):
            fields = line[2:].split()
            return (
                len(fields) == 6
                and fields[0] == "-"
                and fields[1].isdigit()
                and fields[1] == fields[2]
                and fields[3:] == ["IN", "IP4", "0.0.0.0"]
            )
    return False
