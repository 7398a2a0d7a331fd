"""Issue 21: CPU time charged to each participant, and its budget."""

from __future__ import annotations

import asyncio

import pytest

from pysfu.accounting import CpuAccount, account_of, find_account, metered


def test_the_budget_is_a_share_of_a_core_over_a_sliding_window() -> None:
    exceeded: list[bool] = []
    account = CpuAccount()
    account.limit(0.1, 10.0, "p", lambda: exceeded.append(True))  # 1 s in 10 s
    for second in range(30):  # 0.09 s each second: under the budget
        assert not account.charge("data", 0.09, float(second))
    assert account.used(29.5) == pytest.approx(0.9)
    assert account.totals["data"] == pytest.approx(2.7)
    assert not exceeded
    account.charge("signalling", 0.2, 30.0)  # 1.01 s in the last 10 s
    assert exceeded == [True]
    account.charge("signalling", 5.0, 31.0)
    assert exceeded == [True], "reported once"
    assert account.snapshot() == pytest.approx({"data": 2.7, "signalling": 5.2})
    assert account.used(100.0) == 0.0  # the window moved on


def test_no_budget_measures_only() -> None:
    account = CpuAccount()
    account.limit(None, 1.0, "p", lambda: pytest.fail("no budget"))
    assert not account.charge("rtcp", 100.0, 0.0)
    with pytest.raises(ValueError):
        account.limit(0.0, 1.0, "p", lambda: None)


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


async def test_meters_charge_only_their_own_steps_and_nest() -> None:
    clock = FakeClock()
    outer_account, inner_account = CpuAccount(), CpuAccount()
    go_on = asyncio.Event()

    async def inner() -> str:
        clock.t += 0.5  # the candidate's own work
        return "added"

    async def outer() -> str:
        clock.t += 1.0
        await go_on.wait()  # others run meanwhile: not charged here
        clock.t += 0.25
        result = await metered(inner_account, "candidates", inner(), clock=clock)
        clock.t += 0.25
        return result

    task = asyncio.ensure_future(
        metered(outer_account, "signalling", outer(), clock=clock)
    )
    await asyncio.sleep(0)
    clock.t += 7.0  # another task's work while the message waits
    go_on.set()
    assert await task == "added"
    assert outer_account.totals["signalling"] == pytest.approx(1.5)
    assert inner_account.totals["candidates"] == pytest.approx(0.5)


async def test_a_metered_coroutine_can_be_cancelled_and_raise() -> None:
    account = CpuAccount()

    async def fails() -> None:
        raise RuntimeError("bad message")

    with pytest.raises(RuntimeError):
        await metered(account, "signalling", fails())
    task = asyncio.ensure_future(metered(account, "signalling", asyncio.sleep(10)))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_accounts_live_as_long_as_their_key() -> None:
    class Key:
        pass

    key = Key()
    assert find_account(key) is None
    account = account_of(key)
    assert account_of(key) is account and find_account(key) is account
