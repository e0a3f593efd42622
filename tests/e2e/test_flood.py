#!/usr/bin/python3
"""One admitted key floods the broker from many connections and resets them.

A review aborted the broker at will this way: libzmq 4.3.4's ZMTP heartbeat
timer wrote to a connection whose queue into the broker was full (libzmq
stops reading it) and whose peer then reset it, and asserted (!_io_error).
The broker no longer sends ZMTP heartbeats. Each round, 8 connections of
one key keep the broker's turns long (PENDING scope=all, answers never
read) and push 1 MiB frames for a few seconds, then close with linger 0
(a reset). After every round the broker must be running and answer a
well-behaved client; at the end it must stop by SIGTERM and exit 0.

usage: test_flood.py SGMQ_BROKER_BINARY SGMQ_CLI_BINARY
"""
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import zmq

# The wire helpers of the other Python client (written from PROTOCOL.md).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_python_client import commands_of, frame, read_zpl_value  # noqa: E402

SCALE = max(1.0, float(os.environ.get("SGMQ_TEST_SCALE", "1")))
CONNECTIONS = 8
ROUNDS = 3
FLOOD_S = 3.0
STORED = 300                    # escalations, so that PENDING all is large


class Client:
    def __init__(self, ctx, endpoint, deployment, cert, **options):
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.curve_publickey = read_zpl_value(cert + "_secret", "public-key").encode()
        self.sock.curve_secretkey = read_zpl_value(cert + "_secret", "secret-key").encode()
        self.sock.curve_serverkey = read_zpl_value(os.path.join(deployment, "broker.cert"),
                                              "public-key").encode()
        self.sock.linger = 0
        for name, value in options.items():
            setattr(self.sock, name, value)
        self.sock.connect(endpoint)

    def request(self, name, rid, body, timeout_ms):
        """Send one command; the first answer with its id (deliveries skipped)."""
        self.sock.send(frame([name, rid, body]))
        deadline = time.time() + timeout_ms / 1000
        while True:
            left = int((deadline - time.time()) * 1000)
            if left <= 0 or not self.sock.poll(left):
                raise TimeoutError("no answer to %s" % name)
            for command in commands_of(self.sock.recv()):
                if command[1] == rid:
                    return command


def main():
    broker_bin, cli = sys.argv[1], sys.argv[2]
    work = tempfile.mkdtemp(prefix="sgmq-flood-")
    deployment = os.path.join(work, "deploy")
    broker = None
    ctx = zmq.Context(io_threads=2)
    try:
        subprocess.run([cli, "init", deployment, "--endpoint", "tcp://127.0.0.1:*"],
                       check=True, stdout=subprocess.DEVNULL)
        certs = {}
        for short, roles, groups in (
                ("flooder", "publisher,member,auditor", "executive,exploitation"),
                ("member", "member", "executive")):
            certs[short] = os.path.join(work, short + ".cert")
            subprocess.run([cli, "cert", "new", "--name", "A " + short, "--agency", "Agency",
                            "--role", roles, "--groups", groups, "--out", certs[short],
                            "--admit", deployment], check=True, stdout=subprocess.DEVNULL)
        log = open(os.path.join(work, "broker.log"), "w")
        broker = subprocess.Popen([broker_bin, "--config", os.path.join(deployment, "sgmq.cfg")],
                                  stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
        ready, _, _ = select.select([broker.stdout], [], [], 30 * SCALE)
        assert ready, "the broker did not say it was ready"
        line = broker.stdout.readline().decode()
        assert "ready on " in line, line
        endpoint = line.split("ready on ", 1)[1].strip()
        timeout_ms = int(10000 * SCALE)

        # What PENDING all will list: each escalation to both members.
        flooder = Client(ctx, endpoint, deployment, certs["flooder"])
        assert flooder.request("hello", 1, {}, timeout_ms)[0] == "welcome"
        respond_by = int(time.time() * 1000) + 30 * 86400000
        for n in range(STORED):
            body = {"group": "exploitation", "title": "Flood %05d" % n, "summary": "s" * 2000,
                    "severity": "high", "requested": "r" * 500, "respond_by": respond_by}
            answer = flooder.request("publish", 100 + n, {"ref": "f%05d" % n,
                                                          "kind": "escalation", "body": body},
                                     timeout_ms)
            assert answer[0] == "confirm", answer
        flooder.sock.close()

        member = Client(ctx, endpoint, deployment, certs["member"])
        assert member.request("hello", 1, {}, timeout_ms)[0] == "welcome"
        pending = frame(*[["pending", 10 + k, {"scope": "all", "limit": 1000}] for k in range(2)])
        big = frame(["ping", 9, {"x": "a" * (1024 * 1024 - 100)}])
        for round_ in range(ROUNDS):
            floods = [Client(ctx, endpoint, deployment, certs["flooder"],
                             rcvhwm=1, rcvbuf=4096, sndhwm=4) for _ in range(CONNECTIONS)]
            for f in floods:
                f.sock.send(frame(["hello", 1, {}]))
            stop = threading.Event()

            def flood(client):
                while not stop.is_set():
                    try:
                        client.sock.send(pending, zmq.DONTWAIT)
                        client.sock.send(big, zmq.DONTWAIT)
                    except zmq.Again:
                        time.sleep(0.002)

            threads = [threading.Thread(target=flood, args=(f,), daemon=True) for f in floods]
            for t in threads:
                t.start()
            time.sleep(FLOOD_S)             # the flood's length, not a wait for anything
            stop.set()
            for t in threads:
                t.join(10)
            for f in floods:
                f.sock.close()              # linger 0: the connections are reset
            # The broker is still running and answers the member.
            answer = member.request("ping", 1000 + round_, {}, timeout_ms)
            assert broker.poll() is None, "the broker died (exit %s)" % broker.returncode
            assert answer[0] == "pong", answer
            print("round %d: broker running, member answered" % round_)
        member.sock.close()
        broker.send_signal(signal.SIGTERM)
        rc = broker.wait(timeout=60 * SCALE)
        broker = None
        assert rc == 0, "broker exit %d" % rc
        print("ok")
    except BaseException:
        log_path = os.path.join(work, "broker.log")
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
