"""Host keys, join grants and room slugs."""

from __future__ import annotations

import logging
import unicodedata
from urllib.parse import unquote

import pytest

from pysfu import SFU, HostTaken, RoomFull, RoomNotFound
from pysfu.admission import Admission, HostKeys, IceCredentials, redact_ice_password
from pysfu.errors import (
    CredentialExpired,
    CredentialUnknown,
    CredentialUsed,
    Unauthorized,
)
from pysfu.slugs import EMOJI_ALPHABET, ascii_slug, emoji_slug, slug_bits, slug_path


def test_host_keys() -> None:
    keys = HostKeys(["alpha", "beta"])
    assert keys.check("beta") and keys.check("alpha")
    assert not keys.check("gamma") and not keys.check("") and not keys.check(None)
    assert "alpha" not in repr(keys) and "beta" not in repr(keys)
    with pytest.raises(ValueError):
        HostKeys([])


def test_generated_ice_credentials_are_valid_and_not_printed() -> None:
    from pysfu._aiortc import validate_ice_credentials

    credentials = IceCredentials.generate()
    validate_ice_credentials(credentials.username_fragment, credentials.password)
    assert credentials.password not in repr(credentials)
    assert IceCredentials.generate() != credentials


def test_offer_passwords_are_redacted() -> None:
    sdp = "v=0\r\na=ice-ufrag:abcd\r\na=ice-pwd:secretsecretsecretsecret\r\nm=audio\r\n"
    redacted = redact_ice_password(sdp)
    assert "secret" not in redacted and "a=ice-pwd:REDACTED\r\n" in redacted
    assert "a=ice-ufrag:abcd" in redacted


def test_emoji_slugs() -> None:
    assert len(set(EMOJI_ALPHABET)) == 256
    assert all(unicodedata.name(e, "") for e in EMOJI_ALPHABET)
    slug = emoji_slug()
    assert len(slug) == 6 and slug_bits(slug) == 48
    assert unquote(slug_path(slug)) == slug and slug_path(slug).isascii()
    assert len({emoji_slug() for _ in range(1000)}) == 1000
    assert slug_bits(ascii_slug()) >= 64 and slug_path(ascii_slug()).isascii()


async def test_admission_rules_and_single_use(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    sfu = SFU()
    admission = Admission(sfu, credential_ttl=30, clock=lambda: now[0])
    room = sfu.create_room("r", max_participants=1)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(RoomNotFound):
        admission.admit("nope")
    with pytest.raises(Unauthorized):
        admission.admit("r", "host")
    host = admission.admit("r", "host", host_authorized=True)
    with pytest.raises(HostTaken):
        admission.admit("r", "host", host_authorized=True)
    guest = admission.admit("r", name="x" * 100)
    assert len(guest.name) == 64
    with pytest.raises(RoomFull):
        admission.admit("r")  # the granted seat counts
    assert admission.redeem(guest.participant_id) is guest
    with pytest.raises(CredentialUsed):
        admission.redeem(guest.participant_id)
    with pytest.raises(CredentialUnknown):
        admission.redeem("p-made-up")
    now[0] = 31.0
    with pytest.raises(CredentialExpired):
        admission.redeem(host.participant_id)
    assert admission.admit("r", "host", host_authorized=True)  # the seat came back
    assert host.credentials.password not in caplog.text
    assert room.members == {}
