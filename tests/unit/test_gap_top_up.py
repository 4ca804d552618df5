"""Gap-driven re-checks (issue 14's 10x target): an unchanged id waits half its age, and a batch that
goes anyway carries the ids of its send date that have waited half their wait (re-checks, never one
asked within the provider's cache; ids never asked, half their gap after sending). Every expected time is worked by hand:
floor 900 s, cache 600 s, gap 900 s, linger min(60, 0.1 x 900) = 60 s, batches of 3 (2 where
said). T0 is 2023-11-14 22:13:20 UTC, 06:13 on the 15th in China; nine hours earlier is the 14th."""

from __future__ import annotations

import pytest

from worker.poll.ids import IdPlan, IdTracker, Tracked
from worker.providers.base import CHINA_TZ

T0 = 1_700_000_000.0


def gaps(batch: int = 3) -> IdTracker:
    return IdTracker(max_age_secs=30 * 86400, batch=batch, floor_secs=900, min_recheck_secs=600,
                     gap_after_secs=900, tz=CHINA_TZ)


def checked_at(t: IdTracker, email_id: str, sent_at: float, at: float) -> None:
    """`email_id`, sent at `sent_at`, asked alone at `at` (overdue and lingered) and found unchanged."""
    t.apply_write(email_id, Tracked(f"{email_id}@x", sent_at), sent_at)
    assert t.claim(at) == [email_id]
    t.apply(IdPlan((), {}, (email_id,)), at)


@pytest.mark.parametrize(("age", "wait"), [
    (960, 900),          # half of 960 is under the floor
    (1800, 900),         # half of 1800 is the floor
    (2000, 1000),
    (7200, 3600),
    (43_200, 21_600),    # half of 12 h is the 6 h cap
    (50_000, 21_600),
])
def test_an_unchanged_gap_id_waits_half_its_age_within_the_floor_and_six_hours(age, wait):
    t = gaps()
    checked_at(t, "r", T0, T0 + age)
    assert t.ids["r"].due_at == T0 + age + wait


def test_a_batch_that_goes_takes_a_recheck_that_waited_half_its_wait():
    t = gaps()
    checked_at(t, "r", T0, T0 + 7200)                         # due at +10,800, a 3,600 s wait
    t.apply_write("n", Tracked("n@x", T0 + 8040), T0 + 8040)  # due at +8,940, lingered at +9,000
    assert t.claim(T0 + 9000) == ["n", "r"]                   # r is 1,800 s from due: half its wait
    assert t.ids["r"].due_at == float("inf")                  # claimed


def test_a_recheck_one_second_short_of_half_its_wait_stays_in_the_schedule():
    t = gaps()
    checked_at(t, "r", T0, T0 + 7200)
    t.apply_write("n", Tracked("n@x", T0 + 8039), T0 + 8039)  # lingered at +8,999
    assert t.claim(T0 + 8999) == ["n"]                        # r is 1,801 s from due
    assert t.ids["r"].due_at == T0 + 10_800


@pytest.mark.parametrize(("after", "joins"), [(599, False), (600, True)])
def test_a_recheck_never_rides_within_the_providers_cache(after, joins):
    t = gaps()
    checked_at(t, "r", T0, T0 + 960)                          # due at +1,860, a 900 s wait
    go = T0 + 960 + after                                     # half the wait has passed at +1,410
    t.apply_write("n", Tracked("n@x", go - 960), go - 960)    # due and lingered at `go`
    assert t.claim(go) == (["n", "r"] if joins else ["n"])


def test_an_id_never_asked_rides_once_half_its_gap_has_passed():
    """Its wait is its gap, from sending: at +960 m (sent at +100) has waited 860 of 900 s and
    rides; k (sent at +600) has waited 360, less than half, and stays (before this rule, an id
    never asked did not ride at all)."""
    t = gaps()
    t.apply_write("n", Tracked("n@x", T0), T0)                # due at +900, lingered at +960
    t.apply_write("m", Tracked("m@x", T0 + 100), T0 + 100)    # due at +1,000
    t.apply_write("k", Tracked("k@x", T0 + 600), T0 + 600)    # due at +1,500
    assert t.claim(T0 + 960) == ["n", "m"]
    assert t.ids["k"].due_at == T0 + 1500


def test_without_a_due_id_no_recheck_goes_early():
    t = gaps()
    checked_at(t, "r", T0, T0 + 7200)
    assert t.claim(T0 + 10_000) == []                         # r could ride, but nothing goes
    assert t.ids["r"].due_at == T0 + 10_800
    assert t.claim(T0 + 10_860) == ["r"]                      # due, alone after its linger


def test_a_recheck_of_another_send_date_does_not_ride():
    t = gaps()
    day14 = T0 - 9 * 3600
    checked_at(t, "old", day14, T0 - 1800)                    # age 8.5 h: waits 15,300 s, due at +13,500
    t.apply_write("n", Tracked("n@x", T0 + 8040), T0 + 8040)
    assert t.claim(T0 + 9000) == ["n"]                        # old is within half its wait, but the 14th
    assert t.ids["old"].due_at == T0 + 13_500


def test_riders_fill_a_batch_so_it_goes_without_lingering():
    t = gaps(batch=2)
    checked_at(t, "r", T0, T0 + 7200)
    t.apply_write("n", Tracked("n@x", T0 + 8100), T0 + 8100)  # due at +9,000: not lingered yet
    assert t.claim(T0 + 9000) == ["n", "r"]                   # but full


def test_a_lingering_part_batch_puts_its_riders_back():
    t = gaps()
    checked_at(t, "r", T0, T0 + 7200)
    t.apply_write("n", Tracked("n@x", T0 + 8100), T0 + 8100)
    assert t.claim(T0 + 9000) == []                           # 2 of 3, n has lingered 0 of 60 s
    assert t.ids["r"].due_at == T0 + 10_800 and t.ids["n"].due_at == T0 + 9000
    assert t.claim(T0 + 9060) == ["n", "r"]


def test_a_look_at_the_due_ids_takes_no_riders():
    t = gaps()
    checked_at(t, "r", T0, T0 + 7200)
    t.apply_write("n", Tracked("n@x", T0 + 8040), T0 + 8040)
    assert t.due(T0 + 9000) == ["n"]
    assert t.ids["r"].due_at == T0 + 10_800


def rider_behind(others: int) -> IdTracker:
    """A due id, then `others` ids not checked yet and due before the rider r, which may ride."""
    t = gaps(batch=2)
    checked_at(t, "r", T0, T0 + 7200)                         # due at +10,800, may ride from +9,000
    t.apply_write("n", Tracked("n@x", T0 + 8040), T0 + 8040)  # due at +8,940, lingered at +9,000
    for i in range(others):                                   # due at +9,500.., never asked: no riders
        t.apply_write(f"o{i}", Tracked("o@x", T0 + 8600 + i), T0 + 8600)
    return t


def test_a_rider_is_found_behind_ids_that_may_not_ride():
    assert rider_behind(1).claim(T0 + 9000) == ["n", "r"]


def test_riders_are_looked_for_past_eight_ids_that_may_not_ride():
    t = rider_behind(8)                                       # 4 x the batch of 2
    assert t.claim(T0 + 9000) == ["n", "r"]
    assert all(t.ids[f"o{i}"].due_at == T0 + 9500 + i for i in range(8))   # held, then put back


def test_the_look_for_riders_stops_after_more_than_eight():
    t = rider_behind(9)
    assert t.claim(T0 + 9000) == ["n"]
    assert t.ids["r"].due_at == T0 + 10_800 and t.ids["o8"].due_at == T0 + 9508


def test_a_full_batch_of_riders_without_a_due_id_does_not_go():
    t = gaps(batch=2)
    checked_at(t, "r1", T0, T0 + 7200)                        # due at +10,800
    checked_at(t, "r2", T0 + 1, T0 + 7201)                    # due at +10,801
    assert t.claim(T0 + 10_000) == []                         # both could ride, but nothing is due
    assert (t.ids["r1"].due_at, t.ids["r2"].due_at) == (T0 + 10_800, T0 + 10_801)


def test_an_id_due_again_after_a_status_change_goes_when_due_even_within_min_recheck():
    """A status a sweep found moves a checked id's next check to a minute later; due is due (the
    rider rule's min_recheck does not hold it back): asked at +960, changed at +1,000, due at +1,060."""
    import attrs
    t = gaps(batch=1)
    checked_at(t, "r", T0, T0 + 960)                          # unchanged: due at +1,860
    t.apply_write("r", attrs.evolve(t.ids["r"], status="soft_bounce"), T0 + 1000)
    assert t.ids["r"].due_at == T0 + 1060
    assert t.claim(T0 + 1060) == ["r"]
