"""Rendezvous hashing spreads tenants evenly and moves only what must move."""

from __future__ import annotations

from collections import Counter

from jobs.shards import shard_for

TENANTS = range(10_000)
EIGHT = [f"shard-{i}" for i in range(8)]


def test_eight_shards_each_hold_an_eighth_within_ten_percent() -> None:
    counts = Counter(shard_for(t, EIGHT) for t in TENANTS)
    assert set(counts) == set(EIGHT)
    for shard, count in counts.items():
        assert abs(count - 10_000 / 8) <= 0.10 * 10_000 / 8, (shard, count)


def test_adding_a_ninth_moves_about_a_ninth_and_only_to_it() -> None:
    before = {t: shard_for(t, EIGHT) for t in TENANTS}
    after = {t: shard_for(t, [*EIGHT, "shard-8"]) for t in TENANTS}
    moved = [t for t in TENANTS if before[t] != after[t]]
    assert all(after[t] == "shard-8" for t in moved)  # none between two old shards
    assert abs(len(moved) - 10_000 / 9) <= 0.10 * 10_000 / 9


def test_removing_a_shard_moves_only_its_tenants() -> None:
    before = {t: shard_for(t, EIGHT) for t in TENANTS}
    after = {t: shard_for(t, EIGHT[1:]) for t in TENANTS}
    assert {t for t in TENANTS if before[t] != after[t]} == {t for t in TENANTS if before[t] == "shard-0"}


def test_mapping_is_stable_and_independent_of_shard_order() -> None:
    assert [shard_for(t, EIGHT) for t in range(50)] == [shard_for(t, EIGHT[::-1]) for t in range(50)]
    assert shard_for("42", EIGHT) == shard_for(42, EIGHT)
