"""MemoryLedger on its own: the sums, the edges of each check, and the guards.

Every boundary is tried at exactly the limit and one byte past it, so that a ``>``
turned into ``>=`` (or the reverse) fails a test here.
"""

from __future__ import annotations

import pytest

from modelpool.core.ledger import MemoryLedger
from modelpool.errors import AccountingError, DoesNotFit

GB = 10**9


def ledger(budget: int = 8 * GB) -> MemoryLedger:
    return MemoryLedger({"cpu": budget})


def sums(books: MemoryLedger) -> tuple[int, int, int, int]:
    acc = books.account("cpu")
    return acc.committed_total, acc.leaving_total, acc.reserved_total, acc.started_total


# --- refusing what can never fit ------------------------------------------------------


def test_a_model_exactly_the_size_of_the_budget_fits() -> None:
    ledger().check_fits("whole", "cpu", 8 * GB)  # no raise


def test_a_model_one_byte_over_the_budget_does_not_fit() -> None:
    with pytest.raises(DoesNotFit) as caught:
        ledger().check_fits("huge", "cpu", 8 * GB + 1)
    assert (caught.value.model_id, caught.value.device) == ("huge", "cpu")
    assert (caught.value.need, caught.value.budget) == (8 * GB + 1, 8 * GB)


def test_check_fits_judges_the_budget_as_moved_not_as_configured() -> None:
    books = ledger()
    books.set_budget("cpu", 5 * GB)
    books.check_fits("a", "cpu", 5 * GB)
    with pytest.raises(DoesNotFit):
        books.check_fits("a", "cpu", 5 * GB + 1)


def test_an_unknown_device_names_the_known_ones() -> None:
    books = MemoryLedger({"cpu": GB, "cuda:0": GB})
    known = r"no budget for device 'cuda:9' \(budgets: cpu, cuda:0\)"
    with pytest.raises(AccountingError, match=known):
        books.account("cuda:9")
    with pytest.raises(AccountingError, match=r"budgets: none"):
        MemoryLedger({}).account("cpu")
    assert "cuda:0" in books
    assert "cuda:9" not in books
    assert books.devices() == ["cpu", "cuda:0"]
    assert [acc.device for acc in books] == ["cpu", "cuda:0"]


# --- the plan: reserving --------------------------------------------------------------


def test_a_reservation_of_exactly_the_planned_free_bytes_is_taken() -> None:
    books = ledger()
    books.reserve("cpu", "a", 3 * GB)
    books.reserve("cpu", "b", 5 * GB)  # exactly what is left
    acc = books.account("cpu")
    assert acc.planned_free == 0
    assert acc.reserved == {"a": 3 * GB, "b": 5 * GB}
    assert sums(books) == (0, 0, 8 * GB, 0)


def test_reserving_beyond_the_plan_is_refused_and_books_nothing() -> None:
    books = ledger()
    books.reserve("cpu", "a", 3 * GB)
    with pytest.raises(AccountingError, match="exceeds the plan") as caught:
        books.reserve("cpu", "b", 5 * GB + 1)
    assert "'b'" in str(caught.value)
    assert f"({5 * GB} B free)" in str(caught.value)
    assert books.account("cpu").reserved == {"a": 3 * GB}
    assert sums(books) == (0, 0, 3 * GB, 0)


def test_the_plan_counts_what_leaving_models_give_back() -> None:
    books = ledger()
    books.reserve("cpu", "old", 6 * GB)
    books.commit("cpu", "old", 6 * GB)
    with pytest.raises(AccountingError, match="exceeds the plan"):
        books.reserve("cpu", "new", 6 * GB)  # 2 GB free while "old" stays
    books.mark_leaving("cpu", "old")
    books.reserve("cpu", "new", 8 * GB)  # "old" will give its 6 GB back
    acc = books.account("cpu")
    assert acc.planned_free == 0
    assert acc.physical_free == 2 * GB
    # ...but the load may not start until the bytes are physically free.
    assert not books.can_start("cpu", "new")
    with pytest.raises(AccountingError, match="memory not free yet"):
        books.start("cpu", "new")
    books.release("cpu", "old")
    assert books.can_start("cpu", "new")
    books.start("cpu", "new")
    assert sums(books) == (0, 0, 8 * GB, 8 * GB)
    assert acc.physical_free == 0


def test_a_model_is_booked_once() -> None:
    books = ledger()
    books.reserve("cpu", "a", GB)
    with pytest.raises(AccountingError, match="'a' is already booked on cpu"):
        books.reserve("cpu", "a", GB)
    books.commit("cpu", "a", GB)
    with pytest.raises(AccountingError, match="already booked"):
        books.reserve("cpu", "a", GB)
    assert sums(books) == (GB, 0, 0, 0)


# --- starting, committing, cancelling -------------------------------------------------


def test_a_load_may_start_when_exactly_its_bytes_are_physically_free() -> None:
    books = ledger()
    books.reserve("cpu", "a", 2 * GB)
    books.commit("cpu", "a", 2 * GB)
    books.mark_leaving("cpu", "a")
    books.reserve("cpu", "b", 6 * GB)
    assert books.account("cpu").physical_free == 6 * GB
    assert books.can_start("cpu", "b")  # 6 GB reserved, 6 GB free: not one byte short
    books.reserve("cpu", "c", 2 * GB)  # the plan counts a's 2 GB as gone
    books.start("cpu", "b")
    assert books.account("cpu").physical_free == 0
    assert not books.can_start("cpu", "c")  # a has not left yet


def test_commit_books_the_measured_size_not_the_reservation() -> None:
    books = ledger()
    books.reserve("cpu", "a", 2 * GB)
    books.start("cpu", "a")
    books.commit("cpu", "a", 3 * GB)
    acc = books.account("cpu")
    assert acc.committed == {"a": 3 * GB}
    assert acc.reserved == {}
    assert acc.started == {}
    assert sums(books) == (3 * GB, 0, 0, 0)
    assert acc.planned_free == 5 * GB
    assert acc.physical_free == 5 * GB


def test_cancel_frees_a_reservation_started_or_not() -> None:
    books = ledger()
    books.reserve("cpu", "a", 2 * GB)
    books.reserve("cpu", "b", 3 * GB)
    books.start("cpu", "b")
    books.cancel("cpu", "a")
    assert sums(books) == (0, 0, 3 * GB, 3 * GB)
    books.cancel("cpu", "b")
    assert sums(books) == (0, 0, 0, 0)
    assert books.is_empty()


def test_leaving_and_release() -> None:
    books = ledger()
    books.reserve("cpu", "a", 2 * GB)
    books.commit("cpu", "a", 2 * GB)
    books.mark_leaving("cpu", "a")
    with pytest.raises(AccountingError, match="'a' is already leaving cpu"):
        books.mark_leaving("cpu", "a")
    assert sums(books) == (2 * GB, 2 * GB, 0, 0)
    books.release("cpu", "a")
    assert sums(books) == (0, 0, 0, 0)
    assert books.account("cpu").leaving == {}


def test_a_model_released_without_leaving_first_frees_its_bytes() -> None:
    books = ledger()
    books.reserve("cpu", "a", 2 * GB)
    books.commit("cpu", "a", 2 * GB)
    books.release("cpu", "a")  # lost: it crashed, nobody unloaded it
    assert sums(books) == (0, 0, 0, 0)
    assert books.is_empty()


# --- over budget, snapshot, emptiness -------------------------------------------------


def test_an_under_estimated_load_shows_up_as_over_budget() -> None:
    books = ledger()
    books.reserve("cpu", "a", 8 * GB)
    assert books.account("cpu").over_budget == 0  # exactly full is not over
    books.commit("cpu", "a", 9 * GB)
    assert books.account("cpu").over_budget == GB
    snap = books.snapshot()["cpu"]
    assert snap == {
        "budget": 8 * GB,
        "committed": 9 * GB,
        "reserved": 0,
        "leaving": 0,
        "free": 0,  # never negative
        "peak": 9 * GB,
    }


def test_a_budget_that_shrinks_under_the_plan_is_over_budget() -> None:
    books = ledger()
    books.reserve("cpu", "a", 4 * GB)
    books.commit("cpu", "a", 4 * GB)
    books.set_budget("cpu", 3 * GB)
    assert books.account("cpu").budget == 3 * GB
    assert books.account("cpu").over_budget == GB


def test_snapshot_reports_each_sum() -> None:
    books = MemoryLedger({"cpu": 8 * GB, "cuda:0": 4 * GB})
    books.reserve("cpu", "a", 2 * GB)
    books.commit("cpu", "a", 2 * GB)
    books.mark_leaving("cpu", "a")
    books.reserve("cpu", "b", 3 * GB)
    assert books.snapshot() == {
        "cpu": {
            "budget": 8 * GB,
            "committed": 2 * GB,
            "reserved": 3 * GB,
            "leaving": 2 * GB,
            "free": 5 * GB,  # 8 − (2 − 2) − 3
            "peak": 2 * GB,  # what was ever held at once: a, not b's reservation
        },
        "cuda:0": {
            "budget": 4 * GB,
            "committed": 0,
            "reserved": 0,
            "leaving": 0,
            "free": 4 * GB,
            "peak": 0,
        },
    }


def test_empty_means_nothing_committed_and_nothing_reserved_on_any_device() -> None:
    books = MemoryLedger({"cpu": GB, "cuda:0": GB})
    assert books.is_empty()
    books.reserve("cuda:0", "a", GB)
    assert not books.is_empty()
    books.commit("cuda:0", "a", GB)
    assert not books.is_empty()
    books.release("cuda:0", "a")
    assert books.is_empty()


def test_budgets_are_whole_bytes() -> None:
    books = MemoryLedger({"cpu": 1.5e9})  # type: ignore[dict-item]
    assert books.account("cpu").budget == 1_500_000_000
    assert isinstance(books.account("cpu").budget, int)
    books.set_budget("cpu", 2.0e9)  # type: ignore[arg-type]
    assert isinstance(books.account("cpu").budget, int)


def test_loads_started_side_by_side_add_up() -> None:
    books = ledger()
    books.reserve("cpu", "a", 2 * GB)
    books.reserve("cpu", "b", 3 * GB)
    books.start("cpu", "a")
    books.start("cpu", "b")
    assert sums(books) == (0, 0, 5 * GB, 5 * GB)
    assert books.account("cpu").physical_free == 3 * GB
    assert books.account("cpu").peak == 5 * GB  # loads in flight hold memory too
    books.commit("cpu", "a", 2 * GB)
    books.cancel("cpu", "b")
    assert books.account("cpu").peak == 5 * GB  # the most ever held, not what is held now
