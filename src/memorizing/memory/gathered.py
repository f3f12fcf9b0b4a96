"""Products of queries with the rows a search retrieved, without copying those rows out of the memory.

Each of M queries reads k rows of a table [T, D] (a memory's keys or values, flattened over lanes and heads),
picked by rows [M, k]. The memory branch needs two products:
- gathered_dot: scores[m, j] = q[m] . table[rows[m, j]]      q [M, D] -> scores [M, k]
- gathered_sum: out[m] = sum_j w[m, j] * table[rows[m, j]]   w [M, k] -> out [M, D]
Each is the other's transpose, so each one's backward is the other one. gathered_sum is F.embedding_bag with
per-sample weights: one fused pass that never builds the [M, k, D] block of retrieved rows. The search has
already computed the scores (every back-end returns them), so gathered_dot takes them as they are and only its
backward touches the table: the one row copy left, into a reused buffer, then one batched matmul. The table is
memory, which carries no gradient. Backward reads the table as it is by then, so the memory holds its writes
back until its next read (store.py): the memory a segment's backward reads is the one it searched.
"""

import torch
import torch.nn.functional as F

from memorizing.memory.scratch import scratch


def _dot(q: torch.Tensor, table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """q [M, D] . table[rows] [M, k, D] -> [M, k], through a reused [M * k, D] buffer."""
    (m, k), dim = rows.shape, table.shape[1]
    picked = torch.index_select(table, 0, rows.flatten(), out=scratch((m * k, dim), table)).view(m, k, dim)
    return torch.bmm(q.to(table.dtype).contiguous()[:, None, :], picked.transpose(1, 2)).squeeze(1)


def _sum(w: torch.Tensor, table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """sum_j w[m, j] table[rows[m, j]] -> [M, D]."""
    return F.embedding_bag(rows, table, per_sample_weights=w.to(table.dtype), mode="sum")


class _GatheredDot(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, table, rows, scores):
        ctx.save_for_backward(table, rows)
        ctx.q_dtype = q.dtype
        return scores.clone()

    @staticmethod
    def backward(ctx, grad):
        table, rows = ctx.saved_tensors
        return _sum(grad, table, rows).to(ctx.q_dtype), None, None, None


class _GatheredSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, table, rows):
        ctx.save_for_backward(table, rows)
        ctx.w_dtype = w.dtype
        return _sum(w, table, rows)

    @staticmethod
    def backward(ctx, grad):
        table, rows = ctx.saved_tensors
        return _dot(grad, table, rows).to(ctx.w_dtype), None, None


def gathered_dot(q: torch.Tensor, table: torch.Tensor, rows: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """The products q [M, D] . table[rows] (table [T, D] without gradient, rows [M, k]), already computed as
    scores [M, k] (by the search), returned as a function of q: [M, k], differentiable in q."""
    return _GatheredDot.apply(q, table.detach(), rows, scores.detach())


def gathered_sum(w: torch.Tensor, table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """w [M, k], table [T, D] (no gradient), rows [M, k] -> [M, D], differentiable in w."""
    return _GatheredSum.apply(w, table.detach(), rows)
