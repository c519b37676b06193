"""Deterministic sample data for the ``shop_events`` contract.

Used by the tests, the demo and the benchmarks (``bench/processor/run.py``).
Standard library only, because the ``weir`` package imports it at run time.

Usage::

    from weir.samples import generate_shop_events, to_ndjson, to_csv

    events = generate_shop_events(10_000, invalid_fraction=0.01, seed=42)
    ndjson_bytes = to_ndjson(events)
    csv_bytes = to_csv(events)

or, from the command line, to write a sample file::

    python -m weir.samples 1000 --invalid-fraction 0.05 --format ndjson > events.ndjson

The same ``(n, invalid_fraction, seed, history)`` always gives the same events on every
platform (only integer and ``random.random()`` draws are used, no libm calls).
The valid part of the data does not depend on ``invalid_fraction``: broken
records are made by damaging a deterministic choice of otherwise valid events.

History (``history=True``, the default): between their visits, about a third of the users
who come back move to another country (some twice) and about a fifth change plan; over the
events' time span a fifth of the products change price (some twice) and a few change
category. Events show the attributes valid at their time (prices in the user's currency at
that time). The changes are drawn from a random stream of their own and applied to the
generated events before any are damaged, so the events, their ids, times, users, products
and validity are the same with and without history; only those attribute values differ.
:func:`shop_history` lists the changes, for tests of slowly changing dimensions.

Valid events follow every rule of the contract. Broken events violate at least
one rule *in their JSON form*; a few kinds of damage cannot be expressed in CSV
(every CSV value is text, so ``"quantity": "3"`` is a valid CSV quantity, and an
unknown field is dropped unless ``to_csv(..., extra_columns=True)``), so the
rejected count of the CSV form can be a little lower than that of the JSON form.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import sys
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

__all__ = [
    "SHOP_EVENT_FIELDS",
    "Change",
    "generate_shop_events",
    "shop_history",
    "to_csv",
    "to_json_array",
    "to_ndjson",
]

#: The contract's fields, in contract order (also the CSV header order).
SHOP_EVENT_FIELDS: tuple[str, ...] = (
    "event_id",
    "event_type",
    "event_time",
    "user_id",
    "user_email",
    "user_country",
    "user_plan",
    "session_id",
    "product_id",
    "product_name",
    "product_category",
    "unit_price",
    "quantity",
    "currency",
    "properties",
)

# fmt: off
_PRODUCT_EVENT_TYPES: tuple[str, ...] = ("add_to_cart", "remove_from_cart", "purchase", "refund")
_EVENT_TYPES: tuple[str, ...] = ("page_view", *_PRODUCT_EVENT_TYPES)
_EVENT_TYPE_WEIGHTS: tuple[int, ...] = (55, 20, 7, 15, 3)

_BASE_TIME = datetime(2024, 3, 1, 0, 0, 0, tzinfo=UTC)

# country -> (currency, typical UTC offsets of its users in minutes)
_COUNTRIES: tuple[tuple[str, str, tuple[int, ...]], ...] = (
    ("US", "USD", (-300, -360, -420, -480)),
    ("US", "USD", (-300, -480)),
    ("GB", "GBP", (0,)),
    ("DE", "EUR", (60, 120)),
    ("FR", "EUR", (60, 120)),
    ("ES", "EUR", (60, 120)),
    ("NL", "EUR", (60,)),
    ("JP", "JPY", (540,)),
    ("CA", "CAD", (-300, -480)),
    ("AU", "AUD", (600, 660)),
    ("IN", "USD", (330,)),
    ("BR", "USD", (-180,)),
)
_FX: dict[str, float] = {
    "USD": 1.0, "EUR": 0.92, "GBP": 0.79, "JPY": 149.0, "CAD": 1.36, "AUD": 1.52,
}
_PLANS: tuple[str, ...] = ("free", "pro", "enterprise")
_PLAN_WEIGHTS: tuple[int, ...] = (70, 25, 5)

_FIRST_NAMES: tuple[str, ...] = (
    "james", "maria", "wei", "olivia", "noah", "sofia", "lucas", "emma", "mateo", "yuki",
    "liam", "chloe", "arjun", "mia", "ethan", "zoe", "hugo", "lena", "omar", "ava",
    "kenji", "isla", "diego", "nora", "felix", "amara", "leo", "ines", "sven", "priya",
)
_LAST_NAMES: tuple[str, ...] = (
    "smith", "garcia", "chen", "muller", "rossi", "tanaka", "dubois", "kowalski", "silva",
    "johnson", "brown", "martin", "nguyen", "patel", "schmidt", "jones", "lopez", "kim",
    "wilson", "novak", "o'brien", "fischer", "moreau", "sato", "ivanova",
)
_EMAIL_DOMAINS: tuple[str, ...] = (
    "gmail.com", "yahoo.com", "outlook.com", "icloud.com", "proton.me", "example.com",
    "mail.example.co.uk", "web.de", "orange.fr", "company-intl.com",
)
_CATEGORIES: tuple[tuple[str, tuple[str, ...], float, float], ...] = (
    # category, nouns, min price USD, max price USD
    ("electronics",
     ("Headphones", "Smart Watch", "Bluetooth Speaker", "USB-C Hub", "E-Reader"), 15.0, 600.0),
    ("home & kitchen",
     ("Espresso Machine", "Chef's Knife", "Dutch Oven", "Café Press", "Blender"), 12.0, 450.0),
    ("books", ("Cookbook", "Travel Guide", "Novel", "Atlas", "Field Guide"), 6.0, 60.0),
    ("clothing",
     ("Rain Jacket", "Merino Sweater", "Running Shoes", "Linen Shirt", "Beanie"), 9.0, 250.0),
    ("beauty",
     ("Face Serum", "Shampoo Bar", "Crème Hydratante", "Lip Balm", "Sunscreen"), 4.0, 90.0),
    ("sports",
     ("Yoga Mat", "Climbing Chalk", "Road Bike Helmet", "Kettlebell", "Trail Poles"), 8.0, 600.0),
    ("toys", ("Puzzle", "Building Blocks", "Plush Ñandú", "Kite", "Board Game"), 5.0, 120.0),
    ("grocery", ("Coffee Beans", "Matcha Tin", "Olive Oil", "Dark Chocolate", "Müsli"), 3.0, 45.0),
)
_ADJECTIVES: tuple[str, ...] = (
    "Classic", "Ultra", "Compact", "Premium", "Everyday", "Pro", "Eco", "Deluxe", "Mini",
    "Nordic", "Artisan", "Wireless", "Organic", "Vintage", "Smart", "München",
)
_REFERRERS: tuple[str, ...] = (
    "https://www.google.com/",
    "https://www.google.com/search?q=wireless+headphones",
    "https://www.bing.com/",
    "https://duckduckgo.com/",
    "https://www.facebook.com/",
    "https://t.co/xK2fA9",
    "https://www.instagram.com/",
    "https://news.ycombinator.com/",
    "https://newsletter.example.com/issue/42",
    "android-app://com.google.android.gm/",
)
_DEVICES: tuple[str, ...] = ("mobile", "desktop", "tablet")
_DEVICE_WEIGHTS: tuple[int, ...] = (55, 38, 7)
_CAMPAIGNS: tuple[str, ...] = ("spring_sale", "newsletter_w10", "retargeting", "brand_search")
_VARIANTS: tuple[str, ...] = ("S", "M", "L", "XL", "2-pack", "500 g", "Gen 2", "Édition limitée")
# fmt: on


def _hex(rng: random.Random, digits: int) -> str:
    return f"{rng.getrandbits(4 * digits):0{digits}x}"


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _format_time(utc: datetime, offset_minutes: int, fraction_digits: int, use_z: bool) -> str:
    """RFC 3339 text for ``utc`` written in a local time with the given offset."""
    local = utc.astimezone(timezone(timedelta(minutes=offset_minutes)))
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    if fraction_digits:
        text += "." + f"{local.microsecond:06d}"[:fraction_digits]
    if use_z and offset_minutes == 0:
        return text + "Z"
    sign = "+" if offset_minutes >= 0 else "-"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"


class _Catalogue:
    """A fixed product catalogue (500 products), independent of ``n``."""

    def __init__(self, rng: random.Random, size: int = 500) -> None:
        self.products: list[tuple[str, str, str, float]] = []
        for k in range(size):
            category, nouns, low, high = _CATEGORIES[rng.randrange(len(_CATEGORIES))]
            name = f"{rng.choice(_ADJECTIVES)} {rng.choice(nouns)}"
            if rng.random() < 0.3:
                name += " " + rng.choice(_VARIANTS)
            price_usd = round(low + (high - low) * rng.random() ** 2, 2)
            self.products.append((f"p_{10_000 + k * 7}", name, category, price_usd))


class _Users:
    """A user pool whose size grows with ``n`` (about 8 events per user)."""

    def __init__(self, rng: random.Random, size: int) -> None:
        self.users: list[tuple[str, str, str, str, str, int]] = []
        for k in range(size):
            user_id = f"u_{100_000 + k * 13}"
            first = rng.choice(_FIRST_NAMES)
            last = rng.choice(_LAST_NAMES)
            style = rng.randrange(4)
            if style == 0:
                local = f"{first}.{last}"
            elif style == 1:
                local = f"{first}{k % 1000}"
            elif style == 2:
                local = f"{first[0]}{last}+shop"
            else:
                local = f"{first}_{last}{k % 97}"
            email = f"{local}@{rng.choice(_EMAIL_DOMAINS)}"
            if rng.random() < 0.12:  # people type their address in odd case
                email = email.title() if rng.random() < 0.5 else email.upper()
            country, currency, offsets = _COUNTRIES[rng.randrange(len(_COUNTRIES))]
            plan = rng.choices(_PLANS, _PLAN_WEIGHTS)[0]
            self.users.append((user_id, email, country, plan, currency, rng.choice(offsets)))


#: One attribute change: ``(kind, key, at, attribute, value)``, e.g.
#: ``("user", "u_100013", datetime(...), "user_country", "DE")`` or
#: ``("product", "p_10007", datetime(...), "unit_price_usd", 19.99)``.
Change = tuple[str, str, datetime, str, Any]

_User = tuple[str, str, str, str, str, int]
_Product = tuple[str, str, str, float]


class _History:
    """Attribute changes drawn from their own RNG: a user's between two of their visits
    (``visits``: each user's sessions as (first, last) event times), a product's anywhere in
    ``[start, end]``. ``user(k, at)`` / ``product(k, at)`` give the attributes valid then."""

    def __init__(
        self,
        rng: random.Random,
        users: _Users,
        catalogue: _Catalogue,
        visits: dict[int, list[tuple[datetime, datetime]]],
        start: datetime,
        end: datetime,
    ) -> None:
        self.users = users
        self.catalogue = catalogue
        self.user_changes: dict[int, list[tuple[datetime, _User]]] = {}
        self.product_changes: dict[int, list[tuple[datetime, _Product]]] = {}

        def between(earlier: datetime, later: datetime) -> datetime:
            seconds = max(1, int((later - earlier).total_seconds()))
            return earlier + timedelta(seconds=1 + rng.randrange(seconds))

        for k in sorted(visits):
            gaps = [(a[1], b[0]) for a, b in zip(visits[k], visits[k][1:], strict=False)]
            if not gaps:
                continue
            roll = rng.random()
            moves = min(len(gaps), 2 if roll < 0.15 else 1 if roll < 0.35 else 0)
            plan_change = 1 if rng.random() < 0.2 else 0
            kinds = ["country"] * moves + ["plan"] * plan_change
            chosen = sorted(rng.sample(range(len(gaps)), min(len(kinds), len(gaps))))
            changes: list[tuple[datetime, _User]] = []
            current = users.users[k]
            for gap, kind in zip(chosen, kinds, strict=False):
                user_id, email, country, plan, currency, offset = current
                if kind == "country":
                    others = [c for c in _COUNTRIES if c[0] != country]
                    country, currency, _ = others[rng.randrange(len(others))]
                else:
                    plan = rng.choice([p for p in _PLANS if p != plan])
                current = (user_id, email, country, plan, currency, offset)
                changes.append((between(*gaps[gap]), current))
            if changes:
                self.user_changes[k] = changes
        for k, product in enumerate(catalogue.products):
            roll = rng.random()
            reprices = 2 if roll < 0.07 else 1 if roll < 0.20 else 0
            kinds = ["price"] * reprices + ["category"] * (1 if rng.random() < 0.05 else 0)
            moments = sorted(between(start, end) for _ in kinds)
            changes_p: list[tuple[datetime, _Product]] = []
            current_p = product
            for at, kind in zip(moments, kinds, strict=True):
                product_id, name, category, price_usd = current_p
                if kind == "price":
                    # Within every currency's contract range (600 USD is 89,400 JPY).
                    factor = 0.7 + 0.6 * rng.random()
                    price_usd = min(600.0, max(0.01, round(price_usd * factor, 2)))
                else:
                    others_c = [c[0] for c in _CATEGORIES if c[0] != category]
                    category = others_c[rng.randrange(len(others_c))]
                current_p = (product_id, name, category, price_usd)
                changes_p.append((at, current_p))
            if changes_p:
                self.product_changes[k] = changes_p

    @staticmethod
    def _at(base: Any, changes: list[tuple[datetime, Any]] | None, at: datetime) -> Any:
        value = base
        for moment, changed in changes or ():
            if moment > at:
                break
            value = changed
        return value

    def user(self, k: int, at: datetime) -> _User:
        return self._at(self.users.users[k], self.user_changes.get(k), at)

    def product(self, k: int, at: datetime) -> _Product:
        return self._at(self.catalogue.products[k], self.product_changes.get(k), at)

    def apply(self, event: dict[str, Any], user: int, product: int, at: datetime) -> None:
        """Sets the attributes of a generated (valid) event to those valid at ``at``."""
        _, _, country, plan, currency, _ = self.user(user, at)
        _, _, category, price_usd = self.product(product, at)
        if "user_country" in event:
            event["user_country"] = country
        event["user_plan"] = plan
        if event.get("product_category") is not None:
            event["product_category"] = category
        if event.get("unit_price") is not None:
            price = price_usd * _FX[currency]
            event["unit_price"] = float(round(price)) if currency == "JPY" else round(price, 2)
            event["currency"] = currency

    def changes(self) -> list[Change]:
        """Every change, oldest first."""
        out: list[Change] = []
        for kind, bases, all_changes, fields in (
            ("user", self.users.users, self.user_changes, ("user_country", "user_plan")),
            (
                "product",
                self.catalogue.products,
                self.product_changes,
                ("product_category", "unit_price_usd"),
            ),
        ):
            for k, changes in all_changes.items():
                before = bases[k]
                for at, after in changes:
                    for name, old, new in zip(fields, before[2:4], after[2:4], strict=True):
                        if old != new:
                            out.append((kind, after[0], at, name, new))
                    before = after
        return sorted(out, key=lambda c: (c[2], c[0], c[1], c[3]))


def _valid_event(
    rng: random.Random,
    now: datetime,
    user: tuple[str, str, str, str, str, int],
    session_id: str,
    catalogue: _Catalogue,
) -> tuple[dict[str, Any], int]:
    """A valid event and the index of the product it names (drawn whether or not it does)."""
    user_id, email, country, plan, currency, offset = user
    event_type = rng.choices(_EVENT_TYPES, _EVENT_TYPE_WEIGHTS)[0]

    style = rng.random()
    if style < 0.55:
        event_time = _format_time(now, 0, 0, use_z=True)
    elif style < 0.75:
        event_time = _format_time(now, 0, 3, use_z=True)
    elif style < 0.93:
        event_time = _format_time(now, offset, 0, use_z=False)
    elif style < 0.98:
        event_time = _format_time(now, offset, 6, use_z=False)
    else:
        event_time = _format_time(now, 0, 0, use_z=True).replace("T", "t").replace("Z", "z")

    event_id = _uuid(rng)
    if rng.random() < 0.03:
        event_id = event_id.upper()

    event: dict[str, Any] = {
        "event_id": event_id,
        "event_type": event_type,
        "event_time": event_time,
        "user_id": user_id,
    }
    if rng.random() < 0.97:
        event["user_email"] = email
    if rng.random() < 0.98:
        event["user_country"] = country
    event["user_plan"] = plan
    event["session_id"] = session_id

    product_index = rng.randrange(len(catalogue.products))
    product_id, name, category, price_usd = catalogue.products[product_index]
    if event_type != "page_view" or rng.random() < 0.45:
        event["product_id"] = product_id
        event["product_name"] = name
        event["product_category"] = category
        price = price_usd * _FX[currency]
        if event_type != "page_view" or rng.random() < 0.5:
            event["unit_price"] = float(round(price)) if currency == "JPY" else round(price, 2)
            if event_type != "page_view":
                event["quantity"] = (
                    rng.choice((1, 1, 1, 1, 2, 2, 3)) if rng.random() < 0.97 else rng.randint(4, 40)
                )
            event["currency"] = currency
    elif rng.random() < 0.1:
        # Explicit nulls are the same as absent fields.
        event["product_id"] = None
        event["unit_price"] = None

    roll = rng.random()
    if roll < 0.40:
        properties: dict[str, Any] = {
            "referrer": rng.choice(_REFERRERS),
            "device": rng.choices(_DEVICES, _DEVICE_WEIGHTS)[0],
        }
        if rng.random() < 0.25:
            properties["utm_campaign"] = rng.choice(_CAMPAIGNS)
        event["properties"] = properties
    elif roll < 0.60:
        event["properties"] = {"device": rng.choices(_DEVICES, _DEVICE_WEIGHTS)[0]}
    elif roll < 0.62:
        event["properties"] = {
            "referrer": rng.choice(_REFERRERS),
            "experiment": {"id": f"exp_{rng.randint(1, 20)}", "variant": rng.choice(("A", "B"))},
        }
    elif roll < 0.63:
        event["properties"] = {}
    return event, product_index


# --- damage ------------------------------------------------------------------------------------


def _bad_event_type(event: dict[str, Any], rng: random.Random) -> None:
    event["event_type"] = rng.choice(("checkout", "PURCHASE", "page-view", "login", "Purchase"))


def _bad_other_enum(event: dict[str, Any], rng: random.Random) -> None:
    if rng.random() < 0.5:
        event["user_plan"] = rng.choice(("premium", "Pro", "trial"))
    else:
        event["currency"] = rng.choice(("usd", "BTC", "EURO"))


def _bad_uuid(event: dict[str, Any], rng: random.Random) -> None:
    good = _uuid(rng)
    event["event_id"] = rng.choice(
        (
            "not-a-uuid",
            good[:-1],
            good.replace("-", ""),
            "{" + good + "}",
            "g" + good[1:],
            str(rng.randint(1, 10**9)),
        )
    )


def _negative_price(event: dict[str, Any], rng: random.Random) -> None:
    price = event.get("unit_price")
    event["unit_price"] = (
        -abs(price) if isinstance(price, float) and price > 0 else -round(1 + 50 * rng.random(), 2)
    )


def _out_of_range(event: dict[str, Any], rng: random.Random) -> None:
    choice = rng.randrange(3)
    if choice == 0:
        event["quantity"] = 0
    elif choice == 1:
        event["quantity"] = rng.randint(1001, 50_000)
    else:
        event["unit_price"] = round(100_000 + 1 + 900_000 * rng.random(), 2)


def _missing_required(event: dict[str, Any], rng: random.Random) -> None:
    field = rng.choice(("event_id", "event_type", "event_time", "user_id"))
    if rng.random() < 0.7:
        event.pop(field, None)
    else:
        event[field] = None


def _unknown_field(event: dict[str, Any], rng: random.Random) -> None:
    name, value = rng.choice(
        (
            ("coupon_code", "SPRING10"),
            ("userId", event.get("user_id", "u_1")),
            ("ip_address", "203.0.113.7"),
            ("discount", 0.15),
        )
    )
    event[name] = value


def _product_fields_missing(event: dict[str, Any], rng: random.Random) -> None:
    event["event_type"] = rng.choice(_PRODUCT_EVENT_TYPES)
    fields = ["product_id", "unit_price", "quantity", "currency"]
    for field in rng.sample(fields, rng.randint(1, 4)):
        event.pop(field, None)


def _wrong_type(event: dict[str, Any], rng: random.Random) -> None:
    choice = rng.randrange(6)
    if choice == 0:
        event["quantity"] = str(event.get("quantity") or 3)
    elif choice == 1:
        event["unit_price"] = f"{event.get('unit_price') or 19.99}"
    elif choice == 2:
        event["user_id"] = rng.randint(1, 10**6)
    elif choice == 3:
        event["quantity"] = 2.5
    elif choice == 4:
        event["properties"] = "referrer=google"
    else:
        event["event_time"] = 1_709_251_200 + rng.randint(0, 10**6)


def _bad_format(event: dict[str, Any], rng: random.Random) -> None:
    if rng.random() < 0.5:
        event["user_email"] = rng.choice(
            (
                "john.doe@",
                "jane..doe@example.com",
                "@example.com",
                "bob@localhost",
                "ann@exa_mple.com",
                "x@y.c",
            )
        )
    else:
        event["event_time"] = rng.choice(
            (
                "2024-02-30T10:00:00Z",
                "2024-03-01 10:00:00Z",
                "2024-03-01T10:00:60Z",
                "01/03/2024 10:00",
                "2024-03-01T10:00:00",
                "2023-02-29T12:00:00+01:00",
            )
        )


def _bad_pattern(event: dict[str, Any], rng: random.Random) -> None:
    choice = rng.randrange(3)
    if choice == 0:
        event["user_country"] = rng.choice(("usa", "U1", "de", "GBR"))
    elif choice == 1:
        event["user_id"] = rng.choice(("user_42", "u_", "U_42", "u_1234567890123"))
    else:
        event["product_id"] = rng.choice(("P-100", "p_abc", "sku_17"))


def _too_long(event: dict[str, Any], rng: random.Random) -> None:
    if rng.random() < 0.5:
        event["session_id"] = "s_" + _hex(rng, 78)
    else:
        event["product_name"] = "Mega Bundle " + "é" * 200


_DAMAGE: tuple[Callable[[dict[str, Any], random.Random], None], ...] = (
    _bad_event_type,
    _bad_other_enum,
    _bad_uuid,
    _negative_price,
    _out_of_range,
    _missing_required,
    _unknown_field,
    _product_fields_missing,
    _wrong_type,
    _bad_format,
    _bad_pattern,
    _too_long,
)


def _damage(event: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Return a broken copy of ``event`` (one fault, or several in about 1 in 5 records)."""
    broken = dict(event)
    kinds = (
        rng.sample(range(len(_DAMAGE)), rng.randint(2, 3))
        if rng.random() < 0.2
        else [rng.randrange(len(_DAMAGE))]
    )
    for kind in kinds:
        _DAMAGE[kind](broken, rng)
    return broken


# --- public API --------------------------------------------------------------------------------


def _generate(
    n: int, seed: int
) -> tuple[list[dict[str, Any]], _History, list[tuple[int, int, datetime]]]:
    """The valid events (without history), the history, and each event's (user index,
    product index, time)."""
    rng = random.Random(seed)
    catalogue = _Catalogue(random.Random(seed * 1_000_003 + 17))
    users = _Users(random.Random(seed * 1_000_003 + 29), max(20, n // 8))

    events: list[dict[str, Any]] = []
    trace: list[tuple[int, int, datetime]] = []  # user, product, time of each event
    visits: dict[int, list[tuple[datetime, datetime]]] = {}
    start = now = _BASE_TIME + timedelta(seconds=rng.randint(0, 86_400))
    user = 0
    session_id = ""
    for _ in range(n):
        if not session_id or rng.random() < 0.25:
            user = rng.randrange(len(users.users))
            session_id = "s_" + _hex(rng, 16)
            now += timedelta(seconds=rng.randint(0, 40))
            visits.setdefault(user, []).append((now, now))
        else:
            now += timedelta(seconds=rng.randint(1, 20), microseconds=rng.randint(0, 999_999))
            visits[user][-1] = (visits[user][-1][0], now)
        event, product = _valid_event(rng, now, users.users[user], session_id, catalogue)
        events.append(event)
        trace.append((user, product, now))
    history = _History(random.Random(seed * 1_000_003 + 53), users, catalogue, visits, start, now)
    return events, history, trace


def shop_history(n: int, *, seed: int = 0) -> list[Change]:
    """The attribute changes in ``generate_shop_events(n, seed=seed)``, oldest first: who
    moved country or changed plan when, which product changed price (in USD) or category
    when. An event shows the attributes valid at its ``event_time``."""
    return _generate(n, seed)[1].changes()


def generate_shop_events(
    n: int, *, invalid_fraction: float = 0.0, seed: int = 0, history: bool = True
) -> list[dict[str, Any]]:
    """Generate ``n`` realistic ``shop_events`` records, deterministically.

    ``round(n * invalid_fraction)`` of them (chosen deterministically) are broken
    in varied ways: bad enum, bad uuid, negative price, missing required field,
    unknown field, product event without product fields, wrong JSON type, bad
    format/pattern, too long, and several faults in one record. With ``history`` users move
    country and change plan between visits and products change price and category over
    time (see the module doc and :func:`shop_history`).
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    if not 0.0 <= invalid_fraction <= 1.0:
        raise ValueError("invalid_fraction must be between 0 and 1")

    events, changes, trace = _generate(n, seed)
    if history:
        for event, (user, product, at) in zip(events, trace, strict=True):
            changes.apply(event, user, product, at)

    n_invalid = round(n * invalid_fraction)
    if n_invalid:
        damage_rng = random.Random(seed * 1_000_003 + 41)
        for index in sorted(damage_rng.sample(range(n), n_invalid)):
            events[index] = _damage(events[index], damage_rng)
    return events


def _json_line(event: dict[str, Any]) -> bytes:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def to_ndjson(events: Iterable[dict[str, Any]]) -> bytes:
    """Newline-delimited JSON (compact, UTF-8, one record per line, trailing newline)."""
    return b"".join(_json_line(event) + b"\n" for event in events)


def to_json_array(events: Iterable[dict[str, Any]]) -> bytes:
    """A JSON array of the records (compact, UTF-8, one record per line)."""
    return b"[" + b",\n".join(_json_line(event) for event in events) + b"]\n"


def _csv_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def to_csv(events: Sequence[dict[str, Any]], *, extra_columns: bool = False) -> bytes:
    """CSV: a header row of ``SHOP_EVENT_FIELDS``, UTF-8, ``\\r\\n`` line ends, minimal quoting.

    Absent and null values are written as empty fields; ``properties`` (and any
    other non-scalar value) is written as compact JSON text; numbers use
    ``repr``. Unknown fields are dropped, unless ``extra_columns`` is true, in
    which case they are appended as extra columns (in order of first appearance).
    """
    header = list(SHOP_EVENT_FIELDS)
    if extra_columns:
        known = set(header)
        for event in events:
            for key in event:
                if key not in known:
                    known.add(key)
                    header.append(key)
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(header)
    for event in events:
        writer.writerow([_csv_text(event.get(field)) for field in header])
    return buffer.getvalue().encode("utf-8")


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write sample shop_events to stdout.")
    parser.add_argument("n", type=int)
    parser.add_argument("--invalid-fraction", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", choices=("ndjson", "json", "csv"), default="ndjson")
    args = parser.parse_args(argv)
    events = generate_shop_events(args.n, invalid_fraction=args.invalid_fraction, seed=args.seed)
    writers: dict[str, Callable[[list[dict[str, Any]]], bytes]] = {
        "ndjson": to_ndjson,
        "json": to_json_array,
        "csv": to_csv,
    }
    sys.stdout.buffer.write(writers[args.format](events))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
