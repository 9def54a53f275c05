"""Generated ids: the original server's form, unique, in creation order."""

import re
import time

from simgate.services.ids import new_id


def test_ids_have_the_original_form() -> None:
    for _ in range(100):
        assert re.fullmatch(r"[0-9A-Za-z_-]{21}", new_id())


def test_ids_are_unique() -> None:
    assert len({new_id() for _ in range(20_000)}) == 20_000


def test_later_ids_sort_after_earlier_ones() -> None:
    earlier = [new_id() for _ in range(50)]
    made = time.time_ns() // 1_000_000
    while time.time_ns() // 1_000_000 == made:  # until the clock is a millisecond on
        pass
    later = [new_id() for _ in range(50)]
    assert max(earlier) < min(later)
