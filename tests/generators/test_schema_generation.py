"""Generation from any tool catalog (no templates): OpenAI tools, MCP, OpenAPI; API synthesis; shapes; gates.

Everything runs through the real command line (``trajtune generate ...``) and the records are
checked with ``trajtune validate``, as a user would.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tests.helpers.cli import run as cli
from trajtune.generators import phrasing, shapes
from trajtune.generators.catalog import load_catalog

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PETSTORE = FIXTURES / "openapi" / "petstore.yaml"

OPENAI_TOOLS = [
    {"type": "function", "function": {
        "name": "get_tide_times", "description": "Get the high and low tide times for a harbour on a date.",
        "parameters": {"type": "object", "properties": {
            "harbour": {"type": "string", "description": "Name of the harbour"},
            "date": {"type": "string", "format": "date", "description": "The day, as YYYY-MM-DD"},
            "units": {"type": "string", "enum": ["metric", "imperial"], "default": "metric"}},
            "required": ["harbour", "date"]}}},
    {"type": "function", "function": {
        "name": "get_tide_height", "description": "Get the predicted tide height at a harbour at a time.",
        "parameters": {"type": "object", "properties": {
            "harbour": {"type": "string", "description": "Name of the harbour"},
            "time": {"type": "string", "description": "Time of day, as HH:MM"}},
            "required": ["harbour", "time"]}}},
    {"type": "function", "function": {
        "name": "calculateTankVolume", "description": "Calculates the volume of a cylindrical tank.",
        "parameters": {"type": "object", "properties": {
            "radius": {"type": "number", "description": "Radius, in meters"},
            "height": {"type": "number", "description": "Height, in meters"},
            "full": {"type": "boolean", "description": "Whether the tank is full"}},
            "required": ["radius", "height"]}}},
    {"type": "function", "function": {
        "name": "plan.add_stops", "description": "Add stops to a delivery route.",
        "parameters": {"type": "object", "properties": {
            "route_id": {"type": "string", "description": "Route identifier"},
            "stops": {"type": "array", "items": {"type": "string"}, "description": "Addresses of the stops"},
            "priority": {"type": "integer", "minimum": 1, "maximum": 5}},
            "required": ["route_id", "stops"]}}},
    {"type": "function", "function": {
        "name": "send_sms", "description": "Send a text message to a phone number.",
        "parameters": {"type": "object", "properties": {
            "phone": {"type": "string"}, "message": {"type": "string", "description": "The message text"}},
            "required": ["phone", "message"]}}},
    {"type": "function", "function": {
        "name": "convert_temperature", "description": "Convert a temperature between scales.",
        "parameters": {"type": "object", "properties": {
            "value": {"type": "number"}, "from_scale": {"type": "string", "enum": ["celsius", "fahrenheit", "kelvin"]},
            "to_scale": {"type": "string", "enum": ["celsius", "fahrenheit", "kelvin"]}},
            "required": ["value", "from_scale", "to_scale"]}}},
]

MCP_RESULT = {"jsonrpc": "2.0", "id": 1, "result": {"tools": [
    {"name": "create_ticket", "description": "Create a support ticket.",
     "inputSchema": {"type": "object", "properties": {"title": {"type": "string"},
                                                      "severity": {"type": "string", "enum": ["low", "high"]}},
                     "required": ["title", "severity"]},
     "outputSchema": {"type": "object", "properties": {"ticket_id": {"type": "string"}}}},
    {"name": "assign_ticket", "description": "Assign a support ticket to an engineer.",
     "inputSchema": {"type": "object", "properties": {"ticket_id": {"type": "string"}, "engineer": {"type": "string"}},
                     "required": ["ticket_id", "engineer"]}},
    {"name": "close_ticket", "description": "Close a support ticket with a resolution note.",
     "inputSchema": {"type": "object", "properties": {"ticket_id": {"type": "string"}, "note": {"type": "string"}},
                     "required": ["ticket_id"]}},
]}}


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _user(rec: dict) -> str:
    msgs = rec.get("messages") or rec.get("prompt")
    return next(m["content"] for m in msgs if m["role"] == "user")


@pytest.fixture()
def openai_catalog(tmp_path: Path) -> Path:
    p = tmp_path / "tools.json"
    p.write_text(json.dumps(OPENAI_TOOLS))
    return p


def test_openai_tools_catalog_gives_valid_records_of_every_shape_with_every_value_stated(tmp_path, openai_catalog):
    out = tmp_path / "train.jsonl"
    r = cli("generate", "trajectories", "--catalog", str(openai_catalog), "--count", "150", "--seed", "2",
            "-o", str(out), "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["total"] == 150
    # no templates apply to this catalog: every record comes from the grammar, in every shape it allows
    assert set(s["by_shape"]) >= {"single", "choose", "parallel", "parallel_multi", "irrelevance", "missing_info", "typed"}
    assert s["gates"]["passed"] == 150 and s["gates"]["format"] == 0
    assert sum(s["gates"].values()) == s["candidates"]  # every candidate drawn is counted once
    assert json.loads((tmp_path / "train.gates.json").read_text())["gates"] == s["gates"]
    recs = _read(out)
    names = {t["function"]["name"] for t in OPENAI_TOOLS}
    for rec in recs:
        assert rec["metadata"]["template_id"] == "schema"
        user = _user(rec)
        offered = {t["function"]["name"] for t in rec["tools"]}
        assert offered <= names
        calls = [c["function"] for m in rec["messages"] for c in m.get("tool_calls") or []]
        obs = " ".join(m["content"] for m in rec["messages"] if m["role"] == "tool")
        for c in calls:
            assert c["name"] in offered
            for k, v in c["arguments"].items():  # the semantic gate's promise, checked independently
                assert phrasing.stated(v, user + " " + obs, k, ""), (user, k, v)
        if rec["metadata"]["shape"] in ("irrelevance", "missing_info"):
            assert calls == []
        if rec["metadata"]["shape"] == "parallel":
            first = next(m for m in rec["messages"] if m.get("tool_calls"))
            assert len(first["tool_calls"]) >= 2
    # type fidelity: numbers stay numbers, lists stay lists
    vols = [c["function"]["arguments"] for rec in recs for m in rec["messages"] for c in m.get("tool_calls") or []
            if c["function"]["name"] == "calculateTankVolume"]
    assert vols and all(isinstance(a["radius"], float) for a in vols)
    stops = [c["function"]["arguments"]["stops"] for rec in recs for m in rec["messages"] for c in m.get("tool_calls") or []
             if c["function"]["name"] == "plan.add_stops"]
    assert stops and all(isinstance(x, list) and x for x in stops)
    # defaults are left out unless the user states another value
    tides = [c["function"]["arguments"] for rec in recs for m in rec["messages"] for c in m.get("tool_calls") or []
             if c["function"]["name"] == "get_tide_times"]
    assert all(a.get("units") != "metric" for a in tides)
    r = cli("validate", str(out), "--strict")
    assert r.exit_code == 0, r.output


def test_a_rerun_appends_only_what_is_missing(tmp_path, openai_catalog):
    out = tmp_path / "t.jsonl"
    assert cli("generate", "tasks", "--catalog", str(openai_catalog), "-n", "30", "-o", str(out)).exit_code == 0
    first = out.read_text()
    assert cli("generate", "tasks", "--catalog", str(openai_catalog), "-n", "60", "-o", str(out)).exit_code == 0
    text = out.read_text()
    assert text.startswith(first)
    ids = [r["id"] for r in _read(out)]
    assert len(ids) == 60 == len(set(ids))


def test_openapi_document_operations_become_tools_and_tasks(tmp_path):
    cat = load_catalog(str(PETSTORE))
    # every operation of the real Petstore document, named by operationId; body properties are parameters
    assert {"addPet", "findPetsByStatus", "getPetById", "placeOrder", "loginUser", "deleteUser"} <= set(cat.tools)
    add = cat["addPet"]
    assert {"name", "photoUrls"} <= set(add.parameters["required"])
    assert add.parameters["properties"]["category"]["type"] == "object"  # $ref resolved
    assert cat["getPetById"].parameters["required"] == ["petId"]
    assert "api_key" in cat["deletePet"].parameters["properties"]  # a header parameter
    assert cat["findPetsByStatus"].parameters["properties"]["status"]["enum"] == ["available", "pending", "sold"]
    out = tmp_path / "tasks.jsonl"
    r = cli("generate", "tasks", "--catalog", str(PETSTORE), "-n", "40", "--seed", "3", "-o", str(out), "--json")
    assert r.exit_code == 0, r.output
    recs = _read(out)
    assert len(recs) == 40
    assert any(rec["expected"]["calls"] for rec in recs) and any(not rec["expected"]["calls"] for rec in recs)
    assert cli("validate", str(out), "--strict").exit_code == 0
    # the simulator shapes results by the operation's response schema
    obs = json.loads(cat["getPetById"].simulate({"petId": 7}))
    assert {"name", "photoUrls", "status"} <= set(obs)


def test_mcp_tools_list_result_and_multi_step_through_a_declared_output(tmp_path):
    p = tmp_path / "mcp.json"
    p.write_text(json.dumps(MCP_RESULT))
    out = tmp_path / "t.jsonl"
    r = cli("generate", "trajectories", "--catalog", str(p), "-n", "60", "--shapes", "multi_step=5", "-o", str(out),
            "--json")
    assert r.exit_code == 0, r.output
    recs = [x for x in _read(out) if x["metadata"]["shape"] == "multi_step"]
    assert recs
    for rec in recs:
        msgs = rec["messages"]
        calls = [m for m in msgs if m.get("tool_calls")]
        assert [c["tool_calls"][0]["function"]["name"] for c in calls][0] == "create_ticket"
        produced = json.loads(next(m["content"] for m in msgs if m["role"] == "tool"))["ticket_id"]
        assert calls[1]["tool_calls"][0]["function"]["arguments"]["ticket_id"] == produced
        assert produced not in _user(rec)  # it comes from the observation, not the request
    assert cli("validate", str(out), "--strict").exit_code == 0


def test_synthesize_many_distinct_tools_deterministically(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    r = cli("generate", "tools", "--synthesize", "1000", "--seed", "3", "-o", str(a), "--json")
    assert r.exit_code == 0, r.output
    assert cli("generate", "tools", "--synthesize", "1000", "--seed", "3", "-o", str(b)).exit_code == 0
    assert a.read_bytes() == b.read_bytes()
    s = json.loads(r.stdout)
    assert s["tools"] == 1000 and s["domains"] >= 30
    assert set(s["styles"]) == {"snake", "camel", "dotted", "namespaced"}
    assert {"string", "integer", "number", "boolean", "enum", "array", "optional with default"} <= set(s["parameter_types"])
    tools = json.loads(a.read_text())
    names = [t["function"]["name"] for t in tools]
    assert len(set(names)) == 1000
    schemas = {json.dumps(t["function"], sort_keys=True) for t in tools}
    assert len(schemas) == 1000
    fams: dict[str, set] = {}
    for t in tools:
        fams.setdefault(t["x-trajtune"]["family"], set()).add(t["x-trajtune"]["sense"])
    assert sum(1 for v in fams.values() if len(v) >= 2) >= 150  # families of look-alikes
    other = json.loads(cli("generate", "tools", "--synthesize", "50", "--seed", "4", "-o", str(tmp_path / "c.json"),
                           "--json").stdout)
    assert other["tools"] == 50
    assert json.loads((tmp_path / "c.json").read_text()) != tools[:50]  # another seed, other tools
    assert cli("generate", "tools", "--check", "--catalog", str(a)).exit_code == 0


def test_synthetic_descriptions_conjugate_their_verbs():
    from trajtune.generators.synth import third_person

    assert [third_person(v) for v in ("get", "apply", "compress", "publish", "search", "fix", "query", "play", "go")] == [
        "Gets", "Applies", "Compresses", "Publishes", "Searches", "Fixes", "Queries", "Plays", "Goes"]


def test_held_out_tool_families_never_reach_training_and_make_the_eval_tasks(tmp_path):
    cat = tmp_path / "synth.json"
    assert cli("generate", "tools", "--synthesize", "400", "--seed", "1", "-o", str(cat)).exit_code == 0
    tools = json.loads(cat.read_text())
    held = {t["function"]["name"] for t in tools if t["x-trajtune"]["split"] == "eval"}
    assert held
    train, tasks = tmp_path / "train.jsonl", tmp_path / "tasks.jsonl"
    assert cli("generate", "trajectories", "--catalog", str(cat), "-n", "200", "-o", str(train)).exit_code == 0
    assert cli("generate", "preferences", "--catalog", str(cat), "-n", "60", "-o", str(tmp_path / "p.jsonl")).exit_code == 0
    for rec in _read(train) + _read(tmp_path / "p.jsonl"):
        assert not {t["function"]["name"] for t in rec["tools"]} & held  # not even as a distractor
    assert cli("generate", "tasks", "--split", "eval", "--catalog", str(cat), "-n", "60", "-o", str(tasks)).exit_code == 0
    recs = _read(tasks)
    targets = [r for r in recs if r["expected"]["calls"]]
    assert targets and all(r["metadata"]["split_reason"] == "held_out_tool" for r in recs)
    assert all(c["name"] in held for r in targets for c in r["expected"]["calls"])
    # the eval phrasings are the held-out frames: no request of the tasks repeats a training one
    assert not {_user(r) for r in recs} & {_user(r) for r in _read(train)}
    assert cli("validate", str(train), "--against", str(tasks)).exit_code == 0


def test_tools_check_reports_a_tool_the_grammar_cannot_phrase(tmp_path):
    p = tmp_path / "tools.json"
    p.write_text(json.dumps([{"name": "x9", "description": "?", "parameters": {
        "type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}},
        OPENAI_TOOLS[0]]))
    r = cli("generate", "tools", "--check", "--catalog", str(p))
    assert r.exit_code == 1
    assert "x9" in r.output and "cannot phrase" in r.output
    assert "get_tide_times" not in r.output


def test_semantic_gate_refuses_a_value_the_request_does_not_state(tmp_path, openai_catalog):
    cat = load_catalog(str(openai_catalog))
    engine = shapes.Engine(cat, split="train", shares=dict(shapes.DEFAULT_SHARES, single=100.0))
    rng = random.Random(5)
    ep = None
    while ep is None or not ep.turns or not ep.turns[0][0]["arguments"]:
        ep, _ = engine.episode(rng)
    assert shapes.semantic_problem(engine, ep) is None
    call = ep.turns[0][0]
    key = next(iter(call["arguments"]))
    call["arguments"][key] = "a value nobody said" if isinstance(call["arguments"][key], str) else 123456789
    assert "not stated" in shapes.semantic_problem(engine, ep)
    call["name"] = "not_offered"
    assert "not offered" in shapes.semantic_problem(engine, ep)


def test_shapes_option_sets_the_mix_and_rejects_unknown_shapes(tmp_path, openai_catalog):
    out = tmp_path / "o.jsonl"
    r = cli("generate", "trajectories", "--catalog", str(openai_catalog), "-n", "40", "--shapes",
            "single=0,choose=0,parallel=1,parallel_multi=0,multi_step=0,irrelevance=0,missing_info=0,typed=0",
            "-o", str(out), "--json")
    assert r.exit_code == 0, r.output
    assert set(json.loads(r.stdout)["by_shape"]) == {"parallel"}
    r = cli("generate", "trajectories", "--catalog", str(openai_catalog), "-n", "4", "--shapes", "nonsense=1",
            "-o", str(tmp_path / "x.jsonl"))
    assert r.exit_code == 2 and "unknown shape" in r.output


QUIRKY_OPENAPI = """\
openapi: 3.0.3
info: {title: quirks, version: "1"}
paths:
  /readings:
    get:
      operationId: listReadings
      summary: List the sensor readings of a station.
      parameters:
        - {name: station, in: query, required: true, schema: {type: string}}
        - {name: min_value, in: query, schema: {type: number, minimum: 0, exclusiveMinimum: true}}
        - {name: since, in: query, schema: {type: string, format: date, default: 2024-01-01}}
      responses:
        "200": {description: ok, content: {application/json: {schema: {$ref: "#/components/schemas/Page"}}}}
    post:
      operationId: listReadings
      summary: Record a sensor reading.
      requestBody:
        required: true
        content:
          application/json:
            schema:
              allOf:
                - {$ref: "#/components/schemas/Reading"}
                - {type: object, properties: {example: {type: string, description: "A note"}}, required: [example]}
      responses: {"201": {description: created}}
  /broken:
    get:
      operationId: brokenOne
      summary: Get a broken thing.
      parameters:
        - {name: id, in: query, schema: {type: intger}}
components:
  schemas:
    Reading:
      type: object
      required: [station, value]
      properties:
        station: {type: string, required: true}
        value: {type: number}
        next: {$ref: "#/components/schemas/Reading"}
    Page:
      type: object
      properties:
        items: {type: array, items: {$ref: "#/components/schemas/Reading"}}
"""


def test_openapi_3_0_quirks_load_and_one_bad_operation_is_left_out_not_fatal(tmp_path):
    p = tmp_path / "api.yaml"
    p.write_text(QUIRKY_OPENAPI)
    cat = load_catalog(str(p))
    assert set(cat.tools) == {"listReadings", "listReadings_2"}  # duplicate operationIds made unique
    get = cat["listReadings"].parameters
    assert get["required"] == ["station"]
    assert get["properties"]["min_value"]["exclusiveMinimum"] == 0 and "minimum" not in get["properties"]["min_value"]
    assert get["properties"]["since"]["default"] == "2024-01-01"  # a YAML date, as text
    post = cat["listReadings_2"].parameters
    assert {"station", "value", "example"} <= set(post["properties"])  # allOf merged; a property named example kept
    assert set(post["required"]) == {"station", "value", "example"}
    assert "required" not in post["properties"]["station"]  # `required: true` inside a property dropped
    assert [msg for _, msg in cat.skipped] and "brokenOne" in cat.skipped[0][1]
    r = cli("generate", "tools", "--check", "--catalog", str(p))
    assert r.exit_code == 1 and "brokenOne" in r.output  # --check still names it
    out = tmp_path / "t.jsonl"
    r = cli("generate", "trajectories", "--catalog", str(p), "-n", "20", "-o", str(out))
    assert r.exit_code == 0, r.output
    assert "brokenOne" in r.output and "left out" in r.output
    assert cli("validate", str(out), "--strict").exit_code == 0


def test_a_malformed_openapi_document_is_one_error_line(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"openapi": "3.1.0", "paths": [1, 2]}))
    r = cli("generate", "tools", "--check", "--catalog", str(p))
    assert r.exit_code == 1 and "Traceback" not in r.output
    p.write_text(json.dumps({"openapi": "3.1.0", "paths": {"/x": {"get": {"operationId": 7, "responses": [1],
                                                                          "parameters": [{"name": "q", "in": "query", "schema": "str"}]}}}}))
    r = cli("generate", "tools", "--check", "--catalog", str(p))
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output


def test_check_reports_a_tool_whose_sampled_values_fail_its_own_schema(tmp_path):
    """A string with a ``pattern`` (the sampler does not read patterns): the format gate would drop
    every record calling the tool, silently; --check names the tool, and only that one."""
    def tool(name, desc, prop):
        return {"type": "function", "function": {"name": name, "description": desc, "parameters": {
            "type": "object", "properties": {"x": prop}, "required": ["x"]}}}

    good = [tool("get_forecast", "Get the weather forecast for a city.", {"type": "string", "description": "city"})]
    p = tmp_path / "tools.json"
    p.write_text(json.dumps(good))
    assert cli("generate", "tools", "--check", "--catalog", str(p)).exit_code == 0
    p.write_text(json.dumps(good + [tool("tag_files", "Tag the given files.", {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"})]))
    r = cli("generate", "tools", "--check", "--catalog", str(p), "--json")
    assert r.exit_code == 1
    msgs = [x["message"] for x in json.loads(r.stdout)["problems"]]
    assert len(msgs) == 1 and "'tag_files'" in msgs[0] and "fail its own schema" in msgs[0]  # the good tool is not blamed


@pytest.mark.parametrize("name,schema", [
    ("percent", {"type": "number", "minimum": 200}),  # the name's rule (0-100) must not cross the schema's minimum
    ("year", {"type": "integer", "maximum": 1900}),
    ("limit", {"type": "integer", "minimum": 0, "maximum": 3}),
    ("x", {"type": "integer", "minimum": 7, "multipleOf": 5}),  # a multiple below the minimum was possible
    ("rate", {"type": "number", "minimum": 0, "maximum": 0.95}),  # rounding past the maximum
    ("x", {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}),
    ("x", {"type": "integer", "minimum": 0, "exclusiveMinimum": True, "maximum": 3, "exclusiveMaximum": True}),  # OpenAPI 3.0
    ("price", {"type": "number", "minimum": 0, "multipleOf": 0.01}),
    ("x", {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1.5, "multipleOf": 0.5}),  # 0.5 or 1.0 only
    ("tags", {"type": "array", "items": {"type": "string"}, "maxItems": 1}),  # 2+ items were asked for
    ("lat", {"type": "number", "minimum": 10}),
])
def test_sampled_values_meet_the_schema_bounds_whatever_the_parameter_name_suggests(name, schema):
    from trajtune.generators.values import sample
    from trajtune.jsonschemas import arg_schema

    modern = dict(schema)  # draft 4's boolean exclusive bounds, in the 2020-12 form the checker reads
    for b, x in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if modern.get(x) is True:
            modern[x] = modern.pop(b)
    check = arg_schema(modern)
    assert check.schema_error is None
    got = [sample(name, schema, random.Random(seed)) for seed in range(200)]
    assert [v for v in got if not check.is_valid(v)] == []
    if schema.get("type") == "number" and "multipleOf" not in schema:
        assert sum(v != int(v) for v in got) > 150  # floats stay floats (type fidelity)


def test_multi_step_requests_use_held_out_frames_for_eval_and_rejected_calls_continue_the_ids(tmp_path):
    p = tmp_path / "mcp.json"
    p.write_text(json.dumps(MCP_RESULT))
    cat = load_catalog(str(p))
    seen = {}
    for split in ("train", "eval"):
        engine = shapes.Engine(cat, split=split, shares={"multi_step": 1.0})
        rng = random.Random(3)
        eps = [ep for ep in (engine.episode(rng)[0] for _ in range(80)) if ep is not None and ep.shape == "multi_step"]
        assert len(eps) > 20
        seen[split] = {ep.frame for ep in eps}
        assert seen[split] <= set(phrasing.split_frames(phrasing.THEN_FRAMES, split))
        if split == "train":  # a failing second step: its ids follow the first step's, as the chosen turn's do
            bad = [shapes.rejected_turn(engine, ep, 1, "wrong_value", rng) for ep in eps[:10]]
            ids = [[c["id"] for c in b[0]["tool_calls"]] for b in bad if b is not None]
            assert ids and all(i == ["call_2"] for i in ids)
    assert seen["train"] and seen["eval"] and not seen["train"] & seen["eval"]


def test_semantic_gate_needs_a_value_as_whole_words_not_inside_another_word():
    assert phrasing.stated("red", "Paint the fence red, please.")
    assert not phrasing.stated("red", "Show what I ordered yesterday.")
    assert not phrasing.stated("Oslo", "Find flights to Oslobodenje.")
    assert phrasing.stated("/srv/amber/data.csv", "Open /srv/amber/data.csv now")
    assert phrasing.stated(True, "and include archived items", "include_archived")
    assert not phrasing.stated(True, "the archivedness of it", "archived")


def test_plural_of_a_noun_phrase_is_its_head_noun():
    assert phrasing.plural("ID of pet to update") == "IDs of pet to update"
    assert phrasing.plural("name that needs to be fetched") == "names that needs to be fetched"
    assert phrasing.plural("the city") == "the cities" and phrasing.plural("the box") == "the boxes"
    assert phrasing.plural("the number of days") == "the numbers of days"


def test_offered_tools_can_be_told_apart_and_irrelevance_shares_no_word_with_its_request(tmp_path):
    """On the real Petstore document findPetsByStatus and findPetsByTags both read "find pets": a
    request that states neither status nor tags must not offer both (either call would be right).
    An irrelevance request must not offer a tool sharing a content word with it, singular or plural
    ("create user" against createUsersWithListInput)."""
    cat = load_catalog(str(PETSTORE))
    out = tmp_path / "t.jsonl"
    r = cli("generate", "trajectories", "--catalog", str(PETSTORE), "-n", "300", "--seed", "0",
            "--shapes", "choose=3,single=0,parallel=0,parallel_multi=0,multi_step=0,missing_info=0,typed=0,irrelevance=1",
            "-o", str(out))
    assert r.exit_code == 0, r.output
    recs = _read(out)

    def vp(name):
        t = cat[name]
        return phrasing.intent(t.name, t.description, t.parameters).vp

    def content(name):
        t = cat[name]
        return {shapes._singular(w) for w in phrasing.words(t.name) + vp(name).split() if len(w) > 2 and w not in shapes._STOP}

    seen_choose = seen_irrelevance = 0
    for rec in recs:
        offered = [t["function"]["name"] for t in rec["tools"]]
        calls = [c["function"] for m in rec["messages"] for c in m.get("tool_calls") or []]
        shape = rec["metadata"].get("shape")
        if shape in ("choose", "single") and calls:
            seen_choose += shape == "choose"
            want, args = calls[0]["name"], set(calls[0]["arguments"])
            for other in offered:
                if other != want and vp(other) == vp(want):
                    props, req = set(cat[other].parameters.get("properties") or {}), set(cat[other].parameters.get("required") or [])
                    assert not (args <= props and req <= args), (rec["messages"][-4:], offered)
        if shape == "irrelevance":
            seen_irrelevance += 1
            target = rec["metadata"]["tool"]
            for other in offered:
                assert not content(other) & content(target), (target, other)
    assert seen_choose > 100 and seen_irrelevance > 30
    # parallel calls to different tools: no two of them could be swapped ("Find pets, and also find pets.")
    out = tmp_path / "pm.jsonl"
    r = cli("generate", "trajectories", "--catalog", str(PETSTORE), "-n", "150", "--seed", "0", "--shapes",
            "parallel_multi=1,choose=0,single=0,parallel=0,multi_step=0,missing_info=0,typed=0,irrelevance=0", "-o", str(out))
    assert r.exit_code == 0, r.output
    multi = [rec for rec in _read(out) if rec["metadata"]["shape"] == "parallel_multi"]
    for rec in multi:
        calls = [c["function"] for m in rec["messages"] for c in m.get("tool_calls") or []]
        for a in calls:
            for b in calls:
                if a["name"] != b["name"] and vp(a["name"]) == vp(b["name"]):
                    props = set(cat[b["name"]].parameters.get("properties") or {})
                    assert not (set(a["arguments"]) <= props and set(cat[b["name"]].parameters.get("required") or []) <= set(a["arguments"])), calls
    assert len(multi) > 50


def test_followups_continue_a_conversation_on_the_same_offered_tools(tmp_path, openai_catalog):
    plain, more = tmp_path / "plain.jsonl", tmp_path / "more.jsonl"
    args = ("generate", "trajectories", "--catalog", str(openai_catalog), "--count", "120", "--seed", "4")
    assert cli(*args, "-o", str(plain)).exit_code == 0
    assert cli(*args, "--followup-share", "0", "-o", str(tmp_path / "zero.jsonl")).exit_code == 0
    assert (tmp_path / "zero.jsonl").read_text() == plain.read_text()  # share 0 draws nothing: the same records
    r = cli(*args, "--followup-share", "1", "-o", str(more), "--json")
    assert r.exit_code == 0, r.output
    recs = _read(more)
    assert len(recs) == 120
    long = [rec for rec in recs if rec["metadata"].get("requests", 1) > 1]
    assert len(long) > 80 and {rec["metadata"]["requests"] for rec in long} == {2, 3}
    kinds = set()
    for rec in long:
        msgs, offered = rec["messages"], {t["function"]["name"] for t in rec["tools"]}
        users = [i for i, m in enumerate(msgs) if m["role"] == "user"]
        assert len(users) == rec["metadata"]["requests"]
        ids = [c["id"] for m in msgs for c in m.get("tool_calls") or []]
        assert len(ids) == len(set(ids))  # call ids numbered on across the conversation
        for start, end in zip(users[1:], users[2:] + [len(msgs)]):
            turn = msgs[start:end]
            assert turn[-1]["role"] == "assistant" and turn[-1]["content"]  # each request ends with an answer
            calls = [c["function"] for m in turn for c in m.get("tool_calls") or []]
            kinds.add("call" if calls else "answer")
            for c in calls:  # a follow-up calls only what the conversation offers, with values its request states
                assert c["name"] in offered
                for k, v in c["arguments"].items():
                    assert phrasing.stated(v, turn[0]["content"], k, ""), (turn[0]["content"], k, v)
    assert kinds == {"call", "answer"}
    assert cli("validate", str(more), "--strict").exit_code == 0


def test_topic_questions_offer_the_tool_they_talk_about_and_call_nothing(tmp_path, openai_catalog):
    plain, topic, tasks = tmp_path / "plain.jsonl", tmp_path / "topic.jsonl", tmp_path / "tasks.jsonl"
    shares = "single=0.5,irrelevance=0.5,choose=0,parallel=0,parallel_multi=0,multi_step=0,missing_info=0,typed=0"
    args = ("generate", "trajectories", "--catalog", str(openai_catalog), "--count", "80", "--seed", "2", "--shapes", shares)
    assert cli(*args, "-o", str(plain)).exit_code == 0
    assert cli(*args, "--topic-share", "0", "-o", str(tmp_path / "zero.jsonl")).exit_code == 0
    assert (tmp_path / "zero.jsonl").read_text() == plain.read_text()  # share 0 draws nothing: the same records
    assert cli(*args, "--topic-share", "1", "-o", str(topic)).exit_code == 0
    recs = [r for r in _read(topic) if r["metadata"]["shape"] == "irrelevance"]
    assert len(recs) > 20
    frames = set()
    for rec in recs:
        offered = {t["function"]["name"]: t["function"] for t in rec["tools"]}
        target = rec["metadata"]["tool"]
        assert target in offered  # the tool the question is about is offered ...
        assert not any(m.get("tool_calls") for m in rec["messages"])  # ... and the answer calls nothing
        user = next(m["content"] for m in rec["messages"] if m["role"] == "user")
        it = phrasing.intent(target, offered[target]["description"], offered[target]["parameters"])
        assert it.vp in user or phrasing.topic_object(it) in user  # the request names the tool's own subject
        assert it.vp in rec["messages"][-1]["content"]  # the reply says what the tool can do instead
        frames.add(rec["metadata"]["phrasing"])
    assert frames <= set(phrasing.split_frames(phrasing.TOPIC_FRAMES, "train"))
    assert cli("validate", str(topic), "--strict").exit_code == 0
    # eval tasks ask in the held-out frames only, and expect no call
    assert cli("generate", "tasks", "--split", "eval", "--catalog", str(openai_catalog), "--count", "40", "--seed", "2",
               "--shapes", shares, "--topic-share", "1", "-o", str(tasks)).exit_code == 0
    held = set(phrasing.split_frames(phrasing.TOPIC_FRAMES, "eval"))
    topical = [t for t in _read(tasks) if t["metadata"].get("shape") == "irrelevance"]
    assert topical and all(t["metadata"]["phrasing"] in held and t["expected"]["calls"] == [] for t in topical)


def test_near_misses_offer_only_a_same_domain_look_alike_of_the_requested_tool_and_call_nothing(tmp_path):
    from trajtune.generators.shapes import Engine
    from trajtune.generators.values import words

    synth = tmp_path / "synth.json"
    assert cli("generate", "tools", "--synthesize", "300", "--seed", "0", "-o", str(synth)).exit_code == 0
    meta = {t["function"]["name"]: t["x-trajtune"] for t in json.loads(synth.read_text())}
    shares = "single=0.5,irrelevance=0.5,choose=0,parallel=0,parallel_multi=0,multi_step=0,missing_info=0,typed=0"
    args = ("generate", "trajectories", "--catalog", str(synth), "--count", "120", "--seed", "3", "--shapes", shares)
    plain, near = tmp_path / "plain.jsonl", tmp_path / "near.jsonl"
    assert cli(*args, "-o", str(plain)).exit_code == 0
    assert cli(*args, "--near-miss-share", "0", "-o", str(tmp_path / "zero.jsonl")).exit_code == 0
    assert (tmp_path / "zero.jsonl").read_text() == plain.read_text()  # share 0 draws nothing: the same records
    assert cli(*args, "--near-miss-share", "1", "-o", str(near)).exit_code == 0
    recs = [r for r in _read(near) if r["metadata"]["shape"] == "irrelevance"]
    assert len(recs) > 40
    for rec in recs:
        target = rec["metadata"]["tool"]
        offered = [t["function"] for t in rec["tools"]]
        assert target not in {f["name"] for f in offered} and not any(m.get("tool_calls") for m in rec["messages"])
        for f in offered:  # each offered tool: the requested one's domain, another family, a word in common
            assert meta[f["name"]]["domain"] == meta[target]["domain"] and meta[f["name"]]["family"] != meta[target]["family"]
            it = phrasing.intent(f["name"], f["description"], f["parameters"])
            assert it.vp in rec["messages"][-1]["content"]  # the reply says what the offered tool does instead
    shared = [rec for rec in recs if all(set(words(f["function"]["name"])) & set(words(rec["metadata"]["tool"])) - {"get", "by", "v2"}
                                         for f in rec["tools"])]
    assert len(shared) > len(recs) // 2  # most share a name word beyond the verb: they look like the right tool
    assert cli("validate", str(near), "--strict").exit_code == 0


def test_a_near_miss_never_offers_a_tool_that_could_serve_the_request():
    from trajtune.generators.shapes import Engine

    assert Engine._action("list the books by author") == ("list", "book")
    assert Engine._action("get the weather forecast") == ("get", "forecast") and Engine._action("deploy") is None
    from trajtune.generators.catalog import Catalog, Tool

    params = {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]}
    tools = {name: Tool(name=name, description=desc, category=domain, parameters=params, meta={"domain": domain})
             for name, desc, domain in [("send_email", "Send the email.", "messaging"),
                                        ("send_message", "Send the message.", "messaging"),
                                        ("list_books_by_author", "List the books by author.", "books"),
                                        ("search_books", "Search the books.", "books"),
                                        ("check_prime_number", "Check the prime number.", "math"),
                                        ("find_prime_factors", "Find the prime factors.", "math")]}
    eng = Engine(Catalog(tools=tools), split="train", shares={"irrelevance": 1.0}, near_miss_share=1.0)
    assert not eng._sibling(tools["send_email"], tools["send_message"])  # the same action on alike things
    assert not eng._sibling(tools["list_books_by_author"], tools["search_books"])  # two reads of the same thing
    assert eng._sibling(tools["find_prime_factors"], tools["check_prime_number"])  # another thing, a shared word


def test_a_description_with_e_g_is_not_cut_inside_the_abbreviation():
    it = phrasing.intent("calc_loan", "Calculate the loan payment, e.g. for a car. Uses the annual rate.",
                         {"properties": {"rate": {"type": "number", "description": "Yearly interest rate as a decimal, e.g. 0.05."}}})
    assert it.np["rate"] == "yearly interest rate as a decimal"
    assert it.vp == "calculate the loan payment"
