"""Routing strategies as pure functions, checked by property: per-SIM limits, strategies
and failover beside the three original selection modes."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simgate.domain.routing import (
    Choice,
    LimitsReached,
    NoSimAvailable,
    Policy,
    SimRule,
    SimSelectionMode,
    SimUsage,
    Strategy,
    choose_sim,
    eligible,
    limit_reached,
    policy_from_settings,
    route,
    worth_failover,
)
from simgate.domain.sims import SimSlot, SimStatus, sim_change
from tests.e2e.gateway import looks_random

statuses = st.sampled_from(list(SimStatus))
limits = st.none() | st.integers(0, 5)
rules = st.builds(SimRule, rate_per_minute=limits, daily_limit=limits, monthly_limit=limits,
                  unique_recipients_monthly=limits, weight=st.integers(0, 5),
                  prefixes=st.lists(st.sampled_from(["+44", "+447", "+33"]), max_size=2)
                  .map(tuple), enabled=st.booleans())
usages = st.builds(SimUsage, minute=st.integers(0, 6), day=st.integers(0, 6),
                   month=st.integers(0, 6), recipients_month=st.integers(0, 6),
                   known=st.frozensets(st.sampled_from(["+447700900001", "+33612345678"])))
phones = st.lists(st.sampled_from(["+447700900001", "+447700900002", "+33612345678"]),
                  min_size=1, max_size=3, unique=True)


@st.composite
def situations(draw):
    count = draw(st.integers(1, 4))
    slots = [SimSlot(i, status=draw(statuses)) for i in range(count)]
    policy = Policy(
        mode=draw(st.sampled_from(list(SimSelectionMode))),
        strategy=draw(st.none() | st.sampled_from(list(Strategy))),
        sims={i: draw(rules) for i in range(count) if draw(st.booleans())},
    )
    usage = {i: draw(usages) for i in range(count)}
    return policy, slots, usage


@settings(max_examples=300, deadline=None)
@given(situations(), phones, st.integers(0, 4), st.none() | st.integers(0, 3),
       st.frozensets(st.integers(0, 3)), st.integers(0, 2**32))
def test_never_an_unready_disabled_exhausted_or_excluded_sim(
        situation, to, cursor, sticky, exclude, seed):
    policy, slots, usage = situation
    try:
        choice = route(policy, slots, usage, to, default_slot=0, cursor=cursor, sticky=sticky,
                       exclude=exclude, rng=random.Random(seed))
    except LimitsReached:
        # only limits stand in the way: some usable enabled SIM exists, each at a limit
        open_ = [s for s in slots if s.usable and policy.rule(s.slot_index).enabled
                 and s.slot_index not in exclude]
        assert open_ and all(limit_reached(policy.rule(s.slot_index), usage[s.slot_index], to)
                             for s in open_)
        return
    except NoSimAvailable:
        assert not any(s.usable and policy.rule(s.slot_index).enabled
                       and s.slot_index not in exclude for s in slots)
        return
    plain = policy.strategy is None and not policy.sims and not exclude
    if plain and policy.mode is SimSelectionMode.OS_DEFAULT:
        # the original OSDefault: the phone's default slot, whatever its state
        assert choice == Choice(0, cursor)
        return
    chosen = next(s for s in slots if s.slot_index == choice.slot_index)
    if plain and policy.mode is SimSelectionMode.ROUND_ROBIN:
        # the original RoundRobin: the next usable slot from the cursor on, wrapping round,
        # and the cursor moves past it
        usable = sorted(s.slot_index for s in slots if s.usable)
        assert choice == Choice(next((i for i in usable if i >= cursor), usable[0]),
                                choice.slot_index + 1)
    rule = policy.rule(chosen.slot_index)
    assert chosen.usable and rule.enabled and chosen.slot_index not in exclude
    assert limit_reached(rule, usage[chosen.slot_index], to) is None


@settings(max_examples=100, deadline=None)
@given(st.lists(statuses, min_size=1, max_size=4), st.integers(0, 4), st.integers(0, 2**32))
def test_without_routing_settings_the_original_modes_are_unchanged(states, cursor, seed):
    slots = [SimSlot(i, status=s) for i, s in enumerate(states)]
    for mode in SimSelectionMode:
        def original(mode=mode):
            return choose_sim(mode, slots, default_slot=0, cursor=cursor,
                              rng=random.Random(seed))

        def ours(mode=mode):
            return route(Policy(mode=mode), slots, {}, ["+447700900001"], default_slot=0,
                         cursor=cursor, rng=random.Random(seed))
        try:
            expected = original()
        except NoSimAvailable as exc:
            with pytest.raises(NoSimAvailable, match=str(exc).split(" (")[0]):
                ours()
            continue
        assert ours() == expected


def _order(policy: Policy, slots: list[SimSlot], n: int,
           rng: random.Random | None = None) -> list[int]:
    """The slots `route` picks for n messages in a row, each counted in the usage."""
    usage: dict[int, SimUsage] = {}
    cursor, order = 0, []
    for _ in range(n):
        choice = route(policy, slots, usage, ["+447700900001"], default_slot=0, cursor=cursor,
                       rng=rng)
        cursor = choice.cursor
        order.append(choice.slot_index)
        day = order.count(choice.slot_index)
        usage[choice.slot_index] = SimUsage(day=day, month=day)
    return order


def _picks(policy: Policy, slots: list[SimSlot], n: int) -> Counter[int]:
    return Counter(_order(policy, slots, n))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 9), min_size=1, max_size=6), st.integers(1, 500))
def test_weighted_follows_the_weights_within_one_message_per_sim(weights, n):
    slots = [SimSlot(i) for i in range(len(weights))]
    policy = Policy(strategy=Strategy.WEIGHTED,
                    sims={i: SimRule(weight=w) for i, w in enumerate(weights)})
    counts = _picks(policy, slots, n)
    total = sum(weights)
    for i, weight in enumerate(weights):
        assert abs(counts[i] - n * weight / total) <= len(weights)


@settings(max_examples=100, deadline=None)
@given(st.lists(statuses, min_size=1, max_size=6), st.integers(1, 500))
def test_round_robin_is_fair_within_one_message_over_the_usable_sims(states, n):
    slots = [SimSlot(i, status=s) for i, s in enumerate(states)]
    usable = [s.slot_index for s in slots if s.usable]
    policy = Policy(mode=SimSelectionMode.ROUND_ROBIN, sims={0: SimRule()})  # rules: route()
    if not usable:
        with pytest.raises(NoSimAvailable):
            _picks(policy, slots, n)
        return
    counts = _picks(policy, slots, n)
    assert set(counts) <= set(usable)
    assert max(counts[i] for i in usable) - min(counts[i] for i in usable) <= 1


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 20), min_size=2, max_size=5), st.integers(1, 200))
def test_least_used_evens_out_and_never_passes_a_daily_limit(limits_, n):
    slots = [SimSlot(i) for i in range(len(limits_))]
    policy = Policy(strategy=Strategy.LEAST_USED,
                    sims={i: SimRule(daily_limit=d) for i, d in enumerate(limits_)})
    usage: dict[int, SimUsage] = {}
    counts: Counter[int] = Counter()
    for _ in range(n):
        try:
            slot = route(policy, slots, usage, ["+1"], default_slot=0).slot_index
        except LimitsReached:
            assert sum(counts.values()) == sum(limits_)
            break
        counts[slot] += 1
        usage[slot] = SimUsage(day=counts[slot])
    assert all(counts[i] <= d for i, d in enumerate(limits_))


def test_unique_recipients_counts_only_new_ones():
    rule = SimRule(unique_recipients_monthly=2)
    full = SimUsage(recipients_month=2, known=frozenset({"+1"}))
    assert limit_reached(rule, full, ["+1"]) is None  # a known recipient may still use it
    assert "2 distinct recipients" in limit_reached(rule, full, ["+2"])


def test_sticky_keeps_the_contact_on_its_sim_and_prefix_rules_prefer_the_network():
    slots = [SimSlot(0), SimSlot(1)]
    sticky = Policy(mode=SimSelectionMode.ROUND_ROBIN, strategy=Strategy.STICKY)
    assert route(sticky, slots, {}, ["+1"], default_slot=0, sticky=1).slot_index == 1
    assert route(sticky, slots, {}, ["+1"], default_slot=0, sticky=None).slot_index == 0
    prefixes = Policy(strategy=Strategy.PREFIX_RULES,
                      sims={0: SimRule(prefixes=("+44",)), 1: SimRule(prefixes=("+447",))})
    assert route(prefixes, slots, {}, ["+447700900001"], default_slot=0).slot_index == 1
    assert route(prefixes, slots, {}, ["+441632960001"], default_slot=0).slot_index == 0
    assert route(prefixes, slots, {}, ["+33612345678"], default_slot=1).slot_index == 1


def test_limits_reached_says_which_sim_and_which_limit():
    slots = [SimSlot(0), SimSlot(1, status=SimStatus.ABSENT)]
    policy = Policy(sims={0: SimRule(daily_limit=3)})
    with pytest.raises(LimitsReached, match="SIM 1: reached its daily limit of 3; SIM 2: Absent"):
        eligible(policy, slots, {0: SimUsage(day=3)}, ["+1"])
    assert eligible(policy, slots, {0: SimUsage(day=3)}, ["+1"], bypass_limits=True) == [0]


def test_failover_only_for_sim_or_network_reasons():
    assert worth_failover(38, permanent=False)  # network out of order
    assert worth_failover(None, permanent=False)  # the modem is gone
    assert worth_failover(313, permanent=True)  # SIM failure
    assert not worth_failover(1, permanent=True)  # unassigned number
    assert not worth_failover(None, permanent=True)  # may have gone out, or bad input


def test_policy_from_settings_reads_sim_numbers_as_slots():
    policy = policy_from_settings(
        {"sim_selection_mode": "RoundRobin"},
        {"strategy": "Weighted", "failover": False, "max_attempts": 2,
         "sims": {"2": {"weight": 3, "prefixes": ["+44"], "daily_limit": None}}})
    assert policy.mode is SimSelectionMode.ROUND_ROBIN and policy.strategy is Strategy.WEIGHTED
    assert policy.sims == {1: SimRule(weight=3, prefixes=("+44",))}
    assert not policy.failover and policy.max_attempts == 2


@settings(max_examples=200, deadline=None)
@given(situations(), phones, st.integers(0, 4), st.frozensets(st.integers(0, 3), min_size=1),
       st.integers(0, 2**32))
def test_never_a_paused_sim_and_a_message_waits_while_only_pauses_stand_in_the_way(
        situation, to, cursor, paused_slots, seed):
    policy, slots, usage = situation
    paused = {i: "paused until 12:00:00 UTC (3 failed sends in a row)" for i in paused_slots}
    try:
        choice = route(policy, slots, usage, to, default_slot=0, cursor=cursor,
                       paused=paused, rng=random.Random(seed))
    except LimitsReached as exc:  # waits: some usable, enabled SIM is paused or limited
        assert any(s.usable and policy.rule(s.slot_index).enabled for s in slots)
        assert "paused" in str(exc) or "limit" in str(exc)
        return
    except NoSimAvailable:
        assert not any(s.usable and policy.rule(s.slot_index).enabled for s in slots)
        return
    assert choice.slot_index not in paused


@pytest.mark.parametrize(("before", "after", "change"), [
    (None, SimSlot(0), "inserted"),
    (SimSlot(0, SimStatus.ABSENT), SimSlot(0, SimStatus.PIN_REQUIRED), "inserted"),
    (SimSlot(0), SimSlot(0, SimStatus.ABSENT), "removed"),
    (SimSlot(0, iccid="1"), SimSlot(0, iccid="2"), "replaced"),
    (SimSlot(0), SimSlot(0, SimStatus.PIN_REQUIRED), "pin-required"),
    (SimSlot(0), SimSlot(0, SimStatus.NO_NETWORK), "network-lost"),
    (SimSlot(0, SimStatus.NO_NETWORK), SimSlot(0), "ready"),
    (SimSlot(0, SimStatus.READY, signal=9), SimSlot(0, signal=20), None),
    (SimSlot(0, SimStatus.ABSENT), SimSlot(0, SimStatus.ABSENT), None),
])
def test_sim_changes_are_named(before, after, change):
    assert sim_change(before, after) == change


def _sequence(mode: SimSelectionMode, n: int, seed: int) -> list[int]:
    """The SIM numbers picked for n messages in a row over two ready SIMs."""
    slots = [SimSlot(0, status=SimStatus.READY), SimSlot(1, status=SimStatus.READY)]
    return [slot + 1 for slot in _order(Policy(mode=mode), slots, n, random.Random(seed))]


@pytest.mark.parametrize("seed", range(20))
def test_the_random_check_of_the_e2e_tests_tells_random_from_round_robin(seed):
    assert looks_random(_sequence(SimSelectionMode.RANDOM, 30, seed))
    assert not looks_random(_sequence(SimSelectionMode.ROUND_ROBIN, 30, seed))
    assert not looks_random(_sequence(SimSelectionMode.OS_DEFAULT, 30, seed))
