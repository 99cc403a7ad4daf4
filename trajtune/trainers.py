"""The trainer classes, collators and LM heads of the training stages, at module level.

Stages import this module lazily (it imports torch, transformers and trl at the top), so the
command line stays fast and these classes can be imported, subclassed and type-checked.

trl coupling: :class:`PretokenizedDPOTrainer` overrides three private methods of trl's
``DPOTrainer`` (``_prepare_dataset``, ``_precompute_ref_logps``, ``_set_signature_columns_if_needed``),
:func:`add_completion_only_head` replaces the forward that trl patches in (and builds trl's
``FusedCausalLMOutput``), and train-dpo reads ``DPOTrainer._total_train_tokens``. trl is therefore
pinned to the tested version in setup.cfg, and ``tests/trajtune/test_trl_contract.py`` fails
loudly when any of these changes.
"""
from __future__ import annotations

import time
import types
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from torch.utils.data import Sampler
from transformers import Trainer, TrainerCallback
from transformers.trainer_pt_utils import get_length_grouped_indices
from trl import DPOTrainer
from trl.trainer.utils import FusedCausalLMOutput


# ============================================================================ SFT

class PadCollator:
    """Right-pad a batch to its longest row; labels padded with -100."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, features: list[dict]) -> dict:
        n = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), n), self.pad_id, dtype=torch.long)
        labels = torch.full((len(features), n), -100, dtype=torch.long)
        mask = torch.zeros((len(features), n), dtype=torch.long)
        for i, f in enumerate(features):
            k = len(f["input_ids"])
            ids[i, :k] = torch.tensor(f["input_ids"])
            labels[i, :k] = torch.tensor(f["labels"])
            mask[i, :k] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def label_loss(model: Any, inputs: dict, logits_at_labels_only: bool = True, decision_weight: float = 1.0):
    """Mean next-token cross-entropy over label positions.

    With ``logits_at_labels_only`` the model projects hidden states to the vocabulary only where
    a label follows (``logits_to_keep`` as a boolean mask, passed through DDP/PEFT forwards).

    ``decision_weight`` scales the loss of the first token of each trained assistant turn: the
    token where the model decides between a tool call (``<tool_call>``) and a plain reply. Demo
    records have ~100 label tokens (64-161 in a sample of six) and one or two such turns, so in a
    plain mean the decisions weigh 1-3% of the loss and the JSON around them the rest. The sum
    stays divided by the number of label tokens (1.0 gives the plain mean, bit for bit). 8 was
    measured worse on the demo (README "The demo, measured").
    """
    labels = inputs["labels"]
    keep = labels.new_zeros(labels.shape, dtype=bool)
    keep[:, :-1] = labels[:, 1:] != -100
    targets = labels[:, 1:][keep[:, :-1]]
    if logits_at_labels_only:
        out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], logits_to_keep=keep, use_cache=False)
        logits = out.logits.reshape(-1, out.logits.shape[-1])
    else:
        out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False)
        logits = out.logits[keep]
    if decision_weight == 1.0:
        return F.cross_entropy(logits.float(), targets, reduction="mean"), out
    is_label = labels != -100
    first = is_label.clone()
    first[:, 1:] &= ~is_label[:, :-1]  # a label whose previous position is not one: a turn's first token
    weights = torch.where(first[:, 1:][keep[:, :-1]], float(decision_weight), 1.0)
    ce = F.cross_entropy(logits.float(), targets, reduction="none")
    return (ce * weights).sum() / max(targets.numel(), 1), out


class LengthGrouped(Sampler):
    """Length-grouped order, reproducible per (seed, epoch) so a resumed run sees the same batches."""

    def __init__(self, lengths: list[int], batch: int, seed: int) -> None:
        self.lengths, self.batch, self.seed, self.epoch = lengths, batch, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch, generator=g))


class SFTLabelTrainer(Trainer):
    """Loss on label positions only (token-weighted over the optimizer step), length-grouped batches."""

    def __init__(self, *args, logits_at_labels_only: bool = True, group_by_length: bool = True,
                 decision_weight: float = 1.0, **kwargs):
        self.logits_at_labels_only = logits_at_labels_only
        self.group_by_length = group_by_length
        self.decision_weight = decision_weight
        super().__init__(*args, **kwargs)
        # our compute_loss normalises by the label tokens of the whole step: tell the Trainer, so it
        # counts them (num_items_in_batch) and does not divide by the accumulation steps again.
        # (A PEFT-wrapped model reports False here, and the loss would be a mean of micro-batch means.)
        self.model_accepts_loss_kwargs = True

    def _get_train_sampler(self, train_dataset=None):
        ds = train_dataset if train_dataset is not None else self.train_dataset
        if not self.group_by_length or self.args.world_size > 1:
            return super()._get_train_sampler(train_dataset) if train_dataset is not None else super()._get_train_sampler()
        lengths = [len(f["input_ids"]) for f in ds]
        return LengthGrouped(lengths, self.args.train_batch_size * self.args.gradient_accumulation_steps, self.args.seed)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # validation reads the plain loss, comparable across runs whatever the weight
        weight = self.decision_weight if model.training else 1.0
        loss, out = label_loss(model, inputs, self.logits_at_labels_only, weight)
        if num_items_in_batch is not None:
            # a token-weighted mean over the whole optimizer step (all micro-batches, all processes):
            # splitting a batch into micro-batches then gives the same gradient as one big batch.
            n = (inputs["labels"][:, 1:] != -100).sum()
            loss = loss * n / num_items_in_batch
            if self.args.average_tokens_across_devices and self.accelerator.num_processes > 1:
                loss = loss * self.accelerator.num_processes  # DDP averages gradients over processes
        return (loss, out) if return_outputs else loss

    # Validation loss, token-weighted like the training loss. The Trainer's evaluation loop averages
    # per-batch means over records (each batch's mean repeated batch-size times), so the figure
    # would depend on the eval batch size: micro-batches of 1 record gave a mean of per-record means
    # (a short reply weighs as much as a long one). Sum token losses and tokens instead.
    _eval_sums: list | None = None

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        loss, logits, labels = super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)
        if loss is not None and self._eval_sums is not None:
            n = int((inputs["labels"][:, 1:] != -100).sum())
            self._eval_sums[0] += float(loss) * n
            self._eval_sums[1] += n
        return loss, logits, labels

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"):
        self._eval_sums = [0.0, 0]
        try:
            output = super().evaluation_loop(dataloader, description, prediction_loss_only=prediction_loss_only,
                                             ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)
            sums = torch.tensor(self._eval_sums, dtype=torch.float64, device=self.args.device)
        finally:
            self._eval_sums = None
        if self.accelerator.num_processes > 1:
            sums = self.accelerator.reduce(sums, reduction="sum")
        key = f"{metric_key_prefix}_loss"
        if key in output.metrics and sums[1] > 0:
            output.metrics[key] = float(sums[0] / sums[1])
        return output


class SleepPerStep(TrainerCallback):
    """Test hook (TRAJTUNE_TEST_STEP_SLEEP): slow each step so a test can kill the run mid-way."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_step_end(self, args, state, control, **kwargs):
        time.sleep(self.seconds)


# ============================================================================ DPO

class PairCollator:
    """Pads [chosen..., rejected...] into one batch; ``completion_mask`` marks the loss tokens
    (what trl's DPOTrainer reads), ref log-probs pass through when precomputed."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, examples: list[dict]) -> dict:
        seqs = [e["chosen_ids"] for e in examples] + [e["rejected_ids"] for e in examples]
        masks = [e["chosen_mask"] for e in examples] + [e["rejected_mask"] for e in examples]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_token_id, dtype=torch.long)
        att = torch.zeros((len(seqs), width), dtype=torch.long)
        comp = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, (s, m) in enumerate(zip(seqs, masks)):
            ids[i, : len(s)] = torch.tensor(s)
            att[i, : len(s)] = 1
            comp[i, : len(m)] = torch.tensor(m)
        out = {"input_ids": ids, "attention_mask": att, "completion_mask": comp}
        if "ref_chosen_logps" in examples[0]:
            out["ref_chosen_logps"] = torch.tensor([e["ref_chosen_logps"] for e in examples])
            out["ref_rejected_logps"] = torch.tensor([e["ref_rejected_logps"] for e in examples])
        return out


def token_inputs(kwargs: dict) -> tuple:
    """(input_ids, attention_mask) of a backbone call that passes only those (PEFT also passes its
    optional inputs explicitly as None: inputs_embeds=None, output_attentions=None, ...); (None, None)
    when there are other inputs or either is missing, so a shared-prompt forward falls back to the plain one."""
    ids, att = kwargs.get("input_ids"), kwargs.get("attention_mask")
    harmless = {"input_ids", "attention_mask", "use_cache", "return_dict"}
    if ids is None or att is None or any(k not in harmless and v is not None and v is not False for k, v in kwargs.items()):
        return None, None
    return ids, att


def shared_prefix_hidden(backbone, kwargs: dict):
    """Last hidden states of a [chosen..., rejected...] batch, computing each pair's shared prompt once.

    Row i (chosen) and row i+B (rejected) start with the same rendered prompt, often 80-90% of
    their tokens (tool schemas). The backbone runs the common prefix once with a KV cache, repeats
    the cache for the two rows and runs only the two suffixes on top of it; gradients flow back
    through the cache into the prefix, so training sees the same function as the plain forward
    (a test compares log-probs and gradients). Returns None when the batch is not in that shape
    (odd rows, left padding, extra model inputs), and the caller runs the plain forward.
    """
    ids, att = token_inputs(kwargs)
    if ids is None or ids.size(0) % 2:
        return None
    lengths = att.sum(dim=1)
    width = ids.size(1)
    if not bool((att == (torch.arange(width, device=att.device)[None, :] < lengths[:, None]).to(att.dtype)).all()):
        return None  # not right-padded
    pairs = ids.size(0) // 2
    rows: list = [None] * ids.size(0)
    for i in range(pairs):
        a, b = i, i + pairs
        la, lb = int(lengths[a]), int(lengths[b])
        n = min(la, lb) - 1  # keep at least one token of each row in the suffix pass
        differ = (ids[a, :n] != ids[b, :n]).nonzero()
        common = int(differ[0]) if differ.numel() else max(n, 0)
        w = max(la, lb)
        if common < 8:  # nothing worth sharing: plain forward of the two rows
            out = backbone(input_ids=ids[[a, b], :w], attention_mask=att[[a, b], :w], use_cache=False).last_hidden_state
            rows[a], rows[b] = out[0], out[1]
            continue
        pre = backbone(input_ids=ids[a:a + 1, :common], attention_mask=att[a:a + 1, :common], use_cache=True)
        cache = pre.past_key_values
        if cache is None:  # the model refused a cache (gradient checkpointing): the plain forward
            return None
        cache.batch_repeat_interleave(2)
        positions = torch.arange(common, w, device=ids.device)[None, :].expand(2, -1)
        suf = backbone(input_ids=ids[[a, b], common:w], attention_mask=att[[a, b], :w], past_key_values=cache,
                       position_ids=positions, use_cache=True).last_hidden_state
        prefix = pre.last_hidden_state[0]
        rows[a] = torch.cat([prefix, suf[0]], dim=0)
        rows[b] = torch.cat([prefix, suf[1]], dim=0)
    return torch.stack([torch.nn.functional.pad(r, (0, 0, 0, width - r.size(0))) for r in rows])


def add_completion_only_head(model, share_prompt: bool = True) -> None:
    """Replace trl's fused LM head so only completion positions reach the vocabulary projection.

    trl 1.16 scores every position on devices without Triton (CPU); the prompt needs no logits.
    The head runs in fp32 (outside autocast, so log-probs keep full precision) on the selected
    positions only; its logits also give the logged metrics (entropy, mean logit, top-1). Batches
    with many completion tokens are projected in chunks that are recomputed in the backward pass
    (checkpointed), so at most one chunk of (tokens x vocab) logits is held for it.
    Returns the fields trl's DPOTrainer reads (log_probs, entropy, mean_logits, is_top1).
    With ``share_prompt`` each pair's common prompt runs through the backbone once
    (:func:`shared_prefix_hidden`). Applying it twice is a no-op.
    """
    if getattr(model, "_trajtune_head", False):
        return
    model._trajtune_head = True

    fused_forward = model.forward  # trl's patched forward: falls through to the original when not fused
    chunk = 1024

    def head(h, w, tgt):
        with torch.autocast(h.device.type, enabled=False):
            logits = h.float() @ w.float().t()
            lse = torch.logsumexp(logits, dim=-1)
            logp = logits.gather(-1, tgt[:, None]).squeeze(-1) - lse
            with torch.no_grad():
                z, lz = logits.detach(), lse.detach()
                stats = (lz - (torch.softmax(z, dim=-1) * z).sum(-1), z.mean(-1), z.argmax(-1) == tgt)
        return logp, stats

    def _forward(self, *args, fused_lm_head=False, labels=None, **kwargs):
        if not fused_lm_head:
            return fused_forward(*args, labels=labels, **kwargs)
        kwargs["use_cache"] = False
        kwargs.pop("num_items_in_batch", None)
        hidden = None
        if share_prompt and not args:
            hidden = shared_prefix_hidden(self.base_model, kwargs)
        if hidden is None:
            hidden = self.base_model(*args, **kwargs).last_hidden_state
        hidden = hidden[:, :-1]
        labels = labels[:, 1:].to(hidden.device)
        mask = labels != -100
        w = self.get_output_embeddings().weight
        h, tgt = hidden[mask], labels[mask]
        if h.size(0) <= chunk or not (torch.is_grad_enabled() and h.requires_grad):
            logp, (ent, mean, top1) = head(h, w, tgt)
        else:  # long completions: one chunk of logits at a time, recomputed in backward
            parts, stats = [], []
            for s in range(0, h.size(0), chunk):
                with torch.no_grad():
                    stats.append(head(h[s: s + chunk].detach(), w, tgt[s: s + chunk])[1])
                parts.append(checkpoint(lambda a, b, c: head(a, b, c)[0], h[s: s + chunk], w, tgt[s: s + chunk],
                                        use_reentrant=False))
            logp = torch.cat(parts)
            ent, mean, top1 = (torch.cat(x) for x in zip(*stats))

        def scatter(flat):
            return torch.zeros(mask.shape, dtype=flat.dtype, device=hidden.device).masked_scatter(mask, flat)

        log_probs = scatter(logp)
        if h.size(0) == 0:  # keep the graph connected for an all-masked batch
            log_probs = log_probs + hidden.sum() * 0
        return FusedCausalLMOutput(loss=-log_probs.sum() / mask.sum().clamp(min=1), log_probs=log_probs,
                                   entropy=scatter(ent), mean_logits=scatter(mean), is_top1=scatter(top1), label_mask=mask)

    model.forward = types.MethodType(_forward, model)


class PretokenizedDPOTrainer(DPOTrainer):
    """DPOTrainer on pairs already rendered and tokenized by trajtune.chat."""

    def __init__(self, *args, head: Any = None, **kwargs):
        # head: a function(model) installing trajtune's LM head; set before trl's __init__, which
        # runs the reference pass (precompute) through it
        self.trajtune_head = head
        super().__init__(*args, **kwargs)

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        return dataset

    def _precompute_ref_logps(self, dataset, name, batch_size):
        # the reference pass runs through the same head as training (completion-only, shared prompt)
        if self.trajtune_head is not None:
            self.trajtune_head(self.model)
        return super()._precompute_ref_logps(dataset, name, batch_size)

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = ["chosen_ids", "chosen_mask", "rejected_ids", "rejected_mask",
                                       "ref_chosen_logps", "ref_rejected_logps"]


# ============================================================================ GRPO

def grouped_prompt_hidden(backbone, kwargs: dict, labels, min_shared: int = 8):
    """Last hidden states of a GRPO batch, running each distinct prompt through the backbone once.

    trl's GRPO loss scores rows of ``[left-padded prompt | right-padded completion]``; the
    ``num_generations`` completions of a group share one prompt, which is most of each row (tool
    schemas). Rows with the same prompt tokens run the prompt once with a KV cache, repeated for
    the group, and only their completions on top; gradients flow back through the cache, so it is
    the same function as the plain forward (positions count from each prompt's first real token,
    which rotary embeddings make the same function as counting from the padding). Only the
    positions the loss reads (the last prompt token and the completion) are filled; the rest are
    zeros. Returns None when the batch is not in that shape (or extra model inputs are given), and
    the caller runs the plain forward.
    """
    ids, att = token_inputs(kwargs)
    if ids is None or labels is None or ids.dim() != 2:
        return None
    scored = (labels != -100).any(dim=0).nonzero()
    if not scored.numel() or int(scored[0]) < 1:
        return None
    width, start = ids.size(1), int(scored[0])  # start: the first completion column
    a = att.bool()
    if not bool(a[:, start - 1].all()):
        return None  # a row without a prompt token
    if not (bool((a[:, 1:start] >= a[:, :start - 1]).all()) and bool((a[:, start:-1] >= a[:, start + 1:]).all())):
        return None  # not left-padded prompts followed by right-padded completions
    prompt_len, completion_len = a[:, :start].sum(1).tolist(), a[:, start:].sum(1).tolist()
    groups: dict = {}
    for r in range(ids.size(0)):
        groups.setdefault(tuple(ids[r, start - prompt_len[r]:start].tolist()), []).append(r)
    rows: list = [None] * ids.size(0)
    for prompt, members in groups.items():
        n, lp = len(members), len(prompt)
        lc = max(1, max(completion_len[r] for r in members))
        sub_ids, sub_att = ids[members, start - lp:start + lc], att[members, start - lp:start + lc]
        if n == 1 or lp < min_shared:  # nothing to share: the group's rows as they are
            out = backbone(input_ids=sub_ids, attention_mask=sub_att, use_cache=False).last_hidden_state[:, lp - 1:]
        else:
            pre = backbone(input_ids=sub_ids[:1, :lp], attention_mask=sub_att[:1, :lp], use_cache=True)
            cache = pre.past_key_values
            if cache is None:  # the model refused a cache (gradient checkpointing): the plain forward
                return None
            cache.batch_repeat_interleave(n)
            positions = torch.arange(lp, lp + lc, device=ids.device)[None, :].expand(n, -1)
            suf = backbone(input_ids=sub_ids[:, lp:], attention_mask=sub_att, past_key_values=cache,
                           position_ids=positions, use_cache=True).last_hidden_state
            out = torch.cat([pre.last_hidden_state[:, -1:].expand(n, -1, -1), suf], dim=1)
        for i, r in enumerate(members):
            rows[r] = out[i]  # columns start - 1 .. start + lc - 1 of the batch
    return torch.stack([F.pad(h, (0, 0, start - 1, width - (start - 1) - h.size(0))) for h in rows])


def add_grouped_prompt_head(model, *, temperature: float = 1.0, cast_lm_head_to_fp32: bool = False,
                            outputs: tuple = ("log_probs", "entropy"), share_prompt: bool = True) -> bool:
    """Replace the fused LM head trl's GRPOTrainer patches in, for a CPU: completion positions only,
    and (``share_prompt``) each distinct prompt through the backbone once (:func:`grouped_prompt_hidden`).

    trl 1.16 projects only the scored positions where Triton runs (CUDA); elsewhere it scores every
    position of every row, prompt included, through the 49,152-wide head. This head runs trl's own
    kernel (``trl.kernels.ChunkedLogProbFunction``: temperature, entropy and its gradient as trl
    computes them) on the scored positions, as trl's Triton path does. Left alone (returns False)
    for models whose logits trl scales or soft-caps; calls with inputs this head does not handle
    (positional arguments, pre-shifted labels, router logits, sharded head weights) go to trl's
    forward. Applying it twice is a no-op.
    """
    from contextlib import nullcontext

    from trl.kernels import ChunkedLogProbFunction
    from trl.trainer.utils import _CHUNKED_LOGPROB_CHUNK_SIZE

    if getattr(model, "_trajtune_head", False):
        return True
    text = model.config.get_text_config()
    scaled = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling")
    if any(getattr(text, k, None) is not None for k in scaled):
        return False
    model._trajtune_head = True
    fused_forward = model.forward  # trl's patched forward

    def _forward(self, *args, fused_lm_head=False, labels=None, shift_labels=None, num_items_in_batch=None, **kwargs):
        weight, bias = self.get_output_embeddings().weight, self.get_output_embeddings().bias
        if (not fused_lm_head or args or shift_labels is not None or kwargs.get("output_router_logits")
                or type(weight) is not torch.nn.Parameter or hasattr(weight, "ds_id")):
            return fused_forward(*args, fused_lm_head=fused_lm_head, labels=labels, shift_labels=shift_labels,
                                 num_items_in_batch=num_items_in_batch, **kwargs)
        kwargs["use_cache"] = False
        hidden = grouped_prompt_hidden(self.base_model, kwargs, labels) if share_prompt else None
        if hidden is None:
            hidden = self.base_model(**kwargs).last_hidden_state
        hidden = hidden[:, :-1]
        labels = labels[:, 1:].to(hidden.device)
        mask = labels != -100
        h, ctx = hidden[mask], nullcontext()
        if cast_lm_head_to_fp32:
            h, ctx = h.float(), torch.autocast(h.device.type, enabled=False)
        with ctx:
            per_token = ChunkedLogProbFunction.apply(h, weight, bias, labels[mask], temperature,
                                                     _CHUNKED_LOGPROB_CHUNK_SIZE, None, 1.0, outputs)
        # masked_scatter keeps an all-masked batch connected to the graph (a differentiable zero)
        log_probs, entropy, log_sum_sq, mean_logits, is_top1 = (
            None if x is None else x.new_zeros(mask.shape).masked_scatter(mask, x) for x in per_token)
        loss = -log_probs.sum() / (mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch)
        return FusedCausalLMOutput(loss=loss, log_probs=log_probs, entropy=entropy, log_sum_sq_probs=log_sum_sq,
                                   mean_logits=mean_logits, is_top1=is_top1, label_mask=mask)

    model.forward = types.MethodType(_forward, model)
    return True
