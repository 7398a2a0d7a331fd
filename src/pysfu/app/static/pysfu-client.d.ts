// Types of pysfu-client.js: the browser side of pysfu's WebSocket protocol.

/** The answer of POST /api/rooms/<room>/join (docs/websocket-protocol.md). */
export interface JoinResponse {
  participant_id: string;
  room: string;
  role: "host" | "participant";
  name: string;
  ice: { username_fragment: string; password: string; expires_in: number };
  ice_servers: RTCIceServer[];
  ws_url: string;
  signalling_token: string;
  /** Whether the server records rooms (pysfu serve --record-dir); the host's
   *  answer also has the bearer token of GET /api/rooms/<room>/recordings. */
  recording?: { available: boolean; token?: string };
  /** In a cluster (pysfu serve --redis): the other live nodes' URLs, where
   *  rejoin() goes if this node dies, and for how many seconds the room can
   *  be re-homed after its node's last heartbeat. */
  cluster?: { nodes: string[]; rejoin_within: number };
  /** The host's answer: a credential that joins this room as host again
   *  (after a reload: rememberHost(); in a cluster on any node: rejoin())
   *  for as long as the room exists; each host join replaces the last. */
  host_rejoin?: string | null;
  /** A guest's answer, when the server keeps guests' seats (pysfu serve
   *  --guest-grace): the credential that takes this guest's seat back after
   *  a reload (remember(), then join()'s `seatRejoin`); each join replaces
   *  the last. */
  seat_rejoin?: string;
}

export interface JoinOptions {
  /** The room id, or with `encoded: true` the slug as it appears in a path. */
  room: string;
  encoded?: boolean;
  role?: "host" | "participant";
  /** Shown to the others. */
  name?: string;
  /** A host key or the single-use ticket of a host link (role "host"). */
  hostKey?: string | null;
  /** A guest's rejoin credential (rejoinCredential(room, "participant")):
   *  the seat kept for it after a reload; an invalid one is ignored. */
  seatRejoin?: string | null;
  /** Published on the sections the server offers to receive. */
  stream?: MediaStream | null;
  /** The app's origin; default: this page's. */
  base?: string;
  iceTransportPolicy?: RTCIceTransportPolicy;
  /** Called for each transceiver a track of `stream` was attached to, before
   *  the answer is made (e.g. to call setCodecPreferences). */
  onPublish?: (transceiver: RTCRtpTransceiver) => void;
  /** When the server offers to receive simulcast: the parameters of each
   *  layer's encoding, by rid (default SIMULCAST_LAYERS). */
  simulcastLayers?: Readonly<Record<string, Partial<RTCRtpEncodingParameters>>>;
  /** Send "leave" (with rejoin: true) when the page goes away (pagehide);
   *  default true. */
  leaveOnPageHide?: boolean;
  /** Ms without any packet arriving on a connection that was receiving
   *  before asking for an ICE restart; default 1500, 0 turns it off. The
   *  server sends media, reports or feedback several times a second. */
  restartIceOnStall?: number;
  /** Ms of ICE "disconnected" before asking for an ICE restart; default 500
   *  (Chromium reports it only after 5-7 s without answers). */
  restartIceAfter?: number;
  /** Ms after a restart request to ask again if ICE has not recovered;
   *  default 3000. The first request of an outage renews the signalling
   *  socket (resuming the session), later ones ask on that socket. */
  restartIceRetry?: number;
  /** Ms of connection "failed" (restarts meanwhile) before the call ends with
   *  reason "failed"; default 20000. */
  failedAfter?: number;
}

/** Why a call ended: left (by leave()), room-closed (message: the room's
 *  reason, e.g. "host left"), closed (the server closed the socket: code,
 *  and the last error message it sent), lost (no resume within the grace),
 *  failed (ICE/DTLS), error (message). */
export interface CallEnd {
  reason: "left" | "room-closed" | "closed" | "lost" | "failed" | "error";
  code?: number;
  /** "lost": the node refused the socket (in a cluster: taken for dead). */
  nodeGone?: boolean;
  error?: { type: "error"; code: string; message: string } | null;
  message?: string;
  /** "left": leave() was asked to keep the host's room open (a reload). */
  rejoin?: boolean;
}

export interface CallEventMap {
  /** Every server message (joined, participant-joined, participant-left,
   *  speaking, recording, waiting, error, ...), after the call handled it. */
  message: CustomEvent<{ type: string; [field: string]: unknown }>;
  /** A remote track; streams[0].id is the publishing participant's id. */
  track: CustomEvent<{ track: MediaStreamTrack; streams: readonly MediaStream[] }>;
  /** The data channel the server relays (label "pysfu"). */
  datachannel: CustomEvent<{ channel: RTCDataChannel }>;
  connectionstatechange: CustomEvent<{ state: RTCPeerConnectionState }>;
  /** An offer was answered; `first` for the first one. */
  answered: CustomEvent<{ first: boolean }>;
  /** The call asked the server for an ICE restart (the `count`-th). */
  icerestart: CustomEvent<{ count: number }>;
  reconnecting: CustomEvent<Record<string, never>>;
  reconnected: CustomEvent<Record<string, never>>;
  end: CustomEvent<CallEnd>;
}

/** Each simulcast layer's encoding parameters by rid (q, h, f): scale 4/2/1,
 *  maxBitrate 150k/500k/2M, maxFramerate 30. */
export const SIMULCAST_LAYERS: Readonly<
  Record<"q" | "h" | "f", Readonly<Partial<RTCRtpEncodingParameters>>>
>;

export class JoinError extends Error {
  readonly status: number;
  /** The backend's error code: room_full, room_not_found, unauthorized, ... */
  readonly code: string | null;
}

export class Call extends EventTarget {
  readonly pc: RTCPeerConnection;
  readonly joinResponse: JoinResponse;
  readonly participantId: string;
  readonly stream: MediaStream | null;
  readonly ended: boolean;
  /** Send a protocol message (dropped while the socket is not open). */
  send(message: { type: string; [field: string]: unknown }): void;
  /** ICE restarts asked for so far. */
  readonly iceRestarts: number;
  /** Ask the server for an ICE restart (a new offer with fresh ICE
   *  credentials; DTLS kept). The call does so itself when ICE stays
   *  "disconnected" or fails; call it when the network is known to change. */
  restartIce(): void;
  /** Leave the room: the others see this participant go at once. A host
   *  ends the call for everyone, unless `rejoin` (the page reloads): the
   *  room then waits the server's host grace for the host to join again. */
  leave(options?: { rejoin?: boolean }): void;
  /** Simulate a dropped signalling connection (the call resumes it). */
  dropSignalling(): void;
  addEventListener<K extends keyof CallEventMap>(
    type: K,
    listener: (event: CallEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
}

/** Join a room; rejects with JoinError when the backend refuses. */
export function join(options: JoinOptions): Promise<Call>;

export interface RejoinOptions {
  /** Seconds to keep trying; default the answer's rejoin_within + 5. */
  within?: number;
  /** Stops trying (the user left meanwhile). */
  signal?: AbortSignal;
}

/** Whether an ended call may have lost its node (in a cluster): "lost",
 *  "failed" or an abnormal close (1006), never "left" nor "room-closed". */
export function mayRejoin(call: Call, end: CallEnd): boolean;

/** Join an ended call's room again through the other nodes of its cluster
 *  (same room, name, role and stream); rejects with JoinError. */
export function rejoin(previous: Call, options?: RejoinOptions): Promise<Call>;

/** Keep a call's rejoin credential (a host's `host_rejoin`, a guest's
 *  `seat_rejoin`) in this tab's sessionStorage, under `room` (default: the
 *  join answer's room id). */
export function remember(call: Call, room?: string): void;
/** The rejoin credential this tab kept for `room` and `role` (default
 *  "host"), or null. */
export function rejoinCredential(room: string, role?: "host" | "participant"): string | null;
/** Forget the rejoin credentials of `room`, of either role. */
export function forget(room: string): void;
/** remember() under its first name (it keeps a guest's credential too). */
export function rememberHost(call: Call, room?: string): void;
/** The host rejoin credential this tab kept for `room`, or null. */
export function hostRejoinCredential(room: string): string | null;
/** forget() under its first name. */
export function forgetHost(room: string): void;
