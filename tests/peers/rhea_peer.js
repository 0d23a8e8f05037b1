#!/usr/bin/env node
// rhea_peer.js - an AMQP 1.0 peer built on rhea, for amqpwire interop tests
// and wire captures.
//
//   node rhea_peer.js server --port P [--max-frame-size N] [--idle-timeout MS]
//                            [--exit-after N] [--ready-file PATH]
//   node rhea_peer.js client --port P --scenario NAME [--sasl anonymous|plain|none]
//                            [--user U --password PW] [--count N]
//                            [--max-frame-size N] [--idle-timeout MS]
//
// server: a tiny queue broker on 127.0.0.1. Any address works; a queue is
//   created on first use. SASL ANONYMOUS and PLAIN (alice/secret) are
//   offered, and clients that skip SASL altogether are accepted too.
//   Messages are stored and forwarded as the exact bytes the producer sent.
//   A consumer may carry a selector filter of the form  name = 'value'
//   (matched against application-properties, else against the properties
//   section). A dynamic source gets a fresh queue named dynamic-<n>.
//   --exit-after N makes the broker exit once N connections have gone.
//
// client: runs one scenario over one connection, checks what comes back and
//   exits 0 on success, 1 on failure (or after a 30 s time-out). Scenarios:
//     basic         send --count messages to q.basic and receive them back
//     messages      5 messages with header, message annotations, full
//                   properties, typed application properties and every body
//                   kind (data, amqp-value string/map/list, amqp-sequence)
//     large         one 320 KiB data message, sent and received back
//     dispositions  accepted, rejected, released (redelivered, then
//                   accepted) and a pre-settled send
//     filter-dynamic  a receiver with a selector filter and a dynamic
//                   receiver; a message is sent to the dynamic address
//     heartbeat     open with idle-time-out, stay idle ~3 s, then close
//   Every scenario ends with clean detaches, end and close.
'use strict';

const rhea = require('rhea');
const rmessage = require('rhea/lib/message.js');
const types = rhea.types;

const HOST = '127.0.0.1';
const SELECTOR_DESCRIPTOR = 0x0000468C00000004; // apache.org:selector-filter:string

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

function log(...parts) {
    if (process.env.PEER_QUIET) return;
    console.error('[rhea_peer]', ...parts);
}

// ------------------------------------------------------------------- server
// rhea decodes every incoming message before handing it over. Keep the raw
// encoded bytes next to the decoded message so the broker can forward them
// unchanged.
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

function runServer(args) {
    const port = intArg(args, 'port');
    if (!port) throw new Error('server needs --port');
    const exitAfter = intArg(args, 'exit-after', 0);
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

    function pump(q) {
        let progress = true;
        while (progress && q.messages.length) {
            progress = false;
            for (const sender of q.consumers) {
                if (!sender.sendable()) continue;
                const idx = q.messages.findIndex((e) => selectorMatches(sender.__selector, e.msg));
                if (idx < 0) continue;
                const entry = q.messages.splice(idx, 1)[0];
                const delivery = sender.send(entry.raw, undefined, 0);
                delivery.__entry = entry;
                delivery.__queue = q;
                progress = true;
            }
        }
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
        q.consumers.push(link);
        log('sender attached', link.name, '<-', address, link.__selector ? 'selector' : '');
    });

    container.on('sendable', function (ctx) {
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
    container.on('sender_close', function (ctx) { dropConsumer(ctx.sender); });
    container.on('receiver_close', function () {});
    container.on('session_close', function () {});
    container.on('error', function (e) { log('error:', e && e.message); });
    function forgetConnection(conn) {
        conn.each_link(function (l) { if (l.is_sender()) dropConsumer(l); });
    }
    container.on('connection_close', function (ctx) { forgetConnection(ctx.connection); });
    container.on('disconnected', function (ctx) { forgetConnection(ctx.connection); });

    const listenOpts = { port: port, host: HOST };
    if (args['max-frame-size'] !== undefined) listenOpts.max_frame_size = intArg(args, 'max-frame-size');
    if (args['idle-timeout'] !== undefined) listenOpts.idle_time_out = intArg(args, 'idle-timeout');
    const server = container.listen(listenOpts);
    server.on('listening', function () {
        log('listening on', HOST + ':' + port);
        if (args['ready-file']) require('fs').writeFileSync(args['ready-file'], String(process.pid) + '\n');
    });
    // rhea reports no event when a cleanly closed socket goes away, so count
    // finished connections on the sockets themselves.
    server.on('connection', function (socket) {
        socket.on('close', function () {
            gone++;
            log('connection gone (' + gone + ')');
            if (exitAfter && gone >= exitAfter) {
                setTimeout(function () { process.exit(0); }, 100);
            }
        });
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

function largeBody() {
    const b = Buffer.alloc(LARGE_SIZE);
    for (let i = 0; i < b.length; i++) b[i] = (i * 31 + 7) & 0xff;
    return b;
}

function commonProperties(n, subject, contentType) {
    return {
        to: 'q.messages',
        subject: subject,
        reply_to: 'q.replies',
        content_type: contentType,
        content_encoding: 'identity',
        creation_time: CREATION_TIME,
        absolute_expiry_time: EXPIRY_TIME,
        group_id: 'group-a',
        group_sequence: n,
    };
}

function richMessages() {
    const uuidA = rhea.string_to_uuid(UUID_A);
    const uuidB = rhea.string_to_uuid(UUID_B);
    const m1 = Object.assign(commonProperties(1, 'data-body', 'application/octet-stream'), {
        durable: true, priority: 7, ttl: 60000,
        message_id: 'msg-1',
        correlation_id: 'corr-1',
        message_annotations: { 'x-opt-foo': 'bar', 'x-opt-count': types.wrap_int(42) },
        application_properties: {
            'a-string': 'text',
            'an-int': types.wrap_int(-7),
            'a-long': types.wrap_long(1234567890123),
            'a-double': types.wrap_double(3.25),
            'a-boolean': true,
            'a-null': null,
            'a-timestamp': types.wrap_timestamp(CREATION_TIME),
            'a-uuid': types.wrap_uuid(uuidA),
            'a-binary': types.wrap_binary(Buffer.from([1, 2, 3, 4])),
            'a-symbol': types.wrap_symbol('sym'),
        },
        body: rhea.message.data_section(Buffer.from([...Array(16).keys()])),
    });
    const m2 = Object.assign(commonProperties(2, 'string-body', 'text/plain'), {
        durable: false, priority: 4, ttl: 30000,
        message_id: types.wrap_ulong(2),
        correlation_id: types.wrap_uuid(uuidB),
        message_annotations: { 'x-opt-foo': 'baz' },
        application_properties: { 'seq': types.wrap_int(2), 'flag': false },
        body: 'hello, amqpwire',
    });
    const m3 = Object.assign(commonProperties(3, 'map-body', 'application/x-amqp-map'), {
        durable: true, priority: 1, ttl: 10000,
        message_id: types.wrap_uuid(uuidA),
        correlation_id: types.wrap_binary(Buffer.from('corr-3')),
        message_annotations: { 'x-opt-foo': 'qux', 'x-opt-when': types.wrap_timestamp(CREATION_TIME) },
        application_properties: { 'seq': types.wrap_int(3), 'ratio': types.wrap_double(-0.5) },
        body: { key: 'value', n: types.wrap_int(3), nested: { list: [types.wrap_int(1), types.wrap_int(2), types.wrap_int(3)] } },
    });
    const m4 = {
        message_id: 'msg-4', to: 'q.messages', subject: 'list-body',
        application_properties: { 'seq': types.wrap_int(4) },
        body: ['one', types.wrap_int(2), types.wrap_double(3.5), true, null],
    };
    const m5 = {
        message_id: 'msg-5', to: 'q.messages', subject: 'sequence-body',
        application_properties: { 'seq': types.wrap_int(5) },
        body: rhea.message.sequence_section([types.wrap_int(1), 'two', types.wrap_int(3)]),
    };
    return [m1, m2, m3, m4, m5];
}

function idOf(msg) {
    const id = msg.message_id;
    if (Buffer.isBuffer(id)) return 'uuid:' + rhea.uuid_to_string(id);
    if (id && typeof id === 'object' && id.value !== undefined) return String(id.value);
    return String(id);
}

function runClient(args) {
    const port = intArg(args, 'port');
    const scenario = args.scenario || 'basic';
    if (!port) throw new Error('client needs --port');
    const saslMode = args.sasl || 'anonymous';
    const count = intArg(args, 'count', 1);
    const tag = 'rhea';

    const container = rhea.create_container({ id: 'amqpwire-rhea-client' });
    const opts = { host: HOST, port: port, hostname: 'localhost', reconnect: false };
    if (saslMode === 'anonymous') {
        const mechs = rhea.sasl.client_mechanisms();
        mechs.enable_anonymous();
        opts.sasl_mechanisms = mechs;
    } else if (saslMode === 'plain') {
        opts.username = args.user || 'alice';
        opts.password = args.password || 'secret';
    } else if (saslMode !== 'none') {
        throw new Error('unknown --sasl ' + saslMode);
    }
    if (args['max-frame-size'] !== undefined) opts.max_frame_size = intArg(args, 'max-frame-size');
    if (args['idle-timeout'] !== undefined) opts.idle_time_out = intArg(args, 'idle-timeout');

    let failed = null;
    let finished = false;
    const timer = setTimeout(function () { fail('timed out'); }, 30000);

    function fail(why) {
        if (finished) return;
        finished = true;
        failed = why;
        console.error('[rhea_peer] FAILED:', why);
        clearTimeout(timer);
        process.exit(1);
    }

    const conn = container.connect(opts);
    let session = null;
    const links = [];

    function shutdown() {
        // detach every link (closed=true), then end the session, then close.
        let open = links.length;
        if (open === 0) { session.close(); return; }
        for (const l of links) {
            l.once(l.is_sender() ? 'sender_close' : 'receiver_close', function () {
                if (--open === 0) session.close();
            });
            l.close();
        }
    }

    conn.on('session_close', function () { conn.close(); });
    conn.on('connection_close', function () {
        // The peer's close arrived without error. rhea ends the socket once
        // its own close has gone out; report success when the socket is gone.
        log('connection closed');
        const sock = conn.socket;
        function ok() {
            if (finished) return;
            finished = true;
            clearTimeout(timer);
            console.error('[rhea_peer] OK', scenario);
            process.exit(0);
        }
        if (!sock || sock.destroyed) ok(); else sock.once('close', ok);
    });
    conn.on('disconnected', function (ctx) {
        fail('disconnected before clean close' + (ctx.error ? ': ' + ctx.error : ''));
    });
    conn.on('connection_error', function (ctx) { fail('connection error ' + JSON.stringify(ctx.connection.error)); });
    conn.on('error', function (e) { fail('error ' + (e && e.message)); });
    conn.on('sender_error', function (ctx) { fail('sender error ' + JSON.stringify(ctx.sender.error)); });
    conn.on('receiver_error', function (ctx) { fail('receiver error ' + JSON.stringify(ctx.receiver.error)); });
    // Stop default handlers from auto-closing links whose close we expect.
    conn.on('sender_close', function () {});
    conn.on('receiver_close', function () {});

    conn.on('connection_open', function () {
        session = conn.create_session();
        session.begin();
        const s = SCENARIOS[scenario];
        if (!s) return fail('unknown scenario ' + scenario);
        s();
    });

    function openSender(name, address, extra) {
        const l = session.open_sender(Object.assign({ name: name, target: { address: address }, source: { address: name } }, extra || {}));
        links.push(l);
        return l;
    }
    function openReceiver(name, source, extra) {
        const src = typeof source === 'string' ? { address: source } : source;
        const l = session.open_receiver(Object.assign({ name: name, source: src, target: { address: name } }, extra || {}));
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
            const msgs = richMessages();
            const want = ['msg-1', '2', 'uuid:' + UUID_A, 'msg-4', 'msg-5'];
            let got = 0;
            rcv.on('message', function (ctx) {
                const m = ctx.message;
                const id = idOf(m);
                if (id !== want[got]) return fail('messages: expected id ' + want[got] + ' got ' + id);
                if (got === 0) {
                    if (!m.body || !Buffer.isBuffer(m.body.content) || m.body.content.length !== 16) return fail('messages: bad data body');
                    const ap = m.application_properties;
                    if (ap['a-string'] !== 'text' || ap['an-int'] !== -7 || ap['a-boolean'] !== true || ap['a-null'] !== null) return fail('messages: bad application properties ' + JSON.stringify(ap));
                    if (!m.durable || m.priority !== 7 || m.ttl !== 60000) return fail('messages: bad header');
                    if (m.message_annotations['x-opt-foo'] !== 'bar') return fail('messages: bad annotations');
                }
                if (got === 1 && m.body !== 'hello, amqpwire') return fail('messages: bad string body');
                if (got === 2 && (!m.body || m.body.key !== 'value')) return fail('messages: bad map body');
                if (got === 3 && (!Array.isArray(m.body) || m.body[0] !== 'one')) return fail('messages: bad list body');
                if (got === 4 && (!m.body || m.body.typecode !== 0x76)) return fail('messages: bad sequence body');
                if (++got === msgs.length) shutdown();
            });
            whenAllOpen([snd, rcv], function () { for (const m of msgs) snd.send(m); });
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
    };
}

// --------------------------------------------------------------------- main
function main() {
    const args = parseArgs(process.argv.slice(2));
    const role = args._[0];
    if (role === 'server') runServer(args);
    else if (role === 'client') runClient(args);
    else {
        console.error('usage: rhea_peer.js server|client --port P [options]  (see header comment)');
        process.exit(2);
    }
}

main();
