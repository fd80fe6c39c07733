// SPDX-License-Identifier: MIT
// Routing: which subscription gets which message. In shared mode the
// gateway routes deliveries itself (one queue per worker and exchange, a
// binding per key), in per-session mode RabbitMQ does (a queue per
// subscription); a client must not be able to tell them apart. Every
// message is published with AMQP and carries a marker in its body, so
// that the wide patterns ('#', '*') here ignore whatever else crosses
// amq.topic. The broker-side counts are checked in shared mode only.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, connected, subscribe, receipt, rawWs, parseFrame, waitFor, uniq, sleep, amqpConnect, sharedBindings, freePort, rmqctl } from './lib/harness.mjs';
import { httpGet, parseMetrics } from './lib/ops.mjs';

const shared = process.env.SG_MODE === 'shared';

// RabbitMQ's topic semantics, written plainly: the reference the gateway's
// routing is checked against.
const words = (k) => (k === '' ? [] : k.split('.'));
function topicMatch(pattern, key) {
  const p = words(pattern);
  const w = words(key);
  const m = (i, j) => {
    if (i === p.length) return j === w.length;
    if (p[i] === '#') return m(i + 1, j) || (j < w.length && m(i, j + 1));
    if (j === w.length) return false;
    return (p[i] === '*' || p[i] === w[j]) && m(i + 1, j + 1);
  };
  return m(0, 0);
}

let gw;
let amqp;
let ch;
const clients = [];
const open = async () => { const c = await connected(gw.url); clients.push(c); return c; };
before(async () => {
  gw = await startGateway(['--workers', '1']);
  amqp = await amqpConnect();
  ch = await amqp.createConfirmChannel();
});
after(async () => {
  for (const c of clients) await c.deactivate().catch(() => {});
  await amqp?.close().catch(() => {});
  await gw.stop();
});

// Subscribes each { client, dest, key } (key: what the subscription binds
// with), publishes every key of keys to exchange, and checks that each
// subscription got exactly the keys match(sub.key, key) allows, once each.
async function routes({ subs, exchange, keys, match = topicMatch, headers = () => ({}) }) {
  const marker = uniq('m');
  const got = [];
  for (const [i, s] of subs.entries()) {
    got.push(await subscribe(s.client, s.dest, { id: `s${i}` }));
  }
  for (const k of keys) ch.publish(exchange, k, Buffer.from(`${marker}|${k}`), { headers: headers(k) });
  await ch.waitForConfirms();
  const mine = (msgs) => msgs.filter((m) => m.body.startsWith(`${marker}|`)).map((m) => m.body.slice(marker.length + 1));
  const want = subs.map((s) => keys.filter((k) => match(s.key, k)).sort());
  const total = want.reduce((n, w) => n + w.length, 0);
  await waitFor(() => got.reduce((n, g) => n + mine(g).length, 0) >= total, 15000, `${total} deliveries`);
  await sleep(300); // nothing more may come
  for (const [i, s] of subs.entries()) {
    assert.deepEqual(mine(got[i]).sort(), want[i], `subscription ${i} (${s.dest})`);
    for (const m of got[i]) assert.equal(m.headers.subscription, `s${i}`);
  }
  for (const g of got) g.sub.unsubscribe();
  return got;
}

const topicSubs = (client, patterns) => patterns.map((p) => ({ client, dest: `/topic/${p}`, key: p }));

test('overlapping patterns within one session: one MESSAGE per matching subscription', async () => {
  const u = uniq('ov');
  const c = await open();
  await routes({
    subs: topicSubs(c, [`${u}.a`, `${u}.*`, `${u}.#`, `${u}.a`, `*.a`, `#.a`, `${u}.a.#`]),
    exchange: 'amq.topic',
    keys: [`${u}.a`, `${u}.b`, u, `${u}.a.a`, `${u}.b.a`, 'x.a'],
  });
});

test('overlapping patterns across sessions', async () => {
  const u = uniq('ox');
  const a = await open();
  const b = await open();
  const c = await open();
  await routes({
    subs: [...topicSubs(a, [`${u}.*`, `${u}.x.#`]), ...topicSubs(b, [`${u}.*`, `#.y`]), ...topicSubs(c, [`${u}.x`, `${u}.#`])],
    exchange: 'amq.topic',
    keys: [`${u}.x`, `${u}.y`, `${u}.x.y`, `${u}.x.y.z`, u],
  });
});

test("'#' alone and '*' at each position", async () => {
  const u = uniq('wc');
  const c = await open();
  await routes({
    subs: topicSubs(c, ['#', '*', '*.*.*', `*.${u}.c`, `${u}.*.c`, `${u}.b.*`, `${u}.#`, `#.${u}`, `${u}.#.c`, `#.${u}.#`, `*.*.${u}`]),
    exchange: 'amq.topic',
    keys: [u, `x.${u}.c`, `${u}.b.c`, `${u}.x.c`, `${u}.b.x`, `${u}.b`, `${u}.b.c.d`, `a.${u}`, `a.b.${u}`, `${u}.c`],
  });
});

test('empty words', async () => {
  const u = uniq('ew');
  const c = await open();
  await routes({
    subs: topicSubs(c, [`${u}..x`, `${u}.*.x`, `${u}.#`, `${u}.`, `${u}.*`, `.${u}`, `*.${u}`, `#.${u}`, `${u}.*.*`, `${u}.#.`]),
    exchange: 'amq.topic',
    keys: [`${u}..x`, `${u}.`, `${u}..`, `.${u}`, `${u}.y.x`, u, `..${u}`],
  });
});

test('keys with many words, and the longest binding key', async () => {
  const u = uniq('mw');
  const long = [u, ...Array.from({ length: 60 }, (_, i) => `w${i}`), 'z'].join('.');
  const k255 = `${u}.${'k'.repeat(255 - u.length - 1)}`;
  assert.equal(k255.length, 255);
  const c = await open();
  await routes({
    subs: topicSubs(c, [`${u}.#.z`, `${u}.#`, `#.z`, `${u}.*.#.z`, `${u}.*.z`, `${u}.#.w30.#`, `${u}.#.w30.*`, k255]),
    exchange: 'amq.topic',
    keys: [long, `${u}.z`, `${u}.a.z`, k255],
  });
});

test('a binding key over 255 bytes is an ERROR', async () => {
  const ws = rawWs(gw.url);
  await ws.opened;
  ws.send(ws.frame('CONNECT', { 'accept-version': '1.2', host: '/', login: 'guest', passcode: 'guest' }));
  await ws.waitFrame('CONNECTED');
  ws.send(ws.frame('SUBSCRIBE', { id: 's', destination: `/topic/${'k'.repeat(256)}`, receipt: 'r' }));
  await ws.closed;
  const f = parseFrame(ws.frames.find((x) => x.startsWith('ERROR')));
  assert.equal(f.headers['receipt-id'], 'r');
  assert.match(f.body, /255/);
});

test('CC keys route too, once per subscription', async () => {
  const u = uniq('cc');
  const c = await open();
  const cc = { [`${u}.main`]: [`${u}.cc1`, `${u}.cc2`], [`${u}.other`]: [`${u}.main`] };
  await routes({
    subs: topicSubs(c, [`${u}.main`, `${u}.cc1`, `${u}.cc2`, `${u}.#`, `${u}.other`]),
    exchange: 'amq.topic',
    keys: Object.keys(cc),
    headers: (k) => ({ CC: cc[k] }),
    match: (p, k) => [k, ...cc[k]].some((x) => topicMatch(p, x)),
  });
});

test('/exchange/X/K on direct, fanout and topic exchanges, built-in and declared', async () => {
  const u = uniq('xk');
  const own = { direct: uniq('d'), fanout: uniq('f'), topic: uniq('t') };
  for (const [type, name] of Object.entries(own)) await ch.assertExchange(name, type, { autoDelete: true });
  const c = await open();
  const keys = [`${u}.a`, `${u}.*`, `${u}.b.c`, `${u}.#`];
  const subKeys = [`${u}.a`, `${u}.*`, `${u}.#`, 'other'];
  const direct = (p, k) => p === k;
  const fanout = () => true;
  for (const [exchange, match] of [['amq.direct', direct], [own.direct, direct], ['amq.fanout', fanout],
    [own.fanout, fanout], ['amq.topic', topicMatch], [own.topic, topicMatch]]) {
    const subs = subKeys.map((k) => ({ client: c, dest: `/exchange/${exchange}/${k}`, key: k }));
    const got = await routes({ subs, exchange, keys, match });
    for (const g of got)
      for (const m of g) assert.match(m.headers.destination, new RegExp(`^/(exchange/${exchange}|topic)/`));
  }
  for (const name of Object.values(own)) await ch.deleteExchange(name).catch(() => {});
});

test('exchange-to-exchange bindings: the key the message was published with is matched', async () => {
  const u = uniq('e2e');
  const src = uniq('src');
  const mid = uniq('mid');
  await ch.assertExchange(src, 'topic', { autoDelete: true });
  await ch.assertExchange(mid, 'fanout', { autoDelete: true });
  // src -> amq.topic for u.#; src -> mid (fanout) -> amq.direct.
  await ch.bindExchange('amq.topic', src, `${u}.#`);
  await ch.bindExchange(mid, src, '#');
  await ch.bindExchange('amq.direct', mid, '');
  const c = await open();
  const subs = [
    ...topicSubs(c, [`${u}.a`, `${u}.*`, '#']),
    { client: c, dest: `/exchange/amq.direct/${u}.a`, key: `d:${u}.a` },
    { client: c, dest: `/exchange/amq.direct/${u}.b`, key: `d:${u}.b` },
  ];
  const match = (p, k) => (p.startsWith('d:') ? p.slice(2) === k : topicMatch(`${u}.#`, k) && topicMatch(p, k));
  const got = await routes({ subs, exchange: src, keys: [`${u}.a`, `${u}.b`, `${u}.a.x`, 'elsewhere'], match });
  for (const g of got) for (const m of g) assert.ok(m.headers.destination.startsWith(`/exchange/${src}/`), m.headers.destination);
  await ch.unbindExchange('amq.topic', src, `${u}.#`);
  await ch.deleteExchange(src).catch(() => {});
  await ch.deleteExchange(mid).catch(() => {});
});

test('unsubscribe while deliveries are in flight: nothing for it after its RECEIPT', async () => {
  const t = uniq('fl');
  const c = await open();
  const a = [];
  const b = await subscribe(c, `/topic/${t}`, { id: 'b' });
  let unsubscribed = false;
  let late = 0;
  const subA = c.subscribe(`/topic/${t}`, () => { a.push(1); if (unsubscribed) late++; }, { id: 'a', receipt: 'ra' });
  await receipt(c, 'ra');
  const n = 3000;
  for (let i = 0; i < n; i++) ch.publish('amq.topic', t, Buffer.from(String(i)));
  await waitFor(() => a.length > 0, 10000, 'first deliveries');
  const r = uniq('u');
  const done = receipt(c, r).then(() => { unsubscribed = true; });
  subA.unsubscribe({ receipt: r });
  await done;
  await ch.waitForConfirms();
  await waitFor(() => b.length === n, 20000, `${n} deliveries on b`);
  await sleep(200);
  assert.equal(late, 0, 'a MESSAGE for a subscription after its UNSUBSCRIBE receipt');
  assert.deepEqual(b.map((m) => +m.body), Array.from({ length: n }, (_, i) => i), 'b got everything in order');
  b.sub.unsubscribe();
});

test('a key bound, unbound and bound again inside the linger, and after it', async () => {
  const k = uniq('lg');
  const c = await open();
  const once = async (id) => {
    const got = await subscribe(c, `/topic/${k}`, { id });
    ch.publish('amq.topic', k, Buffer.from(id));
    await waitFor(() => got.length === 1, 10000, `delivery to ${id}`);
    await sleep(100);
    assert.equal(got.length, 1);
    assert.equal(got[0].body, id);
    const r = uniq('r');
    got.sub.unsubscribe({ receipt: r });
    await receipt(c, r);
  };
  await once('first');
  await once('second'); // within the linger: the binding is still there
  await once('third');
  if (shared) {
    assert.equal((await sharedBindings('amq.topic', (x) => x === k)).length, 1, 'still bound during the linger');
    let n = 1;
    for (let i = 0; i < 50 && n > 0; i++) {
      await sleep(100);
      n = (await sharedBindings('amq.topic', (x) => x === k)).length;
    }
    assert.equal(n, 0, 'unbound after the linger');
  } else {
    await sleep(2500);
  }
  await once('fourth'); // bound again after it
});

test('a session that subscribes to 1,000 keys', async () => {
  const u = uniq('k1000');
  const c = await open();
  const got = new Map();
  const n = 1000;
  for (let i = 0; i < n; i++) {
    const hdr = { id: `s${i}` };
    if (i === n - 1) hdr.receipt = 'all';
    c.subscribe(`/topic/${u}.${i}`, (m) => got.set(m.headers.subscription, [...(got.get(m.headers.subscription) ?? []), m.body]), hdr);
  }
  await receipt(c, 'all', 60000);
  if (shared) {
    const b = await sharedBindings('amq.topic', (k) => k.startsWith(`${u}.`));
    assert.equal(b.length, n, 'one binding per key');
    assert.equal(new Set(b.map(([q]) => q)).size, 1, 'all on the worker\'s one queue');
  }
  for (let i = 0; i < n; i++) ch.publish('amq.topic', `${u}.${i}`, Buffer.from(String(i)));
  await ch.waitForConfirms();
  await waitFor(() => got.size === n, 20000, `${n} subscriptions served`);
  await sleep(200);
  for (let i = 0; i < n; i++) assert.deepEqual(got.get(`s${i}`), [String(i)]);
});

test('N sessions on N unique topics: one broker queue per worker, N bindings', async () => {
  const workers = 2;
  const adminPort = await freePort();
  const g = await startGateway(['--workers', String(workers), '--admin', `127.0.0.1:${adminPort}`]);
  const gauges = async () => {
    const m = parseMetrics((await httpGet(adminPort, '/metrics')).body);
    return [m.get('stompgate_shared_queues'), m.get('stompgate_shared_binding_keys'),
      m.get('stompgate_shared_exact_bindings')];
  };
  const u = uniq('nn');
  const n = 40;
  const cs = [];
  try {
    const got = [];
    for (let i = 0; i < n; i++) {
      const c = await connected(g.url);
      cs.push(c);
      got.push(await subscribe(c, `/topic/${u}.${i}`));
    }
    if (shared) {
      const b = await sharedBindings('amq.topic', (k) => k.startsWith(`${u}.`));
      assert.equal(b.length, n, 'N bindings');
      const queues = new Set(b.map(([q]) => q));
      assert.ok(queues.size >= 1 && queues.size <= workers, `${queues.size} queues for ${workers} workers`);
      for (const q of queues) assert.match(q, /^stompgate\.fanout\.\d+\./);
      // One queue per worker: each worker's queue name carries its number.
      const perWorker = new Map();
      for (const q of queues) perWorker.set(q.split('.')[2], (perWorker.get(q.split('.')[2]) ?? 0) + 1);
      for (const [, count] of perWorker) assert.equal(count, 1);
      // Keys without wildcards are direct bindings on amq.topic's exact-key
      // exchange, which amq.topic feeds with '#'.
      assert.ok(b.every(([, , src]) => src === 'stompgate.exact.amq.topic'), 'on the exact-key exchange');
      const feed = (await rmqctl('list_bindings', '-q', '--no-table-headers', 'source_name', 'destination_name', 'routing_key'))
        .split('\n').filter((l) => l === 'amq.topic\tstompgate.exact.amq.topic\t#');
      assert.equal(feed.length, 1, "amq.topic feeds it with '#'");
      assert.deepEqual(await gauges(), [queues.size, n, n], '/metrics counts the queues and keys');
    }
    for (let i = 0; i < n; i++) ch.publish('amq.topic', `${u}.${i}`, Buffer.from(String(i)));
    await ch.waitForConfirms();
    await waitFor(() => got.every((m) => m.length === 1), 10000, 'one message each');
    for (let i = 0; i < n; i++) assert.equal(got[i][0].body, String(i));
    for (const c of cs.splice(0)) await c.deactivate();
    if (shared) {
      // The keys go after the linger, and the queues with their last key.
      let now;
      for (let i = 0; i < 100; i++) {
        now = await gauges();
        if (now[0] === 0 && now[1] === 0 && now[2] === 0) break;
        await sleep(100);
      }
      assert.deepEqual(now, [0, 0, 0], 'no shared queue or key left');
    }
  } finally {
    for (const c of cs) await c.deactivate().catch(() => {});
    await g.stop();
  }
});

// ---------- exact keys on a topic exchange's direct companion ----------

// Two sessions: one on an exact key, one on a pattern that covers it; a
// message on the key reaches each once, another key only the pattern.
async function exactAndPattern(g, u) {
  const a = await connected(g.url);
  const b = await connected(g.url);
  try {
    const exact = await subscribe(a, `/topic/${u}.1`);
    const wide = await subscribe(b, `/topic/${u}.*`);
    ch.publish('amq.topic', `${u}.1`, Buffer.from('one'));
    ch.publish('amq.topic', `${u}.2`, Buffer.from('two'));
    await ch.waitForConfirms();
    await waitFor(() => exact.length === 1 && wide.length === 2, 10000, 'the deliveries');
    await sleep(300);
    assert.deepEqual(exact.map((m) => m.body), ['one']);
    assert.deepEqual(wide.map((m) => m.body).sort(), ['one', 'two']);
  } finally {
    await a.deactivate();
    await b.deactivate();
  }
}

test('--exact-key-exchange: exact keys bind on the topic exchange itself when off', { skip: !shared && 'shared mode only' }, async () => {
  const g = await startGateway(['--workers', '1', '--exact-key-exchange', '']);
  try {
    const u = uniq('xoff');
    const c = await connected(g.url);
    await subscribe(c, `/topic/${u}.k`);
    const b = await sharedBindings('amq.topic', (k) => k === `${u}.k`);
    assert.deepEqual(b.map(([, , src]) => src), ['amq.topic']);
    await c.deactivate();
    await exactAndPattern(g, u);
  } finally {
    await g.stop();
  }
});

test('a broker that refuses the exact-key exchange: keys bind on the topic exchange, said in the log', { skip: !shared && 'shared mode only' }, async () => {
  const user = uniq('xu');
  const prefix = `${uniq('xp')}.`;
  await rmqctl('add_user', user, 'p');
  // Everything but the companion may be declared.
  await rmqctl('set_permissions', '-p', '/', user, '^(stompgate\\.(fanout|user|app)|amq\\.gen).*', '.*', '.*');
  const g = await startGateway(['--workers', '1', '--exact-key-exchange', prefix,
    '--broker', `amqp://${user}:p@127.0.0.1:${process.env.SG_AMQP_PORT}/`]);
  try {
    const u = uniq('xr');
    await exactAndPattern(g, u);
    assert.match(g.log(), new RegExp(`exact keys of exchange 'amq.topic' bind on it: the broker refused their direct exchange '${prefix.replace(/\./g, '\\.')}amq.topic' \\(403`));
    const c = await connected(g.url);
    await subscribe(c, `/topic/${u}.k`);
    const b = await sharedBindings('amq.topic', (k) => k === `${u}.k`);
    assert.deepEqual(b.map(([, , src]) => src), ['amq.topic']);
    await c.deactivate();
  } finally {
    await g.stop();
    await rmqctl('delete_user', user);
  }
});

test('the exact-key exchange deleted under the gateway: later keys bind on the topic exchange', { skip: !shared && 'shared mode only' }, async () => {
  const prefix = `${uniq('xd')}.`;
  const g = await startGateway(['--workers', '1', '--exact-key-exchange', prefix]);
  const held = await connected(g.url);
  try {
    const u = uniq('xg');
    await subscribe(held, `/topic/${u}.held`); // keeps the queue
    const b = await sharedBindings('amq.topic', (k) => k === `${u}.held`);
    assert.equal(b.length, 0, 'not on amq.topic');
    await ch.deleteExchange(`${prefix}amq.topic`);
    const c = await connected(g.url);
    const got = await subscribe(c, `/topic/${u}.later`);
    ch.publish('amq.topic', `${u}.later`, Buffer.from('x'));
    await ch.waitForConfirms();
    await waitFor(() => got.length === 1, 10000, 'the later key delivered');
    assert.match(g.log(), /exact keys of exchange 'amq.topic' bind on it: their direct exchange '.*' is gone/);
    await c.deactivate();
  } finally {
    await held.deactivate();
    await g.stop();
  }
});
