"""The phrasing grammar: requests for any tool, from its name, description and parameters.

For a tool without hand-written templates (:mod:`trajtune.generators.shapes`) the grammar
derives

* an **intent**: a verb phrase from the description's first sentence ("Returns the current
  weather for a city." -> "get the current weather for a city"; clauses that only list the
  parameters are cut), else from the name (``getWeatherForecast`` -> "get the weather
  forecast");
* a **noun phrase per parameter** from its description ("Radius of the circle, in meters." ->
  "radius of the circle") or its name (``start_date`` -> "start date"), and a unit when the
  description names one;

and states them in a request through sentence frames: imperative, question and indirect, with
and without politeness, values inline or in a second sentence, each value in one of several
argument forms ("a radius of 4.5 meters", "the city is Lisbon", "use 3 for the number of days",
booleans as "with X turned on"). Every 5th frame is held out: training never uses it, eval tasks
do (``split="eval"``). Frames for several calls in one turn, for asking for missing information,
for declining when no tool fits, for general questions on a tool's own subject (no call) and for
the final answer are here too.

:func:`stated` is the semantic gate's test: every argument value must be stated in the request
(strings verbatim, numbers as written, booleans by their parameter's words).
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from typing import Any

from trajtune.generators.values import words

HOLDOUT_EVERY = 5

VERBS = {
    "get", "list", "search", "find", "calculate", "compute", "create", "book", "cancel", "send", "set", "add", "remove",
    "delete", "update", "fetch", "retrieve", "check", "convert", "estimate", "schedule", "reserve", "order", "track",
    "translate", "summarize", "detect", "count", "log", "plan", "apply", "return", "transfer", "pay", "freeze",
    "publish", "upload", "share", "compress", "reset", "scan", "rotate", "deploy", "scale", "rollback", "query", "run",
    "export", "start", "stop", "turn", "lock", "unlock", "enroll", "borrow", "renew", "buy", "decode", "roll", "solve",
    "balance", "recommend", "compare", "look", "generate", "validate", "verify", "analyze", "analyse", "measure",
    "predict", "register", "submit", "open", "close", "read", "write", "post", "invite", "move", "copy", "rename",
    "download", "sync", "notify", "approve", "reject", "assign", "archive", "restore", "monitor", "play", "pause",
    "record", "resize", "format", "parse", "merge", "split", "sort", "filter", "rank", "score", "match", "map", "lookup",
    "determine", "identify", "provide", "show", "display", "give", "make", "build", "evaluate", "test", "simulate",
    "draw", "compile", "execute", "invoke", "call", "ping", "request", "subscribe", "unsubscribe", "mark", "tag",
    "label", "join", "leave", "follow", "unfollow", "like", "rate", "review", "accept", "decline", "confirm", "upgrade",
    "place", "lookup", "save", "load", "edit", "modify", "change", "clear", "reset", "enable", "disable", "print",
    "extract", "classify", "tokenize", "encode", "plot", "fit", "train", "optimize", "transcribe", "resolve",
}
_THIRD = {"returns": "get", "provides": "get", "gives": "get", "shows": "show", "does": "do", "goes": "go"}
_CUT = (" for the given ", ", given ", " given ", " based on ", " using the given ", " with the given ",
        " from the given ", " for a given ", " for the specified ", " using ", " from ", " by ", " for ")
_UNITS = ("kilograms", "grams", "meters", "kilometers", "centimeters", "miles", "feet", "inches", "seconds", "minutes",
          "hours", "days", "years", "liters", "milliliters", "watts", "volts", "amperes", "celsius", "kelvin",
          "degrees", "percent", "dollars", "euros", "bytes", "megabytes", "gigabytes", "kwh", "hectares", "tonnes",
          "pascals", "joules", "hertz")


def _base_verb(w: str) -> str | None:
    lw = w.lower()
    if lw in VERBS:
        return lw
    if lw in _THIRD:
        return _THIRD[lw]
    for suf, rep in (("ies", "y"), ("es", ""), ("s", "")):
        if lw.endswith(suf) and lw[: -len(suf)] + rep in VERBS:
            return lw[: -len(suf)] + rep
    return None


def _first_sentence(text: str) -> str:
    text = " ".join(str(text or "").split())
    # a sentence ends at . ! ? after a letter, digit or ")", but not inside "e.g." or "i.e."
    m = re.search(r"(?<=[a-z0-9\)])(?<!\be\.g)(?<!\bi\.e)[.!?](\s|$)", text)
    return (text[: m.start()] if m else text).strip().rstrip(".:;")


@dataclass(frozen=True)
class Intent:
    vp: str  # verb phrase, lower-case first letter: "get the weather forecast"
    np: dict  # parameter -> noun phrase ("the number of days")
    units: dict  # parameter -> unit word stated after the value ("meters")


def intent(name: str, description: str, parameters: dict) -> Intent:
    props = (parameters or {}).get("properties") or {}
    pwords = {w for p in props for w in words(p) if len(w) > 2}
    vp = _vp_from_description(description, pwords) or _vp_from_name(name)
    np, units = {}, {}
    for p, s in props.items():
        np[p], units[p] = _noun_phrase(p, s if isinstance(s, dict) else {})
    return Intent(vp=vp, np=np, units=units)


def _vp_from_description(description: str, pwords: set[str]) -> str | None:
    s = _first_sentence(description)
    s = re.split(r",?\s*\(?\b(?:e\.g\.|i\.e\.|for example)", s, maxsplit=1)[0].strip()  # examples are not the intent
    s = re.sub(r"^(this|the)\s+(tool|function|endpoint|api|method|operation)\s+(will\s+)?", "", s, flags=re.I)
    s = re.sub(r"^(use this to|used to|allows you to|lets you|helps you)\s+", "", s, flags=re.I)
    ws = s.split()
    if not ws or len(ws) > 18:
        return None
    verb = _base_verb(ws[0])
    if verb is None:
        return None
    rest = " ".join(ws[1:])
    low = " " + rest
    for marker in _CUT:
        i = low.find(marker)
        if i > 0:
            tail = set(words(low[i:]))
            if tail & pwords and len(low[:i].split()) >= 1:
                low = low[:i]
                break
    rest = low.strip().rstrip(",;:")
    if not rest:
        return None
    return f"{verb} {rest[0].lower() + rest[1:] if not rest[:2].isupper() else rest}"


def _vp_from_name(name: str) -> str:
    ws = words(name.split(".")[-1]) or words(name)
    if len(ws) > 1 and ws[-1] in ("v1", "v2", "v3", "api"):
        ws = ws[:-1]
    if ws and _base_verb(ws[0]):
        verb = _base_verb(ws[0])
        rest = ws[1:]
        return f"{verb} the {' '.join(rest)}" if rest else verb
    return f"get the {' '.join(ws)}"


def _noun_phrase(p: str, schema: dict) -> tuple[str, str]:
    desc = _first_sentence(re.sub(r"\(default[^)]*\)", "", str(schema.get("description") or ""))).strip()
    desc = re.split(r",\s*(e\.g\.|as |such as|for example|in the format)", desc, maxsplit=1)[0].strip()
    unit = ""
    m = re.search(r"\bin (" + "|".join(_UNITS) + r")\b", desc.lower())
    if m:
        unit = m.group(1)
        desc = re.sub(r",?\s*\bin " + unit + r"\b", "", desc, flags=re.I).strip()
    ws = desc.split()
    if ws and 1 <= len(ws) <= 7 and not re.search(r"[:;()\[\]{}=<>]", desc):
        phrase = desc[0].lower() + desc[1:] if not desc[:2].isupper() else desc
        phrase = re.sub(r"^(the|a|an)\s+", "", phrase, flags=re.I)
    else:
        phrase = " ".join(words(p)) or p
    return phrase, unit


# ------------------------------------------------------------------------------ value text


def value_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (int, str)):
        return str(v)
    if isinstance(v, list):
        items = [value_text(x) for x in v]
        return (", ".join(items[:-1]) + " and " + items[-1]) if len(items) > 1 else (items[0] if items else "none")
    if isinstance(v, dict):
        return ", ".join(f"{' '.join(words(k))} {value_text(x)}" for k, x in v.items())
    return json.dumps(v)


def _with_unit(it: Intent, p: str, v: Any) -> str:
    txt = value_text(v)
    u = it.units.get(p)
    return f"{txt} {u}" if u and isinstance(v, (int, float)) and not isinstance(v, bool) else txt


def _the(phrase: str) -> str:
    return phrase if re.match(r"^(the|a|an|my|your|number of)\b", phrase) else "the " + phrase


def arg_phrase(it: Intent, p: str, v: Any, rng: random.Random) -> str:
    """One argument in one of several forms."""
    np = it.np.get(p) or " ".join(words(p))
    if isinstance(v, bool):
        return rng.choice([f"with {np} turned {'on' if v else 'off'}", f"{np} set to {value_text(v)}",
                           f"{np}: {'yes' if v else 'no'}", f"{'with' if v else 'without'} {np}"])
    txt = _with_unit(it, p, v)
    if isinstance(v, dict):
        return rng.choice([f"{np} with {txt}", f"{_the(np)} given as {txt}"])
    forms = [f"{np} {txt}", f"{_the(np)} {txt}" if isinstance(v, (int, float)) else f"{np} {txt}",
             f"{np}: {txt}", f"{np} set to {txt}", f"{np} of {txt}", f"{txt} as {_the(np)}", f"{np} = {txt}"]
    return rng.choice(forms)


def arg_sentence(it: Intent, p: str, v: Any, rng: random.Random) -> str:
    np = it.np.get(p) or " ".join(words(p))
    if isinstance(v, bool):
        return rng.choice([f"{_the(np).capitalize()} should be {'on' if v else 'off'}.",
                           f"Set {np} to {value_text(v)}."])
    txt = _with_unit(it, p, v)
    return rng.choice([f"{_the(np).capitalize()} is {txt}.", f"Use {txt} for {_the(np)}.",
                       f"{np[0].upper() + np[1:]}: {txt}.", f"Take {txt} as {_the(np)}."])


def join(parts: list[str], rng: random.Random) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    if rng.random() < 0.25:
        return "; ".join(parts)
    return ", ".join(parts[:-1]) + rng.choice([" and ", ", and ", ", "]) + parts[-1]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


FRAMES = [
    "{VP} with {ARGS}.", "Please {vp} with {ARGS}.", "Could you {vp}? {SENT}", "I need to {vp}: {ARGS}.",
    "Can you {vp} for me using {ARGS}?", "{SENT} {VP}, please.", "{VP}. {SENT}", "Help me {vp}, {ARGS}.",
    "I'd like you to {vp} with {ARGS}. Thanks!", "{VP} ({ARGS}).", "Would you {vp} given {ARGS}?",
    "Hey, {vp} with {ARGS}, thanks.", "{SENT} Can you {vp}?", "What do I get if I {vp} with {ARGS}?",
    "Quick one: {vp}, {ARGS}.", "Go ahead and {vp} using {ARGS}.", "I want to {vp}. {SENT}",
    "{VP} for {ARGS}.", "Kindly {vp} with {ARGS}.", "Need this: {vp} with {ARGS}.",
]
NOARG_FRAMES = ["{VP}.", "Please {vp}.", "Could you {vp}?", "I need to {vp}.", "Can you {vp} for me?",
                "{VP}, please.", "Help me {vp}.", "I'd like you to {vp}.", "Would you {vp}?", "Hey, {vp}, thanks."]
MULTI_FRAMES = [
    "{A}. Also, {b}.", "Two things: {a}, and {b}.", "{A}, and also {b}.", "Please {a}. Then {b} as well.",
    "I need you to {a} and to {b}.", "Can you {a}? And {b}, please.", "{A}; {b}.", "First {a}; also {b}.",
    "Could you {a}, plus {b}?", "{A}. In addition, {b}.",
]


def split_frames(frames: list[str], split: str) -> list[int]:
    idx = range(len(frames))
    if split == "eval":
        return [i for i in idx if i % HOLDOUT_EVERY == HOLDOUT_EVERY - 1]
    if split == "train":
        return [i for i in idx if i % HOLDOUT_EVERY != HOLDOUT_EVERY - 1]
    return list(idx)


def clause(it: Intent, args: dict, rng: random.Random) -> str:
    """"get the weather forecast with city Lisbon and days 3" (lower-case, no final period)."""
    if not args:
        return it.vp
    parts = [arg_phrase(it, p, v, rng) for p, v in args.items()]
    return f"{it.vp} {rng.choice(['with', 'using', 'for'])} {join(parts, rng)}"


def request(it: Intent, args: dict, rng: random.Random, split: str = "train") -> tuple[str, int]:
    """A user request stating every argument; returns (text, frame index)."""
    if not args:
        i = rng.choice(split_frames(NOARG_FRAMES, split))
        return NOARG_FRAMES[i].format(VP=_cap(it.vp), vp=it.vp), i
    i = rng.choice(split_frames(FRAMES, split))
    frame = FRAMES[i]
    parts = [arg_phrase(it, p, v, rng) for p, v in args.items()]
    sent = " ".join(arg_sentence(it, p, v, rng) for p, v in args.items())
    text = frame.format(VP=_cap(it.vp), vp=it.vp, ARGS=join(parts, rng), SENT=sent)
    return text, i


def multi_request(clauses: list[str], rng: random.Random, split: str = "train") -> tuple[str, int]:
    """Several requests in one turn (parallel calls)."""
    i = rng.choice(split_frames(MULTI_FRAMES, split))
    if len(clauses) == 2:
        return MULTI_FRAMES[i].format(A=_cap(clauses[0]), a=clauses[0], B=_cap(clauses[1]), b=clauses[1]), i
    head = ", ".join(clauses[:-1]) + ", and " + clauses[-1]
    j = rng.choice(split_frames(MANY_HEADS, split))
    return MANY_HEADS[j].format(all=head), i


# three or more requests in one turn
MANY_HEADS = ["Please do all of these: {all}.", "I need several things: {all}.", "Can you {all}?",
              "Here is my list: {all}.", "A few tasks for you: {all}."]
# a request whose second call uses a value the first call returns (multi-step)
THEN_FRAMES = [
    "{A}, then {b} using the {np} it returns.", "First {a}. After that, {b}, with the {np} from that result.",
    "Please {a}; once you have the {np}, {b}.", "{A} and then {b} with the {np} you get back.",
    "Start here: {a}. Take the {np} from the answer and {b}.",
    "I need you to {a}; use the {np} it gives you to {b}.", "Could you {a}, then {b} based on the returned {np}?",
    "{A}. Next, {b} using that {np}.", "Step one: {a}. Step two: {b} with the {np} from step one.",
    "{A}, and with the {np} from that, {b}.",
]


def then_request(first: str, second: str, np: str, rng: random.Random, split: str = "train") -> tuple[str, int]:
    """A two-step request: the second call takes ``np`` from the first call's result; (text, frame index)."""
    i = rng.choice(split_frames(THEN_FRAMES, split))
    return THEN_FRAMES[i].format(A=_cap(first), a=first, b=second, np=np), i


_POSTMOD = re.compile(r" (that|which|who|of|to|for|in|on|with|by|from|whose|where) ")


def plural(np: str) -> str:
    """The plural of a noun phrase: its head noun, the last word before a post-modifier ("ID of pet to
    update" -> "IDs of pet to update", "name that needs to be fetched" -> "names that needs to be fetched")."""
    m = _POSTMOD.search(np)
    core, tail = (np[: m.start()], np[m.start():]) if m else (np, "")
    head, _, last = core.rpartition(" ")
    if last.isupper() and len(last) > 1:
        last = last + "s"  # ID -> IDs, URL -> URLs
    elif last.endswith("y") and last[-2:-1] not in "aeiou":
        last = last[:-1] + "ies"
    elif last.endswith(("s", "x", "ch", "sh")):
        last = last + "es"
    else:
        last = last + "s"
    return (head + " " if head else "") + last + tail


def same_tool_request(it: Intent, shared: dict, vary: str, values: list[Any], rng: random.Random,
                      split: str = "train") -> tuple[str, int]:
    """One tool for several values of one parameter: "get the forecast with days 3 for city Lisbon and Oslo"."""
    np = it.np.get(vary) or " ".join(words(vary))
    vals = value_text([v for v in values])
    forms = [
        f"{_cap(it.vp)} for each of these {plural(np)}: {vals}" + (f", with {join([arg_phrase(it, p, v, rng) for p, v in shared.items()], rng)}." if shared else "."),
        f"{_cap(it.vp)}" + (f" with {join([arg_phrase(it, p, v, rng) for p, v in shared.items()], rng)}" if shared else "") + f", once for {np} {vals.replace(' and ', ' and once for ')}.",
        f"Can you {it.vp} for {np} {vals}" + (f"? Use {join([arg_phrase(it, p, v, rng) for p, v in shared.items()], rng)} for all of them." if shared else "?"),
        f"I need to {it.vp} for several {plural(np)} ({vals})" + (f", {join([arg_phrase(it, p, v, rng) for p, v in shared.items()], rng)}." if shared else "."),
        f"Do this for {np} {vals}: {it.vp}" + (f" with {join([arg_phrase(it, p, v, rng) for p, v in shared.items()], rng)}." if shared else "."),
    ]
    i = rng.choice(split_frames(forms, split))
    return forms[i], i


def ask_missing(it: Intent, param: str, rng: random.Random) -> str:
    np = it.np.get(param) or " ".join(words(param))
    return rng.choice([f"I can {it.vp}, but I need {_the(np)} first. What {np} should I use?",
                       f"To {it.vp} I need {_the(np)}. Which {np} do you mean?",
                       f"Sure. What is {_the(np)}?",
                       f"Happy to help. Could you tell me {_the(np)}?"])


def decline(it: Intent, offered: list[Intent], rng: random.Random) -> str:
    can = [o.vp for o in offered][:2]
    can_txt = " or ".join(can)
    return rng.choice([f"None of the available tools can {it.vp}. I can {can_txt} if that helps.",
                       f"I can't {it.vp} with the tools I have here; they only {can_txt}.",
                       f"Sorry, I have no tool to {it.vp}. The tools available can {can_txt}.",
                       f"That is outside what these tools do (they {can_txt}), so I can't {it.vp}."])


# a general question about what a tool works on, which the tool itself does not answer (what its
# action means, why or how people do it): a no-call request on the offered tool's own subject
TOPIC_FRAMES = [
    "What does it mean to {vp}?", "Why would someone want to {vp}?", "Is it hard to {vp} by hand?",
    "Who usually needs to {vp}, and why?", "Can you explain the general idea of {obj}?",
    "What are common mistakes people make when they {vp}?", "How did people {vp} before computers existed?",
    "Give me some general advice on how to {vp} well.", "What is the story behind the idea of {obj}?",
    "In one sentence, what is the point of {obj}?",
]


def topic_object(it: Intent) -> str:
    """What the tool's verb phrase acts on, without its article ("get the restaurant menu" ->
    "restaurant menu"); "" when the verb phrase is a bare verb."""
    obj = it.vp.partition(" ")[2]
    return re.sub(r"^(the|a|an)\s+", "", obj)


def topic_question(it: Intent, rng: random.Random, split: str = "train") -> tuple[str, int]:
    """A general question on the tool's subject that calling the tool would not answer; (text, frame index)."""
    i = rng.choice(split_frames(TOPIC_FRAMES, split))
    return TOPIC_FRAMES[i].format(vp=it.vp, obj=topic_object(it)), i


def topic_reply(it: Intent, rng: random.Random) -> str:
    return rng.choice([f"That is a general question, and the tool here can only {it.vp}, which would not answer it. "
                       f"If you want me to {it.vp}, tell me the details.",
                       f"No tool call helps with that: the available tool can only {it.vp}. I can do that for you if "
                       f"you give me what it needs.",
                       f"Calling the tool would not answer this: it can only {it.vp}, not explain or advise.",
                       f"I can't answer that with the tool I have; it can only {it.vp}. Tell me if you want that done."])


def final_answer(it: Intent, observation: str, rng: random.Random) -> str:
    try:
        obj = json.loads(observation)
    except (json.JSONDecodeError, TypeError):
        obj = observation
    if isinstance(obj, dict):
        items = [f"{' '.join(words(k))}: {value_text(v)}" for k, v in list(obj.items())[:4] if k != "status"]
        body = "; ".join(items) or "done"
    else:
        body = str(obj)[:160]
    return rng.choice([f"Here is the result: {body}.", f"Done. {body[:1].upper() + body[1:]}.",
                       f"I ran it: {body}.", f"The result: {body}."])


# ---------------------------------------------------------------------------- semantic gate


def _norm(s: str) -> str:
    return " ".join(str(s).lower().split())


def _whole(needle: str, text: str) -> bool:
    """``needle`` occurs in ``text`` not as part of a longer word ("red" is not in "ordered")."""
    if not needle:
        return True
    return re.search(("" if not needle[0].isalnum() else r"(?<!\w)") + re.escape(needle)
                     + ("" if not needle[-1].isalnum() else r"(?!\w)"), text) is not None


def stated(value: Any, text: str, param: str = "", np: str = "") -> bool:
    """Is ``value`` stated in ``text`` (strings verbatim, numbers as written, booleans by name)?"""
    low = _norm(text)
    if isinstance(value, bool):
        return any(_whole(w, low) for w in (words(param) + np.lower().split()) if len(w) > 2)
    if isinstance(value, (int, float)):
        return re.search(r"(?<![\w.])" + re.escape(value_text(value)) + r"(?![\w]|\.\d)", low) is not None
    if isinstance(value, str):
        return _whole(_norm(value), low)
    if isinstance(value, list):
        return all(stated(v, text, param, np) for v in value)
    if isinstance(value, dict):
        return all(stated(v, text, k) for k, v in value.items())
    return value is None


def phrase_problem(name: str, description: str, parameters: dict) -> str | None:
    """Why the grammar cannot phrase this tool (``generate tools --check``), or None.

    It needs a verb phrase (the description's first sentence starting with a verb, or a name
    with at least one word of three letters or more) and, for every parameter, words (its
    description, or a name with a letter in it).
    """
    pwords = {w for p in (parameters or {}).get("properties") or {} for w in words(p) if len(w) > 2}
    from_desc = _vp_from_description(description, pwords)
    if from_desc is None and not any(len(w) >= 3 and w.isalpha() for w in words(name)):
        return "no verb phrase: the description does not start with a verb and the name has no word"
    it = intent(name, description, parameters)
    if len(it.vp) > 120:
        return "the verb phrase from the description is too long (over 120 characters)"
    props = (parameters or {}).get("properties") or {}
    for p, phrase in it.np.items():
        s = props.get(p) if isinstance(props.get(p), dict) else {}
        if not s.get("description") and not any(c.isalpha() for c in p):
            return f"parameter {p!r} has neither a description nor a name made of words"
    return None
