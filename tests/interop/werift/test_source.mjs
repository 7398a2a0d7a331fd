// The media werift publishes in pysfu's interop tests: a gst-launch-1.0
// pipeline (a scrolling SMPTE pattern in VP8, a 440 Hz tone in Opus) sends
// RTP to UDP sockets on 127.0.0.1, whose packets go onto werift tracks.

import { spawn } from "node:child_process";
import { createSocket } from "node:dgram";
import { MediaStreamTrack } from "werift";

/** A UDP socket on 127.0.0.1 whose RTP packets go to a new werift track. */
async function rtpInput(kind) {
  const socket = createSocket("udp4");
  await new Promise((resolve) => socket.bind(0, "127.0.0.1", resolve));
  const track = new MediaStreamTrack({ kind });
  socket.on("message", (data) => track.writeRtp(data));
  return { socket, track, port: socket.address().port };
}

/**
 * Start the pipeline; `mtu` is the payloaders' packet size (GStreamer's
 * default is 1400 bytes). `onExit(code)` is called if GStreamer stops on its
 * own. Returns {video, audio} (werift tracks) and stop().
 */
export async function startTestSource(mtu, onExit) {
  const video = await rtpInput("video");
  const audio = await rtpInput("audio");
  const gstreamer = spawn(
    "gst-launch-1.0",
    [
      "-q",
      ...`videotestsrc is-live=true pattern=smpte horizontal-speed=4
        ! video/x-raw,width=640,height=480,framerate=30/1
        ! vp8enc deadline=1 keyframe-max-dist=30 target-bitrate=1000000
        ! rtpvp8pay pt=96 mtu=${mtu} picture-id-mode=15-bit
        ! udpsink host=127.0.0.1 port=${video.port}
        audiotestsrc is-live=true wave=sine freq=440 volume=0.5
        ! audioconvert ! audioresample ! opusenc
        ! rtpopuspay pt=111 mtu=${mtu}
        ! udpsink host=127.0.0.1 port=${audio.port}`.split(/\s+/),
    ],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
  let stopped = false;
  gstreamer.on("exit", (code) => {
    if (!stopped) onExit(code);
  });
  return {
    video: video.track,
    audio: audio.track,
    stop() {
      stopped = true;
      gstreamer.kill("SIGTERM");
      video.socket.close();
      audio.socket.close();
    },
  };
}
