"""Tool retrieval data: which tool does a request need?

An agent with more tools than fit a prompt needs a retriever that picks the few tools a request
needs. This module turns our records into data for one:

* :func:`tool_document` renders a tool (OpenAI ``{type: function, function: {...}}`` or a flat
  ``{name, description, parameters}``) as the text a retriever indexes:
  ``name: description (parameters: a, b)``; training and evaluation use this one rendering;
* :func:`triplets` turns an sft record (each assistant tool call: the user request it answers ->
  the called tool) or a task record (its prompt -> each expected tool) into ``triplet`` records:
  anchor = the request, positive = the called tool's document, negative = the *look-alike*
  offered tool (most words in common with the called one's name and description; a tool the
  record also calls is never a negative), or with a :class:`NegativePool` (``--negatives-from
  CATALOG``) the called tool's closest family sibling in that catalog;
* :func:`load_tools` reads any catalog of tools: an OpenAI tools JSON list (or ``{"tools": [...]}``,
  or JSONL of tools) or our YAML catalogs (``generators.catalog.load_catalog``: a file or a folder),
  keeping trajtune's ``x-trajtune`` metadata (family, sense, split) where a tool has it.

``trajtune convert --to triplet FILE`` runs :func:`triplets` on sft and task records
(``converters/ours.py``); ``trajtune evaluate TASKS --corpus CATALOG`` ranks a catalog's tools for
each task's request (``trajtune/retrieval.py``).
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Iterable

_WORD = re.compile(r"[a-z0-9]+")


def tool_fields(tool: Any) -> tuple[str, str, dict]:
    """(name, description, parameters) of an OpenAI-style or flat tool spec."""
    if not isinstance(tool, dict):
        raise TypeError(f"a tool must be an object, got {type(tool).__name__}")
    fn = tool.get("function") if isinstance(tool.get("function"), dict) else tool
    name = fn.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError("a tool without a name")
    desc = fn.get("description") if isinstance(fn.get("description"), str) else ""
    params = fn.get("parameters") if isinstance(fn.get("parameters"), dict) else {}
    return name, desc.strip(), params


def tool_document(tool: Any) -> str:
    """The text a retriever indexes for a tool: ``name: description (parameters: a, b)``."""
    name, desc, params = tool_fields(tool)
    props = params.get("properties") if isinstance(params.get("properties"), dict) else {}
    text = f"{name}: {desc}" if desc else name
    if props:
        text += f" (parameters: {', '.join(map(str, props))})"
    return text


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.replace("_", " ").lower()))


def _similarity(a: set[str], b: set[str] | frozenset[str]) -> float:
    """Jaccard overlap of two word sets."""
    return len(a & b) / max(1, len(a | b))


def lookalike(positive: Any, candidates: Iterable[Any], exclude: set[str]) -> Any | None:
    """The candidate tool most like ``positive`` (Jaccard overlap of the words of name and
    description; ties broken by name, so the choice is deterministic); None when there is none."""
    pname, pdesc, _ = tool_fields(positive)
    pw = _words(f"{pname} {pdesc}")
    best, best_key = None, None
    for c in candidates:
        name, desc, _ = tool_fields(c)
        if name == pname or name in exclude:
            continue
        key = (-_similarity(pw, _words(f"{name} {desc}")), name)
        if best_key is None or key < best_key:
            best, best_key = c, key
    return best


def _content(msg: dict) -> str:
    c = msg.get("content")
    if isinstance(c, str):
        return c.strip()
    if isinstance(c, list):  # content parts
        return " ".join(p.get("text", "") for p in c if isinstance(p, dict) and isinstance(p.get("text"), str)).strip()
    return ""


def requests_and_calls(rec: dict) -> list[tuple[str, list[str]]]:
    """(request, [called tool names]) pairs of an sft or task record: every assistant turn's calls
    answer the last user message before it; a task's expected calls answer its prompt."""
    out: list[tuple[str, list[str]]] = []
    if "expected" in rec:  # a task record
        request = next((_content(m) for m in reversed(rec.get("prompt") or []) if m.get("role") == "user"), "")
        names = [c["name"] for c in rec["expected"].get("calls") or []]
        if request and names:
            out.append((request, names))
        return out
    request = ""
    for m in rec.get("messages") or []:
        if m.get("role") == "user":
            request = _content(m)
        elif m.get("role") == "assistant" and m.get("tool_calls") and request:
            names = [c["function"]["name"] for c in m["tool_calls"]]
            if out and out[-1][0] == request:
                out[-1][1].extend(n for n in names if n not in out[-1][1])
            else:
                out.append((request, list(dict.fromkeys(names))))
    return out


def tool_meta(path: str | Path) -> dict[str, dict]:
    """Each tool's trajtune metadata in a catalog, by name (``x-trajtune`` as :func:`load_tools`
    keeps it: domain, family, sense, split); {} for tools that carry none."""
    return {t["function"]["name"]: t.get("x-trajtune") or {} for t in load_tools(path)}


class NegativePool:
    """Negatives from a whole catalog (``convert --to triplet --negatives-from CATALOG``).

    The tool a retriever confuses is a near-identical sibling (``chem.get_molar_element_properties``
    vs ``Chem_getElementProperties``), and a record may offer none: for the called tool,
    :meth:`pick` returns the most similar tool of its family (the synthetic APIs' ``x-trajtune``
    ``family``; a YAML catalog's ``meta.family``), else the most similar tool of the catalog.
    Tools of the called tool's ``sense`` (the same function in another naming style, which no
    request can tell apart) and tools held out for evaluation (``split: eval``, so ``train-embed
    --holdout`` keeps the triplet) are never picked.
    """

    def __init__(self, tools: list[tuple[dict, dict]]):
        self.tools: list[tuple[str, dict, frozenset[str], str | None, str | None]] = []
        self._meta: dict[str, tuple[str | None, str | None]] = {}
        for spec, meta in tools:
            name, desc, _ = tool_fields(spec)
            fam = meta.get("family") if isinstance(meta.get("family"), str) else None
            sense = meta.get("sense") if isinstance(meta.get("sense"), str) else None
            self._meta[name] = (fam, sense)
            if meta.get("split") == "eval":
                continue
            self.tools.append((name, spec, frozenset(_words(f"{name} {desc}")), fam, sense))

    @classmethod
    def load(cls, path: str | Path) -> "NegativePool":
        """A catalog as ``load_tools`` reads it, with each tool's family, sense and split."""
        return cls([(t, t.get("x-trajtune") or {}) for t in load_tools(path)])

    def pick(self, positive: dict, exclude: set[str]) -> dict | None:
        pname, pdesc, _ = tool_fields(positive)
        pw = _words(f"{pname} {pdesc}")
        fam, sense = self._meta.get(pname, (None, None))
        best, best_key = None, None
        for name, spec, w, f, sn in self.tools:
            # a tool of the same sense is the same function in another naming style: not a negative
            if name == pname or name in exclude or (sense is not None and sn == sense):
                continue
            key = (fam is None or f != fam, -_similarity(pw, w), name)
            if best_key is None or key < best_key:
                best, best_key = spec, key
        return best


def triplets(rec: dict, *, source: str = "trajtune", negatives: NegativePool | None = None) -> list[dict]:
    """Tool-retrieval triplets from one sft or task record (see the module doc). Raises
    ``Reject`` when the record has no call to learn from or offers no other tool to contrast.
    With ``negatives``, each negative comes from that catalog (:class:`NegativePool`)."""
    from trajtune.converters.common import Reject, record

    tools = {tool_fields(t)[0]: t for t in rec.get("tools") or []}
    pairs = requests_and_calls(rec)
    if not pairs:
        raise Reject("no tool call", "the record calls no tool (nothing to retrieve)")
    called = {n for _, names in pairs for n in names}
    out: list[dict] = []
    missing: list[str] = []
    seen: set[str] = set()
    for request, names in pairs:
        for name in names:
            if name not in tools:
                missing.append(name)
                continue
            neg = negatives.pick(tools[name], called) if negatives is not None else \
                lookalike(tools[name], tools.values(), exclude=called)
            if neg is None:
                continue
            body = {"anchor": request, "positive": tool_document(tools[name]), "negative": tool_document(neg)}
            digest = hashlib.sha1("\x00".join(body.values()).encode("utf-8")).hexdigest()[:10]
            if digest in seen:  # the same tool called twice for one request: one triplet
                continue
            seen.add(digest)
            # the source record's metadata travels along (its review state gates training too)
            meta = {**(rec.get("metadata") if isinstance(rec.get("metadata"), dict) else {}),
                    "from_record": rec["id"], "tool": name, "negative_tool": tool_fields(neg)[0]}
            out.append(record(f"{rec['id']}:{name}:{digest}", source, body, meta))
    if not out:
        if missing:
            raise Reject("called tool not declared", ", ".join(sorted(set(missing)))[:200])
        raise Reject("no look-alike tool offered", "every offered tool is one the record calls")
    return out


# ---------------------------------------------------------------------------------------------
# catalogs


def load_tools(path: str | Path) -> list[dict]:
    """Every tool of a catalog, as OpenAI-style specs: a ``.json`` tools list (or ``{"tools": [...]}``),
    a ``.jsonl`` of tools, or our YAML catalog (a file or a folder of them). Names are unique."""
    from trajtune.config import read_text
    from trajtune.errors import ConfigError, DataError

    p = Path(path)
    if p.is_dir() or p.suffix in (".yaml", ".yml"):
        from trajtune.generators.catalog import load_catalog

        return [{**t.openai(), "x-trajtune": {**t.meta, "split": t.split}} for t in load_catalog(p).tools.values()]
    text = read_text(p, "tool catalog")
    import orjson

    try:
        if p.suffix == ".jsonl":
            data = [orjson.loads(line) for line in text.splitlines() if line.strip()]
        else:
            data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise DataError(f"not JSON ({exc})", path=str(p), hint="pass an OpenAI tools JSON list or a YAML catalog") from None
    if isinstance(data, dict) and isinstance(data.get("tools"), list):
        data = data["tools"]
    if not isinstance(data, list) or not data:
        raise DataError("a tool catalog must be a non-empty list of tools", path=str(p),
                        hint='e.g. [{"type": "function", "function": {"name": ..., "description": ..., "parameters": ...}}]')
    tools: dict[str, dict] = {}
    for i, t in enumerate(data):
        try:
            name, desc, params = tool_fields(t)
        except (TypeError, ValueError) as exc:
            raise DataError(f"tool #{i + 1}: {exc}", path=str(p)) from None
        if name in tools:
            raise DataError(f"tool #{i + 1}: duplicate tool name {name[:64]!r}", path=str(p))
        tools[name] = {"type": "function", "function": {"name": name, "description": desc, "parameters": params}}
        if isinstance(t.get("x-trajtune"), dict):  # the synthetic APIs' family, sense and split
            tools[name]["x-trajtune"] = t["x-trajtune"]
    if not tools:
        raise ConfigError(f"{p}: no tools")
    return list(tools.values())
