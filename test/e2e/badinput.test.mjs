// SPDX-License-Identifier: MIT
// The bad-input matrix: hostile or broken input at every layer (HTTP
// upgrade, WebSocket framing, STOMP framing, STOMP semantics), each case
// asserting the exact reaction (HTTP status, ERROR message header,
// WebSocket close code) and, after every case, that the gateway still
// serves a new session.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import fs from 'node:fs';
import { BIN, startGateway, rawWs, rawHttp, parseFrame, waitFor, sleep, uniq, amqpConnect } from './lib/harness.mjs';
import { rawConnect, upgradeRequest, encodeFrame, OP } from './lib/rawframes.mjs';

const LIMITS = {
  frame: 65536, headers: 16, headerSize: 512, head: 2048, handshakeMs: 600, connectMs: 1500,
  hbMin: 200, subs: 4, txs: 2, txFrames: 5,
};

let gw;
before(async () => {
  gw = await startGateway([
    '--max-frame-size', String(LIMITS.frame), '--max-headers', String(LIMITS.headers),
    '--max-header-size', String(LIMITS.headerSize), '--max-http-head', String(LIMITS.head),
    '--handshake-timeout', String(LIMITS.handshakeMs), '--connect-timeout', String(LIMITS.connectMs),
    '--heartbeat-min', String(LIMITS.hbMin), '--max-subscriptions', String(LIMITS.subs),
    '--max-transactions', String(LIMITS.txs), '--max-tx-frames', String(LIMITS.txFrames),
  ]);
});
after(async () => { await gw.stop(); });

const CONNECT = { 'accept-version': '1.2', host: '/', login: 'guest', passcode: 'guest' };
const frame = (cmd, headers = {}, body = '') => {
  let s = cmd + '\n';
  for (const [k, v] of Object.entries(headers)) s += `${k}:${v}\n`;
  return s + '\n' + body + '\0';
};

function rssKb(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return +m[1];
}

// After every case: the gateway is alive and a new session gets CONNECTED.
afterEach(async () => {
  assert.equal(gw.child.exitCode, null, 'gateway still running');
  assert.equal(gw.child.signalCode, null, 'gateway still running');
  const ws = rawWs(gw.url);
  await ws.opened;
  ws.send(frame('CONNECT', CONNECT));
  await ws.waitFrame('CONNECTED', 10000);
  ws.send(frame('DISCONNECT', { receipt: 'bye' }));
  const { code } = await ws.closed;
  assert.equal(code, 1000);
});

// ---------- HTTP upgrade ----------

// Sends request bytes and returns the status line and headers of the answer.
async function http(request) {
  const r = await rawHttp(gw.port, request, 10000);
  const status = +(/^HTTP\/1\.1 (\d{3}) /.exec(r)?.[1] ?? 0);
  return { status, text: r, body: r.slice(r.indexOf('\r\n\r\n') + 4) };
}

const GOOD = upgradeRequest();

const httpCases = [
  ['a request line that is not HTTP', 'HELLO\r\n\r\n', 400, 'Malformed request line'],
  ['a request line with two parts', 'GET /ws\r\nHost: x\r\n\r\n', 400, 'Malformed request line'],
  ['a method with a separator in it', GOOD.replace('GET', 'G(T'), 400, 'Malformed request line'],
  ['POST instead of GET', GOOD.replace('GET', 'POST'), 405, 'Method Not Allowed'],
  ['a path other than the WebSocket path', GOOD.replace('/ws', '/admin'), 404, 'Not Found'],
  ['HTTP/1.0', GOOD.replace('HTTP/1.1', 'HTTP/1.0'), 400, 'HTTP/1.1 required'],
  ['HTTP/2.0 in the request line', GOOD.replace('HTTP/1.1', 'HTTP/2.0'), 400, 'HTTP/1.1 required'],
  ['no Host header', GOOD.replace('Host: 127.0.0.1\r\n', ''), 400, 'Missing Host header'],
  ['no Upgrade header', GOOD.replace('Upgrade: websocket\r\n', ''), 426, 'Expected a WebSocket upgrade'],
  ['Upgrade to another protocol', GOOD.replace('Upgrade: websocket', 'Upgrade: h2c'), 426, 'Expected a WebSocket upgrade'],
  ['Connection without the upgrade token', GOOD.replace('Connection: Upgrade', 'Connection: keep-alive'), 400,
    'Connection header must include upgrade'],
  ['Sec-WebSocket-Version 8', GOOD.replace('Version: 13', 'Version: 8'), 426, 'Unsupported WebSocket version'],
  ['a Sec-WebSocket-Key that is not 16 bytes', GOOD.replace('dGhlIHNhbXBsZSBub25jZQ==', 'c2hvcnQ='), 400,
    'Invalid Sec-WebSocket-Key'],
  ['two Sec-WebSocket-Key headers', GOOD.replace('\r\n\r\n', '\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n'),
    400, 'Invalid Sec-WebSocket-Key'],
  ['a header name with a space', GOOD.replace('Host:', 'Ho st:'), 400, 'Malformed header'],
  ['a header line without a colon', GOOD.replace('Host: 127.0.0.1', 'Host 127.0.0.1'), 400, 'Malformed header'],
  ['a head over --max-http-head', GOOD.replace('\r\n\r\n', `\r\nX-Big: ${'a'.repeat(LIMITS.head)}\r\n\r\n`), 431,
    'Request Header Fields Too Large'],
  ['a flood of small headers', GOOD.replace('\r\n\r\n', '\r\n' + 'X-A: b\r\n'.repeat(400) + '\r\n'), 431,
    'Request Header Fields Too Large'],
];

for (const [name, request, status, reason] of httpCases) {
  test(`HTTP: ${name} -> ${status}`, async () => {
    const r = await http(request);
    assert.equal(r.status, status, r.text);
    assert.equal(r.body, reason + '\n');
    assert.match(r.text, /\r\nConnection: close\r\n/);
    if (status === 426 && /version/i.test(reason)) assert.match(r.text, /\r\nSec-WebSocket-Version: 13\r\n/);
    if (status === 426 && !/version/i.test(reason)) assert.match(r.text, /\r\nUpgrade: websocket\r\n/);
    if (status === 405) assert.match(r.text, /\r\nAllow: GET\r\n/);
  });
}

test('HTTP: an idle connection gets 408 after the handshake timeout', async () => {
  const t0 = Date.now();
  const r = await http('');
  assert.equal(r.status, 408);
  assert.equal(r.body, 'Request Timeout\n');
  assert.ok(Date.now() - t0 >= LIMITS.handshakeMs - 50);
});

test('HTTP: a slowloris head, one byte at a time, still gets 408 at the timeout', async () => {
  // The timeout counts from the accept, not from the last byte.
  const c = net.connect(gw.port, '127.0.0.1');
  let out = '';
  c.on('data', (d) => { out += d.toString('latin1'); });
  c.on('error', () => {});
  const closed = new Promise((r) => c.on('close', r));
  await new Promise((r) => c.on('connect', r));
  const t0 = Date.now();
  const bytes = GOOD.slice(0, -4); // never the blank line
  let i = 0;
  const iv = setInterval(() => { if (i < bytes.length && !c.destroyed) c.write(bytes[i++]); }, 20);
  await closed;
  clearInterval(iv);
  const dt = Date.now() - t0;
  assert.match(out, /^HTTP\/1\.1 408 /);
  assert.ok(dt >= LIMITS.handshakeMs - 50 && dt < LIMITS.handshakeMs + 3000, `closed after ${dt} ms`);
});

test('HTTP: a TLS ClientHello on the plain port is refused at once', async () => {
  // 16 03 01 ... cannot begin a request line: 400 at its first byte.
  const hello = Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01]), Buffer.alloc(160, 0x42)]);
  const t0 = Date.now();
  const r = await http(hello);
  assert.equal(r.status, 400);
  assert.equal(r.body, 'Malformed request line\n');
  assert.ok(Date.now() - t0 < LIMITS.handshakeMs / 2, `answered after ${Date.now() - t0} ms`);
});

test('HTTP: 4 KB of random bytes with no line end get 400 at once, not the timeout', async () => {
  const junk = Buffer.alloc(4096);
  for (let i = 0; i < junk.length; i++) junk[i] = Math.floor(Math.random() * 256);
  for (let i = 0; i < junk.length; i++) if (junk[i] === 10) junk[i] = 0x78;
  const t0 = Date.now();
  const r = await http(junk);
  assert.equal(r.status, 400, r.text);
  assert.equal(r.body, 'Malformed request line\n');
  assert.ok(Date.now() - t0 < LIMITS.handshakeMs / 2, `answered after ${Date.now() - t0} ms`);
});

test('HTTP: a request line that turns bad mid-way is refused without its line end', async () => {
  const t0 = Date.now();
  const r = await http('GET /ws HTTQ');
  assert.equal(r.status, 400, r.text);
  assert.ok(Date.now() - t0 < LIMITS.handshakeMs / 2, `answered after ${Date.now() - t0} ms`);
});

test('HTTP: an unknown subprotocol is upgraded without Sec-WebSocket-Protocol', async () => {
  const c = await rawConnect(gw.port, { protocol: 'mqtt' });
  assert.doesNotMatch(c.head, /Sec-WebSocket-Protocol/i);
  c.sendText(frame('CONNECT', CONNECT));
  await c.waitMessage('CONNECTED');
  c.sock.destroy();
});

// ---------- WebSocket framing ----------

// Opens an upgraded raw socket, optionally CONNECTs, sends the bad bytes
// and returns the server's close frame.
async function wsReaction(bytes, { connect = false } = {}) {
  const c = await rawConnect(gw.port);
  if (connect) {
    c.sendText(frame('CONNECT', CONNECT));
    await c.waitMessage('CONNECTED');
  }
  for (const b of [].concat(bytes)) c.sock.write(b);
  const close = await c.closed();
  return { close, c };
}

const wsCases = [
  ['an unmasked text frame', () => encodeFrame(OP.TEXT, frame('CONNECT', CONNECT), { mask: false }), 1002],
  ['reserved data opcode 0x3', () => encodeFrame(0x3, 'x'), 1002],
  ['reserved control opcode 0xB', () => encodeFrame(0xb, 'x'), 1002],
  ['RSV1 set without an extension', () => encodeFrame(OP.TEXT, 'x', { rsv: 4 }), 1002],
  ['RSV3 set', () => encodeFrame(OP.BINARY, 'x', { rsv: 1 }), 1002],
  ['a fragmented ping', () => [encodeFrame(OP.PING, 'a', { fin: false }), encodeFrame(OP.CONT, 'b')], 1002],
  ['a ping with 126 bytes of payload', () => encodeFrame(OP.PING, Buffer.alloc(126, 0x61)), 1002],
  ['a continuation with nothing to continue', () => encodeFrame(OP.CONT, 'orphan'), 1002],
  ['a new text frame inside a fragmented message',
    () => [encodeFrame(OP.TEXT, 'CONN', { fin: false }), encodeFrame(OP.TEXT, 'ECT')], 1002],
  ['a close frame with a one-byte body', () => encodeFrame(OP.CLOSE, Buffer.from([0x03])), 1002],
  ['a close frame with code 1005 (never sent on the wire)', () => encodeFrame(OP.CLOSE, Buffer.from([0x03, 0xed])), 1002],
  ['a close frame with code 999', () => encodeFrame(OP.CLOSE, Buffer.from([0x03, 0xe7])), 1002],
  ['a length with the top bit set', () => Buffer.concat([Buffer.from([0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1]),
    Buffer.from([1, 2, 3, 4])]), 1002],
  // wslay judges the length when the first payload byte is in.
  ['a 100 MB frame announced', () => encodeFrame(OP.BINARY, Buffer.alloc(16), { len: 100 << 20 }), 1009],
  ['a message over the limit in fragments', () => [encodeFrame(OP.BINARY, Buffer.alloc(150000), { fin: false }),
    encodeFrame(OP.CONT, Buffer.alloc(150000))], 1009],
  ['invalid UTF-8 in a text message', () => encodeFrame(OP.TEXT, Buffer.from([0x43, 0xff, 0x0a, 0x0a, 0])), 1007],
  ['an overlong UTF-8 encoding', () => encodeFrame(OP.TEXT, Buffer.from([0xc0, 0xaf])), 1007],
  ['a UTF-16 surrogate in UTF-8', () => encodeFrame(OP.TEXT, Buffer.from([0xed, 0xa0, 0x80])), 1007],
  ['invalid UTF-8 across two fragments',
    () => [encodeFrame(OP.TEXT, Buffer.from([0x61, 0xe2]), { fin: false }), encodeFrame(OP.CONT, Buffer.from([0x28, 0xa1]))], 1007],
];

for (const [name, make, code] of wsCases) {
  test(`WebSocket: ${name} -> close ${code}`, async () => {
    const { close } = await wsReaction(make());
    assert.ok(close, 'a close frame was sent');
    assert.equal(close.code, code);
  });
}

test('WebSocket: an unmasked frame after CONNECTED -> close 1002', async () => {
  const { close } = await wsReaction(encodeFrame(OP.TEXT, frame('SEND', { destination: '/topic/x' }), { mask: false }),
    { connect: true });
  assert.equal(close.code, 1002);
});

test('WebSocket: a valid 4-byte character split across fragments is accepted', async () => {
  const c = await rawConnect(gw.port);
  const f = Buffer.from(frame('CONNECT', { ...CONNECT, 'x-smile': '\u{1f600}' }));
  const cut = f.indexOf(0xf0) + 2;
  c.send(OP.TEXT, f.subarray(0, cut), { fin: false });
  c.send(OP.CONT, f.subarray(cut));
  await c.waitMessage('CONNECTED');
  c.sock.destroy();
});

// ---------- STOMP framing ----------

// Opens a session with the ws client, CONNECTs unless told not to, sends
// the payloads and returns the ERROR frame and the close code.
async function stompReaction(payloads, { connect = true, version = '1.2', protocols } = {}) {
  const ws = rawWs(gw.url, protocols);
  await ws.opened;
  if (connect) {
    ws.send(frame('CONNECT', { ...CONNECT, 'accept-version': version }));
    await ws.waitFrame('CONNECTED');
  }
  for (const p of [].concat(payloads)) ws.send(p);
  const { code } = await ws.closed;
  const e = ws.frames.find((f) => f.startsWith('ERROR'));
  return { code, error: e ? parseFrame(e) : null, frames: ws.frames };
}

const big = (n) => 'x'.repeat(n);

const framingCases = [
  ['a frame over the size limit before CONNECT', [`SEND\ndestination:/topic/a\n\n${big(LIMITS.frame + 10)}\0`], false,
    'Frame too large', 1009],
  ['a frame over the size limit after CONNECT', [`SEND\ndestination:/topic/a\n\n${big(LIMITS.frame + 10)}\0`], true,
    'Frame too large', 1009],
  ['a frame over the limit in many small messages', Array.from({ length: 80 }, (_, i) =>
    (i === 0 ? 'SEND\ndestination:/topic/a\n\n' : '') + big(1024)), true, 'Frame too large', 1009],
  ['a content-length over the limit', ['SEND\ndestination:/topic/a\ncontent-length:1000000000\n\n'], true,
    'Frame too large', 1009],
  ['a content-length that is not a number', ['SEND\ndestination:/topic/a\ncontent-length:12a\n\nbody\0'], true,
    'Invalid content-length', 1002],
  ['a negative content-length', ['SEND\ndestination:/topic/a\ncontent-length:-1\n\nbody\0'], true,
    'Invalid content-length', 1002],
  ['an empty content-length', ['SEND\ndestination:/topic/a\ncontent-length:\n\nbody\0'], true,
    'Invalid content-length', 1002],
  ['a 25-digit content-length', [`SEND\ndestination:/topic/a\ncontent-length:${'9'.repeat(25)}\n\n`], true,
    'Invalid content-length', 1002],
  ['a content-length shorter than the body', ['SEND\ndestination:/topic/a\ncontent-length:2\n\nbody\0'], true,
    'Malformed frame', 1002],
  ['too many headers', [frame('SEND', Object.fromEntries(
    Array.from({ length: LIMITS.headers + 1 }, (_, i) => [`h${i}`, 'v'])))], true, 'Too many headers', 1002],
  ['a header line over the limit', [frame('SEND', { destination: '/topic/a', x: big(LIMITS.headerSize) })], true,
    'Header too long', 1002],
  ['a header line over the limit before CONNECT', [frame('CONNECT', { ...CONNECT, x: big(LIMITS.headerSize) })], false,
    'Header too long', 1002],
  ['an endless command line', [big(LIMITS.headerSize + 1)], false, 'Header too long', 1002],
  ['a header line without a colon', ['SEND\ndestination:/topic/a\nnocolon\n\n\0'], true, 'Malformed frame', 1002],
  ['a NUL inside a header name', ['SEND\ndestination\0x:/topic/a\n\n\0'], true, 'Malformed frame', 1002],
  ['a NUL in the command line', ['CONNECT\0\naccept-version:1.2\n\n\0'], false, 'Malformed frame', 1002],
  ['an undefined escape \\t in 1.2', ['SEND\ndestination:/topic/a\nk:a\\tb\n\n\0'], true, 'Invalid header escape', 1002],
  ['a trailing backslash in a value', ['SEND\ndestination:/topic/a\nk:a\\\n\n\0'], true, 'Invalid header escape', 1002],
  ['a backslash in a header name', ['SEND\ndestination:/topic/a\nk\\x:v\n\n\0'], true, 'Invalid header escape', 1002],
];

for (const [name, payloads, connect, message, code] of framingCases) {
  test(`STOMP framing: ${name} -> ERROR "${message}", close ${code}`, async () => {
    const r = await stompReaction(payloads, { connect });
    assert.ok(r.error, `an ERROR frame, got ${JSON.stringify(r.frames)}`);
    assert.equal(r.error.headers.message, message);
    assert.equal(r.code, code);
  });
}

test('STOMP framing: the \\r escape in a 1.1 session -> ERROR "Invalid header escape", close 1002', async () => {
  const r = await stompReaction(['SEND\ndestination:/topic/a\nk:a\\rb\n\n\0'], { version: '1.1' });
  assert.equal(r.error.headers.message, 'Invalid header escape');
  assert.equal(r.code, 1002);
});

// ---------- STOMP commands and state ----------

const commandCases = [
  // [name, payloads, connect, message, code, extra check]
  ['an unknown command before CONNECT', [frame('HELLO')], false, 'Expected CONNECT', 1002],
  ['a lower-case connect', [frame('connect', CONNECT)], false, 'Expected CONNECT', 1002],
  ['SEND before CONNECT', [frame('SEND', { destination: '/topic/a' })], false, 'Expected CONNECT', 1002],
  ['an unknown command after CONNECT', [frame('PUBLISH', { destination: '/topic/a' })], true, 'Unknown command', 1002],
  ['a server command sent by the client', [frame('MESSAGE', { destination: '/topic/a' })], true, 'Unknown command', 1002],
  ['a second CONNECT', [frame('CONNECT', CONNECT)], true, 'Already connected', 1002],
  ['a second STOMP', [frame('STOMP', CONNECT)], true, 'Already connected', 1002],
  ['SEND without a destination', [frame('SEND', {}, 'x')], true, 'Missing destination', 1002],
  ['SEND to an unknown destination form', [frame('SEND', { destination: '/bogus/a' })], true, 'Invalid destination', 1002],
  ['SEND to a bare name', [frame('SEND', { destination: 'plainname' })], true, 'Invalid destination', 1002],
  ['SEND to /queue/ with an extra segment', [frame('SEND', { destination: '/queue/a/b' })], true, 'Invalid destination', 1002],
  ['SEND to /queue/ with no name', [frame('SEND', { destination: '/queue/' })], true, 'Invalid destination', 1002],
  ['SEND to /exchange/ with an empty name', [frame('SEND', { destination: '/exchange//k' })], true, 'Invalid destination', 1002],
  ['SEND to a /temp-queue/', [frame('SEND', { destination: '/temp-queue/t' })], true, 'Invalid destination', 1002],
  ['SUBSCRIBE without a destination', [frame('SUBSCRIBE', { id: '1' })], true, 'Missing destination', 1002],
  ['SUBSCRIBE without an id in 1.2', [frame('SUBSCRIBE', { destination: '/topic/a' })], true, 'Missing id', 1002],
  ['SUBSCRIBE with an invalid ack mode', [frame('SUBSCRIBE', { destination: '/topic/a', id: '1', ack: 'sometimes' })],
    true, 'Invalid ack mode', 1002],
  ['SUBSCRIBE to a /temp-queue/', [frame('SUBSCRIBE', { destination: '/temp-queue/t', id: '1' })], true,
    'Invalid destination', 1002],
  ['SUBSCRIBE with an id over 253 bytes', [frame('SUBSCRIBE', { destination: '/topic/a', id: big(254) })], true,
    'Invalid subscription id', 1002],
  ['SUBSCRIBE with an id under /temp-queue/', [frame('SUBSCRIBE', { destination: '/topic/a', id: '/temp-queue/x' })],
    true, 'Invalid subscription id', 1002],
  ['a subscription id used twice', [frame('SUBSCRIBE', { destination: '/topic/a', id: 's1' }),
    frame('SUBSCRIBE', { destination: '/topic/b', id: 's1' })], true, 'Duplicated subscription identifier', 1002],
  ['more subscriptions than allowed', Array.from({ length: LIMITS.subs + 1 }, (_, i) =>
    frame('SUBSCRIBE', { destination: `/topic/many${i}`, id: `s${i}` })), true, 'Too many subscriptions', 1008],
  ['UNSUBSCRIBE of an unknown id', [frame('UNSUBSCRIBE', { id: 'nope' })], true, 'No subscription found', 1002],
  ['UNSUBSCRIBE without an id', [frame('UNSUBSCRIBE')], true, 'Missing id', 1002],
  ['ACK of an unknown id', [frame('ACK', { id: '12345' })], true, 'Unknown message id in ACK', 1002],
  ['ACK of an id that is not a number', [frame('ACK', { id: 'abc' })], true, 'Unknown message id in ACK', 1002],
  ['NACK of an unknown id', [frame('NACK', { id: '777' })], true, 'Unknown message id in NACK', 1002],
  ['ACK without an id', [frame('ACK')], true, 'Missing message id', 1002],
  ['BEGIN without a transaction', [frame('BEGIN')], true, 'Missing transaction', 1002],
  ['BEGIN of a transaction already open', [frame('BEGIN', { transaction: 't1' }), frame('BEGIN', { transaction: 't1' })],
    true, 'Transaction already started', 1002],
  ['more open transactions than allowed', Array.from({ length: LIMITS.txs + 1 }, (_, i) =>
    frame('BEGIN', { transaction: `t${i}` })), true, 'Too many transactions', 1008],
  ['COMMIT of an unknown transaction', [frame('COMMIT', { transaction: 'ghost' })], true, 'Unknown transaction', 1002],
  ['ABORT of an unknown transaction', [frame('ABORT', { transaction: 'ghost' })], true, 'Unknown transaction', 1002],
  ['COMMIT twice', [frame('BEGIN', { transaction: 't' }), frame('COMMIT', { transaction: 't' }),
    frame('COMMIT', { transaction: 't' })], true, 'Unknown transaction', 1002],
  ['SEND in an unknown transaction', [frame('SEND', { destination: '/topic/a', transaction: 'ghost' })], true,
    'Unknown transaction', 1002],
  ['a transaction over the frame limit', [frame('BEGIN', { transaction: 't' }),
    ...Array.from({ length: LIMITS.txFrames + 1 }, () => frame('SEND', { destination: '/topic/a', transaction: 't' }, 'x'))],
  true, 'Transaction too large', 1008],
  ['CONNECT with only unsupported versions', [frame('CONNECT', { ...CONNECT, 'accept-version': '2.0,3.1' })], false,
    'Supported protocol versions are 1.0,1.1,1.2', 1002],
  ['CONNECT with a heart-beat that is not numbers', [frame('CONNECT', { ...CONNECT, 'heart-beat': 'a,b' })], false,
    'Invalid heart-beat header', 1002],
  ['CONNECT with a one-value heart-beat', [frame('CONNECT', { ...CONNECT, 'heart-beat': '1000' })], false,
    'Invalid heart-beat header', 1002],
  ['CONNECT with a negative heart-beat', [frame('CONNECT', { ...CONNECT, 'heart-beat': '-1,0' })], false,
    'Invalid heart-beat header', 1002],
  ['CONNECT with a heart-beat beyond 64 bits', [frame('CONNECT', { ...CONNECT, 'heart-beat': '99999999999999999999999,0' })],
    false, 'Invalid heart-beat header', 1002],
  ['CONNECT with a wrong password', [frame('CONNECT', { ...CONNECT, passcode: 'wrong' })], false, 'Access refused', 1008],
  ['CONNECT to a vhost that does not exist', [frame('CONNECT', { ...CONNECT, host: 'no-such-vhost' })], false,
    'Virtual host not available', 1008],
  ['SUBSCRIBE to an /amq/queue/ that does not exist', [frame('SUBSCRIBE', { destination: `/amq/queue/${uniq('none')}`, id: '1' })],
    true, 'Not found', 1002],
];

for (const [name, payloads, connect, message, code] of commandCases) {
  test(`STOMP: ${name} -> ERROR "${message}", close ${code}`, async () => {
    const r = await stompReaction(payloads, { connect });
    assert.ok(r.error, `an ERROR frame, got ${JSON.stringify(r.frames)}`);
    assert.equal(r.error.headers.message, message);
    assert.equal(r.code, code);
  });
}

test('STOMP: NACK in a 1.0 session -> ERROR "NACK is not part of STOMP 1.0", close 1002', async () => {
  const r = await stompReaction([frame('NACK', { 'message-id': '1' })], { version: '1.0' });
  assert.equal(r.error.headers.message, 'NACK is not part of STOMP 1.0');
  assert.equal(r.code, 1002);
});

test('STOMP: the ERROR for a failing frame carries its receipt', async () => {
  const r = await stompReaction([frame('SEND', { destination: '/bogus', receipt: 'rcpt-7' })]);
  assert.equal(r.error.headers.message, 'Invalid destination');
  assert.equal(r.error.headers['receipt-id'], 'rcpt-7');
  assert.equal(r.error.body, '/bogus');
  assert.equal(r.code, 1002);
});

test('STOMP: no CONNECT within --connect-timeout -> ERROR, close 1008', async () => {
  const t0 = Date.now();
  const r = await stompReaction([], { connect: false });
  assert.equal(r.error.headers.message, 'Timed out waiting for CONNECT');
  assert.equal(r.code, 1008);
  assert.ok(Date.now() - t0 >= LIMITS.connectMs - 100);
});

test('STOMP: a flood of frames behind CONNECT before CONNECTED -> ERROR, close 1008', async () => {
  // A login the shared mode has checked already is answered at once; its
  // channel opens with the first SEND, and the flood waits for that.
  const warm = rawWs(gw.url);
  await warm.opened;
  warm.send(frame('CONNECT', CONNECT));
  await warm.waitFrame('CONNECTED');
  warm.close();
  const flood = frame('CONNECT', CONNECT) + frame('SEND', { destination: '/topic/flood' }, 'x').repeat(1001);
  const r = await stompReaction([flood], { connect: false });
  assert.equal(r.error.headers.message, process.env.SG_MODE === 'shared'
    ? 'Too many frames while the broker channel opens' : 'Too many frames before CONNECTED');
  assert.equal(r.code, 1008);
});

// ---------- heart-beat abuse ----------

test('heart-beat: a client asking for 1 ms heart-beats gets the --heartbeat-min floor', async () => {
  const ws = rawWs(gw.url);
  await ws.opened;
  ws.send(frame('CONNECT', { ...CONNECT, 'heart-beat': '0,1' }));
  const f = parseFrame(await ws.waitFrame('CONNECTED'));
  // CONNECTED says: the server sends every hbMin ms, wants nothing back.
  assert.equal(f.headers['heart-beat'], `${LIMITS.hbMin},0`);
  const n0 = ws.frames.length;
  await sleep(1000);
  const beats = ws.frames.length - n0;
  assert.ok(beats >= 2 && beats <= 1000 / LIMITS.hbMin + 2, `${beats} heart-beats in 1 s`);
  ws.close();
});

test('heart-beat: a client that promises heart-beats and goes silent -> ERROR, close 1002', async () => {
  const ws = rawWs(gw.url);
  await ws.opened;
  ws.send(frame('CONNECT', { ...CONNECT, 'heart-beat': `${LIMITS.hbMin},0` }));
  await ws.waitFrame('CONNECTED');
  const t1 = Date.now();
  const { code } = await ws.closed;
  const e = parseFrame(ws.frames.find((x) => x.startsWith('ERROR')));
  assert.equal(e.headers.message, 'Heart-beat timeout');
  assert.equal(code, 1002);
  assert.ok(Date.now() - t1 >= 2 * LIMITS.hbMin - 50, 'not before twice the interval');
});

test('heart-beat: a 64-bit heart-beat that would overflow when doubled is capped, not a timeout', async () => {
  const ws = rawWs(gw.url);
  await ws.opened;
  ws.send(frame('CONNECT', { ...CONNECT, 'heart-beat': '9300000000000000000,9300000000000000000' }));
  const f = parseFrame(await ws.waitFrame('CONNECTED'));
  assert.equal(f.headers['heart-beat'], '4294967295,4294967295');
  await sleep(600);
  ws.send(frame('DISCONNECT', { receipt: 'still-here' }));
  const { code } = await ws.closed;
  assert.equal(code, 1000);
  assert.ok(!ws.frames.some((x) => x.startsWith('ERROR')), 'no heart-beat timeout');
});

test('heart-beat: a storm of EOLs is counted as heart-beats, not as frames', async () => {
  const ws = rawWs(gw.url);
  await ws.opened;
  ws.send(frame('CONNECT', CONNECT));
  await ws.waitFrame('CONNECTED');
  for (let i = 0; i < 200; i++) ws.send('\n'.repeat(1000));
  ws.send(frame('DISCONNECT', { receipt: 'after-storm' }));
  const { code } = await ws.closed;
  assert.equal(code, 1000);
  assert.equal(parseFrame(ws.frames.find((x) => x.startsWith('RECEIPT'))).headers['receipt-id'], 'after-storm');
});

// ---------- resources ----------

test('a subscriber that never reads: gateway memory stays bounded', async () => {
  const slowGw = await startGateway(['--max-outbound-bytes', String(4 << 20)]);
  try {
    const key = uniq('slow');
    const c = await rawConnect(slowGw.port);
    c.sendText(frame('CONNECT', CONNECT));
    await c.waitMessage('CONNECTED');
    c.sendText(frame('SUBSCRIBE', { destination: `/topic/${key}`, id: 's', receipt: 'sub' }));
    await c.waitMessage('RECEIPT');
    c.sock.pause(); // from here on the client reads nothing

    const pid = slowGw.child.pid;
    const before = rssKb(pid);
    const conn = await amqpConnect();
    const ch = await conn.createChannel();
    const body = Buffer.alloc(32 * 1024, 0x61);
    const total = 96 << 20;
    for (let sent = 0; sent < total; sent += body.length) {
      if (!ch.publish('amq.topic', key, body)) await new Promise((r) => ch.once('drain', r));
    }
    let peak = 0;
    const end = Date.now() + 8000;
    while (Date.now() < end) {
      peak = Math.max(peak, rssKb(pid));
      await sleep(100);
    }
    await conn.close();
    c.sock.destroy();
    const grew = peak - before;
    // The gateway may hold its outbound limit plus socket buffers, not the
    // 96 MB published.
    // Under AddressSanitizer freed memory stays in quarantine: RSS says
    // nothing there, the case still checks the gateway keeps serving.
    if ((process.env.SG_SANITIZE ?? 'none') === 'none')
      assert.ok(grew < 48 * 1024, `gateway RSS grew by ${grew} kB while 96 MB were published`);
  } finally {
    await slowGw.stop();
  }
});
