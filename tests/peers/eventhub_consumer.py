#!/usr/bin/env python3
"""eventhub_consumer.py - the real azure-eventhub client (5.15.1, its pure-Python AMQP
stack; pinned in requirements-eventhub.txt) reading device-to-cloud events from a local
IoT Hub's Event Hub-compatible endpoint, for amqpwire's emulator tests.

    python eventhub_consumer.py --connection-string CS [--ca PEM | --plain]
        [--custom-endpoint-address sb://HOST:PORT] [--partition 0]
        [--consumer-group '$Default'] [--starting-position -1] [--count N]
        [--expect-body TEXT]... [--expect-device-id ID] [--expect-no-more SECS]
        [--retry-total N] [--timeout SECS] [--logging]

CS is an Event Hub connection string:
    Endpoint=sb://localhost[:PORT]/;SharedAccessKeyName=iothubowner;SharedAccessKey=KEY;EntityPath=NAME

Runs EventHubConsumerClient.from_connection_string(CS, consumer_group=...,
connection_verify=--ca) and receive(partition_id=--partition,
starting_position=--starting-position) (default "-1": the start of the partition)
until --count events (default 1) arrived, then closes the client. Prints one JSON
line per event on stdout:

    {"event": "event", "n": 1, "partition": "0", "body": "<text>",
     "properties": {<application properties>},
     "system_properties": {<message annotations and properties, e.g.
         "iothub-connection-device-id", "iothub-enqueuedtime", "x-opt-sequence-number",
         "x-opt-offset", "x-opt-enqueued-time", "message-id", ...>},
     "sequence_number": N, "offset": "<text>", "enqueued_time": "<ISO 8601>", ...}

Strings, symbols and binaries all come out of the SDK as bytes: they are printed as
text when they are UTF-8, else as {"hex": "..."}; timestamps (x-opt-enqueued-time,
iothub-enqueuedtime) come out as integers (milliseconds since the epoch).

Transport, as the SDK decides it:
  - TLS (default): amqps to the Endpoint's host on port 5671; the port in the Endpoint
    is IGNORED in this mode. --ca is the CA file to trust (connection_verify; default
    the certifi bundle). --custom-endpoint-address sb://HOST:PORT makes the SDK open
    its TLS connection to HOST:PORT instead, with everything else (SAS audience
    sb://<Endpoint host>/<EntityPath>, AMQP hostname) unchanged.
  - Plain TCP: UseDevelopmentEmulator=true in CS (or --plain, which appends it). The
    port then comes from the Endpoint (default 5672). The SDK speaks SASL ANONYMOUS,
    then CBS put-token, in this mode too.
Either way the SDK first asks the $management node for the Event Hub's partition ids
(even though one partition is named), then attaches a receiver to
<EntityPath>/ConsumerGroups/<group>/Partitions/<partition> with a selector filter on
x-opt-offset.

Exit status: 0 when --count events arrived and every check passed (--expect-body,
repeatable: the bodies of the first events, in order; --expect-device-id: every
event's iothub-connection-device-id; --expect-no-more SECS: no further event within
SECS), 1 on a failure, with one line "eventhub_consumer.py: FAILED: <why>" on stderr
(an error the SDK reports to on_error, e.g. a refused connection once --retry-total
retries, default 0, are spent; or --timeout, default 30 s), 2 on bad options.
--logging turns on the SDK's network trace (frames) on stderr. PEER_QUIET silences
the progress lines on stderr.
"""

import argparse
import datetime
import decimal
import json
import logging
import os
import sys
import threading
import time
import uuid

PROG = "eventhub_consumer.py"
CLOSE_TIMEOUT = 5.0


def say(line):
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def log(*args):
    if not os.environ.get("PEER_QUIET"):
        say("[%s] %s" % (PROG, " ".join(str(a) for a in args)))


def finish(code, line):
    """Print the closing line, flush and leave at once (the SDK may still hold threads)."""
    say("%s: %s" % (PROG, " ".join(line.split())))
    sys.stdout.flush()
    os._exit(code)


def jsonable(v):
    if isinstance(v, (bytes, bytearray, memoryview)):
        b = bytes(v)
        try:
            return b.decode("utf-8")
        except UnicodeDecodeError:
            return {"hex": b.hex()}
    if isinstance(v, dict):
        out = {}
        for k, x in v.items():
            key = jsonable(k)
            out[key if isinstance(key, str) else json.dumps(key)] = jsonable(x)
        return out
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, datetime.datetime):
        return v.isoformat()
    if isinstance(v, (uuid.UUID, decimal.Decimal)):
        return str(v)
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return repr(v)


def parse_args(argv):
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connection-string", required=True, metavar="CS")
    tls = ap.add_mutually_exclusive_group()
    tls.add_argument("--ca", metavar="PEM", help="CA file to trust (TLS mode)")
    tls.add_argument("--plain", action="store_true", help="plain TCP: append UseDevelopmentEmulator=true to CS")
    ap.add_argument("--custom-endpoint-address", metavar="URL", help="sb://HOST:PORT to open the TLS connection to")
    ap.add_argument("--partition", default="0")
    ap.add_argument("--consumer-group", default="$Default")
    ap.add_argument("--starting-position", default="-1", metavar="POS",
                    help='"-1" (start, the default), "@latest", or an offset')
    ap.add_argument("--count", type=int, default=1, metavar="N")
    ap.add_argument("--expect-body", action="append", default=[], metavar="TEXT")
    ap.add_argument("--expect-device-id", metavar="ID")
    ap.add_argument("--expect-no-more", type=float, default=0, metavar="SECS")
    ap.add_argument("--retry-total", type=int, default=0, metavar="N")
    ap.add_argument("--timeout", type=float, default=30, metavar="SECS")
    ap.add_argument("--logging", action="store_true", help="the SDK's network trace on stderr")
    a = ap.parse_args(argv)
    if a.count < 1:
        ap.error("--count must be at least 1")
    if len(a.expect_body) > a.count:
        ap.error("more --expect-body than --count")
    if a.timeout <= 0 or a.expect_no_more < 0 or a.retry_total < 0:
        ap.error("--timeout must be positive, --expect-no-more and --retry-total not negative")
    if a.ca is not None and not os.path.isfile(a.ca):
        ap.error("--ca %s: no such file" % a.ca)
    cs = a.connection_string
    if "endpoint=" not in cs.lower():
        ap.error("--connection-string has no Endpoint=")
    if a.plain and "usedevelopmentemulator=true" not in cs.lower().replace(" ", ""):
        cs = cs.rstrip(";") + ";UseDevelopmentEmulator=true"
    a.connection_string = cs
    a.plain = "usedevelopmentemulator=true" in cs.lower().replace(" ", "")
    if a.plain and (a.ca or a.custom_endpoint_address):
        ap.error("--ca and --custom-endpoint-address are for TLS; CS asks for plain TCP (UseDevelopmentEmulator=true)")
    return a


def main(argv=None):
    a = parse_args(argv)
    try:
        from azure.eventhub import EventHubConsumerClient, TransportType
    except ImportError as e:
        finish(1, "FAILED: cannot import azure.eventhub (%s): run tests/peers/install.sh and use tests/peers/.venv/bin/python" % e)

    if a.logging:
        logging.basicConfig(stream=sys.stderr, level=logging.DEBUG,
                            format="%(asctime)s %(name)s %(levelname)s %(message)s")
    else:
        # The SDK logs errors it also hands to on_error; keep stderr to our own lines.
        logging.getLogger("azure").setLevel(logging.CRITICAL)

    state = {"phase": "connecting", "events": [], "error": None}
    lock = threading.Lock()
    done = threading.Event()

    def fail_later(why):
        with lock:
            if state["error"] is None:
                state["error"] = why
        done.set()

    def on_event(ctx, event):
        if event is None:
            return
        with lock:
            n = len(state["events"]) + 1
            if n > a.count and not a.expect_no_more:
                return  # prefetched beyond --count: not looked at
            state["events"].append(event)
        sysprops = event.system_properties
        record = {
            "event": "event",
            "n": n,
            "partition": ctx.partition_id,
            "body": None,
            "properties": jsonable(event.properties or {}),
            "system_properties": jsonable(sysprops),
            "sequence_number": event.sequence_number,
            "offset": event.offset,
            "enqueued_time": event.enqueued_time.isoformat() if event.enqueued_time else None,
            "partition_key": jsonable(event.partition_key),
            "message_id": jsonable(event.message_id),
            "content_type": jsonable(event.content_type),
            "correlation_id": jsonable(event.correlation_id),
        }
        try:
            record["body"] = event.body_as_str()
        except TypeError as e:
            record["body"] = {"not-text": str(e)}
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()
        if n > a.count:
            fail_later("event %d arrived, expected only %d (none more within %g s)" % (n, a.count, a.expect_no_more))
            return
        if n <= len(a.expect_body) and record["body"] != a.expect_body[n - 1]:
            fail_later("event %d has body %s, expected %s" % (n, json.dumps(record["body"]),
                                                              json.dumps(a.expect_body[n - 1])))
            return
        if a.expect_device_id is not None:
            dev = sysprops.get(b"iothub-connection-device-id")
            dev = dev.decode("utf-8", "replace") if isinstance(dev, bytes) else dev
            if dev != a.expect_device_id:
                fail_later("event %d has iothub-connection-device-id %s, expected %s" % (
                    n, json.dumps(jsonable(dev)), json.dumps(a.expect_device_id)))
                return
        if n == a.count:
            if a.expect_no_more > 0:
                state["phase"] = "checking that no event follows for %g s" % a.expect_no_more
                threading.Timer(a.expect_no_more, done.set).start()
            else:
                done.set()
        else:
            state["phase"] = "waiting for event %d of %d" % (n + 1, a.count)

    def on_error(ctx, err):
        where = " on partition %s" % ctx.partition_id if ctx is not None else ""
        fail_later("the SDK reported an error%s while %s: %s: %s" % (where, state["phase"], type(err).__name__, err))

    def on_partition_initialize(ctx):
        state["phase"] = "waiting for event 1 of %d" % a.count
        log("receiving from partition", ctx.partition_id, "of", ctx.eventhub_name)

    kwargs = {"consumer_group": a.consumer_group, "retry_total": a.retry_total, "logging_enable": a.logging}
    if not a.plain:
        kwargs["connection_verify"] = a.ca
        if a.custom_endpoint_address:
            kwargs["custom_endpoint_address"] = a.custom_endpoint_address
            kwargs["transport_type"] = TransportType.Amqp
    try:
        client = EventHubConsumerClient.from_connection_string(a.connection_string, **kwargs)
    except Exception as e:  # a malformed connection string
        say("%s: bad connection string: %s: %s" % (PROG, type(e).__name__, e))
        return 2

    def receive():
        try:
            client.receive(on_event=on_event, partition_id=a.partition, starting_position=a.starting_position,
                           on_error=on_error, on_partition_initialize=on_partition_initialize)
        except Exception as e:  # pylint: disable=broad-except
            fail_later("receive raised %s: %s" % (type(e).__name__, e))
        else:
            if not done.is_set():
                fail_later("receive returned before %d event(s) arrived" % a.count)

    receiver = threading.Thread(target=receive, daemon=True)
    receiver.start()
    log("receiving from", "plain TCP" if a.plain else "TLS", "partition", a.partition)
    timed_out = not done.wait(a.timeout)

    with lock:
        error = state["error"]
        got = len(state["events"])
    if timed_out and error is None:
        error = "timed out after %g s while %s (%d of %d event(s) arrived)" % (a.timeout, state["phase"], got, a.count)

    # Close the client: close() stops the receive loop, and receive() then detaches and
    # closes the partition consumer's connection; wait for both (a hang is a failure).
    closer = threading.Thread(target=client.close, daemon=True)
    closer.start()
    deadline = time.monotonic() + CLOSE_TIMEOUT
    closer.join(CLOSE_TIMEOUT)
    receiver.join(max(0.0, deadline - time.monotonic()))
    if error is not None:
        finish(1, "FAILED: " + error)
    if closer.is_alive() or receiver.is_alive():
        finish(1, "FAILED: close did not complete within %g s" % CLOSE_TIMEOUT)
    finish(0, "OK %d event(s) from partition %s" % (got, a.partition))
    return 0


if __name__ == "__main__":
    sys.exit(main())
