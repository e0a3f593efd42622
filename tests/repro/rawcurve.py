"""Minimal raw ZMTP 3.1 + CurveZMQ client (ctypes libsodium) so a test can put
exact bytes (data frames and a ZMTP PING) into one TCP segment and then RST."""
import ctypes, socket, struct, os, zmq.utils.z85 as z85
_s = ctypes.CDLL("libsodium.so.23"); _s.sodium_init()
def _kp():
    pk = ctypes.create_string_buffer(32); sk = ctypes.create_string_buffer(32)
    _s.crypto_box_keypair(pk, sk); return pk.raw, sk.raw
def box(m, n, pk, sk):
    c = ctypes.create_string_buffer(len(m) + 16)
    assert _s.crypto_box_easy(c, m, ctypes.c_ulonglong(len(m)), n, pk, sk) == 0
    return c.raw
def unbox(c, n, pk, sk):
    m = ctypes.create_string_buffer(len(c) - 16)
    assert _s.crypto_box_open_easy(m, c, ctypes.c_ulonglong(len(c)), n, pk, sk) == 0, "unbox"
    return m.raw
def zframe(body, command=False, more=False):
    f = (0x04 if command else 0) | (0x01 if more else 0)
    if len(body) < 256: return bytes([f, len(body)]) + body
    return bytes([f | 0x02]) + struct.pack(">Q", len(body)) + body
def _recvn(s, n):
    b = b""
    while len(b) < n:
        x = s.recv(n - len(b))
        if not x: raise EOFError("closed")
        b += x
    return b
def _readframe(s):
    f = _recvn(s, 1)[0]
    n = struct.unpack(">Q", _recvn(s, 8))[0] if f & 0x02 else _recvn(s, 1)[0]
    return f, _recvn(s, n)
class Raw:
    def __init__(self, host, port, cpub_z85, csec_z85, spub_z85, timeout=10):
        self.C, self.c = z85.decode(cpub_z85), z85.decode(csec_z85)
        self.S = z85.decode(spub_z85)
        self.Cp, self.cp = _kp()
        self.nonce = 1
        s = socket.create_connection((host, port), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.s = s
        g = b"\xff" + b"\0" * 8 + b"\x7f" + bytes([3, 1]) + b"CURVE".ljust(20, b"\0") + b"\0" + b"\0" * 31
        s.sendall(g); _recvn(s, 64)
        # HELLO
        n = struct.pack(">Q", self.nonce); self.nonce += 1
        hello = b"\x05HELLO" + b"\x01\x00" + b"\0" * 72 + self.Cp + n + box(b"\0" * 64, b"CurveZMQHELLO---" + n, self.S, self.cp)
        s.sendall(zframe(hello, command=True))
        f, w = _readframe(s)
        assert w[:8] == b"\x07WELCOME", w[:16]
        pl = unbox(w[24:], b"WELCOME-" + w[8:24], self.S, self.cp)
        self.Sp, cookie = pl[:32], pl[32:128]
        vn = os.urandom(16)
        vouch = box(self.Cp + self.S, b"VOUCH---" + vn, self.Sp, self.c)
        meta = b"\x0bSocket-Type" + struct.pack(">I", 6) + b"DEALER"
        n = struct.pack(">Q", self.nonce); self.nonce += 1
        init = b"\x08INITIATE" + cookie + n + box(self.C + vn + vouch + meta, b"CurveZMQINITIATE" + n, self.Sp, self.cp)
        s.sendall(zframe(init, command=True))
        f, r = _readframe(s)
        assert r[:6] == b"\x05READY", r[:16]
    def msg(self, data, command=False, more=False):
        """One ZMTP frame holding a CURVE MESSAGE of `data` (bytes)."""
        n = struct.pack(">Q", self.nonce); self.nonce += 1
        fl = (0x02 if command else 0) | (0x01 if more else 0)
        return zframe(b"\x07MESSAGE" + n + box(bytes([fl]) + data, b"CurveZMQMESSAGEC" + n, self.Sp, self.cp))
    def ping(self, ttl_ds=0, ctx=b""):
        return self.msg(b"\x04PING" + struct.pack(">H", ttl_ds) + ctx, command=True)
    def send(self, b): self.s.sendall(b)
    def rst(self):
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.s.close()
