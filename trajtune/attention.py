"""Causal attention for CPU training: eager attention's numbers, bit for bit, with a third less of
the sequence-squared work and memory.

Eager attention (transformers' ``eager_attention_forward``, train-sft's and train-dpo's default on
a CPU since it beat SDPA's CPU kernels) scores every query against every key and then throws the
upper triangle away through an additive mask: a quarter of a train-sft step of the default model
went to those T x T scores, their mask, softmax and casts (bench/profile_train_sft.py). Here the
queries are split into row blocks; block ``[i0, i1)`` is scored only against keys ``[0, i1)``,
which the causal mask allows, so with 3 blocks 2/3 of the score matrix is computed, masked,
normalised and kept for the backward pass, and only the diagonal part of each block is masked.

The numbers are eager's: the same bf16 scores (the scale is folded into the queries when it is a
power of two, which is exact, else applied to the scores as eager does), the same fp32 softmax
with keys masked to fp32's lowest value, the same bf16 probabilities times the values. The
backward assembles the probabilities and score gradients of the blocks into full matrices for
the key and value gradients, so those come from eager's own matmuls: under bf16 autocast the
output and all gradients are eager's bit for bit (tests), and a trained adapter is the same bytes.

Measured (README): the attention core alone runs 1.06x eager's at 538 tokens and 1.66x at 1,024
once malloc keeps its buffers (1.1-1.6x / 2x at glibc's defaults, where eager's fresh T x T
buffers fault in pages; bench/bench_attention.py), the demo's train-sft peak memory fell from 6.0
to 4.9 GB, and a whole train-sft step did not measure faster (an alternating A/B: 0.996x).

Registered with transformers as ``trajtune_blocks`` (:func:`register`), with SDPA's mask format
(boolean keep-masks, None when plainly causal); it hands the call to transformers' SDPA attention
whenever blocks would not be exact: a mask that lets a query see a later key, several queries
over a longer cache with no mask, attention dropout, soft-capping or sink logits.
"""
from __future__ import annotations

import math
from typing import Any

import torch

NAME = "trajtune_blocks"
BLOCK_ROWS = 192  # rows per block: 3 blocks for the demo's ~540-token records (bench/bench_attention.py)

_tri_cache: dict[tuple, torch.Tensor] = {}
_mask_checked: dict[int, tuple[Any, bool]] = {}


def _later(t: int, s: int, device: torch.device) -> torch.Tensor:
    """[t, s] bool, True where key j lies after query i (j > i + s - t: queries are the last t
    positions of s, as in a causal forward over a cached prefix)."""
    key = (t, s, str(device))
    m = _tri_cache.get(key)
    if m is None:
        if len(_tri_cache) > 64:
            _tri_cache.clear()
        m = _tri_cache[key] = torch.ones(t, s, dtype=torch.bool, device=device).triu(s - t + 1)
    return m


def _hides_later_keys(mask: torch.Tensor) -> bool:
    """Whether a boolean keep-mask [B, 1|H, T, S] hides every later key; checked once per mask
    tensor (all layers of one forward share it)."""
    hit = _mask_checked.get(id(mask))
    if hit is not None and hit[0] is mask:
        return hit[1]
    t, s = mask.shape[-2:]
    ok = s >= t and not bool((mask & _later(t, s, mask.device)).any())
    _mask_checked.clear()
    _mask_checked[id(mask)] = (mask, ok)
    return ok


class _CausalBlocks(torch.autograd.Function):
    """The attention core over causal row blocks, forward and backward, in eager's own operations.

    Inputs as eager's matmuls see them under autocast: q [B*H, T, D] (scaled when the scale is a
    power of two), k and v [B*H, S, D], all in the compute dtype. Per block of query rows
    ``[i0, i1)`` (keys ``[0, off + i1)``): scores, the masked fp32 softmax, its cast and the value
    matmul. The backward runs per block where eager's result does not depend on the key count
    (the probability gradient, softmax's backward, the query gradient), and assembles the
    probabilities and the score gradient into full [T, S] matrices (zeros where masked) for the
    key and value gradients, so those come from the very matmuls eager's backward runs: every
    gradient is eager's bit for bit (tests), at the cost of two T x S writes."""

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scaling: float | None,
                blocks: list, hide: torch.Tensor | None, off: int):
        fmin = torch.finfo(torch.float32).min
        outs, p32s, ps = [], [], []
        for i0, i1 in blocks:
            keys = off + i1
            sc = torch.bmm(q[:, i0:i1], k[:, :keys].transpose(1, 2))
            if scaling is not None:
                sc = sc * scaling
            s32 = sc.float()
            if hide is None:  # plain causal: only the block's diagonal square holds later keys
                s32[..., off + i0:].masked_fill_(_later(i1 - i0, i1 - i0, s32.device), fmin)
            else:  # hide: [B, 1|H, T, S], True where masked; the scores viewed as [B, H, rows, keys]
                s32.view(hide.shape[0], -1, i1 - i0, keys).masked_fill_(hide[:, :, i0:i1, :keys], fmin)
            p32 = torch._softmax(s32, -1, False)
            p = p32.to(q.dtype)
            outs.append(torch.bmm(p, v[:, :keys]))
            p32s.append(p32)
            ps.append(p)
        ctx.save_for_backward(q, k, v, *p32s, *ps)
        ctx.blocks, ctx.scaling, ctx.off = blocks, scaling, off
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)

    @staticmethod
    def backward(ctx: Any, do: torch.Tensor):
        q, k, v, *saved = ctx.saved_tensors
        n = len(ctx.blocks)
        p32s, ps = saved[:n], saved[n:]
        bh, t, s_len = q.shape[0], q.shape[1], k.shape[1]
        do = do.contiguous()
        p_full = q.new_zeros(bh, t, s_len)
        ds_full = q.new_zeros(bh, t, s_len)
        dq = torch.empty_like(q)
        for (i0, i1), p32, p in zip(ctx.blocks, p32s, ps):
            keys = ctx.off + i1
            p_full[:, i0:i1, :keys] = p
            dp = torch.bmm(do[:, i0:i1], v[:, :keys].transpose(1, 2))
            ds = torch._softmax_backward_data(dp.float(), p32, -1, torch.float32).to(q.dtype)
            if ctx.scaling is not None:
                ds = ds * ctx.scaling
            ds_full[:, i0:i1, :keys] = ds
            dq[:, i0:i1] = torch.bmm(ds, k[:, :keys])
        dv = torch.bmm(p_full.transpose(1, 2), do)
        dk = torch.bmm(q.transpose(1, 2), ds_full).transpose(1, 2)
        return dq, dk, dv, None, None, None, None


def _repeat_kv(x: torch.Tensor, n: int) -> torch.Tensor:
    if n == 1:
        return x
    b, h, t, d = x.shape
    return x[:, :, None].expand(b, h, n, t, d).reshape(b, h * n, t, d)


def causal_blocks_attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask: torch.Tensor | None, scaling: float, dropout: float = 0.0,
                            **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' attention interface: query [B, H, T, D], key/value [B, KV, S, D] (S >= T: the
    queries are the last T positions), a boolean keep-mask [B, 1, T, S] or None (plain causal, or
    one query seeing every key); returns ([B, T, H, D], None)."""
    t, s_len = query.shape[2], key.shape[2]
    exotic = any(kwargs.get(k) is not None for k in ("softcap", "s_aux", "sinks"))
    plain_causal = attention_mask is None and (t == s_len or t == 1)
    if (exotic or (dropout and module.training) or not getattr(module, "is_causal", True) or s_len < t
            or not (plain_causal or (attention_mask is not None and attention_mask.dtype == torch.bool
                                     and _hides_later_keys(attention_mask)))):
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    autocast = query.device.type == "cpu" and torch.is_autocast_enabled("cpu")
    dt = torch.get_autocast_dtype("cpu") if autocast else query.dtype
    n_rep = query.shape[1] // key.shape[1]
    b, h, _, d = query.shape
    exact_scale = 0 < scaling and math.frexp(scaling)[0] == 0.5  # a power of two: folding it into q is exact
    nb = max(1, round(t / BLOCK_ROWS))
    edges = [round(t * i / nb) for i in range(nb + 1)]
    blocks = [(i0, i1) for i0, i1 in zip(edges, edges[1:]) if i1 > i0]
    hide = None if attention_mask is None else ~attention_mask.expand(b, attention_mask.shape[1], t, s_len)
    with torch.autocast("cpu", enabled=False):
        # as eager's matmuls under autocast: repeat the key/value heads, then cast (autograd keeps
        # the casts' and the repeat's backward as eager's)
        q = (query * scaling if exact_scale else query).to(dt).reshape(b * h, t, d)
        k = _repeat_kv(key, n_rep).to(dt).reshape(b * h, s_len, d)
        v = _repeat_kv(value, n_rep).to(dt).reshape(b * h, s_len, d)
        out = _CausalBlocks.apply(q, k, v, None if exact_scale else float(scaling), blocks, hide, s_len - t)
    return out.reshape(b, h, t, d).transpose(1, 2).contiguous(), None


def register() -> str:
    """Make ``attn_implementation="trajtune_blocks"`` loadable (boolean masks, None when plainly causal)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, causal_blocks_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME
