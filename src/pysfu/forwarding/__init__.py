"""The packet path: one published track to its subscribers, without transcoding.

This package knows nothing of rooms or signalling. A :class:`Forwarder` takes
the decrypted RTP packets of one published track and hands each of them to
its :class:`DownTrack` objects, one per subscriber, which rewrite and send.
"""

from .downtrack import DownTrack, StreamPosition
from .forwarder import CodecInfo, Forwarder

__all__ = ["CodecInfo", "DownTrack", "Forwarder", "StreamPosition"]
