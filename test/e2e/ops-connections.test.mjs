// SPDX-License-Identifier: MIT
// Connections and sessions are counted apart: /metrics'
// stompgate_connections_open counts the accepted TCP connections (HTTP,
// WebSocket, SockJS requests, STOMP over TCP) and stompgate_sessions_open
// only the STOMP sessions over an open WebSocket, SockJS session or STOMP
// connection. Static files, SockJS /info and the xhr requests that carry a
// SockJS session are connections, never sessions; --max-sessions goes by
// the session count alone.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import https from 'node:https';
import { connected, waitFor, rawHttp, freePort, parseFrame } from './lib/harness.mjs';
import { spawnGateway, httpGet, parseMetrics } from './lib/ops.mjs';
import { makeCerts } from './lib/certs.mjs';

const mode = process.env.SG_MODE ?? 'per-session';
const started = [];
const sockets = [];
after(async () => {
  for (const s of sockets) s.destroy();
  for (const g of started) await g.stop('SIGKILL');
});

async function gateway(args, opts) {
  const g = await spawnGateway(['--mode', mode, '--workers', '1', ...args], opts);
  started.push(g);
  return g;
}

async function counts(gw) {
  const r = await httpGet(gw.adminPort, '/metrics');
  assert.equal(r.status, 200);
  const m = parseMetrics(r.body);
  return { conns: m.get('stompgate_connections_open'), sessions: m.get('stompgate_sessions_open') };
}

// Waits until /metrics shows exactly these counts (closes take a moment:
// the gateway waits for the client's FIN after its own).
async function expectCounts(gw, conns, sessions, what) {
  const end = Date.now() + 10000;
  let last;
  do {
    last = await counts(gw);
    if (last.conns === conns && last.sessions === sessions) return;
    await new Promise((r) => setTimeout(r, 50));
  } while (Date.now() < end);
  assert.deepEqual(last, { conns, sessions }, what);
}

// A connection that sends the start of an HTTP request and then nothing:
// an accepted connection that is not (yet) anything else.
async function halfRequest(port) {
  const s = net.connect(port, '127.0.0.1');
  s.on('error', () => {});
  await new Promise((r) => s.on('connect', r));
  s.write('GET /index.html HTTP/1.1\r\nHost: x\r\n');
  sockets.push(s);
  return s;
}

function request(port, method, p, body, ca) {
  return new Promise((resolve, reject) => {
    const mod = ca ? https : http;
    const req = mod.request({ host: '127.0.0.1', port, method, path: p, agent: false, ca, servername: 'localhost' }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { data += d; });
      res.on('end', () => resolve({ status: res.statusCode, body: data }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

// The STOMP frames of an xhr answer: a[...] holds JSON strings.
function xhrFrames(body) {
  const line = body.split('\n').find((l) => l.startsWith('a['));
  return line ? JSON.parse(line.slice(1)).map(parseFrame) : [];
}

test('static files, SockJS /info and xhr requests are connections, not sessions', async () => {
  const base = fs.mkdtempSync(path.join(process.env.SG_TMP ?? os.tmpdir(), 'conns-'));
  fs.writeFileSync(path.join(base, 'index.html'), '<h1>hello</h1>');
  const stompPort = await freePort();
  const gw = await gateway(['--www', base, '--stomp-listen', `127.0.0.1:${stompPort}`]);
  await expectCounts(gw, 0, 0, 'nothing open at start');

  // Requests in progress are connections only.
  const half = [await halfRequest(gw.port), await halfRequest(gw.port), await halfRequest(gw.port)];
  await expectCounts(gw, 3, 0, 'three unfinished HTTP requests: three connections, no session');

  // Static files and SockJS /info, answered and closed: nothing stays.
  for (let i = 0; i < 5; i++) {
    const r = await rawHttp(gw.port, 'GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.match(r, /^HTTP\/1.1 200 /);
    assert.match(r, /<h1>hello<\/h1>$/);
  }
  const info = await request(gw.port, 'GET', '/stomp/info');
  assert.equal(info.status, 200);
  await expectCounts(gw, 3, 0, 'static files and /info leave no connection and no session');

  // A SockJS session over xhr polling: its STOMP session counts once, however
  // many requests carry it.
  const sid = `s${process.pid}${Date.now()}`;
  let r = await request(gw.port, 'POST', `/stomp/000/${sid}/xhr`, '');
  assert.equal(r.body, 'o\n');
  await expectCounts(gw, 3, 1, 'the SockJS session is one session');
  const connect = 'CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\n\n\0';
  r = await request(gw.port, 'POST', `/stomp/000/${sid}/xhr_send`, JSON.stringify([connect]));
  assert.equal(r.status, 204);
  r = await request(gw.port, 'POST', `/stomp/000/${sid}/xhr`, '');
  assert.equal(xhrFrames(r.body)[0]?.command, 'CONNECTED', r.body);
  for (let i = 0; i < 3; i++) {
    r = await request(gw.port, 'POST', `/stomp/000/${sid}/xhr_send`, JSON.stringify(['\n']));
    assert.equal(r.status, 204);
  }
  await expectCounts(gw, 3, 1, 'xhr_send requests add no session');
  // A poll that waits for a message is a connection while it waits.
  const poll = request(gw.port, 'POST', `/stomp/000/${sid}/xhr`, '');
  await expectCounts(gw, 4, 1, 'a waiting xhr poll is one more connection, no session');

  // A WebSocket session and a STOMP-over-TCP session: one connection and
  // one session each.
  const ws = await connected(gw.url);
  await expectCounts(gw, 5, 2, 'a WebSocket STOMP session');
  const tcp = net.connect(stompPort, '127.0.0.1');
  sockets.push(tcp);
  let got = '';
  tcp.on('data', (d) => { got += d; });
  tcp.on('error', () => {});
  tcp.write(connect);
  await waitFor(() => got.startsWith('CONNECTED'), 10000, 'CONNECTED over TCP');
  await expectCounts(gw, 6, 3, 'a STOMP-over-TCP session');

  // The waiting poll is answered by the session's close: DISCONNECT over
  // xhr_send.
  r = await request(gw.port, 'POST', `/stomp/000/${sid}/xhr_send`,
    JSON.stringify(['DISCONNECT\nreceipt:bye\n\n\0']));
  assert.equal(r.status, 204);
  await poll;
  await ws.deactivate();
  tcp.destroy();
  for (const s of half) s.destroy();
  await expectCounts(gw, 0, 0, 'everything closed');
});

test('--max-sessions counts STOMP sessions only', async () => {
  const base = fs.mkdtempSync(path.join(process.env.SG_TMP ?? os.tmpdir(), 'conns-'));
  fs.writeFileSync(path.join(base, 'index.html'), 'x');
  const gw = await gateway(['--www', base, '--max-sessions', '1']);
  // Unfinished requests and SockJS /info take no session slot.
  const half = [await halfRequest(gw.port), await halfRequest(gw.port)];
  assert.equal((await request(gw.port, 'GET', '/stomp/info')).status, 200);
  await expectCounts(gw, 2, 0, 'two unfinished requests, no session');
  const ws = await connected(gw.url);
  await expectCounts(gw, 3, 1, 'the one session allowed');
  // The second session is refused, whichever transport asks.
  const r = await request(gw.port, 'POST', `/stomp/000/x${process.pid}/xhr`, '');
  assert.equal(r.status, 503, r.body);
  const up = await rawHttp(gw.port, 'GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'
    + 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
  assert.match(up, /^HTTP\/1.1 503 /);
  // Static files are still served.
  assert.match(await rawHttp(gw.port, 'GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n'), /^HTTP\/1.1 200 /);
  await ws.deactivate();
  for (const s of half) s.destroy();
  await expectCounts(gw, 0, 0, 'everything closed');
});

test('SockJS xhr requests over TLS handed between workers: one session, connections closed', async () => {
  const C = makeCerts(fs.mkdtempSync(path.join(process.env.SG_TMP ?? os.tmpdir(), 'conns-tls-')));
  const ca = fs.readFileSync(C.ca);
  const gw = await gateway(['--workers', '2', '--tls-cert', C.a[0], '--tls-key', C.a[1], '--log-level', 'debug'],
    { tls: true });
  const sid = `t${process.pid}${Date.now()}`;
  const post = (what, body = '') => request(gw.port, 'POST', `/stomp/000/${sid}/${what}`, body, ca);
  let r = await post('xhr');
  assert.equal(r.body, 'o\n');
  const connect = 'CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\n\n\0';
  r = await post('xhr_send', JSON.stringify([connect]));
  assert.equal(r.status, 204);
  r = await post('xhr');
  assert.equal(xhrFrames(r.body)[0]?.command, 'CONNECTED', r.body);
  // Each request is a new TLS connection, which the kernel gives to either
  // worker: those reaching the other one are handed to the session's owner
  // with their TLS state, which answers on them.
  for (let i = 0; i < 16; i++) {
    r = await post('xhr_send', JSON.stringify([`SEND\ndestination:/queue/conns-${sid}\nreceipt:r${i}\n\nx\0`]));
    assert.equal(r.status, 204, r.body);
    r = await post('xhr');
    assert.equal(xhrFrames(r.body)[0]?.command, 'RECEIPT', r.body);
    assert.equal(xhrFrames(r.body)[0]?.headers['receipt-id'], `r${i}`);
  }
  assert.match(gw.log(), /SockJS request handed from worker \d to \d/, 'some request reached the other worker');
  await expectCounts(gw, 0, 1, 'the xhr connections closed, the SockJS session open');
  r = await post('xhr_send', JSON.stringify(['DISCONNECT\n\n\0']));
  assert.equal(r.status, 204);
  await expectCounts(gw, 0, 0, 'everything closed');
});
