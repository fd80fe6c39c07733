// SPDX-License-Identifier: MIT
// Publishing, subscribing, acks, transactions and receipts through stompgate.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, connected, subscribe, receipt, waitFor, uniq, sleep, amqpConnect } from './lib/harness.mjs';

let gw;
const clients = [];
const open = async (opts) => { const c = await connected(gw.url, opts); clients.push(c); return c; };
before(async () => { gw = await startGateway(); });
after(async () => { for (const c of clients) await c.deactivate().catch(() => {}); await gw.stop(); });

test('pub/sub on /topic with a SEND receipt', async () => {
  const a = await open(), b = await open();
  const t = '/topic/' + uniq('pub');
  const msgs = await subscribe(a, t);
  const r = receipt(b, 's1');
  b.publish({ destination: t, body: 'hello', headers: { receipt: 's1' } });
  await r;
  await waitFor(() => msgs.length === 1);
  assert.equal(msgs[0].body, 'hello');
  assert.equal(msgs[0].headers.destination, t);
  assert.equal(msgs[0].headers.redelivered, 'false');
  assert.ok(msgs[0].headers['message-id']);
});

test('fan-out of one message to several sockets', async () => {
  const t = '/topic/' + uniq('fan');
  const subs = [];
  for (let i = 0; i < 4; i++) subs.push(await subscribe(await open(), t));
  const p = await open();
  p.publish({ destination: t, body: 'to all' });
  await waitFor(() => subs.every((m) => m.length === 1), 10000, 'every subscriber');
  for (const m of subs) assert.equal(m[0].body, 'to all');
});

test('a /queue splits messages between competing consumers', async () => {
  const q = '/queue/' + uniq('work');
  const a = await open(), b = await open(), p = await open();
  const ma = await subscribe(a, q, { 'prefetch-count': '1', ack: 'client-individual' }, (m) => m.ack());
  const mb = await subscribe(b, q, { 'prefetch-count': '1', ack: 'client-individual' }, (m) => m.ack());
  for (let i = 0; i < 20; i++) p.publish({ destination: q, body: 'm' + i });
  await waitFor(() => ma.length + mb.length === 20, 10000, '20 deliveries');
  await sleep(200);
  const all = [...ma, ...mb].map((m) => m.body).sort();
  assert.equal(new Set(all).size, 20, 'each message delivered once');
  assert.ok(ma.length > 0 && mb.length > 0, `both consumers got work (${ma.length}/${mb.length})`);
});

test('/exchange/amq.direct/key and /exchange/X without a key', async () => {
  const a = await open(), p = await open();
  const key = uniq('k');
  const direct = await subscribe(a, `/exchange/amq.direct/${key}`);
  p.publish({ destination: `/exchange/amq.direct/${key}`, body: 'direct' });
  await waitFor(() => direct.length === 1);
  assert.equal(direct[0].headers.destination, `/exchange/amq.direct/${key}`);
  const conn = await amqpConnect();
  const ch = await conn.createChannel();
  const ex = uniq('fanout');
  await ch.assertExchange(ex, 'fanout', { autoDelete: true });
  const fan = await subscribe(a, `/exchange/${ex}`);
  p.publish({ destination: `/exchange/${ex}`, body: 'fanned' });
  await waitFor(() => fan.length === 1);
  assert.equal(fan[0].body, 'fanned');
  await conn.close();
});

test('/amq/queue consumes an existing queue', async () => {
  const conn = await amqpConnect();
  const ch = await conn.createChannel();
  const q = uniq('existing');
  await ch.assertQueue(q, { durable: false, autoDelete: false });
  const a = await open();
  const msgs = await subscribe(a, `/amq/queue/${q}`);
  ch.sendToQueue(q, Buffer.from('from amqp'));
  await waitFor(() => msgs.length === 1);
  assert.equal(msgs[0].body, 'from amqp');
  assert.equal(msgs[0].headers.destination, `/queue/${q}`);
  await ch.deleteQueue(q);
  await conn.close();
});

test('unacked client messages are redelivered after the consumer leaves', async () => {
  const q = '/queue/' + uniq('redeliver');
  const a = await open();
  const first = await subscribe(a, q, { ack: 'client' });
  const p = await open();
  p.publish({ destination: q, body: 'once' });
  await waitFor(() => first.length === 1);
  assert.ok(first[0].headers.ack, '1.2 MESSAGE carries ack');
  await a.deactivate();
  const b = await open();
  const again = await subscribe(b, q, { ack: 'client' });
  await waitFor(() => again.length === 1);
  assert.equal(again[0].body, 'once');
  assert.equal(again[0].headers.redelivered, 'true');
  again[0].ack();
});

test('client ack is cumulative, client-individual is not', async () => {
  for (const [mode, expectLeft] of [['client', 0], ['client-individual', 2]]) {
    const q = '/queue/' + uniq('cumul');
    const a = await open(), p = await open();
    const msgs = await subscribe(a, q, { ack: mode });
    for (let i = 0; i < 3; i++) p.publish({ destination: q, body: 'n' + i });
    await waitFor(() => msgs.length === 3);
    const r = uniq('ack');
    msgs[2].ack({ receipt: r });
    await receipt(a, r);
    await a.deactivate();
    const b = await open();
    const left = await subscribe(b, q, { ack: 'auto' });
    await sleep(500);
    assert.equal(left.length, expectLeft, `${mode}: messages left after acking the last`);
  }
});

test('NACK requeues, NACK requeue:false drops', async () => {
  const q = '/queue/' + uniq('nack');
  const a = await open(), p = await open();
  let n = 0;
  const msgs = await subscribe(a, q, { ack: 'client-individual' }, (m) => {
    n++;
    if (n === 1) m.nack();
    else m.nack({ requeue: 'false' });
  });
  p.publish({ destination: q, body: 'x' });
  await waitFor(() => msgs.length === 2);
  assert.equal(msgs[1].headers.redelivered, 'true');
  await sleep(500);
  assert.equal(msgs.length, 2, 'dropped after requeue:false');
});

test('transactions: COMMIT delivers, ABORT drops', async () => {
  const t = '/topic/' + uniq('tx');
  const a = await open(), p = await open();
  const msgs = await subscribe(a, t);
  const tx = p.begin();
  p.publish({ destination: t, body: 'in tx 1', headers: { transaction: tx.id } });
  p.publish({ destination: t, body: 'in tx 2', headers: { transaction: tx.id } });
  await sleep(300);
  assert.equal(msgs.length, 0, 'nothing before COMMIT');
  tx.commit();
  await waitFor(() => msgs.length === 2);
  assert.deepEqual(msgs.map((m) => m.body), ['in tx 1', 'in tx 2']);
  const tx2 = p.begin();
  p.publish({ destination: t, body: 'aborted', headers: { transaction: tx2.id } });
  tx2.abort();
  const r = uniq('r');
  p.publish({ destination: t, body: 'after', headers: { receipt: r } });
  await receipt(p, r);
  await waitFor(() => msgs.length === 3);
  assert.equal(msgs[2].body, 'after');
});

test('binary bodies with every byte value round trip as binary', async () => {
  const t = '/topic/' + uniq('bin');
  const a = await open(), p = await open();
  const msgs = await subscribe(a, t);
  const bytes = new Uint8Array(256).map((_, i) => i);
  p.publish({ destination: t, binaryBody: bytes, headers: { 'content-type': 'application/octet-stream' } });
  await waitFor(() => msgs.length === 1);
  assert.deepEqual(Array.from(msgs[0].binaryBody), Array.from(bytes));
});

test('a 1 MiB body round trips', async () => {
  const t = '/topic/' + uniq('big');
  const a = await open(), p = await open();
  const msgs = await subscribe(a, t);
  const body = 'x'.repeat(1 << 20);
  p.publish({ destination: t, body });
  await waitFor(() => msgs.length === 1, 20000);
  assert.equal(msgs[0].body.length, 1 << 20);
  assert.equal(msgs[0].body, body);
});

test('header values with newline, colon and backslash round trip', async () => {
  const t = '/topic/' + uniq('esc');
  const a = await open(), p = await open();
  const msgs = await subscribe(a, t);
  const v = 'line1\nline2:with colon\\and backslash';
  p.publish({ destination: t, body: 'e', headers: { 'x-odd': v } });
  await waitFor(() => msgs.length === 1);
  assert.equal(msgs[0].headers['x-odd'], v);
});
