"""A raw ZMTP 3.1 + CurveZMQ client (RFC 23 and RFC 26), with libsodium by
ctypes, so that a test can put exact bytes into one TCP segment (data
frames and a ZMTP PING command together) and then reset the connection,
which no ZMQ socket lets a program do."""
import ctypes
import os
import socket
import struct

import zmq.utils.z85 as z85

_sodium = ctypes.CDLL("libsodium.so.23")
_sodium.sodium_init()


def _keypair():
    public, secret = ctypes.create_string_buffer(32), ctypes.create_string_buffer(32)
    _sodium.crypto_box_keypair(public, secret)
    return public.raw, secret.raw


def _box(message, nonce, public, secret):
    boxed = ctypes.create_string_buffer(len(message) + 16)
    rc = _sodium.crypto_box_easy(boxed, message, ctypes.c_ulonglong(len(message)),
                                 nonce, public, secret)
    assert rc == 0, "crypto_box_easy"
    return boxed.raw


def _unbox(boxed, nonce, public, secret):
    message = ctypes.create_string_buffer(len(boxed) - 16)
    rc = _sodium.crypto_box_open_easy(message, boxed, ctypes.c_ulonglong(len(boxed)),
                                      nonce, public, secret)
    assert rc == 0, "the box does not open"
    return message.raw


def _zmtp_frame(body, command=False):
    flags = 0x04 if command else 0
    if len(body) < 256:
        return bytes([flags, len(body)]) + body
    return bytes([flags | 0x02]) + struct.pack(">Q", len(body)) + body


class Raw:
    """One CURVE connection as a DEALER, from z85 keys (the client's public
    and secret, the server's public)."""

    def __init__(self, host, port, client_public, client_secret, server_public, timeout=10):
        self.long_public = z85.decode(client_public)
        self.long_secret = z85.decode(client_secret)
        self.server_long = z85.decode(server_public)
        self.public, self.secret = _keypair()
        self.nonce = 1
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        greeting = (b"\xff" + b"\0" * 8 + b"\x7f" + bytes([3, 1])
                    + b"CURVE".ljust(20, b"\0") + b"\0" + b"\0" * 31)
        self.sock.sendall(greeting)
        self._read(64)
        nonce = self._next_nonce()
        hello = (b"\x05HELLO" + b"\x01\x00" + b"\0" * 72 + self.public + nonce
                 + _box(b"\0" * 64, b"CurveZMQHELLO---" + nonce, self.server_long, self.secret))
        self.sock.sendall(_zmtp_frame(hello, command=True))
        welcome = self._read_frame()
        assert welcome[:8] == b"\x07WELCOME", welcome[:16]
        plain = _unbox(welcome[24:], b"WELCOME-" + welcome[8:24], self.server_long, self.secret)
        self.server_public, cookie = plain[:32], plain[32:128]
        vouch_nonce = os.urandom(16)
        vouch = _box(self.public + self.server_long, b"VOUCH---" + vouch_nonce,
                     self.server_public, self.long_secret)
        metadata = b"\x0bSocket-Type" + struct.pack(">I", 6) + b"DEALER"
        nonce = self._next_nonce()
        initiate = (b"\x08INITIATE" + cookie + nonce
                    + _box(self.long_public + vouch_nonce + vouch + metadata,
                           b"CurveZMQINITIATE" + nonce, self.server_public, self.secret))
        self.sock.sendall(_zmtp_frame(initiate, command=True))
        ready = self._read_frame()
        assert ready[:6] == b"\x05READY", ready[:16]

    def _next_nonce(self):
        nonce = struct.pack(">Q", self.nonce)
        self.nonce += 1
        return nonce

    def _read(self, size):
        data = b""
        while len(data) < size:
            more = self.sock.recv(size - len(data))
            if not more:
                raise EOFError("the broker closed the connection")
            data += more
        return data

    def _read_frame(self):
        flags = self._read(1)[0]
        size = struct.unpack(">Q", self._read(8))[0] if flags & 0x02 else self._read(1)[0]
        return self._read(size)

    @staticmethod
    def message_size(size):
        """The bytes message() makes of `size` bytes of data."""
        body = 8 + 8 + 16 + 1 + size
        return body + (2 if body < 256 else 9)

    def message(self, data, command=False):
        """The bytes of one frame holding a CURVE MESSAGE of `data`."""
        nonce = self._next_nonce()
        flags = 0x02 if command else 0
        return _zmtp_frame(b"\x07MESSAGE" + nonce
                           + _box(bytes([flags]) + data, b"CurveZMQMESSAGEC" + nonce,
                                  self.server_public, self.secret))

    def ping(self, ttl_deciseconds=0):
        """The bytes of a ZMTP 3.1 PING command, in a CURVE MESSAGE."""
        return self.message(b"\x04PING" + struct.pack(">H", ttl_deciseconds), command=True)

    def receive(self):
        """The next data frame from the server (ZMTP commands are skipped)."""
        while True:
            boxed = self._read_frame()
            assert boxed[:8] == b"\x07MESSAGE", boxed[:16]
            plain = _unbox(boxed[16:], b"CurveZMQMESSAGES" + boxed[8:16],
                           self.server_public, self.secret)
            if not plain[0] & 0x02:
                return plain[1:]

    def send(self, data):
        self.sock.sendall(data)

    def reset(self):
        """Close with SO_LINGER 0: the kernel sends a TCP reset."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()
