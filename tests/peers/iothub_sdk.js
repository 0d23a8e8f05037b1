#!/usr/bin/env node
// iothub_sdk.js - the real Azure IoT Node SDKs (azure-iothub 1.16.6, azure-iot-device
// 1.18.4 with azure-iot-device-amqp 1.14.4; pinned in package.json) run against a local
// IoT Hub, for amqpwire's emulator tests. Everything here goes through the SDKs' public
// API; the only thing bent is the port (--port, below).
//
//   node iothub_sdk.js service-send --connection-string CS --device ID --message-id ID
//        [--body TEXT] [--ack none|positive|negative|full] [--property K=V]...
//        [--correlation-id ID] [--content-type T] [--content-encoding E]
//        [--expiry-ms N] [--expect-feedback STATUS] [--expect-error NAME]
//        [--transport amqp|ws] [--port P] [--ca PEM] [--timeout SECS]
//   node iothub_sdk.js service-feedback --connection-string CS --expect-message-id ID...
//        --expect-status Success|Expired|DeliveryCountExceeded|Rejected|Purged
//        [--transport amqp|ws] [--port P] [--ca PEM] [--timeout SECS]
//   node iothub_sdk.js device-receive --connection-string CS [--expect-body TEXT]
//        [--expect-message-id ID] [--action complete|abandon|reject[,...]] [--count N]
//        [--expect-no-more SECS] [--expect-error NAME]
//        [--transport amqp|ws] [--port P] [--ca PEM] [--timeout SECS]
//   node iothub_sdk.js device-send --connection-string CS --body TEXT [--message-id ID]
//        [--count N] [--retry none|sdk] [--expect-error NAME]
//        [--reopen]
//        (with --expect-error, the messages before the error are sent as usual; the
//        last one must fail; --reopen then closes the client, opens a new one and sends
//        that message again, printing {"event":"sent-again",...})
//        (a module's connection string, with ModuleId=, sends as that module;
//        --retry sdk keeps the SDK's own retry policy, to see it recover from a fault)
//   node iothub_sdk.js device-method --connection-string CS --method NAME [--status N]
//        [--answer JSON] [--transport amqp|ws] [--port P] [--ca PEM] [--timeout SECS]
//   node iothub_sdk.js device-twin --connection-string CS --reported JSON
//        [--await-desired KEY=JSON] [--expect-twin-error NAME] [--transport amqp|ws] [--port P]
//        [--ca PEM] [--timeout SECS]
//        (--expect-twin-error NAME: the reported update must fail with that SDK error;
//        over AMQP the hub's 400 arrives as a plain Error; the twin is then read again)
//   node iothub_sdk.js service-registry --connection-string CS --device ID [--module MID]
//        [--port P] [--ca PEM] [--timeout SECS]
//   node iothub_sdk.js service-registry-delete --connection-string CS --device ID [--module MID]
//        [--port P] [--ca PEM] [--timeout SECS]
//   node iothub_sdk.js service-twin --connection-string CS --device ID --tags JSON
//        --desired JSON [--port P] [--ca PEM] [--timeout SECS]
//   node iothub_sdk.js service-method --connection-string CS --device ID [--module MID]
//        --method NAME [--payload JSON] [--response-timeout SECS] [--connect-timeout SECS]
//        [--expect-status N] [--expect-error NAME] [--port P] [--ca PEM] [--timeout SECS]
//   node iothub_sdk.js device-http-receive --connection-string CS [--action A[,...]]
//        [--count N] [--port P] [--ca PEM] [--timeout SECS]
//        [--property K=V]... [--correlation-id ID] [--content-type T]
//        [--content-encoding E] [--count N] [--expect-error NAME]
//        [--transport amqp|ws] [--port P] [--ca PEM] [--timeout SECS]
//
// Exit status: 0 when every check passed, 1 when one failed (one line
// "iothub_sdk.js <command>: FAILED: <why>" on stderr), 2 on bad options. Every command
// gives up after --timeout seconds (default 30) and closes its client at the end (a
// close that does not complete within 5 s fails too). The SDKs' retry policies are
// replaced by NoRetry (unless device-send's --retry sdk), so a refused connection fails
// at once instead of being retried for 4 minutes. Results are JSON lines on stdout; progress goes to stderr unless
// PEER_QUIET is set.
//
// The REST commands (service-registry, service-registry-delete, service-twin,
// service-method: azure-iothub's Registry and Client over HTTPS; device-http-receive:
// azure-iot-device with azure-iot-device-http 1.14.4) go to https://HOSTNAME:443; --port
// replaces that port by making every agent of node's https module connect to port P (the Host header, the TLS name and the tokens stay as the SDK makes them).
//   service-registry  create device --device with no keys (the hub makes them), create
//                     it again (DeviceAlreadyExistsError expected), get and list it,
//                     disable and enable it; with --module, create the module, get it and
//                     list the device's modules. Prints one JSON line per step, with the
//                     connection strings of what it created.
//   service-registry-delete  with --module, delete that module first, get it (a plain Error,
//                     404 expected) and list what modules are left; then delete --device,
//                     then get it (DeviceNotFoundError expected).
//   service-twin      get the twin of --device, update it (tags --tags, desired --desired)
//                     with its etag, then update it again with the stale etag
//                     (InvalidEtagError expected).
//   service-method    invoke --method on --device (or its --module) with --payload; prints
//                     {"event":"result","status","payload"}; --expect-status checks the
//                     device's status; --expect-error NAME passes only when the call fails
//                     with that error (its HTTP status printed too).
//   device-http-receive  the device over HTTPS: poll for C2D messages (every second) and
//                     settle each as --action says (complete, abandon, reject), --count of
//                     them.
//
// Where the SDKs connect:
//   service  --transport amqp: amqps://HOSTNAME:5671 (TLS, no SASL, CBS put-token for
//            the audience HOSTNAME). --transport ws: wss://HOSTNAME:443/$iothub/websocket,
//            subprotocol AMQPWSB10. HOSTNAME is the connection string's HostName.
//   device   --transport amqp: amqps://HOST:5671 where HOST is GatewayHostName if the
//            connection string has one, else HostName. --transport ws:
//            wss://HOST:443/$iothub/websocket. The SDK's WebSocket port is fixed to 443.
//   --port P replaces only the port of that URL (5671 or 443), by overriding the
//            transports' URL builder (_getConnectionUri, a private method of the pinned
//            SDK versions); the host, the TLS name, the SAS audience and everything on
//            the wire stay as the SDK makes them. Without --port nothing is overridden.
//            (Without the override: a device connection string may carry
//            GatewayHostName=localhost:P for amqp; a service HostName=localhost:P does
//            pick port P, but then the SAS audience and the token's sr become
//            "localhost:P" too, and ws has no such way at all.)
//
// TLS: the device commands trust --ca (the SDK's own setOptions({ca})). The service
// SDK has no CA option: it trusts the system store plus NODE_EXTRA_CA_CERTS, which node
// reads only at start-up. So either the caller sets NODE_EXTRA_CA_CERTS=ca.pem, or
// passes --ca, in which case this script re-runs itself once with NODE_EXTRA_CA_CERTS
// set to it. Both SDKs always use TLS; the certificate must name the host. An untrusted
// certificate or a refused connection reaches the caller only as "NotConnectedError:
// rhea: connection disconnected" (and, under the SDKs' default retry policy, only after
// minutes of retries); the FAILED line adds the last socket error seen, e.g.
// UNABLE_TO_VERIFY_LEAF_SIGNATURE or ECONNREFUSED.
//
// Commands:
//   service-send      open the service client, send one C2D message to --device with
//                     messageId --message-id, ack --ack (default full), the given
//                     application properties and body (default "c2d <message-id>");
//                     prints {"event":"sent",...} with the SDK's result (MessageEnqueued).
//                     --expiry-ms sets expiryTimeUtc to now + N ms. --expect-feedback
//                     STATUS then waits, on the same connection, for a feedback record
//                     for the message id with that statusCode (as service-feedback).
//                     --expect-error NAME passes only if the send fails with that SDK
//                     error (e.g. DeviceNotFoundError, DeviceMaximumQueueDepthExceededError).
//   service-feedback  open the service client, attach the feedback receiver and wait
//                     until each --expect-message-id (repeatable) has a feedback record
//                     with statusCode --expect-status; prints {"event":"feedback",...}
//                     per feedback message and {"event":"feedback-record",...} per
//                     record. A record for an expected id with another statusCode, a
//                     body that is not a JSON array or a content type other than
//                     application/vnd.microsoft.iothub.feedback.json fails.
//   device-receive    open the device client, listen for C2D messages and settle each:
//                     --action is complete (default), abandon or reject, or a comma list
//                     applied in turn (the last repeats: abandon,complete). Checks the
//                     body (--expect-body) and the message id (--expect-message-id) of
//                     each; passes after --count (default 1) messages were settled and,
//                     with --expect-no-more SECS, none more arrived within SECS. Prints
//                     {"event":"message",...} per message.
//   device-send       open the device client and sendEvent --count (default 1)
//                     telemetry messages; with --count > 1 the message ids are
//                     ID-1..ID-N. Prints {"event":"sent",...} per message.
//   --expect-error NAME on a device command passes only if open (or the send) fails
//                     with an error of that name (e.g. UnauthorizedError).
'use strict';

const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');
const util = require('util');

const PROG = path.basename(__filename);
const CLOSE_TIMEOUT_MS = 5000;

// stdout carries only this script's JSON lines, and stderr one line per library message
// (rhea prints multi-line objects on some errors); PEER_QUIET drops the libraries' lines.
const libraryLine = (...args) => {
    if (process.env.PEER_QUIET) return;
    const text = util.formatWithOptions({ breakLength: Infinity, compact: true, depth: 3 }, ...args);
    process.stderr.write('[library] ' + text.replace(/\s*\n\s*/g, ' ') + '\n');
};
const say = (line) => process.stderr.write(line + '\n');
for (const k of ['log', 'info', 'warn', 'error', 'debug', 'trace']) console[k] = libraryLine;

function usage(msg) {
    if (msg) say(PROG + ': ' + msg);
    say('usage: node ' + PROG + ' service-send|service-feedback|device-receive|device-send [options]' +
        ' (see the header of ' + PROG + ')');
    process.exit(2);
}

// ------------------------------------------------------------------ options

const COMMANDS = {
    'service-send': ['connection-string', 'device', 'message-id', 'body', 'ack', 'property', 'correlation-id',
        'content-type', 'content-encoding', 'expiry-ms', 'expect-feedback', 'expect-error',
        'transport', 'port', 'ca', 'timeout'],
    'service-feedback': ['connection-string', 'expect-message-id', 'expect-status', 'transport', 'port', 'ca',
        'timeout'],
    'device-receive': ['connection-string', 'expect-body', 'expect-message-id', 'action', 'count',
        'expect-no-more', 'expect-error', 'transport', 'port', 'ca', 'timeout'],
    'device-send': ['connection-string', 'body', 'message-id', 'property', 'correlation-id', 'content-type',
        'content-encoding', 'count', 'expect-error', 'reopen', 'retry', 'transport', 'port', 'ca', 'timeout',
        'cert', 'key'],
    'device-twin': ['connection-string', 'reported', 'await-desired', 'expect-twin-error', 'transport', 'port', 'ca',
        'timeout'],
    'device-method': ['connection-string', 'method', 'status', 'answer', 'transport', 'port', 'ca', 'timeout'],
    'service-registry': ['connection-string', 'device', 'module', 'port', 'ca', 'timeout'],
    'service-registry-delete': ['connection-string', 'device', 'module', 'port', 'ca', 'timeout'],
    'service-twin': ['connection-string', 'device', 'tags', 'desired', 'port', 'ca', 'timeout'],
    'service-method': ['connection-string', 'device', 'module', 'method', 'payload', 'response-timeout',
        'connect-timeout', 'expect-status', 'expect-error', 'port', 'ca', 'timeout'],
    'device-http-receive': ['connection-string', 'action', 'count', 'port', 'ca', 'timeout'],
};
const REPEATABLE = new Set(['property', 'expect-message-id']);
const FEEDBACK_STATUSES = ['Success', 'Expired', 'DeliveryCountExceeded', 'Rejected', 'Purged'];

// --help: the header comment of this file, on stdout.
function help() {
    const lines = fs.readFileSync(__filename, 'utf8').split('\n');
    const out = [];
    for (const l of lines.slice(1)) {
        if (!l.startsWith('//')) break;
        out.push(l.replace(/^\/\/ ?/, ''));
    }
    process.stdout.write(out.join('\n') + '\n');
    process.exit(0);
}

// Options that take no value.
const FLAGS = new Set(['reopen']);

function parseArgs(argv) {
    const cmd = argv[0];
    if (!cmd) usage();
    if (cmd === '--help' || cmd === '-h' || cmd === 'help') help();
    if (!COMMANDS[cmd]) usage('unknown command ' + JSON.stringify(cmd));
    const allowed = new Set(COMMANDS[cmd]);
    const o = { cmd, property: [], 'expect-message-id': [] };
    for (let i = 1; i < argv.length; i++) {
        const a = argv[i];
        if (a === '--help' || a === '-h') help();
        if (!a.startsWith('--')) usage('unexpected argument ' + JSON.stringify(a));
        const name = a.slice(2);
        if (!allowed.has(name)) usage(cmd + ' takes no option --' + name);
        if (FLAGS.has(name)) { o[name] = true; continue; }
        if (i + 1 >= argv.length) usage('--' + name + ' needs a value');
        const v = argv[++i];
        if (REPEATABLE.has(name)) o[name].push(v);
        else if (name in o) usage('--' + name + ' given twice');
        else o[name] = v;
    }
    const need = (n) => { if (o[n] === undefined || o[n] === '') usage(cmd + ' needs --' + n); };
    const int = (n, dflt, min) => {
        if (o[n] === undefined) return dflt;
        if (!/^\d+$/.test(o[n]) || Number(o[n]) < min) usage('--' + n + ' must be an integer >= ' + min);
        return Number(o[n]);
    };
    need('connection-string');
    o.transport = o.transport || 'amqp';
    if (!['amqp', 'ws'].includes(o.transport)) usage('--transport must be amqp or ws');
    o.timeout = int('timeout', 30, 1);
    o.port = int('port', undefined, 1);
    if (o.port !== undefined && o.port > 65535) usage('--port must be at most 65535');
    o.count = int('count', 1, 1);
    o['expiry-ms'] = int('expiry-ms', undefined, 1);
    o['expect-no-more'] = int('expect-no-more', 0, 0);
    const props = [];
    for (const p of o.property) {
        const eq = p.indexOf('=');
        if (eq <= 0) usage('--property wants K=V, not ' + JSON.stringify(p));
        props.push([p.slice(0, eq), p.slice(eq + 1)]);
    }
    o.props = props;
    if (o.ca !== undefined && !fs.existsSync(o.ca)) usage('--ca ' + o.ca + ': no such file');
    if (cmd === 'service-send') {
        need('device');
        need('message-id');
        o.ack = o.ack || 'full';
        if (!['none', 'positive', 'negative', 'full'].includes(o.ack)) usage('--ack must be none|positive|negative|full');
        if (o['expect-feedback'] !== undefined && !FEEDBACK_STATUSES.includes(o['expect-feedback'])) {
            usage('--expect-feedback must be one of ' + FEEDBACK_STATUSES.join('|'));
        }
        if (o['expect-feedback'] !== undefined && o['expect-error'] !== undefined) {
            usage('--expect-feedback and --expect-error exclude each other');
        }
    }
    if (cmd === 'service-feedback') {
        if (o['expect-message-id'].length === 0) usage('service-feedback needs --expect-message-id');
        need('expect-status');
        if (!FEEDBACK_STATUSES.includes(o['expect-status'])) {
            usage('--expect-status must be one of ' + FEEDBACK_STATUSES.join('|'));
        }
    }
    if (cmd === 'device-receive') {
        if (o['expect-message-id'].length > 1) usage('--expect-message-id given twice');
        o['expect-message-id'] = o['expect-message-id'][0];
        o.actions = (o.action || 'complete').split(',');
        for (const a of o.actions) {
            if (!['complete', 'abandon', 'reject'].includes(a)) usage('--action: unknown action ' + JSON.stringify(a));
        }
    }
    if (cmd === 'device-send') need('body');
    o.retry = o.retry || 'none';
    if (!['none', 'sdk'].includes(o.retry)) usage('--retry must be none or sdk');
    if (cmd.startsWith('service-registry') || cmd === 'service-twin' || cmd === 'service-method') need('device');
    if (cmd === 'service-twin') {
        need('tags');
        need('desired');
        try { o.tagsPatch = JSON.parse(o.tags); o.desiredPatch = JSON.parse(o.desired); } catch (e) { usage('--tags and --desired must be JSON: ' + e.message); }
    }
    if (cmd === 'service-method') {
        need('method');
        try { o.payloadValue = o.payload === undefined ? null : JSON.parse(o.payload); } catch (e) { usage('--payload is not JSON: ' + e.message); }
        o.responseTimeout = int('response-timeout', 30, 1);
        o.connectTimeout = int('connect-timeout', 0, 0);
        o.expectStatus = int('expect-status', undefined, 0);
    }
    if (cmd === 'device-http-receive') {
        o.actions = (o.action || 'complete').split(',');
        for (const a of o.actions) {
            if (!['complete', 'abandon', 'reject'].includes(a)) usage('--action: unknown action ' + JSON.stringify(a));
        }
    }
    if (cmd === 'device-method') {
        need('method');
        o.status = int('status', 200, 0);
        o.answer = o.answer === undefined ? '{}' : o.answer;
        try { JSON.parse(o.answer); } catch (e) { usage('--answer is not JSON: ' + e.message); }
    }
    if (cmd === 'device-twin') {
        need('reported');
        try { o.reportedPatch = JSON.parse(o.reported); } catch (e) { usage('--reported is not JSON: ' + e.message); }
        if (o['await-desired'] !== undefined) {
            const eq = o['await-desired'].indexOf('=');
            if (eq <= 0) usage('--await-desired wants KEY=JSON');
            o.awaitKey = o['await-desired'].slice(0, eq);
            try { o.awaitValue = JSON.parse(o['await-desired'].slice(eq + 1)); } catch (e) { usage('--await-desired value is not JSON'); }
        }
    }
    return o;
}

const opts = parseArgs(process.argv.slice(2));

// The service SDK trusts only the system store and NODE_EXTRA_CA_CERTS, read at start-up:
// honour --ca for the service commands by running this script again with it set.
if (opts.cmd.startsWith('service-') && opts.ca !== undefined &&
    process.env.NODE_EXTRA_CA_CERTS !== path.resolve(opts.ca)) {
    const r = spawnSync(process.execPath, [__filename, ...process.argv.slice(2)], {
        stdio: 'inherit',
        env: Object.assign({}, process.env, { NODE_EXTRA_CA_CERTS: path.resolve(opts.ca) }),
    });
    if (r.error) {
        say(PROG + ' ' + opts.cmd + ': FAILED: cannot re-run with NODE_EXTRA_CA_CERTS: ' + r.error.message);
        process.exit(1);
    }
    process.exit(r.status === null ? 1 : r.status);
}

// ------------------------------------------------------------------ helpers

// The SDKs turn a refused connection or a failed TLS handshake into a bare
// "NotConnectedError: rhea: connection disconnected": remember the last socket error
// (every connection, TLS or WebSocket, goes through tls.connect) to name the cause.
let lastSocketError = null;
{
    const tls = require('tls');
    const connect = tls.connect;
    tls.connect = function (...args) {
        const socket = connect.apply(this, args);
        socket.on('error', (e) => { lastSocketError = e; });
        return socket;
    };
}

let phase = 'starting';
let client = null;
let finished = false;

function log(...args) {
    if (!process.env.PEER_QUIET) say('[' + PROG + ' ' + opts.cmd + '] ' + args.join(' '));
}

function emit(obj) {
    process.stdout.write(JSON.stringify(obj, (k, v) => {
        if (v && v.type === 'Buffer' && Array.isArray(v.data)) return Buffer.from(v.data).toString('hex');
        if (typeof v === 'bigint') return v.toString();
        return v;
    }) + '\n');
}

function errText(err) {
    if (!err) return String(err);
    let s = (err.name || (err.constructor && err.constructor.name) || 'Error') + ': ' + err.message;
    const amqp = err.amqpError;
    if (amqp && amqp.condition) s += ' [' + amqp.condition + (amqp.description ? ' "' + amqp.description + '"' : '') + ']';
    return s.replace(/\s+/g, ' ');
}

function errName(err) {
    return (err && (err.name || (err.constructor && err.constructor.name))) || 'Error';
}

function fail(why) {
    if (finished) return;
    finished = true;
    let line = String(why);
    if (lastSocketError && /NotConnected|disconnect|timed out/i.test(line)) line += ' (socket error: ' + (lastSocketError.code ? lastSocketError.code + ' ' : '') + lastSocketError.message + ')';
    say(PROG + ' ' + opts.cmd + ': FAILED: ' + line.replace(/\s+/g, ' '));
    // Flush stdout, then leave without waiting for the SDK's sockets.
    process.stdout.write('', () => process.exit(1));
    setTimeout(() => process.exit(1), 500).unref();
}

// Close the client (bounded by CLOSE_TIMEOUT_MS), then exit 0.
function succeed(what) {
    if (finished) return;
    phase = 'closing the client';
    const done = (err) => {
        if (finished) return;
        if (err) return fail('close failed: ' + errText(err));
        finished = true;
        say(PROG + ' ' + opts.cmd + ': OK ' + what);
        process.stdout.write('', () => process.exit(0));
    };
    const t = setTimeout(() => fail('close did not complete within ' + CLOSE_TIMEOUT_MS / 1000 + ' s'),
        CLOSE_TIMEOUT_MS);
    t.unref();
    try {
        client.close((err) => { clearTimeout(t); done(err); });
    } catch (e) {
        clearTimeout(t);
        done(e);
    }
}

setTimeout(() => {
    fail('timed out after ' + opts.timeout + ' s while ' + phase);
}, opts.timeout * 1000).unref();
// Keep the process alive for the timer even when the SDK holds no handle.
const keepAlive = setInterval(() => {}, 1 << 30);

process.on('uncaughtException', (e) => fail('uncaught exception while ' + phase + ': ' + errText(e)));
process.on('unhandledRejection', (e) => fail('unhandled rejection while ' + phase + ': ' + errText(e)));

// Transport subclasses that replace only the port of the SDK's URL (--port).
function withPort(Transport) {
    if (opts.port === undefined) return Transport;
    const P = class extends Transport {
        _getConnectionUri(...args) {
            const uri = super._getConnectionUri(...args);
            // amqps://HOST[:PORT] or wss://HOST:443/$iothub/websocket
            const m = /^([a-z]+:\/\/)([^/]*?)(:\d+)?(\/.*)?$/.exec(uri);
            if (!m) throw new Error('cannot set the port in the SDK URL ' + uri);
            return m[1] + m[2] + ':' + opts.port + (m[4] || '');
        }
    };
    Object.defineProperty(P, 'name', { value: Transport.name });
    return P;
}

function propsObject(properties) {
    const out = {};
    if (!properties) return out;
    for (let i = 0; i < properties.count(); i++) {
        const item = properties.getItem(i);
        if (item) out[item.key] = item.value;
    }
    return out;
}

function resultName(r) {
    return r ? (r.constructor && r.constructor.name) || String(r) : null;
}

// ------------------------------------------------------------------ service

function serviceClient() {
    const iothub = require('azure-iothub');
    const { NoRetry } = require('azure-iot-common');
    const Transport = withPort(opts.transport === 'ws' ? iothub.AmqpWs : iothub.Amqp);
    let c;
    try {
        c = iothub.Client.fromConnectionString(opts['connection-string'], Transport);
    } catch (e) {
        usage('bad service connection string: ' + errText(e));
    }
    c.setRetryPolicy(new NoRetry());
    c.on('disconnect', (evt) => {
        if (!finished && phase !== 'closing the client') {
            fail('disconnected while ' + phase + ': ' + errText(evt && evt.reason));
        }
    });
    return c;
}

// Attach the feedback receiver and resolve once every id in `ids` has a record with `status`.
function waitFeedback(c, ids, status, then) {
    phase = 'attaching the feedback receiver';
    const pending = new Set(ids);
    c.getFeedbackReceiver((err, receiver) => {
        if (err) return fail('getFeedbackReceiver: ' + errText(err));
        phase = 'waiting for feedback for ' + [...pending].join(', ');
        log('feedback receiver attached; ' + phase);
        receiver.on('error', (e) => fail('feedback receiver error: ' + errText(e)));
        receiver.on('message', (msg) => {
            if (finished) return;
            const data = msg.getData();
            const text = Buffer.isBuffer(data) ? data.toString('utf8') : data === undefined ? undefined : String(data);
            emit({ event: 'feedback', contentType: msg.contentType, messageId: msg.messageId,
                properties: propsObject(msg.properties), body: text });
            if (msg.contentType !== 'application/vnd.microsoft.iothub.feedback.json') {
                return fail('feedback message has content type ' + JSON.stringify(msg.contentType) +
                    ', not application/vnd.microsoft.iothub.feedback.json');
            }
            let records;
            try {
                records = JSON.parse(text);
            } catch (e) {
                return fail('feedback body is not JSON (' + e.message + '): ' + JSON.stringify(text));
            }
            if (!Array.isArray(records)) return fail('feedback body is not a JSON array: ' + text);
            for (const r of records) {
                emit(Object.assign({ event: 'feedback-record' }, r));
                if (!r || typeof r !== 'object') return fail('feedback record is not an object: ' + JSON.stringify(r));
                if (pending.has(r.originalMessageId)) {
                    if (r.statusCode !== status) {
                        return fail('feedback for ' + r.originalMessageId + ' has statusCode ' +
                            JSON.stringify(r.statusCode) + ', expected ' + status);
                    }
                    pending.delete(r.originalMessageId);
                }
            }
            if (pending.size === 0) then();
            else phase = 'waiting for feedback for ' + [...pending].join(', ');
        });
    });
}

function serviceSend() {
    const { Message } = require('azure-iot-common');
    client = serviceClient();
    phase = 'opening the service client';
    client.open((err) => {
        if (err) return fail('open: ' + errText(err));
        log('service client open');
        const msg = new Message(opts.body !== undefined ? opts.body : 'c2d ' + opts['message-id']);
        msg.messageId = opts['message-id'];
        msg.ack = opts.ack;
        if (opts['correlation-id'] !== undefined) msg.correlationId = opts['correlation-id'];
        if (opts['content-type'] !== undefined) msg.contentType = opts['content-type'];
        if (opts['content-encoding'] !== undefined) msg.contentEncoding = opts['content-encoding'];
        if (opts['expiry-ms'] !== undefined) msg.expiryTimeUtc = Date.now() + opts['expiry-ms'];
        for (const [k, v] of opts.props) msg.properties.add(k, v);
        phase = 'sending to ' + opts.device;
        client.send(opts.device, msg, (err, result) => {
            if (opts['expect-error'] !== undefined) {
                if (!err) return fail('the send succeeded (' + resultName(result) + '), expected ' + opts['expect-error']);
                emit({ event: 'send-error', name: errName(err), message: err.message,
                    condition: err.amqpError && err.amqpError.condition });
                if (errName(err) !== opts['expect-error']) {
                    return fail('the send failed with ' + errText(err) + ', expected ' + opts['expect-error']);
                }
                return succeed('send failed with ' + errName(err) + ' as expected');
            }
            if (err) return fail('send: ' + errText(err));
            emit({ event: 'sent', device: opts.device, messageId: opts['message-id'], ack: opts.ack,
                properties: Object.fromEntries(opts.props), result: resultName(result) });
            if (resultName(result) !== 'MessageEnqueued') return fail('send result is ' + resultName(result) + ', not MessageEnqueued');
            if (opts['expect-feedback'] === undefined) return succeed('sent ' + opts['message-id']);
            waitFeedback(client, [opts['message-id']], opts['expect-feedback'],
                () => succeed('sent ' + opts['message-id'] + ', feedback ' + opts['expect-feedback']));
        });
    });
}

function serviceFeedback() {
    client = serviceClient();
    phase = 'opening the service client';
    client.open((err) => {
        if (err) return fail('open: ' + errText(err));
        log('service client open');
        waitFeedback(client, opts['expect-message-id'], opts['expect-status'],
            () => succeed('feedback ' + opts['expect-status'] + ' for ' + opts['expect-message-id'].join(', ')));
    });
}

// ------------------------------------------------------------------ device

function deviceClient() {
    const { Client, ModuleClient } = require('azure-iot-device');
    const { Amqp, AmqpWs } = require('azure-iot-device-amqp');
    const { NoRetry } = require('azure-iot-common');
    const Transport = withPort(opts.transport === 'ws' ? AmqpWs : Amqp);
    // A module's connection string (ModuleId=...) makes a ModuleClient, as the SDK's own
    // samples do; everything else is the same.
    const isModule = /(^|;)ModuleId=/i.test(opts['connection-string'] || '');
    let c;
    try {
        c = (isModule ? ModuleClient : Client).fromConnectionString(opts['connection-string'], Transport);
    } catch (e) {
        usage('bad device connection string: ' + errText(e));
    }
    if (opts.retry !== 'sdk') c.setRetryPolicy(new NoRetry());
    c.on('error', (e) => fail('device client error while ' + phase + ': ' + errText(e)));
    c.on('disconnect', (evt) => {
        if (!finished && phase !== 'closing the client') {
            fail('disconnected while ' + phase + ': ' + errText(evt && evt.reason));
        }
    });
    return c;
}

// setOptions({ca}) when --ca is given, then open; `then` runs once open. With
// --expect-error, an open failure of that name is the success.
function deviceOpen(then) {
    const open = () => {
        phase = 'opening the device client';
        client.open((err) => {
            if (err) {
                if (opts['expect-error'] !== undefined) {
                    emit({ event: 'open-error', name: errName(err), message: err.message });
                    if (errName(err) === opts['expect-error']) {
                        finished = true;
                        say(PROG + ' ' + opts.cmd + ': OK open failed with ' + errName(err) + ' as expected');
                        process.stdout.write('', () => process.exit(0));
                        return;
                    }
                    return fail('open failed with ' + errText(err) + ', expected ' + opts['expect-error']);
                }
                return fail('open: ' + errText(err));
            }
            if (opts['expect-error'] !== undefined && opts.cmd === 'device-receive') {
                return fail('open succeeded, expected ' + opts['expect-error']);
            }
            log('device client open (' + opts.transport + ')');
            then();
        });
    };
    if (opts.ca === undefined && opts.cert === undefined) return open();
    phase = 'setting the device options';
    const options = {};
    if (opts.ca !== undefined) options.ca = fs.readFileSync(opts.ca, 'utf8');
    // An X.509 device (x509=true in its connection string): its certificate and key.
    if (opts.cert !== undefined) options.cert = fs.readFileSync(opts.cert, 'utf8');
    if (opts.key !== undefined) options.key = fs.readFileSync(opts.key, 'utf8');
    client.setOptions(options, (err) => {
        if (err) return fail('setOptions: ' + errText(err));
        open();
    });
}

// The delivery tag (the hub's lock token) of a received message, from the SDK's
// receiver link; null when it cannot be found.
function deliveryTag(msg) {
    try {
        const link = client._transport._c2dLink;
        for (const d of link._undisposedDeliveries) {
            if (d.msg === msg.transportObj) return Buffer.from(d.delivery.tag).toString('hex');
        }
    } catch (e) { /* not available */ }
    return null;
}

function deviceReceive() {
    client = deviceClient();
    let settled = 0;
    let received = 0;
    deviceOpen(() => {
        phase = 'waiting for C2D message 1 of ' + opts.count;
        client.on('message', (msg) => {
            // A message redelivered while closing (after a final abandon) is expected.
            if (finished || phase === 'closing the client') return;
            received++;
            if (received > opts.count) {
                return fail('message ' + received + ' arrived, expected only ' + opts.count + ' (messageId ' +
                    JSON.stringify(msg.messageId) + ')');
            }
            const data = msg.getData();
            const body = Buffer.isBuffer(data) ? data.toString('utf8') : data === undefined ? null : String(data);
            const amqp = msg.transportObj || {};
            const action = opts.actions[Math.min(received - 1, opts.actions.length - 1)];
            emit({ event: 'message', n: received, messageId: msg.messageId, correlationId: msg.correlationId,
                to: msg.to, ack: msg.ack, contentType: msg.contentType, contentEncoding: msg.contentEncoding,
                expiryTimeUtc: msg.expiryTimeUtc, properties: propsObject(msg.properties), body,
                messageAnnotations: amqp.message_annotations, userId: amqp.user_id,
                deliveryTag: deliveryTag(msg), action });
            if (opts['expect-body'] !== undefined && body !== opts['expect-body']) {
                return fail('message ' + received + ' has body ' + JSON.stringify(body) + ', expected ' +
                    JSON.stringify(opts['expect-body']));
            }
            if (opts['expect-message-id'] !== undefined && msg.messageId !== opts['expect-message-id']) {
                return fail('message ' + received + ' has messageId ' + JSON.stringify(msg.messageId) + ', expected ' +
                    JSON.stringify(opts['expect-message-id']));
            }
            phase = action + ' of message ' + received;
            client[action](msg, (err, result) => {
                if (err) return fail(action + ' of message ' + received + ': ' + errText(err));
                emit({ event: 'settled', n: received, action, result: resultName(result) });
                settled++;
                if (settled < opts.count) {
                    phase = 'waiting for C2D message ' + (settled + 1) + ' of ' + opts.count;
                    return;
                }
                if (opts['expect-no-more'] > 0) {
                    phase = 'checking that no message follows for ' + opts['expect-no-more'] + ' s';
                    setTimeout(() => succeed(settled + ' message(s) settled, none more in ' + opts['expect-no-more'] + ' s'),
                        opts['expect-no-more'] * 1000);
                } else {
                    succeed(settled + ' message(s) settled (' + opts.actions.join(',') + ')');
                }
            });
        });
    });
}

function deviceSend() {
    const { Message } = require('azure-iot-device');
    client = deviceClient();
    deviceOpen(() => {
        let n = 0;
        const next = () => {
            if (n === opts.count) return succeed(opts.count + ' message(s) sent');
            n++;
            const msg = new Message(opts.body);
            let id = opts['message-id'];
            if (id !== undefined && opts.count > 1) id += '-' + n;
            if (id !== undefined) msg.messageId = id;
            if (opts['correlation-id'] !== undefined) msg.correlationId = opts['correlation-id'];
            if (opts['content-type'] !== undefined) msg.contentType = opts['content-type'];
            if (opts['content-encoding'] !== undefined) msg.contentEncoding = opts['content-encoding'];
            for (const [k, v] of opts.props) msg.properties.add(k, v);
            phase = 'sending message ' + n + ' of ' + opts.count;
            const sentAt = Date.now();
            client.sendEvent(msg, (err, result) => {
                const waitedMs = Date.now() - sentAt;
                if (opts['expect-error'] !== undefined) {
                    // The messages before the expected error are sent as usual.
                    if (!err && n < opts.count) {
                        emit({ event: 'sent', n, messageId: id === undefined ? null : id, body: opts.body,
                            properties: Object.fromEntries(opts.props), result: resultName(result) });
                        return next();
                    }
                    if (!err) return fail('message ' + n + ' was sent (' + resultName(result) + '), expected ' + opts['expect-error']);
                    const amqp = err.amqpError;
                    emit({ event: 'send-error', n, name: errName(err), message: err.message,
                        condition: (amqp && amqp.condition) || null });
                    if (errName(err) !== opts['expect-error']) {
                        return fail('send failed with ' + errText(err) + ', expected ' + opts['expect-error']);
                    }
                    if (opts.reopen === undefined) return succeed('send failed with ' + errName(err) + ' as expected');
                    // --reopen: what an application does next: close the client, open a
                    // new one (a fresh connection and token) and send the message again.
                    // (Opening the closed client again races its own late close event:
                    // azure-iot-device-amqp 1.14.4 then fails the open with NotConnectedError.)
                    phase = 'closing the client after the error';
                    const old = client;
                    return old.close((closeErr) => {
                        // The old client's late events are no longer this run's concern.
                        old.removeAllListeners('disconnect');
                        old.removeAllListeners('error');
                        old.on('error', () => {});
                        if (closeErr) emit({ event: 'close-error', name: errName(closeErr), message: String(closeErr.message) });
                        phase = 'opening a new client';
                        client = deviceClient();
                        deviceOpen(() => {
                            phase = 'sending message ' + n + ' again';
                            client.sendEvent(new Message(opts.body), (again, result) => {
                                if (again) return fail('sendEvent ' + n + ' after reopening: ' + errText(again));
                                emit({ event: 'sent-again', n, result: resultName(result) });
                                succeed('send failed with ' + errName(err) + ' as expected; sent again after reopening');
                            });
                        });
                    });
                }
                if (err) return fail('sendEvent ' + n + ': ' + errText(err));
                emit({ event: 'sent', n, messageId: id === undefined ? null : id, body: opts.body,
                    properties: Object.fromEntries(opts.props), result: resultName(result), waitedMs });
                if (resultName(result) !== 'MessageEnqueued') {
                    return fail('sendEvent ' + n + ' result is ' + resultName(result) + ', not MessageEnqueued');
                }
                next();
            });
        };
        next();
    });
}

// getTwin (printed), update the reported properties with --reported and read the twin
// again (printed: the reported properties and their $version), then, with
// --await-desired KEY=JSON, subscribe to desired updates (the SDK's PUT), say so, and wait
// for an update that sets KEY to that value.
function deviceTwin() {
    client = deviceClient();
    deviceOpen(() => {
        phase = 'getting the twin';
        client.getTwin((err, twin) => {
            if (err) return fail('getTwin: ' + errText(err));
            emit({ event: 'twin', desired: twin.properties.desired, reported: twin.properties.reported });
            phase = 'updating reported properties';
            twin.properties.reported.update(opts.reportedPatch, (err) => {
                const expected = opts['expect-twin-error'];
                if (expected !== undefined) {
                    if (!err) return fail('the reported update succeeded, expected ' + expected);
                    // The hub's answer, its status annotation and its JSON body: under the
                    // twin client's error, which the transport's error wraps.
                    const inner = err.amqpError || {};
                    const answer = inner.amqpError || inner;
                    const status = answer.message_annotations ? answer.message_annotations.status : null;
                    const body = answer.body && answer.body.content ? String(answer.body.content) : null;
                    emit({ event: 'twin-error', name: errName(err), message: String(err.message), status, body });
                    if (errName(err) !== expected) {
                        return fail('the reported update failed with ' + errText(err) + ', expected ' + expected);
                    }
                } else if (err) {
                    return fail('reported update: ' + errText(err));
                }
                phase = 'getting the twin again';
                client.getTwin((err, again) => {
                    if (err) return fail('getTwin again: ' + errText(err));
                    emit({ event: 'twin', desired: again.properties.desired, reported: again.properties.reported });
                    if (opts.awaitKey === undefined) return succeed('twin read, reported, read again');
                    phase = 'waiting for desired ' + opts.awaitKey;
                    again.on('properties.desired', (delta) => {
                        emit({ event: 'desired', delta });
                        if (JSON.stringify(delta[opts.awaitKey]) === JSON.stringify(opts.awaitValue)) {
                            succeed('desired ' + opts.awaitKey + ' arrived');
                        }
                    });
                });
            });
        });
    });
}

// Listens for direct method --method, prints each request (its payload), answers the
// first with --status and the JSON --answer, and ends once the answer is sent.
function deviceMethod() {
    client = deviceClient();
    deviceOpen(() => {
        phase = 'waiting for a call of ' + opts.method;
        // A device client listens with onDeviceMethod, a module client with onMethod.
        const listen = (client.onDeviceMethod || client.onMethod).bind(client);
        listen(opts.method, (request, response) => {
            emit({ event: 'request', method: request.methodName, payload: request.payload, requestId: request.requestId });
            phase = 'answering ' + opts.method;
            response.send(opts.status, JSON.parse(opts.answer), (err) => {
                if (err) return fail('answer: ' + errText(err));
                succeed('answered ' + opts.method + ' with ' + opts.status);
            });
        });
    });
}

// ------------------------------------------------------------------ REST

// --port for the REST commands: every https connection goes to port P instead of 443
// (the SDKs make agents of their own, so every agent's connections).
function restPort() {
    if (opts.port === undefined) return;
    const https = require('https');
    const create = https.Agent.prototype.createConnection;
    https.Agent.prototype.createConnection = function (options, cb) {
        return create.call(this, Object.assign({}, options, { port: opts.port }), cb);
    };
}

function hostName() {
    const m = /(^|;)HostName=([^;]+)/i.exec(opts['connection-string']);
    if (!m) usage('the connection string has no HostName');
    return m[2];
}

function registry() {
    restPort();
    const iothub = require('azure-iothub');
    client = { close: (cb) => cb() };
    try {
        return iothub.Registry.fromConnectionString(opts['connection-string']);
    } catch (e) {
        usage('bad service connection string: ' + errText(e));
    }
}

// `await op` that must fail with error `name`; prints the failure.
async function mustFail(event, name, op) {
    try {
        await op;
    } catch (e) {
        emit({ event, name: errName(e), status: e.response && e.response.statusCode, message: e.message });
        if (errName(e) !== name) throw new Error(event + ' failed with ' + errText(e) + ', expected ' + name);
        return;
    }
    throw new Error(event + ' succeeded, expected ' + name);
}

async function serviceRegistry() {
    const r = registry();
    const id = opts.device;
    const host = hostName();
    phase = 'creating device ' + id;
    const created = (await r.create({ deviceId: id })).responseBody;
    const key = created.authentication.symmetricKey.primaryKey;
    emit({ event: 'created', deviceId: created.deviceId, status: created.status, etag: created.etag,
        type: created.authentication.type, secondaryKey: created.authentication.symmetricKey.secondaryKey,
        connectionString: 'HostName=' + host + ';DeviceId=' + id + ';SharedAccessKey=' + key });
    if (!key) throw new Error('the created device has no primary key');
    phase = 'creating device ' + id + ' again';
    await mustFail('create-again', 'DeviceAlreadyExistsError', r.create({ deviceId: id }));
    phase = 'getting device ' + id;
    const got = (await r.get(id)).responseBody;
    emit({ event: 'got', deviceId: got.deviceId, status: got.status, etag: got.etag });
    if (got.authentication.symmetricKey.primaryKey !== key) throw new Error('get gave another primary key');
    phase = 'listing devices';
    const list = (await r.list()).responseBody;
    emit({ event: 'listed', deviceIds: list.map((d) => d.deviceId) });
    for (const status of ['disabled', 'enabled']) {
        phase = 'setting device ' + id + ' ' + status;
        const u = (await r.update({ deviceId: id, status })).responseBody;
        emit({ event: 'updated', deviceId: u.deviceId, status: u.status, etag: u.etag });
        if (u.status !== status) throw new Error('the update left the status ' + u.status);
        if (u.authentication.symmetricKey.primaryKey !== key) throw new Error('the update changed the key');
    }
    if (opts.module !== undefined) {
        const m = opts.module;
        phase = 'creating module ' + id + '/' + m;
        const mod = (await r.addModule({ deviceId: id, moduleId: m })).responseBody;
        const mkey = mod.authentication.symmetricKey.primaryKey;
        emit({ event: 'module-created', deviceId: mod.deviceId, moduleId: mod.moduleId,
            connectionString: 'HostName=' + host + ';DeviceId=' + id + ';ModuleId=' + m + ';SharedAccessKey=' + mkey });
        phase = 'getting module ' + id + '/' + m;
        const gm = (await r.getModule(id, m)).responseBody;
        emit({ event: 'module-got', moduleId: gm.moduleId, etag: gm.etag });
        phase = 'listing the modules of ' + id;
        const mods = (await r.getModulesOnDevice(id)).responseBody;
        emit({ event: 'modules-listed', moduleIds: mods.map((x) => x.moduleId) });
    }
    succeed('registry steps done for ' + id);
}

async function serviceRegistryDelete() {
    const r = registry();
    if (opts.module !== undefined) {
        // The module first (removeModule with ids sends If-Match "*"), then the device.
        phase = 'deleting module ' + opts.module + ' of ' + opts.device;
        await r.removeModule(opts.device, opts.module);
        emit({ event: 'module-deleted', deviceId: opts.device, moduleId: opts.module });
        phase = 'getting deleted module ' + opts.module;
        // The SDK names only DeviceNotFound and IotHubNotFound; a module's 404 is a plain Error.
        await mustFail('get-deleted-module', 'Error', r.getModule(opts.device, opts.module));
        phase = 'listing the modules of ' + opts.device;
        const left = (await r.getModulesOnDevice(opts.device)).responseBody.map((m) => m.moduleId);
        emit({ event: 'modules-left', moduleIds: left });
    }
    phase = 'deleting device ' + opts.device;
    await r.delete(opts.device);
    emit({ event: 'deleted', deviceId: opts.device });
    phase = 'getting deleted device ' + opts.device;
    await mustFail('get-deleted', 'DeviceNotFoundError', r.get(opts.device));
    succeed('device ' + opts.device + ' deleted');
}

async function serviceTwin() {
    const r = registry();
    phase = 'getting the twin of ' + opts.device;
    const twin = (await r.getTwin(opts.device)).responseBody;
    emit({ event: 'twin', deviceId: twin.deviceId, etag: twin.etag, tags: twin.tags,
        connectionState: twin.connectionState,
        desired: twin.properties.desired, reported: twin.properties.reported });
    phase = 'updating the twin';
    const patch = { tags: opts.tagsPatch, properties: { desired: opts.desiredPatch } };
    const updated = (await r.updateTwin(opts.device, patch, twin.etag)).responseBody;
    emit({ event: 'updated', etag: updated.etag, tags: updated.tags, desired: updated.properties.desired });
    phase = 'updating the twin with its stale etag';
    await mustFail('stale-update', 'InvalidEtagError', r.updateTwin(opts.device, patch, twin.etag));
    succeed('twin updated');
}

async function serviceMethod() {
    restPort();
    const iothub = require('azure-iothub');
    const { NoRetry } = require('azure-iot-common');
    let c;
    try {
        c = iothub.Client.fromConnectionString(opts['connection-string']);
    } catch (e) {
        usage('bad service connection string: ' + errText(e));
    }
    c.setRetryPolicy(new NoRetry());
    client = { close: (cb) => cb() };
    const params = { methodName: opts.method, payload: opts.payloadValue,
        responseTimeoutInSeconds: opts.responseTimeout, connectTimeoutInSeconds: opts.connectTimeout };
    phase = 'invoking ' + opts.method + ' on ' + opts.device;
    const call = opts.module === undefined ? c.invokeDeviceMethod(opts.device, params)
        : c.invokeDeviceMethod(opts.device, opts.module, params);
    if (opts['expect-error'] !== undefined) {
        await mustFail('error', opts['expect-error'], call);
        return succeed('the call failed with ' + opts['expect-error'] + ' as expected');
    }
    const result = (await call).result;
    emit({ event: 'result', status: result.status, payload: result.payload });
    if (opts.expectStatus !== undefined && result.status !== opts.expectStatus) {
        throw new Error('the device answered ' + result.status + ', expected ' + opts.expectStatus);
    }
    succeed(opts.method + ' answered ' + result.status);
}

function deviceHttpReceive() {
    restPort();
    const { Client } = require('azure-iot-device');
    const { Http } = require('azure-iot-device-http');
    const { NoRetry } = require('azure-iot-common');
    try {
        client = Client.fromConnectionString(opts['connection-string'], Http);
    } catch (e) {
        usage('bad device connection string: ' + errText(e));
    }
    client.setRetryPolicy(new NoRetry());
    client.on('error', (e) => fail('device client error while ' + phase + ': ' + errText(e)));
    const options = { http: { receivePolicy: { interval: 1 } } };
    if (opts.ca !== undefined) options.ca = fs.readFileSync(opts.ca, 'utf8');
    let received = 0;
    let settled = 0;
    phase = 'setting the device options';
    client.setOptions(options, (err) => {
        if (err) return fail('setOptions: ' + errText(err));
        phase = 'waiting for C2D message 1 of ' + opts.count;
        client.on('message', (msg) => {
            if (finished || phase === 'closing the client') return;
            received++;
            const action = opts.actions[Math.min(received - 1, opts.actions.length - 1)];
            const data = msg.getData();
            emit({ event: 'message', n: received, messageId: msg.messageId, correlationId: msg.correlationId,
                to: msg.to, expiryTimeUtc: msg.expiryTimeUtc, lockToken: msg.lockToken,
                properties: propsObject(msg.properties),
                body: Buffer.isBuffer(data) ? data.toString('utf8') : String(data), action });
            phase = action + ' of message ' + received;
            client[action](msg, (err, result) => {
                if (err) return fail(action + ' of message ' + received + ': ' + errText(err));
                emit({ event: 'settled', n: received, action, result: resultName(result) });
                settled++;
                if (settled >= opts.count) return succeed(settled + ' message(s) settled over HTTPS');
                phase = 'waiting for C2D message ' + (settled + 1) + ' of ' + opts.count;
            });
        });
    });
}

const rest = (f) => () => f().catch((e) => fail(phase + ': ' + errText(e)));

({
    'service-registry': rest(serviceRegistry),
    'service-registry-delete': rest(serviceRegistryDelete),
    'service-twin': rest(serviceTwin),
    'service-method': rest(serviceMethod),
    'device-http-receive': deviceHttpReceive,
    'device-method': deviceMethod,
    'device-twin': deviceTwin,
    'service-send': serviceSend,
    'service-feedback': serviceFeedback,
    'device-receive': deviceReceive,
    'device-send': deviceSend,
})[opts.cmd]();
void keepAlive;
