"""scripts/train_dpo.py on a tiny real model: rendering/masks, the completion-only LM head,
model sources (base LoRA, SFT adapter, full), reference modes, resume after SIGKILL."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the pair builder beside this file (any pytest import mode)
from dpo_pairs import make_pairs, write_pairs  # noqa: E402
from trajtune import config as cfglib, training
from trajtune.errors import ConfigError, DataError
from trajtune.scripts.train_dpo import Config as TrainDPOConfig, encode_pairs, encode_side, run as train_dpo

ROOT = Path(__file__).resolve().parents[2]
# One thread: on a shared 2-core machine two OpenMP threads per process wait on each other (6x slower here).
ONE_THREAD = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def cfg_for(tiny_model, tmp_path, **kw) -> TrainDPOConfig:
    data = kw.pop("data", None) or [str(write_pairs(tmp_path / "pairs.jsonl", 24))]
    base = dict(model=str(tiny_model), data=data, output=str(tmp_path / "run"), max_steps=4, batch_size=4,
                save_steps=2, eval_steps=2, logging_steps=1, precision="fp32", learning_rate=1e-3)
    base.update(kw)
    return cfglib.build(TrainDPOConfig, None, base)


@pytest.fixture(scope="module")
def tok(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def test_loss_mask_covers_completion_assistant_turns_only(tok):
    rec = make_pairs(2)[1]  # chosen: call -> tool result -> answer; prompt has a system turn
    ids, mask = encode_side(tok, rec["prompt"], rec["chosen"], rec["tools"])
    trained = tok.decode([t for t, m in zip(ids, mask) if m])
    context = tok.decode([t for t, m in zip(ids, mask) if not m])
    # the call (exact arguments from the file) and the final answer are trained, each with its end token
    assert '{"name": "read_file", "arguments": {"path": "README.md"}}' in trained
    assert "The file README.md prints hi." in trained and trained.count("<|im_end|>") == 2
    # prompt, tools block and the tool observation are context only
    assert "print('hi')" in context and "print('hi')" not in trained
    assert "Read the file README.md" in context and "# Tools" in context
    assert "You are a coding agent." not in trained
    # the context before the first trained token is exactly the prompt SFT and evaluate use
    from trajtune.chat import render_prompt

    assert tok.decode(ids[: mask.index(1)]) == render_prompt(tok, rec["prompt"], rec["tools"])


def test_arguments_of_different_shapes_reach_the_model_as_written(tok):
    recs = make_pairs(4)  # database_query {table, limit:int} and read_file {path} alternate
    rows, counts = encode_pairs(tok, recs, 1024, "drop")
    assert len(rows) == 4 and counts == {"dropped_too_long": 0, "dropped_no_trainable": 0, "truncated": 0}
    for rec, row in zip(recs, rows):
        trained = tok.decode([t for t, m in zip(row["chosen_ids"], row["chosen_mask"]) if m])
        fn = rec["chosen"][0]["tool_calls"][0]["function"]
        assert json.dumps({"name": fn["name"], "arguments": fn["arguments"]}) in trained  # no nulls, no "5" for 5


def test_too_long_pairs_are_dropped_or_truncated_and_counted(tok):
    recs = make_pairs(4)
    rows, counts = encode_pairs(tok, recs, 60, "drop")
    assert counts["dropped_too_long"] == 4 and rows == []
    rows, counts = encode_pairs(tok, recs, 150, "truncate")
    assert all(len(r["chosen_ids"]) <= 150 and len(r["rejected_ids"]) <= 150 for r in rows)
    assert counts["truncated"] + counts["dropped_no_trainable"] > 0


def test_completion_only_head_matches_trl_fused_head(tiny_model):
    import torch
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    from trajtune.trainers import add_completion_only_head

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
    torch.manual_seed(0)
    ids = torch.randint(3, model.config.vocab_size, (4, 30))
    labels = ids.clone()
    labels[:, :18] = -100
    labels[2, 25:] = -100
    ref = model(input_ids=ids, labels=labels, fused_lm_head=True)
    ref.log_probs.sum().backward()
    g_ref = model.lm_head.weight.grad.clone()
    model.zero_grad()
    add_completion_only_head(model)
    out = model(input_ids=ids, labels=labels, fused_lm_head=True)
    out.log_probs.sum().backward()
    for name in ("log_probs", "entropy", "mean_logits"):
        torch.testing.assert_close(getattr(out, name), getattr(ref, name), atol=1e-4, rtol=1e-4)
    assert torch.equal(out.is_top1, ref.is_top1)
    torch.testing.assert_close(model.lm_head.weight.grad, g_ref, atol=1e-4, rtol=1e-4)
    assert model(input_ids=ids).logits.shape == (4, 30, model.config.vocab_size)  # generation path untouched


def test_completion_only_head_chunked_path_matches(tiny_model):
    import torch
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    from trajtune.trainers import add_completion_only_head

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    model.model.embed_tokens.weight.requires_grad_(False)  # frozen head (tied), as under LoRA
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
    torch.manual_seed(0)
    ids = torch.randint(3, model.config.vocab_size, (6, 400))  # 2,394 labelled positions: three chunks
    labels = ids.clone()
    labels[:, :1] = -100
    ref = model(input_ids=ids, labels=labels, fused_lm_head=True)
    ref.log_probs.sum().backward()
    g_ref = model.model.layers[0].mlp.up_proj.weight.grad.clone()
    model.zero_grad()
    add_completion_only_head(model)
    out = model(input_ids=ids, labels=labels, fused_lm_head=True)
    out.log_probs.sum().backward()
    torch.testing.assert_close(out.log_probs, ref.log_probs, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.entropy, ref.entropy, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(model.model.layers[0].mlp.up_proj.weight.grad, g_ref, atol=1e-4, rtol=1e-3)


def test_shared_prompt_forward_matches_the_plain_forward(tiny_model):
    """Each pair's prompt runs once (KV cache repeated for chosen and rejected): same log-probs and
    same gradients as running both full rows, with right padding and pairs of unequal lengths."""
    import torch
    from trl.trainer.utils import add_fused_lm_head

    from trajtune.testing import lora_with_random_b
    from trajtune.trainers import add_completion_only_head, shared_prefix_hidden

    torch.manual_seed(0)
    vocab = 200
    rows, prompt_lens = [], [20, 33]
    for p_len, (c_len, r_len) in zip(prompt_lens, [(7, 12), (9, 4)]):
        prompt = torch.randint(3, vocab, (p_len,))
        rows.append((prompt, torch.randint(3, vocab, (c_len,)), torch.randint(3, vocab, (r_len,))))
    seqs = [torch.cat([p, c]) for p, c, _ in rows] + [torch.cat([p, r]) for p, _, r in rows]
    width = max(len(x) for x in seqs)
    ids = torch.zeros((4, width), dtype=torch.long)
    att = torch.zeros((4, width), dtype=torch.long)
    labels = torch.full((4, width), -100)
    for i, x in enumerate(seqs):
        ids[i, :len(x)], att[i, :len(x)] = x, 1
        p_len = prompt_lens[i % 2]
        labels[i, p_len:len(x)] = x[p_len:]
    from trajtune import trainers as train_dpo  # the module whose shared_prefix_hidden the head calls

    calls = []
    real = train_dpo.shared_prefix_hidden
    train_dpo.shared_prefix_hidden = lambda *a, **k: calls.append(real(*a, **k)) or calls[-1]
    results = []
    try:
        for share in (False, True):
            # through PEFT, as in training (PEFT passes extra None inputs the shared path must accept)
            model = lora_with_random_b(tiny_model)
            add_fused_lm_head(model.get_base_model(), outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
            add_completion_only_head(model.get_base_model(), share_prompt=share)
            out = model(input_ids=ids, attention_mask=att, labels=labels, fused_lm_head=True, use_cache=False)
            out.log_probs.sum().backward()
            grads = torch.cat([p.grad.flatten() for n, p in model.named_parameters() if p.grad is not None])
            results.append((out.log_probs.detach(), grads))
    finally:
        train_dpo.shared_prefix_hidden = real
    assert len(calls) == 1 and calls[0] is not None  # the shared path really ran (once, for share=True)
    (lp_plain, g_plain), (lp_shared, g_shared) = results
    assert (lp_plain != 0).sum() == (labels[:, 1:] != -100).sum()
    torch.testing.assert_close(lp_shared, lp_plain, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(g_shared, g_plain, atol=1e-4, rtol=1e-3)
    # batches not in the [chosen..., rejected...] right-padded shape fall back to the plain forward
    backbone = model.get_base_model().model
    assert shared_prefix_hidden(backbone, {"input_ids": ids[:3], "attention_mask": att[:3]}) is None
    assert shared_prefix_hidden(backbone, {"input_ids": ids, "attention_mask": att.flip(1)}) is None
    # with gradient checkpointing the model keeps no KV cache in training: the plain forward, no crash
    model.get_base_model().gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    out = shared_prefix_hidden(backbone, {"input_ids": ids, "attention_mask": att})
    assert out is None or out.shape == (4, width, model.config.hidden_size)


def test_lora_from_base_writes_adapter_and_reward_metrics(tiny_model, tmp_path):
    val = write_pairs(tmp_path / "val.jsonl", 6, prefix="v")
    s = train_dpo(cfg_for(tiny_model, tmp_path, eval_data=[str(val)]))
    run = Path(s["run_dir"])
    assert s["finished"] and s["global_step"] == 4 and s["method"] == "lora"
    assert (run / "final" / "adapter_model.safetensors").is_file() and not (run / "final" / "ref").exists()
    assert (run / "final" / "tokenizer_config.json").is_file() and (run / "config.yaml").is_file()
    assert any((run / "tensorboard").iterdir())
    saved = json.loads((run / "training_summary.json").read_text())
    assert saved["data"]["train_pairs"] == 24 and saved["data"]["eval_pairs"] == 6
    assert 0.0 <= saved["eval_reward_accuracy"] <= 1.0 and saved["eval_reward_margin"] is not None
    assert saved["eval_reward_accuracy"] > 0.5 and saved["eval_reward_margin"] > 0  # it learned the preference
    assert saved["eval_loss"] < 0.6931  # below log(2): chosen now preferred over rejected
    assert saved["best_checkpoint"] and saved["tokens_seen"] > 0 and saved["tokens_per_second"] > 0
    assert saved["params"]["trainable"] < saved["params"]["total"]


def test_continues_an_sft_adapter(tiny_model, tmp_path):
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    torch.manual_seed(1)
    sft = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    sft.save_pretrained(tmp_path / "sft")
    s = train_dpo(cfg_for(tiny_model, tmp_path, adapter=str(tmp_path / "sft")))
    final = Path(s["final"])
    conf = json.loads((final / "adapter_config.json").read_text())
    assert conf["r"] == 4 and sorted(conf["target_modules"]) == ["q_proj", "v_proj"]  # the same adapter, trained on
    before, after = load_file(tmp_path / "sft" / "adapter_model.safetensors"), load_file(final / "adapter_model.safetensors")
    assert before.keys() == after.keys() and any(not torch.equal(before[k], after[k]) for k in before)
    # the reference was the SFT adapter, not the bare base: at step 1 policy == reference, loss = log 2
    assert abs(s["loss_history"][0]["loss"] - 0.6931) < 1e-3
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), final)  # loads


def test_full_finetune_and_live_reference_agree_with_precompute(tiny_model, tmp_path):
    a = train_dpo(cfg_for(tiny_model, tmp_path / "a", method="full", max_steps=3, reference="precompute"))
    b = train_dpo(cfg_for(tiny_model, tmp_path / "b", method="full", max_steps=3, reference="live",
                          logits_at_labels_only=False))
    assert a["method"] == "full" and (Path(a["final"]) / "model.safetensors").is_file()
    la = [h["loss"] for h in a["loss_history"]]
    lb = [h["loss"] for h in b["loss_history"]]
    assert la == pytest.approx(lb, abs=2e-4) and la[-1] < la[0]


def test_refuses_fewer_than_min_pairs(tiny_model, tmp_path):
    data = write_pairs(tmp_path / "few.jsonl", 19)
    with pytest.raises(DataError, match="only 19 preference pairs .* at least 20 are needed"):
        train_dpo(cfg_for(tiny_model, tmp_path, data=[str(data)]))


def _run_cli(args, env=None):
    return subprocess.Popen([sys.executable, str(ROOT / "scripts" / "train_dpo.py"), *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**(env or os.environ), **ONE_THREAD})


def _wait_for(pred, proc, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not pred():
        time.sleep(0.1)
    return pred()


def _steps(run: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in run.glob("checkpoint-*") if (p / "trainer_state.json").is_file())


def _sigterm_self_once_training(delay: float) -> threading.Thread:
    """Send this process SIGTERM once train-dpo has installed its handler (then it is never the default)."""
    default = signal.getsignal(signal.SIGTERM)

    def fire():
        deadline = time.time() + 120
        while time.time() < deadline and signal.getsignal(signal.SIGTERM) is default:
            time.sleep(0.02)
        time.sleep(delay)
        if signal.getsignal(signal.SIGTERM) is not default:
            os.kill(os.getpid(), signal.SIGTERM)

    t = threading.Thread(target=fire, daemon=True)
    t.start()
    return t


def test_sigterm_stop_then_sigkill_then_resume_matches_an_uninterrupted_run(tiny_model, tmp_path, monkeypatch, capsys):
    data = write_pairs(tmp_path / "pairs.jsonl", 32)
    run = tmp_path / "run"
    opts = {"model": str(tiny_model), "data": [str(data)], "max_steps": 8, "batch_size": 4, "save_steps": 2,
            "logging_steps": 1, "precision": "fp32", "learning_rate": 1e-3, "output": str(run)}
    whole = train_dpo(cfglib.build(TrainDPOConfig, None, {**opts, "output": str(tmp_path / "whole")}))

    # 1) SIGTERM: a checkpoint at the current step, a clean stop, no final/
    monkeypatch.setenv("TRAJTUNE_TEST_STEP_SLEEP", "0.3")
    _sigterm_self_once_training(1.0)
    s1 = train_dpo(cfglib.build(TrainDPOConfig, None, opts))
    monkeypatch.delenv("TRAJTUNE_TEST_STEP_SLEEP")
    assert s1["finished"] is False and s1["stop_reason"] == "interrupted (SIGTERM)"
    stopped = s1["global_step"]
    assert 0 < stopped < 8 and (run / f"checkpoint-{stopped}" / "trainer_state.json").is_file()
    assert not (run / "final").exists()

    # 2) the same command in a real process resumes; SIGKILL it after a later checkpoint
    flags = [str(data), "--model", str(tiny_model), "--max-steps", "8", "--batch-size", "4", "--save-steps", "2",
             "--logging-steps", "1", "--precision", "fp32", "--learning-rate", "1e-3", "-o", str(run)]
    proc = _run_cli(flags, env={**os.environ, "TRAJTUNE_TEST_STEP_SLEEP": "0.5"})
    assert _wait_for(lambda: max(_steps(run)) > stopped, proc), proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    last = max(_steps(run))
    assert stopped < last < 8 and not (run / "final").exists()
    (run / "checkpoint-99").mkdir()  # a save cut off mid-way: weights, no trainer_state.json
    (run / "checkpoint-99" / "adapter_model.safetensors").write_bytes(b"")

    # 3) the same command again finishes the run from the newest complete checkpoint
    capsys.readouterr()
    s3 = train_dpo(cfglib.build(TrainDPOConfig, None, opts))
    err = capsys.readouterr().err
    assert "skipping incomplete checkpoint" in err and "resuming from" in err and f"checkpoint-{last}" in err
    assert s3["finished"] and s3["global_step"] == whole["global_step"] == 8
    assert s3["resumed_from"].endswith(f"checkpoint-{last}") and (run / "final" / "adapter_model.safetensors").is_file()
    losses_whole = {h["step"]: h["loss"] for h in whole["loss_history"]}
    losses_res = {h["step"]: h["loss"] for h in s3["loss_history"]}
    assert sorted(losses_res) == sorted(losses_whole) == list(range(1, 9))
    for step in range(last + 1, 9):  # trained after the resume: same loss as without interruption
        assert losses_res[step] == pytest.approx(losses_whole[step], abs=1e-4), step


def test_lora_that_cannot_attach_stops_or_falls_back_to_full(tiny_model, tmp_path):
    from trajtune.errors import ConfigError

    with pytest.raises(ConfigError, match="LoRA could not attach"):
        train_dpo(cfg_for(tiny_model, tmp_path, lora_target_modules=["no_such_layer"]))
    s = train_dpo(cfg_for(tiny_model, tmp_path / "fb", lora_target_modules=["no_such_layer"], lora_fallback="full", max_steps=1))
    assert s["method"] == "full" and (Path(s["final"]) / "model.safetensors").is_file()


def test_an_adapter_passed_as_model_is_explained(tiny_model, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from trajtune.errors import ConfigError

    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model), LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(tmp_path / "ad")
    with pytest.raises(ConfigError, match="is a LoRA adapter, not a model .*pass it as --adapter"):
        train_dpo(cfg_for(tiny_model, tmp_path, model=str(tmp_path / "ad")))


def test_dpo_plus_chosen_nll_runs_through_the_completion_only_head_as_through_trls(tiny_model, tmp_path):
    """loss_type [sigmoid, sft] (DPO plus the chosen side's NLL, RPO-style): the first step's loss is
    log 2 plus the NLL, and trajtune's completion-only, shared-prompt head gives trl's own losses."""
    a = train_dpo(cfg_for(tiny_model, tmp_path / "a", max_steps=3, loss_type=["sigmoid", "sft"], loss_weights=[1.0, 0.5]))
    b = train_dpo(cfg_for(tiny_model, tmp_path / "b", max_steps=3, loss_type=["sigmoid", "sft"], loss_weights=[1.0, 0.5],
                          logits_at_labels_only=False, share_prompt=False))
    la = [h["loss"] for h in a["loss_history"]]
    lb = [h["loss"] for h in b["loss_history"]]
    assert la == pytest.approx(lb, abs=2e-4)
    assert la[0] > 0.6931 + 0.1  # DPO's log 2 at step 1, plus half the NLL of the chosen side
    plain = train_dpo(cfg_for(tiny_model, tmp_path / "c", max_steps=1))
    assert abs(plain["loss_history"][0]["loss"] - 0.6931) < 1e-3
    with pytest.raises(ConfigError, match="loss_weights has 1 weights for 2 loss types"):
        train_dpo(cfg_for(tiny_model, tmp_path / "d", loss_type=["sigmoid", "sft"], loss_weights=[1.0]))


def test_bf16_frozen_linears_give_the_same_dpo_run(tiny_model, tmp_path, monkeypatch):
    """Under bf16 autocast train-dpo stores the frozen linears (base and the SFT adapter's reference
    copy) in bf16, the casts autocast makes anyway: the run must be the same as without it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    sft = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                         LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    sft.save_pretrained(tmp_path / "sft")
    kw = dict(adapter=str(tmp_path / "sft"), precision="bf16", max_steps=2, reference="live")
    on = train_dpo(cfg_for(tiny_model, tmp_path / "on", **kw))
    monkeypatch.setattr(training, "store_frozen_bf16", lambda *a, **k: 0)
    off = train_dpo(cfg_for(tiny_model, tmp_path / "off", **kw))
    assert on["frozen_bf16_params"] > 0 and off["frozen_bf16_params"] == 0
    assert [h["loss"] for h in on["loss_history"]] == [h["loss"] for h in off["loss_history"]]
    assert on["eval_loss"] == off["eval_loss"]
