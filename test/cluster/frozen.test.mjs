// SPDX-License-Identifier: MIT
// A frozen broker node: node 1 of the cluster, where the sessions logged
// in, is stopped with SIGSTOP, so its sockets stay open and nothing
// answers (a frozen VM, a partition that drops packets). The gateway finds
// it by AMQP heart-beats within three intervals, the sessions get an ERROR
// and reconnect to a live node, and every receipted message of a quorum
// queue is consumed (client-individual acks). In shared mode a topic
// subscriber keeps its WebSocket (its shared queue moves to a live node),
// and so does a session whose channel held nothing the broker owed.
// A gateway given only node 1 turns /readyz to 503 while it is frozen. In
// both relay modes; node 1 is thawed at the end of each case.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import amqp from 'amqplib';
import { waitFor, uniq, sleep } from '../e2e/lib/harness.mjs';
import { spawnGateway, httpGet, parseMetrics } from '../e2e/lib/ops.mjs';
import { PORTS, DIRS, MODES, reconnecting, receiptedPublisher } from './lib.mjs';

const HEARTBEAT_S = 2;
const started = [];
const nodeGroup = () => -Number(fs.readFileSync(`${DIRS[0]}/pid`, 'utf8'));
const thaw = () => { try { process.kill(nodeGroup(), 'SIGCONT'); } catch { /* not running */ } };
after(async () => {
  thaw();
  for (const g of started) await g.stop('SIGKILL');
});

for (const mode of MODES) {
  test(`${mode}: a frozen node is found by heart-beats and its sessions move to a live node`, async () => {
    const q = uniq('frozen');
    const conn = await amqp.connect(`amqp://guest:guest@127.0.0.1:${PORTS[1]}`);
    const ch = await conn.createChannel();
    await ch.assertQueue(q, { durable: true, arguments: { 'x-queue-type': 'quorum' } });

    const gw = await spawnGateway([...PORTS.flatMap((p) => ['--broker', `amqp://guest:guest@127.0.0.1:${p}/`]),
      '--mode', mode, '--broker-heartbeat', String(HEARTBEAT_S), '--broker-probe-interval', '200']);
    started.push(gw);
    for (let i = 0; i < 50 && (await httpGet(gw.adminPort, '/readyz')).status !== 200; i++) await sleep(100);
    assert.equal((await httpGet(gw.adminPort, '/readyz')).status, 200);

    const acked = new Set();
    const consumer = reconnecting(gw.url, (cl) => {
      cl.subscribe(`/amq/queue/${q}`, (m) => { m.ack(); acked.add(m.body); },
        { ack: 'client-individual', 'prefetch-count': '50' });
    });
    const producer = reconnecting(gw.url, () => {});
    // A topic subscriber: in shared mode its subscription is the worker's
    // shared queue, which moves to a live node while its socket stays open.
    const topic = uniq('frozen.topic');
    const heard = [];
    let listening = 0;
    const listener = reconnecting(gw.url, (cl) => {
      const rid = `sub-${cl.connects}`;
      cl.watchForReceipt(rid, () => { listening = cl.connects; });
      cl.subscribe(`/topic/${topic}`, (m) => heard.push(m.body), { receipt: rid });
    });
    // A session that publishes now and then without receipts: in shared
    // mode its channel holds nothing the broker owes when the node freezes,
    // so it keeps its WebSocket and its next SEND goes through a live node.
    const sender = reconnecting(gw.url, () => {});
    await waitFor(() => consumer.connects === 1 && producer.connects === 1 && listening === 1 &&
      sender.connects === 1, 15000, 'clients connected');
    for (let i = 0; i < 3; i++) sender.publish({ destination: `/topic/${topic}`, body: `before-${i}` });
    await waitFor(() => heard.filter((b) => b.startsWith('before-')).length === 3, 10000, 'sender heard');

    const { receipted, stop } = receiptedPublisher(producer, q);
    await waitFor(() => receipted.length > 50, 15000, 'publishing under way');

    // A gateway that knows only node 1 has no node left to reach.
    const lone = await spawnGateway(['--broker', `amqp://guest:guest@127.0.0.1:${PORTS[0]}/`,
      '--mode', mode, '--broker-heartbeat', String(HEARTBEAT_S), '--broker-probe-interval', '200']);
    started.push(lone);
    for (let i = 0; i < 50 && (await httpGet(lone.adminPort, '/readyz')).status !== 200; i++) await sleep(100);

    const frozenAt = Date.now();
    process.kill(nodeGroup(), 'SIGSTOP');
    try {
      await waitFor(() => consumer.errors.length > 0 && producer.errors.length > 0, 5000 * HEARTBEAT_S,
        'both sessions told the node is lost');
      const first = Math.min(consumer.errors[0].at, producer.errors[0].at) - frozenAt;
      const last = Math.max(consumer.errors[0].at, producer.errors[0].at) - frozenAt;
      console.log(`# ${mode}: heart-beat ${HEARTBEAT_S} s; freeze to first ERROR ${first} ms, ` +
        `to the last session's ERROR ${last} ms`);
      assert.ok(last <= 3000 * HEARTBEAT_S, `found after ${last} ms, over three heart-beat intervals`);
      for (const c of [consumer, producer]) {
        assert.equal(c.errors[0].message, 'Broker connection lost');
        assert.match(c.errors[0].body, /no heart-beat from the broker at 127\.0\.0\.1:\d+/);
      }

      await waitFor(() => consumer.connects > 1 && producer.connects > 1, 30000, 'clients reconnected');
      const resumedAt = receipted.length;
      await waitFor(() => receipted.length > resumedAt + 50, 30000, 'publishing resumed on a live node');
      await stop();

      // Nodes 2 and 3 answer, so the gateway stays ready; the one that
      // knows only node 1 is not.
      const ready = await httpGet(gw.adminPort, '/readyz');
      assert.equal(ready.status, 200, ready.body);
      const loneReady = await httpGet(lone.adminPort, '/readyz');
      assert.equal(loneReady.status, 503, loneReady.body);
      assert.match(loneReady.body, /broker unreachable/);
      const m = parseMetrics((await httpGet(gw.adminPort, '/metrics')).body);
      assert.ok(m.get('stompgate_broker_heartbeat_timeouts_total') >= 1);
      if (mode === 'shared') {
        assert.ok(m.get('stompgate_shared_moves_total') >= 1);
        assert.ok(m.get('stompgate_sessions_moved_total') >= 1);
      }
      assert.match(gw.log(), /lost: no heart-beat from the broker at 127\.0\.0\.1:\d+ for [\d.]+ s/);
    } finally {
      await stop();
      thaw();
    }
    // Messages delivered to the old consumer but not acknowledged stay with
    // its channel on the frozen node until the node notices the closed
    // socket (or the cluster declares it down); once thawed, it gives them
    // back and they are redelivered.
    await waitFor(() => receipted.every((id) => acked.has(id)), 60000,
      `every receipted message consumed (${receipted.length} receipted, ${acked.size} acked)`);
    // Topic messages reach the subscriber again. Declaring and binding a
    // queue takes every node of the cluster in RabbitMQ, so the new queue
    // is ready once node 1 is thawed (or the cluster declares it down),
    // while the session stays open all along.
    let t = 0;
    await waitFor(() => {
      ch.publish('amq.topic', topic, Buffer.from(`after-${t++}`));
      return heard.some((b) => b.startsWith('after-'));
    }, 20000, 'topic messages after the freeze');
    await waitFor(() => {
      if (sender.connected) sender.publish({ destination: `/topic/${topic}`, body: `sender-${t++}` });
      return heard.some((b) => b.startsWith('sender-'));
    }, 20000, 'the sender\'s messages after the freeze');
    if (mode === 'shared') {
      assert.equal(listener.connects, 1, 'the topic subscriber kept its WebSocket');
      assert.deepEqual(listener.errors, []);
      assert.equal(sender.connects, 1, 'the sender kept its WebSocket');
      assert.deepEqual(sender.errors, []);
      assert.match(gw.log(), /moving \d+ shared subscriptions to a live node/);
      assert.match(gw.log(), /shared subscriptions move to broker 127\.0\.0\.1:\d+/);
    } else {
      assert.equal(listener.errors[0]?.message, 'Broker connection lost');
    }
    for (let i = 0; i < 100 && (await httpGet(lone.adminPort, '/readyz')).status !== 200; i++) await sleep(100);
    assert.equal((await httpGet(lone.adminPort, '/readyz')).status, 200, 'ready again once thawed');
    assert.equal((await lone.stop()).code, 0);
    await consumer.deactivate();
    await producer.deactivate();
    await listener.deactivate();
    await sender.deactivate();
    await ch.deleteQueue(q).catch(() => {});
    await conn.close().catch(() => {});
    assert.equal((await gw.stop()).code, 0);
  });
}
