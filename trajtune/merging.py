"""Fold LoRA adapter(s) into their base model and prove the result equals base+adapter.

:func:`merge_verified`: load base + adapters un-merged (fp32) and take their logits on a few
rendered samples (the reference) -> merge in fp32 with PEFT, cast to the dtype -> save
safetensors, config, generation config and the tokenizer (with its chat template) into a temp
folder beside the output -> reload that folder with plain ``AutoModelForCausalLM.from_pretrained``
and compare its logits with the reference -> write ``merge_report.json`` -> rename the temp
folder into place. A difference over the dtype's tolerance is a :class:`RunError` and leaves
nothing behind.

Adapter chains: LoRA updates add up (W + B1A1 + B2A2), so the reference activates all adapters at
once. ``merge-lora`` (the stage) and ``evaluate``'s vLLM backend (which serves plain weights) both
merge through here.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable

from trajtune.errors import RunError
from trajtune.models import TORCH_DTYPE, adapter_names, load_model, load_tokenizer

# Max |logit difference| allowed between the saved merged model and base+adapter (fp32 reference).
# fp32: merging only reorders float sums (measured ~1e-5 on the default model). bf16/fp16: the saved
# weights are rounded (8 and 11 mantissa bits), which moves logits by up to a few tenths.
TOLERANCE = {"fp32": 1e-3, "fp16": 0.25, "bf16": 1.0}

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


def _fingerprint(path: str) -> dict:
    p = Path(path)
    files = sorted(f for f in p.iterdir() if f.is_file()) if p.is_dir() else []
    return {"path": str(p.resolve()) if p.exists() else path,
            "files": {f.name: [f.stat().st_size, int(f.stat().st_mtime)] for f in files if f.suffix in (".json", ".safetensors", ".bin")}}


def signature(base: str, chain: list[str], dtype: str) -> dict:
    """What a merge is made of: the base's and adapters' weight/config files (size, mtime) and the dtype."""
    return {"base": _fingerprint(base), "adapters": [_fingerprint(a) for a in chain], "dtype": dtype}


def up_to_date(out: Path, sig: dict) -> dict | None:
    """The report of a passed merge in ``out`` made of exactly ``sig``, else None."""
    rep_file = out / "merge_report.json"
    if not rep_file.is_file():
        return None
    try:
        old = json.loads(rep_file.read_text("utf-8"))
    except json.JSONDecodeError:
        return None
    return old if isinstance(old, dict) and old.get("signature") == sig and old.get("passed") else None


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


def merge_verified(base: str, chain: list[str], out: str | Path, *, dtype: str = "fp32", tolerance: float | None = None,
                   samples: int = 3, trust_remote_code: bool = False,
                   say: Callable[[str], None] | None = None) -> dict:
    """Merge ``chain`` into ``base`` (a resolved folder), save into ``out`` (replaced atomically) and
    verify; return the merge report (also written as ``out/merge_report.json``)."""
    say = say or (lambda msg: None)
    t0 = time.time()
    out = Path(out)
    sig = signature(base, chain, dtype)
    tol = tolerance if tolerance is not None else TOLERANCE[dtype]

    # 1) reference: base + adapters, not merged (fp32)
    import torch

    say(f"loading {base} + {len(chain)} adapter(s)")
    tok = load_tokenizer(base, chain, trust_remote_code)
    ids = _sample_ids(tok, samples)
    model = load_model(base, chain, dtype="fp32", merge=False, trust_remote_code=trust_remote_code)
    ref = _logits(model, ids)

    # 2) merge in fp32, cast, save into a temp folder beside the output
    from trajtune.paths import temp_dir

    say("merging")
    model = model.merge_and_unload(adapter_names=adapter_names(chain))
    model = model.to(getattr(torch, TORCH_DTYPE[dtype]))
    model.config.dtype = TORCH_DTYPE[dtype]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_dir(out)  # beside the output, umask mode; one left by a killed merge is swept
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        if not (tmp / "generation_config.json").exists() and (Path(base) / "generation_config.json").is_file():
            shutil.copy2(Path(base) / "generation_config.json", tmp / "generation_config.json")
        tok.save_pretrained(tmp)
        del model

        # 3) verify: plain from_pretrained of what was written, logits against the reference
        say("verifying the saved model against base+adapter")
        from transformers import AutoModelForCausalLM

        merged = AutoModelForCausalLM.from_pretrained(tmp, trust_remote_code=trust_remote_code).eval()
        got = _logits(merged, ids)
        diffs = [float((g - r).abs().max()) for g, r in zip(got, ref)]
        agree = sum(int((g.argmax(-1) == r.argmax(-1)).sum()) for g, r in zip(got, ref))
        total = sum(len(s) for s in ids)
        report = {
            "base": base, "adapters": list(chain), "dtype": dtype, "output": str(out),
            "max_abs_diff": max(diffs), "per_sample_max_abs_diff": diffs, "tolerance": tol,
            "top1_agreement": agree / total, "samples": len(ids), "tokens": total,
            "passed": max(diffs) <= tol, "seconds": round(time.time() - t0, 2), "signature": sig,
        }
        (tmp / "merge_report.json").write_text(json.dumps(report, indent=2) + "\n", "utf-8")
        if not report["passed"]:
            raise RunError(f"merge verification failed: max |logit diff| {report['max_abs_diff']:.3g} > tolerance {tol:g} "
                           f"for {dtype}", hint="try --dtype fp32, or check that --model is the model the adapter was trained on")
        # 4) into place
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return report
