"""The error hierarchy: one stable code and one HTTP status per class."""

from __future__ import annotations

import pytest

from pysfu import errors

CLASSES = [
    cls
    for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, errors.PysfuError)
]

#: The statuses the HTTP adapters answered with when they kept their own
#: tables (signalling/whip.py and examples/ws_sfu.py); clients rely on them.
HTTP_STATUS = {
    "too_many_rooms": 503,
    "too_many_pending": 503,
    "unauthorized": 401,
    "room_not_found": 404,
    "room_closed": 404,
    "room_full": 409,
    "host_taken": 409,
    "duplicate_participant": 409,
    "credential_unknown": 401,
    "credential_used": 410,
    "credential_expired": 410,
    "bad_offer": 422,
}


def test_every_exception_is_listed_and_documented() -> None:
    assert set(errors.__all__) == {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, BaseException)
    }
    for name in errors.__all__:
        assert getattr(errors, name).__doc__, f"{name} has no docstring"


def test_codes_are_unique() -> None:
    codes = [cls.code for cls in CLASSES]
    assert len(codes) == len(set(codes))


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_class_has_an_http_status(cls: type[errors.PysfuError]) -> None:
    assert 400 <= cls.http_status < 600
    assert cls.http_status == HTTP_STATUS.get(cls.code, cls.http_status)


def test_statuses_are_the_ones_the_adapters_used() -> None:
    by_code = {cls.code: cls.http_status for cls in CLASSES}
    assert {code: by_code[code] for code in HTTP_STATUS} == HTTP_STATUS


def test_signalling_errors_carry_their_own_code() -> None:
    error = errors.SignallingError("bad_sdp", "the answer was rejected")
    assert isinstance(error, errors.PysfuError)
    assert (error.code, error.message, str(error)) == (
        "bad_sdp",
        "the answer was rejected",
        "the answer was rejected",
    )
    assert error.http_status == 400
    assert errors.SignallingError("rate_limited", "slow down").http_status == 429
