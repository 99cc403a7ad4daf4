"""`trajtune merge-lora ADAPTER... -o OUT_DIR`: fold LoRA adapter(s) into their base model, verified.

The base is ``--model`` (default: the model the first adapter names). The merged model is saved as
a plain transformers model (safetensors, config, generation config, tokenizer with its chat
template), reloaded and checked against base+adapter on rendered samples; the report goes to
``OUT_DIR/merge_report.json``. The work is :func:`trajtune.merging.merge_verified`; this stage
resolves the inputs, guards the output and skips a merge that is already up to date.

Adapter chains: a DPO adapter trained on top of an SFT adapter is merged by giving both, in the
order they were trained: ``merge-lora sft/final dpo/final``. A DPO run that continued the SFT
adapter itself saves a single adapter: give just that one. An adapter whose
``base_model_name_or_path`` is itself an adapter folder is expanded into its chain automatically.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from trajtune.config import field
from trajtune.errors import ConfigError, UsageError
from trajtune.stage import Stage


@dataclass
class Config:
    adapters: list[str] = field(default_factory=list, positional=True, metavar="ADAPTER",
                                help="LoRA adapter folder(s) (RUN/final); several: a chain, in training order")
    model: Optional[str] = field(None, help="base model: folder, .gguf, hub id or 'default' "
                                            "(default: the base the first adapter names)")
    output: str = field("", flags=("-o",), output=True, metavar="OUT_DIR",
                        help="folder to write the merged model into (created atomically; must not exist unless --force)")
    dtype: Literal["bf16", "fp16", "fp32"] = field("fp32", help="dtype of the saved weights (the merge itself runs in fp32)")
    force: bool = field(False, help="replace an existing output folder")
    samples: int = field(3, help="rendered samples used to verify the merge")
    tolerance: Optional[float] = field(None, help="max |logit diff| allowed (default per dtype: fp32 1e-3, fp16 0.25, bf16 1.0)")
    trust_remote_code: bool = field(False, help="allow custom model code from the model folder")

    def check(self) -> None:
        if not self.adapters:
            raise ConfigError("no adapter given", hint="trajtune merge-lora runs/sft/final -o runs/merged")
        if not self.output:
            raise ConfigError("no output folder given", hint="pass -o OUT_DIR")
        if self.output == "-":
            raise UsageError("merge-lora writes a model folder: -o OUT_DIR, not '-'")
        if self.samples < 1:
            raise ConfigError("samples must be at least 1")


def run(cfg: Config) -> dict:
    """Merge, save atomically, verify; return the merge report (without its input signature)."""
    from trajtune.console import err_console
    from trajtune.merging import merge_verified, signature, up_to_date
    from trajtune.models import check_not_quantized, expand_chain, resolve_model
    from trajtune.paths import guard

    named_base, chain = expand_chain(list(cfg.adapters))
    base_src = cfg.model or named_base
    if not base_src:
        raise UsageError("the adapter does not name its base model", hint="pass --model MODEL")
    out = Path(cfg.output)
    # the output folder is replaced as a whole: it must hold no input, and be no input
    guard({"ADAPTER": chain, "--model": base_src}, replaced={"--output": out})
    base = resolve_model(base_src)
    guard({"--model": base}, replaced={"--output": out})
    check_not_quantized(base)
    if out.exists() and not cfg.force:
        old = up_to_date(out, signature(base, chain, cfg.dtype))
        if old is not None:
            return _summary({**old, "skipped": True})
        raise UsageError(f"output folder already exists: {out}", hint="pass --force to replace it, or choose another -o")
    with err_console.status("merging") as status:
        report = merge_verified(base, chain, out, dtype=cfg.dtype, tolerance=cfg.tolerance, samples=cfg.samples,
                                trust_remote_code=cfg.trust_remote_code, say=status.update)
    return _summary(report)


def _summary(report: dict) -> dict:
    return {k: v for k, v in report.items() if k != "signature"}


def render(s: dict, cfg: Config) -> None:
    from trajtune.console import err_console

    if s.get("skipped"):
        err_console.print(f"{cfg.output} is already up to date (same base, adapters and dtype); --force redoes it",
                          markup=False)
    else:
        err_console.print(f"merged {len(s['adapters'])} adapter(s) into {s['output']} ({s['dtype']}); "
                          f"verified: max |logit diff| {s['max_abs_diff']:.2e} <= {s['tolerance']:g}, "
                          f"top-1 agreement {s['top1_agreement']:.1%}", markup=False)


STAGE = Stage(
    name="merge-lora", config=Config, run=run, render=render,
    help="Merge LoRA adapter(s) into the base model and save a plain transformers model (safetensors, config, "
         "generation config, tokenizer with chat template). The merged logits are checked against base+adapter on "
         "rendered samples; the max difference goes to OUT_DIR/merge_report.json and a difference over the dtype's "
         "tolerance fails the command. For a DPO adapter trained on top of an SFT adapter, give both, in order. "
         "Re-running with the same inputs does nothing.",
    example="trajtune merge-lora runs/sft/final runs/dpo/final --model default -o runs/merged",
)

if __name__ == "__main__":
    from trajtune.cli.command import script

    script(STAGE)
