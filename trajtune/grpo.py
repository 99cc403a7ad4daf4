"""train-grpo's pieces: task prompts, the rewards, the shared-prefill rollout, the held-out pass
rate and the GRPOTrainer subclass that reports it. The stage itself is ``scripts/train_grpo.py``.

* **Prompts** are rendered by THE renderer exactly as ``evaluate`` renders them
  (``trajtune.chat.render_prompt``, tokenized without special tokens); a template that fails on a
  task's tools, or drops them from the text, stops the run before any model is trained.
* **Rewards** are THE scorer's (``trajtune.scoring.score``): ``task_reward`` is ``Score.reward``
  (1.0 for a pass, partial credit up to 0.9) of the reply cut at its end-of-turn token, as evaluate
  cuts it. Optional weighted terms: ``format_reward`` (1 when every ``<tool_call>`` block parses
  and the turn ended, else 0) and ``length_penalty`` (``-tokens / max_completion_length``). trl logs
  each term under its function's name (``rewards/<name>/mean`` and ``/std``).
* **Rollouts** (:class:`SharedPrefillRollout`, trl's ``rollout_func``): trl hands over each prompt
  repeated ``num_generations`` times; the slot engine of ``trajtune.generation`` prefills each prompt
  once, copies its KV into ``num_generations`` rows and samples them together (temperature, top-p),
  returning the drawn tokens' log-probs. trl's own path (``model.generate``) runs the prompt once
  per completion, padded.
* **Held-out pass rate**: greedy, through evaluate's engine and scorer, every ``eval_steps``;
  ``eval_pass_rate`` is the metric for early stopping and the best checkpoint; the pass rate of
  each kind of task (``eval_calls_pass_rate``, ``eval_no_call_pass_rate``) is logged beside it.

Heavy imports (torch, trl) happen inside functions.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from trajtune.errors import ConfigError, RunError

REWARD_TERMS = ("task_reward", "format_reward", "length_penalty")


# ------------------------------------------------------------------------ prompts

def render_task(tokenizer: Any, task: dict) -> tuple[str, list[int]]:
    """The generation prompt of a task, exactly as evaluate renders and tokenizes it."""
    from trajtune.chat import render_prompt

    text = render_prompt(tokenizer, task["prompt"], task.get("tools"))
    return text, tokenizer(text, add_special_tokens=False)["input_ids"]


def _first_turn(messages: Sequence[dict]) -> tuple[list[dict], str] | None:
    """The calls (name, arguments) and text of a response's first assistant message; None when it has none."""
    for m in messages:
        if m.get("role") == "assistant":
            calls = []
            for c in m.get("tool_calls") or []:
                fn = c.get("function") or {}
                calls.append({"name": fn.get("name"), "arguments": fn.get("arguments") or {}})
            return calls, (m.get("content") or "").strip()
    return None


def task_from_group(record: dict, min_reward: float | None = None) -> tuple[dict | None, str]:
    """A group record (a prompt with scored responses, e.g. from interaction logs) as a task record
    whose expected reply is what its best-rewarded response did in its first assistant turn: those
    tool calls (each argument's logged value the one accepted), or no call when it answered in text
    and the record offers tools. (task, "") or (None, why it cannot be one): rewards all equal, a
    tie at the top between different replies, the best below ``min_reward``, or a text answer with
    no tools offered, which the scorer cannot verify (it rewards calls and the choice not to call)."""
    responses = sorted(record["responses"], key=lambda r: -float(r["reward"]))
    best, low = float(responses[0]["reward"]), float(responses[-1]["reward"])
    if best == low:
        return None, "every response has the same reward"
    if min_reward is not None and best < min_reward:
        return None, "best reward below group_min_reward"
    turns = [_first_turn(r["messages"]) for r in responses if float(r["reward"]) == best]
    if any(t is None for t in turns):
        return None, "the best response has no assistant message"
    calls = turns[0][0]
    if any([(c["name"], json.dumps(c["arguments"], sort_keys=True)) for c in t[0]]
           != [(c["name"], json.dumps(c["arguments"], sort_keys=True)) for c in calls] for t in turns[1:]):
        return None, "responses with different calls share the best reward"
    if not calls and not record.get("tools"):
        return None, "the best response answers in text and no tools are offered: no verifiable reward"
    expected: dict = {"calls": [{"name": c["name"], "arguments": {k: [v] for k, v in c["arguments"].items()}} for c in calls]}
    if len(calls) > 1:
        expected["order"] = "any"  # the calls of one turn are parallel: any order
    meta = {**(record.get("metadata") or {}), "from_group": {"best_reward": best, "responses": len(responses)}}
    task = {"id": record["id"], "metadata": meta, "prompt": record["prompt"], "expected": expected}
    if record.get("tools"):
        task["tools"] = record["tools"]
    return task, ""


def tasks_from_records(records: Sequence[dict], min_reward: float | None, counts: dict) -> list[dict]:
    """Task records as they are and group records made tasks (:func:`task_from_group`); ``counts``
    (group_records, group_tasks, group_skipped by reason) is added to, so calls can share it."""
    from trajtune.records import detect_kind

    out: list[dict] = []
    for key, empty in (("group_records", 0), ("group_tasks", 0), ("group_skipped", {})):
        counts.setdefault(key, empty)
    for r in records:
        if detect_kind(r) != "group":
            out.append(r)
            continue
        counts["group_records"] += 1
        task, why = task_from_group(r, min_reward)
        if task is None:
            counts["group_skipped"][why] = counts["group_skipped"].get(why, 0) + 1
        else:
            counts["group_tasks"] += 1
            out.append(task)
    return out


def _tool_names(task: dict) -> list[str]:
    return [str((t.get("function") or t).get("name")) for t in task.get("tools") or [] if isinstance(t, dict)]


def encode_tasks(tokenizer: Any, tasks: Sequence[dict], max_prompt_tokens: int) -> tuple[list[dict], dict]:
    """Rows ``{prompt: rendered text, task: the record as JSON}`` (JSON text, so tool schemas never
    become Arrow structs) and counts. Raises ConfigError when the chat template cannot render a
    task's tools (an exception, or a rendered prompt that does not name every tool offered)."""
    rows: list[dict] = []
    counts = {"dropped_prompt_too_long": 0, "prompt_tokens_max": 0}
    for task in tasks:
        try:
            text, ids = render_task(tokenizer, task)
        except Exception as exc:  # noqa: BLE001 - jinja raises its own TemplateError (e.g. "System role not supported")
            raise ConfigError(f"the chat template cannot render task {task.get('id')!r} with its tools: "
                              f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:200]}",
                              hint="use a model whose chat template takes a system message or renders tools") from None
        missing = [n for n in _tool_names(task) if n not in text]
        if missing:
            raise ConfigError(f"the chat template drops the tools of task {task.get('id')!r}: its rendered prompt does not "
                              f"name {', '.join(missing[:3])}", hint="use a model whose chat template keeps the system message "
                              "(where the tools go) or renders tools itself")
        if len(ids) > max_prompt_tokens:
            counts["dropped_prompt_too_long"] += 1
            continue
        counts["prompt_tokens_max"] = max(counts["prompt_tokens_max"], len(ids))
        rows.append({"prompt": text, "task": json.dumps(task, ensure_ascii=False)})
    return rows, counts


# ------------------------------------------------------------------------ rewards

@dataclass
class Replies:
    """Cuts completions as evaluate does: (text, generated tokens, truncated)."""

    tokenizer: Any
    stop_ids: list[int]
    max_tokens: int

    def cut(self, ids: Sequence[int]) -> tuple[str, int, bool]:
        from trajtune.generation import cut_reply

        return cut_reply(self.tokenizer, list(ids), self.stop_ids, [], self.max_tokens)


def reward_functions(replies: Replies, *, match: str = "auto", format_weight: float = 0.0,
                     length_weight: float = 0.0, partial_credit: bool = True) -> tuple[list[Callable], list[float]]:
    """trl reward functions (named by their term) and their weights; a term with weight 0 is left out.
    ``partial_credit=False`` makes task_reward binary (1 for a pass, 0 otherwise): a wrong call then
    earns what no call earns, so a group is not pushed towards calling by calls that fail anyway."""
    from trajtune.chat import parse_tool_calls
    from trajtune.scoring import score

    def task_reward(prompts, completions, completion_ids, task, **kwargs) -> list[float]:
        out = []
        for ids, t in zip(completion_ids, task):
            text, _, truncated = replies.cut(ids)
            sc = score(json.loads(t), text, truncated, match=match)
            out.append(float(sc.reward) if partial_credit else float(sc.passed))
        return out

    def format_reward(prompts, completions, completion_ids, **kwargs) -> list[float]:
        out = []
        for ids in completion_ids:
            text, _, truncated = replies.cut(ids)
            out.append(1.0 if parse_tool_calls(text).valid_json and not truncated else 0.0)
        return out

    def length_penalty(prompts, completions, completion_ids, **kwargs) -> list[float]:
        return [-replies.cut(ids)[1] / replies.max_tokens for ids in completion_ids]

    funcs, weights = [task_reward], [1.0]
    if format_weight:
        funcs.append(format_reward), weights.append(float(format_weight))
    if length_weight:
        funcs.append(length_penalty), weights.append(float(length_weight))
    return funcs, weights


def term_rewards(funcs: Sequence[Callable], completion_ids: list[list[int]], tasks_json: list[str]) -> dict[str, list[float]]:
    """Each reward term's values for the completions (unweighted), by term name, for the start-up probe."""
    return {f.__name__: list(f(prompts=None, completions=None, completion_ids=completion_ids, task=tasks_json))
            for f in funcs}


# ------------------------------------------------------------------------ rollouts

def generation_model(model: Any) -> Any:
    """The module to run for generation: a PeftModel's base model (its LoRA layers stay in place)."""
    inner = getattr(model, "module", model)  # DDP
    return inner.get_base_model() if hasattr(inner, "get_base_model") else inner


def decode_rows(model: Any, prompt_ids: Sequence[Sequence[int]], max_new_tokens: int, limit: int) -> int:
    """Rows decoded together, as evaluate sizes them: their KV buffer fits in a quarter of free memory."""
    from trajtune.generation import kv_bytes_per_token
    from trajtune.training import free_memory_bytes

    per_row = (max(len(p) for p in prompt_ids) + max_new_tokens + 1) * kv_bytes_per_token(model)
    device = "cuda" if getattr(model.device, "type", "cpu") == "cuda" else "cpu"
    return max(1, min(limit, free_memory_bytes(device) // 4 // max(per_row, 1)))


@dataclass
class SharedPrefillRollout:
    """trl's ``rollout_func``: each group's prompt prefilled once, its completions sampled together."""

    tokenizer: Any
    stop_ids: list[int]
    max_new_tokens: int
    temperature: float
    top_p: float
    rows: int = 64  # decode rows at most (a multiple of the group size is used)
    stats: dict = field(default_factory=lambda: {"calls": 0, "prompts": 0, "completions": 0, "generated_tokens": 0,
                                                 "prompt_tokens": 0, "prefilled_tokens": 0, "decode_steps": 0,
                                                 "seconds": 0.0, "prefill_s": 0.0, "decode_s": 0.0})
    _ids: dict = field(default_factory=dict)

    def ids(self, text: str) -> list[int]:
        if text not in self._ids:
            self._ids[text] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self._ids[text]

    def sample(self, model: Any, prompt_ids: list[list[int]], group: int) -> list:
        """``group`` sampled completions of every prompt (results indexed prompt * group + j)."""
        import torch

        from trajtune.generation import Engine

        gen = generation_model(model)
        was_training = gen.training
        gen.eval()
        t0 = time.perf_counter()
        try:
            rows = decode_rows(gen, prompt_ids, self.max_new_tokens, self.rows)
            engine = Engine(gen, self.stop_ids, self.max_new_tokens, batch_size=max(group, rows - rows % group),
                            temperature=self.temperature, top_p=self.top_p, num_samples=group)
            with torch.no_grad():
                results = engine.run(prompt_ids)
        finally:
            gen.train(was_training)
        st = self.stats
        st["calls"] += 1
        st["prompts"] += len(prompt_ids)
        st["completions"] += len(results)
        st["generated_tokens"] += engine.stats.generated
        st["prompt_tokens"] += engine.stats.prompt_tokens
        st["prefilled_tokens"] += engine.stats.prefilled_tokens
        st["decode_steps"] += engine.stats.steps
        st["prefill_s"] += engine.stats.prefill_s
        st["decode_s"] += engine.stats.decode_s
        st["seconds"] += time.perf_counter() - t0
        return results

    def __call__(self, prompts: list, trainer: Any) -> dict:
        group = trainer.num_generations if trainer.model.training else trainer.num_generations_eval
        if len(prompts) % group:
            raise RunError(f"rollout: {len(prompts)} prompts is not a multiple of num_generations {group}")
        uniq = prompts[::group]
        if any(prompts[k] != uniq[k // group] for k in range(len(prompts))):  # trl's RepeatSampler keeps a group together
            raise RunError("rollout: trl did not pass each prompt's num_generations copies together",
                           hint="use --set rollout=trl")
        ids = [self.ids(p) for p in uniq]
        results = self.sample(trainer.model, ids, group)
        return {"prompt_ids": [ids[k // group] for k in range(len(prompts))],
                "completion_ids": [r.ids for r in results],
                "logprobs": [r.logprobs for r in results]}

    def summary(self) -> dict:
        st = dict(self.stats)
        for k in ("seconds", "prefill_s", "decode_s"):
            st[k] = round(st[k], 3)
        st["generated_tokens_per_s"] = round(st["generated_tokens"] / st["seconds"], 1) if st["seconds"] else None
        return st


# ------------------------------------------------------------------------ held-out pass rate

def held_out(model: Any, tokenizer: Any, tasks: Sequence[dict], stop_ids: list[int], max_new_tokens: int,
             match: str = "auto", rows: int = 64) -> dict:
    """Greedy replies to ``tasks`` through evaluate's engine, scored by evaluate's scorer."""
    import torch

    from trajtune.generation import Engine, cut_reply
    from trajtune.scoring import score

    gen = generation_model(model)
    was_training = gen.training
    gen.eval()
    try:
        ids = [render_task(tokenizer, t)[1] for t in tasks]
        engine = Engine(gen, stop_ids, max_new_tokens, batch_size=decode_rows(gen, ids, max_new_tokens, rows))
        with torch.no_grad():
            results = engine.run(ids)
    finally:
        gen.train(was_training)
    scores = []
    for t, r in zip(tasks, results):
        text, _, truncated = cut_reply(tokenizer, r.ids, stop_ids, [], max_new_tokens)
        scores.append(score(t, text, truncated, match=match))
    n = max(len(scores), 1)
    by_kind: dict[str, dict] = {}
    for s in scores:  # calls / no_call / answer: a policy that drifts to one kind of reply shows here first
        k = by_kind.setdefault(s.kind, {"tasks": 0, "passed": 0})
        k["tasks"] += 1
        k["passed"] += int(s.passed)
    return {"pass_rate": round(sum(s.passed for s in scores) / n, 6),
            "reward": round(sum(s.reward for s in scores) / n, 6), "tasks": len(scores),
            "by_kind": {k: {"tasks": v["tasks"], "pass_rate": round(v["passed"] / v["tasks"], 6)} for k, v in sorted(by_kind.items())}}


def collapsed_kinds(start: dict, final: dict) -> list[str]:
    """Kinds of held-out task (calls, no_call, answer) the starting model passed sometimes and the
    final one never: the signature of a policy that learned one kind of reply for everything (the
    overall pass rate can still rise when the held-out mix rewards that reply)."""
    s, f = start.get("by_kind") or {}, final.get("by_kind") or {}
    return [k for k, v in s.items() if v["pass_rate"] > 0 and k in f and f[k]["pass_rate"] == 0]


def restore_start(model: Any, adapter: str | None) -> str | None:
    """Put the starting weights back into a LoRA policy: the ``adapter`` it continued (as saved), or,
    for a new LoRA, every ``lora_B`` to zero (a LoRA's initial state: it changes nothing). Returns
    None when done, else why it could not (full fine-tuning keeps no copy of the start)."""
    import torch
    from peft import PeftModel
    from peft.utils import load_peft_weights, set_peft_model_state_dict

    if not isinstance(model, PeftModel):
        return "full fine-tuning keeps no copy of the starting weights"
    if adapter:
        got = set_peft_model_state_dict(model, load_peft_weights(adapter, device="cpu"), adapter_name="default")
        if getattr(got, "unexpected_keys", None):
            return f"the --adapter's weights did not fit the policy ({len(got.unexpected_keys)} unexpected keys)"
        return None
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_B.default." in name or name.endswith(".lora_B.default"):
                p.zero_()
    return None


def make_trainer_class():
    """GRPOTrainer whose ``evaluate`` is the held-out pass rate (trl's own eval would sample groups
    and report a loss, which says little about whether the agent calls the right tool)."""
    from trl import GRPOTrainer

    class TaskGRPOTrainer(GRPOTrainer):
        def __init__(self, *args, held_out_tasks: Sequence[dict] = (), held_out_fn: Callable | None = None, **kwargs):
            super().__init__(*args, **kwargs)
            self.held_out_tasks = list(held_out_tasks)
            self.held_out_fn = held_out_fn
            self.eval_history: list[dict] = []

        def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict:
            t0 = time.perf_counter()
            r = self.held_out_fn(self.model, self.held_out_tasks)
            metrics = {f"{metric_key_prefix}_pass_rate": r["pass_rate"], f"{metric_key_prefix}_reward": r["reward"],
                       **{f"{metric_key_prefix}_{k}_pass_rate": v["pass_rate"] for k, v in r.get("by_kind", {}).items()},
                       f"{metric_key_prefix}_runtime": round(time.perf_counter() - t0, 3)}
            self.eval_history.append({"step": self.state.global_step, "pass_rate": r["pass_rate"], "reward": r["reward"],
                                      "by_kind": r.get("by_kind", {})})
            was_training = self.model.training
            self.model.eval()  # GRPOTrainer.log merges its "eval" metrics (none) in eval mode
            try:
                self.log(dict(metrics))
            finally:
                self.model.train(was_training)
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
            return metrics

    return TaskGRPOTrainer


# ------------------------------------------------------------------------ signals

def progress_callback(log: Callable[[str], None]):
    """Prints the GRPO numbers people watch (stderr): reward, per-term means, all-equal groups, KL,
    completion length, held-out pass rate."""
    from transformers import TrainerCallback

    keys = ("reward", "reward_std", "frac_reward_zero_std", "kl", "completions/mean_length", "eval_pass_rate")

    class GRPOProgress(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            shown = {k: logs[k] for k in keys if isinstance(logs.get(k), (int, float))}
            shown.update({k.split("/")[1]: logs[k] for k in logs if k.startswith("rewards/") and k.endswith("/mean")
                          and isinstance(logs[k], (int, float))})
            if shown:
                log(f"step {state.global_step}/{state.max_steps} " + " ".join(f"{k}={v:.4g}" for k, v in shown.items()))

    return GRPOProgress()


def summarize(log_history: Sequence[dict], terms: Sequence[str], beta: float) -> dict:
    """Reward mean/std per term, all-equal groups, KL and completion length over the logged steps."""

    def series(key: str) -> list[float]:
        return [h[key] for h in log_history if isinstance(h.get(key), (int, float))]

    def mean(xs: list[float]) -> float | None:
        return round(sum(xs) / len(xs), 6) if xs else None

    rewards = {}
    for t in terms:
        m, s = series(f"rewards/{t}/mean"), series(f"rewards/{t}/std")
        rewards[t] = {"mean": mean(m), "std": mean(s), "first": m[0] if m else None, "last": m[-1] if m else None}
    out = {
        "rewards": rewards,
        "reward_mean": mean(series("reward")), "reward_std": mean(series("reward_std")),
        "reward_history": [{"step": h["step"], "reward": h["reward"]} for h in log_history if "reward" in h and "step" in h],
        # trl keeps groups whose rewards are all equal in the batch: their advantage is 0, so they add no gradient
        "all_equal_groups_share": mean(series("frac_reward_zero_std")),
        "all_equal_groups": "counted: kept in the batch with advantage 0 (no gradient), not skipped",
        "completion_mean_length": mean(series("completions/mean_length")),
        "completion_clipped_ratio": mean(series("completions/clipped_ratio")),
    }
    out["kl_mean"] = mean(series("kl")) if beta > 0 else None
    out["kl_last"] = (series("kl") or [None])[-1] if beta > 0 else None
    return out
