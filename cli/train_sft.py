"""`trajtune train-sft`: supervised fine-tuning (LoRA, full, QLoRA) on trajectories; resumable."""
from __future__ import annotations

import json
from typing import List, Optional

import typer

from trajtune.cli.common import err_console

EPILOG = (
    "Example: trajtune train-sft data/train.jsonl --config configs/train_sft/smollm2-135m.yaml "
    "--output-dir runs/sft --max-steps 100 --set lora_r=8   "
    "(re-run the same command to resume; multi-process: torchrun --nproc_per_node 2 -m trajtune.scripts.train_sft ...)"
)


def register(app: typer.Typer) -> None:
    @app.command(
        "train-sft",
        help="Fine-tune a model on sft records (agent trajectories). The loss covers assistant turns only "
        "(thoughts and tool calls), never system/user/tool messages nor turns marked train: false. "
        "Data is validated and review-gated before the model loads; >100 records without --eval-data are "
        "split 90/10 by prompt. Writes RUN/config.yaml, checkpoint-N/, final/ (adapter or model + tokenizer), "
        "tensorboard/ and training_summary.json. Re-running the same command continues from the newest complete "
        "checkpoint; Ctrl-C/SIGTERM saves a checkpoint first. Any config key: --set KEY=VALUE.",
        epilog=EPILOG,
    )
    def train_sft_cmd(
        data: Optional[List[str]] = typer.Argument(None, help="sft JSONL files (or `data:` in --config)", show_default=False),
        config: Optional[str] = typer.Option(None, "--config", help="YAML config (configs/train_sft/*.yaml); flags override it"),
        model: Optional[str] = typer.Option(None, "--model", help="model folder, .gguf, hub id or 'default'"),
        output_dir: Optional[str] = typer.Option(None, "--output-dir", "-o", help="run folder (default runs/train-sft-<timestamp>)"),
        eval_data: Optional[List[str]] = typer.Option(None, "--eval-data", help="validation JSONL; repeatable"),
        weights: Optional[str] = typer.Option(None, "--weights", help="mixing weights, one per data file: 1,0.5"),
        method: Optional[str] = typer.Option(None, "--method", help="lora | full | qlora (CUDA only)"),
        epochs: Optional[float] = typer.Option(None, "--epochs", help="passes over the data"),
        max_steps: Optional[int] = typer.Option(None, "--max-steps", help="optimizer steps (overrides epochs)"),
        batch_size: Optional[int] = typer.Option(None, "--batch-size", help="records per device per step"),
        learning_rate: Optional[float] = typer.Option(None, "--learning-rate", "--lr", help="peak learning rate"),
        max_length: Optional[int] = typer.Option(None, "--max-length", help="max tokens per record"),
        truncation: Optional[str] = typer.Option(None, "--truncation", help="drop | truncate records longer than --max-length"),
        precision: Optional[str] = typer.Option(None, "--precision", help="auto | fp32 | bf16"),
        resume: Optional[str] = typer.Option(None, "--resume", help="auto | never | PATH to a checkpoint-N folder"),
        allow_unreviewed: Optional[bool] = typer.Option(None, "--allow-unreviewed", help="train on records still pending review", show_default=False),
        set_: Optional[List[str]] = typer.Option(None, "--set", help="any config key: --set lora_r=8 (repeatable)"),
        as_json: bool = typer.Option(False, "--json", help="print training_summary.json on stdout"),
    ) -> None:
        from trajtune import config as cfglib
        from trajtune.scripts.train_sft import TrainSFTConfig, train_sft

        overrides = cfglib.parse_set(set_)
        overrides.update({
            "data": list(data) if data else None, "model": model, "output_dir": output_dir,
            "eval_data": list(eval_data) if eval_data else None, "weights": weights, "method": method, "epochs": epochs,
            "max_steps": max_steps, "batch_size": batch_size, "learning_rate": learning_rate, "max_length": max_length,
            "truncation": truncation, "precision": precision, "resume": resume, "allow_unreviewed": allow_unreviewed,
        })
        cfg = cfglib.build(TrainSFTConfig, config, overrides)
        summary = train_sft(cfg)
        if as_json:
            typer.echo(json.dumps(summary))
        if summary.get("skipped"):
            return  # the stage said so on stderr
        if summary["finished"]:
            err_console.print(
                f"done: {summary['stop_reason']} at step {summary['global_step']}; train loss {_fmt(summary['train_loss'])}, "
                f"eval loss {_fmt(summary['eval_loss'])}; {summary['tokens_per_second']} tokens/s; "
                f"model in {summary['final']}", soft_wrap=True)
        else:
            err_console.print(f"stopped: {summary['stop_reason']} at step {summary['global_step']}; checkpoint saved in "
                              f"{summary['run_dir']}; re-run the same command to resume", soft_wrap=True)
            raise SystemExit(130)


def _fmt(x: Optional[float]) -> str:
    return "n/a" if x is None else f"{x:.4f}"
