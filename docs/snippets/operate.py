"""The code of docs/how-to/operate.md."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry

from pysfu import SFU


def expose_metrics(sfu: SFU, registry: CollectorRegistry) -> None:
    # --8<-- [start:metrics]
    from pysfu.metrics import SFUCollector

    registry.register(SFUCollector(sfu))  # e.g. prometheus_client.REGISTRY
    # --8<-- [end:metrics]


def keep_secrets_out_of_logs() -> None:
    # --8<-- [start:logs]
    from pysfu.admission import RedactSecrets

    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactSecrets())
    # --8<-- [end:logs]
