"""Simulcast: which of a publisher's encodings (layers) each subscriber gets.

A simulcasting publisher sends one track as several independent encodings of
falling resolution, each on its own SSRC and tagged on its first packets with
an RTP stream id (``rid``). The forwarder learns SSRC -> layer from those
tags; each subscriber's :class:`LayerSelector` picks the best layer the
subscriber's own bandwidth estimate (REMB) carries, and switches only on a
keyframe of the new layer so the picture never breaks. VP8's picture id and
TL0PICIDX are renumbered per subscriber (:class:`Vp8Renumbering`) so that the
decoder sees one continuous stream.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = [
    "DEFAULT_RIDS",
    "LayerSelector",
    "SimulcastPolicy",
    "Vp8Renumbering",
    "layer_of_rid",
]

#: The rids pysfu offers, lowest resolution first (LiveKit's and Chrome's
#: naming: quarter, half, full).
DEFAULT_RIDS: tuple[str, ...] = ("q", "h", "f")


def layer_of_rid(rid: str, rids: Sequence[str]) -> int | None:
    """The layer index (0: lowest) of ``rid`` among ``rids``, if offered."""
    try:
        return rids.index(rid)
    except ValueError:
        return None


@dataclass(frozen=True)
class SimulcastPolicy:
    """How a subscriber's layer follows its bandwidth estimate.

    - ``headroom``: a layer fits if its measured bitrate is at most this
      fraction of the subscriber's estimate (audio, RTCP and retransmissions
      need the rest).
    - ``upgrade_hold``: seconds the estimate must keep carrying a higher layer
      before the subscriber is moved up (down moves happen at once: a link
      that cannot carry the layer fills its queue within a second).
    - ``pause_below``: the lowest layer is taken away (video paused, audio
      kept) only when the estimate is below this fraction of its bitrate. A
      receiver's estimate (REMB) measures what it receives: on a link that
      is congested but carries the layer it settles near 0.85 of the
      throughput, so an estimate just under ``bitrate / headroom`` is no
      reason to stop the picture; one under half the layer is a link that
      cannot carry it.
    - ``probe_after``: a paused subscriber cannot show by its estimate that
      its link has room again (a receiver estimates at most about 1.5 times
      what it receives, and a paused one receives audio only; Chromium's
      first REMB, after 5 s, can be as low as 35 kbit/s on a link that
      carries 500), so after this many seconds paused it is given the
      lowest layer again (a probe)...
    - ``probe_hold``: ...and keeps it for this many seconds whatever its
      estimate says (the estimate climbs about 8 % a second from what audio
      alone showed). A probe that ends in a pause doubles the wait before
      the next one, up to ``probe_max``; an estimate that fits a layer
      resets it. A link that really cannot carry the lowest layer thus gets
      it for ``probe_hold`` seconds in ``probe_max``.

    - ``start_grace``: for this many seconds from a subscriber's first
      estimate it is never paused (the lowest layer is kept): Chromium's
      first REMB is about 35 kbit/s whatever the link, and climbs from there.
    - ``climb_after``: a subscriber held on a lower layer cannot show by its
      estimate that the next one fits either (at most ~1.5 times what it
      receives), so once its estimate has carried its layer, and nothing
      more, for this many seconds, it is given the next layer up (a climb)...
    - ``climb_hold``: ...for up to this many seconds, long enough for the
      estimate to grow into it. It stays there once the estimate carries it;
      it goes back down at once if the estimate falls below ``climb_drop``
      of its highest value since the climb began (a congested link: a
      receiver's delay-based estimate cuts itself), or when the hold ends
      without the layer fitting. A failed climb doubles the wait before the
      next one, up to ``climb_max``; a climb that worked resets it.

    - ``min_fps``: a layer that fits the estimate is still passed over when
      it runs below this many frames a second while a lower layer runs at
      least ``fps_ratio`` times faster: an encoder short of bits drops
      frames, often far more on its high layers (Chromium on a detailed
      camera: q 10-29 fps, h 4-6, f 2), and a smaller picture at 25 fps is
      better to watch than a larger one at 5. The subscriber gets the
      highest fitting layer at ``min_fps`` or more, else the fastest one
      (the lowest, if all run alike). ``0`` turns this off.
    - ``fps_keep``: hysteresis: the layer a subscriber is on is left for
      its frame rate only below ``fps_keep * min_fps`` (a layer is taken
      only at ``min_fps``); the forwarder measures each layer's frame rate
      over a few seconds, which smooths the encoder's bursts of drops.

    LiveKit's stream allocator likewise pauses a track only when even its
    lowest layer does not fit, and probes to bring it back.
    """

    headroom: float = 0.85
    upgrade_hold: float = 3.0
    pause_below: float = 0.5
    probe_after: float = 6.0
    probe_hold: float = 10.0
    probe_max: float = 40.0
    start_grace: float = 10.0
    climb_after: float = 6.0
    climb_hold: float = 15.0
    climb_drop: float = 0.9
    climb_max: float = 60.0
    min_fps: float = 10.0
    fps_ratio: float = 1.5
    fps_keep: float = 0.8

    def __post_init__(self) -> None:
        if self.min_fps < 0 or self.fps_ratio < 1 or not 0 < self.fps_keep <= 1:
            raise ValueError(
                "SimulcastPolicy needs min_fps >= 0, fps_ratio >= 1 and"
                f" 0 < fps_keep <= 1, not {self.min_fps}, {self.fps_ratio},"
                f" {self.fps_keep}"
            )


class LayerSelector:
    """One subscriber's layer: the one it gets (``current``) and the one it
    should get (``target``); ``None`` means no video (paused).

    Time is passed in, so the rules are testable without waiting.
    """

    def __init__(
        self, policy: SimulcastPolicy | None = None, *, max_layer: int = 2
    ) -> None:
        self.policy = policy or SimulcastPolicy()
        #: The highest layer the subscriber asked for (signalling).
        self.max_layer = max_layer
        self.target: int | None = max_layer
        self.current: int | None = None
        self.switches = 0
        #: Times a paused subscriber was given the lowest layer to probe.
        self.probes = 0
        self._better: int | None = None  # a higher layer that fits...
        self._better_since = 0.0  # ...since then
        self._paused_at = 0.0  # when the target last became None
        self._probe_wait = self.policy.probe_after  # before the next probe
        self._probe_at: float | None = None  # when the running probe began
        #: Times the subscriber was tried on the next layer up (climbs).
        self.climbs = 0
        self._first_estimate_at: float | None = None
        self._settled_at: float | None = None  # when the target last changed
        self._climb_at: float | None = None  # when the running climb began
        self._climb_from = 0  # the layer it climbed from
        self._climb_peak = 0  # the highest estimate since
        self._climb_wait = self.policy.climb_after  # before the next climb
        self._fps: Sequence[float | None] = ()  # each layer's, at the last choose

    def choose(
        self,
        estimate: int | None,
        layer_bitrates: Sequence[int | None],
        now: float,
        layer_fps: Sequence[float | None] = (),
    ) -> bool:
        """Re-pick the target from the subscriber's estimate (bit/s) and the
        layers' measured bitrates (index: layer; ``None``: not received) and
        frame rates (frames/s; ``None`` or missing: not known yet).
        Returns whether the target changed."""
        before = self.target
        self._fps = layer_fps
        changed = self._choose(estimate, layer_bitrates, now)
        if self._settled_at is None or self.target != before:
            self._settled_at = now
        return changed

    def _choose(
        self, estimate: int | None, layer_bitrates: Sequence[int | None], now: float
    ) -> bool:
        if all(bitrate is None for bitrate in layer_bitrates):
            return False  # nothing received (yet): nothing to go by
        if estimate is not None and self._first_estimate_at is None:
            self._first_estimate_at = now
        lowest = self._lowest(layer_bitrates)
        fitting = self._fitting(estimate, layer_bitrates)
        if fitting is not None and estimate is not None:
            self._probe_at = None  # a layer fits by the estimate: any probe
            self._probe_wait = self.policy.probe_after  # worked
        if self._climb_at is not None:
            held = self._climbing(estimate, fitting, now)
            if held is not None:
                return held
        fits = fitting  # before the lowest layer is kept regardless
        target = self.target
        if target is None:
            if estimate is None:
                # a paused viewer's receiver may stop reporting on the video
                # it no longer gets: that says nothing about its link
                fitting = None
            if fitting is None:
                return self._probe(lowest, now)
        elif fitting is None and not self._may_pause(estimate, layer_bitrates, now):
            fitting = lowest  # keep the picture on the lowest layer
        if fitting == target:
            self._better = None
            return fits == target and self._climb(estimate, layer_bitrates, now)
        lower = fitting is None or (target is not None and fitting < target)
        if lower:
            self._better = None
            self.target = fitting
            if fitting is None:
                self._pause(now)
            return True
        # a move up: only once the estimate has carried it for a while
        if self._better is None or (fitting or 0) < self._better:
            self._better, self._better_since = fitting, now
            return False
        if now - self._better_since < self.policy.upgrade_hold:
            return False
        self._better = None
        self.target = fitting
        return True

    def _climb(
        self, estimate: int | None, layer_bitrates: Sequence[int | None], now: float
    ) -> bool:
        """The estimate carries the current layer and no more: after
        ``climb_wait`` seconds of that, try the next layer up."""
        target = self.target
        if target is None or estimate is None or self._settled_at is None:
            return False
        above = target + 1
        if above > self.max_layer or above >= len(layer_bitrates):
            return False
        if layer_bitrates[above] is None or now - self._settled_at < self._climb_wait:
            return False
        if self._too_slow(above, range(above)):
            return False  # a climb to fewer frames: not worth the try
        self._climb_from, self._climb_at, self._climb_peak = target, now, estimate
        self.target = above
        self.climbs += 1
        return True

    def _climbing(
        self, estimate: int | None, fitting: int | None, now: float
    ) -> bool | None:
        """A climb is running: whether the target changed, or ``None`` to
        apply the usual rules (the climb is over)."""
        assert self._climb_at is not None
        if self.target is None or self.target <= self._climb_from:
            self._climb_at = None  # moved off it (a limit): no verdict
            return None
        if fitting is not None and estimate is not None and fitting >= self.target:
            self._climb_at = None  # the estimate carries it: it worked
            self._climb_wait = self.policy.climb_after
            self._settled_at = now  # the next climb counts from here
            return None
        if estimate is not None:
            self._climb_peak = max(self._climb_peak, estimate)
        fell = estimate is not None and (
            estimate < self._climb_peak * self.policy.climb_drop
        )
        if not fell and now - self._climb_at < self.policy.climb_hold:
            return False  # held whatever the estimate says
        self._climb_at = None  # failed: back down, and wait longer next time
        self._climb_wait = min(2 * self._climb_wait, self.policy.climb_max)
        self._better = None
        self.target = min(self._climb_from, self.target)
        return True

    def _may_pause(
        self, estimate: int | None, layer_bitrates: Sequence[int | None], now: float
    ) -> bool:
        """Whether the estimate is far enough below the lowest layer to stop
        the video (and no probe is running, nor the start-up grace)."""
        if self._probe_at is not None and now - self._probe_at < self.policy.probe_hold:
            return False
        first = self._first_estimate_at
        if first is not None and now - first < self.policy.start_grace:
            return False
        lowest = self._lowest(layer_bitrates)
        bitrate = None if lowest is None else layer_bitrates[lowest]
        if estimate is None or bitrate is None:
            return False
        return estimate < bitrate * self.policy.pause_below

    def _pause(self, now: float) -> None:
        if self._probe_at is not None:  # a probe failed: wait longer next time
            self._probe_wait = min(2 * self._probe_wait, self.policy.probe_max)
        self._probe_at = None
        self._paused_at = now

    def _probe(self, lowest: int | None, now: float) -> bool:
        """Paused, and the estimate does not (cannot) show the lowest layer
        fits: give it the lowest layer if it has been paused long enough."""
        self._better = None
        if lowest is None or now - self._paused_at < self._probe_wait:
            return False
        self.target = lowest
        self.probes += 1
        self._probe_at = now
        return True

    def _lowest(self, layer_bitrates: Sequence[int | None]) -> int | None:
        """The lowest layer being received (within the subscriber's limit)."""
        top = min(self.max_layer, len(layer_bitrates) - 1)
        for index in range(top + 1):
            if layer_bitrates[index] is not None:
                return index
        return None

    def _fitting(
        self, estimate: int | None, layer_bitrates: Sequence[int | None]
    ) -> int | None:
        """The best layer that fits now: the highest one being received
        within the budget (all received ones if there is no estimate) whose
        frame rate is adequate (see ``SimulcastPolicy.min_fps``)."""
        top = min(self.max_layer, len(layer_bitrates) - 1)
        budget = None if estimate is None else estimate * self.policy.headroom
        fits = [
            index
            for index in range(top + 1)
            if (bitrate := layer_bitrates[index]) is not None
            and (budget is None or bitrate <= budget)
        ]
        for position in range(len(fits) - 1, -1, -1):
            if not self._too_slow(fits[position], fits[:position]):
                return fits[position]
        return None

    def _too_slow(self, index: int, lower: Sequence[int]) -> bool:
        """Whether layer ``index`` runs below the frame-rate floor while one
        of the ``lower`` layers runs ``fps_ratio`` times faster."""
        policy = self.policy
        fps = self._fps_of(index)
        if fps is None or policy.min_fps <= 0:
            return False
        floor = policy.min_fps * (policy.fps_keep if index == self.target else 1.0)
        if fps >= floor:
            return False
        return any(
            (other := self._fps_of(below)) is not None
            and other > fps
            and other >= fps * policy.fps_ratio
            for below in lower
        )

    def _fps_of(self, index: int) -> float | None:
        return self._fps[index] if index < len(self._fps) else None

    def limit(self, max_layer: int) -> None:
        """The subscriber asked for no more than ``max_layer``; applies at once
        (down), or from the next estimate (up)."""
        self.max_layer = max_layer
        if self.target is None or self.target > max_layer:
            self.target = max_layer if self.target is not None else None
        self._better = None

    def admit(
        self, layer: int, is_keyframe: Callable[[], bool], ends_frame: bool = True
    ) -> bool:
        """Whether a packet of ``layer`` goes to the subscriber. The current
        layer keeps flowing until the target's next keyframe, then the target
        takes over (``current`` changes). ``ends_frame``: the packet has the
        RTP marker bit (a pause waits for the end of the frame in progress,
        which the subscriber could not decode otherwise)."""
        if layer == self.current:
            if self.target is None and ends_frame:
                self.current = None  # paused after this packet
                self.switches += 1
            return True
        if layer == self.target and is_keyframe():
            self.current = layer
            self.switches += 1
            return True
        return False


class Vp8Renumbering:
    """Keeps VP8's picture id and TL0PICIDX continuous for one subscriber
    across a change of source (RFC 7741 section 4.2): each layer numbers its
    pictures independently, and a decoder that sees the id jump takes the
    gap for lost frames."""

    __slots__ = ("_last_pid", "_last_tl0", "_pid_offset", "_tl0_offset")

    def __init__(self) -> None:
        self._pid_offset = 0
        self._tl0_offset = 0
        self._last_pid: int | None = None
        self._last_tl0: int | None = None

    def rebase(self, payload: memoryview | bytes) -> None:
        """The next picture (``payload`` starts it) follows the last one sent."""
        fields = _vp8_fields(payload)
        if fields is None:
            return
        pid_at, wide, tl0_at = fields
        if pid_at and self._last_pid is not None:
            pid = _read_pid(payload, pid_at, wide)
            self._pid_offset = (self._last_pid + 1 - pid) & 0x7FFF
        if tl0_at and self._last_tl0 is not None:
            self._tl0_offset = (self._last_tl0 + 1 - payload[tl0_at]) & 0xFF

    def note(self, payload: memoryview | bytes) -> None:
        """Remember the numbers of a packet sent as is (no offset in force)."""
        fields = _vp8_fields(payload)
        if fields is None:
            return
        pid_at, wide, tl0_at = fields
        if pid_at:
            self._last_pid = _read_pid(payload, pid_at, wide)
        if tl0_at:
            self._last_tl0 = payload[tl0_at]

    def rewrite(self, packet: bytearray, offset: int) -> None:
        """Renumber the descriptor of the VP8 packet at ``packet[offset:]``
        in place, and remember the numbers sent."""
        fields = _vp8_fields(memoryview(packet)[offset:])
        if fields is None:
            return
        pid_at, wide, tl0_at = fields
        if pid_at:
            at = offset + pid_at
            if wide:
                pid = (_read_pid(packet, at, True) + self._pid_offset) & 0x7FFF
                packet[at] = 0x80 | (pid >> 8)
                packet[at + 1] = pid & 0xFF
            else:
                pid = (packet[at] + self._pid_offset) & 0x7F
                packet[at] = pid
            self._last_pid = pid
        if tl0_at:
            at = offset + tl0_at
            packet[at] = (packet[at] + self._tl0_offset) & 0xFF
            self._last_tl0 = packet[at]

    @property
    def renumbers(self) -> bool:
        """Whether packets need rewriting (an offset is in force)."""
        return bool(self._pid_offset or self._tl0_offset)


def _vp8_fields(
    payload: memoryview | bytes | bytearray,
) -> tuple[int, bool, int] | None:
    """Where the picture id and TL0PICIDX are in a VP8 payload descriptor:
    (picture id offset or 0, whether it is 15 bits, TL0PICIDX offset or 0)."""
    if len(payload) < 2 or not payload[0] & 0x80:
        return None  # no extension byte: neither field present
    flags = payload[1]
    at = 2
    pid_at, wide = 0, False
    if flags & 0x80:
        if len(payload) <= at:
            return None
        pid_at, wide = at, bool(payload[at] & 0x80)
        at += 2 if wide else 1
    tl0_at = 0
    if flags & 0x40:
        if len(payload) <= at:
            return None
        tl0_at = at
    if wide and len(payload) <= pid_at + 1:
        return None
    return pid_at, wide, tl0_at


def _read_pid(payload: memoryview | bytes | bytearray, at: int, wide: bool) -> int:
    if wide:
        return ((payload[at] & 0x7F) << 8) | payload[at + 1]
    return payload[at] & 0x7F
