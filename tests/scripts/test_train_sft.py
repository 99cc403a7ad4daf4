"""The train-sft stage on a tiny real model: labels, loss, early stopping, LoRA/full, resume after
SIGKILL, SIGTERM, and a 2-process (gloo) run."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # the record builder beside this file (any pytest import mode, any order)
import sft_records  # noqa: E402
from trajtune import training
from trajtune.config import build
from trajtune.errors import ConfigError
from trajtune.scripts.train_sft import Config as TrainSFTConfig, encode_records, run as train_sft
from trajtune.trainers import PadCollator, label_loss

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "train_sft.py"


@pytest.fixture(scope="module")
def tok(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


@pytest.fixture(scope="module")
def data60(tmp_path_factory):
    return sft_records.write(tmp_path_factory.mktemp("data") / "train.jsonl", 60)


def _segments(ids, labels):
    segs, cur = [], []
    for i, lab in zip(ids, labels):
        if lab != -100:
            assert lab == i
            cur.append(i)
        elif cur:
            segs.append(cur)
            cur = []
    return segs + ([cur] if cur else [])


def test_labels_cover_assistant_turns_only_and_arguments_reach_the_model_as_written(tok, tiny_model, tmp_path):
    recs = [sft_records.trajectory(0), sft_records.trajectory(1)]  # limit 1 (int) then "2" (str) + nested filter
    failed = sft_records.trajectory(2)  # a failed step kept as context: train: false
    failed["messages"][2]["train"] = False
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs + [failed]))
    on_disk = [json.loads(line) for line in path.read_text().splitlines()]
    examples, counts = encode_records(tok, on_disk, 2048, "drop")
    assert counts == {"kept": 3, "dropped_too_long": 0, "truncated": 0, "dropped_no_trainable": 0}
    batch = PadCollator(tok.pad_token_id)(examples)  # exactly what the Trainer feeds the model
    for row, rec in enumerate(on_disk):
        ids, labels = batch["input_ids"][row].tolist(), batch["labels"][row].tolist()
        got = [tok.decode(s) for s in _segments(ids, labels)]
        want = []
        for m in rec["messages"]:
            if m["role"] != "assistant" or m.get("train") is False:
                continue
            text = (m["content"] + "\n" if m["content"] else "")
            for c in m.get("tool_calls") or []:
                text += "<tool_call>\n" + json.dumps({"name": c["function"]["name"], "arguments": c["function"]["arguments"]}) + "\n</tool_call>"
            want.append(text.rstrip("\n") + "<|im_end|>\n")
        assert got == want
        full = tok.decode([i for i, m in zip(ids, batch["attention_mask"][row].tolist()) if m])
        for m in rec["messages"]:  # system, user and tool text is in the input but never in the labels
            if m["role"] in ("system", "user", "tool"):
                assert m["content"] in full and all(m["content"] not in g for g in got)
    decoded = [tok.decode(s) for s in _segments(batch["input_ids"][0].tolist(), batch["labels"][0].tolist())]
    assert '"limit": 1}' in decoded[0] and "null" not in decoded[0]  # no struct merging with record 2's filter
    decoded = [tok.decode(s) for s in _segments(batch["input_ids"][1].tolist(), batch["labels"][1].tolist())]
    assert '"limit": "2", "filter": {"k": [1, "a", null], "deep": {"x": 1.5}}' in decoded[0]
    assert len(_segments(batch["input_ids"][2].tolist(), batch["labels"][2].tolist())) == 1  # the failed call is context only


def test_truncation_is_counted_and_records_without_trainable_tokens_are_dropped(tok):
    long = sft_records.trajectory(3)
    long["messages"][1]["content"] = "word " * 400
    silent = sft_records.trajectory(4)
    for m in silent["messages"]:
        if m["role"] == "assistant":
            m["train"] = False
    n_full = len(encode_records(tok, [long], 100000, "drop")[0][0]["input_ids"])
    _, counts = encode_records(tok, [long, silent, sft_records.trajectory(5)], n_full - 5, "drop")
    assert counts == {"kept": 1, "dropped_too_long": 1, "truncated": 0, "dropped_no_trainable": 1}
    ex, counts = encode_records(tok, [long], n_full - 5, "truncate")
    assert counts["truncated"] == 1 and len(ex[0]["input_ids"]) == n_full - 5
    _, counts = encode_records(tok, [long], 60, "truncate")  # cut before any assistant token
    assert counts == {"kept": 0, "dropped_too_long": 0, "truncated": 1, "dropped_no_trainable": 1}


def test_turns_truncation_keeps_the_first_complete_assistant_turns_that_fit(tok):
    rec = sft_records.trajectory(3)
    rec["messages"][3]["content"] = "row " * 300  # a long tool result, then the closing reply
    full_ids, full_labels = encode_records(tok, [rec], 100000, "drop")[0][0].values()
    first = dict(rec, messages=rec["messages"][:3])  # system, user, the assistant's call
    first_ids, first_labels = encode_records(tok, [first], 100000, "drop")[0][0].values()
    assert len(first_ids) < len(full_ids)
    ex, counts = encode_records(tok, [rec], len(full_ids) - 1, "turns")
    # the record ends after the call turn (its end-of-turn token trained), not in the tool result
    assert counts == {"kept": 1, "dropped_too_long": 0, "truncated": 0, "dropped_no_trainable": 0, "shortened_to_turns": 1}
    assert ex[0]["input_ids"] == first_ids and ex[0]["labels"] == first_labels
    assert tok.decode([i for i, lab in zip(first_ids, first_labels) if lab != -100]).endswith("</tool_call><|im_end|>\n")
    # a record that fits is kept whole; one whose first assistant turn does not fit is dropped
    ex, counts = encode_records(tok, [rec, rec], len(full_ids), "turns")
    assert counts["shortened_to_turns"] == 0 and ex[0]["input_ids"] == full_ids
    _, counts = encode_records(tok, [rec], len(first_ids) - 1, "turns")
    assert counts == {"kept": 0, "dropped_too_long": 1, "truncated": 0, "dropped_no_trainable": 0, "shortened_to_turns": 0}


def test_logits_only_at_label_positions_give_the_same_loss_and_gradients(tok, tiny_model):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    ex, _ = encode_records(tok, [sft_records.trajectory(i) for i in range(4)], 2048, "drop")
    batch = PadCollator(tok.pad_token_id)(ex)
    fast, _ = label_loss(model, batch, True)
    fast.backward()
    g_fast = model.model.layers[0].mlp.up_proj.weight.grad.clone()
    model.zero_grad()
    slow, _ = label_loss(model, batch, False)
    slow.backward()
    ref = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
    assert fast.item() == pytest.approx(slow.item(), rel=1e-5) == pytest.approx(ref.item(), rel=1e-5)
    assert torch.allclose(g_fast, model.model.layers[0].mlp.up_proj.weight.grad, atol=1e-6)


def test_decision_weight_scales_only_the_first_token_of_each_assistant_turn(tok, tiny_model):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    ex, _ = encode_records(tok, [sft_records.trajectory(i) for i in range(3)], 2048, "drop")
    batch = PadCollator(tok.pad_token_id)(ex)
    plain, _ = label_loss(model, batch, True)
    assert torch.equal(label_loss(model, batch, True, 1.0)[0], plain)  # 1.0: the plain mean, bit for bit
    # by hand: per-token cross-entropy, the first label of each turn counted 4 times, over the label count
    labels = batch["labels"]
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels[:, 1:].clamp(min=0), reduction="none")
    is_label = labels[:, 1:] != -100
    first = is_label & (labels[:, :-1] == -100)
    assert int(first.sum()) >= 2 * len(ex)  # a call turn and the closing reply of each trajectory
    want = (ce * torch.where(first, 4.0, 1.0))[is_label].sum() / is_label.sum()
    weighted, _ = label_loss(model, batch, True, 4.0)
    assert weighted.item() == pytest.approx(want.item(), rel=1e-5)
    assert weighted.item() > plain.item()
    # the trainer weights only while training: validation reads the plain mean
    import types

    from trajtune.trainers import SFTLabelTrainer

    trainer = types.SimpleNamespace(decision_weight=4.0, logits_at_labels_only=True)
    assert SFTLabelTrainer.compute_loss(trainer, model.train(), batch).item() == pytest.approx(weighted.item(), rel=1e-5)
    assert SFTLabelTrainer.compute_loss(trainer, model.eval(), batch).item() == pytest.approx(plain.item(), rel=1e-5)


def _cfg(tiny_model, data, out, **kw):
    base = dict(model=str(tiny_model), data=[str(data)], output=str(out), batch_size=4, logging_steps=1)
    base.update(kw)
    return build(TrainSFTConfig, None, base)


def test_train_with_validation_stops_early_restores_best_and_writes_the_run_folder(tiny_model, tmp_path):
    data = sft_records.write(tmp_path / "d.jsonl", 110)  # > 100 records: automatic 90/10 split by prompt
    out = tmp_path / "run"
    # learning rate 0: the eval loss never improves, so early stopping must fire after `patience` evaluations
    s = train_sft(_cfg(tiny_model, data, out, max_steps=30, eval_steps=1, save_steps=1, patience=2, learning_rate=0.0))
    assert s["finished"] and s["stop_reason"].startswith("early stopping")
    assert s["global_step"] == 3 and s["best_checkpoint"].endswith("checkpoint-1")
    assert s["data"]["eval_split"] == "auto" and s["data"]["train_records"] + s["data"]["eval_records"] == 110
    assert s["params"]["trainable"] < s["params"]["total"] and s["method"] == "lora"
    for key in ("train_loss", "eval_loss", "perplexity", "grad_norm", "tokens_seen", "tokens_per_second", "peak_memory_mb", "wall_time_s"):
        assert s[key] is not None and s[key] > 0, key
    assert json.loads((out / "training_summary.json").read_text())["stop_reason"] == s["stop_reason"]
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert not (out / "runs").exists()
    assert build(TrainSFTConfig, out / "config.yaml") == _cfg(tiny_model, data, out, max_steps=30, eval_steps=1, save_steps=1,
                                                               patience=2, learning_rate=0.0)
    final = out / "final"
    assert (final / "adapter_model.safetensors").is_file() and (final / "chat_template.jinja").is_file()
    assert not (final / "training_args.bin").exists()
    from peft import AutoPeftModelForCausalLM

    model = AutoPeftModelForCausalLM.from_pretrained(final)
    assert model.peft_config["default"].r == 16
    # running the same thing again does not train again
    again = train_sft(_cfg(tiny_model, data, out, max_steps=30, eval_steps=1, save_steps=1, patience=2, learning_rate=0.0))
    assert again["skipped"] is True


def test_eval_delay_evaluates_once_at_the_end_and_still_checkpoints_on_schedule(tiny_model, tmp_path):
    """The demo's setting: validation only at the last step (a mid-run evaluation costs ~55 s there
    and never chose the checkpoint), while checkpoints for resuming keep their schedule."""
    data = sft_records.write(tmp_path / "d.jsonl", 110)
    out = tmp_path / "run"
    s = train_sft(_cfg(tiny_model, data, out, max_steps=5, eval_steps=2, save_steps=2, eval_delay=5))
    assert s["finished"] and s["global_step"] == 5
    state = json.loads((out / "checkpoint-5" / "trainer_state.json").read_text())
    assert [h["step"] for h in state["log_history"] if "eval_loss" in h] == [5]
    assert s["eval_loss"] == pytest.approx(state["best_metric"]) and s["best_checkpoint"].endswith("checkpoint-5")
    assert (out / "checkpoint-4").is_dir()  # the resume point a kill at step 5 would have used
    with pytest.raises(ConfigError, match="eval_delay"):
        _cfg(tiny_model, data, out, eval_delay=-1).check()


def test_max_eval_records_validates_on_an_evenly_spaced_sample_and_trains_on_the_same_records(tiny_model, tmp_path):
    train, val = sft_records.write(tmp_path / "t.jsonl", 60), sft_records.write(tmp_path / "v.jsonl", 9)
    full = training.prepare_data([str(train)], "sft", eval_data=[str(val)])
    some = training.prepare_data([str(train)], "sft", eval_data=[str(val)], max_eval_records=3)
    assert some.train == full.train and some.eval == [full.eval[0], full.eval[3], full.eval[6]]
    assert some.counts["eval_records"] == 3 and some.counts["held_out_records"] == 9
    assert "held_out_records" not in full.counts


def test_micro_batches_give_the_same_step_as_one_batch(tiny_model, tmp_path):
    """batch_size 4 run as 4 micro-batches of 1 (gradient accumulation) must be the same optimizer
    step as one batch of 4: the same token-weighted loss and gradient, less memory. The records'
    answers differ a lot in length, so a mean of per-micro-batch means would be visibly off."""
    records = [sft_records.trajectory(i) for i in range(4)]
    for i, rec in enumerate(records):
        rec["messages"][-1]["content"] = " ".join(["The rows are listed above."] * (1 + 12 * i))
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    runs = {}
    for micro in (4, 1):  # validation on the same records: the eval batch is the micro-batch
        runs[micro] = train_sft(_cfg(tiny_model, data, tmp_path / f"m{micro}", max_steps=1, micro_batch_size=micro,
                                     min_records=4, precision="fp32", lora_dropout=0.0,  # no random dropout masks
                                     eval_data=[str(data)], eval_steps=1, save_steps=1))
    one, split = runs[4], runs[1]
    # the validation loss is token-weighted too, whatever the eval batch: 4 records at once or one by one
    assert split["eval_loss"] == pytest.approx(one["eval_loss"], rel=1e-4)
    assert one["batch"] == {"records_per_step": 4, "micro_batch_size": 4, "gradient_accumulation_steps": 1,
                            "gradient_checkpointing": False}
    assert split["batch"]["micro_batch_size"] == 1 and split["batch"]["gradient_accumulation_steps"] == 4
    assert split["tokens_seen"] == one["tokens_seen"]
    assert split["train_loss"] == pytest.approx(one["train_loss"], rel=1e-4)
    assert split["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-3)
    # the same step computed by hand as a mean of per-record means differs: the test can tell them apart
    import torch
    from transformers import AutoTokenizer

    from transformers import AutoModelForCausalLM

    tok = AutoTokenizer.from_pretrained(tiny_model)
    ex, _ = encode_records(tok, records, 4096, "drop")
    counts = [sum(1 for lab in e["labels"][1:] if lab != -100) for e in ex]
    assert max(counts) > 3 * min(counts)
    # the step's loss is the token-weighted mean over all records (a fresh LoRA adds nothing, so the
    # base model gives the per-record losses of step 1); a mean of per-record means is visibly off
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    with torch.no_grad():
        losses = [float(label_loss(base, PadCollator(tok.pad_token_id)([e]), True)[0]) for e in ex]
    weighted = sum(l * c for l, c in zip(losses, counts)) / sum(counts)
    mean_of_means = sum(losses) / len(losses)
    assert one["train_loss"] == pytest.approx(weighted, rel=1e-3)
    assert split["train_loss"] == pytest.approx(weighted, rel=1e-3)
    assert abs(mean_of_means - weighted) > 20 * abs(one["train_loss"] - weighted)
    with pytest.raises(ConfigError, match="micro_batch_size must divide batch_size"):
        _cfg(tiny_model, data, tmp_path / "bad", micro_batch_size=3)


def test_cpu_attention_gives_the_same_step_as_sdpa(tiny_model, tmp_path, monkeypatch):
    """attn_implementation auto trains with trajtune's causal blocks on a CPU (faster there), eager
    is the other CPU choice; both must be the same function as SDPA: the same loss and gradient on
    padded micro-batches of unequal records (blocks of 16 rows, so the records span several)."""
    import trajtune.attention

    monkeypatch.setattr(trajtune.attention, "BLOCK_ROWS", 16)
    records = [sft_records.trajectory(i) for i in range(4)]
    for i, rec in enumerate(records):
        rec["messages"][-1]["content"] = " ".join(["The rows are listed above."] * (1 + 5 * i))
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    runs = {attn: train_sft(_cfg(tiny_model, data, tmp_path / attn, max_steps=1, micro_batch_size=2, min_records=4,
                                 precision="fp32", lora_dropout=0.0, attn_implementation=attn))
            for attn in ("auto", "eager", "sdpa")}
    assert runs["auto"]["attention"] == "trajtune_blocks" and runs["sdpa"]["attention"] == "sdpa"
    for attn in ("auto", "eager"):
        assert runs[attn]["train_loss"] == pytest.approx(runs["sdpa"]["train_loss"], rel=1e-5)
        assert runs[attn]["grad_norm"] == pytest.approx(runs["sdpa"]["grad_norm"], rel=1e-4)


def test_auto_micro_batch_is_the_largest_divisor_that_fits_a_quarter_of_free_memory():
    from trajtune.scripts.train_sft import choose_micro_batch

    gib = 2**30
    assert choose_micro_batch(8, "auto", per_record_bytes=1 * gib, free_bytes=64 * gib) == 8
    assert choose_micro_batch(8, "auto", per_record_bytes=1 * gib, free_bytes=20 * gib) == 4
    assert choose_micro_batch(8, "auto", per_record_bytes=1 * gib, free_bytes=9 * gib) == 2
    assert choose_micro_batch(6, "auto", per_record_bytes=1 * gib, free_bytes=20 * gib) == 3
    assert choose_micro_batch(8, "auto", per_record_bytes=10 * gib, free_bytes=20 * gib) == 1
    assert choose_micro_batch(8, 2, per_record_bytes=10 * gib, free_bytes=20 * gib) == 2


def test_lora_that_cannot_attach_stops_or_falls_back_to_full_loudly(tiny_model, data60, tmp_path, capsys):
    with pytest.raises(ConfigError, match="LoRA could not attach"):
        train_sft(_cfg(tiny_model, data60, tmp_path / "a", max_steps=1, lora_target_modules=["no_such_module"]))
    s = train_sft(_cfg(tiny_model, data60, tmp_path / "b", max_steps=1, lora_target_modules=["no_such_module"], lora_fallback="full"))
    assert "FALLING BACK TO FULL FINE-TUNING" in capsys.readouterr().err
    assert s["method"] == "full" and s["params"]["trainable"] == s["params"]["total"]
    assert (tmp_path / "b" / "final" / "model.safetensors").is_file()


def test_qlora_is_refused_on_cpu(tiny_model, data60, tmp_path):
    with pytest.raises(ConfigError, match="qlora needs a CUDA GPU"):
        train_sft(_cfg(tiny_model, data60, tmp_path / "q", max_steps=1, method="qlora", device="cpu"))


# --- real processes -------------------------------------------------------------------------

def _args(tiny_model, data, out, **kw):
    base = {"model": tiny_model, "output": out, "max-steps": 8, "save-steps": 2, "save-total-limit": 10,
            "batch-size": 4, "logging-steps": 1, "precision": "fp32"}
    base.update(kw)
    return [str(data)] + [str(x) for k, v in base.items() for x in (f"--{k}", v)]


def _env(sleep=None):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if sleep:
        env["TRAJTUNE_TEST_STEP_SLEEP"] = str(sleep)
    return env


def _wait_for_checkpoint(proc, run, step, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if training.is_complete_checkpoint(run / f"checkpoint-{step}"):
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("no checkpoint in time")


def _losses(run, step):
    hist = json.loads((run / f"checkpoint-{step}" / "trainer_state.json").read_text())["log_history"]
    return {h["step"]: h["loss"] for h in hist if "loss" in h}


def test_sigterm_then_sigkill_then_rerun_ends_like_an_uninterrupted_run(tiny_model, data60, tmp_path):
    ref, run = tmp_path / "ref", tmp_path / "run"
    cmd = [sys.executable, SCRIPT, *_args(tiny_model, data60, run)]
    # 1) SIGTERM: a checkpoint is saved at the current step and the process exits cleanly (130)
    proc = subprocess.Popen(cmd, env=_env(sleep=0.3), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_checkpoint(proc, run, 2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "SIGTERM received" in err and "Traceback" not in err
    s = json.loads((run / "training_summary.json").read_text())
    assert s["finished"] is False and s["stop_reason"] == "interrupted (SIGTERM)" and 2 <= s["global_step"] < 8
    assert training.find_checkpoint(run, "auto") == run / f"checkpoint-{s['global_step']}"
    assert not (run / "final").exists()
    # 2) re-run, then SIGKILL right after a later checkpoint: nothing is written but checkpoints
    first_stop = s["global_step"]
    proc = subprocess.Popen(cmd, env=_env(sleep=0.3), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_checkpoint(proc, run, first_stop + 2 - first_stop % 2)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert not (run / "final").exists()
    # 3) re-run the same command: it continues from the newest complete checkpoint to the end
    res = subprocess.run(cmd, capture_output=True, text=True, env=_env())
    assert res.returncode == 0, res.stderr
    s = json.loads((run / "training_summary.json").read_text())
    resumed_at = int(s["resumed_from"].rsplit("-", 1)[1])
    assert resumed_at > first_stop and s["finished"] and s["global_step"] == 8
    # the uninterrupted reference: same optimizer steps, same loss at every step incl. the resumed ones
    r = train_sft(build(TrainSFTConfig, run / "config.yaml", {"output": str(ref)}))
    assert r["global_step"] == 8
    got, want = _losses(run, 8), _losses(ref, 8)
    assert sorted(got) == sorted(want) == list(range(1, 9))
    assert got[first_stop + 1] == pytest.approx(want[first_stop + 1], rel=1e-4)
    assert got[resumed_at + 1] == pytest.approx(want[resumed_at + 1], rel=1e-4)
    assert got[8] == pytest.approx(want[8], rel=1e-4)
    assert (run / "final" / "adapter_model.safetensors").is_file()


def test_two_cpu_processes_over_gloo_produce_one_adapter(tiny_model, data60, tmp_path):
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(SCRIPT),
           *_args(tiny_model, data60, run, **{"max-steps": 3, "save-steps": 3, "batch-size": 2}), "--json"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    s = json.loads((run / "training_summary.json").read_text())
    assert s["world_size"] == 2 and s["finished"] and s["global_step"] == 3
    assert res.stdout.count('"run_dir"') == 1  # one process reports
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), run / "final")
    assert model.peft_config["default"].r == 16


def test_bf16_lora_inputs_without_peft_casts_give_bit_identical_loss_and_gradients(tok, tiny_model):
    """peft casts a LoRA layer's bf16 input (o_proj, down_proj) to fp32 for its dropout and A
    matrix, which autocast casts straight back; skipping both casts must change nothing, with
    dropout on (the same masks, drawn in the same order): loss and gradients bit for bit."""
    from transformers import AutoModelForCausalLM

    ex, _ = encode_records(tok, [sft_records.trajectory(i) for i in range(3)], 2048, "drop")
    batch = PadCollator(tok.pad_token_id)(ex)
    results = []
    for keep in (False, True):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32, attn_implementation="eager")
        model, _ = training.attach_lora(model, r=4, alpha=8, dropout=0.2, target_modules="all-linear", fallback="none")
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.data.normal_(0, 0.02)
        training.frozen_linears_to_bf16(model)
        changed = training.keep_lora_inputs_bf16(model) if keep else 0
        torch.manual_seed(1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, _ = label_loss(model.train(), batch, True)
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}, changed))
    (l0, g0, _), (l1, g1, changed) = results
    assert changed == 7 * 2  # every LoRA layer of the tiny model's two decoder layers
    assert torch.equal(l0, l1)
    assert all(torch.equal(g0[k], g1[k]) for k in g0)


def test_frozen_linears_in_bf16_give_bit_identical_loss_and_gradients_under_autocast(tok, tiny_model):
    """Under bf16 autocast a frozen fp32 linear weight is cast to bf16 on every forward; storing that
    cast once must change nothing: the same loss and the same LoRA gradients, bit for bit."""
    from transformers import AutoModelForCausalLM

    ex, _ = encode_records(tok, [sft_records.trajectory(i) for i in range(3)], 2048, "drop")
    batch = PadCollator(tok.pad_token_id)(ex)
    results = []
    for store in (False, True, "head"):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32, attn_implementation="eager")
        model, _ = training.attach_lora(model, r=4, alpha=8, dropout=0.0, target_modules="all-linear", fallback="none")
        for n, p in model.named_parameters():  # LoRA B starts at zero: give it values so its gradient path is tested too
            if "lora_B" in n:
                p.data.normal_(0, 0.02)
        changed = training.frozen_linears_to_bf16(model) if store else 0
        head = training.head_to_bf16(model) if store == "head" else 0
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, _ = label_loss(model, batch, True)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        results.append((loss.detach(), grads, changed, model, head))
    (l0, g0, *_), (l1, g1, changed, model, _), (l2, g2, _, model_h, head) = results
    assert torch.equal(l0, l1) and torch.equal(l0, l2)
    assert g0.keys() == g1.keys() == g2.keys() and all(torch.equal(g0[k], g1[k]) and torch.equal(g0[k], g2[k]) for k in g0)
    # train-sft's head (tied to the embeddings, run under autocast) gets its own bf16 copy; the embeddings keep fp32
    hb = model_h.get_base_model()
    assert head == hb.lm_head.weight.numel() and hb.lm_head.weight.dtype == torch.bfloat16
    assert hb.model.embed_tokens.weight.dtype == torch.float32 and not hb.lm_head.weight.requires_grad
    assert training.head_to_bf16(model_h) == 0  # once only
    base = model.get_base_model()
    assert changed > 0 and base.model.layers[0].mlp.up_proj.base_layer.weight.dtype == torch.bfloat16
    # embeddings (and the head tied to them), norms and LoRA's own weights keep fp32
    assert base.model.embed_tokens.weight.dtype == torch.float32 and base.lm_head.weight.dtype == torch.float32
    assert base.model.norm.weight.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)


def test_a_bf16_lora_run_stores_its_frozen_linears_in_bf16_and_validates(tiny_model, tmp_path):
    """Through the stage: training and validation both run under autocast with the bf16 weights."""
    data = sft_records.write(tmp_path / "d.jsonl", 110)
    summary = train_sft(_cfg(tiny_model, data, tmp_path / "run", max_steps=2, eval_steps=1, save_steps=1, precision="bf16"))
    fp32 = train_sft(_cfg(tiny_model, data, tmp_path / "run32", max_steps=1, eval_steps=1, save_steps=1, precision="fp32"))
    assert summary["finished"] and summary["frozen_bf16_params"] > 0
    assert summary["eval_loss"] is not None and summary["eval_loss"] > 0
    assert fp32["frozen_bf16_params"] == 0


def test_a_resumed_run_draws_the_same_lora_dropout_masks(tiny_model, data60, tmp_path):
    """LoRA dropout (FastDropout on a CPU) draws from torch's generator, whose state the checkpoint
    carries: resuming from checkpoint-2 gives steps 3-4 the losses of the uninterrupted run. A high
    dropout and learning rate make the masks visible in the loss (with LoRA's B still near zero,
    they would not be), which the no-dropout control checks."""
    import shutil

    def losses(run, step):
        hist = json.loads((run / f"checkpoint-{step}" / "trainer_state.json").read_text())["log_history"]
        return [h["loss"] for h in hist if "loss" in h]

    kw = dict(max_steps=4, save_steps=2, save_total_limit=5, precision="fp32", lora_dropout=0.5, learning_rate=0.05,
              auto_split=False)
    run = tmp_path / "run"
    first = train_sft(_cfg(tiny_model, data60, run, **kw))
    assert first["finished"] and first["global_step"] == 4
    want = losses(run, 4)
    for p in (run / "final", run / "checkpoint-4"):
        shutil.rmtree(p)
    (run / "training_summary.json").unlink()
    again = train_sft(_cfg(tiny_model, data60, run, **kw))
    assert again["resumed_from"].endswith("checkpoint-2") and again["global_step"] == 4
    got = losses(run, 4)
    assert got == pytest.approx(want, rel=1e-6)
    control = train_sft(_cfg(tiny_model, data60, tmp_path / "nodrop", **{**kw, "lora_dropout": 0.0}))
    assert control["finished"]
    assert abs(losses(tmp_path / "nodrop", 4)[2] - want[2]) > 1e-3 * abs(want[2])
