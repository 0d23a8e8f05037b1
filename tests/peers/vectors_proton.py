"""Runs the conformance vectors of tests/vectors/ through Qpid Proton's decoders
(python-qpid-proton, the C engine underneath) and prints one JSON line per vector:

    {"id": ..., "verdict": "accept" | "reject", "detail": ...}

- input "value":   proton.Data().decode(bytes); the vector is one value, so a decode that
                   stops before the end is a reject ("trailing bytes").
- input "message": proton.Message().decode(bytes).
- input "frame":   a proton.Transport (server side) fed a protocol header, then the frame.
                   Performatives that need an open connection or session get a valid open
                   (and begin on the frame's channel) first, so that the state machine does
                   not refuse them for being early. The frame is accepted when the transport
                   counts it as read and raises no framing or decode error; an error the
                   engine raises after decoding (a handle it does not know, a SASL step out
                   of turn) is reported in the detail of an accept.

Usage: vectors_proton.py [--from N]  (skip the first N vectors: the driver restarts it
there after a crash or a hang, which it detects by the missing line.)
"""

import glob
import json
import os
import sys

from proton import Connection, Data, Message, Transport

HERE = os.path.dirname(os.path.abspath(__file__))
VECTORS = os.path.join(HERE, "..", "vectors")

AMQP_HEADER = b"AMQP\x00\x01\x00\x00"
SASL_HEADER = b"AMQP\x03\x01\x00\x00"
# A valid open (container-id "p") and begin (windows 2048) as amqpwire encodes them.
OPEN = bytes.fromhex("0000001102000000005310c00401a10170")
# Conditions that mean the bytes could not be framed or decoded.
DECODE_CONDITIONS = ("amqp:connection:framing-error", "amqp:decode-error")
# SASL bodies a server receives; the others are sent by a server, so a client reads them.
SASL_SERVER_READS = (0x41, 0x43)


def load():
    out = []
    for path in sorted(glob.glob(os.path.join(VECTORS, "*.json"))):
        with open(path) as f:
            out.extend(json.load(f)["vectors"])
    return out


def begin(channel):
    # begin: remote-channel null, next-outgoing-id 0 (uint0), both windows 2048.
    body = bytes([0x00, 0x53, 0x11, 0xC0, 0x0D, 0x04, 0x40, 0x43]) + b"\x70\x00\x00\x08\x00" * 2
    size = 8 + len(body)
    return size.to_bytes(4, "big") + bytes([2, 0]) + channel.to_bytes(2, "big") + body


def descriptor_code(frame):
    """The numeric descriptor of a frame body that starts 00 53 xx, else None."""
    doff = frame[4] * 4 if len(frame) > 4 else 8
    body = frame[doff:]
    if len(body) >= 3 and body[0] == 0x00 and body[1] == 0x53:
        return body[2]
    return None


def frame_verdict(b):
    is_sasl = len(b) > 5 and b[5] == 0x01
    code = descriptor_code(b)
    if is_sasl:
        mode = Transport.SERVER if code in SASL_SERVER_READS else Transport.CLIENT
        t = Transport(mode)
        t.bind(Connection())
        s = t.sasl()
        s.allowed_mechs("ANONYMOUS PLAIN")
        prefix = SASL_HEADER
        if mode == Transport.CLIENT:
            # A client reads the server's header first.
            t.push(SASL_HEADER)
            prefix = b""
    else:
        t = Transport(Transport.SERVER)
        t.bind(Connection())
        prefix = AMQP_HEADER
        if code != 0x10:
            prefix += OPEN
        channel = int.from_bytes(b[6:8], "big") if len(b) >= 8 else 0
        # Session-level performatives need a session on their channel (Proton's
        # channel-max here is 32767).
        if code in (0x12, 0x13, 0x14, 0x15, 0x16, 0x17) and channel <= 32767:
            prefix += begin(channel)
    t.push(prefix)
    before = t.frames_input
    if t.condition is not None:
        return "reject", "priming failed: %s" % t.condition.description
    try:
        t.push(b)
    except Exception:  # proton raises TransportException when it closes; see condition
        pass
    c = t.condition
    read = t.frames_input - before
    if c is not None and c.name in DECODE_CONDITIONS:
        return "reject", "%s: %s" % (c.name, c.description)
    closed = t.capacity() < 0
    if read < 1:
        if closed:
            return "reject", "no frame read; the transport closed its input without a condition"
        return "reject", "waiting for more bytes (no frame read)"
    if c is not None:
        return "accept", "decoded, then refused by the engine: %s: %s" % (c.name, c.description)
    if closed and code != 0x18:
        return "accept", "read; then the transport closed its input without a condition"
    return "accept", ""


def verdict(v):
    b = bytes.fromhex(v["hex"])
    kind = v["input"]
    if kind == "value":
        d = Data()
        try:
            n = d.decode(b)
        except Exception as e:
            return "reject", "%s: %s" % (type(e).__name__, e)
        if n != len(b):
            return "reject", "trailing bytes: decoded %d of %d" % (n, len(b))
        return "accept", ""
    if kind == "message":
        m = Message()
        try:
            m.decode(b)
        except Exception as e:
            return "reject", "%s: %s" % (type(e).__name__, e)
        return "accept", ""
    return frame_verdict(b)


def main():
    start = 0
    if len(sys.argv) == 3 and sys.argv[1] == "--from":
        start = int(sys.argv[2])
    for v in load()[start:]:
        try:
            ver, detail = verdict(v)
        except Exception as e:  # a failure of the binding, not a decoding error
            ver, detail = "crash", "%s: %s" % (type(e).__name__, e)
        print(json.dumps({"id": v["id"], "verdict": ver, "detail": detail[:200]}), flush=True)


if __name__ == "__main__":
    main()
