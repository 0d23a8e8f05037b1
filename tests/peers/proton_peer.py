#!/usr/bin/env python3
"""proton_peer.py - an AMQP 1.0 peer built on Qpid Proton (python-qpid-proton),
for amqpwire interop tests and wire captures.

    python proton_peer.py server --port P [--max-frame-size N] [--idle-timeout MS]
                                 [--exit-after N] [--ready-file PATH]
                                 [--tls-cert PEM --tls-key PEM [--client-ca PEM]]
                                 [--users NAME:PASSWORD,...]
    python proton_peer.py client --port P --scenario NAME
                                 [--sasl anonymous|plain|scram|external|none]
                                 [--user U --password PW] [--count N]
                                 [--cert PEM --key PEM] [--container-id ID]
                                 [--max-frame-size N] [--idle-timeout MS]
                                 [--transport tcp|tls] [--host NAME] [--ca PEM]

server: a tiny queue broker on 127.0.0.1. Any address works; a queue is
  created on first use. Without --users it offers SASL ANONYMOUS and accepts
  clients that skip SASL. --users makes Cyrus SASL (python-qpid-proton must
  be built with it) check passwords from a sasldb the server writes with
  saslpasswd2: PLAIN, SCRAM-SHA-256 and SCRAM-SHA-1 are offered and SASL is
  required. --client-ca asks TLS clients for a certificate signed by that
  CA (required) and adds EXTERNAL to the mechanisms.
  Messages are stored and forwarded as the exact bytes the producer sent. A
  consumer may carry a selector filter of the form  name = 'value'. A
  dynamic source gets a fresh queue named dynamic-<n>. A consumer's drain is
  answered (unused credit given back: delivery-count advanced, credit 0).
  No message-size or link-count limit is set. --tls-cert/--tls-key make the
  listener TLS. Proton has no WebSocket transport: --ws is refused.

client: runs one scenario over one connection, checks what comes back and
  exits 0 on success, 1 on failure (or after a 30 s time-out). The scenarios
  are the same as rhea_peer.js: basic, messages, large, large4m,
  dispositions, filter-dynamic, heartbeat, heartbeat-peer, wrong-password,
  drain, many-links, reuse-name, detach-error (see rhea_peer.js for what
  each does). --transport tls verifies the server certificate against --ca
  and the name --host (default 127.0.0.1, also the address connected to);
  ws and wss are refused (no WebSocket in Proton). --sasl scram uses
  SCRAM-SHA-256 (Cyrus), --sasl external the TLS client certificate of
  --cert/--key. --container-id sets the open's container-id (may be empty).
"""

import argparse
import atexit
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

from cproton import pn_message_body
from proton import (SASL, Array, Condition, Data, Delivery, Described, Endpoint, Link, Message, SSLDomain,
                    byte, char, decimal32, decimal64, decimal128, float32, int32, short, symbol, timestamp,
                    ubyte, uint, ulong, ushort)
import proton._handlers as proton_handlers
from proton.handlers import IncomingMessageHandler, MessagingHandler
from proton.reactor import AtMostOnce, Container, Selector

HOST = "127.0.0.1"
SELECTOR_DESCRIPTOR = symbol("apache.org:selector-filter:string")


def condition(obj, attr="remote_condition"):
    """obj's condition, for a broker that must not die reading it: python-qpid-proton
    0.40.0 raises UnicodeDecodeError when a condition's description holds bytes that are
    not UTF-8 (a peer's bytes, such as an unknown SASL mechanism name, copied into it);
    amqpwire fuzz-peer found this by crashing this broker with a 20-byte sasl-init."""
    try:
        return getattr(obj, attr)
    except UnicodeDecodeError as e:
        return "<a condition whose text is not UTF-8: %s>" % e


def tag_of(dlv):
    """A delivery's tag as a key. python-qpid-proton 0.40.0 decodes tags as UTF-8 and
    raises UnicodeDecodeError on any other bytes, though a tag is binary (2.8.7); amqpwire
    fuzz-peer found it by crashing this broker with a transfer tagged 0xaa. Deliveries on a
    link arrive one after another, so one shared key for such tags is enough here.

    Proton-C also takes a transfer with no delivery-id and no delivery-tag, after the
    link's last delivery has ended, for the first transfer of a new delivery (2.7.5 makes
    both mandatory there), and gives that delivery a null tag: reading it raises
    RuntimeError ("cannot use unpack() on <cdata 'char *' NULL>"). fuzz-peer found that
    too (seed 5, case 207)."""
    try:
        return dlv.tag
    except UnicodeDecodeError:
        return "<a tag that is not UTF-8>"
    except RuntimeError:
        return "<no tag>"


def log(*parts):
    if os.environ.get("PEER_QUIET"):
        return
    print("[proton_peer]", *parts, file=sys.stderr, flush=True)


def say(*parts):
    """Always printed, even with PEER_QUIET: results and errors seen."""
    print("[proton_peer]", *parts, file=sys.stderr, flush=True)


class Later:
    """A timer task target: container.schedule(secs, Later(fn))."""

    def __init__(self, fn):
        self.fn = fn

    def on_timer_task(self, event):
        self.fn()


# ------------------------------------------------------------------- server

def parse_selector(text):
    m = re.match(r"^\s*([A-Za-z_][\w.-]*)\s*=\s*'([^']*)'\s*$", str(text))
    return (m.group(1), m.group(2)) if m else None


def selector_matches(sel, msg):
    if sel is None:
        return True
    field, value = sel
    props = msg.properties or {}
    if field in props:
        v = props[field]
    else:
        v = getattr(msg, field, None)
    return v is not None and str(v) == value


class Broker(MessagingHandler):
    def __init__(self, args):
        super().__init__(prefetch=100, auto_accept=False, auto_settle=True)
        # Incoming deliveries are read as raw bytes by this class; drop the
        # helper that would decode (and consume) them first.
        self.handlers = [h for h in self.handlers if not isinstance(h, IncomingMessageHandler)]
        self.args = args
        self.queues = {}
        self.dynamic_counter = 0
        self.gone = 0
        self.partial = {}    # (link name, tag) -> bytearray
        self.inflight = {}   # (link name, tag) -> (queue, entry)

    # -- setup
    def on_start(self, event):
        event.container.container_id = "amqpwire-proton-broker"
        ssl_domain = None
        scheme = "amqp"
        if self.args.tls_cert:
            ssl_domain = SSLDomain(SSLDomain.MODE_SERVER)
            ssl_domain.set_credentials(self.args.tls_cert, self.args.tls_key, None)
            if self.args.client_ca:
                ssl_domain.set_trusted_ca_db(self.args.client_ca)
                ssl_domain.set_peer_authentication(SSLDomain.VERIFY_PEER, self.args.client_ca)
            else:
                ssl_domain.set_peer_authentication(SSLDomain.ANONYMOUS_PEER)
            scheme = "amqps"
        self.sasl_dir = sasl_config(self.args.users) if self.args.users else None
        self.acceptor = event.container.listen("%s://%s:%d" % (scheme, HOST, self.args.port), ssl_domain=ssl_domain)
        log("listening on %s://%s:%d" % (scheme, HOST, self.args.port))
        if self.args.ready_file:
            with open(self.args.ready_file, "w") as f:
                f.write("%d\n" % os.getpid())

    def on_connection_bound(self, event):
        t = event.transport
        sasl = t.sasl()
        sasl.allow_insecure_mechs = True
        if self.sasl_dir:
            # Server-side SASL settings only take effect per transport, here.
            sasl.config_path(self.sasl_dir)
            sasl.config_name("proton-server")
            mechs = "PLAIN SCRAM-SHA-256 SCRAM-SHA-1"
            if self.args.client_ca:
                mechs += " EXTERNAL"
            sasl.allowed_mechs(mechs)
            t.require_auth(True)
        else:
            sasl.allowed_mechs("ANONYMOUS EXTERNAL" if self.args.client_ca else "ANONYMOUS")
            t.require_auth(False)
        if self.args.max_frame_size:
            t.max_frame_size = self.args.max_frame_size
        if self.args.idle_timeout:
            # proton advertises half of this value as idle-time-out
            t.idle_timeout = 2 * self.args.idle_timeout / 1000.0

    def on_transport_error(self, event):
        log("transport error:", condition(event.transport, "condition"))

    def on_transport_closed(self, event):
        self.gone += 1
        log("connection gone (%d)" % self.gone)
        if self.args.exit_after and self.gone >= self.args.exit_after:
            self.acceptor.close()
            event.container.stop()

    # -- queues
    def queue(self, address):
        q = self.queues.get(address)
        if q is None:
            q = {"address": address, "messages": [], "consumers": []}
            self.queues[address] = q
            log("created queue", address)
        return q

    def pump(self, q):
        progress = True
        while progress and q["messages"]:
            progress = False
            for snd in list(q["consumers"]):
                if snd.credit <= 0:
                    continue
                sel = getattr(snd, "amqpwire_selector", None)
                idx = next((i for i, e in enumerate(q["messages"]) if selector_matches(sel, e["msg"])), None)
                if idx is None:
                    continue
                entry = q["messages"].pop(idx)
                tag = snd.delivery_tag()
                dlv = snd.delivery(tag)
                snd.stream(entry["raw"])
                snd.advance()
                if snd.snd_settle_mode == Link.SND_SETTLED:
                    dlv.settle()
                else:
                    self.inflight[(snd.name, tag_of(dlv))] = (q, entry)
                progress = True
        for snd in list(q["consumers"]):
            self.answer_drain(snd, q)

    def answer_drain(self, snd, q):
        """The consumer asked to drain and there is nothing more for it: give
        the remaining credit back (Proton advances the delivery-count and
        sends a flow with link-credit 0)."""
        if not snd.drain_mode or snd.credit <= 0:
            return
        sel = getattr(snd, "amqpwire_selector", None)
        if any(selector_matches(sel, e["msg"]) for e in q["messages"]):
            return
        n = snd.drained()
        log("drain answered on", snd.name, "credit returned", n)

    # -- links
    def on_link_opening(self, event):
        link = event.link
        link.snd_settle_mode = link.remote_snd_settle_mode
        link.rcv_settle_mode = link.remote_rcv_settle_mode
        if link.is_sender:
            rs = link.remote_source
            if rs.dynamic:
                self.dynamic_counter += 1
                address = "dynamic-%d" % self.dynamic_counter
                link.source.dynamic = True
            else:
                address = rs.address
            link.source.address = address
            filt = rs.filter
            filt.rewind()
            if filt.next() is not None:
                try:
                    filters = filt.get_object() or {}
                except Exception:  # unknown shapes: ignore the filter
                    filters = {}
                for key, val in filters.items():
                    text = val.value if isinstance(val, Described) else val
                    sel = parse_selector(text)
                    if sel:
                        link.amqpwire_selector = sel
                        link.source.filter.put_dict({symbol(key): Described(SELECTOR_DESCRIPTOR, text)})
                        break
            if link.remote_target.address:
                link.target.address = link.remote_target.address
            q = self.queue(address or "")
            link.amqpwire_queue = q["address"]
            q["consumers"].append(link)
            log("sender attached", link.name, "<-", address,
                "selector" if getattr(link, "amqpwire_selector", None) else "")
        else:
            address = link.remote_target.address
            link.target.address = address
            if link.remote_source.address:
                link.source.address = link.remote_source.address
            link.amqpwire_queue = self.queue(address or "")["address"]
            log("receiver attached", link.name, "->", address)

    def _forget(self, link):
        if link.is_sender:
            name = getattr(link, "amqpwire_queue", None)
            q = self.queues.get(name) if name is not None else None
            if q:
                q["consumers"] = [c for c in q["consumers"] if c.name != link.name or c.session != link.session]

    def on_link_closing(self, event):
        self._forget(event.link)

    def on_link_error(self, event):
        # A peer detaching with an error is not a reason to drop the
        # connection (MessagingHandler's default would close it).
        log("link", event.link.name, "detached by peer with error", condition(event.link))
        self._forget(event.link)

    def on_session_error(self, event):
        log("session ended by peer with error", condition(event.session))

    def on_connection_error(self, event):
        log("connection closed by peer with error", condition(event.connection))

    def on_connection_remote_close(self, event):
        # Proton's EndpointStateHandler leaves a connection that the peer
        # closed with amqp:connection:forced open (so that a client can
        # reconnect); a broker answers with its own close.
        cond = condition(event.connection)
        if getattr(cond, "name", None) == "amqp:connection:forced":
            log("connection closed by peer with", cond)
            event.connection.close()

    def on_connection_closing(self, event):
        for q in self.queues.values():
            q["consumers"] = [c for c in q["consumers"] if c.connection != event.connection]

    def on_disconnected(self, event):
        for q in self.queues.values():
            q["consumers"] = [c for c in q["consumers"] if c.connection != event.connection]

    def on_sendable(self, event):
        name = getattr(event.link, "amqpwire_queue", None)
        if name is not None:
            self.pump(self.queues[name])

    def on_link_flow(self, event):
        # a drain may arrive when there is nothing to send
        link = event.link
        name = getattr(link, "amqpwire_queue", None)
        if link.is_sender and name is not None:
            self.pump(self.queues[name])

    # -- deliveries
    def on_delivery(self, event):
        dlv = event.delivery
        link = dlv.link
        if link.is_sender:
            return  # outcomes come through on_accepted / on_released / on_rejected
        key = (link.name, tag_of(dlv))
        buf = self.partial.setdefault(key, bytearray())
        if dlv.aborted:
            self.partial.pop(key, None)
            dlv.settle()
            return
        if dlv.pending:
            buf += link.recv(dlv.pending)
        if dlv.partial:
            return
        link.advance()
        raw = bytes(self.partial.pop(key))
        msg = Message()
        msg.decode(raw)
        q = self.queues[link.amqpwire_queue]
        q["messages"].append({"raw": raw, "msg": msg})
        log("stored message on", q["address"], "size", len(raw))
        dlv.update(Delivery.ACCEPTED)
        dlv.settle()
        self.pump(q)

    def on_accepted(self, event):
        self.inflight.pop((event.link.name, tag_of(event.delivery)), None)
        log("delivery accepted by consumer")

    def on_rejected(self, event):
        self.inflight.pop((event.link.name, tag_of(event.delivery)), None)
        log("delivery rejected by consumer; dropped")

    def on_released(self, event):
        item = self.inflight.pop((event.link.name, tag_of(event.delivery)), None)
        if item:
            q, entry = item
            log("delivery released by consumer; requeued")
            q["messages"].insert(0, entry)
            self.pump(q)


# ------------------------------------------------------------------- client

CREATION_TIME_MS = 1795348800000  # 2026-11-22T12:00:00Z, fixed for reproducible captures
EXPIRY_TIME_MS = CREATION_TIME_MS + 3600 * 1000
UUID_A = uuid.UUID("9c2c3f6e-8d4e-4f43-9d0b-6c1e2a7b5f10")
UUID_B = uuid.UUID("1b4e28ba-2fa1-11d2-883f-0016d3cca427")
LARGE_SIZE = 320 * 1024
LARGE4M_SIZE = 4 * 1024 * 1024


def sasl_config(users):
    """A Cyrus SASL configuration in a fresh directory: a sasldb with the users
    ("name:password,..."), written by saslpasswd2, and proton-server.conf."""
    if not SASL.extended():
        raise SystemExit("proton_peer.py: --users needs python-qpid-proton built with Cyrus SASL "
                         "(tests/peers/install.sh builds it so)")
    d = tempfile.mkdtemp(prefix="proton-sasl-")
    atexit.register(shutil.rmtree, d, True)
    db = os.path.join(d, "users.sasldb")
    for pair in users.split(","):
        name, _, password = pair.partition(":")
        # Without -u the realm is the host name, which is also the realm Cyrus gives a
        # user name without one, so "alice" finds alice's entry.
        r = subprocess.run(["saslpasswd2", "-p", "-c", "-f", db, name], input=password.encode(),
                           capture_output=True)
        if r.returncode != 0:
            raise SystemExit("saslpasswd2 failed: %s" % r.stderr.decode(errors="replace"))
    with open(os.path.join(d, "proton-server.conf"), "w") as f:
        f.write("sasldb_path: %s\nmech_list: PLAIN SCRAM-SHA-256 SCRAM-SHA-1 EXTERNAL\n"
                "pwcheck_method: auxprop\nauxprop_plugin: sasldb\n" % db)
    return d


def large_body():
    return bytes(((i * 31 + 7) & 0xFF) for i in range(LARGE_SIZE))


def large4m_body():
    period = bytes(range(251))
    reps = LARGE4M_SIZE // 251 + 1
    return (period * reps)[:LARGE4M_SIZE]


# The proton Message API hides the raw bytes of a received message; keep
# them (as message.amqpwire_raw) so the messages scenario can check the
# exact AMQP types that came back.
def _recv_msg_keeping_raw(delivery):
    raw = delivery.link.recv(delivery.pending)
    delivery.link.advance()
    msg = Message()
    msg.decode(raw)
    msg.amqpwire_raw = raw
    return msg


if not hasattr(proton_handlers, "recv_msg"):
    raise SystemExit("proton_peer.py: this python-qpid-proton has no proton._handlers.recv_msg")
proton_handlers.recv_msg = _recv_msg_keeping_raw


class ExplicitBodyMessage(Message):
    """Proton writes no body section at all for body None; this one writes an
    amqp-value holding null."""

    def _pre_encode(self):
        super()._pre_encode()
        if self.body is None:
            Data(pn_message_body(self._msg)).put_null()


# --- typed description of an encoded message ---------------------------------
# Every value becomes (AMQP type, value); the messages scenario compares the
# description of the bytes it sent with that of the bytes it got back.

_TYPED = [(ulong, "ulong"), (uint, "uint"), (ushort, "ushort"), (ubyte, "ubyte"), (byte, "byte"),
          (short, "short"), (int32, "int"), (timestamp, "timestamp"), (float32, "float"),
          (decimal32, "decimal32"), (decimal64, "decimal64"), (decimal128, "decimal128"),
          (char, "char"), (symbol, "symbol")]


def canon(v):
    if v is None:
        return ("null",)
    if isinstance(v, bool):
        return ("boolean", v)
    if isinstance(v, Described):
        return ("described", canon(v.descriptor), canon(v.value))
    if isinstance(v, Array):
        return ("array", v.type, [canon(e) for e in v.elements])
    for cls, name in _TYPED:
        if isinstance(v, cls):
            if isinstance(v, int):
                return (name, int(v))
            if isinstance(v, float):
                return (name, float(v))
            if isinstance(v, str):
                return (name, str(v))
            return (name, bytes(v).hex())
    if isinstance(v, int):
        return ("long", v)
    if isinstance(v, float):
        return ("double", v)
    if isinstance(v, str):
        return ("string", v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return ("binary", bytes(v).hex())
    if isinstance(v, uuid.UUID):
        return ("uuid", str(v))
    if isinstance(v, dict):
        return ("map", sorted(((canon(k), canon(x)) for k, x in v.items()), key=repr))
    if isinstance(v, (list, tuple)):
        return ("list", [canon(x) for x in v])
    return (type(v).__name__, repr(v))


HEADER_FIELDS = ["durable", "priority", "ttl", "first_acquirer", "delivery_count"]
HEADER_DEFAULTS = {"durable": ("boolean", False), "priority": ("ubyte", 4), "ttl": ("null",),
                   "first_acquirer": ("boolean", False), "delivery_count": ("uint", 0)}
PROPERTY_FIELDS = ["message_id", "user_id", "to", "subject", "reply_to", "correlation_id", "content_type",
                   "content_encoding", "absolute_expiry_time", "creation_time", "group_id", "group_sequence",
                   "reply_to_group_id"]
SECTIONS = {0x70: "header", 0x71: "delivery_annotations", 0x72: "message_annotations", 0x73: "properties",
            0x74: "application_properties", 0x75: "data", 0x76: "amqp_sequence", 0x77: "amqp_value",
            0x78: "footer"}
SYMBOLIC_SECTIONS = {"amqp:header:list": 0x70, "amqp:delivery-annotations:map": 0x71,
                     "amqp:message-annotations:map": 0x72, "amqp:properties:list": 0x73,
                     "amqp:application-properties:map": 0x74, "amqp:data:binary": 0x75,
                     "amqp:amqp-sequence:list": 0x76, "amqp:value:*": 0x77, "amqp:footer:map": 0x78}


def describe_raw(raw):
    """An encoded message -> {section: {field: (type, value)}} (header and
    properties with defaults filled in), straight from the bytes."""
    out = {"header": dict(HEADER_DEFAULTS), "properties": {f: ("null",) for f in PROPERTY_FIELDS},
           "message_annotations": None, "application_properties": None, "body": None}
    raw = bytes(raw)
    while raw:
        d = Data()
        n = d.decode(raw)
        if n <= 0:
            raise ValueError("cannot decode %d bytes" % len(raw))
        raw = raw[n:]
        d.rewind()
        d.next()
        s = d.get_object()
        if not isinstance(s, Described):
            raise ValueError("message section without descriptor: %r" % (s,))
        code = SYMBOLIC_SECTIONS.get(s.descriptor) if isinstance(s.descriptor, str) else int(s.descriptor)
        name = SECTIONS.get(code)
        if name in ("header", "properties"):
            fields = HEADER_FIELDS if name == "header" else PROPERTY_FIELDS
            vals = list(s.value or [])
            if len(vals) > len(fields):
                raise ValueError("%s has %d fields" % (name, len(vals)))
            for f, v in zip(fields, vals):
                if v is not None:
                    out[name][f] = canon(v)
        elif name in ("message_annotations", "application_properties"):
            out[name] = canon(s.value)
        elif name in ("data", "amqp_sequence"):
            kind = "data" if name == "data" else "sequence"
            if out["body"] is None:
                out["body"] = (kind, [])
            if out["body"][0] != kind:
                raise ValueError("mixed body sections")
            out["body"][1].append(canon(s.value)[1] if kind == "data" else canon(s.value))
        elif name == "amqp_value":
            if out["body"] is not None:
                raise ValueError("second body section")
            out["body"] = ("value", canon(s.value))
        elif name not in ("delivery_annotations", "footer"):
            raise ValueError("unknown section %r" % (s.descriptor,))
    return out


def diff_messages(want, got):
    diffs = []
    for sec in ("header", "properties"):
        for f, w in want[sec].items():
            if w != got[sec][f]:
                diffs.append("%s.%s: sent %r got %r" % (sec, f, w, got[sec][f]))
    for sec in ("message_annotations", "application_properties"):
        w, g = want[sec], got[sec]
        if w is None or g is None:
            if w != g:
                diffs.append("%s: sent %r got %r" % (sec, w, g))
            continue
        wd, gd = dict(w[1]), dict(g[1])
        for k, v in wd.items():
            if k not in gd:
                diffs.append("%s[%r] missing" % (sec, k))
            elif gd[k] != v:
                diffs.append("%s[%r]: sent %r got %r" % (sec, k, v, gd[k]))
        for k in gd:
            if k not in wd:
                diffs.append("%s[%r] not sent but received" % (sec, k))
    if want["body"] != got["body"]:
        diffs.append("body: sent %r got %r" % (want["body"], got["body"]))
    return diffs


def full_properties(msg, n, subject, content_type):
    msg.user_id = b"amqpwire"
    msg.address = "q.messages"
    msg.subject = subject
    msg.reply_to = "q.replies"
    msg.content_type = content_type
    msg.content_encoding = "identity"
    msg.creation_time = CREATION_TIME_MS / 1000.0
    msg.expiry_time = EXPIRY_TIME_MS / 1000.0
    msg.group_id = "group-a"
    msg.group_sequence = n
    msg.reply_to_group_id = "group-replies"
    return msg


def simple_message(n, subject, body, inferred=False):
    m = ExplicitBodyMessage()
    m.id = "msg-%d" % n
    m.address = "q.messages"
    m.subject = subject
    m.properties = {"seq": int32(n)}
    m.inferred = inferred
    m.body = body
    return m


# What each message of the messages scenario must carry as its body (a
# check that the Python values below encode as intended).
RICH_BODIES = [("data",), ("value", "string"), ("value", "map"), ("value", "list"), ("sequence",),
               ("value", "binary"), ("value", "symbol"), ("value", "int"), ("value", "long"),
               ("value", "double"), ("value", "timestamp"), ("value", "uuid"), ("value", "boolean"),
               ("value", "null")]


def rich_messages():
    """Every header field, every properties field, typed annotations and
    application properties, every body kind. Kept in step with
    richMessageSpecs() in rhea_peer.js."""
    m1 = full_properties(ExplicitBodyMessage(), 1, "data-body", "application/octet-stream")
    m1.durable = True
    m1.priority = 7
    m1.ttl = 60.0
    m1.first_acquirer = True
    m1.delivery_count = 0
    m1.id = "msg-1"
    m1.correlation_id = "corr-1"
    m1.annotations = {
        symbol("x-opt-string"): "bar",
        symbol("x-opt-int"): int32(42),
        symbol("x-opt-long"): 1234567890123,
        symbol("x-opt-double"): 2.5,
        symbol("x-opt-boolean"): True,
        symbol("x-opt-timestamp"): timestamp(CREATION_TIME_MS + 123),
        symbol("x-opt-uuid"): UUID_A,
        symbol("x-opt-binary"): b"\x01\x02\x03\x04",
        symbol("x-opt-symbol"): symbol("annotation-symbol"),
    }
    m1.properties = {
        "a-string": "text",
        "an-int": int32(-7),
        "a-long": 1234567890123,
        "a-negative-long": -1234567890123,
        "a-double": 3.25,
        "a-boolean": True,
        "a-false": False,
        "a-null": None,
        "a-timestamp": timestamp(CREATION_TIME_MS),
        "a-uuid": UUID_A,
        "a-binary": b"\x01\x02\x03\x04",
        "a-symbol": symbol("sym"),
    }
    m1.inferred = True  # bytes body -> data section
    m1.body = bytes(range(16))

    m2 = full_properties(ExplicitBodyMessage(), 2, "string-body", "text/plain")
    m2.durable = False
    m2.priority = 4
    m2.ttl = 30.0
    m2.first_acquirer = False
    m2.delivery_count = 2
    m2.id = ulong(2)
    m2.correlation_id = UUID_B
    m2.annotations = {symbol("x-opt-foo"): "baz"}
    m2.properties = {"seq": int32(2), "flag": False}
    m2.body = "hello, amqpwire"

    m3 = full_properties(ExplicitBodyMessage(), 3, "map-body", "application/x-amqp-map")
    m3.durable = True
    m3.priority = 1
    m3.ttl = 10.0
    m3.id = UUID_A
    m3.correlation_id = b"corr-3"
    m3.annotations = {symbol("x-opt-foo"): "qux", symbol("x-opt-when"): timestamp(CREATION_TIME_MS)}
    m3.properties = {"seq": int32(3), "ratio": -0.5}
    m3.body = {"key": "value", "n": int32(3), "nested": {"list": [int32(1), int32(2), int32(3)]}}

    m4 = ExplicitBodyMessage(id=b"msg-4", address="q.messages", subject="list-body",
                             properties={"seq": int32(4)},
                             body=["one", int32(2), 3.5, True, None])

    m5 = ExplicitBodyMessage(id="msg-5", address="q.messages", subject="sequence-body", correlation_id=ulong(5),
                             properties={"seq": int32(5)}, inferred=True,
                             body=[int32(1), "two", int32(3)])
    return [m1, m2, m3, m4, m5,
            simple_message(6, "binary-body", b"\x00\x01\x02\xff"),
            simple_message(7, "symbol-body", symbol("a-symbol-body")),
            simple_message(8, "int-body", int32(-123456)),
            simple_message(9, "long-body", -9876543210),
            simple_message(10, "double-body", 6.02214076e23),
            simple_message(11, "timestamp-body", timestamp(CREATION_TIME_MS + 1)),
            simple_message(12, "uuid-body", UUID_B),
            simple_message(13, "boolean-body", True),
            simple_message(14, "null-body", None)]


def body_kind(desc):
    b = desc["body"]
    if b is None:
        return ("absent",)
    return (b[0],) if b[0] != "value" else ("value", b[1][0])


def id_of(msg):
    i = msg.id
    if isinstance(i, uuid.UUID):
        return "uuid:%s" % i
    return str(i)


class Failure(Exception):
    pass


def same(a, b):
    """Proton hands out fresh wrapper objects, so compare links by name."""
    return a is not None and b is not None and a.name == b.name


NO_PREFETCH_SCENARIOS = {"drain"}
NO_SESSION_SCENARIOS = {"heartbeat-peer", "wrong-password"}


class Client(MessagingHandler):
    def __init__(self, args):
        prefetch = 0 if args.scenario in NO_PREFETCH_SCENARIOS else 10
        super().__init__(prefetch=prefetch, auto_accept=False, auto_settle=True)
        self.args = args
        self.scenario = args.scenario
        self.ok = False
        self.failed = None
        self.links = []
        self.conn = None
        self.tag = "proton"
        self.received = 0
        self.state = {}
        self.we_closed = False

    # -- lifecycle
    def on_start(self, event):
        c = event.container
        c.container_id = "amqpwire-proton-client" if self.args.container_id is None else self.args.container_id
        host = self.args.host or HOST
        kw = dict(reconnect=False, virtual_host=self.args.host or "localhost")
        mode = self.args.sasl
        user, password = self.args.user, self.args.password
        if self.scenario == "wrong-password":
            mode = "plain"
            user = user or "alice"
            password = password or "WRONG"
        if mode == "none":
            kw["sasl_enabled"] = False
        elif mode == "anonymous":
            kw["allowed_mechs"] = "ANONYMOUS"
        elif mode in ("plain", "scram"):
            kw["allowed_mechs"] = "PLAIN" if mode == "plain" else "SCRAM-SHA-256"
            kw["allow_insecure_mechs"] = True
            kw["user"] = user or "alice"
            kw["password"] = password or "secret"
        elif mode == "external":
            if not self.args.cert:
                raise SystemExit("--sasl external needs --cert and --key")
            kw["allowed_mechs"] = "EXTERNAL"
        else:
            raise SystemExit("unknown --sasl %s" % mode)
        if self.args.max_frame_size:
            kw["max_frame_size"] = self.args.max_frame_size
        self.idle_timeout = self.args.idle_timeout or (1000 if self.scenario == "heartbeat-peer" else 0)
        if self.idle_timeout:
            # proton advertises half of its local idle timeout in open;
            # --idle-timeout is the value that should appear on the wire.
            kw["heartbeat"] = 2 * self.idle_timeout / 1000.0
        scheme = "amqp"
        if self.args.transport == "tls":
            scheme = "amqps"
            domain = SSLDomain(SSLDomain.MODE_CLIENT)
            if self.args.ca:
                domain.set_trusted_ca_db(self.args.ca)
            if self.args.cert:
                domain.set_credentials(self.args.cert, self.args.key, None)
            domain.set_peer_authentication(SSLDomain.VERIFY_PEER_NAME)
            kw["ssl_domain"] = domain
            kw["sni"] = host
        self.timer = c.schedule(30.0, self)
        self.container = c
        self.conn = c.connect("%s://%s:%d" % (scheme, host, self.args.port), **kw)
        if self.args.container_id == "":
            # The container replaces an empty id with a UUID; the connection's own field
            # is what the open carries, and it is written once the socket connects.
            self.conn.container = ""

    def on_timer_task(self, event):
        if getattr(self, "pending_shutdown", False):
            self.pending_shutdown = False
            self.shutdown()
            return
        self.fail("timed out")

    def fail(self, why):
        if self.failed is None and not self.ok:
            self.failed = why
            say("FAILED:", why)
        if self.conn is not None:
            self.conn.close()
        self.container.stop()

    def succeed(self, note=None):
        if self.failed is None and not self.ok:
            self.ok = True
            say("OK", self.scenario + (" (%s)" % note if note else ""))
        self.timer.cancel()
        self.container.stop()

    def close_connection(self, condition=None):
        self.we_closed = True
        if condition is not None:
            self.conn.condition = condition
        self.conn.close()

    def on_connection_opened(self, event):
        if self.scenario == "wrong-password":
            return self.fail("wrong-password: the connection opened with a wrong password")
        fn = getattr(self, "scenario_" + self.scenario.replace("-", "_"), None)
        if fn is None:
            return self.fail("unknown scenario %s" % self.scenario)
        fn(event)

    def on_transport_error(self, event):
        t = event.transport
        cond = t.condition
        if self.scenario == "wrong-password":
            outcome = t.sasl().outcome
            say("wrong-password: connection refused: %s (SASL outcome %s)" % (cond, outcome))
            # An auth outcome from the server shows up as
            # amqp:unauthorized-access "Authentication failed [mech=PLAIN]";
            # no matching mechanism gives "[mech=none]".
            if (cond is not None and cond.name == "amqp:unauthorized-access" and outcome == SASL.AUTH
                    and "mech=PLAIN" in (cond.description or "")):
                return self.succeed("authentication failure")
            return self.fail("wrong-password: refused, but not by an authentication failure")
        if (self.scenario == "detach-error" and self.we_closed and cond is not None
                and cond.name == "amqp:connection:framing-error" and "aborted" in (cond.description or "")):
            return self.succeed("socket closed after our close was sent")
        if self.scenario == "reuse-name" and not self.ok:
            say("reuse-name: the server dropped the connection; rhea's own server does this when an attach "
                "reuses the name of a link it has not seen detached yet ('Attach already received', a known "
                "rhea bug)")
        if not self.ok:
            self.fail("transport error %s" % (cond,))

    def on_connection_error(self, event):
        self.fail("connection error %s" % (event.connection.remote_condition,))

    def on_connection_remote_close(self, event):
        if not self.we_closed and self.failed is None and not self.ok:
            self.fail("connection closed by the peer before the scenario finished (%s)"
                      % (event.connection.remote_condition,))

    def on_link_error(self, event):
        self.fail("link error %s" % (event.link.remote_condition,))

    def on_session_error(self, event):
        self.fail("session error %s" % (event.session.remote_condition,))

    # -- helpers
    def sender(self, name, address, options=None, session=None):
        s = self.container.create_sender(session or self.conn, target=address, source=name, name=name,
                                         options=options)
        self.links.append(s)
        return s

    def receiver(self, name, address=None, dynamic=False, options=None, session=None):
        r = self.container.create_receiver(session or self.conn, source=address, target=name, name=name,
                                           dynamic=dynamic, options=options)
        self.links.append(r)
        return r

    def shutdown(self):
        if not self.links:
            self.close_sessions()
            return
        for l in self.links:
            l.close()

    def close_sessions(self):
        ssn = self.conn.session_head(Endpoint.LOCAL_ACTIVE)
        if ssn is None:
            self.close_connection()
            return
        while ssn is not None:
            nxt = ssn.next(Endpoint.LOCAL_ACTIVE)
            ssn.close()
            ssn = nxt

    def on_link_closed(self, event):
        # remote detach answered our detach
        if self.scenario == "detach-error":
            return self.detach_error_closed(event.link)
        if self.scenario == "reuse-name" and event.link.is_sender:
            self.state["sender_closed"] = True
            log("reuse-name: previous sender detached")
            return self.maybe_done_reuse()
        if self.links and all(l.state & Endpoint.REMOTE_CLOSED for l in self.links):
            self.close_sessions()

    def on_session_closed(self, event):
        if (self.conn.session_head(Endpoint.LOCAL_ACTIVE) is None
                and self.conn.session_head(Endpoint.REMOTE_ACTIVE) is None):
            self.close_connection()

    def on_connection_closed(self, event):
        if self.failed is None:
            self.ok = True
            say("OK", self.scenario)
        self.timer.cancel()

    def check(self, cond, why):
        if not cond:
            self.fail(why)
            raise Failure(why)

    # -- scenarios
    def scenario_basic(self, event):
        self.snd = self.sender(self.tag + "-basic-sender", "q.basic")
        self.rcv = self.receiver(self.tag + "-basic-receiver", "q.basic")
        self.state["sent"] = False

    def scenario_messages(self, event):
        self.snd = self.sender(self.tag + "-messages-sender", "q.messages")
        self.rcv = self.receiver(self.tag + "-messages-receiver", "q.messages")
        self.state.update(accepted=0, expected=[])

    def scenario_large(self, event):
        self.snd = self.sender(self.tag + "-large-sender", "q.large")
        self.rcv = self.receiver(self.tag + "-large-receiver", "q.large")

    def scenario_large4m(self, event):
        self.snd = self.sender(self.tag + "-large4m-sender", "q.large4m")
        self.rcv = self.receiver(self.tag + "-large4m-receiver", "q.large4m")
        self.state.update(body=large4m_body(), received=False, accepted=False)

    def scenario_dispositions(self, event):
        self.snd = self.sender(self.tag + "-disp-sender", "q.disp")
        self.pre = self.sender(self.tag + "-disp-presettled-sender", "q.disp", options=AtMostOnce())
        self.rcv = self.receiver(self.tag + "-disp-receiver", "q.disp")
        self.state.update(released_once=False, done=0, accepted=set())

    def scenario_filter_dynamic(self, event):
        self.snd = self.sender(self.tag + "-filter-sender", "q.filter")
        self.rcv = self.receiver(self.tag + "-filter-receiver", "q.filter", options=Selector("color = 'red'"))
        self.dyn = self.receiver(self.tag + "-dynamic-receiver", dynamic=True)
        self.state.update(got_filtered=False, got_dynamic=False, dsnd=None)

    def scenario_heartbeat(self, event):
        # no links: just a session, then stay idle so heartbeats flow
        self.session = self.conn.session()
        self.session.open()
        self.pending_shutdown = True
        self.timer.cancel()
        self.timer = self.container.schedule(3.0, self)

    def scenario_heartbeat_peer(self, event):
        # No session, no links: after the open exchange only heartbeats flow.
        # Sample the count of frames read to find the longest silence.
        t = event.transport
        remote = int(t.remote_idle_timeout * 1000)
        log("heartbeat-peer: asked for idle-time-out %d ms; server asked for %s"
            % (self.idle_timeout, "%d ms" % remote if remote else "none"))
        st = self.state
        st.update(frames=t.frames_input, last=time.monotonic(), max_gap=0.0, start=time.monotonic())

        def sample():
            now = time.monotonic()
            if t.frames_input != st["frames"]:
                st["max_gap"] = max(st["max_gap"], now - st["last"])
                st["frames"] = t.frames_input
                st["last"] = now
            if now - st["start"] < 4.0:
                self.container.schedule(0.02, Later(sample))
                return
            st["max_gap"] = max(st["max_gap"], now - st["last"])
            gap_ms = int(st["max_gap"] * 1000)
            log("heartbeat-peer: idle 4 s, %d frames read in all, longest gap %d ms" % (t.frames_input, gap_ms))
            if not (self.conn.state & Endpoint.LOCAL_ACTIVE and self.conn.state & Endpoint.REMOTE_ACTIVE):
                return self.fail("heartbeat-peer: connection no longer open after 4 s")
            # The server must send at least once per idle-time-out. Fail only
            # past twice that (2.4.5: the threshold a peer actually applies), so
            # that a loaded machine's scheduling cannot fail a correct server; a
            # gap past the time-out itself is a warning.
            if gap_ms > self.idle_timeout * 2:
                return self.fail("heartbeat-peer: the server was silent for %d ms (idle-time-out %d ms)"
                                 % (gap_ms, self.idle_timeout))
            if gap_ms > self.idle_timeout:
                say("heartbeat-peer: warning: a gap of %d ms exceeds the idle-time-out" % gap_ms)
            self.close_connection()

        self.container.schedule(0.02, Later(sample))

    def scenario_drain(self, event):
        self.snd = self.sender(self.tag + "-drain-sender", "q.drain")
        self.state.update(accepted=0, got=[], draining=False, done=False)

    def scenario_many_links(self, event):
        st = self.state
        st.update(received=0, accepted=0, sent=set(), addr={}, got={}, per_sender=2)
        self.many_senders = []
        for s in (1, 2, 3):
            ssn = self.conn.session()
            ssn.open()
            for n in (1, 2):
                address = "q.many.%d.%d" % (s, n)
                snd = self.sender("%s-many-%d-%d-sender" % (self.tag, s, n), address, session=ssn)
                rcv = self.receiver("%s-many-%d-%d-receiver" % (self.tag, s, n), address, session=ssn)
                st["addr"][snd.name] = address
                st["addr"][rcv.name] = address
                st["got"][rcv.name] = 0
                self.many_senders.append(snd)

    def scenario_reuse_name(self, event):
        self.snd = self.sender("shared-name", "q.reuse")
        self.state.update(sender_closed=False, received=False)

    def scenario_detach_error(self, event):
        self.snd = self.sender(self.tag + "-err-sender", "q.err")
        self.state.update(detaching=False)

    def scenario_wrong_password(self, event):
        pass

    def detach_error_closed(self, link):
        if link.remote_condition is not None:
            return self.fail("detach-error: the server detached with an error %s" % (link.remote_condition,))
        log("detach-error: detach answered; closing the connection with amqp:connection:forced")
        self.close_connection(Condition("amqp:connection:forced", "closing on purpose"))

    def maybe_done_reuse(self):
        if self.state["sender_closed"] and self.state["received"] and not self.state.get("closing"):
            self.state["closing"] = True
            self.shutdown()

    def on_session_opened(self, event):
        pass

    def all_links_open(self, links):
        return all(l.state & Endpoint.REMOTE_ACTIVE for l in links)

    def on_sendable(self, event):
        try:
            self.try_send(event.link)
        except Failure:
            pass

    def try_send(self, link):
        s = self.scenario
        if s == "basic" and same(link, self.snd) and not self.state["sent"]:
            if not self.all_links_open([self.snd, self.rcv]):
                return
            self.state["sent"] = True
            for i in range(1, self.args.count + 1):
                self.snd.send(Message(id="basic-%d" % i, body="message %d" % i))
        elif s == "messages" and same(link, self.snd) and not self.state.get("sent"):
            if not self.all_links_open([self.snd, self.rcv]):
                return
            self.state["sent"] = True
            for i, m in enumerate(rich_messages()):
                desc = describe_raw(m.encode())
                self.check(body_kind(desc) == RICH_BODIES[i],
                           "messages: message %d encodes as %r, meant %r" % (i + 1, body_kind(desc), RICH_BODIES[i]))
                self.state["expected"].append(desc)
                self.snd.send(m)
        elif s == "large" and same(link, self.snd) and not self.state.get("sent"):
            if not self.all_links_open([self.snd, self.rcv]):
                return
            self.state["sent"] = True
            m = Message(id="large-1", content_type="application/octet-stream", inferred=True, body=large_body())
            self.snd.send(m)
        elif s == "large4m" and same(link, self.snd) and not self.state.get("sent"):
            if not self.all_links_open([self.snd, self.rcv]):
                return
            self.state["sent"] = True
            m = Message(id="large4m-1", content_type="application/octet-stream", inferred=True,
                        body=self.state["body"])
            dlv = self.snd.send(m)
            self.check(not dlv.settled, "large4m: sent settled")
        elif s == "dispositions" and not self.state.get("sent"):
            if not (self.all_links_open([self.snd, self.pre, self.rcv]) and self.snd.credit and self.pre.credit):
                return
            self.state["sent"] = True
            for i in ("disp-accept", "disp-reject", "disp-release"):
                self.snd.send(Message(id=i, body="disposition test " + i))
            self.pre.send(Message(id="disp-presettled", body="sent pre-settled"))
        elif s == "filter-dynamic":
            if same(link, self.snd) and not self.state.get("sent"):
                if not self.all_links_open([self.snd, self.rcv, self.dyn]):
                    return
                self.state["sent"] = True
                self.snd.send(Message(id="filter-blue", properties={"color": "blue"}, body="blue one"))
                self.snd.send(Message(id="filter-red", properties={"color": "red"}, body="red one"))
                addr = self.dyn.remote_source.address
                self.check(bool(addr), "dynamic: no address assigned")
                self.state["dsnd"] = self.sender(self.tag + "-dynamic-sender", addr)
                self.state["daddr"] = addr
            elif same(link, self.state.get("dsnd")) and not self.state.get("dsent"):
                self.state["dsent"] = True
                link.send(Message(id="dynamic-1", address=self.state["daddr"], body="to the dynamic node"))
        elif s == "drain" and same(link, self.snd) and not self.state.get("sent"):
            self.state["sent"] = True
            for i in (1, 2, 3):
                self.snd.send(Message(id="drain-%d" % i, body="drain message %d" % i))
        elif s == "many-links":
            st = self.state
            if not self.all_links_open(self.links):
                return
            # Proton holds back what exceeds a link's credit until more comes.
            for snd in self.many_senders:
                if snd.name in st["sent"]:
                    continue
                st["sent"].add(snd.name)
                address = st["addr"][snd.name]
                for k in range(1, st["per_sender"] + 1):
                    snd.send(Message(id="many-%s-%d" % (address, k), address=address,
                                     body="to %s #%d" % (address, k)))
        elif s == "reuse-name" and link.is_sender and not self.state.get("sent"):
            self.state["sent"] = True
            link.send(Message(id="reuse-1", body="sent on the first shared-name link"))

    def on_link_opened(self, event):
        link = event.link
        if self.scenario == "detach-error":
            if link.is_sender and not self.state["detaching"]:
                self.state["detaching"] = True
                link.condition = Condition("amqp:internal-error", "detached on purpose")
                link.close()
            return
        if self.scenario == "drain" and link.is_receiver:
            if link.credit != 0:
                return self.fail("drain: receiver started with credit %d" % link.credit)
            link.flow(2)
            return
        if self.scenario == "many-links":
            try:
                self.try_send(link)
            except Failure:
                pass
            return
        # A receiver may finish attaching after the sender already got
        # credit; re-run the start check for the sender then.
        if link.is_receiver and self.snd is not None and self.snd.credit:
            try:
                self.try_send(self.snd)
            except Failure:
                pass

    def on_link_flow(self, event):
        link = event.link
        st = self.state
        if self.scenario != "drain" or not link.is_receiver or not st.get("draining") or st["done"]:
            return
        if link.credit != 0:
            return
        try:
            st["done"] = True
            drained = link.drained()
            self.check(len(st["got"]) == 3, "drain: drain completed after %d messages, want 3" % len(st["got"]))
            self.check(drained == 4, "drain: the server returned %d credit, want 4" % drained)
            log("drain: completed, credit 0, %d credit returned" % drained)
            link.drain_mode = False
            self.shutdown()
        except Failure:
            pass

    snd = None

    def on_message(self, event):
        try:
            self._on_message(event)
        except Failure:
            pass

    def _on_message(self, event):
        m = event.message
        dlv = event.delivery
        s = self.scenario
        if s == "basic":
            self.received += 1
            self.check(m.body == "message %d" % self.received, "basic: got %r" % (m.body,))
            self.accept(dlv)
            if self.received == self.args.count:
                self.shutdown()
        elif s == "messages":
            want = self.state["expected"]
            i = self.received
            self.check(i < len(want), "messages: more messages than sent")
            try:
                got = describe_raw(m.amqpwire_raw)
            except Exception as e:  # noqa: BLE001 - any decode problem is a failure
                self.check(False, "messages: message %d does not decode: %s" % (i + 1, e))
            diffs = diff_messages(want[i], got)
            self.check(not diffs, "messages: message %d (%r) differs:\n  %s"
                       % (i + 1, want[i]["properties"]["message_id"], "\n  ".join(diffs)))
            log("message %d matches: %r %r" % (i + 1, want[i]["properties"]["message_id"], body_kind(got)))
            self.accept(dlv)
            self.received += 1
            self.maybe_done_messages()
        elif s == "large":
            self.check(m.body == large_body(), "large: body differs")
            self.accept(dlv)
            self.shutdown()
        elif s == "large4m":
            st = self.state
            self.check(not st["received"], "large4m: a second message arrived")
            self.check(id_of(m) == "large4m-1", "large4m: message-id %s" % id_of(m))
            self.check(m.inferred and isinstance(m.body, (bytes, memoryview)),
                       "large4m: body is not a data section")
            body = bytes(m.body)
            self.check(len(body) == LARGE4M_SIZE, "large4m: body length %d, sent %d" % (len(body), LARGE4M_SIZE))
            if body != st["body"]:
                first = next(i for i in range(len(body)) if body[i] != st["body"][i])
                self.check(False, "large4m: body differs first at byte %d" % first)
            self.check(not dlv.settled, "large4m: delivery arrived settled")
            st["received"] = True
            log("large4m: received %d bytes intact" % len(body))
            self.accept(dlv)
            if st["accepted"]:
                self.shutdown()
        elif s == "dispositions":
            i = id_of(m)
            st = self.state
            if i in ("disp-accept", "disp-presettled"):
                self.accept(dlv)
            elif i == "disp-reject":
                dlv.local.condition = Condition("amqp:precondition-failed", "rejected by amqpwire test peer")
                dlv.update(Delivery.REJECTED)
                dlv.settle()
            elif i == "disp-release":
                if not st["released_once"]:
                    st["released_once"] = True
                    self.release(dlv, delivered=False)
                    return
                self.accept(dlv)
            else:
                self.check(False, "dispositions: unexpected %s" % i)
            st["done"] += 1
            self.maybe_done_dispositions()
        elif s == "filter-dynamic":
            st = self.state
            if same(event.link, self.rcv):
                self.check((m.properties or {}).get("color") == "red", "filter: got %r" % (m.properties,))
                st["got_filtered"] = True
            else:
                self.check(m.body == "to the dynamic node", "dynamic: bad body")
                st["got_dynamic"] = True
            self.accept(dlv)
            if st["got_filtered"] and st["got_dynamic"]:
                self.shutdown()
        elif s == "drain":
            st = self.state
            st["got"].append(id_of(m))
            n = len(st["got"])
            self.check(id_of(m) == "drain-%d" % n, "drain: expected drain-%d got %s" % (n, id_of(m)))
            self.check(n <= 2 or st["draining"], "drain: a 3rd message arrived with credit 2")
            self.check(n <= 3, "drain: more than 3 messages")
            self.accept(dlv)
            if n == 2:
                def start_drain():
                    if self.failed is not None:
                        return
                    rcv = event.link
                    if len(st["got"]) != 2:
                        return self.fail("drain: %d messages with credit 2" % len(st["got"]))
                    if rcv.credit != 0:
                        return self.fail("drain: credit %d after 2 messages" % rcv.credit)
                    log("drain: exactly 2 arrived; draining with credit 5")
                    st["draining"] = True
                    rcv.drain(5)
                # give a 3rd message time to show up (it must not)
                self.container.schedule(0.3, Later(start_drain))
        elif s == "many-links":
            st = self.state
            link = event.link
            address = st["addr"].get(link.name)
            st["got"][link.name] += 1
            k = st["got"][link.name]
            self.check(k <= st["per_sender"], "many-links: too many on %s" % address)
            self.check(id_of(m) == "many-%s-%d" % (address, k),
                       "many-links: %s expected many-%s-%d got %s" % (address, address, k, id_of(m)))
            self.check(m.body == "to %s #%d" % (address, k), "many-links: bad body %r" % (m.body,))
            self.check(m.address == address, "many-links: bad to %r" % (m.address,))
            self.accept(dlv)
            st["received"] += 1
            self.maybe_done_many()
        elif s == "reuse-name":
            self.check(event.link.is_receiver, "reuse-name: message on a sender?")
            self.check(id_of(m) == "reuse-1" and m.body == "sent on the first shared-name link",
                       "reuse-name: unexpected message %r" % (m,))
            self.accept(dlv)
            self.state["received"] = True
            log("reuse-name: message received on the new receiver")
            self.maybe_done_reuse()

    def on_accepted(self, event):
        s = self.scenario
        if s == "dispositions" and same(event.link, self.snd):
            self.state["accepted"].add(event.delivery.tag)
            self.maybe_done_dispositions()
        elif s == "messages":
            self.state["accepted"] += 1
            self.maybe_done_messages()
        elif s == "large4m":
            st = self.state
            if st["accepted"]:
                return self.fail("large4m: accepted twice")
            st["accepted"] = True
            log("large4m: accepted")
            if st["received"]:
                self.shutdown()
        elif s == "drain":
            self.state["accepted"] += 1
            if self.state["accepted"] == 3:
                # prefetch=0: this receiver gets no credit unless given some
                self.rcv = self.receiver(self.tag + "-drain-receiver", "q.drain")
        elif s == "many-links":
            self.state["accepted"] += 1
            self.maybe_done_many()
        elif s == "reuse-name" and not self.state.get("swapped"):
            # In one batch: attach a receiver with the same name, detach the
            # sender. Proton writes all attaches of a batch before its
            # detaches, so the receiver's attach goes out first.
            self.state["swapped"] = True
            self.rcv = self.receiver("shared-name", "q.reuse")
            self.snd.close()

    def maybe_done_dispositions(self):
        st = self.state
        if st["done"] == 4 and len(st["accepted"]) == 3 and not st.get("closing"):
            st["closing"] = True
            self.shutdown()

    def maybe_done_messages(self):
        st = self.state
        n = len(st["expected"])
        if n and self.received == n and st["accepted"] == n and not st.get("closing"):
            st["closing"] = True
            self.shutdown()

    def maybe_done_many(self):
        st = self.state
        total = len(self.many_senders) * st["per_sender"]
        if st["received"] == total and st["accepted"] == total and not st.get("closing"):
            st["closing"] = True
            log("many-links: %d messages over %d links in 3 sessions" % (total, len(self.links)))
            self.shutdown()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("role", choices=["server", "client"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--scenario", default="basic")
    ap.add_argument("--sasl", default="anonymous", choices=["anonymous", "plain", "scram", "external", "none"])
    ap.add_argument("--users", help="server: NAME:PASSWORD,... checked by Cyrus SASL (PLAIN, SCRAM)")
    ap.add_argument("--client-ca", help="server: require TLS client certificates from this CA; offer EXTERNAL")
    ap.add_argument("--cert", help="client: TLS client certificate (PEM)")
    ap.add_argument("--key", help="client: private key (PEM) for --cert")
    ap.add_argument("--container-id", help="client: the open's container-id (may be empty)")
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--max-frame-size", type=int, default=0)
    ap.add_argument("--idle-timeout", type=int, default=0,
                    help="idle-time-out to advertise in open, milliseconds")
    ap.add_argument("--exit-after", type=int, default=0)
    ap.add_argument("--ready-file")
    ap.add_argument("--tls-cert", help="server: certificate (PEM) -> TLS listener")
    ap.add_argument("--tls-key", help="server: private key (PEM) for --tls-cert")
    ap.add_argument("--ws", action="store_true", help="not supported: Proton has no WebSocket transport")
    ap.add_argument("--transport", default="tcp", choices=["tcp", "tls", "ws", "wss"])
    ap.add_argument("--ca", help="client: trust this CA (PEM) for TLS")
    ap.add_argument("--host", help="client: host to connect to and TLS server name (default 127.0.0.1)")
    ap.add_argument("--path", help="client: WebSocket path (not supported by Proton)")
    args = ap.parse_args(argv)

    if args.ws or args.transport in ("ws", "wss") or args.path is not None:
        print("proton_peer.py: WebSocket is not supported: Qpid Proton (python-qpid-proton) has no "
              "WebSocket transport; use rhea_peer.js for ws/wss", file=sys.stderr)
        return 2
    if bool(args.cert) != bool(args.key):
        print("proton_peer.py: --cert and --key go together", file=sys.stderr)
        return 2
    if args.client_ca and not args.tls_cert:
        print("proton_peer.py: --client-ca needs --tls-cert and --tls-key", file=sys.stderr)
        return 2
    if bool(args.tls_cert) != bool(args.tls_key):
        print("proton_peer.py: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2

    if args.role == "server":
        Container(Broker(args)).run()
        return 0
    handler = Client(args)
    try:
        Container(handler).run()
    except KeyboardInterrupt:
        return 1
    if handler.ok and handler.failed is None:
        return 0
    if handler.failed is None:
        say("FAILED: connection ended before a clean close")
    return 1


if __name__ == "__main__":
    sys.exit(main())
