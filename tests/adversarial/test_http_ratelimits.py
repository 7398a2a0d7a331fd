"""Attacks that cost the server per request: guessing host keys, sending
WHIP offers that fail validation. Each is limited per client address."""

from __future__ import annotations

import pytest

from ..example_server import HOST_KEY, ROOT, run_example
from ..ws_client import create_room, join
from .app_helpers import client_from

pytestmark = [pytest.mark.adversarial, pytest.mark.network]

WHIP_SFU = ROOT / "examples" / "whip_sfu.py"


async def test_guessing_host_keys_is_limited_per_address() -> None:
    async with (
        run_example(
            WHIP_SFU,
            "--bind=127.0.0.1",
            f"--host-key={HOST_KEY}",
            "--log-level=WARNING",
        ) as base,
        client_from("127.0.0.66") as guesser,
        client_from("127.0.0.1") as host,
    ):
        statuses = []
        for n in range(40):  # bounded: 40 guesses
            status, _ = await create_room(guesser, base, key=f"guess-{n}")
            statuses.append(status)
        assert statuses[:10] == [401] * 10  # the first ones are checked...
        assert statuses.count(429) >= 25  # ...then refused without checking
        # joining as host is the same door
        _, room = await create_room(host, base)
        async with guesser.post(
            room["join_url"].replace("/r/", "/api/rooms/") + "/join",
            json={"role": "host"},
            headers={"Authorization": "Bearer guess-again"},
        ) as response:
            assert response.status == 429
            assert response.headers["Retry-After"] == "1"
        # the rightful host, from its own address, is not locked out
        status, grant = await join(host, room["join_url"], role="host")
        assert status == 200, grant


async def test_offers_that_fail_validation_are_limited_per_address() -> None:
    async with (
        run_example(
            WHIP_SFU,
            "--bind=127.0.0.1",
            f"--host-key={HOST_KEY}",
            "--log-level=WARNING",
        ) as base,
        client_from("127.0.0.66") as attacker,
        client_from("127.0.0.1") as other,
    ):
        statuses = []
        for _ in range(100):  # bounded; the burst allowed is 30
            async with attacker.post(
                f"{base}/whip/stage",
                data="v=0\r\nthis is not an offer\r\n",
                headers={
                    "Authorization": f"Bearer {HOST_KEY}",
                    "Content-Type": "application/sdp",
                },
            ) as response:
                statuses.append(response.status)
        assert 429 in statuses
        assert statuses[:30] == [400] * 30  # checked (and refused) at first...
        assert statuses.count(429) >= 30, statuses  # ...then refused unchecked
        # another address is served as before (its bad offer gets its 400)
        async with other.post(
            f"{base}/whip/stage",
            data="v=0\r\n",
            headers={
                "Authorization": f"Bearer {HOST_KEY}",
                "Content-Type": "application/sdp",
            },
        ) as response:
            assert response.status == 400
