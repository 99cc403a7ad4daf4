"""Teacher backend: any OpenAI-compatible chat endpoint solves tasks with function calling.

For each task (its user request and the tools it offers) the teacher is asked for the next
step; its tool calls are run by the catalog simulators and the observations are sent back,
until it gives a final answer or the step limit is reached. Each finished trajectory becomes an
``sft`` record (``metadata.review: pending``) after validation: the record schema, every call
names an offered tool, its arguments satisfy the tool's JSON-Schema ``parameters``, every call
is answered by exactly one tool result, and the trajectory ends with a final answer. Invalid
trajectories go to the rejects file with the reason. When the task says what the first step
should be (``expected``, as template tasks do), THE scorer's verdict on the teacher's first turn
is kept in ``metadata.expected_match``; ``verify`` rejects mismatches as ``off_task``.

Transport: the ``openai`` client (``max_retries=0``), ``concurrency`` episodes in parallel
threads, a per-request ``timeout``, and tenacity retries with exponential backoff (honouring
``Retry-After``) on 429, 408/409, 5xx, timeouts and dropped connections. 401/403/404 stop the
run: the key or the model name is wrong and every request would fail the same way.

Secrets. The API key is read from the environment variable named by ``api_key_env`` and only
handed to the client: it is never printed, logged, saved in a record, a reject or the summary, and
every string the server returns (content, tool-call names and arguments, error bodies) is scrubbed
of it (``***``) before it is stored or shown. Credentials in ``base_url`` (``http://user:pass@host``)
are used for the requests only: whatever is saved or printed shows :func:`redact_url`'s
``http://***@host``.

Malformed responses (a body that is not JSON, an HTML page with status 200, no ``choices``, a null
``message`` or ``function``, ...) fail that one task (``malformed_response``), never the run; such
failures are also logged in the rejects file (``failed: true``, with ``record_id`` instead of
``id``, so a re-run tries the task again).

Resume: records and rejects are appended with :class:`trajtune.jsonl.Appender`; a task whose
record (or reject) id is already there is skipped, so re-running appends only what is missing.
Transport failures (retries exhausted) are not written anywhere: a re-run tries them again.
"""
from __future__ import annotations

import json
import os
import random
import re
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import urlparse

from trajtune.config import field
from trajtune.errors import ConfigError, RunError
from trajtune.jsonl import MAX_DEPTH, too_deep

DEFAULT_SYSTEM = ("You are a software engineering agent. Use the offered tools when they help, one step at a time; "
                  "when the task is done, reply with a short final answer without calling a tool.")

# Reasons a trajectory is rejected (written to the rejects file).
REJECT_REASONS = ("schema", "unknown_tool", "invalid_arguments", "unparsable_arguments", "unanswered_call",
                  "no_final_answer", "empty_answer", "truncated", "step_limit", "bad_request", "off_task")
# Reasons a task failed (a re-run retries them); transport failures are not written anywhere,
# the LOGGED ones also go to the rejects file (without an ``id``) so their detail can be read.
FAIL_REASONS = ("rate_limited", "server_error", "timeout", "connection", "api_error", "malformed_response",
                "internal_error")
LOGGED_FAILURES = ("malformed_response", "internal_error")
NO_KEY = "not-needed"  # the placeholder key for loopback endpoints (not a secret)
ARGS_DEPTH = MAX_DEPTH - 8  # a record holds arguments 7 levels down (messages, tool_calls, function, ...)
_USERINFO = re.compile(r"(?<=://)[^/?#\s]*@")  # credentials in a URL inside free text


def redact_url(url: str) -> str:
    """``url`` with its credentials (``user:pass@``) shown as ``***@``: for everything saved or printed.
    Everything up to the last ``@`` goes, so a password with an unencoded ``/``, ``#`` or ``@`` does too."""
    return re.sub(r"(?<=://).*@", "***@", str(url), flags=re.S)


@dataclass
class TeacherOptions:
    """The teacher's options, declared once: ``generate trajectories --backend openai`` takes them as
    flags (its config inherits this class) and :class:`TeacherConfig` adds what only the API needs."""

    base_url: str | None = field(None, metavar="URL", help="(--backend openai) OpenAI-compatible endpoint, e.g. "
                                                           "http://127.0.0.1:8000/v1; credentials in it are never saved or printed")
    model: str | None = field(None, help="(--backend openai) the model name the endpoint serves")
    api_key_env: str = field("OPENAI_API_KEY", metavar="VAR",
                             help="(--backend openai) environment variable holding the API key (never saved)")
    concurrency: int = field(4, help="(--backend openai) episodes (and so requests) in flight at once")
    timeout: float = field(60.0, help="(--backend openai) seconds before one request times out (then it is retried)")
    max_retries: int = field(4, help="(--backend openai) retries per request on 429/5xx/timeouts, exponential backoff")
    backoff: float = field(1.0, help="(--backend openai) seconds before the first retry; doubles each time (max 30 s)")
    max_steps: int = field(8, help="(--backend openai) teacher turns per trajectory before it is rejected (step_limit)")
    temperature: float = field(0.2, help="(--backend openai) sampling temperature sent to the endpoint")
    reply_limit: int = field(1024, help="(--backend openai) max completion tokens per request (sent as max_tokens)")
    verify: bool = field(False, help="(--backend openai) reject (off_task) a trajectory whose first step the scorer "
                                     "fails against the task's expected calls; metadata.expected_match is recorded either way")

    def check_teacher(self) -> None:
        if not self.base_url:
            raise ConfigError("--base-url is required with --backend openai", hint="e.g. --base-url http://127.0.0.1:8000/v1")
        if urlparse(self.base_url).scheme not in ("http", "https"):
            raise ConfigError(f"--base-url must start with http:// or https://, got {redact_url(self.base_url)!r}")
        if not self.model:
            raise ConfigError("--model is required with --backend openai", hint="the model name the endpoint serves")
        if self.concurrency < 1:
            raise ConfigError("--concurrency must be at least 1")
        if self.timeout <= 0:
            raise ConfigError("--timeout must be positive")
        if self.max_retries < 0:
            raise ConfigError("--max-retries must be 0 or more")
        if self.max_steps < 1:
            raise ConfigError("--max-steps must be at least 1")


@dataclass
class TeacherConfig(TeacherOptions):
    """What :func:`generate` runs with: the teacher options plus the request seed and a fallback system message."""

    seed: int | None = field(None, help="seed sent to the endpoint (if it supports one)")
    system_prompt: str = field(DEFAULT_SYSTEM, help="system message when the task has none")

    def check(self) -> None:
        self.check_teacher()

    @classmethod
    def of(cls, cmd: Any) -> "TeacherConfig":
        """The teacher settings of a ``generate trajectories`` config (its TeacherOptions fields and
        its system prompt; no request seed is sent, as before)."""
        from dataclasses import fields

        return cls(**{f.name: getattr(cmd, f.name) for f in fields(TeacherOptions)}, system_prompt=cmd.system_prompt)


def api_key(cfg: TeacherConfig) -> str:
    """The key from the named environment variable; a loopback endpoint may go without one."""
    key = os.environ.get(cfg.api_key_env)
    if key:
        return key
    host = urlparse(cfg.base_url or "").hostname or ""
    if host in ("localhost", "127.0.0.1", "::1"):
        return NO_KEY
    raise ConfigError(f"environment variable {cfg.api_key_env} is not set",
                      hint=f"export {cfg.api_key_env}=... or name another variable with --api-key-env")


# ---------------------------------------------------------------------------------------------
# counters shared by the worker threads


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.retries = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def add(self, **kw: int) -> None:
        with self._lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + (v or 0))


class Fatal(Exception):
    """A failure that every request would repeat (bad key, unknown model): stop the run."""


class Failed(Exception):
    """Retries exhausted for one task: not a reject, a re-run tries it again."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class Rejected(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _retryable(exc: BaseException) -> bool:
    import openai

    if isinstance(exc, openai.APIConnectionError):  # APITimeoutError is one
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return False


def _retry_after(exc: BaseException) -> float | None:
    resp = getattr(exc, "response", None)
    value = resp.headers.get("retry-after") if resp is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _is_secret(key: str) -> bool:
    return bool(key) and len(key) >= 4 and key != NO_KEY


def _redact(text: Any, key: str, limit: int = 300) -> str:
    """A detail or message for display: the key and URL credentials as ``***``, then cut to ``limit``."""
    text = _USERINFO.sub("***@", str(text))
    if _is_secret(key):
        text = text.replace(key, "***")
    return text[:limit]


def _scrub(value: Any, key: str) -> Any:
    """``value`` (server-derived: str, or dict/list of them, keys included) with the key as ``***``; not cut."""
    if not _is_secret(key):
        return value
    if isinstance(value, str):
        return value.replace(key, "***")
    if isinstance(value, dict):
        return {_scrub(k, key): _scrub(v, key) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, key) for v in value]
    return value


def _malformed(what: str, body: Any, key: str) -> Failed:
    """A ``malformed_response`` failure: what is wrong, then the start of the body (redacted, ~200 chars)."""
    shown = body if isinstance(body, str) else json.dumps(_scrub(body, key), ensure_ascii=False, default=str)
    return Failed("malformed_response", _redact(f"{what}: {shown}", key, limit=200))


def _decode(text: str, limit: int) -> Any:
    """JSON ``text`` nested at most ``limit`` levels (what a record can hold); ValueError otherwise."""
    try:
        obj = json.loads(text)
    except RecursionError:
        raise ValueError(f"nested deeper than {limit} levels") from None
    if too_deep(text.encode(), obj, limit):
        raise ValueError(f"nested deeper than {limit} levels")
    return obj


def _request(client: Any, cfg: TeacherConfig, stats: Stats, key: str, **kwargs: Any) -> dict:
    """One chat completion (the decoded body) with retries on transient errors; classified failures otherwise."""
    import openai
    from tenacity import RetryError, Retrying, retry_if_exception, stop_after_attempt

    def wait(state: Any) -> float:
        base = min(cfg.backoff * 2 ** (state.attempt_number - 1), 30.0) * random.uniform(0.75, 1.0)
        ra = _retry_after(state.outcome.exception())
        return max(base, min(ra, 60.0)) if ra is not None else base

    def call() -> str:
        stats.add(requests=1)
        # the raw body: the client's lenient models would hide a malformed one until it is used
        return client.chat.completions.with_raw_response.create(**kwargs).text

    retrying = Retrying(stop=stop_after_attempt(cfg.max_retries + 1), wait=wait, reraise=True,
                        retry=retry_if_exception(_retryable), before_sleep=lambda s: stats.add(retries=1))
    url = redact_url(cfg.base_url or "")
    try:
        text = retrying(call)
    except openai.AuthenticationError:
        raise Fatal(f"{url} refused the API key (401): check the variable {cfg.api_key_env}") from None
    except openai.PermissionDeniedError:
        raise Fatal(f"{url} denied access (403) for model {cfg.model!r}") from None
    except openai.NotFoundError:
        raise Fatal(f"{url}: model {cfg.model!r} or the chat endpoint was not found (404); "
                    "check --model and that --base-url ends in /v1") from None
    except openai.BadRequestError as exc:
        raise Rejected("bad_request", _redact(getattr(exc, "message", exc), key)) from None
    except openai.RateLimitError:
        raise Failed("rate_limited", f"429 after {cfg.max_retries} retries") from None
    except openai.APITimeoutError:
        raise Failed("timeout", f"no response within {cfg.timeout:g} s after {cfg.max_retries} retries") from None
    except openai.APIConnectionError:
        raise Failed("connection", f"cannot reach {url}") from None
    except openai.APIStatusError as exc:
        reason = "server_error" if exc.status_code >= 500 else "api_error"
        raise Failed(reason, f"HTTP {exc.status_code} after retries") from None
    except openai.APIResponseValidationError as exc:
        raise _malformed("the response does not parse", getattr(exc, "message", exc), key) from None
    except (openai.APIError, RetryError) as exc:  # RetryError: rare with reraise=True
        raise Failed("api_error", _redact(getattr(exc, "message", exc), key, limit=200)) from None
    try:
        body = _decode(text, MAX_DEPTH)
    except json.JSONDecodeError:  # a truncated body, an HTML error page served with 200, nothing at all
        raise _malformed("the response is not JSON", text.strip() or "(empty body)", key) from None
    except ValueError as exc:
        raise _malformed(f"the response is {exc}", text, key) from None
    if not isinstance(body, dict):
        raise _malformed(f"the response is a JSON {type(body).__name__}, not an object", body, key)
    return body


def _usage(body: dict) -> tuple[int, int]:
    """(prompt, completion) tokens a response reports; 0 for what is missing or not a count."""
    u = body.get("usage")
    u = u if isinstance(u, dict) else {}
    return tuple(v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0  # type: ignore[return-value]
                 for v in (u.get("prompt_tokens"), u.get("completion_tokens")))


def _message(body: dict, key: str) -> tuple[dict, Any]:
    """(message, finish_reason) of the first choice, its strings key-scrubbed and its shape checked:
    ``content`` a string or null, ``tool_calls`` a list of ``{"function": {"name": str, ...}}``.
    Raises Failed("malformed_response") otherwise."""
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        what = "the response has no choices" if not choices else f"choices is a {type(choices).__name__}, not a list"
        raise _malformed(what, body, key)
    choice = choices[0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise _malformed("choices[0].message is not an object", body, key)
    message = _scrub(message, key)
    if not isinstance(message.get("content"), (str, type(None))):
        raise _malformed("the message content is not a string", body, key)
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise _malformed("tool_calls is not a list", body, key)
    for i, c in enumerate(calls):
        fn = c.get("function") if isinstance(c, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise _malformed(f"tool_calls[{i}] has no function name", body, key)
    return message, choice.get("finish_reason")


# ---------------------------------------------------------------------------------------------
# one episode


def task_prompt(task: dict) -> list[dict]:
    """The opening messages of a task record (``prompt``) or an sft record (up to its first user turn)."""
    if isinstance(task.get("prompt"), list):
        return [dict(m) for m in task["prompt"]]
    out = []
    for m in task.get("messages") or []:
        out.append(dict(m))
        if m.get("role") == "user":
            break
    return out


def _to_api(messages: list[dict]) -> list[dict]:
    """Our messages (arguments as objects) -> OpenAI wire format (arguments as JSON strings)."""
    out = []
    for m in messages:
        w: dict[str, Any] = {"role": m["role"], "content": m.get("content") or ""}
        if m.get("tool_calls"):
            w["tool_calls"] = [{"id": c["id"], "type": "function",
                                "function": {"name": c["function"]["name"],
                                             "arguments": json.dumps(c["function"]["arguments"], ensure_ascii=False)}}
                               for c in m["tool_calls"]]
        if m["role"] == "tool":
            w["tool_call_id"] = m["tool_call_id"]
        out.append(w)
    return out


def _calls_of(message: dict, key: str) -> tuple[str, list[tuple[str, Any]]]:
    """(thought, [(name, arguments)]) from a checked, scrubbed response message (:func:`_message`).
    Structured ``tool_calls`` first; otherwise ``<tool_call>`` blocks in the text (endpoints that do
    not parse calls). Decoded arguments are scrubbed again (a JSON escape can spell the key)."""
    from trajtune.chat import parse_tool_calls

    content = message.get("content") or ""
    if message.get("tool_calls"):
        calls = []
        for c in message["tool_calls"]:
            name, args = c["function"]["name"], c["function"].get("arguments")
            if isinstance(args, str):
                try:
                    args = _decode(args, ARGS_DEPTH) if args.strip() else {}
                except json.JSONDecodeError:
                    raise Rejected("unparsable_arguments", f"{name}: arguments are not JSON: {args[:80]!r}") from None
                except ValueError as exc:
                    raise Rejected("unparsable_arguments", f"{name}: arguments {exc}") from None
            calls.append((name, _scrub(args, key)))
        return content.strip(), calls
    if "<tool_call>" in content:
        parsed = parse_tool_calls(content)
        if parsed.errors:
            raise Rejected("unparsable_arguments", f"<tool_call> block: {', '.join(parsed.errors)}")
        if any(too_deep(content.encode(), c["arguments"], ARGS_DEPTH) for c in parsed.calls):
            raise Rejected("unparsable_arguments",
                           f"<tool_call> block: arguments nested deeper than {ARGS_DEPTH} levels")
        return _scrub(parsed.content, key), [(_scrub(c["name"], key), _scrub(c["arguments"], key))
                                             for c in parsed.calls]
    return content.strip(), []


def _tool_index(tools: list[dict]) -> dict[str, dict]:
    return {t["function"]["name"]: (t["function"].get("parameters") or {"type": "object"})
            for t in tools or [] if isinstance(t, dict) and isinstance(t.get("function"), dict)}


def _arg_problems(params: dict, arguments: Any) -> list[str]:
    """What is wrong with ``arguments`` under ``params`` (the teacher's schemas are data: offline, bounded)."""
    from trajtune.jsonschemas import arg_schema

    if not isinstance(arguments, dict):
        return [f"arguments must be a JSON object, got {type(arguments).__name__}"]
    v = arg_schema(params)
    if v.schema_error:
        return [f"the tool's parameters schema cannot be used: {v.schema_error}"]
    return v.errors(arguments)


# the checks of THE record check (trajtune.records.check) that make a teacher trajectory unusable,
# by the reject reason the teacher reports them under
_REASONS = {"schema": "schema", "unknown_tool": "unknown_tool", "arguments_schema": "invalid_arguments",
            "tool_call_id_unanswered": "unanswered_call", "orphan_tool_message": "unanswered_call",
            "duplicate_call_id": "unanswered_call", "call_without_result": "unanswered_call"}


def check_trajectory(record: dict) -> list[tuple[str, str]]:
    """Problems with one sft trajectory as (reason, detail), one per reason; empty when it is valid.

    The record check is trajtune.records.check (schema + validate's agent checks, warnings
    included: a call left without its result is unusable here); the teacher adds only what is
    its own: the trajectory must end with a non-empty final answer."""
    from trajtune.records import check

    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, msg, where in check(record, "sft", errors_only=False):
        reason = _REASONS.get(name)
        if reason is not None and reason not in seen:
            seen.add(reason)
            problems.append((reason, f"{msg} (at {where})"[:300]))
    if "schema" in seen:
        return problems
    last = record["messages"][-1]
    if last["role"] != "assistant" or last.get("tool_calls"):
        problems.append(("no_final_answer", "the trajectory does not end with a final answer"))
    elif not (last.get("content") or "").strip():
        problems.append(("empty_answer", "the final answer is empty"))
    return problems


def validate_errors(record: dict, kind: str) -> list[tuple[str, str]]:
    """Error-level issues of THE record check (what ``trajtune validate`` reports) for one record,
    so every record written passes ``trajtune validate``."""
    from trajtune.records import check

    return [(name, f"{msg} at {where}") for name, msg, where in check(record, kind)]


Simulate = Callable[[str, Any], str]


def catalog_simulator(catalog: Any) -> Simulate:
    """Observations from the tool catalog's simulators (``Error: ...`` for tools it lacks)."""

    def simulate(name: str, arguments: Any) -> str:
        if name not in catalog:
            return f"Error: unknown tool {name!r}"
        return catalog[name].simulate(arguments)

    return simulate


def run_episode(client: Any, cfg: TeacherConfig, task: dict, simulate: Simulate, stats: Stats, key: str) -> tuple[list[dict], dict]:
    """Let the teacher solve one task. Returns (messages, usage); raises Rejected/Failed/Fatal."""
    tools = list(task.get("tools") or [])
    offered = _tool_index(tools)
    messages = task_prompt(task)
    if not messages or messages[0].get("role") != "system":
        messages.insert(0, {"role": "system", "content": cfg.system_prompt})
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "requests": 0, "prompt_len": len(messages)}
    n_calls = 0
    extra: dict[str, Any] = {"seed": cfg.seed} if cfg.seed is not None else {}
    if tools:
        extra["tools"] = tools
    for _ in range(cfg.max_steps):
        try:
            body = _request(client, cfg, stats, key, model=cfg.model, messages=_to_api(messages),
                            temperature=cfg.temperature, max_tokens=cfg.reply_limit, **extra)
        except Failed as exc:
            raise _with(exc, messages)
        usage["requests"] += 1
        pt, ct = _usage(body)
        usage["prompt_tokens"] += pt
        usage["completion_tokens"] += ct
        stats.add(prompt_tokens=pt, completion_tokens=ct)
        try:
            message, finish_reason = _message(body, key)
            thought, calls = _calls_of(message, key)
        except (Rejected, Failed) as exc:
            raise _with(exc, messages)
        except RecursionError:  # a <tool_call> block nested past what the parser can follow
            raise _with(Failed("malformed_response", "the reply is nested too deeply to parse"), messages) from None
        if not calls:
            if finish_reason == "length":
                raise _with(Rejected("truncated", f"the reply hit max_tokens={cfg.reply_limit}"), messages)
            messages.append({"role": "assistant", "content": thought})
            return messages, usage
        tool_calls = []
        for name, args in calls:
            n_calls += 1
            tool_calls.append({"id": f"call_{n_calls}", "type": "function", "function": {"name": name, "arguments": args}})
        messages.append({"role": "assistant", "content": thought or None, "tool_calls": tool_calls})
        # stop at the first bad call: the trajectory is invalid whatever follows
        for c in tool_calls:
            name, args = c["function"]["name"], c["function"]["arguments"]
            if name not in offered:
                raise _with(Rejected("unknown_tool", f"{name!r} is not an offered tool"), messages)
            errs = _arg_problems(offered[name], args)
            if errs:
                raise _with(Rejected("invalid_arguments", f"{name}: {errs[0]}"), messages)
        for c in tool_calls:
            messages.append({"role": "tool", "tool_call_id": c["id"], "name": c["function"]["name"],
                             "content": simulate(c["function"]["name"], c["function"]["arguments"])})
    raise _with(Rejected("step_limit", f"no final answer after {cfg.max_steps} teacher turns"), messages)


def _with(exc: Rejected | Failed, messages: list[dict]) -> Rejected | Failed:
    exc.messages = messages  # type: ignore[union-attr]
    return exc


# ---------------------------------------------------------------------------------------------
# the stage


def record_id(task: dict) -> str:
    from trajtune.records import content_id

    tid = task.get("id") or content_id({"prompt": task_prompt(task), "tools": task.get("tools")})
    return content_id({"task": tid, "backend": "openai"}, "traj-t-")


def make_client(cfg: TeacherConfig, key: str) -> Any:
    from openai import OpenAI

    return OpenAI(base_url=cfg.base_url, api_key=key, timeout=cfg.timeout, max_retries=0)


def generate(tasks: Iterable[dict], out: str | Path, cfg: TeacherConfig, *, count: int | None = None,
             simulate: Simulate, rejects: str | Path | None = None, max_tasks: int | None = None,
             progress: Callable[[int, int], None] | None = None) -> dict:
    """Solve tasks with the teacher and append valid trajectories to ``out``.

    ``count``: target number of records in ``out`` (None: one per task). Tasks are consumed
    until the target is met, the tasks run out, or ``max_tasks`` were tried (default 4 x count).
    ``progress(records in out, target)`` is called after each finished task.
    Returns the summary (no secrets in it).
    """
    from trajtune.jsonl import Appender

    cfg.check()
    key = api_key(cfg)
    rejects = Path(rejects) if rejects else default_rejects_path(out)
    stats = Stats()
    client = make_client(cfg, key)
    summary: dict[str, Any] = {"backend": "openai", "model": cfg.model, "written": 0, "existing": 0, "rejected": 0,
                               "failed": 0, "rejects": {}, "failures": {}, "by_category": {}, "by_difficulty": {}}
    with Appender(out) as app, Appender(rejects) as rej:
        summary["existing"] = len(app.existing_ids)
        target = count if count is not None else None
        need = None if target is None else max(0, target - len(app.existing_ids))
        limit = max_tasks if max_tasks is not None else (None if need is None else max(4 * need, need + 8))
        skip = app.existing_ids | rej.existing_ids
        it: Iterator[dict] = iter(tasks)
        pending: dict[Future, tuple[str, dict]] = {}
        tried = 0
        fatal: Fatal | None = None

        def submit_more(pool: ThreadPoolExecutor) -> None:
            nonlocal tried
            while len(pending) < cfg.concurrency and (need is None or summary["written"] + len(pending) < need):
                if limit is not None and tried >= limit:
                    return
                task = next(it, None)
                if task is None:
                    return
                rid = record_id(task)
                if rid in skip:
                    continue
                skip.add(rid)
                tried += 1
                pending[pool.submit(run_episode, client, cfg, task, simulate, stats, key)] = (rid, task)

        pool = ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix="teacher")
        try:
            submit_more(pool)
            while pending:
                done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                for fut in done:
                    rid, task = pending.pop(fut)
                    event = _finish(fut, rid, task, cfg, app, rej, summary, key)
                    if isinstance(event, Fatal):
                        fatal = fatal or event
                        continue
                    if progress:
                        progress(summary["existing"] + summary["written"], target if target is not None else 0)
                if fatal is None:
                    submit_more(pool)
        except BaseException:
            for f in pending:
                f.cancel()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if fatal is not None:
            raise RunError(str(fatal), hint=f"{summary['written']} record(s) were written before it stopped")
    summary.update(requests=stats.requests, retries=stats.retries, prompt_tokens=stats.prompt_tokens,
                   completion_tokens=stats.completion_tokens, tasks_tried=tried, out=str(out), rejects_file=str(rejects))
    summary["total"] = summary["existing"] + summary["written"]
    if target is not None:
        summary["target"] = target
        summary["short"] = max(0, target - summary["total"])
    if summary["failed"] and not summary["written"] and not summary["existing"]:
        reasons = ", ".join(f"{k}: {v}" for k, v in summary["failures"].items())
        raise RunError(f"every request to {redact_url(cfg.base_url or '')} failed ({reasons})",
                       hint="check that the server is up and --timeout/--max-retries suit it")
    return summary


def default_rejects_path(out: str | Path) -> Path:
    p = Path(out)
    name = p.name[: -len(".jsonl")] if p.name.endswith(".jsonl") else p.name
    return p.with_name(name + ".rejects.jsonl")


def _finish(fut: Future, rid: str, task: dict, cfg: TeacherConfig, app: Any, rej: Any, summary: dict, key: str):
    meta_in = dict(task.get("metadata") or {})
    tid = task.get("id")
    try:
        messages, usage = fut.result()
    except Fatal as exc:
        return exc
    except Rejected as exc:
        _reject(rej, rid, tid, exc.reason, exc.detail, getattr(exc, "messages", None), task, summary, key)
        return "rejected"
    except Exception as exc:  # noqa: BLE001 - whatever one task runs into (a bug too) fails that task, not the run
        fail = exc if isinstance(exc, Failed) else Failed("internal_error",
                                                          _redact(f"{type(exc).__name__}: {exc}", key, limit=200))
        summary["failed"] += 1
        summary["failures"][fail.reason] = summary["failures"].get(fail.reason, 0) + 1
        if fail.reason in LOGGED_FAILURES:
            _reject(rej, rid, tid, fail.reason, fail.detail, getattr(exc, "messages", None), task, None, key)
        return "failed"
    meta = {k: v for k, v in meta_in.items() if k not in ("review", "split")}
    meta.update(source="teacher", teacher_model=cfg.model, task_id=tid, steps=usage["requests"],
                prompt_tokens=usage["prompt_tokens"], completion_tokens=usage["completion_tokens"], review="pending")
    record = {"id": rid, "metadata": meta, "tools": list(task.get("tools") or []), "messages": messages}
    problems = check_trajectory(record) or validate_errors(record, "sft")
    if not problems and isinstance(task.get("expected"), dict):
        verdict = first_step_verdict(task, messages[usage["prompt_len"]])
        meta["expected_match"] = verdict.passed
        if not verdict.passed:
            meta["expected_reason"] = verdict.reason
            if cfg.verify:
                problems = [("off_task", f"first step vs the task's expected calls: {verdict.reason}: {verdict.detail}")]
    if problems:
        reason, detail = problems[0]
        _reject(rej, rid, tid, reason, detail, messages, task, summary, key)
        return "rejected"
    app.write(record)
    summary["written"] += 1
    for k, bucket in (("category", "by_category"), ("difficulty", "by_difficulty")):
        v = meta.get(k)
        if v is not None:
            summary[bucket][str(v)] = summary[bucket].get(str(v), 0) + 1
    return "accepted"


def first_step_verdict(task: dict, first: dict) -> Any:
    """THE scorer's verdict on the teacher's first assistant turn against ``task['expected']``."""
    from trajtune.chat import assistant_text
    from trajtune.scoring import score

    return score(task, assistant_text(first))


def _reject(rej: Any, rid: str, tid: Any, reason: str, detail: str, messages: list | None, task: dict,
            summary: dict | None, key: str) -> None:
    """Write a reject (counted in ``summary``), or with ``summary=None`` log a failure: ``record_id``
    instead of ``id`` so a re-run tries the task again."""
    row = {"id": rid} if summary is not None else {"record_id": rid, "failed": True}
    row.update({"reason": reason, "detail": _redact(detail, key), "task_id": tid,
                "metadata": {k: v for k, v in (task.get("metadata") or {}).items() if k != "review"},
                "tools": list(task.get("tools") or []), "messages": messages or task_prompt(task)})
    rej.write(row)
    if summary is not None:
        summary["rejected"] += 1
        summary["rejects"][reason] = summary["rejects"].get(reason, 0) + 1


def generate_trajectories(cfg: Any, out: str | Path, *, progress: Callable[[int, int], None] | None = None) -> dict:
    """``trajtune generate trajectories --backend openai``: the teacher solves training-split tasks
    drawn from the templates (``offline.iter_tasks``: held-out phrasings never reach training
    data); observations from the catalog simulators; ``cfg.count`` is the target. ``cfg`` is the
    command's config (``trajtune.scripts.generate.TrajectoriesConfig``: the offline options plus
    :class:`TeacherOptions`); the command saves it beside OUT with the base URL redacted."""
    from trajtune.generators import offline

    teacher_cfg = TeacherConfig.of(cfg)
    teacher_cfg.check()
    api_key(teacher_cfg)  # fail on a missing key before loading anything
    src = offline.load_sources(cfg)
    tasks = offline.iter_tasks(_train_tasks_config(cfg), sources=src, first_step_only=True)
    summary = generate(tasks, out, teacher_cfg, count=cfg.count, simulate=catalog_simulator(src.catalog),
                       progress=progress, max_tasks=max(cfg.count, 1) * 4 + 8)
    summary["kind"] = "sft"
    return summary


def _train_tasks_config(gen_cfg: Any) -> Any:
    from dataclasses import fields

    from trajtune.generators.offline import TasksConfig

    shared = {f.name: getattr(gen_cfg, f.name) for f in fields(gen_cfg) if f.name in {g.name for g in fields(TasksConfig)}}
    shared.update(split="train", heldout_template_share=0.0)
    return TasksConfig(**shared)
