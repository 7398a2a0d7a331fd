"""Fixtures of the interop tests: the browser tests' server and Chromium
(re-exported), and a Firefox."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .browser.conftest import browser, start_server
from .firefox import Firefox, firefox

#: Firefox's fake camera is a flat colour: pages get this detailed moving one.
MOVING_CAMERA = Path(__file__).resolve().parent / "moving_camera.js"

__all__ = ["browser", "gecko", "start_server"]


@pytest.fixture
async def gecko() -> AsyncIterator[Firefox]:
    """Headless Debian firefox-esr with a fake microphone and a camera
    showing a detailed moving picture."""
    async with firefox(MOVING_CAMERA) as launched:
        print(f"Firefox {await launched.version()}")
        yield launched
