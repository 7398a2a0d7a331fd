// Publish the camera and microphone with WHIP (RFC 9725): POST the offer,
// apply the answer, trickle candidates with PATCH, DELETE to stop.
// Open /publish#room=<room>&key=<token> to fill the form (the hash never
// reaches the server).

const $ = (id) => document.getElementById(id);
const hash = new URLSearchParams(location.hash.slice(1));
const state = { pc: null, resource: null, etag: null, token: null, stream: null };

function status(text, error = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
}

function randomRoom() {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

$("room").value = hash.get("room") || randomRoom();
$("token").value = hash.get("key") || hash.get("token") || "";
if (hash.has("key") || hash.has("token")) history.replaceState(null, "", location.pathname);

async function patchCandidate(candidate) {
  // RFC 8840 SDP fragment: which section, then the candidate line
  const fragment = `a=mid:${candidate.sdpMid}\r\na=${candidate.candidate}\r\n`;
  await fetch(state.resource, {
    method: "PATCH",
    headers: {
      "Content-Type": "application/trickle-ice-sdpfrag",
      Authorization: `Bearer ${state.token}`,
      "If-Match": state.etag,
    },
    body: fragment,
  });
}

async function publish(event) {
  event.preventDefault();
  const room = $("room").value.trim();
  state.token = $("token").value.trim();
  $("publish").disabled = true;
  status("starting camera");
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
  } catch (error) {
    status(`no camera: ${error.message}`, true);
    $("publish").disabled = false;
    return;
  }
  $("local-video").srcObject = state.stream;
  const pc = new RTCPeerConnection({ bundlePolicy: "max-bundle" });
  state.pc = pc;
  for (const track of state.stream.getTracks()) pc.addTransceiver(track, { direction: "sendonly" });
  const early = [];
  pc.onicecandidate = ({ candidate }) => {
    if (!candidate || !candidate.candidate) return;
    if (state.resource) patchCandidate(candidate).catch(() => {});
    else early.push(candidate);
  };
  pc.onconnectionstatechange = () => {
    if (pc.connectionState === "connected") status("publishing");
    if (pc.connectionState === "failed") status("connection failed", true);
  };
  await pc.setLocalDescription(await pc.createOffer());
  status("connecting");
  const response = await fetch(`/whip/${encodeURIComponent(room)}`, {
    method: "POST",
    headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${state.token}` },
    body: pc.localDescription.sdp,
  });
  const body = await response.text();
  if (response.status !== 201) {
    status(`refused: ${response.status} ${body.trim()}`, true);
    stopMedia();
    $("publish").disabled = false;
    return;
  }
  state.resource = new URL(response.headers.get("Location"), location.href).href;
  state.etag = response.headers.get("ETag");
  await pc.setRemoteDescription({ type: "answer", sdp: body });
  for (const candidate of early) patchCandidate(candidate).catch(() => {});
  const link = `${location.origin}/r/${encodeURIComponent(room)}`;
  $("room-link").href = link;
  $("room-link").textContent = link;
  $("share").hidden = false;
  $("stop").disabled = false;
}

function stopMedia() {
  if (state.pc) state.pc.close();
  if (state.stream) for (const track of state.stream.getTracks()) track.stop();
  state.pc = null;
  state.stream = null;
}

async function stop() {
  $("stop").disabled = true;
  if (state.resource) {
    await fetch(state.resource, { method: "DELETE", headers: { Authorization: `Bearer ${state.token}` } });
  }
  state.resource = null;
  stopMedia();
  status("stopped");
  $("publish").disabled = false;
}

$("publish-form").addEventListener("submit", (event) => {
  publish(event).catch((error) => {
    status(`error: ${error.message}`, true);
    stopMedia();
    $("publish").disabled = false;
  });
});
$("stop").addEventListener("click", () => stop().catch((error) => status(`error: ${error.message}`, true)));

// For tests and the curious: what this page sends.
window.pysfuWhip = {
  async stats() {
    const result = { outbound: [] };
    if (!state.pc) return result;
    (await state.pc.getStats()).forEach((s) => {
      if (s.type === "outbound-rtp") {
        result.outbound.push({ kind: s.kind, packetsSent: s.packetsSent || 0, framesEncoded: s.framesEncoded || 0 });
      }
    });
    return result;
  },
};
