// SPDX-License-Identifier: MIT
// Clients behind load balancers: the PROXY protocol (v1 and v2) from a
// trusted proxy names the client, whose address then shows in the log, in
// the per-address session rate and in the broker connection's name; a
// header from anyone else, a missing or malformed one, and X-Forwarded-For
// or Forwarded from an untrusted peer are refused. Loopback is the trusted
// proxy here; --trusted-proxy 10.0.0.0/8 makes it an untrusted one.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import WebSocket from 'ws';
import { Client } from '@stomp/stompjs';
import { sleep, waitFor, uniq, rmqctl } from './lib/harness.mjs';
import { spawnGateway, httpGet, parseMetrics, upgradeRequest } from './lib/ops.mjs';
import { makeCerts } from './lib/certs.mjs';

const started = [];
after(async () => { for (const g of started) await g.stop('SIGKILL'); });

async function gateway(args) {
  const g = await spawnGateway(args);
  started.push(g);
  return g;
}

// waitFor with a predicate that returns a promise.
async function waitAsync(pred, ms, what) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await pred()) return;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

const TRUSTED = ['--proxy-protocol', '--trusted-proxy', '127.0.0.1/32'];

function v1(src, sport, dport = 15674) {
  const six = src.includes(':');
  return Buffer.from(`PROXY ${six ? 'TCP6' : 'TCP4'} ${src} ${six ? '::1' : '127.0.0.1'} ${sport} ${dport}\r\n`,
    'latin1');
}

const SIG = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

// A v2 header: PROXY over TCP with IPv4 or IPv6 addresses, or LOCAL
// (src null). len overrides the length field; tlv is appended.
function v2(src, sport, { len, tlv = Buffer.alloc(0), local = false } = {}) {
  let block, fam;
  if (src === null) {
    block = Buffer.alloc(0);
    fam = 0x00;
  } else if (src.includes(':')) {
    block = Buffer.alloc(36);
    ipv6(src).copy(block, 0);
    ipv6('::1').copy(block, 16);
    block.writeUInt16BE(sport, 32);
    block.writeUInt16BE(15674, 34);
    fam = 0x21;
  } else {
    block = Buffer.alloc(12);
    Buffer.from(src.split('.').map(Number)).copy(block, 0);
    Buffer.from([127, 0, 0, 1]).copy(block, 4);
    block.writeUInt16BE(sport, 8);
    block.writeUInt16BE(15674, 10);
    fam = 0x11;
  }
  block = Buffer.concat([block, tlv]);
  const head = Buffer.alloc(4);
  head[0] = local || src === null ? 0x20 : 0x21;
  head[1] = fam;
  head.writeUInt16BE(len ?? block.length, 2);
  return Buffer.concat([SIG, head, block]);
}

function ipv6(s) {
  const [l, r] = s.split('::');
  const parts = (x) => (x ? x.split(':').map((h) => parseInt(h, 16)) : []);
  const a = parts(l), b = parts(r ?? '');
  const all = r === undefined ? a : [...a, ...Array(8 - a.length - b.length).fill(0), ...b];
  const buf = Buffer.alloc(16);
  all.forEach((w, i) => buf.writeUInt16BE(w, i * 2));
  return buf;
}

// Connects, writes the chunks (with a pause between them: a header split
// across reads), and resolves with what the gateway wrote until it closed
// or until it sent a whole response head, and whether it closed.
function exchange(port, chunks, { ms = 5000, gap = 30, end = false } = {}) {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    c.setNoDelay(true);
    let out = '';
    let done = false;
    const finish = (closed) => {
      if (done) return;
      done = true;
      clearTimeout(t);
      c.destroy();
      resolve({ out, closed });
    };
    const t = setTimeout(() => finish(false), ms);
    c.on('connect', async () => {
      for (let i = 0; i < chunks.length; i++) {
        if (i > 0) await sleep(gap);
        if (!c.destroyed) c.write(chunks[i]);
      }
      if (end && !c.destroyed) c.end();
    });
    c.on('data', (d) => {
      out += d.toString('latin1');
      if (out.includes('\r\n\r\n')) finish(false);
    });
    c.on('close', () => finish(true));
    c.on('error', () => {});
  });
}

async function metrics(g) {
  return parseMetrics((await httpGet(g.adminPort, '/metrics')).body);
}

// A STOMP client whose TCP connection begins with header.
function stompVia(g, header) {
  const c = new Client({
    webSocketFactory: () => new WebSocket(`ws://127.0.0.1:${g.port}/ws`, ['v12.stomp'], {
      createConnection: () => {
        const s = net.connect(g.port, '127.0.0.1');
        s.write(header);
        return s;
      },
    }),
    connectHeaders: { login: 'guest', passcode: 'guest' },
    reconnectDelay: 0, heartbeatIncoming: 0, heartbeatOutgoing: 0, debug: () => {},
  });
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no CONNECTED')), 10000);
    c.onConnect = () => { clearTimeout(t); resolve(c); };
    c.onStompError = (f) => { clearTimeout(t); reject(new Error(f.headers.message)); };
    c.onWebSocketClose = () => { clearTimeout(t); reject(new Error('closed')); };
    c.activate();
  });
}

// The connection names stompgate gave its broker connections.
async function brokerConnectionNames() {
  const out = await rmqctl('list_connections', 'client_properties', '--quiet', '--no-table-headers');
  return [...out.matchAll(/\{"connection_name","([^"]*)"\}/g)].map((m) => m[1]);
}

test('a v1 header names the client: log, broker connection name, metrics', async () => {
  const g = await gateway(TRUSTED);
  const c = await stompVia(g, v1('192.0.2.7', 40001));
  await waitFor(() => /session-\d+ open from 192\.0\.2\.7:40001 /.test(g.log()), 5000, 'session log names the client');
  // Per-session mode: the session's own broker connection is named after
  // the client.
  await waitAsync(async () => (await brokerConnectionNames()).some((n) => n.includes('192.0.2.7:40001')),
    10000, 'the broker connection names the client');
  const names = await brokerConnectionNames();
  assert.ok(!names.some((n) => /stompgate 127\.0\.0\.1:\d+ session/.test(n)), `names: ${names}`);
  // A subscription works through it.
  const q = `/queue/${uniq('proxied')}`;
  const got = [];
  c.subscribe(q, (m) => got.push(m.body));
  await sleep(200);
  c.publish({ destination: q, body: 'through the header' });
  await waitFor(() => got.includes('through the header'), 5000, 'message through a proxied session');
  await c.deactivate();
  const m = await metrics(g);
  assert.equal(m.get('stompgate_proxy_headers_total{version="1"}'), 1);
});

test('v2 headers: IPv4, IPv6 with TLVs, LOCAL keeps the socket address', async () => {
  const g = await gateway(TRUSTED);
  const c4 = await stompVia(g, v2('198.51.100.20', 50002));
  await waitFor(() => g.log().includes('open from 198.51.100.20:50002 '), 5000, 'v2 IPv4 client in the log');
  // A TLV (PP2_TYPE_AUTHORITY) after the addresses is skipped.
  const tlv = Buffer.concat([Buffer.from([0x02, 0x00, 0x07]), Buffer.from('example')]);
  const c6 = await stompVia(g, v2('2001:db8::7', 50003, { tlv }));
  await waitFor(() => g.log().includes('open from 2001:db8::7:50003 '), 5000, 'v2 IPv6 client in the log');
  const before = g.log().length;
  const cl = await stompVia(g, v2(null, 0));
  await waitFor(() => /open from 127\.0\.0\.1:\d+ /.test(g.log().slice(before)), 5000,
    'LOCAL: the connection\'s own address');
  for (const c of [c4, c6, cl]) await c.deactivate();
  const m = await metrics(g);
  assert.equal(m.get('stompgate_proxy_headers_total{version="2"}'), 3);
});

test('a header split across reads, and the request in the same read as the header', async () => {
  const g = await gateway(TRUSTED);
  const h = v1('192.0.2.55', 41000);
  const req = Buffer.from(upgradeRequest(), 'latin1');
  // Byte by byte, then the request in pieces.
  const chunks = [...h].map((b) => Buffer.from([b]));
  chunks.push(req.subarray(0, 10), req.subarray(10));
  let r = await exchange(g.port, chunks, { gap: 5 });
  assert.match(r.out, /^HTTP\/1\.1 101 /, r.out);
  await waitFor(() => g.log().includes('open from 192.0.2.55:41000 '), 5000, 'split v1');
  // v2 in three reads with the start of the request in the last.
  const h2 = v2('192.0.2.56', 41001);
  r = await exchange(g.port, [h2.subarray(0, 7), h2.subarray(7, 20), Buffer.concat([h2.subarray(20), req])]);
  assert.match(r.out, /^HTTP\/1\.1 101 /, r.out);
  await waitFor(() => g.log().includes('open from 192.0.2.56:41001 '), 5000, 'split v2');
  // Header and request in one write.
  r = await exchange(g.port, [Buffer.concat([v1('192.0.2.57', 41002), req])]);
  assert.match(r.out, /^HTTP\/1\.1 101 /, r.out);
});

test('malformed or missing headers from a trusted proxy: logged, counted, closed without an answer', async () => {
  const g = await gateway([...TRUSTED, '--handshake-timeout', '1000']);
  const req = upgradeRequest();
  const cases = [
    // [what, chunks, reason, log text, options]
    ['missing', [req], 'no_header', 'no PROXY protocol header from a trusted-proxy'],
    ['v1 too long', [`PROXY TCP4 ${'1'.repeat(120)}`], 'too_long', 'PROXY protocol header too long'],
    ['v1 bad address', ['PROXY TCP4 192.0.2.300 127.0.0.1 1 2\r\n' + req], 'malformed',
      'malformed PROXY protocol header'],
    ['v1 without CR', ['PROXY TCP4 192.0.2.1 127.0.0.1 1 2\n' + req], 'malformed',
      'malformed PROXY protocol header'],
    ['v2 length shorter than its addresses', [Buffer.concat([v2('192.0.2.1', 1, { len: 5 }), Buffer.from(req)])],
      'bad_length', 'PROXY protocol v2 header with a bad length'],
    ['v2 TLV past the block', [v2('192.0.2.1', 1, { tlv: Buffer.from([0x02, 0x00, 0x09, 0x41]) })],
      'bad_length', 'PROXY protocol v2 header with a bad length'],
    ['v2 length over the bound', [Buffer.concat([SIG, Buffer.from([0x21, 0x11, 0x10, 0x00])])], 'too_long',
      'PROXY protocol header too long'],
    ['v2 version 1', [Buffer.concat([SIG, Buffer.from([0x11, 0x11, 0x00, 0x0c]), Buffer.alloc(12)])],
      'malformed', 'malformed PROXY protocol header'],
    ['truncated, then closed', ['PROXY TCP4 192.0.2.1 12'], 'truncated', 'PROXY protocol header cut short',
      { end: true }],
    ['truncated v2, then silence', [v2('192.0.2.1', 1).subarray(0, 20)], 'truncated',
      'PROXY protocol header cut short'],
    ['nothing at all until the timeout', [], 'no_header', 'no PROXY protocol header from a trusted-proxy'],
  ];
  for (const [what, chunks, reason, text, opts] of cases) {
    const before = (await metrics(g)).get(`stompgate_proxy_headers_refused_total{reason="${reason}"}`);
    const logAt = g.log().length;
    const r = await exchange(g.port, chunks.map((x) => Buffer.from(x)), { ms: 4000, ...opts });
    assert.equal(r.out, '', `${what}: no answer`);
    assert.ok(r.closed, `${what}: closed`);
    await waitFor(() => g.log().slice(logAt).includes(`closing: ${text}`), 3000, `${what}: log line`);
    const after = (await metrics(g)).get(`stompgate_proxy_headers_refused_total{reason="${reason}"}`);
    assert.equal(after, before + 1, `${what}: counted as ${reason}`);
  }
  // The gateway still serves proxied clients.
  const c = await stompVia(g, v1('192.0.2.99', 1));
  await c.deactivate();
});

test('an untrusted peer: a PROXY header is refused, X-Forwarded-For and Forwarded get 400', async () => {
  const g = await gateway(['--proxy-protocol', '--trusted-proxy', '10.0.0.0/8']);
  for (const h of [v1('192.0.2.7', 1), v2('192.0.2.7', 1)]) {
    const r = await exchange(g.port, [Buffer.concat([h, Buffer.from(upgradeRequest())])]);
    assert.equal(r.out, '');
    assert.ok(r.closed);
  }
  await waitFor(() => g.log().includes('closing: PROXY protocol header from a peer that is not a trusted-proxy'),
    3000, 'log line');
  const m = await metrics(g);
  assert.equal(m.get('stompgate_proxy_headers_refused_total{reason="untrusted"}'), 2);
  // Without a header it is an ordinary client.
  let r = await exchange(g.port, [upgradeRequest()]);
  assert.match(r.out, /^HTTP\/1\.1 101 /, r.out);
  for (const [name, value] of [['X-Forwarded-For', '203.0.113.5'], ['Forwarded', 'for=203.0.113.5']]) {
    r = await exchange(g.port, [upgradeRequest('/ws', { [name]: value })], { ms: 3000 });
    await sleep(100);
    assert.match(r.out, /^HTTP\/1\.1 400 /, r.out);
  }
  // The body names the cause.
  const body = await new Promise((resolve) => {
    const c = net.connect(g.port, '127.0.0.1');
    let out = '';
    c.on('connect', () => c.write(upgradeRequest('/ws', { 'X-Forwarded-For': '203.0.113.5' })));
    c.on('data', (d) => { out += d; });
    c.on('close', () => resolve(out));
    c.on('error', () => {});
  });
  assert.match(body, /X-Forwarded-For header from a peer that is not a trusted-proxy/);
  const m2 = await metrics(g);
  assert.equal(m2.get('stompgate_forwarded_headers_total{result="refused"}'), 3);
  assert.equal(m2.get('stompgate_forwarded_headers_total{result="honoured"}'), 0);
});

test('X-Forwarded-For and Forwarded from a trusted proxy name the client', async () => {
  const g = await gateway(['--trusted-proxy', '127.0.0.1/32, 10.0.0.0/8']);
  // The rightmost untrusted entry is the client; 10.x is a trusted hop.
  let r = await exchange(g.port, [upgradeRequest('/ws', { 'X-Forwarded-For': '198.51.100.1, 203.0.113.9, 10.1.2.3' })]);
  assert.match(r.out, /^HTTP\/1\.1 101 /, r.out);
  await waitFor(() => g.log().includes('open from 203.0.113.9:0 '), 5000, 'X-Forwarded-For client in the log');
  r = await exchange(g.port, [upgradeRequest('/ws', { Forwarded: 'for="[2001:db8::9]:4711";proto=http' })]);
  assert.match(r.out, /^HTTP\/1\.1 101 /, r.out);
  await waitFor(() => g.log().includes('open from 2001:db8::9:4711 '), 5000, 'Forwarded client in the log');
  r = await exchange(g.port, [upgradeRequest('/ws', { 'X-Forwarded-For': 'unknown' })]);
  assert.match(r.out, /^HTTP\/1\.1 400 /, r.out);
  // Without the PROXY protocol, a header from the trusted proxy is not one.
  r = await exchange(g.port, [Buffer.concat([v1('192.0.2.1', 1), Buffer.from(upgradeRequest())])]);
  assert.match(r.out, /^HTTP\/1\.1 (400|405) /, r.out);
  const m = await metrics(g);
  assert.equal(m.get('stompgate_forwarded_headers_total{result="honoured"}'), 2);
});

test('with the PROXY protocol, X-Forwarded-For is judged by the client the header names', async () => {
  const g = await gateway([...TRUSTED]);
  const xff = Buffer.from(upgradeRequest('/ws', { 'X-Forwarded-For': '203.0.113.77' }));
  const r = await exchange(g.port, [Buffer.concat([v1('192.0.2.8', 2), xff])]);
  assert.match(r.out, /^HTTP\/1\.1 400 /, r.out);
});

test('the per-address session rate counts the forwarded address, not the proxy\'s', async () => {
  const g = await gateway([...TRUSTED, '--session-rate-per-address', '1']);
  const req = Buffer.from(upgradeRequest());
  const up = (src, port) => exchange(g.port, [Buffer.concat([v1(src, port), req])]);
  let r = await up('192.0.2.10', 1000);
  assert.match(r.out, /^HTTP\/1\.1 101 /, r.out);
  r = await up('192.0.2.10', 1001);
  assert.match(r.out, /^HTTP\/1\.1 429 /, r.out);
  // Another client behind the same proxy is not held back.
  r = await up('192.0.2.11', 1000);
  assert.match(r.out, /^HTTP\/1\.1 101 /, r.out);
  r = await up('2001:db8::10', 1000);
  assert.match(r.out, /^HTTP\/1\.1 101 /, r.out);
  await waitFor(() => g.log().includes('192.0.2.10:1001 handshake refused: 429'), 3000, 'refusal logged with the client');
  // A second later the first client may open another.
  await sleep(1100);
  r = await up('192.0.2.10', 1002);
  assert.match(r.out, /^HTTP\/1\.1 101 /, r.out);
});

test('SockJS requests through a proxy carry the client address', async () => {
  const g = await gateway(TRUSTED);
  const sid = uniq('s').replace(/[^a-z0-9]/gi, '');
  const post = `POST /stomp/000/${sid}/xhr HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n`;
  const r = await exchange(g.port, [Buffer.concat([v1('192.0.2.40', 4040), Buffer.from(post)])]);
  assert.match(r.out, /^HTTP\/1\.1 200 /, r.out);
  await waitFor(() => g.log().includes('open from 192.0.2.40:4040 '), 5000, 'SockJS session names the client');
});

test('wss: the header comes before the TLS handshake', async () => {
  const C = makeCerts(fs.mkdtempSync(path.join(process.env.SG_TMP ?? '/tmp', 'proxy-tls-')));
  const g = await gateway([...TRUSTED, '--tls-cert', C.a[0], '--tls-key', C.a[1]]);
  for (const [h, who] of [[v1('192.0.2.60', 6060), '192.0.2.60:6060'], [v2('192.0.2.61', 6161), '192.0.2.61:6161']]) {
    const out = await new Promise((resolve, reject) => {
      const raw = net.connect(g.port, '127.0.0.1');
      raw.on('error', () => {});
      raw.write(h);
      const s = tls.connect({ socket: raw, ca: fs.readFileSync(C.ca), servername: 'localhost' });
      let o = '';
      const t = setTimeout(() => { s.destroy(); reject(new Error(`no answer: ${o}`)); }, 5000);
      s.on('secureConnect', () => s.write(upgradeRequest()));
      s.on('data', (d) => {
        o += d;
        if (o.includes('\r\n\r\n')) { clearTimeout(t); s.destroy(); raw.destroy(); resolve(o); }
      });
      s.on('error', (e) => { clearTimeout(t); reject(e); });
    });
    assert.match(out, /^HTTP\/1\.1 101 /, out);
    await waitFor(() => g.log().includes(`open from ${who} `), 5000, `TLS session from ${who}`);
  }
  // A TLS client without the header is refused before the handshake.
  const m0 = (await metrics(g)).get('stompgate_proxy_headers_refused_total{reason="no_header"}');
  await new Promise((resolve) => {
    const s = tls.connect({ port: g.port, host: '127.0.0.1', ca: fs.readFileSync(C.ca), servername: 'localhost' });
    s.on('secureConnect', () => { s.destroy(); resolve(); });
    s.on('error', () => {});
    s.on('error', () => resolve());
    s.on('close', () => resolve());
  });
  await waitAsync(async () => (await metrics(g)).get('stompgate_proxy_headers_refused_total{reason="no_header"}') === m0 + 1,
    3000, 'TLS without a header counted');
});
