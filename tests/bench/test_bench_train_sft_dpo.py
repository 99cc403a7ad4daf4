"""bench/bench_train_sft.py, bench/bench_train_dpo.py and bench/bench_train_grpo.py keep working: on a tiny local model each
prints the plain trl peer, the tuned trl peer, train-sft/train-dpo, the measured GEMM ceiling,
the ratios, the shares of the bound, held-out quality, peak memory and a final JSON line; the
GRPO bench prints trl's GRPOTrainer beside train-grpo, their rollout and step ratios and the
share_prompt lever's line.

No speed is asserted (speed is the benchmark's job, not a test's): only that the lines exist and
the figures are positive numbers."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NUM = r"([\d.]+)"


def run_bench(script: str, args: list[str], tmp_path: Path) -> str:
    env = {**os.environ, "BENCH_OUT": str(tmp_path / "out"), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    res = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], capture_output=True, text=True,
                         env=env, timeout=900)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return res.stdout


def positive(pattern: str, out: str) -> list[float]:
    m = re.search(pattern, out)
    assert m, f"no line matching {pattern!r} in:\n{out}"
    values = [float(x) for x in m.groups()]
    assert all(v > 0 for v in values), m.group(0)
    return values


def check_ceiling(out: str, ceiling: dict) -> None:
    assert "ceiling (torch.matmul at the model's shapes" in out
    for label in ("(head)", "(head grad)", "(LoRA A)", "(LoRA B)", "(attention)"):
        positive(re.escape(label) + r"\s+bf16\s+" + NUM + r" GFLOP/s\s+fp32\s+" + NUM + " GFLOP/s", out)
    positive(r"ceiling bound for a LoRA step: bf16 " + NUM + r" tok/s, fp32 " + NUM + " tok/s", out)
    assert ceiling["bound_tokens_per_s"]["bf16"] > 0 and ceiling["bound_tokens_per_s"]["fp32"] > 0
    assert all(r["bf16"] > 0 and r["fp32"] > 0 for r in ceiling["shapes"].values())


@pytest.mark.slow
def test_bench_train_sft_prints_both_peers_the_ceiling_and_the_ratios(tiny_model, tmp_path):
    out = run_bench("bench_train_sft.py", ["--model", str(tiny_model), "--steps", "2", "--batch-size", "4",
                                           "--count", "40"], tmp_path)
    for name in ("plain trl SFTTrainer", "tuned trl SFTTrainer", "trajtune train-sft"):
        positive(re.escape(name) + r"\s+" + NUM + r" tok/s .*eval loss " + NUM + r"\s+peak RSS " + NUM + " MB", out)
        positive(r"share of the bf16 bound: " + re.escape(name) + r"\s+" + NUM + "%", out)
    assert re.search(r"tuned trl settings: bf16 True \(use_cpu\), gradient checkpointing False, group_by_length", out), out
    positive(r"speed ratio train-sft / plain trl: " + NUM + "x", out)
    positive(r"speed ratio train-sft / tuned trl: " + NUM + r"x \(target >= 2x\)", out)
    positive(r"share of ceiling train-sft: " + NUM + r"% of the bf16 bound \(target >= 50%\)", out)
    positive(r"eval loss \(fp32, assistant tokens\): train-sft " + NUM + " vs plain trl " + NUM + " vs tuned trl " + NUM, out)
    positive(r"peak memory: train-sft " + NUM + " MB vs plain trl " + NUM + " MB vs tuned trl " + NUM + " MB", out)
    data = json.loads(out.splitlines()[-1].removeprefix("JSON "))
    assert set(data) >= {"trl", "tuned_trl", "train_sft", "ceiling", "ratios", "share_of_bf16_bound"}
    assert data["tuned_trl"]["settings"]["bf16"] and not data["tuned_trl"]["settings"]["gradient_checkpointing"]
    assert all(v > 0 for v in data["ratios"].values()) and all(v > 0 for v in data["share_of_bf16_bound"].values())
    check_ceiling(out, data["ceiling"])


@pytest.mark.slow
def test_bench_train_dpo_prints_both_peers_the_ceiling_and_the_ratios(tiny_model, tmp_path):
    out = run_bench("bench_train_dpo.py", ["--model", str(tiny_model), "--steps", "2", "--batch-size", "2",
                                           "--eval-pairs", "4"], tmp_path)
    rows = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    assert [r["name"] for r in rows] == ["plain trl DPOTrainer", "tuned trl DPOTrainer", "trajtune train-dpo"]
    assert all(r["tokens"] > 0 and r["tokens_per_s"] > 0 and r["peak_rss_mb"] > 0 for r in rows)
    assert rows[1]["settings"]["precompute_ref_log_probs"] and rows[1]["reference_pass_s"] >= 0
    for r in rows:
        positive(r"share of the bf16 bound: " + re.escape(r["name"]) + r"\s+" + NUM + "%", out)
    assert re.search(r"tuned trl settings: bf16 True \(use_cpu\), gradient checkpointing False, precompute_ref_log_probs True", out)
    positive(r"tokens/s: train-dpo [\d.]+ vs plain DPOTrainer [\d.]+ -> " + NUM + "x", out)
    positive(r"tokens/s: train-dpo [\d.]+ vs tuned DPOTrainer [\d.]+ -> " + NUM + r"x \(target >= 2x\)", out)
    positive(r"share of ceiling train-dpo: " + NUM + "% of the bf16 bound", out)
    assert "held-out DPO loss: train-dpo" in out
    positive(r"peak RSS MB: train-dpo " + NUM + " vs plain " + NUM + " vs tuned " + NUM, out)
    data = json.loads(out.splitlines()[-1].removeprefix("JSON "))
    assert set(data) >= {"trl", "tuned_trl", "train_dpo", "ceiling", "ratios", "share_of_bf16_bound"}
    assert all(v > 0 for v in data["ratios"].values()) and all(v > 0 for v in data["share_of_bf16_bound"].values())
    check_ceiling(out, data["ceiling"])


@pytest.mark.slow
def test_bench_train_grpo_prints_the_rollout_and_step_ratios_and_the_lever(tiny_model, tmp_path):
    """bench/bench_train_grpo.py on the tiny model: trl's GRPOTrainer and train-grpo on the same prompts,
    and train-grpo again with share_prompt off (--lever): the ratios and the lever's line."""
    out = run_bench("bench_train_grpo.py", ["--model", str(tiny_model), "--steps", "1", "--prompts-per-step", "2",
                                            "--group", "2", "--max-new", "8", "--lever"], tmp_path)
    rows = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    assert [r["name"] for r in rows] == ["plain trl GRPOTrainer (model.generate)",
                                         "trajtune train-grpo (shared-prefill slot engine)",
                                         "trajtune train-grpo (shared-prefill slot engine, trl's loss head: share_prompt off)"]
    assert [r["loss_forward"] for r in rows[1:]] == ["shared prompts, completion positions only", "trl's fused head over every position"]
    assert all(r["steps"] == 1 and r["completions"] == 4 and r["step_s"] > 0 for r in rows)
    assert "same prompt token ids in both: yes" in out
    positive(r"rollout generated tokens/s: train-grpo [\d.]+ vs trl's generation [\d.]+ -> " + NUM + r"x \(target >= 3x\)", out)
    positive(r"step time s: train-grpo [\d.]+ vs plain GRPOTrainer [\d.]+ -> " + NUM + "x faster", out)
    positive(r"lever share_prompt \(same run\): step [\d.]+ -> [\d.]+ s \(" + NUM + r"x\)", out)
    positive(r"peak RSS MB: train-grpo " + NUM + " vs " + NUM, out)
