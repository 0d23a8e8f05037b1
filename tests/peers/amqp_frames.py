#!/usr/bin/env python3
"""List the AMQP 1.0 frames in a captured one-direction byte stream.

    amqp_frames.py FILE.bin [...]           one line per frame
    amqp_frames.py --summary FILE.bin [...] one compact line per file

Understands the 8-byte protocol headers (AMQP and SASL layers), frame
headers, empty (heartbeat) frames and the performative descriptor of each
frame body. Stdlib only; it decodes just enough to name things, it is not
an AMQP codec. Exit status 1 if a stream does not split cleanly into
headers and frames.
"""

import signal
import struct
import sys

AMQP = {
    0x10: "open", 0x11: "begin", 0x12: "attach", 0x13: "flow", 0x14: "transfer",
    0x15: "disposition", 0x16: "detach", 0x17: "end", 0x18: "close",
}
SASL = {
    0x40: "sasl-mechanisms", 0x41: "sasl-init", 0x42: "sasl-challenge",
    0x43: "sasl-response", 0x44: "sasl-outcome",
}
OUTCOMES = {0x23: "received", 0x24: "accepted", 0x25: "rejected", 0x26: "released", 0x27: "modified"}
PROTO = {0: "AMQP", 2: "TLS", 3: "SASL"}


def descriptor(body):
    """Return the numeric descriptor code at the start of a frame body."""
    if len(body) >= 3 and body[0] == 0x00 and body[1] == 0x53:
        return body[2]
    if len(body) >= 10 and body[0] == 0x00 and body[1] == 0x80:
        return struct.unpack(">Q", body[2:10])[0]
    if len(body) >= 2 and body[0] == 0x00 and body[1] == 0x44:
        return 0
    return None


def find_outcome(body):
    """Best-effort: name the delivery-state carried by a disposition."""
    for i in range(3, len(body) - 2):
        if body[i] == 0x00 and body[i + 1] == 0x53 and body[i + 2] in OUTCOMES:
            return OUTCOMES[body[i + 2]]
    return None


def parse(data):
    """Yield (offset, description, detail dict) for each unit in the stream."""
    pos = 0
    n = len(data)
    while pos < n:
        if data[pos:pos + 4] == b"AMQP":
            if pos + 8 > n:
                raise ValueError("truncated protocol header at %d" % pos)
            pid, major, minor, rev = data[pos + 4:pos + 8]
            yield pos, "protocol-header %s %d.%d.%d" % (PROTO.get(pid, "id=%d" % pid), major, minor, rev), {
                "kind": "header", "size": 8}
            pos += 8
            continue
        if pos + 8 > n:
            raise ValueError("truncated frame header at %d" % pos)
        size, doff, ftype, channel = struct.unpack(">IBBH", data[pos:pos + 8])
        if size < 8 or doff < 2 or pos + size > n:
            raise ValueError("bad frame at %d (size %d, doff %d)" % (pos, size, doff))
        body = data[pos + doff * 4:pos + size]
        info = {"kind": "frame", "size": size, "type": ftype, "channel": channel}
        if not body:
            name = "empty-frame (heartbeat)"
        else:
            code = descriptor(body)
            table = SASL if ftype == 1 else AMQP
            name = table.get(code, "unknown(0x%x)" % code if code is not None else "undecoded")
            if name == "disposition":
                oc = find_outcome(body)
                if oc:
                    name += " " + oc
        info["name"] = name
        yield pos, "%s size=%d type=%d channel=%d" % (name, size, ftype, channel), info
        pos += size


def summary(data):
    parts = []
    last = None
    count = 0
    for _, desc, info in parse(data):
        label = desc.split(" size=")[0] if info["kind"] == "frame" else desc
        if info["kind"] == "frame" and info["name"] == "empty-frame (heartbeat)":
            label = "empty-frame (heartbeat)"
        if label == last:
            count += 1
        else:
            if last is not None:
                parts.append(last if count == 1 else "%s x%d" % (last, count))
            last, count = label, 1
    if last is not None:
        parts.append(last if count == 1 else "%s x%d" % (last, count))
    return ", ".join(parts)


def main(argv):
    args = list(argv)
    as_summary = False
    if args and args[0] == "--summary":
        as_summary = True
        args = args[1:]
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    status = 0
    for path in args:
        with open(path, "rb") as f:
            data = f.read()
        try:
            if as_summary:
                print("%s: %s" % (path, summary(data)))
            else:
                print("== %s (%d bytes)" % (path, len(data)))
                for off, desc, _ in parse(data):
                    print("  %8d  %s" % (off, desc))
        except ValueError as e:
            print("%s: ERROR %s" % (path, e))
            status = 1
    return status


if __name__ == "__main__":
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # quiet when piped into head
    sys.exit(main(sys.argv[1:]))
