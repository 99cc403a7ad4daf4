"""Interaction logs kept in Redis -> sft, preference, group (``convert --from redis redis://host:port/db``).

The layout read (``P`` = ``--key-prefix``, default empty):

* ``P interactions``: a sorted set, one member per interaction, scored by its timestamp (Unix
  seconds);
* ``P interactions:high_quality``: the same for interactions with quality >= 0.8 (read instead
  of the full set for ``--to sft`` with ``--min-quality`` >= 0.8);
* ``P interaction:<interaction_id>``: a string holding the interaction's JSON payload
  (``interaction_id``, ``timestamp``, ``query``, ``answer``, ``agent_type``, ``quality_scores``,
  ``session_id``, ``latency_ms``, ``tools_used``, ``error_occurred``). A member that is itself a
  JSON object is taken as the payload.

Members are read with ``ZRANGEBYSCORE`` in pages of ``--page-size`` (from ``--days-back`` before
``--as-of`` when given), their payloads with one ``MGET`` a page, and streamed to a temporary
JSONL spool, so memory stays bounded; the records come from the interaction-log converter
(:mod:`trajtune.converters.interactions`), with its filters. A payload that is missing or not a
JSON object is a reject naming its key. A password comes from the URL or from the environment
variable named by ``--api-key-env`` and is never saved or printed.
"""
from __future__ import annotations

import os
import tempfile
from typing import Any

import orjson

from trajtune.converters import interactions
from trajtune.converters.common import SPOOL_PREFIX, Emitter, Source, _sweep_spools
from trajtune.errors import ConfigError, DataError
from trajtune.jsonl import Row

NAME = "redis"
KINDS = interactions.KINDS
EXTRA = "pip install 'trajtune[redis]' (redis-py)"


def detect(obj: Any) -> bool:
    return False  # a live source: only with --from redis


def redact_url(url: str) -> str:
    from trajtune.generators.teacher import redact_url as redact

    return redact(url)


def sidecars(out: str) -> dict:
    return {}


def keys(prefix: str) -> dict:
    return {"all": f"{prefix}interactions", "high_quality": f"{prefix}interactions:high_quality",
            "payload": f"{prefix}interaction:"}


class LiveSource(Source):
    def __init__(self, path: str, emit: Emitter, name: str, info: dict):
        super().__init__(path, emit)
        self.name = name
        self.info = info
        self._tmp = path  # removed on close


def _fail(exc: Exception, cfg, shown: str) -> DataError:
    import redis

    text = " ".join(str(exc).split())[:200]
    if isinstance(exc, redis.AuthenticationError) or "NOAUTH" in text or "WRONGPASS" in text:
        return DataError(f"Redis at {shown} needs a password: {text}",
                         hint="put it in the environment variable REDIS_PASSWORD (or the one --api-key-env names)")
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        return DataError(f"cannot reach Redis at {shown} ({text})", hint="is the server running, and is the URL right?")
    if isinstance(exc, redis.ResponseError) and "WRONGTYPE" in text:
        return DataError(f"Redis at {shown}: a key of the interaction log has the wrong type ({text})",
                         hint="the layout is in the README (convert --from redis); --key-prefix adapts the names")
    return DataError(f"Redis at {shown}: {type(exc).__name__}: {text}")


def open_source(cfg, out: str, emit: Emitter) -> LiveSource:
    try:
        import redis
    except ImportError:
        raise ConfigError("--from redis needs redis-py", hint=EXTRA) from None
    url = cfg.input
    shown = redact_url(url)
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"--from redis: IN must be a redis:// URL (redis://host:port/db), got {shown!r}")
    var = "REDIS_PASSWORD" if cfg.api_key_env == "PHOENIX_API_KEY" else cfg.api_key_env  # the default is Phoenix's
    password = os.environ.get(var) if var else None
    try:
        client = redis.Redis.from_url(url, socket_timeout=30, socket_connect_timeout=10,
                                      **({"password": password} if password else {}))
    except ValueError as exc:
        raise ConfigError(f"--from redis: not a Redis URL: {shown} ({exc})") from None
    k = keys(cfg.key_prefix)
    kind = cfg.to if cfg.to in KINDS else "sft"
    index = k["high_quality"] if kind == "sft" and cfg.min_quality >= 0.8 else k["all"]
    low: Any = "-inf"
    cutoff = interactions._cutoff(cfg)
    if cutoff is not None:
        low = cutoff.timestamp()
    _sweep_spools()
    fd, spool = tempfile.mkstemp(prefix=f"{SPOOL_PREFIX}{os.getpid()}-", suffix=".jsonl")
    members = missing = 0
    try:
        with os.fdopen(fd, "wb") as fh:
            try:
                if not client.exists(index):
                    if index == k["high_quality"] and client.exists(k["all"]):
                        index = k["all"]  # no high-quality index kept: the full log, filtered by quality
                    else:
                        raise DataError(f"Redis at {shown} has no key '{index}'",
                                        hint="the layout is in the README (convert --from redis); "
                                             "--key-prefix adapts the names")
                offset = 0
                while True:
                    page = client.zrangebyscore(index, low, "+inf", start=offset, num=cfg.page_size)
                    if not page:
                        break
                    offset += len(page)
                    direct = {}
                    ids = []
                    for m in page:
                        text = m.decode("utf-8", "replace") if isinstance(m, bytes) else str(m)
                        if text.lstrip().startswith("{"):
                            direct[text] = m
                        ids.append(text)
                    payload_keys = [f"{k['payload']}{i}" for i in ids if i not in direct]
                    values = iter(client.mget(payload_keys) if payload_keys else [])
                    for i in ids:
                        members += 1
                        key = f"{index} member {i[:80]}" if i in direct else f"{k['payload']}{i}"
                        raw = direct[i] if i in direct else next(values)
                        if raw is None:
                            missing += 1
                            emit.reject(Row(key, None, None), "payload missing",
                                        f"{key} (listed in {index}) does not exist")
                            continue
                        try:
                            obj = orjson.loads(raw)
                        except orjson.JSONDecodeError as exc:
                            emit.reject(Row(key, None, None), "payload is not JSON", f"{key}: {exc}",
                                        raw=bytes(raw[:2000]).decode("utf-8", "replace"))
                            continue
                        if not isinstance(obj, dict):
                            emit.reject(Row(key, None, obj), "payload is not a JSON object", key)
                            continue
                        obj.setdefault("interaction_id", i if i not in direct else obj.get("interaction_id"))
                        fh.write(orjson.dumps(obj) + b"\n")
            except DataError:
                raise
            except redis.RedisError as exc:
                raise _fail(exc, cfg, shown) from None
            finally:
                client.close()
        info = {"server": shown, "key": index, "members": members}
        return LiveSource(spool, emit, f"redis:{shown}/{index}", info)
    except BaseException:
        try:
            os.unlink(spool)
        except OSError:
            pass
        raise


def finish(source: LiveSource) -> None:
    return None


def summary(source: LiveSource) -> dict:
    return {"live": source.info}


class _Keyed:
    """The emitter, with each reject naming the payload's key instead of a spool line."""

    def __init__(self, emit: Emitter, prefix: str):
        self._emit, self._prefix = emit, prefix

    def row(self, row: Row | None) -> Row | None:
        if row is not None and isinstance(row.obj, dict) and row.obj.get("interaction_id") is not None:
            return Row(f"{self._prefix}{row.obj['interaction_id']}", None, row.obj)
        return row

    def reject(self, row, reason, detail="", record=None, raw=None):
        self._emit.reject(self.row(row), reason, detail, record=record, raw=raw)

    def __getattr__(self, name):
        return getattr(self._emit, name)


def convert(source: Source, kind: str, cfg, emit: Emitter):
    keyed = _Keyed(emit, keys(cfg.key_prefix)["payload"])
    for row, rec in interactions.convert(source, kind, cfg, keyed):
        rec["metadata"]["source"] = NAME
        yield keyed.row(row), rec
