"""train-dpo: preference (DPO) fine-tuning of a causal LM, LoRA or full, resumable.

Runs as ``trajtune train-dpo PAIRS.jsonl --config configs/train_dpo/smollm2-135m.yaml -o RUN_DIR`` or,
with the same command line, ``python -m trajtune.scripts.train_dpo ...`` (also under torchrun).
The stage function is :func:`run`; the run skeleton is :func:`trajtune.training.run_training`
(shared with train-sft); the trainer, collator and LM head live in :mod:`trajtune.trainers`.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

from trajtune import training
from trajtune.config import field
from trajtune.errors import ConfigError, RunError
from trajtune.training import redefault

NAME = "train-dpo"


@dataclass
class Config(training.TrainConfig):
    """train-dpo's options: the shared TrainConfig, DPO's own defaults, and what only DPO has."""

    min_records: int = redefault("min_records", 20)
    max_length: int = redefault("max_length", 1024)
    lora_dropout: float = redefault("lora_dropout", 0.0)  # 0 keeps policy and reference log-probs comparable
    batch_size: int = redefault("batch_size", 4)
    learning_rate: float = redefault("learning_rate", 5e-5)
    gradient_checkpointing: Any = redefault("gradient_checkpointing", False)  # trl's default is on
    adapter: Optional[str] = field(None, help="an SFT LoRA adapter folder to keep training (reference = that adapter, frozen); its base is --model")
    beta: float = field(0.1, help="DPO beta: how strongly the policy is kept near the reference")
    loss_type: list[str] = field(default_factory=lambda: ["sigmoid"], help="trl loss type(s): sigmoid (DPO), ipo, hinge, robust, sigmoid_norm, apo_zero, ...")
    loss_weights: Optional[list[float]] = field(None, help="weights of the loss_type terms (default 1 each); e.g. loss_type [sigmoid, sft] with [1, 0.5]: DPO plus half the chosen side's NLL (RPO)")
    label_smoothing: float = field(0.0, help="label smoothing (robust / exo_pair losses)")
    reference: Literal["precompute", "live"] = field("precompute", help="precompute: reference log-probs once before training (faster); live: every step")
    share_prompt: bool = field(True, help="run each pair's common prompt through the model once for chosen and rejected (needs logits_at_labels_only)")

    def check(self) -> None:
        super().check()
        if self.beta <= 0:
            raise ConfigError(f"beta must be > 0, got {self.beta}")
        if self.loss_weights is not None and len(self.loss_weights) != len(self.loss_type):
            raise ConfigError(f"loss_weights has {len(self.loss_weights)} weights for {len(self.loss_type)} loss types "
                              f"({', '.join(self.loss_type)})", hint="one weight per loss_type entry")
        if self.adapter and self.method != "lora":
            raise ConfigError(f"--adapter continues a LoRA adapter; it cannot be combined with method: {self.method}")
        if self.gradient_checkpointing == "auto":
            raise ConfigError("train-dpo: gradient_checkpointing is true or false (auto sizes SFT micro-batches only)")


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


# ------------------------------------------------------------------------ model

def check_sources(cfg: Config, model_path: str) -> None:
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


def load_policy(cfg: Config, model_path: str, precision: "training.Precision") -> tuple[Any, str, Any]:
    """(model, method, peft_config). An SFT adapter comes back as a trainable PeftModel (trl keeps
    a frozen copy of it as the reference); a new LoRA comes back as its config for trl to attach,
    so the reference is the same model with the adapter disabled."""
    model = training.load_causal_lm(cfg, model_path, precision)
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


# ------------------------------------------------------------------ the stage

def setup(ctx: training.RunContext) -> training.Setup:
    """Render + tokenize every pair, load the policy (the reference without a second model copy),
    and build trl's DPOTrainer on the pre-tokenized pairs (the reference pass runs here)."""
    from datasets import Dataset
    from peft import PeftModel
    from transformers import set_seed
    from trl import DPOConfig

    from trajtune.models import resolve_model
    from trajtune.trainers import PairCollator, PretokenizedDPOTrainer, add_completion_only_head

    cfg, data, precision, run_dir = ctx.cfg, ctx.data, ctx.precision, ctx.run_dir
    model_path = resolve_model(cfg.model)
    check_sources(cfg, model_path)
    tok_path = cfg.adapter if cfg.adapter and (Path(cfg.adapter) / "tokenizer_config.json").is_file() else model_path
    tokenizer = training.load_tokenizer(tok_path, cfg.trust_remote_code)
    train_rows, train_counts = encode_pairs(tokenizer, data.train, cfg.max_length, cfg.truncation)
    eval_rows, eval_counts = encode_pairs(tokenizer, data.eval, cfg.max_length, cfg.truncation)
    if len(train_rows) < cfg.min_records:
        raise RunError(f"{len(train_rows)} training pairs left after tokenization ({train_counts['dropped_too_long']} longer "
                       f"than max_length {cfg.max_length}, {train_counts['dropped_no_trainable']} with no trainable token); "
                       f"at least {cfg.min_records} are needed", hint="raise max_length or use truncation: truncate")
    has_eval = bool(eval_rows)
    training.save_config(cfg, run_dir)
    training.log(f"run folder {run_dir}; {len(train_rows)} train / {len(eval_rows)} eval pairs; {precision.reason}"
                 + (f"; resuming from {ctx.resume_from}" if ctx.resume_from else ""))

    set_seed(cfg.seed)
    model, method, peft_config = load_policy(cfg, model_path, precision)
    args = DPOConfig(
        **training.trainer_arguments(
            run_dir=run_dir, precision=precision, has_eval=has_eval, seed=cfg.seed, batch_size=cfg.batch_size,
            gradient_accumulation_steps=cfg.gradient_accumulation_steps, learning_rate=cfg.learning_rate, epochs=cfg.epochs,
            max_steps=cfg.max_steps, warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm,
            lr_scheduler=cfg.lr_scheduler, logging_steps=cfg.logging_steps, eval_steps=cfg.eval_steps, save_steps=cfg.save_steps,
            save_total_limit=cfg.save_total_limit, eval_delay=cfg.eval_delay, gradient_checkpointing=bool(cfg.gradient_checkpointing)),
        beta=cfg.beta, loss_type=list(cfg.loss_type), label_smoothing=cfg.label_smoothing,
        loss_weights=list(cfg.loss_weights) if cfg.loss_weights is not None else None,
        precompute_ref_log_probs=cfg.reference == "precompute", max_length=None,  # lengths handled in encode_pairs
        **({"deepspeed": cfg.deepspeed} if cfg.deepspeed else {}),
    )
    early = training.early_stopping_callback(cfg.patience) if has_eval and cfg.patience > 0 else None

    def install_head(m) -> None:
        add_completion_only_head(m.get_base_model() if isinstance(m, PeftModel) else m, share_prompt=cfg.share_prompt)

    t_ref = training.Timer()
    try:
        trainer = PretokenizedDPOTrainer(
            model=model, args=args, data_collator=PairCollator(tokenizer.pad_token_id),
            train_dataset=Dataset.from_list(train_rows), eval_dataset=Dataset.from_list(eval_rows) if has_eval else None,
            processing_class=tokenizer, callbacks=ctx.callbacks(early), peft_config=peft_config,
            head=install_head if cfg.logits_at_labels_only else None)
    except ValueError as exc:
        raise ConfigError(f"trl refused this setup: {str(exc).splitlines()[0][:300]}") from None
    reference_time = t_ref.elapsed()  # includes the one reference pass when precomputed
    if cfg.logits_at_labels_only:
        install_head(trainer.model)
    frozen_bf16 = training.store_frozen_bf16(trainer.model, precision, method)  # after trl attached a new LoRA
    info = {"adapter": cfg.adapter, "method": method, "reference": cfg.reference, "beta": cfg.beta,
            "loss_type": list(cfg.loss_type), "loss_weights": cfg.loss_weights, "params": training.count_parameters(trainer.model),
            "frozen_bf16_params": frozen_bf16,
            "data": {**data.counts, "train_pairs": len(train_rows), "eval_pairs": len(eval_rows),
                     "train_tokenized": train_counts, "eval_tokenized": eval_counts},
            "reference_time_s": reference_time if cfg.reference == "precompute" else None}

    def finish(trainer: Any, interrupted: Any) -> dict:
        ev: dict = {}
        if has_eval and not interrupted:
            ev = {k.removeprefix("eval_"): v for k, v in trainer.evaluate().items()}  # of the restored best model
        out = {"eval_reward_accuracy": ev.get("rewards/accuracies"), "eval_reward_margin": ev.get("rewards/margins"),
               "eval_rewards": {k: v for k, v in ev.items() if k.startswith(("rewards/", "logps/"))},
               # trl counts the tokens of this process's steps (attention mask, chosen + rejected)
               "tokens_this_run": int(getattr(trainer, "_total_train_tokens", 0) or 0)}
        if "loss" in ev:
            out["eval_loss"] = ev["loss"]
        return out

    return training.Setup(trainer=trainer, tokenizer=tokenizer, has_eval=has_eval, early=early, info=info, finish=finish)


STAGE = training.stage(
    NAME, Config, "preference", setup,
    help="Preference (DPO) fine-tuning on preference pairs: from the base model (new LoRA; the reference is "
         "the same weights with the adapter off), from an SFT adapter (--adapter RUN/final: it keeps training, a "
         "frozen copy is the reference), or from a merged model. Data is validated and review-gated first; the "
         "reference log-probs are computed once before training. Writes RUN_DIR/config.yaml, checkpoint-N/, final/, "
         "tensorboard/ and training_summary.json (with validation reward accuracy); re-running resumes; "
         "Ctrl-C/SIGTERM saves a checkpoint first (exit 130).",
    example="trajtune train-dpo data/pairs.jsonl --adapter runs/sft/final --config configs/train_dpo/smollm2-135m.yaml -o runs/dpo",
)

run = STAGE.run  # run(cfg) -> summary: the stage as a function

if __name__ == "__main__":
    from trajtune.cli.command import script

    script(STAGE)
