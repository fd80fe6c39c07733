// SPDX-License-Identifier: MIT
// Drain on SIGTERM/SIGINT: readiness goes false and the listener closes at
// once; sessions keep working through the grace period, then get their
// pending RECEIPTs, an ERROR "server shutting down" and close 1001; no
// receipted message is lost; the process exits 0.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { rawWs, parseFrame, waitFor, uniq, sleep, amqpConnect } from './lib/harness.mjs';
import { spawnGateway, httpGet, portOpen, parseMetrics } from './lib/ops.mjs';

const started = [];
after(async () => { for (const g of started) await g.stop('SIGKILL'); });

const CONNECT = { 'accept-version': '1.2', login: 'guest', passcode: 'guest' };

async function stompRaw(url) {
  const ws = rawWs(url);
  await ws.opened;
  ws.send(ws.frame('CONNECT', CONNECT));
  await ws.waitFrame('CONNECTED');
  return ws;
}

// Publishes with a receipt every few milliseconds until the socket closes;
// returns the bodies whose RECEIPT arrived.
function publisher(ws, dest) {
  const receipted = [];
  let n = 0, open = true;
  ws.on('message', (d) => {
    const s = d.toString();
    if (s.startsWith('RECEIPT')) receipted.push(parseFrame(s).headers['receipt-id']);
  });
  ws.on('close', () => { open = false; });
  const loop = (async () => {
    while (open) {
      const id = `p${n++}`;
      try { ws.send(ws.frame('SEND', { destination: dest, receipt: id, persistent: 'true' }, id)); } catch { break; }
      await sleep(5);
    }
  })();
  return { receipted, done: loop };
}

async function drainCase(signal, args, graceMs) {
  const q = uniq('drain');
  const gw = await spawnGateway(['--broker-probe-interval', '100', ...args]);
  started.push(gw);
  for (let i = 0; i < 50 && (await httpGet(gw.adminPort, '/readyz')).status !== 200; i++) await sleep(50);
  assert.equal((await httpGet(gw.adminPort, '/readyz')).status, 200);

  const consumer = await stompRaw(gw.url);
  consumer.send(consumer.frame('SUBSCRIBE', { id: 's', destination: `/queue/${q}`, ack: 'client-individual', receipt: 'sub' }));
  await consumer.waitFrame('RECEIPT');
  const acked = new Set();
  consumer.on('message', (d) => {
    const s = d.toString();
    if (!s.startsWith('MESSAGE')) return;
    const f = parseFrame(s);
    try { consumer.send(consumer.frame('ACK', { id: f.headers.ack })); acked.add(f.body); } catch { /* closing */ }
  });
  const pubWs = await stompRaw(gw.url);
  const pub = publisher(pubWs, `/queue/${q}`);
  await sleep(300);

  const t0 = Date.now();
  gw.child.kill(signal);
  // Readiness is false and the listener is closed right away.
  await waitFor(() => /draining \d+ sessions/.test(gw.log()), 2000, 'the drain to start');
  const ready = await httpGet(gw.adminPort, '/readyz');
  assert.equal(ready.status, 503);
  assert.match(ready.body, /draining/);
  assert.equal(await portOpen(gw.port), false);
  const m = parseMetrics((await httpGet(gw.adminPort, '/metrics')).body);
  assert.equal(m.get('stompgate_draining'), 1);

  const [cClose, pClose] = await Promise.all([consumer.closed, pubWs.closed]);
  const elapsed = Date.now() - t0;
  await pub.done;
  assert.ok(elapsed >= graceMs - 50, `closed after ${elapsed} ms, grace ${graceMs}`);
  for (const [ws, close] of [[consumer, cClose], [pubWs, pClose]]) {
    assert.equal(close.code, 1001);
    const err = ws.frames.find((f) => f.startsWith('ERROR'));
    assert.ok(err, 'ERROR before close');
    assert.equal(parseFrame(err).headers.message, 'server shutting down');
    assert.ok(ws.frames.indexOf(err) === ws.frames.length - 1, 'ERROR is the last frame');
  }
  const exit = await gw.exited;
  assert.equal(exit.code, 0);
  assert.match(gw.log(), /drain: all sessions closed/);

  // Every receipted message is either acknowledged by the consumer or
  // still in the queue.
  assert.ok(pub.receipted.length > 10, `only ${pub.receipted.length} receipts`);
  const conn = await amqpConnect();
  const ch = await conn.createChannel();
  const left = new Set();
  for (;;) {
    const msg = await ch.get(q, { noAck: true });
    if (!msg) break;
    left.add(msg.content.toString());
  }
  await ch.deleteQueue(q);
  await conn.close();
  const lost = pub.receipted.filter((id) => !acked.has(id) && !left.has(id));
  assert.deepEqual(lost, [], `receipted but lost (${pub.receipted.length} receipted, ${acked.size} acked, ${left.size} left)`);
}

test('SIGTERM drains after --drain-timeout without losing receipted messages', async () => {
  await drainCase('SIGTERM', ['--drain-timeout', '1500'], 1500);
});

test('SIGINT drains at once by default, with the same guarantees', async () => {
  await drainCase('SIGINT', [], 0);
});

test('an idle gateway exits at once on SIGTERM, even with a long grace period', async () => {
  const gw = await spawnGateway(['--drain-timeout', '60000']);
  started.push(gw);
  const t0 = Date.now();
  const r = await gw.stop('SIGTERM');
  assert.equal(r.code, 0);
  assert.ok(Date.now() - t0 < 2000);
});
