"""train-sft: supervised fine-tuning (LoRA, full, QLoRA) on sft records (agent trajectories).

Import and call :func:`train_sft` with a :class:`TrainSFTConfig`, or run it directly, alone or
under a multi-process launcher::

    python scripts/train_sft.py --config configs/train_sft/smollm2-135m.yaml --data train.jsonl
    torchrun --nproc_per_node 2 scripts/train_sft.py --config ... --output-dir runs/x

Every config key is also a flag (``--max-steps 20``, ``--lora-r 8``).

How it trains fast on a CPU (levers measured in ../shared/MEASUREMENTS.md; bench/bench_train_sft.py):
records are tokenized once with the shared renderer (labels only on trainable assistant turns);
batches are grouped by length and padded to their longest row; the model returns logits only at
positions that have a label (``logits_to_keep`` boolean mask), so the 49k-wide vocabulary
projection and its cross-entropy run for assistant tokens only; bf16 autocast on CPUs with native
bf16 (weights stay fp32); no gradient checkpointing unless asked.
"""
from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional, Union

from trajtune import training
from trajtune.config import field
from trajtune.errors import ConfigError, RunError

STAGE = "train-sft"


@dataclass
class TrainSFTConfig:
    # what to train
    model: str = field("default", help="model folder, .gguf file, hub id, or 'default' (SmolLM2-135M-Instruct)")
    data: list[str] = field(default_factory=list, help="sft JSONL files to train on")
    weights: Optional[list[float]] = field(None, help="mixing weight per data file (1.0 = as is, 2.0 = twice, 0.5 = half)")
    eval_data: Optional[list[str]] = field(None, help="validation JSONL files; without them >100 records are split 90/10 by prompt")
    output_dir: Optional[str] = field(None, help="run folder; default runs/train-sft-<timestamp>")
    resume: str = field("auto", help="auto (newest complete checkpoint), never, or a checkpoint folder")
    allow_unreviewed: bool = field(False, help="train on synthetic records still pending review")
    min_records: int = field(50, help="refuse to train on fewer records")
    eval_fraction: float = field(0.1, help="share of records held out by the automatic split")
    auto_split: bool = field(True, help="without eval_data, hold out eval_fraction of the records (by prompt) when there are more than 100")
    seed: int = field(42, help="seed for splits, sampling, init")
    # rendering
    max_length: int = field(2048, help="max tokens per record")
    truncation: Literal["drop", "truncate"] = field("drop", help="records longer than max_length: drop them or cut them")
    # method
    method: Literal["lora", "full", "qlora"] = field("lora", help="lora, full fine-tuning, or qlora (4-bit, CUDA only)")
    lora_r: int = field(16, help="LoRA rank")
    lora_alpha: int = field(32, help="LoRA alpha")
    lora_dropout: float = field(0.05, help="LoRA dropout")
    lora_target_modules: list[str] = field(default_factory=lambda: ["all-linear"], help="modules LoRA wraps; all-linear = every linear layer but the output head")
    lora_fallback: Literal["none", "full"] = field("none", help="if LoRA cannot attach: none = stop with the reason, full = full fine-tuning (loud warning)")
    trust_remote_code: bool = field(False, help="allow model code from the hub (off by default)")
    # optimisation
    epochs: float = field(1.0, help="passes over the training data")
    max_steps: int = field(-1, help="stop after this many optimizer steps (-1 = use epochs)")
    batch_size: int = field(8, help="records per device per optimizer step (before gradient accumulation)")
    micro_batch_size: Union[int, Literal["auto"]] = field("auto", help="records per forward pass; batch_size is split into micro-batches (same effective batch, less memory). auto: the largest divisor of batch_size whose longest micro-batch needs at most a quarter of the free memory for activations")
    gradient_accumulation_steps: int = field(1, help="batches accumulated per optimizer step (effective batch = batch_size x this x processes)")
    learning_rate: float = field(2e-4, help="peak learning rate")
    lr_scheduler: str = field("linear", help="transformers scheduler name (linear, cosine, constant, ...)")
    warmup_steps: int = field(0, help="linear warmup steps")
    weight_decay: float = field(0.0, help="AdamW weight decay")
    max_grad_norm: float = field(1.0, help="gradient clipping")
    # evaluation, checkpoints, logging
    eval_steps: int = field(50, help="evaluate every N steps (when there is a validation set)")
    patience: int = field(3, help="early stopping: evaluations without eval-loss improvement before stopping")
    save_steps: int = field(50, help="checkpoint every N steps (a multiple of eval_steps when evaluating)")
    save_total_limit: Optional[int] = field(3, help="keep at most N checkpoints (the best one is always kept)")
    logging_steps: int = field(10, help="log train loss every N steps")
    # speed
    precision: Literal["auto", "fp32", "bf16"] = field("auto", help="auto: bf16 on CUDA and on CPUs with native bf16 (autocast, fp32 weights), else fp32")
    device: Literal["auto", "cpu", "cuda"] = field("auto", help="where to train")
    gradient_checkpointing: Union[bool, Literal["auto"]] = field("auto", help="recompute activations to save memory (slower); auto: on only when the largest batch's activations would not fit in half the free memory")
    group_by_length: bool = field(True, help="batch records of similar length (less padding)")
    logits_at_labels_only: bool = field(True, help="compute the vocabulary projection only where there is a label")
    # scale-out (GPU clusters; launch with torchrun or accelerate launch)
    deepspeed: Optional[str] = field(None, help="DeepSpeed JSON config (e.g. configs/deepspeed/zero3.json); FSDP comes from the accelerate config")

    def check(self) -> None:
        if self.batch_size < 1 or self.gradient_accumulation_steps < 1:
            raise ConfigError("batch_size and gradient_accumulation_steps must be >= 1")
        if self.micro_batch_size != "auto" and (self.micro_batch_size < 1 or self.batch_size % self.micro_batch_size):
            raise ConfigError(f"micro_batch_size must divide batch_size ({self.batch_size}), got {self.micro_batch_size}",
                              hint="use a divisor of batch_size, or micro_batch_size: auto")
        if self.max_length < 8:
            raise ConfigError("max_length must be >= 8")
        if self.max_steps == 0 or (self.max_steps < 0 and self.epochs <= 0):
            raise ConfigError("nothing to train: set max_steps > 0 or epochs > 0")
        if not 0 < self.eval_fraction < 1:
            raise ConfigError("eval_fraction must be between 0 and 1")
        if self.eval_steps < 1 or self.save_steps < 1 or self.logging_steps < 1:
            raise ConfigError("eval_steps, save_steps and logging_steps must be >= 1")


# ---------------------------------------------------------------------------------------------
# data -> token ids (before anything becomes a dataset: no raw tool arguments ever reach Arrow)
# ---------------------------------------------------------------------------------------------

def encode_records(tokenizer: Any, records: list[dict], max_length: int, truncation: str) -> tuple[list[dict], dict]:
    """Render + tokenize each record with the shared renderer. Returns examples
    ``{"input_ids", "labels"}`` (labels -100 outside trainable assistant turns) and counts."""
    from trajtune.chat import tokenize_for_training

    out: list[dict] = []
    counts = {"kept": 0, "dropped_too_long": 0, "truncated": 0, "dropped_no_trainable": 0}
    for rec in records:
        ids, labels = tokenize_for_training(tokenizer, rec["messages"], rec.get("tools"))
        if len(ids) > max_length:
            if truncation == "drop":
                counts["dropped_too_long"] += 1
                continue
            ids, labels = ids[:max_length], labels[:max_length]
            counts["truncated"] += 1
        if not any(lab != -100 for lab in labels[1:]):
            counts["dropped_no_trainable"] += 1
            continue
        out.append({"input_ids": ids, "labels": labels})
        counts["kept"] += 1
    return out, counts


class PadCollator:
    """Right-pad a batch to its longest row; labels padded with -100."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, features: list[dict]) -> dict:
        import torch

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


def label_loss(model: Any, inputs: dict, logits_at_labels_only: bool = True):
    """Mean next-token cross-entropy over label positions.

    With ``logits_at_labels_only`` the model projects hidden states to the vocabulary only where
    a label follows (``logits_to_keep`` as a boolean mask, passed through DDP/PEFT forwards).
    """
    import torch.nn.functional as F

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
    return F.cross_entropy(logits.float(), targets, reduction="mean"), out


def _trainer_class():
    import torch
    from torch.utils.data import Sampler
    from transformers import Trainer
    from transformers.trainer_pt_utils import get_length_grouped_indices

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
        logits_at_labels_only = True
        group_by_length = True

        def _get_train_sampler(self, train_dataset=None):
            ds = train_dataset if train_dataset is not None else self.train_dataset
            if not self.group_by_length or self.args.world_size > 1:
                return super()._get_train_sampler(train_dataset) if train_dataset is not None else super()._get_train_sampler()
            lengths = [len(f["input_ids"]) for f in ds]
            return LengthGrouped(lengths, self.args.train_batch_size * self.args.gradient_accumulation_steps, self.args.seed)

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            # our compute_loss normalises by the label tokens of the whole step: tell the Trainer, so it
            # counts them (num_items_in_batch) and does not divide by the accumulation steps again.
            # (A PEFT-wrapped model reports False here, and the loss would be a mean of micro-batch means.)
            self.model_accepts_loss_kwargs = True

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss, out = label_loss(model, inputs, self.logits_at_labels_only)
            if num_items_in_batch is not None:
                # a token-weighted mean over the whole optimizer step (all micro-batches, all processes):
                # splitting a batch into micro-batches then gives the same gradient as one big batch.
                n = (inputs["labels"][:, 1:] != -100).sum()
                loss = loss * n / num_items_in_batch
                if self.args.average_tokens_across_devices and self.accelerator.num_processes > 1:
                    loss = loss * self.accelerator.num_processes  # DDP averages gradients over processes
            return (loss, out) if return_outputs else loss

    return SFTLabelTrainer


# ---------------------------------------------------------------------------------------------
# model
# ---------------------------------------------------------------------------------------------

def load_model(cfg: TrainSFTConfig, model_path: str, precision: training.Precision) -> tuple[Any, str]:
    """The model with LoRA/QLoRA attached (or not, for full fine-tuning). Returns (model, method used)."""
    import torch
    from transformers import AutoModelForCausalLM

    kw: dict[str, Any] = {"trust_remote_code": cfg.trust_remote_code}
    if cfg.method == "qlora":
        if precision.device != "cuda":
            raise ConfigError("method: qlora needs a CUDA GPU (bitsandbytes 4-bit); on CPU use method: lora")
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise ConfigError("method: qlora needs bitsandbytes", hint="pip install 'trajtune[qlora]'") from None
        from transformers import BitsAndBytesConfig

        kw["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                                       bnb_4bit_compute_dtype=torch.bfloat16 if precision.bf16 else torch.float16)
    # LoRA on a GPU keeps frozen weights in bf16; full fine-tuning and every CPU run keep fp32 master weights.
    kw["dtype"] = torch.bfloat16 if (precision.device == "cuda" and precision.bf16 and cfg.method != "full") else torch.float32
    try:
        model = AutoModelForCausalLM.from_pretrained(model_path, **kw)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load model {cfg.model}: {str(exc).splitlines()[0][:300]}",
                          hint="pass --model with a local model folder, a .gguf file, or 'default'") from None
    model.config.use_cache = False
    if cfg.method == "full":
        return model, "full"
    if cfg.method == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    return training.attach_lora(model, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout,
                                target_modules=cfg.lora_target_modules, fallback=cfg.lora_fallback)


def choose_micro_batch(batch_size: int, setting: Union[int, str], per_record_bytes: int, free_bytes: int) -> int:
    """Records per forward pass. ``auto``: the largest divisor of ``batch_size`` whose activations
    (``per_record_bytes`` for the longest record) fit in a quarter of the free memory; at least 1.
    On a CPU a micro-batch of 1-2 records runs as many tokens/s as 4 (measured, README), so the
    split costs nothing and keeps peak memory well below a single big batch."""
    if setting != "auto":
        return int(setting)
    budget = free_bytes / 4
    for micro in sorted((d for d in range(1, batch_size + 1) if batch_size % d == 0), reverse=True):
        if micro * per_record_bytes <= budget:
            return micro
    return 1


def activation_bytes(model: Any, tokens: int) -> int:
    """Rough activation memory of one forward+backward without checkpointing: per token and layer
    ~12 hidden-size and 4 intermediate-size fp32 tensors (measured: SmolLM2-135M, 8 x ~1,200 tokens
    -> ~16 GB resident)."""
    cfg = getattr(model, "config", None)
    layers = getattr(cfg, "num_hidden_layers", 24) or 24
    hidden = getattr(cfg, "hidden_size", 1024) or 1024
    inter = getattr(cfg, "intermediate_size", 4 * hidden) or 4 * hidden
    return int(tokens * layers * (12 * hidden + 4 * inter) * 4)


# ---------------------------------------------------------------------------------------------
# the stage
# ---------------------------------------------------------------------------------------------

def train_sft(cfg: TrainSFTConfig) -> dict:
    """Run one SFT training job end to end; returns the training summary (also written to disk)."""
    t0 = training.Timer()
    training.quiet_libraries()
    # 1) the run folder; a finished run is not trained again
    run_dir, reused = training.resolve_run_dir(STAGE, cfg, cfg.output_dir, cfg.resume)
    if reused and cfg.resume != "never" and training.run_finished(run_dir):
        import json

        training.log(f"{run_dir} already holds a finished run; nothing to do (use --resume never or a new --output-dir to train again)")
        summary = json.loads((run_dir / training.SUMMARY_NAME).read_text("utf-8"))
        summary["skipped"] = True
        return summary
    resume_from = training.find_checkpoint(run_dir, cfg.resume)

    # 2) data: validated, review-gated, split by prompt, weighted (before any model is loaded)
    data = training.prepare_data(cfg.data, "sft", weights=cfg.weights, eval_data=cfg.eval_data, min_records=cfg.min_records,
                                 allow_unreviewed=cfg.allow_unreviewed, eval_fraction=cfg.eval_fraction, seed=cfg.seed,
                                 auto_split_over=100 if cfg.auto_split else float("inf"))
    has_eval = bool(data.eval)
    training.check_eval_save_steps(has_eval, cfg.eval_steps, cfg.save_steps)
    precision = training.choose_precision(cfg.precision, cfg.device)
    if cfg.method == "qlora" and precision.device != "cuda":
        raise ConfigError("method: qlora needs a CUDA GPU (bitsandbytes 4-bit); on CPU use method: lora")

    # 3) tokenize with the shared renderer (loss on trainable assistant turns only)
    from transformers import AutoTokenizer, set_seed

    from trajtune.models import resolve_model

    model_path = resolve_model(cfg.model)
    tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=cfg.trust_remote_code)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    train_ex, train_counts = encode_records(tokenizer, data.train, cfg.max_length, cfg.truncation)
    eval_ex, eval_counts = encode_records(tokenizer, data.eval, cfg.max_length, cfg.truncation)
    if not train_ex:
        raise RunError("no training record is left after tokenization "
                       f"({train_counts['dropped_too_long']} too long, {train_counts['dropped_no_trainable']} with no trainable token)",
                       hint="raise max_length or use truncation: truncate")
    training.save_config(cfg, run_dir)
    training.log(f"run folder {run_dir}; {len(train_ex)} train / {len(eval_ex)} eval records; {precision.reason}"
                 + (f"; resuming from {resume_from}" if resume_from else ""))

    # 4) model + trainer
    set_seed(cfg.seed)
    model, method = load_model(cfg, model_path, precision)
    params = training.count_parameters(model)
    longest_record = max(len(e["input_ids"]) for e in train_ex)
    free = training.free_memory_bytes(precision.device)
    micro = choose_micro_batch(cfg.batch_size, cfg.micro_batch_size, activation_bytes(model, longest_record), free)
    accumulation = cfg.gradient_accumulation_steps * (cfg.batch_size // micro)
    if micro != cfg.batch_size:
        training.log(f"micro-batches of {micro} record(s), accumulated x{accumulation}: the same {cfg.batch_size * cfg.gradient_accumulation_steps} "
                     f"records per optimizer step, less memory (micro_batch_size: {cfg.micro_batch_size})")
    checkpointing = cfg.gradient_checkpointing
    if checkpointing == "auto":
        longest = micro * longest_record
        need = activation_bytes(model, longest)
        checkpointing = need > 0.5 * free
        if checkpointing:
            training.log(f"gradient checkpointing on: the largest batch ({longest} tokens) needs ~{need / 2**30:.1f} GiB of "
                         f"activations, {free / 2**30:.1f} GiB free (set gradient_checkpointing: false to force it off)")
    from transformers import TrainingArguments

    args = TrainingArguments(
        **training.trainer_arguments(
            run_dir=run_dir, precision=precision, has_eval=has_eval, seed=cfg.seed, batch_size=micro,
            gradient_accumulation_steps=accumulation, learning_rate=cfg.learning_rate, epochs=cfg.epochs,
            max_steps=cfg.max_steps, warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm,
            lr_scheduler=cfg.lr_scheduler, logging_steps=cfg.logging_steps, eval_steps=cfg.eval_steps, save_steps=cfg.save_steps,
            save_total_limit=cfg.save_total_limit, gradient_checkpointing=bool(checkpointing)),
        include_num_input_tokens_seen="non_padding",
        **({"deepspeed": cfg.deepspeed} if cfg.deepspeed else {}),
    )
    stopper = training.make_graceful_stop()
    metrics = training.make_run_metrics()
    early = training.early_stopping_callback(cfg.patience) if has_eval else None
    callbacks = [c for c in (stopper, metrics, early, training.tensorboard_callback(run_dir)) if c is not None]
    if os.environ.get("TRAJTUNE_TEST_STEP_SLEEP"):  # test hook: slow steps down so a test can kill mid-run
        callbacks.append(_sleep_callback(float(os.environ["TRAJTUNE_TEST_STEP_SLEEP"])))
    Trainer = _trainer_class()
    Trainer.logits_at_labels_only = cfg.logits_at_labels_only
    Trainer.group_by_length = cfg.group_by_length
    trainer = Trainer(model=model, args=args, train_dataset=train_ex, eval_dataset=eval_ex or None,
                      data_collator=PadCollator(tokenizer.pad_token_id), processing_class=tokenizer, callbacks=callbacks)
    training.quiet_trainer(trainer)

    # 5) train (SIGINT/SIGTERM -> checkpoint + clean stop)
    tokens_before = 0
    if resume_from is not None:
        import json

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

    # 6) final model (adapter or full model + tokenizer with chat template), summary
    final_dir = None
    if not interrupted:
        final_dir = run_dir / "final"
        tmp = run_dir / "final.tmp"
        if training.is_main_process() and tmp.exists():
            shutil.rmtree(tmp)
        trainer.save_model(str(tmp))
        if training.is_main_process():
            tokenizer.save_pretrained(str(tmp))
            (tmp / "training_args.bin").unlink(missing_ok=True)  # a pickle; the run's config.yaml says it all
            if final_dir.exists():
                shutil.rmtree(final_dir)
            os.replace(tmp, final_dir)
    tokens_seen = int(state.num_input_tokens_seen or 0)
    eval_loss = metrics.eval_loss
    if has_eval and not interrupted and state.best_metric is not None:
        eval_loss = float(state.best_metric)  # the best checkpoint is what final/ holds
    summary = {
        "stage": STAGE, "finished": not interrupted,
        "stop_reason": training.stop_reason(interrupted=interrupted, early_stopping=early, global_step=state.global_step,
                                            max_steps=state.max_steps if cfg.max_steps > 0 else 0, patience=cfg.patience),
        "run_dir": str(run_dir), "final": str(final_dir) if final_dir else None, "model": cfg.model, "method": method,
        "device": precision.device, "precision": precision.reason, "world_size": args.world_size,
        "batch": {"records_per_step": micro * accumulation * args.world_size, "micro_batch_size": micro,
                  "gradient_accumulation_steps": accumulation, "gradient_checkpointing": bool(checkpointing)},
        "resumed_from": str(resume_from) if resume_from else None,
        "params": params,
        "data": {**data.counts, "train_tokenized": train_counts, "eval_tokenized": eval_counts},
        "global_step": state.global_step, "max_steps": state.max_steps,
        "train_loss": metrics.train_loss, "train_loss_mean": round(float(result.training_loss), 6) if result else None,
        "eval_loss": eval_loss, "perplexity": training.perplexity(eval_loss), "eval_history": metrics.eval_history,
        "grad_norm": metrics.grad_norm,
        "best_checkpoint": state.best_model_checkpoint, "best_eval_loss": state.best_metric,
        "tokens_seen": tokens_seen,
        "tokens_per_second": round((tokens_seen - tokens_before) / train_time, 1) if train_time > 0 else None,
        "peak_memory_mb": training.peak_memory_mb(precision.device),
        "train_time_s": train_time, "wall_time_s": t0.elapsed(),
    }
    training.write_summary(run_dir, summary)
    return summary


def _sleep_callback(seconds: float):
    """Test hook (TRAJTUNE_TEST_STEP_SLEEP): slow each step so a test can kill the run mid-way."""
    import time

    from transformers import TrainerCallback

    class SleepPerStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            time.sleep(seconds)

    return SleepPerStep()


# ---------------------------------------------------------------------------------------------
# `python scripts/train_sft.py --config FILE --key value ...`
# ---------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    from trajtune.config import build, parse_flags
    from trajtune.errors import TrajtuneError

    try:
        config_file, overrides = parse_flags(TrainSFTConfig, list(sys.argv[1:] if argv is None else argv))
        cfg = build(TrainSFTConfig, config_file, overrides)
        summary = train_sft(cfg)
    except TrajtuneError as exc:
        print(f"Error: {exc.render()}", file=sys.stderr)
        return exc.exit_code
    if training.is_main_process():
        import json

        print(json.dumps({k: summary.get(k) for k in ("run_dir", "final", "stop_reason", "global_step", "train_loss",
                                                         "eval_loss", "tokens_per_second")}))
    return 130 if summary.get("stop_reason", "").startswith("interrupted") else 0


if __name__ == "__main__":
    raise SystemExit(main())
