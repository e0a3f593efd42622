#!/usr/bin/python3
"""A second, independent client of the sgmq protocol, written from
proto/PROTOCOL.md alone with Debian's python3-zmq and python3-msgpack.

It makes a deployment with the real `sgmq init`, admits a principal with
`sgmq cert new --admit`, starts the real `sgmq-broker` on a free loopback
port (reading the port from its ready line), and then, over CurveZMQ:
completes the handshake (HELLO -> WELCOME with the principal's identity),
publishes an escalation and reads the CONFIRM, subscribes and receives it,
acknowledges it, checks the audit chain hash of a replayed item against
PROTOCOL.md section 11.1, and gets the right ERROR for a malformed frame,
an unknown command, a missing field and a bad signature. The broker is
stopped by its PID and must exit 0.

usage: test_python_client.py SGMQ_BROKER_BINARY SGMQ_CLI_BINARY
"""
import hashlib
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

import msgpack
import zmq

SCALE = max(1.0, float(os.environ.get("SGMQ_TEST_SCALE", "1")))
TIMEOUT_MS = int(5000 * SCALE)


def read_zpl_value(path, key):
    """The value of `key = "..."` in a ZPL cert file (enough for zcert)."""
    with open(path) as f:
        for line in f:
            name, sep, value = line.strip().partition("=")
            if sep and name.strip() == key:
                return value.strip().strip('"')
    raise KeyError(key)


def frame(*commands):
    """A frame: ["SGMQ", 1, command, ...], each command [name, id, body]."""
    return msgpack.packb(["SGMQ", 1, *commands], use_bin_type=True)


def commands_of(data):
    unpacked = msgpack.unpackb(data, raw=False)
    assert unpacked[0] == "SGMQ" and unpacked[1] == 1, unpacked[:2]
    return unpacked[2:]


class Client:
    def __init__(self, ctx, endpoint, secret_cert, server_cert):
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.curve_publickey = read_zpl_value(secret_cert, "public-key").encode()
        self.sock.curve_secretkey = read_zpl_value(secret_cert, "secret-key").encode()
        self.sock.curve_serverkey = read_zpl_value(server_cert, "public-key").encode()
        self.sock.linger = 0
        self.sock.connect(endpoint)
        self.inbox = []
        self.kept = []

    def send(self, data):
        self.sock.send(data)

    def next(self):
        """The next command from the broker (several may share a frame)."""
        while not self.inbox:
            if not self.sock.poll(TIMEOUT_MS):
                raise AssertionError("no answer from the broker")
            self.inbox.extend(commands_of(self.sock.recv()))
        return self.inbox.pop(0)

    def answer(self, request_id):
        """The answer to `request_id`. Answers come in the broker's order,
        not the requests' (a PING needs no disk write, an ACK does), so
        others are kept for later; deliveries (id 0) are kept too."""
        while True:
            for i, (name, cid, body) in enumerate(self.kept):
                if cid == request_id and name != "deliver":
                    del self.kept[i]
                    return name, body
            self.kept.append(self.next())

    def delivery(self):
        for i, (name, cid, body) in enumerate(self.kept):
            if name == "deliver":
                del self.kept[i]
                return body
        while True:
            command = self.next()
            if command[0] == "deliver":
                return command[2]
            self.kept.append(command)

    def close(self):
        self.sock.close()


def chain_hash(prev, item):
    """PROTOCOL.md 11.1, written from the spec."""
    def u16(n):
        return struct.pack(">H", n)

    def text(s):
        b = s.encode()
        return u16(len(b)) + b

    data = prev + b"sgmq-msg-v1" + struct.pack(">QQ", item["seq"], item["time"])
    data += text(item["from"]) + text(item["from_key"]) + text(item["kind"])
    data += u16(len(item["groups"])) + b"".join(text(g) for g in item["groups"])
    data += struct.pack(">I", len(item["body"])) + item["body"]
    return hashlib.blake2b(data, digest_size=32).digest()


def start_broker(broker_bin, config, log):
    proc = subprocess.Popen([broker_bin, "--config", config], stdout=subprocess.PIPE,
                            stderr=log, stdin=subprocess.DEVNULL)
    ready, _, _ = select.select([proc.stdout], [], [], 10 * SCALE)
    assert ready, "the broker did not get ready"
    line = proc.stdout.readline().decode()
    assert "ready on " in line, line
    return proc, line.split("ready on ", 1)[1].strip()


def main():
    broker_bin, cli_bin = sys.argv[1], sys.argv[2]
    work = tempfile.mkdtemp(prefix="sgmq-python-")
    deploy = os.path.join(work, "deploy")
    try:
        subprocess.run([cli_bin, "init", deploy, "--endpoint", "tcp://127.0.0.1:*"],
                       check=True, stdout=subprocess.DEVNULL)
        for name, role, groups, file in [
                ("Police case system", "publisher", "exploitation", "police.cert"),
                ("Executive member (ICB)", "member", "executive", "exec.cert"),
                ("Independent scrutineer", "auditor", None, "auditor.cert")]:
            args = [cli_bin, "cert", "new", "--name", name, "--agency", "An agency",
                    "--role", role, "--out", os.path.join(work, file), "--admit", deploy]
            if groups:
                args += ["--groups", groups]
            subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(work, "broker.log"), "w") as log:
            proc, endpoint = start_broker(broker_bin, os.path.join(deploy, "sgmq.cfg"), log)
        try:
            run_protocol(endpoint, work, deploy)
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=10 * SCALE)
        assert code == 0, f"broker exited {code}"
        print("python protocol test: ok")
    finally:
        shutil.rmtree(work)


def run_protocol(endpoint, work, deploy):
    ctx = zmq.Context()
    server_cert = os.path.join(deploy, "broker.cert")
    police = Client(ctx, endpoint, os.path.join(work, "police.cert_secret"), server_cert)
    chair = Client(ctx, endpoint, os.path.join(work, "exec.cert_secret"), server_cert)
    auditor = Client(ctx, endpoint, os.path.join(work, "auditor.cert_secret"), server_cert)

    # Handshake: the identity comes from the broker's registry.
    for client in (police, chair, auditor):
        client.send(frame(["hello", 1, {"client": "python-test/1"}]))
    name, welcome = police.answer(1)
    assert name == "welcome", (name, welcome)
    assert welcome["name"] == "Police case system"
    assert welcome["roles"] == ["publisher"] and welcome["groups"] == ["exploitation"]
    assert welcome["heartbeat"] > 0 and welcome["max_frame"] > 0
    assert chair.answer(1)[0] == "welcome"
    assert auditor.answer(1)[0] == "welcome"

    # Subscribe, then publish an escalation; CONFIRM carries the seq.
    chair.send(frame(["subscribe", 2, {"window": 10}]))
    name, body = chair.answer(2)
    assert name == "subscribed", (name, body)
    respond_by = int(time.time() * 1000) + 86400000
    escalation = {"group": "exploitation", "title": "From Python",
                  "summary": "A summary", "severity": "medium",
                  "requested": "A decision", "respond_by": respond_by}
    police.send(frame(["publish", 3, {"ref": "py-0001", "kind": "escalation",
                                      "body": escalation}]))
    name, confirm = police.answer(3)
    assert name == "confirm" and confirm["seq"] >= 1 and not confirm["duplicate"], confirm
    seq = confirm["seq"]
    # A retry with the same ref is the same message.
    police.send(frame(["publish", 4, {"ref": "py-0001", "kind": "escalation",
                                      "body": escalation}]))
    name, again = police.answer(4)
    assert name == "confirm" and again["seq"] == seq and again["duplicate"], again

    # The Executive member receives it, and acknowledges (two commands, one frame).
    delivery = chair.delivery()
    assert delivery["seq"] == seq, delivery
    assert delivery["body"]["title"] == "From Python"
    # The PONG does not wait for the commit the ACK needs (PROTOCOL.md 3.5):
    # it comes first, in a frame of its own.
    assert not chair.inbox and not chair.kept, (chair.inbox, chair.kept)
    chair.send(frame(["ack", 5, {"seq": seq}], ["ping", 6, {}]))
    assert chair.sock.poll(TIMEOUT_MS), "no answer from the broker"
    first = commands_of(chair.sock.recv())
    assert [(c[0], c[1]) for c in first] == [("pong", 6)], first
    name, acked = chair.answer(5)
    assert name == "acked" and acked["seq"] == seq, acked

    # Replay: check the item's hash as PROTOCOL.md 11.1 defines it.
    auditor.send(frame(["replay", 7, {"from": seq, "to": seq}]))
    name, item = auditor.answer(7)
    assert name == "replay-item", (name, item)
    assert chain_hash(item["prev"], item) == item["hash"], "chain hash mismatch"
    assert [a["by"] for a in item["acks"]] == ["Executive member (ICB)"]
    name, end = auditor.answer(7)
    assert name == "replay-end" and end["count"] == 1, end

    # Bad input is answered, with the code the spec gives, and the broker
    # goes on serving.
    police.send(b"\x93\xa4SGMQ\x01\x93\xa4ping")             # truncated
    name, error = police.answer(0)
    assert name == "error" and error["code"] == 411, error
    police.send(msgpack.packb(["SGMQ", 1, ["ping", 8, {}]]) + b"\x00")
    name, error = police.answer(0)
    assert name == "error" and error["code"] == 412, error   # trailing bytes
    police.send(msgpack.packb(["AMQP", 1, ["ping", 9, {}]]))
    name, error = police.answer(0)
    assert name == "error" and error["code"] == 413, error   # signature
    police.send(frame(["teleport", 10, {}]))
    name, error = police.answer(10)
    assert name == "error" and error["code"] == 405, error   # unknown command
    # The refusals of one frame's commands come in one frame.
    assert not police.inbox and not police.kept, (police.inbox, police.kept)
    police.send(frame(["teleport", 14, {}], ["teleport", 15, {}], ["teleport", 16, {}]))
    assert police.sock.poll(TIMEOUT_MS), "no answer from the broker"
    refusals = commands_of(police.sock.recv())
    assert [(c[0], c[1], c[2]["code"]) for c in refusals] == \
        [("error", i, 405) for i in (14, 15, 16)], refusals
    police.send(frame(["publish", 11, {"ref": "py-0002", "kind": "escalation",
                                       "body": {"group": "exploitation"}}]))
    name, error = police.answer(11)
    assert name == "error" and error["code"] == 420 and error["field"] == "body.title", error
    police.send(frame(["publish", 12, {"ref": "py-0003", "kind": "reminder",
                                       "body": {"reason": "ack-overdue", "about": seq,
                                                "about_kind": "escalation",
                                                "title": "Forged", "due": 1,
                                                "count": 1}}]))
    name, error = police.answer(12)
    assert name == "error" and error["code"] == 403, error
    police.send(frame(["ping", 13, {}]))
    assert police.answer(13)[0] == "pong"
    for client in (police, chair, auditor):
        client.send(frame(["bye", 99, {}]))
        client.close()
    ctx.term()


if __name__ == "__main__":
    main()
