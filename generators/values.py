"""Argument values from a JSON Schema, and how a user states them; results shaped by a schema.

Used by the schema-driven generator (:mod:`trajtune.generators.shapes`) for tools that come
without templates: a user's catalog (OpenAI tools, MCP, OpenAPI) or the synthetic APIs
(:mod:`trajtune.generators.synth`).

* :func:`sample` draws a value for one parameter: its ``enum``, ``format`` (date, time,
  date-time, email, uri), ``minimum``/``maximum``, arrays (``items``, ``minItems``/``maxItems``)
  and nested objects; strings from pools chosen by the parameter's name and description
  (a city for ``city``, a person for ``name``, an id for ``*_id``, ...). Our own vocabulary:
  nothing here comes from any benchmark.
* :func:`result` makes an observation for a call: an object drawn from the tool's declared
  result schema, or a plausible default (the arguments echoed with a status and a result),
  deterministic for the same tool and arguments.
"""
from __future__ import annotations

import functools
import hashlib
import json
import random
import re
from typing import Any

CITIES = ["Lisbon", "Oslo", "Nairobi", "Osaka", "Lima", "Tbilisi", "Porto", "Quito", "Hanoi", "Accra", "Bergen",
          "Cusco", "Leeds", "Perth", "Malmo", "Gdansk", "Recife", "Tartu", "Zurich", "Cork", "Denver", "Seville",
          "Kraków", "Montreal", "Pune", "Dakar", "Hobart", "Valparaiso", "Ljubljana", "Chiang Mai", "Bilbao", "Galway"]
COUNTRIES = ["Portugal", "Norway", "Kenya", "Japan", "Peru", "Georgia", "Chile", "Vietnam", "Ghana", "Iceland",
             "Canada", "India", "Senegal", "Slovenia", "Estonia", "Uruguay", "Morocco", "Finland", "Mexico", "Nepal"]
FIRST = ["Ana", "Tomas", "Amara", "Kenji", "Lucia", "Omar", "Ingrid", "Ravi", "Zoe", "Mateo", "Leila", "Sven",
         "Noor", "Diego", "Hana", "Felix", "Priya", "Jonas", "Mei", "Kofi", "Elena", "Arjun", "Nadia", "Oscar"]
LAST = ["Silva", "Berg", "Okafor", "Tanaka", "Rossi", "Haddad", "Larsen", "Patel", "Novak", "Ferreira", "Kim",
        "Mensah", "Duarte", "Ivanova", "Moreau", "Nakamura", "Costa", "Lindqvist", "Achebe", "Romero"]
WORDS = ["amber", "harbor", "falcon", "meadow", "quartz", "summit", "cedar", "lantern", "orbit", "pebble", "willow",
         "ember", "atlas", "breeze", "canyon", "delta", "fjord", "glacier", "horizon", "island", "juniper", "kestrel"]
TOPICS = ["renewable energy", "sleep hygiene", "urban gardening", "jazz history", "ocean currents", "sourdough baking",
          "remote work", "bird migration", "solar panels", "budget travel", "vintage cameras", "rock climbing",
          "tea ceremonies", "coral reefs", "board games", "electric bikes", "volcanoes", "street photography"]
PRODUCTS = ["wireless earbuds", "standing desk", "trail shoes", "espresso grinder", "rain jacket", "mechanical keyboard",
            "yoga mat", "cast iron pan", "camping stove", "desk lamp", "water filter", "backpack", "smart thermostat"]
COLORS = ["red", "teal", "black", "white", "olive", "navy", "amber", "silver", "coral", "indigo"]
LANGS = ["Portuguese", "Japanese", "Swahili", "Norwegian", "Spanish", "Hindi", "Polish", "Korean", "Turkish", "Greek"]
LANG_CODES = ["pt", "ja", "sw", "no", "es", "hi", "pl", "ko", "tr", "el", "fr", "de"]
CURRENCIES = ["EUR", "USD", "JPY", "GBP", "NOK", "KES", "INR", "CHF", "BRL", "CAD"]
DOMAINS = ["example.com", "mail.test", "corp.example", "shop.test", "team.example"]
STREETS = ["Rua Augusta", "Elm Street", "Harbor Road", "Mill Lane", "King Avenue", "Birch Way", "Station Road"]
GENRES = ["mystery", "science fiction", "poetry", "biography", "fantasy", "history", "thriller", "romance"]
TITLES = ["The Quiet Harbor", "Paper Moons", "A Map of Rivers", "Northern Lights", "The Salt Road", "Glass Orchard",
          "Winter Bees", "The Long Tide", "Copper Skies", "Small Fires", "The Clockmaker", "Blue Hour"]
TEAMS = ["Harbor City Hawks", "Northside Owls", "Riverton Rovers", "Lakeside Lynx", "Summit Stars", "Valley Vipers"]
COMPANIES = ["Brightline Labs", "Nordwind Foods", "Keystone Freight", "Lumen Health", "Orchard Analytics",
             "Tidewater Energy", "Pinecrest Media", "Arcadia Robotics", "Bluefin Logistics", "Redwood Capital"]
SYMBOLS = ["BRLB", "NWFD", "KSTF", "LMHL", "ORCA", "TDWE", "PNCM", "ARCR"]
UNITS_LEN = ["meters", "kilometers", "miles", "feet", "centimeters"]
DISHES = ["lentil soup", "mushroom risotto", "fish tacos", "vegetable curry", "banana bread", "shakshuka", "ramen"]
INGREDIENTS = ["chickpeas", "spinach", "garlic", "rice", "tofu", "lemons", "oats", "tomatoes", "basil", "eggs"]
SKILLS = ["python", "welding", "accounting", "nursing", "carpentry", "data analysis", "graphic design", "spanish"]
ANIMALS = ["red fox", "snow leopard", "humpback whale", "barn owl", "axolotl", "honey bee", "sea otter", "ibex"]
PLANTS = ["lavender", "fig tree", "monstera", "basil", "tomato plant", "olive tree", "orchid", "fern"]
ELEMENTS = ["carbon", "sodium", "iron", "copper", "helium", "zinc", "silicon", "nitrogen"]
INSTRUMENTS = ["cello", "ukulele", "trumpet", "harp", "violin", "drum kit", "flute"]
AIRPORTS = ["LIS", "OSL", "NBO", "KIX", "LIM", "TBS", "OPO", "UIO", "HAN", "ACC", "BGO", "ZRH"]
STATUSES = ["active", "pending", "closed", "archived"]
FILES = ["notes.txt", "report.pdf", "budget.xlsx", "photo.jpg", "slides.pptx", "data.csv", "invoice.pdf"]

# parameter-name cue -> a pool of string values (first match wins; cues are whole words of the name)
_NAME_POOLS: list[tuple[tuple[str, ...], list[str]]] = [
    (("city", "town", "destination", "origin", "location", "place"), CITIES),
    (("country", "nation"), COUNTRIES),
    (("airport",), AIRPORTS),
    (("currency",), CURRENCIES),
    (("language", "lang"), LANGS),
    (("color", "colour"), COLORS),
    (("genre",), GENRES),
    (("title", "book", "film", "movie", "album", "song"), TITLES),
    (("team", "club"), TEAMS),
    (("company", "employer", "organization", "organisation", "vendor", "brand"), COMPANIES),
    (("symbol", "ticker"), SYMBOLS),
    (("product", "item", "gadget"), PRODUCTS),
    (("dish", "recipe", "meal"), DISHES),
    (("ingredient", "food"), INGREDIENTS),
    (("skill",), SKILLS),
    (("animal", "species"), ANIMALS),
    (("plant",), PLANTS),
    (("element",), ELEMENTS),
    (("instrument",), INSTRUMENTS),
    (("street", "address"), STREETS),
    (("status", "state"), STATUSES),
    (("file", "filename", "attachment"), FILES),
    (("topic", "subject", "query", "keyword", "keywords", "term", "search", "text", "phrase", "interest"), TOPICS),
]


def words(name: str) -> list[str]:
    """``getWeatherForecast`` / ``get_weather-forecast`` / ``weather.get`` -> lower-case words."""
    return list(_words(name))


@functools.lru_cache(maxsize=65536)
def _words(name: str) -> tuple[str, ...]:
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", name)
    return tuple(w.lower() for w in re.split(r"[^A-Za-z0-9]+", name) if w)


def _pool_for(name: str, description: str) -> list[str] | None:
    ws = set(words(name))
    for cues, pool in _NAME_POOLS:
        if ws & set(cues):
            return pool
    desc = set(words(description))
    for cues, pool in _NAME_POOLS:
        if desc & set(cues):
            return pool
    return None


def _person(rng: random.Random) -> str:
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def _id(name: str, rng: random.Random) -> str:
    ws = [w for w in words(name) if w not in ("id", "uuid", "key", "code", "number", "ref")]
    prefix = (ws[-1][:3] if ws else "id").upper()
    return f"{prefix}-{rng.randint(1000, 99999)}"


def _date(rng: random.Random) -> str:
    return f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _time(rng: random.Random) -> str:
    return f"{rng.randint(6, 21):02d}:{rng.choice(['00', '15', '30', '45'])}"


# "<entity> name" parameters get a made-up proper name: "Cedar Bistro", "Harbor Clinic"
_ENTITY_NAMES = {"restaurant": ["Bistro", "Kitchen", "Diner", "Grill"], "clinic": ["Clinic", "Health Center"],
                 "hotel": ["Hotel", "Inn", "Lodge"], "venue": ["Hall", "Arena", "Theater"], "lot": ["Garage", "Parking"],
                 "door": ["front door", "back door", "garage door"], "channel": ["team", "updates", "alerts"],
                 "playlist": ["Mix", "Favorites"], "archive": ["backup", "bundle"], "calendar": ["Work", "Family"],
                 "service": ["api", "worker", "gateway"], "pet": ["Biscuit", "Luna", "Pepper"], "school": ["Academy"],
                 "store": ["Market", "Store"], "shop": ["Shop"], "station": ["Station"], "project": ["project"],
                 "league": ["League", "Cup"], "stop": ["Stop"], "route": ["Line"], "course": ["101"],
                 "database": ["db"], "table": ["records"], "folder": ["docs"], "device": ["sensor"]}
_ENTITY_NAMES_SET = set(_ENTITY_NAMES)


def string_value(name: str, schema: dict, rng: random.Random) -> str:
    """A string a user would state for parameter ``name`` (format, then name cues, then words)."""
    fmt = schema.get("format")
    desc = str(schema.get("description") or "")
    ws = set(words(name))
    if fmt == "date" or "date" in ws or "day" in ws and "days" not in ws or "birthday" in ws:
        return _date(rng)
    if fmt == "date-time" or "datetime" in ws or "timestamp" in ws:
        return f"{_date(rng)}T{_time(rng)}:00"
    if fmt == "time" or "time" in ws:
        return _time(rng)
    if fmt == "email" or "email" in ws:
        return f"{rng.choice(FIRST).lower()}.{rng.choice(LAST).lower()}@{rng.choice(DOMAINS)}"
    if fmt in ("uri", "url") or ws & {"url", "uri", "link", "website", "endpoint"}:
        return f"https://{rng.choice(DOMAINS)}/{rng.choice(WORDS)}/{rng.randint(1, 999)}"
    if ws & {"phone", "mobile"}:
        return f"+{rng.randint(1, 99)} {rng.randint(200, 999)} {rng.randint(100, 999)} {rng.randint(1000, 9999)}"
    ent = ws & _ENTITY_NAMES_SET
    if ent and (ws & {"name", "title"} or ws <= _ENTITY_NAMES_SET | {"to", "from"}):
        noun = sorted(ent)[0]
        suffix = rng.choice(_ENTITY_NAMES[noun])
        word = rng.choice(WORDS)
        return f"{word}-{suffix}" if suffix.islower() else f"{word.capitalize()} {suffix}"
    if ws & {"id", "uuid", "sku", "ref", "reference", "code", "isbn", "account", "wallet", "card", "vin"} or name.endswith("Id"):
        if ws & {"language", "lang"}:
            return rng.choice(LANG_CODES)
        if "currency" in ws:
            return rng.choice(CURRENCIES)
        if "airport" in ws:
            return rng.choice(AIRPORTS)
        return _id(name, rng)
    if ws & {"address", "street"} and not ws & {"email", "ip", "wallet"}:
        return f"{rng.randint(1, 240)} {rng.choice(STREETS)}, {rng.choice(CITIES)}"
    if ws & {"name", "author", "user", "username", "customer", "patient", "owner", "person", "recipient", "artist",
             "contact", "driver", "guest", "member", "student", "employee", "assignee", "player", "manager"}:
        if "username" in ws or "handle" in ws:
            return f"{rng.choice(FIRST).lower()}{rng.randint(1, 99)}"
        pool = _pool_for(name, "")
        if pool is not None and not ws & {"author", "user", "customer", "patient", "owner", "person", "recipient",
                                          "artist", "contact", "driver", "guest", "member", "student", "employee",
                                          "assignee", "player", "manager"}:
            return rng.choice(pool)
        return _person(rng)
    if ws & {"message", "body", "content", "note", "comment", "description", "reason", "bio", "summary"}:
        return rng.choice(["Running ten minutes late", "Please review the attached draft", "Thanks for the quick help",
                           "Meeting moved to Thursday", "Order arrived damaged", "See you at the trailhead",
                           "Remember to bring the charger", "Happy birthday from all of us"])
    if ws & {"path", "folder", "directory"}:
        return f"/{rng.choice(['home', 'srv', 'data'])}/{rng.choice(WORDS)}/{rng.choice(FILES)}"
    pool = _pool_for(name, desc)
    if pool is not None:
        return rng.choice(pool)
    return rng.choice(WORDS)


def _number_bounds(schema: dict, name: str) -> tuple[float, float, bool, bool]:
    """(low, high, low exclusive, high exclusive): the schema's bounds, name rules for a side it leaves open.

    ``exclusiveMinimum``/``exclusiveMaximum`` are numbers (JSON Schema 2019+) or booleans that qualify
    ``minimum``/``maximum`` (draft 4, OpenAPI 3.0). A name rule never crosses a bound the schema sets.
    """
    def side(bound: str, excl: str) -> tuple[float | None, bool]:
        v, x = schema.get(bound), schema.get(excl)
        if isinstance(x, bool):
            return (v, x) if _num(v) else (None, False)
        if _num(x) and (not _num(v) or (x >= v if bound == "minimum" else x <= v)):
            return x, True
        return (v, False) if _num(v) else (None, False)

    lo, lo_x = side("minimum", "exclusiveMinimum")
    hi, hi_x = side("maximum", "exclusiveMaximum")
    ws = set(words(name))
    rlo, rhi = 0.0, None  # the name's rule
    if ws & {"lat", "latitude"}:
        rlo, rhi = -90, 90
    elif ws & {"lon", "lng", "longitude"}:
        rlo, rhi = -180, 180
    elif ws & {"rate", "probability", "ratio", "fraction", "share"}:
        rhi = 1
    elif ws & {"percent", "percentage", "age"}:
        rhi = 100
    elif ws & {"year"}:
        rlo, rhi = 1950, 2030
    elif ws & {"limit", "count", "days", "hours", "page", "size", "quantity", "guests", "nights", "rooms", "top"}:
        rlo, rhi = 1, 30
    wide = 500 if schema.get("type") == "number" else 100
    if lo is None and hi is None:
        lo, hi = rlo, rhi if rhi is not None else max(rlo + 10, wide)
    elif lo is None:
        lo = rlo if rlo < hi else hi - wide
    elif hi is None:
        if rhi is not None and lo < rhi:
            lo, hi = max(lo, rlo), rhi
        else:
            hi = max(lo + 10, wide)
    return float(lo), float(hi), lo_x, hi_x


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _in_bounds(v: float, lo: float, hi: float, lo_x: bool, hi_x: bool) -> bool:
    return (v > lo if lo_x else v >= lo) and (v < hi if hi_x else v <= hi)


def _integer(schema: dict, name: str, rng: random.Random) -> int:
    import math

    lo, hi, lo_x, hi_x = _number_bounds(schema, name)
    ilo = math.floor(lo) + 1 if lo_x else math.ceil(lo)
    ihi = math.ceil(hi) - 1 if hi_x else math.floor(hi)
    ihi = max(ilo, ihi)
    m = schema.get("multipleOf")
    if isinstance(m, int) and not isinstance(m, bool) and m > 0:
        klo, khi = -(-ilo // m), ihi // m
        return m * rng.randint(klo, max(klo, khi))
    return rng.randint(ilo, ihi)


def _number(schema: dict, name: str, rng: random.Random) -> float:
    lo, hi, lo_x, hi_x = _number_bounds(schema, name)
    m = schema.get("multipleOf")
    if _num(m) and m > 0:
        import math

        klo, khi = math.ceil(lo / m), math.floor(hi / m)
        klo += lo_x and klo * m <= lo  # an exclusive bound is not a value
        khi -= hi_x and khi * m >= hi
        k = rng.randint(klo, max(klo, khi))
        places = max(0, -math.floor(math.log10(m))) if m < 1 else 0
        return round(k * m, places + 2)
    digits = 4 if hi - lo <= 1 else 1 if hi - lo > 100 else 2
    v = (lo + hi) / 2
    for _ in range(12):  # a float a user would write, inside the bounds, not a whole number (type fidelity)
        x = round(rng.uniform(lo, hi), rng.choice([1, digits]))
        if _in_bounds(x, lo, hi, lo_x, hi_x):
            v = x
            if x != int(x):
                break
    return v


def sample(name: str, schema: dict, rng: random.Random, depth: int = 0) -> Any:
    """A value for parameter ``name`` that satisfies ``schema`` (the subset tools use)."""
    if not isinstance(schema, dict):  # a `true` sub-schema: anything goes
        schema = {}
    if "enum" in schema and schema["enum"]:
        return rng.choice(schema["enum"])
    if "const" in schema:
        return schema["const"]
    t = schema.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), None)
    if t is None:
        for key in ("anyOf", "oneOf"):
            if isinstance(schema.get(key), list) and schema[key]:
                return sample(name, schema[key][0], rng, depth)
        t = "object" if "properties" in schema else "string"
    if t == "integer":
        return _integer(schema, name, rng)
    if t == "number":
        return _number(schema, name, rng)
    if t == "boolean":
        return rng.random() < 0.6
    if t == "array":
        items = schema.get("items") if isinstance(schema.get("items"), dict) else {"type": "string"}
        hi = schema.get("maxItems")
        lo = int(schema.get("minItems", min(2 if depth == 0 else 1, hi) if isinstance(hi, int) else 2 if depth == 0 else 1))
        hi = int(hi) if isinstance(hi, int) else max(lo, 3)
        n = rng.randint(max(1, lo), max(1, lo, min(hi, 4))) if hi >= 1 else 0
        item_name = name[:-1] if name.endswith("s") else name
        out: list[Any] = []
        for _ in range(n * 3):
            v = sample(item_name, items, rng, depth + 1)
            if v not in out or schema.get("uniqueItems") is False:
                out.append(v)
            if len(out) == n:
                break
        return out
    if t == "object":
        props = schema.get("properties") or {}
        if not props or depth >= 2:
            return {}
        req = [k for k in schema.get("required") or [] if k in props]
        keys = req + [k for k in props if k not in req and rng.random() < 0.5]
        return {k: sample(k, props[k], rng, depth + 1) for k in keys or list(props)[:1]}
    if t == "null":
        return None
    v = string_value(name, schema, rng)
    lo, hi = schema.get("minLength"), schema.get("maxLength")
    if isinstance(hi, int) and len(v) > hi:
        v = v[:hi]
    if isinstance(lo, int) and len(v) < lo:
        v = v + "x" * (lo - len(v))
    return v


def _stable_rng(*parts: Any) -> random.Random:
    h = hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    return random.Random(int(h[:16], 16))


def result(tool_name: str, arguments: dict, result_schema: dict | None) -> str:
    """The observation for a call: JSON drawn from the result schema, or a plausible default."""
    rng = _stable_rng(tool_name, arguments)
    if isinstance(result_schema, dict) and (result_schema.get("properties") or result_schema.get("type") in ("array", "object")):
        value = _result_value(result_schema, arguments, rng)
    else:
        ws = words(tool_name)
        value = {"status": "ok"}
        value.update({k: v for k, v in list(arguments.items())[:3]})
        if ws and ws[0] in ("calculate", "compute", "calc", "estimate", "convert", "count", "get", "find"):
            value["result"] = round(rng.uniform(1, 999), 2)
        elif ws and ws[0] in ("create", "add", "book", "schedule", "send", "post", "register", "submit", "place"):
            value["id"] = _id(ws[-1] if ws else "item", rng)
        elif ws and ws[0] in ("list", "search", "query"):
            value["results"] = [rng.choice(WORDS) for _ in range(rng.randint(2, 3))]
    return json.dumps(value, ensure_ascii=False)


def _result_value(schema: dict, arguments: dict, rng: random.Random, depth: int = 0) -> Any:
    t = schema.get("type")
    if t == "array":
        items = schema.get("items") if isinstance(schema.get("items"), dict) else {"type": "string"}
        return [_result_value(items, arguments, rng, depth + 1) for _ in range(rng.randint(1, 3))] if depth < 3 else []
    if t == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        out = {}
        for k, s in list(props.items())[:8]:
            if k in arguments and not isinstance(arguments[k], (dict, list)):
                out[k] = arguments[k]
            elif depth < 3:
                s = s if isinstance(s, dict) else {}
                out[k] = _result_value(s, arguments, rng, depth + 1) if s.get("type") in ("array", "object") \
                    else sample(k, s, rng, 2)
        return out
    return sample("value", schema, rng, 2)
