"""The model's contracts: causality, lane isolation, reset, gate semantics, biases, save/load."""

import pytest
import torch

from models import scramble, tiny_config
from memorizing import MemorizingTransformer, load_model, save_model
from memorizing.model.position import RelativePositionBias, log_buckets

LANES, SEGMENT = 3, 32


def stream(model, tokens, state=None, resets=None):
    """Feed tokens [B, S*L] segment by segment; return the logits of all positions [B, S*L, V]."""
    state = state or model.init_state(tokens.shape[0])
    out = []
    for s in range(tokens.shape[1] // SEGMENT):
        reset = resets[s] if resets is not None else None
        logits, state = model(tokens[:, s * SEGMENT:(s + 1) * SEGMENT], state, reset)
        out.append(logits)
    return torch.cat(out, 1), state


def make_model(**sets):
    model = MemorizingTransformer(tiny_config(**sets)).eval()
    scramble(model)
    return model


@pytest.mark.parametrize("combine, keys", [("gate", {}), ("joint", {}), ("gate", {"model__key_smear": True}),
                                           ("gate", {"model__qk_conv": 4}),
                                           ("gate", {"model__qk_conv": 4, "memory__shared_qk": True})])
@pytest.mark.parametrize("t", [5, 40, 75])  # inside the first segment, and in later ones
def test_causality_within_segment_and_through_cache_and_memory(combine, keys, t):
    # memory 256 entries, XL cache 32: positions >= 64 only see position t through the memory.
    model = make_model(memory__combine=combine, **keys)
    tokens = torch.randint(0, 256, (LANES, 6 * SEGMENT))
    changed = tokens.clone()
    changed[:, t] = (changed[:, t] + 1) % 256
    with torch.no_grad():
        a, _ = stream(model, tokens)
        b, _ = stream(model, changed)
    assert torch.equal(a[:, :t], b[:, :t])
    assert (a[:, t:] - b[:, t:]).abs().amax() > 1e-3  # the change is visible from t on
    # far beyond the local window and XL cache, the change still arrives, through memory
    assert (a[:, t + 2 * SEGMENT + 1:] - b[:, t + 2 * SEGMENT + 1:]).abs().amax() > 1e-3


def test_far_positions_see_nothing_without_memory():
    model = make_model(memory__enabled=False)
    tokens = torch.randint(0, 256, (LANES, 6 * SEGMENT))
    changed = tokens.clone()
    changed[:, 3] += 1
    with torch.no_grad():
        a, _ = stream(model, tokens)
        b, _ = stream(model, changed)
    # XL cache only: the change reaches at most one segment further per layer (2 layers)
    assert torch.equal(a[:, 3 * SEGMENT:], b[:, 3 * SEGMENT:])


@pytest.mark.parametrize("keys", [{}, {"model__key_smear": True}, {"model__qk_conv": 4}])
def test_lane_isolation(keys):
    model = make_model(**keys)
    tokens = torch.randint(0, 256, (LANES, 5 * SEGMENT))
    changed = tokens.clone()
    changed[1] = torch.randint(0, 256, (5 * SEGMENT,))
    resets = [torch.tensor([False, s == 2, False]) for s in range(5)]
    with torch.no_grad():
        a, _ = stream(model, tokens, resets=resets)
        b, _ = stream(model, changed, resets=resets)
    assert torch.equal(a[[0, 2]], b[[0, 2]])
    assert not torch.equal(a[1], b[1])


@pytest.mark.parametrize("keys", [{}, {"model__key_smear": True}, {"model__qk_conv": 4}])
def test_reset_equals_fresh_state_and_touches_only_its_lane(keys):
    model = make_model(memory__position_bias="t5-relative", **keys)
    history = torch.randint(0, 256, (LANES, 4 * SEGMENT))
    segment = torch.randint(0, 256, (LANES, SEGMENT))
    with torch.no_grad():
        _, state = stream(model, history)
        before = {k: v.clone() for k, v in state.tensors().items()}
        state.reset(torch.tensor([True, False, False]))
        after = state.tensors()
        for name, value in after.items():  # lanes 1 and 2 untouched
            assert torch.equal(value[1:], before[name][1:]), name
        assert int(state.memories()[0].fill()[0]) == 0
        logits, _ = model(segment, state)
        fresh, _ = model(segment, model.init_state(LANES))
        continued, _ = stream(model, torch.cat([history, segment], 1))
    assert torch.equal(logits[0], fresh[0])
    assert not torch.allclose(logits[1], fresh[1])  # lane 1 kept its history
    assert torch.allclose(logits[1:], continued[1:, -SEGMENT:], atol=1e-5)


def _only_own_key(model) -> None:
    """Each key its own token's: the smear's weight of the previous key ~ 0, the convolution's taps on t alone."""
    for block in model.blocks:
        if block.attn.smear is not None:
            block.attn.smear.fill_(-30.0)
        if block.attn.qk_conv is not None:
            block.attn.qk_conv.taps.zero_()[..., -1] = 1.0


@pytest.mark.parametrize("keys", [{"model__key_smear": True}, {"model__qk_conv": 4}])
def test_mixed_keys_take_in_the_tokens_before_across_segment_boundaries(keys):
    """The keys the memory stores do not depend on where segments end: the first keys of a segment mix in the last
    tokens of the segment before (smear, model.qk_conv) as keys in the middle do, also for segments shorter than
    the convolution; and the mixing is there (keys of the token alone differ). (One layer: its keys depend on the
    tokens alone, not on how much context the layers below saw.)"""
    model = make_model(model__depth=1, **keys)
    tokens = torch.randint(0, 256, (LANES, 4 * SEGMENT))
    stored = []
    with torch.no_grad():
        for length in (SEGMENT, SEGMENT // 4, 2):
            state = model.init_state(LANES)
            for s in range(0, tokens.shape[1], length):
                _, state = model(tokens[:, s:s + length], state)
            stored.append(state.memories()[0].tensors()["keys"])
        unmixed = make_model(model__depth=1, **keys)
        unmixed.load_state_dict(model.state_dict())
        _only_own_key(unmixed)
        state = unmixed.init_state(LANES)
        for s in range(0, tokens.shape[1], SEGMENT):
            _, state = unmixed(tokens[:, s:s + SEGMENT], state)
    assert torch.allclose(stored[0], stored[1], atol=1e-5) and torch.allclose(stored[0], stored[2], atol=1e-5)
    assert not torch.allclose(stored[0], state.memories()[0].tensors()["keys"], atol=1e-2)


def test_convolved_queries_and_keys_start_as_a_lookup_of_the_same_tokens():
    """model.qk_conv's start: at initialisation the query after "...PQ" is most similar, among all earlier
    positions, to the key of the token that followed "PQ" before (not to the Q itself, which a bag of the window's
    tokens would match as well); without the convolution and its start, to none in particular."""
    tokens = torch.randint(0, 80, (LANES, SEGMENT))  # no P or Q by chance
    tokens[:, 10:12] = torch.tensor([80, 81])  # "PQ", then token 12, ...
    tokens[:, 25:27] = torch.tensor([80, 81])  # ... and "PQ" again: the query at position 26
    for width, finds in ((3, True), (8, True), (0, False)):
        torch.manual_seed(0)
        model = MemorizingTransformer(tiny_config(model__qk_conv=width, model__depth=1, memory__enabled=False))
        attn = model.blocks[0].attn
        with torch.no_grad():
            x = model.blocks[0].ln1(model.embed(tokens))
            q, k, _ = attn.qkv(x).view(LANES, SEGMENT, 3, attn.heads, attn.head_dim).permute(2, 0, 3, 1, 4)
            if width:
                q, k, _ = attn.qk_conv(q, k, model.init_state(LANES).layers[0].recent)
        query = torch.nn.functional.normalize(q[:, :, 26], dim=-1)  # [B, H, D]
        keys = torch.nn.functional.normalize(k[:, :, :26], dim=-1)  # [B, H, 26, D]
        best = (keys @ query[..., None])[..., 0].argmax(-1)  # [B, H]
        assert bool((best == 12).all()) == finds, (width, best)


def test_shared_queries_and_keys_leave_the_memory_layers_key_projection_unused():
    """memory.shared_qk: in a memory layer the keys are the queries, so its key projection changes nothing; in the
    other layers, and without the setting, it does. With memory disabled the same layer keeps shared keys."""
    tokens = torch.randint(0, 256, (LANES, 3 * SEGMENT))
    for shared in (True, False):
        model = make_model(model__qk_conv=4, memory__shared_qk=shared)
        before, _ = stream(model, tokens)
        inner = model.config.model.heads * model.config.model.head_dim
        for block in model.blocks:
            with torch.no_grad():
                block.attn.qkv.weight[inner:2 * inner] += 0.5 * torch.randn_like(block.attn.qkv.weight[:inner])
            after, _ = stream(model, tokens)
            assert torch.allclose(before, after) == (shared and block.attn.memory is not None)
            before = after
    no_memory = MemorizingTransformer(tiny_config(model__qk_conv=4, memory__shared_qk=True, memory__enabled=False))
    assert [b.attn.shared_qk for b in no_memory.blocks] == [False, True]  # the tiny preset's memory: the last layer


def test_reset_flag_in_forward_matches_fresh_state():
    model = make_model()
    history, segment = torch.randint(0, 256, (LANES, 3 * SEGMENT)), torch.randint(0, 256, (LANES, SEGMENT))
    with torch.no_grad():
        _, state = stream(model, history)
        logits, _ = model(segment, state, torch.tensor([False, True, False]))
        fresh, _ = model(segment, model.init_state(LANES))
    assert torch.equal(logits[1], fresh[1])


def test_no_gradient_reaches_memory_and_backward_is_finite_on_empty_memory():
    for combine in ("gate", "joint"):
        model = make_model(memory__combine=combine)
        state = model.init_state(LANES)
        for _ in range(3):
            logits, state = model(torch.randint(0, 256, (LANES, SEGMENT)), state)
            logits.logsumexp(-1).mean().backward()
        memory = state.memories()[0]
        assert not memory.keys.requires_grad and not memory.values.requires_grad
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("search", ["exact", "bucketed", "ivf"])
def test_memory_branch_output_and_gradients_equal_attention_over_the_gathered_rows(search):
    """The branch never copies the retrieved rows out of the memory (gathered.py) and takes its logits from the
    search; its outputs and its gradients in the queries and in the position bias must still be those of plain
    attention over the keys and values it retrieved."""
    model = make_model(memory__search=search, memory__position_bias="t5-relative", memory__ivf_lists=4)
    branch = model.blocks[-1].attn.memory
    state = model.init_state(LANES)
    with torch.no_grad():
        stream(model, torch.randint(0, 256, (LANES, 5 * SEGMENT)), state)
    memory = state.layers[-1].memory
    q = torch.randn(LANES, 2, SEGMENT, 32, requires_grad=True)
    pos = state.position[:, None] + torch.arange(SEGMENT)
    out_grad = torch.randn(LANES, 2, SEGMENT, 32)

    def gradients(out, lse):
        torch.autograd.backward([out, lse], [out_grad, torch.ones_like(lse)])
        grads = q.grad, branch.position_bias.table.grad
        q.grad, branch.position_bias.table.grad = None, None
        return grads

    out, lse = branch.retrieve(q, memory, pos)
    grads = gradients(out, lse)
    # Reference: copy the retrieved rows out and attend over them.
    index, scores = memory.search(q.detach(), 8, search)  # [B, H, L, k]
    lane, head = torch.arange(LANES)[:, None, None, None], torch.arange(2)[None, :, None, None]
    keys, values = memory.keys[lane, head, index], memory.values[lane, head, index]  # [B, H, L, k, D]
    logits = torch.einsum("bhld,bhlkd->bhlk", q, keys) + branch.position_bias(pos, memory.positions[lane, index])
    logits = logits.masked_fill(scores == -torch.inf, -torch.inf)
    reference = torch.einsum("bhlk,bhlkd->bhld", logits.softmax(-1), values), logits.logsumexp(-1)
    assert torch.allclose(out, reference[0], atol=1e-5) and torch.allclose(lse, reference[1], atol=1e-5)
    for got, expected in zip(grads, gradients(*reference)):
        assert got.abs().sum() > 0 and torch.allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_a_backward_after_the_memory_changed_fails_loudly():
    """The backward of a segment reads the memory it searched; once the next segment's forward has written to
    it, that backward must raise, not return gradients of a different memory."""
    model = make_model()
    state = model.init_state(LANES)
    with torch.no_grad():
        stream(model, torch.randint(0, 256, (LANES, 3 * SEGMENT)), state)
    first, state = model(torch.randint(0, 256, (LANES, SEGMENT)), state)
    model(torch.randint(0, 256, (LANES, SEGMENT)), state)  # the next segment applies the first one's write
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        first.sum().backward()


@pytest.mark.parametrize("search", ["exact", "bucketed"])
@pytest.mark.parametrize("sets", [{}, {"memory__position_bias": "t5-relative", "memory__combine": "joint"},
                                  {"memory__position_bias": "learned-absolute"}])
def test_training_steps_off_the_cpu_make_no_host_round_trip(search, sets):
    """On the meta device (shapes only, no data) reading a tensor's value raises, as a host round trip would
    stall a GPU: segments with resets, forward and backward, through a memory that fills."""
    model = MemorizingTransformer(tiny_config(memory__search=search, **sets)).to("meta")
    state = model.init_state(LANES)
    tokens = torch.zeros(LANES, SEGMENT, dtype=torch.long, device="meta")
    for s in range(3):
        logits, state = model(tokens, state, torch.tensor([s == 1, False, True], device="meta"))
        logits.sum().backward()


@pytest.mark.parametrize("search", ["exact", "bucketed", "ivf"])
def test_bf16_autocast_follows_the_fp32_model_and_keeps_memory_in_fp32(search):
    """The bf16 path (train.precision = "bf16") through every back-end: logits near the fp32 model's, finite
    gradients, and the memory and its search kept in fp32."""
    torch.manual_seed(0)
    model = MemorizingTransformer(tiny_config(memory__search=search, memory__ivf_lists=4, memory__ivf_probe=4))
    tokens = torch.randint(0, 256, (LANES, 4 * SEGMENT))
    with torch.no_grad():
        reference, _ = stream(model, tokens)
    state = model.init_state(LANES)
    for s in range(4):  # as training does: each segment's backward before the next segment
        with torch.autocast("cpu", torch.bfloat16):
            logits, state = model(tokens[:, s * SEGMENT:(s + 1) * SEGMENT], state)
        logits.float().logsumexp(-1).mean().backward()
        assert logits.dtype == torch.bfloat16 and state.memories()[0].keys.dtype == torch.float32
        expected = reference[:, s * SEGMENT:(s + 1) * SEGMENT]
        assert (logits.float() - expected).abs().max() < 0.08 * expected.abs().max()  # bf16: 8-bit mantissas
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_learned_gate_starts_at_one_half():
    model = MemorizingTransformer(tiny_config())
    assert model.gates() == {2: [0.5, 0.5]}


def test_fixed_gate_zero_is_the_local_only_model_and_one_is_memory_only():
    # memory.enabled = false removes the memory branch and nothing else: the model reading nothing (gate fixed
    # at 0) has exactly its parameters (the memory layer keeps its qk-norm and scale) and its outputs.
    tokens = torch.randint(0, 256, (LANES, 4 * SEGMENT))
    local_only = make_model(memory__enabled=False)
    gate0 = MemorizingTransformer(tiny_config(memory__combine="fixed", memory__gate=0.0))
    assert "blocks.1.attn.log_scale" in dict(local_only.named_parameters())
    gate0.load_state_dict(local_only.state_dict())  # strict: the same parameters, no more, no fewer
    with torch.no_grad():
        a, _ = stream(local_only, tokens)
        b, _ = stream(gate0, tokens)
    assert torch.allclose(a, b, atol=1e-5)

    # gate 1: the memory layer's output depends only on memory, so the first segment of a document (empty
    # memory) gives identical memory-layer output whatever its tokens' local context.
    gate1 = make_model(memory__combine="fixed", memory__gate=1.0)
    attn = gate1.blocks[-1].attn
    q = torch.randn(LANES, 2, SEGMENT, 32)
    local = torch.randn_like(q)
    state = gate1.init_state(LANES)
    with torch.no_grad():
        stream(gate1, tokens, state)
        pos = state.position[:, None] + torch.arange(SEGMENT)
        mem_out, _ = attn.memory.retrieve(q, state.layers[-1].memory, pos)
        assert torch.equal(attn.memory(q, state.layers[-1].memory, pos, local), mem_out)
        gate0_attn = gate0.blocks[-1].attn.memory
        assert torch.equal(gate0_attn(q, state.layers[-1].memory, pos, local), local)


def test_joint_combine_is_one_softmax_over_memory_and_local():
    model = make_model(memory__combine="joint", memory__qk_norm=False)
    memory_attention = model.blocks[-1].attn.memory
    state = model.init_state(LANES)
    with torch.no_grad():
        stream(model, torch.randint(0, 256, (LANES, 3 * SEGMENT)), state)
        memory = state.layers[-1].memory
        q = torch.randn(LANES, 2, 4, 32)
        local_keys, local_values = torch.randn(LANES, 2, 10, 32), torch.randn(LANES, 2, 10, 32)
        local_logits = q @ local_keys.transpose(-1, -2)
        local = torch.softmax(local_logits, -1) @ local_values
        pos = torch.zeros(LANES, 4, dtype=torch.long) + 1000
        out = memory_attention(q, memory, pos, local, local_logits.logsumexp(-1))
        # reference: top-k memory logits and local logits in one softmax
        scores = (q @ memory.keys.transpose(-1, -2)).masked_fill(~memory.valid[:, None, None], -torch.inf)
        top, index = scores.topk(8, -1)
        index_dims = index[..., None].expand(-1, -1, -1, -1, 32)
        values = memory.values[:, :, None].expand(-1, -1, 4, -1, -1).gather(3, index_dims)
        weights = torch.softmax(torch.cat([top, local_logits], -1), -1)
        reference = (weights[..., :8, None] * values).sum(-2) + weights[..., 8:] @ local_values
    assert torch.allclose(out, reference, atol=1e-5)


@pytest.mark.parametrize("bias", ["t5-relative", "learned-absolute"])
def test_memory_position_biases_run_and_matter_once_trained(bias):
    model = make_model(memory__position_bias=bias, memory__qk_norm=False)
    tokens = torch.randint(0, 256, (LANES, 4 * SEGMENT))
    table = model.blocks[-1].attn.memory.position_bias.table
    with torch.no_grad():
        table.zero_()
        a, _ = stream(model, tokens)
        table.normal_(0, 2.0)
        b, _ = stream(model, tokens)
    assert torch.equal(a[:, :SEGMENT], b[:, :SEGMENT])  # empty memory in the first segment: no effect
    assert (a[:, 2 * SEGMENT:] - b[:, 2 * SEGMENT:]).abs().amax() > 1e-3


@pytest.mark.parametrize("query_len, cache_len", [(5, 0), (7, 3), (16, 40), (32, 32)])
def test_local_relative_bias_is_the_t5_bucket_of_each_query_key_distance(query_len, cache_len):
    bias_module = RelativePositionBias(heads=3, num_buckets=32, max_distance=128)
    torch.nn.init.normal_(bias_module.table)
    distance = (torch.arange(query_len)[:, None] + cache_len) - torch.arange(cache_len + query_len)[None, :]
    expected = bias_module.table[:, log_buckets(distance, 32, 128)].masked_fill(distance < 0, -torch.inf)
    assert torch.equal(bias_module(query_len, cache_len), expected)


def test_ivf_search_scanning_every_list_gives_the_exact_search_model():
    """The model streams documents (with a reset) through an ivf-searched memory: with every list scanned its
    logits are those of exact search."""
    exact = make_model()
    ivf = MemorizingTransformer(tiny_config(memory__search="ivf", memory__ivf_lists=4, memory__ivf_probe=4)).eval()
    ivf.load_state_dict(exact.state_dict())
    tokens = torch.randint(0, 256, (LANES, 12 * SEGMENT))
    resets = [torch.tensor([s == 6, False, s == 9]) for s in range(12)]
    with torch.no_grad():
        assert torch.allclose(stream(exact, tokens, resets=resets)[0], stream(ivf, tokens, resets=resets)[0],
                              atol=1e-4)


def test_qk_norm_off_runs_and_differs():
    tokens = torch.randint(0, 256, (LANES, 3 * SEGMENT))
    with torch.no_grad():
        a, _ = stream(make_model(memory__qk_norm=False), tokens)
    assert torch.isfinite(a).all()
    assert "log_scale" not in dict(make_model(memory__qk_norm=False).named_parameters()).keys()
    assert any("log_scale" in n for n, _ in make_model().named_parameters())


def test_parameter_counts_with_and_without_memory():
    with_memory = MemorizingTransformer(tiny_config()).num_parameters()
    without = MemorizingTransformer(tiny_config(memory__enabled=False)).num_parameters()
    assert with_memory - without == 2  # the gate bias, one per head: memory.enabled = false removes nothing else
    plain = MemorizingTransformer(tiny_config(memory__enabled=False, memory__qk_norm=False, model__qk_norm=False))
    assert without - plain.num_parameters() == 2 * 2  # a qk-norm scale per head in each of the 2 layers


def test_save_then_load_reproduces_logits_exactly(tmp_path):
    model = make_model(memory__position_bias="learned-absolute")
    save_model(model, tmp_path)
    loaded = load_model(tmp_path).eval()
    tokens = torch.randint(0, 256, (LANES, 3 * SEGMENT))
    with torch.no_grad():
        assert torch.equal(stream(model, tokens)[0], stream(loaded, tokens)[0])
    assert not list(tmp_path.glob("*.tmp"))


def test_load_refuses_a_truncated_weights_file(tmp_path):
    save_model(make_model(), tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(Exception, match="corrupted or truncated"):
        load_model(tmp_path)
