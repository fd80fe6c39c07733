// SPDX-License-Identifier: MIT
// The WebSocket layer and the codec's framing rules, over raw sockets: what
// a client library would hide (fragments, control frames, close codes,
// STOMP frames split across or packed into messages, codec limits).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startGateway, connected, subscribe, rawWs, rawHttp, parseFrame, waitFor, uniq } from './lib/harness.mjs';

let gw;
before(async () => {
  gw = await startGateway(['--handshake-timeout', '300', '--max-headers', '16', '--max-header-size', '256']);
});
after(async () => { await gw.stop(); });

const CONNECT = { 'accept-version': '1.2', host: '/', login: 'guest', passcode: 'guest' };

test('a CONNECT fragmented over three WebSocket frames is one message', async () => {
  const ws = rawWs(gw.url);
  await ws.opened;
  const bytes = Buffer.from(ws.frame('CONNECT', CONNECT));
  const a = Math.floor(bytes.length / 3);
  ws.send(bytes.subarray(0, a), { fin: false });
  ws.send(bytes.subarray(a, 2 * a), { fin: false });
  ws.send(bytes.subarray(2 * a), { fin: true });
  const f = parseFrame(await ws.waitFrame('CONNECTED'));
  assert.equal(f.headers.version, '1.2');
  ws.close();
});

test('ping is answered by a pong with the same payload', async () => {
  const ws = rawWs(gw.url);
  await ws.opened;
  const pong = new Promise((r) => ws.on('pong', (d) => r(d.toString())));
  ws.ping('are-you-there');
  assert.equal(await pong, 'are-you-there');
  ws.close();
});

test('a client close is answered with the same code', async () => {
  const ws = rawWs(gw.url);
  await ws.opened;
  ws.close(4001, 'bye');
  const { code } = await ws.closed;
  assert.equal(code, 4001);
});

test('DISCONNECT closes with 1000 after the RECEIPT', async () => {
  const ws = rawWs(gw.url);
  await ws.opened;
  ws.send(ws.frame('CONNECT', CONNECT));
  await ws.waitFrame('CONNECTED');
  ws.send(ws.frame('DISCONNECT', { receipt: 'bye' }));
  const { code } = await ws.closed;
  assert.equal(code, 1000);
  assert.equal(parseFrame(ws.frames.find((f) => f.startsWith('RECEIPT'))).headers['receipt-id'], 'bye');
});

test('one STOMP frame split over many messages, several frames in one message, heart-beat EOLs', async () => {
  const topic = uniq('split');
  const sub = await connected(gw.url);
  const got = await subscribe(sub, `/topic/${topic}`);
  const ws = rawWs(gw.url);
  await ws.opened;
  ws.send(ws.frame('CONNECT', CONNECT));
  await ws.waitFrame('CONNECTED');
  const send = ws.frame('SEND', { destination: `/topic/${topic}` }, 'split-body');
  for (let i = 0; i < send.length; i += 3) ws.send(send.slice(i, i + 3)); // text messages of 3 bytes
  ws.send('\n');
  ws.send('\r\n');
  ws.send(ws.frame('SEND', { destination: `/topic/${topic}` }, 'two') + '\n' +
          ws.frame('SEND', { destination: `/topic/${topic}` }, 'three') +
          ws.frame('SEND', { destination: `/topic/${topic}`, receipt: 'r3' }, 'four'));
  await ws.waitFrame('RECEIPT');
  await waitFor(() => got.length === 4, 5000, 'four messages');
  assert.deepEqual(got.map((m) => m.body), ['split-body', 'two', 'three', 'four']);
  ws.close();
  await sub.deactivate();
});

test('STOMP in binary WebSocket messages works like text', async () => {
  const ws = rawWs(gw.url);
  await ws.opened;
  ws.send(Buffer.from(ws.frame('CONNECT', CONNECT)), { binary: true });
  await ws.waitFrame('CONNECTED');
  ws.send(Buffer.from(ws.frame('DISCONNECT', { receipt: 'b' })), { binary: true });
  await ws.waitFrame('RECEIPT');
});

test('too many headers: ERROR then close', async () => {
  const ws = rawWs(gw.url);
  await ws.opened;
  ws.send(ws.frame('CONNECT', CONNECT));
  await ws.waitFrame('CONNECTED');
  const h = { destination: '/topic/x' };
  for (let i = 0; i < 40; i++) h[`h${i}`] = 'v';
  ws.send(ws.frame('SEND', h, 'x'));
  const { code } = await ws.closed;
  const f = parseFrame(ws.frames.find((x) => x.startsWith('ERROR')));
  assert.match(f.headers.message, /header/i);
  assert.ok(code >= 1002 && code <= 1011, `close code ${code}`);
});

test('a header line over the limit: ERROR then close', async () => {
  const ws = rawWs(gw.url);
  await ws.opened;
  ws.send(ws.frame('CONNECT', CONNECT));
  await ws.waitFrame('CONNECTED');
  ws.send(ws.frame('SEND', { destination: '/topic/x', big: 'y'.repeat(1000) }, 'x'));
  await ws.closed;
  const f = parseFrame(ws.frames.find((x) => x.startsWith('ERROR')));
  assert.match(f.headers.message, /header/i);
});

test('an unmasked client frame is a protocol error (1002)', async () => {
  // A hand-made upgrade so the client can send a frame without a mask.
  const c = net.connect(gw.port, '127.0.0.1');
  let buf = Buffer.alloc(0);
  c.on('data', (d) => { buf = Buffer.concat([buf, d]); });
  const closed = new Promise((r) => c.on('close', r));
  c.on('error', () => {});
  await new Promise((r) => c.on('connect', r));
  c.write('GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
  await waitFor(() => buf.includes('\r\n\r\n'), 5000, 'upgrade reply');
  assert.match(buf.toString('latin1'), /^HTTP\/1\.1 101 /);
  assert.match(buf.toString('latin1'), /Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=/i);
  const head = buf.indexOf('\r\n\r\n') + 4;
  const payload = Buffer.from('CONNECT\n\n\0');
  c.write(Buffer.concat([Buffer.from([0x81, payload.length]), payload]));
  await closed;
  const rest = buf.subarray(head);
  assert.equal(rest[0] & 0x0f, 0x8, 'a close frame');
  assert.equal(rest.readUInt16BE(2), 1002);
});

test('a handshake that never completes gets 408 after the timeout', async () => {
  const t0 = Date.now();
  const r = await rawHttp(gw.port, 'GET /ws HTTP/1.1\r\nHost: x\r\n', 5000);
  assert.match(r, /^HTTP\/1\.1 408 /);
  assert.ok(Date.now() - t0 >= 250, 'not before the timeout');
});

test('Sec-WebSocket-Version other than 13 is refused before the upgrade', async () => {
  const r = await rawHttp(gw.port, 'GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n');
  assert.match(r, /^HTTP\/1\.1 (400|426) /);
  assert.match(r, /Sec-WebSocket-Version: 13/i);
});
