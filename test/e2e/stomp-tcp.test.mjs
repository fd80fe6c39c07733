// SPDX-License-Identifier: MIT
// STOMP straight over TCP and TLS (--stomp-listen, --stomp-tls): the same
// sessions as over WebSocket, checked with raw frames over node's net and
// tls modules (frames split byte by byte, several in one write, an
// oversized frame, heart-beats both ways, a client that stops reading,
// drain, admission), and with clients written elsewhere: npm's stompit and
// Debian's python3-stomp (stomp.py 8).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import stompit from 'stompit';
import { freePort, uniq, sleep, waitFor, connected, amqpConnect, sh } from './lib/harness.mjs';
import { spawnGateway, httpGet, httpHead, parseMetrics, portOpen, runToExit, upgradeRequest } from './lib/ops.mjs';
import { openStomp, frameText } from './lib/stomptcp.mjs';
import { makeCerts } from './lib/certs.mjs';

const MODE = process.env.SG_MODE ? ['--mode', process.env.SG_MODE] : [];
const LOGIN = { 'accept-version': '1.2', host: '/', login: 'guest', passcode: 'guest' };
// Debian's interpreter: python3-stomp installs into its dist-packages.
const PYTHON = '/usr/bin/python3';

const started = [];
after(async () => { for (const g of started) await g.stop('SIGKILL'); });

async function gateway(args = [], opts = {}) {
  const stompPort = await freePort();
  const g = await spawnGateway(['--stomp-listen', `127.0.0.1:${stompPort}`, ...MODE, ...args], opts);
  g.stompPort = stompPort;
  started.push(g);
  return g;
}

// A raw STOMP connection after CONNECTED.
async function session(port, extra = {}, tlsOpts = null) {
  const c = await openStomp(port, tlsOpts);
  c.put('CONNECT', { ...LOGIN, ...extra });
  c.connected = await c.take('CONNECTED');
  return c;
}

async function subscribeRaw(c, destination, headers = {}) {
  const rid = uniq('r');
  c.put('SUBSCRIBE', { id: uniq('s'), destination, receipt: rid, ...headers });
  const r = await c.take('RECEIPT');
  assert.equal(r.headers['receipt-id'], rid);
}

let gw;
before(async () => {
  gw = await gateway(['--max-frame-size', '4096', '--heartbeat-min', '100']);
});

test('connect, subscribe, send and receipt over TCP; the listener is logged', async () => {
  assert.match(gw.log(), new RegExp(`STOMP over TCP listening on stomp://127\\.0\\.0\\.1:${gw.stompPort}`));
  const c = await session(gw.stompPort);
  assert.equal(c.connected.headers.version, '1.2');
  assert.match(c.connected.headers.server, /^stompgate\//);
  const q = `/queue/${uniq('tcp')}`;
  await subscribeRaw(c, q);
  c.put('SEND', { destination: q, receipt: 'sent' }, 'hello over tcp');
  const m = await c.take('MESSAGE');
  assert.equal(m.body, 'hello over tcp');
  assert.equal(m.headers.destination, q);
  assert.equal((await c.take('RECEIPT')).headers['receipt-id'], 'sent');
  c.put('DISCONNECT', { receipt: 'bye' });
  assert.equal((await c.take('RECEIPT')).headers['receipt-id'], 'bye');
  await c.closedWithin(3000);
  assert.match(gw.log(), /session-\d+ closed \(127\.0\.0\.1:\d+\): DISCONNECT/);
});

test('frames split byte by byte, several frames in one write, EOLs between frames', async () => {
  const c = await openStomp(gw.stompPort);
  c.sock.setNoDelay(true);
  const q = `/queue/${uniq('split')}`;
  const head = frameText('CONNECT', LOGIN) + '\n\r\n' +
    frameText('SUBSCRIBE', { id: 's1', destination: q, receipt: 'sub' }) + '\n';
  for (const ch of Buffer.from(head)) {
    c.send(Buffer.from([ch]));
    await sleep(1);
  }
  await c.take('CONNECTED');
  assert.equal((await c.take('RECEIPT')).headers['receipt-id'], 'sub');
  // Three SENDs (one with NULs in a content-length body) and heart-beat
  // EOLs, in one write.
  const nul = 'x\0y\0z';
  c.send(frameText('SEND', { destination: q, receipt: 'a' }, 'first') +
    `SEND\ndestination:${q}\ncontent-length:${nul.length}\nreceipt:b\n\n${nul}\0` + '\n\r\n\n' +
    frameText('SEND', { destination: q, receipt: 'c' }, 'third'));
  const bodies = [];
  for (let i = 0; i < 3; i++) bodies.push((await c.take('MESSAGE')).body);
  assert.deepEqual(bodies, ['first', nul, 'third']);
  const receipts = [];
  for (let i = 0; i < 3; i++) receipts.push((await c.take('RECEIPT')).headers['receipt-id']);
  assert.deepEqual(receipts, ['a', 'b', 'c']);
  // A frame cut anywhere, in pieces over several writes.
  const f = frameText('SEND', { destination: q, receipt: 'd' }, 'cut up');
  for (const [a, b] of [[0, 3], [3, 17], [17, f.length - 1], [f.length - 1, f.length]]) {
    c.send(f.slice(a, b));
    await sleep(20);
  }
  assert.equal((await c.take('MESSAGE')).body, 'cut up');
  assert.equal((await c.take('RECEIPT')).headers['receipt-id'], 'd');
  c.destroy();
});

test('an oversized frame gets ERROR "Frame too large" and the connection closes', async () => {
  const c = await session(gw.stompPort);
  c.send(frameText('SEND', { destination: '/queue/big' }, 'x'.repeat(10000)));
  const e = await c.take('ERROR');
  assert.equal(e.headers.message, 'Frame too large');
  await c.closedWithin(3000);
  // A content-length past the limit is refused before its body comes.
  const d = await session(gw.stompPort);
  d.send('SEND\ndestination:/queue/big\ncontent-length:100000\n\nabc');
  assert.equal((await d.take('ERROR')).headers.message, 'Frame too large');
  await d.closedWithin(3000);
  assert.equal(e.command, 'ERROR');
});

test('heart-beats both ways: EOLs from the gateway, a silent client is closed', async () => {
  const c = await session(gw.stompPort, { 'heart-beat': '200,200' });
  assert.equal(c.connected.headers['heart-beat'], '200,200');
  // The client beats every 100 ms: the session stays, and the gateway's
  // EOLs arrive between frames.
  const beat = setInterval(() => c.send('\n'), 100);
  await sleep(1200);
  clearInterval(beat);
  assert.equal(c.closeInfo, null, 'still open while the client beats');
  assert.ok(c.beats >= 3, `gateway heart-beats: ${c.beats}`);
  // Silent for more than twice the interval: ERROR, then close.
  const e = await c.take('ERROR', 3000);
  assert.equal(e.headers.message, 'Heart-beat timeout');
  await c.closedWithin(3000);
});

test('a refused login gets ERROR and close, as over WebSocket', async () => {
  const c = await openStomp(gw.stompPort);
  c.put('CONNECT', { ...LOGIN, passcode: 'wrong' });
  const e = await c.take('ERROR', 10000);
  assert.match(e.headers.message, /Access refused|Broker/);
  await c.closedWithin(3000);
});

test('a client that stops reading is a slow consumer and does not stall the others', async () => {
  const g = await gateway(['--workers', '1', '--max-outbound-bytes', '65536']);
  const topic = `/topic/${uniq('slow')}`;
  const stalled = await session(g.stompPort);
  await subscribeRaw(stalled, topic);
  stalled.sock.pause(); // reads nothing more
  const pub = await session(g.stompPort);
  const other = await session(g.stompPort);
  const q = `/queue/${uniq('other')}`;
  await subscribeRaw(other, q);
  const body = 'p'.repeat(16384);
  let publishing = true;
  const flood = (async () => {
    for (let i = 0; publishing && i < 1500; i++) {
      if (!pub.sock.write(frameText('SEND', { destination: topic }, body))) {
        await new Promise((r) => pub.sock.once('drain', r));
      }
    }
  })();
  // Round trips of the other session on the same worker stay quick.
  const slowest = [];
  for (let i = 0; i < 15; i++) {
    const t0 = Date.now();
    other.put('SEND', { destination: q, receipt: `o${i}` }, `o${i}`);
    await other.take('MESSAGE', 5000);
    await other.take('RECEIPT', 5000);
    slowest.push(Date.now() - t0);
    await sleep(30);
  }
  await waitFor(() => /closed \(127\.0\.0\.1:\d+\): ERROR slow consumer/.test(g.log()), 20000, 'the slow consumer to be closed');
  publishing = false;
  await flood;
  assert.ok(Math.max(...slowest) < 2000, `round trips ${slowest.join(' ')} ms`);
  stalled.sock.resume();
  await stalled.closedWithin(10000);
  pub.destroy();
  other.destroy();
});

test('a broker alarm holds a TCP publisher between frames: 3000 SENDs in one write, none lost', async () => {
  // A broker of its own: the alarm would stall every other case.
  const dir = `${process.env.SG_TMP ?? os.tmpdir()}/alarm-${uniq('x')}`;
  const amqpPort = +(await sh(`. test/lib/rabbitmq.sh; rmq_start ${dir} >&2 && echo $RMQ_AMQP_PORT`));
  try {
    // More frames than may wait in a session (1000) come in one write:
    // only a transport that stops between two frames keeps them all.
    const g = await gateway([], { amqpPort });
    const q = `/queue/${uniq('alarm')}`;
    const sub = await session(g.stompPort);
    await subscribeRaw(sub, q);
    const pub = await session(g.stompPort);
    pub.put('SEND', { destination: q, receipt: 'r0' }, 'before');
    await pub.take('RECEIPT');
    await sh(`. test/lib/rabbitmq.sh; rmq_ctl ${dir} set_vm_memory_high_watermark 0.0000001 >/dev/null`);
    pub.put('SEND', { destination: q, receipt: 'r1' }, 'during');
    await waitFor(() => g.log().includes('blocked publishing'), 20000, 'the broker blocked publishing');
    let burst = '';
    for (let i = 0; i < 3000; i++) burst += frameText('SEND', { destination: q, receipt: `b${i}` }, `m${i}`);
    pub.send(burst);
    await sleep(1500);
    assert.equal(pub.frames.filter((f) => f.command === 'RECEIPT').length, 0, 'no RECEIPT while blocked');
    assert.equal(pub.closeInfo, null);
    await sh(`. test/lib/rabbitmq.sh; rmq_ctl ${dir} set_vm_memory_high_watermark 0.4 >/dev/null`);
    await waitFor(() => pub.frames.filter((f) => f.command === 'RECEIPT').length === 3001 ||
      pub.frames.some((f) => f.command === 'ERROR'), 30000, 'every RECEIPT');
    assert.equal(pub.frames.find((f) => f.command === 'ERROR')?.headers.message, undefined);
    await waitFor(() => sub.frames.filter((f) => f.command === 'MESSAGE').length === 3002, 30000, 'every message');
    const bodies = sub.frames.filter((f) => f.command === 'MESSAGE').map((f) => f.body);
    assert.deepEqual(bodies.slice(0, 3), ['before', 'during', 'm0']);
    assert.equal(bodies.at(-1), 'm2999');
    assert.match(g.log(), /unblocked publishing/);
    pub.destroy();
    sub.destroy();
    await g.stop();
  } finally {
    await sh(`. test/lib/rabbitmq.sh; rmq_stop ${dir}`).catch(() => {});
  }
});

test('drain: a TCP session gets ERROR "server shutting down", then close; the port closes', async () => {
  const g = await gateway(['--drain-timeout', '300']);
  const c = await session(g.stompPort);
  await subscribeRaw(c, `/queue/${uniq('drain')}`);
  g.child.kill('SIGTERM');
  await waitFor(() => /draining \d+ sessions/.test(g.log()), 2000, 'the drain to start');
  assert.equal(await portOpen(g.stompPort), false);
  const e = await c.take('ERROR', 5000);
  assert.equal(e.headers.message, 'server shutting down');
  await c.closedWithin(3000);
  assert.equal(c.frames.length, 0, 'ERROR is the last frame');
  assert.equal((await g.exited).code, 0);
  assert.match(g.log(), /drain: all sessions closed/);
});

test('--max-sessions counts TCP sessions; one more gets an ERROR, counted in /metrics', async () => {
  const g = await gateway(['--max-sessions', '1']);
  const a = await session(g.stompPort);
  const b = await openStomp(g.stompPort);
  const e = await b.take('ERROR');
  assert.equal(e.headers.message, 'Service Unavailable: session limit reached');
  await b.closedWithin(3000);
  // The WebSocket listener counts the TCP session too.
  const head = await httpHead(g.port, upgradeRequest());
  assert.match(head, /^HTTP\/1.1 503/);
  const m = parseMetrics((await httpGet(g.adminPort, '/metrics')).body);
  assert.equal(m.get('stompgate_stomp_tcp_connections_total'), 1);
  assert.equal(m.get('stompgate_stomp_tcp_refused_total'), 1);
  // The refused connection's session is counted until its socket has
  // closed on the gateway's side too, which may come after the client saw it.
  let left = m.get('stompgate_sessions_open');
  for (let i = 0; i < 50 && left !== 1; i++) {
    await sleep(100);
    left = parseMetrics((await httpGet(g.adminPort, '/metrics')).body).get('stompgate_sessions_open');
  }
  assert.equal(left, 1);
  a.put('DISCONNECT', {});
  await a.closedWithin(3000);
  // The slot is free once the session is gone (its socket closed, then it).
  let open = 1;
  await waitFor(() => {
    httpGet(g.adminPort, '/metrics').then((r) => { open = parseMetrics(r.body).get('stompgate_sessions_open'); }, () => {});
    return open === 0;
  }, 5000, 'the slot to free');
  const c = await session(g.stompPort);
  c.destroy();
});

test('behind a load balancer: a PROXY header names the client for the log and the per-address rate', async () => {
  const g = await gateway(['--proxy-protocol', '--trusted-proxy', '127.0.0.1/32', '--session-rate-per-address', '1']);
  const v1 = (src, port) => `PROXY TCP4 ${src} 127.0.0.1 ${port} ${g.stompPort}\r\n`;
  // The header and CONNECT in one write, and a header split from CONNECT.
  const a = await openStomp(g.stompPort);
  a.send(v1('192.0.2.10', 1000) + frameText('CONNECT', LOGIN));
  await a.take('CONNECTED');
  const b = await openStomp(g.stompPort);
  b.send('PROXY TCP4 192.0.2.11 127.0.0.1 ');
  await sleep(50);
  b.send(`1000 ${g.stompPort}\r\n`);
  b.put('CONNECT', LOGIN);
  await b.take('CONNECTED');
  await waitFor(() => /session-\d+ open from 192\.0\.2\.10:1000/.test(g.log()) &&
    /session-\d+ open from 192\.0\.2\.11:1000/.test(g.log()), 3000, 'the clients named in the log');
  // The same client again within the second: refused by its own rate.
  const c = await openStomp(g.stompPort);
  c.send(v1('192.0.2.10', 1001) + frameText('CONNECT', LOGIN));
  assert.equal((await c.take('ERROR')).headers.message, 'Too Many Requests: session rate limit for this address');
  await c.closedWithin(3000);
  // No header from the trusted proxy: closed without an answer.
  const d = await openStomp(g.stompPort);
  d.put('CONNECT', LOGIN);
  await d.closedWithin(3000);
  assert.equal(d.frames.length, 0);
  await waitFor(() => g.log().includes('closing: no PROXY protocol header from a trusted-proxy'), 3000, 'the refusal logged');
  const m = parseMetrics((await httpGet(g.adminPort, '/metrics')).body);
  assert.equal(m.get('stompgate_proxy_headers_total{version="1"}'), 3);
  a.destroy();
  b.destroy();
  // From a peer that is not trusted, a header is refused.
  const u = await gateway(['--proxy-protocol', '--trusted-proxy', '10.0.0.0/8']);
  const e = await openStomp(u.stompPort);
  e.send(`PROXY TCP4 192.0.2.7 127.0.0.1 1 ${u.stompPort}\r\n` + frameText('CONNECT', LOGIN));
  await e.closedWithin(3000);
  assert.equal(e.frames.length, 0);
  await waitFor(() => u.log().includes('closing: PROXY protocol header from a peer that is not a trusted-proxy'), 3000, 'log line');
  // Without a header it is an ordinary client.
  const f = await session(u.stompPort);
  f.destroy();
});

function stompitConnect(opts) {
  return new Promise((resolve, reject) => {
    stompit.connect(opts, (err, client) => (err ? reject(err) : resolve(client)));
  });
}

function stompitRoundTrip(client, destination, body) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('stompit: no message')), 10000);
    client.subscribe({ destination, ack: 'client-individual' }, (err, message) => {
      if (err) { clearTimeout(t); reject(err); return; }
      message.readString('utf-8', (e, text) => {
        clearTimeout(t);
        if (e) { reject(e); return; }
        client.ack(message);
        resolve({ text, headers: message.headers });
      });
    });
    const frame = client.send({ destination, 'content-type': 'text/plain' }, {
      onReceipt: () => { frame.receipted = true; },
    });
    frame.write(body);
    frame.end();
  });
}

test("npm's stompit: connect, subscribe, send, receive, disconnect", async () => {
  const client = await stompitConnect({
    host: '127.0.0.1', port: gw.stompPort,
    connectHeaders: { host: '/', login: 'guest', passcode: 'guest', 'heart-beat': '0,0' },
  });
  client.on('error', () => {});
  const q = `/queue/${uniq('stompit')}`;
  const m = await stompitRoundTrip(client, q, 'from stompit – ünïcode');
  assert.equal(m.text, 'from stompit – ünïcode');
  assert.equal(m.headers.destination, q);
  await new Promise((r) => client.disconnect(r));
});

// Runs test/e2e/lib/stomppy.py; onSubscribed runs once it has subscribed.
function stomppy(args, onSubscribed) {
  return new Promise((resolve, reject) => {
    const p = spawn(PYTHON, ['test/e2e/lib/stomppy.py', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    const t = setTimeout(() => p.kill('SIGKILL'), 30000);
    p.stdout.on('data', (d) => {
      const had = out.includes('subscribed\n');
      out += d;
      if (!had && out.includes('subscribed\n')) onSubscribed?.();
    });
    p.stderr.on('data', (d) => { err += d; });
    p.on('exit', (code) => {
      clearTimeout(t);
      const last = out.trim().split('\n').pop();
      try { resolve({ code, result: JSON.parse(last), stderr: err }); } catch { reject(new Error(`stomppy: ${out} ${err}`)); }
    });
  });
}

test("Debian's python3-stomp: a topic shared with a WebSocket client, heart-beats", async () => {
  const topic = `/topic/${uniq('py')}`;
  const ws = await connected(gw.url.replace('ws://', 'ws://'));
  let published = false;
  const r = await stomppy(['--port', String(gw.stompPort), '--dest', topic, '--count', '2', '--expect', '3',
    '--heartbeat', '300', '--hold', '1'], () => {
    ws.publish({ destination: topic, body: 'from websocket' });
    published = true;
  });
  await ws.deactivate();
  assert.ok(published);
  assert.equal(r.code, 0, JSON.stringify(r.result) + r.stderr);
  assert.equal(r.result.connected.version, '1.2');
  assert.deepEqual(r.result.messages.map((m) => m.body).sort(), ['from websocket', 'py-0', 'py-1']);
  assert.ok(r.result.receipts.includes('bye'), 'DISCONNECT receipt');
  assert.ok(r.result.heartbeats >= 1, `heart-beats seen by stomp.py: ${r.result.heartbeats}`);
});

test('STOMP over TLS: node tls, stompit and python3-stomp; plain bytes are refused', async () => {
  const C = makeCerts(fs.mkdtempSync(path.join(process.env.SG_TMP ?? '/tmp', 'stomptls-')));
  const g = await gateway(['--tls-cert', C.a[0], '--tls-key', C.a[1], '--stomp-tls'], { tls: true });
  assert.match(g.log(), new RegExp(`STOMP over TLS listening on stomp\\+ssl://127\\.0\\.0\\.1:${g.stompPort}`));
  const ca = fs.readFileSync(C.ca);
  // An ALPN offer that is not http/1.1 is not refused on this port.
  const c = await session(g.stompPort, {}, { ca, servername: 'localhost', ALPNProtocols: ['stomp'] });
  assert.equal(c.sock.getPeerCertificate().subject.CN, 'gateway-a');
  const q = `/queue/${uniq('tls')}`;
  await subscribeRaw(c, q);
  // Larger than a TLS record and a socket read.
  const big = 'y'.repeat(200000) + 'end';
  c.put('SEND', { destination: q, receipt: 'big' }, big);
  const m = await c.take('MESSAGE', 10000);
  assert.equal(m.body.length, big.length);
  assert.ok(m.body.endsWith('end'));
  assert.equal((await c.take('RECEIPT')).headers['receipt-id'], 'big');
  c.put('DISCONNECT', { receipt: 'bye' });
  await c.take('RECEIPT');
  await c.closedWithin(3000);

  const client = await stompitConnect({
    host: '127.0.0.1', port: g.stompPort, ssl: true, ca: [ca], servername: 'localhost',
    connectHeaders: { host: '/', login: 'guest', passcode: 'guest', 'heart-beat': '0,0' },
  });
  client.on('error', () => {});
  const sm = await stompitRoundTrip(client, `/queue/${uniq('tls-stompit')}`, 'stompit over tls');
  assert.equal(sm.text, 'stompit over tls');
  await new Promise((r) => client.disconnect(r));

  const r = await stomppy(['--port', String(g.stompPort), '--dest', `/queue/${uniq('tls-py')}`, '--count', '2', '--ca', C.ca]);
  assert.equal(r.code, 0, JSON.stringify(r.result) + r.stderr);
  assert.deepEqual(r.result.messages.map((x) => x.body), ['py-0', 'py-1']);

  // A frame right before the client's close_notify still counts.
  const lq = uniq('tls-last');
  const conn = await amqpConnect();
  const ch = await conn.createChannel();
  await ch.assertQueue(lq, { durable: true });
  const last = await session(g.stompPort, {}, { ca, servername: 'localhost' });
  // A receipted SEND first, so that the session's broker channel is open
  // (shared mode opens it with the first SEND, which would otherwise wait).
  last.put('SEND', { destination: `/queue/${lq}`, receipt: 'first' }, 'first words');
  await last.take('RECEIPT');
  last.send(frameText('SEND', { destination: `/queue/${lq}` }, 'last words'));
  last.sock.end();
  await last.closed;
  const got = [];
  for (let i = 0; i < 60 && got.length < 2; i++) {
    const m = await ch.get(lq, { noAck: true });
    if (m) got.push(m.content.toString());
    else await sleep(50);
  }
  assert.deepEqual(got, ['first words', 'last words']);
  await ch.deleteQueue(lq);
  await conn.close();

  // Plain STOMP to the TLS port gets no CONNECTED.
  const plain = await openStomp(g.stompPort);
  plain.put('CONNECT', LOGIN);
  await plain.closedWithin(5000);
  assert.equal(plain.frames.length, 0);
});

test('settings: stomp-tls needs the TLS files, stomp-listen another port than listen', async () => {
  const p = await freePort();
  let r = await runToExit(['--stomp-listen', `127.0.0.1:${p}`, '--stomp-tls']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /'stomp-tls': needs stomp-listen, tls-cert and tls-key/);
  r = await runToExit(['--listen', `127.0.0.1:${p}`, '--stomp-listen', `127.0.0.1:${p}`]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /'stomp-listen'/);
  r = await runToExit(['--stomp-listen', 'nonsense']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /HOST:PORT/);
  r = await runToExit(['--help']);
  assert.match(r.stdout, /--stomp-listen HOST:PORT/);
  assert.match(r.stdout, /--stomp-tls/);
});
