"""``python -m pysfu.recording``: inspect and convert recordings."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from .convert import convert, group_by_participant, suffix_for
from .format import RECORD_RTP, BadRecording, read_recording
from .recorder import RECORDING_SUFFIX


def _info(paths: list[Path]) -> None:
    for path in paths:
        with open(path, "rb") as file:
            header, records = read_recording(file)
            kinds = Counter(r.type for r in records)
        print(
            f"{path}: {header.track_id} ({header.kind}, {header.mime_type}) "
            f"of {header.participant_id} in room {header.room_id!r}: "
            f"{kinds[RECORD_RTP]} packets, {sum(kinds.values()) - kinds[RECORD_RTP]} "
            "sender reports"
        )


def _report(result_output: Path, tracks: object) -> None:
    print(f"wrote {result_output}")
    for track in tracks:  # type: ignore[attr-defined]
        print(
            f"  {track.track_id}: {track.frames_written} frames, "
            f"{track.frames_dropped} dropped, {track.packets_missing} packets missing"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pysfu.recording")
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="say what recordings hold")
    info.add_argument("files", nargs="+", type=Path)
    one = commands.add_parser("convert", help="mux recordings into one file")
    one.add_argument("-o", "--output", type=Path, required=True)
    one.add_argument("files", nargs="+", type=Path)
    one.add_argument(
        "--keep-early-audio",
        action="store_true",
        help="keep audio from before the first picture",
    )
    room = commands.add_parser(
        "convert-room", help="one file per participant of a recorded room"
    )
    room.add_argument("directory", type=Path)
    room.add_argument(
        "--format",
        choices=("auto", "webm", "mkv", "mp4"),
        default="auto",
        help="auto: WebM when the codecs allow, else Matroska; mp4: H.264 "
        "and Opus only",
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "info":
            _info(args.files)
        elif args.command == "convert":
            result = convert(
                args.files, args.output, trim_to_video=not args.keep_early_audio
            )
            _report(result.output, result.tracks)
        else:
            groups = group_by_participant(args.directory.glob(f"*{RECORDING_SUFFIX}"))
            if not groups:
                print(f"no recordings in {args.directory}", file=sys.stderr)
                return 1
            for participant, files in groups.items():
                suffix = (
                    suffix_for(files) if args.format == "auto" else f".{args.format}"
                )
                output = args.directory / (participant.replace("/", "_") + suffix)
                result = convert(files, output)
                _report(result.output, result.tracks)
    except (OSError, ValueError, BadRecording) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
