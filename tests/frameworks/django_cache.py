# Django's cache API and cache-backed sessions against one memcache server.
# Usage: python3 django_cache.py HOST PORT BACKEND (a django.core.cache.backends.memcached class).
import sys
import time

try:
    import pylibmc  # noqa: F401 (PyLibMCCache imports it)
except ImportError:
    # Debian's python3-pylibmc is installed for the system interpreter only.
    sys.path.append("/usr/lib/python3/dist-packages")

import django
from django.conf import settings

host, port, backend = sys.argv[1], sys.argv[2], sys.argv[3]
settings.configure(
    CACHES={
        "default": {
            "BACKEND": "django.core.cache.backends.memcached." + backend,
            "LOCATION": f"{host}:{port}",
            "KEY_PREFIX": backend,
        }
    },
    SESSION_ENGINE="django.contrib.sessions.backends.cache",
    INSTALLED_APPS=["django.contrib.sessions"],
    SECRET_KEY="kai-frameworks-test",
    USE_TZ=True,
)
django.setup()

from django.core.cache import cache  # noqa: E402
from django.contrib.sessions.backends.cache import SessionStore  # noqa: E402


def poll(condition, what, deadline_secs=10):
    deadline = time.monotonic() + deadline_secs
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# add: only the first one stores.
assert cache.add("a", 1) is True
assert cache.add("a", 2) is False
assert cache.get("a") == 1

# get_or_set: the default is stored once, then the stored value wins.
assert cache.get_or_set("g", "first") == "first"
assert cache.get_or_set("g", "second") == "first"
assert cache.get_or_set("g2", lambda: ["computed"]) == ["computed"]
assert cache.get("g2") == ["computed"]

# incr / decr; a missing key raises ValueError.
cache.set("n", 10)
assert cache.incr("n") == 11
assert cache.incr("n", 5) == 16
assert cache.decr("n", 6) == 10
assert cache.get("n") == 10
for op in (cache.incr, cache.decr):
    try:
        op("missing")
        raise AssertionError(f"{op.__name__} of a missing key must raise ValueError")
    except ValueError:
        pass

# touch: extends a short timeout; a key that was not touched expires.
cache.set("touched", "v", timeout=1)
cache.set("untouched", "v", timeout=1)
assert cache.touch("touched", timeout=60) is True
assert cache.touch("never-set", timeout=60) is False
poll(lambda: cache.get("untouched") is None, "the untouched key to expire")
assert cache.get("touched") == "v", "touch must extend the expiry"

# set_many / get_many / delete_many.
assert cache.set_many({"m1": 1, "m2": "two", "m3": [3]}) == []
assert cache.get_many(["m1", "m2", "m3", "nope"]) == {"m1": 1, "m2": "two", "m3": [3]}
cache.delete_many(["m1", "m2"])
assert cache.get_many(["m1", "m2", "m3"]) == {"m3": [3]}

# timeout=0 means "don't cache" (and replaces what was there).
cache.set("zero", "v", timeout=0)
assert cache.get("zero") is None
cache.set("zero2", "old")
cache.set("zero2", "new", timeout=0)
assert cache.get("zero2") is None
assert cache.add("zero3", "v", timeout=0) in (True, False)
assert cache.get("zero3") is None

# delete.
assert cache.delete("a") is True
assert cache.delete("a") is False
assert cache.get("a") is None

# Cache-backed sessions: create, save, load in a new store, modify, delete.
s = SessionStore()
s["user_id"] = 42
s.save()  # a new session: created with cache.add under a fresh key
key = s.session_key
assert key and s.exists(key)
loaded = SessionStore(session_key=key)
assert loaded["user_id"] == 42
loaded["cart"] = [1, 2]
loaded.save()
again = SessionStore(session_key=key)
assert again["user_id"] == 42 and again["cart"] == [1, 2]
again.delete()
assert not SessionStore().exists(key)
gone = SessionStore(session_key=key)
assert gone.load() == {} and gone.session_key is None
bogus = SessionStore(session_key="x" * 32)
assert bogus.load() == {}

# clear() sends flush_all (PyMemcacheCache with noreply): everything is gone, and the cache
# works on afterwards.
cache.set_many({"c1": 1, "c2": 2})
cache.clear()
assert cache.get_many(["c1", "c2", "g", "n"]) == {}
assert cache.add("c1", "after") is True
assert cache.get("c1") == "after"

print(f"django ok {backend}")
