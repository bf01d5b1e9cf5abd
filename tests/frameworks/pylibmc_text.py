# pylibmc (libmemcached) in text mode against one memcache server. Usage: HOST PORT
import sys
import time

try:
    import pylibmc
except ImportError:
    # Debian's python3-pylibmc is installed for the system interpreter only.
    sys.path.append("/usr/lib/python3/dist-packages")
    import pylibmc

mc = pylibmc.Client([f"{sys.argv[1]}:{sys.argv[2]}"], binary=False, behaviors={"cas": True})


def poll(condition, what, deadline_secs=10):
    deadline = time.monotonic() + deadline_secs
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


assert mc.set("k", "v") is True
assert mc.get("k") == "v"
assert mc.get("missing") is None

assert mc.add("a", "1") is True
assert mc.add("a", "2") is False
assert mc.get("a") == "1"
assert mc.replace("a", "3") is True
assert mc.replace("not-there", "x") is False
assert mc.append("a", "4") is True
assert mc.prepend("a", "2") is True
assert mc.get("a") == "234"

mc.set("n", "10")
assert mc.incr("n") == 11
assert mc.incr("n", 5) == 16
assert mc.decr("n", 20) == 0, "decr floors at 0"
assert mc.get("n").strip() == "0"  # memcached pads a shrunk number with spaces
for op in (mc.incr, mc.decr):
    try:
        op("no-counter")
        raise AssertionError("incr/decr of a missing key must raise NotFound")
    except pylibmc.NotFound:
        pass

assert mc.gets("no-cas") == (None, None)
mc.set("c", "old")
value, cas = mc.gets("c")
assert value == "old" and cas
assert mc.cas("c", "new", cas) is True
assert mc.cas("c", "stale", cas) is False, "a cas with a stale unique must fail"
value, cas2 = mc.gets("c")
assert value == "new" and cas2 != cas

mc.set("touched", "v", time=1)
mc.set("untouched", "v", time=1)
assert mc.touch("touched", 60) is True
assert mc.touch("never-set", 60) is False
poll(lambda: mc.get("untouched") is None, "the untouched key to expire")
assert mc.get("touched") == "v", "touch must extend the expiry"

assert mc.delete("k") is True
assert mc.delete("k") is False
assert mc.get("k") is None

assert mc.set_multi({"m1": "x", "m2": "y", "m3": "z"}) == []
assert mc.get_multi(["m1", "m2", "m3", "none"]) == {"m1": "x", "m2": "y", "m3": "z"}
assert mc.delete_multi(["m1", "m2"]) is True
assert mc.get_multi(["m1", "m2", "m3"]) == {"m3": "z"}

print("pylibmc ok")
