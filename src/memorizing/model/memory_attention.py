"""The memory branch of a memory layer: retrieve top-k (key, value) pairs, attend to them, combine with local.

Paper, section 3: the layer's queries look up the k nearest stored keys of their own lane and head; a softmax
over just those k logits gives the memory output V_mem; a learned per-head gate g = sigmoid(b_g) mixes it with
the local attention output: out = g * V_mem + (1 - g) * V_local. Retrieved memories carry no position bias in
the paper; `position_bias` adds one for ablation. `combine` selects the mixing:
- `gate`: the paper's learned gate, b_g initialised to 0 (g = 0.5);
- `fixed`: g held at a constant (0 = local only, 1 = memory only);
- `joint`: one softmax over memory and local logits together, i.e. the two outputs weighted by their
  softmax mass: w = sigmoid(lse_mem - lse_local).
"""

import math

import torch
from torch import nn

from memorizing.config import Config
from memorizing.memory.gathered import gathered_dot, gathered_sum
from memorizing.memory.store import KNNMemory
from memorizing.model.position import MemoryPositionBias


class MemoryAttention(nn.Module):
    def __init__(self, config: Config):
        super().__init__()
        mem, heads = config.memory, config.model.heads
        self.heads, self.combine, self.fixed_gate = heads, mem.combine, mem.gate
        self.searched = config.memory_searched()  # False with the gate fixed at 0: memory would weigh nothing
        self.top_k, self.backend = mem.top_k, mem.search
        if self.combine == "gate":  # b_g per head, g = sigmoid(b_g) starting at memory.gate_init
            # b_g is stored in units of 1 / memory.gate_scale: a gate must move by several units of logit to open
            # or close, and Adam moves a parameter by about the learning rate per step (README, "What it takes for
            # memory to retrieve")
            self.gate_scale = mem.gate_scale
            start = math.log(mem.gate_init / (1 - mem.gate_init)) / self.gate_scale
            self.gate_logit = nn.Parameter(torch.full((heads,), start))  # [H], b_g / gate_scale
        # With `record` set (by evaluation), retrieve() keeps the last segment's (key positions, weights) of the
        # retrieved memories, each [B, H, L, k], in `retrieved`.
        self.record, self.retrieved = False, None
        self.position_bias = None
        if mem.position_bias != "none":
            self.position_bias = MemoryPositionBias(mem.position_bias, heads, mem.bias_buckets, mem.size,
                                                    config.model.bias_scale)

    def gate(self) -> torch.Tensor:
        """[H] the learned gate g = sigmoid(b_g) (combine = "gate")."""
        return torch.sigmoid(self.gate_logit * self.gate_scale)

    def reported_gate(self) -> torch.Tensor:
        """[H] the weight of memory in each head's output, for logs (NaN for `joint`, where it depends on the data)."""
        if self.combine == "gate":
            return self.gate().detach().cpu()
        return torch.full((self.heads,), self.fixed_gate if self.combine == "fixed" else float("nan"))

    def retrieve(self, queries: torch.Tensor, memory: KNNMemory, query_pos: torch.Tensor):
        """Attend over the top-k memories of each query.

        queries [B, H, L, D] (already scaled), query_pos [B, L] -> (V_mem [B, H, L, D], lse_mem [B, H, L]);
        where a lane's memory is empty V_mem is 0 and lse_mem is about -1e30 (so its gradient stays finite).
        """
        lanes, heads, length, head_dim = queries.shape
        index, scores = memory.search(queries.detach(), self.top_k, self.backend)  # [B, H, L, k]: slots, q . key
        k = index.shape[-1]
        # Rows of the memory's tables flattened to [B*H*S, D], one [k] row list per query [B*H*L, k].
        slots = memory.slots
        lane_head = torch.arange(lanes * heads, device=index.device).view(lanes, heads, 1, 1)
        rows = (index + lane_head * slots).view(-1, k)
        # The search's scores are the logits q . key; gathered_dot gives them their gradient in the queries.
        logits = gathered_dot(queries.reshape(-1, head_dim), memory.keys.view(-1, head_dim), rows,
                              scores.view(-1, k)).view(lanes, heads, length, k)  # [B, H, L, k]
        if self.position_bias is not None or self.record:
            lane = torch.arange(lanes, device=index.device).view(lanes, 1, 1, 1)
            key_pos = memory.positions.view(-1)[index + lane * slots]  # [B, H, L, k]
        if self.position_bias is not None:
            logits = logits + self.position_bias(query_pos, key_pos)
        logits = logits.masked_fill(scores == float("-inf"), float("-inf"))  # nothing found there
        # A softmax that gives 0 output (not NaN) where nothing was found.
        peak = logits.amax(-1, keepdim=True).detach().clamp(min=-1e30)  # finite
        weights = torch.exp(logits - peak)  # [B, H, L, k], 0 where not found
        total = weights.sum(-1, keepdim=True).clamp(min=1e-30)
        attention = weights / total  # [B, H, L, k]
        out = gathered_sum(attention.view(-1, k), memory.values.view(-1, head_dim),
                           rows).view(lanes, heads, length, head_dim)  # [B, H, L, D]
        lse = (peak + total.log()).squeeze(-1)  # [B, H, L]; about -1e30 when empty
        if self.record:
            found = key_pos.masked_fill(scores == float("-inf"), -1)
            self.retrieved = (found, attention.detach())
        return out, lse

    def forward(self, queries, memory, query_pos, local_out, local_lse=None) -> torch.Tensor:
        """Mix memory and local attention outputs ([B, H, L, D] each) as `combine` says."""
        if not self.searched:
            return local_out
        mem_out, mem_lse = self.retrieve(queries, memory, query_pos)
        if self.combine == "joint":
            g = torch.sigmoid(mem_lse - local_lse)[..., None]  # [B, H, L, 1]; 0 when memory is empty
        elif self.combine == "gate":
            g = self.gate()[None, :, None, None]  # [1, H, 1, 1]
        else:
            g = self.fixed_gate
        return g * mem_out + (1 - g) * local_out
