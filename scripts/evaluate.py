"""`trajtune evaluate TASKS -o OUT_DIR`: run a model (and optionally a baseline) on tool-use tasks and report honestly.

Steps: read and validate the tasks -> for each model (the tuned one, then the baseline) render
every prompt with the shared renderer (``trajtune.chat.render_prompt``, exactly as in training),
generate greedily (the slot engine of ``trajtune.generation``: shared prompt prefixes computed once,
no padding, continuous batching; or ``model.generate`` on length-sorted, left-padded batches where a
model needs it), cut each reply at its end-of-turn token, score it with ``trajtune.scoring.score``
and append it to ``predictions.jsonl`` as it finishes (fsync'd, keyed by model + task id, so a
re-run skips what is done) -> metrics and breakdowns from the predictions file -> paired
comparison (exact McNemar test on the discordant pairs) -> ``report.json`` and ``report.md``
(``trajtune.report``).

Models load through ``trajtune.models`` (base + adapter chain). Backends: vLLM when it is
importable and a CUDA device is present (same prompts, same scorer), else transformers.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Optional

from trajtune.config import field
from trajtune.errors import ConfigError, DataError, UsageError
from trajtune.generation import Engine, cut_reply, kv_bytes_per_token, stop_token_ids, supported  # torch-free import
from trajtune.stage import Stage


@dataclass
class Config:
    tasks: str = field("", positional=True, metavar="TASKS", help="task JSONL file (kind task: prompt, tools, expected; '-' = stdin)")
    output: str = field("", flags=("-o",), output=True, metavar="OUT_DIR",
                        help="folder for predictions.jsonl, report.json, report.md and config.yaml")
    model: str = field("default", help="model: folder, .gguf, hub id or 'default'")
    adapter: list[str] = field(default_factory=list, split=False, help="LoRA adapter folder(s) applied to --model (a chain in training order)")
    baseline: Optional[str] = field(None, help="'base' (the --model without adapters) or another model folder/adapter to compare against")
    max_new_tokens: int = field(256, help="generation limit per task; a reply cut here is scored as truncated if incomplete")
    fit_expected: bool = field(True, help="raise a task's limit where its right answer would not fit: to 1.5 x the tokens of its expected calls (written in trajtune's tool-call format, the longest acceptable value of each argument) + 16; --no-fit-expected: --max-new-tokens for every task")
    batch_size: int = field(64, help="sequences decoded together (fewer when their KV cache would not fit in a quarter of free memory)")
    engine: Literal["auto", "slots", "generate"] = field("auto", help="transformers backend: 'slots' (shared prompt prefixes, no padding, continuous batching; see trajtune/generation.py), 'generate' (model.generate on length-sorted left-padded batches); auto: slots where the model supports it")
    stop: list[str] = field(default_factory=list, split=False, help="extra stop strings (the end-of-turn token always stops)")
    ready_threshold: float = field(0.85, help="tuned pass rate at which the report says 'ready for RL'")
    backend: Literal["auto", "transformers", "vllm"] = field("auto", help="auto: vLLM when installed and a GPU is present")
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = field("auto", help="auto: bf16 on CUDA, fp32 on a CPU (bf16 there was 1.49x faster but passed 5 fewer of 200 BFCL tasks: README)")
    limit: Optional[int] = field(None, help="evaluate only the first N tasks")
    trust_remote_code: bool = field(False, help="allow custom model code from the model folder")
    corpus: Optional[str] = field(None, metavar="FILE", help="retrieval: rank this corpus for every task with an embedding model (--model, default all-MiniLM-L6-v2) instead of generating: a tool catalog (OpenAI tools JSON, YAML) or a documents JSONL ({id, text}); scores recall@1/5/10, MRR@10, nDCG@10 (trajtune/retrieval.py). A tasks file of retrieval queries ({id, query, relevant}) needs no --corpus when it holds its documents")
    equivalents: bool = field(True, help="retrieval: a tool the --corpus catalog declares the same function as the relevant one (x-trajtune sense: the synthetic APIs' twins in another naming style, which no request can tell apart) is left out of that query's ranking, neither hit nor miss; --no-equivalents counts it as a miss")
    match: Literal["auto", "bfcl", "trajtune"] = field("auto", help="scoring rules: 'trajtune' (type-aware, exact strings), 'bfcl' (the Berkeley Function Calling Leaderboard's AST checker: normalised strings, int for float, ...; see trajtune/scoring.py); auto: per task, 'bfcl' where its metadata.scoring says so")

    def check(self) -> None:
        if not self.tasks:
            raise ConfigError("no task file given", hint="trajtune evaluate data/tasks.jsonl --model MODEL -o runs/eval")
        if not self.output:
            raise ConfigError("no output folder given", hint="pass -o OUT_DIR")
        if self.output == "-":
            raise UsageError("evaluate writes predictions and reports into a folder: -o OUT_DIR, not '-'")
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ConfigError("max_new_tokens and batch_size must be at least 1")
        if not 0 <= self.ready_threshold <= 1:
            raise ConfigError("ready_threshold must be between 0 and 1")


@dataclass
class ModelSpec:
    role: str  # "model" | "tuned" | "baseline"
    model: str  # resolved base path / id
    adapters: list[str]
    key: str = ""  # predictions are keyed by this + task id

    @property
    def label(self) -> str:
        return self.model + "".join(f" + {a}" for a in self.adapters)


# ---------------------------------------------------------------------------------------------
# 1) tasks


def load_tasks(path: str, limit: int | None = None) -> list[dict]:
    from trajtune.jsonl import read_jsonl
    from trajtune.records import jsonschema_validator

    if not Path(path).is_file() and path != "-":
        raise UsageError(f"task file not found: {path}", hint="make one with `trajtune generate tasks` or see data/examples")
    v = jsonschema_validator("task")
    tasks, seen = [], {}
    for row in read_jsonl(path):
        err = next(iter(sorted(v.iter_errors(row.obj), key=lambda e: list(e.absolute_path))), None)
        if err is not None:
            where = "/".join(map(str, err.absolute_path)) or "record"
            raise DataError(f"not a valid task ({where}: {err.message[:200]})", path=row.path, line=row.lineno,
                            hint="run `trajtune validate` on the file")
        tid = row.obj["id"]
        if tid in seen:
            raise DataError(f"duplicate task id {tid!r} (first on line {seen[tid]})", path=row.path, line=row.lineno)
        seen[tid] = row.lineno
        tasks.append(row.obj)
        if limit is not None and len(tasks) >= limit:
            break
    if not tasks:
        raise DataError("no tasks in the file", path=path)
    return tasks


# ---------------------------------------------------------------------------------------------
# 2) generation backends


def _weights_stamp(path: str) -> list:
    p = Path(path)
    files = [p] if p.is_file() else sorted(f for f in p.glob("*") if f.suffix in (".safetensors", ".bin", ".gguf", ".pt"))
    return [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files if f.is_file()]


def resolve_dtype(setting: str, device: str) -> str:
    """``auto``: bf16 on CUDA, fp32 on a CPU. Not bf16 on a CPU with native bf16, as training uses:
    there the demo model's greedy replies changed on 44 of BFCL's first 200 tasks and 5 more failed
    (bf16 autocast over fp32 norms and residuals: 37 changed, 4 more failed), for 1.49x (1.11x)."""
    if setting != "auto":
        return setting
    return "bf16" if device == "cuda" else "fp32"


def _resolve_spec(role: str, model: str, adapters: list[str], cfg: Config) -> ModelSpec:
    from trajtune.models import expand_chain, is_adapter, pick_device, resolve_model
    from trajtune.records import content_id

    if Path(model).is_dir() and is_adapter(model):  # an adapter given as the model: use its base
        adapters = [model, *adapters]
        model = ""
    if adapters:
        named, adapters = expand_chain(adapters)
        model = model or named
    if not model:
        raise UsageError("the adapter does not name its base model", hint="pass --model")
    path = resolve_model(model)
    # the weights' files (name, size, mtime) are part of the key: a model retrained into the same
    # folder never reuses the predictions of the old one on a re-run into the same -o
    key = content_id({"model": str(Path(path).resolve()) if Path(path).exists() else path,
                      "adapters": [str(Path(a).resolve()) for a in adapters],
                      "weights": [_weights_stamp(p) for p in [path, *adapters]],
                      "max_new_tokens": cfg.max_new_tokens, "stop": cfg.stop,
                      "dtype": resolve_dtype(cfg.dtype, pick_device()),
                      **({"fit_expected": True} if cfg.fit_expected else {})}, prefix=f"{role}-")[: len(role) + 9]
    return ModelSpec(role, path, list(adapters), key)


def expected_reply(task: dict) -> str:
    """The task's expected calls as a reply writes them (trajtune's tool-call format), each argument
    at its longest acceptable value (optional ones included); '' for no-call and answer tasks."""
    import json

    from trajtune.chat import format_tool_call

    blocks = []
    for call in (task.get("expected") or {}).get("calls") or []:
        args = {}
        for name, acceptable in (call.get("arguments") or {}).items():
            options = [a for a in (acceptable if isinstance(acceptable, list) else [acceptable]) if a not in (None, "")]
            if options:
                args[name] = max(options, key=lambda a: len(json.dumps(a, ensure_ascii=False)))
        blocks.append(format_tool_call(call.get("name", ""), args))
    return "\n".join(blocks)


def token_limits(tok, tasks: list[dict], cfg: Config) -> list[int]:
    """Each task's generation limit: --max-new-tokens, raised (with fit_expected) to 1.5 x the
    tokens of its expected reply + 16 where that is more, so that no task is lost to a limit its
    right answer cannot fit in (BFCL's parallel tasks need up to ~450 tokens)."""
    limits = []
    for t in tasks:
        text = expected_reply(t) if cfg.fit_expected else ""
        need = (3 * len(tok(text, add_special_tokens=False)["input_ids"]) + 1) // 2 + 16 if text else 0
        limits.append(max(cfg.max_new_tokens, need))
    return limits


class TransformersBackend:
    """Greedy generation with transformers: the slot engine (trajtune.generation) where the model
    supports it, else ``model.generate`` on length-sorted, left-padded batches."""

    name = "transformers"

    def __init__(self, spec: ModelSpec, cfg: Config):
        from trajtune.models import load_model, load_tokenizer, pick_device

        self.device = pick_device()
        self.dtype = dtype = resolve_dtype(cfg.dtype, self.device)
        self.tok = load_tokenizer(spec.model, spec.adapters, cfg.trust_remote_code)
        self.tok.padding_side = "left"
        self.model = load_model(spec.model, spec.adapters, dtype=dtype, device=self.device, merge=True,
                                trust_remote_code=cfg.trust_remote_code)
        gc = self.model.generation_config
        gc.do_sample, gc.temperature, gc.top_p, gc.top_k = False, None, None, None
        gc.num_beams = 1  # evaluate is greedy, whatever the model's generation config suggests
        self.stop_ids = stop_token_ids(self.tok, self.model)
        self.cfg = cfg
        ok, why = supported(self.model)
        if cfg.engine == "slots" and not ok:
            raise UsageError(f"--engine slots does not support this model: {why}", hint="use --engine generate")
        self.engine = "slots" if ok and cfg.engine != "generate" else "generate"
        self.engine_note = "" if ok or cfg.engine == "generate" else why
        self.stats: dict = {}

    def run(self, prompts: list[str], ids: list[list[int]], limits: list[int],
            done: Callable[[int, str, int, bool, float], None]) -> None:
        """Generate for every prompt, at most ``limits[i]`` tokens each; ``done(index, text,
        generated tokens, truncated, seconds)`` as each finishes."""
        if self.engine == "generate":
            return _run_in_batches(self, prompts, ids, limits, done)
        from trajtune.training import free_memory_bytes

        cfg = self.cfg
        stop_check = None
        if cfg.stop:
            stop_check = lambda gen: any(s in self.tok.decode(gen, skip_special_tokens=False) for s in cfg.stop)  # noqa: E731
        # the KV buffer of all rows must fit in a quarter of the free memory
        per_row = (max(len(i) for i in ids) + max(limits) + 1) * kv_bytes_per_token(self.model)
        rows = max(1, min(cfg.batch_size, free_memory_bytes(self.device) // 4 // max(per_row, 1)))
        engine = Engine(self.model, self.stop_ids, cfg.max_new_tokens, batch_size=rows, stop_check=stop_check)

        def on_result(r) -> None:
            text, n_tokens, truncated = cut_reply(self.tok, r.ids, self.stop_ids, cfg.stop, limits[r.index])
            done(r.index, text, n_tokens, truncated, r.seconds)

        engine.run(ids, on_result, limits=limits)
        self.stats = {"rows": rows, **engine.stats.as_dict()}

    def generate(self, prompts: list[str], limits: list[int]) -> list[tuple[str, int, bool]]:
        """model.generate on one left-padded batch (the 'generate' engine), to the batch's largest
        limit; each reply then cut at its own (greedy: the same tokens as a run to that limit)."""
        import torch

        enc = self.tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        with torch.inference_mode():
            out = self.model.generate(**enc, max_new_tokens=max(limits), do_sample=False,
                                      eos_token_id=self.stop_ids, pad_token_id=self.tok.pad_token_id,
                                      **({"stop_strings": self.cfg.stop, "tokenizer": self.tok} if self.cfg.stop else {}))
        gen = out[:, enc["input_ids"].shape[1]:].tolist()
        return [cut_reply(self.tok, g[:n], self.stop_ids, self.cfg.stop, n) for g, n in zip(gen, limits)]

    def close(self) -> None:
        del self.model


def _run_in_batches(backend, prompts: list[str], ids: list[list[int]], limits: list[int], done) -> None:
    """Length-sorted batches (longest first, so memory problems show at once) through backend.generate."""
    order = sorted(range(len(prompts)), key=lambda i: -len(ids[i]))
    bs = backend.cfg.batch_size
    for b in range(0, len(order), bs):
        batch = order[b: b + bs]
        t0 = time.perf_counter()
        outs = backend.generate([prompts[i] for i in batch], [limits[i] for i in batch])
        per_task = (time.perf_counter() - t0) / len(batch)
        for i, (text, n_tokens, truncated) in zip(batch, outs):
            done(i, text, n_tokens, truncated, per_task)


class VLLMBackend:
    """vLLM on CUDA: same rendered prompts, greedy, same cut and scorer. Adapters are merged first."""

    name = "vllm"

    def __init__(self, spec: ModelSpec, cfg: Config, workdir: Path):
        from vllm import LLM, SamplingParams

        from trajtune.models import load_tokenizer

        model_dir = spec.model
        if spec.adapters:  # vLLM serves plain weights: merge into a scratch folder (verified, as merge-lora does)
            from trajtune.merging import merge_verified
            from trajtune.models import check_not_quantized

            model_dir = str(workdir / f"merged-{spec.key}")
            if not (Path(model_dir) / "merge_report.json").is_file():
                check_not_quantized(spec.model)
                merge_verified(spec.model, spec.adapters, model_dir, dtype="bf16", trust_remote_code=cfg.trust_remote_code)
        self.tok = load_tokenizer(spec.model, spec.adapters, cfg.trust_remote_code)
        self.stop_ids = stop_token_ids(self.tok)
        self.dtype = resolve_dtype(cfg.dtype, "cuda")
        self.llm = LLM(model=model_dir, dtype=self.dtype.replace("bf", "bfloat").replace("fp", "float"),
                       trust_remote_code=cfg.trust_remote_code)
        self.params = lambda limit: SamplingParams(temperature=0.0, max_tokens=limit, stop_token_ids=self.stop_ids,
                                                   stop=cfg.stop or None, skip_special_tokens=False)
        self.cfg = cfg
        self.engine, self.engine_note, self.stats = "vllm", "", {}

    def run(self, prompts: list[str], ids: list[list[int]], limits: list[int], done) -> None:
        _run_in_batches(self, prompts, ids, limits, done)

    def generate(self, prompts: list[str], limits: list[int]) -> list[tuple[str, int, bool]]:
        from vllm.inputs import TokensPrompt

        ids = [self.tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=i) for i in ids], [self.params(n) for n in limits],
                                 use_tqdm=False)
        res = []
        for o in outs:
            c = o.outputs[0]
            res.append((c.text, len(c.token_ids), c.finish_reason == "length"))
        return res

    def close(self) -> None:
        del self.llm


def vllm_available() -> bool:
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


def make_backend(spec: ModelSpec, cfg: Config):
    use_vllm = cfg.backend == "vllm" or (cfg.backend == "auto" and vllm_available())
    if cfg.backend == "vllm" and not vllm_available():
        raise UsageError("--backend vllm needs vllm installed and a CUDA GPU", hint="use --backend transformers")
    return VLLMBackend(spec, cfg, Path(cfg.output)) if use_vllm else TransformersBackend(spec, cfg)


# ---------------------------------------------------------------------------------------------
# 3) run one model over the tasks, appending predictions


def run_model(spec: ModelSpec, tasks: list[dict], cfg: Config, appender, say: Callable[[str], None]) -> dict:
    from trajtune.chat import render_prompt
    from trajtune.scoring import score

    todo = [t for t in tasks if f"{spec.key}:{t['id']}" not in appender.existing_ids]
    info = {"done_before": len(tasks) - len(todo), "generated_now": len(todo), "backend": None, "seconds": 0.0}
    if not todo:
        say(f"{spec.role}: all {len(tasks)} tasks already in predictions.jsonl")
        return info
    say(f"{spec.role}: loading {spec.label}")
    backend = make_backend(spec, cfg)
    info["backend"], info["engine"], info["dtype"] = backend.name, backend.engine, backend.dtype
    if backend.engine_note:
        say(f"{spec.role}: model.generate instead of the slot engine ({backend.engine_note})")
    prompts = [render_prompt(backend.tok, t["prompt"], t.get("tools")) for t in todo]
    ids = [backend.tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    limits = token_limits(backend.tok, todo, cfg)
    if any(n > cfg.max_new_tokens for n in limits):
        say(f"{spec.role}: {sum(n > cfg.max_new_tokens for n in limits)} tasks whose expected calls need more than "
            f"{cfg.max_new_tokens} tokens get up to {max(limits)} (--no-fit-expected: one limit for all)")
    t_start = time.perf_counter()
    count = [0]

    def done(i: int, text: str, n_tokens: int, truncated: bool, seconds: float) -> None:
        t = todo[i]
        s = score(t, text, truncated, match=cfg.match)
        appender.write({
            "id": f"{spec.key}:{t['id']}", "task_id": t["id"], "model": spec.role, "model_key": spec.key,
            "model_path": spec.label, "output": text, "calls": s.calls, "pass": s.passed, "reason": s.reason,
            "detail": s.detail, "kind": s.kind, "valid_json": s.valid_json, "tool_name_correct": s.tool_name_correct,
            "argument_accuracy": s.argument_accuracy, "hallucinated": s.hallucinated, "reward": s.reward,
            "truncated": truncated, "generated_tokens": n_tokens, "max_new_tokens": limits[i], "prompt_tokens": len(ids[i]),
            "latency_s": round(seconds, 4),
        })
        count[0] += 1
        if count[0] == len(todo) or count[0] % max(1, len(todo) // 10) == 0:  # tasks finish one by one: ~10 lines
            say(f"{spec.role}: {count[0]}/{len(todo)} tasks")

    backend.run(prompts, ids, limits, done)
    info["seconds"] = round(time.perf_counter() - t_start, 3)
    if backend.stats:
        info["engine_stats"] = backend.stats
    backend.close()
    return info


# ---------------------------------------------------------------------------------------------
# the stage


def run(cfg: Config) -> dict:
    """Generate and score what is missing, then the report (also written as report.json and report.md)."""
    from trajtune.console import err_console

    with err_console.status("evaluating") as status:
        return evaluate(cfg, lambda m: (status.update(m), err_console.print(m, markup=False)))


def evaluate(cfg: Config, say: Callable[[str], None] | None = None) -> dict:
    """The work of :func:`run`, with progress messages to ``say``."""
    from trajtune import config as cfglib
    from trajtune.jsonl import Appender, atomic_writer, read_jsonl, write_json
    from trajtune.paths import guard
    from trajtune.report import compare, metrics, render_markdown

    say = say or (lambda msg: None)
    from trajtune import retrieval

    if cfg.corpus or retrieval.is_retrieval_file(cfg.tasks):  # embedding models ranking a corpus: its own module
        return retrieval.evaluate(cfg, say)
    out = Path(cfg.output)
    guard({"TASKS": cfg.tasks, "--model": cfg.model, "--baseline": cfg.baseline, "--adapter": list(cfg.adapter)},
          files={name: out / name for name in ("predictions.jsonl", "report.json", "report.md", "config.yaml")},
          dirs={"--output": out})
    # 1) tasks and models
    tasks = load_tasks(cfg.tasks, cfg.limit)
    by_id = {t["id"]: t for t in tasks}
    tuned_role = "tuned" if cfg.baseline else "model"
    specs = [_resolve_spec(tuned_role, cfg.model, list(cfg.adapter), cfg)]
    if cfg.baseline:
        if cfg.baseline == "base":
            if not specs[0].adapters:
                raise UsageError("--baseline base compares against the model without its adapter, but no --adapter was given",
                                 hint="pass --adapter RUN/final, or --baseline PATH")
            specs.insert(0, _resolve_spec("baseline", specs[0].model, [], cfg))
        else:
            specs.insert(0, _resolve_spec("baseline", cfg.baseline, [], cfg))
    out.mkdir(parents=True, exist_ok=True)
    cfglib.save(cfg, out / "config.yaml")

    # 2) generate and score what is missing, appending as we go
    runs = {}
    with Appender(out / "predictions.jsonl") as app:
        if app.existing:
            say(f"resuming: {app.existing} predictions already in {out / 'predictions.jsonl'}")
        for spec in specs:
            runs[spec.role] = run_model(spec, tasks, cfg, app, say)

    # 3) metrics from the predictions file (this run's and earlier runs' together)
    preds: dict[str, dict[str, dict]] = {s.key: {} for s in specs}
    for row in read_jsonl(out / "predictions.jsonl"):
        p = row.obj
        if p.get("model_key") in preds and p.get("task_id") in by_id:
            preds[p["model_key"]][p["task_id"]] = p
    report: dict[str, Any] = {"tasks_file": cfg.tasks, "tasks": len(tasks), "output": str(out),
                              "ready_threshold": cfg.ready_threshold, "models": {}}
    for s in specs:
        plist = [preds[s.key][t["id"]] for t in tasks if t["id"] in preds[s.key]]
        report["models"][s.role] = {"model": s.label, "key": s.key, **runs[s.role], "metrics": metrics(plist, by_id)}
    if cfg.baseline:
        report["comparison"] = compare(list(preds[specs[0].key].values()), list(preds[specs[1].key].values()),
                                       cfg.ready_threshold)
    final = report["models"][tuned_role]["metrics"]["pass_rate"] or 0.0
    report["ready_for_rl"] = final >= cfg.ready_threshold

    # 4) reports
    write_json(out / "report.json", report)
    with atomic_writer(out / "report.md", "w") as fh:
        fh.write(render_markdown(report))
    return report


def render(report: dict, cfg: Config) -> None:
    from trajtune.console import err_console
    from trajtune.report import rich_table

    if report.get("kind") == "retrieval":
        from trajtune.retrieval import rich_table
    err_console.print(rich_table(report))
    err_console.print(f"wrote {Path(cfg.output) / 'report.md'} and report.json", markup=False)


HEADLINE = ("pass_rate", "tool_name_accuracy", "argument_accuracy", "valid_json_rate", "hallucination_rate",
            "no_call_accuracy", "mean_latency_s", "truncated")


def lineage(cfg: Config, report: dict) -> dict:
    """The evaluation in the manifest: each model's key (its rows in predictions.jsonl) and headline
    metrics, the ids and digest of the tasks evaluated (``trajtune runs compare`` pairs only identical
    task sets; a predictions file may hold more, from an earlier run without --limit)."""
    if report.get("kind") == "retrieval":  # a ranking report: the generic headline numbers
        return {}
    from trajtune.records import content_id

    tasks = load_tasks(cfg.tasks, cfg.limit) if cfg.tasks != "-" else None  # just read by the run: the same file
    roles = {role: {"model": m["model"], "key": m["key"], "metrics": {k: m["metrics"].get(k) for k in HEADLINE}}
             for role, m in report["models"].items()}
    main = "tuned" if "tuned" in roles else "model"
    metrics = {"tasks": report["tasks"], "pass_rate": roles[main]["metrics"]["pass_rate"]}
    c = report.get("comparison")
    if c:
        metrics.update(baseline_pass_rate=c["baseline_pass_rate"], improvement_points=c["improvement_points"],
                       mcnemar_p=c["mcnemar_p"])
    return {"metrics": metrics, "evaluation": {
        "tasks": report["tasks"], "primary": main, "roles": roles,
        "task_ids": [t["id"] for t in tasks] if tasks else None,
        "tasks_digest": content_id(sorted(tasks, key=lambda t: str(t["id"]))) if tasks else None}}


STAGE = Stage(
    name="evaluate", config=Config, run=run, render=render, lineage=lineage,
    help="Evaluate a model on task records: prompts rendered exactly as in training, batched greedy generation "
         "(shared prompt prefixes computed once, no padding, finished sequences replaced at once), "
         "each reply scored (tool names, type-aware arguments, order, no-call, answers). Writes predictions.jsonl "
         "(appended as it goes; re-running skips done tasks), report.json and report.md into OUT_DIR, and prints "
         "the table. With --baseline both models answer the same tasks and the report adds the improvement in "
         "points, an exact paired McNemar p-value and 'ready for RL'.",
    example="trajtune evaluate data/tasks.jsonl --model default --adapter runs/sft/final --baseline base -o runs/eval",
)

if __name__ == "__main__":
    from trajtune.cli.command import script

    script(STAGE)
