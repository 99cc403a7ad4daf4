"""`trajtune merge-lora`: fold LoRA adapter(s) into the base model, verified against base+adapter."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from trajtune.cli.common import err_console


def register(app: typer.Typer) -> None:
    @app.command(
        "merge-lora",
        help="Merge LoRA adapter(s) into the base model and save a plain transformers model (safetensors, config, "
        "generation config, tokenizer with chat template). The merged logits are checked against base+adapter on "
        "rendered samples; the max difference goes to merge_report.json and a difference over the dtype's "
        "tolerance fails the command. For a DPO adapter trained on top of an SFT adapter, give both, in order.",
        epilog="Example: trajtune merge-lora --base default --adapter runs/sft/final --output runs/merged",
    )
    def merge_lora(
        adapter: List[Path] = typer.Option(None, "--adapter", help="adapter folder (RUN/final); repeat for a chain in training order"),
        output: Optional[Path] = typer.Option(None, "--output", "-o", help="folder for the merged model (must not exist unless --force)"),
        base: Optional[str] = typer.Option(None, "--base", help="base model: folder, .gguf, hub id or 'default' (default: the adapter's own base)"),
        dtype: Optional[str] = typer.Option(None, "--dtype", help="saved weight dtype: bf16, fp16 or fp32 (default fp32)"),
        force: Optional[bool] = typer.Option(None, "--force", help="replace an existing output folder", show_default=False),
        config: Optional[Path] = typer.Option(None, "--config", help="YAML with any of these options (flags override it)"),
        as_json: bool = typer.Option(False, "--json", help="print the merge report as JSON on stdout"),
    ) -> None:
        from trajtune import config as cfglib
        from trajtune.scripts.merge_lora import MergeConfig, merge

        cfg = cfglib.build(MergeConfig, config, {
            "adapter": [str(a) for a in adapter] if adapter else None, "output": str(output) if output else None,
            "base": base, "dtype": dtype, "force": force})
        with err_console.status("merging") as status:
            rep = merge(cfg, progress=lambda m: status.update(m))
        rep = {k: v for k, v in rep.items() if k != "signature"}
        if as_json:
            typer.echo(json.dumps(rep))
        elif rep.get("skipped"):
            err_console.print(f"{cfg.output} is already up to date (same base, adapters and dtype); --force redoes it")
        else:
            err_console.print(f"merged {len(rep['adapters'])} adapter(s) into {rep['output']} ({rep['dtype']}); "
                              f"verified: max |logit diff| {rep['max_abs_diff']:.2e} <= {rep['tolerance']:g}, "
                              f"top-1 agreement {rep['top1_agreement']:.1%}")
