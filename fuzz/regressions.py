#!/usr/bin/env python3
"""Writes the named regression inputs of fuzz/corpus/<target>/ (see fuzz/corpus/REGRESSIONS.md).

Each input reproduces the shape of a bug that another AMQP 1.0 implementation shipped. The
bytes are built here, field by field, so that a reader can check them against the
description in REGRESSIONS.md; no input is copied from another project.

    python3 fuzz/regressions.py            # (re)write the files
    python3 fuzz/regressions.py --check    # fail if a file is missing or differs

Standard library only. Run from anywhere; paths are relative to this file.
"""

import argparse
import os
import sys

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


# --- encoding helpers (part 1 of the spec: types; part 2: frames) -------------------------


def u8(n):
    return bytes([n])


def u16(n):
    return n.to_bytes(2, "big")


def u32(n):
    return n.to_bytes(4, "big")


NULL = b"\x40"
TRUE = b"\x41"
FALSE = b"\x42"
AMQP_HEADER = b"AMQP\x00\x01\x00\x00"
SASL_HEADER = b"AMQP\x03\x01\x00\x00"


def uint(n):
    if n == 0:
        return b"\x43"
    if n < 256:
        return b"\x52" + u8(n)
    return b"\x70" + u32(n)


def ubyte(n):
    return b"\x50" + u8(n)


def ushort(n):
    return b"\x60" + u16(n)


def string(s):
    b = s.encode()
    return (b"\xa1" + u8(len(b)) if len(b) < 256 else b"\xb1" + u32(len(b))) + b


def sym(s):
    b = s.encode()
    return (b"\xa3" + u8(len(b)) if len(b) < 256 else b"\xb3" + u32(len(b))) + b


def binary(b):
    return (b"\xa0" + u8(len(b)) if len(b) < 256 else b"\xb0" + u32(len(b))) + b


def lst(*items):
    body = b"".join(items)
    if len(body) + 1 < 256 and len(items) < 256:
        return b"\xc0" + u8(len(body) + 1) + u8(len(items)) + body
    return b"\xd0" + u32(len(body) + 4) + u32(len(items)) + body


def list32(*items):
    body = b"".join(items)
    return b"\xd0" + u32(len(body) + 4) + u32(len(items)) + body


def described(code, value):
    """A described value with a small-ulong descriptor (0x00 0x53 code)."""
    return b"\x00\x53" + u8(code) + value


def frame(body, channel=0, ftype=0, doff=2):
    ext = b"\x00" * (doff * 4 - 8)
    return u32(8 + len(ext) + len(body)) + u8(doff) + u8(ftype) + u16(channel) + ext + body


def header(size, doff=2, ftype=0, channel=0):
    """A frame header with whatever SIZE and DOFF it is given, checked or not."""
    return u32(size) + u8(doff) + u8(ftype) + u16(channel)


# Performatives (part 2, 2.7) and SASL frames (part 5, 5.3.3), with fields in spec order.
def open_(container_id="peer"):
    return described(0x10, lst(string(container_id)))


def begin(next_outgoing_id=0, window=100, handle_max=None):
    hm = NULL if handle_max is None else uint(handle_max)
    return described(0x11, lst(NULL, uint(next_outgoing_id), uint(window), uint(window), hm))


def attach(name, handle, role, source=NULL, target=NULL, initial_delivery_count=NULL):
    return described(
        0x12,
        lst(string(name), uint(handle), TRUE if role else FALSE, NULL, NULL, source, target,
            NULL, NULL, initial_delivery_count),
    )


def flow(handle=NULL, delivery_count=NULL, link_credit=NULL, next_incoming_id=uint(0),
         incoming_window=uint(100), next_outgoing_id=uint(0), outgoing_window=uint(100)):
    return described(
        0x13,
        lst(next_incoming_id, incoming_window, next_outgoing_id, outgoing_window, handle,
            delivery_count, link_credit),
    )


def transfer(handle, delivery_id, tag, settled=False, state=NULL):
    # handle, delivery-id, delivery-tag, message-format, settled, more, rcv-settle-mode, state
    return described(
        0x14,
        lst(uint(handle), uint(delivery_id), binary(tag), uint(0), TRUE if settled else FALSE,
            FALSE, NULL, state),
    )


def disposition(role, first, last, settled, state):
    return described(0x15, lst(TRUE if role else FALSE, uint(first), uint(last),
                               TRUE if settled else FALSE, state))


def source(address):
    return described(0x28, lst(string(address)))


def target(address):
    return described(0x29, lst(string(address)))


def nested_list32(depth, inner=b"\x45"):
    v = inner
    for _ in range(depth):
        v = list32(v)
    return v


# --- the inputs ---------------------------------------------------------------------------

INPUTS = {}


def add(target_name, name, data):
    assert (target_name, name) not in INPUTS, name
    INPUTS[(target_name, name)] = data


# value: one encoded value whose length, size or count fields claim far more than is there.
add("value", "uamqp-cve-2024-21646-vbin32-length-4gib", b"\xb0\xff\xff\xff\xff" + b"\x00" * 16)
add("value", "uamqp-cve-2024-21646-vbin32-length-2gib", b"\xb0\x80\x00\x00\x00" + b"abc")
add("value", "uamqp-pr479-str32-length-2gib", b"\xb1\x7f\xff\xff\xff" + b"hello")
add("value", "uamqp-pr479-sym32-length-4gib", b"\xb3\xff\xff\xff\xff" + b"PLAIN")
add("value", "uamqp-pr376-list32-size-4gib", b"\xd0\xff\xff\xff\xff" + u32(1) + NULL)
# uAMQP #376 (bug 8819364): a list count times the pointer size asked for ~32 GB.
add("value", "uamqp-pr376-list32-count-256mi-in-8-bytes", b"\xd0\x00\x00\x00\x08\x0f\xff\xff\xf0" + NULL * 4)
add("value", "uamqp-pr382-map32-size-and-count-2gib", b"\xd1\x80\x00\x00\x00\x80\x00\x00\x00" + NULL * 2)
add("value", "uamqp-pr376-array32-size-4gib", b"\xf0\xff\xff\xff\xff" + u32(2) + b"\x70" + u32(7))
# Integer wrap in size arithmetic: SIZE 0xffffffff plus the header overflows 32 bits; the
# count is near the size, so a decoder that adds or multiplies in 32 bits passes its check.
add("value", "size-wrap-list32-size-and-count-max", b"\xd0\xff\xff\xff\xff\xff\xff\xff\xff" + NULL)
add("value", "size-wrap-list32-count-max-in-12-bytes", b"\xd0\x00\x00\x00\x0c\xff\xff\xff\xfe" + NULL * 8)
add("value", "uamqp-pr382-map32-count-max-in-12-bytes", b"\xd1\x00\x00\x00\x0c\xff\xff\xff\xfe" + NULL * 8)
add("value", "size-wrap-array32-count-max-of-nulls", b"\xf0\x00\x00\x00\x05\xff\xff\xff\xff\x40")
add("value", "size-wrap-array32-count-max-of-uint0", b"\xf0\x00\x00\x00\x05\xff\xff\xff\xff\x43")
add("value", "size-wrap-array32-count-max-of-ulong", b"\xf0\x00\x00\x00\x0d\xff\xff\xff\xff\x80" + b"\x00" * 8)
add("value", "size-wrap-array8-count-255-in-2-bytes", b"\xe0\x02\xff\x70")
add("value", "size-wrap-list32-size-below-count-field", b"\xd0\x00\x00\x00\x03\x00\x00\x00")
# Nesting: every level is a few bytes, so a small input drives a recursive decoder deep.
add("value", "uamqp-pr478-descriptor-chain-10000", b"\x00" * 10000 + b"\x53\x10\x45")
add("value", "uamqp-pr478-described-value-chain-10000", b"\x00\x53\x77" * 10000 + NULL)
add("value", "uamqp-pr478-nested-list32-depth-1000", nested_list32(1000))


def nested_array32(depth):
    # An array of one array of one array …; the innermost is an empty array of nulls.
    # Elements of an array share its constructor, so each level is size, count, constructor.
    body = u32(5) + u32(0) + NULL  # the innermost array, without its constructor
    for _ in range(depth):
        body = u32(4 + 1 + len(body)) + u32(1) + b"\xf0" + body
    return b"\xf0" + body


add("value", "uamqp-pr478-nested-array32-depth-200", nested_array32(200))


def nested_map32(depth):
    v = b"\xc1\x01\x00"
    for _ in range(depth):
        body = sym("k") + v
        v = b"\xd1" + u32(len(body) + 4) + u32(2) + body
    return v


add("value", "uamqp-pr478-nested-map32-depth-200", nested_map32(200))


# uAMQP #463: the descriptor decodes, then the value fails; the decoder of the described
# value must be torn down once.
add("value", "uamqp-pr463-described-value-fails-after-descriptor", b"\x00\x53\x10\xb0\xff\xff\xff\xff\x00")
add("value", "uamqp-pr463-described-descriptor-fails", b"\x00\xb3\x7f\xff\xff\xff" + b"amqp:open:list" + b"\x45")

# message: a message's sections carry the same shapes.
add("message", "uamqp-cve-2024-21646-data-vbin32-length-4gib",
    described(0x70, lst(TRUE)) + described(0x75, b"\xb0\xff\xff\xff\xff" + b"body"))
add("message", "uamqp-pr479-amqp-value-str32-length-2gib", described(0x77, b"\xb1\x7f\xff\xff\xff" + b"text"))
add("message", "uamqp-pr478-amqp-value-nested-list32-depth-200", described(0x77, nested_list32(200)))
add("message", "uamqp-pr478-amqp-sequence-descriptor-chain", described(0x76, b"\x00" * 2000 + b"\x53\x10\x45"))
add("message", "uamqp-pr382-application-properties-map32-count-max",
    described(0x74, b"\xd1\x00\x00\x00\x0c\xff\xff\xff\xfe" + NULL * 8) + described(0x75, binary(b"x")))
# azure-sdk-for-python #48802 (pyAMQP): list8 levels of three bytes each (c0 00 01, a size of
# 0 that the decoder did not check) in an amqp-value: 5000 levels exhausted its stack.
add("message", "pyamqp-48802-amqp-value-nested-list8-depth-5000", described(0x77, b"\xc0\x00\x01" * 5000 + b"\x45"))
add("message", "uamqp-double-free-malformed-header-then-data",
    described(0x70, b"\xc0\x10\x05" + TRUE + b"\x50") + described(0x75, binary(b"payload")))

# frames, inspect and connection: frame headers that break the arithmetic of a frame reader.
stream_inputs = {
    # RabbitMQ #17092: SIZE below 8 made the next read length negative; a DOFF beyond the
    # frame made the body match fail. Both crashed the connection process.
    "rabbitmq-17092-frame-size-0": header(0) + b"\x00" * 8,
    "rabbitmq-17092-frame-size-7": header(7) + b"\x00" * 8,
    "rabbitmq-17092-doff-0": header(16, doff=0) + b"\x00" * 8,
    "rabbitmq-17092-doff-1": header(16, doff=1) + b"\x00" * 8,
    "rabbitmq-17092-doff-beyond-size": header(12, doff=5) + b"\x00\x53\x10\x45",
    # uAMQP #376 (bug 8818758): frame_codec allocated SIZE-6 bytes and copied bytes 6 to
    # DOFF*4 of the header into them, so SIZE 8 with DOFF 255 wrote ~1 KB past the buffer.
    "uamqp-pr376-frame-size-8-doff-255": header(8, doff=255) + b"\x41" * 1012,
    "uamqp-pr376-sasl-frame-size-8": header(8, ftype=1) + frame(b"", ftype=1),
    "uamqp-pr376-frame-size-4gib-short-buffer": header(0xFFFFFFFF) + open_(),
    "uamqp-pr376-frame-size-2gib-doff-255": header(0x80000000, doff=255) + b"\x00" * 32,
    "unknown-frame-type-0x02": frame(open_(), ftype=0x02),
    "unknown-frame-type-0xff-channel-0xffff": frame(begin(), ftype=0xFF, channel=0xFFFF),
}
for name, data in stream_inputs.items():
    add("frames", name, data)
    # The inspector reads a stream whose first eight bytes are not a frame header as a
    # (bad) protocol header, so its copy starts with a header and an open: the bad frame
    # header then sits where a frame must start.
    add("inspect", name, AMQP_HEADER + frame(open_()) + data)
    # The connection target sends the input after a protocol header and an open.
    add("connection", name, data)

# go-amqp's committed go-fuzz crashers (TestFuzzConnCrashers) include sasl-mechanisms frames
# whose array of symbols is corrupted. These are new inputs of the same shapes.
def sasl_mechanisms(array):
    return frame(described(0x40, lst(array)), ftype=1)


def array32_of(ctor, elements, count=None):
    body = b"".join(elements)
    n = len(elements) if count is None else count
    return b"\xf0" + u32(4 + 1 + len(body)) + u32(n) + ctor + body


def array8_of(ctor, elements, count=None):
    body = b"".join(elements)
    n = len(elements) if count is None else count
    return b"\xe0" + u8(1 + 1 + len(body)) + u8(n) + ctor + body


# The array's size and count are right; one element's 4-byte length claims ~4 GB.
mech_lengths = array32_of(b"\xb3", [u32(7) + b"MSSBCBS", u32(0xF8000005) + b"PLAIN"])
# Symbols with bytes outside ASCII, one of them not even UTF-8.
mech_non_ascii = array8_of(b"\xa3", [u8(7) + b"PLA\xff\xfe\xcfN", u8(9) + b"ANONYM\xc3\x28S"])
# 255 elements claimed in an array of six bytes.
mech_count = array8_of(b"\xa3", [u8(5) + b"PLAIN"], count=255)
# Binary elements where symbols belong, the second cut short inside the array.
mech_wrong_type = array8_of(b"\xb0", [u32(1) + b"A", b"\x00\x00\x00"])
sasl_inputs = {
    "go-amqp-fuzz-sasl-mechanisms-element-length-garbage": sasl_mechanisms(mech_lengths),
    "go-amqp-fuzz-sasl-mechanisms-non-ascii-symbols": sasl_mechanisms(mech_non_ascii),
    "go-amqp-fuzz-sasl-mechanisms-count-exceeds-array": sasl_mechanisms(mech_count),
    "go-amqp-fuzz-sasl-mechanisms-binary-elements-truncated": sasl_mechanisms(mech_wrong_type),
}
for name, data in sasl_inputs.items():
    for t in ("frames", "inspect"):
        add(t, name, SASL_HEADER + data)
# In the connection target the SASL server has read the client's SASL header: what follows
# is the client's sasl-init (here with garbage) or a frame only a server may send.
add("connection", "go-amqp-fuzz-sasl-mechanisms-from-the-client",
    sasl_inputs["go-amqp-fuzz-sasl-mechanisms-element-length-garbage"])
add("connection", "go-amqp-fuzz-sasl-init-mechanism-sym32-length-4gib",
    frame(described(0x41, lst(b"\xb3\xff\xff\xff\xff" + b"PLAIN", binary(b"\x00u\x00p"))), ftype=1))
add("connection", "go-amqp-fuzz-sasl-init-mechanism-array-of-garbage",
    frame(described(0x41, lst(mech_non_ascii, binary(b"\x00u\x00p"))), ftype=1))
add("connection", "go-amqp-fuzz-sasl-init-response-vbin32-beyond-frame",
    frame(described(0x41, lst(sym("PLAIN"), b"\xb0\x00\x01\x00\x00" + b"\x00u\x00p")), ftype=1))

# The engine: after an open (and in the deep runs, a begin on channel 0 and a sending link
# on handle 0), frames whose fields do not decode must end the connection with a decode
# error, once, without looping and without touching any other state.
receiver_link = attach("r", 1, True, source=source("q"), target=target("r"))
credit = flow(handle=uint(1), delivery_count=uint(0), link_credit=uint(10))
# rejected (one field, error) whose error list claims 255 bytes inside an 8-byte list.
rejected_truncated = b"\x00\x53\x25\xc0\x08\x01" + b"\x00\x53\x1d\xc0\xff\x01\xa3"
disposition_inputs = {
    # uAMQP #382 (bug 9367656): when disposition_get_state failed, link_frame_received kept
    # the same pending delivery and looped for ever.
    "uamqp-pr382-disposition-state-truncated": described(0x15, lst(TRUE, uint(0), uint(10), TRUE, rejected_truncated)),
    "uamqp-pr382-disposition-state-unknown-descriptor": disposition(True, 0, 10, True, described(0x99, lst())),
    "uamqp-pr382-disposition-state-not-described": disposition(True, 0, 10, True, string("accepted")),
    "uamqp-pr382-disposition-state-is-a-flow": disposition(True, 0, 10, True, flow()),
}
for name, perf in disposition_inputs.items():
    add("connection", name, frame(receiver_link) + frame(credit) + frame(perf))
    add("frames", name, frame(perf))

# CVE-2024-27099 (uAMQP #456): a flow that failed to decode was destroyed again after the
# error path, a double free. Here its fields have types the spec does not allow.
bad_flow = described(0x13, lst(string("0"), lst(uint(1)), NULL, sym("w"), uint(0), binary(b"dc"),
                               b"\x83" + b"\x00" * 8))
add("connection", "uamqp-cve-2024-27099-flow-fields-of-wrong-types", frame(bad_flow))
add("frames", "uamqp-cve-2024-27099-flow-fields-of-wrong-types", frame(bad_flow))
add("connection", "uamqp-cve-2024-27099-flow-list-truncated",
    frame(b"\x00\x53\x13\xc0\x20\x0b" + uint(0) + uint(100)))

# Error paths that free twice: a transfer whose delivery state does not decode, carrying a
# message that does not decode either, so both the performative's and the payload's error
# paths run. Then the same with a state that decodes as a value but is no delivery state.
bad_message = described(0x70, b"\xc0\x10\x05" + TRUE) + described(0x75, b"\xb0\x7f\xff\xff\xff" + b"x")
bad_state_transfer = described(0x14, lst(uint(0), uint(0), binary(b"\x00"), uint(0), FALSE, FALSE,
                                         NULL, b"\x00\x53\x25\xc0\x09\x01" + b"\x00\x53\x1d\xd0\xff\xff"))
add("connection", "uamqp-double-free-transfer-bad-state-bad-message", frame(bad_state_transfer + bad_message))
add("frames", "uamqp-double-free-transfer-bad-state-bad-message", frame(bad_state_transfer + bad_message))
add("connection", "uamqp-double-free-transfer-state-is-open-bad-message",
    frame(transfer(0, 0, b"\x00", state=open_()) + bad_message)
    + frame(transfer(0, 1, b"\x01", state=described(0x25, lst(lst(string("x"))))) + bad_message))

# Many channels and handles: every begin, attach or frame on a channel or handle beyond
# what was announced must be refused by a bounded answer.
add("connection", "many-channels-begin-300", b"".join(frame(begin(), channel=c) for c in range(1, 301)))
add("connection", "many-handles-attach-300",
    b"".join(frame(attach("l%d" % h, h, True, source=source("q"))) for h in list(range(1, 300)) + [0xFFFFFFFF]))
add("connection", "many-handles-flow-on-unattached",
    b"".join(frame(flow(handle=uint(h), delivery_count=uint(0), link_credit=uint(1)))
             for h in (2, 7, 8, 255, 256, 65535, 0x7FFFFFFF, 0xFFFFFFFF)))
many_channels = b"".join(frame(b"", channel=c) for c in range(0, 65536, 257)) + frame(b"", channel=0xFFFF)
add("frames", "many-channels-heartbeats", many_channels)
add("inspect", "many-channels-heartbeats", many_channels)
many_handles = b"".join(frame(transfer(h, h & 0xFFFF, u32(h), settled=True) + described(0x75, binary(b"m")),
                              channel=h & 0xFF)
                        for h in (0, 1, 255, 256, 65535, 65536, 0x7FFFFFFF, 0xFFFFFFFE, 0xFFFFFFFF))
add("frames", "many-handles-transfers", many_handles)
add("inspect", "many-handles-transfers", AMQP_HEADER + frame(open_()) + frame(begin()) + many_handles)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only check that the files match")
    ap.add_argument("--list", action="store_true", help="print target/name and size")
    args = ap.parse_args()
    bad = 0
    for (t, name), data in sorted(INPUTS.items()):
        path = os.path.join(CORPUS, t, name)
        if args.list:
            print("%s/%s %d" % (t, name, len(data)))
        elif args.check:
            try:
                with open(path, "rb") as f:
                    same = f.read() == data
            except OSError:
                same = False
            if not same:
                print("differs or missing: %s" % os.path.relpath(path), file=sys.stderr)
                bad += 1
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
    if not args.list and not args.check:
        print("wrote %d files under %s" % (len(INPUTS), os.path.relpath(CORPUS)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
