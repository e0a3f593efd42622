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

The second path to the same assertion, which any admitted key could take
with one connection: a TCP segment holding more small frames than the
connection's queue into the broker held, a ZMTP PING behind them and a
publish last, then a reset. libzmq stopped reading with the PING still
undecoded; the reset marked the connection broken; when the broker read
the queue, libzmq decoded the PING and asserted writing its PONG. The
broker's queues in are now unbounded in libzmq and bounded by the broker
itself (ZMQ_RCVHWM 0, frames parked): a member must receive the publish
that came after the PING, and the broker must still run, every round.

And what the broker then does with a connection that sends more than it
holds: it drops the frame (ERROR 429 with id 0) and ends the session, so
that nothing the connection sent after the dropped frame is handled
before it is sent again (a PING is refused with 400 until a new HELLO).

usage: test_flood.py SGMQ_BROKER_BINARY SGMQ_CLI_BINARY
"""
import os
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
from test_python_client import (commands_of, frame, read_zpl_value,  # noqa: E402
                                start_broker)
from rawcurve import Raw  # noqa: E402

SCALE = max(1.0, float(os.environ.get("SGMQ_TEST_SCALE", "1")))
CONNECTIONS = 8
ROUNDS = 3
FLOOD_S = 3.0
STORED = 300                    # escalations, so that PENDING all is large
PING_ROUNDS = 3
SEGMENT = 8192                  # libzmq's decoder reads this much at a time
QUEUE_WAS = 32                  # the broker's ZMQ_RCVHWM before the fix


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
        return self.wait_for(lambda command: command[1] == rid, name, timeout_ms)

    def wait_for(self, wanted, what, timeout_ms):
        """The first command for which wanted(command) is true."""
        deadline = time.time() + timeout_ms / 1000
        while True:
            left = int((deadline - time.time()) * 1000)
            if left <= 0 or not self.sock.poll(left):
                raise TimeoutError("no answer to %s" % what)
            for command in commands_of(self.sock.recv()):
                if wanted(command):
                    return command


def escalation(title, group="exploitation", summary="s" * 2000, requested="r" * 500):
    return {"group": group, "title": title, "summary": summary, "severity": "high",
            "requested": requested, "respond_by": int(time.time() * 1000) + 30 * 86400000}


def ping_then_reset(broker, endpoint, deployment, flooder_cert, member, timeout_ms):
    """PING_ROUNDS rounds of the second path (see the top of the file)."""
    host, port = endpoint.split("://", 1)[1].rsplit(":", 1)
    keys = (read_zpl_value(flooder_cert + "_secret", "public-key"),
            read_zpl_value(flooder_cert + "_secret", "secret-key"),
            read_zpl_value(os.path.join(deployment, "broker.cert"), "public-key"))
    # The STORED escalations come first (they are all to the executive).
    assert member.request("subscribe", 2, {"window": 10000}, timeout_ms)[0] == "subscribed"
    for round_ in range(PING_ROUNDS):
        raw = Raw(host, int(port), *keys, timeout=timeout_ms / 1000)
        raw.send(raw.message(frame(["hello", 1, {}])))
        assert commands_of(raw.receive())[0][0] == "welcome"
        # In sending order (CURVE nonces grow): two long requests, far more
        # frames than the queue held, the ZMTP PING, frames to fill the
        # segment, and the publish the member must receive. The filler is
        # a command the broker refuses (405) straight to the connection:
        # a PONG that cannot be sent (the peer is gone) would end the
        # session, and the publish with it.
        title = "After the ping %d" % round_
        publish = frame(["publish", 3, {
            "ref": "ping-reset-%d" % round_, "kind": "escalation",
            "body": escalation(title, group="executive", summary="s", requested="r")}])
        segment = b"".join(raw.message(frame(["pending", 10 + k, {"scope": "all",
                                                                   "limit": 1000}]))
                           for k in range(2))
        segment += b"".join(raw.message(frame(["nope", 100 + k, {}]))
                            for k in range(4 * QUEUE_WAS))
        segment += raw.ping()
        room = SEGMENT - Raw.message_size(len(publish))
        while len(segment) + Raw.message_size(len(frame(["nope", 999, {}]))) <= room:
            segment += raw.message(frame(["nope", 999, {}]))
        segment += raw.message(publish)
        assert len(segment) <= SEGMENT, len(segment)
        raw.send(segment)
        raw.reset()
        try:
            delivery = member.wait_for(lambda command: command[0] == "deliver"
                                       and command[2]["body"]["title"] == title,
                                       "the publish after the ping", timeout_ms)
        except TimeoutError:
            assert broker.poll() is None, "the broker died (exit %s)" % broker.returncode
            raise
        member.sock.send(frame(["ack", 4, {"seq": delivery[2]["seq"]}]))
        assert broker.poll() is None, "the broker died (exit %s)" % broker.returncode
        print("ping round %d: a %d-byte segment, the publish after the PING delivered"
              % (round_, len(segment)))


def first_answer(client, name, timeout_ms):
    """The first answer to `name` sent again and again (ids from 100,000),
    each waited for a second, for timeout_ms in all."""
    for attempt in range(max(1, timeout_ms // 1000)):
        try:
            answer = client.request(name, 100000 + attempt, {}, 1000)
        except TimeoutError:
            continue
        if not (answer[0] == "error" and answer[2]["code"] == 429):    # closing: again
            return answer
    raise TimeoutError("no answer to %s" % name)


def session_ends_at_a_drop(ctx, endpoint, deployment, cert, timeout_ms):
    """One connection sends frames of 1,024 publishes (of refs stored once:
    cheap to decrypt, costly to handle, so they pile up in the broker
    however fast its build is) until the broker drops one (ERROR 429 with
    id 0), for FLOOD_S at most. Its session is then over: nothing it sends
    later is handled until it says HELLO again, so what is handled has no
    gap."""
    client = Client(ctx, endpoint, deployment, cert, sndhwm=4)   # little left queued here
    assert client.request("hello", 1, {}, timeout_ms)[0] == "welcome"
    publishes = frame(*[["publish", 20 + k, {"ref": "w%05d" % k, "kind": "escalation",
                                             "body": escalation("Watch %05d" % k, summary="s",
                                                                requested="r")}]
                        for k in range(1024)])
    dropped = False
    deadline = time.time() + FLOOD_S * SCALE
    while not dropped and time.time() < deadline:
        try:
            client.sock.send(publishes, zmq.DONTWAIT)
        except zmq.Again:
            client.sock.poll(2)
        while client.sock.poll(0):
            for command in commands_of(client.sock.recv()):
                dropped |= command[:2] == ["error", 0] and command[2]["code"] == 429
    assert dropped, "no frame was dropped: the flood stayed within what the broker holds"
    # The refusals of what was still on its way fill the queue to us, so an
    # answer may be dropped too (a peer not reading): ask until one comes.
    answer = first_answer(client, "ping", timeout_ms)
    assert answer[0] == "error" and answer[2]["code"] == 400, answer
    answer = first_answer(client, "hello", timeout_ms)
    assert answer[0] == "welcome", answer
    assert client.request("ping", 11, {}, timeout_ms)[0] == "pong"
    client.sock.close()
    print("a dropped frame ended its session; a new HELLO started another")


def with_broker(prefix, principals, test, io_threads=1, config=None):
    """Make a deployment with the real `sgmq init`, admit `principals`
    ((short name, roles, groups) ...), let config(text) edit its sgmq.cfg,
    start the real broker (sys.argv[1], CLI sys.argv[2]) on a free
    loopback port, run test(broker, endpoint, deployment, certs, log_path,
    ctx, timeout_ms), then stop the broker by SIGTERM: it must exit 0. The
    broker's log is shown if anything fails; the folder is removed."""
    broker_bin, cli = sys.argv[1], sys.argv[2]
    work = tempfile.mkdtemp(prefix=prefix)
    deployment = os.path.join(work, "deploy")
    log_path = os.path.join(work, "broker.log")
    broker = None
    ctx = zmq.Context(io_threads=io_threads)
    try:
        subprocess.run([cli, "init", deployment, "--endpoint", "tcp://127.0.0.1:*"],
                       check=True, stdout=subprocess.DEVNULL)
        config_path = os.path.join(deployment, "sgmq.cfg")
        if config:
            with open(config_path) as f:
                text = config(f.read())
            with open(config_path, "w") as f:
                f.write(text)
        certs = {}
        for short, roles, groups in principals:
            certs[short] = os.path.join(work, short + ".cert")
            subprocess.run([cli, "cert", "new", "--name", "A " + short, "--agency", "Agency",
                            "--role", roles, "--groups", groups, "--out", certs[short],
                            "--admit", deployment], check=True, stdout=subprocess.DEVNULL)
        with open(log_path, "w") as log:
            broker, endpoint = start_broker(broker_bin, config_path, log)
        test(broker, endpoint, deployment, certs, log_path, ctx, int(10000 * SCALE))
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


def flood_test(broker, endpoint, deployment, certs, log_path, ctx, timeout_ms):
    # What PENDING all will list: each escalation to both members.
    flooder = Client(ctx, endpoint, deployment, certs["flooder"])
    assert flooder.request("hello", 1, {}, timeout_ms)[0] == "welcome"
    for n in range(STORED):
        answer = flooder.request("publish", 100 + n, {"ref": "f%05d" % n,
                                                      "kind": "escalation",
                                                      "body": escalation("Flood %05d" % n)},
                                 timeout_ms)
        assert answer[0] == "confirm", answer
    flooder.sock.close()

    member = Client(ctx, endpoint, deployment, certs["member"])
    assert member.request("hello", 1, {}, timeout_ms)[0] == "welcome"
    ping_then_reset(broker, endpoint, deployment, certs["flooder"], member, timeout_ms)
    session_ends_at_a_drop(ctx, endpoint, deployment, certs["flooder"], timeout_ms)
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
    with open("/proc/%d/status" % broker.pid) as f:
        peak = [line.split()[1] for line in f if line.startswith("VmHWM:")][0]
    print("broker peak RSS %d MiB" % (int(peak) // 1024))


def main():
    with_broker("sgmq-flood-", (("flooder", "publisher,member,auditor", "executive,exploitation"),
                                ("member", "member", "executive")),
                flood_test, io_threads=2)


if __name__ == "__main__":
    main()
