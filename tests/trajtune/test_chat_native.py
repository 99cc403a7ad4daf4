"""The native render path: a tokenizer whose chat template handles tools (Qwen2.5-style) gets
tools and tool_calls passed to its template, and training/evaluation still agree on the text."""
import copy

import pytest
from transformers import AutoTokenizer

from trajtune import chat

# Qwen2.5's tool template, trimmed to what matters: tools in the system turn, calls as
# <tool_call> JSON blocks in the assistant turn, results as <tool_response> in a user turn.
QWEN_STYLE = (  # HF renders with trim_blocks: a newline right after a tag is dropped, so newlines are {{ nl }}
    "{% set nl = '\\n' %}"
    "{% if tools %}<|im_start|>system{{ nl }}"
    "{% if messages[0].role == 'system' %}{{ messages[0].content }}{{ nl }}{{ nl }}{% endif %}"
    "# Tools{{ nl }}<tools>{% for tool in tools %}{{ nl }}{{ tool | tojson }}{% endfor %}{{ nl }}</tools><|im_end|>{{ nl }}"
    "{% elif messages[0].role == 'system' %}<|im_start|>system{{ nl }}{{ messages[0].content }}<|im_end|>{{ nl }}{% endif %}"
    "{% for message in messages %}"
    "{% if message.role == 'user' or (message.role == 'system' and not loop.first) %}"
    "<|im_start|>{{ message.role }}{{ nl }}{{ message.content }}<|im_end|>{{ nl }}"
    "{% elif message.role == 'assistant' %}<|im_start|>assistant{{ nl }}"
    "{% if message.content %}{{ message.content }}{% endif %}"
    "{% for tool_call in message.tool_calls or [] %}"
    "{% if message.content or not loop.first %}{{ nl }}{% endif %}<tool_call>{{ nl }}"
    "{\"name\": \"{{ tool_call.function.name }}\", \"arguments\": {{ tool_call.function.arguments | tojson }}}"
    "{{ nl }}</tool_call>{% endfor %}<|im_end|>{{ nl }}"
    "{% elif message.role == 'tool' %}"
    "{% if loop.index0 == 0 or messages[loop.index0 - 1].role != 'tool' %}<|im_start|>user{% endif %}"
    "{{ nl }}<tool_response>{{ nl }}{{ message.content }}{{ nl }}</tool_response>"
    "{% if loop.last or messages[loop.index0 + 1].role != 'tool' %}<|im_end|>{{ nl }}{% endif %}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant{{ nl }}{% endif %}"
)

TOOLS = [{"type": "function", "function": {"name": "database_query", "description": "Run a query", "parameters": {
    "type": "object", "properties": {"table": {"type": "string"}, "limit": {"type": "integer"}}, "required": ["table"]}}}]
TRAJ = [
    {"role": "system", "content": "You are an operations agent."},
    {"role": "user", "content": "Show 5 rows of orders."},
    {"role": "assistant", "content": "I'll query the table.", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "database_query", "arguments": {"table": "orders", "limit": 5}}},
        {"id": "c2", "type": "function", "function": {"name": "database_query", "arguments": {"table": "users"}}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "[5 rows]"},
    {"role": "tool", "tool_call_id": "c2", "content": "[users]"},
    {"role": "assistant", "content": "Wrong turn.", "train": False},
    {"role": "user", "content": "go on"},
    {"role": "assistant", "content": "Here are the 5 rows."},
]


@pytest.fixture(scope="module")
def native_tok(tiny_model, tmp_path_factory):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    tok.chat_template = QWEN_STYLE
    return tok


def test_a_tool_aware_template_is_rendered_natively(native_tok):
    assert chat.supports_tools(native_tok)
    text = chat.render(native_tok, TRAJ, TOOLS)
    assert "# Tools\n<tools>" in text and '"name": "database_query"' in text  # the template's own layout
    assert "<tool_response>\n[5 rows]\n</tool_response>\n<tool_response>\n[users]" in text  # parallel results, one turn


def test_native_render_round_trips_through_the_parser_like_the_fallback(native_tok, tiny_model):
    text, spans = chat.render_with_spans(native_tok, TRAJ, TOOLS)
    gold = [m for m in TRAJ if m["role"] == "assistant" and m.get("train", True)]
    assert len(spans) == len(gold)
    for (s, e), msg in zip(spans, gold):
        parsed = chat.parse_tool_calls(text[s:e])
        want = [{"name": c["function"]["name"], "arguments": c["function"]["arguments"]} for c in msg.get("tool_calls") or []]
        assert parsed.calls == want and parsed.errors == []
        assert parsed.content.startswith((msg["content"] or "").strip())
    # the fallback (no tool-aware template) parses to the same calls
    fallback = AutoTokenizer.from_pretrained(tiny_model)
    assert not chat.supports_tools(fallback)
    ftext, fspans = chat.render_with_spans(fallback, TRAJ, TOOLS)
    assert [chat.parse_tool_calls(ftext[s:e]).calls for s, e in fspans] == \
           [chat.parse_tool_calls(text[s:e]).calls for s, e in spans]


def test_native_labels_cover_trainable_assistant_turns_only(native_tok):
    ids, labels = chat.tokenize_for_training(native_tok, copy.deepcopy(TRAJ), TOOLS)
    trained = native_tok.decode([i for i, l in zip(ids, labels) if l != -100])
    assert "I'll query the table." in trained and '"arguments": {"table": "orders", "limit": 5}' in trained
    assert "Here are the 5 rows." in trained
    for absent in ("operations agent", "Show 5 rows of orders", "[5 rows]", "Wrong turn.", "go on", "# Tools"):
        assert absent not in trained
    assert trained.count("<|im_end|>") == 2


def test_the_native_prompt_ends_where_the_model_answers(native_tok):
    prompt = chat.render_prompt(native_tok, TRAJ[:2], TOOLS)
    assert prompt.endswith("<|im_start|>assistant\n") and "<tools>" in prompt
