"""scripts/train_grpo.py on a tiny real model, through the real command: shared-prefill rollouts
(log-probs, one prefill per group), rewards from the scorer, the summary's reward statistics,
early stopping on the held-out pass rate, the guards, an SFT adapter as the start, SIGTERM then
SIGKILL then re-run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the task builder beside this file
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: helpers
from grpo_tasks import make_tasks, write_tasks  # noqa: E402
from helpers.cli import run as cli  # noqa: E402
from trajtune import training  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def noisy(tiny_model, tmp_path_factory) -> Path:
    """The tiny model with large random weights: its sampled replies differ from draw to draw."""
    from trajtune.testing import build_noisy_model

    return build_noisy_model(tiny_model, tmp_path_factory.mktemp("noisy") / "m")


@pytest.fixture(scope="module")
def tasks(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("tasks")
    return {"train": write_tasks(d / "train.jsonl", 16, prefix="a"), "eval": write_tasks(d / "eval.jsonl", 4, prefix="b")}


def _args(model, data, out, **kw) -> list[str]:
    base = {"model": model, "output": out, "max-steps": 3, "batch-size": 8, "num-generations": 4,
            "max-completion-length": 8, "save-steps": 1, "logging-steps": 1, "precision": "fp32", "max-length": 512}
    base.update(kw)
    args = [str(data)]
    for k, v in base.items():
        if v is True:
            args.append(f"--{k}")
        elif v is not None:
            args += [f"--{k}", str(v)]
    return [*args, "--allow-unreviewed"]


def _env(sleep=None) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if sleep:
        env["TRAJTUNE_TEST_STEP_SLEEP"] = str(sleep)
    return env


def _command(*args) -> list[str]:
    return [sys.executable, "-m", "trajtune.cli.app", "train-grpo", *args]


# --- pieces ---------------------------------------------------------------------------------

def test_sampled_groups_share_one_prefill_and_carry_the_log_probs_trl_computes(noisy):
    """num_samples rows per prompt from one prefill; each drawn token's log-prob is the
    temperature-scaled log-softmax of a plain forward over prompt + completion (what trl's loss uses)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trajtune.generation import Engine, stop_token_ids
    from trajtune.grpo import render_task

    tok = AutoTokenizer.from_pretrained(noisy)
    model = AutoModelForCausalLM.from_pretrained(noisy, dtype=torch.float32).eval()
    prompts = [render_task(tok, t)[1] for t in make_tasks(3)]
    stop = stop_token_ids(tok, model)
    torch.manual_seed(0)
    engine = Engine(model, stop, 12, batch_size=8, temperature=0.7, top_p=1.0, num_samples=4)
    results = engine.run(prompts)
    assert sorted(r.index for r in results) == list(range(12))
    # one prefill per prompt, not per completion (the three prompts also share their system/tools prefix)
    assert engine.stats.prefilled_tokens <= sum(len(p) for p in prompts)
    assert engine.stats.prompt_tokens == sum(len(p) for p in prompts)
    assert len({tuple(r.ids) for r in results}) > 3  # samples differ within groups
    for r in results:
        assert len(r.logprobs) == len(r.ids) and all(lp <= 0 for lp in r.logprobs)
        assert all(t not in stop for t in r.ids[:-1])  # cut at the first end-of-turn token
        p = prompts[r.index // 4]
        with torch.no_grad():
            logits = model(torch.tensor([p + r.ids])).logits[0, len(p) - 1: -1] / 0.7
        want = torch.log_softmax(logits, -1).gather(-1, torch.tensor(r.ids)[:, None])[:, 0]
        torch.testing.assert_close(torch.tensor(r.logprobs), want, atol=2e-4, rtol=1e-4)


def _grpo_batch(vocab: int = 200):
    """A batch as trl's GRPO loss builds it: left-padded prompts, right-padded completions, rows shuffled:
    three completions of a 20-token prompt, two of a 14-token one, one of a 9-token one."""
    import torch

    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, vocab, (n,), generator=g) for n in (20, 14, 9)]
    rows = [(0, 5), (1, 7), (0, 2), (2, 6), (1, 3), (0, 7)]  # (prompt, completion length), shuffled
    width_p, width_c = 20, 7
    ids = torch.zeros((len(rows), width_p + width_c), dtype=torch.long)
    att = torch.zeros_like(ids)
    for i, (k, lc) in enumerate(rows):
        p = prompts[k]
        ids[i, width_p - len(p):width_p], att[i, width_p - len(p):width_p] = p, 1
        ids[i, width_p:width_p + lc] = torch.randint(3, vocab, (lc,), generator=g)
        att[i, width_p:width_p + lc] = 1
    labels = ids.masked_fill(att == 0, -100)
    labels[:, :width_p] = -100  # trl: labels[:, :-logits_to_keep] = -100
    return ids, att, labels


def test_grouped_prompt_head_gives_trls_log_probs_entropy_and_gradients(tiny_model):
    """train-grpo's head on a CPU: each distinct prompt of the batch runs once (its KV cache repeated
    for the group's completions) and only completion positions reach the vocabulary: the same
    log-probs, entropies and gradients (entropy's included) as trl's own fused head over full rows."""
    import torch
    from trl.trainer.utils import add_fused_lm_head

    from trajtune import trainers
    from trajtune.testing import lora_with_random_b
    from trajtune.trainers import add_grouped_prompt_head, grouped_prompt_hidden

    ids, att, labels = _grpo_batch()
    calls = []
    real = trainers.grouped_prompt_hidden
    trainers.grouped_prompt_hidden = lambda *a, **k: calls.append(real(*a, **k)) or calls[-1]
    results = {}
    try:
        for variant in ("trl", "ours_plain", "ours_shared"):
            model = lora_with_random_b(tiny_model)  # through PEFT, which passes extra None inputs
            add_fused_lm_head(model.get_base_model(), temperature=0.7, outputs=("log_probs", "entropy"))
            if variant != "trl":
                assert add_grouped_prompt_head(model.get_base_model(), temperature=0.7, share_prompt=variant == "ours_shared")
            out = model(input_ids=ids, attention_mask=att, labels=labels, fused_lm_head=True)
            (out.log_probs.sum() + 0.1 * out.entropy.sum()).backward()
            grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
            results[variant] = (out.log_probs.detach(), out.entropy.detach(), grads, out.label_mask)
    finally:
        trainers.grouped_prompt_hidden = real
    assert len(calls) == 1 and calls[0] is not None  # the grouped path ran, once (ours_shared)
    lp, ent, g, mask = results["trl"]
    assert int(mask.sum()) == int((labels[:, 1:] != -100).sum()) == 30
    for variant in ("ours_plain", "ours_shared"):
        lp2, ent2, g2, mask2 = results[variant]
        assert torch.equal(mask2, mask)
        torch.testing.assert_close(lp2, lp, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(ent2, ent, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(g2, g, atol=1e-4, rtol=1e-3)
    # batches not in the GRPO shape fall back to the plain forward
    backbone = model.get_base_model().model
    assert grouped_prompt_hidden(backbone, {"input_ids": ids, "attention_mask": att}, torch.full_like(ids, -100)) is None
    assert grouped_prompt_hidden(backbone, {"input_ids": ids, "attention_mask": att.flip(1)}, labels) is None
    assert grouped_prompt_hidden(backbone, {"input_ids": ids, "attention_mask": att, "inputs_embeds": torch.zeros(1)}, labels) is None


def test_greedy_engine_is_unchanged_by_the_sampling_fields(noisy):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trajtune.generation import Engine, stop_token_ids
    from trajtune.grpo import render_task

    tok = AutoTokenizer.from_pretrained(noisy)
    model = AutoModelForCausalLM.from_pretrained(noisy, dtype=torch.float32).eval()
    prompts = [render_task(tok, t)[1] for t in make_tasks(2)]
    stop = stop_token_ids(tok, model)
    got = Engine(model, stop, 6).run(prompts)
    for r, p in zip(got, prompts):
        out = model.generate(torch.tensor([p]), max_new_tokens=6, do_sample=False, eos_token_id=stop, pad_token_id=tok.pad_token_id)
        want = out[0, len(p):].tolist()
        assert r.ids == want[: len(r.ids)] and r.logprobs == []


def test_prompts_are_rendered_as_evaluate_renders_them_and_rewards_are_the_scorers(noisy):
    from transformers import AutoTokenizer

    from trajtune.chat import format_tool_call, render_prompt
    from trajtune.generation import stop_token_ids
    from trajtune.grpo import Replies, encode_tasks, reward_functions
    from trajtune.scoring import score

    tok = AutoTokenizer.from_pretrained(noisy)
    task = {"id": "q1", "prompt": [{"role": "user", "content": "Show 5 rows of orders."}], "tools": make_tasks(1)[0]["tools"],
            "expected": {"calls": [{"name": "database_query", "arguments": {"table": ["orders"], "limit": [5]}}]}}
    rows, counts = encode_tasks(tok, [task], 4096)
    assert rows[0]["prompt"] == render_prompt(tok, task["prompt"], task["tools"]) and json.loads(rows[0]["task"]) == task
    _, counts = encode_tasks(tok, [task], 10)
    assert counts["dropped_prompt_too_long"] == 1
    end = tok.convert_tokens_to_ids("<|im_end|>")
    replies = Replies(tok, stop_token_ids(tok), 64)
    texts = [format_tool_call("database_query", {"table": "orders", "limit": 5}),  # right: 1.0
             format_tool_call("database_query", {"table": "orders", "limit": 7}),  # wrong argument: partial credit
             '<tool_call>\n{"name": "database_query", "arguments": {"table"\n</tool_call>']  # broken JSON
    ids = [tok(t, add_special_tokens=False)["input_ids"] + [end] for t in texts]
    funcs, weights = reward_functions(replies, format_weight=0.5, length_weight=0.1)
    assert [f.__name__ for f in funcs] == ["task_reward", "format_reward", "length_penalty"] and weights == [1.0, 0.5, 0.1]
    got = {f.__name__: f(prompts=None, completions=None, completion_ids=ids, task=[rows[0]["task"]] * 3) for f in funcs}
    assert got["task_reward"] == [score(task, t).reward for t in texts]
    assert got["task_reward"][0] == 1.0 and 0 < got["task_reward"][1] < 0.9 and got["task_reward"][2] < got["task_reward"][1]
    assert got["format_reward"] == [1.0, 1.0, 0.0]
    assert got["length_penalty"] == [-len(i) / 64 for i in ids]  # the end-of-turn token counts, as in evaluate
    # partial_credit false: pass or nothing, so a wrong call earns what no call earns
    (binary,), _ = reward_functions(replies, partial_credit=False)
    assert binary(prompts=None, completions=None, completion_ids=ids, task=[rows[0]["task"]] * 3) == [1.0, 0.0, 0.0]


# --- the command ----------------------------------------------------------------------------

def test_trains_through_the_cli_and_writes_reward_statistics(noisy, tasks, tmp_path):
    out = tmp_path / "run"
    res = subprocess.run(_command(*_args(noisy, tasks["train"], out, **{"eval-data": tasks["eval"], "eval-steps": 1,
                                                                        "patience": 0, "format-weight": 0.2}),
                                  "--set", "beta=0.04", "--json"),
                         capture_output=True, text=True, env=_env(), timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    s = json.loads((out / "training_summary.json").read_text())
    assert json.loads(res.stdout)["run_dir"] == str(out)
    assert s["finished"] and s["global_step"] == 3 and s["stop_reason"] == "max_steps reached"
    assert s["rollout_engine"] == "shared" and s["method"] == "lora"
    assert s["loss_forward"] == "shared prompts, completion positions only"
    assert s["probe"]["groups_with_variance"] >= 1 and s["probe"]["completions"] == 16
    # reward statistics per term, as trl logged them every step
    assert set(s["rewards"]) == {"task_reward", "format_reward"} and s["reward_terms"] == {"task_reward": 1.0, "format_reward": 0.2}
    steps = [h for h in json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())["log_history"] if "reward" in h]
    assert [h["step"] for h in steps] == [1, 2, 3]
    means = [h["rewards/task_reward/mean"] for h in steps]
    assert s["rewards"]["task_reward"]["mean"] == pytest.approx(sum(means) / 3, abs=1e-6)
    assert all(0 <= m <= 1 for m in means) and s["rewards"]["task_reward"]["std"] is not None
    assert 0 <= s["all_equal_groups_share"] <= 1 and s["all_equal_groups"].startswith("counted")
    assert s["kl_mean"] is not None and s["kl_mean"] >= 0  # beta > 0: KL to the reference is logged
    assert 0 < s["completion_mean_length"] <= 8
    # held-out pass rate every eval step, through evaluate's engine
    assert [h["step"] for h in s["eval_pass_rate_history"]] == [1, 2, 3]
    assert 0 <= s["eval_pass_rate"] <= 1 and s["best_eval_pass_rate"] is not None
    assert 0 <= s["start_eval_pass_rate"] <= 1 and s["beat_start"] == (s["eval_pass_rate"] > s["start_eval_pass_rate"])
    assert "held-out pass rate before training" in res.stderr
    # ... and per kind of task, so a policy drifting to one kind of reply shows even when the total rises
    for by in (s["start_eval_by_kind"], s["eval_by_kind"], *(h["by_kind"] for h in s["eval_pass_rate_history"])):
        assert set(by) <= {"calls", "no_call", "answer"} and sum(v["tasks"] for v in by.values()) == s["data"]["eval_tasks"]
    n = s["data"]["eval_tasks"]
    assert s["eval_pass_rate"] == pytest.approx(sum(v["tasks"] * v["pass_rate"] for v in s["eval_by_kind"].values()) / n, abs=1e-5)
    assert isinstance(s["collapsed_kinds"], list)
    # the rollouts: 3 steps x 2 prompts x 4 completions, each group's prompt prefilled once
    ro = s["rollout"]
    assert ro["prompts"] == 6 and ro["completions"] == 24 and ro["prefilled_tokens"] < ro["prompt_tokens"]
    assert ro["generated_tokens"] > 0
    tb = b"".join(p.read_bytes() for p in (out / "tensorboard").glob("events.out.tfevents.*"))
    kind_tags = [f"eval/{k}_pass_rate".encode() for k in s["eval_by_kind"]]
    for tag in (b"rewards/task_reward/mean", b"rewards/format_reward/std", b"frac_reward_zero_std", b"kl", b"eval/pass_rate", *kind_tags):
        assert tag in tb, tag
    assert (out / "final" / "adapter_model.safetensors").is_file()
    # the same command again does not train again
    again = subprocess.run(_command(*_args(noisy, tasks["train"], out, **{"eval-data": tasks["eval"], "eval-steps": 1,
                                                                          "patience": 0, "format-weight": 0.2}),
                                    "--set", "beta=0.04"), capture_output=True, text=True, env=_env(), timeout=300)
    assert again.returncode == 0 and "already holds a finished run" in again.stderr


def test_early_stopping_on_held_out_pass_rate_names_the_best_checkpoint(noisy, tasks, tmp_path):
    # learning rate 0: the held-out pass rate cannot improve, so early stopping fires after `patience` evaluations
    out = tmp_path / "run"
    res = subprocess.run(_command(*_args(noisy, tasks["train"], out, **{
        "eval-data": tasks["eval"], "max-steps": 30, "eval-steps": 1, "save-steps": 1, "patience": 2, "learning-rate": 0.0})),
        capture_output=True, text=True, env=_env(), timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "early stopping" in res.stderr
    s = json.loads((out / "training_summary.json").read_text())
    assert s["finished"] and s["stop_reason"] == "early stopping (eval pass rate did not improve for 2 evaluations)"
    assert s["global_step"] == 3 and s["best_checkpoint"].endswith("checkpoint-1")
    rates = [h["pass_rate"] for h in s["eval_pass_rate_history"]]
    assert len(rates) == 3 and len(set(rates)) == 1 and s["best_eval_pass_rate"] == rates[0] == s["eval_pass_rate"]
    # the start is measured too: with learning rate 0 no checkpoint can beat it, and the summary says so
    assert s["start_eval_pass_rate"] == rates[0] and s["beat_start"] is False
    assert json.loads((tmp_path / "run" / "start_eval.json").read_text())["pass_rate"] == rates[0]
    assert s["final_is_start"] is True and s["best_checkpoint_eval_pass_rate"] == rates[0]


@pytest.mark.parametrize("keep_start", [True, False])
def test_a_run_that_never_beats_its_start_keeps_the_start_in_final(noisy, tasks, tmp_path, keep_start):
    import importlib.util

    import torch
    from safetensors.torch import load_file

    spec = importlib.util.spec_from_file_location("_merge_helpers", Path(__file__).parent / "test_merge_lora.py")
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    sft = helpers.make_adapter(noisy, tmp_path / "sft", seed=3)
    out = tmp_path / "run"
    # held-out tasks nobody passes (an exact long sentence): no checkpoint can beat the start, while
    # the training tasks' rewards vary, so the weights do move
    never = write_tasks(tmp_path / "never.jsonl", 4, prefix="n", answer="a sentence no tiny model says", match="exact")
    res = cli("train-grpo", *_args(noisy, tasks["train"], out, adapter=sft, **{"max-steps": 2, "lr": 1e-2, "eval-data": never,
                                                                               "eval-steps": 1, "patience": 0}),
              "--set", f"keep_start={str(keep_start).lower()}")
    assert res.exit_code == 0, res.output
    s = json.loads((out / "training_summary.json").read_text())
    assert s["beat_start"] is False and s["final_is_start"] is keep_start
    start = load_file(sft / "adapter_model.safetensors")
    trained = load_file(out / "checkpoint-2" / "adapter_model.safetensors")
    final = load_file(out / "final" / "adapter_model.safetensors")
    assert start.keys() == final.keys() == trained.keys()
    assert any(not torch.equal(start[k], trained[k]) for k in start)  # training did move the weights
    if keep_start:  # final/ is the adapter the run started from, tensor for tensor, and the summary says so
        assert all(torch.equal(start[k], final[k]) for k in start)
        assert s["eval_pass_rate"] == s["start_eval_pass_rate"]
        assert "final/ holds the starting weights" in res.output
    else:
        assert any(not torch.equal(start[k], final[k]) for k in start)
        assert s["eval_pass_rate"] == s["best_checkpoint_eval_pass_rate"] <= s["start_eval_pass_rate"]


def test_continues_an_sft_adapter(noisy, tasks, tmp_path):
    import importlib.util

    import torch
    from safetensors.torch import load_file

    spec = importlib.util.spec_from_file_location("_merge_helpers", Path(__file__).parent / "test_merge_lora.py")
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    sft = helpers.make_adapter(noisy, tmp_path / "sft", seed=3)
    conf = json.loads((sft / "adapter_config.json").read_text())  # as train-sft saves it by default
    (sft / "adapter_config.json").write_text(json.dumps({**conf, "lora_dropout": 0.05}))
    out = tmp_path / "run"
    res = cli("train-grpo", *_args(noisy, tasks["train"], out, adapter=sft, **{"max-steps": 2, "lr": 1e-2}), "--set", "beta=0.04")
    assert res.exit_code == 0, res.output
    s = json.loads((out / "training_summary.json").read_text())
    assert s["method"] == "lora (continuing the SFT adapter)" and s["adapter"] == str(sft) and s["kl_mean"] is not None
    assert s["dropout_in_training"] == 0.0  # the adapter's dropout is off: the loss sees the policy the rollouts sampled
    before, after = load_file(sft / "adapter_model.safetensors"), load_file(out / "final" / "adapter_model.safetensors")
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it trained the SFT adapter itself


def test_full_fine_tuning_with_a_reference_model(noisy, tasks, tmp_path):
    """method: full with beta > 0: trl keeps a separate frozen reference model; both go through
    train-grpo's grouped-prompt head, and final/ holds the whole model."""
    out = tmp_path / "run"
    res = cli("train-grpo", *_args(noisy, tasks["train"], out, method="full", **{"max-steps": 2, "lr": 1e-3}), "--set", "beta=0.04")
    assert res.exit_code == 0, res.output
    s = json.loads((out / "training_summary.json").read_text())
    assert s["finished"] and s["method"] == "full" and s["kl_mean"] is not None
    assert s["loss_forward"] == "shared prompts, completion positions only"
    assert (out / "final" / "model.safetensors").is_file() and not (out / "final" / "adapter_config.json").exists()


def _group(i: int, responses: list, tools=True) -> dict:
    from grpo_tasks import TOOLS

    rec = {"id": f"g{i}", "metadata": {"source": "test"},
           "prompt": [{"role": "user", "content": f"How many rows are in table t{i}?"}],
           "responses": [{"messages": m, "reward": r} for m, r in responses]}
    if tools:
        rec["tools"] = TOOLS
    return rec


def _call(name: str, **args) -> list:
    return [{"role": "assistant", "content": None,
             "tool_calls": [{"id": "c1", "type": "function", "function": {"name": name, "arguments": args}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"}, {"role": "assistant", "content": "42 rows."}]


def test_a_group_record_becomes_the_task_its_best_response_answers():
    from trajtune.grpo import task_from_group

    text = [{"role": "assistant", "content": "I cannot look that up."}]
    call = _call("database_query", table="t1", limit=5)
    task, why = task_from_group(_group(1, [(text, 0.2), (call, 0.9), (_call("read_file", path="x"), 0.1)]))
    assert why == "" and task["id"] == "g1" and task["tools"] and task["prompt"][0]["role"] == "user"
    assert task["expected"] == {"calls": [{"name": "database_query", "arguments": {"table": ["t1"], "limit": [5]}}]}
    assert task["metadata"]["from_group"] == {"best_reward": 0.9, "responses": 3}
    # a text answer ranked best, tools offered: the right reply is no call
    assert task_from_group(_group(2, [(text, 1.0), (call, 0.0)]))[0]["expected"] == {"calls": []}
    # what cannot be a task, and why
    assert task_from_group(_group(3, [(text, 1.0), (call, 0.0)], tools=False)) == (
        None, "the best response answers in text and no tools are offered: no verifiable reward")
    assert task_from_group(_group(4, [(call, 0.5), (text, 0.5)]))[1] == "every response has the same reward"
    assert task_from_group(_group(5, [(call, 0.9), (_call("read_file", path="x"), 0.9), (text, 0)]))[1] == \
        "responses with different calls share the best reward"
    assert task_from_group(_group(6, [(call, 0.4), (text, 0.1)]), min_reward=0.5)[1] == "best reward below group_min_reward"
    # two calls in one turn: parallel, any order
    two = [{"role": "assistant", "tool_calls": [
        {"id": "a", "type": "function", "function": {"name": "read_file", "arguments": {"path": "a"}}},
        {"id": "b", "type": "function", "function": {"name": "read_file", "arguments": {"path": "b"}}}]}]
    assert task_from_group(_group(7, [(two, 1), (text, 0)]))[0]["expected"]["order"] == "any"


def test_trains_on_group_records_through_the_cli(noisy, tmp_path):
    """A file of group records (as `convert` writes from interaction logs) is training data: each
    group whose best response can be scored becomes a task; the others are skipped and counted."""
    text = [{"role": "assistant", "content": "No tool needed."}]
    groups = []
    for i in range(20):
        best = _call("database_query", table=f"t{i}") if i % 2 else text
        groups.append(_group(i, [(best, 1.0), (_call("read_file", path="x"), 0.0)]))
    worse = [{"role": "assistant", "content": "No idea."}]
    groups += [_group(20 + i, [(text, 1.0), (worse, 0.2)], tools=False) for i in range(3)]  # interaction logs: text only
    data = tmp_path / "groups.jsonl"
    data.write_text("".join(json.dumps(g) + "\n" for g in groups))
    out = tmp_path / "run"
    res = subprocess.run(_command(*_args(noisy, data, out, **{"max-steps": 1, "probe-tasks": 0, "min-records": 8})),
                         capture_output=True, text=True, env=_env(), timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    s = json.loads((out / "training_summary.json").read_text())
    assert s["finished"] and s["global_step"] == 1
    assert s["data"]["from_groups"] == {"group_records": 23, "group_tasks": 20, "group_skipped": {
        "the best response answers in text and no tools are offered: no verifiable reward": 3}}
    assert s["data"]["train_tasks"] + s["data"]["eval_tasks"] == 20
    assert "group records: 20 of 23 made tasks; 3 skipped" in res.stderr
    # a file of another kind is refused before any model loads, naming what the stage reads
    sft = tmp_path / "sft.jsonl"
    sft.write_text(json.dumps({"id": "s", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}) + "\n")
    res = cli("train-grpo", *_args(noisy, sft, tmp_path / "run2"))
    assert res.exit_code == 1 and "sft records; this stage reads task or group records" in res.output


# --- guards ---------------------------------------------------------------------------------

def test_refuses_when_the_probe_finds_no_reward_variance(noisy, tmp_path):
    data = write_tasks(tmp_path / "t.jsonl", 16, answer="a sentence no random model ever writes", match="exact")
    res = cli("train-grpo", *_args(noisy, data, tmp_path / "run"))
    assert res.exit_code == 1
    assert "Error: no reward variance on a first probe: 4 tasks x 4 sampled completions, every group's task rewards " \
           "are all equal (mean task reward 0.000)" in " ".join(res.output.split())
    assert not (tmp_path / "run" / "checkpoint-1").exists()


def test_the_probe_judges_the_task_reward_not_the_shaping_terms():
    """A length penalty differs between any two replies of different lengths; when the task rewards of
    every group are equal it would teach only shorter replies, so the run is still refused."""
    from trajtune.errors import RunError
    from trajtune.scripts.train_grpo import probe_verdict

    flat = {"task_reward": [0.0] * 8, "length_penalty": [-0.1, -0.5, -0.2, -0.9, -0.3, -0.3, -0.6, -0.1]}
    with pytest.raises(RunError, match="task rewards are all equal.*the weighted shaping terms vary"):
        probe_verdict(flat, {"task_reward": 1.0, "length_penalty": 0.5}, 4)
    ok = probe_verdict({"task_reward": [0, 1, 0, 0, 1, 1, 1, 1], "length_penalty": [0.0] * 8},
                       {"task_reward": 1.0, "length_penalty": 0.5}, 4)
    assert ok == {"tasks": 2, "completions": 8, "groups_with_variance": 1, "groups_with_total_variance": 1, "mean_reward": 0.625}


def test_refuses_when_num_generations_does_not_divide_the_batch(noisy, tasks, tmp_path):
    res = cli("train-grpo", *_args(noisy, tasks["train"], tmp_path / "run", **{"num-generations": 3}))
    assert res.exit_code == 2
    assert "Error: num_generations (3) must divide batch_size (8): a step's completions are whole groups" in res.output


@pytest.mark.parametrize("template, message", [
    # a template that never shows the system message (where the fallback format puts the tools)
    ("{% for m in messages %}{% if m['role'] != 'system' %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
     "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
     "Error: the chat template drops the tools of task 'a0': its rendered prompt does not name database_query"),
    # a template that refuses a system message (as Gemma's does)
    ("{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
     "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}",
     "Error: the chat template cannot render task 'a0' with its tools: TemplateError: System role not supported"),
])
def test_refuses_a_chat_template_that_cannot_render_the_tools(noisy, tasks, tmp_path, template, message):
    import shutil

    model = tmp_path / "m"
    shutil.copytree(noisy, model)
    (model / "chat_template.jinja").write_text(template)
    res = cli("train-grpo", *_args(model, tasks["train"], tmp_path / "run"))
    assert res.exit_code == 2, res.output
    assert message in res.output


# --- real processes: Ctrl-C saves, a kill resumes ---------------------------------------------

def _wait_for_checkpoint(proc, run, step, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if training.is_complete_checkpoint(run / f"checkpoint-{step}"):
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("no checkpoint in time")


def test_sigterm_then_sigkill_then_rerun_finishes_the_run(noisy, tasks, tmp_path):
    run = tmp_path / "run"
    cmd = _command(*_args(noisy, tasks["train"], run, **{"max-steps": 6, "save-steps": 2, "save-total-limit": 10}))
    # 1) SIGTERM (what Ctrl-C does too): a checkpoint at the current step, exit 130
    proc = subprocess.Popen(cmd, env=_env(sleep=0.3), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_checkpoint(proc, run, 2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "SIGTERM received" in err and "Traceback" not in err
    s = json.loads((run / "training_summary.json").read_text())
    assert s["finished"] is False and s["stop_reason"] == "interrupted (SIGTERM)" and 2 <= s["global_step"] < 6
    assert training.find_checkpoint(run, "auto") == run / f"checkpoint-{s['global_step']}"
    first_stop = s["global_step"]
    # 2) re-run, SIGKILL right after a later checkpoint: no final/, no summary update
    proc = subprocess.Popen(cmd, env=_env(sleep=0.3), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_checkpoint(proc, run, first_stop + 2 - first_stop % 2)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert not (run / "final").exists()
    # 3) the same command again: it resumes from the newest complete checkpoint and finishes
    res = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    s = json.loads((run / "training_summary.json").read_text())
    resumed_at = int(s["resumed_from"].rsplit("-", 1)[1])
    assert resumed_at > first_stop and s["finished"] and s["global_step"] == 6
    assert s["probe"] is None  # a resumed run is not probed again
    hist = json.loads((run / "checkpoint-6" / "trainer_state.json").read_text())["log_history"]
    assert [h["step"] for h in hist if "reward" in h] == list(range(1, 7))  # every step once, none lost or repeated
    assert (run / "final" / "adapter_model.safetensors").is_file()
    # an uninterrupted run of the same config samples and scores the same completions at every step
    from trajtune.config import build
    from trajtune.scripts.train_grpo import Config, run as train_grpo

    ref = train_grpo(build(Config, run / "config.yaml", {"output": str(tmp_path / "ref")}))
    want = json.loads((tmp_path / "ref" / "checkpoint-6" / "trainer_state.json").read_text())["log_history"]
    for key in ("reward", "completions/mean_length"):
        assert [h[key] for h in hist if "reward" in h] == pytest.approx([h[key] for h in want if "reward" in h], abs=1e-6), key
    assert ref["global_step"] == 6


def test_ctrl_c_saves_a_checkpoint_and_the_same_command_finishes(noisy, tasks, tmp_path):
    """Ctrl-C (SIGINT, as a terminal sends it): a checkpoint at the current step, exit 130, no traceback;
    the same command then resumes from it."""
    run = tmp_path / "run"
    cmd = _command(*_args(noisy, tasks["train"], run, **{"max-steps": 4, "save-steps": 1}))
    proc = subprocess.Popen(cmd, env=_env(sleep=0.5), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_checkpoint(proc, run, 1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "SIGINT received" in err and "Traceback" not in err
    s = json.loads((run / "training_summary.json").read_text())
    assert s["finished"] is False and s["stop_reason"] == "interrupted (SIGINT)" and 1 <= s["global_step"] < 4
    assert training.find_checkpoint(run, "auto") == run / f"checkpoint-{s['global_step']}"
    res = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    s = json.loads((run / "training_summary.json").read_text())
    assert s["finished"] and s["global_step"] == 4 and int(s["resumed_from"].rsplit("-", 1)[1]) >= 1


def test_a_run_folder_holding_its_tasks_is_refused(noisy, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    data = write_tasks(run / "tasks.jsonl", 16)
    before = data.read_bytes()
    res = cli("train-grpo", *_args(noisy, data, run))
    assert res.exit_code == 2 and "lies inside --output" in res.output
    assert data.read_bytes() == before


def test_the_trl_behaviour_the_shared_rollout_relies_on():
    """trl (pinned) passes rollout_func the batch's prompts with each prompt's num_generations copies
    in a row (RepeatSampler); SharedPrefillRollout prefills each group once on that basis."""
    import inspect

    from trl import GRPOTrainer
    from trl.trainer.grpo_trainer import RepeatSampler

    assert "rollout_func" in inspect.signature(GRPOTrainer.__init__).parameters
    assert "output = self.rollout_func(prompts, self)" in inspect.getsource(GRPOTrainer._generate)
    order = list(RepeatSampler(list(range(6)), mini_repeat_count=4, batch_size=3, repeat_count=1, shuffle=True, seed=0))
    groups = [order[k: k + 4] for k in range(0, len(order), 4)]
    assert all(len(set(g)) == 1 for g in groups) and len({g[0] for g in groups}) == 6


def test_trls_own_generation_path_trains_too(noisy, tasks, tmp_path):
    res = cli("train-grpo", *_args(noisy, tasks["train"], tmp_path / "run", **{"max-steps": 2}), "--set", "rollout=trl")
    assert res.exit_code == 0, res.output
    s = json.loads((tmp_path / "run" / "training_summary.json").read_text())
    assert s["finished"] and s["global_step"] == 2 and s["rollout_engine"] == "trl" and s["rollout"] == {"engine": "trl"}
    assert s["probe"]["completions"] == 16 and s["rewards"]["task_reward"]["mean"] is not None


def test_a_resumed_run_compares_with_the_start_it_measured_before(tmp_path):
    from trajtune.scripts.train_grpo import START_EVAL, held_out_start

    (tmp_path / START_EVAL).write_text(json.dumps({"pass_rate": 0.25, "reward": 0.4, "tasks": 20}))
    # resuming: the figure measured when the run started, not the resumed policy's (no model needed)
    got = held_out_start(tmp_path, tmp_path / "checkpoint-4", None, None, [], [], None)
    assert got == {"pass_rate": 0.25, "reward": 0.4, "tasks": 20}


def test_a_kind_of_task_falling_to_zero_is_named_even_when_the_total_rises():
    """The demo-rl run with a pass-or-nothing reward: held-out total 30% -> 35% because that split
    was 37% no-call tasks, while the policy had stopped calling altogether."""
    from trajtune.grpo import collapsed_kinds

    start = {"pass_rate": 0.3, "by_kind": {"calls": {"tasks": 13, "pass_rate": 0.23}, "no_call": {"tasks": 7, "pass_rate": 0.43}}}
    final = {"pass_rate": 0.35, "by_kind": {"calls": {"tasks": 13, "pass_rate": 0.0}, "no_call": {"tasks": 7, "pass_rate": 1.0}}}
    assert collapsed_kinds(start, final) == ["calls"]
    assert collapsed_kinds(start, start) == [] and collapsed_kinds({}, final) == []
    never = {"by_kind": {"calls": {"tasks": 13, "pass_rate": 0.0}}}  # never passed: nothing collapsed
    assert collapsed_kinds(never, never) == []


def test_a_new_lora_that_never_beats_the_base_ends_as_a_lora_that_changes_nothing(noisy, tmp_path):
    import torch
    from safetensors.torch import load_file

    train = write_tasks(tmp_path / "train.jsonl", 16, prefix="a")
    never = write_tasks(tmp_path / "never.jsonl", 4, prefix="n", answer="a sentence no tiny model says", match="exact")
    out = tmp_path / "run"
    res = cli("train-grpo", *_args(noisy, train, out, **{"max-steps": 2, "lr": 1e-2, "eval-data": never, "eval-steps": 1, "patience": 0}))
    assert res.exit_code == 0, res.output
    s = json.loads((out / "training_summary.json").read_text())
    assert s["beat_start"] is False and s["final_is_start"] is True
    trained, final = (load_file(out / d / "adapter_model.safetensors") for d in ("checkpoint-2", "final"))
    b = [k for k in final if "lora_B" in k]
    assert b and any(trained[k].abs().sum() > 0 for k in b)  # training moved the B matrices ...
    assert all(final[k].abs().sum() == 0 for k in b)  # ... final/'s are zero: the base model's function
