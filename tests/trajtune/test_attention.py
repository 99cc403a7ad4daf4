"""trajtune's causal-blocks attention (trajtune/attention.py), train-sft's and train-dpo's attention
on a CPU: eager attention's outputs and gradients bit for bit under bf16 autocast (queries split
into row blocks that score only the keys the causal mask allows), padding and cached-prefix masks
honoured, and a plain fallback wherever blocks would not be exact."""
import pytest
import torch
from transformers.models.llama.modeling_llama import eager_attention_forward

import trajtune.attention as attention
from trajtune.attention import causal_blocks_attention

FMIN = torch.finfo(torch.float32).min


class _Module:
    num_key_value_groups = 3
    training = True
    is_causal = True


def _keep(t: int, s: int, batch: int = 1) -> torch.Tensor:
    return torch.ones(t, s, dtype=torch.bool).tril(s - t)[None, None].expand(batch, 1, t, s)


def _run(fn, q, k, v, mask, autocast, g):
    for x in (q, k, v):
        x.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = fn(q, k, v, mask)
    out.backward(g.to(out.dtype))
    return out.detach(), q.grad.clone(), k.grad.clone(), v.grad.clone()


def _compare(t, s, keep, autocast, batch=1, block_rows=48, monkeypatch=None):
    """Our attention (mask given as transformers' SDPA-style keep-mask, None for plain causal)
    against transformers' eager attention with the equivalent additive mask."""
    monkeypatch.setattr(attention, "BLOCK_ROWS", block_rows)
    torch.manual_seed(0)
    q = torch.randn(batch, 9, t, 64, requires_grad=True)  # fp32 after rotary embeddings, as in Llama
    k = torch.randn(batch, 3, s, 64, requires_grad=True)
    v = torch.randn(batch, 3, s, 64).to(torch.bfloat16 if autocast else torch.float32).requires_grad_()
    g = torch.randn(batch, t, 9, 64)
    full = keep if keep is not None else _keep(t, s, batch)
    additive = torch.zeros(full.shape).masked_fill(~full, FMIN)
    ref = _run(lambda *a: eager_attention_forward(_Module(), *a[:3], additive, 0.125)[0], q, k, v, keep, autocast, g)
    ours = _run(lambda *a: causal_blocks_attention(_Module(), *a, 0.125)[0], q, k, v, keep, autocast, g)
    return ref, ours


@pytest.mark.parametrize("t", [200, 130])
def test_causal_blocks_give_eager_outputs_bit_for_bit_under_bf16_autocast(t, monkeypatch):
    ref, ours = _compare(t, t, None, True, monkeypatch=monkeypatch)
    assert ref[0].dtype == ours[0].dtype == torch.bfloat16
    for a, b in zip(ref, ours):  # output, query, key and value gradients
        assert a.dtype == b.dtype and torch.equal(a, b)


def test_padding_masks_and_cached_prefixes_are_honoured(monkeypatch):
    # two right-padded rows of a micro-batch (SDPA-style keep-mask, as transformers builds it)
    t, lens = 150, [150, 111]
    pad = torch.arange(t)[None] < torch.tensor(lens)[:, None]
    keep = _keep(t, t, 2) & pad[:, None, None, :]
    ref, ours = _compare(t, t, keep, True, batch=2, monkeypatch=monkeypatch)
    assert all(torch.equal(a, b) for a, b in zip(ref, ours))
    # the same mask given per head ([B, H, T, S])
    ref, ours = _compare(t, t, keep.expand(2, 9, t, t), True, batch=2, monkeypatch=monkeypatch)
    assert all(torch.equal(a, b) for a, b in zip(ref, ours))
    # queries that are the last 60 of 200 positions (train-dpo's suffix pass over a shared prompt's cache)
    ref, ours = _compare(60, 200, _keep(60, 200), True, monkeypatch=monkeypatch)
    assert all(torch.equal(a, b) for a, b in zip(ref, ours))
    # one query seeing every key (decoding with a cache): no mask at all
    ref, ours = _compare(1, 90, None, True, monkeypatch=monkeypatch)
    assert torch.equal(ref[0], ours[0])


def test_fp32_runs_match_eager_within_fp32_rounding(monkeypatch):
    ref, ours = _compare(170, 170, None, False, monkeypatch=monkeypatch)
    for a, b in zip(ref, ours):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_a_mask_that_shows_later_keys_falls_back_to_unblocked_attention(monkeypatch):
    """A bidirectional patch (a mask that lets a query see later keys) cannot be cut into causal
    blocks: the result must still be attention under that mask."""
    monkeypatch.setattr(attention, "BLOCK_ROWS", 16)
    torch.manual_seed(0)
    t = 64
    keep = _keep(t, t).clone()
    keep[..., :10, :10] = True  # a bidirectional prefix
    q, k, v = torch.randn(1, 9, t, 64), torch.randn(1, 3, t, 64), torch.randn(1, 3, t, 64)
    additive = torch.zeros(keep.shape).masked_fill(~keep, FMIN)
    ref = eager_attention_forward(_Module(), q, k, v, additive, 0.125)[0]
    ours = causal_blocks_attention(_Module(), q, k, v, keep, 0.125)[0]
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)
    assert (ours[:, :10] - causal_blocks_attention(_Module(), q, k, v, None, 0.125)[0][:, :10]).abs().max() > 1e-3


def test_a_model_loads_with_it_and_gives_eager_logits(tiny_model, monkeypatch):
    from transformers import AutoModelForCausalLM

    from trajtune.training import attach_lora, attention_for

    monkeypatch.setattr(attention, "BLOCK_ROWS", 8)
    assert attention_for("auto", "cpu") == "trajtune_blocks" and attention_for("auto", "cuda") is None
    ids = torch.randint(3, 200, (2, 40))
    mask = torch.ones_like(ids)
    mask[1, 31:] = 0  # right padding
    logits, grads = {}, {}
    for impl in ("eager", "trajtune_blocks"):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32, attn_implementation=impl)
        assert model.config._attn_implementation == impl
        model, _ = attach_lora(model, r=4, alpha=8, dropout=0.0, target_modules="all-linear", fallback="none")
        for n, p in model.named_parameters():  # LoRA B starts at zero: give it values so every path carries gradient
            if "lora_B" in n:
                p.data.normal_(0, 0.05)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(input_ids=ids, attention_mask=mask).logits
        out[0].float().logsumexp(-1).sum().backward()  # the unpadded row: padding rows differ by design
        logits[impl] = out.detach()
        grads[impl] = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert torch.equal(logits["eager"][0], logits["trajtune_blocks"][0])
    assert torch.equal(logits["eager"][1, :31], logits["trajtune_blocks"][1, :31])
    assert all(torch.equal(g, grads["trajtune_blocks"][n]) for n, g in grads["eager"].items())
