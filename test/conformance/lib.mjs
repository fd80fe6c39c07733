// SPDX-License-Identifier: MIT
// Helpers for conformance cases. Every case gets a context bound to one
// Web-STOMP endpoint URL (stompgate or RabbitMQ's plugin) and the AMQP port
// of the broker behind it; whatever a case opens is closed after it. A
// tcp://HOST:PORT URL runs the raw-frame cases over STOMP straight on TCP
// (stompgate's --stomp-listen); what only WebSocket has (subprotocols, a
// client library over WebSocket) is skipped there.
import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import { openStomp } from '../e2e/lib/stomptcp.mjs';
import { Client } from '@stomp/stompjs';
import amqp from 'amqplib';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const uniq = (p = 'c') => `${p}-${randomBytes(5).toString('hex')}`;

export async function waitFor(pred, ms = 5000, what = 'condition') {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (pred()) return;
    await sleep(15);
  }
  throw new Error(`timed out waiting for ${what}`);
}

// Decodes a STOMP 1.1/1.2 header value (\\c \\n \\r \\\\).
export function unescapeHeader(v) {
  return v.replace(/\\(.)/g, (_, c) => ({ c: ':', n: '\n', r: '\r', '\\': '\\' })[c] ?? `\\${c}`);
}

export function parseFrame(s) {
  let i = s.indexOf('\n\n');
  let sep = 2;
  const crlf = s.indexOf('\r\n\r\n');
  if (crlf >= 0 && (i < 0 || crlf < i)) { i = crlf; sep = 4; }
  const lines = s.slice(0, i).split(/\r?\n/);
  const headers = {};
  const raw = [];
  for (const l of lines.slice(1)) {
    const c = l.indexOf(':');
    const k = l.slice(0, c), v = l.slice(c + 1);
    raw.push([k, v]);
    if (!(k in headers)) headers[k] = v;
  }
  return { command: lines[0], headers, raw, body: s.slice(i + sep, s.lastIndexOf('\0')), text: s };
}

// Splits a message into frames, honouring content-length.
export function splitFrames(s) {
  const out = [];
  let i = 0;
  while (i < s.length) {
    while (i < s.length && (s[i] === '\n' || s[i] === '\r')) i++;
    if (i >= s.length) break;
    let he = s.indexOf('\n\n', i), sep = 2;
    const crlf = s.indexOf('\r\n\r\n', i);
    if (crlf >= 0 && (he < 0 || crlf < he)) { he = crlf; sep = 4; }
    if (he < 0) { out.push(s.slice(i)); break; }
    const m = /(?:^|\n)content-length:(\d+)/.exec(s.slice(i, he));
    let end = m ? he + sep + Number(m[1]) : s.indexOf('\0', he + sep);
    if (end < 0) end = s.length - 1;
    out.push(s.slice(i, end + 1));
    i = end + 1;
  }
  return out;
}

export function frame(cmd, headers = {}, body = '') {
  let s = cmd + '\n';
  for (const [k, v] of Object.entries(headers)) s += `${k}:${v}\n`;
  return s + '\n' + body + '\0';
}

// Thrown by a case, or by a helper, for what its transport cannot do.
export class Skip extends Error {}

export class Ctx {
  constructor({ url, amqpPort, impl, caps }) {
    this.url = url;
    this.transport = url.startsWith('tcp://') ? 'tcp' : 'ws';
    this.amqpPort = amqpPort;
    this.impl = impl;
    this.caps = caps ?? {};
    this.owned = [];
  }

  // A raw WebSocket speaking STOMP by hand. Frames are kept in arrival
  // order; take() consumes the first one with a given command.
  async raw(protocols) {
    if (this.transport === 'tcp') return this.rawTcp(protocols);
    const ws = new WebSocket(this.url, protocols ?? ['v12.stomp', 'v11.stomp', 'v10.stomp']);
    this.owned.push(() => ws.terminate());
    ws.frames = [];
    ws.binary = [];
    ws.beats = 0;
    ws.closed = new Promise((r) => ws.on('close', (code, reason) => {
      ws.closeInfo = { code, reason: reason.toString() };
      r(ws.closeInfo);
    }));
    ws.on('message', (data, isBinary) => {
      const s = data.toString('latin1');
      if (/^[\r\n]+$/.test(s)) { ws.beats++; return; }
      // One WebSocket message may carry several frames; a body with a
      // content-length may hold NUL octets.
      for (const part of splitFrames(s)) {
        const f = parseFrame(part);
        f.binary = isBinary;
        f.bytes = data;
        ws.frames.push(f);
      }
    });
    ws.on('error', () => {});
    await new Promise((resolve, reject) => { ws.on('open', resolve); ws.on('error', reject); });
    ws.put = (cmd, headers, body) => ws.send(frame(cmd, headers, body));
    ws.take = async (cmd, ms = 5000) => {
      let f;
      await waitFor(() => {
        const i = ws.frames.findIndex((x) => x.command === cmd);
        if (i >= 0) [f] = ws.frames.splice(i, 1);
        if (f === undefined && ws.closeInfo) {
          const { code, reason } = ws.closeInfo;
          throw new Error(`connection closed (${code}${reason ? ' ' + reason : ''}) without a ${cmd} frame`);
        }
        return f !== undefined;
      }, ms, `${cmd} frame`);
      return f;
    };
    ws.none = async (cmd, ms = 400) => {
      await sleep(ms);
      const f = ws.frames.find((x) => x.command === cmd);
      if (f) throw new Error(`unexpected ${cmd}: ${f.text.slice(0, 200)}`);
    };
    // Resolves when the server closes the socket within ms.
    ws.closedWithin = async (ms = 3000) => {
      const r = await Promise.race([ws.closed, sleep(ms).then(() => null)]);
      if (r === null) throw new Error(`socket still open ${ms} ms after the ERROR (the spec says close)`);
      return r;
    };
    return ws;
  }

  // The same over TCP: frames come from the byte stream, and a frame's
  // bytes are its text.
  async rawTcp(protocols) {
    if (protocols) throw new Skip('WebSocket subprotocols');
    const u = new URL(this.url);
    const c = await openStomp(+u.port, null, u.hostname);
    this.owned.push(() => c.destroy());
    c.onFrame = (f) => { f.bytes = Buffer.from(f.text, 'latin1'); };
    return c;
  }

  // A raw session after CONNECTED, in the given STOMP version.
  async stomp(version = '1.2', extra = {}) {
    const ws = await this.raw();
    const h = { login: 'guest', passcode: 'guest', host: '/', ...extra };
    if (version !== '1.0') h['accept-version'] = version;
    ws.put('CONNECT', h);
    ws.connected = await ws.take('CONNECTED');
    return ws;
  }

  // Expects an ERROR frame followed by the server closing the socket.
  async errorThenClose(ws, ms = 5000) {
    const f = await ws.take('ERROR', ms);
    await ws.closedWithin(3000);
    return f;
  }

  // A connected @stomp/stompjs client.
  async client(opts = {}) {
    if (this.transport === 'tcp') throw new Skip('@stomp/stompjs runs over WebSocket');
    const c = new Client({
      webSocketFactory: () => new WebSocket(this.url, opts.protocols ?? ['v12.stomp', 'v11.stomp', 'v10.stomp']),
      connectHeaders: opts.connectHeaders ?? { login: 'guest', passcode: 'guest', host: '/' },
      reconnectDelay: 0,
      heartbeatIncoming: opts.heartbeatIncoming ?? 0,
      heartbeatOutgoing: opts.heartbeatOutgoing ?? 0,
      debug: () => {},
    });
    c.errors = [];
    c.closed = false;
    this.owned.push(() => c.deactivate({ force: true }).catch(() => {}));
    await new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('connect timed out')), 8000);
      c.onConnect = (f) => { clearTimeout(t); c.connectedFrame = f; resolve(); };
      c.onStompError = (f) => { c.errors.push(f); clearTimeout(t); reject(new Error(`ERROR ${f.headers.message}`)); };
      c.onWebSocketClose = () => { c.closed = true; clearTimeout(t); reject(new Error('closed')); };
      c.activate();
    });
    c.onStompError = (f) => c.errors.push(f);
    c.onWebSocketClose = () => { c.closed = true; };
    return c;
  }

  receipt(c, id, ms = 5000) {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no RECEIPT ${id}`)), ms);
      c.watchForReceipt(id, (f) => { clearTimeout(t); resolve(f); });
    });
  }

  // Subscribes and waits for the RECEIPT; messages collect in the array.
  async sub(c, destination, headers = {}, onMessage) {
    const msgs = [];
    const rid = uniq('r');
    const s = c.subscribe(destination, (m) => { msgs.push(m); onMessage?.(m); }, { ...headers, receipt: rid });
    await this.receipt(c, rid);
    msgs.sub = s;
    return msgs;
  }

  async publishConfirmed(c, destination, body, headers = {}) {
    const rid = uniq('p');
    const r = this.receipt(c, rid);
    c.publish({ destination, body, headers: { ...headers, receipt: rid } });
    return r;
  }

  async amqp() {
    const conn = await amqp.connect(`amqp://guest:guest@127.0.0.1:${this.amqpPort}`);
    conn.on('error', () => {});
    this.owned.push(() => conn.close().catch(() => {}));
    return conn;
  }

  // A channel on a fresh connection; channel errors do not throw globally.
  async channel() {
    const conn = await this.amqp();
    const ch = await conn.createChannel();
    ch.on('error', () => {});
    return ch;
  }

  // Whether a queue exists, asked on a throwaway channel (a 404 closes it).
  async queueExists(name) {
    const conn = await this.amqp();
    const ch = await conn.createChannel();
    ch.on('error', () => {});
    try {
      const r = await ch.checkQueue(name);
      await ch.close().catch(() => {});
      return r;
    } catch {
      return null;
    }
  }

  // Whether declaring name with opts succeeds, i.e. it is equivalent.
  async declareOk(name, opts) {
    const conn = await this.amqp();
    const ch = await conn.createChannel();
    ch.on('error', () => {});
    try {
      await ch.assertQueue(name, opts);
      await ch.close().catch(() => {});
      return true;
    } catch (e) {
      return e.message;
    }
  }

  async cleanup() {
    const fns = this.owned.splice(0).reverse();
    for (const f of fns) {
      try { await f(); } catch { /* already gone */ }
    }
  }
}
