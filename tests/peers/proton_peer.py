#!/usr/bin/env python3
"""proton_peer.py - an AMQP 1.0 peer built on Qpid Proton (python-qpid-proton),
for amqpwire interop tests and wire captures.

    python proton_peer.py server --port P [--max-frame-size N] [--idle-timeout MS]
                                 [--exit-after N] [--ready-file PATH]
    python proton_peer.py client --port P --scenario NAME [--sasl anonymous|plain|none]
                                 [--user U --password PW] [--count N]
                                 [--max-frame-size N] [--idle-timeout MS]

server: a tiny queue broker on 127.0.0.1. Any address works; a queue is
  created on first use. Proton's built-in SASL offers ANONYMOUS only (PLAIN
  needs Cyrus SASL on the server side); clients that skip SASL are accepted.
  Messages are stored and forwarded as the exact bytes the producer sent. A
  consumer may carry a selector filter of the form  name = 'value'. A
  dynamic source gets a fresh queue named dynamic-<n>.

client: runs one scenario over one connection, checks what comes back and
  exits 0 on success, 1 on failure (or after a 30 s time-out). The scenarios
  are the same as rhea_peer.js: basic, messages, large, dispositions,
  filter-dynamic, heartbeat.
"""

import argparse
import os
import re
import sys
import uuid

from proton import (Condition, Delivery, Described, Endpoint, Link, Message, int32, symbol,
                    timestamp, ulong)
from proton.handlers import MessagingHandler
from proton.reactor import AtMostOnce, Container, Selector

from proton.handlers import IncomingMessageHandler

HOST = "127.0.0.1"
SELECTOR_DESCRIPTOR = symbol("apache.org:selector-filter:string")


def log(*parts):
    if os.environ.get("PEER_QUIET"):
        return
    print("[proton_peer]", *parts, file=sys.stderr, flush=True)


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
        self.acceptor = event.container.listen("%s:%d" % (HOST, self.args.port))
        log("listening on %s:%d" % (HOST, self.args.port))
        if self.args.ready_file:
            with open(self.args.ready_file, "w") as f:
                f.write("%d\n" % os.getpid())

    def on_connection_bound(self, event):
        t = event.transport
        sasl = t.sasl()
        sasl.allow_insecure_mechs = True
        sasl.allowed_mechs("ANONYMOUS")
        t.require_auth(False)
        if self.args.max_frame_size:
            t.max_frame_size = self.args.max_frame_size
        if self.args.idle_timeout:
            # proton advertises half of this value as idle-time-out
            t.idle_timeout = 2 * self.args.idle_timeout / 1000.0

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
                    self.inflight[(snd.name, dlv.tag)] = (q, entry)
                progress = True

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

    # -- deliveries
    def on_delivery(self, event):
        dlv = event.delivery
        link = dlv.link
        if link.is_sender:
            return  # outcomes come through on_accepted / on_released / on_rejected
        key = (link.name, dlv.tag)
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
        self.inflight.pop((event.link.name, event.delivery.tag), None)
        log("delivery accepted by consumer")

    def on_rejected(self, event):
        self.inflight.pop((event.link.name, event.delivery.tag), None)
        log("delivery rejected by consumer; dropped")

    def on_released(self, event):
        item = self.inflight.pop((event.link.name, event.delivery.tag), None)
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


def large_body():
    return bytes(((i * 31 + 7) & 0xFF) for i in range(LARGE_SIZE))


def common(msg, n, subject, content_type):
    msg.address = "q.messages"
    msg.subject = subject
    msg.reply_to = "q.replies"
    msg.content_type = content_type
    msg.content_encoding = "identity"
    msg.creation_time = CREATION_TIME_MS / 1000.0
    msg.expiry_time = EXPIRY_TIME_MS / 1000.0
    msg.group_id = "group-a"
    msg.group_sequence = n
    return msg


def rich_messages():
    m1 = common(Message(), 1, "data-body", "application/octet-stream")
    m1.durable = True
    m1.priority = 7
    m1.ttl = 60.0
    m1.id = "msg-1"
    m1.correlation_id = "corr-1"
    m1.annotations = {symbol("x-opt-foo"): "bar", symbol("x-opt-count"): int32(42)}
    m1.properties = {
        "a-string": "text",
        "an-int": int32(-7),
        "a-long": 1234567890123,
        "a-double": 3.25,
        "a-boolean": True,
        "a-null": None,
        "a-timestamp": timestamp(CREATION_TIME_MS),
        "a-uuid": UUID_A,
        "a-binary": b"\x01\x02\x03\x04",
        "a-symbol": symbol("sym"),
    }
    m1.inferred = True  # bytes body -> data section
    m1.body = bytes(range(16))

    m2 = common(Message(), 2, "string-body", "text/plain")
    m2.durable = False
    m2.priority = 4
    m2.ttl = 30.0
    m2.id = ulong(2)
    m2.correlation_id = UUID_B
    m2.annotations = {symbol("x-opt-foo"): "baz"}
    m2.properties = {"seq": int32(2), "flag": False}
    m2.body = "hello, amqpwire"

    m3 = common(Message(), 3, "map-body", "application/x-amqp-map")
    m3.durable = True
    m3.priority = 1
    m3.ttl = 10.0
    m3.id = UUID_A
    m3.correlation_id = b"corr-3"
    m3.annotations = {symbol("x-opt-foo"): "qux", symbol("x-opt-when"): timestamp(CREATION_TIME_MS)}
    m3.properties = {"seq": int32(3), "ratio": -0.5}
    m3.body = {"key": "value", "n": int32(3), "nested": {"list": [int32(1), int32(2), int32(3)]}}

    m4 = Message(id="msg-4", address="q.messages", subject="list-body",
                 properties={"seq": int32(4)},
                 body=["one", int32(2), 3.5, True, None])

    m5 = Message(id="msg-5", address="q.messages", subject="sequence-body",
                 properties={"seq": int32(5)}, inferred=True,
                 body=[int32(1), "two", int32(3)])
    return [m1, m2, m3, m4, m5]


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


class Client(MessagingHandler):
    def __init__(self, args):
        super().__init__(prefetch=10, auto_accept=False, auto_settle=True)
        self.args = args
        self.scenario = args.scenario
        self.ok = False
        self.failed = None
        self.links = []
        self.conn = None
        self.tag = "proton"
        self.received = 0
        self.state = {}

    # -- lifecycle
    def on_start(self, event):
        c = event.container
        c.container_id = "amqpwire-proton-client"
        kw = dict(reconnect=False, virtual_host="localhost")
        mode = self.args.sasl
        if mode == "none":
            kw["sasl_enabled"] = False
        elif mode == "anonymous":
            kw["allowed_mechs"] = "ANONYMOUS"
        elif mode == "plain":
            kw["allowed_mechs"] = "PLAIN"
            kw["allow_insecure_mechs"] = True
            kw["user"] = self.args.user or "alice"
            kw["password"] = self.args.password or "secret"
        else:
            raise SystemExit("unknown --sasl %s" % mode)
        if self.args.max_frame_size:
            kw["max_frame_size"] = self.args.max_frame_size
        if self.args.idle_timeout:
            # proton advertises half of its local idle timeout in open;
            # --idle-timeout is the value that should appear on the wire.
            kw["heartbeat"] = 2 * self.args.idle_timeout / 1000.0
        self.timer = c.schedule(30.0, self)
        self.conn = c.connect("amqp://%s:%d" % (HOST, self.args.port), **kw)
        self.container = c

    def on_timer_task(self, event):
        if getattr(self, "pending_shutdown", False):
            self.pending_shutdown = False
            self.shutdown()
            return
        self.fail("timed out")

    def fail(self, why):
        if self.failed is None and not self.ok:
            self.failed = why
            log("FAILED:", why)
        if self.conn is not None:
            self.conn.close()
        self.container.stop()

    def on_connection_opened(self, event):
        fn = getattr(self, "scenario_" + self.scenario.replace("-", "_"), None)
        if fn is None:
            return self.fail("unknown scenario %s" % self.scenario)
        fn(event)

    def on_transport_error(self, event):
        cond = event.transport.condition
        if not self.ok:
            self.fail("transport error %s" % (cond,))

    def on_connection_error(self, event):
        self.fail("connection error %s" % (event.connection.remote_condition,))

    def on_link_error(self, event):
        self.fail("link error %s" % (event.link.remote_condition,))

    def on_session_error(self, event):
        self.fail("session error %s" % (event.session.remote_condition,))

    # -- helpers
    def sender(self, name, address, options=None):
        s = self.container.create_sender(self.conn, target=address, source=name, name=name, options=options)
        self.links.append(s)
        return s

    def receiver(self, name, address=None, dynamic=False, options=None):
        r = self.container.create_receiver(self.conn, source=address, target=name, name=name,
                                           dynamic=dynamic, options=options)
        self.links.append(r)
        return r

    def shutdown(self):
        if not self.links:
            self.session.close()
            return
        for l in self.links:
            l.close()

    def on_link_closed(self, event):
        # remote detach answered our detach
        if self.links and all(l.state & Endpoint.REMOTE_CLOSED for l in self.links):
            ssn = event.link.session
            ssn.close()

    def on_session_closed(self, event):
        event.connection.close()

    def on_connection_closed(self, event):
        if self.failed is None:
            self.ok = True
            log("OK", self.scenario)
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

    def scenario_large(self, event):
        self.snd = self.sender(self.tag + "-large-sender", "q.large")
        self.rcv = self.receiver(self.tag + "-large-receiver", "q.large")

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
            for m in rich_messages():
                self.snd.send(m)
        elif s == "large" and same(link, self.snd) and not self.state.get("sent"):
            if not self.all_links_open([self.snd, self.rcv]):
                return
            self.state["sent"] = True
            m = Message(id="large-1", content_type="application/octet-stream", inferred=True, body=large_body())
            self.snd.send(m)
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

    def on_link_opened(self, event):
        # A receiver may finish attaching after the sender already got
        # credit; re-run the start check for the sender then.
        if event.link.is_receiver and self.snd is not None and self.snd.credit:
            try:
                self.try_send(self.snd)
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
            want = ["msg-1", "2", "uuid:%s" % UUID_A, "msg-4", "msg-5"]
            i = self.received
            self.check(id_of(m) == want[i], "messages: expected id %s got %s" % (want[i], id_of(m)))
            if i == 0:
                self.check(m.body == bytes(range(16)), "messages: bad data body")
                p = m.properties
                self.check(p["a-string"] == "text" and p["an-int"] == -7 and p["a-boolean"] is True
                           and p["a-null"] is None, "messages: bad application properties %r" % (p,))
                self.check(m.durable and m.priority == 7 and abs(m.ttl - 60.0) < 1e-6, "messages: bad header")
                self.check(m.annotations[symbol("x-opt-foo")] == "bar", "messages: bad annotations")
            if i == 1:
                self.check(m.body == "hello, amqpwire", "messages: bad string body")
            if i == 2:
                self.check(isinstance(m.body, dict) and m.body.get("key") == "value", "messages: bad map body")
            if i == 3:
                self.check(isinstance(m.body, list) and m.body[0] == "one" and not m.inferred,
                           "messages: bad list body")
            if i == 4:
                self.check(m.inferred and list(m.body) == [1, "two", 3], "messages: bad sequence body")
            self.accept(dlv)
            self.received += 1
            if self.received == 5:
                self.shutdown()
        elif s == "large":
            self.check(m.body == large_body(), "large: body differs")
            self.accept(dlv)
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

    def on_accepted(self, event):
        if self.scenario == "dispositions" and same(event.link, self.snd):
            self.state["accepted"].add(event.delivery.tag)
            self.maybe_done_dispositions()

    def maybe_done_dispositions(self):
        st = self.state
        if st["done"] == 4 and len(st["accepted"]) == 3 and not st.get("closing"):
            st["closing"] = True
            self.shutdown()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("role", choices=["server", "client"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--scenario", default="basic")
    ap.add_argument("--sasl", default="anonymous", choices=["anonymous", "plain", "none"])
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--max-frame-size", type=int, default=0)
    ap.add_argument("--idle-timeout", type=int, default=0,
                    help="idle-time-out to advertise in open, milliseconds")
    ap.add_argument("--exit-after", type=int, default=0)
    ap.add_argument("--ready-file")
    args = ap.parse_args(argv)

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
        log("FAILED: connection ended before a clean close")
    return 1


if __name__ == "__main__":
    sys.exit(main())
