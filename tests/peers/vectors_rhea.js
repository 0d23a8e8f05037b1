// Runs the conformance vectors of tests/vectors/ through rhea's decoders and prints one
// JSON line per vector: {"id": ..., "verdict": "accept" | "reject" | "crash", "detail": ...}
//
// - input "value":   new types.Reader(buffer).read(); the vector is one value, so a read
//                    that stops before the end is a reject ("trailing bytes"), and one that
//                    ends past the end (rhea does not check sizes against the buffer) is an
//                    accept of bytes that are not there, said in the detail.
// - input "message": message.decode(buffer).
// - input "frame":   what rhea's Transport.read does with a buffer after the protocol
//                    header: the frame size from the first 4 bytes, wait for that many
//                    (a frame that never completes is a reject: "waiting for more bytes"),
//                    then frames.read_frame on exactly those bytes.
//
// A ProtocolError (rhea's decoding error, or its TypeError subclass) is a reject; any other
// exception (a RangeError from reading past a Buffer, a native TypeError, a stack overflow)
// is a crash: the decoder failed in a way it did not mean to. Each vector runs under a time
// limit in a vm context, so a loop is reported as a hang.
//
// Usage: node vectors_rhea.js [--from N]

'use strict';

const fs = require('fs');
const path = require('path');
const vm = require('vm');

const lib = path.join(__dirname, 'node_modules', 'rhea', 'lib');
const types = require(path.join(lib, 'types.js'));
const frames = require(path.join(lib, 'frames.js'));
const message = require(path.join(lib, 'message.js'));
const errors = require(path.join(lib, 'errors.js'));

const LIMIT_MS = 1000;

// rhea's message.decode warns on the console about sections it does not know; the output
// of this script is the JSON lines only.
console.warn = () => {};

function load() {
  const dir = path.join(__dirname, '..', 'vectors');
  const out = [];
  for (const f of fs.readdirSync(dir).filter((f) => f.endsWith('.json')).sort()) {
    out.push(...JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')).vectors);
  }
  return out;
}

function decodeValue(b) {
  const r = new types.Reader(b);
  r.read();
  if (r.position < b.length) return ['reject', `trailing bytes: read ${r.position} of ${b.length}`];
  if (r.position > b.length) return ['accept', `read ${r.position} bytes of ${b.length}: past the end`];
  return ['accept', ''];
}

function decodeMessage(b) {
  message.decode(b);
  return ['accept', ''];
}

function decodeFrame(b) {
  // Transport.read: a frame needs its 4 size bytes and then `size` bytes in all.
  if (b.length < 4) return ['reject', 'waiting for more bytes'];
  const size = b.readUInt32BE(0);
  if (b.length < size) return ['reject', `waiting for more bytes (size ${size}, ${b.length} present)`];
  const f = frames.read_frame(b.slice(0, size));
  if (f === null) return ['reject', 'waiting for more bytes'];
  if (size < b.length) {
    return ['reject', `waiting for more bytes (${b.length - size} bytes of a next frame)`];
  }
  if (size < 8) return ['accept', `read a frame of size ${size}`];
  return ['accept', ''];
}

const DECODERS = { value: decodeValue, message: decodeMessage, frame: decodeFrame };

function verdict(v) {
  const b = Buffer.from(v.hex, 'hex');
  const context = vm.createContext({ run: () => DECODERS[v.input](b) });
  try {
    return new vm.Script('run()').runInContext(context, { timeout: LIMIT_MS });
  } catch (e) {
    if (e && e.code === 'ERR_SCRIPT_EXECUTION_TIMEOUT') return ['hang', `no result in ${LIMIT_MS} ms`];
    if (e instanceof errors.ProtocolError) return ['reject', `${e.name}: ${e.message}`];
    const what = e && e.name ? `${e.name}: ${e.message}` : String(e);
    return ['crash', what];
  }
}

function main() {
  const i = process.argv.indexOf('--from');
  const start = i > 0 ? Number(process.argv[i + 1]) : 0;
  for (const v of load().slice(start)) {
    const [verdictName, detail] = verdict(v);
    process.stdout.write(JSON.stringify({ id: v.id, verdict: verdictName, detail: String(detail).slice(0, 200) }) + '\n');
  }
}

main();
