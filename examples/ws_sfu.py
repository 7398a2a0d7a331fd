"""pysfu's flagship example: a WebSocket SFU with a join backend and a browser client.

    python examples/ws_sfu.py [options]     # the same as: pysfu serve [options]

serves http://127.0.0.1:8080 (``--help`` lists the options). The app ships in
the package, so that ``pip install 'pysfu[server]'`` and ``pysfu serve`` give
the same room without a checkout: read it in ``src/pysfu/app/server.py``
(the aiohttp app: join backend, WebSocket signalling, rooms) and
``src/pysfu/app/static/`` (the browser client).
"""

from __future__ import annotations

from pysfu.app.server import main

if __name__ == "__main__":
    main()
