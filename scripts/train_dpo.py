"""train-dpo: preference (DPO) fine-tuning of a causal LM, LoRA or full, resumable.

Runs as ``trajtune train-dpo --config configs/train_dpo/smollm2-135m.yaml`` or
``python scripts/train_dpo.py --config ...``. The stage function is :func:`train_dpo`.

What it does, top to bottom:
  1) run folder and resume point; read + validate the preference files (a bad file fails
     before any model is loaded), review gate, minimum pairs, validation split by prompt
     (all shared with train-sft in trajtune/training.py);
  2) render every pair with trajtune.chat (the prompt text SFT and evaluate use) and tokenize
     it here, so nested tool arguments never become an Arrow column; the loss mask covers the
     completion's assistant turns only (tool observations inside a completion are context);
  3) load the policy: base model + new LoRA, an SFT adapter to keep training, a merged model,
     or full fine-tuning. The reference is the same weights with the adapter disabled (a new
     LoRA) or trl's frozen copy of the SFT adapter: never a second copy of the model. Its
     log-probs are computed once before training by default (``reference: precompute``);
  4) train with trl's DPOTrainer (speed levers: no gradient checkpointing, bf16 autocast on
     CPUs with native bf16, LM head only on completion positions, reference computed once);
  5) write final/ and training_summary.json (reward accuracy and margins on validation).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

from trajtune import training
from trajtune.config import field
from trajtune.errors import ConfigError, RunError

STAGE = "train-dpo"


@dataclass
class TrainDPOConfig:
    """Every key can be given in the YAML file or as a flag (``--beta 0.2``)."""

    # data
    data: list[str] = field(default_factory=list, help="preference JSONL files (prompt/chosen/rejected message lists + tools)")
    weights: Optional[list[float]] = field(None, help="mixing weight per data file (1.0 = as is, 2.0 = twice, 0.5 = half)")
    eval_data: Optional[list[str]] = field(None, help="validation preference files; without them >100 pairs are split 90/10 by prompt")
    output_dir: Optional[str] = field(None, help="run folder; default runs/train-dpo-<timestamp> (re-running the same command resumes it)")
    resume: str = field("auto", help="auto (newest complete checkpoint), never, or a checkpoint folder")
    allow_unreviewed: bool = field(False, help="train on synthetic records still pending review")
    min_records: int = field(20, help="refuse to train on fewer preference pairs")
    eval_fraction: float = field(0.1, help="share of pairs held out by the automatic split")
    seed: int = field(42, help="seed for splits, data order, LoRA init")
    max_length: int = field(1024, help="max tokens of prompt + completion (each side of a pair)")
    truncation: Literal["drop", "truncate"] = field("drop", help="pairs longer than max_length: drop them, or cut the completion end")
    # model
    model: str = field("default", help="base or merged model: folder, .gguf file, hub id, or 'default' (SmolLM2-135M-Instruct)")
    adapter: Optional[str] = field(None, help="an SFT LoRA adapter folder to keep training (reference = that adapter, frozen); its base is --model")
    method: Literal["lora", "full", "qlora"] = field("lora", help="lora, full fine-tuning, or qlora (4-bit, CUDA only)")
    lora_r: int = field(16, help="LoRA rank")
    lora_alpha: int = field(32, help="LoRA alpha")
    lora_dropout: float = field(0.0, help="LoRA dropout (0 keeps policy and reference log-probs comparable)")
    lora_target_modules: list[str] = field(default_factory=lambda: ["all-linear"], help="modules LoRA wraps; all-linear = every linear layer but the output head")
    lora_fallback: Literal["none", "full"] = field("none", help="if LoRA cannot attach: none = stop with the reason, full = full fine-tuning (loud warning)")
    trust_remote_code: bool = field(False, help="allow model code from the hub (off by default)")
    # DPO
    beta: float = field(0.1, help="DPO beta: how strongly the policy is kept near the reference")
    loss_type: list[str] = field(default_factory=lambda: ["sigmoid"], help="trl loss type(s): sigmoid (DPO), ipo, hinge, robust, sigmoid_norm, apo_zero, ...")
    label_smoothing: float = field(0.0, help="label smoothing (robust / exo_pair losses)")
    reference: Literal["precompute", "live"] = field("precompute", help="precompute: reference log-probs once before training (faster); live: every step")
    # optimisation
    epochs: float = field(1.0, help="passes over the training pairs")
    max_steps: int = field(-1, help="stop after this many optimizer steps (-1 = use epochs)")
    batch_size: int = field(4, help="pairs per device per step")
    gradient_accumulation_steps: int = field(1, help="micro-batches per optimizer step")
    learning_rate: float = field(5e-5, help="peak learning rate")
    lr_scheduler: str = field("linear", help="transformers scheduler name (linear, cosine, constant, ...)")
    warmup_steps: int = field(0, help="linear warmup steps")
    weight_decay: float = field(0.0, help="AdamW weight decay")
    max_grad_norm: float = field(1.0, help="gradient clipping")
    eval_steps: int = field(50, help="evaluate every N steps (when there is a validation set)")
    patience: int = field(3, help="early stopping: evaluations without eval-loss improvement before stopping")
    save_steps: int = field(50, help="checkpoint every N steps (a multiple of eval_steps when evaluating)")
    save_total_limit: Optional[int] = field(3, help="keep at most N checkpoints (the best one is always kept)")
    logging_steps: int = field(10, help="log train loss every N steps")
    # speed
    precision: Literal["auto", "fp32", "bf16"] = field("auto", help="auto: bf16 on CUDA and on CPUs with native bf16 (autocast, fp32 weights), else fp32")
    device: Literal["auto", "cpu", "cuda"] = field("auto", help="where to train")
    gradient_checkpointing: bool = field(False, help="recompute activations to save memory (slower; trl's default is on)")
    logits_at_labels_only: bool = field(True, help="run the vocabulary projection only on completion tokens (the prompt needs no logits)")
    share_prompt: bool = field(True, help="run each pair's common prompt through the model once for chosen and rejected (needs logits_at_labels_only)")

    def check(self) -> None:
        if self.beta <= 0:
            raise ConfigError(f"beta must be > 0, got {self.beta}")
        if self.batch_size < 1 or self.gradient_accumulation_steps < 1:
            raise ConfigError("batch_size and gradient_accumulation_steps must be >= 1")
        if self.max_length < 8:
            raise ConfigError("max_length must be >= 8")
        if self.max_steps <= 0 and self.epochs <= 0:
            raise ConfigError("nothing to train: set max_steps > 0 or epochs > 0")
        if not 0 < self.eval_fraction < 1:
            raise ConfigError("eval_fraction must be between 0 and 1")
        if min(self.eval_steps, self.save_steps, self.logging_steps) < 1:
            raise ConfigError("eval_steps, save_steps and logging_steps must be >= 1")
        if self.adapter and self.method != "lora":
            raise ConfigError(f"--adapter continues a LoRA adapter; it cannot be combined with method: {self.method}")


# ------------------------------------------------------------------------ data

def encode_side(tokenizer: Any, prompt: list[dict], completion: list[dict], tools: Any) -> tuple[list[int], list[int]]:
    """Token ids of prompt + completion and a 0/1 mask of the tokens in the loss.

    The prompt's messages are marked ``train: false``, so the mask covers only the completion's
    trainable assistant turns (thoughts and tool calls, each with its end-of-turn token).
    """
    from trajtune.chat import tokenize_for_training

    msgs = [{**m, "train": False} for m in prompt] + list(completion)
    ids, labels = tokenize_for_training(tokenizer, msgs, tools)
    return ids, [0 if lab == -100 else 1 for lab in labels]


def encode_pairs(tokenizer: Any, records: list[dict], max_length: int, truncation: str) -> tuple[list[dict], dict]:
    """Rows {chosen_ids, chosen_mask, rejected_ids, rejected_mask}; drops counted by reason."""
    rows: list[dict] = []
    counts = {"dropped_too_long": 0, "dropped_no_trainable": 0, "truncated": 0}
    for rec in records:
        row: dict = {}
        reason = None
        for side in ("chosen", "rejected"):
            ids, mask = encode_side(tokenizer, rec["prompt"], rec[side], rec.get("tools"))
            if len(ids) > max_length:
                if truncation == "drop":
                    reason = reason or "dropped_too_long"
                else:
                    ids, mask = ids[:max_length], mask[:max_length]
                    counts["truncated"] += 1
            if not any(mask):
                reason = reason or "dropped_no_trainable"
            row[f"{side}_ids"], row[f"{side}_mask"] = ids, mask
        if reason:
            counts[reason] += 1
        else:
            rows.append(row)
    return rows, counts


class PairCollator:
    """Pads [chosen..., rejected...] into one batch; ``completion_mask`` marks the loss tokens
    (what trl's DPOTrainer reads), ref log-probs pass through when precomputed."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, examples: list[dict]) -> dict:
        import torch

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


# ------------------------------------------------------- completion-only LM head

def shared_prefix_hidden(backbone, kwargs: dict):
    """Last hidden states of a [chosen..., rejected...] batch, computing each pair's shared prompt once.

    Row i (chosen) and row i+B (rejected) start with the same rendered prompt, often 80-90% of
    their tokens (tool schemas). The backbone runs the common prefix once with a KV cache, repeats
    the cache for the two rows and runs only the two suffixes on top of it; gradients flow back
    through the cache into the prefix, so training sees the same function as the plain forward
    (a test compares log-probs and gradients). Returns None when the batch is not in that shape
    (odd rows, left padding, extra model inputs), and the caller runs the plain forward.
    """
    import torch

    ids, att = kwargs.get("input_ids"), kwargs.get("attention_mask")
    # PEFT passes its optional inputs explicitly (inputs_embeds=None, output_attentions=None, ...)
    harmless = {"input_ids", "attention_mask", "use_cache", "return_dict"}
    extra = [k for k, v in kwargs.items() if k not in harmless and v is not None and v is not False]
    if ids is None or att is None or extra or ids.size(0) % 2:
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
    import types

    if getattr(model, "_trajtune_head", False):
        return
    model._trajtune_head = True

    import torch
    from torch.utils.checkpoint import checkpoint
    from trl.trainer.utils import FusedCausalLMOutput

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


# ------------------------------------------------------------------ the stage

def _trainer_class():
    from trl import DPOTrainer

    class PretokenizedDPOTrainer(DPOTrainer):
        """DPOTrainer on pairs already rendered and tokenized by trajtune.chat."""

        trajtune_head = None  # set to a function(model) that installs trajtune's LM head

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

    return PretokenizedDPOTrainer


def check_sources(cfg: TrainDPOConfig, model_path: str) -> None:
    """--model must be a model (not an adapter); --adapter an adapter, ideally trained on --model."""
    if (Path(model_path) / "adapter_config.json").is_file() and not (Path(model_path) / "config.json").is_file():
        raise ConfigError(f"--model {cfg.model} is a LoRA adapter, not a model",
                          hint="pass it as --adapter and its base model as --model (or merge it first: trajtune merge-lora)")
    if not cfg.adapter:
        return
    try:
        named = json.loads((Path(cfg.adapter) / "adapter_config.json").read_text("utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError):
        raise ConfigError(f"--adapter {cfg.adapter}: not a LoRA adapter folder (no readable adapter_config.json)",
                          hint="pass the final/ folder of a train-sft LoRA run") from None
    if named and Path(named).exists() and Path(named).resolve() != Path(model_path).resolve():
        training.warn(f"the adapter was trained on {named}, but --model is {model_path}; "
                      "continuing it on a different base is rarely what you want")


def load_policy(cfg: TrainDPOConfig, model_path: str, precision: "training.Precision") -> tuple[Any, str, Any]:
    """(model, method, peft_config). An SFT adapter comes back as a trainable PeftModel (trl keeps
    a frozen copy of it as the reference); a new LoRA comes back as its config for trl to attach,
    so the reference is the same model with the adapter disabled."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"trust_remote_code": cfg.trust_remote_code}
    if cfg.method == "qlora":
        try:
            import bitsandbytes  # noqa: F401
            from transformers import BitsAndBytesConfig
        except ImportError:
            raise ConfigError("method: qlora needs bitsandbytes", hint="pip install 'trajtune[qlora]'") from None
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                           bnb_4bit_compute_dtype=torch.bfloat16)
    kwargs["dtype"] = torch.bfloat16 if precision.device == "cuda" and precision.bf16 else torch.float32
    try:
        model = AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load model {cfg.model}: {str(exc).splitlines()[0][:300]}",
                          hint="pass a model folder, a .gguf file or 'default'") from None
    if cfg.method == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    if cfg.adapter:
        from peft import PeftModel

        ap = Path(cfg.adapter)
        if not (ap / "adapter_config.json").is_file():
            raise ConfigError(f"--adapter {ap}: not a LoRA adapter folder (no adapter_config.json)",
                              hint="pass the final/ folder of a train-sft LoRA run")
        return PeftModel.from_pretrained(model, str(ap), is_trainable=True), "lora (continuing the SFT adapter)", None
    if cfg.method == "full":
        return model, "full", None
    # attach once to learn whether LoRA fits (stop with the reason, or fall back); trl attaches it for real
    wrapped, method = training.attach_lora(model, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout,
                                           target_modules=cfg.lora_target_modules, fallback=cfg.lora_fallback)
    if method != "lora":
        return wrapped, method, None
    peft_config = wrapped.peft_config["default"]
    return wrapped.unload(), cfg.method, peft_config


def _sleep_callback(seconds: float):
    """Test hook (TRAJTUNE_TEST_STEP_SLEEP): slow each step so a test can kill the run mid-way."""
    import time

    from transformers import TrainerCallback

    class SleepPerStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            time.sleep(seconds)

    return SleepPerStep()


def train_dpo(cfg: TrainDPOConfig) -> dict:
    """Run one DPO training job end to end; returns the training summary (also written to disk)."""
    t0 = training.Timer()
    # 1) the run folder and resume point; a finished run is not trained again
    run_dir, reused = training.resolve_run_dir(STAGE, cfg, cfg.output_dir, cfg.resume)
    if reused and cfg.resume != "never" and training.run_finished(run_dir):
        training.log(f"{run_dir} already holds a finished run; nothing to do (use --resume never or a new --output-dir to train again)")
        summary = json.loads((run_dir / training.SUMMARY_NAME).read_text("utf-8"))
        summary["skipped"] = True
        return summary
    resume_from = training.find_checkpoint(run_dir, cfg.resume)

    # 2) data: validated, review-gated, at least min_records pairs, split by prompt, weighted
    data = training.prepare_data(cfg.data, "preference", weights=cfg.weights, eval_data=cfg.eval_data,
                                 min_records=cfg.min_records, allow_unreviewed=cfg.allow_unreviewed,
                                 eval_fraction=cfg.eval_fraction, seed=cfg.seed)
    has_eval = bool(data.eval)
    training.check_eval_save_steps(has_eval, cfg.eval_steps, cfg.save_steps)
    precision = training.choose_precision(cfg.precision, cfg.device)
    if cfg.method == "qlora" and precision.device != "cuda":
        raise ConfigError("method: qlora needs a CUDA GPU (bitsandbytes 4-bit); on CPU use method: lora")

    # 3) render + tokenize every pair with the shared renderer
    import warnings

    from transformers import AutoTokenizer, set_seed

    from trajtune.models import resolve_model

    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers 5 renames, not the user's concern
    model_path = resolve_model(cfg.model)
    check_sources(cfg, model_path)
    tok_path = cfg.adapter if cfg.adapter and (Path(cfg.adapter) / "tokenizer_config.json").is_file() else model_path
    tokenizer = AutoTokenizer.from_pretrained(tok_path, trust_remote_code=cfg.trust_remote_code)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    train_rows, train_counts = encode_pairs(tokenizer, data.train, cfg.max_length, cfg.truncation)
    eval_rows, eval_counts = encode_pairs(tokenizer, data.eval, cfg.max_length, cfg.truncation)
    if len(train_rows) < cfg.min_records:
        raise RunError(f"{len(train_rows)} training pairs left after tokenization ({train_counts['dropped_too_long']} longer "
                       f"than max_length {cfg.max_length}, {train_counts['dropped_no_trainable']} with no trainable token); "
                       f"at least {cfg.min_records} are needed", hint="raise max_length or use truncation: truncate")
    has_eval = bool(eval_rows)
    training.save_config(cfg, run_dir)
    training.log(f"run folder {run_dir}; {len(train_rows)} train / {len(eval_rows)} eval pairs; {precision.reason}"
                 + (f"; resuming from {resume_from}" if resume_from else ""))

    # 4) policy (+ reference without a second model copy) and trainer
    set_seed(cfg.seed)
    model, method, peft_config = load_policy(cfg, model_path, precision)
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import DPOConfig

    args = DPOConfig(
        **training.trainer_arguments(
            run_dir=run_dir, precision=precision, has_eval=has_eval, seed=cfg.seed, batch_size=cfg.batch_size,
            gradient_accumulation_steps=cfg.gradient_accumulation_steps, learning_rate=cfg.learning_rate, epochs=cfg.epochs,
            max_steps=cfg.max_steps, warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm,
            lr_scheduler=cfg.lr_scheduler, logging_steps=cfg.logging_steps, eval_steps=cfg.eval_steps, save_steps=cfg.save_steps,
            save_total_limit=cfg.save_total_limit, gradient_checkpointing=cfg.gradient_checkpointing),
        beta=cfg.beta, loss_type=list(cfg.loss_type), label_smoothing=cfg.label_smoothing,
        precompute_ref_log_probs=cfg.reference == "precompute", max_length=None,  # lengths handled in encode_pairs
    )
    stopper = training.make_graceful_stop()
    metrics = training.make_run_metrics()
    early = training.early_stopping_callback(cfg.patience) if has_eval and cfg.patience > 0 else None
    tb = training.tensorboard_callback(run_dir)
    if tb is not None:  # re-opened by evaluate() after training: keep it in the same folder
        tb.logging_dir = str(run_dir / "tensorboard")
    callbacks = [c for c in (stopper, metrics, early, tb) if c is not None]
    if os.environ.get("TRAJTUNE_TEST_STEP_SLEEP"):  # test hook: slow steps down so a test can kill mid-run
        callbacks.append(_sleep_callback(float(os.environ["TRAJTUNE_TEST_STEP_SLEEP"])))
    os.environ.setdefault("TQDM_DISABLE", "1")  # trl's reference pass progress bar

    def install_head(m) -> None:
        from peft import PeftModel

        add_completion_only_head(m.get_base_model() if isinstance(m, PeftModel) else m, share_prompt=cfg.share_prompt)

    Trainer = _trainer_class()
    Trainer.trajtune_head = staticmethod(install_head) if cfg.logits_at_labels_only else None
    t_ref = training.Timer()
    try:
        trainer = Trainer(model=model, args=args, data_collator=PairCollator(tokenizer.pad_token_id),
                          train_dataset=Dataset.from_list(train_rows),
                          eval_dataset=Dataset.from_list(eval_rows) if has_eval else None,
                          processing_class=tokenizer, callbacks=callbacks, peft_config=peft_config)
    except ValueError as exc:
        raise ConfigError(f"trl refused this setup: {str(exc).splitlines()[0][:300]}") from None
    reference_time = t_ref.elapsed()  # includes the one reference pass when precomputed
    trainer.remove_callback(PrinterCallback)  # stdout is for --json; progress goes to stderr
    if cfg.logits_at_labels_only:
        install_head(trainer.model)
    params = training.count_parameters(trainer.model)

    # 5) train (SIGINT/SIGTERM -> checkpoint + clean stop)
    tokens_before = 0
    if resume_from is not None:
        tokens_before = int(json.loads((resume_from / "trainer_state.json").read_text("utf-8")).get("num_input_tokens_seen", 0))
    stopper.install()
    t_train = training.Timer()
    try:
        result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    finally:
        stopper.uninstall()
    train_time = t_train.elapsed()
    state = trainer.state
    interrupted = stopper.signal
    if metrics.train_loss is not None and metrics.train_loss != metrics.train_loss:
        raise RunError("training diverged (loss is NaN)", hint="lower learning_rate or beta")

    # 6) final adapter/model + tokenizer, validation rewards, summary
    final_dir = None
    if not interrupted:
        final_dir = run_dir / "final"
        tmp = run_dir / "final.tmp"
        if training.is_main_process() and tmp.exists():
            shutil.rmtree(tmp)
        trainer.save_model(str(tmp))
        if training.is_main_process():
            tokenizer.save_pretrained(str(tmp))
            shutil.rmtree(tmp / "ref", ignore_errors=True)  # trl's frozen reference copy of an SFT adapter
            if final_dir.exists():
                shutil.rmtree(final_dir)
            os.replace(tmp, final_dir)
    ev: dict = {}
    if has_eval and not interrupted:
        ev = {k.removeprefix("eval_"): v for k, v in trainer.evaluate().items()}  # of the restored best model
    # trl counts the tokens of this process's steps (attention mask, chosen + rejected)
    tokens_now = int(getattr(trainer, "_total_train_tokens", 0) or 0)
    summary = {
        "stage": STAGE, "finished": not interrupted,
        "stop_reason": training.stop_reason(interrupted=interrupted, early_stopping=early, global_step=state.global_step,
                                            max_steps=state.max_steps if cfg.max_steps > 0 else 0, patience=cfg.patience),
        "run_dir": str(run_dir), "final": str(final_dir) if final_dir else None, "model": cfg.model, "adapter": cfg.adapter,
        "method": method, "reference": cfg.reference, "beta": cfg.beta, "loss_type": list(cfg.loss_type),
        "device": precision.device, "precision": precision.reason, "world_size": args.world_size,
        "resumed_from": str(resume_from) if resume_from else None,
        "params": params,
        "data": {**data.counts, "train_pairs": len(train_rows), "eval_pairs": len(eval_rows),
                 "train_tokenized": train_counts, "eval_tokenized": eval_counts},
        "global_step": state.global_step, "max_steps": state.max_steps,
        "train_loss": metrics.train_loss, "train_loss_mean": round(float(result.training_loss), 6) if result else None,
        "eval_loss": ev.get("loss", metrics.eval_loss), "eval_history": metrics.eval_history,
        "eval_reward_accuracy": ev.get("rewards/accuracies"), "eval_reward_margin": ev.get("rewards/margins"),
        "eval_rewards": {k: v for k, v in ev.items() if k.startswith(("rewards/", "logps/"))},
        "grad_norm": metrics.grad_norm,
        "best_checkpoint": state.best_model_checkpoint, "best_eval_loss": state.best_metric,
        "tokens_seen": tokens_before + tokens_now,
        "tokens_per_second": round(tokens_now / train_time, 1) if train_time > 0 else None,
        "reference_time_s": reference_time if cfg.reference == "precompute" else None,
        "peak_memory_mb": training.peak_memory_mb(precision.device),
        "train_time_s": train_time, "wall_time_s": t0.elapsed(),
        "loss_history": [{"step": h["step"], "loss": h["loss"]} for h in state.log_history if "loss" in h],
    }
    training.write_summary(run_dir, summary)
    return summary


# ---------------------------------------------------------------------------------------------
# `python scripts/train_dpo.py --config FILE --key value ...`
# ---------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    from trajtune.config import build, parse_flags
    from trajtune.errors import TrajtuneError

    try:
        config_file, overrides = parse_flags(TrainDPOConfig, list(sys.argv[1:] if argv is None else argv))
        cfg = build(TrainDPOConfig, config_file, overrides)
        summary = train_dpo(cfg)
    except TrajtuneError as exc:
        print(f"Error: {exc.render()}", file=sys.stderr)
        return exc.exit_code
    if training.is_main_process():
        print(json.dumps({k: summary.get(k) for k in ("run_dir", "final", "stop_reason", "global_step", "train_loss",
                                                         "eval_loss", "eval_reward_accuracy", "tokens_per_second")}))
    return 130 if summary.get("stop_reason", "").startswith("interrupted") else 0


if __name__ == "__main__":
    raise SystemExit(main())
