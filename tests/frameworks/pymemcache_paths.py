# pymemcache (default_noreply=False) on the paths frameworks use: an add-based lock, an incr rate
# limiter with a TTL, a gets+cas retry loop, touch. Usage: HOST PORT
import json
import sys
import threading
import time

from pymemcache.client.base import Client

server = (sys.argv[1], int(sys.argv[2]))


def client():
    return Client(server, connect_timeout=5, timeout=10, default_noreply=False)


def poll(condition, what, deadline_secs=10):
    deadline = time.monotonic() + deadline_secs
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# An add-based lock: two clients race for it, exactly one wins; released by delete, the other
# gets it.
barrier = threading.Barrier(2)
won = {}


def take(name, c):
    barrier.wait()
    won[name] = c.add("lock", name.encode(), expire=30)


clients = {"one": client(), "two": client()}
threads = [threading.Thread(target=take, args=item) for item in clients.items()]
for t in threads:
    t.start()
for t in threads:
    t.join()
winners = [name for name, ok in won.items() if ok]
assert len(winners) == 1, won
winner = winners[0]
loser = "two" if winner == "one" else "one"
assert clients[loser].get("lock") == winner.encode()
assert clients[loser].add("lock", loser.encode(), expire=30) is False
assert clients[winner].delete("lock") is True
assert clients[loser].add("lock", loser.encode(), expire=30) is True
assert clients[winner].get("lock") == loser.encode()

# A fixed-window rate limiter: add the counter with a TTL, then incr; after the window the
# counter starts again at 1.
c = client()


def hit():
    c.add("ratelimit", b"0", expire=2)
    return c.incr("ratelimit", 1)


assert [hit() for _ in range(5)] == [1, 2, 3, 4, 5]
started = time.monotonic()
poll(lambda: c.get("ratelimit") is None, "the rate-limit window to expire")
assert time.monotonic() - started < 3, "the counter must keep its TTL through incr"
assert hit() == 1, "a new window starts at 1"
assert c.incr("no-such-counter", 1) is None

# An optimistic gets+cas retry loop: 4 threads x 25 increments of a JSON counter lose nothing.
c.set("doc", json.dumps({"n": 0}).encode())
retries = [0]
lock = threading.Lock()


def bump():
    mine = client()
    for _ in range(25):
        while True:
            value, cas = mine.gets("doc")
            doc = json.loads(value)
            doc["n"] += 1
            if mine.cas("doc", json.dumps(doc).encode(), cas):
                break
            with lock:
                retries[0] += 1


threads = [threading.Thread(target=bump) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert json.loads(c.get("doc")) == {"n": 100}, c.get("doc")

# touch extends the expiry; an untouched key expires.
c.set("touched", b"v", expire=1)
c.set("untouched", b"v", expire=1)
assert c.touch("touched", expire=60) is True
assert c.touch("never-set", expire=60) is False
poll(lambda: c.get("untouched") is None, "the untouched key to expire")
assert c.get("touched") == b"v", "touch must extend the expiry"

# set_many / get_many / delete_many.
assert c.set_many({"pm1": b"1", "pm2": b"2"}) == []
assert c.get_many(["pm1", "pm2", "pm3"]) == {"pm1": b"1", "pm2": b"2"}
assert c.delete_many(["pm1", "pm2"]) is True
assert c.get_many(["pm1", "pm2"]) == {}

print(f"pymemcache ok (cas retries: {retries[0]})")
