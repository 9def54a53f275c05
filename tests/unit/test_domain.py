"""Pure rules: states, phone numbers, SIM slots, SIM selection."""

import random
import re
from collections import Counter
from datetime import UTC, datetime

import pytest

from simgate.domain.hours import WorkHours
from simgate.domain.phones import InvalidPhoneNumber, normalize
from simgate.domain.routing import (
    NoSimAvailable,
    SimSelectionMode,
    app_failure_worth_failover,
    choose_sim,
)
from simgate.domain.sims import InvalidSimNumber, SimSlot, SimStatus, check_sim_number
from simgate.domain.states import ProcessState as S
from simgate.domain.states import advance, aggregate

DUAL = [SimSlot(0), SimSlot(1)]


class TestStates:
    def test_moves_forward_only(self):
        assert advance(S.SENT, S.PROCESSED) is S.SENT
        assert advance(S.PROCESSED, S.SENT) is S.SENT

    def test_failed_and_cancelled_are_final(self):
        assert advance(S.FAILED, S.DELIVERED) is S.FAILED
        assert advance(S.CANCELLED, S.PROCESSED) is S.CANCELLED

    def test_delivered_gives_way_only_to_failed(self):
        assert advance(S.DELIVERED, S.SENT) is S.DELIVERED
        assert advance(S.DELIVERED, S.FAILED) is S.FAILED

    def test_aggregate_takes_least_advanced_live_recipient(self):
        assert aggregate([S.SENT, S.DELIVERED]) is S.SENT
        assert aggregate([S.FAILED, S.DELIVERED]) is S.DELIVERED
        assert aggregate([S.FAILED, S.FAILED]) is S.FAILED


class TestPhones:
    def test_normalises_to_e164(self):
        assert normalize("+1 (916) 225-5887", "US") == "+19162255887"
        assert normalize("916 225 5887", "US") == "+19162255887"

    @pytest.mark.parametrize("raw", ["12", "hello", "+1 000 000 0000"])
    def test_rejects_invalid_naming_the_number(self, raw):
        with pytest.raises(InvalidPhoneNumber, match=re.escape(repr(raw))):
            normalize(raw, "US")

    def test_rejects_fixed_line(self):
        # A Moscow landline: fixed-line numbers cannot receive SMS.
        with pytest.raises(InvalidPhoneNumber, match="not mobile phone number"):
            normalize("+74951234567", "RU")


class TestSimNumber:
    def test_valid_slot(self):
        assert check_sim_number(2, DUAL, "dev").slot_index == 1

    def test_out_of_range_names_valid_slots(self):
        with pytest.raises(InvalidSimNumber, match=r"simNumber 3 is out of range.*1, 2"):
            check_sim_number(3, DUAL, "dev")

    def test_empty_slot_is_rejected(self):
        slots = [SimSlot(0), SimSlot(1, status=SimStatus.ABSENT)]
        with pytest.raises(InvalidSimNumber, match=r"slot 2 .* is empty; valid simNumber values: 1$"):
            check_sim_number(2, slots, "dev")

    def test_not_ready_slot_is_accepted_to_fail_at_send_time(self):
        slots = [SimSlot(0), SimSlot(1, status=SimStatus.PIN_REQUIRED)]
        assert check_sim_number(2, slots, "dev").status is SimStatus.PIN_REQUIRED


class TestRouting:
    def test_os_default_uses_backend_default(self):
        assert choose_sim(SimSelectionMode.OS_DEFAULT, DUAL, default_slot=0).slot_index == 0
        assert choose_sim(SimSelectionMode.OS_DEFAULT, DUAL, default_slot=None).slot_index is None

    def test_round_robin_alternates_and_is_fair(self):
        cursor, used = 0, []
        slots = [SimSlot(i) for i in range(3)]
        for _ in range(300):
            choice = choose_sim(SimSelectionMode.ROUND_ROBIN, slots, default_slot=0, cursor=cursor)
            used.append(choice.slot_index)
            cursor = choice.cursor
        assert used[:6] == [0, 1, 2, 0, 1, 2]
        assert Counter(used) == {0: 100, 1: 100, 2: 100}

    def test_round_robin_skips_slots_that_are_not_ready(self):
        slots = [SimSlot(0), SimSlot(1, status=SimStatus.NO_NETWORK), SimSlot(2)]
        cursor, used = 0, []
        for _ in range(4):
            choice = choose_sim(SimSelectionMode.ROUND_ROBIN, slots, default_slot=0, cursor=cursor)
            used.append(choice.slot_index)
            cursor = choice.cursor
        assert used == [0, 2, 0, 2]

    def test_random_is_uniform_over_ready_slots(self):
        rng = random.Random(7)
        slots = [SimSlot(0), SimSlot(1), SimSlot(2, status=SimStatus.ABSENT)]
        counts = Counter(
            choose_sim(SimSelectionMode.RANDOM, slots, default_slot=0, rng=rng).slot_index
            for _ in range(4000)
        )
        assert set(counts) == {0, 1}
        # Binomial(4000, 0.5): 5 standard deviations is about +-158.
        assert abs(counts[0] - 2000) < 158

    def test_no_ready_sim_explains_each_slot(self):
        slots = [SimSlot(0, status=SimStatus.PIN_REQUIRED, detail="SIM locked by PIN")]
        with pytest.raises(NoSimAvailable, match="No SIMs found.*SIM 1: SIM locked by PIN"):
            choose_sim(SimSelectionMode.RANDOM, slots, default_slot=0)


def test_a_cancel_waits_for_the_device_and_a_send_it_reports_wins():
    cancelling = S.CANCELLING
    assert advance(cancelling, S.PROCESSED) is cancelling  # a claim does not end it
    assert advance(cancelling, S.PENDING) is cancelling
    assert advance(cancelling, S.CANCELLED) is S.CANCELLED
    assert advance(cancelling, S.SENT) is S.SENT
    assert advance(cancelling, S.FAILED) is S.FAILED


def test_the_apps_sim_and_network_failures_fail_over_and_the_others_do_not():
    worth = ["Send result: RESULT_ERROR_NO_SERVICE (Failed because service is currently "
             "unavailable)", "Send result: RESULT_ERROR_RADIO_OFF (Failed because radio was "
             "explicitly turned off)", "Send result: RESULT_ERROR_GENERIC_FAILURE (Generic "
             "failure cause)", "Send result: RESULT_RIL_NETWORK_ERR (x)"]
    not_worth = ["Send result: RESULT_ERROR_LIMIT_EXCEEDED (Failed because we reached the "
                 "sending queue limit)", "Send result: RESULT_ERROR_FDN_CHECK_FAILURE (x)",
                 "Send result: RESULT_ERROR_SHORT_CODE_NOT_ALLOWED (x)",
                 "Send result: RESULT_ERROR_NULL_PDU (x)", "TTL expired",
                 "Can't send message: No SIMs found", "", None]
    assert [app_failure_worth_failover(e) for e in worth] == [True] * len(worth)
    assert [app_failure_worth_failover(e) for e in not_worth] == [False] * len(not_worth)


def test_work_hours_kept_in_a_named_zone():
    hours = WorkHours.of({"work_hours_enabled": True, "work_hours_start": "09:00",
                          "work_hours_end": "17:00"}, "Asia/Tokyo")
    # 01:30 UTC is 10:30 in Tokyo: open; 09:30 UTC is 18:30 there: closed until 00:00 UTC
    assert hours.wait(datetime(2026, 12, 8, 1, 30, tzinfo=UTC)) == 0
    assert hours.wait(datetime(2026, 12, 8, 9, 30, tzinfo=UTC)) == 14.5 * 3600
    assert "Asia/Tokyo" in hours.describe()
    assert WorkHours.of({"work_hours_enabled": True, "work_hours_start": "09:00",
                         "work_hours_end": "17:00"}, None).wait(
        datetime(2026, 12, 8, 10, 0, tzinfo=UTC)) == 0  # UTC when none is named
