"""The ledger's two questions, asked the same way everywhere: can it ever fit, does it now."""

from __future__ import annotations

import pytest

from modelpool.core.ledger import MemoryLedger
from modelpool.errors import AccountingError, DoesNotFit

GB = 10**9


def test_fits_ever_is_the_whole_budget_exactly() -> None:
    account = MemoryLedger({"cpu": 8 * GB}).account("cpu")
    assert account.fits_ever(8 * GB)
    assert not account.fits_ever(8 * GB + 1)


def test_fits_now_is_the_room_the_plan_leaves() -> None:
    ledger = MemoryLedger({"cpu": 8 * GB})
    ledger.reserve("cpu", "a", 5 * GB)
    account = ledger.account("cpu")
    assert account.fits_now(3 * GB)
    assert not account.fits_now(3 * GB + 1)
    assert account.fits_ever(8 * GB)  # everything else gone, it would


def test_check_fits_and_reserve_ask_the_same_questions() -> None:
    ledger = MemoryLedger({"cpu": 8 * GB})
    ledger.check_fits("exact", "cpu", 8 * GB)
    with pytest.raises(DoesNotFit):
        ledger.check_fits("over", "cpu", 8 * GB + 1)
    ledger.reserve("cpu", "a", 6 * GB)
    with pytest.raises(AccountingError, match="exceeds the plan"):
        ledger.reserve("cpu", "b", 2 * GB + 1)
