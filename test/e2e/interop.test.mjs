// SPDX-License-Identifier: MIT
// Native AMQP clients on the other side of stompgate.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, connected, subscribe, receipt, waitFor, uniq, amqpConnect } from './lib/harness.mjs';

let gw, conn, ch;
const clients = [];
const open = async () => { const c = await connected(gw.url); clients.push(c); return c; };
before(async () => { gw = await startGateway(); conn = await amqpConnect(); ch = await conn.createChannel(); });
after(async () => { for (const c of clients) await c.deactivate().catch(() => {}); await conn.close(); await gw.stop(); });

test('AMQP publish with properties and headers reaches a STOMP subscriber', async () => {
  const a = await open();
  const key = uniq('props');
  const msgs = await subscribe(a, `/topic/${key}`);
  ch.publish('amq.topic', key, Buffer.from('{"x":1}'), {
    contentType: 'application/json', correlationId: 'corr-1', replyTo: 'some-queue', priority: 3,
    persistent: true, messageId: 'mid-9', type: 'kind', appId: 'app', timestamp: 1700000000,
    headers: { 'x-str': 'text', 'x-int': 42 },
  });
  await waitFor(() => msgs.length === 1);
  const h = msgs[0].headers;
  assert.equal(msgs[0].body, '{"x":1}');
  assert.equal(h['content-type'], 'application/json');
  assert.equal(h['correlation-id'], 'corr-1');
  assert.equal(h['reply-to'], '/reply-queue/some-queue');
  assert.equal(h.priority, '3');
  assert.equal(h.persistent, 'true');
  assert.equal(h['amqp-message-id'], 'mid-9');
  assert.equal(h.type, 'kind');
  assert.equal(h['app-id'], 'app');
  assert.equal(h.timestamp, '1700000000');
  assert.equal(h['x-str'], 'text');
  assert.equal(h['x-int'], '42');
  assert.equal(h.destination, `/topic/${key}`);
});

test('STOMP SEND properties and headers reach an AMQP consumer', async () => {
  const q = uniq('in');
  await ch.assertQueue(q, { exclusive: true });
  const got = [];
  await ch.consume(q, (m) => got.push(m), { noAck: true });
  const p = await open();
  const r = uniq('r');
  p.publish({ destination: `/amq/queue/${q}`, body: 'payload', headers: {
    'content-type': 'text/plain', 'correlation-id': 'c-7', persistent: 'true', 'x-custom': 'v1',
    receipt: r } });
  await receipt(p, r);
  await waitFor(() => got.length === 1);
  const m = got[0];
  assert.equal(m.content.toString(), 'payload');
  assert.equal(m.properties.contentType, 'text/plain');
  assert.equal(m.properties.correlationId, 'c-7');
  assert.equal(m.properties.deliveryMode, 2);
  assert.equal(m.properties.headers['x-custom'], 'v1');
});

test('/temp-queue reply-to: an AMQP responder answers the STOMP client', async () => {
  const svc = uniq('svc');
  await ch.assertQueue(svc, { exclusive: true });
  await ch.consume(svc, (m) => {
    ch.sendToQueue(m.properties.replyTo, Buffer.from('pong:' + m.content), { correlationId: m.properties.correlationId });
  }, { noAck: true });
  const a = await open();
  const replies = [];
  a.onUnhandledMessage = (m) => replies.push(m);
  a.publish({ destination: `/amq/queue/${svc}`, body: 'ping', headers: { 'reply-to': '/temp-queue/rpc', 'correlation-id': 'q1' } });
  await waitFor(() => replies.length === 1);
  assert.equal(replies[0].body, 'pong:ping');
  assert.equal(replies[0].headers['correlation-id'], 'q1');
  assert.equal(replies[0].headers.subscription, '/temp-queue/rpc');
});

test('SEND to /queue declares a durable queue AMQP clients can read', async () => {
  const q = uniq('durable');
  const p = await open();
  const r = uniq('r');
  p.publish({ destination: `/queue/${q}`, body: 'kept', headers: { receipt: r } });
  await receipt(p, r);
  const info = await ch.checkQueue(q);
  assert.equal(info.messageCount, 1);
  const m = await ch.get(q, { noAck: true });
  assert.equal(m.content.toString(), 'kept');
  await ch.deleteQueue(q);
});
