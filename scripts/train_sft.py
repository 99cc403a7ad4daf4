"""train-sft: supervised fine-tuning (LoRA, full, QLoRA) on sft records (agent trajectories).

``trajtune train-sft DATA... -o RUN_DIR``; the same command line runs as a script, alone or under
a multi-process launcher::

    python -m trajtune.scripts.train_sft train.jsonl --config configs/train_sft/smollm2-135m.yaml -o runs/x
    torchrun --nproc_per_node 2 -m trajtune.scripts.train_sft train.jsonl --config ... -o runs/x

Call :func:`run` with a :class:`Config` from Python. The run skeleton (run folder, resume, data,
signals, final/, summary) is :func:`trajtune.training.run_training`, shared with train-dpo; the
Trainer class lives in :mod:`trajtune.trainers`.

How it trains fast on a CPU (the levers and their figures: README design notes; bench/bench_train_sft.py):
records are tokenized once with the shared renderer (labels only on trainable assistant turns);
batches are grouped by length and padded to their longest row; the model returns logits only at
positions that have a label (``logits_to_keep`` boolean mask), so the 49k-wide vocabulary
projection and its cross-entropy run for assistant tokens only; bf16 autocast on CPUs with native
bf16 (LoRA weights stay fp32, the frozen linears are stored in bf16: the casts autocast
made anyway); no gradient checkpointing unless asked.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Union

from trajtune import training
from trajtune.config import field
from trajtune.errors import ConfigError, RunError

NAME = "train-sft"


@dataclass
class Config(training.TrainConfig):
    """train-sft's options: the shared TrainConfig plus what only SFT has."""

    truncation: Literal["drop", "truncate", "turns"] = field("drop", help="records longer than max_length: drop them, cut the end, or keep their first turns (turns: drop whole turns from the end so the record ends with a complete assistant turn; dropped when even its first assistant turn does not fit)")
    micro_batch_size: Union[int, Literal["auto"]] = field("auto", help="records per forward pass; batch_size is split into micro-batches (same effective batch, less memory). auto: the largest divisor of batch_size whose longest micro-batch needs at most a quarter of the free memory for activations")
    group_by_length: bool = field(True, help="batch records of similar length (less padding)")
    decision_weight: float = field(1.0, help="loss weight of each assistant turn's first token, where the model decides between a tool call and a plain reply (1 = a plain token mean; validation always reads the plain mean; 8 was worse on the demo, README)")

    def check(self) -> None:
        super().check()
        if self.decision_weight <= 0:
            raise ConfigError(f"decision_weight must be > 0, got {self.decision_weight}", hint="1 is the plain token mean")
        if self.micro_batch_size != "auto" and (self.micro_batch_size < 1 or self.batch_size % self.micro_batch_size):
            raise ConfigError(f"micro_batch_size must divide batch_size ({self.batch_size}), got {self.micro_batch_size}",
                              hint="use a divisor of batch_size, or micro_batch_size: auto")


# ---------------------------------------------------------------------------------------------
# data -> token ids (before anything becomes a dataset: no raw tool arguments ever reach Arrow)
# ---------------------------------------------------------------------------------------------

def encode_records(tokenizer: Any, records: list[dict], max_length: int, truncation: str) -> tuple[list[dict], dict]:
    """Render + tokenize each record with the shared renderer. Returns examples
    ``{"input_ids", "labels"}`` (labels -100 outside trainable assistant turns) and counts.

    A record longer than ``max_length`` is dropped (``drop``), cut at max_length (``truncate``: a
    turn may end mid-way), or shortened by whole turns (``turns``): the longest prefix of its
    messages that ends with a trainable assistant turn and fits, so the model still learns the
    first calls of a long trajectory and where its turn ends (the demo's long records are parallel
    calls followed by their results: dropping them took 39 of 105 parallel_multi records)."""
    from trajtune.chat import tokenize_for_training

    out: list[dict] = []
    counts = {"kept": 0, "dropped_too_long": 0, "truncated": 0, "dropped_no_trainable": 0}
    if truncation == "turns":
        counts["shortened_to_turns"] = 0
    for rec in records:
        ids, labels = tokenize_for_training(tokenizer, rec["messages"], rec.get("tools"))
        if len(ids) > max_length:
            if truncation == "turns":
                ids, labels = _first_turns_that_fit(tokenizer, rec, max_length)
                if ids is None:
                    counts["dropped_too_long"] += 1
                    continue
                counts["shortened_to_turns"] += 1
            elif truncation == "drop":
                counts["dropped_too_long"] += 1
                continue
            else:
                ids, labels = ids[:max_length], labels[:max_length]
                counts["truncated"] += 1
        if not any(lab != -100 for lab in labels[1:]):
            counts["dropped_no_trainable"] += 1
            continue
        out.append({"input_ids": ids, "labels": labels})
        counts["kept"] += 1
    return out, counts


def _first_turns_that_fit(tokenizer: Any, rec: dict, max_length: int) -> tuple[Any, Any]:
    """(ids, labels) of the longest message prefix ending with a trainable assistant turn that
    fits in ``max_length`` tokens; (None, None) when none does."""
    from trajtune.chat import tokenize_for_training

    msgs = rec["messages"]
    ends = [i for i, m in enumerate(msgs[:-1]) if m.get("role") == "assistant" and m.get("train") is not False]
    for end in reversed(ends):  # the whole record (last message) is what did not fit
        ids, labels = tokenize_for_training(tokenizer, msgs[: end + 1], rec.get("tools"))
        if len(ids) <= max_length:
            return ids, labels
    return None, None


# ---------------------------------------------------------------------------------------------
# model and batch
# ---------------------------------------------------------------------------------------------

def load_model(cfg: Config, model_path: str, precision: training.Precision) -> tuple[Any, str]:
    """The model with LoRA/QLoRA attached (or not, for full fine-tuning). Returns (model, method used)."""
    model = training.load_causal_lm(cfg, model_path, precision)
    if cfg.method == "full":
        return model, "full"
    return training.attach_lora(model, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout,
                                target_modules=cfg.lora_target_modules, fallback=cfg.lora_fallback)


def choose_micro_batch(batch_size: int, setting: Union[int, str], per_record_bytes: int, free_bytes: int) -> int:
    """Records per forward pass. ``auto``: the largest divisor of ``batch_size`` whose activations
    (``per_record_bytes`` for the longest record) fit in a quarter of the free memory; at least 1.
    On a CPU a micro-batch of 1-2 records runs at least as many tokens/s as 4 (measured, README), so the
    split costs nothing and keeps peak memory well below a single big batch."""
    if setting != "auto":
        return int(setting)
    budget = free_bytes / 4
    for micro in sorted((d for d in range(1, batch_size + 1) if batch_size % d == 0), reverse=True):
        if micro * per_record_bytes <= budget:
            return micro
    return 1


def activation_bytes(model: Any, tokens: int) -> int:
    """Rough activation memory of one record of ``tokens`` tokens, forward+backward without
    checkpointing: per token and layer ~12 hidden-size and 4 intermediate-size fp32 tensors
    (measured: SmolLM2-135M, 8 x ~1,200 tokens -> ~16 GB resident). Eager attention also keeps
    each layer's (heads x tokens x tokens) scores and probabilities for the backward, ~10 bytes an
    entry (fp32 scores and softmax, its bf16 copy): at 500 tokens that nearly doubles the figure,
    and a micro-batch sized without it ran train-sft's bench at 13.7 GB instead of ~8. trajtune's
    causal blocks keep about two thirds of that; the estimate keeps the whole (a safe margin)."""
    cfg = getattr(model, "config", None)
    layers = getattr(cfg, "num_hidden_layers", 24) or 24
    hidden = getattr(cfg, "hidden_size", 1024) or 1024
    inter = getattr(cfg, "intermediate_size", 4 * hidden) or 4 * hidden
    total = tokens * layers * (12 * hidden + 4 * inter) * 4
    if getattr(cfg, "_attn_implementation", None) in ("eager", "trajtune_blocks"):
        heads = getattr(cfg, "num_attention_heads", 16) or 16
        total += layers * heads * tokens * tokens * 10
    return int(total)


# ---------------------------------------------------------------------------------------------
# the stage
# ---------------------------------------------------------------------------------------------

def setup(ctx: training.RunContext) -> training.Setup:
    """Tokenize with the shared renderer (loss on trainable assistant turns only), load the model,
    size the micro-batches and build the Trainer."""
    from transformers import TrainingArguments, set_seed

    from trajtune.models import resolve_model
    from trajtune.trainers import PadCollator, SFTLabelTrainer

    cfg, data, precision, run_dir = ctx.cfg, ctx.data, ctx.precision, ctx.run_dir
    has_eval = bool(data.eval)
    model_path = resolve_model(cfg.model)
    tokenizer = training.load_tokenizer(model_path, cfg.trust_remote_code)
    train_ex, train_counts = encode_records(tokenizer, data.train, cfg.max_length, cfg.truncation)
    eval_ex, eval_counts = encode_records(tokenizer, data.eval, cfg.max_length, cfg.truncation)
    if not train_ex:
        raise RunError("no training record is left after tokenization "
                       f"({train_counts['dropped_too_long']} too long, {train_counts['dropped_no_trainable']} with no trainable token)",
                       hint="raise max_length or use truncation: turns (or truncate)")
    training.save_config(cfg, run_dir)
    training.log(f"run folder {run_dir}; {len(train_ex)} train / {len(eval_ex)} eval records; {precision.reason}"
                 + (f"; resuming from {ctx.resume_from}" if ctx.resume_from else ""))

    set_seed(cfg.seed)
    model, method = load_model(cfg, model_path, precision)
    frozen_bf16 = training.store_frozen_bf16(model, precision, method, head=True)
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
    args = TrainingArguments(
        **training.trainer_arguments(
            run_dir=run_dir, precision=precision, has_eval=has_eval, seed=cfg.seed, batch_size=micro,
            gradient_accumulation_steps=accumulation, learning_rate=cfg.learning_rate, epochs=cfg.epochs,
            max_steps=cfg.max_steps, warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm,
            lr_scheduler=cfg.lr_scheduler, logging_steps=cfg.logging_steps, eval_steps=cfg.eval_steps, save_steps=cfg.save_steps,
            save_total_limit=cfg.save_total_limit, eval_delay=cfg.eval_delay, gradient_checkpointing=bool(checkpointing)),
        include_num_input_tokens_seen="non_padding",
        # validation needs the loss only: without this the Trainer gathers every batch's logits
        # (label positions x 49k vocabulary) and concatenates them, padded, across the whole eval set
        prediction_loss_only=True,
        **({"deepspeed": cfg.deepspeed} if cfg.deepspeed else {}),
    )
    early = training.early_stopping_callback(cfg.patience) if has_eval and cfg.patience > 0 else None
    trainer = SFTLabelTrainer(model=model, args=args, train_dataset=train_ex, eval_dataset=eval_ex or None,
                              data_collator=PadCollator(tokenizer.pad_token_id), processing_class=tokenizer,
                              callbacks=ctx.callbacks(early), logits_at_labels_only=cfg.logits_at_labels_only,
                              group_by_length=cfg.group_by_length, decision_weight=cfg.decision_weight)
    info = {"method": method,
            "batch": {"records_per_step": micro * accumulation * args.world_size, "micro_batch_size": micro,
                      "gradient_accumulation_steps": accumulation, "gradient_checkpointing": bool(checkpointing)},
            "params": params, "frozen_bf16_params": frozen_bf16,
            "data": {**data.counts, "train_tokenized": train_counts, "eval_tokenized": eval_counts}}

    def finish(trainer: Any, interrupted: Any) -> dict:
        state = trainer.state
        if has_eval and not interrupted and state.best_metric is not None:
            return {"eval_loss": float(state.best_metric)}  # the best checkpoint is what final/ holds
        return {}

    return training.Setup(trainer=trainer, tokenizer=tokenizer, has_eval=has_eval, early=early, info=info, finish=finish)


STAGE = training.stage(
    NAME, Config, "sft", setup,
    help="Fine-tune a model on sft records (agent trajectories). The loss covers assistant turns only "
         "(thoughts and tool calls), never system/user/tool messages nor turns marked train: false. "
         "Data is validated and review-gated before the model loads; >100 records without --eval-data are "
         "split 90/10 by prompt. Writes RUN_DIR/config.yaml, checkpoint-N/, final/ (adapter or model + tokenizer), "
         "tensorboard/ and training_summary.json. Re-running the same command continues from the newest complete "
         "checkpoint; Ctrl-C/SIGTERM saves a checkpoint first (exit 130). Multi-process: "
         "torchrun --nproc_per_node N -m trajtune.scripts.train_sft ...",
    example="trajtune train-sft data/train.jsonl --config configs/train_sft/smollm2-135m.yaml -o runs/sft "
            "--max-steps 100 --set lora_r=8",
)

run = STAGE.run  # run(cfg) -> summary: the stage as a function

if __name__ == "__main__":
    from trajtune.cli.command import script

    script(STAGE)
