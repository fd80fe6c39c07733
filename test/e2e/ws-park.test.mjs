// SPDX-License-Identifier: MIT
// A WebSocket quiet for two seconds gives its framing state and buffers
// back between messages (stompgate_ws_parked), and gets them again when a
// byte comes or goes. Whatever is parked must behave exactly as before:
// input, output, pings, closes from either side, compression; and a
// connection in the middle of a frame or a fragmented message never parks.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { rawWs, parseFrame, waitFor, sleep, uniq, amqpConnect } from './lib/harness.mjs';
import { spawnGateway, httpGet, parseMetrics } from './lib/ops.mjs';
import { rawConnect, OP, encodeFrame } from './lib/rawframes.mjs';

// Parking is the WebSocket layer's alone: the relay mode does not reach it,
// so the cases run once, in the per-session pass (their quiet periods are
// most of a minute).
const skip = process.env.SG_MODE === 'shared' ? 'the WebSocket layer alone; runs in the per-session pass' : false;

const started = [];
after(async () => { for (const g of started) await g.stop('SIGKILL'); });
async function gateway(args = []) {
  const g = await spawnGateway(['--workers', '1', ...args]);
  started.push(g);
  return g;
}
const metric = async (gw, name) => parseMetrics((await httpGet(gw.adminPort, '/metrics')).body).get(name);
const parkedNow = (gw) => metric(gw, 'stompgate_ws_parked');
// Two seconds of quiet and a sweep a second: parked within about three.
const QUIET = 3500;

function frame(cmd, headers = {}, body = '') {
  let s = cmd + '\n';
  for (const [k, v] of Object.entries(headers)) s += `${k}:${v}\n`;
  return s + '\n' + body + '\0';
}

async function stompRaw(port, extra) {
  const c = await rawConnect(port, extra ? { extra } : {});
  c.sendText(frame('CONNECT', { 'accept-version': '1.2', host: '/', login: 'guest', passcode: 'guest' }));
  await c.waitMessage('CONNECTED');
  return c;
}

test('a quiet session parks, and then receives, sends and is receipted as before', { skip }, async () => {
  const gw = await gateway();
  const ws = rawWs(gw.url);
  await ws.opened;
  ws.send(ws.frame('CONNECT', { 'accept-version': '1.2', host: '/', login: 'guest', passcode: 'guest' }));
  await ws.waitFrame('CONNECTED');
  const topic = uniq('park');
  ws.send(ws.frame('SUBSCRIBE', { id: 's', destination: `/topic/${topic}`, receipt: 'sub' }));
  await ws.waitFrame('RECEIPT\nreceipt-id:sub');
  await sleep(QUIET);
  assert.equal(await parkedNow(gw), 1, 'the quiet session is parked');
  assert.ok(await metric(gw, 'stompgate_ws_parked_total') >= 1);
  // Output first: a message from the broker wakes it.
  const amqp = await amqpConnect();
  const ch = await amqp.createChannel();
  ch.publish('amq.topic', topic, Buffer.from('from amqp'));
  assert.equal(parseFrame(await ws.waitFrame('MESSAGE')).body, 'from amqp');
  assert.equal(await parkedNow(gw), 0);
  // Then quiet again, and input first.
  await sleep(QUIET);
  assert.equal(await parkedNow(gw), 1);
  ws.send(ws.frame('SEND', { destination: `/topic/${topic}`, receipt: 'sent' }, 'from stomp'));
  await ws.waitFrame('RECEIPT\nreceipt-id:sent');
  await waitFor(() => ws.frames.filter((f) => f.startsWith('MESSAGE')).length === 2, 5000, 'second MESSAGE');
  assert.equal(parseFrame(ws.frames.filter((f) => f.startsWith('MESSAGE'))[1]).body, 'from stomp');
  await amqp.close();
  ws.close();
  await ws.closed;
  await gw.stop();
});

test('a frame cut in two, or a fragmented message, never parks between its parts', { skip }, async () => {
  const gw = await gateway();
  const c = await stompRaw(gw.port);
  const topic = uniq('cut');
  c.sendText(frame('SUBSCRIBE', { id: 's', destination: `/topic/${topic}`, receipt: 'sub' }));
  await c.waitMessage('RECEIPT');
  // Half a frame header, then quiet.
  const whole = encodeFrame(OP.TEXT, Buffer.from(frame('SEND', { destination: `/topic/${topic}` }, 'one')));
  c.sock.write(whole.subarray(0, 1));
  await sleep(QUIET);
  assert.equal(await parkedNow(gw), 0, 'not parked inside a frame header');
  c.sock.write(whole.subarray(1, 9));
  await sleep(QUIET);
  assert.equal(await parkedNow(gw), 0, 'not parked inside a frame');
  c.sock.write(whole.subarray(9));
  await c.waitMessage('MESSAGE');
  // A message in two fragments with quiet between them.
  const text = Buffer.from(frame('SEND', { destination: `/topic/${topic}` }, 'two'));
  c.send(OP.TEXT, text.subarray(0, 10), { fin: false });
  await sleep(QUIET);
  assert.equal(await parkedNow(gw), 0, 'not parked inside a fragmented message');
  c.send(OP.CONT, text.subarray(10), { fin: true });
  await waitFor(() => c.messages.filter((m) => m.startsWith('MESSAGE')).length === 2, 5000, 'second MESSAGE');
  assert.match(c.messages.filter((m) => m.startsWith('MESSAGE'))[1], /two\0$/);
  // Whole again: now it parks.
  await sleep(QUIET);
  assert.equal(await parkedNow(gw), 1);
  c.sock.destroy();
  await gw.stop();
});

test('a parked connection answers a ping, a close from the client, and closes from the gateway', { skip }, async () => {
  const gw = await gateway(['--drain-timeout', '1000']);
  const c = await stompRaw(gw.port);
  await sleep(QUIET);
  assert.equal(await parkedNow(gw), 1);
  c.send(OP.PING, Buffer.from('hello'));
  await waitFor(() => c.pongs.includes('hello'), 5000, 'pong');
  await sleep(QUIET);
  assert.equal(await parkedNow(gw), 1);
  c.send(OP.CLOSE, Buffer.from([0x03, 0xe8]));
  const close = await c.closed();
  assert.equal(close.code, 1000);
  // The gateway's own close of a parked session: a drain ends it with an
  // ERROR and close 1001.
  const d = await stompRaw(gw.port);
  await sleep(QUIET);
  assert.equal(await parkedNow(gw), 1);
  const stopping = gw.stop('SIGTERM');
  const dclose = await d.closed(20000);
  assert.equal(dclose?.code, 1001, `a close frame from the gateway (${JSON.stringify(dclose)})`);
  assert.ok(d.messages.some((m) => m.startsWith('ERROR')), 'an ERROR before the close');
  assert.equal((await stopping).code, 0);
});

test('a compressed session parks and still inflates and deflates', { skip }, async () => {
  const zlib = await import('node:zlib');
  const gw = await gateway(['--compression', 'on', '--compression-threshold', '0']);
  const c = await rawConnect(gw.port, { extra: 'Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n' });
  assert.match(c.head, /permessage-deflate/);
  const text = (i) => (c.rsv[i] & 4
    ? zlib.inflateRawSync(Buffer.concat([Buffer.from(c.messages[i], 'latin1'), Buffer.from([0, 0, 0xff, 0xff])]), { finishFlush: zlib.constants.Z_SYNC_FLUSH }).toString('latin1')
    : c.messages[i]);
  const texts = () => c.messages.map((_, i) => text(i));
  const sendDeflated = (f) => c.send(OP.TEXT, zlib.deflateRawSync(Buffer.from(f)), { rsv: 4 });
  sendDeflated(frame('CONNECT', { 'accept-version': '1.2', host: '/', login: 'guest', passcode: 'guest' }));
  await waitFor(() => texts().some((t) => t.startsWith('CONNECTED')), 5000, 'CONNECTED');
  const topic = uniq('pmd');
  sendDeflated(frame('SUBSCRIBE', { id: 's', destination: `/topic/${topic}`, receipt: 'sub' }));
  await waitFor(() => texts().some((t) => t.startsWith('RECEIPT')), 5000, 'RECEIPT');
  await sleep(QUIET);
  assert.equal(await parkedNow(gw), 1);
  // A compressed SEND from the client after the park, and a compressed
  // MESSAGE back.
  const n = c.messages.length;
  sendDeflated(frame('SEND', { destination: `/topic/${topic}` }, 'x'.repeat(200)));
  await waitFor(() => texts().some((t) => t.startsWith('MESSAGE')), 5000, 'MESSAGE');
  const i = texts().findIndex((t) => t.startsWith('MESSAGE'));
  assert.ok(i >= n);
  assert.equal(c.rsv[i] & 4, 4, 'the MESSAGE went out compressed');
  assert.match(text(i), /^MESSAGE\n[\s\S]*x{200}\0$/);
  c.sock.destroy();
  await gw.stop();
});

test('heart-beats both ways pass a parked connection without waking it', { skip }, async () => {
  const gw = await gateway();
  const c = await rawConnect(gw.port);
  c.sendText(frame('CONNECT', { 'accept-version': '1.2', host: '/', login: 'guest', passcode: 'guest', 'heart-beat': '3000,2500' }));
  const connected = parseFrame(await c.waitMessage('CONNECTED'));
  assert.equal(connected.headers['heart-beat'], '2500,3000');
  // The client beats every 2.5 s (the gateway expects one within 6 s),
  // the gateway every 3 s; the connection parks between them anyway.
  const beat = setInterval(() => c.sendText('\n'), 2500);
  try {
    await sleep(QUIET);
    assert.equal(await parkedNow(gw), 1, 'parked despite the heart-beats');
    const parks = await metric(gw, 'stompgate_ws_parked_total');
    const beatsBefore = c.messages.filter((m) => m === '\n').length;
    await sleep(7000);
    assert.equal(await parkedNow(gw), 1);
    assert.equal(await metric(gw, 'stompgate_ws_parked_total'), parks, 'never woken, so never parked again');
    assert.ok(c.messages.filter((m) => m === '\n').length >= beatsBefore + 2, 'the gateway\'s beats arrive');
    assert.equal(c.close, null, 'the session is still open');
    // And a real frame after all that still works.
    c.sendText(frame('SUBSCRIBE', { id: 's', destination: `/topic/${uniq('hb')}`, receipt: 'sub' }));
    await c.waitMessage('RECEIPT');
  } finally {
    clearInterval(beat);
  }
  c.sock.destroy();
  await gw.stop();
});
