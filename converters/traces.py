"""Trace exports (OpenInference attribute conventions) -> sft, preference, triplet.

Spans may be JSON or JSONL: Phoenix/OTel exports (``span_kind``, ``context.span_id``,
``parent_id``, ``start_time``, ``attributes``, flat dotted or nested), flat attribute maps
(``openinference.span.kind`` at the top level), or a JSON object whose values are span lists.
Messages come from ``llm.input_messages.N.message.*`` / ``llm.output_messages.N.message.*``
(``content`` or ``contents.M.message_content.text``; ``tool_calls.M.tool_call.*`` with
arguments as JSON strings), tools from ``llm.tools.N.tool.json_schema``; spans without them
fall back to ``input.value`` / ``output.value`` text. Called tools whose schema the span lacks
(or redacts as ``{}``) are declared by name and argument names, listed in
``metadata.inferred_tools``.

Annotations are rows with ``span_id`` and a ``label`` (or ``result: {label, score}``), in the
input or in ``--annotations FILE``: approved/rejected for LLM spans (an annotation may carry its
own ``output`` text: an alternative answer for that span), relevant/irrelevant with
``document_position`` for retriever documents.

* sft: one record per LLM span (only approved ones unless ``--no-approved-only``); with
  ``--sessions``, one multi-turn trajectory per ``session.id`` from its root spans ordered by
  start time (``--min-turns``).
* preference: spans with the same input messages; the first approved output is chosen over the
  first rejected one (identical pairs are skipped with a count).
* triplet: retriever spans: the query with a relevant and an irrelevant document.

Grouping keeps only span ids, keys and byte offsets in memory; spans are re-read when written.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Iterator

import orjson

from trajtune.converters import openai
from trajtune.converters.common import (ROW_ERRORS, Emitter, Reject, Source, as_reject, declare_called_tools, loads_json,
                                        parse_tools, record)
from trajtune.jsonl import Row

NAME = "traces"
KINDS = ("sft", "preference", "triplet")

APPROVED = {"approved", "approve", "accepted", "accept", "good", "correct", "thumbs_up", "positive", "pass"}
REJECTED = {"rejected", "reject", "bad", "incorrect", "thumbs_down", "negative", "fail"}
RELEVANT = {"relevant", "yes", "true", "1", "positive"}
# set by a translating source on a span it cannot convert: the span is rejected with this reason
UNCONVERTIBLE, UNCONVERTIBLE_DETAIL = "trajtune.reject.reason", "trajtune.reject.detail"
IRRELEVANT = {"irrelevant", "not_relevant", "no", "false", "0", "negative"}


def _flatten(node: Any, prefix: str, out: dict) -> dict:
    if isinstance(node, dict):
        for k, v in node.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(node, list) and prefix and any(isinstance(x, dict) for x in node):
        for i, v in enumerate(node):
            _flatten(v, f"{prefix}.{i}", out)
    else:
        out[prefix] = node
    return out


@dataclass
class Span:
    span_id: str | None
    trace_id: str | None
    parent_id: str | None
    kind: str
    start: str
    attrs: dict = field(repr=False)
    annotations: list = field(default_factory=list)


def _is_span(obj: Any) -> bool:
    if not isinstance(obj, dict):
        return False
    if "openinference.span.kind" in obj or "span_kind" in obj:
        return True
    attrs = obj.get("attributes")
    return isinstance(attrs, dict) and ("openinference.span.kind" in attrs or any(
        str(k).startswith(("llm.", "input.value", "retrieval.")) for k in attrs))


def _is_annotation(obj: Any) -> bool:
    return isinstance(obj, dict) and "span_id" in obj and ("label" in obj or isinstance(obj.get("result"), dict)) \
        and "attributes" not in obj


def detect(obj: Any) -> bool:
    if _is_span(obj) or _is_annotation(obj):
        return True
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(v, list) and v and _is_span(v[0]) for v in obj.values())


def span_of(obj: dict) -> Span:
    raw = obj.get("attributes")
    attrs = _flatten(raw, "", {}) if isinstance(raw, dict) else _flatten(
        {k: v for k, v in obj.items() if k not in ("annotations",)}, "", {})
    ctx = obj.get("context") if isinstance(obj.get("context"), dict) else obj.get("spanContext") or {}
    span_id = ctx.get("span_id") or ctx.get("spanId") or obj.get("span_id") or attrs.get("context.span_id") or obj.get("id")
    kind = attrs.get("openinference.span.kind") or obj.get("span_kind") or obj.get("kind") or ""
    trace_id = ctx.get("trace_id") or ctx.get("traceId") or obj.get("trace_id")
    return Span(str(span_id) if span_id is not None else None, str(trace_id) if trace_id else None, obj.get("parent_id", obj.get("parentSpanId")),
                str(kind).upper(), str(obj.get("start_time") or obj.get("startTime") or ""), attrs,
                [a for a in obj.get("annotations") or [] if isinstance(a, dict)])


def _label(a: dict) -> str:
    res = a.get("result") if isinstance(a.get("result"), dict) else a
    label = res.get("label")
    if label is None and isinstance(res.get("score"), (int, float)):
        return "approved" if res["score"] >= 0.5 else "rejected"
    return str(label).strip().lower() if label is not None else ""


def iter_objects(source: Source, report: bool = True) -> Iterator[tuple[int, int, int, dict]]:
    """(line, offset, index inside the line, object) for every span or annotation."""
    for raw in source.raw_rows(report=report):
        obj = raw.obj
        if _is_span(obj) or _is_annotation(obj):
            yield raw.lineno, raw.offset, 0, obj
        elif isinstance(obj, dict) and all(isinstance(v, list) for v in obj.values()):
            i = 0
            for v in obj.values():
                for s in v:
                    yield raw.lineno, raw.offset, i, s
                    i += 1
        else:
            if report:
                source.emit.reject(Row(source.name, raw.lineno, obj), "neither a span nor an annotation")


def _read(source: Source, offset: int, lineno: int, sub: int) -> dict:
    obj = source.read_at(offset, lineno).obj
    if _is_span(obj) or _is_annotation(obj):
        return obj
    flat = [s for v in obj.values() for s in v]
    return flat[sub]


# --------------------------------------------------------------------------- messages

def _messages(attrs: dict, prefix: str) -> list[dict]:
    pat = re.compile(re.escape(prefix) + r"\.(\d+)\.message\.(.+)$")
    by_index: dict[int, dict] = {}
    for k, v in attrs.items():
        m = pat.match(k)
        if m:
            by_index.setdefault(int(m.group(1)), {})[m.group(2)] = v
    out = []
    for i in sorted(by_index):
        f = by_index[i]
        msg: dict[str, Any] = {"role": f.get("role")}
        if "content" in f:
            msg["content"] = f["content"]
        else:
            parts = sorted((int(m.group(1)), v) for k, v in f.items()
                           if (m := re.match(r"contents\.(\d+)\.message_content\.text$", k)))
            msg["content"] = "".join(v for _, v in parts if isinstance(v, str)) if parts else None
        calls: dict[int, dict] = {}
        for k, v in f.items():
            m = re.match(r"tool_calls\.(\d+)\.tool_call\.(.+)$", k)
            if m:
                calls.setdefault(int(m.group(1)), {})[m.group(2)] = v
        if calls:
            msg["tool_calls"] = [{"id": c.get("id"), "function": {"name": c.get("function.name"),
                                                                  "arguments": c.get("function.arguments")}}
                                 for _, c in sorted(calls.items())]
        if f.get("tool_call_id") is not None:
            msg["tool_call_id"] = f["tool_call_id"]
        if f.get("name") is not None and msg["role"] == "tool":
            msg["name"] = f["name"]
        out.append(msg)
    return out


def _text_value(attrs: dict, key: str) -> str | None:
    v = attrs.get(f"{key}.value")
    return v if isinstance(v, str) and v.strip() else None


def prompt_and_output(span: Span) -> tuple[list[dict], list[dict]]:
    inp, out = _messages(span.attrs, "llm.input_messages"), _messages(span.attrs, "llm.output_messages")
    if not inp:
        text = _text_value(span.attrs, "input")
        if text is None:
            raise Reject("span without input messages")
        inp = [{"role": "user", "content": text}]
    if not out:
        text = _text_value(span.attrs, "output")
        if text is None:
            raise Reject("span without output messages")
        out = [{"role": "assistant", "content": text}]
    return inp, out


def tools_of(span: Span) -> list | None:
    found = []
    for k in sorted((k for k in span.attrs if re.match(r"llm\.tools\.\d+\.tool\.json_schema$", k)),
                    key=lambda k: int(k.split(".")[2])):
        schema = loads_json(span.attrs[k], "tools")
        if schema not in ({}, None, ""):  # exporters that redact tool schemas leave {}
            found.append(schema)
    return parse_tools(found) if found else None


def _span_id(span: Span, fallback: Any) -> str:
    """Record id of a span: trace id + span id (span ids are unique only within a trace)."""
    from trajtune.records import content_id

    if span.span_id is None:
        return content_id(fallback, "span-")
    return f"{span.trace_id}-{span.span_id}" if span.trace_id else span.span_id


# --------------------------------------------------------------------------- annotations

def load_annotations(source: Source, extra: str | None, emit: Emitter) -> dict[str, list[dict]]:
    """span_id -> its annotations (small: labels, scores, document positions, optional output)."""
    ann: dict[str, list[dict]] = {}

    def add(a: dict) -> None:
        keep = {"label": _label(a)}
        for k in ("document_position", "output"):
            if k in a:
                keep[k] = a[k]
        ann.setdefault(str(a["span_id"]), []).append(keep)

    for _, _, _, obj in iter_objects(source, report=False):
        if _is_annotation(obj):
            add(obj)
        elif _is_span(obj):
            s = span_of(obj)
            for a in s.annotations:
                add({**a, "span_id": s.span_id})
    if extra:
        src = Source(extra, emit)
        try:
            for raw in src.raw_rows():
                if _is_annotation(raw.obj):
                    add(raw.obj)
                else:
                    emit.reject(Row(src.name, raw.lineno, raw.obj), "not an annotation")
        finally:
            src.close()
    return ann


def verdict(labels: list[str]) -> str | None:
    s = set(labels)
    if s & REJECTED:
        return "rejected"
    if s & APPROVED:
        return "approved"
    return None


# --------------------------------------------------------------------------- conversions

def _tools(span: Span, meta: dict, *message_lists: list[dict]) -> list | None:
    tools, inferred = declare_called_tools(tools_of(span), *message_lists)
    if inferred:
        meta["inferred_tools"] = inferred
    return tools


def _sft_record(span: Span, inp: list[dict], out: list[dict], meta: dict, rid: str) -> dict:
    messages = openai.build_messages(inp + out)
    return record(rid, NAME, {"messages": messages}, meta, _tools(span, meta, messages))


def convert(source: Source, kind: str, cfg, emit: Emitter):
    ann = load_annotations(source, cfg.annotations, emit)
    if kind == "sft" and cfg.sessions:
        yield from _sessions(source, cfg, emit)
        return
    if kind == "preference":
        yield from _preferences(source, ann, emit)
        return
    for lineno, offset, sub, obj in iter_objects(source):
        if _is_annotation(obj):
            continue
        row = Row(source.name, lineno, obj)
        span = span_of(obj)
        if span.attrs.get(UNCONVERTIBLE):  # a translated span that is no model call (converters/otel.py)
            emit.reject(row, span.attrs[UNCONVERTIBLE], span.attrs.get(UNCONVERTIBLE_DETAIL, ""))
            continue
        if kind == "triplet":
            if span.kind != "RETRIEVER":
                emit.skip("not a retriever span")
                continue
            try:
                yield from ((row, r) for r in _triplets(span, ann.get(span.span_id or "", [])))
            except ROW_ERRORS as r_:
                r = as_reject(r_)
                emit.reject(row, r.reason, r.detail)
            continue
        if span.kind != "LLM":
            emit.skip("not an LLM span")
            continue
        labels = [a["label"] for a in ann.get(span.span_id or "", []) if "output" not in a]
        v = verdict(labels)
        if cfg.approved_only and v != "approved":
            emit.skip("not annotated approved" if v is None else "annotated rejected")
            continue
        try:
            inp, out = prompt_and_output(span)
            meta = {"source": NAME, "span_id": span.span_id}
            if v:
                meta["review"] = v
            if span.attrs.get("session.id") is not None:
                meta["session_id"] = span.attrs["session.id"]
            yield row, _sft_record(span, inp, out, meta, _span_id(span, obj))
        except ROW_ERRORS as r_:
            r = as_reject(r_)
            emit.reject(row, r.reason, r.detail)


def _triplets(span: Span, anns: list[dict]) -> Iterator[dict]:
    query = _text_value(span.attrs, "input")
    if query is None:
        raise Reject("retriever span without a query")
    docs: dict[int, dict] = {}
    for k, v in span.attrs.items():
        m = re.match(r"retrieval\.documents\.(\d+)\.document\.(.+)$", k)
        if m:
            docs.setdefault(int(m.group(1)), {})[m.group(2)] = v
    labels: dict[int, str] = {}
    for i, d in docs.items():
        for key in ("relevance", "label", "metadata.relevance", "metadata.label", "metadata.relevant"):
            if key in d:
                labels[i] = str(d[key]).strip().lower()
        if "metadata" in d and isinstance(d["metadata"], str):
            try:
                md = orjson.loads(d["metadata"])
                for key in ("relevance", "label", "relevant"):
                    if isinstance(md, dict) and key in md:
                        labels[i] = str(md[key]).strip().lower()
            except orjson.JSONDecodeError:
                pass
    for a in anns:
        if "document_position" in a:
            labels[int(a["document_position"])] = a["label"]
    pos = [docs[i]["content"] for i in sorted(docs) if labels.get(i) in RELEVANT and isinstance(docs[i].get("content"), str)]
    neg = [docs[i]["content"] for i in sorted(docs) if labels.get(i) in IRRELEVANT and isinstance(docs[i].get("content"), str)]
    if not pos or not neg:
        raise Reject("no relevant and irrelevant document pair")
    for j, p in enumerate(pos):
        yield record(f"{_span_id(span, query)}-{j + 1}", NAME, {"anchor": query, "positive": p, "negative": neg[j % len(neg)]},
                     {"source": NAME, "span_id": span.span_id})


def _preferences(source: Source, ann: dict, emit: Emitter):
    # pass 1: prompt key -> [(line, offset, sub)] of LLM spans that carry a verdict or extra outputs
    groups: dict[bytes, list[tuple[int, int, int]]] = {}
    for lineno, offset, sub, obj in iter_objects(source):
        if _is_annotation(obj):
            continue
        span = span_of(obj)
        if span.attrs.get(UNCONVERTIBLE):
            emit.reject(Row(source.name, lineno, obj), span.attrs[UNCONVERTIBLE], span.attrs.get(UNCONVERTIBLE_DETAIL, ""))
            continue
        if span.kind != "LLM":
            emit.skip("not an LLM span")
            continue
        if not ann.get(span.span_id or ""):
            emit.skip("not annotated")
            continue
        try:
            inp, _ = prompt_and_output(span)
        except ROW_ERRORS as r_:
            r = as_reject(r_)
            emit.reject(Row(source.name, lineno, obj), r.reason, r.detail)
            continue
        key = hashlib.sha1(orjson.dumps(inp, option=orjson.OPT_SORT_KEYS)).digest()
        groups.setdefault(key, []).append((lineno, offset, sub))
    # pass 2: per prompt, the first approved and the first rejected output
    for members in groups.values():
        chosen = rejected = None
        first_row = None
        for lineno, offset, sub in members:
            obj = _read(source, offset, lineno, sub)
            span = span_of(obj)
            row = Row(source.name, lineno, obj)
            first_row = first_row or (row, span)
            inp, out = prompt_and_output(span)
            anns = ann.get(span.span_id or "", [])
            v = verdict([a["label"] for a in anns if "output" not in a])
            outputs = [(v, out)] + [(verdict([a["label"]]), [{"role": "assistant", "content": a["output"]}])
                                    for a in anns if isinstance(a.get("output"), str)]
            for verdict_, msgs in outputs:
                if verdict_ == "approved" and chosen is None:
                    chosen = (span, inp, msgs)
                elif verdict_ == "rejected" and rejected is None:
                    rejected = (span, inp, msgs)
        if chosen is None or rejected is None:
            emit.skip("no approved and rejected output for the prompt")
            continue
        row, span = first_row
        try:
            prompt = openai.build_messages(chosen[1], need_assistant=False)
            c, r = openai.build_messages(chosen[2]), openai.build_messages(rejected[2])
        except ROW_ERRORS as exc_:
            exc = as_reject(exc_)
            emit.reject(row, exc.reason, exc.detail)
            continue
        if c == r:
            emit.skip("identical chosen and rejected")
            continue
        cid, rjd = _span_id(chosen[0], chosen[2]), _span_id(rejected[0], rejected[2])
        rid = f"{cid}-vs-{rjd}" if cid != rjd else f"{cid}-pref"
        meta = {"source": NAME, "chosen_span": chosen[0].span_id, "rejected_span": rejected[0].span_id}
        yield row, record(rid, NAME, {"prompt": prompt, "chosen": c, "rejected": r}, meta,
                          _tools(chosen[0], meta, prompt, c, r))


def _sessions(source: Source, cfg, emit: Emitter):
    # pass 1: session id -> [(start, line, offset, sub)] of root spans
    sessions: dict[str, list[tuple[str, int, int, int]]] = {}
    for lineno, offset, sub, obj in iter_objects(source):
        if _is_annotation(obj):
            continue
        span = span_of(obj)
        if span.parent_id:
            continue  # only root spans are turns
        sid = span.attrs.get("session.id")
        if sid is None:
            emit.skip("root span without session.id")
            continue
        sessions.setdefault(str(sid), []).append((span.start, lineno, offset, sub))
    # pass 2: one trajectory per session, turns ordered by start time
    for sid, turns in sessions.items():
        if len(turns) < cfg.min_turns:
            emit.skip("fewer than min_turns turns")
            continue
        messages: list[dict] = []
        row = None
        try:
            for start, lineno, offset, sub in sorted(turns):
                obj = _read(source, offset, lineno, sub)
                row = row or Row(source.name, lineno, obj)
                span = span_of(obj)
                user, answer = _text_value(span.attrs, "input"), _text_value(span.attrs, "output")
                if user is None or answer is None:
                    raise Reject("session turn without input.value/output.value", f"span {span.span_id}")
                messages += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
        except ROW_ERRORS as r_:
            r = as_reject(r_)
            emit.reject(row, r.reason, r.detail)
            continue
        yield row, record(f"session-{sid}", NAME, {"messages": messages},
                          {"source": NAME, "session_id": sid, "turns": len(turns)})
