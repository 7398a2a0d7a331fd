"""pysfu's ready-made video room: the flagship app and its browser client.

``pip install 'pysfu[server]'`` then ``pysfu serve`` (or ``python -m pysfu
serve``) serves rooms on http://127.0.0.1:8080; ``pysfu serve --help`` lists
the options. :mod:`pysfu.app.server` holds the aiohttp application
(:class:`~pysfu.app.server.SfuApp`), the static files are in ``static/``.
"""

from __future__ import annotations

__all__: list[str] = []
