// pysfu-client.js: the browser side of pysfu's WebSocket protocol
// (docs/websocket-protocol.md) in one ES module, no dependencies. The app
// serves it at /static/pysfu-client.js; pysfu-client.d.ts declares its types.
//
//   import { join } from "/static/pysfu-client.js";
//   const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
//   const call = await join({ room, name: "Ada", stream });   // throws JoinError
//   call.addEventListener("track", ({ detail }) => show(detail.streams[0]));
//   call.addEventListener("end", ({ detail }) => console.log(detail.reason));
//
// It joins over HTTP (POST /api/rooms/<room>/join), opens the WebSocket and
// says hello with the signalling token, answers every offer (putting back the
// ICE password the offers leave out, publishing `stream` on the sections the
// server receives on), trickles candidates, resumes the session after a
// dropped socket, asks for an ICE restart when the network changes (nothing
// received for 1.5 s, ICE "disconnected" for 0.5 s, or "failed"), and leaves
// when the page goes away
// (saying it may come back: a host's room then waits for it, a guest's seat
// is kept for it, see remember). When the server offers to receive simulcast
// (pysfu serve --simulcast: a=simulcast:recv q;h;f), each layer gets explicit
// encoding parameters (SIMULCAST_LAYERS). In a cluster
// (pysfu serve --redis), rejoin(call) joins an ended call's room again
// through another node when the call's node died.

/** The join backend refused: `status` (HTTP), `code` (e.g. "room_full"). */
export class JoinError extends Error {
  constructor(status, code, message) {
    super(message || code || `joining failed (HTTP ${status})`);
    this.name = "JoinError";
    this.status = status;
    this.code = code || null;
  }
}

/**
 * The encoding parameters given to each simulcast layer (by rid) when the
 * server offers to receive simulcast. Left to itself, Chromium gives a
 * 1280x720 camera's layers fixed targets of about 75/250/920 kbit/s and its
 * VP8 encoder drops most frames of a detailed picture at those rates (1.4 to
 * 7 fps per layer on the WAN bed). Explicit limits let each layer take what
 * it needs, at 30 frames a second. Override with the join option
 * `simulcastLayers`.
 */
export const SIMULCAST_LAYERS = Object.freeze({
  q: Object.freeze({ scaleResolutionDownBy: 4, maxBitrate: 300_000, maxFramerate: 30 }),
  h: Object.freeze({ scaleResolutionDownBy: 2, maxBitrate: 700_000, maxFramerate: 30 }),
  f: Object.freeze({ scaleResolutionDownBy: 1, maxBitrate: 1_500_000, maxFramerate: 30 }),
});

/** mid -> direction attribute of each m-section of an SDP. */
function directionsOf(sdp) {
  const directions = new Map();
  for (const section of sdp.split(/\r?\nm=/).slice(1)) {
    const mid = /^a=mid:(\S+)/m.exec(section);
    const direction = /^a=(sendrecv|sendonly|recvonly|inactive)\s*$/m.exec(section);
    if (mid) directions.set(mid[1], direction ? direction[1] : "sendrecv");
  }
  return directions;
}

/** One participant's call: its peer connection and signalling. */
export class Call extends EventTarget {
  constructor(joinResponse, options) {
    super();
    this.joinResponse = joinResponse;
    this.participantId = joinResponse.participant_id;
    this.stream = options.stream || null;
    this.ended = false;
    this._options = options;
    this._ws = null;
    this._session = null; // {resume_token, reconnect_grace}
    // whether the server answered the open socket's hello or resume with a
    // session (its token is then the one to resume with next)
    this._confirmed = false;
    // the signalling renewed for the current ICE outage (once per outage)
    this._renewed = false;
    this._lastError = null;
    this._published = false;
    this._videoSenders = []; // published video: simulcast layers set after the answer
    this._queue = Promise.resolve(); // messages handled one at a time
    this.pc = new RTCPeerConnection({
      iceServers: joinResponse.ice_servers || [],
      iceTransportPolicy: options.iceTransportPolicy || "all",
    });
    this.pc.onicecandidate = ({ candidate: c }) =>
      this.send(c // null ends trickling: sent as ""
        ? { type: "candidate", candidate: c.candidate, sdp_mid: c.sdpMid, sdp_mline_index: c.sdpMLineIndex }
        : { type: "candidate", candidate: "", sdp_mid: null, sdp_mline_index: null });
    this.pc.ontrack = (event) => this._emit("track", { track: event.track, streams: event.streams });
    this.pc.ondatachannel = ({ channel }) => this._emit("datachannel", { channel });
    this.pc.onconnectionstatechange = () => {
      this._emit("connectionstatechange", { state: this.pc.connectionState });
      if (this.pc.connectionState === "failed") this._failing();
      else if (this.pc.connectionState === "connected") this._recovered();
    };
    // A changed network (Wi-Fi to cellular) shows as ICE "disconnected", then
    // "failed": the call asks the server for an ICE restart (see restartIce).
    this.iceRestarts = 0;
    this._restartPending = false; // a restart asked for, its offer not come yet
    this._iceTimer = null;
    this._failTimer = null;
    this.pc.oniceconnectionstatechange = () => {
      const state = this.pc.iceConnectionState;
      if (state === "connected" || state === "completed") this._renewed = false;
      this._watchIce();
    };
    // Chromium calls a dead path "disconnected" only 5-7 s after the last
    // packet; a connection on which packets stopped arriving (the server
    // sends media, reports or feedback several times a second) asks sooner.
    this._inbound = { bytes: -1, media: 0, since: 0, flowing: false };
    const stallAfter = options.restartIceOnStall ?? 1500;
    this._stallTimer = stallAfter > 0 ? setInterval(() => this._watchInbound(stallAfter), 250) : null;
    if (options.leaveOnPageHide !== false) {
      // A page cannot tell a reload from a closing tab: it leaves saying it
      // may come back, so a host's room waits for it (the host grace).
      this._onPageHide = () => this.leave({ rejoin: true });
      addEventListener("pagehide", this._onPageHide);
    }
    this._open({ type: "hello", token: joinResponse.signalling_token });
  }

  /** Send a protocol message (dropped while the socket is not open). */
  send(message) {
    if (this._ws && this._ws.readyState === WebSocket.OPEN) this._ws.send(JSON.stringify(message));
  }

  /**
   * Ask the server for an ICE restart: it sends an offer with fresh ICE
   * credentials, answered with fresh ones of this browser's (JSEP), on the
   * paths the network has now. DTLS and SRTP are kept. Called by the call
   * itself when nothing arrives for `restartIceOnStall` ms (1500), when ICE
   * stays "disconnected" for `restartIceAfter` ms (500) or fails; call it
   * when the page knows the network changed.
   */
  restartIce() {
    if (this.ended) return;
    this.iceRestarts += 1;
    // The signalling's TCP connection has likely died with the old network
    // (or sits in retransmission backoff after an outage): a new socket
    // resumes the session, taking it over, and asks on it (see _open).
    // A socket not open is being reconnected: its resume asks (see _open).
    // Renewed once per outage, and only once the server answered the
    // socket's resume: a token works once, and the answer brings the next
    // (renewing before it came would resume with a spent token and end the
    // call); a socket opened during this outage is on the current network.
    this._restartPending = true;
    const open = this._ws && this._ws.readyState === WebSocket.OPEN;
    if (open && this._session && this._confirmed && !this._renewed) {
      this._renewed = true;
      this._renewSignalling();
    } else this.send({ type: "restart_ice" });
    this._emit("icerestart", { count: this.iceRestarts });
    // no better in a while (the request or its offer lost, the network still
    // down): ask again
    clearTimeout(this._iceTimer);
    this._iceTimer = setTimeout(() => this._watchIce(true), this._options.restartIceRetry ?? 3000);
  }

  _watchIce(retry = false) {
    clearTimeout(this._iceTimer);
    this._iceTimer = null;
    if (this.ended) return;
    const state = this.pc.iceConnectionState;
    if (state === "failed" || (retry && state === "disconnected")) this.restartIce();
    else if (state === "disconnected") {
      this._iceTimer = setTimeout(() => this.restartIce(), this._options.restartIceAfter ?? 500);
    }
  }

  async _watchInbound(stallAfter) {
    const state = this.pc.iceConnectionState;
    if (this.ended || this._restartPending || (state !== "connected" && state !== "completed")) {
      this._inbound.bytes = -1; // (re)start counting once connected again
      return;
    }
    let bytes = 0;
    let media = 0;
    (await this.pc.getStats()).forEach((s) => {
      if (s.type === "transport") bytes += s.bytesReceived || 0;
      else if (s.type === "inbound-rtp") media += s.packetsReceived || 0;
    });
    const seen = this._inbound;
    const now = performance.now();
    if (bytes !== seen.bytes) {
      // a stall counts only after media arrived: when the others stop
      // sending, a call that sends nothing itself receives nothing either
      seen.flowing = seen.bytes >= 0 && media !== seen.media;
      seen.bytes = bytes;
      seen.media = media;
      seen.since = now;
    } else if (seen.flowing && now - seen.since >= stallAfter) {
      seen.flowing = false; // once per stall: restartIce retries by itself
      this.restartIce();
    }
  }

  // A failed connection may still come back with an ICE restart; the call
  // ends only if it has not within `failedAfter` ms (the server gives up
  // after its own consent deadline anyway).
  _failing() {
    if (this._failTimer) return;
    this._failTimer = setTimeout(
      () => this._end("failed", { message: "the connection failed" }),
      this._options.failedAfter ?? 20000,
    );
  }

  _recovered() {
    clearTimeout(this._failTimer);
    this._failTimer = null;
  }

  /** Leave the room: the others see this participant go at once. A host
   *  leaving ends the call for everyone, unless `rejoin` is true (the page
   *  is reloading): then the room waits for the host to join again for the
   *  server's host grace (the others get "host-away"). */
  leave({ rejoin = false } = {}) {
    if (this.ended) return;
    this.send(rejoin ? { type: "leave", rejoin: true } : { type: "leave" });
    this._end("left", { rejoin });
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  // `first` proves the socket is ours (a signalling or resume token), sent as
  // a message because URLs end up in access logs.
  _renewSignalling() {
    const old = this._ws;
    if (old) {
      old.onclose = null;
      old.onmessage = null;
      old.close();
    }
    this._open({ type: "resume", token: this._session.resume_token });
  }

  _open(first, onUnreachable = null) {
    const ws = new WebSocket(new URL(this.joinResponse.ws_url, location.href));
    this._ws = ws;
    this._confirmed = false;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      ws.send(JSON.stringify(first));
      // an ICE restart asked for while the signalling was down, or that is
      // why this socket was opened
      if (first.type === "resume" && this._restartPending) ws.send(JSON.stringify({ type: "restart_ice" }));
      if (first.type === "resume") this._emit("reconnected", {});
    };
    ws.onmessage = (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch (error) {
        this._queue = this._queue.then(() => this._end("error", { message: error.message }));
        return;
      }
      if (message.type === "session" && ws === this._ws) {
        // at once, not behind the queue: a renewal or reconnect meanwhile
        // must resume with this token, the previous one is spent
        this._session = message;
        this._confirmed = true;
      }
      this._queue = this._queue
        .then(() => this._handle(message))
        .catch((error) => this._end("error", { message: error.message }));
    };
    ws.onclose = (event) => {
      if (!opened && onUnreachable) return onUnreachable();
      // queued too, so that a "room-closed" just before the close counts
      this._queue = this._queue.then(() => {
        if (this.ended) return;
        if (this._session && event.code !== 4401) {
          return this._reconnect(Date.now() + this._session.reconnect_grace * 1000, 0);
        }
        this._end("closed", { code: event.code, error: this._lastError });
      });
    };
  }

  // The signalling dropped but media may still flow: the server keeps the
  // seat for reconnect_grace seconds and resumes the session with its token.
  // In a cluster a node that refuses the socket twice in a row is taken for
  // dead at once (nodeGone): its room is re-homed, rejoin() finds it.
  _reconnect(deadline, unreachable) {
    if (this.ended) return;
    const elsewhere = ((this.joinResponse.cluster || {}).nodes || []).length > 0;
    if (elsewhere && unreachable >= 2) return this._end("lost", { nodeGone: true });
    if (Date.now() > deadline) return this._end("lost", { nodeGone: unreachable > 0 });
    this._emit("reconnecting", {});
    this._open({ type: "resume", token: this._session.resume_token }, () =>
      setTimeout(() => this._reconnect(deadline, unreachable + 1), 1000),
    );
  }

  async _handle(message) {
    if (this.ended) return;
    if (message.type === "offer") {
      this._restartPending = false;
      await this._answer(message.sdp);
    }
    else if (message.type === "error") this._lastError = message; // fatal only with a close
    this._emit("message", message);
    if (message.type === "room-closed") this._end("room-closed", { message: message.reason });
  }

  async _answer(redactedSdp) {
    // Offers come without the join's ICE password: the join answer has it.
    // After an ICE restart they carry the server's fresh one as it is.
    const sdp = redactedSdp.replace(/a=ice-pwd:REDACTED/g, `a=ice-pwd:${this.joinResponse.ice.password}`);
    await this.pc.setRemoteDescription({ type: "offer", sdp });
    const first = !this._published;
    if (first) {
      this._publish(sdp);
      this._published = true;
    }
    await this.pc.setLocalDescription(await this.pc.createAnswer());
    // after the answer: Chromium resets encodings set before negotiation
    if (first) for (const sender of this._videoSenders) await this._layer(sender);
    this.send({ type: "answer", sdp: this.pc.localDescription.sdp });
    this._emit("answered", { first });
  }

  /** Attach `stream`'s tracks to the sections the server receives on. */
  _publish(offerSdp) {
    if (!this.stream) return;
    const directions = directionsOf(offerSdp);
    for (const transceiver of this.pc.getTransceivers()) {
      if (directions.get(transceiver.mid) !== "recvonly") continue;
      const kind = transceiver.receiver.track.kind;
      const track = this.stream.getTracks().find((t) => t.kind === kind);
      if (!track || transceiver.sender.track) continue;
      transceiver.sender.replaceTrack(track);
      transceiver.direction = "sendonly";
      if (kind === "video") this._videoSenders.push(transceiver.sender);
      if (this._options.onPublish) this._options.onPublish(transceiver);
    }
  }

  // The offer's a=simulcast:recv gave the sender one encoding per rid (set by
  // the remote description, so they cannot be passed to addTransceiver).
  async _layer(sender) {
    const params = sender.getParameters();
    const encodings = params.encodings || [];
    if (!encodings.some((e) => e.rid)) return; // no simulcast
    const layers = this._options.simulcastLayers || SIMULCAST_LAYERS;
    for (const encoding of encodings) Object.assign(encoding, layers[encoding.rid] || {});
    await sender.setParameters(params);
  }

  _end(reason, detail) {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this._iceTimer);
    clearTimeout(this._failTimer);
    clearInterval(this._stallTimer);
    if (this._onPageHide) removeEventListener("pagehide", this._onPageHide);
    if (this._ws) {
      this._ws.onclose = null;
      this._ws.close();
    }
    this.pc.close();
    this._emit("end", { reason, ...detail });
  }

  /** Simulate a dropped signalling connection (the call resumes it). */
  dropSignalling() {
    if (this._ws) this._ws.close(4000, "dropped for a test");
  }
}

/**
 * Join a room: POST the join request, then open the call. Rejects with
 * {@link JoinError} when the backend refuses (room_full, unauthorized, ...).
 */
export async function join(options) {
  const base = options.base || location.origin;
  const room = options.encoded ? options.room : encodeURIComponent(options.room);
  const headers = { "Content-Type": "application/json" };
  const credential = options.hostKey || options.seatRejoin;
  if (credential) headers.Authorization = `Bearer ${credential}`;
  const response = await fetch(`${base}/api/rooms/${room}/join`, {
    method: "POST",
    headers,
    body: JSON.stringify({ name: options.name || "", role: options.role || "participant" }),
  });
  const body = await response.json().catch(() => ({}));
  if (response.status !== 200) throw new JoinError(response.status, body.error, body.message);
  return new Call(body, options);
}

/** Whether `end` (the detail of a call's "end" event) may mean that the
 *  call's node died, so that rejoin() is worth trying: never after leave()
 *  or the room's closing. */
export function mayRejoin(call, end) {
  const nodes = ((call.joinResponse.cluster || {}).nodes || []).length;
  if (!nodes) return false;
  return end.reason === "lost" || end.reason === "failed" || (end.reason === "closed" && end.code === 1006);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Join the room of an ended call again through the other nodes of its
 * cluster (its join answer lists them): after its node died, the first join
 * that reaches a live node re-creates the room there. Same room, name, role
 * and stream; a host proves itself with the answer's `host_rejoin`
 * credential. Tries the nodes in turn, once a second, for the answer's
 * `rejoin_within` seconds plus 5 (the room's record lives that long), or
 * `options.within`; stops at a final refusal (the room is gone, ...).
 * Resolves to the new Call; rejects with JoinError.
 */
export async function rejoin(previous, options = {}) {
  const answer = previous.joinResponse;
  const cluster = answer.cluster || { nodes: [], rejoin_within: 0 };
  if (!cluster.nodes.length) throw new JoinError(0, "no_other_node", "no other node to rejoin through");
  const within = options.within ?? cluster.rejoin_within + 5;
  const deadline = Date.now() + within * 1000;
  let last = null;
  for (let attempt = 0; Date.now() < deadline; attempt++) {
    if (options.signal && options.signal.aborted) break;
    const base = cluster.nodes[attempt % cluster.nodes.length];
    try {
      return await join({
        ...previous._options,
        room: answer.room,
        encoded: false,
        role: answer.role,
        name: answer.name,
        hostKey: answer.role === "host" ? answer.host_rejoin : null,
        seatRejoin: answer.role === "host" ? null : answer.seat_rejoin,
        base,
      });
    } catch (error) {
      // fetch's TypeError: the node (or the dead one it redirected to while
      // its key lived) did not answer; 5xx: fenced, moving, busy
      if (error instanceof JoinError && error.status < 500) throw error;
      last = error;
    }
    if (attempt % cluster.nodes.length === cluster.nodes.length - 1) await sleep(1000);
  }
  if (last instanceof JoinError) throw last;
  throw new JoinError(0, "rejoin_timeout", `no node took the room back within ${within} s`);
}

const rejoinKey = (room, role = "host") =>
  role === "host" ? `pysfu-host-rejoin:${room}` : `pysfu-seat-rejoin:${room}`;

/** Keep the rejoin credential of a call's join answer (if any) in this
 *  tab's sessionStorage, under `room` (default: the answer's room id), so
 *  that the page can come back after a reload: a host as host
 *  (`host_rejoin`, within the room's host grace), a guest to the seat kept
 *  for it (`seat_rejoin`, within the guests' grace). See rejoinCredential. */
export function remember(call, room = call.joinResponse.room) {
  const answer = call.joinResponse;
  const credential = answer.role === "host" ? answer.host_rejoin : answer.seat_rejoin;
  if (credential) sessionStorage.setItem(rejoinKey(room, answer.role), credential);
}

/** The rejoin credential this tab kept for `room` and `role` ("host" or
 *  "participant"), or null: pass a host's as `hostKey`, a guest's as
 *  `seatRejoin` to join(). Each join replaces it. */
export function rejoinCredential(room, role = "host") {
  return sessionStorage.getItem(rejoinKey(room, role));
}

/** Forget the credentials kept for `room`, of either role (the call ended
 *  for good). */
export function forget(room) {
  sessionStorage.removeItem(rejoinKey(room, "host"));
  sessionStorage.removeItem(rejoinKey(room, "participant"));
}

/** remember() under its first name (it keeps a guest's credential too). */
export const rememberHost = remember;

/** The host rejoin credential this tab kept for `room`, or null: pass it as
 *  `hostKey` to join as host again. It works while the room exists; each
 *  host join replaces it. */
export function hostRejoinCredential(room) {
  return rejoinCredential(room, "host");
}

/** forget() under its first name. */
export const forgetHost = forget;
