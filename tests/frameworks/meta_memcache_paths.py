"""meta-memcache (PyPI), a meta-protocol-only client, on its everyday paths.

Usage: python3 meta_memcache_paths.py HOST PORT [PREFIX]
Self-checking; prints "meta-memcache ok" against memcached 1.6, and notes the skipped cas
paths against Kai (see below).
"""
import sys

from meta_memcache import (
    CacheClient,
    Key,
    LeasePolicy,
    RecachePolicy,
    ServerAddress,
    SetMode,
    StalePolicy,
    connection_pool_factory_builder,
)

host, port = sys.argv[1], int(sys.argv[2])
prefix = sys.argv[3] if len(sys.argv) > 3 else "mm"


def client():
    return CacheClient.cache_client_from_servers(
        servers=[ServerAddress(host=host, port=port)],
        connection_pool_factory_fn=connection_pool_factory_builder(recv_timeout=5),
    )


def k(name):
    return f"{prefix}:{name}"


a, b = client(), client()

# get / set / delete / touch, with values of several types.
assert a.get(k("missing")) is None
assert a.set(k("dict"), {"x": 1, "y": [1, 2]}, ttl=60)
assert b.get(k("dict")) == {"x": 1, "y": [1, 2]}
assert a.set(k("str"), "text", ttl=0)
assert a.set(k("bytes"), b"\x00\r\nraw", ttl=60)
assert a.set(k("int"), 42, ttl=60)
assert b.multi_get([k("str"), k("bytes"), k("int"), k("missing")]) == {
    Key(k("str")): "text",
    Key(k("bytes")): b"\x00\r\nraw",
    Key(k("int")): 42,
    Key(k("missing")): None,
}
assert a.touch(k("str"), ttl=120)
assert not a.touch(k("missing"), ttl=5)
assert a.get(k("str"), touch_ttl=300) == "text"
assert a.delete(k("dict"))
assert not a.delete(k("dict"))
assert b.get(k("dict")) is None
assert a.invalidate(k("dict")), "invalidating a missing key is fine"
# Keys the text protocol could not carry go base64-encoded (the b flag).
assert a.set(Key(k("ключ with spaces")), "unicode", ttl=60)
assert b.get(Key(k("ключ with spaces"))) == "unicode"
assert a.set(Key(k("x" * 300)), "long", ttl=60)
assert b.get(Key(k("x" * 300))) == "long"

# add (refill) and the set modes.
assert a.refill(k("refill"), "first", ttl=60)
assert not b.refill(k("refill"), "second", ttl=60)
assert b.get(k("refill")) == "first"
assert not a.set(k("replace"), "v", ttl=60, set_mode=SetMode.REPLACE)
assert a.set(k("app"), b"ab", ttl=60)
assert a.set(k("app"), b"cd", ttl=60, set_mode=SetMode.APPEND)
assert a.set(k("app"), b"__", ttl=60, set_mode=SetMode.PREPEND)
assert a.get(k("app")) == b"__abcd"

# Optimistic concurrency with cas tokens. meta-memcache's parser (meta-memcache-socket 0.3)
# drops cas tokens of 2^32 or more: memcached counts them up from 1, Kai derives 63-bit ones
# from versions, so against Kai the client sees no token and these paths cannot run.
value, cas = a.get_cas(k("str"))
assert value == "text"
cas_paths = cas is not None
if cas_paths:
    assert b.set(k("str"), "by b", ttl=0, cas_token=cas)
    assert not a.set(k("str"), "by a", ttl=0, cas_token=cas), "a stale cas must fail"
    assert a.get(k("str")) == "by b"
    new_cas = a.set_cas(k("str"), "by a", ttl=0)
    assert new_cas and a.get_cas(k("str")) == ("by a", new_cas)
    assert not a.delete(k("str"), cas_token=cas)
    assert a.delete(k("str"), cas_token=new_cas)

# Counters.
assert not a.delta(k("n"), 1)
assert a.delta_initialize(k("n"), 1, initial_value=10, initial_ttl=60)
assert a.delta_and_get(k("n"), 5) == 15
assert b.delta_and_get(k("n"), -20) == 0
assert b.delta_initialize_and_get(k("m"), 3, initial_value=7, initial_ttl=60) == 7
assert b.delta_and_get(k("m"), 3) == 10

# Stale-while-revalidate: a delete marks the value stale; one reader wins the recache (and
# sees a miss), the others keep reading the stale value until the winner writes it back.
stale = StalePolicy(mark_stale_on_deletion_ttl=30, mark_stale_on_cas_mismatch=True)
assert a.set(k("swr"), "v1", ttl=60)
assert a.delete(k("swr"), stale_policy=stale)
winner_value, winner_cas = a.get_cas(k("swr"))
assert winner_value is None, "the first reader of a stale item wins"
assert (winner_cas is not None) == cas_paths
assert b.get(k("swr")) == "v1", "later readers get the stale value"
assert a.get(k("swr")) == "v1"
assert a.set(k("swr"), "v2", ttl=60, cas_token=winner_cas, stale_policy=stale)
assert b.get(k("swr")) == "v2"

# Recache: one client refreshes a value that is about to expire.
assert a.set(k("recache"), "soon", ttl=10)
policy = RecachePolicy(ttl=30)
assert a.get(k("recache"), recache_policy=policy) is None, "won the recache"
assert b.get(k("recache"), recache_policy=policy) == "soon", "someone else refreshes it"

# Lease on miss: exactly one client gets to fill a missing key; the others wait and then see
# the value it wrote.
lease = LeasePolicy(ttl=30, miss_retries=50, miss_retry_wait=0.01, miss_max_retry_wait=0.05)
won = a._get_or_lease(k("lease"), lease_policy=lease)
assert won is not None and won.flags.win and won.value is None
polled = []


def fill_when_asked(seconds):
    polled.append(seconds)
    if len(polled) == 2:
        assert a.set(k("lease"), "filled", ttl=60, cas_token=won.flags.cas_token)


assert b.get_or_lease(k("lease"), lease_policy=lease, lease_wait_fn=fill_when_asked) == "filled"

print("meta-memcache ok" if cas_paths else "meta-memcache ok (cas tokens over 32 bits: cas paths skipped)")
