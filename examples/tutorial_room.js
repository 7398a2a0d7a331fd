// The browser side of the tutorial's video room (docs/tutorial.md), loaded by
// tutorial_room.html. The lines marked --8<-- delimit what the tutorial shows.

// --8<-- [start:media]
const status = (text) => (document.getElementById("status").textContent = text);

// The camera first: joining starts the join credential's clock (30 s), which
// a slow permission prompt must not use up.
const camera = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
document.getElementById("me").srcObject = camera;

const pc = new RTCPeerConnection();
pc.ontrack = ({ streams }) => {
  document.getElementById("other").srcObject = streams[0];
  status("connected");
};
// --8<-- [end:media]

// --8<-- [start:join]
const response = await fetch("/join", { method: "POST" });
if (!response.ok) {
  status("the room is full");
  throw new Error("the room is full");
}
// {participant_id, ice_password, signalling_token}
const grant = await response.json();
// --8<-- [end:join]

// --8<-- [start:websocket]
const ws = new WebSocket(`ws://${location.host}/ws/${grant.participant_id}`);
// The first message proves the socket is ours: the token from /join.
ws.onopen = () => ws.send(JSON.stringify({ type: "hello", token: grant.signalling_token }));
const send = (message) => {
  if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
};
pc.onicecandidate = ({ candidate }) =>
  send({
    type: "candidate",
    candidate: candidate ? candidate.candidate : "", // "" ends the candidates
    sdp_mid: candidate ? candidate.sdpMid : null,
    sdp_mline_index: candidate ? candidate.sdpMLineIndex : null,
  });

// One message at a time: an offer must be answered before the next one.
let queue = Promise.resolve();
ws.onmessage = ({ data }) => {
  queue = queue.then(() => handle(JSON.parse(data)));
};
ws.onclose = () => status("disconnected");
// --8<-- [end:websocket]

// --8<-- [start:handle]
async function handle(message) {
  if (message.type === "joined") {
    status(message.participants.length ? "connecting" : "waiting for someone");
  } else if (message.type === "offer") {
    // The server leaves its ICE password out of its offers: put back ours.
    const sdp = message.sdp.replaceAll(
      "a=ice-pwd:REDACTED",
      `a=ice-pwd:${grant.ice_password}`,
    );
    await pc.setRemoteDescription({ type: "offer", sdp });
    publish(sdp);
    await pc.setLocalDescription();
    send({ type: "answer", sdp: pc.localDescription.sdp });
  } else if (message.type === "participant-joined") {
    status("connecting");
  } else if (message.type === "participant-left") {
    document.getElementById("other").srcObject = null;
    status("waiting for someone");
  } else if (message.type === "error") {
    console.warn("the server refused a message:", message.code, message.message);
  }
}
// --8<-- [end:handle]

// --8<-- [start:publish]
// The server offers to receive ("a=recvonly") on the sections we may publish
// on: send the camera and the microphone there.
function publish(sdp) {
  for (const section of sdp.split("\r\nm=").slice(1)) {
    if (!section.includes("\r\na=recvonly")) continue;
    const mid = /\r\na=mid:(\S+)/.exec(section)[1];
    const transceiver = pc.getTransceivers().find((t) => t.mid === mid);
    const kind = section.split(" ")[0]; // "audio" or "video"
    if (transceiver.sender.track) continue; // published already
    transceiver.sender.replaceTrack(camera.getTracks().find((t) => t.kind === kind));
    transceiver.direction = "sendonly";
  }
}
// --8<-- [end:publish]
