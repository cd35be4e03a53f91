"""The python-etcd3 client (0.12, gRPC) against a 3-member store: KV, txn, CAS, leases,
watch, locks, members, status, compaction and snapshot. Exits non-zero on the first failure,
naming it. Usage: etcd3_suite.py HOST:PORT[,HOST:PORT...] SNAPSHOT_PATH"""
import sys
import threading
import time

import etcd3
import etcd3.exceptions
import grpc
from etcd3 import etcdrpc

endpoints = [e.rsplit(":", 1) for e in sys.argv[1].split(",")]
snapshot_path = sys.argv[2]
host, port = endpoints[0][0], int(endpoints[0][1])
client = etcd3.client(host=host, port=port, timeout=10)
checks = 0


def check(condition, what):
    global checks
    if not condition:
        print(f"FAILED: {what}", flush=True)
        sys.exit(1)
    checks += 1


# KV: put, get, prefix, delete.
client.put("/py/a", "1")
value, meta = client.get("/py/a")
check(value == b"1" and meta.key == b"/py/a" and meta.version == 1, f"get /py/a: {value!r} {meta}")
client.put("/py/b", "2")
check(sorted(v for v, _ in client.get_prefix("/py/")) == [b"1", b"2"], "get_prefix")
check(client.get("/py/missing") == (None, None), "a missing key reads as None")
# Every member serves the same data (each has its own client).
for h, p in endpoints[1:]:
    other = etcd3.client(host=h, port=int(p), timeout=10)
    check(other.get("/py/b")[0] == b"2", f"read through {h}:{p}")
    other.close()

# Transactions and compare-and-swap.
tx = client.transactions
ok, _ = client.transaction(compare=[tx.value("/py/a") == "1"], success=[tx.put("/py/a", "3")], failure=[])
check(ok, "txn whose compare holds")
ok, responses = client.transaction(compare=[tx.value("/py/a") == "1"], success=[tx.put("/py/a", "4")], failure=[tx.get("/py/a")])
check(not ok and responses[0][0][0] == b"3", f"txn whose compare fails runs the failure branch: {responses}")
check(client.replace("/py/a", "3", "5"), "replace with the right old value")
check(not client.replace("/py/a", "3", "6"), "replace with a stale old value")
check(client.get("/py/a")[0] == b"5", "value after replace")
check(client.delete("/py/b"), "delete an existing key")
check(not client.delete("/py/b"), "delete a missing key")
client.put("/py/c1", "x")
client.put("/py/c2", "y")
client.delete_prefix("/py/c")
check(list(client.get_prefix("/py/c")) == [], "delete_prefix")

# Leases: keys attached, TTL, refresh (keep-alive), revoke deletes the keys.
lease = client.lease(ttl=30)
client.put("/py/leased", "x", lease=lease)
check(0 < lease.remaining_ttl <= 30 and lease.granted_ttl == 30, f"lease TTL {lease.remaining_ttl}/{lease.granted_ttl}")
check(list(lease.keys) == [b"/py/leased"], f"lease keys {list(lease.keys)}")
refreshed = list(lease.refresh())
check(refreshed and refreshed[0].TTL == 30, f"lease refresh {refreshed}")
lease.revoke()
check(client.get("/py/leased")[0] is None, "revoking a lease deletes its keys")
short = client.lease(ttl=2)
client.put("/py/expiring", "x", lease=short)
deadline = time.time() + 12
while client.get("/py/expiring")[0] is not None and time.time() < deadline:
    time.sleep(0.25)
check(client.get("/py/expiring")[0] is None, "a lease without keep-alives expires and takes its key")

# Watch: a put from another thread arrives as an event; cancel ends the iterator.
events, cancel = client.watch("/py/w")
threading.Timer(0.5, lambda: client.put("/py/w", "hello")).start()
event = next(events)
check(isinstance(event, etcd3.events.PutEvent) and event.value == b"hello", f"watch event {event}")
cancel()
# A prefix watch with a start revision replays history.
first = client.put("/py/h/1", "a").header.revision
client.put("/py/h/2", "b")
events, cancel = client.watch_prefix("/py/h/", start_revision=first)
replayed = [next(events).key, next(events).key]
cancel()
check(replayed == [b"/py/h/1", b"/py/h/2"], f"replayed history {replayed}")

# Locks (txn on create revision plus a lease): one holder at a time.
lock = client.lock("py-lock", ttl=10)
check(lock.acquire(timeout=5), "acquire a free lock")
other = client.lock("py-lock", ttl=10)
check(not other.acquire(timeout=1), "a held lock is not acquired twice")
lock.release()
check(other.acquire(timeout=5), "acquire after release")
other.release()

# Cluster: members with names and URLs, a leader among them.
members = list(client.members)
check(len(members) == 3 and all(m.name and m.peer_urls and m.client_urls for m in members), f"members {members}")
status = client.status()
check(status.leader is not None and status.leader.id in [m.id for m in members], "status names a member as leader")
check(status.raft_term >= 1 and status.db_size > 0, "status term and size")

# Compaction: reading a compacted revision fails with etcd's code and message.
revision = client.put("/py/compact", "1").header.revision
client.put("/py/compact", "2")
client.compact(revision + 1)
try:
    client.kvstub.Range(etcdrpc.RangeRequest(key=b"/py/compact", revision=revision), timeout=5)
    check(False, "a read below the compact revision must fail")
except grpc.RpcError as error:
    check(error.code() == grpc.StatusCode.OUT_OF_RANGE and error.details() == "etcdserver: mvcc: required revision has been compacted",
          f"compacted read error {error.code()} {error.details()}")
old, _ = client.get("/py/compact")
check(old == b"2", "the current value survives compaction")

# Snapshot: the client streams the database to a file.
with open(snapshot_path, "wb") as file:
    client.snapshot(file)
with open(snapshot_path, "rb") as file:
    check(file.read(16) == b"SQLite format 3\x00", "the snapshot is an SQLite database")

client.close()
print(f"OK {checks} checks", flush=True)
