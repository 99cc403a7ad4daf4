"""`trajtune train-dpo`: DPO on preference pairs (base model, SFT adapter or merged model)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from trajtune.cli.common import err_console


def register(app: typer.Typer) -> None:
    @app.command(
        "train-dpo",
        help="Preference-tune a model with DPO (trl DPOTrainer) on prompt/chosen/rejected pairs rendered exactly as "
        "train-sft and evaluate render them. Starts from the base model with a new LoRA, from an SFT adapter "
        "(--adapter RUN/final, trained further) or from a merged model; the reference is the same weights with the "
        "adapter off, its log-probs computed once. Re-running the same command resumes from the newest complete "
        "checkpoint; SIGINT/SIGTERM saves one and stops. Writes config.yaml, checkpoint-N/, final/, tensorboard/ and "
        "training_summary.json (reward accuracy and margins on validation). Any config key can be set with "
        "--set key=value.",
        epilog="Example: trajtune train-dpo --config configs/train_dpo/smollm2-135m.yaml --data prefs.jsonl "
        "--adapter runs/sft/final --output-dir runs/dpo --beta 0.1",
    )
    def train_dpo(
        config: Optional[Path] = typer.Option(None, "--config", help="YAML config (configs/train_dpo/*.yaml); flags override it"),
        data: List[str] = typer.Option(None, "--data", help="preference JSONL file (repeat for several)"),
        weights: Optional[str] = typer.Option(None, "--weights", help="mixing weight per --data file, comma-separated (e.g. 1,0.5)"),
        eval_data: List[str] = typer.Option(None, "--eval-data", help="validation preference file (repeatable); default: 90/10 split by prompt over 100 pairs"),
        model: Optional[str] = typer.Option(None, "--model", help="base or merged model: folder, .gguf, hub id or 'default'"),
        adapter: Optional[str] = typer.Option(None, "--adapter", help="SFT LoRA adapter folder to continue training"),
        output_dir: Optional[str] = typer.Option(None, "--output-dir", "-o", help="run folder (default runs/train-dpo-<timestamp>)"),
        method: Optional[str] = typer.Option(None, "--method", help="lora | full | qlora"),
        beta: Optional[float] = typer.Option(None, "--beta", help="DPO beta"),
        loss_type: Optional[str] = typer.Option(None, "--loss-type", help="trl loss type(s), comma-separated: sigmoid, ipo, hinge, ..."),
        reference: Optional[str] = typer.Option(None, "--reference", help="precompute (once, faster) | live (every step)"),
        epochs: Optional[float] = typer.Option(None, "--epochs", help="passes over the training pairs"),
        max_steps: Optional[int] = typer.Option(None, "--max-steps", help="stop after N optimizer steps"),
        batch_size: Optional[int] = typer.Option(None, "--batch-size", help="pairs per device per step"),
        learning_rate: Optional[float] = typer.Option(None, "--learning-rate", "--lr", help="peak learning rate"),
        max_length: Optional[int] = typer.Option(None, "--max-length", help="max tokens of prompt + completion"),
        precision: Optional[str] = typer.Option(None, "--precision", help="auto | fp32 | bf16"),
        resume: Optional[str] = typer.Option(None, "--resume", help="auto | never | PATH to a checkpoint-N folder"),
        allow_unreviewed: Optional[bool] = typer.Option(None, "--allow-unreviewed", help="train on synthetic records still pending review", show_default=False),
        seed: Optional[int] = typer.Option(None, "--seed", help="random seed"),
        set_: List[str] = typer.Option(None, "--set", help="any other config key: --set eval_steps=20 (repeatable)"),
        as_json: bool = typer.Option(False, "--json", help="print the training summary as JSON on stdout"),
    ) -> None:
        from trajtune import config as cfglib
        from trajtune.scripts.train_dpo import TrainDPOConfig, train_dpo as run

        overrides = cfglib.parse_set(set_)
        overrides.update({
            "data": list(data) if data else None, "weights": weights, "eval_data": list(eval_data) if eval_data else None,
            "model": model, "adapter": adapter, "output_dir": output_dir, "method": method, "beta": beta,
            "loss_type": loss_type, "reference": reference, "epochs": epochs, "max_steps": max_steps,
            "batch_size": batch_size, "learning_rate": learning_rate, "max_length": max_length, "precision": precision,
            "resume": resume, "allow_unreviewed": allow_unreviewed, "seed": seed,
        })
        cfg = cfglib.build(TrainDPOConfig, config, overrides)
        summary = run(cfg)
        if as_json:
            typer.echo(json.dumps(summary))
        elif summary.get("skipped"):
            pass  # the stage already said the run is finished
        else:
            acc = summary.get("eval_reward_accuracy")
            err_console.print(
                f"{summary['stop_reason']} after {summary['global_step']} steps; train loss {summary['train_loss']:.4f}"
                + (f", eval loss {summary['eval_loss']:.4f}, reward accuracy {acc:.1%}, margin {summary['eval_reward_margin']:.3f}"
                   if acc is not None else "")
                + f"; {summary['tokens_per_second']} tok/s; "
                + (f"final: {summary['final']}" if summary.get("final") else f"checkpoint in {summary['run_dir']}"))
        if not summary.get("finished", True):
            raise typer.Exit(130)
