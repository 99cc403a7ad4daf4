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
        if isinstance(data.get("openapi"), str) and data["openapi"].startswith("3"):
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


def safe_name(name: str) -> str:
    out = _BAD.sub("_", name).strip("_.-")[:64]
    return out or "tool"


def parse(data: Any) -> tuple[list[dict], list[str]]:
    """(tools, problems) of an OpenAI / MCP / OpenAPI document."""
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


class _Resolver:
    def __init__(self, doc: dict):
        self.doc = doc

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

    def resolve(self, node: Any, seen: tuple = (), depth: int = 0) -> Any:
        """``node`` with local refs inlined; a cycle, a remote ref or more than 32 levels stop as an untyped object."""
        if depth > 32:
            return {"type": "object"} if isinstance(node, dict) else node
        if isinstance(node, dict):
            if "$ref" in node and isinstance(node["$ref"], str):
                ref = node["$ref"]
                if ref in seen or len(seen) > 8:
                    return {"type": "object"}
                target = self.get(ref)
                if target is None:
                    return {"type": "object"}
                return self.resolve(target, seen + (ref,), depth + 1)
            out = {}
            for k, v in node.items():
                if k in ("example", "examples", "xml", "externalDocs", "discriminator"):
                    continue
                if k == "nullable":
                    continue
                out[k] = self.resolve(v, seen, depth + 1)
            if node.get("nullable") is True and isinstance(out.get("type"), str):
                out["type"] = [out["type"], "null"]
            return out
        if isinstance(node, list):
            return [self.resolve(v, seen, depth + 1) for v in node]
        return node


def _json_content(obj: Any) -> dict | None:
    if not isinstance(obj, dict):
        return None
    content = obj.get("content") or {}
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
    for path, item in (doc.get("paths") or {}).items():
        item = r.resolve(item) if isinstance(item, dict) else {}
        shared = item.get("parameters") or []
        for method in METHODS:
            op = item.get(method)
            if not isinstance(op, dict):
                continue
            name = safe_name(op.get("operationId") or _op_name(method, path))
            if name in names:
                name = safe_name(f"{name}_{method}")
            names.add(name)
            props: dict[str, Any] = {}
            required: list[str] = []
            for p in list(shared) + list(op.get("parameters") or []):
                if not isinstance(p, dict) or p.get("in") == "cookie" or not isinstance(p.get("name"), str):
                    continue
                if p.get("in") == "header" and p["name"].lower() in ("authorization", "accept", "content-type"):
                    continue
                schema = dict(p.get("schema") or {"type": "string"})
                if p.get("description") and "description" not in schema:
                    schema["description"] = p["description"]
                pname = safe_name(p["name"]).replace(".", "_").replace("-", "_")
                props[pname] = schema
                if p.get("required") or p.get("in") == "path":
                    required.append(pname)
            body = r.resolve(_json_content(op.get("requestBody")) or {})
            if body:
                if body.get("type") == "object" or "properties" in body:
                    for k, s in (body.get("properties") or {}).items():
                        key = k if k not in props else f"body_{k}"
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
            for code in ("200", "201", "202", "default"):
                resp = (op.get("responses") or {}).get(code)
                if resp is not None:
                    result = r.resolve(_json_content(r.resolve(resp)) or {}) or None
                    break
            desc = op.get("summary") or op.get("description") or f"{method.upper()} {path}"
            tags = op.get("tags") or []
            tools.append({"name": name, "description": str(desc).strip(),
                          "parameters": {"type": "object", "properties": props, "required": sorted(set(required), key=required.index)},
                          "category": safe_name(str(tags[0])).lower() if tags else "api", "result": result,
                          "meta": {"source": "openapi", "method": method.upper(), "path": path}})
    if not tools:
        problems.append("the OpenAPI document has no operations under `paths`")
    return tools, problems
