#!/usr/bin/env node
// rhea_peer.js - an AMQP 1.0 peer built on rhea, for amqpwire interop tests
// and wire captures.
//
//   node rhea_peer.js server --port P [--max-frame-size N] [--idle-timeout MS]
//                            [--exit-after N] [--ready-file PATH]
//                            [--tls-cert PEM --tls-key PEM [--client-ca PEM]] [--ws]
//   node rhea_peer.js client --port P --scenario NAME
//                            [--sasl anonymous|plain|external|none]
//                            [--user U --password PW] [--count N]
//                            [--cert PEM --key PEM] [--container-id ID]
//                            [--max-frame-size N] [--idle-timeout MS]
//                            [--transport tcp|tls|ws|wss] [--host NAME]
//                            [--ca PEM] [--path P]
//
// server: a tiny queue broker on 127.0.0.1. Any address works; a queue is
//   created on first use. SASL ANONYMOUS and PLAIN (alice/secret) are
//   offered, and clients that skip SASL altogether are accepted too.
//   Messages are stored and forwarded as the exact bytes the producer sent,
//   never beyond the consumer's credit; a consumer's drain is answered (the
//   unused credit is given back with a flow: delivery-count advanced,
//   link-credit 0, drain set). A consumer may carry a selector filter of the
//   form  name = 'value'  (matched against application-properties, else
//   against the properties section). A dynamic source gets a fresh queue
//   named dynamic-<n>. No message-size or link-count limit is set.
//   --tls-cert/--tls-key make the listener TLS. --ws makes it a WebSocket
//   listener (HTTP, or HTTPS with the TLS options; any path; subprotocol
//   AMQPWSB10, else amqp; a handshake offering neither is refused).
//   --client-ca asks TLS clients for a certificate signed by that CA and
//   offers SASL EXTERNAL to those that present one.
//   --exit-after N makes the broker exit once N connections have gone.
//
// client: runs one scenario over one connection, checks what comes back and
//   exits 0 on success, 1 on failure (or after a 30 s time-out).
//   --transport tls|wss verify the server's certificate against --ca (or
//   the system store) and the name --host (default 127.0.0.1, which is also
//   the address connected to). ws|wss connect to ws[s]://HOST:PORT/PATH
//   (--path, default /) offering the subprotocol AMQPWSB10. --cert/--key
//   present a TLS client certificate; --sasl external authenticates with
//   it. --container-id sets the open's container-id (may be empty).
//   Scenarios:
//     basic         send --count messages to q.basic and receive them back
//     messages      14 messages covering every header field, every
//                   properties field (message-id as string, ulong, uuid and
//                   binary), typed message annotations and application
//                   properties and every body kind (data, amqp-sequence,
//                   amqp-value string/map/list/binary/symbol/int/long/
//                   double/timestamp/uuid/boolean/null); each section is
//                   decoded from the bytes received and compared field by
//                   field, with AMQP types, against what was sent
//     large         one 320 KiB data message, sent and received back
//     large4m       one 4 MiB data message (byte i = i % 251), sent
//                   unsettled, accepted, received back, compared
//     dispositions  accepted, rejected, released (redelivered, then
//                   accepted) and a pre-settled send
//     filter-dynamic  a receiver with a selector filter and a dynamic
//                   receiver; a message is sent to the dynamic address
//     heartbeat     open with idle-time-out, stay idle ~3 s, then close
//     heartbeat-peer  ask for an idle-time-out (--idle-timeout, default
//                   1000 ms), open no session and stay idle 4 s: the server
//                   must keep the connection alive with empty frames (fails
//                   on a silence longer than 2 x the idle-time-out)
//     wrong-password  SASL PLAIN alice/WRONG: passes only when the server
//                   refuses with a SASL outcome (authentication failure)
//     drain         3 messages to q.drain (accepted), then a receiver with
//                   credit 2 (no automatic top-up) gets exactly 2, then
//                   drains with credit 5: the 3rd arrives and the drain
//                   completes with link-credit 0 and the delivery-count
//                   advanced by 7
//     many-links    3 sessions x (2 senders + 2 receivers) on
//                   q.many.<session>.<n>, 2 messages per sender
//     reuse-name    sender 'shared-name' on q.reuse sends 1 message; then,
//                   in one batch, a receiver also named 'shared-name' is
//                   attached (its attach written first) and the sender
//                   detached; the message arrives on the receiver. rhea's
//                   own server fails this ('Attach already received')
//     detach-error  a sender on q.err is detached with amqp:internal-error,
//                   then the connection is closed with amqp:connection:forced
//     transfer-before-attach  a transfer on handle 7, which no attach has
//                   named, written with rhea's own frame encoder: passes
//                   when the server ends the session with
//                   amqp:session:unattached-handle (and the connection
//                   then closes cleanly)
//   Every scenario ends with clean detaches, end and close.
'use strict';

const fs = require('fs');
const net = require('net');
const rhea = require('rhea');
const rmessage = require('rhea/lib/message.js');
const rframes = require('rhea/lib/frames.js');
const types = rhea.types;

const HOST = '127.0.0.1';
const SELECTOR_DESCRIPTOR = 0x0000468C00000004; // apache.org:selector-filter:string
const WS_PROTOCOLS = ['AMQPWSB10', 'amqp'];     // in order of preference

// ---------------------------------------------------------------- arguments
function parseArgs(argv) {
    const out = { _: [] };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        if (a.startsWith('--')) {
            const key = a.slice(2);
            const next = argv[i + 1];
            if (next === undefined || next.startsWith('--')) {
                out[key] = true;
            } else {
                out[key] = next;
                i++;
            }
        } else {
            out._.push(a);
        }
    }
    return out;
}

function intArg(args, name, dflt) {
    if (args[name] === undefined) return dflt;
    const v = parseInt(args[name], 10);
    if (Number.isNaN(v)) throw new Error('--' + name + ' needs a number');
    return v;
}

function strArg(args, name, dflt) {
    const v = args[name];
    if (v === undefined) return dflt;
    if (v === true) throw new Error('--' + name + ' needs a value');
    return v;
}

function log(...parts) {
    if (process.env.PEER_QUIET) return;
    console.error('[rhea_peer]', ...parts);
}

// ------------------------------------------------------------------- server
// rhea decodes every incoming message before handing it over. Keep the raw
// encoded bytes next to the decoded message so the broker can forward them
// unchanged (and the client can check the exact types that came back).
const originalDecode = rmessage.decode;
rmessage.decode = function (buffer) {
    const m = originalDecode(buffer);
    Object.defineProperty(m, '__raw', { value: Buffer.from(buffer), enumerable: false });
    return m;
};

function parseSelector(text) {
    const m = /^\s*([A-Za-z_][\w.-]*)\s*=\s*'([^']*)'\s*$/.exec(String(text));
    return m ? { field: m[1], value: m[2] } : null;
}

function selectorMatches(sel, msg) {
    if (!sel) return true;
    const ap = msg.application_properties || {};
    let v = Object.prototype.hasOwnProperty.call(ap, sel.field) ? ap[sel.field] : msg[sel.field];
    if (v !== undefined && v !== null && typeof v === 'object' && typeof v.valueOf === 'function') v = v.valueOf();
    return v !== undefined && v !== null && String(v) === sel.value;
}

// Pull the selector text out of a filter-set value, whatever shape rhea
// decoded it into (described type, Typed wrapper or plain string).
function filterText(v) {
    if (v === null || v === undefined) return undefined;
    if (typeof v === 'string') return v;
    if (v.value !== undefined && typeof v.value === 'string') return v.value;
    if (v.value !== undefined) return filterText(v.value);
    return undefined;
}

// The Sec-WebSocket-Protocol value to answer with, or false.
function pickWsProtocol(offered) {
    for (const p of WS_PROTOCOLS) if (offered.has(p)) return p;
    return false;
}

function offeredWsProtocols(req) {
    const h = req.headers['sec-websocket-protocol'];
    return new Set(h ? String(h).split(',').map((s) => s.trim()).filter(Boolean) : []);
}

function runServer(args) {
    const port = intArg(args, 'port');
    if (!port) throw new Error('server needs --port');
    const exitAfter = intArg(args, 'exit-after', 0);
    const certFile = strArg(args, 'tls-cert');
    const keyFile = strArg(args, 'tls-key');
    if (Boolean(certFile) !== Boolean(keyFile)) throw new Error('--tls-cert and --tls-key go together');
    const useTls = Boolean(certFile);
    const clientCa = strArg(args, 'client-ca');
    if (clientCa && !useTls) throw new Error('--client-ca needs --tls-cert and --tls-key');
    const useWs = args.ws === true;
    if (args.ws !== undefined && args.ws !== true) throw new Error('--ws takes no value');
    const container = rhea.create_container({ id: 'amqpwire-rhea-broker' });
    container.sasl_server_mechanisms.enable_anonymous();
    container.sasl_server_mechanisms.enable_plain(function (user, pass) {
        return user === 'alice' && pass === 'secret';
    });

    const queues = new Map();
    let dynamicCounter = 0;
    let gone = 0;

    function getQueue(address) {
        let q = queues.get(address);
        if (!q) {
            q = { address: address, messages: [], consumers: [] };
            queues.set(address, q);
            log('created queue', address);
        }
        return q;
    }

    // rhea's sendable() looks only at the link credit, and sender.send()
    // queues a delivery in the session even without credit (it goes out once
    // credit arrives, and blocks every later delivery of the session until
    // then). Count what was handed to rhea but is not on the wire yet, so the
    // broker never hands over more than the consumer's credit.
    function unsent(sender) {
        const list = sender.__handed || (sender.__handed = []);
        const next = sender.session.outgoing.next_pending_delivery;
        while (list.length && list[0].id < next) list.shift();
        return list.length;
    }

    function available(sender) {
        return sender.sendable() ? sender.credit - unsent(sender) : 0;
    }

    function pump(q) {
        let progress = true;
        while (progress && q.messages.length) {
            progress = false;
            for (const sender of q.consumers) {
                if (available(sender) <= 0) continue;
                const idx = q.messages.findIndex((e) => selectorMatches(sender.__selector, e.msg));
                if (idx < 0) continue;
                const entry = q.messages.splice(idx, 1)[0];
                const delivery = sender.send(entry.raw, undefined, 0);
                sender.__handed.push(delivery);
                delivery.__entry = entry;
                delivery.__queue = q;
                progress = true;
            }
        }
        for (const sender of q.consumers) answerDrain(sender, q);
    }

    // A consumer asked to drain and nothing more can be sent to it: give the
    // remaining credit back (rhea then advances the delivery-count by the
    // unused credit and sends a flow with link-credit 0 and drain set).
    function answerDrain(sender, q) {
        if (!sender._draining || sender.credit <= 0 || available(sender) <= 0) return;
        if (q.messages.some((e) => selectorMatches(sender.__selector, e.msg))) return;
        log('drain answered on', sender.name, 'credit returned', sender.credit - unsent(sender));
        sender.set_drained(true);
        sender.connection._register();
    }

    function dropConsumer(sender) {
        const q = sender.__queue;
        if (!q) return;
        const i = q.consumers.indexOf(sender);
        if (i >= 0) q.consumers.splice(i, 1);
    }

    container.on('connection_open', function (ctx) {
        log('connection open from container', ctx.connection.remote.open.container_id);
    });

    // Peer attached a sender: we receive into the target's queue.
    container.on('receiver_open', function (ctx) {
        const link = ctx.receiver;
        const remote = link.remote.attach;
        const tgt = remote.target || {};
        link.set_target({ address: tgt.address });
        if (remote.source) link.set_source({ address: remote.source.address });
        link.local.attach.snd_settle_mode = remote.snd_settle_mode;
        link.local.attach.rcv_settle_mode = remote.rcv_settle_mode;
        link.__queue = getQueue(tgt.address || '');
        log('receiver attached', link.name, '->', tgt.address);
    });

    container.on('message', function (ctx) {
        const q = ctx.receiver.__queue;
        const raw = ctx.message.__raw;
        q.messages.push({ raw: raw, msg: ctx.message });
        log('stored message on', q.address, 'size', raw.length);
        pump(q);
    });

    // Peer attached a receiver: we send from the source's queue.
    container.on('sender_open', function (ctx) {
        const link = ctx.sender;
        const remote = link.remote.attach;
        const src = remote.source || {};
        let address = src.address;
        const local = {};
        if (src.dynamic) {
            address = 'dynamic-' + (++dynamicCounter);
            local.dynamic = true;
        }
        local.address = address;
        if (src.filter) {
            for (const key of Object.keys(src.filter)) {
                const text = filterText(src.filter[key]);
                const sel = parseSelector(text);
                if (sel) {
                    link.__selector = sel;
                    local.filter = {};
                    local.filter[key] = types.wrap_described(text, SELECTOR_DESCRIPTOR);
                    break;
                }
            }
        }
        link.set_source(local);
        if (remote.target) link.set_target({ address: remote.target.address });
        link.local.attach.snd_settle_mode = remote.snd_settle_mode;
        link.local.attach.rcv_settle_mode = remote.rcv_settle_mode;
        const q = getQueue(address || '');
        link.__queue = q;
        link.__handed = [];
        q.consumers.push(link);
        log('sender attached', link.name, '<-', address, link.__selector ? 'selector' : '');
    });

    container.on('sendable', function (ctx) {
        if (ctx.sender.__queue) pump(ctx.sender.__queue);
    });
    // A flow with drain set but (after what is queued) nothing to send:
    // 'sendable' may not fire, so look at every flow.
    container.on('sender_flow', function (ctx) {
        if (ctx.sender.__queue) pump(ctx.sender.__queue);
    });
    container.on('accepted', function (ctx) {
        log('delivery accepted by consumer');
    });
    container.on('rejected', function (ctx) {
        log('delivery rejected by consumer; dropped');
    });
    container.on('released', function (ctx) {
        const d = ctx.delivery;
        if (d.__entry && d.__queue) {
            log('delivery released by consumer; requeued');
            d.__queue.messages.unshift(d.__entry);
            pump(d.__queue);
        }
    });
    container.on('sender_close', function (ctx) {
        if (ctx.sender.error) log('consumer detached with error', JSON.stringify(ctx.sender.error));
        dropConsumer(ctx.sender);
    });
    container.on('receiver_close', function (ctx) {
        if (ctx.receiver.error) log('producer detached with error', JSON.stringify(ctx.receiver.error));
    });
    container.on('session_close', function () {});
    container.on('error', function (e) { log('error:', e && e.message); });
    function forgetConnection(conn) {
        conn.each_link(function (l) { if (l.is_sender()) dropConsumer(l); });
    }
    container.on('connection_close', function (ctx) {
        if (ctx.error) log('connection closed by peer with error', ctx.error.condition, ctx.error.description);
        forgetConnection(ctx.connection);
    });
    container.on('disconnected', function (ctx) { forgetConnection(ctx.connection); });

    // Options for each accepted connection. reconnect:false: rhea would
    // otherwise re-open a server-side connection that the peer closed with
    // amqp:connection:forced.
    const connOpts = { reconnect: false };
    if (args['max-frame-size'] !== undefined) connOpts.max_frame_size = intArg(args, 'max-frame-size');
    if (args['idle-timeout'] !== undefined) connOpts.idle_time_out = intArg(args, 'idle-timeout');
    // EXTERNAL is offered to TLS clients whose certificate verified.
    if (clientCa) connOpts.enable_sasl_external = true;

    function connectionGone() {
        gone++;
        log('connection gone (' + gone + ')');
        if (exitAfter && gone >= exitAfter) {
            setTimeout(function () { process.exit(0); }, 100);
        }
    }

    let server;
    const scheme = (useWs ? (useTls ? 'wss' : 'ws') : (useTls ? 'amqps' : 'amqp'));
    if (useWs) {
        const http = require('http');
        const https = require('https');
        const WebSocket = require('ws');
        server = useTls
            ? https.createServer({ cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile) })
            : http.createServer();
        server.on('request', function (req, res) {
            res.writeHead(426, { 'Content-Type': 'text/plain', Upgrade: 'websocket' });
            res.end('AMQP over WebSocket only (subprotocol AMQPWSB10)\n');
        });
        const wss = new WebSocket.WebSocketServer({
            server: server,
            perMessageDeflate: false,
            maxPayload: 0x7fffffff,
            handleProtocols: function (offered) { return pickWsProtocol(offered); },
            verifyClient: function (info, cb) {
                const offered = offeredWsProtocols(info.req);
                if (pickWsProtocol(offered)) return cb(true);
                log('refusing WebSocket handshake offering [' + Array.from(offered).join(', ') + ']');
                cb(false, 400, 'AMQP WebSocket subprotocol (AMQPWSB10 or amqp) required');
            },
        });
        wss.on('connection', function (ws, req) {
            log('WebSocket connection on', req.url, 'subprotocol', ws.protocol);
            ws.on('close', connectionGone);
            container.websocket_accept(ws, Object.assign({}, connOpts));
        });
        wss.on('error', function (e) { log('websocket server error:', e.message); });
        server.listen(port, HOST);
    } else {
        const listenOpts = Object.assign({ port: port, host: HOST }, connOpts);
        if (useTls) {
            listenOpts.transport = 'tls';
            listenOpts.cert = fs.readFileSync(certFile);
            listenOpts.key = fs.readFileSync(keyFile);
            if (clientCa) {
                listenOpts.ca = [fs.readFileSync(clientCa)];
                listenOpts.requestCert = true;
                listenOpts.rejectUnauthorized = false; // a client without one may still use PLAIN
            }
        }
        server = container.listen(listenOpts);
        // rhea reports no event when a cleanly closed socket goes away, so
        // count finished connections on the sockets themselves (for TLS this
        // is the underlying TCP socket).
        server.on('connection', function (socket) { socket.on('close', connectionGone); });
        if (useTls) server.on('tlsClientError', function (e) { log('TLS handshake failed:', e.message); });
    }
    server.on('listening', function () {
        log('listening on', scheme + '://' + HOST + ':' + port);
        if (args['ready-file']) fs.writeFileSync(args['ready-file'], String(process.pid) + '\n');
    });
    server.on('error', function (e) { console.error('listen failed:', e.message); process.exit(1); });
    for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, function () { process.exit(0); });
}

// ------------------------------------------------------------------- client
const CREATION_TIME = Date.UTC(2026, 10, 22, 12, 0, 0); // fixed, so captures are reproducible
const EXPIRY_TIME = CREATION_TIME + 3600 * 1000;
const UUID_A = '9c2c3f6e-8d4e-4f43-9d0b-6c1e2a7b5f10';
const UUID_B = '1b4e28ba-2fa1-11d2-883f-0016d3cca427';
const LARGE_SIZE = 320 * 1024;
const LARGE4M_SIZE = 4 * 1024 * 1024;

function largeBody() {
    const b = Buffer.alloc(LARGE_SIZE);
    for (let i = 0; i < b.length; i++) b[i] = (i * 31 + 7) & 0xff;
    return b;
}

function large4mBody() {
    const b = Buffer.alloc(LARGE4M_SIZE);
    for (let i = 0; i < b.length; i++) b[i] = i % 251;
    return b;
}

// --- typed values -----------------------------------------------------------
// The messages scenario describes every value as {t: AMQP type, v: value}.
// The same description is turned into what rhea sends (toTyped) and is
// compared with what the received bytes decode to (canon), so a type that
// changes on the way (int -> long, string -> symbol, ...) is caught.
const T = {
    null: () => ({ t: 'null' }),
    bool: (v) => ({ t: 'boolean', v: v }),
    ubyte: (v) => ({ t: 'ubyte', v: v }),
    uint: (v) => ({ t: 'uint', v: v }),
    ulong: (v) => ({ t: 'ulong', v: String(v) }),
    int: (v) => ({ t: 'int', v: v }),
    long: (v) => ({ t: 'long', v: String(v) }),
    double: (v) => ({ t: 'double', v: v }),
    ts: (v) => ({ t: 'timestamp', v: v }),
    uuid: (v) => ({ t: 'uuid', v: v }),
    bin: (v) => ({ t: 'binary', v: Buffer.from(v).toString('hex') }),
    str: (v) => ({ t: 'string', v: v }),
    sym: (v) => ({ t: 'symbol', v: v }),
    list: (items) => ({ t: 'list', v: items }),
    map: (pairs) => ({ t: 'map', v: pairs }),
};

function toTyped(d) {
    switch (d.t) {
    case 'null': return types.Null();
    case 'boolean': return types.wrap_boolean(d.v);
    case 'ubyte': return types.wrap_ubyte(d.v);
    case 'uint': return types.wrap_uint(d.v);
    case 'ulong': return types.wrap_ulong(Number(d.v));
    case 'int': return types.wrap_int(d.v);
    case 'long': return types.wrap_long(Number(d.v));
    case 'double': return types.wrap_double(d.v);
    case 'timestamp': return types.wrap_timestamp(d.v);
    case 'uuid': return types.wrap_uuid(rhea.string_to_uuid(d.v));
    case 'binary': return types.wrap_binary(Buffer.from(d.v, 'hex'));
    case 'string': return types.wrap_string(d.v);
    case 'symbol': return types.wrap_symbol(d.v);
    case 'list': return d.v.length ? types.List32(d.v.map(toTyped)) : types.List0();
    case 'map': {
        const items = [];
        for (const [k, v] of d.v) { items.push(toTyped(k)); items.push(toTyped(v)); }
        return types.Map32(items);
    }
    default: throw new Error('toTyped: unknown type ' + d.t);
    }
}

function bigOf(v, signed) {
    if (Buffer.isBuffer(v)) return (signed ? v.readBigInt64BE(0) : v.readBigUInt64BE(0)).toString();
    return String(v);
}

// A rhea Typed value (as read by types.Reader) -> {t, v}.
function canon(x) {
    if (x === undefined || x === null) return T.null();
    if (x.descriptor) {
        const inner = Object.assign(Object.create(Object.getPrototypeOf(x)), x);
        delete inner.descriptor;
        return { t: 'described', d: canon(x.descriptor), v: canon(inner) };
    }
    const v = x.value;
    switch (x.type.name) {
    case 'Null': return T.null();
    case 'Boolean': return T.bool(v !== 0);
    case 'True': return T.bool(true);
    case 'False': return T.bool(false);
    case 'Ubyte': return T.ubyte(v);
    case 'Ushort': return { t: 'ushort', v: v };
    case 'Uint': case 'SmallUint': return T.uint(v);
    case 'Uint0': return T.uint(0);
    case 'Ulong': case 'SmallUlong': return { t: 'ulong', v: bigOf(v, false) };
    case 'Ulong0': return T.ulong(0);
    case 'Byte': return { t: 'byte', v: v };
    case 'Short': return { t: 'short', v: v };
    case 'Int': case 'SmallInt': return T.int(v);
    case 'Long': case 'SmallLong': return { t: 'long', v: bigOf(v, true) };
    case 'Float': return { t: 'float', v: v };
    case 'Double': return T.double(v);
    case 'Timestamp': return T.ts(v instanceof Date ? v.getTime() : Number(bigOf(v, true)));
    case 'Uuid': return T.uuid(rhea.uuid_to_string(v));
    case 'Vbin8': case 'Vbin32': return T.bin(v);
    case 'Str8': case 'Str32': return T.str(v);
    case 'Sym8': case 'Sym32': return T.sym(v);
    case 'CharUTF32': return { t: 'char', v: String.fromCodePoint(v) };
    case 'List0': return T.list([]);
    case 'List8': case 'List32': return T.list(v.map(canon));
    case 'Map8': case 'Map32': {
        const pairs = [];
        for (let i = 0; i + 1 < v.length; i += 2) pairs.push([canon(v[i]), canon(v[i + 1])]);
        return T.map(pairs);
    }
    case 'Array8': case 'Array32': return { t: 'array', v: v.map(canon) };
    default: return { t: x.type.name, v: Buffer.isBuffer(v) ? v.toString('hex') : v };
    }
}

// Maps compare without regard to the order of their entries.
function normalize(d) {
    if (Array.isArray(d)) return d.map(normalize);
    if (d === null || typeof d !== 'object') return d;
    const o = {};
    for (const k of Object.keys(d)) o[k] = normalize(d[k]);
    if (o.t === 'map') o.v = o.v.slice().sort((a, b) => (JSON.stringify(a[0]) < JSON.stringify(b[0]) ? -1 : 1));
    return o;
}

function same(a, b) {
    return JSON.stringify(normalize(a)) === JSON.stringify(normalize(b));
}

function show(d) {
    return JSON.stringify(d);
}

const HEADER_FIELDS = ['durable', 'priority', 'ttl', 'first_acquirer', 'delivery_count'];
const HEADER_DEFAULTS = { durable: T.bool(false), priority: T.ubyte(4), ttl: T.null(), first_acquirer: T.bool(false), delivery_count: T.uint(0) };
const PROPERTY_FIELDS = ['message_id', 'user_id', 'to', 'subject', 'reply_to', 'correlation_id', 'content_type',
    'content_encoding', 'absolute_expiry_time', 'creation_time', 'group_id', 'group_sequence', 'reply_to_group_id'];
const SECTION_NAMES = {
    0x70: 'header', 0x71: 'delivery_annotations', 0x72: 'message_annotations', 0x73: 'properties',
    0x74: 'application_properties', 0x75: 'data', 0x76: 'amqp_sequence', 0x77: 'amqp_value', 0x78: 'footer',
};
const SYMBOLIC_SECTIONS = {
    'amqp:header:list': 0x70, 'amqp:delivery-annotations:map': 0x71, 'amqp:message-annotations:map': 0x72,
    'amqp:properties:list': 0x73, 'amqp:application-properties:map': 0x74, 'amqp:data:binary': 0x75,
    'amqp:amqp-sequence:list': 0x76, 'amqp:value:*': 0x77, 'amqp:footer:map': 0x78,
};

function isNull(x) {
    return x === undefined || x === null || (x.type && x.type.name === 'Null');
}

// The fields of a message as {header: {...}, properties: {...},
// message_annotations, application_properties, body}, each a {t, v} value.
function describeSpec(spec) {
    const out = { header: {}, properties: {}, message_annotations: null, application_properties: null, body: null };
    for (const f of HEADER_FIELDS) out.header[f] = (spec.header && spec.header[f]) || HEADER_DEFAULTS[f];
    for (const f of PROPERTY_FIELDS) out.properties[f] = (spec.properties && spec.properties[f]) || T.null();
    if (spec.message_annotations) out.message_annotations = T.map(spec.message_annotations);
    if (spec.application_properties) out.application_properties = T.map(spec.application_properties);
    out.body = spec.body;
    return JSON.parse(JSON.stringify(out));
}

function describeRaw(raw) {
    const out = { header: {}, properties: {}, message_annotations: null, application_properties: null, body: null };
    for (const f of HEADER_FIELDS) out.header[f] = HEADER_DEFAULTS[f];
    for (const f of PROPERTY_FIELDS) out.properties[f] = T.null();
    const reader = new types.Reader(raw);
    while (reader.remaining()) {
        const s = reader.read();
        if (!s.descriptor) throw new Error('message section without descriptor');
        const dv = s.descriptor.value;
        const code = typeof dv === 'number' ? dv : SYMBOLIC_SECTIONS[dv];
        const name = SECTION_NAMES[code];
        if (name === 'header' || name === 'properties') {
            const fields = name === 'header' ? HEADER_FIELDS : PROPERTY_FIELDS;
            const vals = s.value || [];
            if (vals.length > fields.length) throw new Error(name + ' has ' + vals.length + ' fields');
            fields.forEach(function (f, i) { if (!isNull(vals[i])) out[name][f] = canon(vals[i]); });
        } else if (name === 'message_annotations' || name === 'application_properties') {
            const inner = Object.assign(Object.create(Object.getPrototypeOf(s)), s);
            delete inner.descriptor;
            out[name] = canon(inner);
        } else if (name === 'data' || name === 'amqp_sequence') {
            const kind = name === 'data' ? 'data' : 'sequence';
            const inner = Object.assign(Object.create(Object.getPrototypeOf(s)), s);
            delete inner.descriptor;
            if (!out.body) out.body = { kind: kind, v: [] };
            if (out.body.kind !== kind) throw new Error('mixed body sections');
            out.body.v.push(kind === 'data' ? canon(inner).v : canon(inner));
        } else if (name === 'amqp_value') {
            if (out.body) throw new Error('second body section');
            const inner = Object.assign(Object.create(Object.getPrototypeOf(s)), s);
            delete inner.descriptor;
            out.body = { kind: 'value', v: canon(inner) };
        } else if (name !== 'delivery_annotations' && name !== 'footer') {
            throw new Error('unknown section ' + JSON.stringify(dv));
        }
    }
    return out;
}

// Field-by-field differences between what was sent and what came back.
function diffMessages(want, got) {
    const diffs = [];
    for (const sec of ['header', 'properties']) {
        for (const f of Object.keys(want[sec])) {
            if (!same(want[sec][f], got[sec][f])) diffs.push(sec + '.' + f + ': sent ' + show(want[sec][f]) + ' got ' + show(got[sec][f]));
        }
    }
    for (const sec of ['message_annotations', 'application_properties']) {
        const w = want[sec], g = got[sec];
        if (!w || !g) {
            if (w !== g) diffs.push(sec + ': sent ' + show(w) + ' got ' + show(g));
            continue;
        }
        const find = (pairs, k) => pairs.find((p) => same(p[0], k));
        for (const [k, v] of w.v) {
            const p = find(g.v, k);
            if (!p) diffs.push(sec + '[' + show(k) + '] missing');
            else if (!same(v, p[1])) diffs.push(sec + '[' + show(k) + ']: sent ' + show(v) + ' got ' + show(p[1]));
        }
        for (const [k] of g.v) if (!find(w.v, k)) diffs.push(sec + '[' + show(k) + '] not sent but received');
    }
    if (!same(want.body, got.body)) diffs.push('body: sent ' + show(want.body) + ' got ' + show(got.body));
    return diffs;
}

// A message description -> the object rhea's sender.send() encodes.
function rheaMessage(spec) {
    const m = {};
    const plain = (d) => (d.t === 'binary' ? Buffer.from(d.v, 'hex') : d.t === 'ulong' || d.t === 'long' ? Number(d.v) : d.v);
    for (const [f, d] of Object.entries(spec.header || {})) m[f] = plain(d);
    for (const [f, d] of Object.entries(spec.properties || {})) {
        m[f] = (f === 'message_id' || f === 'correlation_id') ? toTyped(d) : plain(d);
    }
    if (spec.message_annotations) {
        m.message_annotations = {};
        for (const [k, v] of spec.message_annotations) {
            if (k.t !== 'symbol') throw new Error('annotation keys are symbols');
            m.message_annotations[k.v] = toTyped(v);
        }
    }
    if (spec.application_properties) {
        m.application_properties = {};
        for (const [k, v] of spec.application_properties) {
            if (k.t !== 'string') throw new Error('application property keys are strings');
            m.application_properties[k.v] = toTyped(v);
        }
    }
    const b = spec.body;
    if (b.kind === 'data') {
        if (b.v.length !== 1) throw new Error('one data section only');
        m.body = rhea.message.data_section(Buffer.from(b.v[0], 'hex'));
    } else if (b.kind === 'sequence') {
        if (b.v.length !== 1) throw new Error('one sequence section only');
        m.body = rhea.message.sequence_section(b.v[0].v.map(toTyped));
    } else {
        m.body = toTyped(b.v);
    }
    return m;
}

function fullProperties(n, messageId, correlationId, subject, contentType) {
    return {
        message_id: messageId,
        user_id: T.bin('amqpwire'),
        to: T.str('q.messages'),
        subject: T.str(subject),
        reply_to: T.str('q.replies'),
        correlation_id: correlationId,
        content_type: T.sym(contentType),
        content_encoding: T.sym('identity'),
        absolute_expiry_time: T.ts(EXPIRY_TIME),
        creation_time: T.ts(CREATION_TIME),
        group_id: T.str('group-a'),
        group_sequence: T.uint(n),
        reply_to_group_id: T.str('group-replies'),
    };
}

function simpleMessage(n, subject, body) {
    return {
        properties: { message_id: T.str('msg-' + n), to: T.str('q.messages'), subject: T.str(subject) },
        application_properties: [[T.str('seq'), T.int(n)]],
        body: { kind: 'value', v: body },
    };
}

// Every header field, every properties field, typed annotations and
// application properties, and every body kind. Kept in step with
// rich_messages() in proton_peer.py.
function richMessageSpecs() {
    const specs = [];
    specs.push({
        header: { durable: T.bool(true), priority: T.ubyte(7), ttl: T.uint(60000), first_acquirer: T.bool(true), delivery_count: T.uint(0) },
        properties: fullProperties(1, T.str('msg-1'), T.str('corr-1'), 'data-body', 'application/octet-stream'),
        message_annotations: [
            [T.sym('x-opt-string'), T.str('bar')],
            [T.sym('x-opt-int'), T.int(42)],
            [T.sym('x-opt-long'), T.long(1234567890123)],
            [T.sym('x-opt-double'), T.double(2.5)],
            [T.sym('x-opt-boolean'), T.bool(true)],
            [T.sym('x-opt-timestamp'), T.ts(CREATION_TIME + 123)],
            [T.sym('x-opt-uuid'), T.uuid(UUID_A)],
            [T.sym('x-opt-binary'), T.bin([1, 2, 3, 4])],
            [T.sym('x-opt-symbol'), T.sym('annotation-symbol')],
        ],
        application_properties: [
            [T.str('a-string'), T.str('text')],
            [T.str('an-int'), T.int(-7)],
            [T.str('a-long'), T.long(1234567890123)],
            [T.str('a-negative-long'), T.long(-1234567890123)],
            [T.str('a-double'), T.double(3.25)],
            [T.str('a-boolean'), T.bool(true)],
            [T.str('a-false'), T.bool(false)],
            [T.str('a-null'), T.null()],
            [T.str('a-timestamp'), T.ts(CREATION_TIME)],
            [T.str('a-uuid'), T.uuid(UUID_A)],
            [T.str('a-binary'), T.bin([1, 2, 3, 4])],
            [T.str('a-symbol'), T.sym('sym')],
        ],
        body: { kind: 'data', v: [Buffer.from([...Array(16).keys()]).toString('hex')] },
    });
    specs.push({
        header: { durable: T.bool(false), priority: T.ubyte(4), ttl: T.uint(30000), first_acquirer: T.bool(false), delivery_count: T.uint(2) },
        properties: fullProperties(2, T.ulong(2), T.uuid(UUID_B), 'string-body', 'text/plain'),
        message_annotations: [[T.sym('x-opt-foo'), T.str('baz')]],
        application_properties: [[T.str('seq'), T.int(2)], [T.str('flag'), T.bool(false)]],
        body: { kind: 'value', v: T.str('hello, amqpwire') },
    });
    specs.push({
        header: { durable: T.bool(true), priority: T.ubyte(1), ttl: T.uint(10000) },
        properties: fullProperties(3, T.uuid(UUID_A), T.bin('corr-3'), 'map-body', 'application/x-amqp-map'),
        message_annotations: [[T.sym('x-opt-foo'), T.str('qux')], [T.sym('x-opt-when'), T.ts(CREATION_TIME)]],
        application_properties: [[T.str('seq'), T.int(3)], [T.str('ratio'), T.double(-0.5)]],
        body: { kind: 'value', v: T.map([
            [T.str('key'), T.str('value')],
            [T.str('n'), T.int(3)],
            [T.str('nested'), T.map([[T.str('list'), T.list([T.int(1), T.int(2), T.int(3)])]])],
        ]) },
    });
    specs.push({
        properties: { message_id: T.bin('msg-4'), to: T.str('q.messages'), subject: T.str('list-body') },
        application_properties: [[T.str('seq'), T.int(4)]],
        body: { kind: 'value', v: T.list([T.str('one'), T.int(2), T.double(3.5), T.bool(true), T.null()]) },
    });
    specs.push({
        properties: { message_id: T.str('msg-5'), to: T.str('q.messages'), subject: T.str('sequence-body'), correlation_id: T.ulong(5) },
        application_properties: [[T.str('seq'), T.int(5)]],
        body: { kind: 'sequence', v: [T.list([T.int(1), T.str('two'), T.int(3)])] },
    });
    specs.push(simpleMessage(6, 'binary-body', T.bin([0, 1, 2, 0xff])));
    specs.push(simpleMessage(7, 'symbol-body', T.sym('a-symbol-body')));
    specs.push(simpleMessage(8, 'int-body', T.int(-123456)));
    specs.push(simpleMessage(9, 'long-body', T.long(-9876543210)));
    specs.push(simpleMessage(10, 'double-body', T.double(6.02214076e23)));
    specs.push(simpleMessage(11, 'timestamp-body', T.ts(CREATION_TIME + 1)));
    specs.push(simpleMessage(12, 'uuid-body', T.uuid(UUID_B)));
    specs.push(simpleMessage(13, 'boolean-body', T.bool(true)));
    specs.push(simpleMessage(14, 'null-body', T.null()));
    return specs;
}

function idOf(msg) {
    const id = msg.message_id;
    if (Buffer.isBuffer(id)) return 'uuid:' + rhea.uuid_to_string(id);
    if (id && typeof id === 'object' && id.value !== undefined) return String(id.value);
    return String(id);
}

const NO_SESSION_SCENARIOS = new Set(['heartbeat-peer', 'wrong-password']);

function runClient(args) {
    const port = intArg(args, 'port');
    const scenario = args.scenario || 'basic';
    if (!port) throw new Error('client needs --port');
    let saslMode = args.sasl || 'anonymous';
    const count = intArg(args, 'count', 1);
    const transport = strArg(args, 'transport', 'tcp');
    const host = strArg(args, 'host', HOST);
    const caFile = strArg(args, 'ca');
    const wsPath = strArg(args, 'path', '/');
    const tag = 'rhea';
    let user = args.user;
    let password = args.password;
    if (scenario === 'wrong-password') {
        saslMode = 'plain';
        user = user || 'alice';
        password = password || 'WRONG';
    }

    const container = rhea.create_container({ id: 'amqpwire-rhea-client' });
    const opts = { host: host, port: port, hostname: args.host === undefined ? 'localhost' : host, reconnect: false };
    if (saslMode === 'anonymous') {
        const mechs = rhea.sasl.client_mechanisms();
        mechs.enable_anonymous();
        opts.sasl_mechanisms = mechs;
    } else if (saslMode === 'plain') {
        opts.username = user || 'alice';
        opts.password = password || 'secret';
    } else if (saslMode === 'external') {
        if (!args.cert) throw new Error('--sasl external needs --cert and --key');
        opts.enable_sasl_external = true;
    } else if (saslMode !== 'none') {
        throw new Error('unknown --sasl ' + saslMode);
    }
    if (args['max-frame-size'] !== undefined) opts.max_frame_size = intArg(args, 'max-frame-size');
    const idleDefault = scenario === 'heartbeat-peer' ? 1000 : undefined;
    const idleTimeout = intArg(args, 'idle-timeout', idleDefault);
    if (idleTimeout !== undefined) opts.idle_time_out = idleTimeout;

    // The WebSocket of a ws/wss connection (rhea only sees a wrapper).
    let rawWs = null;
    const certFile = strArg(args, 'cert');
    const keyFile = strArg(args, 'key');
    if (Boolean(certFile) !== Boolean(keyFile)) throw new Error('--cert and --key go together');
    if (transport === 'tls') {
        opts.transport = 'tls';
        if (certFile) {
            opts.cert = fs.readFileSync(certFile);
            opts.key = fs.readFileSync(keyFile);
        }
        if (caFile) opts.ca = [fs.readFileSync(caFile)];
        opts.rejectUnauthorized = true;
        // rhea uses host as the TLS server name; SNI must not carry an IP
        // address (node warns), but the certificate is still checked
        // against the address.
        if (net.isIP(host)) opts.servername = '';
    } else if (transport === 'ws' || transport === 'wss') {
        const WebSocket = require('ws');
        class TrackedWebSocket extends WebSocket {
            constructor(...a) { super(...a); rawWs = this; }
        }
        const path = wsPath.startsWith('/') ? wsPath : '/' + wsPath;
        const hostPart = net.isIPv6(host) ? '[' + host + ']' : host;
        const url = transport + '://' + hostPart + ':' + port + path;
        const wsOpts = { perMessageDeflate: false, maxPayload: 0x7fffffff };
        if (transport === 'wss') {
            if (caFile) wsOpts.ca = fs.readFileSync(caFile);
            wsOpts.rejectUnauthorized = true;
        }
        opts.connection_details = container.websocket_connect(TrackedWebSocket)(url, ['AMQPWSB10'], wsOpts);
        log('connecting to', url);
    } else if (transport !== 'tcp') {
        throw new Error('unknown --transport ' + transport + ' (tcp, tls, ws, wss)');
    }

    let finished = false;
    let weClosed = false;
    let sessionRefused = false;
    const timer = setTimeout(function () { fail('timed out'); }, 30000);

    function fail(why) {
        if (finished) return;
        finished = true;
        console.error('[rhea_peer] FAILED:', why);
        clearTimeout(timer);
        process.exit(1);
    }

    function succeed(note) {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        console.error('[rhea_peer] OK', scenario + (note ? ' (' + note + ')' : ''));
        process.exit(0);
    }

    // Call fn once the underlying socket (or WebSocket) has closed.
    function whenSocketGone(fn) {
        if (rawWs) {
            if (rawWs.readyState === 3) fn(); else rawWs.once('close', fn);
            return;
        }
        const sock = conn.socket;
        if (!sock || sock.destroyed) fn(); else sock.once('close', fn);
    }

    // Call fn(chunk) for every chunk of bytes that arrives.
    function onIncoming(fn) {
        if (rawWs) rawWs.on('message', fn); else conn.socket.on('data', fn);
    }

    function closeConnection(error) {
        weClosed = true;
        conn.close(error);
    }

    const conn = container.connect(opts);
    // rhea replaces an empty container_id option with its own: set the open's field
    // itself (the open is written once the socket connects).
    if (args['container-id'] !== undefined) {
        conn.local.open.container_id = args['container-id'] === true ? '' : args['container-id'];
    }
    let session = null;
    const sessions = [];
    const links = [];

    function shutdown() {
        // detach every link (closed=true), then end every session, then close.
        let open = links.length;
        const endSessions = function () { for (const s of sessions) s.close(); };
        if (open === 0) { endSessions(); return; }
        for (const l of links) {
            l.once(l.is_sender() ? 'sender_close' : 'receiver_close', function () {
                if (--open === 0) endSessions();
            });
            l.close();
        }
    }

    conn.on('session_close', function () {
        if (sessions.every(function (s) { return s.is_closed(); })) closeConnection();
    });
    conn.on('connection_close', function (ctx) {
        // The peer's close arrived without error. rhea ends the socket once
        // its own close has gone out; report success when the socket is gone.
        if (!weClosed) return fail('connection closed before the scenario finished (by the peer or by rhea\'s idle time-out)');
        log('connection closed');
        if (scenario === 'transfer-before-attach' && !sessionRefused) {
            return fail('transfer-before-attach: the connection closed, but the session was not ended with amqp:session:unattached-handle');
        }
        whenSocketGone(function () { succeed(); });
    });
    conn.on('disconnected', function (ctx) {
        if (scenario === 'detach-error' && weClosed && !ctx.error) {
            return succeed('socket closed after our close was sent');
        }
        if (scenario === 'reuse-name') {
            console.error('[rhea_peer] reuse-name: the server dropped the connection; rhea\'s own server does this ' +
                "when an attach reuses the name of a link it has not seen detached yet ('Attach already received', a known rhea bug)");
        }
        fail('disconnected before clean close' + (ctx.error ? ': ' + ctx.error : ''));
    });
    conn.on('connection_error', function (ctx) {
        const e = ctx.error || {};
        const text = 'condition=' + e.condition + ' description=' + JSON.stringify(e.description || e.message);
        if (scenario === 'wrong-password') {
            console.error('[rhea_peer] wrong-password: connection refused:', text);
            // rhea reports a SASL outcome of auth (1) as 'Failed to authenticate: 1'
            // with amqp:unauthorized-access; a missing mechanism gives another text.
            if (e.condition === 'amqp:unauthorized-access' && /^Failed to authenticate: 1\b/.test(String(e.description || e.message))) {
                return succeed('authentication failure');
            }
            return fail('wrong-password: refused, but not by an authentication failure');
        }
        fail('connection error ' + text);
    });
    conn.on('error', function (e) { fail('error ' + (e && e.message)); });
    conn.on('protocol_error', function (e) { fail('protocol error ' + (e && e.message)); });
    conn.on('sender_error', function (ctx) { fail('sender error ' + JSON.stringify(ctx.sender.error)); });
    conn.on('receiver_error', function (ctx) { fail('receiver error ' + JSON.stringify(ctx.receiver.error)); });
    conn.on('session_error', function (ctx) {
        const e = ctx.session.error || {};
        if (scenario === 'transfer-before-attach' && e.condition === 'amqp:session:unattached-handle') {
            log('transfer-before-attach: the server ended the session:', JSON.stringify(e));
            sessionRefused = true;
            ctx.session.close();
            return closeConnection();
        }
        fail('session error ' + JSON.stringify(e));
    });
    // Stop default handlers from auto-closing links whose close we expect.
    conn.on('sender_close', function () {});
    conn.on('receiver_close', function () {});

    conn.on('connection_open', function () {
        if (scenario === 'wrong-password') return fail('wrong-password: the connection opened with a wrong password');
        const s = SCENARIOS[scenario];
        if (!s) return fail('unknown scenario ' + scenario);
        if (!NO_SESSION_SCENARIOS.has(scenario)) session = newSession();
        s();
    });

    function newSession() {
        const s = conn.create_session();
        s.begin();
        sessions.push(s);
        return s;
    }

    function openSender(name, address, extra, ssn) {
        const l = (ssn || session).open_sender(Object.assign({ name: name, target: { address: address }, source: { address: name } }, extra || {}));
        links.push(l);
        return l;
    }
    function openReceiver(name, source, extra, ssn) {
        const src = typeof source === 'string' ? { address: source } : source;
        const l = (ssn || session).open_receiver(Object.assign({ name: name, source: src, target: { address: name } }, extra || {}));
        links.push(l);
        return l;
    }
    function whenAllOpen(list, fn) {
        let left = list.length;
        for (const l of list) {
            l.once(l.is_sender() ? 'sendable' : 'receiver_open', function () { if (--left === 0) fn(); });
        }
    }

    const SCENARIOS = {
        basic: function () {
            const snd = openSender(tag + '-basic-sender', 'q.basic');
            const rcv = openReceiver(tag + '-basic-receiver', 'q.basic');
            let got = 0;
            rcv.on('message', function (ctx) {
                const want = 'message ' + (got + 1);
                if (ctx.message.body !== want) return fail('basic: got ' + JSON.stringify(ctx.message.body));
                if (++got === count) shutdown();
            });
            whenAllOpen([snd, rcv], function () {
                for (let i = 1; i <= count; i++) snd.send({ message_id: 'basic-' + i, body: 'message ' + i });
            });
        },

        messages: function () {
            const snd = openSender(tag + '-messages-sender', 'q.messages');
            const rcv = openReceiver(tag + '-messages-receiver', 'q.messages');
            const specs = richMessageSpecs();
            const want = specs.map(describeSpec);
            let got = 0, accepted = 0;
            rcv.on('message', function (ctx) {
                const i = got++;
                if (i >= want.length) return fail('messages: more messages than sent');
                let desc;
                try {
                    desc = describeRaw(ctx.message.__raw);
                } catch (e) {
                    return fail('messages: message ' + (i + 1) + ' does not decode: ' + e.message);
                }
                const diffs = diffMessages(want[i], desc);
                if (diffs.length) return fail('messages: message ' + (i + 1) + ' (' + show(want[i].properties.message_id) + ') differs:\n  ' + diffs.join('\n  '));
                log('message', i + 1, 'matches:', show(want[i].properties.message_id), want[i].body.kind, want[i].body.kind === 'value' ? want[i].body.v.t : '');
                maybeDone();
            });
            snd.on('accepted', function () { accepted++; maybeDone(); });
            function maybeDone() {
                if (got === want.length && accepted === want.length) shutdown();
            }
            whenAllOpen([snd, rcv], function () { for (const s of specs) snd.send(rheaMessage(s)); });
        },

        large: function () {
            const body = largeBody();
            const snd = openSender(tag + '-large-sender', 'q.large');
            const rcv = openReceiver(tag + '-large-receiver', 'q.large');
            rcv.on('message', function (ctx) {
                const b = ctx.message.body && ctx.message.body.content;
                if (!Buffer.isBuffer(b) || !b.equals(body)) return fail('large: body differs');
                shutdown();
            });
            whenAllOpen([snd, rcv], function () {
                snd.send({ message_id: 'large-1', content_type: 'application/octet-stream', body: rhea.message.data_section(body) });
            });
        },

        large4m: function () {
            const body = large4mBody();
            const snd = openSender(tag + '-large4m-sender', 'q.large4m');
            const rcv = openReceiver(tag + '-large4m-receiver', 'q.large4m');
            let received = false, accepted = false;
            rcv.on('message', function (ctx) {
                const m = ctx.message;
                if (received) return fail('large4m: a second message arrived');
                if (idOf(m) !== 'large4m-1') return fail('large4m: message-id ' + idOf(m));
                const b = m.body && m.body.content;
                if (!m.body || m.body.typecode !== 0x75 || m.body.multiple) return fail('large4m: body is not one data section');
                if (!Buffer.isBuffer(b) || b.length !== body.length) return fail('large4m: body length ' + (b && b.length) + ', sent ' + body.length);
                if (!b.equals(body)) {
                    let i = 0;
                    while (b[i] === body[i]) i++;
                    return fail('large4m: body differs first at byte ' + i);
                }
                if (ctx.delivery.remote_settled) return fail('large4m: delivery arrived settled');
                received = true;
                log('large4m: received', b.length, 'bytes intact');
                if (accepted) shutdown();
            });
            snd.on('accepted', function (ctx) {
                if (accepted) return fail('large4m: accepted twice');
                accepted = true;
                log('large4m: accepted');
                if (received) shutdown();
            });
            whenAllOpen([snd, rcv], function () {
                const d = snd.send({ message_id: 'large4m-1', content_type: 'application/octet-stream', body: rhea.message.data_section(body) });
                if (d.settled) return fail('large4m: sent settled');
            });
        },

        dispositions: function () {
            const snd = openSender(tag + '-disp-sender', 'q.disp');
            const pre = openSender(tag + '-disp-presettled-sender', 'q.disp', { snd_settle_mode: 1 });
            const rcv = openReceiver(tag + '-disp-receiver', 'q.disp', { autoaccept: false, credit_window: 10 });
            const outcomes = {};
            let releasedOnce = false;
            let done = 0;
            // rhea 3.0.5 merges a delivery into the previous one-delivery
            // disposition range without comparing outcomes (session.js
            // write_dispositions), so a reject followed at once by a release
            // would go out as one 'rejected' for both. Settle one delivery per
            // event-loop turn (20 ms apart) so each outcome gets its own frame.
            const pending = [];
            let draining = false;
            function settleLater(fn) {
                pending.push(fn);
                if (draining) return;
                draining = true;
                (function next() {
                    const f = pending.shift();
                    if (!f) { draining = false; return; }
                    f();
                    setTimeout(next, 20);
                })();
            }
            rcv.on('message', function (ctx) { settleLater(function () { decide(ctx); }); });
            function decide(ctx) {
                const id = idOf(ctx.message);
                if (id === 'disp-accept' || id === 'disp-presettled') {
                    ctx.delivery.accept();
                } else if (id === 'disp-reject') {
                    ctx.delivery.reject({ condition: 'amqp:precondition-failed', description: 'rejected by amqpwire test peer' });
                } else if (id === 'disp-release') {
                    if (!releasedOnce) { releasedOnce = true; ctx.delivery.release(); return; }
                    ctx.delivery.accept();
                } else {
                    return fail('dispositions: unexpected ' + id);
                }
                if (++done === 4) maybeDone();
            }
            snd.on('accepted', function (ctx) { outcomes[ctx.delivery.__id] = 'accepted'; maybeDone(); });
            function maybeDone() {
                if (done === 4 && Object.keys(outcomes).length === 3) shutdown();
            }
            whenAllOpen([snd, pre, rcv], function () {
                for (const id of ['disp-accept', 'disp-reject', 'disp-release']) {
                    const d = snd.send({ message_id: id, body: 'disposition test ' + id });
                    d.__id = id;
                }
                pre.send({ message_id: 'disp-presettled', body: 'sent pre-settled' });
            });
        },

        'filter-dynamic': function () {
            const snd = openSender(tag + '-filter-sender', 'q.filter');
            const filtered = openReceiver(tag + '-filter-receiver', {
                address: 'q.filter',
                filter: { 'apache.org:selector-filter:string': types.wrap_described("color = 'red'", SELECTOR_DESCRIPTOR) },
            });
            const dyn = openReceiver(tag + '-dynamic-receiver', { dynamic: true });
            let dynAddress = null;
            let gotFiltered = false, gotDynamic = false;
            filtered.on('message', function (ctx) {
                const ap = ctx.message.application_properties || {};
                if (ap.color !== 'red') return fail('filter: got color ' + ap.color);
                gotFiltered = true;
                if (gotDynamic) shutdown();
            });
            dyn.on('message', function (ctx) {
                if (ctx.message.body !== 'to the dynamic node') return fail('dynamic: bad body');
                gotDynamic = true;
                if (gotFiltered) shutdown();
            });
            whenAllOpen([snd, filtered, dyn], function () {
                dynAddress = dyn.source && dyn.source.address;
                if (!dynAddress) return fail('dynamic: no address assigned');
                snd.send({ message_id: 'filter-blue', application_properties: { color: 'blue' }, body: 'blue one' });
                snd.send({ message_id: 'filter-red', application_properties: { color: 'red' }, body: 'red one' });
                const dsnd = openSender(tag + '-dynamic-sender', dynAddress);
                dsnd.once('sendable', function () {
                    dsnd.send({ message_id: 'dynamic-1', to: dynAddress, body: 'to the dynamic node' });
                });
            });
        },

        heartbeat: function () {
            session.once('session_open', function () {
                setTimeout(shutdown, 3000);
            });
        },

        'heartbeat-peer': function () {
            // No session, no links: after the open exchange the only traffic
            // is heartbeats. Measure the gaps between incoming bytes.
            const remoteIdle = conn.remote.open.idle_time_out;
            log('heartbeat-peer: asked for idle-time-out', idleTimeout, 'ms; server asked for', remoteIdle || 'none');
            // A monotonic clock: a wall-clock step must not look like a gap.
            const ms = () => Number(process.hrtime.bigint() / 1000000n);
            let last = ms(), maxGap = 0, chunks = 0;
            onIncoming(function () {
                const now = ms();
                maxGap = Math.max(maxGap, now - last);
                last = now;
                chunks++;
            });
            setTimeout(function () {
                maxGap = Math.max(maxGap, ms() - last);
                log('heartbeat-peer: idle 4 s,', chunks, 'chunks received, longest gap', maxGap, 'ms');
                if (!conn.is_open()) return fail('heartbeat-peer: connection no longer open after 4 s');
                if (chunks === 0) return fail('heartbeat-peer: the server sent nothing in 4 s');
                // The server must send at least once per idle-time-out. Fail only past
                // twice that (2.4.5: the threshold a peer actually applies), so that a
                // loaded machine's scheduling cannot fail a correct server; a gap past
                // the time-out itself is a warning.
                if (maxGap > idleTimeout * 2) return fail('heartbeat-peer: the server was silent for ' + maxGap + ' ms (idle-time-out ' + idleTimeout + ' ms)');
                if (maxGap > idleTimeout) console.error('[rhea_peer] heartbeat-peer: warning: a gap of ' + maxGap + ' ms exceeds the idle-time-out');
                closeConnection();
            }, 4000);
        },

        drain: function () {
            const snd = openSender(tag + '-drain-sender', 'q.drain');
            let accepted = 0;
            snd.once('sendable', function () {
                for (let i = 1; i <= 3; i++) snd.send({ message_id: 'drain-' + i, body: 'drain message ' + i });
            });
            snd.on('accepted', function () {
                if (++accepted === 3) startReceiver();
            });
            function startReceiver() {
                // credit_window 0: rhea grants no credit by itself.
                const rcv = openReceiver(tag + '-drain-receiver', 'q.drain', { credit_window: 0 });
                const got = [];
                let draining = false;
                let initialCount = 0;
                rcv.once('receiver_open', function () {
                    initialCount = rcv.remote.attach.initial_delivery_count || 0;
                    if (rcv.credit !== 0) return fail('drain: receiver started with credit ' + rcv.credit);
                    rcv.add_credit(2);
                });
                rcv.on('message', function (ctx) {
                    const id = idOf(ctx.message);
                    got.push(id);
                    if (id !== 'drain-' + got.length) return fail('drain: expected drain-' + got.length + ' got ' + id);
                    if (got.length > 2 && !draining) return fail('drain: a 3rd message arrived with credit 2');
                    if (got.length > 3) return fail('drain: more than 3 messages');
                    if (got.length === 2) {
                        // give a 3rd message time to show up (it must not)
                        setTimeout(function () {
                            if (got.length !== 2) return fail('drain: ' + got.length + ' messages with credit 2');
                            if (rcv.credit !== 0) return fail('drain: credit ' + rcv.credit + ' after 2 messages');
                            log('drain: exactly 2 arrived; draining with credit 5');
                            draining = true;
                            rcv.drain = true;
                            rcv.add_credit(5);
                        }, 300);
                    }
                });
                rcv.on('receiver_drained', function () {
                    rcv.drain = false;
                    if (!draining) return fail('drain: drained without a drain request');
                    if (got.length !== 3) return fail('drain: drain completed after ' + got.length + ' messages, want 3');
                    if (rcv.credit !== 0) return fail('drain: credit ' + rcv.credit + ' after the drain');
                    const advanced = (rcv.delivery_count - initialCount) >>> 0;
                    if (advanced !== 7) return fail('drain: delivery-count advanced by ' + advanced + ', want 7 (2 + 1 delivered + 4 drained)');
                    log('drain: completed, credit 0, delivery-count', rcv.delivery_count);
                    shutdown();
                });
            }
        },

        'many-links': function () {
            const all = [];
            const senders = [];
            const receivers = [];
            const perSender = 2;
            for (let s = 1; s <= 3; s++) {
                const ssn = s === 1 ? session : newSession();
                for (let n = 1; n <= 2; n++) {
                    const address = 'q.many.' + s + '.' + n;
                    const snd = openSender(tag + '-many-' + s + '-' + n + '-sender', address, {}, ssn);
                    snd.__address = address;
                    senders.push(snd);
                    all.push(snd);
                    const rcv = openReceiver(tag + '-many-' + s + '-' + n + '-receiver', address, {}, ssn);
                    rcv.__address = address;
                    rcv.__got = 0;
                    receivers.push(rcv);
                    all.push(rcv);
                }
            }
            let received = 0, accepted = 0;
            const total = senders.length * perSender;
            for (const rcv of receivers) {
                rcv.on('message', function (ctx) {
                    const m = ctx.message;
                    const k = ++rcv.__got;
                    const wantId = 'many-' + rcv.__address + '-' + k;
                    if (idOf(m) !== wantId) return fail('many-links: ' + rcv.__address + ' expected ' + wantId + ' got ' + idOf(m));
                    if (m.body !== 'to ' + rcv.__address + ' #' + k) return fail('many-links: bad body ' + JSON.stringify(m.body));
                    if (m.to !== rcv.__address) return fail('many-links: bad to ' + m.to);
                    if (k > perSender) return fail('many-links: too many on ' + rcv.__address);
                    received++;
                    maybeDone();
                });
            }
            for (const snd of senders) snd.on('accepted', function () { accepted++; maybeDone(); });
            function maybeDone() {
                if (received === total && accepted === total) {
                    log('many-links:', total, 'messages over', all.length, 'links in', sessions.length, 'sessions');
                    shutdown();
                }
            }
            whenAllOpen(all, function () {
                for (const snd of senders) {
                    for (let k = 1; k <= perSender; k++) {
                        snd.send({ message_id: 'many-' + snd.__address + '-' + k, to: snd.__address, body: 'to ' + snd.__address + ' #' + k });
                    }
                }
            });
        },

        'reuse-name': function () {
            const NAME = 'shared-name';
            const snd = session.open_sender({ name: NAME, target: { address: 'q.reuse' }, source: { address: NAME } });
            let senderClosed = false, received = false;
            snd.once('sendable', function () {
                snd.send({ message_id: 'reuse-1', body: 'sent on the first shared-name link' });
            });
            snd.once('accepted', function () {
                // rhea keeps a session's links in a map keyed by name, so a
                // second link called 'shared-name' replaces the first there
                // (and the first would never write its detach). Keep the old
                // sender in the map under another key, after the receiver,
                // so the receiver's attach goes out first and the sender's
                // detach right after it, in the same batch; and only ever
                // remove the link object itself from the session's tables.
                const rcv = openReceiver(NAME, 'q.reuse');
                session.links[NAME + ' (previous sender)'] = snd;
                session.remove_link = function (link) {
                    if (this.remote.handles[link.remote.handle] === link) delete this.remote.handles[link.remote.handle];
                    if (this.local.handles[link.local.handle] === link) delete this.local.handles[link.local.handle];
                    for (const k of Object.keys(this.links)) if (this.links[k] === link) delete this.links[k];
                };
                snd.once('sender_close', function () {
                    senderClosed = true;
                    log('reuse-name: previous sender detached');
                    if (received) shutdown();
                });
                snd.close();
                rcv.on('message', function (ctx) {
                    if (idOf(ctx.message) !== 'reuse-1' || ctx.message.body !== 'sent on the first shared-name link') {
                        return fail('reuse-name: unexpected message ' + JSON.stringify(ctx.message));
                    }
                    received = true;
                    log('reuse-name: message received on the new receiver');
                    if (senderClosed) shutdown();
                });
            });
        },

        'detach-error': function () {
            const snd = session.open_sender({ name: tag + '-err-sender', target: { address: 'q.err' }, source: { address: tag + '-err-sender' } });
            snd.once('sender_open', function () {
                snd.once('sender_close', function () {
                    if (snd.error) return fail('detach-error: the server detached with an error ' + JSON.stringify(snd.error));
                    log('detach-error: detach answered; closing the connection with amqp:connection:forced');
                    closeConnection({ condition: 'amqp:connection:forced', description: 'closing on purpose' });
                    whenSocketGone(function () { setTimeout(function () { succeed('socket closed after our close was sent'); }, 50); });
                });
                snd.close({ condition: 'amqp:internal-error', description: 'detached on purpose' });
            });
        },

        'wrong-password': function () {},

        'transfer-before-attach': function () {
            session.once('session_open', function () {
                const body = rmessage.encode({ body: 'sent before any attach' });
                const transfer = rframes.transfer({
                    handle: 7, delivery_id: 0, delivery_tag: Buffer.from('t0'), message_format: 0, settled: true,
                });
                log('transfer-before-attach: writing a transfer on handle 7');
                session.output(transfer, body);
            });
        },
    };
}

// --------------------------------------------------------------------- main
function main() {
    const args = parseArgs(process.argv.slice(2));
    const role = args._[0];
    try {
        if (role === 'server') runServer(args);
        else if (role === 'client') runClient(args);
        else {
            console.error('usage: rhea_peer.js server|client --port P [options]  (see header comment)');
            process.exit(2);
        }
    } catch (e) {
        // bad options or unreadable files
        console.error('rhea_peer.js: ' + e.message);
        process.exit(2);
    }
}

main();
