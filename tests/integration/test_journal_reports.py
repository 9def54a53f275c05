"""Status reports in the agent's journal: kept from the moment they arrive, through a
crash, until the server has the state they tell."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from simgate.agent.agent import delivery_items
from simgate.agent.journal import EARLY_REPORT_SECONDS, JournalFile


def delivered() -> dict:
    """A report as the agent files it on arrival: `at` is now (a kept report ages)."""
    return {"delivered": True, "status": 0, "at": datetime.now(UTC).isoformat()}

TO = "+19162255887"


def states(journal: JournalFile) -> list[dict]:
    return [body for _, body in journal.unsent("states")]


def test_a_report_that_beats_its_send_answer_survives_a_crash(tmp_path):
    report = delivered()
    before = JournalFile(tmp_path / "journal.db")
    assert before.file_report(1, 42, report, delivery_items) is False  # no part known yet
    # kill -9 here: nothing is closed; the restarted agent opens the same file
    after = JournalFile(tmp_path / "journal.db")
    assert after.add_parts(1, [42], "m-1", TO, delivery_items) is True
    assert states(after) == [{"id": "m-1", "state": "Delivered", "recipients": [
        {"phoneNumber": TO, "state": "Delivered", "error": None}],
        "states": {"Delivered": report["at"]}}]
    assert after.add_parts(1, [43], "m-2", TO, delivery_items) is False  # used once


def test_a_report_is_settled_with_its_state_queued_in_one_step(tmp_path):
    journal = JournalFile(tmp_path / "journal.db")
    assert journal.add_parts(0, [1, 2], "long", TO, delivery_items) is False
    assert journal.file_report(0, 1, delivered(), delivery_items) is True
    assert states(journal) == []  # one part of two: not yet Delivered
    assert journal.file_report(0, 2, delivered(), delivery_items) is True
    assert [s["state"] for s in states(journal)] == ["Delivered"]
    journal.add_parts(0, [3, 4], "failed", TO, delivery_items)
    assert journal.file_report(0, 3, {**delivered(), "delivered": False, "status": 0x41},
                               delivery_items) is True
    assert states(journal)[-1]["recipients"][0]["error"] == "Delivery failed: status 0x41"
    assert journal.file_report(0, 4, delivered(), delivery_items) is False  # parts dropped


def test_a_report_kept_too_long_settles_no_later_part_with_its_reference(tmp_path):
    # passed on again after a crash, after its part was settled: a repeat, kept unclaimed
    journal = JournalFile(tmp_path / "journal.db")
    stale = datetime.now(UTC) - timedelta(seconds=EARLY_REPORT_SECONDS + 1)
    assert journal.file_report(0, 7, {**delivered(), "at": stale.isoformat()},
                               delivery_items) is False
    # 256 sends later the 8-bit reference comes round again: that part is not Delivered
    assert journal.add_parts(0, [7], "later", TO, delivery_items) is False
    assert states(journal) == []
    assert journal.file_report(0, 7, delivered(), delivery_items) is True  # its own report
