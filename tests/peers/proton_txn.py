#!/usr/bin/env python3
"""proton_txn.py - AMQP 1.0 transactions (part 4) with Qpid Proton
(python-qpid-proton), for amqpwire's interop tests.

    python proton_txn.py client --port P --scenario NAME [--address A]
    python proton_txn.py coordinator --port P [--ready-file PATH]

client: one scenario against a broker with a transaction coordinator, using
  Proton's own transaction API (Container.declare_transaction); exits 0 when
  every check passed, 1 otherwise (or after a 30 s time-out). Scenarios:
    send-commit      declare, send 3 messages in the transaction, commit; then
                     a receiver must get exactly those 3 (a marker sent after
                     them comes fourth).
    send-rollback    declare, send 3 in the transaction, roll back; a marker
                     sent afterwards must be the first message received.
    receive-commit   send 3 outside any transaction, receive them and accept
                     each in a transaction, commit; a marker sent afterwards
                     must be the first message received (nothing comes back).
    receive-rollback send 2, receive and accept them in a transaction, roll
                     back; both must be delivered again, with their header's
                     delivery-count raised, before a marker sent afterwards.
  Each scenario uses its own address (txn-<scenario> unless --address).

coordinator: a small queue broker on 127.0.0.1 whose transactions Proton's
  API lets us write by hand: links to a coordinator target are answered with
  the coordinator's capabilities and credit; declare gets declared{txn-id};
  discharge gets accepted, or rejected with amqp:transaction:unknown-id.
  Messages sent with transactional-state reach their queue on commit and are
  dropped on rollback; a receiver's transactional accept removes the message
  on commit and puts it back on rollback. Prints "listening on PORT".
"""

import argparse
import sys

from proton import Condition, Delivery, Described, Endpoint, Message, Terminus, symbol, ulong
from proton.handlers import MessagingHandler, TransactionHandler
from proton.reactor import Container

TIMEOUT = 30.0
DECLARE = (symbol("amqp:declare:list"), ulong(0x31))
DISCHARGE = (symbol("amqp:discharge:list"), ulong(0x32))


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


class Timeout:
    def __init__(self, fn):
        self.fn = fn

    def on_timer_task(self, event):
        self.fn()


# ----------------------------------------------------------------- the client

class Client(MessagingHandler, TransactionHandler):
    """Runs one scenario; self.failure says what went wrong (None: passed)."""

    def __init__(self, args):
        super().__init__(prefetch=0, auto_accept=False, auto_settle=True)
        self.url = "amqp://127.0.0.1:%d" % args.port
        self.scenario = args.scenario
        self.address = args.address or "txn-" + args.scenario
        self.failure = "did not finish"
        self.phase = "start"
        self.plain_sent = 0
        self.txn_sent = 0
        self.received = []
        self.txn = None

    # -- plumbing

    def on_start(self, event):
        self.container = event.container
        self.timer = event.container.schedule(TIMEOUT, Timeout(lambda: self.finish("timed out in phase " + self.phase)))
        self.conn = event.container.connect(self.url, allowed_mechs="ANONYMOUS")
        self.sender = event.container.create_sender(self.conn, self.address)
        if self.scenario.startswith("send"):
            self.phase = "declare"
            event.container.declare_transaction(self.conn, handler=self)
        else:
            self.phase = "fill"

    def is_ours(self, link):
        # Proton hands out a new wrapper for each event: compare names.
        return link is not None and link.name == self.sender.name

    def finish(self, failure):
        self.failure = failure
        if failure:
            log("proton_txn:", self.scenario, "FAILED:", failure)
        self.timer.cancel()
        self.conn.close()

    def body(self, kind, n):
        return Message(body="%s-%d" % (kind, n), durable=False)

    def on_sendable(self, event):
        if self.is_ours(event.link):
            self.send_more()

    def send_more(self):
        if self.phase == "fill":
            count = 3 if self.scenario == "receive-commit" else 2
            while self.plain_sent < count and self.sender.credit > 0:
                self.sender.send(self.body("plain", self.plain_sent))
                self.plain_sent += 1
        elif self.phase == "txn-send" and self.txn is not None:
            while self.txn_sent < 3 and self.sender.credit > 0:
                self.txn.send(self.sender, self.body("txn", self.txn_sent))
                self.txn_sent += 1
        elif self.phase == "marker" and self.sender.credit > 0:
            self.sender.send(self.body("marker", 0))
            self.phase = "check"
            self.receive(10)

    def receive(self, credit):
        if not hasattr(self, "receiver"):
            self.receiver = self.container.create_receiver(self.conn, self.address)
        self.receiver.flow(credit)

    # -- outcomes of what we sent

    def on_accepted(self, event):
        self.on_outcome(event)

    def on_settled(self, event):
        # Transactional posting is answered with transactional-state, not accepted.
        if self.is_ours(event.link) and event.delivery.remote_state == 0x34:
            self.on_outcome(event)

    def on_rejected(self, event):
        if self.is_ours(event.link):
            self.finish("a message was rejected: %s" % event.delivery.remote.condition)

    def on_outcome(self, event):
        if not self.is_ours(event.link):
            return
        if self.phase == "fill":
            self.plain_done = getattr(self, "plain_done", 0) + 1
            if self.plain_done == self.plain_sent and self.plain_sent >= 2:
                self.phase = "txn-receive"
                self.receive(self.plain_sent)
        elif self.phase == "txn-send":
            self.txn_done = getattr(self, "txn_done", 0) + 1
            if self.txn_done == 3:
                self.phase = "discharge"
                if self.scenario == "send-commit":
                    self.txn.commit()
                else:
                    self.txn.abort()

    # -- transactions

    def on_transaction_declared(self, event):
        self.txn = event.transaction
        log("proton_txn: declared", self.txn.id)
        if self.phase == "declare":
            self.phase = "txn-send"
            self.send_more()
        elif self.phase == "declare-receive":
            self.phase = "txn-accept"
            for dlv in self.to_accept:
                self.txn.accept(dlv)
            if self.scenario == "receive-commit":
                self.txn.commit()
            else:
                self.txn.abort()

    def on_transaction_declare_failed(self, event):
        self.finish("declare refused: %s" % event.delivery.remote.condition)

    def on_transaction_commit_failed(self, event):
        self.finish("commit refused: %s" % event.delivery.remote.condition)

    def on_transaction_committed(self, event):
        log("proton_txn: committed")
        self.after_discharge()

    def on_transaction_aborted(self, event):
        log("proton_txn: rolled back")
        self.after_discharge()

    def after_discharge(self):
        if self.scenario == "receive-rollback":
            self.phase = "redelivery"
            self.redelivered = []
            self.receive(self.plain_sent)
        else:
            self.phase = "marker"
            self.send_more()

    # -- what we receive

    def on_message(self, event):
        dlv, msg = event.delivery, event.message
        if self.phase == "txn-receive":
            self.to_accept = getattr(self, "to_accept", []) + [dlv]
            if len(self.to_accept) == self.plain_sent:
                self.phase = "declare-receive"
                self.container.declare_transaction(self.conn, handler=self)
            return
        if self.phase == "redelivery":
            count = msg.delivery_count
            self.accept(dlv)
            self.redelivered.append((msg.body, count))
            if len(self.redelivered) == self.plain_sent:
                bodies = sorted(b for b, _ in self.redelivered)
                want = sorted("plain-%d" % i for i in range(self.plain_sent))
                if bodies != want:
                    return self.finish("redelivered %s, wanted %s" % (bodies, want))
                low = [c for _, c in self.redelivered if c < 1]
                if low:
                    return self.finish("redelivered with delivery-count %s, wanted it raised" % self.redelivered)
                self.phase = "marker"
                self.send_more()
            return
        if self.phase == "check":
            self.accept(dlv)
            self.received.append(msg.body)
            if msg.body == "marker-0":
                want = ["txn-0", "txn-1", "txn-2", "marker-0"] if self.scenario == "send-commit" else ["marker-0"]
                if self.received != want:
                    return self.finish("received %s, wanted %s" % (self.received, want))
                self.finish(None)
            return
        self.finish("unexpected message %r in phase %s" % (msg.body, self.phase))

    def on_transport_error(self, event):
        self.finish("transport error: %s" % event.transport.condition)


# ---------------------------------------------------------- the coordinator

class Coordinator(MessagingHandler):
    """A queue broker with a hand-written transaction coordinator."""

    def __init__(self, args):
        super().__init__(prefetch=0, auto_accept=False, auto_settle=False)
        self.port = args.port
        self.ready_file = args.ready_file
        self.queues = {}
        self.txns = {}
        self.next_txn = 1

    def on_start(self, event):
        self.acceptor = event.container.listen("127.0.0.1:%d" % self.port)
        print("listening on %d" % self.port, flush=True)
        if self.ready_file:
            with open(self.ready_file, "w") as f:
                f.write("ready\n")

    def queue(self, address):
        return self.queues.setdefault(address, [])

    def on_link_opening(self, event):
        link = event.link
        if link.is_receiver and link.remote_target.type == Terminus.COORDINATOR:
            link.target.type = Terminus.COORDINATOR
            link.target.capabilities.put_object(symbol("amqp:local-transactions"))
            link.open()
            link.flow(100)
            return
        if link.is_sender:
            link.source.address = link.remote_source.address
        else:
            link.target.address = link.remote_target.address
            link.flow(100)
        link.open()

    def on_link_flow(self, event):
        self.pump(event.link)

    def on_sendable(self, event):
        self.pump(event.link)

    def pump(self, link):
        if not link.is_sender:
            return
        q = self.queue(link.source.address)
        while link.credit > 0 and q:
            body = q.pop(0)
            dlv = link.send(Message(body=body, inferred=isinstance(body, bytes)), tag=str(self.next_txn) + "-" + str(id(body)))
            dlv.held = body

    def on_delivery(self, event):
        dlv, link = event.delivery, event.link
        if link.is_sender:
            return self.on_outcome(dlv, link)
        if dlv.partial:
            return
        msg = Message()
        msg.decode(link.recv(dlv.pending))
        link.advance()
        if link.target.type == Terminus.COORDINATOR:
            return self.on_control(dlv, link, msg)
        if isinstance(msg.body, memoryview):
            # Kept as bytes, so that it is sent on as a data section.
            msg.body = bytes(msg.body)
        if link.credit < 50:
            link.flow(100 - link.credit)
        # A transfer's transactional-state shows as the remote state.
        if dlv.remote_state == 0x34:
            txn = bytes(dlv.remote.data[0])
            work = self.txns.get(txn)
            if work is None:
                dlv.local.condition = Condition("amqp:transaction:unknown-id", "no such transaction")
                dlv.update(Delivery.REJECTED)
            else:
                work.append(("post", link.target.address, msg.body))
                dlv.local.data = [txn, Described(ulong(0x24), [])]
                dlv.update(0x34)
            dlv.settle()
            return
        self.queue(link.target.address).append(msg.body)
        dlv.update(Delivery.ACCEPTED)
        dlv.settle()
        for conn_link in self.senders(link.connection, link.target.address):
            self.pump(conn_link)

    def senders(self, conn, address):
        link = conn.link_head(Endpoint.LOCAL_ACTIVE)
        while link:
            if link.is_sender and link.source.address == address:
                yield link
            link = link.next(Endpoint.LOCAL_ACTIVE)

    def on_outcome(self, dlv, link):
        if not dlv.updated or not hasattr(dlv, "held"):
            return
        state = dlv.remote_state
        if state == 0x34:
            txn = bytes(dlv.remote.data[0])
            work = self.txns.get(txn)
            if work is not None:
                work.append(("retire", link.source.address, dlv.held))
                del dlv.held
            return
        if state == Delivery.ACCEPTED:
            del dlv.held
        elif state in (Delivery.RELEASED, Delivery.MODIFIED, Delivery.REJECTED):
            self.queue(link.source.address).insert(0, dlv.held)
            del dlv.held
            self.pump(link)
        if dlv.settled:
            dlv.settle()

    def on_control(self, dlv, link, msg):
        body = msg.body
        if not isinstance(body, Described):
            dlv.local.condition = Condition("amqp:decode-error", "not a control message")
            dlv.update(Delivery.REJECTED)
        elif body.descriptor in DECLARE:
            txn = ("txn-%d" % self.next_txn).encode()
            self.next_txn += 1
            self.txns[txn] = []
            log("coordinator: declared", txn)
            dlv.local.data = [txn]
            dlv.update(0x33)
        elif body.descriptor in DISCHARGE:
            txn, fail = bytes(body.value[0]), len(body.value) > 1 and bool(body.value[1])
            work = self.txns.pop(txn, None)
            if work is None:
                dlv.local.condition = Condition("amqp:transaction:unknown-id", "no such transaction")
                dlv.update(Delivery.REJECTED)
            else:
                log("coordinator:", "rolled back" if fail else "committed", txn, work)
                for kind, address, item in work:
                    if kind == "post" and not fail:
                        self.queue(address).append(item)
                    elif kind == "retire" and fail:
                        self.queue(address).insert(0, item)
                dlv.update(Delivery.ACCEPTED)
                conn_link = link.connection.link_head(Endpoint.LOCAL_ACTIVE)
                while conn_link:
                    self.pump(conn_link)
                    conn_link = conn_link.next(Endpoint.LOCAL_ACTIVE)
        else:
            dlv.local.condition = Condition("amqp:not-implemented", "unknown control message")
            dlv.update(Delivery.REJECTED)
        dlv.settle()
        if link.credit < 50:
            link.flow(100 - link.credit)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["client", "coordinator"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--scenario", choices=["send-commit", "send-rollback", "receive-commit", "receive-rollback"])
    p.add_argument("--address")
    p.add_argument("--ready-file")
    args = p.parse_args()
    if args.mode == "client":
        if not args.scenario:
            p.error("client needs --scenario")
        client = Client(args)
        Container(client).run()
        if client.failure:
            sys.exit(1)
        print("ok", args.scenario)
    else:
        Container(Coordinator(args)).run()


if __name__ == "__main__":
    main()
