"""merge-lora stage: merged weights load in plain transformers and behave exactly like base+adapter."""
import json

import pytest

from trajtune.config import build
from trajtune.errors import ConfigError, RunError, UsageError
from trajtune.scripts.merge_lora import Config, run


def make_adapter(base, out, seed, *, base_name=None, on_top=None):
    """A real LoRA adapter with non-zero B weights (a fresh LoRA is a no-op), saved with peft."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base)
    if on_top:  # the SFT adapter merged in memory, as a DPO stage would train on top of it
        model = PeftModel.from_pretrained(model, on_top).merge_and_unload()
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    torch.manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    model.save_pretrained(out)
    cfg_file = out / "adapter_config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["base_model_name_or_path"] = base_name or str(base)
    cfg_file.write_text(json.dumps(cfg))
    return out


def greedy(model, tok, n=12):
    import torch

    from trajtune.chat import render_prompt

    text = render_prompt(tok, [{"role": "user", "content": "Show me the latest orders."}])
    ids = tok(text, add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=n, do_sample=False, min_new_tokens=n)
    return out[0, ids["input_ids"].shape[1]:].tolist()


@pytest.fixture(scope="module")
def sft_adapter(tiny_model, tmp_path_factory):
    return make_adapter(tiny_model, tmp_path_factory.mktemp("sft") / "final", seed=1)


def test_merged_model_generates_like_base_plus_adapter(tiny_model, sft_adapter, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trajtune.models import load_model

    rep = run(build(Config, None, {"adapters": [str(sft_adapter)], "output": str(tmp_path / "merged")}))
    out = tmp_path / "merged"
    assert rep["passed"] and rep["max_abs_diff"] < 1e-3
    assert json.loads((out / "merge_report.json").read_text())["max_abs_diff"] == rep["max_abs_diff"]
    for f in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json"):
        assert (out / f).is_file(), f
    tok = AutoTokenizer.from_pretrained(out)
    assert "im_start" in tok.chat_template
    plain = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    peft_model = load_model(str(tiny_model), [str(sft_adapter)], merge=False)
    want = greedy(peft_model, tok)
    assert greedy(plain, tok) == want
    assert greedy(base, tok) != want  # the adapter matters, so the check above means something


def test_refuses_existing_folder_unless_force_and_skips_when_up_to_date(tiny_model, sft_adapter, tmp_path):
    out = tmp_path / "m"
    cfg = build(Config, None, {"adapters": [str(sft_adapter)], "output": str(out)})
    run(cfg)
    assert run(cfg).get("skipped") is True  # same inputs: nothing to do
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(UsageError, match="already exists.*--force"):
        run(build(Config, None, {"adapters": [str(sft_adapter)], "output": str(other)}))
    rep = run(build(Config, None, {"adapters": [str(sft_adapter)], "output": str(other), "force": True}))
    assert rep["passed"] and (other / "model.safetensors").is_file()


def test_dpo_adapter_on_top_of_sft_adapter_chain(tiny_model, sft_adapter, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trajtune.models import load_model

    dpo = make_adapter(tiny_model, tmp_path / "dpo" / "final", seed=2, on_top=sft_adapter)
    out = tmp_path / "merged"
    rep = run(build(Config, None, {"adapters": [str(sft_adapter), str(dpo)], "output": str(out)}))
    assert rep["passed"] and len(rep["adapters"]) == 2
    tok = AutoTokenizer.from_pretrained(out)
    want = greedy(load_model(str(tiny_model), [str(sft_adapter), str(dpo)], merge=False), tok)
    assert greedy(AutoModelForCausalLM.from_pretrained(out), tok) == want
    assert want != greedy(load_model(str(tiny_model), [str(sft_adapter)], merge=False), tok)
    # a DPO adapter whose base is the SFT adapter folder expands into the chain by itself
    dpo2 = make_adapter(tiny_model, tmp_path / "dpo2" / "final", seed=2, on_top=sft_adapter, base_name=str(sft_adapter))
    rep2 = run(build(Config, None, {"adapters": [str(dpo2)], "model": str(tiny_model), "output": str(tmp_path / "m2")}))
    assert rep2["adapters"] == [str(sft_adapter), str(dpo2)] and rep2["max_abs_diff"] < 1e-3


def test_bf16_output_within_tolerance(tiny_model, sft_adapter, tmp_path):
    rep = run(build(Config, None, {"adapters": [str(sft_adapter)], "output": str(tmp_path / "b"), "dtype": "bf16"}))
    assert rep["passed"] and rep["dtype"] == "bf16" and rep["max_abs_diff"] <= rep["tolerance"]
    cfg = json.loads((tmp_path / "b" / "config.json").read_text())
    assert cfg.get("dtype", cfg.get("torch_dtype")) == "bfloat16"


def test_verification_failure_leaves_no_output(tiny_model, sft_adapter, tmp_path):
    with pytest.raises(RunError, match="verification failed"):
        run(build(Config, None, {"adapters": [str(sft_adapter)], "output": str(tmp_path / "x"),
                                        "dtype": "bf16", "tolerance": 1e-9}))
    assert not (tmp_path / "x").exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_refuses_quantized_base(tiny_model, sft_adapter, tmp_path):
    import shutil

    q = tmp_path / "q"
    shutil.copytree(tiny_model, q)
    cfg = json.loads((q / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    (q / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UsageError, match="quantized model \\(bitsandbytes\\)"):
        run(build(Config, None, {"adapters": [str(sft_adapter)], "model": str(q), "output": str(tmp_path / "o")}))


def test_missing_adapter_and_output_are_usage_errors(tmp_path):
    with pytest.raises(ConfigError, match="no adapter"):
        build(Config, None, {"output": str(tmp_path)})
    with pytest.raises(UsageError, match="adapter folder not found"):
        run(build(Config, None, {"adapters": [str(tmp_path / "nope")], "output": str(tmp_path / "o")}))
