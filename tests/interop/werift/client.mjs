// A werift (https://github.com/shinyoshiaki/werift-webrtc) client of the room
// protocol of examples/ws_sfu.py, written from docs/websocket-protocol.md.
//
//   node client.mjs <room link> <name> [<RTP packet size>]
//
// It joins the room of <room link> (the join_url a host shares), publishes
// the VP8 video and Opus audio of a GStreamer pipeline it runs
// (test_source.mjs: a scrolling test pattern and a 440 Hz tone), and counts the RTP it
// receives from each other participant. It reports on stdout, one JSON object
// a line: {"event": "joined", ...}, {"event": "connection", "state"},
// {"event": "received", "from", "kind", "packets", "frames", "keyframes",
// "width", "height"} each second, {"event": "error", "message"}.
// It stops (and stops GStreamer) on SIGTERM or when the room closes.

import { RTCPeerConnection, RTCRtpCodecParameters } from "werift";
import WebSocket from "ws";
import { startTestSource } from "./test_source.mjs";

const [roomLink, name = "werift", mtu = "1400"] = process.argv.slice(2);
const report = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);

const source = await startTestSource(mtu, (code) =>
  report({ event: "error", message: `gst-launch-1.0 exited (${code})` }),
);

let pc = null; // the one RTCPeerConnection
let stopping = false;
function stop(code = 0) {
  if (stopping) return;
  stopping = true;
  source.stop();
  (pc ? pc.close() : Promise.resolve()).finally(() => process.exit(code));
  setTimeout(() => process.exit(code), 2000).unref();
}
process.on("SIGTERM", () => stop());
process.on("SIGINT", () => stop());

// -- joining --------------------------------------------------------------------

const link = new URL(roomLink);
const room = link.pathname.split("/").pop(); // already percent-encoded
const joinReply = await fetch(new URL(`/api/rooms/${room}/join`, link), {
  method: "POST",
  headers: { "Content-Type": "application/json" },
  body: JSON.stringify({ name }),
});
const grant = await joinReply.json();
if (joinReply.status !== 200) {
  report({ event: "error", message: `join: ${joinReply.status} ${JSON.stringify(grant)}` });
  stop(1);
  await new Promise(() => {}); // exiting
}
report({ event: "joined", participant_id: grant.participant_id });

// --8<-- [start:peer]
pc = new RTCPeerConnection({
  iceServers: grant.ice_servers || [],
  // werift leaves loopback out of its host candidates unless asked.
  iceAdditionalHostAddresses: ["127.0.0.1"],
  iceUseIpv6: false,
  codecs: {
    video: [
      new RTCRtpCodecParameters({
        mimeType: "video/VP8",
        clockRate: 90000,
        rtcpFeedback: [{ type: "nack" }, { type: "nack", parameter: "pli" }],
      }),
    ],
    audio: [new RTCRtpCodecParameters({ mimeType: "audio/opus", clockRate: 48000, channels: 2 })],
  },
});
// --8<-- [end:peer]
pc.connectionStateChange.subscribe((state) => report({ event: "connection", state }));

// -- receiving --------------------------------------------------------------------

const received = new Map(); // "participant kind" -> counts

/** VP8 (RFC 7741): whether this packet starts a key frame, and its size. */
function vp8Start(payload) {
  let offset = 1;
  const x = payload[0] & 0x80;
  const s = payload[0] & 0x10;
  const partition = payload[0] & 0x07;
  if (x) {
    const flags = payload[offset++];
    if (flags & 0x80) offset += payload[offset] & 0x80 ? 2 : 1; // picture id
    if (flags & 0x40) offset += 1; // TL0PICIDX
    if (flags & 0x30) offset += 1; // TID/KEYIDX
  }
  if (!s || partition !== 0) return null;
  const header = payload.subarray(offset);
  if (header[0] & 0x01) return { keyframe: false };
  return {
    keyframe: true,
    width: header.readUInt16LE(6) & 0x3fff,
    height: header.readUInt16LE(8) & 0x3fff,
  };
}

// --8<-- [start:ontrack]
pc.ontrack = ({ track, streams }) => {
  // the stream id is the publishing participant's id
  const from = streams[0] ? streams[0].id : "unknown";
  // --8<-- [end:ontrack]
  const counts = { from, kind: track.kind, packets: 0, frames: 0, keyframes: 0, width: 0, height: 0 };
  received.set(`${from} ${track.kind}`, counts);
  track.onReceiveRtp.subscribe((rtp) => {
    counts.packets += 1;
    if (track.kind !== "video") return;
    if (rtp.header.marker) counts.frames += 1;
    const start = vp8Start(rtp.payload);
    if (start && start.keyframe) {
      counts.keyframes += 1;
      counts.width = start.width;
      counts.height = start.height;
    }
  });
};
setInterval(() => {
  for (const counts of received.values()) report({ event: "received", ...counts });
}, 1000).unref();

// -- signalling ---------------------------------------------------------------------

const ws = new WebSocket(new URL(grant.ws_url, link)); // no Origin header: not a page
const send = (message) => ws.send(JSON.stringify(message));
// the protocol's first message: the join answer's signalling token
ws.on("open", () => send({ type: "hello", token: grant.signalling_token }));
let published = false;

// --8<-- [start:answer]
/** Answer an offer: put back our ICE password, attach the tracks to the
 *  sections the server receives on, and send every candidate in the answer. */
async function answer(redactedSdp) {
  const sdp = redactedSdp.replace(/a=ice-pwd:REDACTED/g, `a=ice-pwd:${grant.ice.password}`);
  await pc.setRemoteDescription({ type: "offer", sdp });
  if (!published) {
    for (const transceiver of pc.getTransceivers()) {
      if (sectionDirection(sdp, transceiver.mid) !== "recvonly") continue;
      const track = transceiver.kind === "video" ? source.video : source.audio;
      transceiver.setDirection("sendonly");
      transceiver.sender.replaceTrack(track); // resolves with the track's first packet
    }
    published = true;
  }
  await pc.setLocalDescription(await pc.createAnswer());
  if (pc.iceGatheringState !== "complete") {
    await new Promise((resolve) => {
      const { unSubscribe } = pc.iceGatheringStateChange.subscribe((state) => {
        if (state === "complete") {
          unSubscribe();
          resolve();
        }
      });
    });
  }
  send({ type: "answer", sdp: pc.localDescription.sdp });
}
// --8<-- [end:answer]

/** The direction attribute of the m-section with a=mid:<mid>. */
function sectionDirection(sdp, mid) {
  for (const section of sdp.split(/\r?\nm=/).slice(1)) {
    if (!new RegExp(`^a=mid:${mid}\\s*$`, "m").test(section)) continue;
    const direction = /^a=(sendrecv|sendonly|recvonly|inactive)\s*$/m.exec(section);
    return direction ? direction[1] : "sendrecv";
  }
  return null;
}

let messages = Promise.resolve(); // one message at a time: answers in order
ws.on("message", (data) => {
  const message = JSON.parse(data.toString());
  messages = messages
    .then(async () => {
      if (message.type === "offer") await answer(message.sdp);
      else if (message.type === "room-closed") stop();
      else if (message.type === "error") report({ event: "error", message: JSON.stringify(message) });
    })
    .catch((error) => report({ event: "error", message: String(error && error.stack) }));
});
ws.on("close", () => stop());
ws.on("error", (error) => report({ event: "error", message: String(error) }));
