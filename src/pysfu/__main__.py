"""``pysfu serve ...`` / ``python -m pysfu serve ...``: the packaged video
room (:mod:`pysfu.app`)."""

from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    """Run the ``pysfu`` command line."""
    try:
        from .app.server import cli
    except ImportError as exc:  # aiohttp is an extra
        raise SystemExit(
            f"pysfu: the app needs the server extra ({exc}): "
            "pip install 'pysfu[server]'"
        ) from exc
    cli(argv)


if __name__ == "__main__":
    main()
