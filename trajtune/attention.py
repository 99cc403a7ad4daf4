"""Causal attention for CPU training: eager attention's forward numbers with a third less of the
sequence-squared work.

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
forward output and the query gradient are bit-identical to eager under bf16 autocast (a test);
the key and value gradients are summed over blocks, so they round differently at bf16 precision.

Registered with transformers as ``trajtune_blocks`` (:func:`register`); it falls back to plain
unblocked attention whenever the blocks would not be exact: a mask that lets a query see a later
key, cached decoding (fewer queries than keys), attention dropout, soft-capping or sink logits.
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


class _MaskedSoftmax(torch.autograd.Function):
    """Scores -> fp32 softmax over the unmasked keys -> probabilities in ``out_dtype``, as eager
    computes them under autocast (scores + an additive fp32 mask of 0 / fp32's lowest value,
    softmax in fp32, cast for the value matmul). ``hide`` masks the columns from ``first`` on. The
    backward is softmax's own fp32 backward, cast back to the scores' dtype."""

    @staticmethod
    def forward(ctx: Any, s: torch.Tensor, hide: torch.Tensor | None, first: int, out_dtype: torch.dtype):
        ctx.in_dtype = s.dtype
        s = s.float()
        if hide is not None:
            s[..., first:].masked_fill_(hide, torch.finfo(torch.float32).min)
        p = torch._softmax(s, -1, False)
        ctx.save_for_backward(p)
        return p.to(out_dtype)

    @staticmethod
    def backward(ctx: Any, dp: torch.Tensor):
        (p,) = ctx.saved_tensors
        ds = torch._softmax_backward_data(dp.float(), p, -1, torch.float32)
        return ds.to(ctx.in_dtype), None, None, None


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
    off = s_len - t
    # key/value gradients of the blocks add up in fp32 (one rounding to bf16 at the end, not one a block)
    k = _repeat_kv(key.float() if autocast else key, n_rep)
    v = _repeat_kv(value.float() if autocast else value, n_rep)
    exact_scale = 0 < scaling and math.frexp(scaling)[0] == 0.5  # a power of two: folding it into q is exact
    with torch.autocast("cpu", enabled=False):
        q = (query * scaling if exact_scale else query).to(dt)
        nb = max(1, round(t / BLOCK_ROWS))
        edges = [round(t * i / nb) for i in range(nb + 1)]
        outs = []
        for i0, i1 in zip(edges, edges[1:]):
            keys = off + i1
            sc = torch.matmul(q[:, :, i0:i1], k[:, :, :keys].to(dt).transpose(2, 3))
            if not exact_scale:
                sc = sc * scaling
            if attention_mask is None:  # only the block's diagonal square can hold later keys
                hide, first = _later(i1 - i0, i1 - i0, sc.device), off + i0
            else:
                hide, first = ~attention_mask[:, :, i0:i1, :keys], 0
            p = _MaskedSoftmax.apply(sc, hide, first, dt)
            outs.append(torch.matmul(p, v[:, :, :keys].to(dt)))
        out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)
    return out.transpose(1, 2).contiguous(), None


def register() -> str:
    """Make ``attn_implementation="trajtune_blocks"`` loadable (boolean masks, None when plainly causal)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, causal_blocks_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME
