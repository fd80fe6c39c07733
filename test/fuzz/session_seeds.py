#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the seed corpus of the session fuzz target: whole client streams
(HTTP upgrade, then masked WebSocket frames carrying STOMP 1.0, 1.1 and 1.2
sessions) with the 5-byte header fuzz_session.c reads first (mode, the fake
broker's script and argument, the piece-size seed). Client frames must be
masked, which random mutation would rarely get right; these let the fuzzer
start deep in the session.
  test/fuzz/session_seeds.py [DIR]   (default test/fuzz/corpus/session)"""
import os
import struct
import sys

# fake_broker.h enum fb_fault
REFUSE_LOGIN, DECLARE_404, DENY, DELIVER, NACK, CANCEL, DROP, FORCE_CLOSE = (1 << i for i in range(8))
SHARED, HALF_CLOSE, DRAIN, BLOCKED, TIMERS, TCP = 1, 2, 4, 8, 16, 32


def upgrade(protocols="v12.stomp, v11.stomp, v10.stomp", path="/ws"):
    head = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n")
    if protocols:
        head += f"Sec-WebSocket-Protocol: {protocols}\r\n"
    return (head + "\r\n").encode()


def ws(payload, opcode=1, fin=True, key=b"\x12\x34\x56\x78"):
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload)
    b0 = (0x80 if fin else 0) | opcode
    if n < 126:
        head = bytes([b0, 0x80 | n])
    elif n < 65536:
        head = bytes([b0, 0x80 | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, 0x80 | 127]) + struct.pack(">Q", n)
    return head + key + bytes(c ^ key[i % 4] for i, c in enumerate(payload))


def stomp(cmd, headers=(), body=""):
    s = cmd + "\n" + "".join(f"{k}:{v}\n" for k, v in headers) + "\n" + body + "\0"
    return s


def connect(version, cmd="CONNECT", extra=()):
    h = []
    if version != "1.0":
        h += [("accept-version", version), ("host", "/")]
    h += [("login", "guest"), ("passcode", "pw")] + list(extra)
    return stomp(cmd, h)


def frames(*fs):
    return b"".join(ws(f) for f in fs)


def sessions():
    """(name, protocols, stream after the upgrade, faults, arg)."""
    out = []
    for v in ("1.0", "1.1", "1.2"):
        idh = "id" if v == "1.2" else "message-id"
        tag = v.replace(".", "")
        out.append((f"v{tag}-pubsub", None, frames(
            connect(v),
            stomp("SUBSCRIBE", [("destination", "/queue/q"), ("id", "s1"),
                                ("ack", "client-individual"), ("receipt", "r1")]),
            stomp("SEND", [("destination", "/queue/q"), ("receipt", "r2"),
                           ("content-type", "text/plain")], "hello"),
            stomp("ACK", [(idh, "1"), ("subscription", "s1")]),
            stomp("NACK", [(idh, "2"), ("subscription", "s1"), ("requeue", "false")]),
            stomp("UNSUBSCRIBE", [("id", "s1")]),
            stomp("DISCONNECT", [("receipt", "bye")])), DELIVER, 0x10))
        out.append((f"v{tag}-tx", None, frames(
            connect(v, extra=[("heart-beat", "0,0")]),
            stomp("SUBSCRIBE", [("destination", "/topic/a.b"), ("id", "t1"), ("ack", "client")]),
            stomp("BEGIN", [("transaction", "tx1")]),
            stomp("SEND", [("destination", "/topic/a.b"), ("transaction", "tx1")], "one"),
            stomp("ACK", [(idh, "1"), ("subscription", "t1"), ("transaction", "tx1")]),
            stomp("COMMIT", [("transaction", "tx1"), ("receipt", "c1")]),
            stomp("BEGIN", [("transaction", "tx2")]),
            stomp("SEND", [("destination", "/exchange/amq.topic/x"), ("transaction", "tx2")], "two"),
            stomp("ABORT", [("transaction", "tx2")]),
            stomp("DISCONNECT", [])), DELIVER, 0x20))
    out.append(("v12-destinations", None, frames(
        connect("1.2", cmd="STOMP"),
        stomp("SUBSCRIBE", [("destination", "/exchange/amq.direct/k"), ("id", "a")]),
        stomp("SUBSCRIBE", [("destination", "/amq/queue/existing"), ("id", "b"),
                            ("prefetch-count", "5"), ("ack", "client")]),
        stomp("SUBSCRIBE", [("destination", "/topic/dur"), ("id", "c"), ("durable", "true")]),
        stomp("SUBSCRIBE", [("destination", "/reply-queue/rq"), ("id", "d")]),
        stomp("SEND", [("destination", "/amq/queue/existing"), ("persistent", "true"),
                       ("reply-to", "/temp-queue/t1"), ("x-custom", "1"),
                       ("amqp-message-id", "m9"), ("priority", "4")], "q"),
        stomp("SEND", [("destination", "/app/orders.new"), ("receipt", "a1")], "{}"),
        stomp("UNSUBSCRIBE", [("id", "c"), ("durable", "true")]),
        stomp("DISCONNECT", [("receipt", "z")])), DELIVER, 0x34))
    out.append(("v12-queue-args", None, frames(
        connect("1.2"),
        stomp("SUBSCRIBE", [("destination", "/queue/args"), ("id", "x"),
                            ("x-message-ttl", "1000"), ("x-max-length", "10"),
                            ("x-queue-type", "quorum"), ("x-dead-letter-exchange", "dlx")]),
        stomp("SEND", [("destination", "/queue/args"), ("content-length", "3")], "a\0b"),
        stomp("DISCONNECT", [])), 0, 0))
    out.append(("v12-heartbeat-open", None, frames(
        connect("1.2", extra=[("heart-beat", "10,10")]),
        stomp("SUBSCRIBE", [("destination", "/topic/t"), ("id", "h")]),
        "\n"), 0, 0))
    # WebSocket framing beyond one text message per frame.
    frag = stomp("SEND", [("destination", "/queue/f")], "fragmented body")
    out.append(("ws-fragments-ping", None,
                ws(connect("1.2")) + ws(frag[:10], fin=False) + ws(b"", opcode=9)
                + ws(frag[10:], opcode=0) + ws(stomp("DISCONNECT"), opcode=2)
                + ws(b"\x03\xe8bye", opcode=8), 0, 0))
    out.append(("ws-no-subprotocol", "", frames(connect("1.1"), stomp("DISCONNECT")), 0, 0))
    out.append(("ws-close-midway", None,
                ws(connect("1.2")) + ws(b"\x03\xe8", opcode=8), 0, 0))
    # Broker refusals and failures.
    pubsub = frames(
        connect("1.2"),
        stomp("SUBSCRIBE", [("destination", "/queue/q"), ("id", "s"), ("receipt", "r")]),
        stomp("SEND", [("destination", "/queue/q"), ("receipt", "p")], "x"),
        stomp("SEND", [("destination", "/topic/t"), ("receipt", "p2")], "y"))
    out += [("broker-refuse-login", None, pubsub, REFUSE_LOGIN, 0),
            ("broker-404", None, pubsub, DECLARE_404, 0),
            ("broker-deny", None, pubsub, DENY, 0),
            ("broker-nack", None, pubsub, NACK, 0),
            ("broker-cancel", None, pubsub, CANCEL | DELIVER, 0x04),
            ("broker-drop-login", None, pubsub, DROP, 1),
            ("broker-drop-late", None, pubsub, DROP, 7),
            ("broker-forced-close", None, pubsub, FORCE_CLOSE, 6),
            ("broker-big-delivery", None, pubsub, DELIVER, 0x0c)]
    # Bad STOMP after a good start.
    out.append(("stomp-bad-frames", None, frames(
        connect("1.2"), stomp("SEND", [("destination", "/nowhere/x")], "x"),
        stomp("FOO")), 0, 0))
    out.append(("stomp-before-connect", None, frames(stomp("SEND", [("destination", "/queue/q")])), 0, 0))
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "corpus", "session")
    os.makedirs(out, exist_ok=True)
    n = 0
    for name, protos, stream, faults, arg in sessions():
        head = upgrade() if protos is None else upgrade(protos)
        for mode, mname in ((0, "ps"), (SHARED, "sh")):
            # Seed 0 writes the stream whole; 0x0801 in pieces of up to 257 bytes;
            # 0x0019 in pieces of up to 4.
            for seed, sname in ((0, "whole"), (0x0801, "pieces")):
                data = bytes([mode, faults, arg]) + struct.pack("<H", seed) + head + stream
                with open(os.path.join(out, f"{name}-{mname}-{sname}"), "wb") as f:
                    f.write(data)
                n += 1
    # Modes of the client and the broker that need no particular stream.
    owed = frames(connect("1.2"),
                  stomp("SEND", [("destination", "/queue/q"), ("receipt", "s1")], "a"),
                  stomp("SUBSCRIBE", [("destination", "/queue/q"), ("id", "b")]),
                  stomp("SEND", [("destination", "/topic/t"), ("receipt", "s2")], "b"))
    extra = [("half-close-small-pieces", HALF_CLOSE, 0, 0x0019, upgrade() + frames(connect("1.2"))),
             ("drain-ps", DRAIN, 0, 0x0801, upgrade() + owed),
             ("drain-sh", DRAIN | SHARED, 0, 0x0801, upgrade() + owed),
             ("drain-nack", DRAIN, NACK, 0, upgrade() + owed),
             ("blocked-ps-whole", BLOCKED, 0, 0, upgrade() + owed),
             ("blocked-ps-pieces", BLOCKED, 0, 0x0801, upgrade() + owed),
             ("blocked-drain", BLOCKED | DRAIN, 0, 0x0801, upgrade() + owed),
             ("timers-handshake", TIMERS, 0, 0, upgrade()[:40]),
             ("timers-connect", TIMERS, 0, 0, upgrade() + b"\x81"),
             ("timers-heartbeat", TIMERS, 0, 0, upgrade() + frames(connect("1.2", extra=[("heart-beat", "10,10")]))),
             ("blocked-then-unblocked", BLOCKED, 0, 0, upgrade() + frames(
                 connect("1.2"),
                 stomp("SUBSCRIBE", [("destination", "/queue/q"), ("id", "u")]),
                 stomp("SEND", [("destination", "/queue/q"), ("receipt", "s1")], "a"),
                 stomp("DISCONNECT", [("receipt", "d")])))]
    # STOMP straight on TCP (the STOMP port): frames with no WebSocket
    # around them, heart-beat EOLs between them, several in one piece.
    raw = "".join([connect("1.2"), "\n\r\n",
                   stomp("SUBSCRIBE", [("destination", "/queue/q"), ("id", "t"),
                                       ("ack", "client-individual"), ("receipt", "r1")]),
                   "SEND\ndestination:/queue/q\ncontent-length:5\nreceipt:r2\n\na\0b\0c\0\n",
                   stomp("SEND", [("destination", "/topic/t"), ("receipt", "r3")], "t"),
                   stomp("DISCONNECT", [("receipt", "d")])]).encode()
    extra += [("tcp-ps-whole", TCP, 0, 0, raw),
              ("tcp-ps-pieces", TCP, 0, 0x0019, raw),
              ("tcp-sh-pieces", TCP | SHARED, DELIVER, 0x0801, raw),
              ("tcp-blocked-drain", TCP | BLOCKED | DRAIN, 0, 0x0801, raw),
              ("tcp-too-large", TCP, 0, 0, (connect("1.2") + stomp("SEND", [("destination", "/queue/q")], "x" * 3000)).encode()),
              ("tcp-timers-heartbeat", TCP | TIMERS, 0, 0, connect("1.2", extra=[("heart-beat", "10,10")]).encode()),
              ("tcp-half-close", TCP | HALF_CLOSE, 0, 0x0019, connect("1.1").encode() + b"SEND\ndestination:/queue/q\n\npartial")]
    for name, mode, faults, seed, stream in extra:
        data = bytes([mode, faults, 0]) + struct.pack("<H", seed) + stream
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print(f"wrote {n + len(extra)} seeds to {out}")


if __name__ == "__main__":
    main()
