"""Just enough of each video bitstream to convert recordings without decoding:
where a frame starts in an RTP payload, VP9's payload descriptor, and the
picture size a container needs (from a keyframe or an H.264 SPS)."""

from __future__ import annotations

__all__ = [
    "h264_sps_size",
    "vp8_frame_size",
    "vp9_depayload",
    "vp9_frame_size",
]


class _Bits:
    """An MSB-first bit reader with H.264's Exp-Golomb codes."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def bit(self) -> int:
        byte = self.data[self.pos >> 3]  # IndexError past the end
        value = (byte >> (7 - (self.pos & 7))) & 1
        self.pos += 1
        return value

    def bits(self, n: int) -> int:
        value = 0
        for _ in range(n):
            value = (value << 1) | self.bit()
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("bad Exp-Golomb code")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        value = self.ue()
        return (value + 1) // 2 if value & 1 else -(value // 2)


def vp8_frame_size(frame: bytes) -> tuple[int, int] | None:
    """Width and height from a VP8 keyframe (RFC 6386 section 9.1)."""
    if len(frame) < 10 or frame[0] & 1 or frame[3:6] != b"\x9d\x01\x2a":
        return None
    width = int.from_bytes(frame[6:8], "little") & 0x3FFF
    height = int.from_bytes(frame[8:10], "little") & 0x3FFF
    return width, height


def vp9_frame_size(frame: bytes) -> tuple[int, int] | None:
    """Width and height from a VP9 keyframe's uncompressed header."""
    try:
        r = _Bits(frame)
        if r.bits(2) != 2:  # frame marker
            return None
        profile = r.bit() | (r.bit() << 1)
        if profile == 3:
            r.bit()
        if r.bit():  # show_existing_frame
            return None
        if r.bit() != 0:  # not a keyframe
            return None
        r.bits(2)  # show_frame, error_resilient_mode
        if r.bits(24) != 0x498342:
            return None
        if profile >= 2:
            r.bit()  # ten_or_twelve_bit
        if r.bits(3) != 7:  # colour space other than sRGB
            r.bit()  # colour range
            if profile in (1, 3):
                r.bits(3)
        elif profile in (1, 3):
            r.bit()
        return r.bits(16) + 1, r.bits(16) + 1
    except IndexError:
        return None


def vp9_depayload(payload: bytes) -> tuple[bytes, bool, bool]:
    """Strip the VP9 payload descriptor (RFC 9628 section 4.2).

    Returns ``(data, begins_frame, ends_frame)``.
    """
    if not payload:
        raise ValueError("empty VP9 payload")
    first = payload[0]
    i_bit, p_bit, l_bit, f_bit = first & 0x80, first & 0x40, first & 0x20, first & 0x10
    begins, ends, v_bit = bool(first & 0x08), bool(first & 0x04), first & 0x02
    pos = 1
    if i_bit:
        pos += 2 if payload[pos] & 0x80 else 1
    if l_bit:
        pos += 1 if f_bit else 2
    if f_bit and p_bit:
        while True:  # up to three P_DIFF bytes, N bit says another follows
            more = payload[pos] & 0x01
            pos += 1
            if not more:
                break
    if v_bit:
        ss = payload[pos]
        pos += 1
        spatial_layers = (ss >> 5) + 1
        if ss & 0x10:  # Y: resolutions present
            pos += 4 * spatial_layers
        if ss & 0x08:  # G: picture group description present
            groups = payload[pos]
            pos += 1
            for _ in range(groups):
                references = (payload[pos] >> 2) & 0x03
                pos += 1 + references
    if pos > len(payload):
        raise ValueError("VP9 payload descriptor longer than the payload")
    return payload[pos:], begins, ends


def _unescape(nal: bytes) -> bytes:
    """Remove H.264 emulation prevention bytes (00 00 03 -> 00 00)."""
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


def h264_sps_size(annexb: bytes) -> tuple[int, int] | None:
    """Width and height from the first SPS in Annex-B data, if any."""
    for nal in annexb.split(b"\x00\x00\x01"):
        nal = nal.rstrip(b"\x00")
        if nal and nal[0] & 0x1F == 7:
            try:
                return _sps_size(_unescape(nal[1:]))
            except (IndexError, ValueError):
                return None
    return None


def _sps_size(sps: bytes) -> tuple[int, int]:
    r = _Bits(sps)
    profile = r.bits(8)
    r.bits(16)  # constraint flags, level
    r.ue()  # seq_parameter_set_id
    chroma_format = 1
    if profile in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
        chroma_format = r.ue()
        if chroma_format == 3:
            r.bit()
        r.ue()
        r.ue()
        r.bit()
        if r.bit():  # scaling matrices
            for index in range(8 if chroma_format != 3 else 12):
                if r.bit():
                    last, following = 8, 8
                    for _ in range(16 if index < 6 else 64):
                        if following:
                            following = (last + r.se() + 256) % 256
                        last = following or last
    r.ue()  # log2_max_frame_num_minus4
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()
    elif poc_type == 1:
        r.bit()
        r.se()
        r.se()
        for _ in range(r.ue()):
            r.se()
    r.ue()  # max_num_ref_frames
    r.bit()
    width_mbs = r.ue() + 1
    height_units = r.ue() + 1
    frame_mbs_only = r.bit()
    if not frame_mbs_only:
        r.bit()
    r.bit()
    width = width_mbs * 16
    height = (2 - frame_mbs_only) * height_units * 16
    if r.bit():  # frame cropping
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
        crop_x = 2 if chroma_format in (1, 2) else 1
        crop_y = (2 if chroma_format == 1 else 1) * (2 - frame_mbs_only)
        width -= crop_x * (left + right)
        height -= crop_y * (top + bottom)
    return width, height
