// A minimal WHEP viewer (RFC 9725 style), run in a page of the server's
// origin: one recvonly audio and one recvonly video section, all candidates
// in the offer (no trickle), the answer applied as is. The picture shows in a
// tile like the room page's (".tile.remote", data-participant="whep") and
// window.whepStats() reports inbound RTP in the shape of window.pysfu.stats().
async (room, token) => {
  const pc = new RTCPeerConnection({ bundlePolicy: "max-bundle" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  pc.addTransceiver("video", { direction: "recvonly" });
  const stream = new MediaStream();
  const figure = document.createElement("figure");
  figure.className = "tile remote";
  figure.dataset.participant = "whep";
  const video = document.createElement("video");
  video.autoplay = true;
  video.srcObject = stream;
  figure.append(video);
  document.body.append(figure);
  pc.ontrack = ({ track }) => {
    stream.addTrack(track);
    video.play().catch(() => {});
  };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") resolve();
    });
  });
  const response = await fetch(`/whep/${encodeURIComponent(room)}`, {
    method: "POST",
    headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${token}` },
    body: pc.localDescription.sdp,
  });
  const answer = await response.text();
  if (response.status !== 201) throw new Error(`WHEP refused: ${response.status} ${answer}`);
  await pc.setRemoteDescription({ type: "answer", sdp: answer });
  window.whepStats = async () => {
    const inbound = [];
    const report = await pc.getStats();
    report.forEach((s) => {
      if (s.type !== "inbound-rtp") return;
      inbound.push({
        kind: s.kind,
        participant: "whep",
        codec: (report.get(s.codecId) || {}).mimeType || null,
        packetsReceived: s.packetsReceived || 0,
        framesDecoded: s.framesDecoded || 0,
        totalAudioEnergy: s.totalAudioEnergy || 0,
      });
    });
    return { inbound, connectionState: pc.connectionState };
  };
  return response.headers.get("Location");
}
