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
        positions = torch.arange(4 * step, 4 * step + 4).expand(2, 4)
        memory.write(torch.randn(2, 1, 4, 2), torch.randn(2, 1, 4, 2), positions)
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
    index, scores = search(query, keys, valid, k=16, backend="exact")
    found = scores > -torch.inf
    assert index[0, 1, 2, 0] == 37
    assert torch.allclose(scores[0, 1, 2, 0], query[0, 1, 2] @ keys[0, 1, 37])  # scores are the products
    assert found[1].sum(-1).eq(10).all() and (index[1][found[1]] < 10).all()
    assert found[0].all()


def filled(keys: torch.Tensor, segment: int = 256, **kwargs) -> KNNMemory:
    """A memory as large as keys [B, H, M, D], written segment by segment as a model writes it."""
    lanes, heads, size, dim = keys.shape
    memory = KNNMemory(lanes, heads, size, dim, **kwargs)
    for start in range(0, size, segment):
        memory.write(keys[:, :, start:start + segment], keys[:, :, start:start + segment],
                     torch.arange(start, start + segment).expand(lanes, -1))
    return memory


def clustered(lanes, heads, size, dim, topics, generator):
    """Unit keys around `topics` centres per (lane, head), like the keys of a trained memory layer."""
    unit = lambda x: torch.nn.functional.normalize(x, dim=-1)
    centres = unit(torch.randn(lanes, heads, topics, dim, generator=generator))
    pick = torch.randint(0, topics, (lanes, heads, size), generator=generator)
    return unit(centres.gather(2, pick[..., None].expand(-1, -1, -1, dim))
                + 0.6 * unit(torch.randn(lanes, heads, size, dim, generator=generator)))


def test_bucketed_search_recall_rises_with_buckets_and_is_high_at_the_default():
    torch.manual_seed(1)
    keys = torch.nn.functional.normalize(torch.randn(2, 4, 4096, 32), dim=-1)
    queries = torch.nn.functional.normalize(torch.randn(2, 4, 64, 32), dim=-1)
    recalls = [recall_at_k(queries, filled(keys, buckets=32 * b), 32, "bucketed") for b in (1, 4, 16)]
    assert recalls[0] < recalls[1] < recalls[2] <= 1.0
    assert recalls[1] > 0.85
    assert recall_at_k(queries, filled(keys), 32, "exact") == 1.0


def test_ivf_search_recall_rises_with_probes_and_scanning_every_list_is_exact():
    generator = torch.Generator().manual_seed(0)
    keys = clustered(2, 2, 4096, 32, 64, generator)
    queries = clustered(2, 2, 64, 32, 64, generator)
    recalls = [recall_at_k(queries, filled(keys, ivf=(64, probe)), 16, "ivf") for probe in (1, 4, 64)]
    assert recalls[0] < recalls[1] < recalls[2] == 1.0
    assert recalls[1] > 0.7  # 4 of 64 lists, 6% of the entries scanned, find most neighbours


def test_ivf_lists_follow_evictions_resets_and_checkpoints():
    """With every list scanned, ivf must return exactly what exact search returns, however the memory changed."""
    generator = torch.Generator().manual_seed(0)
    lanes, heads, size, dim = 3, 2, 512, 16
    memory = KNNMemory(lanes, heads, size, dim, ivf=(16, 16))
    stream = clustered(lanes, heads, 4 * size, dim, 32, generator)
    queries = clustered(lanes, heads, 8, dim, 32, generator)

    def agrees(memory):
        exact, exact_scores = memory.search(queries, 8, "exact")
        ivf, ivf_scores = memory.search(queries, 8, "ivf")
        assert torch.allclose(exact_scores, ivf_scores, atol=1e-5)  # -inf (nothing found) in the same places
        exact_found, ivf_found = exact_scores > -torch.inf, ivf_scores > -torch.inf
        found_slots = lambda slots, found: torch.where(found, slots, -1).sort(-1).values
        return torch.equal(found_slots(exact, exact_found), found_slots(ivf, ivf_found))

    for step, start in enumerate(range(0, 3 * size, 96)):  # wraps around: evictions and periodic refits
        memory.write(stream[:, :, start:start + 96], stream[:, :, start:start + 96],
                     torch.arange(start, start + 96).expand(lanes, -1))
        if step == 5:
            memory.reset(torch.tensor([False, True, False]))  # lane 1 starts a new document
        assert agrees(memory)
    assert memory.ivf.index.ntotal == int(memory.valid.sum()) * heads
    memory.reset(torch.tensor([True, False, False]))
    assert (memory.search(queries, 8, "ivf")[1][0] == -torch.inf).all()  # an empty lane finds nothing
    restored = KNNMemory(lanes, heads, size, dim, ivf=(16, 16))
    restored.load_tensors({name: t.clone() for name, t in memory.tensors().items()})
    assert torch.equal(restored.search(queries, 8, "ivf")[0], memory.search(queries, 8, "ivf")[0])
    assert agrees(restored)


def test_bucketed_search_over_a_memory_uses_interleaved_buckets_of_the_writing_order():
    """The paper's buckets deal entries round-robin (entry n goes to bucket n mod G); the memory stores each bucket
    as one block, and the search over those blocks returns what the round-robin definition says."""
    torch.manual_seed(0)
    lanes, heads, size, dim, buckets, k = 2, 2, 96, 8, 16, 4
    memory = KNNMemory(lanes, heads, size, dim, buckets=buckets)
    written = torch.randn(lanes, heads, 3 * size // 2, dim)  # wraps around once: the oldest half is evicted
    for start in range(0, written.shape[2], 24):
        memory.write(written[:, :, start:start + 24], written[:, :, start:start + 24],
                     torch.arange(start, start + 24).expand(lanes, -1))
    rows = size // buckets
    for g in range(buckets):  # block g holds, in order, the live entries n with n mod G == g
        block = memory.positions[:, g * rows:(g + 1) * rows]
        assert ((block - size // 2) % size % buckets == g).all()
    queries = torch.randn(lanes, heads, 5, dim)
    index, top = search(queries, memory.keys, memory.valid, k, "bucketed", memory.buckets)
    assert (top > -torch.inf).all()
    # Reference in writing order: the live entries n = 48 .. 143, bucket of the ring entry (n mod size) mod G.
    live = written[:, :, size // 2:]  # [B, H, size, D], position p = size // 2 + i
    ring_entry = torch.arange(size // 2, 3 * size // 2) % size
    scores = queries @ live.transpose(-1, -2)  # [B, H, 5, size]
    winners = torch.full((*scores.shape[:-1], buckets), -torch.inf)
    winners = winners.scatter_reduce(-1, (ring_entry % buckets).expand_as(scores), scores, "amax")
    expected = winners.topk(k, -1).values  # the k best bucket winners
    got_positions = memory.positions[torch.arange(lanes)[:, None, None, None], index]  # [B, H, 5, k]
    got_scores = scores.gather(-1, got_positions - size // 2)
    assert torch.allclose(got_scores.sort(-1).values, expected.sort(-1).values)
    assert torch.allclose(top, got_scores)  # the scores returned are those of the slots returned
