// The room page of pysfu's app (pysfu serve, examples/ws_sfu.py). The protocol
// (docs/websocket-protocol.md: an HTTP join backend, then one WebSocket and one
// RTCPeerConnection per participant; the server sends every offer) is spoken
// by pysfu-client.js; this file is the page around it.
//
//   /                 a form to start a room with a host key
//   /new#key=K        creates a room (POST /api/rooms), then opens it as host
//   /r/<room>         joins as a participant; ?role=host joins as the host
//
// Query parameters: name=<display name>, codec=VP8|H264 (what this browser
// sends), relay=1 (use only TURN relay candidates).

import {
  forget,
  join,
  JoinError,
  mayRejoin,
  rejoin,
  rejoinCredential,
  remember,
} from "./pysfu-client.js";

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);

let call = null; // the Call of pysfu-client.js
let pc = null; // its RTCPeerConnection
let joinResponse = null; // the body of POST /api/rooms/<room>/join
let localStream = null;
let joined = false; // "joined" received
let finished = false; // a final status was shown: nothing changes it any more
const participants = new Map(); // participant_id -> {role, name}, others only
const tiles = new Map(); // stream id (= publishing participant id) -> tile
const streamOfTrack = new Map(); // remote track id -> stream id, for stats()
let chatChannel = null; // the data channel the server relays ("pysfu")
const chatLog = []; // every chat line shown, for tests: {from, name, text}
let speaking = { speakers: [], active: null }; // the last "speaking" message
let recording = false; // the last "recording" message: the room is recorded
let roomPath = null; // the room's slug as it appears in a path
let recordings = []; // the host's finished recordings: {name, size, created}
let rejoins = 0; // times the call moved to another node (its node died)
let hostAway = false; // the host went without ending the call ("host-away")
const leaving = new AbortController(); // stops a rejoin when the user leaves

// -- status -----------------------------------------------------------------

const statusHistory = []; // every status shown, for tests

function setStatus(text) {
  if (statusHistory[statusHistory.length - 1] !== text) statusHistory.push(text);
  $("status").textContent = text;
  $("status").classList.toggle("error", text.startsWith("error"));
}

/** What a person can do after each end of the call. */
function nextStep(text) {
  if (text === "host left" || text.startsWith("room closed")) {
    return ["The call has ended.", "Start a new room", "/"];
  }
  if (text === "room full") {
    return ["The room is full: only the host can let more people in.", "Try again", location.href];
  }
  if (text === "left") return ["You left the call.", "Rejoin", location.href];
  if (text.includes("wrong host key") || text.includes("no host key")) {
    return ["This link needs a valid host key. Participants join with the link the host shares, without ?role=host.", "Start a room with a host key", "/"];
  }
  return ["The call could not continue.", "Try again", location.href];
}

/** Show a final status and release everything. */
function finish(text) {
  if (finished) return;
  finished = true;
  setStatus(text);
  teardown();
  if (roomPath) forget(roomPath); // the call is over: nothing to come back to
  // No black tile nor dead controls: say what happened and what to do next.
  for (const id of ["tiles", "controls", "share", "waiting", "chat", "recording-indicator", "host-away"]) $(id).hidden = true;
  $("record").hidden = true; // the host keeps the list of its recordings
  const [explanation, label, href] = nextStep(text);
  $("ended-text").textContent = explanation;
  $("next-step").textContent = label;
  $("next-step").href = href;
  $("room").hidden = false;
  $("ended").hidden = false;
}

const fail = (message) => finish(`error: ${message}`);

/** Derive the status of a call in progress from the current state. */
function refreshStatus() {
  if (finished || !pc) return;
  const state = pc.connectionState;
  // the call restarts ICE on both; it ends itself ("end", reason "failed")
  // if that does not bring the connection back
  if (state === "failed" || state === "disconnected") return setStatus("reconnecting");
  if (!joined) return setStatus("connecting");
  if (hostAway) return setStatus("host reconnecting…");
  if (participants.size === 0) return setStatus("waiting for the participant");
  const flowing = [...tiles.values()].some((tile) =>
    tile.stream.getTracks().some((t) => t.readyState === "live" && !t.muted)
  );
  setStatus(state === "connected" && flowing ? "connected" : "connecting");
}

// -- HTTP -------------------------------------------------------------------

/** POST JSON; resolves to {status, body} (body is {} if not JSON). */
async function postJson(url, body, hostKey) {
  const headers = { "Content-Type": "application/json" };
  if (hostKey) headers.Authorization = `Bearer ${hostKey}`;
  const response = await fetch(url, { method: "POST", headers, body: JSON.stringify(body) });
  return { status: response.status, body: await response.json().catch(() => ({})) };
}

/** The host key from "#key=..." (then kept in sessionStorage and removed from
 *  the address bar) or from sessionStorage. */
function takeHostKey() {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("key");
  if (fromHash) {
    sessionStorage.setItem("pysfu-host-key", fromHash);
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem("pysfu-host-key");
}

/** The single-use host ticket from "#ticket=..." of a room's host_url (removed
 *  from the address bar; it works once, for this room only). */
function takeHostTicket() {
  const ticket = new URLSearchParams(location.hash.slice(1)).get("ticket");
  if (ticket) history.replaceState(null, "", location.pathname + location.search);
  return ticket;
}

// -- pages ------------------------------------------------------------------

function showHome() {
  $("home").hidden = false;
  setStatus("enter the host key to start a room");
  $("new-room").addEventListener("submit", (event) => {
    event.preventDefault();
    location.assign(`/new${location.search}#key=${encodeURIComponent($("host-key").value)}`);
  });
}

async function createRoom() {
  const key = takeHostKey();
  if (!key) return fail("no host key: open /new#key=<host key>");
  setStatus("creating the room");
  const { status, body } = await postJson("/api/rooms", {}, key);
  if (status === 401) return fail("wrong host key");
  if (status !== 201) return fail(body.message || `creating the room failed (HTTP ${status})`);
  // Stay on this origin (the key is in this origin's sessionStorage) and
  // carry our own options (name, codec, relay) over to the room page. In a
  // cluster the room may be placed on another node: go there, with the
  // room's single-use host ticket (#ticket=) instead of the key.
  const hostUrl = new URL(body.host_url, location.href);
  const elsewhere = hostUrl.origin !== location.origin;
  const target = elsewhere
    ? hostUrl
    : new URL(hostUrl.pathname + hostUrl.search, location.origin);
  for (const [name, value] of params) target.searchParams.set(name, value);
  location.replace(target.href);
}

/** A room id as people read it: "🍩🍹" rather than "%F0%9F%8D%A9...". */
function readable(text) {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

async function joinRoom(room) {
  // `room` is the slug as it appears in the path: already percent-encoded.
  document.title = `${readable(room)} · pysfu room`;
  roomPath = room;
  const role = params.get("role") === "host" ? "host" : "participant";
  // A new room's link carries a ticket; a reloaded host page has the rejoin
  // credential of its last join (it gets its room back within the grace).
  const ticket = role === "host" ? takeHostTicket() : null;
  // A reloaded guest's page has the credential of the seat kept for it.
  const hostRejoin = role === "host" && !ticket ? rejoinCredential(room, "host") : null;
  const seatRejoin = role === "participant" ? rejoinCredential(room, "participant") : null;
  let hostKey = role === "host" ? ticket || hostRejoin || takeHostKey() : null;
  $("room").hidden = false;
  if (role === "host" && !hostKey) return fail("no host key: start the room from /new#key=<host key>");
  if (role === "host") showShareLink();
  setStatus("connecting");

  const name = params.get("name") || `Guest-${Math.floor(100 + Math.random() * 900)}`;
  $("local-name").textContent = `${name} (you)`;
  try {
    localStream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
  } catch (error) {
    return fail(`camera or microphone unavailable: ${error.message}`);
  }
  if (finished) return teardown(); // left while the browser asked for permission
  $("local-video").srcObject = localStream;
  enableControls();

  const codec = params.get("codec");
  const joinWith = (key) =>
    join({
      room,
      encoded: true, // the slug as it appears in the path
      role,
      name,
      hostKey: key,
      seatRejoin,
      stream: localStream,
      iceTransportPolicy: params.get("relay") === "1" ? "relay" : "all",
      onPublish: (transceiver) => {
        if (transceiver.receiver.track.kind === "video" && codec) preferCodec(transceiver, codec);
      },
    });
  try {
    try {
      call = await joinWith(hostKey);
    } catch (error) {
      // a stale rejoin credential (another host took over): the host key may do
      if (!(error instanceof JoinError && error.status === 401 && hostKey === hostRejoin)) throw error;
      forget(room);
      hostKey = takeHostKey();
      if (!hostKey) throw error;
      call = await joinWith(hostKey);
    }
  } catch (error) {
    if (finished) return;
    if (!(error instanceof JoinError)) throw error;
    if (error.status === 409 && error.code === "room_full") return finish("room full");
    if (error.status === 401) return fail("wrong host key");
    return fail(error.message);
  }
  if (finished) return call.leave(); // left while joining
  attach(call, codec);
}

/** Follow a (new) call: its tracks, messages, states and end. */
function attach(newCall, codec) {
  call = newCall;
  pc = call.pc;
  joinResponse = call.joinResponse;
  remember(call, roomPath); // a host comes back as host, a guest to its seat
  if (joinResponse.recording && joinResponse.recording.token) showRecordingControls();
  call.addEventListener("track", ({ detail }) => onTrack(detail));
  call.addEventListener("datachannel", ({ detail }) => {
    if (detail.channel.label === "pysfu") openChat(detail.channel);
  });
  call.addEventListener("connectionstatechange", refreshStatus);
  call.addEventListener("message", ({ detail }) => onMessage(detail));
  call.addEventListener("answered", ({ detail }) => {
    if (detail.first && codec) sendVideoWith(codec).catch((e) => console.warn(e));
  });
  call.addEventListener("reconnecting", () => setStatus("reconnecting"));
  call.addEventListener("reconnected", refreshStatus); // back from "reconnecting"
  const thisCall = call;
  call.addEventListener("end", ({ detail }) => {
    if (!finished && mayRejoin(thisCall, detail)) return failover(thisCall, codec);
    onEnd(detail);
  });
  refreshStatus();
}

/** The call's node died (pysfu serve --redis): join the room again through
 *  another node, with the same name and role, showing "reconnecting". The
 *  others' ids change (a new room), so their tiles go until they are back. */
async function failover(ended, codec) {
  pc = null; // refreshStatus leaves "reconnecting" alone until the next call
  joined = false;
  participants.clear();
  for (const id of [...tiles.keys()]) removeTile(id);
  if (chatChannel) chatChannel.close();
  setStatus("reconnecting");
  $("status").classList.add("rejoining");
  let next;
  try {
    next = await rejoin(ended, { signal: leaving.signal });
  } catch (error) {
    $("status").classList.remove("rejoining");
    if (finished) return;
    return fail(`lost the server and could not rejoin: ${error.message}`);
  }
  $("status").classList.remove("rejoining");
  if (finished) return next.leave(); // left meanwhile
  rejoins += 1;
  attach(next, codec);
  if (joinResponse.role === "host") showShareLink(new URL(joinResponse.ws_url).host);
}

/** The call ended without us leaving: say why. */
function onEnd({ reason, code, error, message }) {
  if (reason === "room-closed") return finish(message === "host left" ? "host left" : `room closed: ${message}`);
  if (reason === "lost") return fail("lost the connection to the server");
  if (reason === "closed") {
    return fail(`the server closed the connection (${code})${error ? `: ${error.message}` : ""}`);
  }
  if (reason !== "left") fail(message || reason);
}

function send(message) {
  if (call) call.send(message);
}

// -- signalling -------------------------------------------------------------

// The host sees who was admitted but has not connected (a squatter holding a
// seat, say) and may refuse them: their seat is freed at once.
function showWaiting(waiting) {
  const list = $("waiting-list");
  list.replaceChildren();
  for (const w of waiting) {
    const item = document.createElement("li");
    item.textContent = `${w.name} `;
    const refuse = document.createElement("button");
    refuse.type = "button";
    refuse.textContent = "Refuse";
    refuse.dataset.participant = w.participant_id;
    refuse.onclick = () => send({ type: "refuse", participant_id: w.participant_id });
    item.append(refuse);
    list.append(item);
  }
  $("waiting").hidden = waiting.length === 0;
}

function onMessage(message) {
  if (finished) return;
  switch (message.type) {
    case "waiting": // to the host: admitted, not connected yet
      showWaiting(message.participants);
      return;
    case "joined":
      joined = true;
      document.querySelector(".tile.local").dataset.participant = message.participant_id;
      for (const p of message.participants) {
        if (p.participant_id !== message.participant_id) participants.set(p.participant_id, p);
      }
      break;
    case "offer": // answered by the call
      break;
    case "host-away": // the host reloads or lost its connection: the room waits
      hostAway = true;
      $("host-away").hidden = false;
      break;
    case "participant-joined":
      if (message.role === "host") {
        hostAway = false;
        $("host-away").hidden = true;
      }
      participants.set(message.participant_id, message);
      relabelTile(message.participant_id);
      break;
    case "participant-left":
      participants.delete(message.participant_id);
      removeTile(message.participant_id);
      break;
    case "speaking":
      showSpeaking(message);
      return;
    case "recording":
      showRecording(message.on);
      return;
    case "room-closed": // the call ends: onEnd
      return;
    case "error":
      if (message.code === "data_too_large" || message.code === "data_rate_limited") {
        addChatLine({ from: null, name: null, text: `not delivered: ${message.message}` }, "notice");
        return;
      }
      if (message.code === "not_host" || message.code === "recording_disabled") {
        addChatLine({ from: null, name: null, text: `not recorded: ${message.message}` }, "notice");
        return;
      }
      console.warn("server error", message.code, message.message); // fatal with a close only
      return;
  }
  refreshStatus();
}

const isCodec = (codec, name) => codec.mimeType.toLowerCase() === `video/${name}`.toLowerCase();

/** Put the codec `name` (VP8, H264, ...) first in what the answer lists. */
function preferCodec(transceiver, name) {
  const { codecs } = RTCRtpReceiver.getCapabilities("video");
  const chosen = codecs.filter((c) => isCodec(c, name));
  if (!chosen.length) return console.warn(`this browser has no ${name}`);
  transceiver.setCodecPreferences([...chosen, ...codecs.filter((c) => !isCodec(c, name))]);
}

/** Make the camera's sender use `name`. Chrome sends with the offer's first
 *  codec whatever the answer lists, so the encoding's codec is set too. */
async function sendVideoWith(name) {
  const sender = pc.getSenders().find((s) => s.track && s.track.kind === "video");
  if (!sender) return;
  const parameters = sender.getParameters();
  const codec = (parameters.codecs || []).find((c) => isCodec(c, name));
  if (!codec) return console.warn(`${name} was not negotiated`);
  parameters.encodings.forEach((encoding) => (encoding.codec = codec));
  await sender.setParameters(parameters);
}

// -- remote tiles -------------------------------------------------------------

function onTrack({ track, streams }) {
  const stream = streams[0]; // its id is the publishing participant's id
  if (!stream) return;
  streamOfTrack.set(track.id, stream.id);
  if (!tiles.has(stream.id)) addTile(stream);
  track.onmute = refreshStatus;
  track.onunmute = refreshStatus;
  refreshStatus();
}

function addTile(stream) {
  const figure = document.createElement("figure");
  figure.className = "tile remote";
  figure.dataset.participant = stream.id;
  markSpeaking(figure, stream.id);
  const video = document.createElement("video");
  video.autoplay = true;
  video.playsInline = true;
  video.srcObject = stream; // audio and video of that participant
  const caption = document.createElement("figcaption");
  figure.append(video, caption);
  // Tiles stay in the order people joined, whichever tracks arrive first.
  const order = [...participants.keys()];
  const rank = (id) => (order.includes(id) ? order.indexOf(id) : order.length);
  const remote = [...$("tiles").querySelectorAll(".tile.remote")];
  const later = remote.find((tile) => rank(tile.dataset.participant) > rank(stream.id));
  if (later) later.before(figure);
  else $("tiles").append(figure);
  tiles.set(stream.id, { figure, caption, stream });
  relabelTile(stream.id);
  // Tracks are removed by a later offer (the participant stopped publishing).
  stream.onremovetrack = () => {
    if (stream.getTracks().length === 0) removeTile(stream.id);
    refreshStatus();
  };
  video.play().catch(() => {
    // Autoplay with sound refused: play muted and let the user unmute.
    video.muted = true;
    video.play().catch(() => {});
    const unmute = document.createElement("button");
    unmute.className = "unmute";
    unmute.textContent = "Click to hear";
    unmute.onclick = () => {
      video.muted = false;
      unmute.remove();
    };
    figure.append(unmute);
  });
}

function relabelTile(id) {
  const tile = tiles.get(id);
  const who = participants.get(id);
  if (tile) tile.caption.textContent = who ? who.name || who.role : "…";
}

function removeTile(id) {
  const tile = tiles.get(id);
  if (!tile) return;
  tile.figure.remove();
  tiles.delete(id);
}

// -- chat ---------------------------------------------------------------------
// The server stamps every message with its sender: text arrives as
// {"from": id, "name": name, "data": text} ("from": null for the server).

function openChat(channel) {
  chatChannel = channel;
  const enable = (on) => {
    $("chat-input").disabled = !on;
    $("chat-send").disabled = !on;
  };
  channel.onopen = () => enable(true);
  channel.onclose = () => enable(false);
  if (channel.readyState === "open") enable(true);
  channel.onmessage = ({ data }) => {
    if (typeof data !== "string") return; // binary: not used by this page
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    if (typeof message.data !== "string") return;
    addChatLine({ from: message.from, name: message.name, text: message.data });
  };
  $("chat-form").onsubmit = (event) => {
    event.preventDefault();
    const text = $("chat-input").value;
    if (!text.trim() || chatChannel.readyState !== "open") return;
    chatChannel.send(text);
    addChatLine({ from: joinResponse.participant_id, name: "you", text }, "own");
    $("chat-input").value = "";
  };
}

/** Append one line; user text only ever goes in as textContent. */
function addChatLine(line, kind = "") {
  chatLog.push(line);
  const item = document.createElement("li");
  if (kind) item.className = kind;
  if (kind !== "notice") {
    const who = document.createElement("span");
    who.className = "from";
    who.textContent = line.from === null ? "server" : line.name || line.from;
    item.append(who);
  }
  item.append(document.createTextNode(line.text));
  $("chat-log").append(item);
  $("chat-log").scrollTop = $("chat-log").scrollHeight;
}

// -- who speaks -----------------------------------------------------------------

function showSpeaking(message) {
  speaking = { speakers: message.speakers, active: message.active };
  document.querySelectorAll(".tile").forEach((figure) => markSpeaking(figure, figure.dataset.participant));
}

function markSpeaking(figure, id) {
  figure.classList.toggle("speaking", speaking.speakers.some((s) => s.participant_id === id));
  figure.classList.toggle("active-speaker", id !== undefined && speaking.active === id);
}

// -- controls -----------------------------------------------------------------

function enableControls() {
  const toggle = (button, kind, on, off) => {
    button.disabled = false;
    button.onclick = () => {
      const track = localStream.getTracks().find((t) => t.kind === kind);
      track.enabled = !track.enabled;
      button.textContent = track.enabled ? on : off;
    };
  };
  toggle($("mute-audio"), "audio", "Mute microphone", "Unmute microphone");
  toggle($("mute-video"), "video", "Turn camera off", "Turn camera on");
  $("leave").disabled = false;
  // the host's Leave ends the call for everyone (a reload does not)
  if (params.get("role") === "host") $("leave").textContent = "End call";
  $("leave").onclick = () => {
    leaving.abort();
    if (call) call.leave();
    finish("left");
  };
}

function showShareLink(host = location.host) {
  // Participants use the same page without "?role=host" (nor our options).
  // Shown and copied with its emoji: browsers and chat apps take them as they are.
  // After a failover the room lives on another node: `host` is that one's.
  const joinUrl = `${location.protocol}//${host}${readable(location.pathname)}`;
  $("share").hidden = false;
  $("join-link").value = joinUrl;
  $("copy-link").onclick = async () => {
    try {
      await navigator.clipboard.writeText(joinUrl);
      $("copy-link").textContent = "Link copied";
    } catch {
      $("join-link").select(); // let the user copy it by hand
      $("copy-link").textContent = "Copy the selected link";
    }
  };
}

function teardown() {
  if (call && !call.ended) call.leave();
  if (chatChannel) chatChannel.close();
  $("chat-input").disabled = $("chat-send").disabled = true;
  if (localStream) localStream.getTracks().forEach((t) => t.stop());
  for (const id of [...tiles.keys()]) removeTile(id);
  for (const id of ["mute-audio", "mute-video", "leave"]) $(id).disabled = true;
}

// -- recording (pysfu serve --record-dir) --------------------------------------

// Everyone sees while the room is recorded; the host (whose join answer has
// a recording token) has the Record button and downloads the recordings.

function showRecording(on) {
  const stopped = recording && !on;
  recording = on;
  $("recording-indicator").hidden = !on;
  $("record").textContent = on ? "Stop recording" : "Record";
  $("record").classList.toggle("on", on);
  $("record").disabled = false;
  if (stopped && joinResponse.recording.token) awaitNewRecordings();
}

function showRecordingControls() {
  $("recording").hidden = false;
  $("record").onclick = () => {
    $("record").disabled = true; // until the server says what happened
    send({ type: "record", on: !recording });
  };
  refreshRecordings().catch((e) => console.warn(e));
}

/** GET a recordings URL with the host's token. */
function fetchRecording(url) {
  return fetch(url, { headers: { Authorization: `Bearer ${joinResponse.recording.token}` } });
}

const recordingsUrl = () => `/api/rooms/${roomPath}/recordings`;

async function refreshRecordings() {
  const response = await fetchRecording(recordingsUrl());
  if (!response.ok) throw new Error(`listing the recordings failed (HTTP ${response.status})`);
  recordings = (await response.json()).recordings;
  const list = $("recordings-list");
  list.replaceChildren();
  for (const r of recordings) {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.href = `${recordingsUrl()}/${encodeURIComponent(r.name)}`;
    const started = /^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z-/.exec(r.name);
    const when = started ? `${started[1]}-${started[2]}-${started[3]} ${started[4]}:${started[5]} UTC` : r.name;
    link.textContent = `${r.participant || "?"}, ${when}`;
    link.title = r.name;
    link.download = r.name;
    link.onclick = (event) => { // a link sends no Authorization header: fetch it
      event.preventDefault();
      download(r.name).catch((e) => console.warn(e));
    };
    const size = document.createElement("span");
    size.className = "size";
    size.textContent = `${(r.size / 1e6).toFixed(1)} MB`;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "delete";
    remove.textContent = "Delete";
    remove.setAttribute("aria-label", `Delete the recording ${link.textContent}`);
    remove.onclick = () => {
      if (!confirm(`Delete the recording "${link.textContent}"? This cannot be undone.`)) return;
      remove.disabled = true;
      deleteRecording(r.name).catch((e) => {
        remove.disabled = false;
        console.warn(e);
      });
    };
    item.append(link, size, remove);
    list.append(item);
  }
  $("recordings-empty").textContent = recordings.length ? "Recordings:" : "No recordings yet.";
}

/** The files of a stopped recording appear once converted: look a while. */
async function awaitNewRecordings() {
  const before = recordings.length;
  for (let i = 0; i < 60 && recordings.length === before && !recording; i++) {
    await new Promise((resolve) => setTimeout(resolve, 2000));
    await refreshRecordings().catch((e) => console.warn(e));
  }
}

/** DELETE a recording (host only), then list them again. */
async function deleteRecording(name) {
  const response = await fetch(`${recordingsUrl()}/${encodeURIComponent(name)}`, {
    method: "DELETE",
    headers: { Authorization: `Bearer ${joinResponse.recording.token}` },
  });
  if (!response.ok && response.status !== 404) throw new Error(`delete failed (HTTP ${response.status})`);
  await refreshRecordings();
}

async function download(name) {
  const response = await fetchRecording(`${recordingsUrl()}/${encodeURIComponent(name)}`);
  if (!response.ok) throw new Error(`download failed (HTTP ${response.status})`);
  const url = URL.createObjectURL(await response.blob());
  const anchor = document.createElement("a");
  anchor.href = url;
  anchor.download = name;
  anchor.click();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

// -- for tests and debugging --------------------------------------------------

/** What this browser receives and sends, from pc.getStats(). */
async function stats() {
  const result = { inbound: [], outbound: [], candidatePair: null };
  if (!pc) return result;
  const report = await pc.getStats();
  const codec = (s) => (report.get(s.codecId) || {}).mimeType || null;
  const candidate = (id) => {
    const c = report.get(id);
    return c && { candidateType: c.candidateType, protocol: c.protocol, address: c.address, port: c.port };
  };
  let pair = null;
  report.forEach((s) => {
    if (s.type === "inbound-rtp") {
      result.inbound.push({
        kind: s.kind,
        mid: s.mid,
        ssrc: s.ssrc,
        participant: streamOfTrack.get(s.trackIdentifier) || null,
        codec: codec(s),
        packetsReceived: s.packetsReceived || 0,
        bytesReceived: s.bytesReceived || 0,
        framesDecoded: s.framesDecoded || 0,
        totalAudioEnergy: s.totalAudioEnergy || 0,
        audioLevel: s.audioLevel || 0,
      });
    } else if (s.type === "outbound-rtp") {
      result.outbound.push({ kind: s.kind, mid: s.mid, codec: codec(s), packetsSent: s.packetsSent || 0, framesEncoded: s.framesEncoded || 0 });
    } else if (s.type === "transport" && s.selectedCandidatePairId) {
      pair = report.get(s.selectedCandidatePairId);
    }
  });
  if (pair) {
    const { state, nominated, localCandidateId, remoteCandidateId } = pair;
    result.candidatePair = { state, nominated, local: candidate(localCandidateId), remote: candidate(remoteCandidateId) };
  }
  return result;
}

window.pysfu = {
  get pc() { return pc; },
  /** ICE restarts the call asked for (its network changed). */
  get iceRestarts() { return call ? call.iceRestarts : 0; },
  get joinResponse() { return joinResponse; },
  status: () => $("status").textContent,
  /** Whether the host went away and the room waits for it ("host-away"). */
  get hostAway() { return hostAway; },
  /** Times the call rejoined through another node (its node died). */
  get rejoins() { return rejoins; },
  statusHistory: () => [...statusHistory],
  stats,
  /** Chat lines shown so far ({from, name, text}); "you" for our own. */
  chat: () => chatLog.map((line) => ({ ...line })),
  /** The participant highlighted as speaking now, or null. */
  get activeSpeaker() { return speaking.active; },
  get speakers() { return speaking.speakers.map((s) => ({ ...s })); },
  /** Whether the server said the room is being recorded. */
  get recording() { return recording; },
  /** The host's finished recordings as last listed ({name, size, created}). */
  recordings: () => recordings.map((r) => ({ ...r })),
  refreshRecordings: () => refreshRecordings(),
  /** Delete one of the host's recordings by name (as listed). */
  deleteRecording: (name) => deleteRecording(name),
  // Simulates a dropped signalling connection (the page reconnects).
  dropSignalling: () => call && call.dropSignalling(),
};

// -- start --------------------------------------------------------------------

// Leaving the page (closing the tab, reloading) the call sends "leave" itself
// (pysfu-client.js), saying it may come back: the others see this tile go at
// once; a host's room waits for it (--host-grace) and its page, reloaded,
// joins as host again with the rejoin credential kept in sessionStorage.

const path = location.pathname;
if (path === "/new") createRoom().catch((error) => fail(error.message));
else if (path.startsWith("/r/")) joinRoom(path.slice(3)).catch((error) => fail(error.message));
else showHome();
