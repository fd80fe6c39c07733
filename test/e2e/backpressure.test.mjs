// SPDX-License-Identifier: MIT
// Back-pressure: a client that stops reading is a slow consumer (closed, or
// its topic messages dropped, by policy) and the gateway's memory stays
// bounded; when the broker blocks publishing, publishing sessions are paused
// instead of buffered, and resume with nothing lost.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import { spawn } from 'node:child_process';
import { startGateway, connected, subscribe, receipt, rawWs, parseFrame, waitFor, uniq, sleep, amqpConnect, sh } from './lib/harness.mjs';

// Under AddressSanitizer freed memory stays in quarantine, so RSS says
// nothing about what the gateway holds; the other checks still run.
const sanitized = (process.env.SG_SANITIZE ?? 'none') !== 'none';
const rssKiB = (pid) => +fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)[1];
const CONNECT = { 'accept-version': '1.2', host: '/', login: 'guest', passcode: 'guest' };

// Without permessage-deflate, so that what it leaves unread is the size of
// the bodies (the 'x' bodies below compress a thousandfold).
async function stalledSubscriber(url, topic) {
  const ws = rawWs(url, ['v12.stomp'], { perMessageDeflate: false });
  await ws.opened;
  ws.send(ws.frame('CONNECT', CONNECT));
  await ws.waitFrame('CONNECTED');
  ws.send(ws.frame('SUBSCRIBE', { id: 's', destination: topic, receipt: 'r' }));
  await ws.waitFrame('RECEIPT');
  ws._socket.pause(); // stop reading: the gateway's writes back up
  return ws;
}

// Publishes n messages in confirmed batches: a pace a reading client keeps
// up with, while one that stopped reading falls further behind.
async function flood(key, n, size, batch = 100, paced = async () => {}) {
  const conn = await amqpConnect();
  const ch = await conn.createConfirmChannel();
  const body = Buffer.alloc(size, 'x');
  for (let i = 0; i < n; i++) {
    ch.publish('amq.topic', key, body);
    if (i % batch === batch - 1) {
      await ch.waitForConfirms();
      await paced(i + 1);
    }
  }
  await ch.waitForConfirms();
  await conn.close();
}

test('a client that stops reading is closed as a slow consumer; memory stays bounded', async () => {
  const gw = await startGateway(['--max-outbound-bytes', '2097152']);
  try {
    const key = uniq('slow');
    const healthy = await connected(gw.url);
    const got = await subscribe(healthy, `/topic/${key}`);
    const ws = await stalledSubscriber(gw.url, `/topic/${key}`);
    const base = rssKiB(gw.child.pid);
    // 16 MB for the stalled client; the reading one is kept near the front.
    await flood(key, 4000, 4096, 50, (sent) => waitFor(() => got.length >= sent - 20, 20000, 'the reader'));
    await waitFor(() => gw.log().includes('slow consumer'), 15000, 'the slow consumer closed');
    const closedLines = () => gw.log().split('\n').filter((l) => / closed /.test(l)).join('\n');
    await waitFor(() => got.length === 4000, 30000, 'the reading subscriber to get all 4000')
      .catch((e) => { throw new Error(`${e.message} (got ${got.length}); sessions:\n${closedLines()}`); });
    const grown = rssKiB(gw.child.pid) - base;
    if (!sanitized) assert.ok(grown < 32 * 1024, `gateway RSS grew ${grown} KiB`);
    ws._socket.resume();
    await ws.closed;
    const err = ws.frames.find((f) => f.startsWith('ERROR'));
    if (err) assert.equal(parseFrame(err).headers.message, 'slow consumer');
    await healthy.deactivate();
  } finally {
    await gw.stop();
  }
});

test('--slow-consumer drop: topic messages are dropped and counted; the session stays', async () => {
  const gw = await startGateway(['--max-outbound-bytes', '65536', '--slow-consumer', 'drop']);
  try {
    const key = uniq('drop');
    const ws = await stalledSubscriber(gw.url, `/topic/${key}`);
    // The kernel's loopback buffers absorb a few MB before the gateway's
    // own backlog grows, and how many depends on the machine's load: the
    // flood goes on, in rounds, until the gateway says it drops.
    const dropping = () => gw.log().includes('dropping topic messages');
    let sent = 0;
    while (!dropping() && sent < 30000) {
      await flood(key, 1000, 4096);
      sent += 1000;
      await waitFor(dropping, 2000, 'drops logged').catch(() => {});
    }
    assert.ok(dropping(), `drops logged after ${sent} messages of 4 KB`);
    ws._socket.resume();
    await sleep(500);
    const before = ws.frames.filter((f) => f.startsWith('MESSAGE')).length;
    assert.ok(before < sent, `some of ${sent} messages were dropped (${before} arrived)`);
    const conn = await amqpConnect();
    const ch = await conn.createChannel();
    ch.publish('amq.topic', key, Buffer.from('after'));
    await waitFor(() => ws.frames.some((f) => f.startsWith('MESSAGE') && f.endsWith('after\0')), 10000, 'a later message');
    await conn.close();
    assert.ok(!ws.frames.some((f) => f.startsWith('ERROR')));
    ws.close();
  } finally {
    await gw.stop();
  }
});

test('a broker resource alarm pauses publishers; their receipts and messages arrive after it', async () => {
  // A broker of its own: the alarm would stall every other case.
  const dir = `${process.env.SG_TMP ?? os.tmpdir()}/alarm-${uniq('x')}`;
  const port = +(await sh(`. test/lib/rabbitmq.sh; rmq_start ${dir} >&2 && echo $RMQ_AMQP_PORT`));
  const gw = await startGateway([], port);
  try {
    const url = gw.url;
    const sub = await connected(url);
    const key = uniq('alarm');
    const got = await subscribe(sub, `/topic/${key}`);
    const pub = await connected(url);
    pub.publish({ destination: `/topic/${key}`, body: 'before', headers: { receipt: 'r0' } });
    await receipt(pub, 'r0');
    await sh(`. test/lib/rabbitmq.sh; rmq_ctl ${dir} set_vm_memory_high_watermark 0.0000001 >/dev/null`);
    // The broker blocks a connection when it next publishes, and says so.
    let receipted = 0;
    const r1 = receipt(pub, 'r1', 30000).then(() => { receipted++; });
    pub.publish({ destination: `/topic/${key}`, body: 'during', headers: { receipt: 'r1' } });
    await waitFor(() => gw.log().includes('blocked publishing'), 20000, 'the broker blocked publishing');
    // Now the gateway holds publishes instead of writing them.
    const r2 = receipt(pub, 'r2', 30000).then(() => { receipted++; });
    pub.publish({ destination: `/topic/${key}`, body: 'held', headers: { receipt: 'r2' } });
    await sleep(1500);
    assert.equal(receipted, 0, 'no RECEIPT while the broker blocks publishing');
    // The gateway keeps serving: a new session connects and subscribes.
    const other = await connected(url);
    await subscribe(other, `/topic/${uniq('other')}`);
    await other.deactivate();
    await sh(`. test/lib/rabbitmq.sh; rmq_ctl ${dir} set_vm_memory_high_watermark 0.4 >/dev/null`);
    await r1;
    await r2;
    await waitFor(() => got.length === 3, 10000, 'every message');
    assert.deepEqual(got.map((m) => m.body), ['before', 'during', 'held']);
    assert.match(gw.log(), /unblocked publishing/);
    await pub.deactivate();
    await sub.deactivate();
  } finally {
    await gw.stop();
    await sh(`. test/lib/rabbitmq.sh; rmq_stop ${dir}`).catch(() => {});
  }
});
