"""The shared renderer/parser: what training learns is exactly what evaluation parses."""
import pytest
from transformers import AutoTokenizer

from trajtune import chat

TOOLS = [{"type": "function", "function": {"name": "database_query", "description": "Run a query",
          "parameters": {"type": "object", "properties": {"table": {"type": "string"}, "limit": {"type": "integer"}},
                         "required": ["table"]}}},
         {"type": "function", "function": {"name": "cache_set", "parameters": {"type": "object", "properties": {
             "key": {"type": "string"}, "value": {}}}}}]

TRAJ = [
    {"role": "system", "content": "You are an operations agent."},
    {"role": "user", "content": "Show 5 rows of orders and cache the count."},
    {"role": "assistant", "content": "I'll query the table.", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "database_query", "arguments": {"table": "orders", "limit": 5}}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "[5 rows]"},
    {"role": "assistant", "content": "Oops, wrong step.", "train": False},
    {"role": "user", "content": "go on"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c2", "type": "function", "function": {"name": "cache_set", "arguments": {"key": "n", "value": [1, "x"]}}},
        {"id": "c3", "type": "function", "function": {"name": "cache_set", "arguments": {"key": "m", "value": 2.5}}}]},
    {"role": "tool", "tool_call_id": "c2", "content": "ok"},
    {"role": "tool", "tool_call_id": "c3", "content": "ok"},
    {"role": "assistant", "content": "Done: 5 rows, cached."},
]


@pytest.fixture(scope="module")
def tok(tiny_model):
    return AutoTokenizer.from_pretrained(tiny_model)


def test_parse_inverts_render_for_every_assistant_turn(tok):
    text, spans = chat.render_with_spans(tok, TRAJ, TOOLS)
    gold = [m for m in TRAJ if m["role"] == "assistant" and m.get("train", True)]
    assert len(spans) == len(gold)
    for (s, e), msg in zip(spans, gold):
        parsed = chat.parse_tool_calls(text[s:e])
        want = [{"name": c["function"]["name"], "arguments": c["function"]["arguments"]} for c in msg.get("tool_calls") or []]
        assert parsed.calls == want
        assert parsed.errors == []


def test_labels_cover_only_trainable_assistant_turns(tok):
    ids, labels = chat.tokenize_for_training(tok, TRAJ, TOOLS)
    trained = tok.decode([i for i, l in zip(ids, labels) if l != -100])
    assert "I'll query the table." in trained
    assert '"arguments": {"key": "n", "value": [1, "x"]}' in trained
    assert "Done: 5 rows, cached." in trained
    # never system, user, tool observations, nor train:false turns
    for absent in ("operations agent", "Show 5 rows", "[5 rows]", "Oops, wrong step.", "go on", "<tool_response>"):
        assert absent not in trained
    assert trained.count("<|im_end|>") == 3  # the model learns to stop after each of its turns


def test_tools_and_results_reach_the_prompt(tok):
    prompt = chat.render_prompt(tok, TRAJ[:4], TOOLS)
    assert '"name": "database_query"' in prompt and "<tools>" in prompt
    assert "<tool_response>\n[5 rows]\n</tool_response>" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")


def test_parallel_results_share_one_turn():
    tm = chat.to_template_messages(TRAJ, TOOLS)
    users = [m.content for m in tm if m.role == "user"]
    assert users[-1] == "<tool_response>\nok\n</tool_response>\n<tool_response>\nok\n</tool_response>"


@pytest.mark.parametrize("text,calls,errors", [
    ("plain answer", [], []),
    ('<tool_call>\n{"name": "a", "arguments": {"x": 1}}\n</tool_call>', [{"name": "a", "arguments": {"x": 1}}], []),
    ('<tool_call>{"name": "a", "arguments": "{\\"x\\": 1}"}</tool_call>', [{"name": "a", "arguments": {"x": 1}}], []),
    ('<tool_call>\n{"name": "a", "arguments": {"x": 1</tool_call>', [], ["unparsable_json"]),
    ('<tool_call>\n{"name": "a", "arguments": {"x": 1', [], ["truncated"]),
    ('<tool_call>\n["a"]\n</tool_call>', [], ["bad_call"]),
])
def test_parser_reports_what_went_wrong(text, calls, errors):
    p = chat.parse_tool_calls(text)
    assert p.calls == calls
    assert p.errors == errors
