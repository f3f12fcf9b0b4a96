"""Inverted-file (IVF) search over a memory, for long memories on CPUs: a query scans only the lists near it.

Each (lane, head) pair of a KNNMemory keeps `lists` coarse centroids, and every stored key sits in the inverted
list of its nearest centroid; a query scans the lists of its `probe` nearest centroids only, so its cost falls
from the whole memory to about probe / lists of it. All pairs share one faiss IndexIVFFlat with pairs x lists
inverted lists: a matmul scores each query against its own pair's centroids, faiss.kmax picks the nearest,
and one faiss call (search_preassigned) scans them for every query of every pair, on all CPU threads.

Centroids follow the document: a lane's are fitted by spherical k-means on its entries at its first write after
a reset, and again whenever it has received as many new entries as it held at the last fit (at 1x, 2x, 4x ...
its first segment), until it holds KMEANS_SAMPLE entries per list, as many as k-means ever looks at; from then
on once per memory.size entries. Keys written between fits join the list of their nearest centroid. A fit
relists every entry of the lane (entries x lists products), so stopping the doubling early keeps the cost of
filling a long memory to about one product per entry and list. The memory's tensors stay the source of truth:
the faiss lists are derived from them and the centroids, and are rebuilt after a checkpoint is loaded. faiss
keeps its own copy of the keys (4 * D bytes more per entry and head).
"""

import faiss
import numpy as np
import torch

from memorizing.memory.scratch import scratch

KMEANS_ITERATIONS = 4
KMEANS_SAMPLE = 8  # k-means iterates on this many entries per centroid, then assigns all entries
_NEAREST_BLOCK = 1 << 22  # scores per block in nearest_centroid (16 MB of float32, one reused buffer)


def default_lists(size: int) -> int:
    """The power of two nearest to 4 sqrt(size) (the low end of faiss's advice), and at least 16 entries per
    list: 128 lists for 2K entries, 256 for 8K, 1024 for 65K."""
    return max(1, min(2 ** round(np.log2(4 * max(size, 1) ** 0.5)), size // 16))


def default_probe(lists: int) -> int:
    """Lists scanned per query: 8, or a 64th of the lists where that is more (16 of the 1024 lists at 65K). On a
    trained model's keys (benchmarks/search.py --model) that found about 0.95 of the exact top 32 at 8K and 65K;
    8 probes of 1024 lists found 0.88."""
    return max(8, lists // 64)


def _held_first(valid: torch.Tensor) -> torch.Tensor:
    """[P, S] slot indices of each row of valid [P, S], the valid slots first (in slot order)."""
    return (~valid).to(torch.uint8).argsort(dim=-1, stable=True)


def _spread(valid: torch.Tensor, count: int) -> torch.Tensor:
    """[P, count] slot indices spread evenly over each row's valid slots (valid [P, S], at least one per row)."""
    held = valid.sum(-1, keepdim=True)  # [P, 1]
    picks = torch.arange(count, device=valid.device) * held // count  # [P, count], < held
    return _held_first(valid).gather(-1, picks)


def nearest_centroid(points: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """[P, n] index of the centroid (centroids [P, C, D]) with the largest inner product with each of points
    [P, n, D]; scores are made a block of points at a time in one reused buffer (scratch.py)."""
    pairs, count, _ = points.shape
    clusters = centroids.shape[1]
    block = max(1, min(count, _NEAREST_BLOCK // (pairs * clusters)))
    buffer = scratch((pairs, block, clusters), points)
    nearest = torch.empty(pairs, count, dtype=torch.long, device=points.device)
    for start in range(0, count, block):
        end = min(start + block, count)
        scores = torch.bmm(points[:, start:end], centroids.transpose(1, 2), out=buffer[:, :end - start])
        nearest[:, start:end] = scores.max(-1).indices
    return nearest


def spherical_kmeans(points: torch.Tensor, valid: torch.Tensor, clusters: int) -> torch.Tensor:
    """Unit centroids [P, C, D] of the valid points (points [P, S, D], valid [P, S]) by inner product."""
    dim = points.shape[-1]
    # Up to KMEANS_SAMPLE points per centroid, and no more points than a lane holds (and at least one per centroid).
    count = min(KMEANS_SAMPLE * clusters, max(clusters, int(valid.sum(-1).max())))
    sample = points.gather(1, _spread(valid, count)[..., None].expand(-1, -1, dim))  # [P, n, D]
    first = torch.arange(clusters, device=points.device) * count // clusters  # C sample points spread evenly
    centroids = torch.nn.functional.normalize(sample[:, first], dim=-1)  # [P, C, D]
    for _ in range(KMEANS_ITERATIONS):
        nearest = nearest_centroid(sample, centroids)  # [P, n]
        sums = torch.zeros_like(centroids).scatter_add_(1, nearest[..., None].expand(-1, -1, dim), sample)
        # an empty cluster keeps its centroid
        centroids = torch.where(sums.norm(dim=-1, keepdim=True) > 0, torch.nn.functional.normalize(sums, dim=-1),
                                centroids)
    return centroids


class IVFIndex:
    def __init__(self, lanes: int, heads: int, slots: int, size: int, head_dim: int, lists: int, probe: int):
        self.lanes, self.heads, self.slots, self.size = lanes, heads, slots, size
        self.lists = min(lists or default_lists(size), size)
        self.centroids = torch.zeros(lanes, heads, self.lists, head_dim)  # [B, H, C, D]
        self.fitted_with = torch.zeros(lanes, dtype=torch.long)  # [B] entries held at the last fit (0: never)
        self.since_fit = torch.zeros(lanes, dtype=torch.long)  # [B] entries written since the last fit
        self.index = faiss.IndexIVFFlat(faiss.IndexFlatIP(head_dim), head_dim, lanes * heads * self.lists,
                                        faiss.METRIC_INNER_PRODUCT)
        self.index.is_trained = True  # lists are assigned here, so faiss's own coarse quantizer is never used
        self.index.set_direct_map_type(faiss.DirectMap.Hashtable)  # removal by id without scanning every list
        # Split the queries over threads inside search_preassigned (mode 0 leaves that to faiss's own search()).
        self.index.parallel_mode = 3
        self.set_probe(probe or default_probe(self.lists))

    def set_probe(self, probe: int) -> None:
        """Scan each query's `probe` nearest lists from now on (a search-time setting: the lists stay as they are)."""
        self.probe = min(probe, self.lists)
        self.index.nprobe = self.probe

    # ---- keeping the lists in step with the memory ----------------------------------------------------------
    def _ids(self, lanes: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """Global ids [n, H, m] of slots [n, m] of lanes [n]: (lane * H + head) * S + slot."""
        heads = torch.arange(self.heads)[None, :, None]
        return (lanes[:, None, None] * self.heads + heads) * self.slots + slots[:, None, :]

    def _every_slot(self, lanes: torch.Tensor) -> torch.Tensor:
        """[n, S] all slot numbers of each of lanes [n]."""
        return torch.arange(self.slots).expand(len(lanes), -1)

    def _remove(self, ids: torch.Tensor) -> None:
        ids = np.ascontiguousarray(ids.flatten().numpy(), dtype="int64")
        self.index.remove_ids(faiss.IDSelectorArray(len(ids), faiss.swig_ptr(ids)))

    def _add(self, lanes: torch.Tensor, slots: torch.Tensor, keys: torch.Tensor, present=None) -> None:
        """Put keys [n, H, m, D] of slots [n, m] of lanes [n] (where present [n, m]) into the lists of their
        nearest centroids."""
        n, heads, m, dim = keys.shape
        nearest = nearest_centroid(keys.flatten(0, 1), self.centroids[lanes].flatten(0, 1)).view(n, heads, m)
        pair = lanes[:, None, None] * heads + torch.arange(heads)[None, :, None]  # [n, H, 1]
        lists, ids = pair * self.lists + nearest, self._ids(lanes, slots)  # [n, H, m] each
        vectors = keys
        if present is not None:
            keep = present[:, None, :].expand(-1, heads, -1)  # [n, H, m]
            lists, ids, vectors = lists[keep], ids[keep], keys[keep]
        lists = np.ascontiguousarray(lists.flatten().numpy(), dtype="int64")
        ids = np.ascontiguousarray(ids.flatten().numpy(), dtype="int64")
        vectors = np.ascontiguousarray(vectors.reshape(-1, dim).numpy(), dtype="float32")
        self.index.add_core(len(ids), faiss.swig_ptr(vectors), faiss.swig_ptr(ids), faiss.swig_ptr(lists))

    def _refit(self, lanes: torch.Tensor, keys: torch.Tensor, valid: torch.Tensor) -> None:
        """Fit the centroids of `lanes` [n] on their entries (keys [B, H, S, D], valid [B, S]), relist them all."""
        self._remove(self._ids(lanes, self._every_slot(lanes)))
        lane_keys, lane_valid = keys[lanes], valid[lanes]  # [n, H, S, D], [n, S]
        fitted = spherical_kmeans(lane_keys.flatten(0, 1), lane_valid.repeat_interleave(self.heads, 0), self.lists)
        self.centroids[lanes] = fitted.view(len(lanes), self.heads, self.lists, -1)
        self.fitted_with[lanes] = lane_valid.sum(-1)
        self.since_fit[lanes] = 0
        self._add_held(lanes, lane_keys, lane_valid)

    def _add_held(self, lanes: torch.Tensor, lane_keys: torch.Tensor, lane_valid: torch.Tensor) -> None:
        """List every entry that lanes [n] hold (their keys [n, H, S, D], valid [n, S]), and no empty slot."""
        held = int(lane_valid.sum(-1).max())
        slots = _held_first(lane_valid)[:, :held]  # [n, held]; a lane holding fewer ends in empty slots
        picked = lane_keys.gather(2, slots[:, None, :, None].expand(-1, self.heads, -1, lane_keys.shape[-1]))
        self._add(lanes, slots, picked, present=lane_valid.gather(1, slots))

    @torch.autocast("cpu", enabled=False)  # centroids and scores in fp32, also when the model runs in bf16
    def written(self, slots: torch.Tensor, keys: torch.Tensor, memory_keys: torch.Tensor,
                valid: torch.Tensor) -> None:
        """After every lane wrote keys [B, H, L, D] to slots [B, L] of the memory (now memory_keys, valid)."""
        self.since_fit += slots.shape[1]
        enough = self.fitted_with >= KMEANS_SAMPLE * self.lists  # [B] the last fit saw a full k-means sample
        refit = (self.fitted_with == 0) | (self.since_fit >= torch.where(enough, self.size, self.fitted_with))
        keep = (~refit).nonzero().flatten()
        if len(keep):
            self._remove(self._ids(keep, slots[keep]))  # the evicted entries, if any
            self._add(keep, slots[keep], keys[keep])
        if bool(refit.any()):
            self._refit(refit.nonzero().flatten(), memory_keys, valid)

    def reset(self, starting: torch.Tensor) -> None:
        """Empty the lists of the lanes where `starting` [B] (bool) is True; their next write fits new centroids."""
        lanes = starting.nonzero().flatten()  # [n] their indices
        self._remove(self._ids(lanes, self._every_slot(lanes)))
        self.centroids[lanes] = 0
        self.fitted_with[lanes] = 0
        self.since_fit[lanes] = 0

    def rebuild(self, memory_keys: torch.Tensor, valid: torch.Tensor) -> None:
        """Relist every entry from the memory and the current centroids (after loading a checkpoint)."""
        self.index.reset()
        self._add_held(torch.arange(self.lanes), memory_keys, valid)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"ivf_centroids": self.centroids, "ivf_fitted_with": self.fitted_with,
                "ivf_since_fit": self.since_fit}

    # ---- search ------------------------------------------------------------------------------------------
    @torch.no_grad()
    @torch.autocast("cpu", enabled=False)
    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """queries [B, H, L, D] -> (slots [B, H, L, k], scores [B, H, L, k]), best first, -inf: not found."""
        lanes, heads, length, dim = queries.shape
        queries = queries.detach().float()
        faiss.omp_set_num_threads(torch.get_num_threads())
        coarse = (queries @ self.centroids.transpose(-1, -2)).reshape(-1, self.lists)  # [B*H*L, C]
        near, chosen = faiss.kmax(coarse.numpy(), self.probe)  # [B*H*L, probe] each; half torch.topk's time here
        pair = np.arange(lanes * heads).repeat(length)[:, None]  # [B*H*L, 1] each query's (lane, head) pair
        scores, ids = self.index.search_preassigned(np.ascontiguousarray(queries.reshape(-1, dim).numpy()), k,
                                                    pair * self.lists + chosen, near)  # global list ids
        ids = torch.from_numpy(ids).view(lanes, heads, length, k)  # -1 where fewer than k entries were scanned
        found = ids >= 0
        scores = torch.from_numpy(scores).view(lanes, heads, length, k).masked_fill(~found, float("-inf"))
        return torch.where(found, ids % self.slots, 0), scores
