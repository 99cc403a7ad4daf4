"""Shared training helpers for ``train-sft`` and ``train-dpo``.

What lives here (each piece is a plain function or a small Trainer callback):

* run folders: :func:`resolve_run_dir` (timestamped ``runs/<stage>-YYYYmmdd-HHMMSS`` unless
  ``-o RUN_DIR`` is given; with ``resume: auto`` an unfinished run folder whose saved config equals
  this one is reused, so re-running the same command continues it), :func:`save_config`;
* data: :func:`prepare_data` validates every file (``trajtune.schemas.validate.require_valid``)
  before any model is loaded, applies the review gate, the minimum-data check, the automatic
  90/10 split by prompt (no prompt on both sides) and mixing weights (train side only);
* devices: :func:`choose_precision` (bf16 on CUDA; bf16 *autocast* on CPUs with avx512_bf16/AMX,
  trained weights stay fp32, a LoRA run's frozen linears are stored in bf16; fp32 elsewhere);
* resume: :func:`find_checkpoint` (newest *complete* ``checkpoint-N``; a half-written one is
  skipped with a warning), ``resume: auto|never|PATH``;
* callbacks: :class:`GracefulStop` (SIGINT/SIGTERM -> save a checkpoint, stop cleanly),
  :class:`RunMetrics` (losses, grad norm, tokens), :func:`tensorboard_callback`;
* summary: :func:`count_parameters`, :func:`peak_memory_mb`, :func:`write_summary`.

Heavy imports (torch, transformers) happen inside functions.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import re
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Sequence, Union

from trajtune import config as config_mod
from trajtune.errors import ConfigError, DataError, RunError

RUNS_DIR = "runs"
SUMMARY_NAME = "training_summary.json"
CONFIG_NAME = "config.yaml"
_CKPT = re.compile(r"^checkpoint-(\d+)$")
# Keys that do not change what a run computes: ignored when matching a re-run to its run folder.
_RUN_IDENTITY_IGNORES = {"output", "resume"}


def log(msg: str) -> None:
    """Progress/warnings on stderr (rich), rank 0 only in multi-process runs."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    from trajtune.console import err_console

    err_console.print(msg, markup=True, highlight=False, soft_wrap=True)


def warn(msg: str) -> None:
    log(f"[bold yellow]Warning:[/] {msg}")


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


# ---------------------------------------------------------------------------------------------
# run folder and resume
# ---------------------------------------------------------------------------------------------

def _identity(cfg_dict: dict) -> dict:
    return {k: v for k, v in cfg_dict.items() if k not in _RUN_IDENTITY_IGNORES}


def run_finished(run_dir: Path) -> bool:
    """A run is finished when its summary says so (an interrupted run is not)."""
    p = Path(run_dir) / SUMMARY_NAME
    if not p.is_file():
        return False
    try:
        return bool(json.loads(p.read_text("utf-8")).get("finished"))
    except (OSError, ValueError):
        return False


# config fields of the training stages that name what a run reads
INPUT_FIELDS = ("data", "eval_data", "model", "adapter", "tokenizer")


def resolve_run_dir(stage: str, cfg: Any, output_dir: str | None, resume: str) -> tuple[Path, bool]:
    """The run folder for this run, and whether it is a reused (resumable) one.

    ``output_dir`` (``-o``) given: that folder. Otherwise, with ``resume != never``, the newest
    ``runs/<stage>-*`` folder whose ``config.yaml`` equals this config (re-running the same command
    continues it, or finds it finished); else a new timestamped folder (concurrent runs never
    collide: a clash gets a suffix).
    """
    if output_dir:
        from trajtune.paths import guard

        p = Path(output_dir)
        # checkpoints are rotated and final/ is swapped in the run folder: no input may lie in it
        guard({f"--{k.replace('_', '-')}": getattr(cfg, k, None) for k in INPUT_FIELDS}, replaced={"--output": p})
        return p, p.exists() and any(p.iterdir())
    if world_size() > 1:
        raise ConfigError("multi-process runs need an explicit -o RUN_DIR (every process must write to the same folder)")
    base = Path(RUNS_DIR)
    mine = _identity(config_mod.to_dict(cfg))
    if resume != "never" and base.is_dir():
        for cand in sorted(base.glob(f"{stage}-*"), reverse=True):
            saved = cand / CONFIG_NAME
            if not saved.is_file():
                continue
            try:
                import yaml

                old = yaml.safe_load(saved.read_text("utf-8")) or {}
            except (OSError, ValueError):
                continue
            if _identity(old) == mine:
                return cand, True
    stamp = time.strftime("%Y%m%d-%H%M%S")
    p = base / f"{stage}-{stamp}"
    n = 1
    while True:
        try:
            p.mkdir(parents=True, exist_ok=False)
            return p, False
        except FileExistsError:
            n += 1
            p = base / f"{stage}-{stamp}-{n}"


def save_config(cfg: Any, run_dir: Path) -> None:
    """Write the resolved config (secrets redacted) as ``run_dir/config.yaml``."""
    if not is_main_process():
        return
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    config_mod.save(cfg, Path(run_dir) / CONFIG_NAME)


def _weights_present(ckpt: Path) -> bool:
    names = ("adapter_model.safetensors", "adapter_model.bin", "model.safetensors", "pytorch_model.bin",
             "model.safetensors.index.json", "pytorch_model.bin.index.json")
    return any((ckpt / n).is_file() for n in names) or any(ckpt.glob("pytorch_model_fsdp*")) or any(ckpt.glob("global_step*"))


def is_complete_checkpoint(ckpt: Path) -> bool:
    """transformers writes ``trainer_state.json`` last: a checkpoint is complete when it parses
    and the weights are there (a save cut off by a kill lacks one or the other)."""
    ckpt = Path(ckpt)
    state = ckpt / "trainer_state.json"
    if not state.is_file() or not _weights_present(ckpt):
        return False
    try:
        json.loads(state.read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return True


def list_checkpoints(run_dir: Path) -> list[Path]:
    """``checkpoint-N`` folders, newest (highest N) first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if p.is_dir() and (m := _CKPT.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def find_checkpoint(run_dir: Path, resume: str = "auto") -> Path | None:
    """The checkpoint to resume from: ``never`` -> None; a PATH -> it (must be complete);
    ``auto`` -> the newest complete ``checkpoint-N`` in ``run_dir`` (incomplete ones are skipped
    with a warning)."""
    if resume == "never":
        return None
    if resume != "auto":
        p = Path(resume)
        if not p.exists():
            raise ConfigError(f"--resume {resume}: no such checkpoint folder", hint="use auto, never or a checkpoint-N folder")
        if not is_complete_checkpoint(p):
            raise ConfigError(f"--resume {resume}: not a complete checkpoint (no trainer_state.json or weights)",
                              hint="pick another checkpoint-N folder, or use --resume auto")
        return p
    for ckpt in list_checkpoints(run_dir):
        if is_complete_checkpoint(ckpt):
            return ckpt
        warn(f"skipping incomplete checkpoint {ckpt} (cut off while saving)")
    return None


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------

@dataclass
class PreparedData:
    train: list[dict]
    eval: list[dict]
    counts: dict = field(default_factory=dict)


def load_file(path: str, kind: str | tuple, *, allow_unreviewed: bool) -> list[dict]:
    """Validate one file (fails with file:line before any model is loaded), read it, review gate.
    ``kind`` may be a tuple of the kinds a stage reads (train-grpo: task or group records); the
    file is then validated as the kind its records have, which must be one of them."""
    from trajtune.generators.review import require_reviewed
    from trajtune.records import detect_kind
    from trajtune.schemas.validate import require_valid

    if path != "-" and not Path(path).is_file():
        raise ConfigError(f"data file not found: {path}")
    if isinstance(kind, str):
        records = require_valid(path, kind)
    else:
        records = require_valid(path, None)
        found = sorted({detect_kind(r) or "unknown" for r in records} - set(kind))
        if found:
            raise DataError(f"{path}: {' and '.join(found)} records; this stage reads {' or '.join(kind)} records",
                            hint=f"run `trajtune validate {path}` to see each record's kind")
    require_reviewed(records, path, allow_unreviewed)
    return records


def _hash01(key: str, seed: int) -> float:
    h = hashlib.sha1(f"{seed}\x00{key}".encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def hold_out_groups(groups: dict[str, list[int]], n: int, fraction: float, seed: int) -> set[int]:
    """Indices of whole groups, in a seeded order, until ~``fraction`` of the ``n`` records are
    held (never all of them): the one rule behind every automatic validation split."""
    order = sorted(groups, key=lambda k: _hash01(k, seed))
    target = max(1, round(fraction * n))
    held: set[int] = set()
    for key in order:
        if len(held) >= target or len(held) + len(groups[key]) >= n:
            break
        held.update(groups[key])
    return held


def split_by_prompt(records: Sequence[dict], fraction: float, seed: int = 42) -> tuple[list[dict], list[dict]]:
    """Hold out ~``fraction`` of records for validation, grouping by normalized prompt so the
    same prompt never lands on both sides. Deterministic for a given seed."""
    from trajtune.records import normalize_text, prompt_text

    groups: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        groups.setdefault(normalize_text(prompt_text(r)), []).append(i)
    held = hold_out_groups(groups, len(records), fraction, seed)
    train = [r for i, r in enumerate(records) if i not in held]
    ev = [r for i, r in enumerate(records) if i in held]
    return train, ev


def apply_weight(records: list[dict], weight: float, seed: int) -> list[dict]:
    """Mixing weight: the file contributes round(weight * n) records (whole copies, then a seeded
    sample of the remainder). 1.0 keeps the file as it is."""
    if weight == 1.0 or not records:
        return list(records)
    n_out = round(weight * len(records))
    whole, rest = divmod(n_out, len(records))
    rng = random.Random(seed)
    return list(records) * whole + rng.sample(list(records), rest)


def prepare_data(data: Sequence[str], kind: str | tuple, *, weights: Sequence[float] | None = None,
                 eval_data: Sequence[str] | None = None, min_records: int = 50, allow_unreviewed: bool = False,
                 eval_fraction: float = 0.1, auto_split_over: int = 100, seed: int = 42,
                 max_eval_records: int = 0) -> PreparedData:
    """Everything between the data files and the tokenizer, shared by train-sft and train-dpo.

    1) validate + read + review gate each file; 2) minimum data; 3) automatic split by prompt
    when there are more than ``auto_split_over`` records and no eval file; 4) mixing weights on
    the train side only (so upsampled copies never leak into validation); 5) at most
    ``max_eval_records`` of the validation records (0: all), evenly spaced through them: the
    split decides what is trained, this only how many held-out records each evaluation reads.
    """
    if not data:
        raise ConfigError("no training data given", hint="pass one or more JSONL files: trajtune train-sft train.jsonl")
    weights = list(weights) if weights else [1.0] * len(data)
    if len(weights) != len(data):
        raise ConfigError(f"weights: {len(weights)} weights for {len(data)} data files; give one weight per file")
    if any(w < 0 for w in weights):
        raise ConfigError("weights must be >= 0")
    per_file = [load_file(p, kind, allow_unreviewed=allow_unreviewed) for p in data]
    eval_records: list[dict] = []
    for p in eval_data or []:
        eval_records.extend(load_file(p, kind, allow_unreviewed=allow_unreviewed))
    n_total = sum(len(r) for r in per_file)
    unit = "preference pairs" if kind == "preference" else f"{kind if isinstance(kind, str) else ' or '.join(kind)} records"
    if n_total < min_records:
        raise DataError(f"only {n_total} {unit} in {', '.join(data)}; at least {min_records} are needed",
                        hint="add data, or lower min_records (--set min_records=N) if you know what you are doing")
    split = "file" if eval_data else "none"
    if not eval_data and n_total > auto_split_over:
        split = "auto"
    if split == "auto":  # one split over all files, so a prompt never sits on both sides
        owner = {id(r): i for i, records in enumerate(per_file) for r in records}
        kept, held = split_by_prompt([r for records in per_file for r in records], eval_fraction, seed)
        eval_records.extend(held)
        per_file = [[r for r in kept if owner[id(r)] == i] for i in range(len(per_file))]
    train: list[dict] = []
    for i, (records, w) in enumerate(zip(per_file, weights)):
        train.extend(apply_weight(records, w, seed + i))
    from trajtune.generators.review import PENDING, review_state

    approved = sum(1 for records in per_file for r in records if review_state(r) != PENDING)
    held_out = len(eval_records)
    if 0 < max_eval_records < held_out:
        eval_records = [eval_records[i * held_out // max_eval_records] for i in range(max_eval_records)]
    counts = {"files": {p: len(r) for p, r in zip(data, per_file)}, "weights": dict(zip(data, weights)),
              "records_read": n_total, "approved": approved, "train_records": len(train), "eval_records": len(eval_records),
              "eval_split": split, **({"held_out_records": held_out} if held_out != len(eval_records) else {})}
    return PreparedData(train, eval_records, counts)


# ---------------------------------------------------------------------------------------------
# devices and precision
# ---------------------------------------------------------------------------------------------

def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 matrix instructions (avx512_bf16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@dataclass
class Precision:
    device: str  # "cuda" | "cpu"
    bf16: bool  # bf16 autocast (CPU) / bf16 mixed precision (CUDA); master weights stay fp32
    reason: str


def choose_precision(setting: str = "auto", device: str = "auto") -> Precision:
    """``auto``: bf16 on CUDA when supported; on CPU bf16 autocast when the CPU has native bf16
    (measured 2.0x on this machine, weights stay fp32), else fp32. ``fp32``/``bf16`` force it."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda requested but no CUDA device is available", hint="use device: auto or cpu")
    if setting == "fp32":
        return Precision(device, False, "fp32 (forced)")
    if setting == "bf16":
        return Precision(device, True, "bf16 (forced)")
    if device == "cuda":
        ok = torch.cuda.is_bf16_supported()
        return Precision(device, ok, "bf16 on CUDA" if ok else "fp32: this GPU has no bf16")
    if cpu_supports_bf16():
        return Precision(device, True, "bf16 autocast: the CPU has native bf16 (trained weights stay fp32)")
    return Precision(device, False, "fp32 on CPU")


# ---------------------------------------------------------------------------------------------
# callbacks
# ---------------------------------------------------------------------------------------------

def _callback_base():
    from transformers import TrainerCallback

    return TrainerCallback


def make_graceful_stop():
    """A TrainerCallback that turns SIGINT/SIGTERM into 'save a checkpoint now and stop'.

    The first signal is handled at the end of the current optimizer step; a second one restores
    the default handler's behaviour (immediate exit).
    """
    Base = _callback_base()

    class GracefulStop(Base):
        def __init__(self) -> None:
            self.signal: str | None = None
            self._old: dict[int, Any] = {}

        def install(self) -> "GracefulStop":
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    self._old[sig] = signal.signal(sig, self._handle)
                except ValueError:  # not the main thread
                    pass
            return self

        def uninstall(self) -> None:
            for sig, old in self._old.items():
                signal.signal(sig, old)
            self._old.clear()

        def _handle(self, signum, frame) -> None:
            if self.signal is not None:  # second signal: give up immediately
                raise KeyboardInterrupt
            self.signal = signal.Signals(signum).name
            warn(f"{self.signal} received: saving a checkpoint after this step, then stopping "
                 "(re-run the same command to resume; send it again to exit now)")

        def on_step_end(self, args, state, control, **kwargs):
            if self.signal is not None:
                control.should_save = True
                control.should_training_stop = True
            return control

    return GracefulStop()


def make_run_metrics():
    """A TrainerCallback keeping the numbers the summary needs (last train loss, grad norm,
    eval losses) and printing progress on stderr."""
    Base = _callback_base()

    class RunMetrics(Base):
        def __init__(self) -> None:
            self.train_loss: float | None = None
            self.grad_norm: float | None = None
            self.eval_loss: float | None = None
            self.eval_history: list[tuple[int, float]] = []
            self.extra: dict[str, float] = {}

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if "loss" in logs:
                self.train_loss = float(logs["loss"])
            if "grad_norm" in logs and logs["grad_norm"] is not None:
                self.grad_norm = float(logs["grad_norm"])
            if "eval_loss" in logs:
                self.eval_loss = float(logs["eval_loss"])
                self.eval_history.append((state.global_step, self.eval_loss))
            for k, v in logs.items():
                if k.startswith("eval_") and isinstance(v, (int, float)):
                    self.extra[k] = float(v)
            shown = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in logs.items()  # 4 significant digits: lr 2e-05, not 0.0
                     if k in ("loss", "grad_norm", "learning_rate", "eval_loss", "epoch") or k.startswith("eval_rewards")}
            if shown:
                log(f"step {state.global_step}/{state.max_steps} " + " ".join(f"{k}={v}" for k, v in shown.items()))

    return RunMetrics()


def tensorboard_callback(run_dir: Path):
    """Log to ``run_dir/tensorboard`` (rank 0; the writer is reopened there after train end too)."""
    from transformers.integrations import TensorBoardCallback

    if not is_main_process():
        return None
    try:
        cb = TensorBoardCallback()
    except RuntimeError:  # pragma: no cover - tensorboard is an install requirement
        warn("tensorboard is not installed; no TensorBoard logs")
        return None
    cb.logging_dir = str(Path(run_dir) / "tensorboard")
    return cb


def quiet_libraries() -> None:
    """No HF progress bars on stderr/stdout, no deprecation chatter (FutureWarning: transformers 5
    renames, not the user's concern) from inside the libraries, the same for every training stage."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    os.environ.setdefault("TQDM_DISABLE", "1")  # trl's reference pass progress bar


def quiet_trainer(trainer: Any) -> Any:
    """Keep stdout free (for --json): drop the Trainer's stdout printer and HF progress bars;
    progress goes to stderr through :func:`make_run_metrics`."""
    from transformers import PrinterCallback, ProgressCallback
    from transformers.utils import logging as hf_logging

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    hf_logging.disable_progress_bar()
    return trainer


def early_stopping_callback(patience: int):
    from transformers import EarlyStoppingCallback

    return EarlyStoppingCallback(early_stopping_patience=patience)


def trainer_arguments(*, run_dir: Path, precision: Precision, has_eval: bool, seed: int, batch_size: int,
                      gradient_accumulation_steps: int, learning_rate: float, epochs: float, max_steps: int,
                      warmup_steps: int, weight_decay: float, max_grad_norm: float, lr_scheduler: str,
                      logging_steps: int, eval_steps: int, save_steps: int, save_total_limit: int | None,
                      gradient_checkpointing: bool, num_workers: int = 0, eval_delay: int = 0) -> dict:
    """Keyword arguments for ``TrainingArguments`` (or trl's configs, which subclass it) shared by
    both trainers: checkpoints every ``save_steps``, eval + best-checkpoint restore when there is a
    validation set (none before step ``eval_delay``; the last step is always evaluated), no hub, no
    wandb (TensorBoard is added as a callback)."""
    kw: dict[str, Any] = dict(
        output_dir=str(run_dir), seed=seed, data_seed=seed,
        per_device_train_batch_size=batch_size, per_device_eval_batch_size=batch_size,
        gradient_accumulation_steps=gradient_accumulation_steps, learning_rate=learning_rate,
        num_train_epochs=epochs, max_steps=max_steps, warmup_steps=warmup_steps, weight_decay=weight_decay,
        max_grad_norm=max_grad_norm, lr_scheduler_type=lr_scheduler,
        logging_steps=logging_steps, logging_first_step=True,
        save_strategy="steps", save_steps=save_steps, save_total_limit=save_total_limit,
        report_to="none", disable_tqdm=True, remove_unused_columns=False,
        activation_checkpointing=gradient_checkpointing, dataloader_num_workers=num_workers,
        # non-reentrant checkpointing works with frozen embeddings (LoRA) without forcing input grads
        activation_checkpointing_kwargs={"use_reentrant": False} if gradient_checkpointing else None,
        use_cpu=precision.device == "cpu", bf16=precision.bf16, fp16=False,
        ddp_find_unused_parameters=False,
    )
    if has_eval:
        kw.update(eval_strategy="steps", eval_steps=eval_steps, eval_delay=eval_delay, load_best_model_at_end=True,
                  metric_for_best_model="eval_loss", greater_is_better=False)
    else:
        kw.update(eval_strategy="no")
    return kw


def check_eval_save_steps(has_eval: bool, eval_steps: int, save_steps: int) -> None:
    if has_eval and save_steps % eval_steps != 0:
        raise ConfigError(f"save_steps ({save_steps}) must be a multiple of eval_steps ({eval_steps}) so the best "
                          "checkpoint can be restored", hint=f"e.g. --set save_steps={eval_steps}")


# ---------------------------------------------------------------------------------------------
# models and summary
# ---------------------------------------------------------------------------------------------

def attach_lora(model: Any, *, r: int, alpha: int, dropout: float, target_modules: Any, fallback: str,
                task_type: str = "CAUSAL_LM") -> tuple[Any, str]:
    """Wrap ``model`` with a LoRA adapter. If LoRA cannot attach: stop with the reason, or, when
    ``fallback == "full"``, warn loudly and return the model for full fine-tuning.
    Returns (model, method actually used)."""
    from peft import LoraConfig, get_peft_model

    tm = target_modules
    if isinstance(tm, (list, tuple)) and len(tm) == 1:
        tm = tm[0]
    lcfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=tm, task_type=task_type, bias="none")
    try:
        wrapped = get_peft_model(model, lcfg)
    except (ValueError, TypeError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0][:300]
        if fallback == "full":
            warn(f"[bold]LoRA could not attach ({reason}); FALLING BACK TO FULL FINE-TUNING as lora_fallback: full "
                 "says. This trains every weight: far more memory and a full model, not an adapter, in final/.[/]")
            return model, "full"
        raise ConfigError(f"LoRA could not attach to this model: {reason}",
                          hint="set lora_target_modules to module names the model has, or lora_fallback: full") from None
    from trajtune.dropout import speed_up_lora_dropout

    speed_up_lora_dropout(wrapped)  # the same dropout, 2.6-2.8x faster on a CPU (bench/bench_dropout.py)
    return wrapped, "lora"


def frozen_linears_to_bf16(model: Any) -> int:
    """Store the frozen weights of linear layers in bf16; returns how many parameters changed.

    Under bf16 autocast on a CPU every linear layer casts its fp32 weight to bf16 on each forward
    pass (autocast caches casts only for weights that require grad, so a frozen LoRA base is cast
    again for every micro-batch, and the copy is kept for the backward). Those bf16 copies are all
    the matmuls ever see, so storing them once gives the same numbers (round-to-nearest both ways:
    a test compares loss and gradients bit for bit) with less memory and no casts. Embeddings,
    norms, LoRA's own weights and the output head (tied to the input embeddings in most small
    models; trajtune's completion-only heads project in fp32) stay fp32, so the residual stream
    keeps its precision. Only valid while every forward runs under bf16 autocast."""
    import torch

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    skip = {id(head.weight)} if head is not None and getattr(head, "weight", None) is not None else set()
    changed = 0
    for module in model.modules():
        w = getattr(module, "weight", None)
        if (isinstance(module, torch.nn.Linear) and isinstance(w, torch.nn.Parameter) and not w.requires_grad
                and w.dtype == torch.float32 and id(w) not in skip):
            w.data = w.data.to(torch.bfloat16)
            changed += w.numel()
    return changed


def keep_lora_inputs_bf16(model: Any) -> int:
    """Stop peft from casting a LoRA layer's bf16 input up to its fp32 A matrix; returns how many
    layers changed. Under bf16 autocast that cast is undone at once (the A matmul runs in bf16), so
    the inputs that already arrive in bf16 (attention output into o_proj, SiLU x up into down_proj)
    went bf16 -> fp32 -> bf16 on every forward, and their gradients back the same way. Without it
    the dropout runs on the bf16 values: the same numbers (the product is formed in fp32 and rounded
    to bf16 once either way; a test compares loss and gradients bit for bit with dropout on).
    fp32 inputs are untouched (peft never cast those). peft's own switch
    (``cast_input_dtype_enabled``, what ``peft.helpers.disable_input_dtype_casting`` sets).
    Only valid while every forward runs under bf16 autocast, as :func:`frozen_linears_to_bf16`."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    n = 0
    for module in model.modules():
        if isinstance(module, BaseTunerLayer) and getattr(module, "cast_input_dtype_enabled", False):
            module.cast_input_dtype_enabled = False
            n += 1
    return n


def head_to_bf16(model: Any) -> int:
    """Give a frozen output head tied to the input embeddings its own bf16 weight; returns how many
    parameters it holds (0 when the head is trained, untied, or not fp32).

    train-sft projects to the vocabulary under bf16 autocast, which casts the tied fp32 matrix
    (49,152 x 576 in the default model) to bf16 on every forward, because a frozen weight's cast
    is not cached: the stored copy is exactly that cast (a test compares loss and gradients bit
    for bit), made once. The embeddings keep their fp32 weight (the residual stream starts from
    it). Not for heads that project in fp32 on purpose (train-dpo's completion-only head)."""
    import torch

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    w = getattr(head, "weight", None)
    if (not isinstance(head, torch.nn.Linear) or not isinstance(w, torch.nn.Parameter) or w.requires_grad
            or w.dtype != torch.float32 or emb is None or w is not getattr(emb, "weight", None)):
        return 0
    head.weight = torch.nn.Parameter(w.detach().to(torch.bfloat16), requires_grad=False)
    return head.weight.numel()


def store_frozen_bf16(model: Any, precision: Precision, method: str, head: bool = False) -> int:
    """On a CPU under bf16 autocast, keep a LoRA run's frozen linear weights in bf16
    (:func:`frozen_linears_to_bf16`: the same numbers; on the default model a train-sft step 1.03x
    faster with two records per forward, 1.15x with one; train-dpo as fast in the demo, slower in a
    4-step bench (README); the demo's train-sft / train-dpo peaks 0.1 / 0.5 GB lower). GPUs already
    load a LoRA base in bf16; full fine-tuning has no frozen weights. ``head``: also the output head
    tied to the embeddings (:func:`head_to_bf16`; train-sft, whose head runs under autocast)."""
    if precision.device != "cpu" or not precision.bf16 or not method.startswith("lora"):
        return 0
    n = frozen_linears_to_bf16(model) + (head_to_bf16(model) if head else 0)
    keep_lora_inputs_bf16(model)
    if n:
        log(f"frozen linear weights stored in bf16 ({n / 1e6:.1f}M parameters): the copies bf16 autocast "
            "would otherwise make on every forward pass")
    return n


def count_parameters(model: Any) -> dict:
    total = trainable = 0
    for p in model.parameters():
        n = p.numel()
        total += n
        if p.requires_grad:
            trainable += n
    return {"total": total, "trainable": trainable}


def peak_memory_mb(device: str = "cpu") -> float:
    """Peak memory of this process: CUDA max allocated, else peak resident set size."""
    import torch

    if device == "cuda" and torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def free_memory_bytes(device: str = "cpu") -> int:
    """Memory a run can still use: free CUDA memory, else the system's available memory (psutil,
    which reads /proc/meminfo on Linux and the right source elsewhere; no silent guess)."""
    import torch

    if device == "cuda" and torch.cuda.is_available():
        return int(torch.cuda.mem_get_info()[0])
    import psutil

    return int(psutil.virtual_memory().available)


def perplexity(loss: float | None) -> float | None:
    if loss is None or not math.isfinite(loss):
        return None
    return round(math.exp(min(loss, 50.0)), 4)


def write_summary(run_dir: Path, summary: dict) -> Path:
    from trajtune.jsonl import write_json

    p = Path(run_dir) / SUMMARY_NAME
    if is_main_process():
        write_json(p, summary)
    return p


def stop_reason(*, interrupted: str | None, early_stopping: Any, global_step: int, max_steps: int, patience: int,
                metric: str = "eval_loss") -> str:
    if interrupted:
        return f"interrupted ({interrupted})"
    counter = getattr(early_stopping, "early_stopping_patience_counter", 0) if early_stopping is not None else 0
    if early_stopping is not None and counter >= patience:
        return f"early stopping ({metric.replace('_', ' ')} did not improve for {patience} evaluations)"
    if max_steps and max_steps > 0 and global_step >= max_steps:
        return "max_steps reached"
    return "epochs completed"


class Timer:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return round(time.perf_counter() - self.start, 2)


def seconds_since(t0: float) -> float:
    return round(time.perf_counter() - t0, 2)



# ---------------------------------------------------------------------------------------------
# the shared config and the one run skeleton of every training stage
# ---------------------------------------------------------------------------------------------

F = config_mod.field


@dataclass
class TrainConfig:
    """What every training stage shares; each stage extends it with only what is its own and may
    change a default with :func:`redefault` (the help text stays declared once, here)."""

    # what to train on
    data: list[str] = F(default_factory=list, positional=True, metavar="DATA",
                        help="training JSONL files (sft records for train-sft, preference pairs for train-dpo, task records for train-grpo)")
    model: str = F("default", help="model folder, .gguf file, hub id (org/name), or 'default' (SmolLM2-135M-Instruct)")
    output: Optional[str] = F(None, flags=("-o",), output=True, metavar="RUN_DIR",
                              help="run folder (default runs/<stage>-<timestamp>; re-running the same command resumes it)")
    weights: Optional[list[float]] = F(None, help="mixing weight per data file (1.0 = as is, 2.0 = twice, 0.5 = half)")
    eval_data: Optional[list[str]] = F(None, split=False, help="validation files; without them more than 100 records are split 90/10 by prompt")
    resume: str = F("auto", help="auto (newest complete checkpoint), never, or a checkpoint folder")
    allow_unreviewed: bool = F(False, help="train on synthetic records still pending review")
    min_records: int = F(50, help="refuse to train on fewer records")
    eval_fraction: float = F(0.1, help="share of records held out by the automatic split")
    auto_split: bool = F(True, help="without eval_data, hold out eval_fraction of the records (by prompt) when there are more than 100")
    max_eval_records: int = F(0, help="validate on at most this many of the held-out records, evenly spaced (0 = all): a cheaper evaluation; the others stay out of training")
    seed: int = F(42, help="seed for splits, data order, initialisation")
    max_length: int = F(2048, help="max tokens per record (each side of a preference pair)")
    truncation: Literal["drop", "truncate"] = F("drop", help="records longer than max_length: drop them, or cut the end")
    # method
    method: Literal["lora", "full", "qlora"] = F("lora", help="lora, full fine-tuning, or qlora (4-bit, CUDA only)")
    lora_r: int = F(16, help="LoRA rank")
    lora_alpha: int = F(32, help="LoRA alpha")
    lora_dropout: float = F(0.05, help="LoRA dropout")
    lora_target_modules: list[str] = F(default_factory=lambda: ["all-linear"],
                                       help="modules LoRA wraps; all-linear = every linear layer but the output head")
    lora_fallback: Literal["none", "full"] = F("none", help="if LoRA cannot attach: none = stop with the reason, full = full fine-tuning (loud warning)")
    trust_remote_code: bool = F(False, help="allow model code from the hub (off by default)")
    # optimisation
    epochs: float = F(1.0, help="passes over the training data")
    max_steps: int = F(-1, help="stop after this many optimizer steps (-1 = use epochs)")
    batch_size: int = F(8, help="records per device per optimizer step (before gradient accumulation)")
    gradient_accumulation_steps: int = F(1, help="batches accumulated per optimizer step (effective batch = batch_size x this x processes)")
    learning_rate: float = F(2e-4, flags=("--lr",), help="peak learning rate")
    lr_scheduler: str = F("linear", help="transformers scheduler name (linear, cosine, constant, ...)")
    warmup_steps: int = F(0, help="linear warmup steps")
    weight_decay: float = F(0.0, help="AdamW weight decay")
    max_grad_norm: float = F(1.0, help="gradient clipping")
    # evaluation, checkpoints, logging
    eval_steps: int = F(50, help="evaluate every N steps (when there is a validation set)")
    eval_delay: int = F(0, help="no evaluation before this step; the last step is always evaluated (eval_delay = max_steps: one evaluation, at the end)")
    patience: int = F(3, help="early stopping: evaluations without eval-loss improvement before stopping (0 = off)")
    save_steps: int = F(50, help="checkpoint every N steps (a multiple of eval_steps when evaluating)")
    save_total_limit: Optional[int] = F(3, help="keep at most N checkpoints (the best one is always kept)")
    logging_steps: int = F(10, help="log train loss every N steps")
    # speed
    precision: Literal["auto", "fp32", "bf16"] = F("auto", help="auto: bf16 on CUDA and on CPUs with native bf16 (autocast, fp32 weights), else fp32")
    device: Literal["auto", "cpu", "cuda"] = F("auto", help="where to train")
    gradient_checkpointing: Union[bool, Literal["auto"]] = F("auto", help="recompute activations to save memory (slower); auto: on only when the largest batch's activations would not fit in half the free memory")
    logits_at_labels_only: bool = F(True, help="run the vocabulary projection only where there is a label")
    attn_implementation: Literal["auto", "trajtune_blocks", "eager", "sdpa"] = F("auto", help="attention kernel for training: auto = trajtune_blocks on a CPU (eager attention's numbers bit for bit under bf16 autocast, computed in causal row blocks: less memory, README design notes; eager was 1.10x faster than SDPA's CPU kernels), the model's default (SDPA) on CUDA")
    # scale-out (GPU clusters; launch with torchrun or accelerate launch)
    deepspeed: Optional[str] = F(None, help="DeepSpeed JSON config (e.g. configs/deepspeed/zero3.json); FSDP comes from the accelerate config")

    def check(self) -> None:
        if self.batch_size < 1 or self.gradient_accumulation_steps < 1:
            raise ConfigError("batch_size and gradient_accumulation_steps must be >= 1")
        if self.max_length < 8:
            raise ConfigError("max_length must be >= 8")
        if self.max_steps == 0 or (self.max_steps < 0 and self.epochs <= 0):
            raise ConfigError("nothing to train: set max_steps > 0 or epochs > 0")
        if not 0 < self.eval_fraction < 1:
            raise ConfigError("eval_fraction must be between 0 and 1")
        if min(self.eval_steps, self.save_steps, self.logging_steps) < 1:
            raise ConfigError("eval_steps, save_steps and logging_steps must be >= 1")
        if self.eval_delay < 0 or self.max_eval_records < 0:
            raise ConfigError("eval_delay and max_eval_records must be >= 0")
        if self.output == "-":
            raise ConfigError("a run writes a folder: -o RUN_DIR, not '-'")


def redefault(name: str, value: Any) -> Any:
    """A stage's own default for a :class:`TrainConfig` field, keeping its one help text."""
    import dataclasses

    base = {f.name: f for f in dataclasses.fields(TrainConfig)}[name]
    if isinstance(value, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=base.metadata)
    return dataclasses.field(default=value, metadata=base.metadata)


@dataclass
class RunContext:
    """What the skeleton hands a stage's ``setup``: the run folder, resume point, data, devices and
    the callbacks its Trainer must be built with."""

    stage: str
    cfg: Any
    run_dir: Path
    resume_from: Path | None
    data: "PreparedData"
    precision: Precision
    stopper: Any
    metrics: Any
    tensorboard: Any

    def callbacks(self, early: Any = None) -> list:
        cbs = [c for c in (self.stopper, self.metrics, early, self.tensorboard) if c is not None]
        if os.environ.get("TRAJTUNE_TEST_STEP_SLEEP"):  # test hook: slow steps down so a test can kill mid-run
            from trajtune.trainers import SleepPerStep

            cbs.append(SleepPerStep(float(os.environ["TRAJTUNE_TEST_STEP_SLEEP"])))
        return cbs


@dataclass
class Setup:
    """What a stage's ``setup`` returns: the Trainer ready to train and what the summary needs."""

    trainer: Any
    tokenizer: Any
    has_eval: bool
    early: Any
    info: dict  # summary fields known before training (method, batch, data counts, params, ...)
    finish: Any = None  # function(trainer, interrupted) -> dict of summary fields after training
    before_final: Any = None  # function(trainer) called before final/ is written (may change the weights it saves)
    best_metric: str = "eval_loss"  # the metric of the best checkpoint and early stopping (summary: best_<it>)


def run_training(stage: str, cfg: TrainConfig, kind: str | tuple, setup: Any) -> dict:
    """The one skeleton of every training stage: run folder and skip-if-finished, resume point,
    data (validated, review-gated, split, weighted) before any model loads, the stage's ``setup``
    (tokenize, model, Trainer), training with SIGINT/SIGTERM -> checkpoint and stop, the final/
    swap, and training_summary.json. Returns the summary (``exit_code`` 130 when interrupted)."""
    t0 = Timer()
    quiet_libraries()
    # 1) the run folder; a finished run is not trained again
    run_dir, reused = resolve_run_dir(stage, cfg, cfg.output, cfg.resume)
    if reused and cfg.resume != "never" and run_finished(run_dir):
        log(f"{run_dir} already holds a finished run; nothing to do (use --resume never or a new -o RUN_DIR to train again)")
        summary = json.loads((run_dir / SUMMARY_NAME).read_text("utf-8"))
        return {**summary, "skipped": True, "exit_code": 0}
    fresh = not cfg.output and not reused  # a timestamped folder this run just made
    try:
        resume_from = find_checkpoint(run_dir, cfg.resume)
        # 2) data, before any model is loaded
        data = prepare_data(cfg.data, kind, weights=cfg.weights, eval_data=cfg.eval_data, min_records=cfg.min_records,
                            allow_unreviewed=cfg.allow_unreviewed, eval_fraction=cfg.eval_fraction, seed=cfg.seed,
                            auto_split_over=100 if cfg.auto_split else float("inf"), max_eval_records=cfg.max_eval_records)
        check_eval_save_steps(bool(data.eval), cfg.eval_steps, cfg.save_steps)
        from trajtune.advice import shortfall

        if (below := shortfall(kind if isinstance(kind, str) else kind[0], data.counts["approved"])) is not None:  # the same words as `trajtune advise`
            warn(below)
        precision = choose_precision(cfg.precision, cfg.device)
        if cfg.method == "qlora" and precision.device != "cuda":
            raise ConfigError("method: qlora needs a CUDA GPU (bitsandbytes 4-bit); on CPU use method: lora")
        tb = tensorboard_callback(run_dir)
        ctx = RunContext(stage, cfg, run_dir, resume_from, data, precision, make_graceful_stop(), make_run_metrics(), tb)
        # 3) the stage: tokenize, model, Trainer
        built = setup(ctx)
    except BaseException:
        if fresh:  # bad data or setup: leave no empty runs/<stage>-<time> folder behind
            with contextlib.suppress(OSError):
                run_dir.rmdir()  # only when nothing was written to it
        raise
    trainer, metrics, stopper = built.trainer, ctx.metrics, ctx.stopper
    quiet_trainer(trainer)
    # 4) train (SIGINT/SIGTERM -> checkpoint + clean stop)
    tokens_before = 0
    if resume_from is not None:
        tokens_before = int(json.loads((resume_from / "trainer_state.json").read_text("utf-8")).get("num_input_tokens_seen", 0))
    stopper.install()
    t_train = Timer()
    try:
        result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    finally:
        stopper.uninstall()
    train_time = t_train.elapsed()
    state = trainer.state
    interrupted = stopper.signal
    if metrics.train_loss is not None and metrics.train_loss != metrics.train_loss:
        raise RunError("training diverged (loss is NaN)", hint="lower learning_rate (or beta for train-dpo)")
    # 5) final/: adapter or model + tokenizer, swapped in whole
    final_dir = None
    if not interrupted and built.before_final is not None:
        built.before_final(trainer)
    if not interrupted:
        final_dir = run_dir / "final"
        tmp = run_dir / "final.tmp"
        if is_main_process() and tmp.exists():
            shutil.rmtree(tmp)
        trainer.save_model(str(tmp))
        if is_main_process():
            built.tokenizer.save_pretrained(str(tmp))
            (tmp / "training_args.bin").unlink(missing_ok=True)  # a pickle; the run's config.yaml says it all
            shutil.rmtree(tmp / "ref", ignore_errors=True)  # trl's frozen reference copy of an SFT adapter
            if final_dir.exists():
                shutil.rmtree(final_dir)
            os.replace(tmp, final_dir)
    after = built.finish(trainer, interrupted) if built.finish is not None else {}
    tokens_now = after.pop("tokens_this_run", None)
    tokens_seen = int(state.num_input_tokens_seen or 0) if tokens_now is None else tokens_before + tokens_now
    trained = (tokens_seen - tokens_before) if tokens_now is None else tokens_now
    eval_loss = after.pop("eval_loss", metrics.eval_loss)
    summary = {
        "stage": stage, "finished": not interrupted,
        "stop_reason": stop_reason(interrupted=interrupted, early_stopping=built.early, global_step=state.global_step,
                                   max_steps=state.max_steps if cfg.max_steps > 0 else 0, patience=cfg.patience,
                                   metric=built.best_metric),
        "run_dir": str(run_dir), "final": str(final_dir) if final_dir else None, "model": cfg.model,
        **built.info,
        "device": precision.device, "precision": precision.reason, "world_size": trainer.args.world_size,
        "attention": getattr(getattr(trainer.model, "config", None), "_attn_implementation", None),
        "resumed_from": str(resume_from) if resume_from else None,
        "global_step": state.global_step, "max_steps": state.max_steps,
        "train_loss": metrics.train_loss, "train_loss_mean": round(float(result.training_loss), 6) if result else None,
        "eval_loss": eval_loss, "perplexity": perplexity(eval_loss), "eval_history": metrics.eval_history,
        **after,
        "grad_norm": metrics.grad_norm,
        "best_checkpoint": state.best_model_checkpoint, f"best_{built.best_metric}": state.best_metric,
        "tokens_seen": tokens_seen,
        "tokens_per_second": round(trained / train_time, 1) if train_time > 0 else None,
        "peak_memory_mb": peak_memory_mb(precision.device),
        "train_time_s": train_time, "wall_time_s": t0.elapsed(),
        "loss_history": [{"step": h["step"], "loss": h["loss"]} for h in state.log_history if "loss" in h],
    }
    write_summary(run_dir, summary)
    end_distributed()
    return {**summary, "exit_code": 130 if interrupted else 0}


def end_distributed() -> None:
    """Take the process group down once every rank has finished: gloo's threads still alive at
    interpreter exit abort a finished rank ("terminate called without an active exception",
    SIGABRT), and torchrun then reports the whole run as failed (seen once in the two-process test)."""
    try:
        import torch.distributed as dist
    except ImportError:
        return
    if dist.is_available() and dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.barrier()
            dist.destroy_process_group()


def load_causal_lm(cfg: TrainConfig, model_path: str, precision: Precision) -> Any:
    """The model as every training stage loads it: QLoRA 4-bit (CUDA) when asked; LoRA on a GPU
    keeps frozen weights in bf16; full fine-tuning and every CPU run keep fp32 master weights."""
    import torch
    from transformers import AutoModelForCausalLM

    kw: dict[str, Any] = {"trust_remote_code": cfg.trust_remote_code}
    if cfg.method == "qlora":
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise ConfigError("method: qlora needs bitsandbytes", hint="pip install 'trajtune[qlora]'") from None
        from transformers import BitsAndBytesConfig

        kw["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if precision.bf16 else torch.float16)
    kw["dtype"] = torch.bfloat16 if (precision.device == "cuda" and precision.bf16 and cfg.method != "full") else torch.float32
    if (attn := attention_for(getattr(cfg, "attn_implementation", "auto"), precision.device)) is not None:
        kw["attn_implementation"] = attn
    try:
        try:
            model = AutoModelForCausalLM.from_pretrained(model_path, **kw)
        except ValueError as exc:
            from trajtune.attention import NAME

            if (kw.get("attn_implementation") != NAME or getattr(cfg, "attn_implementation", "auto") != "auto"
                    or "attn" not in str(exc).lower() and "attention" not in str(exc).lower()):
                raise
            log(f"this model does not take custom attention ({str(exc).splitlines()[0][:160]}); eager attention instead")
            kw["attn_implementation"] = "eager"
            model = AutoModelForCausalLM.from_pretrained(model_path, **kw)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load model {cfg.model}: {str(exc).splitlines()[0][:300]}",
                          hint="pass --model with a local model folder, a .gguf file, or 'default'") from None
    model.config.use_cache = False
    if cfg.method == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=bool(cfg.gradient_checkpointing))
    return model


def attention_for(setting: str, device: str) -> str | None:
    """The attention kernel a training stage loads the model with (None: the model's default).

    On a CPU, ``auto`` is ``trajtune_blocks`` (:mod:`trajtune.attention`): eager attention's numbers
    (bf16 scores, fp32 softmax) computed in causal row blocks, so the upper triangle of the scores
    is neither computed, masked, normalised nor kept; README design notes give the measured step.
    Eager itself had replaced SDPA's CPU kernel (flash attention for CPU with a padding mask), which
    spent 37% of a train-sft step where eager's matmuls and softmax cost 16%. On CUDA the model's
    default (SDPA / flash) is kept."""
    if setting == "auto":
        setting = "trajtune_blocks" if device == "cpu" else None
    if setting == "trajtune_blocks":
        from trajtune.attention import register

        register()
    return setting


def load_tokenizer(path: str, trust_remote_code: bool) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def stage(name: str, config: type, kind: str | tuple, setup: Any, *, help: str, example: str) -> Any:
    """A training stage: ``run`` is :func:`run_training` with the stage's own ``setup``."""
    from trajtune.stage import Stage

    def run(cfg: Any) -> dict:
        return run_training(name, cfg, kind, setup)

    run.__doc__ = f"Run one {name} job end to end; returns the training summary (also written to disk)."
    return Stage(name=name, config=config, run=run, render=render_summary, help=help, example=example,
                 lineage=lineage)


def lineage(cfg: Any, summary: dict) -> dict:
    """What a training run's manifest adds: the run folder (final/, the summary, the config) and
    the model it made (base, the adapter it continued, method)."""
    run_dir = Path(summary["run_dir"])
    keys = ("global_step", "train_loss", "eval_loss", "perplexity", "tokens_per_second", "train_time_s",
            "rewards_accuracy", "eval_rewards_accuracy")
    return {"output": str(run_dir),
            "outputs": [p for p in (run_dir / "final", run_dir / SUMMARY_NAME, run_dir / CONFIG_NAME) if p.exists()],
            "metrics": {k: summary[k] for k in keys if isinstance(summary.get(k), (int, float))},
            "model": {"base": cfg.model, "adapter": getattr(cfg, "adapter", None), "method": summary.get("method", cfg.method),
                      "final": summary.get("final"), "kind": "adapter" if summary.get("method", cfg.method) != "full" else "model"}}


def render_summary(summary: dict, cfg: Any) -> None:
    """The one line a training command ends with (stderr)."""
    if summary.get("skipped") or not is_main_process():
        return

    def fmt(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.4f}"

    if summary["finished"]:
        log(f"done: {summary['stop_reason']} at step {summary['global_step']}; train loss {fmt(summary['train_loss'])}, "
            f"eval loss {fmt(summary['eval_loss'])}; {summary['tokens_per_second']} tokens/s; model in {summary['final']}")
    else:
        log(f"stopped: {summary['stop_reason']} at step {summary['global_step']}; checkpoint saved in "
            f"{summary['run_dir']}; re-run the same command to resume")
