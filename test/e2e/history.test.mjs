// SPDX-License-Identifier: MIT
// Topics with history (--history): a stream bound to amq.topic keeps the
// messages of a pattern; every MESSAGE of such a topic carries its stream
// offset in x-stream-offset, and a SUBSCRIBE with x-stream-offset resumes
// from an offset with no gap and no duplicate, through this gateway or
// another. In shared mode a resumed subscription reads the stream on its
// own channel until it reaches the worker's live feed, then moves onto it.
// Messages carry "<marker>|<n>" bodies so that each case counts its own.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, connected, subscribe, rawWs, parseFrame, waitFor, uniq, sleep, amqpConnect, rmqctl } from './lib/harness.mjs';
import { httpGet, parseMetrics } from './lib/ops.mjs';
import { freePort } from './lib/harness.mjs';

const shared = process.env.SG_MODE === 'shared';
// Streams outlive a run on the same broker and keep their retention: each
// run uses patterns of its own.
const run = uniq('h').replace(/[^a-zA-Z0-9]/g, '');
const CHAT = `chat${run}`;
const EXP = `exp${run}`;
const DEL = `del${run}`; // a stream the broker deletes in one case

let gw, gw2, amqp, ch, adminPort;
const clients = [];
const open = async (g = gw) => { const c = await connected(g.url); clients.push(c); return c; };
const historyArgs = ['--history', `${CHAT}.#:1h`, '--history', `${EXP}.#:2s`, '--history', `${DEL}.#:1h`,
  '--history-segment-size', '4096'];

before(async () => {
  adminPort = await freePort();
  gw = await startGateway(['--workers', '2', '--admin', `127.0.0.1:${adminPort}`, ...historyArgs]);
  gw2 = await startGateway(['--workers', '1', ...historyArgs]);
  amqp = await amqpConnect();
  ch = await amqp.createConfirmChannel();
});
after(async () => {
  for (const c of clients) await c.deactivate().catch(() => {});
  await amqp?.close().catch(() => {});
  await gw2?.stop();
  await gw?.stop();
});

const offsetOf = (m) => Number(m.headers['x-stream-offset']);
const bodiesOf = (msgs, marker) => msgs.filter((m) => m.body.startsWith(`${marker}|`)).map((m) => m.body.slice(marker.length + 1));

async function publish(key, marker, from, to) {
  for (let i = from; i < to; i++) ch.publish('amq.topic', key, Buffer.from(`${marker}|${i}`));
  await ch.waitForConfirms();
}

// Offsets strictly increase, and the bodies are exactly want, in order.
function inOrder(msgs, marker, want, what) {
  const mine = msgs.filter((m) => m.body.startsWith(`${marker}|`));
  const offs = mine.map(offsetOf);
  for (let i = 1; i < offs.length; i++) assert.ok(offs[i] > offs[i - 1], `${what}: offsets ${offs[i - 1]} then ${offs[i]}`);
  assert.deepEqual(bodiesOf(mine, marker), want.map(String), `${what}: every message once, in order`);
}

const range = (a, b) => Array.from({ length: b - a }, (_, i) => a + i);

// Publishes to key, 10 messages every 10 ms from number n on, until
// stop() (which resolves once the last are confirmed); count() says how
// many were published.
function steadyPublisher(key, marker, n) {
  let stop = false;
  const done = (async () => {
    while (!stop) {
      for (let i = 0; i < 10; i++) ch.publish('amq.topic', key, Buffer.from(`${marker}|${n++}`));
      await ch.waitForConfirms();
      await sleep(10);
    }
  })();
  return { stop: () => { stop = true; return done; }, count: () => n };
}

// Publishes n messages to key, then reads them back from the stream's
// start on a new session: the subscription, for its offsets.
async function publishedAndReadFromFirst(key, marker, n, id) {
  await publish(key, marker, 0, n);
  const c = await open();
  const msgs = await subscribe(c, `/topic/${key}`, { id, 'x-stream-offset': 'first' });
  await waitFor(() => bodiesOf(msgs, marker).length === n, 20000, `${n} from first`);
  inOrder(msgs, marker, range(0, n), 'from first');
  return { c, msgs };
}

test('messages of a topic with history carry their stream offset; SEND and AMQP publishes alike', async () => {
  const c = await open();
  const key = `${CHAT}.live`;
  const marker = uniq('m');
  const msgs = await subscribe(c, `/topic/${key}`, { id: 'live' });
  await publish(key, marker, 0, 5);
  c.publish({ destination: `/topic/${key}`, body: `${marker}|5`, headers: { receipt: 'p5' } });
  await waitFor(() => bodiesOf(msgs, marker).length === 6, 10000, '6 messages');
  for (const m of msgs) assert.match(m.headers['x-stream-offset'], /^\d+$/);
  inOrder(msgs, marker, range(0, 6), 'live');
  assert.equal(msgs.some((m) => 'x-history-incomplete' in m.headers), false);
});

test('a subscription without history is as before: no offsets on other topics', async () => {
  const c = await open();
  const key = `plain${run}.a`;
  const marker = uniq('m');
  const msgs = await subscribe(c, `/topic/${key}`, { id: 'plain' });
  await publish(key, marker, 0, 3);
  await waitFor(() => bodiesOf(msgs, marker).length === 3, 10000, '3 messages');
  assert.equal(msgs.some((m) => 'x-stream-offset' in m.headers), false);
});

// Resumes key after an outage of n messages, through gateway g.
async function resumeCase(g, n) {
  const key = `${CHAT}.room${uniq('r').replace(/[^a-z0-9]/gi, '')}`;
  const marker = uniq('m');
  const a = await open();
  const first = await subscribe(a, `/topic/${key}`, { id: 'r' });
  await publish(key, marker, 0, 10);
  await waitFor(() => bodiesOf(first, marker).length === 10, 10000, 'first 10');
  const last = offsetOf(first[first.length - 1]);
  await a.deactivate();
  // The outage: n messages nobody reads.
  await publish(key, marker, 10, 10 + n);
  const b = await open(g);
  const again = await subscribe(b, `/topic/${key}`, { id: 'r', 'x-stream-offset': `offset=${last + 1}` });
  await waitFor(() => bodiesOf(again, marker).length >= n, 30000, `${n} missed messages`);
  // Then the live feed goes on, with no gap and no duplicate.
  await publish(key, marker, 10 + n, 20 + n);
  await waitFor(() => bodiesOf(again, marker).length >= n + 10, 10000, 'live after catch-up');
  await sleep(300);
  inOrder(again, marker, range(10, 20 + n), 'resumed');
  assert.ok(offsetOf(again[0]) > last, 'the first message is after the last one read');
  assert.equal(again.some((m) => 'x-history-incomplete' in m.headers), false);
}

test('a reconnect through the same gateway resumes from its offset: 1,000 messages missed, none lost or repeated', async () => {
  await resumeCase(gw, 1000);
});

test('a reconnect through another gateway resumes from the same offset', async () => {
  await resumeCase(gw2, 1000);
});

test('first, last and timestamp offsets', async () => {
  const key = `${CHAT}.kinds${run}`;
  const marker = uniq('m');
  const { c } = await publishedAndReadFromFirst(key, marker, 5, 'first');
  const lastOne = await subscribe(c, `/topic/${key}`, { id: 'last', 'x-stream-offset': 'last' });
  await publish(key, marker, 5, 6);
  await waitFor(() => bodiesOf(lastOne, marker).includes('5'), 10000, 'from last');
  const ts = await subscribe(c, `/topic/${key}`, { id: 'ts', 'x-stream-offset': `timestamp=${Math.floor(Date.now() / 1000) - 3600}` });
  await waitFor(() => bodiesOf(ts, marker).length === 6, 10000, 'from a timestamp');
  inOrder(ts, marker, range(0, 6), 'timestamp');
});

test('a resume just after a segment boundary, where offsets skip one, is complete', async () => {
  // With 4 KiB segments, 300 messages span several; each segment after the
  // first begins with an entry that is no message, so offsets skip it.
  const key = `${CHAT}.seg${run}`;
  const marker = uniq('m');
  const { msgs } = await publishedAndReadFromFirst(key, marker, 300, 'all');
  const i = msgs.findIndex((m, j) => j > 0 && offsetOf(m) > offsetOf(msgs[j - 1]) + 1);
  assert.ok(i > 0, 'offsets skip at a segment boundary');
  const c = await open();
  const again = await subscribe(c, `/topic/${key}`, { id: 'seg', 'x-stream-offset': `offset=${offsetOf(msgs[i - 1]) + 1}` });
  await waitFor(() => bodiesOf(again, marker).length === 300 - i, 10000, 'the rest');
  await sleep(200);
  inOrder(again, marker, range(i, 300), 'after the boundary');
  assert.equal(again.some((m) => 'x-history-incomplete' in m.headers), false, 'nothing was dropped');
});

test('an offset the stream has not reached (it was deleted and declared again): read from its start, the first message marked', async () => {
  const key = `${CHAT}.reset${run}`;
  const marker = uniq('m');
  await publish(key, marker, 0, 3);
  const c = await open();
  const msgs = await subscribe(c, `/topic/${key}`, { id: 'reset', 'x-stream-offset': 'offset=1000000000' });
  await waitFor(() => bodiesOf(msgs, marker).length === 3, 10000, 'the stream from its start');
  await publish(key, marker, 3, 5);
  await waitFor(() => bodiesOf(msgs, marker).length === 5, 10000, 'then live');
  await sleep(200);
  inOrder(msgs, marker, range(0, 5), 'after the reset');
  assert.equal(msgs[0].headers['x-history-incomplete'], 'true');
  assert.equal(msgs.filter((m) => 'x-history-incomplete' in m.headers).length, 1);
  assert.match(gw.log(), /stream 'stompgate\.history\..*' ends at offset \d+, before the offset 1000000000/);
});

test('two subscriptions with overlapping patterns each resume their own messages once', async () => {
  const room = `${CHAT}.ov${run}`;
  const marker = uniq('m');
  const keys = [`${room}.a`, `${room}.b`, `${room}.a.x`];
  const c0 = await open();
  const probe = await subscribe(c0, `/topic/${room}.#`, { id: 'probe' });
  ch.publish('amq.topic', `${room}.a`, Buffer.from(`${marker}|start`));
  await ch.waitForConfirms();
  await waitFor(() => probe.length === 1, 10000, 'start');
  const start = offsetOf(probe[0]) + 1;
  const sent = [];
  for (let i = 0; i < 300; i++) {
    const k = keys[i % 3];
    ch.publish('amq.topic', k, Buffer.from(`${marker}|${i}`));
    sent.push([k, String(i)]);
  }
  await ch.waitForConfirms();
  const c = await open();
  const star = await subscribe(c, `/topic/${room}.*`, { id: 'star', 'x-stream-offset': `offset=${start}` });
  const hash = await subscribe(c, `/topic/${room}.#`, { id: 'hash', 'x-stream-offset': `offset=${start}` });
  const wantStar = sent.filter(([k]) => k.split('.').length === room.split('.').length + 1).map(([, b]) => b);
  const wantHash = sent.map(([, b]) => b);
  await waitFor(() => bodiesOf(star, marker).length >= wantStar.length && bodiesOf(hash, marker).length >= wantHash.length, 20000, 'both');
  await sleep(300);
  assert.deepEqual(bodiesOf(star, marker), wantStar);
  assert.deepEqual(bodiesOf(hash, marker), wantHash);
});

test('publishes racing the move from the catch-up read to the live feed: no gap, no duplicate', async () => {
  const key = `${CHAT}.race${run}`;
  const marker = uniq('m');
  const { msgs: probe } = await publishedAndReadFromFirst(key, marker, 1000, 'p');
  const start = offsetOf(probe[0]);
  // A steady publisher keeps going while each resume catches up.
  const pub = steadyPublisher(key, marker, 1000);
  const resumed = [];
  try {
    for (let r = 0; r < 4; r++) {
      const c = await open();
      resumed.push(await subscribe(c, `/topic/${key}`, { id: `x${r}`, 'x-stream-offset': `offset=${start}` }));
      await sleep(150);
    }
    await sleep(500);
  } finally {
    await pub.stop();
  }
  const n = pub.count();
  for (const [r, msgs] of resumed.entries()) {
    await waitFor(() => bodiesOf(msgs, marker).length >= n, 20000, `resume ${r}: ${n} messages`);
    await sleep(200);
    inOrder(msgs, marker, range(0, n), `resume ${r}`);
  }
  if (shared) {
    const m = parseMetrics((await httpGet(adminPort, '/metrics')).body);
    assert.ok(m.get("stompgate_history_switches_total") >= 1, 'catch-ups moved onto the live feed');
  }
});

test('an offset older than the retention: what is left, the first message marked x-history-incomplete', async () => {
  const key = `${EXP}.old`;
  const marker = uniq('m');
  // 2 s of retention on 4 KiB segments: the old segments go once newer
  // ones are written after they expired.
  await publish(key, marker, 0, 200);
  await sleep(3000);
  await publish(key, marker, 200, 400);
  const c = await open();
  const msgs = await subscribe(c, `/topic/${key}`, { id: 'old', 'x-stream-offset': 'offset=0' });
  await waitFor(() => bodiesOf(msgs, marker).includes('399'), 20000, 'the newest message');
  const firstLeft = Number(bodiesOf(msgs, marker)[0]);
  assert.ok(firstLeft > 0, `the oldest messages are gone (first left: ${firstLeft})`);
  assert.ok(offsetOf(msgs[0]) > 0);
  assert.equal(msgs[0].headers['x-history-incomplete'], 'true');
  assert.equal(msgs.filter((m) => 'x-history-incomplete' in m.headers).length, 1, 'only the first says so');
  inOrder(msgs, marker, range(firstLeft, 400), 'what is left');
});

test('an offset on a topic without history, or on a subscription that cannot read it, is an ERROR that names why', async () => {
  for (const [dest, extra, why] of [
    [`/topic/nohist${run}.a`, {}, /no --history pattern/],
    [`/topic/${CHAT}.a`, { ack: 'client' }, /ack:auto/],
  ]) {
    const ws = rawWs(gw.url);
    await ws.opened;
    ws.send(ws.frame('CONNECT', { 'accept-version': '1.2', host: '/', login: 'guest', passcode: 'guest' }));
    await ws.waitFrame('CONNECTED');
    ws.send(ws.frame('SUBSCRIBE', { id: 's', destination: dest, 'x-stream-offset': 'offset=0', ...extra }));
    const e = parseFrame(await ws.waitFrame('ERROR'));
    assert.equal(e.headers.message, 'No history for this subscription');
    assert.match(e.body, why);
    await ws.closed;
  }
});

test('a client-ack subscription to a topic with history, without an offset, is as before', async () => {
  const c = await open();
  const key = `${CHAT}.acked`;
  const marker = uniq('m');
  const msgs = await subscribe(c, `/topic/${key}`, { id: 'acked', ack: 'client-individual' }, (m) => m.ack());
  await publish(key, marker, 0, 3);
  await waitFor(() => bodiesOf(msgs, marker).length === 3, 10000, '3 messages');
  assert.equal(msgs.some((m) => 'x-stream-offset' in m.headers), false);
});

test('--slow-consumer drop: a subscription with history is closed rather than given a gap, and resumes', async () => {
  const g = await startGateway(['--max-outbound-bytes', '65536', '--slow-consumer', 'drop', ...historyArgs]);
  try {
    const key = `${CHAT}.slow${run}`;
    const ws = rawWs(g.url, ['v12.stomp'], { perMessageDeflate: false });
    await ws.opened;
    ws.send(ws.frame('CONNECT', { 'accept-version': '1.2', host: '/', login: 'guest', passcode: 'guest' }));
    await ws.waitFrame('CONNECTED');
    ws.send(ws.frame('SUBSCRIBE', { id: 's', destination: `/topic/${key}`, receipt: 'r' }));
    await ws.waitFrame('RECEIPT');
    ws._socket.pause(); // stops reading: the gateway's writes back up
    // The kernel's loopback buffers take a few MB first, more or less by
    // the machine's load: publish in rounds until the gateway acts.
    const body = Buffer.alloc(4096, 'x');
    const acted = () => /slow consumer/.test(g.log());
    let sent = 0;
    while (!acted() && sent < 30000) {
      for (let i = 0; i < 1000; i++) ch.publish('amq.topic', key, body);
      await ch.waitForConfirms();
      sent += 1000;
      await waitFor(acted, 2000, 'the slow consumer').catch(() => {});
    }
    assert.ok(acted(), `the gateway acted after ${sent} messages`);
    assert.equal(g.log().includes('dropping topic messages'), false, 'nothing dropped');
    ws._socket.resume();
    await ws.closed;
    const err = parseFrame(ws.frames.find((f) => f.startsWith('ERROR')));
    assert.equal(err.headers.message, 'slow consumer');
    assert.match(err.body, /resume from the last x-stream-offset/);
    // Every MESSAGE that came is in order, and a resume after the last
    // one brings the rest.
    const got = ws.frames.filter((f) => f.startsWith('MESSAGE')).map(parseFrame);
    const last = got.length ? Number(got[got.length - 1].headers['x-stream-offset']) : null;
    const c = await open(g);
    const rest = await subscribe(c, `/topic/${key}`, last === null ? { id: 'r', 'x-stream-offset': 'first' } : { id: 'r', 'x-stream-offset': `offset=${last + 1}` });
    await waitFor(() => got.length + rest.length >= sent, 30000, `all ${sent}`);
    assert.equal(got.length + rest.length, sent);
    assert.equal(rest.some((m) => 'x-history-incomplete' in m.headers), false);
  } finally {
    await g.stop();
  }
});

test('a history stream deleted under the gateway fails its own subscriptions only', async () => {
  const g = await startGateway(['--workers', '1', ...historyArgs]);
  try {
    const a = await open(g);
    const plain = `plain${run}.del`;
    const marker = uniq('m');
    const aMsgs = await subscribe(a, `/topic/${plain}`, { id: 'a' });
    const b = await open(g);
    await subscribe(b, `/topic/${DEL}.a`, { id: 'b' });
    await rmqctl('delete_queue', `stompgate.history.${DEL}.#`);
    await waitFor(() => b.errors.length > 0, 10000, 'the reader of the deleted stream hears');
    // A new subscription to it is refused, naming the missing stream, and
    // nothing else on the worker notices.
    const ws = rawWs(g.url);
    await ws.opened;
    ws.send(ws.frame('CONNECT', { 'accept-version': '1.2', host: '/', login: 'guest', passcode: 'guest' }));
    await ws.waitFrame('CONNECTED');
    ws.send(ws.frame('SUBSCRIBE', { id: 's', destination: `/topic/${DEL}.a`, receipt: 'r' }));
    const e = parseFrame(await ws.waitFrame('ERROR'));
    assert.match(`${e.headers.message} ${e.body}`, /no queue 'stompgate\.history\.del/);
    await ws.closed;
    await publish(plain, marker, 0, 3);
    await waitFor(() => bodiesOf(aMsgs, marker).length === 3, 10000, 'the plain subscriber goes on');
    assert.equal(a.errors.length, 0, 'no ERROR for the other subscription');
  } finally {
    await g.stop();
  }
});

// The consumers of the chat stream, by consumer tag.
async function streamConsumers() {
  const out = await rmqctl('list_consumers', '-q', '--no-table-headers', 'queue_name', 'consumer_tag');
  return out.split('\n').map((l) => l.split('\t')).filter(([q]) => q === `stompgate.history.${CHAT}.#`).map(([, t]) => t);
}

test('shared mode: the stream is read once per worker however many sessions subscribe, and a catch-up read ends at the live feed', { skip: !shared && 'per-session mode reads the stream per subscription' }, async () => {
  const g = await startGateway(['--workers', '2', ...historyArgs]);
  try {
    const key = `${CHAT}.many${run}`;
    const marker = uniq('m');
    const before = new Set(await streamConsumers());
    const subs = [];
    for (let i = 0; i < 20; i++) {
      const c = await open(g);
      subs.push(await subscribe(c, `/topic/${key}`, { id: 'm' }));
    }
    const mine = async () => (await streamConsumers()).filter((t) => !before.has(t));
    assert.ok((await mine()).length <= 2, `at most a consumer per worker: ${(await mine()).join(' ')}`);
    await publish(key, marker, 0, 50);
    for (const msgs of subs) await waitFor(() => bodiesOf(msgs, marker).length === 50, 10000, 'all 50');
    // A resume reads on its own consumer until it reaches the feed.
    const c = await open(g);
    const resumed = await subscribe(c, `/topic/${key}`, { id: 'r', 'x-stream-offset': `offset=${offsetOf(subs[0][0])}` });
    await publish(key, marker, 50, 60);
    await waitFor(() => bodiesOf(resumed, marker).length === 60, 10000, 'resumed 60');
    inOrder(resumed, marker, range(0, 60), 'resumed');
    let left;
    for (let i = 0; i < 50; i++) {
      left = await mine();
      if (left.length <= 2) break;
      await sleep(100);
    }
    assert.ok(left.length <= 2, `the catch-up consumer is gone: ${left.join(' ')}`);
  } finally {
    await g.stop();
  }
});

test('shared mode: when the live feed loses its connection it goes on from the last offset it read, so live subscribers miss nothing', { skip: !shared && 'the shared fan-out only' }, async () => {
  const fanouts = async () => {
    const out = await rmqctl('list_connections', '-q', '--no-table-headers', 'pid', 'client_properties');
    return out.split('\n').filter((l) => l.includes('fan-out')).map((l) => l.split('\t')[0]);
  };
  const others = new Set(await fanouts());
  const g = await startGateway(['--workers', '1', ...historyArgs]);
  try {
    const key = `${CHAT}.move${run}`;
    const marker = uniq('m');
    const c = await open(g);
    const msgs = await subscribe(c, `/topic/${key}`, { id: 'live' });
    const pub = steadyPublisher(key, marker, 0);
    try {
      await waitFor(() => bodiesOf(msgs, marker).length > 100, 10000, 'live messages');
      const mine = (await fanouts()).filter((p) => !others.has(p));
      assert.equal(mine.length, 1, `the gateway's fan-out connection: ${mine}`);
      await rmqctl('close_connection', mine[0], 'history test');
      await waitFor(() => /shared subscriptions move to broker/.test(g.log()), 15000, 'the feed moved');
      await sleep(500);
    } finally {
      await pub.stop();
    }
    const n = pub.count();
    await waitFor(() => bodiesOf(msgs, marker).length >= n, 15000, `all ${n}`);
    await sleep(200);
    inOrder(msgs, marker, range(0, n), 'across the move');
  } finally {
    await g.stop();
  }
});

test('the history metrics count resumes and incomplete ones', async () => {
  const m = parseMetrics((await httpGet(adminPort, '/metrics')).body);
  assert.ok(m.get("stompgate_history_resumes_total") >= 10, `resumes ${m.get("stompgate_history_resumes_total")}`);
  assert.ok(m.get("stompgate_history_incomplete_total") >= 1);
  assert.ok(m.get("stompgate_history_catchup_messages_total") >= 2000);
});
