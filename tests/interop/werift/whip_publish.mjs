// werift publishing with WHIP (RFC 9725) into examples/whip_sfu.py.
//
//   node whip_publish.mjs <WHIP endpoint URL> <bearer token> [<RTP packet size>]
//
// It offers one sendonly audio and one sendonly video section (bundled, its
// candidates in the offer), POSTs the offer, applies the answer and sends the
// media of test_source.mjs. It reports on stdout, one JSON object a line:
// {"event": "published", "resource"}, {"event": "connection", "state"},
// {"event": "error", "message"}. SIGTERM DELETEs the session and stops.

import { RTCPeerConnection, RTCRtpCodecParameters } from "werift";
import { startTestSource } from "./test_source.mjs";

const [endpoint, token, mtu = "1400"] = process.argv.slice(2);
const report = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);

const source = await startTestSource(mtu, (code) =>
  report({ event: "error", message: `gst-launch-1.0 exited (${code})` }),
);
let resource = null;
let stopping = false;

const pc = new RTCPeerConnection({
  bundlePolicy: "max-bundle", // the WHIP endpoint takes bundled sections only
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
pc.connectionStateChange.subscribe((state) => report({ event: "connection", state }));

async function stop(code = 0) {
  if (stopping) return;
  stopping = true;
  setTimeout(() => process.exit(code), 3000).unref();
  source.stop();
  if (resource) {
    await fetch(resource, { method: "DELETE", headers: { Authorization: `Bearer ${token}` } }).catch(() => {});
  }
  await pc.close();
  process.exit(code);
}
process.on("SIGTERM", () => stop());
process.on("SIGINT", () => stop());

try {
  pc.addTransceiver(source.audio, { direction: "sendonly" });
  pc.addTransceiver(source.video, { direction: "sendonly" });
  await pc.setLocalDescription(await pc.createOffer());
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
  const response = await fetch(endpoint, {
    method: "POST",
    headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${token}` },
    body: pc.localDescription.sdp,
  });
  const answer = await response.text();
  if (response.status !== 201) throw new Error(`WHIP refused: ${response.status} ${answer.trim()}`);
  resource = new URL(response.headers.get("Location"), endpoint).href;
  await pc.setRemoteDescription({ type: "answer", sdp: answer });
  report({ event: "published", resource });
} catch (error) {
  report({ event: "error", message: String((error && error.stack) || error) });
}
