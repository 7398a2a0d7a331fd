"""What a user of any browser observes, asserted the same way for each engine.

A receiver (a Chromium ``harness.User`` or a :class:`~.firefox.FirefoxUser`:
anything with ``name``, ``stats()`` and ``evaluate()``) must keep decoding the
sender's video (frames decoded keep growing, the picture has a size, is not a
flat colour and changes) and receiving its audio with energy in it. The
server's ``/metrics`` must show no packet dropped for its size.
"""

from __future__ import annotations

import json
import statistics
import urllib.request
from typing import Any, Protocol

from .browser.harness import wait_for

#: Each remote tile's picture, scaled down to 64x48 luma values, by the
#: publishing participant's id (the tile's data-participant).
REMOTE_PICTURES = """(() => {
  const pictures = {};
  for (const figure of document.querySelectorAll(".tile.remote")) {
    const video = figure.querySelector("video");
    if (!video || !video.videoWidth) continue;
    const canvas = document.createElement("canvas");
    canvas.width = 64;
    canvas.height = 48;
    const context = canvas.getContext("2d");
    context.drawImage(video, 0, 0, canvas.width, canvas.height);
    const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
    const luma = [];
    for (let i = 0; i < data.length; i += 4) {
      const [r, g, b] = [data[i], data[i + 1], data[i + 2]];
      luma.push(Math.round(0.299 * r + 0.587 * g + 0.114 * b));
    }
    pictures[figure.dataset.participant] = {
      width: video.videoWidth, height: video.videoHeight, luma,
    };
  }
  return pictures;
})()"""

#: Below this spread of luma values a picture is a flat colour (a detailed
#: picture spreads over tens of levels, a flat one over a few of noise).
MIN_LUMA_SPREAD = 12.0
#: A picture has changed when its pixels moved by this much on average.
MIN_LUMA_CHANGE = 1.0


class Receiver(Protocol):
    name: str

    async def stats(self) -> dict[str, Any]: ...

    async def evaluate(self, expression: str) -> Any: ...


def inbound(stats: dict[str, Any], kind: str, sender: str) -> dict[str, Any] | None:
    """The inbound RTP stream of ``kind`` published by participant ``sender``."""
    for entry in stats["inbound"]:
        if entry["kind"] == kind and entry["participant"] == sender:
            return dict(entry)
    return None


async def picture_of(receiver: Receiver, sender: str) -> dict[str, Any] | None:
    pictures: dict[str, Any] = await receiver.evaluate(REMOTE_PICTURES)
    return pictures.get(sender)


def luma_spread(picture: dict[str, Any]) -> float:
    return statistics.pstdev(picture["luma"])


def luma_change(before: dict[str, Any], after: dict[str, Any]) -> float:
    pairs = zip(before["luma"], after["luma"], strict=True)
    return sum(abs(a - b) for a, b in pairs) / len(before["luma"])


async def assert_sees_and_hears(
    receiver: Receiver, sender: str, sender_name: str
) -> dict[str, Any]:
    """``receiver`` keeps decoding ``sender``'s video, whose picture is
    detailed and moving, and receives its audio with sound in it.

    Returns the receiver's latest inbound video stats.
    """
    latest: dict[str, Any] = {}
    what = f"{receiver.name} to receive {sender_name}'s media"

    async def streams() -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        latest.update(await receiver.stats())
        return inbound(latest, "video", sender), inbound(latest, "audio", sender)

    def details() -> str:
        return f"{receiver.name}'s stats: {json.dumps(latest, indent=1)}"

    async def started() -> Any:
        video, audio = await streams()
        ok = video and audio and video["framesDecoded"] and audio["packetsReceived"]
        return (video, audio) if ok else None

    video0, audio0 = await wait_for(started, what, details=details)

    async def rising() -> dict[str, Any] | None:
        video, audio = await streams()
        ok = (
            video
            and audio
            and video["framesDecoded"] > video0["framesDecoded"] + 10
            and audio["packetsReceived"] > audio0["packetsReceived"] + 10
            and audio["totalAudioEnergy"] > 0
        )
        return video if ok else None

    video: dict[str, Any] = await wait_for(
        rising, f"{what} to keep flowing", details=details
    )

    seen: dict[str, Any] = {}

    async def detailed() -> dict[str, Any] | None:
        picture = await picture_of(receiver, sender)
        seen["picture"] = picture
        if picture and picture["width"] and luma_spread(picture) >= MIN_LUMA_SPREAD:
            return picture
        return None

    def describe() -> str:
        picture = seen.get("picture")
        if not picture:
            return "no picture in the tile"
        size = f"{picture['width']}x{picture['height']}"
        return f"{size}, luma spread {luma_spread(picture):.1f}"

    first = await wait_for(
        detailed, f"{receiver.name} to show {sender_name}'s picture", details=describe
    )

    async def moved() -> bool:
        picture = await picture_of(receiver, sender)
        seen["change"] = picture and luma_change(first, picture)
        return bool(picture and luma_change(first, picture) >= MIN_LUMA_CHANGE)

    await wait_for(
        moved,
        f"{sender_name}'s picture to move on {receiver.name}'s page",
        details=lambda: f"mean luma change {seen.get('change')}",
    )
    return video


def scrape_metrics(base_url: str) -> dict[str, float]:
    """The server's ``/metrics``: ``name[label values...]`` -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    from .browser.harness import METRICS_TOKEN

    request = urllib.request.Request(
        base_url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    return {
        sample.name + "".join(f"[{v}]" for v in sample.labels.values()): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def dropped_for_size(metrics: dict[str, float]) -> float | None:
    """Packets the server did not forward because of their size, or None if
    the server does not count them apart from other drops.

    Drops for other reasons (a subscriber not connected yet, or slow) are no
    fault of the client; the ones for size have a metric of their own
    (``pysfu_packets_dropped_too_large_total``) or a label naming the size.
    """
    by_size = [
        value
        for key, value in metrics.items()
        if key.startswith("pysfu_packets_dropped")
        and not key.endswith("_created")
        and any(word in key.lower() for word in ("too_large", "size", "mtu"))
    ]
    return sum(by_size) if by_size else None


def assert_none_dropped_for_size(base_url: str) -> dict[str, float]:
    """The server forwarded video and dropped no packet for its size."""
    metrics = scrape_metrics(base_url)
    assert metrics["pysfu_packets_forwarded_total[video]"] > 0, metrics
    by_size = dropped_for_size(metrics)
    assert by_size == 0, metrics  # (None: the server does not count them)
    return metrics
