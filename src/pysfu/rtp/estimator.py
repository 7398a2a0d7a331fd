"""The receive-side bandwidth estimate (REMB) of one publisher, from
abs-send-time: pure, the arrival time is passed in.

The algorithm is libwebrtc's ``RemoteBitrateEstimatorAbsSendTime`` as aiortc
ports it (``aiortc.rate.RemoteBitrateEstimator``), step for step and with the
same floating-point operations in the same order, so that both give the same
estimates for the same packets (``tests/unit/test_remb_estimator.py`` feeds
both the same traces and compares every report):

- packets are grouped by send time: a group spans at most 5 ms of
  abs-send-time, and a packet arriving in a burst (less than 5 ms after the
  previous one, earlier than its send time would say) joins the current group;
- each new group gives the previous one's deltas to the previous group (send
  time, arrival time, size), which update a Kalman filter of the queueing
  delay's trend (the "overuse estimator");
- the overuse detector compares that trend against an adaptive threshold:
  normal, over-use or under-use;
- AIMD rate control turns the hypothesis and the incoming bitrate (bytes
  received over the last second) into the estimate, at most every 500 ms
  unless over-using.

aiortc builds several objects and makes a dozen method calls per packet
(inter-arrival group, deltas, detector and estimator queries, its rate
counter). Here a packet of the current group only adds its size and arrival
time to plain attributes and to the one-second window; the filter, the
detector and the rate control run once per group (and per estimate).
"""

from __future__ import annotations

import math
from collections import deque

__all__ = [
    "NORMAL",
    "OVERUSING",
    "UNDERUSING",
    "RembEstimator",
]

#: The detector's hypotheses (aiortc's ``BandwidthUsage`` values).
NORMAL = 0
UNDERUSING = 1
OVERUSING = 2

# rate control states (aiortc's RateControlState)
_HOLD = 0
_INCREASE = 1
_DECREASE = 2

_U32 = 0xFFFFFFFF
_HALF = 0x80000000
#: abs-send-time (6.18 fixed point seconds, 24 bits) shifted into 32 bits
_INTER_ARRIVAL_SHIFT = 26
_TIMESTAMP_TO_MS = 1000.0 / (1 << _INTER_ARRIVAL_SHIFT)
#: a group spans at most this much send time (5 ms in timestamp units)
_GROUP_LENGTH = (5 << _INTER_ARRIVAL_SHIFT) // 1000
_BURST_DELTA_THRESHOLD_MS = 5

# overuse detector
_MAX_ADAPT_OFFSET_MS = 15
_MIN_NUM_DELTAS = 60
_K_UP = 0.0087
_K_DOWN = 0.039
_OVERUSE_TIME_THRESHOLD = 10

# overuse estimator (Kalman filter)
_DELTA_COUNTER_MAX = 1000
_MIN_FRAME_PERIOD_HISTORY_LENGTH = 60
_PROCESS_NOISE_0 = 1e-13
_PROCESS_NOISE_1 = 1e-3
_PROCESS_NOISE_1_BOOST = 10 * _PROCESS_NOISE_1

# rate control
_FEEDBACK_INTERVAL_MS = 500
_INCOMING_WINDOW_MS = 1000
_INCOMING_SCALE = 8000  # bytes per ms -> bit/s


class RembEstimator:
    """One publisher's receive-side estimate, fed every media packet that
    carries abs-send-time.

    A drop-in for aiortc's ``RemoteBitrateEstimator``: :meth:`add` takes the
    same arguments and returns the same values.
    """

    # each stage's state in plain attributes (grouped in __init__): a packet
    # builds no object but the ints of the rate window
    __slots__ = (
        "_avg_max_bitrate_kbps",
        "_avg_noise",
        "_current_bitrate_initialized",
        "_detector_last_update_ms",
        "_detector_previous_offset",
        "_e00",
        "_e01",
        "_e10",
        "_e11",
        "_estimator_previous_offset",
        "_first_estimated_throughput_time",
        "_first_ts",
        "_group_arrival",
        "_group_size",
        "_has_group",
        "_has_previous",
        "_last_change_ms",
        "_last_ssrc",
        "_last_ts",
        "_last_update_ms",
        "_latest_estimated_throughput",
        "_near_max",
        "_num_of_deltas",
        "_offset",
        "_overuse_counter",
        "_overuse_time",
        "_prev_arrival",
        "_prev_size",
        "_prev_ts",
        "_rate_initialized",
        "_rate_origin",
        "_rate_sizes",
        "_rate_times",
        "_rate_total",
        "_slope",
        "_ssrcs",
        "_state",
        "_threshold",
        "_ts_delta_history",
        "_var_max_bitrate_kbps",
        "_var_noise",
        "current_bitrate",
        "hypothesis",
        "rtt",
    )

    def __init__(self) -> None:
        # the SSRCs seen (reported with each estimate)
        self._ssrcs: dict[int, None] = {}
        self._last_ssrc = -1
        # incoming bitrate: (ms, bytes) of the last second, one per ms, summed
        self._rate_times: deque[int] = deque()
        self._rate_sizes: deque[int] = deque()
        self._rate_total = 0
        #: start of the rate window (None: no sample since the last reset)
        self._rate_origin: int | None = None
        self._rate_initialized = True
        # inter-arrival: the current group (first and last send time,
        # arrival of its last packet, bytes) and the previous one
        self._has_group = False
        self._first_ts = 0
        self._last_ts = 0
        self._group_arrival = 0
        self._group_size = 0
        self._has_previous = False
        self._prev_ts = 0
        self._prev_arrival = 0
        self._prev_size = 0
        # overuse estimator: the Kalman filter's covariance, state and noise
        self._e00 = 100.0
        self._e01 = 0.0
        self._e10 = 0.0
        self._e11 = 0.1
        self._num_of_deltas = 0
        self._offset = 0.0
        self._estimator_previous_offset = 0.0
        self._slope = 1 / 64
        self._ts_delta_history: deque[float] = deque()
        self._avg_noise = 0.0
        self._var_noise = 50.0
        # overuse detector
        #: :data:`NORMAL`, :data:`UNDERUSING` or :data:`OVERUSING`
        self.hypothesis = NORMAL
        self._detector_last_update_ms: int | None = None
        self._overuse_counter = 0
        self._overuse_time: float | None = None
        self._detector_previous_offset = 0.0
        self._threshold = 12.5
        # AIMD rate control
        self._avg_max_bitrate_kbps: float | None = None
        self._var_max_bitrate_kbps = 0.4
        #: the estimate (bit/s), once initialized
        self.current_bitrate = 30_000_000
        self._current_bitrate_initialized = False
        self._first_estimated_throughput_time: int | None = None
        self._last_change_ms: int | None = None
        self._near_max = False
        self._latest_estimated_throughput = 30_000_000
        #: round-trip time (ms) the additive increase assumes, as aiortc's
        self.rtt = 200
        self._state = _HOLD
        self._last_update_ms: int | None = None

    def add(
        self, arrival_time_ms: int, abs_send_time: int, payload_size: int, ssrc: int
    ) -> tuple[int, list[int]] | None:
        """Count one packet: ``abs_send_time`` is the extension's 24-bit
        value, ``payload_size`` the bytes after the RTP header.

        Returns the estimate (bit/s) and the SSRCs it covers when one is due
        (every 500 ms, and for every packet while over-using), else ``None``.
        """
        now = arrival_time_ms
        if ssrc != self._last_ssrc:
            self._last_ssrc = ssrc
            self._ssrcs[ssrc] = None

        # the incoming bitrate: is there a rate at `now` (else start over),
        # then count this packet
        times = self._rate_times
        origin = self._rate_origin
        if origin is None:
            self._rate_initialized = False
            self._rate_origin = now
            times.append(now)
            self._rate_sizes.append(payload_size)
            self._rate_total = payload_size
        else:
            start = now - _INCOMING_WINDOW_MS + 1
            if origin < start:
                origin = self._rate_origin = start
                if times and times[0] < start:
                    self._expire(start)
            if times and now > origin:
                self._rate_initialized = True
            elif self._rate_initialized:
                self._rate_initialized = False
                times.clear()
                self._rate_sizes.clear()
                origin = self._rate_origin = now
                self._rate_total = 0
            if now >= times[-1] if times else now >= origin:
                if times and times[-1] == now:
                    self._rate_sizes[-1] += payload_size
                else:
                    times.append(now)
                    self._rate_sizes.append(payload_size)
                self._rate_total += payload_size
            elif now >= origin:
                self._insert(now, payload_size)

        # inter-arrival grouping by send time
        timestamp = abs_send_time << 8
        if not self._has_group:
            self._has_group = True
            self._first_ts = self._last_ts = timestamp
            self._group_size = payload_size
            self._group_arrival = now
        elif timestamp == self._last_ts:  # the common case: same frame
            self._group_size += payload_size
            self._group_arrival = now
        elif (timestamp - self._first_ts) & _U32 < _HALF:  # else out of order
            self._next_in_group(timestamp, now, payload_size)

        hypothesis = self.hypothesis
        last_update = self._last_update_ms
        if (
            last_update is None
            or now - last_update > _FEEDBACK_INTERVAL_MS
            or hypothesis == OVERUSING
        ):
            target = self._update_rate(hypothesis, self._rate(now), now)
            if target is not None:
                self._last_update_ms = now
                return target, list(self._ssrcs)
        return None

    # ------------------------------------------------------------------
    # incoming bitrate (aiortc's RateCounter, as pysfu's WindowedRate)

    def _expire(self, start: int) -> None:
        times = self._rate_times
        sizes = self._rate_sizes
        total = self._rate_total
        while times and times[0] < start:
            times.popleft()
            total -= sizes.popleft()
        self._rate_total = total

    def _insert(self, now: int, size: int) -> None:
        """A reordered sample (earlier than the last, inside the window):
        kept sorted, so that samples expire in order."""
        times = self._rate_times
        index = len(times)
        while index and times[index - 1] > now:
            index -= 1
        times.insert(index, now)
        self._rate_sizes.insert(index, size)
        self._rate_total += size

    def _rate(self, now: int) -> int | None:
        """The incoming bitrate at ``now`` (the last packet's time)."""
        origin = self._rate_origin
        if origin is None or not self._rate_times or now <= origin:
            return None
        return round(_INCOMING_SCALE * self._rate_total / (now - origin + 1))

    # ------------------------------------------------------------------
    # inter-arrival (aiortc's InterArrival), once per send time

    def _next_in_group(self, timestamp: int, now: int, size: int) -> None:
        """A packet of a later send time than the group's last (or reordered
        within it): it joins the group, or closes it and starts the next."""
        last_ts = self._last_ts
        ts_delta = (timestamp - last_ts) & _U32
        ts_delta_ms = round(_TIMESTAMP_TO_MS * ts_delta)
        arrival_delta = now - self._group_arrival
        burst = ts_delta_ms == 0 or (
            arrival_delta - ts_delta_ms < 0
            and arrival_delta <= _BURST_DELTA_THRESHOLD_MS
        )
        if not burst and (timestamp - self._first_ts) & _U32 > _GROUP_LENGTH:
            if self._has_previous:
                self._on_deltas(
                    now,
                    self._group_arrival - self._prev_arrival,
                    ((last_ts - self._prev_ts) & _U32) * _TIMESTAMP_TO_MS,
                    self._group_size - self._prev_size,
                )
            self._has_previous = True
            self._prev_ts = last_ts
            self._prev_arrival = self._group_arrival
            self._prev_size = self._group_size
            self._first_ts = self._last_ts = timestamp
            self._group_size = size
        else:
            if 0 < ts_delta < _HALF:  # aiortc's uint32_gt(timestamp, last)
                self._last_ts = timestamp
            self._group_size += size
        self._group_arrival = now

    # ------------------------------------------------------------------
    # overuse estimator and detector, once per group

    def _on_deltas(
        self, now: int, time_delta_ms: int, timestamp_delta_ms: float, size_delta: int
    ) -> None:
        hypothesis = self.hypothesis
        # the shortest send-time delta of the last 60 groups
        history = self._ts_delta_history
        min_frame_period = timestamp_delta_ms
        if len(history) >= _MIN_FRAME_PERIOD_HISTORY_LENGTH:
            history.popleft()
        if history:
            shortest = min(history)  # in C: no Python loop over 60 values
            if shortest < min_frame_period:
                min_frame_period = shortest
        history.append(timestamp_delta_ms)

        t_ts_delta = time_delta_ms - timestamp_delta_ms
        num_of_deltas = self._num_of_deltas = min(
            self._num_of_deltas + 1, _DELTA_COUNTER_MAX
        )

        # Kalman filter of (slope, offset); h = (size_delta, 1.0)
        offset = self._offset
        e00 = self._e00 + _PROCESS_NOISE_0
        e01 = self._e01
        e10 = self._e10
        e11 = self._e11 + _PROCESS_NOISE_1
        if (hypothesis == OVERUSING and offset < self._estimator_previous_offset) or (
            hypothesis == UNDERUSING and offset > self._estimator_previous_offset
        ):
            e11 += _PROCESS_NOISE_1_BOOST
        h0 = size_delta
        eh0 = e00 * h0 + e01
        eh1 = e10 * h0 + e11
        residual = t_ts_delta - self._slope * h0 - offset
        if hypothesis == NORMAL:
            max_residual = 3.0 * math.sqrt(self._var_noise)
            if abs(residual) < max_residual:
                self._update_noise(residual, min_frame_period, num_of_deltas)
            else:
                self._update_noise(
                    -max_residual if residual < 0 else max_residual,
                    min_frame_period,
                    num_of_deltas,
                )
        denom = self._var_noise + h0 * eh0 + eh1
        k0 = eh0 / denom
        k1 = eh1 / denom
        ikh00 = 1.0 - k0 * h0
        ikh01 = -k0
        ikh10 = -k1 * h0
        ikh11 = 1.0 - k1
        self._e00 = e00 * ikh00 + e10 * ikh01
        self._e01 = e01 * ikh00 + e11 * ikh01
        self._e10 = e00 * ikh10 + e10 * ikh11
        self._e11 = e01 * ikh10 + e11 * ikh11
        self._estimator_previous_offset = offset
        self._slope += k0 * residual
        offset = self._offset = offset + k1 * residual

        if num_of_deltas >= 2:
            self._detect(offset, timestamp_delta_ms, num_of_deltas, now)

    def _update_noise(self, residual: float, ts_delta: float, num: int) -> None:
        alpha = 0.002 if num > 10 * 30 else 0.01
        beta = pow(1 - alpha, ts_delta * 30.0 / 1000.0)
        avg = self._avg_noise = beta * self._avg_noise + (1 - beta) * residual
        var = beta * self._var_noise + (1 - beta) * (avg - residual) ** 2
        self._var_noise = 1.0 if var < 1 else var

    def _detect(
        self, offset: float, timestamp_delta_ms: float, num_of_deltas: int, now: int
    ) -> None:
        modified = min(num_of_deltas, _MIN_NUM_DELTAS) * offset
        threshold = self._threshold
        if modified > threshold:
            if self._overuse_time is None:
                self._overuse_time = timestamp_delta_ms / 2
            else:
                self._overuse_time += timestamp_delta_ms
            self._overuse_counter += 1
            if (
                self._overuse_time > _OVERUSE_TIME_THRESHOLD
                and self._overuse_counter > 1
                and offset >= self._detector_previous_offset
            ):
                self._overuse_counter = 0
                self._overuse_time = 0
                self.hypothesis = OVERUSING
        elif modified < -threshold:
            self._overuse_counter = 0
            self._overuse_time = None
            self.hypothesis = UNDERUSING
        else:
            self._overuse_counter = 0
            self._overuse_time = None
            self.hypothesis = NORMAL
        self._detector_previous_offset = offset

        # adapt the threshold
        if self._detector_last_update_ms is None:
            self._detector_last_update_ms = now
        magnitude = abs(modified)
        if magnitude > threshold + _MAX_ADAPT_OFFSET_MS:
            self._detector_last_update_ms = now
            return
        k = _K_DOWN if magnitude < threshold else _K_UP
        time_delta_ms = min(now - self._detector_last_update_ms, 100)
        threshold += k * (magnitude - threshold) * time_delta_ms
        self._threshold = max(6, min(threshold, 600))
        self._detector_last_update_ms = now

    # ------------------------------------------------------------------
    # AIMD rate control, once per estimate

    def _update_rate(
        self, usage: int, estimated_throughput: int | None, now: int
    ) -> int | None:
        if not self._current_bitrate_initialized:
            if estimated_throughput is not None:
                if self._first_estimated_throughput_time is None:
                    self._first_estimated_throughput_time = now
                elif now - self._first_estimated_throughput_time > 3000:
                    self.current_bitrate = estimated_throughput
                    self._current_bitrate_initialized = True
            # wait for initialisation or overuse
            if not self._current_bitrate_initialized and usage != OVERUSING:
                return None

        state = self._state
        if usage == NORMAL:
            if state == _HOLD:
                self._last_change_ms = now
                state = _INCREASE
        elif usage == OVERUSING:
            state = _DECREASE
        else:
            state = _HOLD

        new_bitrate = self.current_bitrate
        if estimated_throughput is not None:
            self._latest_estimated_throughput = estimated_throughput
        else:
            estimated_throughput = self._latest_estimated_throughput
        throughput_kbps = estimated_throughput / 1000

        if state == _INCREASE:
            # a throughput well above the known maximum: forget the maximum
            avg_max = self._avg_max_bitrate_kbps
            if avg_max is not None:
                sigma_kbps = math.sqrt(self._var_max_bitrate_kbps * avg_max)
                if throughput_kbps >= avg_max + 3 * sigma_kbps:
                    self._near_max = False
                    self._avg_max_bitrate_kbps = None
            if self._near_max:
                new_bitrate += self._additive_increase(now)
            else:
                new_bitrate += self._multiplicative_increase(new_bitrate, now)
            self._last_change_ms = now
        elif state == _DECREASE:
            avg_max = self._avg_max_bitrate_kbps
            if avg_max is not None:
                sigma_kbps = math.sqrt(self._var_max_bitrate_kbps * avg_max)
                if throughput_kbps < avg_max - 3 * sigma_kbps:
                    self._avg_max_bitrate_kbps = None
            self._update_max_throughput(throughput_kbps)
            self._near_max = True
            new_bitrate = round(0.85 * estimated_throughput)
            self._last_change_ms = now
            state = _HOLD
        self._state = state

        max_bitrate = max(int(1.5 * estimated_throughput) + 10000, self.current_bitrate)
        self.current_bitrate = min(new_bitrate, max_bitrate)
        return self.current_bitrate

    def _additive_increase(self, now: int) -> int:
        last = self._last_change_ms
        assert last is not None  # set on entering INCREASE
        bits_per_frame = self.current_bitrate / 30
        packets_per_frame = math.ceil(bits_per_frame / (8 * 1200))
        avg_packet_size_bits = bits_per_frame / packets_per_frame
        response_time = self.rtt + 100
        rate = max(4000, int((avg_packet_size_bits * 1000) / response_time))
        return int((now - last) * rate / 1000)

    def _multiplicative_increase(self, new_bitrate: int, now: int) -> int:
        alpha = 1.08
        last = self._last_change_ms
        if last is not None:
            elapsed_ms = min(now - last, 1000)
            alpha = pow(alpha, elapsed_ms / 1000)
        return int(max((alpha - 1) * new_bitrate, 1000))

    def _update_max_throughput(self, throughput_kbps: float) -> None:
        alpha = 0.05
        avg_max = self._avg_max_bitrate_kbps
        if avg_max is None:
            avg_max = throughput_kbps
        else:
            avg_max = (1 - alpha) * avg_max + alpha * throughput_kbps
        self._avg_max_bitrate_kbps = avg_max
        norm = max(1, avg_max)
        var = (1 - alpha) * self._var_max_bitrate_kbps + alpha * (
            (avg_max - throughput_kbps) ** 2
        ) / norm
        self._var_max_bitrate_kbps = max(0.4, min(var, 2.5))
