#!/usr/bin/python3
"""The broker's memory guard (limits/max-memory).

libzmq 4.3.4 sets aside, unread, the input of a connection that chose a
routing id already in use, and with no bound on the queue into the broker
(needed: tests/e2e/test_flood.py) that input grows for as long as the peer
sends. One admitted key opens connection A with ZMQ_ROUTING_ID "XX", then B
with the same id, and streams 1 MiB frames on B. The broker, its
max-memory set to 96 MiB, must drop every connection once its heap passes
that (closing and reopening its socket frees what libzmq held), once,
log it, keep running and listening on the same endpoint: a member's
connection comes back (its old session gone: 400 until it says HELLO
again). (The heap after is printed, not checked: a sanitizer's allocator
keeps freed memory in quarantine.) At the end the broker stops by SIGTERM
and exits 0.

usage: test_guard.py SGMQ_BROKER_BINARY SGMQ_CLI_BINARY
"""
import os
import sys
import time

import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_flood import SCALE, Client, first_answer, with_broker  # noqa: E402
from test_python_client import frame  # noqa: E402

LIMIT = 96 * 1024 * 1024
GUARD_LINE = "dropping every connection"


def heap_bytes(pid):
    with open("/proc/%d/statm" % pid) as f:
        size, resident, shared = (int(x) for x in f.read().split()[:3])
    return (resident - shared) * os.sysconf("SC_PAGESIZE")


def guard_test(broker, endpoint, deployment, certs, log_path, ctx, timeout_ms):
    member = Client(ctx, endpoint, deployment, certs["member"])
    assert member.request("hello", 1, {}, timeout_ms)[0] == "welcome"
    first = Client(ctx, endpoint, deployment, certs["insider"], routing_id=b"XX")
    answer = first.request("hello", 1, {}, timeout_ms)      # attached: it is answered
    assert answer[0] == "error" and answer[2]["code"] == 400, answer
    second = Client(ctx, endpoint, deployment, certs["insider"], routing_id=b"XX", sndhwm=4)
    big = frame(["ping", 9, {"x": "a" * (1024 * 1024 - 100)}])
    deadline = time.time() + 30 * SCALE
    most = 8 * LIMIT // (1024 * 1024)       # MiB: the machine's memory is not the test's
    sent = 0
    guarded = False
    while not guarded and time.time() < deadline and sent < most:
        try:
            second.sock.send(big, zmq.DONTWAIT)
            sent += 1
        except zmq.Again:
            second.sock.poll(10, zmq.POLLOUT)
        if sent % 16 == 0:
            with open(log_path) as f:
                guarded = GUARD_LINE in f.read()
    assert broker.poll() is None, "the broker died (exit %s)" % broker.returncode
    assert guarded, "no guard after %d MiB sent on the reused routing id" % sent
    second.sock.close()
    first.sock.close()
    # The member's connection comes back; its session did not.
    answer = first_answer(member, "ping", timeout_ms)
    assert answer[0] == "error" and answer[2]["code"] == 400, answer
    assert first_answer(member, "hello", timeout_ms)[0] == "welcome"
    assert member.request("ping", 11, {}, timeout_ms)[0] == "pong"
    heap = heap_bytes(broker.pid)
    with open(log_path) as f:
        assert f.read().count(GUARD_LINE) == 1, "the guard dropped everyone again"
    print("guard after %d MiB sent; heap %d MiB after; the member is back"
          % (sent, heap >> 20))
    member.sock.close()


def limit_memory(text):
    assert "max-memory = 1073741824" in text, "no max-memory line in the config"
    return text.replace("max-memory = 1073741824", "max-memory = %d" % LIMIT)


def main():
    with_broker("sgmq-guard-", (("insider", "publisher", "exploitation"),
                                ("member", "member", "executive")),
                guard_test, config=limit_memory)


if __name__ == "__main__":
    main()
