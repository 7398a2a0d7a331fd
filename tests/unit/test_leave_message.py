"""The ``leave`` message: plain (final) or with ``rejoin`` (a page going
away, which a host's room waits for)."""

from __future__ import annotations

import pytest

from pysfu.messages import Leave, SignallingError, parse_client_message, to_json


def test_a_leave_is_final_unless_it_says_rejoin() -> None:
    assert parse_client_message({"type": "leave"}) == Leave(rejoin=False)
    assert parse_client_message({"type": "leave", "rejoin": True}) == Leave(True)
    assert parse_client_message({"type": "leave", "rejoin": False}) == Leave()
    # the JSON form round-trips (the worker pipe carries it so)
    assert parse_client_message(to_json(Leave(rejoin=True))) == Leave(rejoin=True)


@pytest.mark.parametrize("bad", ["yes", 1, None, [True]])
def test_a_rejoin_that_is_not_a_boolean_is_refused(bad: object) -> None:
    with pytest.raises(SignallingError) as refused:
        parse_client_message({"type": "leave", "rejoin": bad})
    assert refused.value.code == "bad_message"
