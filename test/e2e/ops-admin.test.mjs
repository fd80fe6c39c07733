// SPDX-License-Identifier: MIT
// The admin endpoint: /healthz, /readyz (broker probe, draining), /metrics
// in Prometheus text, counted from real sessions against the real broker.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { connected, subscribe, receipt, rawWs, waitFor, uniq, freePort, sleep, AMQP_PORT } from './lib/harness.mjs';
import { spawnGateway, httpGet, httpHead, parseMetrics } from './lib/ops.mjs';

const started = [];
after(async () => { for (const g of started) await g.stop('SIGKILL'); });
async function gateway(args, opts) {
  const g = await spawnGateway(args, opts);
  started.push(g);
  return g;
}

// A TCP relay to the broker that the test can cut and restore, to take the
// broker away from the gateway without touching the shared broker.
async function brokerRelay(port) {
  const socks = new Set();
  let server;
  const start = () => new Promise((r) => {
    server = net.createServer((c) => {
      const u = net.connect(AMQP_PORT, '127.0.0.1');
      socks.add(c); socks.add(u);
      c.pipe(u); u.pipe(c);
      const end = () => { c.destroy(); u.destroy(); socks.delete(c); socks.delete(u); };
      c.on('error', end); u.on('error', end); c.on('close', end); u.on('close', end);
    });
    server.listen(port, '127.0.0.1', r);
  });
  await start();
  return {
    start,
    stop: () => new Promise((r) => { for (const s of socks) s.destroy(); server.close(r); }),
  };
}

async function metrics(gw) {
  const r = await httpGet(gw.adminPort, '/metrics');
  assert.equal(r.status, 200);
  assert.match(r.headers['content-type'], /^text\/plain; version=0.0.4/);
  return { text: r.body, m: parseMetrics(r.body) };
}

test('/healthz answers, unknown paths are 404, other methods 405', async () => {
  const gw = await gateway([]);
  const h = await httpGet(gw.adminPort, '/healthz');
  assert.equal(h.status, 200);
  assert.equal(h.body, 'ok\n');
  assert.equal((await httpGet(gw.adminPort, '/nope')).status, 404);
  const post = await httpHead(gw.adminPort, 'POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n');
  assert.match(post, /^HTTP\/1.1 405/);
  await gw.stop();
});

test('/readyz follows the broker probe: down, then up, and a reconnect is counted', async () => {
  const relayPort = await freePort();
  const gw = await gateway(['--broker-probe-interval', '150'], { amqpPort: relayPort });
  // No relay yet: the broker address refuses connections.
  await waitFor(() => false, 400).catch(() => {});
  let r = await httpGet(gw.adminPort, '/readyz');
  assert.equal(r.status, 503);
  assert.match(r.body, /broker unreachable/);
  const relay = await brokerRelay(relayPort);
  await waitForStatus(gw, '/readyz', 200);
  let { m } = await metrics(gw);
  assert.equal(m.get('stompgate_broker_link_up'), 1);
  assert.equal(m.get('stompgate_broker_reconnects_total'), 0);
  await relay.stop();
  await waitForStatus(gw, '/readyz', 503);
  assert.equal((await metrics(gw)).m.get('stompgate_broker_link_up'), 0);
  await relay.start();
  await waitForStatus(gw, '/readyz', 200);
  ({ m } = await metrics(gw));
  assert.equal(m.get('stompgate_broker_reconnects_total'), 1);
  await relay.stop();
  await gw.stop();
});

async function waitForStatus(gw, path, status, ms = 5000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    last = await httpGet(gw.adminPort, path);
    if (last.status === status) return last;
    await sleep(50);
  }
  throw new Error(`${path} stayed ${last?.status}: ${last?.body}`);
}

test('/metrics counts sessions, frames, bytes, deliveries, confirms, acks and errors', async () => {
  const gw = await gateway(['--broker-probe-interval', '200']);
  const before = (await metrics(gw)).m;
  const { text: declared } = await metrics(gw);
  for (const name of ['stompgate_sessions_open', 'stompgate_sessions_total', 'stompgate_sessions_closed_total',
    'stompgate_frames_in_total', 'stompgate_frames_out_total', 'stompgate_bytes_in_total', 'stompgate_bytes_out_total',
    'stompgate_deliveries_total', 'stompgate_publish_confirms_total', 'stompgate_client_acks_total',
    'stompgate_errors_total', 'stompgate_slow_consumer_drops_total', 'stompgate_broker_link_up',
    'stompgate_broker_reconnects_total', 'stompgate_handshake_seconds', 'stompgate_broker_login_seconds'])
    assert.match(declared, new RegExp(`^# TYPE ${name} `, 'm'), name);
  assert.equal(before.get('stompgate_slow_consumer_drops_total'), 0);

  const q = `/queue/${uniq('metrics')}`;
  const c = await connected(gw.url);
  const msgs = await subscribe(c, q, { ack: 'client-individual' });
  for (let i = 0; i < 3; i++) {
    const rid = uniq('r');
    c.publish({ destination: q, body: `m${i}`, headers: { receipt: rid } });
    await receipt(c, rid);
  }
  await waitFor(() => msgs.length === 3, 5000, 'three messages');
  msgs[0].ack();
  msgs[1].ack();
  msgs[2].nack({ requeue: 'false' });
  const rid = uniq('r');
  c.publish({ destination: '/queue/x', body: '', headers: { receipt: rid } });
  await receipt(c, rid);
  assert.equal((await metrics(gw)).m.get('stompgate_sessions_open'), 1);
  await c.deactivate();

  // A protocol error: a frame before CONNECT.
  const bad = rawWs(gw.url);
  await bad.opened;
  bad.send(bad.frame('SEND', { destination: q }, 'x'));
  await bad.closed;

  await waitFor(() => false, 300).catch(() => {});
  const { m, text } = await metrics(gw);
  const d = (k) => m.get(k) - (before.get(k) ?? 0);
  assert.equal(m.get('stompgate_sessions_open'), 0);
  assert.equal(d('stompgate_sessions_total'), 2);
  assert.equal(d('stompgate_sessions_closed_total{reason="disconnect"}'), 1);
  assert.equal(d('stompgate_sessions_closed_total{reason="protocol_error"}'), 1);
  assert.equal(d('stompgate_frames_in_total{command="SEND"}'), 5);
  assert.equal(d('stompgate_frames_in_total{command="SUBSCRIBE"}'), 1);
  assert.equal(d('stompgate_frames_in_total{command="ACK"}'), 2);
  assert.equal(d('stompgate_frames_in_total{command="NACK"}'), 1);
  assert.equal(d('stompgate_frames_out_total{command="CONNECTED"}'), 1);
  assert.equal(d('stompgate_frames_out_total{command="MESSAGE"}'), 3);
  assert.ok(d('stompgate_frames_out_total{command="RECEIPT"}') >= 5);
  assert.equal(d('stompgate_frames_out_total{command="ERROR"}'), 1);
  assert.equal(d('stompgate_deliveries_total'), 3);
  assert.equal(d('stompgate_publish_confirms_total{result="ack"}'), 4);
  assert.equal(d('stompgate_client_acks_total{kind="ack"}'), 2);
  assert.equal(d('stompgate_client_acks_total{kind="nack"}'), 1);
  assert.equal(d('stompgate_errors_total{kind="Expected CONNECT"}'), 1);
  assert.ok(d('stompgate_bytes_in_total') > 100);
  assert.ok(d('stompgate_bytes_out_total') > 100);
  assert.equal(d('stompgate_handshake_seconds_count'), 2);
  assert.equal(m.get('stompgate_handshake_seconds_bucket{le="+Inf"}'), m.get('stompgate_handshake_seconds_count'));
  assert.ok(d('stompgate_broker_login_seconds_count') >= 1);
  // Every sample line is "name{labels} number".
  for (const line of text.split('\n'))
    if (line && !line.startsWith('#'))
      assert.match(line, /^[a-z_]+(\{[a-z]+="[^"]*"(,[a-z]+="[^"]*")*\})? [0-9.e+-]+$/, line);
  await gw.stop();
});

test('several --broker nodes: a dead first node is skipped by logins and the probe', async () => {
  const dead = await freePort();
  const gw = await gateway(['--broker', `amqp://guest:guest@127.0.0.1:${dead}/`,
    '--broker', `amqp://guest:guest@127.0.0.1:${AMQP_PORT}/`, '--broker-probe-interval', '150']);
  await waitForStatus(gw, '/readyz', 200);
  const c = await connected(gw.url);
  await c.deactivate();
  const { m } = await metrics(gw);
  assert.ok(m.get('stompgate_broker_failovers_total') >= 1);
  assert.match(gw.log(), /answers; new sessions log in there/);
  await gw.stop();
});

test('STOMPGATE_BROKER takes a comma-separated list of nodes', async () => {
  const dead = await freePort(), port = await freePort(), adminPort = await freePort();
  const gw = await gateway(['--listen', `127.0.0.1:${port}`, '--admin', `127.0.0.1:${adminPort}`,
    '--broker-probe-interval', '150'], { noDefaults: true, port, adminPort,
    env: { STOMPGATE_BROKER: `amqp://guest:guest@127.0.0.1:${dead}/,amqp://guest:guest@127.0.0.1:${AMQP_PORT}/` } });
  assert.match(gw.log(), /broker node 2: 127.0.0.1/);
  await waitForStatus(gw, '/readyz', 200);
  const c = await connected(gw.url);
  await c.deactivate();
  await gw.stop();
});
