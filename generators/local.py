"""Local backend (``--backend hf``): sample k responses per task from a local model and score them.

Each task's prompt is rendered by THE renderer (:func:`trajtune.chat.render_prompt`), so the
model sees exactly what training and evaluation show it. Prompts are generated in batches with
left padding, ``k`` samples each (``num_return_sequences``); every sample is scored by THE
verifier (:func:`trajtune.scoring.score`, the one ``evaluate`` uses) and its ``reward`` kept.

Output, appended with :class:`trajtune.jsonl.Appender` (re-running appends only missing ids):

* ``group`` records: the task prompt and tools plus all k responses with their rewards
  (GRPO-style); groups whose rewards are all equal carry no learning signal: they are counted
  as ``flat_groups`` and dropped unless ``keep_flat``.
* ``preference`` records: best response (chosen) over worst (rejected); ties are skipped and
  counted. ``metadata.failure_type`` is the scorer's reason for the rejected side.

A response whose text parses cleanly into tool calls is stored as structured ``tool_calls``;
anything else (plain text, malformed or truncated calls) is stored verbatim as ``content``, so a
rejected side keeps the exact malformed output. Deterministic for a seed and the same tasks.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Literal

from trajtune.config import field
from trajtune.errors import ConfigError, DataError, RunError


@dataclass
class LocalOptions:
    """The local backend's options, declared once: ``generate preferences --backend hf`` takes them
    as flags (its config inherits this class) and :class:`LocalConfig` adds the sampling seed."""

    model: str = field("default", help="(--backend hf) local model: 'default', a model folder or a .gguf file")
    samples: int = field(4, flags=("-k",), help="(--backend hf) responses sampled per task (k)")
    emit: Literal["group", "preference"] = field("preference", help="(--backend hf) preference (best response over "
                                                 "worst) or group (all k with their rewards, GRPO-style)")
    reply_limit: int = field(128, help="(--backend hf) max new tokens per response (hitting it counts as truncated)")
    temperature: float = field(1.0, help="(--backend hf) sampling temperature")
    top_p: float = field(0.95, help="(--backend hf) nucleus sampling")
    batch_size: int = field(8, help="(--backend hf) prompts per generate call (each gives k rows)")
    keep_flat: bool = field(False, help="(--backend hf) emit group: keep groups whose rewards are all equal "
                                        "(no learning signal)")

    def check_local(self) -> None:
        if self.samples < 2:
            raise ConfigError("samples (-k) must be at least 2 (a group or a pair needs two responses)")
        if self.batch_size < 1 or self.reply_limit < 1:
            raise ConfigError("batch_size and reply_limit must be at least 1")
        if self.temperature <= 0:
            raise ConfigError("temperature must be positive (sampling needs it)")


@dataclass
class LocalConfig(LocalOptions):
    seed: int = field(0, help="sampling seed")

    def check(self) -> None:
        self.check_local()

    @classmethod
    def of(cls, cmd: Any) -> "LocalConfig":
        """The local settings of a ``generate preferences`` config: its LocalOptions fields, its seed."""
        from dataclasses import fields

        return cls(**{f.name: getattr(cmd, f.name) for f in fields(LocalOptions)}, seed=cmd.seed)


def load_model(source: str) -> tuple[Any, Any]:
    """Model and tokenizer for batched generation (left padding, a pad token)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trajtune.models import resolve_model

    path = resolve_model(source)
    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype="auto")
    model.eval()
    return model, tok


def response_message(text: str) -> dict:
    """One sampled reply as an assistant message (structured calls when they parse cleanly)."""
    from trajtune.chat import parse_tool_calls, to_openai_calls

    parsed = parse_tool_calls(text)
    if parsed.calls and not parsed.errors and all(isinstance(c["arguments"], dict) for c in parsed.calls):
        return {"role": "assistant", "content": parsed.content or None, "tool_calls": to_openai_calls(parsed.calls)}
    return {"role": "assistant", "content": text}


def sample(model: Any, tok: Any, tasks: list[dict], cfg: LocalConfig) -> list[list[tuple[str, bool]]]:
    """k (text, truncated) samples per task, in one batched generate call."""
    import torch

    from trajtune.chat import render_prompt

    prompts = [render_prompt(tok, t["prompt"], t.get("tools")) for t in tasks]
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**enc, do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p,
                             max_new_tokens=cfg.reply_limit, num_return_sequences=cfg.samples,
                             pad_token_id=tok.pad_token_id)
    gen = out[:, enc["input_ids"].shape[1]:].tolist()
    stops = {i for i in (tok.eos_token_id, tok.pad_token_id) if i is not None}
    eos = getattr(model.generation_config, "eos_token_id", None)
    stops |= set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    results: list[list[tuple[str, bool]]] = []
    for i in range(len(tasks)):
        group = []
        for ids in gen[i * cfg.samples:(i + 1) * cfg.samples]:
            cut = next((j for j, t in enumerate(ids) if t in stops), None)
            truncated = cut is None
            text = tok.decode(ids if cut is None else ids[:cut], skip_special_tokens=True)
            group.append((text, truncated))
        results.append(group)
    return results


def record_id(task: dict, emit: str) -> str:
    from trajtune.records import content_id

    tid = task.get("id") or content_id({"prompt": task.get("prompt"), "tools": task.get("tools")})
    return content_id({"task": tid, "backend": "hf", "emit": emit}, "grp-" if emit == "group" else "pref-h-")


def _check_task(task: dict) -> None:
    from trajtune.records import detect_kind

    if detect_kind(task) != "task" or not isinstance(task.get("prompt"), list):
        raise DataError(f"record {task.get('id')!r} is not a task record (prompt, tools, expected)",
                        hint="the hf backend scores replies against each task's `expected`; generate tasks first")


def generate(tasks: Iterable[dict], out: str | Path, cfg: LocalConfig, *, count: int | None = None,
             model: Any = None, tokenizer: Any = None, progress: Callable[[int, int], None] | None = None) -> dict:
    """Sample, score and append group or preference records to ``out``; returns the summary.

    ``count``: target number of records in ``out`` (None: one attempt per task).
    """
    from transformers import set_seed

    from trajtune.generators.teacher import validate_errors
    from trajtune.jsonl import Appender
    from trajtune.scoring import score

    cfg.check()
    if model is None or tokenizer is None:
        model, tokenizer = load_model(cfg.model)
    set_seed(cfg.seed)
    summary: dict[str, Any] = {"backend": "hf", "model": cfg.model, "emit": cfg.emit, "samples": cfg.samples,
                               "written": 0, "existing": 0, "ties": 0, "flat_groups": 0, "responses": 0,
                               "passed": 0, "reasons": {}, "invalid": 0, "invalid_reasons": {},
                               "by_category": {}, "by_difficulty": {}}
    rewards_total = 0.0
    t0 = time.perf_counter()
    with Appender(out) as app:
        summary["existing"] = len(app.existing_ids)
        need = None if count is None else max(0, count - len(app.existing_ids))
        it = iter(tasks)
        exhausted = False
        while not exhausted and (need is None or summary["written"] < need):
            batch: list[tuple[str, dict]] = []
            # no more prompts than still needed, plus as many as were lost to ties so far
            lost = summary["ties"] + (0 if cfg.keep_flat else summary["flat_groups"])
            room = cfg.batch_size if need is None else min(cfg.batch_size, need - summary["written"] + lost)
            while len(batch) < room:
                task = next(it, None)
                if task is None:
                    exhausted = True
                    break
                _check_task(task)
                rid = record_id(task, cfg.emit)
                if rid in app.existing_ids or any(rid == b[0] for b in batch):
                    continue
                batch.append((rid, task))
            if not batch:
                break
            for (rid, task), group in zip(batch, sample(model, tokenizer, [t for _, t in batch], cfg)):
                if need is not None and summary["written"] >= need:
                    break
                scored = [(text, score(task, text, truncated=trunc)) for text, trunc in group]
                for _, s in scored:
                    summary["responses"] += 1
                    summary["passed"] += bool(s.passed)
                    rewards_total += float(s.reward)
                    if s.reason:
                        summary["reasons"][s.reason] = summary["reasons"].get(s.reason, 0) + 1
                record = _record(rid, task, scored, cfg)
                if record is None:
                    summary["ties"] += 1
                    continue
                if cfg.emit == "group" and len({s.reward for _, s in scored}) == 1:
                    summary["flat_groups"] += 1
                    if not cfg.keep_flat:
                        continue
                problems = validate_errors(record, cfg.emit)
                if problems:
                    summary["invalid"] += 1
                    summary["invalid_reasons"][problems[0][0]] = summary["invalid_reasons"].get(problems[0][0], 0) + 1
                    continue
                app.write(record)
                summary["written"] += 1
                for k, bucket in (("category", "by_category"), ("difficulty", "by_difficulty")):
                    v = (task.get("metadata") or {}).get(k)
                    if v is not None:
                        summary[bucket][str(v)] = summary[bucket].get(str(v), 0) + 1
                if progress:
                    progress(summary["existing"] + summary["written"], count or 0)
    summary["total"] = summary["existing"] + summary["written"]
    summary["pass_rate"] = round(summary["passed"] / summary["responses"], 4) if summary["responses"] else None
    summary["mean_reward"] = round(rewards_total / summary["responses"], 4) if summary["responses"] else None
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    summary["out"] = str(out)
    if count is not None:
        summary["target"] = count
        summary["short"] = max(0, count - summary["total"])
    return summary


def _record(rid: str, task: dict, scored: list[tuple[str, Any]], cfg: LocalConfig) -> dict | None:
    meta_in = {k: v for k, v in (task.get("metadata") or {}).items() if k not in ("review", "split")}
    meta = dict(meta_in, source="hf", model=cfg.model, task_id=task.get("id"), samples=cfg.samples,
                temperature=cfg.temperature, seed=cfg.seed)
    base = {"id": rid, "metadata": meta, "tools": list(task.get("tools") or []), "prompt": task["prompt"]}
    if cfg.emit == "group":
        meta.update(reasons=[s.reason for _, s in scored], passed=sum(bool(s.passed) for _, s in scored),
                    review="pending")
        base["responses"] = [{"messages": [response_message(text)], "reward": float(s.reward)} for text, s in scored]
        return base
    rewards = [float(s.reward) for _, s in scored]
    hi, lo = max(rewards), min(rewards)
    if hi == lo:
        return None
    best, worst = rewards.index(hi), rewards.index(lo)
    meta.update(chosen_reward=hi, rejected_reward=lo, failure_type=scored[worst][1].reason,
                chosen_passed=bool(scored[best][1].passed), review="pending")
    base["chosen"] = [response_message(scored[best][0])]
    base["rejected"] = [response_message(scored[worst][0])]
    return base


def generate_preferences(cfg: Any, out: str | Path, *, progress: Callable[[int, int], None] | None = None) -> dict:
    """``trajtune generate preferences --backend hf``: sample and score the local model on
    training-split tasks drawn from the templates (``offline.iter_tasks``: held-out phrasings are
    never used); ``cfg.count`` is the target. ``cfg`` is the command's config
    (``trajtune.scripts.generate.PreferencesConfig``: the offline options plus :class:`LocalOptions`,
    e.g. ``--emit group`` for GRPO groups instead of pairs); the command saves it beside OUT."""
    from trajtune.generators import offline
    from trajtune.generators.teacher import _train_tasks_config

    local_cfg = LocalConfig.of(cfg)
    local_cfg.check()
    src = offline.load_sources(cfg)
    tasks = offline.iter_tasks(_train_tasks_config(cfg), sources=src, first_step_only=False)
    limited = (t for _, t in zip(range(max(cfg.count, 1) * 4 + 8), tasks))  # ties skip some tasks
    summary = generate(limited, out, local_cfg, count=cfg.count, progress=progress)
    summary["kind"] = local_cfg.emit
    if cfg.count > 0 and summary["total"] == 0 and (summary["ties"] or summary["flat_groups"]):
        raise RunError(f"no record written: in all {summary['ties'] + summary['flat_groups']} sampled groups every "
                       f"response got the same reward ({summary['pass_rate']:.0%} of responses passed)",
                       hint="the model needs some right and some wrong answers: raise -k or the temperature, "
                       "or start from a stronger model")
    return summary
