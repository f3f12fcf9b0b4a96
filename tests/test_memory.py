"""The kNN memory: ring buffer eviction, reset, and search back-ends."""

import torch

from memorizing.memory.search import recall_at_k, search
from memorizing.memory.store import KNNMemory


def test_ring_buffer_keeps_exactly_the_newest_entries_with_positions():
    memory = KNNMemory(lanes=2, heads=3, size=10, head_dim=4)
    written = []
    for step in range(4):  # 4 segments of 4 tokens = 16 > 10
        keys = torch.randn(2, 3, 4, 4)
        positions = torch.arange(4 * step, 4 * step + 4).expand(2, 4)
        memory.write(keys, keys * 2, positions)
        written.append(keys)
    all_keys = torch.cat(written, 2)  # [2, 3, 16, 4]
    order = memory.positions[0].argsort()
    assert memory.positions[0][order].tolist() == list(range(6, 16))  # the 10 newest positions
    assert torch.equal(memory.keys[:, :, order], all_keys[:, :, 6:])
    assert torch.equal(memory.values[:, :, order], 2 * all_keys[:, :, 6:])
    assert memory.fill().tolist() == [10, 10]


def test_segment_longer_than_memory_keeps_its_newest_tokens():
    memory = KNNMemory(lanes=1, heads=1, size=4, head_dim=2)
    memory.write(torch.randn(1, 1, 7, 2), torch.randn(1, 1, 7, 2), torch.arange(7)[None])
    assert sorted(memory.positions[0].tolist()) == [3, 4, 5, 6]


def test_lanes_evict_independently_after_a_reset():
    memory = KNNMemory(lanes=2, heads=1, size=6, head_dim=2)
    for step in range(2):
        memory.write(torch.randn(2, 1, 4, 2), torch.randn(2, 1, 4, 2), torch.arange(4 * step, 4 * step + 4).expand(2, 4))
    memory.reset(torch.tensor([True, False]))
    assert memory.fill().tolist() == [0, 6]
    assert memory.keys[0].abs().sum() == 0
    memory.write(torch.randn(2, 1, 4, 2), torch.randn(2, 1, 4, 2), torch.arange(4).expand(2, 4))
    assert memory.fill().tolist() == [4, 6]
    assert sorted(memory.positions[1].tolist()) == [0, 1, 2, 3, 6, 7]  # lane 1 evicted its oldest (4, 5)


def test_exact_search_returns_a_planted_key_and_never_an_empty_slot():
    keys = torch.randn(2, 2, 64, 8)
    valid = torch.ones(2, 64, dtype=torch.bool)
    valid[1, 10:] = False  # lane 1 holds only 10 entries
    query = torch.randn(2, 2, 3, 8)
    keys[0, 1, 37] = query[0, 1, 2] * 10  # planted: by far the best match
    index, found = search(query, keys, valid, k=16, backend="exact")
    assert index[0, 1, 2, 0] == 37
    assert found[1].sum(-1).eq(10).all() and (index[1][found[1]] < 10).all()
    assert found[0].all()


def test_bucketed_search_recall_rises_with_buckets_and_is_high_at_the_default():
    torch.manual_seed(1)
    keys = torch.nn.functional.normalize(torch.randn(2, 4, 4096, 32), dim=-1)
    queries = torch.nn.functional.normalize(torch.randn(2, 4, 64, 32), dim=-1)
    valid = torch.ones(2, 4096, dtype=torch.bool)
    recalls = [recall_at_k(queries, keys, valid, 32, "bucketed", b) for b in (1, 4, 16)]
    assert recalls[0] < recalls[1] < recalls[2] <= 1.0
    assert recalls[1] > 0.85
    assert recall_at_k(queries, keys, valid, 32, "exact") == 1.0
