// SPDX-License-Identifier: MIT
// A WebSocket client over a bare TCP socket, for the frames no client
// library will send: unmasked, reserved opcodes and bits, fragmented or
// oversized control frames, lying lengths. It does the RFC 6455 upgrade by
// hand and decodes what the server sends back.
import net from 'node:net';
import { waitFor } from './harness.mjs';

export const OP = { CONT: 0x0, TEXT: 0x1, BINARY: 0x2, CLOSE: 0x8, PING: 0x9, PONG: 0xa };

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';

export function upgradeRequest(extra = '', protocol = 'v12.stomp') {
  return 'GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    `Sec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n` +
    (protocol ? `Sec-WebSocket-Protocol: ${protocol}\r\n` : '') + extra + '\r\n';
}

// Encodes one frame. opts: fin (true), mask (true), rsv (0..7), len (the
// length to announce, for lies), op.
export function encodeFrame(op, payload = Buffer.alloc(0), opts = {}) {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const fin = opts.fin ?? true;
  const mask = opts.mask ?? true;
  const len = opts.len ?? data.length;
  const head = [((fin ? 0x80 : 0) | ((opts.rsv ?? 0) << 4) | op)];
  const m = mask ? 0x80 : 0;
  if (len < 126) head.push(m | len);
  else if (len < 65536) head.push(m | 126, len >> 8, len & 0xff);
  else {
    head.push(m | 127);
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt(len));
    head.push(...b);
  }
  const key = Buffer.from([0x12, 0x34, 0x56, 0x78]);
  const body = Buffer.from(data);
  if (mask) for (let i = 0; i < body.length; i++) body[i] ^= key[i & 3];
  return Buffer.concat([Buffer.from(head), mask ? key : Buffer.alloc(0), body]);
}

// Opens a socket, upgrades it and returns a connection whose .messages
// collects the server's data frames (payload as latin1 strings, their
// reserved bits in .rsv), .close the
// server's close frame ({ code, reason }) once seen, and .ended resolves
// when the socket is closed.
export async function rawConnect(port, { extra = '', protocol = 'v12.stomp' } = {}) {
  const sock = net.connect(port, '127.0.0.1');
  const conn = { sock, messages: [], rsv: [], pongs: [], close: null, head: null, buf: Buffer.alloc(0) };
  conn.ended = new Promise((r) => sock.on('close', r));
  sock.on('error', () => {});
  sock.on('data', (d) => {
    conn.buf = Buffer.concat([conn.buf, d]);
    if (conn.head === null) {
      const i = conn.buf.indexOf('\r\n\r\n');
      if (i < 0) return;
      conn.head = conn.buf.subarray(0, i + 4).toString('latin1');
      conn.buf = conn.buf.subarray(i + 4);
    }
    decode(conn);
  });
  await new Promise((r, j) => { sock.once('connect', r); sock.once('error', j); });
  sock.write(upgradeRequest(extra, protocol));
  await waitFor(() => conn.head !== null, 5000, 'upgrade response');
  if (!/^HTTP\/1\.1 101 /.test(conn.head)) throw new Error(`upgrade refused: ${conn.head}`);
  conn.send = (op, payload, opts) => sock.write(encodeFrame(op, payload, opts));
  conn.sendText = (s) => conn.send(OP.TEXT, Buffer.from(s, 'latin1'));
  conn.waitMessage = async (prefix, ms = 10000) => {
    await waitFor(() => conn.messages.some((m) => m.startsWith(prefix)), ms, `message ${prefix}`);
    return conn.messages.find((m) => m.startsWith(prefix));
  };
  // Resolves with the server's close frame once the socket has ended.
  conn.closed = async (ms = 10000) => {
    const t = new Promise((_, j) => setTimeout(() => j(new Error('socket not closed')), ms));
    await Promise.race([conn.ended, t]);
    return conn.close;
  };
  return conn;
}

function decode(conn) {
  for (;;) {
    const b = conn.buf;
    if (b.length < 2) return;
    const op = b[0] & 0x0f;
    let len = b[1] & 0x7f, off = 2;
    if (len === 126) {
      if (b.length < 4) return;
      len = b.readUInt16BE(2);
      off = 4;
    } else if (len === 127) {
      if (b.length < 10) return;
      len = Number(b.readBigUInt64BE(2));
      off = 10;
    }
    if (b.length < off + len) return;
    const p = b.subarray(off, off + len);
    conn.buf = b.subarray(off + len);
    if (op === OP.CLOSE) {
      conn.close = { code: p.length >= 2 ? p.readUInt16BE(0) : null, reason: p.subarray(2).toString() };
    } else if (op === OP.PONG) {
      conn.pongs.push(p.toString('latin1'));
    } else if (op === OP.TEXT || op === OP.BINARY || op === OP.CONT) {
      conn.messages.push(p.toString('latin1'));
      conn.rsv.push((b[0] >> 4) & 7);
    }
  }
}
