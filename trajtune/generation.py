"""Greedy generation for many prompts at once, without padding: the engine behind ``evaluate``.

A plain ``model.generate`` over a left-padded batch wastes work: the prefill runs over the
padding (tool schemas make prompts hundreds of tokens long), every step copies the whole KV cache
(``torch.cat``), and finished rows stay in the batch. ``bench/profile_generation.py`` prints
where the time goes on the default model.

This engine:

1. **Shares prompt prefixes.** Prompts are sorted by their token ids, so each one's longest common
   prefix with any prompt already prefilled is the one with its predecessor (the system prompt,
   the tools header, a run of the same tool schemas). Its KV is reused and only the rest of the
   prompt runs through the model, one prompt at a time (no padding).
2. **Decodes in slots.** Each running sequence owns a row of a preallocated KV buffer and its own
   length; a token is written in place at that row's length, and a 4D boolean mask lets each row
   see only its own tokens. Nothing is padded or copied per step. A finished row is replaced at
   once by the next prefilled prompt (continuous batching), so the batch stays full.

Output is the greedy output of ``model.generate`` up to float rounding of different matmul shapes,
as with any batching; the benchmark (``bench/bench_evaluate.py``) checks it task by task.

The result of every prompt is exactly what :func:`cut_reply` makes of
the generated ids, as for ``model.generate``. :func:`supported` says whether a model can use the
engine (decoder-only, SDPA attention, full attention in every layer, no logits processors in its
generation config); otherwise the caller falls back to ``model.generate``.

**Sampling** (train-grpo's rollouts): with ``temperature > 0`` each token is drawn from
``softmax(logits / temperature)`` (nucleus-filtered by ``top_p``), and with ``num_samples = G`` each
prompt is prefilled once and its KV copied into G rows, which then decode independently: a group's
completions share one prompt prefill. Results are indexed ``prompt * G + j`` and carry each drawn
token's log-probability under the temperature-scaled distribution (what trl's GRPO loss computes).
``temperature == 0`` (the default) is the greedy engine above, unchanged.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

# generation-config fields that would make greedy decoding differ from a plain argmax
_PROCESSOR_FIELDS = {
    "repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "encoder_no_repeat_ngram_size": 0, "bad_words_ids": None,
    "min_length": 0, "min_new_tokens": None, "forced_bos_token_id": None, "forced_eos_token_id": None,
    "suppress_tokens": None, "begin_suppress_tokens": None, "sequence_bias": None, "guidance_scale": None,
    "exponential_decay_length_penalty": None, "renormalize_logits": False, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0,
    "num_beams": 1, "watermarking_config": None,
}


def supported(model) -> tuple[bool, str]:
    """(True, "") when the slot engine reproduces ``model.generate`` greedily for this model."""
    cfg = getattr(model, "config", None)
    if cfg is None or getattr(cfg, "is_encoder_decoder", False):
        return False, "not a decoder-only model"
    text = cfg.get_text_config(decoder=True) if hasattr(cfg, "get_text_config") else cfg
    try:
        from transformers.cache_utils import get_layer_types_and_kwargs

        layer_types, _ = get_layer_types_and_kwargs(text)
    except Exception as exc:  # noqa: BLE001 - an unknown config shape: do not guess
        return False, f"cannot read the layer types ({exc.__class__.__name__})"
    if not layer_types or any(t != "full_attention" for t in layer_types):
        return False, f"layer types {sorted(set(layer_types))} (only full attention is supported)"
    gc = getattr(model, "generation_config", None)
    for name, neutral in _PROCESSOR_FIELDS.items():
        value = getattr(gc, name, neutral) if gc is not None else neutral
        if value is not None and value != neutral:
            return False, f"generation config sets {name}={value!r}"
    impl = getattr(cfg, "_attn_implementation", None)
    if impl != "sdpa":  # the boolean 4D mask is passed as-is: SDPA reads it, eager would add it to the scores
        return False, f"attention implementation {impl!r} (only sdpa is supported)"
    return True, ""


@dataclass
class Result:
    index: int  # position in the prompts given to Engine.run() (prompt * num_samples + sample when sampling)
    ids: list[int]  # generated ids, the stop token included when one was produced
    seconds: float  # this sequence's share of the wall time: its prefill + its share of each step it ran in
    logprobs: list[float] = field(default_factory=list)  # sampling only: log-prob of each drawn token (temperature-scaled)


@dataclass
class Stats:
    prompts: int = 0
    prompt_tokens: int = 0
    prefilled_tokens: int = 0  # prompt tokens that ran through the model (the rest came from shared prefixes)
    steps: int = 0  # decode forward passes
    generated: int = 0
    prefill_s: float = 0.0
    decode_s: float = 0.0

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["prefix_share"] = round(1 - self.prefilled_tokens / self.prompt_tokens, 4) if self.prompt_tokens else 0.0
        d["prefill_s"], d["decode_s"] = round(self.prefill_s, 3), round(self.decode_s, 3)
        return d


class _SlotState:
    """Positions shared by the layers of one slot cache during one forward pass."""

    def __init__(self):
        self.rows = None  # LongTensor [n, 1]: the row of every new token
        self.cols = None  # LongTensor [n, 1]: the column (position) where it is written
        self.n = 0
        self.kv_len = 0


def _make_slot_cache(num_layers: int, state: _SlotState, capacity: tuple[int, int]):
    from transformers.cache_utils import Cache, CacheLayerMixin

    class SlotLayer(CacheLayerMixin):
        is_sliding = False
        is_compileable = False

        def __init__(self):
            super().__init__()
            self.keys = self.values = None

        def lazy_initialization(self, key_states, value_states):
            b, t = capacity
            self.keys = key_states.new_zeros((b, key_states.shape[1], t, key_states.shape[3]))
            self.values = value_states.new_zeros((b, value_states.shape[1], t, value_states.shape[3]))
            self.is_initialized = True

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            # [n, H, 1, D] -> written in place at (row, :, col); nothing else is copied
            self.keys[state.rows, :, state.cols] = key_states.transpose(1, 2)
            self.values[state.rows, :, state.cols] = value_states.transpose(1, 2)
            return self.keys[: state.n, :, : state.kv_len], self.values[: state.n, :, : state.kv_len]

        def get_seq_length(self) -> int:
            return state.kv_len

        def get_mask_sizes(self, query_length: int):
            return state.kv_len, 0

        def get_max_length(self) -> int:
            return capacity[1]

    class SlotCache(Cache):
        def __init__(self):
            super().__init__(layers=[SlotLayer() for _ in range(num_layers)])

    return SlotCache()


@dataclass
class Engine:
    """Greedy generation over a list of prompts (token ids). See the module docstring."""

    model: Any
    stop_ids: Sequence[int]
    max_new_tokens: int
    batch_size: int = 64
    stop_check: Callable[[list[int]], bool] | None = None  # extra stop test on the generated ids (stop strings)
    stats: Stats = field(default_factory=Stats)
    temperature: float = 0.0  # 0: greedy (argmax); > 0: sample from softmax(logits / temperature)
    top_p: float = 1.0  # sampling: nucleus filter
    num_samples: int = 1  # sampling: completions per prompt, sharing its prefill (the KV is copied into each row)
    generator: Any = None  # sampling: a torch.Generator, or None for torch's global one

    def _pick(self, logits) -> tuple[list[int], list[float] | None]:
        """The next token of every row of ``logits`` [n, V]: argmax (greedy), or drawn (sampling)
        with its log-probability under the temperature-scaled distribution."""
        import torch

        if self.temperature <= 0:
            return logits.argmax(-1).tolist(), None
        logp = torch.log_softmax(logits.float() / self.temperature, dim=-1)
        probs = logp.exp()
        if self.top_p < 1.0:
            sp, si = probs.sort(-1, descending=True)
            drop = sp.cumsum(-1) - sp > self.top_p  # keep the smallest set whose mass reaches top_p
            probs = probs.scatter(-1, si, sp.masked_fill(drop, 0.0))
        # inverse-CDF draw: one uniform per row against the cumulative sum. torch.multinomial draws an
        # exponential variate for every vocabulary entry (19.5 ms for 16 rows x 49,152 on this CPU,
        # a tenth of a decode step); this takes 0.4 ms for the same distribution. u is in (0, 1], so
        # the first index whose cumulative mass reaches u * total always has mass > 0.
        cdf = probs.cumsum(-1)
        u = 1.0 - torch.rand((probs.shape[0], 1), generator=self.generator, device=probs.device)
        tok = torch.searchsorted(cdf, u * cdf[:, -1:]).clamp_(max=probs.shape[-1] - 1)
        return tok[:, 0].tolist(), logp.gather(-1, tok)[:, 0].tolist()

    def _prefill(self, ids: list[int], prefix_kv, prefix_len: int):
        """Run ids[prefix_len:] on top of the first prefix_len positions of prefix_kv; (kv, first token)."""
        import torch
        from transformers.cache_utils import DynamicCache

        dev = self.model.device
        if prefix_len:
            cache = DynamicCache(ddp_cache_data=[(k[:, :, :prefix_len], v[:, :, :prefix_len]) for k, v in prefix_kv])
        else:
            cache = DynamicCache(config=self.model.config)
        x = torch.tensor([ids[prefix_len:]], device=dev)
        pos = torch.arange(prefix_len, len(ids), device=dev)[None]
        out = self.model(input_ids=x, position_ids=pos, cache=cache, use_cache=True, logits_to_keep=1)
        return [(layer.keys, layer.values) for layer in cache.layers], out.logits[0, -1]

    def run(self, prompts: list[list[int]], on_result: Callable[[Result], None] | None = None,
            limits: Sequence[int] | None = None) -> list[Result]:
        """Generate for every prompt; ``limits[i]``: prompt i's own token limit (default max_new_tokens)."""
        import torch

        n_prompts = len(prompts)
        group = max(1, self.num_samples) if self.temperature > 0 else 1
        results: list[Result | None] = [None] * (n_prompts * group)
        if not n_prompts:
            return []
        if any(not p for p in prompts):
            raise ValueError("an empty prompt: every prompt needs at least one token")
        model, dev = self.model, self.model.device
        text_cfg = model.config.get_text_config(decoder=True)
        num_layers = text_cfg.num_hidden_layers
        limit = list(limits) if limits is not None else [self.max_new_tokens] * n_prompts
        cap_t = max(len(p) for p in prompts) + max(limit) + 1
        cap_b = max(group, min(self.batch_size, n_prompts * group))
        state = _SlotState()
        cache = _make_slot_cache(num_layers, state, (cap_b, cap_t))
        stop = set(self.stop_ids)
        st = self.stats
        st.prompts += n_prompts
        st.prompt_tokens += sum(len(p) for p in prompts)

        order = sorted(range(n_prompts), key=lambda i: prompts[i])  # lexicographic: neighbours share prefixes
        queue = deque(order)
        prev_ids: list[int] = []
        prev_kv = None
        # per running row
        row_index: list[int] = []  # result index (prompt index * group + sample)
        row_len: list[int] = []  # tokens in the cache for this row
        row_gen: list[list[int]] = []  # generated ids; the last one is not in the cache yet
        row_secs: list[float] = []
        row_lp: list[list[float]] = []  # sampling: log-prob of each generated token
        rows = (row_index, row_len, row_gen, row_secs, row_lp)

        def finish(r: int) -> None:
            i = row_index[r]
            res = Result(i, row_gen[r], row_secs[r], row_lp[r])
            results[i] = res
            if on_result is not None:
                on_result(res)
            last = len(row_index) - 1
            if r != last:  # move the last row into the freed slot
                n = row_len[last]
                for layer in cache.layers:
                    layer.keys[r, :, :n] = layer.keys[last, :, :n]
                    layer.values[r, :, :n] = layer.values[last, :, :n]
                for lst in rows:
                    lst[r] = lst[last]
            for lst in rows:
                lst.pop()

        def emit(r: int, t: int, lp: float | None = None) -> bool:
            """Append a generated token to row r; True when the row is done."""
            row_gen[r].append(t)
            if lp is not None:
                row_lp[r].append(lp)
            st.generated += 1
            if t in stop or len(row_gen[r]) >= limit[row_index[r] // group]:
                return True
            return self.stop_check is not None and self.stop_check(row_gen[r])

        with torch.inference_mode():
            while queue or row_index:
                # 1) fill free slots with newly prefilled prompts
                while queue and len(row_index) + group <= cap_b:
                    i = queue.popleft()
                    ids = prompts[i]
                    t0 = time.perf_counter()
                    lcp = 0
                    lim = min(len(ids) - 1, len(prev_ids))
                    while lcp < lim and ids[lcp] == prev_ids[lcp]:
                        lcp += 1
                    kv, logits = self._prefill(ids, prev_kv, lcp)
                    prev_ids, prev_kv = ids, kv
                    st.prefilled_tokens += len(ids) - lcp
                    firsts, lps = self._pick(logits[None].expand(group, -1))  # one prefill, `group` first tokens
                    dt = (time.perf_counter() - t0) / group
                    st.prefill_s += dt * group
                    for j in range(group):
                        r = len(row_index)
                        for layer, (k, v) in zip(cache.layers, kv):
                            if not layer.is_initialized:
                                layer.lazy_initialization(k, v)
                            layer.keys[r, :, : len(ids)] = k[0]
                            layer.values[r, :, : len(ids)] = v[0]
                        row_index.append(i * group + j), row_len.append(len(ids)), row_gen.append([]), row_secs.append(dt)
                        row_lp.append([])
                        if emit(r, firsts[j], None if lps is None else lps[j]):
                            finish(r)
                if not row_index:
                    continue
                # 2) one decode step for every running row: its last token goes in at column row_len
                t0 = time.perf_counter()
                n = len(row_index)
                cols = torch.tensor(row_len, device=dev)[:, None]  # [n, 1]
                state.n, state.kv_len = n, max(row_len) + 1
                state.rows, state.cols = torch.arange(n, device=dev)[:, None], cols
                # row r sees its own cache and its new token: columns 0 .. row_len[r]
                mask = torch.arange(state.kv_len, device=dev)[None, :] <= cols
                last = torch.tensor([g[-1] for g in row_gen], device=dev)[:, None]
                out = model(input_ids=last, position_ids=cols,
                            attention_mask=mask[:, None, None, :], cache=cache, use_cache=True)
                pred, lps = self._pick(out.logits[:, -1])
                st.steps += 1
                done = []
                for r in range(n):
                    row_len[r] += 1  # its last token is now in the cache
                    if emit(r, pred[r], None if lps is None else lps[r]):
                        done.append(r)
                dt = time.perf_counter() - t0
                st.decode_s += dt
                for r in range(n):
                    row_secs[r] += dt / n
                for r in sorted(done, reverse=True):
                    finish(r)
        return results  # type: ignore[return-value]


def kv_bytes_per_token(model) -> int:
    """Bytes of KV cache one token takes in every layer of ``model`` (keys and values)."""
    cfg = model.config.get_text_config(decoder=True)
    heads = getattr(cfg, "num_attention_heads", 1)
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    itemsize = next(model.parameters()).element_size()
    return int(cfg.num_hidden_layers * 2 * kv_heads * head_dim * itemsize)


def stop_token_ids(tok, model_config=None) -> list[int]:
    """End-of-turn tokens: the tokenizer's eos, ChatML's <|im_end|>, the model's generation eos ids."""
    ids: list[int] = []
    cands = [tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in tok.get_vocab() else None,
             tok.convert_tokens_to_ids("<|eot_id|>") if "<|eot_id|>" in tok.get_vocab() else None]
    gen_eos = getattr(getattr(model_config, "generation_config", None), "eos_token_id", None)
    cands += gen_eos if isinstance(gen_eos, list) else [gen_eos]
    for c in cands:
        if isinstance(c, int) and c >= 0 and c not in ids:
            ids.append(c)
    return ids


def cut_reply(tok, gen_ids: list[int], stop_ids: list[int], stop_strings: list[str], max_new_tokens: int) -> tuple[str, int, bool]:
    """(text, generated token count, truncated) for one generated sequence (padding removed)."""
    n = len(gen_ids)
    stopped = False
    for i, t in enumerate(gen_ids):
        if t in stop_ids:
            n, stopped = i, True
            break
    text = tok.decode(gen_ids[:n], skip_special_tokens=False)
    for s in stop_strings:
        j = text.find(s)
        if j >= 0:
            text, stopped = text[:j], True
    tokens = n + (1 if stopped and n < len(gen_ids) else 0)
    return text, tokens, (not stopped and n >= max_new_tokens)
