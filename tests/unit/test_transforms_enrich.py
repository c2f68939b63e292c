"""enrich: config parsing, the lookup cache (TTL, max entries) and key rendering.

The lookups themselves run against real Postgres in tests/e2e/test_transforms_enrich.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from tideflow.engine.transforms.enrich import PREFIX, Cache, key_text, parse
from tideflow.errors import Invalid

BASE: dict[str, Any] = {
    PREFIX + "hostname": "127.0.0.1",
    PREFIX + "database": "crm",
    PREFIX + "user": "reader",
    PREFIX + "table": "sales.customers",
    PREFIX + "key.mapping": {"customer_id": "id"},
    PREFIX + "fields": ["name", "tier"],
}


def test_parse_defaults_and_shapes() -> None:
    cfg = parse(BASE)
    assert cfg is not None
    assert (cfg.schema, cfg.table, cfg.port, cfg.sslmode) == ("sales", "customers", 5432, "prefer")
    assert cfg.key_mapping == (("customer_id", "id"),)
    assert cfg.fields == (("name", "name"), ("tier", "tier"))
    assert (cfg.on_miss, cfg.ttl_ms, cfg.max_entries, cfg.password) == (
        "null",
        60_000,
        10_000,
        None,
    )
    renamed = parse({**BASE, PREFIX + "fields": {"name": "customer_name"}, PREFIX + "table": "c"})
    assert renamed is not None
    assert renamed.fields == (("name", "customer_name"),) and renamed.schema == "public"
    assert "password=s3" in parse({**BASE, PREFIX + "password": "s3"}).conninfo()  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("change", "names"),
    [
        ({"key.mapping": ["id"]}, "key.mapping"),
        ({"key.mapping": {}}, "key.mapping"),
        ({"fields": []}, "fields"),
        ({"fields": {"name": ""}}, "fields"),
        ({"on.miss": "ignore"}, "on.miss"),
        ({"cache.ttl.ms": -1}, "cache.ttl.ms"),
        ({"cache.max.entries": 0}, "cache.max.entries"),
        ({"port": "5432"}, "port"),
        ({"table": "a.b.c"}, "table"),
        ({"hostname": ""}, "hostname"),
        ({"password": 5}, "password"),
    ],
    ids=lambda v: str(v) if isinstance(v, str) else None,
)
def test_bad_config_names_the_key(change: dict[str, Any], names: str) -> None:
    config = {**BASE, **{PREFIX + k: v for k, v in change.items()}}
    with pytest.raises(Invalid) as info:
        parse(config)
    assert PREFIX + names in info.value.message
    with pytest.raises(Invalid):  # also when saving an incomplete config
        parse(config, complete=False)


def test_missing_keys_are_refused_only_when_complete() -> None:
    partial = {PREFIX + "table": "customers"}
    assert parse(partial, complete=False) is None
    with pytest.raises(Invalid) as info:
        parse(partial)
    assert PREFIX + "hostname" in info.value.message and PREFIX + "fields" in info.value.message


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_cache_expires_after_ttl() -> None:
    clock = Clock()
    cache = Cache(ttl_ms=1000, max_entries=10, clock=clock)
    cache.put(("1",), {"name": "ann"})
    cache.put(("2",), None)  # a miss is cached too
    assert cache.get(("1",)) == (True, {"name": "ann"})
    assert cache.get(("2",)) == (True, None)
    assert cache.get(("3",)) == (False, None)
    clock.now += 0.999
    assert cache.get(("1",))[0]
    clock.now += 0.002
    assert cache.get(("1",)) == (False, None) and len(cache) == 1


def test_cache_evicts_least_recently_used() -> None:
    cache = Cache(ttl_ms=60_000, max_entries=2, clock=Clock())
    cache.put(("a",), {})
    cache.put(("b",), {})
    cache.get(("a",))  # a is now more recent than b
    cache.put(("c",), {})
    assert [cache.get((k,))[0] for k in "abc"] == [True, False, True]


def test_ttl_zero_disables_the_cache() -> None:
    cache = Cache(ttl_ms=0, max_entries=10, clock=Clock())
    cache.put(("a",), {})
    assert cache.get(("a",)) == (False, None) and len(cache) == 0


@pytest.mark.parametrize(
    ("value", "text"),
    [(42, "42"), ("x", "x"), (True, "true"), (1.5, "1.5"), (None, None), ({"a": 1}, '{"a":1}')],
)
def test_key_text(value: Any, text: str | None) -> None:
    assert key_text(value) == text
