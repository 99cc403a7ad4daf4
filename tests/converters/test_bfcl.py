"""bfcl -> task: BFCL questions and possible answers as task records (own BFCL-shaped fixtures),
then the real categories read from the bfcl-eval wheel (slow: fetched once into the cache)."""
import shutil
from pathlib import Path

import orjson
import pytest

from trajtune import bfcl, config, records
from trajtune.converters import registry
from trajtune.converters.convert import run_convert
from trajtune.errors import ConfigError, TrajtuneError, UsageError
from trajtune.scripts.convert import Config

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bfcl"


def read(path):
    p = Path(path)
    return [orjson.loads(line) for line in p.read_bytes().splitlines() if line.strip()] if p.exists() else []


@pytest.fixture
def convert(tmp_path):
    """convert(IN, **options) -> (summary, records, rejects); every record passes THE task check."""

    def run(inp, **options):
        out = tmp_path / f"out-{len(list(tmp_path.iterdir()))}.jsonl"
        inp = str(FIXTURES / inp) if (FIXTURES / str(inp)).is_file() else str(inp)
        cfg = config.build(Config, None, {"input": inp, "output": str(out), "source_format": "bfcl", "to": "task",
                                          **options})
        summary = run_convert(cfg)
        recs = read(out)
        for r in recs:
            assert records.check(r, "task") == [], r["id"]
        return summary, recs, read(summary["rejects"])

    return run


def by_id(recs):
    return {r["id"]: r for r in recs}


# --------------------------------------------------------------------------- mapping

def test_ids_metadata_prompt_and_tools(convert):
    summary, recs, _ = convert("BFCL_v4_simple_python.json")
    assert summary["from"] == "bfcl" and summary["converted"] == 3
    rec = by_id(recs)["bfcl-simple_python-0"]
    assert list(rec) == ["id", "metadata", "tools", "prompt", "expected"]
    assert rec["metadata"] == {"source": "bfcl", "scoring": "bfcl", "bfcl_id": "simple_python_0",
                               "bfcl_category": "simple_python", "category": "simple_python"}
    # the question's messages as they are: no system message added, a given one kept
    assert rec["prompt"] == [{"role": "user", "content": "Plan a scenic car or bike trip from Arden to Brill, "
                                                         "rounded to 2 decimals."}]
    assert [m["role"] for m in by_id(recs)["bfcl-simple_python-1"]["prompt"]] == ["system", "user"]
    # tool names verbatim (dots too); BFCL's Python hint on the description
    fn = rec["tools"][0]["function"]
    assert rec["tools"][0]["type"] == "function" and fn["name"] == "geo.route"
    assert fn["description"] == "Plan a route between two towns. Note that the provided function is in Python 3 syntax."


def test_bfcl_types_become_json_schema_types_nested_too(convert):
    _, recs, _ = convert("BFCL_v4_simple_python.json")
    params = by_id(recs)["bfcl-simple_python-0"]["tools"][0]["function"]["parameters"]
    props = params["properties"]
    assert params["type"] == "object" and params["required"] == ["origin", "destination"]
    assert {k: v.get("type") for k, v in props.items()} == {
        "origin": "string", "destination": "string", "unit": "string", "round_to": "integer", "scenic": "boolean",
        "speed": "number", "note": None, "start": "array", "stops": "array", "options": "object"}
    assert props["start"]["items"] == {"type": "number"} and props["stops"]["items"] == {"type": "string"}
    assert props["options"]["properties"] == {"mode": {"type": "string", "enum": ["car", "bike", "foot"]},
                                              "avoid": {"type": "array", "items": {"type": "string"}}}
    items = by_id(recs)["bfcl-simple_python-2"]["tools"][0]["function"]["parameters"]["properties"]["items"]
    assert items["items"]["type"] == "object" and items["items"]["properties"]["qty"] == {"type": "integer"}


def test_empty_string_marks_optional_and_dicts_expand_to_concrete_values(convert):
    _, recs, _ = convert("BFCL_v4_simple_python.json")
    exp = by_id(recs)["bfcl-simple_python-0"]["expected"]
    assert exp["order"] == "strict" and len(exp["calls"]) == 1
    call = exp["calls"][0]
    assert call["name"] == "geo.route"
    args = call["arguments"]
    assert args["origin"] == ["Arden"] and args["round_to"] == [2] and args["scenic"] == [True]
    assert args["unit"] == ["km", None] and args["speed"] == [50.0, None] and args["note"] == ["any", None]
    assert args["start"] == [[1.5, 2.5], None]  # a list value is one value, not alternatives
    assert args["stops"] == [["Cray"], ["Cray", "Dunmore"], None]
    # a dict of per-key alternatives -> every concrete dict; a key marked "" present or absent
    assert args["options"] == [{"mode": "car", "avoid": ["tolls"]}, {"mode": "car"},
                               {"mode": "bike", "avoid": ["tolls"]}, {"mode": "bike"}, None]


def test_a_list_of_dicts_expands_element_by_element(convert):
    _, recs, _ = convert("BFCL_v4_simple_python.json")
    items = by_id(recs)["bfcl-simple_python-2"]["expected"]["calls"][0]["arguments"]["items"]
    assert items == [[{"sku": "A1", "qty": 1}, {"sku": "B2", "qty": 1}], [{"sku": "A1", "qty": 1}, {"sku": "B2"}],
                     [{"sku": "A1", "qty": 2}, {"sku": "B2", "qty": 1}], [{"sku": "A1", "qty": 2}, {"sku": "B2"}]]


def test_a_required_argument_is_never_optional_and_undeclared_optional_ones_are_left_out(convert):
    _, recs, _ = convert("BFCL_v4_simple_python.json")
    args = by_id(recs)["bfcl-simple_python-1"]["expected"]["calls"][0]["arguments"]
    assert args["days"] == [3]  # required: "" dropped, not null
    assert args["label"] == [""]  # required and "" its only value: kept as the string
    assert "verbose" not in args  # optional, and the tool does not declare it: BFCL fails a call that sends it
    assert args == {"town": ["Corvale"], "days": [3], "label": [""]}


def test_parallel_categories_match_calls_in_any_order(convert):
    summary, recs, rejects = convert("BFCL_v4_parallel.json")
    assert summary["converted"] == 2 and rejects == []
    first = by_id(recs)["bfcl-parallel-0"]
    assert first["expected"]["order"] == "any"
    assert first["expected"]["calls"] == [
        {"name": "clock.alarm", "arguments": {"time": ["06:00", "6:00"], "label": [None]}},
        {"name": "clock.alarm", "arguments": {"time": ["07:30"], "label": ["wake", None]}}]


def test_irrelevance_expects_no_call_and_needs_no_answers(convert):
    summary, recs, _ = convert("BFCL_v4_irrelevance.json")
    assert summary["converted"] == 2 and summary["rejected"] == {}
    assert [r["expected"] for r in recs] == [{"calls": []}, {"calls": []}]
    assert [r["id"] for r in recs] == ["bfcl-irrelevance-0", "bfcl-irrelevance-1"]
    assert len(by_id(recs)["bfcl-irrelevance-1"]["tools"]) == 2


# --------------------------------------------------------------------------- rejects

def test_every_row_that_cannot_be_represented_is_rejected_with_its_reason(convert):
    summary, _, rejects = convert("BFCL_v4_simple_python.json")
    assert [(r["line"], r["reason"]) for r in rejects] == [
        (4, "too many acceptable values"),
        (5, "answer calls a tool not offered"),
        (6, "no possible answer for this id"),
        (7, "answer argument not in the tool schema"),
        (8, "multi-turn question not supported"),
        (9, "answer omits a required argument"),
        (10, "answer argument has no acceptable value"),
        (11, "invalid tool name"),
        (12, "not valid JSON"),
        (13, "fails check arguments_schema"),  # "yes" for a boolean: fails the tool's own schema
    ]
    assert sum(summary["rejected"].values()) == 10
    detail = {r["reason"]: r.get("detail", "") for r in rejects}
    assert detail["too many acceptable values"] == "tune_synth.knobs: 512 concrete values (at most 256)"
    assert detail["answer argument not in the tool schema"] == "lamp_set.brightness"
    assert detail["answer omits a required argument"] == "lamp_set: on"
    assert rejects[0]["input"]["id"] == "simple_python_3"


def test_multi_turn_categories_are_rejected_row_by_row(convert):
    summary, recs, rejects = convert("BFCL_v4_multi_turn_base.json")
    assert recs == [] and summary["rejected"] == {"multi-turn category not supported": 2}
    assert [r["line"] for r in rejects] == [1, 2]


def test_categories_from_ids_and_answers_given_with_the_option(convert):
    summary, recs, rejects = convert("mixed.jsonl", answers=str(FIXTURES / "mixed_answers.jsonl"))
    assert sorted(by_id(recs)) == ["bfcl-live_irrelevance-3-1-0", "bfcl-multiple-4", "bfcl-parallel_multiple-0"]
    assert by_id(recs)["bfcl-parallel_multiple-0"]["expected"]["order"] == "any"
    assert by_id(recs)["bfcl-multiple-4"]["expected"]["order"] == "strict"
    assert by_id(recs)["bfcl-multiple-4"]["metadata"]["bfcl_category"] == "multiple"
    assert by_id(recs)["bfcl-live_irrelevance-3-1-0"]["expected"] == {"calls": []}
    assert summary["rejected"] == {"language-specific category not supported": 1, "missing id": 1,
                                   "multi-turn category not supported": 1, "not a possible answer": 1,
                                   "relevance category not supported": 1}
    bad_answer = next(r for r in rejects if r["reason"] == "not a possible answer")
    assert bad_answer["source"].endswith("mixed_answers.jsonl") and bad_answer["line"] == 3


def test_answers_in_a_sibling_folder_or_none_at_all(convert, tmp_path):
    data, answers = tmp_path / "data", tmp_path / "possible_answer"
    data.mkdir()
    answers.mkdir()
    shutil.copy(FIXTURES / "BFCL_v4_parallel.json", data)
    shutil.copy(FIXTURES / "possible_answer" / "BFCL_v4_parallel.json", answers)
    summary, recs, _ = convert(data / "BFCL_v4_parallel.json")
    assert summary["converted"] == 2
    # no answers anywhere, not a BFCL category: every row rejected (never a download)
    lone = tmp_path / "questions.jsonl"
    lone.write_text('{"id": "custom_1", "question": [[{"role": "user", "content": "Lamp on?"}]], '
                    '"function": [{"name": "lamp_set", "parameters": {"type": "dict", "properties": {}}}]}\n')
    summary, recs, rejects = convert(lone)
    assert recs == [] and summary["rejected"] == {"no possible answer file": 1}
    assert "--answers" in rejects[0]["detail"]


def test_a_changed_answers_file_is_converted_again_and_never_overwritten(tmp_path):
    data = tmp_path / "d"
    shutil.copytree(FIXTURES, data)
    answers = data / "possible_answer" / "BFCL_v4_parallel.json"
    opts = {"input": str(data / "BFCL_v4_parallel.json"), "output": str(tmp_path / "p.jsonl"),
            "source_format": "bfcl", "to": "task"}
    assert run_convert(config.build(Config, None, opts))["up_to_date"] is False
    assert run_convert(config.build(Config, None, opts))["up_to_date"] is True
    answers.write_text(answers.read_text().splitlines()[0] + "\n")  # one answer left
    again = run_convert(config.build(Config, None, opts))
    assert again["up_to_date"] is False and again["rejected"] == {"no possible answer for this id": 1}
    with pytest.raises(UsageError, match="refusing to overwrite an input"):
        run_convert(config.build(Config, None, {**opts, "output": str(answers)}))


def test_a_missing_answers_file_is_a_usage_error(convert, tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        convert("BFCL_v4_parallel.json", answers=str(tmp_path / "nope.jsonl"))


def test_detected_from_question_and_function(convert):
    row = read(FIXTURES / "BFCL_v4_parallel.json")[0]
    assert registry.detect([row], "x") == "bfcl"
    summary, recs, _ = convert("BFCL_v4_parallel.json", source_format="auto")
    assert summary["from"] == "bfcl" and len(recs) == 2


def test_bfcl_gives_task_records_only(convert):
    with pytest.raises(UsageError, match="gives task records"):
        convert("BFCL_v4_parallel.json", to="sft")


def test_an_unknown_category_name_is_a_usage_error_naming_the_closest(convert):
    with pytest.raises(UsageError, match="unknown BFCL category") as exc:
        convert("simple_pyton")
    assert "simple_python" in exc.value.hint
    with pytest.raises(UsageError, match="unknown BFCL category"):
        convert("bfcl:nope", source_format="auto")


def test_offline_without_the_wheel_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("TRAJTUNE_CACHE", str(tmp_path))
    monkeypatch.setenv("TRAJTUNE_OFFLINE", "1")
    with pytest.raises(ConfigError, match="TRAJTUNE_OFFLINE"):
        bfcl.wheel_path()


# --------------------------------------------------------------------------- the real data (slow)

@pytest.fixture(scope="module")
def wheel():
    try:
        return bfcl.wheel_path()  # fetched into $TRAJTUNE_CACHE/wheels once, through trajtune.bfcl
    except TrajtuneError as exc:  # pragma: no cover - depends on network to PyPI
        pytest.skip(f"bfcl-eval wheel unavailable: {exc}")


@pytest.mark.slow
def test_category_files_read_from_the_wheel(wheel):
    questions, answers = bfcl.category_files("simple_python")
    assert len(questions) == len(answers) >= 100
    assert orjson.loads(questions[0])["id"] == orjson.loads(answers[0])["id"]
    assert bfcl.category_files("irrelevance")[1] == []
    path = bfcl.category_path("parallel")
    assert path.name == "BFCL_v4_parallel.json" and (path.parent / "possible_answer" / path.name).is_file()


@pytest.mark.slow
@pytest.mark.parametrize("category", ["simple_python", "multiple", "parallel", "parallel_multiple", "irrelevance"])
def test_every_row_of_a_real_category_converts(wheel, convert, category):
    questions, _ = bfcl.category_files(category)
    summary, recs, rejects = convert(category)
    rejected = sum(summary["rejected"].values())
    print(f"{category}: {summary['converted']} converted, {rejected} rejected {summary['rejected']}")
    assert summary["converted"] + rejected == len(questions)
    assert summary["converted"] >= 0.95 * len(questions)
    assert all(r["metadata"]["bfcl_category"] == category and r["metadata"]["scoring"] == "bfcl" for r in recs)
    assert len({r["id"] for r in recs}) == len(recs)
    if category == "irrelevance":
        assert all(r["expected"] == {"calls": []} for r in recs)
    else:
        want = "any" if category.startswith("parallel") else "strict"
        assert all(r["expected"]["order"] == want and r["expected"]["calls"] for r in recs)


@pytest.mark.slow
def test_category_name_forms_the_rerun_and_the_output_guard(wheel, convert, tmp_path):
    a, recs_a, _ = convert("bfcl:parallel", source_format="auto")
    b, recs_b, _ = convert("parallel")
    assert a["from"] == b["from"] == "bfcl" and recs_a == recs_b and len(recs_a) >= 190
    # an unchanged run is skipped; its saved config names the category, not a temp file
    out = tmp_path / "p.jsonl"
    cfg = config.build(Config, None, {"input": "parallel", "output": str(out), "source_format": "bfcl", "to": "task"})
    first = run_convert(cfg)
    again = run_convert(cfg)
    assert again["up_to_date"] and again["converted"] == first["converted"]
    assert "input: parallel" in (tmp_path / "p.convert.yaml").read_text()
    # the category's cached file is an input: never an output
    cached = str(bfcl.category_path("parallel"))
    cfg = config.build(Config, None, {"input": "parallel", "output": cached, "source_format": "bfcl", "to": "task"})
    with pytest.raises(UsageError, match="refusing to overwrite an input"):
        run_convert(cfg)


@pytest.mark.slow
def test_answers_come_from_the_wheel_when_none_is_beside_the_file(wheel, convert, tmp_path):
    questions, _ = bfcl.category_files("multiple")
    lone = tmp_path / "BFCL_v4_multiple.json"
    lone.write_text("\n".join(questions) + "\n")
    from_file, recs_file, _ = convert(lone)
    from_name, recs_name, _ = convert("multiple")
    assert from_file["converted"] == from_name["converted"] >= 190 and recs_file == recs_name
