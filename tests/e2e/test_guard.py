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
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_flood import SCALE, Client, first_answer  # noqa: E402
from test_python_client import frame  # noqa: E402

LIMIT = 96 * 1024 * 1024
GUARD_LINE = "dropping every connection"


def heap_bytes(pid):
    with open("/proc/%d/statm" % pid) as f:
        size, resident, shared = (int(x) for x in f.read().split()[:3])
    return (resident - shared) * os.sysconf("SC_PAGESIZE")


def main():
    broker_bin, cli = sys.argv[1], sys.argv[2]
    work = tempfile.mkdtemp(prefix="sgmq-guard-")
    deployment = os.path.join(work, "deploy")
    log_path = os.path.join(work, "broker.log")
    broker = None
    ctx = zmq.Context()
    try:
        subprocess.run([cli, "init", deployment, "--endpoint", "tcp://127.0.0.1:*"],
                       check=True, stdout=subprocess.DEVNULL)
        config = os.path.join(deployment, "sgmq.cfg")
        with open(config) as f:
            text = f.read()
        assert "max-memory = 1073741824" in text, "no max-memory line in the config"
        with open(config, "w") as f:
            f.write(text.replace("max-memory = 1073741824", "max-memory = %d" % LIMIT))
        certs = {}
        for short, roles, groups in (("insider", "publisher", "exploitation"),
                                     ("member", "member", "executive")):
            certs[short] = os.path.join(work, short + ".cert")
            subprocess.run([cli, "cert", "new", "--name", "A " + short, "--agency", "Agency",
                            "--role", roles, "--groups", groups, "--out", certs[short],
                            "--admit", deployment], check=True, stdout=subprocess.DEVNULL)
        log = open(log_path, "w")
        broker = subprocess.Popen([broker_bin, "--config", config], stdout=subprocess.PIPE,
                                  stderr=log, stdin=subprocess.DEVNULL)
        ready, _, _ = select.select([broker.stdout], [], [], 30 * SCALE)
        assert ready, "the broker did not say it was ready"
        line = broker.stdout.readline().decode()
        assert "ready on " in line, line
        endpoint = line.split("ready on ", 1)[1].strip()
        timeout_ms = int(10000 * SCALE)

        member = Client(ctx, endpoint, deployment, certs["member"])
        assert member.request("hello", 1, {}, timeout_ms)[0] == "welcome"
        first = Client(ctx, endpoint, deployment, certs["insider"], routing_id=b"XX")
        answer = first.request("hello", 1, {}, timeout_ms)      # attached: it is answered
        assert answer[0] == "error" and answer[2]["code"] == 400, answer
        second = Client(ctx, endpoint, deployment, certs["insider"], routing_id=b"XX",
                        sndhwm=4)
        big = frame(["ping", 9, {"x": "a" * (1024 * 1024 - 100)}])
        deadline = time.time() + 30 * SCALE
        sent = 0
        guarded = False
        most = 8 * LIMIT // (1024 * 1024)       # MiB: the machine's memory is not the test's
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
        broker.send_signal(signal.SIGTERM)
        rc = broker.wait(timeout=60 * SCALE)
        broker = None
        assert rc == 0, "broker exit %d" % rc
        print("ok")
    except BaseException:
        if os.path.exists(log_path):
            with open(log_path) as f:
                sys.stderr.write(f.read()[-4000:])
        raise
    finally:
        if broker is not None and broker.poll() is None:
            broker.kill()
            broker.wait()
        ctx.destroy(linger=0)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
