"""Tool catalogs in the formats users have: OpenAI ``tools``, MCP ``tools/list``, OpenAPI 3.

:func:`parse` turns a parsed JSON/YAML document into plain tool dicts
``{"name", "description", "parameters", "category", "result", "meta"}``, which
:mod:`trajtune.generators.catalog` makes into :class:`~trajtune.generators.catalog.Tool`:

* **OpenAI tools**: a list of ``{"type": "function", "function": {name, description,
  parameters}}`` (or of bare ``{name, description, parameters}``), or a mapping with such a
  ``tools`` list. ``x-trajtune`` (what ``generate tools --synthesize`` writes) carries the domain,
  family, sense, split and result schema.
* **MCP**: a ``tools/list`` result ``{"tools": [{name, description, inputSchema,
  outputSchema?}]}``, or the whole JSON-RPC response ``{"result": {"tools": [...]}}``.
* **OpenAPI 3** (``openapi: 3.x``): each operation is a tool named by its ``operationId`` (else
  ``<method>_<path words>``); path, query and header parameters (not cookies) and the JSON
  request body's properties become its parameters (a body that is not an object becomes one
  ``body`` parameter); the 200/201/default JSON response schema is the result schema the
  simulator fills. Local ``$ref`` (``#/...``) are resolved (cycles and remote refs stop as an
  untyped object: never a network fetch); the first tag is the category.

Problems come back as messages (the loader reports them with the file); nothing is fetched.
"""
from __future__ import annotations

import re
from typing import Any

_BAD = re.compile(r"[^A-Za-z0-9_.\-]+")
METHODS = ("get", "post", "put", "patch", "delete")


def kind(data: Any) -> str | None:
    """``openai`` | ``mcp`` | ``openapi`` | ``trajtune`` (our YAML list) | None."""
    if isinstance(data, dict):
        if str(data.get("openapi", "")).startswith("3"):  # (YAML reads an unquoted 3.1 as a number)
            return "openapi"
        if "swagger" in data:
            return "swagger"
        if isinstance(data.get("result"), dict) and isinstance(data["result"].get("tools"), list):
            return "mcp"
        tools = data.get("tools")
        if isinstance(tools, list) and tools and isinstance(tools[0], dict):
            if "inputSchema" in tools[0]:
                return "mcp"
            return kind(tools)
        return None
    if isinstance(data, list) and data and all(isinstance(t, dict) for t in data):
        first = data[0]
        if first.get("type") == "function" and isinstance(first.get("function"), dict):
            return "openai"
        if "inputSchema" in first:
            return "mcp"
        if "simulate" in first or "category" in first:
            return "trajtune"
        if "name" in first and ("parameters" in first or "description" in first):
            return "openai"
    return None


def safe_name(name: Any) -> str:
    out = _BAD.sub("_", str(name)).strip("_.-")[:64]
    return out or "tool"


def _unique(name: str, names: set[str]) -> str:
    """``name``, or ``name_2``, ``name_3``, ... (cut to 64 characters before the suffix)."""
    out, n = name, 1
    while out in names:
        n += 1
        suffix = f"_{n}"
        out = name[: 64 - len(suffix)] + suffix
    names.add(out)
    return out


def parse(data: Any) -> tuple[list[dict], list[str]]:
    """(tools, problems) of an OpenAI / MCP / OpenAPI document; a malformed part is a problem, never an exception."""
    try:
        return _parse(data)
    except (AttributeError, TypeError, ValueError, KeyError) as exc:
        return [], [f"the document has a part of an unexpected shape ({type(exc).__name__}: {exc}); fix it or convert it first"]


def _parse(data: Any) -> tuple[list[dict], list[str]]:
    k = kind(data)
    if k == "openai":
        return _openai(data if isinstance(data, list) else data["tools"])
    if k == "mcp":
        tools = data["result"]["tools"] if "result" in data else data["tools"] if isinstance(data, dict) else data
        return _mcp(tools)
    if k == "openapi":
        return _openapi(data)
    if k == "swagger":
        return [], ["Swagger 2.0 documents are not read; convert it to OpenAPI 3 first (e.g. with swagger2openapi)"]
    return [], ["not a tool catalog: expected an OpenAI tools list, an MCP tools/list result or an OpenAPI 3 document"]


def _params(schema: Any) -> dict:
    if not isinstance(schema, dict) or not schema:
        return {"type": "object", "properties": {}}
    if schema.get("type") is None and "properties" in schema:
        schema = {**schema, "type": "object"}
    return schema


def _openai(items: list) -> tuple[list[dict], list[str]]:
    tools, problems = [], []
    for i, t in enumerate(items):
        fn = t.get("function") if isinstance(t.get("function"), dict) else t
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            problems.append(f"tool #{i + 1}: no name")
            continue
        x = t.get("x-trajtune") or fn.get("x-trajtune") or {}
        tools.append({"name": name, "description": str(fn.get("description") or ""),
                      "parameters": _params(fn.get("parameters")), "category": x.get("domain") or "general",
                      "result": x.get("result"), "meta": {k: v for k, v in x.items() if k != "result"}})
    return tools, problems


def _mcp(items: list) -> tuple[list[dict], list[str]]:
    tools, problems = [], []
    for i, t in enumerate(items):
        name = t.get("name") if isinstance(t, dict) else None
        if not isinstance(name, str) or not name:
            problems.append(f"tool #{i + 1}: no name")
            continue
        desc = t.get("description") or (t.get("annotations") or {}).get("title") or t.get("title") or ""
        tools.append({"name": name, "description": str(desc), "parameters": _params(t.get("inputSchema")),
                      "category": "mcp", "result": t.get("outputSchema"), "meta": {"source": "mcp"}})
    return tools, problems


_ANNOTATIONS = ("example", "examples", "xml", "externalDocs", "discriminator", "nullable")
_MAP_KEYS = ("properties", "patternProperties", "$defs", "definitions")  # their keys are names, not keywords


class _Resolver:
    """Local ``$ref`` inlined (a chain of at most 3, a budget of 20,000 nodes per document part),
    OpenAPI 3.0 schemas made JSON Schema: boolean ``exclusiveMinimum``/``Maximum``, ``nullable``,
    ``allOf`` merged, a non-list ``required`` dropped, YAML dates as ISO text."""

    MAX_REFS = 3
    BUDGET = 20000

    def __init__(self, doc: dict):
        self.doc = doc
        self.left = self.BUDGET

    def get(self, ref: str) -> Any:
        if not ref.startswith("#/"):
            return None  # remote refs are never fetched
        node: Any = self.doc
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    def part(self, node: Any) -> Any:
        """Resolve one part of the document (an operation, a body) with a fresh node budget."""
        self.left = self.BUDGET
        return self.resolve(node)

    def resolve(self, node: Any, seen: tuple = (), depth: int = 0, names: bool = False) -> Any:
        self.left -= 1
        if depth > 40 or self.left < 0:
            return {"type": "object"} if isinstance(node, dict) else None
        if isinstance(node, dict):
            if not names and isinstance(node.get("$ref"), str):
                ref = node["$ref"]
                if ref in seen or len(seen) >= self.MAX_REFS:
                    return {"type": "object"}
                target = self.get(ref)
                if target is None:
                    return {"type": "object"}
                return self.resolve(target, seen + (ref,), depth + 1)
            out = {}
            for k, v in node.items():
                k = str(k)
                if not names and k in _ANNOTATIONS:
                    continue
                out[k] = self.resolve(v, seen, depth + 1, names=not names and k in _MAP_KEYS)
            if not names:
                _normalise(out, node)
            return out
        if isinstance(node, list):
            return [self.resolve(v, seen, depth + 1) for v in node]
        if hasattr(node, "isoformat"):  # YAML reads 2024-01-01 as a date
            return node.isoformat()
        return node


def _normalise(out: dict, raw: dict) -> None:
    if raw.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(bound), bool):  # OpenAPI 3.0: a flag on minimum/maximum
            flag = out.pop(bound)
            if flag and isinstance(out.get(plain), (int, float)):
                out[bound] = out.pop(plain)
    looks_like_schema = ("type" in out or "properties" in out) and "in" not in out and "content" not in out
    if looks_like_schema and "required" in out and not (isinstance(out["required"], list)
                                                        and all(isinstance(r, str) for r in out["required"])):
        del out["required"]  # `required: true` written inside a property schema
    parts = out.get("allOf")
    if isinstance(parts, list) and parts and all(isinstance(p, dict) for p in parts):
        del out["allOf"]
        for p in parts:
            for k, v in p.items():
                if k == "properties" and isinstance(v, dict):
                    out.setdefault("properties", {}).update(v)
                elif k == "required" and isinstance(v, list):
                    out["required"] = list(dict.fromkeys(list(out.get("required") or []) + v))
                else:
                    out.setdefault(k, v)


def _json_content(obj: Any) -> dict | None:
    if not isinstance(obj, dict):
        return None
    content = obj.get("content") if isinstance(obj.get("content"), dict) else {}
    for ctype, media in content.items():
        if "json" in ctype and isinstance(media, dict) and isinstance(media.get("schema"), dict):
            return media["schema"]
    return None


def _op_name(method: str, path: str) -> str:
    parts = [p for p in re.split(r"[/{}]+", path) if p]
    return safe_name("_".join([method] + parts))


def _openapi(doc: dict) -> tuple[list[dict], list[str]]:
    r = _Resolver(doc)
    tools, problems, names = [], [], set()
    paths = doc.get("paths") if isinstance(doc.get("paths"), dict) else {}
    for path, item in paths.items():
        item = r.part(item) if isinstance(item, dict) else {}
        shared = item.get("parameters") if isinstance(item.get("parameters"), list) else []
        for method in METHODS:
            op = item.get(method)
            if not isinstance(op, dict):
                continue
            name = _unique(safe_name(op.get("operationId") or _op_name(method, str(path))), names)
            props: dict[str, Any] = {}
            required: list[str] = []
            own = op.get("parameters") if isinstance(op.get("parameters"), list) else []
            for p in list(shared) + list(own):
                if not isinstance(p, dict) or p.get("in") == "cookie" or not isinstance(p.get("name"), str):
                    continue
                if p.get("in") == "header" and p["name"].lower() in ("authorization", "accept", "content-type"):
                    continue
                schema = dict(p["schema"]) if isinstance(p.get("schema"), dict) else {"type": "string"}
                if p.get("description") and "description" not in schema:
                    schema["description"] = p["description"]
                pname = _unique(safe_name(p["name"]).replace(".", "_").replace("-", "_"), set(props))
                props[pname] = schema
                if p.get("required") or p.get("in") == "path":
                    required.append(pname)
            body = r.resolve(_json_content(op.get("requestBody")) or {})
            if body:
                if body.get("type") == "object" or "properties" in body:
                    for k, s in (body.get("properties") or {}).items():
                        key = _unique(k if k not in props else f"body_{k}", set(props))
                        if isinstance(s, dict) and s.get("readOnly"):
                            continue
                        props[key] = s
                        if k in (body.get("required") or []) and (op.get("requestBody") or {}).get("required", True):
                            required.append(key)
                else:
                    props["body"] = body
                    if (op.get("requestBody") or {}).get("required"):
                        required.append("body")
            result = None
            responses = op.get("responses") if isinstance(op.get("responses"), dict) else {}
            for code in ("200", "201", "202", "default"):
                resp = responses.get(code, responses.get(int(code)) if code.isdigit() else None)
                if resp is not None:
                    result = r.resolve(_json_content(r.resolve(resp)) or {}) or None
                    break
            desc = op.get("summary") or op.get("description") or f"{method.upper()} {path}"
            tags = op.get("tags") if isinstance(op.get("tags"), list) else []
            tools.append({"name": name, "description": str(desc).strip(),
                          "parameters": {"type": "object", "properties": props, "required": sorted(set(required), key=required.index)},
                          "category": safe_name(str(tags[0])).lower() if tags else "api", "result": result,
                          "meta": {"source": "openapi", "method": method.upper(), "path": path}})
    if not tools:
        problems.append("the OpenAPI document has no operations under `paths`")
    return tools, problems
