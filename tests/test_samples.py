"""The sample generator's history (users moving country and changing plan, products changing
price and category over time) for the slowly changing dimensions of the dbt models: it is
deterministic, each event shows the attributes valid at its time, and it changes nothing
else: the same events exist, with the same ids, instants and validity, as without history."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime

import weir
from weir import samples

N, SEED = 3_000, 11


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.upper().replace("Z", "+00:00"))


def test_history_is_deterministic_and_changes_only_attributes() -> None:
    plain = samples.generate_shop_events(N, invalid_fraction=0.05, seed=SEED, history=False)
    first = samples.generate_shop_events(N, invalid_fraction=0.05, seed=SEED)
    again = samples.generate_shop_events(N, invalid_fraction=0.05, seed=SEED)
    assert first == again and first != plain
    attributes = {"user_country", "user_plan", "currency", "unit_price", "product_category"}
    for a, b in zip(plain, first, strict=True):
        assert {k: v for k, v in a.items() if k not in attributes | {"event_time"}} == {
            k: v for k, v in b.items() if k not in attributes | {"event_time"}
        }
        if isinstance(a.get("event_time"), str) and isinstance(b.get("event_time"), str):
            try:
                assert instant(a["event_time"]) == instant(b["event_time"])
            except ValueError:  # a damaged time: damaged the same way
                assert a["event_time"] == b["event_time"]
    # The contract rejects exactly the same records.
    rejected = [
        weir.process(json.dumps(events), "json").rejected["record_index"].to_pylist()
        for events in (plain, first)
    ]
    assert rejected[0] == rejected[1] and len(rejected[0]) == round(N * 0.05)


def test_every_event_shows_the_attributes_valid_at_its_time() -> None:
    events = samples.generate_shop_events(N, seed=SEED)
    history = samples.shop_history(N, seed=SEED)
    moves = Counter(key for kind, key, _, name, _ in history if name == "user_country")
    assert max(moves.values()) == 2 and len(moves) >= 20  # some users moved twice
    assert any(name == "user_plan" for *_, name, _ in history)
    assert any(name == "unit_price_usd" for *_, name, _ in history)
    assert any(name == "product_category" for *_, name, _ in history)

    def valid_at(key: str, name: str, at: datetime) -> object:
        value = None
        for _, k, moment, attribute, new in history:
            if k == key and attribute == name and moment <= at:
                value = new
        return value

    checked = Counter()
    for event in events:
        at = instant(event["event_time"])
        for key, name in ((event["user_id"], "user_country"), (event["user_id"], "user_plan")):
            expected = valid_at(key, name, at)
            if expected is not None and name in event:
                assert event[name] == expected, (event, name)
                checked[name] += 1
        if event.get("product_id"):
            expected = valid_at(event["product_id"], "product_category", at)
            if expected is not None:
                assert event["product_category"] == expected
                checked["product_category"] += 1
    assert min(checked.values()) > 10, checked
    # Users who moved twice show three countries in their events, in the history's order.
    for key in (k for k, count in moves.items() if count == 2):
        seen = [e["user_country"] for e in events if e["user_id"] == key and "user_country" in e]
        distinct = [c for i, c in enumerate(seen) if i == 0 or c != seen[i - 1]]
        moved_to = [v for _, k, _, name, v in history if k == key and name == "user_country"]
        assert distinct[1:] == moved_to, (key, distinct, moved_to)
