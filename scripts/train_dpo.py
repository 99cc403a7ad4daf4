"""train-dpo: preference (DPO) fine-tuning of a causal LM, LoRA or full, resumable.

Runs as ``trajtune train-dpo --config configs/train_dpo/smollm2-135m.yaml`` or
``python scripts/train_dpo.py --config ...``. The stage function is :func:`train_dpo`.

What it does, top to bottom:
  1) read + validate the preference files (a bad file fails before any model is loaded),
     review gate, minimum pairs, validation split by prompt;
  2) render every pair with trajtune.chat (the same prompt text SFT and evaluate use) and
     tokenize it here, so no nested tool arguments ever become an Arrow column;
  3) load the policy: base model + new LoRA, an SFT adapter to keep training, a merged model,
     or full fine-tuning; the reference is the same weights with the adapter disabled (or the
     SFT adapter's frozen copy), its log-probs precomputed once by default;
  4) train with trl's DPOTrainer (speed levers: no gradient checkpointing, bf16 autocast on
     CPUs that support it, LM head only on completion positions, reference computed once);
  5) write final/, training_summary.json (reward accuracy and margins on validation).

Helpers marked "TRAINING-HELPER" are generic (run folder, resume, signals, summary) and belong
in trajtune/training.py; they live here until that shared module offers them.
"""
from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from trajtune import config as tconfig
from trajtune.config import field
from trajtune.errors import ConfigError, DataError, RunError

MIN_PAIRS_DEFAULT = 20


@dataclass
class TrainDPOConfig:
    """Every key can be given in the YAML file or as a flag (``--beta 0.2``)."""

    data: list[str] = field(default_factory=list, help="preference JSONL files; FILE:WEIGHT mixes them (weight 2 = each record twice, 0.5 = half of them)")
    validation: list[str] = field(default_factory=list, help="validation preference files; empty = automatic 90/10 split by prompt when there are more than 100 pairs")
    model: str = field("default", help="base or merged model: 'default', a local folder, a .gguf file or a hub id")
    adapter: str | None = field(None, help="an SFT LoRA adapter folder to continue training (its base is --model, or the adapter's base_model_name_or_path when --model is 'default' and the adapter names a local base)")
    output_dir: str | None = field(None, help="run folder; default runs/train-dpo-<timestamp> (re-running with the same --output-dir resumes)")
    method: Literal["lora", "full", "qlora"] = field("lora", help="lora | full | qlora (4-bit, CUDA only, needs the qlora extra)")
    lora_r: int = field(16, help="LoRA rank")
    lora_alpha: int = field(32, help="LoRA alpha")
    lora_dropout: float = field(0.0, help="LoRA dropout (0 keeps policy and reference deterministic)")
    lora_target_modules: list[str] = field(default_factory=lambda: ["all-linear"], help="modules LoRA attaches to; all-linear = every linear layer but the LM head")
    lora_fallback: Literal["none", "full"] = field("none", help="when LoRA cannot attach: none = stop with the reason, full = full fine-tuning (loud warning)")
    beta: float = field(0.1, help="DPO beta: how far the policy may move from the reference")
    loss_type: list[str] = field(default_factory=lambda: ["sigmoid"], help="trl loss type(s): sigmoid, ipo, hinge, robust, sigmoid_norm, ...")
    label_smoothing: float = field(0.0, help="label smoothing for robust/exo_pair losses")
    reference: Literal["precompute", "live"] = field("precompute", help="precompute = reference log-probs computed once before training (faster); live = every step")
    learning_rate: float = field(5e-5, help="peak learning rate")
    lr_scheduler: str = field("cosine", help="transformers scheduler name")
    warmup_ratio: float = field(0.05, help="fraction of steps used for warmup")
    weight_decay: float = field(0.0, help="AdamW weight decay")
    epochs: float = field(1.0, help="passes over the training pairs")
    max_steps: int = field(-1, help="stop after this many optimizer steps (-1 = from epochs)")
    batch_size: int = field(4, help="pairs per device per step")
    grad_accum: int = field(1, help="gradient accumulation steps (effective batch = batch_size x grad_accum x processes)")
    max_grad_norm: float = field(1.0, help="gradient clipping")
    max_length: int = field(1024, help="tokens per prompt+completion")
    truncation: Literal["drop", "truncate"] = field("drop", help="pairs longer than max_length: drop them, or cut the completion end")
    min_pairs: int = field(MIN_PAIRS_DEFAULT, help="refuse to train on fewer training pairs")
    val_fraction: float = field(0.1, help="share of prompts held out by the automatic split")
    auto_split_min: int = field(100, help="split automatically only above this many pairs")
    allow_unreviewed: bool = field(False, help="train on synthetic records whose metadata.review is still 'pending'")
    eval_steps: int = field(50, help="evaluate every N steps (0 = only at the end)")
    save_steps: int = field(50, help="checkpoint every N steps")
    save_total_limit: int = field(3, help="checkpoints kept (the best one is always kept)")
    patience: int = field(3, help="early stopping: evaluations without a better eval loss (0 = off)")
    logging_steps: int = field(5, help="log every N steps")
    precision: Literal["auto", "fp32", "bf16"] = field("auto", help="auto = bf16 on CUDA, bf16 autocast on CPUs with native bf16 (AVX512-BF16/AMX), else fp32; weights stay fp32 on CPU")
    gradient_checkpointing: bool = field(False, help="recompute activations in the backward pass (saves memory, ~30% slower)")
    completion_logits_only: bool = field(True, help="run the LM head only on completion tokens (the prompt needs no logits)")
    resume: str = field("auto", help="auto = newest complete checkpoint in the run folder; never; or a checkpoint/run folder PATH")
    seed: int = field(42, help="random seed (data order, split, LoRA init)")
    trust_remote_code: bool = field(False, help="allow model code from the hub (off unless you trust it)")

    def check(self) -> None:
        if self.beta <= 0:
            raise ConfigError(f"beta must be > 0, got {self.beta}")
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ConfigError("batch_size and grad_accum must be >= 1")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be between 0 and 1, got {self.val_fraction}")
        if self.max_length < 8:
            raise ConfigError(f"max_length must be >= 8, got {self.max_length}")
        if self.resume not in ("auto", "never") and not Path(self.resume).exists():
            raise ConfigError(f"--resume {self.resume}: no such checkpoint or run folder",
                              hint="use --resume auto, --resume never, or an existing checkpoint-N folder")


# --------------------------------------------------------------------------- data

@dataclass
class Pair:
    id: str
    prompt_key: str
    record: dict
    where: str


def _parse_spec(spec: str) -> tuple[str, float]:
    """FILE or FILE:WEIGHT."""
    head, sep, tail = spec.rpartition(":")
    if sep and head:
        try:
            return head, float(tail)
        except ValueError:
            pass
    return spec, 1.0


def read_pairs(specs: list[str], *, allow_unreviewed: bool, seed: int, what: str = "--data") -> tuple[list[Pair], dict]:
    """Read and validate preference files; apply mixing weights and the review gate."""
    from trajtune.jsonl import read_jsonl
    from trajtune.records import detect_kind, jsonschema_validator, normalize_text, prompt_text, validator

    check = validator("preference")
    rng = random.Random(seed)
    pairs: list[Pair] = []
    counts: dict[str, Any] = {"files": {}, "pending_review": 0}
    for spec in specs:
        path, weight = _parse_spec(spec)
        if not Path(path).is_file():
            raise ConfigError(f"{what} {path}: no such file")
        if weight < 0:
            raise ConfigError(f"{what} {spec}: the mixing weight must be >= 0")
        rows = []
        for row in read_jsonl(path):
            kind = detect_kind(row.obj)
            if kind != "preference":
                raise DataError(f"expected a preference record (prompt, chosen, rejected), got {kind or 'an unknown kind'}",
                                path=row.path, line=row.lineno, hint="train-dpo needs preference pairs; use train-sft for sft records")
            try:
                check(row.obj)
            except Exception:
                err = next(iter(jsonschema_validator("preference").iter_errors(row.obj)), None)
                loc = "/".join(str(p) for p in err.absolute_path) if err is not None else ""
                msg = err.message if err is not None else "does not match the preference schema"
                raise DataError(f"invalid preference record{' at ' + loc if loc else ''}: {msg}", path=row.path, line=row.lineno,
                                hint="run `trajtune validate` for a full report") from None
            review = (row.obj.get("metadata") or {}).get("review")
            if review == "pending" and not allow_unreviewed:
                counts["pending_review"] += 1
                raise DataError("synthetic record still pending review", path=row.path, line=row.lineno,
                                hint="review it (`trajtune review`) or pass --allow-unreviewed")
            if review == "rejected":
                continue
            rows.append(Pair(str(row.obj["id"]), normalize_text(prompt_text(row.obj)), row.obj, f"{row.path}:{row.lineno}"))
        whole, frac = int(weight), weight - int(weight)
        picked = rows * whole + [p for p in rows if rng.random() < frac]
        counts["files"][path] = {"records": len(rows), "weight": weight, "used": len(picked)}
        pairs.extend(picked)
    return pairs, counts


def split_by_prompt(pairs: list[Pair], fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """Hold out whole prompts, so no prompt is in both train and validation."""
    keys = sorted({p.prompt_key for p in pairs})
    random.Random(seed).shuffle(keys)
    n_val = max(1, round(len(keys) * fraction))
    held = set(keys[:n_val])
    return [p for p in pairs if p.prompt_key not in held], [p for p in pairs if p.prompt_key in held]


def encode_side(tokenizer, prompt: list[dict], completion: list[dict], tools, max_length: int, truncation: str) -> tuple[list[int], list[int], str | None]:
    """Token ids of prompt+completion and a 0/1 mask of the tokens in the loss.

    The mask covers the completion's assistant turns only (thoughts and tool calls, with their
    end-of-turn token); tool observations inside a multi-step completion and the prompt are 0.
    """
    from trajtune.chat import tokenize_for_training

    msgs = [{**m, "train": False} for m in prompt] + list(completion)
    ids, labels = tokenize_for_training(tokenizer, msgs, tools)
    mask = [0 if lab == -100 else 1 for lab in labels]
    if len(ids) > max_length:
        if truncation == "drop":
            return ids, mask, "too_long"
        ids, mask = ids[:max_length], mask[:max_length]
    if not any(mask):
        return ids, mask, "no_trainable_tokens"
    return ids, mask, None


def encode_pairs(tokenizer, pairs: list[Pair], cfg: TrainDPOConfig) -> tuple[list[dict], dict]:
    rows, dropped = [], {"too_long": 0, "no_trainable_tokens": 0, "truncated": 0}
    for p in pairs:
        r = p.record
        out = {}
        reason = None
        for side in ("chosen", "rejected"):
            ids, mask, why = encode_side(tokenizer, r["prompt"], r[side], r.get("tools"), 10**9, "truncate")
            if len(ids) > cfg.max_length:
                if cfg.truncation == "drop":
                    reason = reason or "too_long"
                else:
                    ids, mask = ids[: cfg.max_length], mask[: cfg.max_length]
                    dropped["truncated"] += 1
            if not any(mask):
                reason = reason or "no_trainable_tokens"
            out[f"{side}_ids"], out[f"{side}_mask"] = ids, mask
        if reason:
            dropped[reason] += 1
            continue
        rows.append(out)
    return rows, dropped


class PairCollator:
    """Pads [chosen..., rejected...] into one batch; completion_mask marks the loss tokens."""

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


# ------------------------------------------------------------- TRAINING-HELPER

def choose_precision(precision: str) -> tuple[str, bool]:
    """(device, bf16 autocast?) — bf16 on CUDA; on CPU only where the CPU has native bf16."""
    import torch

    if torch.cuda.is_available():
        return "cuda", precision != "fp32"
    if precision == "fp32":
        return "cpu", False
    if precision == "bf16":
        return "cpu", True
    return "cpu", cpu_has_native_bf16()


def cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def make_run_dir(output_dir: str | None, prefix: str) -> Path:
    if output_dir:
        return Path(output_dir)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{prefix}-{stamp}-{os.getpid()}"


def is_complete_checkpoint(path: Path) -> bool:
    """A checkpoint cut off mid-save lacks its state, optimizer or weights."""
    try:
        state = json.loads((path / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    has_weights = any((path / n).is_file() for n in ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"))
    return has_weights and (path / "optimizer.pt").is_file() and (path / "scheduler.pt").is_file() and "global_step" in state


def find_resume_checkpoint(run_dir: Path, resume: str, warn) -> Path | None:
    if resume == "never":
        return None
    if resume != "auto":
        p = Path(resume)
        if p.name.startswith("checkpoint-"):
            if not is_complete_checkpoint(p):
                raise ConfigError(f"--resume {p}: checkpoint is incomplete (cut off mid-save?)", hint="pick an earlier checkpoint-N")
            return p
        run_dir = p
    cks = sorted((d for d in run_dir.glob("checkpoint-*") if d.is_dir() and d.name.split("-")[-1].isdigit()),
                 key=lambda d: int(d.name.split("-")[-1]), reverse=True)
    for ck in cks:
        if is_complete_checkpoint(ck):
            return ck
        warn(f"skipping incomplete checkpoint {ck} (cut off mid-save)")
    if resume != "auto":
        raise ConfigError(f"--resume {resume}: no complete checkpoint-N inside", hint="use --resume auto or never")
    return None


class StopOnSignal:
    """SIGINT/SIGTERM: finish the current step, save a checkpoint, stop cleanly."""

    def __init__(self):
        self.signame: str | None = None
        self._old = {}

    def __enter__(self):
        for s in (signal.SIGINT, signal.SIGTERM):
            self._old[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signame is not None:  # second signal: give up at once
            signal.signal(signum, self._old.get(signum, signal.SIG_DFL))
            raise KeyboardInterrupt
        self.signame = signal.Signals(signum).name

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)

    def callback(self):
        from transformers import TrainerCallback

        outer = self

        class _CB(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                if outer.signame is not None:
                    control.should_save = True
                    control.should_training_stop = True
                return control

        return _CB()


def _log_callback(log):
    """Progress lines (step, loss, reward accuracy) through the stage's log function."""
    from transformers import TrainerCallback

    keys = ("loss", "eval_loss", "rewards/accuracies", "eval_rewards/accuracies", "eval_rewards/margins", "grad_norm")

    class _CB(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if state.is_world_process_zero and logs:
                shown = ", ".join(f"{k} {logs[k]:.4g}" for k in keys if isinstance(logs.get(k), (int, float)))
                if shown:
                    log(f"step {state.global_step}/{state.max_steps}: {shown}")

    return _CB()


def peak_memory_mb() -> float:
    import resource

    import torch

    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# ------------------------------------------------------- completion-only LM head

def add_completion_only_head(model) -> None:
    """Replace trl's fused LM head so only completion positions reach the vocabulary projection.

    trl 1.16 scores every position on devices without Triton (CPU); the prompt needs no logits.
    The head runs in fp32 (outside autocast) on the selected positions, chunk by chunk, and is
    recomputed in the backward pass (checkpointed), so the (tokens x vocab) logits never stay in
    memory. Returns the same fields trl's DPOTrainer reads (log_probs, entropy, mean_logits, is_top1).
    """
    import types

    import torch
    from torch.utils.checkpoint import checkpoint
    from trl.trainer.utils import FusedCausalLMOutput

    fused_forward = model.forward  # trl's patched forward: falls through to the original when not fused

    def head_chunk(h, w, tgt):
        with torch.autocast(h.device.type, enabled=False):
            logits = h.float() @ w.float().t()
            lse = torch.logsumexp(logits, dim=-1)
            return logits.gather(-1, tgt[:, None]).squeeze(-1) - lse

    def _forward(self, *args, fused_lm_head=False, labels=None, **kwargs):
        if not fused_lm_head:
            return fused_forward(*args, labels=labels, **kwargs)
        kwargs["use_cache"] = False
        kwargs.pop("num_items_in_batch", None)
        hidden = self.base_model(*args, **kwargs).last_hidden_state[:, :-1]
        labels = labels[:, 1:].to(hidden.device)
        mask = labels != -100
        w = self.get_output_embeddings().weight
        h, tgt = hidden[mask], labels[mask]
        logps, ents, means, top1 = [], [], [], []
        for s in range(0, h.size(0), 512):
            hc, tc = h[s: s + 512], tgt[s: s + 512]
            if torch.is_grad_enabled() and hc.requires_grad:
                logps.append(checkpoint(head_chunk, hc, w, tc, use_reentrant=False))
            else:
                logps.append(head_chunk(hc, w, tc))
            with torch.no_grad(), torch.autocast(h.device.type, enabled=False):
                logits = hc.detach().float() @ w.detach().float().t()
                p = torch.log_softmax(logits, dim=-1)
                ents.append(-(p.exp() * p).sum(-1))
                means.append(logits.mean(-1))
                top1.append(logits.argmax(-1) == tc)
        def scatter(parts, dtype):
            flat = torch.cat(parts) if parts else torch.zeros(0, dtype=dtype, device=hidden.device)
            return torch.zeros(mask.shape, dtype=flat.dtype, device=hidden.device).masked_scatter(mask, flat)
        log_probs = scatter(logps, torch.float32)
        if not logps:  # keep the graph connected for an all-masked batch
            log_probs = log_probs + hidden.sum() * 0
        return FusedCausalLMOutput(loss=-log_probs.sum() / mask.sum().clamp(min=1), log_probs=log_probs,
                                   entropy=scatter(ents, torch.float32), mean_logits=scatter(means, torch.float32),
                                   is_top1=scatter(top1, torch.bool), label_mask=mask)

    model.forward = types.MethodType(_forward, model)


# ------------------------------------------------------------------ the stage

def _trainer_class():
    from trl import DPOTrainer

    class PretokenizedDPOTrainer(DPOTrainer):
        """DPOTrainer on pairs already rendered and tokenized by trajtune.chat."""

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset

        def _set_signature_columns_if_needed(self):
            if self._signature_columns is None:
                self._signature_columns = ["chosen_ids", "chosen_mask", "rejected_ids", "rejected_mask",
                                           "ref_chosen_logps", "ref_rejected_logps"]

    return PretokenizedDPOTrainer


def _load_model(cfg: TrainDPOConfig, device: str, bf16: bool, log):
    """(model, tokenizer, how, peft_config): a PeftModel for an SFT adapter, else the plain model
    plus the LoRA config trl attaches (so the reference is the model with the adapter disabled)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trajtune.models import resolve_model

    base_src = cfg.model
    adapter_cfg = None
    if cfg.adapter:
        ap = Path(cfg.adapter)
        if not (ap / "adapter_config.json").is_file():
            raise ConfigError(f"--adapter {ap}: not a LoRA adapter folder (no adapter_config.json)")
        adapter_cfg = json.loads((ap / "adapter_config.json").read_text())
        named = adapter_cfg.get("base_model_name_or_path")
        if cfg.model == "default" and named and Path(named).exists():
            base_src = named
    elif Path(cfg.model).joinpath("adapter_config.json").is_file() and not Path(cfg.model).joinpath("config.json").is_file():
        raise ConfigError(f"--model {cfg.model} is a LoRA adapter; pass it as --adapter and its base as --model")
    path = resolve_model(base_src)
    tok_src = cfg.adapter if cfg.adapter and (Path(cfg.adapter) / "tokenizer_config.json").is_file() else path
    tokenizer = AutoTokenizer.from_pretrained(tok_src, trust_remote_code=cfg.trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    kwargs: dict[str, Any] = {"trust_remote_code": cfg.trust_remote_code}
    if cfg.method == "qlora":
        if device != "cuda":
            raise ConfigError("method qlora needs a CUDA GPU (bitsandbytes 4-bit)", hint="use --method lora on CPU")
        try:
            from transformers import BitsAndBytesConfig
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise ConfigError("method qlora needs bitsandbytes", hint="pip install 'trajtune[qlora]'") from None
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                           bnb_4bit_compute_dtype=torch.bfloat16)
    kwargs["dtype"] = torch.bfloat16 if device == "cuda" and bf16 else torch.float32
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load model {cfg.model}: {str(exc).splitlines()[0]}") from None
    if cfg.method == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    how, peft_config = "full", None
    if cfg.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, cfg.adapter, is_trainable=True)
        how = "sft-adapter"
    elif cfg.method in ("lora", "qlora"):
        from peft import LoraConfig, get_peft_model

        targets = cfg.lora_target_modules
        lcfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, task_type="CAUSAL_LM",
                          target_modules="all-linear" if targets == ["all-linear"] else targets)
        try:  # attach once to learn whether LoRA fits this model; trl attaches it again (reference = adapter off)
            model = get_peft_model(model, lcfg).unload()
            how, peft_config = cfg.method, lcfg
        except (ValueError, TypeError, NotImplementedError) as exc:
            reason = str(exc).splitlines()[0]
            if cfg.lora_fallback != "full" or cfg.method == "qlora":
                raise ConfigError(f"LoRA cannot attach to {cfg.model}: {reason}",
                                  hint="fix lora_target_modules, or set lora_fallback: full to train all weights") from None
            log(f"[bold yellow]WARNING: LoRA cannot attach ({reason}); falling back to FULL fine-tuning as lora_fallback: full says[/]")
    return model, tokenizer, how, peft_config


def train_dpo(cfg: TrainDPOConfig, *, log=print) -> dict:
    """Run one DPO training job; returns the training summary (also written to the run folder).

    ``log`` receives progress lines (rich markup allowed); the CLI passes its stderr console.
    """
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    t_start = time.time()
    run_dir = make_run_dir(cfg.output_dir, "train-dpo")
    if cfg.resume not in ("auto", "never") and not Path(cfg.resume).name.startswith("checkpoint-") and cfg.output_dir is None:
        run_dir = Path(cfg.resume)  # --resume RUN_FOLDER continues that run

    # 1) read, validate, gate and split the data (before any model is loaded)
    if not cfg.data:
        raise ConfigError("no training data", hint="pass --data FILE.jsonl or set data: in the config")
    pairs, counts = read_pairs(cfg.data, allow_unreviewed=cfg.allow_unreviewed, seed=cfg.seed)
    if cfg.validation:
        val_pairs, vcounts = read_pairs(cfg.validation, allow_unreviewed=cfg.allow_unreviewed, seed=cfg.seed, what="--validation")
        counts["validation_files"] = vcounts["files"]
        split = "file"
    elif len(pairs) > cfg.auto_split_min:
        pairs, val_pairs = split_by_prompt(pairs, cfg.val_fraction, cfg.seed)
        split = f"auto {1 - cfg.val_fraction:.0%}/{cfg.val_fraction:.0%} by prompt"
    else:
        val_pairs, split = [], "none"
    if len(pairs) < cfg.min_pairs:
        raise DataError(f"only {len(pairs)} training pairs; DPO needs at least {cfg.min_pairs}",
                        path=", ".join(_parse_spec(s)[0] for s in cfg.data),
                        hint="add preference pairs, or lower min_pairs if you really mean it")

    # 2) model and tokenizer; render + tokenize with the shared renderer
    import torch
    from datasets import Dataset
    from transformers import EarlyStoppingCallback, PrinterCallback
    from transformers.integrations import TensorBoardCallback
    from trl import DPOConfig

    device, bf16 = choose_precision(cfg.precision)
    torch.manual_seed(cfg.seed)
    model, tokenizer, how, peft_config = _load_model(cfg, device, bf16, log)
    train_rows, dropped = encode_pairs(tokenizer, pairs, cfg)
    val_rows, val_dropped = encode_pairs(tokenizer, val_pairs, cfg)
    if len(train_rows) < cfg.min_pairs:
        raise DataError(f"{len(train_rows)} training pairs left after dropping {dropped['too_long']} too long "
                        f"(max_length {cfg.max_length}) and {dropped['no_trainable_tokens']} with no trainable token; "
                        f"DPO needs at least {cfg.min_pairs}", hint="raise max_length or use truncation: truncate")
    log(f"{len(train_rows)} training pairs, {len(val_rows)} validation pairs ({split}); method {how}; "
        f"device {device}{' + bf16' if bf16 else ' fp32'}")

    # 3) resume point and trainer
    run_dir.mkdir(parents=True, exist_ok=True)
    tconfig.save(cfg, run_dir / "config.yaml")
    resume_from = find_resume_checkpoint(run_dir, cfg.resume, lambda m: log(f"[yellow]{m}[/]"))
    has_eval = bool(val_rows)
    eval_steps = cfg.eval_steps if cfg.eval_steps > 0 else None
    save_steps = cfg.save_steps
    if has_eval and eval_steps and save_steps % eval_steps:
        save_steps = eval_steps * max(1, round(save_steps / eval_steps))  # best-model tracking needs aligned saves
    args = DPOConfig(
        output_dir=str(run_dir), seed=cfg.seed, data_seed=cfg.seed,
        per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler, warmup_steps=cfg.warmup_ratio, weight_decay=cfg.weight_decay,
        num_train_epochs=cfg.epochs, max_steps=cfg.max_steps, max_grad_norm=cfg.max_grad_norm,
        beta=cfg.beta, loss_type=list(cfg.loss_type), label_smoothing=cfg.label_smoothing,
        precompute_ref_log_probs=cfg.reference == "precompute", max_length=None,
        gradient_checkpointing=cfg.gradient_checkpointing, bf16=bf16, use_cpu=device == "cpu",
        eval_strategy="steps" if has_eval and eval_steps else "no", eval_steps=eval_steps,
        save_strategy="steps", save_steps=save_steps, save_total_limit=cfg.save_total_limit,
        load_best_model_at_end=has_eval and bool(eval_steps), metric_for_best_model="eval_loss", greater_is_better=False,
        logging_steps=cfg.logging_steps, logging_first_step=True, report_to="none", remove_unused_columns=False,
        disable_tqdm=True, dataloader_num_workers=0, model_init_kwargs=None,
    )
    tb = TensorBoardCallback()
    tb.logging_dir = str(run_dir / "tensorboard")
    callbacks = [tb, _log_callback(log)]
    if has_eval and eval_steps and cfg.patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.patience))
    stopper = StopOnSignal()
    callbacks.append(stopper.callback())
    Trainer = _trainer_class()
    t_prep = time.time()
    trainer = Trainer(model=model, args=args, data_collator=PairCollator(tokenizer.pad_token_id),
                      train_dataset=Dataset.from_list(train_rows), eval_dataset=Dataset.from_list(val_rows) if has_eval else None,
                      processing_class=tokenizer, callbacks=callbacks, peft_config=peft_config)
    trainer.remove_callback(PrinterCallback)  # stdout is for --json; progress goes to the log (stderr)
    if cfg.completion_logits_only:
        from peft import PeftModel

        base = trainer.model.get_base_model() if isinstance(trainer.model, PeftModel) else trainer.model
        add_completion_only_head(base)
    ref_seconds = time.time() - t_prep

    # 4) train (SIGINT/SIGTERM -> checkpoint and a clean stop)
    if resume_from:
        log(f"resuming from {resume_from}")
    with stopper:
        try:
            result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        except torch.OutOfMemoryError:
            raise RunError("out of memory", hint="lower batch_size or max_length, or set gradient_checkpointing: true") from None
    state = trainer.state
    hist = state.log_history
    train_losses = [h["loss"] for h in hist if "loss" in h]
    if train_losses and not all(math.isfinite(x) for x in train_losses):
        raise RunError("training diverged (loss is NaN/inf)", hint="lower the learning rate or beta")

    # 5) final model and summary
    eval_metrics = {}
    if has_eval and stopper.signame is None:
        eval_metrics = trainer.evaluate()
    if stopper.signame is None:
        final = run_dir / "final"
        trainer.save_model(str(final))
        tokenizer.save_pretrained(str(final))
        shutil.rmtree(final / "ref", ignore_errors=True)  # trl's frozen reference copy of an SFT adapter
    tokens = next((h["num_tokens"] for h in reversed(hist) if "num_tokens" in h), None)
    train_runtime = result.metrics.get("train_runtime") if result else None
    stop_reason = ("interrupted by " + stopper.signame) if stopper.signame else (
        "early stopping (patience)" if has_eval and state.global_step < state.max_steps else "completed")
    n_total = sum(p.numel() for p in trainer.model.parameters())
    n_train = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    summary = {
        "stage": "train-dpo",
        "run_dir": str(run_dir),
        "model": cfg.model, "adapter": cfg.adapter, "method": how,
        "params": {"total": n_total, "trainable": n_train},
        "device": device, "precision": "bf16" if bf16 else "fp32",
        "reference": cfg.reference, "beta": cfg.beta, "loss_type": list(cfg.loss_type),
        "data": {"train_pairs": len(train_rows), "validation_pairs": len(val_rows), "split": split,
                 "dropped_too_long": dropped["too_long"] + val_dropped["too_long"],
                 "dropped_no_trainable_tokens": dropped["no_trainable_tokens"] + val_dropped["no_trainable_tokens"],
                 "truncated": dropped["truncated"] + val_dropped["truncated"], **counts},
        "steps": state.global_step, "max_steps": state.max_steps, "resumed_from": str(resume_from) if resume_from else None,
        "train_loss": train_losses[-1] if train_losses else None,
        "train_loss_history": [{"step": h["step"], "loss": h["loss"]} for h in hist if "loss" in h],
        "grad_norm": next((h["grad_norm"] for h in reversed(hist) if "grad_norm" in h), None),
        "eval": {k.removeprefix("eval_"): v for k, v in eval_metrics.items()},
        "eval_loss": eval_metrics.get("eval_loss"),
        "eval_reward_accuracy": eval_metrics.get("eval_rewards/accuracies"),
        "eval_reward_margin": eval_metrics.get("eval_rewards/margins"),
        "best_checkpoint": state.best_model_checkpoint, "best_eval_loss": state.best_metric,
        "stop_reason": stop_reason,
        "tokens_seen": tokens,
        "tokens_per_second": round(tokens / train_runtime, 1) if tokens and train_runtime else None,
        "reference_seconds": round(ref_seconds, 1),
        "train_seconds": round(train_runtime, 1) if train_runtime else None,
        "peak_memory_mb": peak_memory_mb(),
        "wall_seconds": round(time.time() - t_start, 1),
        "final": str(run_dir / "final") if stopper.signame is None else None,
    }
    from trajtune.jsonl import write_json

    write_json(run_dir / "training_summary.json", summary)
    if stopper.signame:
        raise RunError(f"stopped by {stopper.signame} at step {state.global_step}; checkpoint saved in {run_dir}",
                       hint="re-run the same command to resume")
    return summary


def main(argv: list[str] | None = None) -> int:
    """``python scripts/train_dpo.py --config FILE.yaml [--key value ...]``."""
    import argparse

    from trajtune.errors import TrajtuneError

    ap = argparse.ArgumentParser(description="DPO training (same options as `trajtune train-dpo`)")
    ap.add_argument("--config")
    known, rest = ap.parse_known_args(argv)
    overrides: dict[str, Any] = {}
    i = 0
    while i < len(rest):
        key = rest[i].lstrip("-").replace("-", "_")
        if i + 1 < len(rest) and not rest[i + 1].startswith("--"):
            overrides.setdefault(key, [])
            overrides[key].append(rest[i + 1])
            i += 2
        else:
            overrides[key] = ["true"]
            i += 1
    flat = {k: (v if k in ("data", "validation", "loss_type", "lora_target_modules") else v[-1]) for k, v in overrides.items()}
    try:
        cfg = tconfig.build(TrainDPOConfig, known.config, flat)
        summary = train_dpo(cfg, log=lambda m: print(m, file=sys.stderr))
    except TrajtuneError as exc:
        print(f"Error: {exc.render()}", file=sys.stderr)
        return exc.exit_code
    print(json.dumps({k: summary[k] for k in ("run_dir", "steps", "eval_reward_accuracy", "tokens_per_second")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
