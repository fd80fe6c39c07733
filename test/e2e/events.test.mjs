// SPDX-License-Identifier: MIT
// Session events (--events-exchange): every session's connect, subscribe,
// unsubscribe and disconnect is published as JSON to a topic exchange, from
// every gateway instance and in both relay modes. An AMQP consumer
// (amqplib) bound to the exchange checks the routing keys, the bodies and
// the properties; /metrics counts what was published and dropped.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import { spawn } from 'node:child_process';
import amqp from 'amqplib';
import { connected, subscribe, receipt, waitFor, uniq, amqpConnect, rmqctl, sh } from './lib/harness.mjs';
import { spawnGateway, httpGet, parseMetrics } from './lib/ops.mjs';

const conns = [];
after(async () => { for (const c of conns) await c.close().catch(() => {}); });

// A queue bound to the events exchange with key; events collect in order.
async function listen(exchange, key = 'session.#', port = null) {
  const conn = port ? await amqp.connect(`amqp://guest:guest@127.0.0.1:${port}`) : await amqpConnect();
  conns.push(conn);
  const ch = await conn.createChannel();
  await ch.assertExchange(exchange, 'topic', { durable: true });
  const { queue } = await ch.assertQueue('', { exclusive: true, autoDelete: true });
  await ch.bindQueue(queue, exchange, key);
  const events = [];
  await ch.consume(queue, (m) => {
    events.push({ key: m.fields.routingKey, props: m.properties, body: JSON.parse(m.content.toString()) });
  }, { noAck: true });
  events.find1 = (pred, what) => waitFor(() => events.some(pred), 10000, what).then(() => events.find(pred));
  return events;
}

async function metric(gw, name) {
  const r = await httpGet(gw.adminPort, '/metrics');
  return parseMetrics(r.body).get(name);
}

// The suite runs once per relay mode (SG_MODE); by hand, both.
for (const mode of process.env.SG_MODE ? [process.env.SG_MODE] : ['per-session', 'shared']) {
  test(`${mode}: every lifecycle step of sessions on two instances is published`, async () => {
    const exchange = uniq('stompgate.events');
    const events = await listen(exchange);
    const gws = [];
    for (const name of ['a', 'b'])
      gws.push(await spawnGateway(['--mode', mode, '--workers', '2', '--events-exchange', exchange,
        '--instance-id', `gw-${name}-${mode}`]));
    try {
      await waitFor(() => gws[0].log().includes(`session events exchange '${exchange}' declared`), 10000, 'declared');
      // A user on each instance; the destination and subscription id need
      // JSON escaping.
      const room = uniq('room');
      const dest = `/topic/chat.${room}."quoted"\\é✓`;
      const subId = 'sub "1" \\ é';
      const ca = await connected(gws[0].url);
      const cb = await connected(gws[1].url);
      const msgs = await subscribe(ca, dest, { id: subId });
      await subscribe(cb, `/topic/chat.${room}`, { id: 'b-1' });
      const connA = await events.find1((e) => e.body.event === 'connected' && e.body.instance === `gw-a-${mode}`, 'A connected');
      const connB = await events.find1((e) => e.body.event === 'connected' && e.body.instance === `gw-b-${mode}`, 'B connected');
      assert.equal(connA.key, 'session.connected./');
      assert.equal(connA.body.user, 'guest');
      assert.equal(connA.body.vhost, '/');
      assert.match(connA.body.session, /^session-\d+$/);
      assert.match(connA.body.client, /^127\.0\.0\.1:\d+$/);
      assert.ok(Math.abs(Date.parse(connA.body.time) - Date.now()) < 60000, connA.body.time);
      assert.equal(connA.props.contentType, 'application/json');
      assert.equal(connA.props.deliveryMode, 1);
      assert.equal(connA.props.type, 'connected');
      assert.notEqual(connB.body.session + connB.body.instance, connA.body.session + connA.body.instance);

      const subA = await events.find1((e) => e.body.event === 'subscribed' && e.body.instance === `gw-a-${mode}`, 'A subscribed');
      assert.equal(subA.key, 'session.subscribed./');
      assert.equal(subA.body.destination, dest);
      assert.equal(subA.body.subscription, subId);
      assert.equal(subA.body.session, connA.body.session);
      const subB = await events.find1((e) => e.body.event === 'subscribed' && e.body.instance === `gw-b-${mode}`, 'B subscribed');
      assert.equal(subB.body.destination, `/topic/chat.${room}`);
      assert.equal(subB.body.subscription, 'b-1');

      // The subscription still works as before.
      ca.publish({ destination: dest, body: 'hi' });
      await waitFor(() => msgs.length === 1, 10000, 'message');

      const rid = uniq('r');
      ca.unsubscribe(subId, { receipt: rid });
      await receipt(ca, rid);
      const unsubA = await events.find1((e) => e.body.event === 'unsubscribed' && e.body.instance === `gw-a-${mode}`, 'A unsubscribed');
      assert.equal(unsubA.key, 'session.unsubscribed./');
      assert.equal(unsubA.body.destination, dest);
      assert.equal(unsubA.body.subscription, subId);

      // A DISCONNECT, and a client that just goes away.
      await ca.deactivate();
      const discA = await events.find1((e) => e.body.event === 'disconnected' && e.body.instance === `gw-a-${mode}`, 'A disconnected');
      assert.equal(discA.key, 'session.disconnected./');
      assert.equal(discA.body.reason, 'DISCONNECT');
      assert.equal(discA.body.session, connA.body.session);
      assert.equal(typeof discA.body.duration_ms, 'number');
      assert.ok(discA.body.duration_ms >= 0 && discA.body.duration_ms < 60000, String(discA.body.duration_ms));
      cb.webSocket.close();
      const discB = await events.find1((e) => e.body.event === 'disconnected' && e.body.instance === `gw-b-${mode}`, 'B disconnected');
      assert.equal(discB.body.reason, 'client closed the connection');
      assert.equal(discB.body.user, 'guest');

      // Order per session: connected, subscribed, unsubscribed, disconnected.
      const seq = events.filter((e) => e.body.instance === `gw-a-${mode}` && e.body.session === connA.body.session).map((e) => e.body.event);
      assert.deepEqual(seq, ['connected', 'subscribed', 'unsubscribed', 'disconnected']);
      assert.ok(await metric(gws[0], 'stompgate_events_published_total{kind="connected"}') >= 1);
      assert.ok(await metric(gws[0], 'stompgate_events_published_total{kind="disconnected"}') >= 1);
      assert.equal(await metric(gws[0], 'stompgate_events_dropped_total{reason="blocked"}'), 0);
      await cb.deactivate().catch(() => {});
    } finally {
      for (const g of gws) await g.stop();
    }
  });
}

test('a back end can bind narrowly: session.disconnected.# gets only disconnects', async () => {
  const exchange = uniq('stompgate.events');
  const events = await listen(exchange, 'session.disconnected.#');
  const gw = await spawnGateway(['--events-exchange', exchange, '--workers', '1']);
  try {
    const c = await connected(gw.url);
    await subscribe(c, `/topic/${uniq('k')}`);
    await c.deactivate();
    await waitFor(() => events.length === 1, 10000, 'disconnected');
    assert.equal(events[0].body.event, 'disconnected');
    assert.match(events[0].body.instance, /:\d+$/, 'default instance id is HOSTNAME:PID');
    assert.ok(events[0].body.instance.endsWith(`:${gw.child.pid}`));
  } finally {
    await gw.stop();
  }
});

test('events the broker cannot take wait in a bounded buffer; past it they are dropped and counted, sessions unharmed', async () => {
  // The events connection uses --broker's vhost, which does not exist here;
  // sessions log in to '/' (per-session mode), so only the events fail.
  const exchange = uniq('stompgate.events');
  const port = process.env.SG_AMQP_PORT;
  const gw = await spawnGateway(['--mode', 'per-session', '--workers', '1', '--events-exchange', exchange,
    '--events-buffer', '3', '--broker', `amqp://guest:guest@127.0.0.1:${port}/${uniq('novhost')}`]);
  try {
    for (let i = 0; i < 4; i++) {
      const c = await connected(gw.url);
      const msgs = await subscribe(c, `/topic/${uniq('d')}`);
      assert.equal(msgs.length, 0);
      await c.deactivate();
    }
    // 4 x (connected, subscribed, disconnected) = 12 events, 3 kept.
    await waitFor(() => gw.log().includes('session events dropped (disconnected)'), 10000, 'drop log');
    const dropped = await metric(gw, 'stompgate_events_dropped_total{reason="disconnected"}');
    assert.equal(dropped, 9);
    assert.equal(await metric(gw, 'stompgate_events_published_total{kind="connected"}'), 0);
  } finally {
    await gw.stop();
  }
});

test('a gateway that drains on SIGTERM publishes its sessions\' disconnects', async () => {
  const exchange = uniq('stompgate.events');
  const events = await listen(exchange);
  const gw = await spawnGateway(['--events-exchange', exchange, '--workers', '2', '--instance-id', 'draining', '--drain-timeout', '200']);
  const c = await connected(gw.url);
  await events.find1((e) => e.body.event === 'connected', 'connected');
  await gw.stop();
  const d = await events.find1((e) => e.body.event === 'disconnected', 'disconnected');
  assert.equal(d.body.instance, 'draining');
  assert.match(d.body.reason, /shutting down/);
  await c.deactivate().catch(() => {});
});

test('events emitted while the events connection is lost wait, and go out once it is open again', async () => {
  const exchange = uniq('stompgate.events');
  const events = await listen(exchange);
  const id = uniq('gw');
  const gw = await spawnGateway(['--events-exchange', exchange, '--workers', '1', '--instance-id', id]);
  try {
    const a = await connected(gw.url);
    await events.find1((e) => e.body.event === 'connected', 'first connected');
    // The broker closes the events connection (an operator, a node going down).
    const out = await rmqctl('list_connections', '-q', '--no-table-headers', 'pid', 'client_properties');
    // Its name says which gateway and worker it belongs to.
    const line = out.split('\n').find((l) => l.includes(`stompgate ${id} worker 0 events`));
    assert.ok(line, `the events connection is listed:\n${out}`);
    await rmqctl('close_connection', line.split('\t')[0], 'events test');
    await waitFor(() => /session events (connection|channel) lost/.test(gw.log()), 10000, 'lost');
    const b = await connected(gw.url);
    await b.deactivate();
    await a.deactivate();
    const ends = () => events.filter((e) => e.body.event === 'disconnected' && e.body.instance === id);
    await waitFor(() => ends().length === 2, 15000, 'both disconnects after the reconnect');
    assert.equal(events.filter((e) => e.body.event === 'connected' && e.body.instance === id).length, 2);
    assert.match(gw.log(), /session events connection open again/);
    assert.equal(await metric(gw, 'stompgate_events_dropped_total{reason="disconnected"}'), 0);
  } finally {
    await gw.stop();
  }
});

test('a broker that blocks publishing holds events in the buffer; past it they are dropped as blocked, the rest flow after', async () => {
  // A broker of its own: the alarm would stall every other case.
  const dir = `${process.env.SG_TMP ?? os.tmpdir()}/events-alarm-${uniq('x')}`;
  const port = +(await sh(`. test/lib/rabbitmq.sh; rmq_start ${dir} >&2 && echo $RMQ_AMQP_PORT`));
  const exchange = uniq('stompgate.events');
  let gw;
  try {
    const events = await listen(exchange, 'session.#', port);
    gw = await spawnGateway(['--mode', 'per-session', '--workers', '1', '--events-exchange', exchange,
      '--events-buffer', '4'], { amqpPort: port });
    const first = await connected(gw.url);
    await events.find1((e) => e.body.event === 'connected', 'first connected');
    await sh(`. test/lib/rabbitmq.sh; rmq_ctl ${dir} set_vm_memory_high_watermark 0.0000001 >/dev/null`);
    // Sessions still connect while the broker holds the gateway's publishes.
    const before = events.length;
    for (let i = 0; i < 6; i++) {
      const c = await connected(gw.url);
      await c.deactivate();
    }
    await waitFor(() => gw.log().includes('session events dropped (blocked)'), 20000, 'drops while blocked');
    const dropped = await metric(gw, 'stompgate_events_dropped_total{reason="blocked"}');
    assert.ok(dropped >= 1, `dropped ${dropped}`);
    assert.equal(await metric(gw, 'stompgate_events_dropped_total{reason="disconnected"}'), 0);
    await sh(`. test/lib/rabbitmq.sh; rmq_ctl ${dir} set_vm_memory_high_watermark 0.4 >/dev/null`);
    // 12 events: those the broker took before it blocked, the 4 that
    // waited, and none of those dropped.
    await waitFor(() => gw.log().includes('session events flowing again'), 20000, 'flowing again');
    await waitFor(() => events.length - before === 12 - dropped, 20000, 'the held events');
    await first.deactivate();
    await events.find1((e) => e.body.event === 'disconnected' && e.body.session === events[0].body.session, 'flows again');
  } finally {
    await gw?.stop();
    await sh(`. test/lib/rabbitmq.sh; rmq_stop ${dir}`).catch(() => {});
  }
});
