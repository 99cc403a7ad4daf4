"""A live Phoenix server -> sft, preference, triplet (``convert --from phoenix URL --project NAME``).

Spans are read through the maintained client (``arize-phoenix-client``, the ``phoenix`` extra)
page by page in insertion order (``GET /v1/projects/{project}/spans?sort=id&order=asc``, with
``--start-time`` / ``--end-time`` / ``--span-kinds``), each page with its span annotations
(``client.spans.get_span_annotations``: approved/rejected labels, scores). Every span is appended,
annotations attached, to ``OUT.phoenix-spans.jsonl`` beside the output; after each page the cursor
(the next span to read and the spool's length) is written atomically to ``OUT.phoenix.json``.
The records then come from that spool through the file-based traces converter
(:mod:`trajtune.converters.traces`): one conversion code path, two sources.

Resuming: a re-run with the same URL, project and filters cuts the spool back to the length the
cursor recorded (a page written by a killed run but not yet committed is fetched again) and asks
the server only for spans after the cursor, so nothing is fetched or written twice; new spans
that arrived since are picked up. ``--force`` starts over. Annotations are those a span had when
it was fetched.

The API key is read from the environment variable named by ``--api-key-env`` (default
``PHOENIX_API_KEY``), sent as a bearer token and never saved or printed; credentials in the URL
are shown as ``***@``.
"""
from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import orjson

from trajtune.converters import traces
from trajtune.converters.common import Emitter, Source
from trajtune.errors import ConfigError, DataError
from trajtune.jsonl import atomic_writer

NAME = "phoenix"
KINDS = traces.KINDS
EXTRA = "pip install 'trajtune[phoenix]' (arize-phoenix-client)"


def detect(obj: Any) -> bool:
    return False  # a live source: only with --from phoenix


def redact_url(url: str) -> str:
    from trajtune.generators.teacher import redact_url as redact

    return redact(url)


def _paths(out: str) -> tuple[Path, Path]:
    p = Path(out)
    stem = p.name
    for ext in (".jsonl", ".parquet"):
        if stem.endswith(ext):
            stem = stem[: -len(ext)]
    return p.with_name(stem + ".phoenix-spans.jsonl"), p.with_name(stem + ".phoenix.json")


def sidecars(out: str) -> dict:
    if out == "-":
        return {}
    spool, cursor = _paths(out)
    return {"the fetched spans": str(spool), "the cursor": str(cursor)}


class LiveSource(Source):
    """The spool of fetched spans read as a trace export; ``name`` says where they came from."""

    def __init__(self, path: str, emit: Emitter, name: str, info: dict, keep: bool):
        super().__init__(path, emit)
        self.name = name
        self.info = info
        self._keep = keep
        if not keep:
            self._tmp = path  # a spool for '-' output: removed on close


def _client(cfg):
    try:
        import httpx
        from phoenix.client import Client
    except ImportError:
        raise ConfigError("--from phoenix needs the Phoenix client", hint=EXTRA) from None
    url = cfg.input.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"--from phoenix: IN must be the server's URL (http://host:port), got {redact_url(url)!r}")
    headers = {}
    key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
    if key:
        headers["Authorization"] = f"Bearer {key}"
    http = httpx.Client(base_url=url, headers=headers, timeout=30.0)
    return Client(base_url=url, http_client=http), http


def _cursor_after(span_global_id: str) -> str:
    """The cursor of the span inserted after this one (Phoenix's ids are ``Span:<rowid>``)."""
    kind, _, rowid = base64.b64decode(span_global_id).decode().partition(":")
    return base64.b64encode(f"{kind}:{int(rowid) + 1}".encode()).decode()


def _fail(exc: Exception, cfg, shown: str) -> DataError:
    import httpx

    if isinstance(exc, httpx.HTTPStatusError):
        code = exc.response.status_code
        if code in (401, 403):
            return DataError(f"Phoenix at {shown} refused the request ({code}): authentication required",
                             hint=f"put the API key in the environment variable {cfg.api_key_env} (--api-key-env)")
        if code == 404:
            return DataError(f"Phoenix at {shown} has no project '{cfg.project}'",
                             hint="check --project (the name shown in Phoenix's projects list)")
        text = " ".join(exc.response.text.split())[:200]
        return DataError(f"Phoenix at {shown} answered {code}: {text}")
    if isinstance(exc, httpx.TransportError):
        return DataError(f"cannot reach Phoenix at {shown} ({type(exc).__name__}: {' '.join(str(exc).split())[:160]})",
                         hint="is the server running, and is the URL right?")
    if isinstance(exc, ValueError):  # a body that is not JSON
        return DataError(f"Phoenix at {shown} sent a response that is not JSON ({exc})")
    return DataError(f"Phoenix at {shown}: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}")


def _query(cfg) -> dict:
    """What the spool depends on: a resumed run must ask the same question."""
    return {"url": redact_url(cfg.input.rstrip("/")), "project": cfg.project, "start_time": cfg.start_time,
            "end_time": cfg.end_time, "span_kinds": sorted(cfg.span_kinds)}


def _iso(v: str | None, flag: str) -> str | None:
    if v is None:
        return None
    from datetime import datetime

    try:
        datetime.fromisoformat(v.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{flag}: not an ISO time: {v!r}", hint="e.g. 2026-12-01T00:00:00+00:00") from None
    return v.strip()


def open_source(cfg, out: str, emit: Emitter) -> LiveSource:
    """Fetch the spans not fetched yet into the spool, then read the spool as a trace export."""
    shown = redact_url(cfg.input.rstrip("/"))
    start, end = _iso(cfg.start_time, "--start-time"), _iso(cfg.end_time, "--end-time")
    keep = out != "-"
    if keep:
        spool, cursor_file = _paths(out)
    else:
        import tempfile

        fd, tmp = tempfile.mkstemp(prefix=f"trajtune-convert-{os.getpid()}-", suffix=".jsonl")
        os.close(fd)
        spool, cursor_file = Path(tmp), None
    state = {"query": _query(cfg), "cursor": None, "spool_bytes": 0, "spans": 0}
    resumed = 0
    if keep and not cfg.force and cursor_file.is_file() and spool.is_file():
        try:
            saved = orjson.loads(cursor_file.read_bytes())
        except orjson.JSONDecodeError:
            saved = None
        if isinstance(saved, dict) and saved.get("query") == state["query"] \
                and spool.stat().st_size >= int(saved.get("spool_bytes", 0)):
            state = saved
            resumed = int(saved.get("spans", 0))
    client, http = _client(cfg)
    fetched = 0
    try:
        with open(spool, "r+b" if resumed else "wb") as fh:
            fh.truncate(state["spool_bytes"])  # a page a killed run wrote but did not commit goes
            fh.seek(state["spool_bytes"])
            while True:
                params: dict[str, Any] = {"limit": cfg.page_size, "sort": "id", "order": "asc"}
                if start:
                    params["start_time"] = start
                if end:
                    params["end_time"] = end
                if cfg.span_kinds:
                    params["span_kind"] = [k.upper() for k in cfg.span_kinds]
                if state["cursor"]:
                    params["cursor"] = state["cursor"]
                try:
                    r = http.get(f"v1/projects/{cfg.project}/spans", params=params, headers={"accept": "application/json"})
                    r.raise_for_status()
                    page = r.json()
                    spans = [s for s in page.get("data") or [] if isinstance(s, dict)]
                    ids = [s["context"]["span_id"] for s in spans
                           if isinstance(s.get("context"), dict) and s["context"].get("span_id")]
                    anns = client.spans.get_span_annotations(span_ids=ids, project_identifier=cfg.project) if ids else []
                except Exception as exc:  # the server's answer, in one line
                    raise _fail(exc, cfg, shown) from None
                by_span: dict[str, list] = {}
                for a in anns:
                    if isinstance(a, dict) and a.get("span_id"):
                        by_span.setdefault(str(a["span_id"]), []).append(
                            {k: a.get(k) for k in ("name", "result", "annotator_kind") if k in a})
                for s in spans:
                    sid = (s.get("context") or {}).get("span_id") if isinstance(s.get("context"), dict) else None
                    fh.write(orjson.dumps({**s, "annotations": by_span.get(str(sid), [])}) + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
                fetched += len(spans)
                nxt = page.get("next_cursor")
                if not nxt and spans and isinstance(spans[-1].get("id"), str):
                    try:
                        nxt = _cursor_after(spans[-1]["id"])  # where the next new span will be
                    except (ValueError, UnicodeDecodeError):
                        nxt = None
                state = {**state, "cursor": nxt or state["cursor"], "spool_bytes": fh.tell(),
                         "spans": state["spans"] + len(spans)}
                if keep:
                    with atomic_writer(cursor_file) as cf:
                        cf.write(orjson.dumps(state, option=orjson.OPT_INDENT_2) + b"\n")
                if not page.get("next_cursor") or not spans:
                    break
    finally:
        http.close()
    info = {"server": shown, "project": cfg.project, "fetched": fetched, "resumed_after": resumed,
            "spans": state["spans"]}
    return LiveSource(str(spool), emit, f"phoenix:{shown}/{cfg.project}", info, keep)


def finish(source: LiveSource) -> None:
    return None


def summary(source: LiveSource) -> dict:
    return {"live": source.info}


def convert(source: Source, kind: str, cfg, emit: Emitter):
    for row, rec in traces.convert(source, kind, cfg, emit):
        rec["metadata"]["source"] = NAME  # converted by the traces path, read from here
        yield row, rec
