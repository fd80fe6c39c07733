// SPDX-License-Identifier: MIT
// SockJS: sockjs-client (the library Spring's withSockJS() pages use) with
// @stomp/stompjs over each transport stompgate serves, the /info answer,
// the plain WebSocket under the prefix, refusals, and sessions whose
// requests land on different workers.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import SockJS from 'sockjs-client';
import { Client } from '@stomp/stompjs';
import { startGateway, connect, receipt, subscribe, waitFor, uniq, sleep, rawHttp, rawWs, parseFrame } from './lib/harness.mjs';

let gw, gw2;
before(async () => {
  gw = await startGateway(['--workers', '1', '--sockjs-disconnect-delay', '1500', '--sockjs-max-body', '65536']);
  gw2 = await startGateway(['--workers', '2', '--sockjs-response-limit', '4096', '--log-level', 'debug']);
});
after(async () => { await gw.stop(); await gw2.stop(); });

const base = (g) => `http://127.0.0.1:${g.port}/stomp`;

function sockjsClient(g, transports, extra = {}) {
  const client = new Client({
    webSocketFactory: () => new SockJS(base(g), null, { transports }),
    connectHeaders: { host: '/', login: 'guest', passcode: 'guest' },
    reconnectDelay: 0,
    heartbeatIncoming: 0,
    heartbeatOutgoing: 0,
    debug: () => {},
    ...extra,
  });
  client.errors = [];
  return client;
}

function request(port, method, path, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers, agent: false }, (res) => {
      let data = '';
      res.setEncoding('latin1');
      res.on('data', (d) => { data += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: data }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

// A whole STOMP exchange through one transport: subscribe with a receipt,
// send with a receipt, receive it (with characters SockJS escapes and the
// JSON meta-characters), and disconnect with a receipt.
async function roundTrip(g, transports) {
  const c = sockjsClient(g, transports);
  await connect(c);
  const dest = `/queue/${uniq('sj')}`;
  const msgs = await subscribe(c, dest);
  const body = 'h\u00e9llo "quoted" \\ \u2028 \u0085 \ufeff \n end';
  const rid = uniq('r');
  c.publish({ destination: dest, body, headers: { receipt: rid } });
  await receipt(c, rid);
  await waitFor(() => msgs.length === 1, 10000, 'the message');
  assert.equal(msgs[0].body, body);
  assert.equal(msgs[0].headers.destination, dest);
  const closed = new Promise((r) => { c.onWebSocketClose = r; });
  await c.deactivate();
  await closed;
}

test('GET /info: the SockJS server description with CORS and no caching', async () => {
  const r = await request(gw.port, 'GET', '/stomp/info', undefined, { Origin: 'http://app.example' });
  assert.equal(r.status, 200);
  const info = JSON.parse(r.body);
  assert.deepEqual(Object.keys(info).sort(), ['cookie_needed', 'entropy', 'origins', 'websocket']);
  assert.equal(info.websocket, true);
  assert.deepEqual(info.origins, ['*:*']);
  assert.equal(info.cookie_needed, false);
  assert.ok(Number.isInteger(info.entropy) && info.entropy >= 0 && info.entropy < 2 ** 32);
  assert.match(r.headers['content-type'], /^application\/json/);
  assert.match(r.headers['cache-control'], /no-store/);
  assert.equal(r.headers['access-control-allow-origin'], 'http://app.example');
  assert.equal(r.headers['access-control-allow-credentials'], 'true');
  const again = JSON.parse((await request(gw.port, 'GET', '/stomp/info')).body);
  assert.notEqual(again.entropy, info.entropy, 'entropy is random');

  const pre = await request(gw.port, 'OPTIONS', '/stomp/info', undefined,
    { Origin: 'http://app.example', 'Access-Control-Request-Headers': 'x-requested-with' });
  assert.equal(pre.status, 204);
  assert.match(pre.headers['access-control-allow-methods'], /GET/);
  assert.equal(pre.headers['access-control-allow-headers'], 'x-requested-with');
  assert.equal(pre.headers['access-control-allow-origin'], 'http://app.example');
  assert.equal((await request(gw.port, 'POST', '/stomp/info', '')).status, 405);
  const root = await request(gw.port, 'GET', '/stomp');
  assert.equal(root.status, 200);
  assert.equal(root.body, 'Welcome to SockJS!\n');
});

test('websocket transport: STOMP through sockjs-client', async () => {
  await roundTrip(gw, ['websocket']);
});

test('xhr-streaming transport: STOMP through sockjs-client', async () => {
  await roundTrip(gw, ['xhr-streaming']);
});

test('xhr-polling transport: STOMP through sockjs-client', async () => {
  await roundTrip(gw, ['xhr-polling']);
});

test('<prefix>/websocket is plain STOMP over WebSocket', async () => {
  const ws = rawWs(`ws://127.0.0.1:${gw.port}/stomp/websocket`);
  await ws.opened;
  assert.equal(ws.protocol, 'v12.stomp');
  ws.send(ws.frame('CONNECT', { 'accept-version': '1.2', host: '/' }));
  const f = parseFrame(await ws.waitFrame('CONNECTED'));
  assert.equal(f.headers.version, '1.2');
  ws.send(ws.frame('DISCONNECT', { receipt: 'bye' }));
  await ws.waitFrame('RECEIPT');
  assert.equal((await ws.closed).code, 1000);
});

test('framed websocket: o on open, a[...] frames, c[...] on close, broken framing closes', async () => {
  const { default: WebSocket } = await import('ws');
  const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/stomp/000/${uniq('s')}/websocket`);
  const got = [];
  ws.on('message', (d) => got.push(d.toString()));
  const closed = new Promise((r) => ws.on('close', (code) => r(code)));
  await new Promise((r, j) => { ws.on('open', r); ws.on('error', j); });
  await waitFor(() => got.length >= 1, 5000, 'open frame');
  assert.equal(got[0], 'o');
  ws.send(JSON.stringify(['CONNECT\naccept-version:1.2\nhost:/\n\n\u0000']));
  await waitFor(() => got.length >= 2, 5000, 'CONNECTED');
  assert.match(got[1], /^a\["CONNECTED\\n/);
  assert.match(got[1], /\\u0000"\]$/);
  ws.send('["SEND\\ndestination:/queue/x');
  await waitFor(() => got.some((m) => m.startsWith('c[')), 5000, 'close frame');
  assert.match(got.find((m) => m.startsWith('c[')), /^c\[1002,"Broken framing\."\]$/);
  await closed;
});

test('refusals: unknown session, broken JSON, empty and oversized bodies, unknown transports, methods', async () => {
  const sid = uniq('s');
  let r = await request(gw.port, 'POST', `/stomp/000/${sid}/xhr_send`, '["x"]');
  assert.equal(r.status, 404, 'xhr_send to a session that does not exist');
  // Open a session by polling, then send it bad payloads.
  r = await request(gw.port, 'POST', `/stomp/000/${sid}/xhr`, '');
  assert.equal(r.status, 200);
  assert.equal(r.body, 'o\n');
  r = await request(gw.port, 'POST', `/stomp/000/${sid}/xhr_send`, '["x", 1]');
  assert.equal(r.status, 500);
  assert.equal(r.body, 'Broken JSON encoding.');
  r = await request(gw.port, 'POST', `/stomp/000/${sid}/xhr_send`, '[');
  assert.equal(r.body, 'Broken JSON encoding.');
  r = await request(gw.port, 'POST', `/stomp/000/${sid}/xhr_send`, '');
  assert.equal(r.status, 500);
  assert.equal(r.body, 'Payload expected.');
  r = await request(gw.port, 'POST', `/stomp/000/${sid}/xhr_send`, JSON.stringify(['x'.repeat(70000)]));
  assert.equal(r.status, 413);
  r = await rawHttp(gw.port, `POST /stomp/000/${sid}/xhr_send HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n`);
  assert.match(r, /^HTTP\/1.1 413 /, 'refused on the header, before the body');
  r = await request(gw.port, 'POST', `/stomp/000/${sid}/eventsource`, '');
  assert.equal(r.status, 404);
  r = await request(gw.port, 'POST', `/stomp/000/${sid}/jsonp`, '');
  assert.equal(r.status, 404);
  r = await request(gw.port, 'GET', `/stomp/000/${sid}/xhr`);
  assert.equal(r.status, 405);
  assert.match(r.headers.allow, /POST/);
  r = await request(gw.port, 'OPTIONS', `/stomp/000/${sid}/xhr_send`, undefined, { Origin: 'http://a.example' });
  assert.equal(r.status, 204);
  assert.match(r.headers['access-control-allow-methods'], /POST/);
  r = await request(gw.port, 'GET', '/stomp/000/a.b/xhr');
  assert.equal(r.status, 404);
  r = await request(gw.port, 'GET', '/stomp/iframe.html');
  assert.equal(r.status, 404);
  // The session still works after all that: a valid frame gets its answer.
  r = await request(gw.port, 'POST', `/stomp/000/${sid}/xhr_send`, JSON.stringify(['CONNECT\naccept-version:1.2\nhost:/\n\n\u0000']));
  assert.equal(r.status, 204);
  r = await request(gw.port, 'POST', `/stomp/000/${sid}/xhr`, '');
  assert.match(r.body, /^a\["CONNECTED\\n/);
});

test('a session without a receiving request expires and its STOMP session ends', async () => {
  const sid = uniq('s');
  let r = await request(gw.port, 'POST', `/stomp/000/${sid}/xhr`, '');
  assert.equal(r.body, 'o\n');
  r = await request(gw.port, 'POST', `/stomp/000/${sid}/xhr_send`, JSON.stringify(['CONNECT\naccept-version:1.2\nhost:/\n\n\u0000']));
  assert.equal(r.status, 204);
  r = await request(gw.port, 'POST', `/stomp/000/${sid}/xhr`, '');
  const id = r.body.match(/session:(session-\d+)/)[1];
  await sleep(2500); // over --sockjs-disconnect-delay 1500
  r = await request(gw.port, 'POST', `/stomp/000/${sid}/xhr_send`, '["x"]');
  assert.equal(r.status, 404, 'the session is gone');
  const closed = new RegExp(`${id} closed \\(127\\.0\\.0\\.1:\\d+\\): client closed the connection`);
  await waitFor(() => closed.test(gw.log()), 5000, 'teardown logged');
});

test('a second receiving request is refused with 2010; a closed session answers with its close frame', async () => {
  const sid = uniq('s');
  await request(gw.port, 'POST', `/stomp/000/${sid}/xhr`, '');
  const first = request(gw.port, 'POST', `/stomp/000/${sid}/xhr`, '');
  await sleep(200);
  const second = await request(gw.port, 'POST', `/stomp/000/${sid}/xhr`, '');
  assert.equal(second.body, 'c[2010,"Another connection still open"]\n');
  await request(gw.port, 'POST', `/stomp/000/${sid}/xhr_send`, JSON.stringify(['BOGUS\n\n\u0000']));
  const r1 = await first;
  assert.match(r1.body, /^a\["ERROR\\n/);
  const r2 = await request(gw.port, 'POST', `/stomp/000/${sid}/xhr`, '');
  assert.match(r2.body, /^c\[1002,/);
  const r3 = await request(gw.port, 'POST', `/stomp/000/${sid}/xhr`, '');
  assert.equal(r3.body, r2.body, 'the close frame again');
});

test('--workers 2: xhr_send and fresh streaming responses reach the owning worker, nothing is lost', async () => {
  // A small --sockjs-response-limit makes the client reopen its stream
  // often; SO_REUSEPORT spreads the requests over both workers.
  const c = sockjsClient(gw2, ['xhr-streaming']);
  await connect(c);
  const dest = `/queue/${uniq('w2')}`;
  const msgs = await subscribe(c, dest);
  const n = 200;
  // Rounds with a receipt each, so the stream is full and reopened many
  // times while messages keep coming.
  for (let i = 0; i < n; i++) {
    c.publish({ destination: dest, body: `m${i} ${'x'.repeat(100)}` });
    if (i % 20 === 19) {
      const r = uniq('r');
      c.publish({ destination: dest, body: `m${i} ${'x'.repeat(100)}`.replace(/^m\d+/, 'round'), headers: { receipt: r } });
      await receipt(c, r);
    }
  }
  const rid = uniq('r');
  c.publish({ destination: dest, body: 'last', headers: { receipt: rid } });
  await receipt(c, rid, 20000);
  await waitFor(() => msgs.length === n + n / 20 + 1, 20000, 'every message');
  const bodies = msgs.map((m) => m.body.split(' ')[0]).filter((b) => b !== 'round');
  assert.deepEqual(bodies, [...Array.from({ length: n }, (_, i) => `m${i}`), 'last']);
  await c.deactivate();

  // Many xhr_send connections for one session: each lands on either worker.
  const sid = uniq('s');
  const poll = () => request(gw2.port, 'POST', `/stomp/000/${sid}/xhr`, '');
  assert.equal((await poll()).body, 'o\n');
  await request(gw2.port, 'POST', `/stomp/000/${sid}/xhr_send`, JSON.stringify(['CONNECT\naccept-version:1.2\nhost:/\n\n\u0000']));
  assert.match((await poll()).body, /CONNECTED/);
  const q = `/queue/${uniq('w2s')}`;
  await request(gw2.port, 'POST', `/stomp/000/${sid}/xhr_send`, JSON.stringify([`SUBSCRIBE\nid:0\ndestination:${q}\nreceipt:sub\n\n\u0000`]));
  let all = '';
  while (!all.includes('receipt-id:sub')) all += (await poll()).body;
  const sends = [];
  for (let i = 0; i < 20; i++)
    sends.push(request(gw2.port, 'POST', `/stomp/000/${sid}/xhr_send`, JSON.stringify([`SEND\ndestination:${q}\n\nn${i}\u0000`])));
  const statuses = (await Promise.all(sends)).map((r) => r.status);
  assert.deepEqual(statuses, Array(20).fill(204));
  const end = Date.now() + 15000;
  while (Date.now() < end && (all.match(/MESSAGE/g) ?? []).length < 20) all += (await poll()).body;
  assert.equal((all.match(/MESSAGE/g) ?? []).length, 20);
  for (let i = 0; i < 20; i++) assert.ok(all.includes(`n${i}\\u0000`), `n${i}`);
  assert.match(gw2.log(), /SockJS request handed from worker 1 to 0|SockJS request handed from worker 0 to 1/,
    'some requests reached the worker that does not own their session');
  const streams = (gw2.log().match(/xhr_streaming on worker/g) ?? []).length;
  assert.ok(streams >= 4, `the stream was reopened at the response limit (${streams} streams)`);
});

test('--sockjs-max-sessions caps open xhr sessions with 503; --max-sessions counts them too', async () => {
  const g = await startGateway(['--sockjs-max-sessions', '1', '--sockjs-disconnect-delay', '500']);
  try {
    const open = (sid) => request(g.port, 'POST', `/stomp/000/${sid}/xhr`, '');
    const first = uniq('s');
    assert.equal((await open(first)).body, 'o\n');
    const r = await open(uniq('s'));
    assert.equal(r.status, 503);
    const s = await request(g.port, 'POST', `/stomp/000/${first}/xhr_send`, JSON.stringify(['\n']));
    assert.equal(s.status, 204, 'the open session is still served');
  } finally {
    await g.stop();
  }
  const g2 = await startGateway(['--max-sessions', '1', '--sockjs-disconnect-delay', '500']);
  try {
    assert.equal((await request(g2.port, 'POST', `/stomp/000/${uniq('s')}/xhr`, '')).body, 'o\n');
    const r = await request(g2.port, 'POST', `/stomp/000/${uniq('s')}/xhr`, '');
    assert.equal(r.status, 503);
  } finally {
    await g2.stop();
  }
});

test('clients that vanish mid-request: aborted streams, cut bodies, sessions left to expire', async () => {
  const net = await import('node:net');
  const sids = Array.from({ length: 10 }, () => uniq('v'));
  const connectFrame = JSON.stringify(['CONNECT\naccept-version:1.2\nhost:/\n\n\u0000']);
  for (const sid of sids) {
    // A stream aborted as soon as it opened, a CONNECT, then a stream
    // aborted while the broker login runs.
    for (let k = 0; k < 2; k++) {
      await new Promise((resolve) => {
        const req = http.request({ host: '127.0.0.1', port: gw.port, method: 'POST', path: `/stomp/0/${sid}/xhr_streaming`, agent: false }, (res) => {
          res.once('data', () => { req.destroy(); resolve(); });
        });
        req.on('error', () => resolve());
        req.end();
      });
      if (k === 0) await request(gw.port, 'POST', `/stomp/0/${sid}/xhr_send`, connectFrame);
    }
    // A body cut short, on a raw socket.
    await new Promise((resolve) => {
      const c = net.connect(gw.port, '127.0.0.1', () => {
        c.write(`POST /stomp/0/${sid}/xhr_send HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n["SEND`);
        setTimeout(() => { c.destroy(); resolve(); }, 20);
      });
      c.on('error', () => resolve());
    });
  }
  await sleep(2500); // every session expires (--sockjs-disconnect-delay 1500)
  for (const sid of sids)
    assert.equal((await request(gw.port, 'POST', `/stomp/0/${sid}/xhr_send`, '["x"]')).status, 404);
  assert.equal((await request(gw.port, 'GET', '/stomp/info')).status, 200, 'still serving');
  await roundTrip(gw, ['xhr-streaming']);
});

test('--sockjs off: the prefix is an ordinary unknown path', async () => {
  const g = await startGateway(['--sockjs', 'off']);
  try {
    const r = await request(g.port, 'GET', '/stomp/info');
    assert.equal(r.status, 404);
  } finally {
    await g.stop();
  }
});

// GCC's UBSan writes its reports to stderr whatever log_path says, so the
// suite's sanitizer check would not see them: look in the gateways' logs.
test('no sanitizer report in the gateways\' logs', () => {
  for (const g of [gw, gw2]) assert.doesNotMatch(g.log(), /runtime error|AddressSanitizer|LeakSanitizer/);
});
