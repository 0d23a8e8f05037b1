// amqpwire in the browser: the sans-IO engine (amqpwire_bg.wasm, through wasm-bindgen's
// amqpwire.js) driven over the browser's own WebSocket, with promises. The trace records
// come from a module of their own (amqpwire-trace_bg.wasm), loaded only by a connection
// given an onframe callback; the Azure pieces (SAS tokens, CBS, cloud-to-device messages
// and feedback) from another (amqpwire-azure_bg.wasm), loaded by loadAzure():
//
//   const azure = await loadAzure();
//   const creds = JSON.parse(azure.iothubPlainCredentials(connectionString, expiry));
//
//   const conn = await connect("wss://myhub.azure-devices.net/$iothub/websocket", {
//     containerId: "seed000", hostname: "myhub.azure-devices.net",
//     sasl: { mechanism: "PLAIN", username, password },
//     onframe: (record) => …,               // each --trace-json record, in and out
//   });
//   const session = await conn.begin();
//   const sender = await session.sender("c2d", "/messages/devicebound");
//   await sender.send({ body: "hi", applicationProperties: { k: "v" } });
//   const receiver = await session.receiver("fb", "/messages/serviceBound/feedback", 10);
//   const delivery = await receiver.receive();
//   delivery.accept();
//   await conn.close();
//
// This file does I/O and bookkeeping only: every frame is made and read by the engine.

import init, * as wasm from "./amqpwire.js";

export { wasm };

let ready = null;
let tracing = null;
let azure = null;

/** Loads the WebAssembly module (once). */
export function load() {
  if (!ready) ready = init();
  return ready;
}

/** Loads the trace module (once): its `Tracer` makes the trace records. */
export function loadTrace() {
  if (!tracing) {
    tracing = import("./amqpwire-trace.js").then(async (trace) => {
      await trace.default();
      return trace;
    });
    // A failed load may be tried again.
    tracing.catch(() => {
      tracing = null;
    });
  }
  return tracing;
}

/** The Azure module's functions and their parameters: `?` may be null or left out, `#`
 * is a number, `[]` a Uint8Array, `{}` a message (an object, or its JSON text); the rest
 * are strings. */
const AZURE = {
  sasToken: ["resource", "key", "keyName?", "expiry#"],
  sasTokenFromConnectionString: ["connectionString", "expiry#"],
  iothubPlainCredentials: ["connectionString", "expiry#"],
  putTokenMessage: ["audience", "token", "tokenType?", "messageId"],
  readCbsStatus: ["payload[]"],
  c2dMessage: ["deviceId", "message{}", "ack", "messageId"],
  iothubAddresses: ["deviceId"],
  parseFeedback: ["payload[]"],
};

/** `args` checked against `params` (as in AZURE) for the function `name`: a TypeError
 * names the first that does not fit (wasm-bindgen's glue checks nothing, and a number
 * where it expects a string makes the module trap). Messages become JSON text. */
function checkArgs(name, params, args) {
  return params.map((param, i) => {
    const v = args[i];
    const what = `${name}: ${param.replace(/[?#{}[\]]/g, "")}`;
    if (param.endsWith("?")) {
      if (v === null || v === undefined) return undefined;
      if (typeof v !== "string") throw new TypeError(`${what} must be a string, or null`);
    } else if (param.endsWith("#")) {
      if (typeof v !== "number") throw new TypeError(`${what} must be a number, not ${typeof v}`);
    } else if (param.endsWith("[]")) {
      if (!(v instanceof Uint8Array)) throw new TypeError(`${what} must be a Uint8Array`);
    } else if (param.endsWith("{}")) {
      if (typeof v === "string") return v;
      if (typeof v !== "object" || v === null) throw new TypeError(`${what} must be an object or its JSON text`);
      return JSON.stringify(v, finite);
    } else if (typeof v !== "string") {
      throw new TypeError(`${what} must be a string, not ${v === null ? "null" : typeof v}`);
    }
    return v;
  });
}

/**
 * Loads the Azure module (once) and resolves to its functions, each checking the types of
 * its arguments: `sasToken`, `sasTokenFromConnectionString`, `iothubPlainCredentials`,
 * `putTokenMessage`, `readCbsStatus`, `c2dMessage`, `iothubAddresses`, `parseFeedback`
 * (docs/browser.md).
 */
export function loadAzure() {
  if (!azure) {
    azure = import("./amqpwire-azure.js").then(async (module) => {
      await module.default();
      const checked = {};
      for (const [name, params] of Object.entries(AZURE)) {
        checked[name] = (...args) => module[name](...checkArgs(name, params, args));
      }
      return Object.freeze(checked);
    });
    // A failed load may be tried again.
    azure.catch(() => {
      azure = null;
    });
  }
  return azure;
}

function hexToBytes(hex) {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
  return out;
}

/** `value` as a whole number in [min, max], or an error naming `what`. */
function whole(what, value, min, max) {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new TypeError(`${what} must be a whole number from ${min} to ${max}, not ${String(value)}`);
  }
  return value;
}

/** A JSON.stringify replacer that refuses what JSON cannot hold (NaN, Infinity), which
 * would otherwise become null. */
function finite(key, value) {
  if (typeof value === "number" && !Number.isFinite(value)) {
    throw new TypeError(`${key || "the message"} is ${value}: JSON has no such number`);
  }
  return value;
}

/** Calls the page's callback `f` with `value`. What it throws is thrown again on its own
 * (the page's console shows it, as any uncaught error), never into the driver: the
 * connection goes on. */
function callBack(f, value) {
  try {
    f(value);
  } catch (e) {
    queueMicrotask(() => {
      throw e;
    });
  }
}

/** A promise of what `f` returns; what it throws rejects it. */
function attempt(f) {
  try {
    return Promise.resolve(f());
  } catch (e) {
    return Promise.reject(e);
  }
}

/** The largest WebSocket message the driver sends (bytes). */
const SOCKET_CHUNK = 65536;

/** A TypeError unless `value` is a string. */
function text(what, value) {
  if (typeof value !== "string") throw new TypeError(`${what} must be a string, not ${value === null ? "null" : typeof value}`);
  return value;
}

/** How long the WebSocket's opening handshake may take, by default (ms). */
const HANDSHAKE_TIME_OUT = 60000;

function describe(error) {
  if (!error) return "no error";
  if (typeof error === "string") return error;
  return error.description ? `${error.condition}: ${error.description}` : error.condition;
}

/**
 * Opens a connection over WebSocket (subprotocol AMQPWSB10) and waits for the peer's open.
 * `options` are the engine's (see docs/browser.md), plus `onframe` and `onevent` callbacks,
 * set before the first byte goes out so that they see the SASL exchange and the opens,
 * `showSecrets` (trace records keep passwords and signatures instead of masking them), and
 * `handshakeTimeOut` (ms, default 60000): how long the WebSocket's opening handshake may
 * take before the connection fails (the engine's open time-out runs from the socket's
 * opening). With `onframe`, the trace module is loaded and the engine keeps every frame
 * for it; `conn.onframe` may be changed later, but a connection made without one has no
 * trace (the records decode each direction from its first byte).
 */
export async function connect(url, options = {}) {
  if (typeof url !== "string" && !(url instanceof URL)) throw new TypeError("connect: the URL must be a string");
  if (typeof options !== "object" || options === null) throw new TypeError("connect: options must be an object");
  await load();
  const {
    onframe = null,
    onevent = null,
    showSecrets = false,
    handshakeTimeOut = HANDSHAKE_TIME_OUT,
    ...engineOptions
  } = options;
  whole("handshakeTimeOut", handshakeTimeOut, 1, 2147483647);
  if (onframe !== null && typeof onframe !== "function") throw new TypeError("onframe must be a function");
  if (onevent !== null && typeof onevent !== "function") throw new TypeError("onevent must be a function");
  if (typeof showSecrets !== "boolean") throw new TypeError("showSecrets must be true or false");
  const tracer = onframe ? new (await loadTrace()).Tracer(showSecrets) : null;
  // A number JSON has no form for (NaN, Infinity) is refused, not written as null (which
  // the engine would read as an option left out).
  const engine = new wasm.Engine(JSON.stringify({ ...engineOptions, trace: tracer !== null }, finite));
  const conn = new Connection(engine, tracer);
  conn.onframe = onframe;
  conn.onevent = onevent;
  await conn._open(url, handshakeTimeOut);
  // A peer that refuses the connection answers with its open and then its close, in
  // the same input: the open resolved the wait, the close ended the connection.
  if (conn.ended) throw conn.endError || new Error("the peer closed the connection at once");
  return conn;
}

class Waiters {
  constructor() {
    this.map = new Map();
  }
  wait(key) {
    return new Promise((resolve, reject) => {
      const list = this.map.get(key) || [];
      list.push({ resolve, reject });
      this.map.set(key, list);
    });
  }
  resolve(key, value) {
    const list = this.map.get(key) || [];
    this.map.delete(key);
    for (const w of list) w.resolve(value);
  }
  reject(key, error) {
    const list = this.map.get(key) || [];
    this.map.delete(key);
    for (const w of list) w.reject(error);
  }
  rejectAll(error) {
    for (const key of [...this.map.keys()]) this.reject(key, error);
  }
}

export class Connection {
  constructor(engine, tracer = null) {
    this.engine = engine;
    /** The trace module's Tracer, when the connection was made with onframe. */
    this.tracer = tracer;
    this.socket = null;
    this.timer = null;
    this.waiters = new Waiters();
    this.links = new Map();
    this.sessions = new Map();
    this.remoteOpen = null;
    this.ended = false;
    this.endError = null;
    this.closing = null;
    /** How the WebSocket closed, when it closed before the connection ended. */
    this.socketClose = null;
    /** Called with each trace record (the JSON of --trace-json), when there is a tracer. */
    this.onframe = null;
    /** Called with each engine event. */
    this.onevent = null;
  }

  _open(url, handshakeTimeOut) {
    const opened = this.waiters.wait("opened");
    const socket = new WebSocket(url, ["AMQPWSB10"]);
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    // A peer that never answers the WebSocket upgrade: the engine's timers start only
    // once the socket is open.
    this.timer = setTimeout(
      () => this._fail(`no WebSocket handshake from ${url} within ${handshakeTimeOut} ms`),
      handshakeTimeOut,
    );
    socket.onopen = () => {
      clearTimeout(this.timer);
      // The engine's clock starts with the socket: the peer's open is timed from here.
      this.engine.handleTimeout();
      this._pump();
    };
    socket.onmessage = (m) => {
      if (typeof m.data === "string") {
        this._fail("the peer sent a text WebSocket message; AMQP goes in binary ones");
        return;
      }
      this.engine.handleInput(new Uint8Array(m.data));
      this._pump();
    };
    socket.onerror = () => this._fail(`WebSocket error on ${url}`);
    socket.onclose = (e) => {
      if (!this.ended) {
        // Kept for the error the engine's end brings: the WebSocket's own reason.
        this.socketClose = `WebSocket closed with code ${e.code}${e.reason ? ": " + e.reason : ""}`;
        this.engine.handleEof();
        this._pump();
        this._fail(this.socketClose);
      }
    };
    return opened;
  }

  _fail(why) {
    if (this.ended) return;
    this.ended = true;
    this.endError = new Error(why);
    clearTimeout(this.timer);
    this.waiters.rejectAll(this.endError);
    for (const l of this.links.values()) l._end(this.endError);
    try {
      this.socket.close();
    } catch (_) {
      // already closed
    }
  }

  /** Runs the engine's outputs: bytes to write, trace records, events, the next timer. */
  _pump() {
    for (;;) {
      const out = this.engine.pollTransmit();
      if (out.length && this.socket.readyState === WebSocket.OPEN) {
        // In WebSocket messages of at most 64 KiB, as the native client writes them: AMQP
        // is a byte stream across them, and a peer may limit a message's size (amqpwire's
        // listener takes 4 MiB at most).
        for (let at = 0; at < out.length; at += SOCKET_CHUNK) this.socket.send(out.subarray(at, at + SOCKET_CHUNK));
      }
      this._trace();
      const events = JSON.parse(this.engine.pollEvents());
      for (const ev of events) this._event(ev);
      if (!out.length && !events.length) break;
    }
    clearTimeout(this.timer);
    const ms = this.engine.pollTimeout();
    if (ms >= 0 && !this.ended) {
      // setTimeout takes at most 2^31 - 1 ms (a larger delay fires at once, again and
      // again): a later deadline is waited for in steps, handleTimeout finding nothing due.
      this.timer = setTimeout(() => {
        this.engine.handleTimeout();
        this._pump();
      }, Math.min(Math.ceil(ms), 2147483647));
    }
  }

  /** Hands the trace records of what went and came since the last call to `onframe`. */
  _trace() {
    const frames = this.engine.pollTraceFrames();
    if (!frames.length || !this.tracer) return;
    let records;
    try {
      records = JSON.parse(this.tracer.records(frames, this.engine.elapsed()));
    } catch (e) {
      // (The engine's own packing: not expected.) The trace stops, said once; the
      // connection goes on.
      this.tracer = null;
      callBack(() => {
        throw new Error(`the trace stopped: ${e.message}`);
      });
      return;
    }
    if (this.onframe) for (const r of records) callBack(this.onframe, r);
  }

  _event(ev) {
    if (this.onevent) callBack(this.onevent, ev);
    switch (ev.type) {
      case "opened":
        this.remoteOpen = ev;
        this.waiters.resolve("opened", this);
        break;
      case "sessionBegun": {
        const session = new Session(this, ev.session);
        this.sessions.set(ev.session, session);
        this.waiters.resolve(`session ${ev.session}`, session);
        break;
      }
      case "sessionEnded": {
        const error = new Error(ev.byPeer || ev.error ? `session ended: ${describe(ev.error)}` : "the session was ended");
        this.waiters.reject(`session ${ev.session}`, error);
        // Our own end, answered (or crossed by the peer's): end() resolves, with the
        // error the peer's end carried, if any.
        this.waiters.resolve(`session ${ev.session} end`, ev.error ?? null);
        const session = this.sessions.get(ev.session);
        if (session) session.error = error;
        this.sessions.delete(ev.session);
        // Its links went with it (the engine tells no detach for them): what waits on
        // them (an attach, a receive, a send's outcome) is rejected.
        for (const [n, link] of this.links) {
          if (link.session !== ev.session) continue;
          this.waiters.reject(`link ${n}`, error);
          link._end(error);
          this.links.delete(n);
        }
        break;
      }
      case "linkAttached": {
        const link = this.links.get(ev.link);
        if (ev.refused) break; // its detach, with the error, follows
        this.waiters.resolve(`link ${ev.link}`, link);
        break;
      }
      case "linkDetached": {
        const error = ev.byPeer
          ? new Error(`the peer detached the link: ${describe(ev.error)}`)
          : new Error(ev.error ? `link detached: ${describe(ev.error)}` : "the link was detached");
        this.waiters.reject(`link ${ev.link}`, error);
        const link = this.links.get(ev.link);
        if (link) link._end(error);
        // Its number names no later link: nothing more comes for it.
        this.links.delete(ev.link);
        break;
      }
      case "linkError":
      case "sessionError":
      case "connectionError": // "ended", with the same error, follows
        break;
      case "credit": {
        const link = this.links.get(ev.link);
        if (link) link._credit(ev.credit, ev.drain);
        break;
      }
      case "sessionWindow":
        // Messages held for room in the peer's window may go now.
        for (const link of this.links.values()) link._flush();
        break;
      case "delivery": {
        const link = this.links.get(ev.link);
        if (link) link._deliver(ev);
        break;
      }
      case "aborted": {
        // The sender gave the delivery up: it took a credit all the same.
        const link = this.links.get(ev.link);
        if (link) link._aborted();
        break;
      }
      case "disposition": {
        const link = this.links.get(ev.link);
        if (link) link._disposition(ev);
        break;
      }
      case "remoteClose":
        if (ev.error) this.endError = new Error(`the peer closed: ${describe(ev.error)}`);
        break;
      case "ended":
        this.ended = true;
        clearTimeout(this.timer);
        if (ev.error) this.endError = new Error(this.socketClose ? `${ev.error} (${this.socketClose})` : ev.error);
        this.waiters.resolve("closed", this.endError);
        this.waiters.rejectAll(this.endError || new Error("the connection closed"));
        for (const l of this.links.values()) l._end(this.endError || new Error("the connection closed"));
        try {
          this.socket.close();
        } catch (_) {
          // already closed
        }
        break;
    }
  }

  /** Calls `f` on the engine, then runs its outputs; a usage error rejects. */
  _command(f) {
    if (this.ended) throw this.endError || new Error("the connection is closed");
    const r = f(this.engine);
    this._pump();
    return r;
  }

  /** Begins a session. */
  begin() {
    return attempt(() => {
      const n = this._command((e) => e.begin());
      return this.waiters.wait(`session ${n}`);
    });
  }

  /** Closes the connection; resolves once the peer answered (a second call, with the
   * first). */
  close() {
    if (this.ended) return Promise.resolve();
    if (this.closing) return this.closing;
    const closed = this.waiters.wait("closed");
    // When the close command itself throws, nothing else awaits this waiter.
    closed.catch(() => {});
    this.closing = attempt(() => this._command((e) => e.close())).then(() =>
      closed.then((error) => {
        if (error) throw error;
      }),
    );
    return this.closing;
  }
}

export class Session {
  constructor(conn, number) {
    this.conn = conn;
    this.number = number;
    /** Why the session ended, once it has. */
    this.error = null;
    /** What end() gave, once it was called. */
    this.ending = null;
  }

  _attach(link, n) {
    this.conn.links.set(n, link);
    return this.conn.waiters.wait(`link ${n}`);
  }

  /** Ends the session; resolves once the peer answered (with the error the peer's end
   * carried, or null). Its links end with it: what waits on them is rejected. A second
   * call gives the first one's promise. */
  end() {
    if (this.ending) return this.ending;
    this.ending = attempt(() => {
      if (this.error) throw this.error;
      this.conn._command((e) => e.end(this.number));
      return this.conn.waiters.wait(`session ${this.number} end`);
    });
    return this.ending;
  }

  /** Attaches a sender to `address`. */
  sender(name, address) {
    return attempt(() => {
      if (this.error) throw this.error;
      text("the link's name", name);
      text("the address", address);
      const n = this.conn._command((e) => e.attachSender(this.number, name, address));
      return this._attach(new Sender(this.conn, this.number, n), n);
    });
  }

  /** Attaches a receiver from `address`, keeping `credit` messages granted (a whole
   * number, up to 4294967295). */
  receiver(name, address, credit = 10) {
    return attempt(() => {
      if (this.error) throw this.error;
      text("the link's name", name);
      text("the address", address);
      whole("credit", credit, 0, 4294967295);
      const n = this.conn._command((e) => e.attachReceiver(this.number, name, address, credit));
      return this._attach(new Receiver(this.conn, this.number, n, credit), n);
    });
  }
}

class Link {
  constructor(conn, session, number) {
    this.conn = conn;
    /** The number of its session. */
    this.session = session;
    this.number = number;
    this.error = null;
  }
  _end(error) {
    this.error = this.error || error;
  }
  _credit() {}
  _flush() {}
  _deliver() {}
  _aborted() {}
  _disposition() {}
  /** Detaches (closes) the link. */
  detach() {
    this.conn._command((e) => e.detach(this.number));
  }
}

export class Sender extends Link {
  constructor(conn, session, number) {
    super(conn, session, number);
    this.credit = 0;
    /** The peer's last flow asked to drain. */
    this.drain = false;
    this.queue = [];
    this.pending = new Map();
  }

  /** Sends a message (JSON form, see the docs) and resolves with its outcome. The message
   * is taken as it is now: changing the object afterwards changes nothing sent. */
  send(message) {
    let json;
    try {
      if (typeof message !== "object" || message === null) throw new TypeError("send: the message must be an object such as {body: \"text\"}");
      json = JSON.stringify(message, finite);
    } catch (e) {
      return Promise.reject(e);
    }
    return this._send((e) => e.send(this.number, json));
  }

  /** Sends an encoded message (the Azure module's c2dMessage, putTokenMessage), as its
   * bytes are now. */
  sendEncoded(bytes) {
    if (!(bytes instanceof Uint8Array)) return Promise.reject(new TypeError("sendEncoded: the message must be a Uint8Array of its encoding"));
    const copy = bytes.slice();
    return this._send((e) => e.sendEncoded(this.number, copy));
  }

  _send(f) {
    if (this.error) return Promise.reject(this.error);
    return new Promise((resolve, reject) => {
      this.queue.push({ f, resolve, reject });
      this._flush();
    });
  }

  _flush() {
    this._sendQueued();
    // 2.6.7: asked to drain, the sender uses its credit up once nothing is queued (now,
    // or when the messages held for the peer's session window have gone).
    if (this.drain && this.credit > 0 && !this.queue.length && !this.error) {
      this.drain = false;
      try {
        this.conn._command((e) => e.drained(this.number));
        this.credit = 0;
      } catch (_) {
        // The link or the connection has ended: its own event says so.
      }
    }
  }

  _sendQueued() {
    while (this.credit > 0 && this.queue.length) {
      const { f, resolve, reject } = this.queue[0];
      try {
        const id = this.conn._command(f);
        // The peer's session window is full: kept, sent after its next flow.
        if (id < 0) break;
        this.queue.shift();
        this.credit -= 1;
        this.pending.set(id, { resolve, reject });
      } catch (e) {
        this.queue.shift();
        reject(e);
      }
    }
  }

  _credit(credit, drain) {
    this.credit = credit;
    this.drain = drain;
    this._flush();
  }

  _disposition(ev) {
    const p = this.pending.get(ev.deliveryId);
    if (!p || !ev.settled) return;
    this.pending.delete(ev.deliveryId);
    const state = ev.state || { outcome: "none" };
    if (state.outcome === "accepted") p.resolve(state);
    else {
      const why = [state.condition, state.description].filter(Boolean).join(": ");
      p.reject(new Error(`the peer did not accept the message: ${state.outcome}${why ? ` (${why})` : ""}`));
    }
  }

  _end(error) {
    super._end(error);
    for (const q of this.queue) q.reject(error);
    this.queue = [];
    for (const p of this.pending.values()) p.reject(error);
    this.pending.clear();
  }
}

export class Delivery {
  constructor(receiver, ev) {
    this.receiver = receiver;
    this.deliveryId = ev.deliveryId;
    this.settled = ev.settled;
    /** The message as `amqpwire decode --json` shows it. */
    this.message = ev.message;
    /** Why the message's sections stop short of its end (what could not be read, and
     * where), or null: `message` shows the sections before. */
    this.messageError = ev.messageError ?? null;
    /** The encoded message. */
    this.payload = hexToBytes(ev.payload);
  }
  _settle(outcome, description) {
    if (this.settled) return;
    const r = this.receiver;
    // Settled only once the engine took it: a settle it refused (a rejection too large
    // for the peer's frames) leaves the delivery to settle again.
    r.conn._command((e) => e.settle(r.number, this.deliveryId, outcome, description));
    this.settled = true;
    r._refill();
  }
  accept() {
    this._settle("accepted");
  }
  reject(description) {
    if (description !== undefined && description !== null) text("reject: the description", description);
    this._settle("rejected", description ?? undefined);
  }
  release() {
    this._settle("released");
  }
}

export class Receiver extends Link {
  constructor(conn, session, number, credit) {
    super(conn, session, number);
    this.window = credit;
    this.granted = credit;
    this.queue = [];
    this.waiting = [];
  }

  /** Resolves with the next delivery. */
  receive() {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    if (this.error) return Promise.reject(this.error);
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  _deliver(ev) {
    this.granted = Math.max(0, this.granted - 1);
    const d = new Delivery(this, ev);
    const w = this.waiting.shift();
    if (w) w.resolve(d);
    else this.queue.push(d);
    if (d.settled) this._refill();
  }

  _aborted() {
    this.granted = Math.max(0, this.granted - 1);
    this._refill();
  }

  /** Grants the window again once half of it is used. Never throws: a link that has
   * ended meanwhile (its detach came in the same input) is told by its own event. */
  _refill() {
    if (this.granted <= this.window / 2 && !this.error && !this.conn.ended) {
      try {
        this.conn._command((e) => e.flow(this.number, this.window));
        this.granted = this.window;
      } catch (_) {
        // ended: see above
      }
    }
  }

  _end(error) {
    super._end(error);
    for (const w of this.waiting) w.reject(error);
    this.waiting = [];
  }
}
