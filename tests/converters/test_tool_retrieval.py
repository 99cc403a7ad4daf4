"""Tool-retrieval triplets from sft and task records (`convert --to triplet`), and tool catalogs in
the forms other generators write (OpenAI tools JSON, our YAML)."""
import json

import pytest

from trajtune.converters.tool_retrieval import load_tools, tool_document, triplets
from trajtune.errors import DataError


def _tool(name, desc):
    return {"type": "function", "function": {"name": name, "description": desc,
                                             "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


TOOLS = [_tool("get_weather", "Current weather for a city."), _tool("get_forecast", "Weather forecast for a city."),
         _tool("read_file", "Read a text file.")]


def test_each_call_of_an_sft_record_gives_its_request_the_tool_and_the_lookalike():
    rec = {"id": "s1", "metadata": {"review": "approved"}, "tools": TOOLS, "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "assistant", "content": "Sunny."}]}
    (t,) = triplets(rec)
    assert t["anchor"] == "Weather in Paris?"
    assert t["positive"] == "get_weather: Current weather for a city. (parameters: city)"
    assert t["negative"].startswith("get_forecast:")  # the look-alike, not the unrelated read_file
    assert t["metadata"]["review"] == "approved" and t["metadata"]["from_record"] == "s1"


def test_task_records_and_the_convert_command(tmp_path):
    from trajtune import config
    from trajtune.converters.convert import run_convert
    from trajtune.scripts.convert import Config

    task = {"id": "t1", "metadata": {}, "tools": TOOLS, "prompt": [{"role": "user", "content": "Read notes.md"}],
            "expected": {"calls": [{"name": "read_file", "arguments": {}}], "order": "strict"}}
    nocall = {**task, "id": "t2", "expected": {"calls": [], "order": "strict"}}
    src = tmp_path / "tasks.jsonl"
    src.write_text(json.dumps(task) + "\n" + json.dumps(nocall) + "\n")
    out = tmp_path / "trip.jsonl"
    s = run_convert(config.build(Config, None, {"input": str(src), "output": str(out), "to": "triplet"}))
    assert s["converted"] == 1 and s["rejected"] == {"no tool call": 1}
    (t,) = [json.loads(x) for x in out.read_text().splitlines()]
    assert t["anchor"] == "Read notes.md" and t["positive"].startswith("read_file:")


def test_catalogs_openai_json_and_yaml(tmp_path, repo_root):
    f = tmp_path / "tools.json"
    f.write_text(json.dumps(TOOLS))
    assert [tool_document(t) for t in load_tools(f)][0] == "get_weather: Current weather for a city. (parameters: city)"
    yaml_tools = load_tools(repo_root / "data" / "tools")
    assert len(yaml_tools) >= 10 and all(t["function"]["description"] for t in yaml_tools)
    f.write_text(json.dumps(TOOLS + TOOLS[:1]))
    with pytest.raises(DataError, match="duplicate tool name"):
        load_tools(f)


def test_negatives_from_a_catalog_are_the_called_tools_family_sibling_never_a_held_out_tool(tmp_path):
    """A record offering only the tool it calls gives no triplet by itself; with --negatives-from
    the negative is the closest tool of the same family (even when another family's tool shares
    more words); never a same-sense twin (the same function in another naming style) nor a tool
    held out for evaluation."""
    from trajtune import config
    from trajtune.converters.convert import run_convert
    from trajtune.scripts.convert import Config

    def synth(name, desc, family, split="train", sense=None):
        return {**_tool(name, desc), "x-trajtune": {"family": family, "split": split, "sense": sense or name}}

    catalog = [synth("getCityWeather", "Current weather for a city.", "weather.now", sense="weather.now:base"),
               synth("get_city_weather", "Current weather for a city.", "weather.now", sense="weather.now:base"),  # a twin
               synth("weather.current", "Weather right now in a city.", "weather.now"),
               synth("get_city_weather_now", "Current weather for a city now.", "weather.now", split="eval"),
               synth("get_weather_forecast", "Weather forecast for a city.", "weather.forecast"),
               synth("read_file", "Read a text file.", "files.read")]
    cat = tmp_path / "tools.json"
    cat.write_text(json.dumps(catalog))
    called = catalog[0]
    rec = {"id": "s1", "metadata": {}, "tools": [{k: called[k] for k in ("type", "function")}], "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "getCityWeather", "arguments": {"city": "Paris"}}}]}]}
    src = tmp_path / "sft.jsonl"
    src.write_text(json.dumps(rec) + "\n")
    out = tmp_path / "trip.jsonl"
    s = run_convert(config.build(Config, None, {"input": str(src), "output": str(out), "to": "triplet"}))
    assert s["converted"] == 0 and s["rejected"] == {"no look-alike tool offered": 1}
    s = run_convert(config.build(Config, None, {"input": str(src), "output": str(out), "to": "triplet",
                                               "negatives_from": str(cat), "force": True}))
    (t,) = [json.loads(x) for x in out.read_text().splitlines()]
    assert t["positive"].startswith("getCityWeather:")
    assert t["negative"].startswith("weather.current:")  # the sibling: not the twin, the held-out one nor the forecast
    assert t["metadata"]["negative_tool"] == "weather.current"
    # a changed catalog is a changed input: the re-run converts again instead of saying up to date
    cat.write_text(json.dumps(catalog[:2] + catalog[3:]))
    s = run_convert(config.build(Config, None, {"input": str(src), "output": str(out), "to": "triplet",
                                               "negatives_from": str(cat)}))
    assert not s["up_to_date"]
    (t,) = [json.loads(x) for x in out.read_text().splitlines()]
    assert t["negative"].startswith("get_weather_forecast:")  # no sibling left: the most similar other tool
