// SPDX-License-Identifier: MIT
// Broker failover: one gateway given the three nodes of a cluster, a
// quorum queue, and clients with client acks and receipts. Node 1, where
// the sessions are, is killed with SIGKILL mid-run: those sessions get an
// ERROR and close, the clients reconnect, their logins move to another
// node, and no receipted message is lost. In both relay modes; node 1 is
// started again after each case.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import amqp from 'amqplib';
import { waitFor, uniq, sleep } from '../e2e/lib/harness.mjs';
import { spawnGateway, httpGet, parseMetrics } from '../e2e/lib/ops.mjs';

import { PORTS, DIRS, SRC, MODES, reconnecting, receiptedPublisher } from './lib.mjs';
const started = [];
after(async () => { for (const g of started) await g.stop('SIGKILL'); });

for (const mode of MODES) test(`${mode}: a node of the cluster is killed: sessions move to the others, nothing receipted is lost`, async () => {
  const q = uniq('quorum');
  const conn = await amqp.connect(`amqp://guest:guest@127.0.0.1:${PORTS[1]}`);
  const ch = await conn.createChannel();
  await ch.assertQueue(q, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  await conn.close();

  const gw = await spawnGateway([...PORTS.flatMap((p) => ['--broker', `amqp://guest:guest@127.0.0.1:${p}/`]),
    '--mode', mode, '--broker-probe-interval', '200']);
  started.push(gw);
  for (let i = 0; i < 50 && (await httpGet(gw.adminPort, '/readyz')).status !== 200; i++) await sleep(100);
  assert.equal((await httpGet(gw.adminPort, '/readyz')).status, 200);

  const acked = new Set();
  const consumer = reconnecting(gw.url, (cl) => {
    cl.subscribe(`/amq/queue/${q}`, (m) => { m.ack(); acked.add(m.body); }, { ack: 'client-individual', 'prefetch-count': '50' });
  });
  const producer = reconnecting(gw.url, () => {});
  await waitFor(() => consumer.connects === 1 && producer.connects === 1, 15000, 'clients connected');

  const { receipted, stop } = receiptedPublisher(producer, q);
  await sleep(1000);
  const before = receipted.length;

  // Kill node 1, where every session logged in first.
  const group = -Number(fs.readFileSync(`${DIRS[0]}/pid`, 'utf8'));
  process.kill(group, 'SIGKILL');
  await waitFor(() => { try { process.kill(group, 0); return false; } catch { return true; } }, 10000,
    'node 1 gone');
  await waitFor(() => consumer.connects > 1 && producer.connects > 1, 20000, 'clients reconnected');
  assert.ok(consumer.errors.some((e) => e.message === 'Broker connection lost'),
    `consumer errors: ${JSON.stringify(consumer.errors)}`);
  assert.ok(producer.errors.some((e) => e.message === 'Broker connection lost'),
    `producer errors: ${JSON.stringify(producer.errors)}`);
  await waitFor(() => receipted.length > before + 50, 20000, 'publishing resumed on another node');
  await sleep(1000);
  await stop();

  await waitFor(() => receipted.every((id) => acked.has(id)), 20000,
    `every receipted message consumed (${receipted.length} receipted, ${acked.size} acked)`);
  const ready = await httpGet(gw.adminPort, '/readyz');
  assert.equal(ready.status, 200, ready.body);
  const m = parseMetrics((await httpGet(gw.adminPort, '/metrics')).body);
  assert.ok(m.get('stompgate_broker_failovers_total') >= 1);
  assert.equal(m.get('stompgate_broker_link_up'), 1);
  assert.match(gw.log(), /broker node 127.0.0.1:\d+ answers|cannot reach the broker at 127.0.0.1/);
  await consumer.deactivate();
  await producer.deactivate();
  assert.equal((await gw.stop()).code, 0);
  // Node 1 rejoins, so the cluster is whole for the cases that follow.
  execFileSync('bash', [`${SRC}/test/lib/rabbitmq.sh`, 'launch', DIRS[0]], { stdio: 'ignore' });
});
