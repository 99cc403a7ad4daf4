"""evaluate stage: a model trained on the task replies (through the shared renderer) passes them when
evaluate prompts it; the paired comparison, metrics, breakdowns and reports follow from the predictions."""
import importlib.util
import json
from pathlib import Path

import pytest

from trajtune.config import build
from trajtune.errors import DataError, UsageError
from trajtune.scripts.evaluate import Config, run

FIX = Path(__file__).parents[1] / "fixtures" / "evaluate"
LEARNABLE = FIX / "learnable.jsonl"  # answer/no-call tasks, short prompts; gold replies in learnable_gold.jsonl
TOOL_TASKS = FIX / "tasks.jsonl"  # tool-call tasks (3 tools, strict/any order, optional args, no-call, answer)


def cfg(**kw):
    kw.setdefault("max_new_tokens", 12)
    return build(Config, None, {k: (str(v) if isinstance(v, Path) else v) for k, v in kw.items()})


def preds(out):
    return [json.loads(l) for l in (Path(out) / "predictions.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def base64(tmp_path_factory):
    from trajtune.testing import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("base64"), hidden=64)


@pytest.fixture(scope="module")
def tuned(base64, tmp_path_factory):
    """Full fine-tune of the tiny model on 6 of the 8 learnable tasks' gold replies, rendered for
    training by trajtune.chat.tokenize_for_training (the same renderer evaluate prompts with)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trajtune.chat import tokenize_for_training

    tasks = {json.loads(l)["id"]: json.loads(l) for l in LEARNABLE.read_text().splitlines()}
    gold = [json.loads(l) for l in (FIX / "learnable_gold.jsonl").read_text().splitlines()]
    tok = AutoTokenizer.from_pretrained(base64)
    model = AutoModelForCausalLM.from_pretrained(base64)
    data = [tokenize_for_training(tok, tasks[g["task_id"]]["prompt"] + [{"role": "assistant", "content": g["reply"]}], [])
            for g in gold if g["train"]]
    width = max(len(i) for i, _ in data)
    ids = torch.full((len(data), width), tok.pad_token_id)
    labels = torch.full((len(data), width), -100)
    mask = torch.zeros((len(data), width), dtype=torch.long)
    for r, (i, lab) in enumerate(data):
        ids[r, : len(i)], labels[r, : len(i)], mask[r, : len(i)] = torch.tensor(i), torch.tensor(lab), 1
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(200):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        if loss.item() < 0.03:
            break
        loss.backward()
        opt.step()
        opt.zero_grad()
    out = tmp_path_factory.mktemp("tuned")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_tuned_vs_baseline_paired_report(base64, tuned, tmp_path):
    from scipy.stats import binomtest

    rep = run(cfg(tasks=LEARNABLE, output=tmp_path, model=tuned, baseline=base64, ready_threshold=0.7))
    c = rep["comparison"]
    tuned_m, base_m = rep["models"]["tuned"]["metrics"], rep["models"]["baseline"]["metrics"]
    # trained on 6 of the 8 replies with the renderer evaluate prompts with: those 6 must pass
    p = {(x["model"], x["task_id"]): x for x in preds(tmp_path)}
    trained = [f"ln-0{i}" for i in range(1, 7)]
    assert all(p[("tuned", t)]["pass"] for t in trained), [p[("tuned", t)]["output"] for t in trained]
    assert base_m["pass_rate"] == 0.0 and tuned_m["pass_rate"] >= 0.75
    assert c["paired_tasks"] == 8 and c["broken"] == 0 and c["fixed"] == tuned_m["passed"]
    assert c["improvement_points"] == pytest.approx(100 * tuned_m["pass_rate"])
    assert c["mcnemar_p"] == pytest.approx(binomtest(c["fixed"], c["fixed"], 0.5).pvalue)
    assert c["significant"] is (c["mcnemar_p"] < 0.05) and c["significant"]
    assert rep["ready_for_rl"] is True and c["ready_for_rl"] is True
    assert tuned_m["no_call_accuracy"] == 1.0 and tuned_m["by"]["category"]["math"]["tasks"] == 3
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["comparison"] == c
    md = (tmp_path / "report.md").read_text()
    assert "| metric | baseline | tuned |" in md and "| pass rate | 0.0% |" in md
    assert "McNemar" in md and "ready for RL" in md
    assert (tmp_path / "config.yaml").is_file()


def test_slot_engine_equals_generate_one_at_a_time(tuned, tmp_path):
    one = run(cfg(tasks=TOOL_TASKS, output=tmp_path / "b1", model=tuned, batch_size=1, engine="generate"))
    many = run(cfg(tasks=TOOL_TASKS, output=tmp_path / "s3", model=tuned, batch_size=3))  # refills slots
    assert one["models"]["model"]["engine"] == "generate" and many["models"]["model"]["engine"] == "slots"
    st = many["models"]["model"]["engine_stats"]
    assert st["rows"] == 3 and st["prompts"] == 8 and st["prefix_share"] > 0.3  # the tool header is shared
    a = {x["task_id"]: x["output"] for x in preds(tmp_path / "b1")}
    b = {x["task_id"]: x["output"] for x in preds(tmp_path / "s3")}
    assert len({x["prompt_tokens"] for x in preds(tmp_path / "s3")}) > 1  # different lengths
    assert a == b
    assert one["models"]["model"]["metrics"]["pass_rate"] == many["models"]["model"]["metrics"]["pass_rate"]
    lat = [x["latency_s"] for x in preds(tmp_path / "s3")]
    assert all(x > 0 for x in lat) and sum(lat) <= many["models"]["model"]["seconds"] + 0.01


def test_a_right_answer_longer_than_the_limit_gets_room_and_passes(base64, tmp_path):
    """A model trained to make ev-06's two calls, evaluated with --max-new-tokens shorter than that
    reply: the task's limit is raised to fit its expected calls (1.5 x their tokens + 16), so the
    right answer passes; a no-call task keeps the limit; --no-fit-expected cuts the reply (truncated)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trajtune.chat import format_tool_call, tokenize_for_training
    from trajtune.scripts.evaluate import expected_reply

    tasks = {t["id"]: t for t in map(json.loads, TOOL_TASKS.read_text().splitlines())}
    picked = tmp_path / "tasks.jsonl"
    picked.write_text("".join(json.dumps(tasks[i]) + "\n" for i in ("ev-06", "ev-04")))
    task = tasks["ev-06"]
    reply = format_tool_call("get_weather", {"city": "Lisbon"}) + "\n" + format_tool_call("get_weather", {"city": "Oslo"})
    assert reply == expected_reply(task)
    tok = AutoTokenizer.from_pretrained(base64)
    model = AutoModelForCausalLM.from_pretrained(base64)
    ids, labels = tokenize_for_training(tok, task["prompt"] + [{"role": "assistant", "content": reply}], task["tools"])
    ids, labels = torch.tensor([ids]), torch.tensor([labels])
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(300):
        loss = model(input_ids=ids, labels=labels).loss
        if loss.item() < 0.01:
            break
        loss.backward()
        opt.step()
        opt.zero_grad()
    trained = tmp_path / "trained"
    model.save_pretrained(trained)
    tok.save_pretrained(trained)

    n = len(tok(reply, add_special_tokens=False)["input_ids"])
    short = n // 2  # the right reply cannot fit
    run(cfg(tasks=picked, output=tmp_path / "fit", model=trained, max_new_tokens=short))
    fit = {p["task_id"]: p for p in preds(tmp_path / "fit")}
    assert fit["ev-06"]["max_new_tokens"] == (3 * n + 1) // 2 + 16 and fit["ev-04"]["max_new_tokens"] == short
    assert fit["ev-06"]["pass"] and not fit["ev-06"]["truncated"], fit["ev-06"]["output"]
    assert fit["ev-06"]["generated_tokens"] > short

    run(cfg(tasks=picked, output=tmp_path / "one", model=trained, max_new_tokens=short, fit_expected=False))
    one = {p["task_id"]: p for p in preds(tmp_path / "one")}
    assert {p["max_new_tokens"] for p in one.values()} == {short}
    assert not one["ev-06"]["pass"] and one["ev-06"]["reason"] == "truncated"
    assert one["ev-06"]["output"] == fit["ev-06"]["output"][: len(one["ev-06"]["output"])]  # greedy: the same prefix


def test_expected_reply_takes_the_longest_acceptable_value_and_keeps_optional_ones():
    from trajtune.scripts.evaluate import expected_reply

    task = {"expected": {"calls": [{"name": "f", "arguments": {"city": ["SF", "San Francisco"], "unit": [None, "", "celsius"],
                                                                 "days": [[1, 2]], "note": [None]}}]}}
    assert expected_reply(task) == '<tool_call>\n{"name": "f", "arguments": {"city": "San Francisco", "unit": "celsius", "days": [1, 2]}}\n</tool_call>'
    assert expected_reply({"expected": {"calls": []}}) == "" and expected_reply({"expected": {"answer": "hi"}}) == ""


@pytest.fixture(scope="module")
def noisy(tiny_model, tmp_path_factory):
    """The tiny model with large random weights: replies vary from token to token."""
    from trajtune.testing import build_noisy_model

    return build_noisy_model(tiny_model, tmp_path_factory.mktemp("noisy"))


def test_stop_strings_same_in_both_engines(noisy, tmp_path):
    kw = dict(tasks=TOOL_TASKS, model=noisy, max_new_tokens=24)
    run(cfg(output=tmp_path / "free", engine="generate", **kw))
    free = {x["task_id"]: x["output"] for x in preds(tmp_path / "free")}
    longest = max(free.values(), key=len)
    assert len(longest) >= 12, free
    stop = longest[len(longest) // 2: len(longest) // 2 + 3]  # a string the model writes mid-reply
    assert stop.strip() == stop and stop  # no whitespace: it cannot be completed by the prompt's last newline
    run(cfg(output=tmp_path / "g", engine="generate", stop=[stop], **kw))
    run(cfg(output=tmp_path / "s", engine="slots", stop=[stop], **kw))
    a = {x["task_id"]: x["output"] for x in preds(tmp_path / "g")}
    b = {x["task_id"]: x["output"] for x in preds(tmp_path / "s")}
    assert a == b and all(stop not in o for o in b.values())
    assert all(free[k].startswith(b[k]) for k in b) and any(len(b[k]) < len(free[k]) for k in b)


def test_unsupported_model_falls_back_to_generate(tiny_model, tmp_path):
    import shutil

    from transformers import GenerationConfig

    m = tmp_path / "penalised"
    shutil.copytree(tiny_model, m)
    gc = GenerationConfig.from_pretrained(m)
    gc.repetition_penalty = 1.2
    gc.save_pretrained(m)
    rep = run(cfg(tasks=LEARNABLE, output=tmp_path / "o", model=m))
    assert rep["models"]["model"]["engine"] == "generate" and rep["models"]["model"]["metrics"]["tasks"] == 8
    with pytest.raises(UsageError, match="repetition_penalty"):
        run(cfg(tasks=LEARNABLE, output=tmp_path / "o2", model=m, engine="slots"))


def test_metrics_reasons_and_breakdowns_on_tool_tasks(tiny_model, tmp_path):
    rep = run(cfg(tasks=TOOL_TASKS, output=tmp_path, model=tiny_model, max_new_tokens=8))
    m = rep["models"]["model"]["metrics"]
    assert m["tasks"] == 8 and m["pass_rate"] == 0.0  # a random model answers nothing right
    assert sum(m["reasons"].values()) == 8 and m["truncated"] + m["passed"] <= 8
    assert set(m["by"]["category"]) == {"weather", "data", "comms", "chat"}
    assert set(m["by"]["difficulty"]) == {"easy", "medium", "hard"}
    assert m["by"]["tool"]["get_weather"]["tasks"] == 3 and m["by"]["tool"]["(no call)"]["tasks"] == 1
    assert m["generated_tokens"] == sum(x["generated_tokens"] for x in preds(tmp_path)) > 0
    rows = preds(tmp_path)
    assert {r["task_id"] for r in rows} == {f"ev-0{i}" for i in range(1, 9)}
    assert all({"output", "calls", "pass", "reason", "model"} <= set(r) for r in rows)


def test_rerun_skips_done_tasks(tiny_model, tmp_path):
    run(cfg(tasks=TOOL_TASKS, output=tmp_path, model=tiny_model, limit=3))
    rep = run(cfg(tasks=TOOL_TASKS, output=tmp_path, model=tiny_model))
    assert rep["models"]["model"]["done_before"] == 3 and rep["models"]["model"]["generated_now"] == 5
    again = run(cfg(tasks=TOOL_TASKS, output=tmp_path, model=tiny_model))
    assert again["models"]["model"]["generated_now"] == 0 and again["models"]["model"]["backend"] is None
    assert len(preds(tmp_path)) == 8
    assert again["models"]["model"]["metrics"] == rep["models"]["model"]["metrics"]


def test_a_rerun_at_another_precision_never_reuses_predictions_and_the_report_names_it(tiny_model, tmp_path):
    auto = run(cfg(tasks=TOOL_TASKS, output=tmp_path, model=tiny_model))["models"]["model"]
    assert auto["dtype"] == "fp32" and auto["generated_now"] == 8  # auto on a CPU
    assert f"({auto['backend']}, fp32)" in (tmp_path / "report.md").read_text()
    again = run(cfg(tasks=TOOL_TASKS, output=tmp_path, model=tiny_model, dtype="bf16"))["models"]["model"]
    assert again["dtype"] == "bf16" and again["generated_now"] == 8 and again["key"] != auto["key"]
    assert len(preds(tmp_path)) == 16  # both runs' predictions kept, each under its own key


def test_adapter_with_baseline_base(tiny_model, tmp_path):
    spec = importlib.util.spec_from_file_location("_m", Path(__file__).with_name("test_merge_lora.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    adapter = mod.make_adapter(tiny_model, tmp_path / "run" / "final", seed=5)
    rep = run(cfg(tasks=LEARNABLE, output=tmp_path / "ev", model=tiny_model, adapter=[str(adapter)], baseline="base"))
    assert list(rep["models"]) == ["baseline", "tuned"]
    assert rep["models"]["tuned"]["model"].endswith("final") and "+" not in rep["models"]["baseline"]["model"]
    plain = run(cfg(tasks=LEARNABLE, output=tmp_path / "plain", model=tiny_model))
    base_out = {x["task_id"]: x["output"] for x in preds(tmp_path / "ev") if x["model"] == "baseline"}
    tuned_out = {x["task_id"]: x["output"] for x in preds(tmp_path / "ev") if x["model"] == "tuned"}
    assert base_out == {x["task_id"]: x["output"] for x in preds(tmp_path / "plain")}
    assert tuned_out != base_out
    assert plain["models"]["model"]["metrics"]["tasks"] == 8


def test_bad_inputs(tiny_model, tmp_path):
    bad = tmp_path / "t.jsonl"
    bad.write_text(LEARNABLE.read_text().splitlines()[0] + "\n" + '{"id": "x", "prompt": [], "tools": [], "expected": {}}\n')
    with pytest.raises(DataError, match=r"t.jsonl:2: not a valid task"):
        run(cfg(tasks=bad, output=tmp_path / "o", model=tiny_model))
    with pytest.raises(UsageError, match="no --adapter"):
        run(cfg(tasks=LEARNABLE, output=tmp_path / "o", model=tiny_model, baseline="base"))
    with pytest.raises(UsageError, match="task file not found"):
        run(cfg(tasks=tmp_path / "missing.jsonl", output=tmp_path / "o", model=tiny_model))


def test_slots_shrink_to_fit_free_memory(tiny_model, tmp_path, monkeypatch):
    """The KV buffer of all rows must fit in a quarter of the free memory: fewer rows, same outputs."""
    import trajtune.training
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(tiny_model)
    per_token = c.num_hidden_layers * 2 * c.num_key_value_heads * (c.hidden_size // c.num_attention_heads) * 4
    full = run(cfg(tasks=TOOL_TASKS, output=tmp_path / "full", model=tiny_model, batch_size=8))
    longest = max(x["prompt_tokens"] for x in preds(tmp_path / "full"))
    limit = max(x["max_new_tokens"] for x in preds(tmp_path / "full"))  # the largest task limit (room for ev-06's calls)
    per_row = (longest + limit + 1) * per_token
    monkeypatch.setattr(trajtune.training, "free_memory_bytes", lambda device="cpu": 4 * 2 * per_row + 3)
    small = run(cfg(tasks=TOOL_TASKS, output=tmp_path / "small", model=tiny_model, batch_size=8))
    assert full["models"]["model"]["engine_stats"]["rows"] == 8 and small["models"]["model"]["engine_stats"]["rows"] == 2
    assert {x["task_id"]: x["output"] for x in preds(tmp_path / "full")} == \
        {x["task_id"]: x["output"] for x in preds(tmp_path / "small")}


def test_layering_stages_load_models_through_trajtune_models():
    """trajtune/ is core: no module of it imports the CLI or a stage; the two stages share no code but
    trajtune's (model loading in trajtune.models, merging in trajtune.merging, the report in trajtune.report)."""
    import ast

    root = Path(__file__).parents[2]

    def imports(path):
        out = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                out.add(node.module)
            elif isinstance(node, ast.Import):
                out |= {a.name for a in node.names}
        return out

    for f in sorted((root / "trajtune").glob("*.py")):
        bad = [m for m in imports(f) if m.startswith(("trajtune.cli", "trajtune.scripts"))]
        assert not bad, f"{f.name} imports {bad}"
    for stage in ("evaluate", "merge_lora"):
        mods = imports(root / "scripts" / f"{stage}.py")
        assert not [m for m in mods if m.startswith("trajtune.scripts")], (stage, mods)
        assert "trajtune.models" in mods

