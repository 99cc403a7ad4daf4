"""The tool catalog: the shipped tools, their simulators, and the checks on a broken catalog."""
from pathlib import Path

import pytest

from trajtune.errors import DataError
from trajtune.generators.catalog import CATEGORIES, check_catalog, check_tools, load_catalog


def test_shipped_catalog_has_18_plus_tools_across_all_categories():
    cat = load_catalog()
    assert len(cat.tools) >= 18
    assert set(cat.by_category()) == set(CATEGORIES)
    for name in ("database_query", "cache_set", "http_request", "read_file", "write_file", "grep", "run_tests",
                 "git_diff", "git_commit", "search_docs", "deploy"):
        assert name in cat


def test_openai_tools_keeps_order_and_shape():
    cat = load_catalog()
    specs = cat.openai_tools(["grep", "deploy"])
    assert [s["function"]["name"] for s in specs] == ["grep", "deploy"]
    assert specs[1]["type"] == "function"
    assert specs[1]["function"]["parameters"]["required"] == ["service", "environment"]
    assert specs[1]["function"]["description"]


def test_simulator_fills_arguments_and_defaults_deterministically():
    tool = load_catalog()["database_query"]
    assert tool.simulate({"table": "orders", "limit": 5}) == "5 rows from orders (columns: id, status, created_at)"
    assert tool.simulate({"table": "orders"}).startswith("10 rows from orders")  # default for the optional arg
    assert tool.simulate({"table": "orders"}) == tool.simulate({"table": "orders"})


def test_simulator_answers_bad_arguments_with_an_error_observation():
    tool = load_catalog()["database_query"]
    obs = tool.simulate({"table": "orders", "limit": "5"})
    assert obs.startswith("Error: invalid arguments for database_query:")
    assert '"5" is not of type "integer" (at limit)' in obs
    assert '"table" is a required property' in tool.simulate({})
    assert tool.simulate({"table": "missing_table"}) == "Error: no such table: missing_table"  # a scripted case
    assert load_catalog()["deploy"].simulate({"service": "api", "environment": "moon"}).startswith("Error:")


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "tools.yaml"
    p.write_text(text)
    return p


def test_broken_catalog_reports_every_problem_with_file_and_line(tmp_path):
    p = _write(tmp_path, """\
- name: good
  category: data
  description: ok
  parameters: {type: object, properties: {a: {type: string}}, required: [a]}
  simulate: {result: "got {a}"}
- name: bad_tool
  category: cooking
  description: ""
  parameters: {type: object, properties: {}, required: [x]}
  simulate: {result: "uses {nothing}"}
""")
    _, problems = check_catalog(p)
    messages = [m for _, _, m in problems]
    assert all(f == str(p) and line == 6 for f, line, _ in problems)
    assert any("`category` must be one of" in m for m in messages)
    assert any("`description` is required" in m for m in messages)
    assert any("required parameter 'x' is not in properties" in m for m in messages)
    assert any("{nothing}" in m for m in messages)
    with pytest.raises(DataError) as exc:
        load_catalog(p)
    assert exc.value.render().startswith(f"{p}:6: tool 'bad_tool':")


def test_invalid_yaml_names_the_line(tmp_path):
    p = _write(tmp_path, "- name: x\n  description: [unclosed\n")
    _, problems = check_catalog(p)
    assert problems[0][0] == str(p) and problems[0][1] is not None
    assert problems[0][2].startswith("invalid YAML")


def test_tools_check_also_checks_templates_against_the_catalog(tmp_path):
    cat = _write(tmp_path, """\
- name: read_file
  category: coding
  description: Read a file.
  parameters: {type: object, properties: {path: {type: string}}, required: [path]}
  simulate: {result: "contents of {path}"}
""")
    from trajtune.generators.templates import default_templates_dir

    # templates given explicitly must all find their tools: the shipped ones need tools this lacks
    _, problems = check_tools(cat, default_templates_dir(), with_templates=True)
    assert problems and "not in the tool catalog" in problems[0][2]
    # beside a user's own catalog the default templates are lenient: those calling its tools are used
    _, problems = check_tools(cat, None, with_templates=True)
    assert problems == []
