// SPDX-License-Identifier: MIT
// Handshake, versions, heart-beats and every error path, over raw sockets.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, connected, stompClient, connect, rawWs, rawHttp, parseFrame, waitFor, sleep, uniq, freePort } from './lib/harness.mjs';
import { spawn } from 'node:child_process';
import os from 'node:os';

let gw;
before(async () => { gw = await startGateway(['--max-frame-size', '65536', '--heartbeat-min', '100']); });
after(async () => { await gw.stop(); });

const CONNECT = (extra = {}) => ({ 'accept-version': '1.0,1.1,1.2', host: '/', login: 'guest', passcode: 'guest', ...extra });

async function rawConnected(extra, protocols) {
  const ws = rawWs(gw.url, protocols);
  await ws.opened;
  ws.send(ws.frame('CONNECT', CONNECT(extra)));
  await ws.waitFrame('CONNECTED');
  return ws;
}

test('version negotiation picks what the client accepts', async () => {
  for (const [accept, want] of [['1.0', undefined], ['1.1', '1.1'], ['1.0,1.1,1.2', '1.2']]) {
    const ws = rawWs(gw.url);
    await ws.opened;
    ws.send(ws.frame('CONNECT', { 'accept-version': accept, host: '/', login: 'guest', passcode: 'guest' }));
    const f = parseFrame(await ws.waitFrame('CONNECTED'));
    assert.equal(f.headers.version, want, `accept-version ${accept}`);
    assert.ok(f.headers.server.startsWith('stompgate/'));
    ws.close();
  }
});

test('subprotocol: v12.stomp is chosen, none offered still connects', async () => {
  const ws = rawWs(gw.url, ['v10.stomp', 'v12.stomp', 'v11.stomp']);
  await ws.opened;
  assert.equal(ws.protocol, 'v12.stomp');
  ws.close();
  const none = rawWs(gw.url, []);
  await none.opened;
  assert.equal(none.protocol, '');
  none.send(none.frame('CONNECT', CONNECT()));
  await none.waitFrame('CONNECTED');
  none.close();
});

test('bad credentials: ERROR then close', async () => {
  const c = stompClient(gw.url, { connectHeaders: { host: '/', login: 'guest', passcode: 'wrong' } });
  await assert.rejects(connect(c), (e) => e.frame?.headers.message === 'Access refused');
  await c.deactivate();
  const ws = rawWs(gw.url);
  await ws.opened;
  ws.send(ws.frame('CONNECT', CONNECT({ passcode: 'nope' })));
  const { code } = await ws.closed;
  assert.equal(code, 1008);
  assert.ok(ws.frames.some((f) => f.startsWith('ERROR')));
});

test('unknown vhost in host: ERROR then close', async () => {
  const ws = rawWs(gw.url);
  await ws.opened;
  ws.send(ws.frame('CONNECT', CONNECT({ host: 'no-such-vhost' })));
  await ws.closed;
  const f = parseFrame(ws.frames.find((x) => x.startsWith('ERROR')));
  assert.ok(f.headers.message);
});

test('a frame before CONNECT: ERROR with receipt-id, then close', async () => {
  const ws = rawWs(gw.url);
  await ws.opened;
  ws.send(ws.frame('SEND', { destination: '/topic/x', receipt: 'early' }, 'x'));
  const { code } = await ws.closed;
  assert.equal(code, 1002);
  const f = parseFrame(ws.frames[0]);
  assert.equal(f.command, 'ERROR');
  assert.equal(f.headers.message, 'Expected CONNECT');
  assert.equal(f.headers['receipt-id'], 'early');
});

test('garbage bytes: ERROR then close', async () => {
  const ws = await rawConnected();
  ws.send('this is not STOMP\n\n\0');
  await ws.closed;
  assert.ok(ws.frames.some((f) => f.startsWith('ERROR')));
  const ws2 = rawWs(gw.url);
  await ws2.opened;
  ws2.send('GARBAGE-WITHOUT-COLON\nnocolon\n\n\0');
  await ws2.closed;
  assert.match(ws2.frames[0], /^ERROR/);
});

test('unknown command after CONNECT: ERROR names it, then close', async () => {
  const ws = await rawConnected();
  ws.send(ws.frame('FROB', { receipt: 'r9' }));
  const { code } = await ws.closed;
  const f = parseFrame(ws.frames.find((x) => x.startsWith('ERROR')));
  assert.equal(f.headers['receipt-id'], 'r9');
  assert.match(f.body, /FROB/);
  assert.equal(code, 1002);
});

test('CONNECT and DISCONNECT in one message: CONNECTED and RECEIPT before close', async () => {
  const ws = rawWs(gw.url);
  await ws.opened;
  ws.send(ws.frame('CONNECT', CONNECT()) + ws.frame('DISCONNECT', { receipt: 'bye' }));
  const { code } = await ws.closed;
  assert.equal(code, 1000);
  assert.match(ws.frames[0], /^CONNECTED/);
  const r = parseFrame(ws.frames.find((f) => f.startsWith('RECEIPT')));
  assert.equal(r.headers['receipt-id'], 'bye');
});

test('a frame over the size limit: ERROR then close', async () => {
  const ws = await rawConnected();
  ws.send(ws.frame('SEND', { destination: '/topic/big' }, 'x'.repeat(70000)));
  const { code } = await ws.closed;
  const f = parseFrame(ws.frames.find((x) => x.startsWith('ERROR')));
  assert.equal(f.headers.message, 'Frame too large');
  assert.equal(code, 1009);
});

test('invalid UTF-8 in a text message closes with 1007', async () => {
  const ws = rawWs(gw.url);
  await ws.opened;
  // ws refuses to send invalid text itself; write the frame through its socket.
  const payload = Buffer.from([0x53, 0xff, 0xfe, 0x0a]);
  const mask = Buffer.from([1, 2, 3, 4]);
  const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]));
  ws._socket.write(Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]));
  const { code } = await ws.closed;
  assert.equal(code, 1007);
});

test('client heart-beat timeout closes a silent session', async () => {
  const ws = await rawConnected({ 'heart-beat': '200,0' });
  const t0 = Date.now();
  await ws.closed;
  const dt = Date.now() - t0;
  assert.ok(dt < 3000, `closed after ${dt} ms`);
  assert.ok(ws.frames.some((f) => f.startsWith('ERROR')));
});

test('server heart-beats arrive as EOLs', async () => {
  const ws = await rawConnected({ 'heart-beat': '0,200' });
  const f = parseFrame(ws.frames[0]);
  assert.equal(f.headers['heart-beat'], '200,0');
  await waitFor(() => ws.frames.filter((x) => x === '\n').length >= 3, 3000, 'heart-beats');
  ws.close();
});

test('ERROR after a broker refusal carries the receipt and closes', async () => {
  const ws = await rawConnected();
  ws.send(ws.frame('SUBSCRIBE', { id: 's', destination: '/amq/queue/' + uniq('missing'), receipt: 'sub-r' }));
  await ws.closed;
  const f = parseFrame(ws.frames.find((x) => x.startsWith('ERROR')));
  assert.equal(f.headers.message, 'Not found');
  assert.equal(f.headers['receipt-id'], 'sub-r');
  assert.match(f.body, /NOT_FOUND/);
});

test('ACK of an unknown id and a duplicate subscription id are errors', async () => {
  const ws = await rawConnected();
  ws.send(ws.frame('ACK', { id: 'nope' }));
  await ws.closed;
  assert.match(parseFrame(ws.frames.find((x) => x.startsWith('ERROR'))).headers.message, /Unknown message id/);
  const ws2 = await rawConnected();
  ws2.send(ws2.frame('SUBSCRIBE', { id: 'd', destination: '/topic/a' }) + ws2.frame('SUBSCRIBE', { id: 'd', destination: '/topic/b' }));
  await ws2.closed;
  assert.equal(parseFrame(ws2.frames.find((x) => x.startsWith('ERROR'))).headers.message, 'Duplicated subscription identifier');
});

test('HTTP refusals before the upgrade', async () => {
  const key = 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n';
  let r = await rawHttp(gw.port, `GET /nope HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n${key}\r\n`);
  assert.match(r, /^HTTP\/1\.1 404 /);
  r = await rawHttp(gw.port, 'GET /ws HTTP/1.1\r\nHost: x\r\n\r\n');
  assert.match(r, /^HTTP\/1\.1 426 /);
  r = await rawHttp(gw.port, `GET /ws HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20000)}\r\n\r\n`);
  assert.match(r, /^HTTP\/1\.1 431 /);
  r = await rawHttp(gw.port, `POST /ws HTTP/1.1\r\nHost: x\r\n\r\n`);
  assert.match(r, /^HTTP\/1\.1 405 /);
  // The gateway still serves others.
  const c = await connected(gw.url);
  await c.deactivate();
});

test('killing the broker mid-session yields ERROR frames, not a crash', async () => {
  const dir = `${process.env.SG_TMP ?? os.tmpdir()}/b2-${uniq('x')}`;
  const start = spawn('bash', ['-c', `. test/lib/rabbitmq.sh; rmq_start ${dir} >&2 && echo $RMQ_AMQP_PORT`], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  start.stdout.on('data', (d) => { out += d; });
  await new Promise((r) => start.on('exit', r));
  const port = +out.trim();
  assert.ok(port > 0, 'second broker started');
  const gw2 = await startGateway([], port);
  try {
    const ws = rawWs(gw2.url);
    await ws.opened;
    ws.send(ws.frame('CONNECT', CONNECT()));
    await ws.waitFrame('CONNECTED');
    ws.send(ws.frame('SUBSCRIBE', { id: 's', destination: '/topic/x', receipt: 'r' }));
    await ws.waitFrame('RECEIPT');
    await new Promise((r) => spawn('bash', ['-c', `. test/lib/rabbitmq.sh; rmq_stop ${dir}`], { stdio: 'inherit' }).on('exit', r));
    const { code } = await ws.closed;
    const f = parseFrame(ws.frames.find((x) => x.startsWith('ERROR')));
    assert.ok(f.headers.message, 'ERROR has a message');
    assert.ok(code >= 1000);
    assert.equal(gw2.child.exitCode, null, 'gateway still running');
  } finally {
    await gw2.stop();
    await new Promise((r) => spawn('bash', ['-c', `. test/lib/rabbitmq.sh; rmq_stop ${dir}`]).on('exit', r));
  }
});

test('the gateway exits 0 on SIGTERM and logged every session', async () => {
  const g = await startGateway();
  const c = await connected(g.url);
  await c.deactivate();
  await sleep(100);
  const r = await g.stop();
  assert.equal(r.code, 0);
  assert.match(g.log(), /session-\d+ open from/);
  assert.match(g.log(), /session-\d+ connected as 'guest'/);
  assert.match(g.log(), /session-\d+ closed .*DISCONNECT/);
});

test('--help, --version and invalid flags', async () => {
  const run = (args) => new Promise((res) => {
    const p = spawn(process.env.STOMPGATE_BIN, args);
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { out += d; });
    p.on('exit', (code) => res({ code, out }));
  });
  let r = await run(['--help']);
  assert.equal(r.code, 0);
  for (const o of ['--listen', '--ws-path', '--broker', '--mode', '--log-level']) assert.ok(r.out.includes(o), o);
  r = await run(['--version']);
  assert.match(r.out, /^stompgate \d/);
  r = await run(['--mode', 'bogus']);
  assert.equal(r.code, 2);
  assert.match(r.out, /--mode/);
});
