// SPDX-License-Identifier: MIT
// Scale-out on loopback: RabbitMQ, three stompgate instances and HAProxy
// (the Debian package) in front checking /readyz and sending the PROXY
// protocol v2 from its own source address (127.0.0.2, the gateways' one
// trusted proxy), so the gateways see the clients' addresses. Subscribers spread over
// the instances get what a publisher on another instance sends; one
// instance is drained, its clients reconnect through HAProxy to the
// others, and a queue consumed with client acks loses no receipted message.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { spawn, execFileSync } from 'node:child_process';
import WebSocket from 'ws';
import { Client } from '@stomp/stompjs';
import { freePort, waitFor, uniq, sleep, connected, receipt } from './lib/harness.mjs';
import { spawnGateway, httpGet, parseMetrics, waitPort } from './lib/ops.mjs';

const HAPROXY = ['/usr/sbin/haproxy', '/usr/bin/haproxy'].find((p) => fs.existsSync(p));
const started = [];
let haproxy;
after(async () => {
  haproxy?.kill('SIGKILL');
  for (const g of started) await g.stop('SIGKILL');
});

async function startHaproxy(gws) {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(process.env.SG_TMP ?? '/tmp', 'haproxy-'));
  const cfg = path.join(dir, 'haproxy.cfg');
  const sock = path.join(dir, 'stats.sock');
  fs.writeFileSync(cfg, `global
  maxconn 1000
  stats socket ${sock}
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  timeout tunnel 5m
  retries 3
  option redispatch
frontend stomp
  bind 127.0.0.1:${port}
  default_backend gateways
backend gateways
  balance roundrobin
  source 127.0.0.2
  option httpchk GET /readyz
  http-check expect status 200
  timeout check 3s
  default-server check inter 200ms fall 2 rise 1 send-proxy-v2
${gws.map((g, i) => `  server gw${i} 127.0.0.1:${g.port} port ${g.adminPort}`).join('\n')}
`);
  execFileSync(HAPROXY, ['-c', '-q', '-f', cfg]);
  const child = spawn(HAPROXY, ['-db', '-f', cfg], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr.on('data', (d) => { log += d; });
  await waitPort(port);
  return { port, child, sock, log: () => log, url: `ws://127.0.0.1:${port}/ws` };
}

// The gateways HAProxy sees as up, from its stats socket.
function serversUp(sock) {
  return new Promise((resolve) => {
    const c = net.connect(sock);
    let out = '';
    c.on('connect', () => c.write('show stat\n'));
    c.on('data', (d) => { out += d; });
    c.on('error', () => resolve(0));
    c.on('close', () => resolve(out.split('\n').filter((l) => /^gateways,gw\d+,/.test(l) && l.split(',')[17] === 'UP').length));
  });
}

// A client that reconnects (as browsers with stompjs do) and subscribes
// again on every connect.
function reconnecting(url, onConnect) {
  const c = new Client({
    webSocketFactory: () => new WebSocket(url, ['v12.stomp']),
    connectHeaders: { login: 'guest', passcode: 'guest' },
    reconnectDelay: 200, heartbeatIncoming: 0, heartbeatOutgoing: 0, debug: () => {},
  });
  c.connects = 0;
  c.errors = [];
  c.onStompError = (f) => c.errors.push(f.headers.message);
  c.onConnect = () => { c.connects++; onConnect(c); };
  c.activate();
  return c;
}

async function sessionsOpen(g) {
  return parseMetrics((await httpGet(g.adminPort, '/metrics')).body).get('stompgate_sessions_open');
}

test('three gateways behind HAProxy: fan-out across instances, drain, no loss', { skip: !HAPROXY && 'haproxy not installed' }, async () => {
  const gws = [];
  for (let i = 0; i < 3; i++) {
    const g = await spawnGateway(['--broker-probe-interval', '100', '--drain-timeout', '1000',
      '--proxy-protocol', '--trusted-proxy', '127.0.0.2/32']);
    started.push(g);
    gws.push(g);
  }
  for (const g of gws) await waitFor(() => true);
  for (const g of gws)
    for (let i = 0; i < 50 && (await httpGet(g.adminPort, '/readyz')).status !== 200; i++) await sleep(50);
  const lb = await startHaproxy(gws);
  haproxy = lb.child;
  let up = 0;
  for (let i = 0; i < 100 && (up = await serversUp(lb.sock)) < 3; i++) await sleep(100);
  assert.equal(up, 3, 'HAProxy sees the three gateways up');

  // Subscribers through the load balancer.
  const topic = `/topic/${uniq('fan')}`;
  const subs = [];
  for (let i = 0; i < 6; i++) {
    const got = [];
    const c = reconnecting(lb.url, (cl) => {
      cl.subscribe(topic, (m) => got.push(m.body), { receipt: `sub-${i}-${cl.connects}` });
    });
    c.got = got;
    subs.push(c);
  }
  await waitFor(() => subs.every((c) => c.connects === 1), 10000, 'subscribers connected');
  await sleep(300);
  const spread = await Promise.all(gws.map(sessionsOpen));
  assert.deepEqual(spread, [2, 2, 2], `sessions per instance: ${spread}`);
  // Each gateway read a PROXY v2 header per session and names the client
  // (127.0.0.1), not HAProxy (127.0.0.2).
  for (const g of gws) {
    const m = parseMetrics((await httpGet(g.adminPort, '/metrics')).body);
    assert.ok(m.get('stompgate_proxy_headers_total{version="2"}') >= 2, 'PROXY v2 headers read');
    assert.equal(m.get('stompgate_proxy_headers_refused_total{reason="no_header"}'), 0);
    assert.match(g.log(), /session-\d+ open from 127\.0\.0\.1:\d+ /);
    assert.doesNotMatch(g.log(), /open from 127\.0\.0\.2:/);
  }

  // A publisher on one instance directly; everyone receives.
  const pub = await connected(gws[2].url);
  const rid = uniq('r');
  pub.publish({ destination: topic, body: 'hello all', headers: { receipt: rid } });
  await receipt(pub, rid);
  await waitFor(() => subs.every((c) => c.got.includes('hello all')), 5000, 'fan-out to every instance');

  // A queue with client acks, consumed through the load balancer while a
  // publisher (also through it) sends with receipts.
  const q = `/queue/${uniq('scale')}`;
  const acked = new Set();
  const consumer = reconnecting(lb.url, (cl) => {
    cl.subscribe(q, (m) => { m.ack(); acked.add(m.body); }, { ack: 'client-individual' });
  });
  const receipted = [];
  const producer = reconnecting(lb.url, () => {});
  await waitFor(() => consumer.connects >= 1 && producer.connects >= 1, 10000, 'queue clients');
  let stop = false, n = 0;
  const sending = (async () => {
    while (!stop) {
      if (producer.connected) {
        const id = `m${n++}`;
        const r = `rc-${id}`;
        producer.watchForReceipt(r, () => receipted.push(id));
        try { producer.publish({ destination: q, body: id, headers: { receipt: r, persistent: 'true' } }); } catch { /* reconnecting */ }
      }
      await sleep(10);
    }
  })();
  await sleep(500);

  // Drain the instance holding the most of our sessions.
  const counts = await Promise.all(gws.map(sessionsOpen));
  const victim = counts.indexOf(Math.max(...counts));
  const onVictim = counts[victim];
  gws[victim].child.kill('SIGTERM');
  const exit = await gws[victim].exited;
  assert.equal(exit.code, 0);
  assert.ok(onVictim >= 2);

  // Its clients come back through HAProxy to the other two.
  await sleep(1000);
  const reconnected = subs.filter((c) => c.connects > 1);
  assert.equal(reconnected.length, 2, 'the drained instance\'s two subscribers reconnected');
  for (const c of reconnected) assert.ok(c.errors.includes('server shutting down'), `errors: ${c.errors}`);
  await waitFor(() => subs.every((c) => c.connected), 5000, 'all subscribers connected again');
  const after = await Promise.all(gws.map((g, i) => (i === victim ? 0 : sessionsOpen(g))));
  // Everything that went through HAProxy is back; only the direct
  // publisher session is gone if it sat on the drained instance.
  const total = (xs) => xs.reduce((a, b) => a + b, 0);
  assert.equal(total(after), total(counts) - (victim === 2 ? 1 : 0), `sessions before ${counts}, after ${after}`);

  // Fan-out still reaches everyone, including the moved subscribers.
  await sleep(300);
  const survivor = gws.find((g, i) => i !== victim);
  const pub2 = await connected(survivor.url);
  const rid2 = uniq('r');
  pub2.publish({ destination: topic, body: 'after drain', headers: { receipt: rid2 } });
  await receipt(pub2, rid2);
  await waitFor(() => subs.every((c) => c.got.includes('after drain')), 5000, 'fan-out after the drain');

  await sleep(500);
  stop = true;
  await sending;
  await waitFor(() => receipted.every((id) => acked.has(id)), 10000,
    `every receipted message consumed (${receipted.length} receipted, ${acked.size} acked)`);
  assert.ok(receipted.length > 50, `${receipted.length} receipted`);

  for (const c of [...subs, consumer, producer, pub, pub2]) await c.deactivate();
});
