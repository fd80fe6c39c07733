// SPDX-License-Identifier: MIT
// permessage-deflate (RFC 7692): ws with and without the offer,
// @stomp/stompjs, Chromium, odd offers read from the raw handshake, a
// decompression bomb, and a fan-out of one compressible body to many
// sessions. The runner runs this file in both relay modes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import zlib from 'node:zlib';
import WebSocket from 'ws';
import { startGateway, connected, subscribe, waitFor, uniq, receipt, freePort } from './lib/harness.mjs';
import { rawConnect, OP } from './lib/rawframes.mjs';
import { launchChromium, skip as noBrowser } from './lib/browser.mjs';

const PMD = 'permessage-deflate; server_no_context_takeover';
const FRAME_LIMIT = 65536;

let gw, adminPort;
before(async () => {
  adminPort = await freePort();
  gw = await startGateway(['--max-frame-size', String(FRAME_LIMIT), '--admin', `127.0.0.1:${adminPort}`]);
});
after(async () => { await gw.stop(); });

// A JSON body of about 4.8 KB, as in the measurement.
function jsonBody() {
  const rows = [];
  for (let i = 0; rows.join(',').length < 4750; i++)
    rows.push(JSON.stringify({ id: i, symbol: `SYM${i % 40}`, price: (i * 7.31) % 1000, side: i % 2 ? 'buy' : 'sell' }));
  return '[' + rows.join(',') + ']';
}

const frame = (cmd, headers = {}, body = '') => {
  let s = cmd + '\n';
  for (const [k, v] of Object.entries(headers)) s += `${k}:${v}\n`;
  return s + '\n' + body + '\0';
};
const CONNECT = frame('CONNECT', { 'accept-version': '1.2', host: '/', login: 'guest', passcode: 'guest' });

// A ws client speaking STOMP by hand; perMessageDeflate as given.
async function wsSession(perMessageDeflate) {
  const ws = new WebSocket(gw.url, ['v12.stomp'], { perMessageDeflate });
  ws.on('upgrade', (res) => { ws.answer = res.headers['sec-websocket-extensions'] ?? ''; });
  ws.msgs = [];
  ws.on('message', (d) => ws.msgs.push(d.toString()));
  ws.closed = new Promise((r) => ws.on('close', (code) => r(code)));
  await new Promise((r, j) => { ws.on('open', r); ws.on('error', j); });
  ws.send(CONNECT);
  await waitFor(() => ws.msgs.some((m) => m.startsWith('CONNECTED')), 10000, 'CONNECTED');
  return ws;
}

async function wsSubscribe(ws, dest) {
  const r = uniq('r');
  ws.send(frame('SUBSCRIBE', { id: 's1', destination: dest, receipt: r }));
  await waitFor(() => ws.msgs.some((m) => m.includes(`receipt-id:${r}`)), 10000, 'RECEIPT');
}

// Deflates s as one message: a sync flush with its 4-byte tail dropped.
function deflateMessage(buf) {
  const d = zlib.deflateRawSync(buf, { finishFlush: zlib.constants.Z_SYNC_FLUSH });
  return d.subarray(0, d.length - 4);
}

test('ws with the offer: negotiated, and a 4.8 KB JSON MESSAGE crosses in a fraction of its size', async (t) => {
  const body = jsonBody();
  const dest = `/topic/${uniq('z')}`;
  const results = {};
  for (const pmd of [true, false]) {
    const ws = await wsSession(pmd);
    assert.equal(ws.answer, pmd ? `${PMD}; client_max_window_bits=10` : '');
    assert.equal(ws.extensions, pmd ? 'permessage-deflate' : '');
    await wsSubscribe(ws, dest);
    const before = ws._socket.bytesRead;
    const pub = await wsSession(false);
    pub.send(frame('SEND', { destination: dest, 'content-type': 'application/json' }, body));
    await waitFor(() => ws.msgs.some((m) => m.startsWith('MESSAGE')), 10000, 'MESSAGE');
    const m = ws.msgs.find((x) => x.startsWith('MESSAGE'));
    assert.equal(m.slice(m.indexOf('\n\n') + 2, -1), body);
    results[pmd] = ws._socket.bytesRead - before;
    ws.close();
    pub.close();
    await ws.closed;
  }
  t.diagnostic(`MESSAGE of ${body.length} body bytes: ${results.true} bytes on the wire compressed, ${results.false} plain`);
  // Each frame is compressed on its own (no context takeover): about a
  // fifth of its size, a little more or less with the random parts of its
  // headers (destination, message-id), so the bound is a quarter.
  assert.ok(results.true * 4 < results.false, `${results.true} vs ${results.false}`);
});

test('a compressed SEND from ws (above its 1 KB threshold) is inflated and relayed', async () => {
  const body = 'x'.repeat(3000) + jsonBody();
  const dest = `/topic/${uniq('up')}`;
  const sub = await wsSession(false);
  await wsSubscribe(sub, dest);
  const ws = await wsSession(true);
  ws.send(frame('SEND', { destination: dest }, body));
  await waitFor(() => sub.msgs.some((m) => m.startsWith('MESSAGE')), 10000, 'MESSAGE');
  const m = sub.msgs.find((x) => x.startsWith('MESSAGE'));
  assert.equal(m.slice(m.indexOf('\n\n') + 2, -1), body);
  // The client keeps its context: a second message refers to the first.
  ws.send(frame('SEND', { destination: dest }, body));
  await waitFor(() => sub.msgs.filter((x) => x.startsWith('MESSAGE')).length === 2, 10000, 'second MESSAGE');
  ws.close();
  sub.close();
});

test('@stomp/stompjs over a compressing ws: bodies both ways', async () => {
  const c = await connected(gw.url);
  assert.match(c.webSocket.extensions, /^permessage-deflate/);
  const dest = `/topic/${uniq('js')}`;
  const got = await subscribe(c, dest);
  const body = jsonBody();
  const rid = uniq('p');
  c.publish({ destination: dest, body, headers: { receipt: rid } });
  await receipt(c, rid);
  await waitFor(() => got.length === 1, 10000, 'MESSAGE');
  assert.equal(got[0].body, body);
  await c.deactivate();
});

// The raw handshake, to see the exact answer to odd offers.
async function answerTo(lines) {
  const extra = lines.map((l) => `Sec-WebSocket-Extensions: ${l}\r\n`).join('');
  const conn = await rawConnect(gw.port, { extra });
  const m = /\r\nSec-WebSocket-Extensions: ([^\r]*)\r\n/i.exec(conn.head);
  conn.sock.destroy();
  return m ? m[1] : null;
}

const offers = [
  ['one plain offer', ['permessage-deflate'], PMD],
  ['several offers: the first it can honour', ['permessage-deflate; server_max_window_bits=8, permessage-deflate; client_no_context_takeover'],
    `${PMD}; client_no_context_takeover`],
  ['offers over two header lines', ['x-unknown-ext', 'permessage-deflate; server_max_window_bits=10'],
    `${PMD}; server_max_window_bits=10`],
  ['unknown parameters', ['permessage-deflate; x-mystery=1'], null],
  ['an unknown parameter in the first of two offers', ['permessage-deflate; x=1, permessage-deflate; client_max_window_bits=12'],
    `${PMD}; client_max_window_bits=10`],
  ['window bits out of range', ['permessage-deflate; client_max_window_bits=16'], null],
  ['window bits with a leading zero', ['permessage-deflate; server_max_window_bits=09'], null],
  ['server_max_window_bits=8', ['permessage-deflate; server_max_window_bits=8'], null],
  ['a quoted value', ['permessage-deflate; server_max_window_bits="12"'], `${PMD}; server_max_window_bits=12`],
  ['a repeated parameter', ['permessage-deflate; server_no_context_takeover; server_no_context_takeover'], null],
  ['another extension only', ['x-webkit-deflate-frame'], null],
];
for (const [name, lines, want] of offers) {
  test(`offer: ${name}`, async () => {
    assert.equal(await answerTo(lines), want);
  });
}

test('--compression off declines every offer', async () => {
  const g = await startGateway(['--compression', 'off']);
  try {
    const ws = new WebSocket(g.url, ['v12.stomp'], { perMessageDeflate: true });
    let answer;
    ws.on('upgrade', (res) => { answer = res.headers['sec-websocket-extensions']; });
    await new Promise((r, j) => { ws.on('open', r); ws.on('error', j); });
    assert.equal(answer, undefined);
    assert.equal(ws.extensions, '');
    ws.close();
  } finally {
    await g.stop();
  }
});

// A raw session with permessage-deflate negotiated, after CONNECTED.
async function rawSession() {
  const conn = await rawConnect(gw.port, { extra: 'Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n' });
  assert.match(conn.head, /Sec-WebSocket-Extensions: permessage-deflate/);
  // CONNECT itself compressed, with RSV1.
  conn.send(OP.TEXT, deflateMessage(Buffer.from(CONNECT)), { rsv: 4 });
  await conn.waitMessage('CONNECTED');
  return conn;
}

test('small frames go uncompressed, large ones with RSV1', async () => {
  const conn = await rawSession();
  // CONNECTED is under the 128-byte threshold.
  assert.deepEqual(conn.rsv, [0]);
  const dest = `/topic/${uniq('raw')}`;
  conn.send(OP.TEXT, deflateMessage(Buffer.from(frame('SUBSCRIBE', { id: 's', destination: dest, receipt: 'r1' }))), { rsv: 4 });
  await conn.waitMessage('RECEIPT');
  const body = jsonBody();
  conn.send(OP.TEXT, deflateMessage(Buffer.from(frame('SEND', { destination: dest }, body))), { rsv: 4 });
  await waitFor(() => conn.messages.length === 3, 10000, 'MESSAGE');
  assert.equal(conn.rsv[2], 4);
  const plain = zlib.inflateRawSync(Buffer.concat([Buffer.from(conn.messages[2], 'latin1'), Buffer.from([0, 0, 0xff, 0xff])]),
    { finishFlush: zlib.constants.Z_SYNC_FLUSH }).toString();
  assert.ok(plain.startsWith('MESSAGE\n'));
  assert.equal(plain.slice(plain.indexOf('\n\n') + 2, -1), body);
  conn.sock.destroy();
});

function metric(text, name) {
  const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(text);
  return m ? +m[1] : NaN;
}

async function gatewayRssKb() {
  const fs = await import('node:fs');
  return +/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${gw.child.pid}/status`, 'utf8'))[1];
}

test('a decompression bomb gets close 1009 and the gateway does not grow', async () => {
  const before = await gatewayRssKb();
  for (let i = 0; i < 5; i++) {
    const conn = await rawSession();
    // 64 MiB of 'a' deflate to about 64 KB; the limit is 2 x 64 KiB + 64 KiB.
    const bomb = deflateMessage(Buffer.alloc(64 << 20, 0x61));
    assert.ok(bomb.length < FRAME_LIMIT * 2);
    conn.send(OP.TEXT, bomb, { rsv: 4 });
    const close = await conn.closed();
    assert.equal(close?.code, 1009);
  }
  const grown = (await gatewayRssKb()) - before;
  assert.ok(grown < 8 * 1024, `RSS grew by ${grown} kB`);
  assert.equal(gw.child.exitCode, null);
});

test('compressed text that is not UTF-8 once inflated gets close 1007', async () => {
  const conn = await rawSession();
  conn.send(OP.TEXT, deflateMessage(Buffer.from([0x53, 0x45, 0xff, 0xfe, 0x0a])), { rsv: 4 });
  assert.equal((await conn.closed())?.code, 1007);
});

test('bytes that are not deflate data get close 1007', async () => {
  const conn = await rawSession();
  conn.send(OP.TEXT, Buffer.from([0xff, 0xff, 0xff, 0xff]), { rsv: 4 });
  assert.equal((await conn.closed())?.code, 1007);
});

test('RSV1 on a continuation frame is a protocol error (1002)', async () => {
  const conn = await rawSession();
  const d = deflateMessage(Buffer.from(frame('SEND', { destination: '/topic/x' }, 'y'.repeat(500))));
  conn.send(OP.TEXT, d.subarray(0, 10), { rsv: 4, fin: false });
  conn.send(OP.CONT, d.subarray(10), { rsv: 4 });
  assert.equal((await conn.closed())?.code, 1002);
});

test('fan-out: one body to 40 compressing sessions arrives intact everywhere', async (t) => {
  const dest = `/topic/${uniq('fan')}`;
  const subs = [];
  for (let i = 0; i < 40; i++) {
    const ws = await wsSession(true);
    await wsSubscribe(ws, dest);
    subs.push(ws);
  }
  const admin = `http://127.0.0.1:${adminPort}`;
  const m0 = await (await fetch(`${admin}/metrics`)).text();
  const body = jsonBody();
  const pub = await wsSession(false);
  for (let k = 0; k < 5; k++) pub.send(frame('SEND', { destination: dest }, body));
  await waitFor(() => subs.every((s) => s.msgs.filter((m) => m.startsWith('MESSAGE')).length === 5), 20000, 'every MESSAGE');
  for (const s of subs)
    for (const m of s.msgs.filter((x) => x.startsWith('MESSAGE'))) assert.equal(m.slice(m.indexOf('\n\n') + 2, -1), body);
  const m1 = await (await fetch(`${admin}/metrics`)).text();
  const n = metric(m1, 'stompgate_deflate_messages_total') - metric(m0, 'stompgate_deflate_messages_total');
  const plain = metric(m1, 'stompgate_deflate_bytes_in_total') - metric(m0, 'stompgate_deflate_bytes_in_total');
  const wire = metric(m1, 'stompgate_deflate_bytes_out_total') - metric(m0, 'stompgate_deflate_bytes_out_total');
  t.diagnostic(`fan-out: ${n} messages, ${plain} bytes deflated to ${wire}`);
  assert.ok(n >= 200);
  assert.ok(wire * 5 < plain);
  for (const s of subs) s.close();
  pub.close();
});

test('Chromium negotiates permessage-deflate and exchanges compressed frames', { skip: noBrowser }, async () => {
  const browser = await launchChromium();
  try {
    const page = await browser.newPage();
    const body = jsonBody();
    const dest = `/topic/${uniq('chrome')}`;
    const r = await page.evaluate(async ({ url, dest, body, CONNECT }) => {
      const f = (cmd, h, b = '') => cmd + '\n' + Object.entries(h).map(([k, v]) => `${k}:${v}\n`).join('') + '\n' + b + '\0';
      const ws = new WebSocket(url, ['v12.stomp']);
      const msgs = [];
      const next = (pred) => new Promise((resolve) => {
        const look = () => { const m = msgs.find(pred); if (m) resolve(m); else setTimeout(look, 10); };
        look();
      });
      ws.onmessage = (e) => msgs.push(e.data);
      await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
      ws.send(CONNECT);
      await next((m) => m.startsWith('CONNECTED'));
      ws.send(f('SUBSCRIBE', { id: 's', destination: dest, receipt: 'r' }));
      await next((m) => m.startsWith('RECEIPT'));
      ws.send(f('SEND', { destination: dest, 'content-type': 'application/json' }, body));
      const m = await next((x) => x.startsWith('MESSAGE'));
      ws.close();
      return { extensions: ws.extensions, body: m.slice(m.indexOf('\n\n') + 2, -1) };
    }, { url: gw.url, dest, body, CONNECT });
    assert.equal(r.extensions, `${PMD}; client_max_window_bits=10`);
    assert.equal(r.body, body);
  } finally {
    await browser.close();
  }
});
