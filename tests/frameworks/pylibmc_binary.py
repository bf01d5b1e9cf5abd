# pylibmc (libmemcached) in binary mode against one memcache server, optionally with SASL.
# Usage: HOST PORT [USER PASSWORD]
import sys

try:
    import pylibmc
except ImportError:
    # Debian's python3-pylibmc is installed for the system interpreter only.
    sys.path.append("/usr/lib/python3/dist-packages")
    import pylibmc

credentials = {}
if len(sys.argv) > 4:
    credentials = {"username": sys.argv[3], "password": sys.argv[4]}
# Expects an empty server (a fresh memcached or kai).
mc = pylibmc.Client([f"{sys.argv[1]}:{sys.argv[2]}"], binary=True, behaviors={"cas": True}, **credentials)

assert mc.set("k", "v") is True
assert mc.get("k") == "v"
assert mc.get("missing") is None

# get_multi sends getkq batches ended by a noop.
mc.set_multi({"m1": "one", "m2": "two"})
assert mc.get_multi(["m1", "m2", "m3"]) == {"m1": "one", "m2": "two"}

assert mc.add("a", "1") is True
assert mc.add("a", "2") is False
assert mc.get("a") == "1"
assert mc.replace("a", "3") is True
try:
    mc.replace("not-there", "x")
    raise AssertionError("binary replace of a missing key raises NotFound")
except pylibmc.NotFound:
    pass
assert mc.append("a", "4") is True
assert mc.prepend("a", "2") is True
assert mc.get("a") == "234"

mc.set("n", "10")
assert mc.incr("n") == 11
assert mc.incr("n", 5) == 16
assert mc.decr("n", 20) == 0, "decr floors at 0"
for op in (mc.incr, mc.decr):
    try:
        op("no-counter")
        raise AssertionError("incr/decr of a missing key must raise NotFound")
    except pylibmc.NotFound:
        pass

mc.set("c", "old")
value, cas = mc.gets("c")
assert value == "old" and cas
assert mc.cas("c", "new", cas) is True
assert mc.cas("c", "newer", cas) is False, "stale cas"
assert mc.get("c") == "new"

assert mc.delete("k") is True
assert mc.delete("k") is False
assert mc.get("k") is None

# A timeout of -1 (sent as 4294967295) is already expired... in the text protocol; the binary
# field is unsigned, so for memcached it is an absolute time in 2106: the value stays.
mc.set("t", "x", time=30)
assert mc.touch("t", 60) is True
assert mc.touch("not-there", 60) is False

big = "x" * (2 * 1024 * 1024)
try:
    mc.set("big", big)
    raise AssertionError("a value over the limit must fail")
except pylibmc.TooBig:
    pass
except pylibmc.Error:
    pass
assert mc.set("after", "ok") is True and mc.get("after") == "ok"

stats = mc.get_stats()
assert stats and "pid" in stats[0][1], stats
print("pylibmc binary ok")
