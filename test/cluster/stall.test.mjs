// SPDX-License-Identifier: MIT
// A broker that stops reading: one session floods 4 KB SENDs to a queue and
// the broker stops reading the connection they go through (its reader is
// suspended, as behind flow control). A bystander session on the same
// worker, with 1 s heart-beats and a topic subscription, must never go 2 s
// without a frame and must keep getting its topic messages; the flooding
// session is held back, then resumes, and every receipted message reaches
// the queue. In both relay modes. In per-session mode the two sessions log
// in alike and so may share a connection: there the broker stops reading
// every connection the gateway's sessions have.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import amqp from 'amqplib';
import { waitFor, uniq, sleep } from '../e2e/lib/harness.mjs';
import { spawnGateway, httpGet, parseMetrics } from '../e2e/lib/ops.mjs';
import { PORTS, DIRS, MODES, suspendReaders, resumeReaders, rawStomp } from './lib.mjs';

const started = [];
after(async () => {
  resumeReaders(DIRS[2]);
  for (const g of started) await g.stop('SIGKILL');
});

for (const mode of MODES) {
  test(`${mode}: a broker that stops reading one link stalls only the sessions publishing through it`, async () => {
    const port = PORTS[2], dir = DIRS[2];
    const q = uniq('flood'), topic = uniq('stall');
    const gw = await spawnGateway(['--broker', `amqp://guest:guest@127.0.0.1:${port}/`, '--mode', mode,
      '--workers', '1', '--broker-output-limit', '262144', '--max-frame-size', '65536']);
    started.push(gw);

    // The gateway heart-beats the bystander every second; the bystander's
    // own, every 500 ms, are only checked at 10 s, so a test process slowed
    // by its own flood cannot get it closed.
    const bystander = rawStomp(gw.url, { 'heart-beat': '5000,1000' });
    await bystander.open;
    const beat = setInterval(() => { if (!bystander.closed) bystander.ws.send('\n'); }, 500);
    bystander.send('SUBSCRIBE', { id: 's1', destination: `/topic/${topic}`, receipt: 'sub' });
    await waitFor(() => bystander.receipts.has('sub'), 10000, 'bystander subscribed');

    const flooder = rawStomp(gw.url);
    await flooder.open;
    const body = 'x'.repeat(4096);
    let n = 0, stop = false;
    const sent = new Map();
    const flooding = (async () => {
      while (!stop && !flooder.closed) {
        // Like a browser, keep at most 1 MB in the socket's send buffer.
        if (flooder.ws.bufferedAmount > (1 << 20)) { await sleep(5); continue; }
        const id = `m${n++}`;
        sent.set(`r-${id}`, id);
        flooder.send('SEND', { destination: `/queue/${q}`, receipt: `r-${id}`, 'x-id': id }, body);
        // Leave this process time to read the bystander's frames on time.
        if (n % 10 === 0) await sleep(1);
      }
    })();
    await waitFor(() => flooder.receipts.size > 200, 15000, 'flooding under way');

    // The broker stops reading the link the SENDs go through (and in
    // per-session mode the bystander's too, if it has its own).
    const link = mode === 'shared' ? 'stompgate worker 0 pool' : 'stompgate 127.0.0.1:';
    const since = Date.now();
    assert.ok(suspendReaders(dir, link) >= 1, `one connection named like '${link}'`);
    const amqpConn = await amqp.connect(`amqp://guest:guest@127.0.0.1:${port}`);
    const ch = await amqpConn.createChannel();
    let topicSent = 0;
    const before = bystander.frames.filter((f) => f.command === 'MESSAGE').length;
    for (let i = 0; i < 30; i++) {
      ch.publish('amq.topic', topic, Buffer.from(`t${i}`));
      topicSent++;
      await sleep(200);
    }
    const stalledReceipts = flooder.receipts.size;
    await sleep(500);
    const gap = bystander.longestGap(since);
    const topicGot = bystander.frames.filter((f) => f.command === 'MESSAGE').length - before;
    const metrics = parseMetrics((await httpGet(gw.adminPort, '/metrics')).body);
    console.log(`# ${mode}: bystander's longest gap while the broker did not read: ${gap} ms; ` +
      `topic messages ${topicGot}/${topicSent}; flooder receipts ${stalledReceipts}; ` +
      `links held ${metrics.get('stompgate_broker_links_held')}`);
    assert.equal(metrics.get('stompgate_broker_links_held'), 1, 'the flooding link is held');
    assert.equal(flooder.receipts.size, stalledReceipts, 'no receipt while the broker does not read');

    // The broker reads again: the flood goes on where it stopped.
    assert.ok(resumeReaders(dir) >= 1);
    const resumedAt = flooder.receipts.size;
    await waitFor(() => flooder.receipts.size > resumedAt + 200, 20000, 'flooding resumed');
    stop = true;
    await flooding;
    await waitFor(() => [...sent.keys()].every((r) => flooder.receipts.has(r)) || flooder.closed, 30000,
      'every SEND receipted');
    clearInterval(beat);

    assert.ok(gap < 2000, `the bystander went ${gap} ms without a frame`);
    assert.equal(topicGot, topicSent, 'the bystander got every topic message');
    assert.deepEqual(flooder.errors, [], 'the flooding session got no ERROR');
    assert.deepEqual(bystander.errors, []);
    assert.ok(!flooder.closed && !bystander.closed, 'both sessions are still open');
    const after = parseMetrics((await httpGet(gw.adminPort, '/metrics')).body);
    assert.ok(after.get('stompgate_broker_links_held_total') >= 1);
    assert.ok(after.get('stompgate_sessions_held_total') >= 1, 'the flooding session was held');
    assert.equal(after.get('stompgate_broker_links_held'), 0);
    assert.match(gw.log(), /wait for the broker to read; its publishing sessions are not read/);

    // Nothing receipted is lost: every one is in the queue.
    const ids = new Set();
    await ch.consume(q, (m) => { if (m) ids.add(m.properties.headers['x-id']); }, { noAck: true });
    const receipted = [...flooder.receipts].map((r) => sent.get(r));
    await waitFor(() => receipted.every((id) => ids.has(id)), 30000,
      `every receipted message in the queue (${receipted.length} receipted, ${ids.size} consumed)`);
    await ch.deleteQueue(q);
    await amqpConn.close();
    bystander.ws.close();
    flooder.ws.close();
    assert.equal((await gw.stop()).code, 0);
  });
}
