"""Shared helpers for the adversarial scripts (run with /usr/bin/python3).

setup(work): make a deployment under `work` with these principals:
  evil      roles publisher,member,auditor,admin; groups executive,exploitation,rapid-review-panel
  canary    role member, group executive          (the well-behaved client)
  pub       role publisher, group exploitation    (a well-behaved publisher)
  exec2..4  members of executive (extra recipients, so PENDING has items)
start_broker(work) -> (proc, endpoint); stop_broker(proc).
"""
import os, sys, signal, subprocess, select, time, struct, shutil, threading
import msgpack, zmq

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BROKER = os.path.join(ROOT, "build/broker/sgmq-broker")
CLI = os.path.join(ROOT, "build/clients/sgmq")

PRINCIPALS = [
    ("evil", "Evil insider", "publisher,member,auditor,admin", "executive,exploitation,rapid-review-panel"),
    ("canary", "Canary exec", "member", "executive"),
    ("pub", "Police system", "publisher", "exploitation"),
    ("exec2", "Exec two", "member", "executive"),
    ("exec3", "Exec three", "member", "executive"),
    ("exec4", "Exec four", "member", "executive"),
]

# The ZPL reader of the other Python client (tests/e2e, from PROTOCOL.md).
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from test_python_client import read_zpl_value as zpl  # noqa: E402

def setup(work, extra_cfg=None):
    if os.path.exists(work):
        shutil.rmtree(work)
    os.makedirs(work)
    dep = os.path.join(work, "deploy")
    subprocess.run([CLI, "init", dep, "--endpoint", "tcp://127.0.0.1:*"], check=True,
                   stdout=subprocess.DEVNULL)
    for short, name, roles, groups in PRINCIPALS:
        subprocess.run([CLI, "cert", "new", "--name", name, "--agency", "Agency " + short,
                        "--role", roles, "--groups", groups, "--out",
                        os.path.join(work, short + ".cert"), "--admit", dep],
                       check=True, stdout=subprocess.DEVNULL)
    return dep

def start_broker(work, log_level=None):
    dep = os.path.join(work, "deploy")
    cfg = os.path.join(dep, "sgmq.cfg")
    if log_level:
        s = open(cfg).read().replace('log-level = "info"', 'log-level = "%s"' % log_level)
        open(cfg, "w").write(s)
    log = open(os.path.join(work, "broker.log"), "a")
    proc = subprocess.Popen([BROKER, "--config", cfg], stdout=subprocess.PIPE, stderr=log,
                            stdin=subprocess.DEVNULL)
    import atexit
    atexit.register(lambda: proc.poll() is None and (proc.kill(), proc.wait()))
    r, _, _ = select.select([proc.stdout], [], [], 15)
    assert r, "broker not ready"
    line = proc.stdout.readline().decode()
    assert "ready on " in line, line
    return proc, line.split("ready on ", 1)[1].strip()

def stop_broker(proc, timeout=20):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return "hung (killed)"

def mem(pid):
    d = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "RssAnon", "VmHWM", "Threads"):
                    d[k] = int(v.split()[0])
        d["fds"] = len(os.listdir("/proc/%d/fd" % pid))
    except FileNotFoundError:
        d["dead"] = True
    return d

def frame(*cmds):
    return msgpack.packb(["SGMQ", 1, *cmds], use_bin_type=True)

def cmds_of(data):
    u = msgpack.unpackb(data, raw=False, strict_map_key=False)
    return u[2:]

class Client:
    def __init__(self, ctx, endpoint, work, who, rcvhwm=None, sndhwm=None, rcvbuf=None):
        dep = os.path.join(work, "deploy")
        s = ctx.socket(zmq.DEALER)
        sec = os.path.join(work, who + ".cert_secret")
        s.curve_publickey = zpl(sec, "public-key").encode()
        s.curve_secretkey = zpl(sec, "secret-key").encode()
        s.curve_serverkey = zpl(os.path.join(dep, "broker.cert"), "public-key").encode()
        s.linger = 0
        if rcvhwm is not None: s.rcvhwm = rcvhwm
        if sndhwm is not None: s.sndhwm = sndhwm
        if rcvbuf is not None: s.rcvbuf = rcvbuf
        s.connect(endpoint)
        self.sock = s
        self.kept = []
        self.nid = 1000

    def send(self, data, flags=0):
        self.sock.send(data, flags)

    def next(self, timeout_ms=5000):
        while not self.kept:
            if not self.sock.poll(timeout_ms):
                raise TimeoutError("no answer")
            self.kept.extend(cmds_of(self.sock.recv()))
        return self.kept.pop(0)

    def answer(self, rid, timeout_ms=5000):
        deadline = time.time() + timeout_ms / 1000
        held = []
        try:
            while True:
                left = int((deadline - time.time()) * 1000)
                if left <= 0:
                    raise TimeoutError("no answer to %d" % rid)
                c = self.next(left)
                if c[1] == rid and c[0] != "deliver":
                    return c
                held.append(c)
        finally:
            self.kept = held + self.kept

    def req(self, name, body, timeout_ms=5000):
        self.nid += 1
        self.send(frame([name, self.nid, body]))
        return self.answer(self.nid, timeout_ms)

    def hello(self):
        c = self.req("hello", {"client": "adv/1"})
        assert c[0] == "welcome", c
        return c

    def close(self):
        self.sock.close()

def escalation(title="t" * 200, summary="s" * 4000, group="exploitation"):
    return {"group": group, "title": title, "summary": summary, "severity": "high",
            "requested": "r" * 2000, "respond_by": int(time.time() * 1000) + 86400000 * 30}

class Canary(threading.Thread):
    """A well-behaved client: PING every `period` s, records round-trip ms."""
    def __init__(self, ctx, endpoint, work, who="canary", period=0.1):
        super().__init__(daemon=True)
        self.c = Client(ctx, endpoint, work, who)
        self.c.hello()
        self.period = period
        self.lat = []
        self.fail = 0
        self.stop_ev = threading.Event()
    def run(self):
        while not self.stop_ev.is_set():
            t = time.time()
            try:
                self.c.req("ping", {}, timeout_ms=5000)
                self.lat.append((time.time() - t) * 1000)
            except Exception as e:
                self.fail += 1
                try:
                    self.c.hello()
                except Exception:
                    pass
            time.sleep(self.period)
    def stats(self):
        l = sorted(self.lat)
        if not l: return "canary: no answers, %d failures" % self.fail
        return "canary pings=%d fail=%d p50=%.1fms p99=%.1fms max=%.1fms" % (
            len(l), self.fail, l[len(l)//2], l[int(len(l)*0.99)-1 if len(l)>1 else 0], l[-1])
    def finish(self):
        self.stop_ev.set(); self.join(10); self.c.close()
