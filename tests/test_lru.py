"""astroapp.lru.LRUCache: the one small cache (re-ranking's tile features, the table's
thumbnails) drops the least recently used entry, and a hit refreshes an entry."""

import pytest

from astroapp.lru import LRUCache


def test_least_recently_used_is_dropped_and_hits_refresh():
    cache: LRUCache[str, int] = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "b" is now the least recently used
    cache.put("c", 3)
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3
    assert len(cache) == 2
    cache.drop("a")
    assert cache.get("a") is None and len(cache) == 1


def test_get_or_make_calls_the_loader_once_per_miss():
    cache: LRUCache[int, str] = LRUCache(1)
    made = []

    def make(k):
        made.append(k)
        return f"v{k}"

    assert cache.get_or_make(1, lambda: make(1)) == "v1"
    assert cache.get_or_make(1, lambda: make(1)) == "v1"
    assert cache.get_or_make(2, lambda: make(2)) == "v2"  # evicts 1
    assert cache.get_or_make(1, lambda: make(1)) == "v1"
    assert made == [1, 2, 1]


def test_capacity_must_hold_an_entry():
    with pytest.raises(ValueError, match="at least 1"):
        LRUCache(0)
