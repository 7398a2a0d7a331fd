"""A client that rejects a section it cannot take (port 0, RFC 3264), as
Firefox does with H.264: the rest of its answer applies, it is told, and
everything else flows."""

from __future__ import annotations

from aiortc import RTCSessionDescription

from pysfu import SFU
from pysfu._aiortc import accept_rejected_sections, section_directions
from pysfu.signalling import Answer
from pysfu.signalling import Error as ErrorMessage

from ..helpers import eventually
from ..peers import Peer, PeerFactory

OFFER = (
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n"
    "a=sendrecv\r\na=rtpmap:111 opus/48000/2\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 102 103\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\n"
    "a=sendonly\r\na=rtpmap:102 H264/90000\r\n"
    "a=fmtp:102 packetization-mode=1;profile-level-id=42e01f\r\n"
    "a=rtcp-fb:102 nack\r\na=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\n"
)
#: What Firefox without OpenH264 answers: the H.264 section rejected, with a
#: VP8 payload type it made up, and left out of the BUNDLE group.
FIREFOX_ANSWER = (
    "v=0\r\no=mozilla 2 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n"
    "a=sendrecv\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef012345\r\n"
    "a=fingerprint:sha-256 AB:CD\r\na=setup:active\r\na=rtpmap:111 opus/48000/2\r\n"
    "m=video 0 UDP/TLS/RTP/SAVPF 120\r\nc=IN IP4 0.0.0.0\r\na=inactive\r\n"
    "a=mid:1\r\na=rtpmap:120 VP8/90000\r\n"
)


def test_a_rejected_section_becomes_inactive_with_the_offers_codecs() -> None:
    answer, rejected = accept_rejected_sections(OFFER, FIREFOX_ANSWER)
    assert rejected == ["1"]
    video = answer.split("m=video")[1]
    assert video.startswith(" 9 UDP/TLS/RTP/SAVPF 102 103\r\n")
    assert "a=rtpmap:102 H264/90000" in video and "VP8" not in video
    assert video.count("a=inactive") == 1 and "a=mid:1" in video
    assert "a=group:BUNDLE 0 1\r\n" in answer
    # the bundle's transport, which aiortc looks for in every section
    assert "a=ice-ufrag:abcd" in video and "a=fingerprint:sha-256 AB:CD" in video
    assert section_directions(FIREFOX_ANSWER)["1"] == "inactive"
    # an answer that rejects nothing is applied as it is
    assert accept_rejected_sections(OFFER, OFFER) == (OFFER, [])


class RejectsVideo(Peer):
    """An aiortc client that, like Firefox without H.264, rejects every video
    section the server sends it (and still publishes its own)."""

    async def _answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        if not self._publishing:
            self._attach_outgoing(sdp)
        from pysfu._aiortc import configure_ice

        configure_ice(self.pc, host_addresses=["127.0.0.1"])
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        answer = self.pc.localDescription.sdp
        sections = answer.split("\r\nm=")
        for i, section in enumerate(sections[1:], 1):
            if section.startswith("video") and "a=recvonly" in section:
                # as Firefox: port 0, and a codec of its own instead of H.264
                lines = section.split("\r\n")
                proto = lines[0].split()[2]
                kept = [
                    line
                    for line in lines[1:]
                    if not line.startswith(("a=rtpmap", "a=fmtp", "a=rtcp-fb"))
                ]
                sections[i] = "\r\n".join(
                    [f"video 0 {proto} 120", *kept, "a=rtpmap:120 VP8/90000"]
                ).replace("a=recvonly", "a=inactive")
        assert self.client is not None
        self.answers_sent += 1
        await self.client.send(Answer(sdp="\r\nm=".join(sections)))


async def test_a_client_rejecting_the_hosts_video_still_publishes_and_hears(
    sfu: SFU, peers: PeerFactory
) -> None:
    room = sfu.create_room("r", video_codecs=("H264",))
    host = await peers("host", code=1, tone=440).join(room, "host")
    guest = RejectsVideo("guest", 2, tone=1000)
    try:
        await guest.join(room)
        # nothing the guest rejected is an error that stops the rest
        assert (await host.wait_video_from(guest)).codes() == {2}
        audio = await guest.wait_audio_from(host)
        assert abs(audio.frequency() - 440) < 20
        await eventually(
            lambda: any(e.code == "track_declined" for e in guest.saw(ErrorMessage)),
            what="the guest is told it declined the host's video",
        )
        assert not any(e.code == "bad_sdp" for e in guest.saw(ErrorMessage))
    finally:
        await guest.close()
