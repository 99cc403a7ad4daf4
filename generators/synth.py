"""Procedural API synthesis: thousands of distinct tool schemas from one seed (``generate tools --synthesize N``).

Diversity is what makes tool-use data generalise: a model trained on 22 tools learns those 22.
The synthesiser expands a vocabulary of our own (43 domains, 223 function concepts written for
this module; nothing from any benchmark) into tool schemas:

* **concepts** (``DOMAINS``): ``verb object | parameters | result fields``, e.g. ``calculate loan
  payment | principal:num, annual_rate:num, years:int, payments_per_year:int=12 | payment:num``.
  Parameter types: ``str``, ``int``, ``num``, ``bool``, ``date``, ``email``, ``url``,
  ``a|b|c`` (an enum), ``[str]``/``[int]``/``[num]`` (arrays), ``{k:type,...}`` (an object);
  ``?`` marks an optional parameter, ``=V`` an optional one with a default.
* **senses** per concept: the base, a *qualified* sibling (``hourly weather forecast`` beside
  ``weather forecast``), a sibling keyed differently (``..._by_name`` instead of an id) and an
  *extended* one with more optional parameters: families of near-identical tools, the hard part
  of choosing.
* **naming styles**: ``snake_case``, ``camelCase``, dotted namespaces (``weather.get_forecast``)
  and ``Namespace_verbObject``; several description styles; parameter descriptions present or not.

Each tool carries ``x-trajtune`` metadata: ``domain``, ``family`` (the concept), ``sense`` (tools
of one sense do the same thing), ``split`` (``eval`` for a deterministic ~10% of families: whole
families held out, so evaluation meets tools never trained on) and a ``result`` schema for the
simulator. Deterministic per seed.
"""
from __future__ import annotations

import random
import re
from typing import Any

from trajtune.generators.values import words

# domain -> (namespace, qualifiers for sibling senses, extra optional parameters, concepts)
DOMAINS: dict[str, tuple[str, list[str], list[str], list[str]]] = {
    "weather": ("weather", ["hourly", "daily", "historical"], ["units:metric|imperial=metric", "language?"], [
        "get weather forecast | city, days:int | temperature:num, conditions",
        "get current weather | city | temperature:num, humidity:int, conditions",
        "get air quality index | city | aqi:int, main_pollutant",
        "list weather alerts | region, severity:minor|moderate|severe? | alerts:[str]",
        "get sunrise time | city, date | sunrise, sunset",
        "get uv index | latitude:num, longitude:num | uv_index:num",
        "get rainfall total | city, start_date:date, end_date:date | millimeters:num",
    ]),
    "finance": ("finance", ["annual", "monthly", "projected"], ["currency?", "round_to:int=2"], [
        "calculate loan payment | principal:num, annual_rate:num, years:int, payments_per_year:int=12 | payment:num",
        "calculate compound interest | principal:num, rate:num, years:int, compounds_per_year:int=1 | final_amount:num",
        "calculate return on investment | initial_value:num, final_value:num | roi:num",
        "get stock quote | symbol | price:num, change:num",
        "convert currency | amount:num, from_currency, to_currency | converted:num, rate:num",
        "calculate break even point | fixed_costs:num, price_per_unit:num, variable_cost_per_unit:num | units:int",
        "calculate net present value | cash_flows:[num], discount_rate:num | npv:num",
        "get exchange rate history | from_currency, to_currency, days:int | rates:[num]",
    ]),
    "geometry": ("geometry", ["surface", "inscribed", "approximate"], ["unit:cm|m|in|ft=cm", "precision:int?"], [
        "calculate circle area | radius:num | area:num",
        "calculate rectangle perimeter | width:num, height:num | perimeter:num",
        "calculate triangle area from sides | side_a:num, side_b:num, side_c:num | area:num",
        "calculate sphere volume | radius:num | volume:num",
        "calculate cylinder surface | radius:num, height:num | surface:num",
        "calculate distance between points | point_a:[num], point_b:[num] | distance:num",
        "calculate polygon interior angle | sides:int | degrees:num",
    ]),
    "physics": ("physics", ["average", "instantaneous", "relativistic"], ["unit_system:si|imperial=si"], [
        "calculate kinetic energy | mass:num, velocity:num | joules:num",
        "calculate projectile range | initial_speed:num, launch_angle:num, gravity:num=9.81 | meters:num",
        "calculate wave frequency | wavelength:num, wave_speed:num | hertz:num",
        "calculate electric power | voltage:num, current:num | watts:num",
        "calculate free fall time | height:num, gravity:num=9.81 | seconds:num",
        "calculate pendulum period | length:num | seconds:num",
        "calculate density | mass:num, volume:num | density:num",
    ]),
    "chemistry": ("chem", ["theoretical", "standard", "molar"], ["temperature_kelvin:num?"], [
        "calculate molar mass | formula | grams_per_mole:num",
        "calculate solution molarity | moles:num, liters:num | molarity:num",
        "get element properties | element | atomic_number:int, atomic_mass:num",
        "calculate ideal gas pressure | moles:num, temperature:num, volume:num | pascals:num",
        "calculate dilution volume | initial_concentration:num, initial_volume:num, final_concentration:num | volume:num",
        "balance chemical equation | equation | balanced",
    ]),
    "statistics": ("stats", ["weighted", "rolling", "sample"], ["decimals:int=2"], [
        "calculate mean | values:[num] | mean:num",
        "calculate standard deviation | values:[num], population:bool? | std:num",
        "calculate median | values:[num] | median:num",
        "calculate correlation | x_values:[num], y_values:[num] | r:num",
        "calculate percentile | values:[num], percentile:int | value:num",
        "calculate z score | value:num, mean:num, std_dev:num | z:num",
        "calculate binomial probability | trials:int, successes:int, probability:num | p:num",
    ]),
    "math": ("mathlib", ["prime", "exact", "modular"], ["timeout_seconds:int?"], [
        "calculate factorial | number:int | result:int",
        "find greatest common divisor | first_number:int, second_number:int | gcd:int",
        "find least common multiple | numbers:[int] | lcm:int",
        "solve quadratic equation | a:num, b:num, c:num | roots:[num]",
        "check prime number | number:int | is_prime:bool",
        "calculate fibonacci number | position:int | value:int",
        "calculate logarithm | value:num, base:num=10 | result:num",
        "find prime factors | number:int | factors:[int]",
    ]),
    "travel": ("travel", ["direct", "cheapest", "refundable"], ["cabin_class:economy|premium|business=economy", "max_results:int?"], [
        "search flights | origin, destination, departure_date:date, passengers:int=1 | flights:[str]",
        "book hotel room | city, check_in:date, nights:int, guests:int=2 | booking_id",
        "get visa requirements | nationality, destination_country | visa_required:bool",
        "find car rental | city, pickup_date:date, days:int | offers:[str]",
        "get travel time | origin, destination, mode:driving|walking|cycling|transit | minutes:int",
        "list tourist attractions | city, category:museum|park|landmark|market? | attractions:[str]",
        "cancel booking | booking_id, reason? | cancelled:bool",
    ]),
    "restaurants": ("dining", ["nearby", "top rated", "late night"], ["price_level:int?", "open_now:bool?"], [
        "find restaurants | city, cuisine, party_size:int? | restaurants:[str]",
        "reserve table | restaurant_name, date, time, party_size:int | reservation_id",
        "get restaurant menu | restaurant_name | dishes:[str]",
        "get restaurant reviews | restaurant_name, limit:int=5 | reviews:[str]",
        "order food delivery | restaurant_name, items:[str], address | order_id, eta_minutes:int",
    ]),
    "recipes": ("recipes", ["vegetarian", "quick", "low sodium"], ["servings:int?", "max_minutes:int?"], [
        "search recipes | ingredients:[str], diet:vegan|vegetarian|keto|any=any | recipes:[str]",
        "get recipe nutrition | dish, servings:int | calories:int, protein_grams:num",
        "scale recipe | dish, from_servings:int, to_servings:int | ingredients:[str]",
        "convert cooking units | quantity:num, from_unit:cup|tablespoon|gram|ounce, to_unit:cup|tablespoon|gram|ounce | quantity:num",
        "plan weekly meals | diet:vegan|vegetarian|keto|any, meals_per_day:int=3 | plan:[str]",
    ]),
    "health": ("health", ["resting", "average", "target"], ["age:int?", "sex:female|male|unspecified?"], [
        "calculate body mass index | weight_kg:num, height_m:num | bmi:num",
        "calculate daily calorie needs | weight_kg:num, height_cm:num, age:int, activity:low|moderate|high | calories:int",
        "calculate target heart rate | age:int, intensity:num | bpm:int",
        "log water intake | user_id, milliliters:int | total_today:int",
        "find clinics | city, specialty:dentist|pediatrics|dermatology|cardiology | clinics:[str]",
        "schedule appointment | patient_name, clinic_name, date, time | appointment_id",
    ]),
    "fitness": ("fitness", ["weekly", "interval", "recovery"], ["difficulty:easy|medium|hard?"], [
        "log workout | user_id, activity:running|cycling|swimming|rowing, minutes:int, distance_km:num? | workout_id",
        "calculate pace | distance_km:num, minutes:num | minutes_per_km:num",
        "estimate calories burned | activity:running|cycling|swimming|rowing, minutes:int, weight_kg:num | calories:int",
        "get training plan | goal:5k|10k|half marathon|marathon, weeks:int | plan:[str]",
        "get step count | user_id, date | steps:int",
    ]),
    "sports": ("sports", ["season", "career", "playoff"], ["season_year:int?"], [
        "get team standings | league, season_year:int | standings:[str]",
        "get match result | home_team, away_team, date | score",
        "get player statistics | player_name, season_year:int? | points:int, games:int",
        "list upcoming fixtures | team, limit:int=5 | fixtures:[str]",
        "get head to head record | team_a, team_b | wins_a:int, wins_b:int, draws:int",
    ]),
    "music": ("music", ["live", "acoustic", "remastered"], ["explicit:bool?", "limit:int?"], [
        "search songs | query, artist? | songs:[str]",
        "get album tracks | album, artist | tracks:[str]",
        "create playlist | name, song_titles:[str], public:bool=false | playlist_id",
        "get artist biography | artist | biography",
        "find concerts | artist, city | concerts:[str]",
        "get song lyrics | song, artist | lyrics",
    ]),
    "movies": ("movies", ["classic", "streaming", "award winning"], ["language?", "region?"], [
        "search movies | title, year:int? | movies:[str]",
        "get movie showtimes | movie, city, date | showtimes:[str]",
        "get movie ratings | movie | rating:num, votes:int",
        "recommend movies | genre, min_rating:num?, limit:int=5 | movies:[str]",
        "get cast list | movie | cast:[str]",
    ]),
    "books": ("library", ["rare", "digital", "first edition"], ["format:hardcover|paperback|ebook?"], [
        "search books | query, genre?, limit:int=10 | books:[str]",
        "get book details | isbn | title, author, pages:int",
        "borrow book | member_id, isbn, due_date:date | loan_id",
        "renew loan | loan_id, days:int=14 | due_date",
        "list books by author | author, sort:newest|oldest|title=newest | books:[str]",
    ]),
    "ecommerce": ("shop", ["discounted", "bulk", "gift"], ["currency?", "in_stock_only:bool?"], [
        "search products | query, max_price:num?, category? | products:[str]",
        "add to cart | cart_id, product_id, quantity:int=1 | items:int",
        "get order status | order_id | status, eta",
        "apply coupon | cart_id, coupon_code | discount:num",
        "calculate shipping cost | weight_kg:num, destination_country, express:bool=false | cost:num",
        "return item | order_id, product_id, reason | return_id",
        "compare product prices | product_ids:[str] | cheapest",
    ]),
    "banking": ("bank", ["pending", "scheduled", "international"], ["memo?"], [
        "get account balance | account_id | balance:num, currency",
        "transfer money | from_account, to_account, amount:num | transfer_id",
        "list transactions | account_id, start_date:date, end_date:date? | transactions:[str]",
        "freeze card | card_id, reason:lost|stolen|suspicious | frozen:bool",
        "pay bill | account_id, payee, amount:num, date | payment_id",
    ]),
    "crypto": ("crypto", ["spot", "historical", "average"], ["exchange?"], [
        "get coin price | coin, currency | price:num",
        "calculate mining profit | hash_rate:num, power_watts:num, electricity_cost:num | daily_profit:num",
        "get wallet balance | wallet_address | balance:num",
        "get gas fee estimate | network:ethereum|polygon|arbitrum, priority:low|medium|high | fee:num",
    ]),
    "realestate": ("property", ["rental", "commercial", "recently sold"], ["max_results:int?"], [
        "search listings | city, min_bedrooms:int, max_price:num? | listings:[str]",
        "estimate property value | address, square_meters:num, bedrooms:int | value:num",
        "calculate mortgage payment | home_price:num, down_payment:num, annual_rate:num, years:int=30 | payment:num",
        "schedule viewing | listing_id, date, time | viewing_id",
        "calculate rental yield | annual_rent:num, property_price:num | yield_percent:num",
    ]),
    "calendar": ("calendar", ["recurring", "shared", "all day"], ["timezone?", "reminder_minutes:int?"], [
        "create event | title, date, start_time, duration_minutes:int=60 | event_id",
        "list events | date, calendar_name? | events:[str]",
        "find free slot | attendees:[str], date, duration_minutes:int | slots:[str]",
        "delete event | event_id, notify_attendees:bool=true | deleted:bool",
        "set reminder | message, date, time | reminder_id",
    ]),
    "messaging": ("chat", ["group", "scheduled", "urgent"], ["silent:bool?"], [
        "send message | recipient, message | message_id",
        "send email | to:email, subject, body, cc:[str]? | message_id",
        "list unread messages | channel, limit:int=20 | messages:[str]",
        "create channel | name, members:[str], private:bool=false | channel_id",
        "translate text | text, target_language | translation",
    ]),
    "social": ("social", ["trending", "pinned", "archived"], ["limit:int?"], [
        "publish post | text, tags:[str]? | post_id",
        "get follower count | username | followers:int",
        "search posts | query, since:date? | posts:[str]",
        "get trending hashtags | country, limit:int=10 | hashtags:[str]",
    ]),
    "news": ("news", ["breaking", "local", "weekly"], ["language?", "max_articles:int?"], [
        "get headlines | country, category:business|science|sports|technology|health | headlines:[str]",
        "search articles | query, from_date:date?, to_date:date? | articles:[str]",
        "summarize article | url | summary",
        "get news sources | language, country? | sources:[str]",
    ]),
    "education": ("edu", ["online", "introductory", "advanced"], ["level:beginner|intermediate|advanced?"], [
        "search courses | topic, max_weeks:int? | courses:[str]",
        "enroll student | student_id, course_id | enrollment_id",
        "get grade average | student_id, term | average:num",
        "calculate gpa | grades:[num], credits:[int] | gpa:num",
        "get assignment deadlines | course_id, weeks_ahead:int=2 | deadlines:[str]",
    ]),
    "jobs": ("careers", ["remote", "part time", "senior"], ["salary_min:num?"], [
        "search jobs | title, city, remote:bool? | jobs:[str]",
        "estimate salary | title, city, years_experience:int | salary:num",
        "apply for job | job_id, applicant_name, resume_url:url | application_id",
        "list required skills | title | skills:[str]",
    ]),
    "hr": ("hr", ["pending", "approved", "annual"], ["department?"], [
        "request time off | employee_id, start_date:date, end_date:date, reason? | request_id",
        "get leave balance | employee_id, leave_type:vacation|sick|parental | days:num",
        "calculate payroll | employee_id, hours_worked:num, hourly_rate:num | gross_pay:num",
        "list team members | manager_id | members:[str]",
    ]),
    "logistics": ("shipping", ["express", "freight", "international"], ["insurance:bool?"], [
        "track package | tracking_number | status, location",
        "create shipment | sender_address, recipient_address, weight_kg:num | shipment_id",
        "estimate delivery date | origin, destination, service:standard|express|overnight | date",
        "calculate freight volume | length_cm:num, width_cm:num, height_cm:num, quantity:int | cubic_meters:num",
    ]),
    "transport": ("transit", ["night", "express", "accessible"], ["wheelchair_access:bool?"], [
        "get bus schedule | stop_id, route | departures:[str]",
        "plan route | origin, destination, depart_at:time? | legs:[str]",
        "get bike share availability | station_id | bikes:int, docks:int",
        "calculate fuel cost | distance_km:num, consumption_per_100km:num, fuel_price:num | cost:num",
        "get parking availability | city, lot_name? | free_spaces:int",
    ]),
    "smarthome": ("home", ["scheduled", "energy saving", "guest"], ["room?"], [
        "set thermostat | room, temperature:num, mode:heat|cool|auto=auto | ok:bool",
        "turn on lights | room, brightness:int? | ok:bool",
        "lock door | door_name, lock:bool | locked:bool",
        "get energy usage | device_id, days:int=7 | kwh:num",
        "start vacuum | room, mode:quiet|standard|turbo=standard | job_id",
    ]),
    "devops": ("ops", ["canary", "staging", "rolling"], ["dry_run:bool?", "timeout_seconds:int?"], [
        "deploy service | service_name, version, environment:staging|production | deployment_id",
        "get service metrics | service_name, metric:latency|errors|cpu|memory, minutes:int=60 | values:[num]",
        "scale deployment | service_name, replicas:int | replicas:int",
        "rollback release | service_name, to_version | ok:bool",
        "create incident | title, severity:low|medium|high|critical, service_name | incident_id",
        "query logs | service_name, query, since_minutes:int=15 | lines:[str]",
    ]),
    "databases": ("db", ["read only", "archived", "partitioned"], ["schema?"], [
        "run sql query | database, query | rows:[str]",
        "count table rows | database, table | rows:int",
        "create database backup | database, destination_url:url | backup_id",
        "list tables | database, pattern? | tables:[str]",
        "export table | database, table, format:csv|json|parquet | file_url",
    ]),
    "files": ("storage", ["shared", "versioned", "encrypted"], ["overwrite:bool?"], [
        "upload file | file_name, folder | file_id",
        "share file | file_id, recipient:email, permission:view|comment|edit=view | link",
        "list folder contents | folder, recursive:bool=false | files:[str]",
        "compress files | file_names:[str], archive_name | archive_id",
        "get storage usage | account_id | used_gb:num, quota_gb:num",
    ]),
    "security": ("sec", ["expired", "privileged", "failed"], ["notify:bool?"], [
        "reset password | username, send_email:bool=true | ok:bool",
        "scan url for malware | url | verdict",
        "list login attempts | username, hours:int=24 | attempts:[str]",
        "rotate api key | service_name, key_id | new_key_id",
        "check password strength | password | score:int",
    ]),
    "agriculture": ("farm", ["organic", "seasonal", "irrigated"], ["soil_type:clay|sand|loam?"], [
        "estimate crop yield | crop, hectares:num, rainfall_mm:num | tonnes:num",
        "get planting calendar | crop, region | months:[str]",
        "calculate fertilizer amount | crop, hectares:num, nitrogen_target:num | kilograms:num",
        "get soil moisture | field_id | moisture_percent:num",
    ]),
    "astronomy": ("astro", ["visible", "next", "total"], ["observer_city?"], [
        "get moon phase | date | phase, illumination:num",
        "calculate orbital period | semi_major_axis_au:num | years:num",
        "list visible planets | city, date | planets:[str]",
        "calculate light travel time | distance_km:num | seconds:num",
    ]),
    "environment": ("eco", ["annual", "per capita", "projected"], ["year:int?"], [
        "calculate carbon footprint | electricity_kwh:num, gas_m3:num, car_km:num | tonnes_co2:num",
        "get recycling rules | city, material:plastic|glass|paper|metal|electronics | rules",
        "estimate solar output | panel_kw:num, city, month:int | kwh:num",
        "get species status | animal | status",
    ]),
    "pets": ("pets", ["senior", "puppy", "indoor"], ["breed?"], [
        "find veterinarians | city, open_weekends:bool? | clinics:[str]",
        "calculate pet food portion | species:dog|cat|rabbit, weight_kg:num, age_years:num | grams_per_day:int",
        "book grooming | pet_name, date, service:bath|haircut|nails | booking_id",
        "list adoptable pets | city, species:dog|cat|rabbit|bird | pets:[str]",
    ]),
    "events": ("tickets", ["vip", "early bird", "group"], ["seats_together:bool?"], [
        "search events | city, date, category:concert|theater|sports|festival? | events:[str]",
        "buy tickets | event_id, quantity:int, section? | order_id",
        "get venue info | venue_name | address, capacity:int",
        "check ticket availability | event_id, quantity:int=2 | available:bool",
    ]),
    "legal": ("legal", ["pending", "closed", "federal"], ["jurisdiction?"], [
        "search case law | query, year_from:int?, year_to:int? | cases:[str]",
        "calculate filing deadline | filing_date:date, days_allowed:int | deadline:date",
        "get contract template | contract_type:nda|lease|employment|service, country | template_url",
        "calculate late fee | amount_due:num, days_late:int, daily_rate:num | fee:num",
    ]),
    "automotive": ("auto", ["used", "electric", "certified"], ["max_mileage:int?"], [
        "decode vin | vin | make, model, year:int",
        "estimate car value | make, model, year:int, mileage_km:int | value:num",
        "find charging stations | city, connector:ccs|chademo|type2 | stations:[str]",
        "schedule car service | vin, date, service:oil change|tire rotation|inspection | appointment_id",
    ]),
    "gaming": ("games", ["ranked", "casual", "seasonal"], ["platform:pc|console|mobile?"], [
        "get player rank | username, game | rank, points:int",
        "search games | genre, max_price:num? | games:[str]",
        "get leaderboard | game, limit:int=10 | players:[str]",
        "roll dice | sides:int, count:int=1 | rolls:[int]",
    ]),
    "language": ("lingo", ["formal", "informal", "literal"], ["dialect?"], [
        "translate phrase | text, source_language, target_language | translation",
        "get word definition | word, language? | definitions:[str]",
        "find synonyms | word, limit:int=5 | synonyms:[str]",
        "detect language | text | language, confidence:num",
        "count words | text | words:int",
    ]),
}

STYLES = ("snake", "camel", "dotted", "namespaced")


def third_person(verb: str) -> str:
    """'get' -> 'Gets', 'search' -> 'Searches', 'apply' -> 'Applies', 'compress' -> 'Compresses'."""
    v = verb.lower()
    if re.search(r"[^aeiou]y$", v):
        v = v[:-1] + "ies"
    elif re.search(r"(s|sh|ch|x|z|o)$", v):
        v += "es"
    else:
        v += "s"
    return v.capitalize()

_TYPES = {"str": {"type": "string"}, "int": {"type": "integer"}, "num": {"type": "number"},
          "bool": {"type": "boolean"}, "date": {"type": "string", "format": "date"},
          "time": {"type": "string", "format": "time"}, "email": {"type": "string", "format": "email"},
          "url": {"type": "string", "format": "uri"}}
# parameter descriptions by name (else built from the name's words)
_PDESC = {
    "city": "Name of the city", "days": "Number of days", "date": "The date, as YYYY-MM-DD",
    "principal": "The amount borrowed or invested", "annual_rate": "Yearly interest rate as a decimal, e.g. 0.05",
    "rate": "Interest rate per period as a decimal", "years": "Number of years", "symbol": "Ticker symbol",
    "radius": "Radius of the shape", "mass": "Mass in kilograms", "velocity": "Speed in meters per second",
    "values": "The list of numbers", "limit": "Maximum number of results", "query": "Free-text search terms",
    "origin": "Starting city", "destination": "Destination city", "time": "Time of day, as HH:MM",
    "currency": "Three-letter currency code", "language": "Language name", "formula": "Chemical formula, e.g. H2O",
    "weight_kg": "Weight in kilograms", "height_m": "Height in meters", "height_cm": "Height in centimeters",
    "age": "Age in years", "text": "The text to process", "message": "The message text", "unit": "Unit of length",
    "units": "Unit system for the results", "gravity": "Gravitational acceleration in m/s^2",
}


def _parse_param(spec: str) -> tuple[str, dict, bool, Any]:
    """``name:type``, ``name?`` (optional), ``name:type=default`` -> (name, schema, required, default)."""
    spec = spec.strip()
    default: Any = None
    has_default = False
    if "=" in spec:
        spec, raw = spec.split("=", 1)
        has_default = True
        default = {"true": True, "false": False}.get(raw, raw)
    optional = spec.endswith("?")
    spec = spec.rstrip("?")
    name, _, typ = spec.partition(":")
    typ = typ or "str"
    if typ.startswith("["):
        schema: dict = {"type": "array", "items": dict(_TYPES[typ.strip("[]")])}
    elif "|" in typ:
        schema = {"type": "string", "enum": typ.split("|")}
    else:
        schema = dict(_TYPES[typ])
    if has_default:
        t = schema.get("type")
        if t == "integer":
            default = int(default)
        elif t == "number":
            default = float(default)
        schema["default"] = default
    return name, schema, not (optional or has_default), default


def _split_concept(line: str) -> tuple[str, str, list[str], list[str]]:
    parts = [p.strip() for p in line.split(" | ")]
    head, params = parts[0], parts[1] if len(parts) > 1 else ""
    result = parts[2] if len(parts) > 2 else ""
    verb, _, obj = head.partition(" ")
    return verb, obj, [p for p in _split_top(params) if p], [r for r in _split_top(result) if r]


def _split_top(text: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def _name(style: str, ns: str, verb: str, obj_words: list[str]) -> str:
    if style == "snake":
        return "_".join([verb] + obj_words)
    if style == "camel":
        return verb + "".join(w.capitalize() for w in obj_words)
    if style == "dotted":
        return f"{ns}.{'_'.join([verb] + obj_words)}"
    return ns.capitalize() + "_" + verb + "".join(w.capitalize() for w in obj_words)


def _pdesc(name: str, schema: dict, rng: random.Random) -> str | None:
    if rng.random() < 0.15:
        return None
    base = _PDESC.get(name) or (" ".join(words(name)).capitalize())
    if "default" in schema:
        base += f" (default {str(schema['default']).lower() if isinstance(schema['default'], bool) else schema['default']})"
    return base + rng.choice([".", "", "."])


def _describe(verb: str, obj: str, req: list[str], rng: random.Random, qualifier: str = "", key_alt: str = "") -> str:
    phrase = f"{qualifier + ' ' if qualifier else ''}{obj}"
    given = [" ".join(words(p)) for p in req][:3]
    given_txt = (", ".join(given[:-1]) + " and " + given[-1]) if len(given) > 1 else (given[0] if given else "")
    style = rng.randrange(4)
    if style == 0 or not given_txt:
        text = f"{verb.capitalize()} the {phrase}"
    elif style == 1:
        text = f"{verb.capitalize()} the {phrase} for the given {given_txt}"
    elif style == 2:
        text = f"{third_person(verb)} the {phrase} from {given_txt}"
    else:
        text = f"{verb.capitalize()} the {phrase}, given {given_txt}"
    if key_alt:
        text += f", looked up by {key_alt}"
    return text + "."


def _tool(rng: random.Random, domain: str, ns: str, verb: str, obj: str, params: list[str], result: list[str],
          *, family: str, sense: str, split: str, qualifier: str = "", key_alt: str = "") -> dict:
    props: dict[str, dict] = {}
    required: list[str] = []
    for p in params:
        name, schema, req, _ = _parse_param(p)
        desc = _pdesc(name, schema, rng)
        if desc:
            schema = {**schema, "description": desc}
        props[name] = schema
        if req:
            required.append(name)
    obj_words = ([w for w in qualifier.split()] if qualifier else []) + obj.split()
    style = rng.choice(STYLES)
    name = _name(style, ns, verb, obj_words)
    rprops = {}
    for r in result:
        rname, rschema, _, _ = _parse_param(r)
        rprops[rname] = rschema
    return {"type": "function", "function": {
        "name": name[:64],
        "description": _describe(verb, obj, required, rng, qualifier, key_alt),
        "parameters": {"type": "object", "properties": props, "required": required}},
        "x-trajtune": {"domain": domain, "family": family, "sense": sense, "split": split, "style": style,
                       "result": {"type": "object", "properties": rprops}}}


def _held_out(family: str, seed: int, share: float) -> bool:
    import hashlib

    h = int(hashlib.sha1(f"{seed}:{family}".encode()).hexdigest()[:8], 16)
    return (h % 1000) < share * 1000


def synthesize(count: int | None = 1000, seed: int = 0, *, eval_share: float = 0.1) -> list[dict]:
    """``count`` distinct tools (OpenAI format + ``x-trajtune``), deterministic for ``seed``.

    Every concept of every domain gives up to four senses (base, qualified, re-keyed, extended),
    each in one or two naming styles; the pool is shuffled by the seed and cut at ``count``
    (``ValueError`` beyond what the vocabulary holds: :func:`capacity`).
    """
    rng = random.Random(f"synth:{seed}")
    tools: list[dict] = []
    names: set[str] = set()
    for domain, (ns, qualifiers, extras, concepts) in DOMAINS.items():
        for ci, line in enumerate(concepts):
            verb, obj, params, result = _split_concept(line)
            family = f"{domain}.{verb}_{'_'.join(obj.split())}"
            split = "eval" if _held_out(family, seed, eval_share) else "train"
            senses: list[tuple[str, dict]] = [("base", {})]
            q = qualifiers[ci % len(qualifiers)]
            senses.append(("qualified", {"qualifier": q, "params": params + [extras[0]]}))
            key = params[0].split(":")[0].rstrip("?")
            if key.endswith("_id"):
                alt = key[:-3] + "_name"
                senses.append(("rekeyed", {"params": [alt] + params[1:], "key_alt": " ".join(words(alt))}))
            senses.append(("extended", {"params": params + extras}))
            for sense, kw in senses:
                for copy in range(2):
                    # an extended tool does what the base does (more optional parameters): one sense,
                    # so the two are never offered as alternatives to choose between
                    t = _tool(rng, domain, ns, verb, obj, kw.get("params", params), result, family=family,
                              sense=f"{family}:{'base' if sense == 'extended' else sense}", split=split, qualifier=kw.get("qualifier", ""),
                              key_alt=kw.get("key_alt", ""))
                    if sense == "rekeyed":  # the name says how it differs: get_loan_by_loan_name
                        fn = t["function"]
                        by = kw["key_alt"].replace(" ", "_")
                        fn["name"] = (fn["name"] + f"_by_{by}") if "_" in fn["name"] or "." in fn["name"] else \
                            fn["name"] + "By" + "".join(w.capitalize() for w in kw["key_alt"].split())
                        fn["name"] = fn["name"][:64]
                    if sense == "extended" and copy == 0:
                        t["function"]["name"] = t["function"]["name"] + ("_v2" if "." in t["function"]["name"] or "_" in t["function"]["name"] else "V2")
                    if t["function"]["name"] in names:
                        continue
                    names.add(t["function"]["name"])
                    tools.append(t)
    if count is None:
        count = len(tools)
    if count > len(tools):
        raise ValueError(f"the vocabulary holds {len(tools)} distinct tools; asked for {count}")
    random.Random(f"synth-order:{seed}").shuffle(tools)
    return tools[:count]


def capacity(seed: int = 0) -> int:
    """How many distinct tools :func:`synthesize` can make for ``seed``."""
    return len(synthesize(None, seed))


def summary(tools: list[dict]) -> dict:
    """Counts a user checks: tools, domains, families, styles, parameter types, held-out share."""
    types: dict[str, int] = {}
    styles: dict[str, int] = {}
    for t in tools:
        x = t.get("x-trajtune") or {}
        styles[x.get("style", "?")] = styles.get(x.get("style", "?"), 0) + 1
        for p in t["function"]["parameters"]["properties"].values():
            k = "enum" if "enum" in p else p.get("type", "any")
            if "default" in p:
                types["optional with default"] = types.get("optional with default", 0) + 1
            types[k] = types.get(k, 0) + 1
    return {"tools": len(tools), "domains": len({(t.get("x-trajtune") or {}).get("domain") for t in tools}),
            "families": len({(t.get("x-trajtune") or {}).get("family") for t in tools}),
            "held_out_tools": sum(1 for t in tools if (t.get("x-trajtune") or {}).get("split") == "eval"),
            "styles": styles, "parameter_types": types}

