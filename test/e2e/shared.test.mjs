// SPDX-License-Identifier: MIT
// What is particular to the shared relay mode: one queue per worker and
// exchange shared by every subscriber, set up before later frames run,
// refusals confined to the session that asked, and credential checks
// against the broker with their cache.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import amqp from 'amqplib';
import { startGateway, connected, stompClient, connect, subscribe, receipt, rawWs, parseFrame, waitFor, uniq, sleep, amqpConnect, AMQP_PORT, rmqctl, boundQueues } from './lib/harness.mjs';

async function fanoutQueues() {
  const out = await rmqctl('list_queues', '-q', '--no-table-headers', 'name', 'consumers');
  return out.split('\n').filter((l) => l.startsWith('stompgate.fanout.')).map((l) => l.split('\t'));
}

let gw;
const clients = [];
const open = async (opts) => { const c = await connected(gw.url, opts); clients.push(c); return c; };
before(async () => { gw = await startGateway(['--mode', 'shared', '--workers', '1']); });
after(async () => {
  for (const c of clients) await c.deactivate().catch(() => {});
  await gw.stop();
});

test('subscribers of one topic share one queue; it goes with the last of them', async () => {
  const t = '/topic/' + uniq('share');
  const before = (await fanoutQueues()).length;
  const cs = [];
  const got = [];
  for (let i = 0; i < 5; i++) {
    const c = await open();
    cs.push(c);
    got.push(await subscribe(c, t));
  }
  const qs = await fanoutQueues();
  assert.equal(qs.length, before + 1, 'one shared queue for five subscribers');
  assert.ok(qs.every(([, consumers]) => consumers === '1'));
  const p = await open();
  p.publish({ destination: t, body: 'to all five', headers: { receipt: 'p1' } });
  await receipt(p, 'p1');
  await waitFor(() => got.every((m) => m.length === 1), 10000, 'five deliveries');
  const ids = new Set(got.map((m) => `${m[0].headers.subscription}/${m[0].headers['message-id']}`));
  assert.equal(ids.size, 5);
  for (const m of got) {
    assert.equal(m[0].body, 'to all five');
    assert.equal(m[0].headers.destination, t);
  }
  for (const m of got) m.sub.unsubscribe();
  let n = -1;
  for (let i = 0; i < 50 && n !== before; i++) {
    await sleep(100);
    n = (await fanoutQueues()).length;
  }
  assert.equal(n, before, 'the shared queue was deleted after the last subscriber left');
});

test('a SEND right after a SUBSCRIBE, in the same message, reaches it', async () => {
  for (let i = 0; i < 5; i++) {
    const t = '/topic/' + uniq('order');
    const ws = rawWs(gw.url);
    await ws.opened;
    ws.send(ws.frame('CONNECT', { 'accept-version': '1.2', host: '/', login: 'guest', passcode: 'guest' }));
    await ws.waitFrame('CONNECTED');
    ws.send(ws.frame('SUBSCRIBE', { id: 's', destination: t }) + ws.frame('SEND', { destination: t }, 'own'));
    const f = parseFrame(await ws.waitFrame('MESSAGE'));
    assert.equal(f.body, 'own');
    ws.close();
  }
});

test('one session subscribed twice to a topic gets the message once per subscription', async () => {
  const t = '/topic/' + uniq('twice');
  const c = await open();
  const a = await subscribe(c, t, { id: 'a' });
  const b = await subscribe(c, t, { id: 'b' });
  c.publish({ destination: t, body: 'x' });
  await waitFor(() => a.length === 1 && b.length === 1, 10000, 'both subscriptions');
  assert.equal(a[0].headers.subscription, 'a');
  assert.equal(b[0].headers.subscription, 'b');
});

test('STOMP 1.0 and 1.2 members of one shared queue each get their own escaping', async () => {
  const key = uniq('esc');
  const mk = async (version) => {
    const ws = rawWs(gw.url, [`v${version.replace('.', '')}.stomp`]);
    await ws.opened;
    ws.send(ws.frame('CONNECT', { 'accept-version': version, host: '/', login: 'guest', passcode: 'guest' }));
    await ws.waitFrame('CONNECTED');
    ws.send(ws.frame('SUBSCRIBE', { id: 's', destination: `/topic/${key}`, receipt: 'r' }));
    await ws.waitFrame('RECEIPT');
    return ws;
  };
  const w10 = await mk('1.0');
  const w12 = await mk('1.2');
  const conn = await amqpConnect();
  const ch = await conn.createChannel();
  ch.publish('amq.topic', key, Buffer.from('b'), { headers: { 'x-colon': 'a:b' } });
  const f10 = await w10.waitFrame('MESSAGE');
  const f12 = await w12.waitFrame('MESSAGE');
  assert.match(f10, /\nx-colon:a:b\n/);
  assert.match(f12, /\nx-colon:a\\cb\n/);
  await conn.close();
  w10.close();
  w12.close();
});

test('a refused join fails only the session that asked', async () => {
  const t = '/topic/' + uniq('ok');
  const a = await open();
  const got = await subscribe(a, t);
  const ws = rawWs(gw.url);
  await ws.opened;
  ws.send(ws.frame('CONNECT', { 'accept-version': '1.2', host: '/', login: 'guest', passcode: 'guest' }));
  await ws.waitFrame('CONNECTED');
  ws.send(ws.frame('SUBSCRIBE', { id: 's', destination: `/exchange/${uniq('missing')}/k`, receipt: 'bad' }));
  await ws.closed;
  const f = parseFrame(ws.frames.find((x) => x.startsWith('ERROR')));
  assert.equal(f.headers.message, 'Not found');
  assert.equal(f.headers['receipt-id'], 'bad');
  a.publish({ destination: t, body: 'still here' });
  await waitFor(() => got.length === 1, 10000, 'delivery after the refusal');
});

test('a shared queue deleted on the broker: its subscribers get an ERROR and are closed', async () => {
  const t = '/topic/' + uniq('del');
  const c = stompClient(gw.url);
  await connect(c);
  await subscribe(c, t);
  const mine = await boundQueues('amq.topic', t.slice('/topic/'.length));
  assert.equal(mine.length, 1);
  const closed = new Promise((r) => { c.onWebSocketClose = r; });
  const errors = [];
  c.onStompError = (fr) => errors.push(fr);
  await rmqctl('delete_queue', mine[0]);
  await closed;
  assert.equal(errors.length, 1);
  assert.match(errors[0].body + errors[0].headers.message, /cancel|Broker/i);
  await c.deactivate();
});

test('CONNECT credentials are checked against the broker and remembered for --auth-cache-ttl', async () => {
  const user = uniq('u');
  await rmqctl('add_user', user, 'p1');
  await rmqctl('set_permissions', '-p', '/', user, '.*', '.*', '.*');
  const cached = await startGateway(['--mode', 'shared', '--auth-cache-ttl', '60000']);
  const uncached = await startGateway(['--mode', 'shared', '--auth-cache-ttl', '0']);
  try {
    const login = (g, passcode) => connected(g.url, { connectHeaders: { login: user, passcode } });
    await (await login(cached, 'p1')).deactivate();
    await (await login(uncached, 'p1')).deactivate();
    const bad = stompClient(cached.url, { connectHeaders: { login: user, passcode: 'nope' } });
    await assert.rejects(connect(bad), (e) => e.frame?.headers.message === 'Access refused');
    await bad.deactivate();
    await rmqctl('change_password', user, 'p2');
    // Within the cache's lifetime the old password is still good ...
    await (await login(cached, 'p1')).deactivate();
    // ... the new one is checked and accepted ...
    await (await login(cached, 'p2')).deactivate();
    // ... and without a cache the old one is refused at once.
    const old = stompClient(uncached.url, { connectHeaders: { login: user, passcode: 'p1' } });
    await assert.rejects(connect(old), (e) => e.frame?.headers.message === 'Access refused');
    await old.deactivate();
  } finally {
    await cached.stop();
    await uncached.stop();
    await rmqctl('delete_user', user);
  }
});

test('the host header picks the vhost: pooled connections per vhost, unknown ones refused', async () => {
  const q = uniq('vq');
  const ws = rawWs(gw.url);
  await ws.opened;
  ws.send(ws.frame('CONNECT', { 'accept-version': '1.2', host: 'sgvhost', login: 'guest', passcode: 'guest' }));
  await ws.waitFrame('CONNECTED');
  ws.send(ws.frame('SEND', { destination: `/queue/${q}`, receipt: 'r' }, 'in sgvhost'));
  await ws.waitFrame('RECEIPT');
  ws.close();
  const conn = await amqp.connect(`amqp://guest:guest@127.0.0.1:${AMQP_PORT}/sgvhost`);
  const ch = await conn.createChannel();
  const { messageCount } = await ch.checkQueue(q);
  assert.equal(messageCount, 1, 'the queue and its message are in sgvhost');
  await ch.deleteQueue(q);
  await conn.close();
  const bad = rawWs(gw.url);
  await bad.opened;
  bad.send(bad.frame('CONNECT', { 'accept-version': '1.2', host: 'no-such-vhost', login: 'guest', passcode: 'guest' }));
  const { code } = await bad.closed;
  const f = parseFrame(bad.frames.find((x) => x.startsWith('ERROR')));
  assert.equal(f.headers.message, 'Virtual host not available');
  assert.equal(code, 1008);
});

test('binds sent after a refused one on the worker\'s bind channel still take effect', async () => {
  const k = uniq('after');
  const cs = [];
  for (let i = 0; i < 12; i++) cs.push(await open());
  const bad = rawWs(gw.url);
  await bad.opened;
  bad.send(bad.frame('CONNECT', { 'accept-version': '1.2', host: '/', login: 'guest', passcode: 'guest' }));
  await bad.waitFrame('CONNECTED');
  // The refused bind goes out among the others, which are pipelined on the
  // same channel behind it.
  const subs = cs.map((c, i) => {
    if (i === 6) bad.send(bad.frame('SUBSCRIBE', { id: 's', destination: `/exchange/${uniq('missing')}/k`, receipt: 'bad' }));
    return subscribe(c, `/topic/${k}.${i}`);
  });
  const got = await Promise.all(subs);
  await bad.closed;
  assert.equal(parseFrame(bad.frames.find((x) => x.startsWith('ERROR'))).headers.message, 'Not found');
  const conn = await amqpConnect();
  const pch = await conn.createChannel();
  for (let i = 0; i < cs.length; i++) pch.publish('amq.topic', `${k}.${i}`, Buffer.from(String(i)));
  await waitFor(() => got.every((m) => m.length === 1), 10000, 'every subscription served');
  await conn.close();
});
