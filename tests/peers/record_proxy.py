#!/usr/bin/env python3
"""Loopback TCP proxy that records each direction of one connection.

Usage:
    record_proxy.py --port LISTEN_PORT --upstream UPSTREAM_PORT --out PREFIX
                    [--connections N] [--ready-file PATH] [--timeout SECONDS]

It listens on 127.0.0.1:LISTEN_PORT. For each accepted client it opens a
connection to 127.0.0.1:UPSTREAM_PORT and copies bytes both ways until both
sides have closed. Every byte the client sent is appended to PREFIX.c2s.bin
and every byte the server sent to PREFIX.s2c.bin (for N > 1 the files are
PREFIX.<i>.c2s.bin / PREFIX.<i>.s2c.bin, i counting from 1). The files are
the exact byte streams, so for AMQP they start with the 8-byte protocol
header. A chunk log (direction, offset, length, time) goes to PREFIX.chunks
when --chunks is given; it lets tools rebuild the interleaving.

After N connections have been fully served the proxy exits with status 0.
It exits with status 2 if --timeout seconds pass first. Stdlib only; binds
127.0.0.1 only.
"""

import argparse
import os
import socket
import sys
import threading
import time

HOST = "127.0.0.1"


def _pump(src, dst, sink, lock, log, tag, t0):
    """Copy src -> dst, writing every chunk to sink, until EOF or error."""
    offset = 0
    try:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            sink.write(data)
            sink.flush()
            if log is not None:
                with lock:
                    log.write("%s %d %d %.6f\n" % (tag, offset, len(data), time.monotonic() - t0))
                    log.flush()
            offset += len(data)
            try:
                dst.sendall(data)
            except OSError:
                break
    finally:
        # Propagate the half-close so the other side sees EOF.
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def serve_one(client, upstream_port, prefix, with_chunks):
    upstream = socket.create_connection((HOST, upstream_port))
    for s in (client, upstream):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    lock = threading.Lock()
    t0 = time.monotonic()
    with open(prefix + ".c2s.bin", "wb") as c2s, open(prefix + ".s2c.bin", "wb") as s2c:
        log = open(prefix + ".chunks", "w") if with_chunks else None
        try:
            threads = [
                threading.Thread(target=_pump, args=(client, upstream, c2s, lock, log, "c2s", t0)),
                threading.Thread(target=_pump, args=(upstream, client, s2c, lock, log, "s2c", t0)),
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            if log is not None:
                log.close()
    client.close()
    upstream.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True, help="port to listen on (127.0.0.1)")
    ap.add_argument("--upstream", type=int, required=True, help="port of the real server (127.0.0.1)")
    ap.add_argument("--out", required=True, help="output path prefix")
    ap.add_argument("--connections", type=int, default=1, help="connections to serve before exiting")
    ap.add_argument("--ready-file", help="file created once the proxy is listening")
    ap.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds")
    ap.add_argument("--chunks", action="store_true", help="also write PREFIX.chunks")
    args = ap.parse_args(argv)

    d = os.path.dirname(args.out)
    if d:
        os.makedirs(d, exist_ok=True)

    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((HOST, args.port))
    lsock.listen(4)
    if args.ready_file:
        with open(args.ready_file, "w") as f:
            f.write("%d\n" % os.getpid())

    deadline = time.monotonic() + args.timeout
    workers = []
    for i in range(args.connections):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            print("record_proxy: timed out waiting for a connection", file=sys.stderr)
            return 2
        lsock.settimeout(remaining)
        try:
            client, _ = lsock.accept()
        except socket.timeout:
            print("record_proxy: timed out waiting for a connection", file=sys.stderr)
            return 2
        client.settimeout(None)
        prefix = args.out if args.connections == 1 else "%s.%d" % (args.out, i + 1)
        t = threading.Thread(target=serve_one, args=(client, args.upstream, prefix, args.chunks), daemon=True)
        t.start()
        workers.append(t)
    lsock.close()
    for t in workers:
        remaining = deadline - time.monotonic()
        t.join(max(remaining, 0))
        if t.is_alive():
            print("record_proxy: timed out waiting for a connection to finish", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
