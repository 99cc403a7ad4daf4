"""OpenTelemetry GenAI (OTLP JSON) and Vercel AI SDK spans -> sft / preference, tool calls and
results included; every span converted or rejected with its reason; the real samples in
../shared/realworld/openinference (read in place, never copied) likewise."""
from pathlib import Path

import pytest

from trajtune import config
from trajtune.converters.convert import run_convert
from trajtune.scripts.convert import Config

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "convert"
REAL = Path(__file__).resolve().parents[3] / "shared" / "realworld" / "openinference"


def test_otlp_genai_export_auto_detected_with_tool_calls_results_and_schemas(convert):
    summary, recs, rejects = convert("otel_genai_otlp.json")
    assert summary["from"] == "otel"
    assert summary["converted"] + sum(summary["rejected"].values()) == 5  # the export's five spans
    assert summary["rejected"] == {"a tool execution span, not a model call": 1, "input messages is not JSON": 1}
    assert [r["metadata"]["span_id"] for r in recs] == ["0000000000000001", "0000000000000003", "0000000000000004"]
    first = recs[0]
    assert first["metadata"]["source"] == "otel" and first["metadata"]["session_id"] == "conv-1"
    assert first["tools"][0]["function"]["parameters"]["required"] == ["city"]
    assert first["messages"][-1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": {"city": "Oslo"}}
    second = recs[1]["messages"]
    assert second[2] == {"role": "tool", "content": '{"sky":"snow"}', "tool_call_id": "c1"}
    assert second[3] == {"role": "assistant", "content": "It is snowing in Oslo."}
    bad = [r for r in rejects if r["reason"] == "input messages is not JSON"][0]
    assert bad["input"]["context"]["span_id"] == "0000000000000005"  # the span id is in the reject


def test_preference_from_annotated_otel_spans(convert):
    summary, recs, _ = convert("otel_genai_otlp.json", to="preference",
                               annotations=str(FIXTURES / "otel_genai_annotations.jsonl"))
    assert len(recs) == 1
    assert recs[0]["chosen"] == [{"role": "assistant", "content": "It is snowing in Oslo."}]
    assert recs[0]["rejected"] == [{"role": "assistant", "content": "It is sunny in Oslo."}]
    assert recs[0]["prompt"][-1]["role"] == "tool"


def test_vercel_ai_sdk_calls_converted_wrappers_and_tool_spans_rejected(convert):
    summary, recs, _ = convert("vercel_ai_spans.json", source_format="otel")
    assert summary["rejected"] == {"a tool execution span, not a model call": 1,
                                   "a wrapper span (its ai.*.doGenerate/doStream call is converted)": 1}
    assert len(recs) == 2
    assert recs[0]["messages"][-1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": {"city": "Rome"}}
    assert recs[1]["messages"][3] == {"role": "tool", "content": '{"sky":"clear"}', "tool_call_id": "call_1"}
    assert recs[1]["messages"][-1] == {"role": "assistant", "content": "Clear skies in Rome."}
    assert recs[0]["tools"][0]["function"]["name"] == "get_weather"


# (file, spans in it, converted) of the real samples
REAL_CASES = [
    ("genai_fixtures/otel_genai_client_span_tool_calls.json", 1, 1),
    ("genai_fixtures/otel_genai_deprecated_client_span_tool_calls.json", 1, 1),
    ("genai_fixtures/otel_genai_tool_execution_span.json", 1, 0),
    ("vercel_v6_spans/all-spans.json", 10, 4),
    ("vercel_v6_spans/ai-generateText-doGenerate.json", 2, 2),
    ("vercel_v6_spans/ai-generateObject-doGenerate.json", 1, 1),
    ("vercel_v6_spans/ai-streamText-doStream.json", 1, 1),
]


@pytest.mark.skipif(not REAL.is_dir(), reason=f"real-world samples not present at {REAL}")
@pytest.mark.parametrize("name,spans,converted", REAL_CASES)
def test_real_samples_lose_nothing_silently(tmp_path, name, spans, converted):
    out = tmp_path / "out.jsonl"
    cfg = config.build(Config, None, {"input": str(REAL / name), "output": str(out), "source_format": "otel"})
    s = run_convert(cfg)
    assert s["converted"] == converted
    assert s["converted"] + sum(s["rejected"].values()) == spans and not s["skipped"]
