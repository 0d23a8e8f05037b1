#!/usr/bin/env python3
"""Wrap a recorded connection (PREFIX.c2s.bin + PREFIX.s2c.bin) into a pcap
file with synthetic Ethernet/IPv4/TCP packets, so Wireshark/tshark can
dissect it:

    bin2pcap.py PREFIX OUT.pcap [--server-port 5672]

If PREFIX.chunks exists (record_proxy.py --chunks) the original chunking and
interleaving of the two directions is kept; otherwise all client bytes are
written first, then all server bytes (each direction is still a valid TCP
stream, which is what the AMQP dissector needs). Addresses are 127.0.0.1
(client port 40000) and 127.0.0.2 (the server port given). Stdlib only.
"""

import argparse
import os
import struct
import sys

MSS = 16000


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


class Flow:
    def __init__(self, out, cport, sport):
        self.out = out
        self.addr = {"c": (bytes([127, 0, 0, 1]), cport), "s": (bytes([127, 0, 0, 2]), sport)}
        self.seq = {"c": 1000, "s": 5000}
        self.t = 0.0
        self.ident = 1

    def packet(self, who, flags, payload=b""):
        other = "s" if who == "c" else "c"
        src, sport = self.addr[who]
        dst, dport = self.addr[other]
        ack = self.seq[other]
        tcp = struct.pack("!HHIIBBHHH", sport, dport, self.seq[who], ack, 5 << 4, flags, 65535, 0, 0)
        pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp) + len(payload))
        csum = checksum(pseudo + tcp + payload)
        tcp = tcp[:16] + struct.pack("!H", csum) + tcp[18:]
        total = 20 + len(tcp) + len(payload)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, self.ident & 0xFFFF, 0, 64, 6, 0, src, dst)
        ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
        self.ident += 1
        eth = b"\x00\x00\x00\x00\x00\x02" + b"\x00\x00\x00\x00\x00\x01" + b"\x08\x00"
        frame = eth + ip + tcp + payload
        sec = int(self.t)
        usec = int(round((self.t - sec) * 1e6))
        self.out.write(struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame)
        self.t += 0.000001
        advance = len(payload) + (1 if flags & 0x03 else 0)  # SYN/FIN count as one
        self.seq[who] = (self.seq[who] + advance) & 0xFFFFFFFF

    def data(self, who, payload, when=None):
        if when is not None and when > self.t:
            self.t = when
        for i in range(0, len(payload), MSS):
            self.packet(who, 0x18, payload[i:i + MSS])  # PSH|ACK


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("prefix")
    ap.add_argument("output")
    ap.add_argument("--server-port", type=int, default=5672)
    args = ap.parse_args(argv)

    with open(args.prefix + ".c2s.bin", "rb") as f:
        c2s = f.read()
    with open(args.prefix + ".s2c.bin", "rb") as f:
        s2c = f.read()
    chunks = []
    if os.path.exists(args.prefix + ".chunks"):
        with open(args.prefix + ".chunks") as f:
            for line in f:
                d, off, ln, t = line.split()
                chunks.append((d, int(off), int(ln), float(t)))
    else:
        chunks = [("c2s", 0, len(c2s), 0.0), ("s2c", 0, len(s2c), 0.0)]

    with open(args.output, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))  # Ethernet
        flow = Flow(out, 40000, args.server_port)
        flow.packet("c", 0x02)        # SYN
        flow.packet("s", 0x12)        # SYN|ACK
        flow.packet("c", 0x10)        # ACK
        for d, off, ln, t in chunks:
            src = c2s if d == "c2s" else s2c
            flow.data("c" if d == "c2s" else "s", src[off:off + ln], t)
        flow.packet("c", 0x11)        # FIN|ACK
        flow.packet("s", 0x11)
        flow.packet("c", 0x10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
