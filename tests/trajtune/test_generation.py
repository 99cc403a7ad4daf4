"""The slot engine gives the same greedy tokens as model.generate one prompt at a time.

The tiny model runs in float64 here: batching changes float rounding (different matmul shapes),
and in float64 that is far below any gap between two logits, so the test checks the engine's
logic (shared prefixes, per-row positions and masks, slot refill and compaction, stopping)
exactly, token for token."""
import pytest
import torch

from trajtune.generation import Engine, kv_bytes_per_token, supported


@pytest.fixture(scope="module")
def model_tok(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    from trajtune.testing import scramble

    # larger weights than the init: replies vary from token to token and prompt to prompt
    model = scramble(AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float64).eval())
    return model, tok


def prompts(tok) -> list[list[int]]:
    system = "<|im_start|>system\nYou are a helpful assistant. Call tools when they help.\n<tools> database_query </tools><|im_end|>\n"
    users = ["Show me the latest orders.", "Show me the latest orders please", "Read the file src/app.py",
             "Deploy service api to staging.", "Run the tests.", "Show me", "The quick brown fox jumps over the lazy dog"]
    texts = [system + f"<|im_start|>user\n{u}<|im_end|>\n<|im_start|>assistant\n" for u in users]
    texts += [texts[0], "Show me", "<|im_start|>user\nhi<|im_end|>\n"]  # a duplicate, a short one, no system
    return [tok(t, add_special_tokens=False)["input_ids"] for t in texts]


def one_at_a_time(model, ids, stop_ids, max_new):
    out = []
    with torch.inference_mode():
        for x in ids:
            g = model.generate(torch.tensor([x]), max_new_tokens=max_new, do_sample=False, eos_token_id=stop_ids,
                               pad_token_id=0)
            gen = g[0, len(x):].tolist()
            for i, t in enumerate(gen):  # generate pads finished rows; keep up to the stop token
                if t in stop_ids:
                    gen = gen[: i + 1]
                    break
            out.append(gen)
    return out


def test_same_tokens_as_generate_with_refill_and_early_stops(model_tok):
    model, tok = model_tok
    ids = prompts(tok)
    max_new = 14
    first = one_at_a_time(model, ids, [tok.eos_token_id], max_new)
    # extra stop tokens that the model emits early in some replies: rows finish at different steps
    stops = [tok.eos_token_id] + sorted({g[2] for g in first[:4]} | {first[5][6]})
    want = one_at_a_time(model, ids, stops, max_new)
    lengths = [len(w) for w in want]
    assert len(set(lengths)) > 2 and max_new in lengths and min(lengths) < max_new  # the test exercises stops

    got: dict[int, list[int]] = {}
    order: list[int] = []
    eng = Engine(model, stops, max_new, batch_size=3)  # fewer slots than prompts: refill and compaction
    res = eng.run(ids, lambda r: (got.__setitem__(r.index, r.ids), order.append(r.index)))
    assert [r.ids for r in res] == want
    assert got == dict(enumerate(want)) and sorted(order) == list(range(len(ids)))
    assert order != sorted(order, key=lambda i: ids[i])  # results arrive as rows finish, not in prompt order
    st = eng.stats
    assert st.prompts == len(ids) and st.generated == sum(lengths)
    assert all(r.seconds > 0 for r in res)


def test_prefixes_are_computed_once(model_tok):
    model, tok = model_tok
    ids = prompts(tok)
    eng = Engine(model, [tok.eos_token_id], 3, batch_size=4)
    eng.run(ids)
    srt = sorted(ids)
    expect = len(srt[0])
    for prev, cur in zip(srt, srt[1:]):
        lcp = 0
        while lcp < min(len(cur) - 1, len(prev)) and cur[lcp] == prev[lcp]:
            lcp += 1
        expect += len(cur) - lcp
    assert eng.stats.prefilled_tokens == expect
    assert eng.stats.prompt_tokens == sum(map(len, ids)) and eng.stats.as_dict()["prefix_share"] > 0.5


def test_stop_check_ends_a_row(model_tok):
    model, tok = model_tok
    ids = prompts(tok)[:3]
    free = Engine(model, [tok.eos_token_id], 10, batch_size=2).run(ids)
    cut = Engine(model, [tok.eos_token_id], 10, batch_size=2, stop_check=lambda gen: len(gen) >= 4).run(ids)
    assert [r.ids[:4] for r in free] == [r.ids for r in cut]


def test_each_prompt_stops_at_its_own_limit(model_tok):
    """Per-prompt limits (evaluate's room for long expected answers): each row stops at its own
    limit, with the tokens a run at that one limit gives, while the other rows go on."""
    model, tok = model_tok
    ids = prompts(tok)[:5]
    limits = [3, 12, 5, 20, 1]
    got = Engine(model, [], 4, batch_size=2).run(ids, limits=limits)
    assert [len(r.ids) for r in got] == limits
    for r, n in zip(got, limits):
        assert r.ids == Engine(model, [], n, batch_size=1).run([ids[r.index]])[0].ids


def test_supported_and_kv_size(model_tok, tiny_model):
    from transformers import AutoModelForCausalLM, MistralConfig, MistralForCausalLM

    model, _ = model_tok
    assert supported(model) == (True, "")
    cfg = model.config
    assert kv_bytes_per_token(model) == cfg.num_hidden_layers * 2 * cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads) * 8
    sliding = MistralForCausalLM(MistralConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                               num_attention_heads=2, num_key_value_heads=1, sliding_window=8))
    ok, why = supported(sliding)
    assert not ok and "sliding" in why
    penalised = AutoModelForCausalLM.from_pretrained(tiny_model)
    penalised.generation_config.repetition_penalty = 1.3
    ok, why = supported(penalised)
    assert not ok and "repetition_penalty" in why


def test_eager_attention_is_not_supported(tiny_model):
    from transformers import AutoModelForCausalLM

    eager = AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation="eager")
    ok, why = supported(eager)
    assert not ok and "eager" in why


def test_sampling_draws_from_the_temperature_and_top_p_distribution():
    """The sampler (train-grpo's rollouts) draws each token with its probability under
    softmax(logits / T) after the nucleus filter, never a filtered-out one, and returns its log-prob."""
    import torch

    from trajtune.generation import Engine

    logits = torch.log(torch.tensor([0.05, 0.0001, 0.5, 0.3, 0.1499]))
    n = 40000
    for top_p, want in ((1.0, torch.softmax(logits, -1)), (0.75, torch.tensor([0.0, 0.0, 0.5, 0.3, 0.0]) / 0.8)):
        engine = Engine(None, [], 1, temperature=1.0, top_p=top_p, generator=torch.Generator().manual_seed(7))
        toks, lps = engine._pick(logits.repeat(n, 1))
        freq = torch.bincount(torch.tensor(toks), minlength=5).float() / n
        torch.testing.assert_close(freq, want, atol=0.01, rtol=0)
        assert all(want[t] > 0 for t in set(toks))
        torch.testing.assert_close(torch.tensor(lps[:5]), torch.log_softmax(logits, -1)[torch.tensor(toks[:5])])
    # the same generator seed draws the same tokens (a resumed run's rollouts are reproducible)
    a = Engine(None, [], 1, temperature=0.7, generator=torch.Generator().manual_seed(1))._pick(logits.repeat(8, 1))
    b = Engine(None, [], 1, temperature=0.7, generator=torch.Generator().manual_seed(1))._pick(logits.repeat(8, 1))
    assert a == b
