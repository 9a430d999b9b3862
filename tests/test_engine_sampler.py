"""The bucketed distributed batch sampler and evaluation sharding."""

from __future__ import annotations

import random

from speechdraw.engine.sampler import BucketBatchSampler, eval_batches

_rng = random.Random(0)
LENGTHS = [_rng.randint(1, 100) for _ in range(503)]


def make(rank=0, world=1, **kw):
    kw.setdefault("max_total", 400)
    return BucketBatchSampler(LENGTHS, seed=7, rank=rank, world_size=world, **kw)


def test_order_is_a_pure_function_of_seed_epoch_rank():
    a, b = make(rank=1, world=3), make(rank=1, world=3)
    b.set_epoch(0)
    list(b)  # iterating must not change anything
    for epoch in (0, 1, 5):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        assert list(a) == list(b)
    a.set_epoch(0)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first


def test_every_rank_gets_the_same_number_of_batches_and_all_items_are_covered():
    for world in (1, 2, 3, 4, 7):
        ranks = [make(rank=r, world=world) for r in range(world)]
        for s in ranks:
            s.set_epoch(3)
        counts = {len(list(s)) for s in ranks}
        assert counts == {len(ranks[0])}, world
        seen = sorted(i for s in ranks for batch in s for i in batch)
        assert set(seen) == set(range(len(LENGTHS)))
        # Each batch respects the padded-size budget (unless a single item exceeds it).
        for s in ranks:
            for batch in s:
                assert len(batch) == 1 or max(LENGTHS[i] for i in batch) * len(batch) <= 400


def test_world_size_w_sees_the_global_batches_of_one_rank():
    one = make(world=1)
    one.set_epoch(2)
    single = list(one)
    two = [make(rank=r, world=2) for r in range(2)]
    for s in two:
        s.set_epoch(2)
    interleaved = [b for pair in zip(*[list(s) for s in two]) for b in pair]
    assert interleaved[: len(single)] == single


def test_mid_epoch_start_yields_exactly_the_remaining_batches():
    s = make(rank=1, world=2)
    s.set_epoch(4)
    full = list(s)
    s.set_epoch(4, start=5)
    assert list(s) == full[5:]


def test_bucketing_reduces_padding_and_sortagrad_goes_shortest_first():
    bucketed, flat = make(num_buckets=10), make(num_buckets=1)
    assert bucketed.padding_fraction() < 0.5 * flat.padding_fraction()
    sg = make(sort_first_epoch=True)
    sg.set_epoch(0)
    maxes = [max(LENGTHS[i] for i in b) for b in sg]
    assert maxes == sorted(maxes)
    sg.set_epoch(1)
    assert [max(LENGTHS[i] for i in b) for b in sg] != sorted(maxes)


def test_eval_batches_count_every_item_once():
    for world in (1, 2, 3):
        items = [i for r in range(world) for b in eval_batches(LENGTHS, batch_size=16, rank=r, world_size=world)
                 for i in b]
        assert sorted(items) == list(range(len(LENGTHS)))


def test_epoch_lengths_count_each_epoch_so_a_sortagrad_schedule_horizon_is_exact():
    sg = make(sort_first_epoch=True, num_buckets=1)
    counts = []
    for e in range(4):
        sg.set_epoch(e)
        counts.append(len(sg))
    assert counts[0] < counts[1]  # the sorted epoch packs tighter than a shuffled one
    sg.set_epoch(2)
    assert sg.epoch_lengths(4) == counts
    assert len(sg) == counts[2]  # the selected epoch is untouched
