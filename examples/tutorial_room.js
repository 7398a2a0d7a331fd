// The browser side of the tutorial's video room (docs/tutorial.md), loaded by
// tutorial_room.html. The lines marked --8<-- delimit what the tutorial shows.

// --8<-- [start:media]
import { join } from "/pysfu-client.js";

const status = (text) => (document.getElementById("status").textContent = text);

// The camera first: joining starts the join credential's clock (30 s), which
// a slow permission prompt must not use up.
const camera = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
document.getElementById("me").srcObject = camera;
// --8<-- [end:media]

// --8<-- [start:join]
let call;
try {
  call = await join({ room: "lobby", stream: camera });
} catch (error) {
  // a JoinError: error.code is the server's reason, e.g. "room_full"
  status(error.code === "room_full" ? "the room is full" : `cannot join: ${error.message}`);
  throw error;
}
// --8<-- [end:join]

// --8<-- [start:events]
// The other person's audio and video arrive in one stream.
call.addEventListener("track", ({ detail }) => {
  document.getElementById("other").srcObject = detail.streams[0];
  status("connected");
});
// Every message from the server, after the client has acted on it.
call.addEventListener("message", ({ detail: message }) => {
  if (message.type === "joined") {
    status(message.participants.length ? "connecting" : "waiting for someone");
  } else if (message.type === "participant-joined") {
    status("connecting");
  } else if (message.type === "participant-left") {
    document.getElementById("other").srcObject = null;
    status("waiting for someone");
  }
});
call.addEventListener("end", ({ detail }) => status(`disconnected (${detail.reason})`));
// --8<-- [end:events]
