"""Second path to libzmq 4.3.4 `Assertion failed: !_io_error
(src/stream_engine_base.cpp:331)` without the broker's heartbeat timer:
one raw CURVE connection (key evil) writes, in ONE TCP segment (< 8 KiB, the
broker engine's decoder buffer), H heavy requests + N small valid frames
(N > RCVHWM so the engine's pipe fills and input stops with the rest of the
segment still in the decoder buffer) + a ZMTP PING + a few more frames, then
resets the connection (SO_LINGER 0). The engine sees EPOLLERR/HUP while input
is stopped (_io_error = true); when the broker's main thread drains the pipe,
restart_input() decodes the buffered PING -> process_heartbeat_message() ->
out_event() -> assert.
env PING=0: control (no PING in the segment); GDB=1: backtrace to /tmp/sgmq-repro-ping-reset/gdb.txt
usage: ping_reset.py [rounds=10] [N=140] [delay_ms=1] [heavy=2] [published=300]"""
import sys, os, time, zmq, socket
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import *
from rawcurve import Raw
ROUNDS = min(int(sys.argv[1]) if len(sys.argv) > 1 else 10, 100)
N = min(int(sys.argv[2]) if len(sys.argv) > 2 else 140, 400)
DELAY = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
HEAVY = min(int(sys.argv[4]) if len(sys.argv) > 4 else 2, 10)
MSGS = min(int(sys.argv[5]) if len(sys.argv) > 5 else 300, 2000)
PING = int(os.environ.get("PING", "1"))   # PING=0: control run, same segment without the ZMTP PING
work = "/tmp/sgmq-repro-ping-reset"     # made anew each run
setup(work)
proc, ep = start_broker(work)
if os.environ.get("GDB"):
    gdbp = subprocess.Popen(["gdb", "-p", str(proc.pid), "-batch", "-ex", "handle SIGPIPE nostop noprint", "-ex", "continue", "-ex", "thread apply all bt 12"], stdout=open(os.path.join(work, "gdb.txt"), "w"), stderr=subprocess.STDOUT); time.sleep(3)
host, port = ep.split("://", 1)[1].rsplit(":", 1); port = int(port)
dep = os.path.join(work, "deploy")
ckeys = (zpl(os.path.join(work, "evil.cert_secret"), "public-key"),
         zpl(os.path.join(work, "evil.cert_secret"), "secret-key"),
         zpl(os.path.join(dep, "broker.cert"), "public-key"))
ctx = zmq.Context()
e = Client(ctx, ep, work, "evil"); e.hello()
for i in range(0, MSGS, 50):
    n = min(50, MSGS - i)
    e.send(frame(*[["publish", 10 + j, {"ref": "p%05d" % j, "kind": "escalation",
                   "body": escalation(title=("T%05d" % j) + "x" * 194)}] for j in range(i, i + n)]))
    got = 0
    while got < n:
        got += sum(1 for c in cmds_of(e.sock.recv()) if c[0] == "confirm")
e.send(frame(["bye", 9, {}])); time.sleep(0.3); e.close()
t0 = time.time()
for r in range(ROUNDS):
    if time.time() - t0 > 600: break
    c = Raw(host, port, *ckeys)
    c.send(c.msg(frame(["hello", 1, {"client": "raw/1"}])))
    time.sleep(0.2)
    seg = b"".join(c.msg(frame(["pending", 100 + k, {"scope": "all", "limit": 1000}])) for k in range(HEAVY))
    seg += b"".join(c.msg(frame(["ping", 200 + k, {}])) for k in range(N))
    if PING: seg += c.ping(0)
    while True:
        more = c.msg(frame(["ping", 900, {}]))
        if len(seg) + len(more) > 8192: break
        seg += more
    c.send(seg)
    if DELAY > 0: time.sleep(DELAY / 1000)
    c.rst()
    time.sleep(1.5)
    m = mem(proc.pid); rc = proc.poll()
    print("round %d: seg=%d B, broker %s" % (r, len(seg), "DEAD (exit %s)" % rc if rc is not None or m.get("dead")
          else "alive RssAnon=%d KiB VmHWM=%d KiB" % (m.get("RssAnon", -1), m.get("VmHWM", -1))), flush=True)
    if rc is not None or m.get("dead"): break
print("elapsed %.0f s" % (time.time() - t0))
os.system("tail -2 %s/broker.log" % work)
print("exit", stop_broker(proc))
