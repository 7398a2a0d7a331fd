"""WHIP/WHEP clients for the tests: aiortc peers that offer over HTTP."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiortc import RTCSessionDescription
from multidict import CIMultiDict

from pysfu._aiortc import configure_ice

from .example_server import HOST_KEY, ROOT, RunningExample, run_example
from .peers import Peer


@dataclass
class WhipResponse:
    status: int
    text: str
    headers: CIMultiDict[str]
    links: list[str]


async def post_offer(
    http: aiohttp.ClientSession,
    url: str,
    sdp: str,
    token: str | None,
    content_type: str = "application/sdp",
) -> WhipResponse:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with http.post(url, data=sdp.encode(), headers=headers) as response:
        return WhipResponse(
            response.status,
            await response.text(),
            CIMultiDict(response.headers),
            response.headers.getall("Link", []),
        )


async def make_offer(peer: Peer, *, watch: bool = False) -> str:
    """Offer from an aiortc peer: send its pattern video and tone, or receive."""
    if watch:
        peer.pc.addTransceiver("audio", direction="recvonly")
        peer.pc.addTransceiver("video", direction="recvonly")
    else:
        for track in (peer.audio, peer.video):
            if track is not None:
                peer.pc.addTransceiver(track, direction="sendonly")
    configure_ice(peer.pc, host_addresses=["127.0.0.1"])
    await peer.pc.setLocalDescription(await peer.pc.createOffer())
    return str(peer.pc.localDescription.sdp)


async def whip_session(
    http: aiohttp.ClientSession,
    base: str,
    room: str,
    peer: Peer,
    token: str,
    *,
    watch: bool = False,
) -> WhipResponse:
    """Publish (WHIP) or watch (WHEP) with ``peer``; apply the answer if 201."""
    path = "whep" if watch else "whip"
    offer = await make_offer(peer, watch=watch)
    response = await post_offer(http, f"{base}/{path}/{room}", offer, token)
    if response.status == 201:
        await peer.pc.setRemoteDescription(
            RTCSessionDescription(sdp=response.text, type="answer")
        )
    return response


def whip_server(
    *options: str, log: Path | None = None
) -> contextlib.AbstractAsyncContextManager[RunningExample]:
    """examples/whip_sfu.py with the test host key; logs to ``log`` if given."""
    return run_example(
        ROOT / "examples" / "whip_sfu.py",
        "--bind=127.0.0.1",
        f"--host-key={HOST_KEY}",
        "--log-level=WARNING",
        *options,
        log=log,
    )


def without_known_codecs(sdp: str) -> str:
    """``sdp`` with every codec renamed to one nobody knows (rtx aside)."""
    return re.sub(r"(a=rtpmap:\d+ )(?!rtx/)", r"\1X-", sdp)
