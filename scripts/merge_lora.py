"""merge-lora: fold one LoRA adapter (or a chain of them) into its base model, verified.

Steps: resolve the base and the adapters -> merge in fp32 with PEFT -> save safetensors, config,
generation config and the tokenizer (with its chat template) into a temp folder -> reload that
folder with plain ``AutoModelForCausalLM.from_pretrained`` and compare its logits with the
un-merged base+adapter on a few rendered samples -> write ``merge_report.json`` -> rename the
temp folder into place. A difference over the dtype's tolerance fails the run and leaves nothing.

Adapter chains: a DPO adapter trained on top of an SFT adapter is merged by giving both, in the
order they were trained: ``--adapter sft/final --adapter dpo/final``. LoRA updates add up
(W + B1A1 + B2A2), so the reference activates all adapters at once. A DPO run that continued the
SFT adapter itself saves a single adapter: give just that one. An adapter whose
``base_model_name_or_path`` is itself an adapter folder is expanded into its chain automatically.

Runs as ``trajtune merge-lora ...`` or ``python scripts/merge_lora.py --config FILE.yaml``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Literal

from trajtune import config as cfglib
from trajtune.config import field
from trajtune.errors import ConfigError, RunError, UsageError

# Max |logit difference| allowed between the saved merged model and base+adapter (fp32 reference).
# fp32: merging only reorders float sums (measured ~1e-5 on the default model). bf16/fp16: the saved
# weights are rounded (8 and 11 mantissa bits), which moves logits by up to a few tenths.
TOLERANCE = {"fp32": 1e-3, "fp16": 0.25, "bf16": 1.0}
TORCH_DTYPE = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}

SAMPLES = [
    {"tools": [{"type": "function", "function": {"name": "database_query", "description": "Run a query",
                "parameters": {"type": "object", "properties": {"table": {"type": "string"},
                               "limit": {"type": "integer"}}, "required": ["table"]}}}],
     "messages": [{"role": "user", "content": "Show 5 rows of orders."},
                  {"role": "assistant", "content": "I'll query the table.", "tool_calls": [
                      {"id": "call_1", "type": "function",
                       "function": {"name": "database_query", "arguments": {"table": "orders", "limit": 5}}}]},
                  {"role": "tool", "tool_call_id": "call_1", "content": "[5 rows]"},
                  {"role": "assistant", "content": "Here are the 5 rows."}]},
    {"messages": [{"role": "system", "content": "You are a concise assistant."},
                  {"role": "user", "content": "What is the capital of France?"},
                  {"role": "assistant", "content": "Paris."}]},
    {"messages": [{"role": "user", "content": "Read the file src/app.py and run the tests."},
                  {"role": "assistant", "content": "The tests pass: 12 passed, 0 failed."}]},
]


@dataclasses.dataclass
class MergeConfig:
    adapter: list[str] = field(default_factory=list, help="LoRA adapter folder(s) (RUN/final); repeat for a chain, in training order")
    output: str = field("", help="folder to write the merged model into (created atomically)")
    base: str | None = field(None, help="base model: folder, .gguf, hub id or 'default' (default: the adapter's base_model_name_or_path)")
    dtype: Literal["bf16", "fp16", "fp32"] = field("fp32", help="dtype of the saved weights (the merge itself runs in fp32)")
    force: bool = field(False, help="replace an existing output folder")
    samples: int = field(3, help="rendered samples used to verify the merge")
    tolerance: float | None = field(None, help="max |logit diff| allowed (default per dtype: fp32 1e-3, fp16 0.25, bf16 1.0)")
    trust_remote_code: bool = field(False, help="allow custom model code from the model folder")

    def check(self) -> None:
        if not self.adapter:
            raise ConfigError("no adapter given", hint="pass --adapter RUN/final")
        if not self.output:
            raise ConfigError("no output folder given", hint="pass --output DIR")
        if self.samples < 1:
            raise ConfigError("samples must be at least 1")


# ---------------------------------------------------------------------------------------------
# loading helpers (evaluate uses them too)


def is_adapter(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def adapter_base(path: str | Path) -> str | None:
    try:
        return json.loads((Path(path) / "adapter_config.json").read_text("utf-8")).get("base_model_name_or_path")
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}/adapter_config.json: cannot read ({exc})") from None


def expand_chain(adapters: list[str]) -> tuple[str | None, list[str]]:
    """(base named by the first adapter, full adapter chain): an adapter based on another adapter folder
    is preceded by that one."""
    chain: list[str] = []
    for a in adapters:
        if not Path(a).is_dir():
            raise UsageError(f"adapter folder not found: {a}", hint="pass the run's final/ folder")
        if not is_adapter(a):
            raise UsageError(f"{a} is not a LoRA adapter (no adapter_config.json)",
                             hint="a full fine-tuned model needs no merge; use it as --model directly")
        sub: list[str] = [a]
        b = adapter_base(a)
        seen = {str(Path(a).resolve())}
        while b and Path(b).is_dir() and is_adapter(b) and str(Path(b).resolve()) not in seen:
            seen.add(str(Path(b).resolve()))
            sub.insert(0, b)
            b = adapter_base(b)
        for s in sub:
            if str(Path(s).resolve()) not in {str(Path(c).resolve()) for c in chain}:
                chain.append(s)
    first_base = adapter_base(chain[0]) if chain else None
    return first_base, chain


def check_not_quantized(model_path: str) -> None:
    cfg_file = Path(model_path) / "config.json"
    if not cfg_file.is_file():
        return
    try:
        cfg = json.loads(cfg_file.read_text("utf-8"))
    except json.JSONDecodeError:
        return
    q = cfg.get("quantization_config")
    if q:
        method = q.get("quant_method", "unknown") if isinstance(q, dict) else "unknown"
        raise UsageError(
            f"{model_path} is a quantized model ({method}); merging a LoRA into quantized weights would "
            "round the adapter's update away", hint="pass the unquantized (bf16/fp32) base model with --base")


def pick_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def load_tokenizer(model_path: str, adapters: list[str] = (), trust_remote_code: bool = False):
    """The tokenizer saved with the last adapter (training saves it with its chat template), else the base's."""
    from transformers import AutoTokenizer

    src = model_path
    for a in reversed(list(adapters)):
        if (Path(a) / "tokenizer_config.json").is_file():
            src = a
            break
    tok = AutoTokenizer.from_pretrained(src, trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(model_path: str, adapters: list[str] = (), *, dtype: str = "fp32", device: str = "cpu",
               merge: bool = True, trust_remote_code: bool = False):
    """Base model with the adapters applied (merged in memory when ``merge``), in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress goes to stderr; no per-shard bars
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, TORCH_DTYPE[dtype]),
                                                 trust_remote_code=trust_remote_code)
    if adapters:
        from peft import PeftModel

        names = [f"a{i}" for i in range(len(adapters))]
        model = PeftModel.from_pretrained(model, adapters[0], adapter_name=names[0])
        for a, n in zip(adapters[1:], names[1:]):
            model.load_adapter(a, adapter_name=n)
        model.base_model.set_adapter(names) if len(names) > 1 else model.set_adapter(names[0])
        if merge:
            model = model.merge_and_unload(adapter_names=names)
    model.to(device)
    model.eval()
    return model


# ---------------------------------------------------------------------------------------------
# the stage


def _fingerprint(path: str) -> dict:
    p = Path(path)
    files = sorted(f for f in p.iterdir() if f.is_file()) if p.is_dir() else []
    return {"path": str(p.resolve()) if p.exists() else path,
            "files": {f.name: [f.stat().st_size, int(f.stat().st_mtime)] for f in files if f.suffix in (".json", ".safetensors", ".bin")}}


def _sample_ids(tok, n: int) -> list[list[int]]:
    from trajtune.chat import render

    out = []
    for s in (SAMPLES * n)[:n]:
        text = render(tok, s["messages"], s.get("tools"))
        out.append(tok(text, add_special_tokens=False)["input_ids"][:512])
    return out


def _logits(model, ids_list: list[list[int]]):
    import torch

    with torch.no_grad():
        return [model(input_ids=torch.tensor([ids], device=model.device)).logits[0].float().cpu() for ids in ids_list]


def merge(cfg: MergeConfig, progress=None) -> dict:
    """Merge, save atomically, verify; return the merge report (also written as merge_report.json)."""
    say = progress or (lambda msg: None)
    t0 = time.time()
    # 1) resolve inputs
    from trajtune.models import resolve_model

    from trajtune.paths import guard, temp_dir

    named_base, chain = expand_chain(list(cfg.adapter))
    base_src = cfg.base or named_base
    if not base_src:
        raise UsageError("the adapter does not name its base model", hint="pass --base MODEL")
    out = Path(cfg.output)
    # the output folder is replaced as a whole: it must hold no input, and be no input
    guard({"--adapter": chain, "--base": base_src}, replaced={"--output": out})
    base = resolve_model(base_src)
    guard({"--base": base}, replaced={"--output": out})
    check_not_quantized(base)
    signature = {"base": _fingerprint(base), "adapters": [_fingerprint(a) for a in chain], "dtype": cfg.dtype}
    if out.exists():
        rep_file = out / "merge_report.json"
        if not cfg.force:
            if rep_file.is_file():
                try:
                    old = json.loads(rep_file.read_text("utf-8"))
                except json.JSONDecodeError:
                    old = {}
                if old.get("signature") == signature and old.get("passed"):
                    say(f"{out} is already up to date (same base, adapters and dtype); --force redoes it")
                    return {**old, "skipped": True}
            raise UsageError(f"output folder already exists: {out}", hint="pass --force to replace it, or choose another --output")
    tol = cfg.tolerance if cfg.tolerance is not None else TOLERANCE[cfg.dtype]

    # 2) reference: base + adapters, not merged (fp32)
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    say(f"loading {base} + {len(chain)} adapter(s)")
    tok = load_tokenizer(base, chain, cfg.trust_remote_code)
    samples = _sample_ids(tok, cfg.samples)
    model = load_model(base, chain, dtype="fp32", merge=False, trust_remote_code=cfg.trust_remote_code)
    ref = _logits(model, samples)

    # 3) merge in fp32, cast, save into a temp folder beside the output
    say("merging")
    model = model.merge_and_unload(adapter_names=[f"a{i}" for i in range(len(chain))])
    model = model.to(getattr(torch, TORCH_DTYPE[cfg.dtype]))
    model.config.dtype = TORCH_DTYPE[cfg.dtype]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_dir(out)  # beside the output, umask mode; one left by a killed merge is swept
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        if not (tmp / "generation_config.json").exists() and (Path(base) / "generation_config.json").is_file():
            shutil.copy2(Path(base) / "generation_config.json", tmp / "generation_config.json")
        tok.save_pretrained(tmp)
        del model

        # 4) verify: plain from_pretrained of what was written, logits against the reference
        say("verifying the saved model against base+adapter")
        from transformers import AutoModelForCausalLM

        merged = AutoModelForCausalLM.from_pretrained(tmp, trust_remote_code=cfg.trust_remote_code).eval()
        got = _logits(merged, samples)
        diffs = [float((g - r).abs().max()) for g, r in zip(got, ref)]
        agree = sum(int((g.argmax(-1) == r.argmax(-1)).sum()) for g, r in zip(got, ref))
        total = sum(len(s) for s in samples)
        report = {
            "base": base, "adapters": chain, "dtype": cfg.dtype, "output": str(out),
            "max_abs_diff": max(diffs), "per_sample_max_abs_diff": diffs, "tolerance": tol,
            "top1_agreement": agree / total, "samples": len(samples), "tokens": total,
            "passed": max(diffs) <= tol, "seconds": round(time.time() - t0, 2), "signature": signature,
        }
        (tmp / "merge_report.json").write_text(json.dumps(report, indent=2) + "\n", "utf-8")
        if not report["passed"]:
            raise RunError(f"merge verification failed: max |logit diff| {report['max_abs_diff']:.3g} > tolerance {tol:g} "
                           f"for {cfg.dtype}", hint="try --dtype fp32, or check that --base is the model the adapter was trained on")
        # 5) into place
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return report


def main(argv: list[str] | None = None) -> int:
    import argparse

    from trajtune.errors import TrajtuneError

    ap = argparse.ArgumentParser(description="Merge LoRA adapter(s) into their base model, verified.")
    ap.add_argument("--config")
    ap.add_argument("--adapter", action="append")
    ap.add_argument("--base")
    ap.add_argument("--output")
    ap.add_argument("--dtype", choices=["bf16", "fp16", "fp32"])
    ap.add_argument("--force", action="store_true", default=None)
    a = ap.parse_args(argv)
    try:
        cfg = cfglib.build(MergeConfig, a.config, {"adapter": a.adapter, "base": a.base, "output": a.output,
                                                   "dtype": a.dtype, "force": a.force})
        rep = merge(cfg, progress=print)
    except TrajtuneError as exc:
        print(f"Error: {exc.render()}")
        return exc.exit_code
    print(json.dumps({k: v for k, v in rep.items() if k != "signature"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
