// SPDX-License-Identifier: MIT
// User destinations (shared mode): a session of user U that subscribes to
// /user/queue/X receives what is sent to /user/U/queue/X, from a STOMP
// client on any gateway instance or from an AMQP publisher on the user
// exchange with key user.U.X; nobody else's key can be reached by crafting
// names. Two gateways in front of one broker, users authenticated by JWT,
// shared mode whatever SG_MODE says.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import { startGateway, stompClient, connect, subscribe, receipt, parseFrame, waitFor, uniq, sleep, amqpConnect, sharedBindings } from './lib/harness.mjs';

const dir = fs.mkdtempSync(path.join(process.env.SG_TMP ?? os.tmpdir(), 'userdest-'));
const secret = crypto.randomBytes(48).toString('base64');
const b64u = (b) => Buffer.from(b).toString('base64url');
function token(sub, scope) {
  const data = `${b64u(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${b64u(JSON.stringify({ sub, scope, exp: Math.floor(Date.now() / 1000) + 600 }))}`;
  return `${data}.${b64u(crypto.createHmac('sha256', secret).update(data).digest())}`;
}
// alice may send to every user, bob only to alice, mallory to nobody.
const SCOPE = {
  alice: 'rabbitmq.write:*/stompgate.user/user.*',
  bob: 'rabbitmq.write:*/stompgate.user/user.alice.*',
  mallory: 'rabbitmq.read:*/amq.topic/*',
};

let alice1;
let alice2;
let bob;
let inbox1;
let inbox2;
let bobInbox;
let gw1;
let gw2;
const clients = [];
before(async () => {
  fs.writeFileSync(path.join(dir, 'secret'), secret);
  const args = ['--mode', 'shared', '--workers', '1', '--auth', 'jwt', '--jwt-secret-file', path.join(dir, 'secret')];
  gw1 = await startGateway(args);
  gw2 = await startGateway(args);
  for (const g of [gw1, gw2])
    await waitFor(() => g.log().includes("user exchange 'stompgate.user' declared"), 15000, 'user exchange declared');
  await sessions();
});
after(async () => {
  for (const c of clients) await c.deactivate().catch(() => {});
  await gw1?.stop();
  await gw2?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function session(gw, user) {
  const c = stompClient(gw.url, { connectHeaders: { passcode: token(user, SCOPE[user]) } });
  clients.push(c);
  await connect(c);
  return c;
}

function raw(gw, user) {
  const ws = new WebSocket(gw.url, ['v12.stomp']);
  ws.frames = [];
  ws.on('message', (d) => ws.frames.push(d.toString()));
  ws.on('error', () => {});
  ws.closed = new Promise((r) => ws.on('close', (code) => r(code)));
  ws.stomp = (cmd, h = {}, body = '') => ws.send(`${cmd}\n${Object.entries(h).map(([k, v]) => `${k}:${v}\n`).join('')}\n${body}\0`);
  ws.frame = async (cmd) => {
    await waitFor(() => ws.frames.some((f) => f.startsWith(cmd + '\n')), 10000, `frame ${cmd}`);
    return parseFrame(ws.frames.find((f) => f.startsWith(cmd + '\n')));
  };
  ws.ready = (async () => {
    await new Promise((r) => ws.on('open', r));
    ws.stomp('CONNECT', { 'accept-version': '1.2', host: '/', passcode: token(user, SCOPE[user]) });
    await ws.frame('CONNECTED');
  })();
  return ws;
}

async function sessions() {
  alice1 = await session(gw1, 'alice');
  alice2 = await session(gw2, 'alice');
  bob = await session(gw1, 'bob');
  inbox1 = await subscribe(alice1, '/user/queue/inbox');
  inbox2 = await subscribe(alice2, '/user/queue/inbox');
  bobInbox = await subscribe(bob, '/user/queue/inbox');
}

test("SEND to /user/alice/queue/inbox reaches both of alice's sessions, on both gateways, and not bob", async () => {
  const body = uniq('hello alice');
  bob.publish({ destination: '/user/alice/queue/inbox', body, headers: { receipt: 'r1', 'x-from': 'bob' } });
  await receipt(bob, 'r1');
  await waitFor(() => inbox1.length === 1 && inbox2.length === 1, 10000, 'both alice sessions');
  for (const m of [inbox1[0], inbox2[0]]) {
    assert.equal(m.body, body);
    assert.equal(m.headers.destination, '/user/queue/inbox');
    assert.equal(m.headers['x-from'], 'bob');
  }
  // alice can write to bob too; only bob gets it.
  alice2.publish({ destination: '/user/bob/queue/inbox', body: 'hi bob', headers: { receipt: 'r2' } });
  await receipt(alice2, 'r2');
  await waitFor(() => bobInbox.length === 1, 10000, 'bob');
  await sleep(300);
  assert.equal(bobInbox.length, 1);
  assert.equal(bobInbox[0].body, 'hi bob');
  assert.equal(inbox1.length, 1);
  assert.equal(inbox2.length, 1);
});

test('a back end publishing with AMQP to the user exchange, key user.alice.inbox, reaches alice', async () => {
  const conn = await amqpConnect();
  const ch = await conn.createConfirmChannel();
  const n1 = inbox1.length;
  const n2 = inbox2.length;
  ch.publish('stompgate.user', 'user.alice.inbox', Buffer.from('from the back end'), { contentType: 'text/plain' });
  await ch.waitForConfirms();
  await waitFor(() => inbox1.length === n1 + 1 && inbox2.length === n2 + 1, 10000, 'AMQP message');
  assert.equal(inbox1.at(-1).body, 'from the back end');
  assert.equal(inbox1.at(-1).headers.destination, '/user/queue/inbox');
  assert.equal(inbox1.at(-1).headers['content-type'], 'text/plain');
  await conn.close();
  assert.equal(bobInbox.length, 1);
});

test("a user cannot reach another user's queue by crafting names", async () => {
  const n1 = inbox1.length;
  // Another user's name in a SUBSCRIBE is not a user destination form.
  const m1 = raw(gw1, 'mallory');
  await m1.ready;
  m1.stomp('SUBSCRIBE', { id: 's', destination: '/user/alice/queue/inbox' });
  const e1 = await m1.frame('ERROR');
  assert.equal(e1.headers.message, 'Invalid destination');
  assert.equal(await m1.closed, 1002);
  // The exchange itself is guarded by scopes.
  const m2 = raw(gw2, 'mallory');
  await m2.ready;
  m2.stomp('SUBSCRIBE', { id: 's', destination: '/exchange/stompgate.user/user.alice.inbox' });
  const e2 = await m2.frame('ERROR');
  assert.equal(e2.headers.message, 'Access refused');
  assert.match(e2.body, /read access to exchange 'stompgate.user' with routing key 'user.alice.inbox'/);
  // Wildcards, dots and escapes in the queue name stay inside mallory's own key.
  const mallory = await session(gw1, 'mallory');
  const got = [];
  for (const q of ['#', '*', 'inbox.#', '..alice.inbox', '%2E%2Ealice.inbox', 'x/../../alice/queue/inbox'])
    got.push(await subscribe(mallory, `/user/queue/${q}`));
  // User names are escaped too: users called '*', '#' or 'alice.inbox'
  // (names come from tokens, which an issuer may fill with anything) get
  // keys of their own, not wildcards over everyone's.
  for (const name of ['*', '#', 'alice.inbox', 'alice%2Einbox']) {
    const c = await session(gw2, name);
    got.push(await subscribe(c, '/user/queue/inbox'));
    got.push(await subscribe(c, '/user/queue/#'));
  }
  // Sending as mallory, who has no write scope on the user exchange, is refused.
  const m3 = raw(gw1, 'mallory');
  await m3.ready;
  m3.stomp('SEND', { destination: '/user/alice/queue/inbox' }, 'spoof');
  const e3 = await m3.frame('ERROR');
  assert.equal(e3.headers.message, 'Access refused');
  assert.equal(e3.body, "write access to exchange 'stompgate.user' with routing key 'user.alice.inbox' in vhost '/' refused for user 'mallory' (SEND /user/alice/queue/inbox)");
  // bob may write only to alice.
  const b = raw(gw2, 'bob');
  await b.ready;
  b.stomp('SEND', { destination: '/user/mallory/queue/inbox' }, 'x');
  assert.equal((await b.frame('ERROR')).headers.message, 'Access refused');
  // A real message for alice reaches her and none of mallory's subscriptions.
  alice1.publish({ destination: '/user/alice/queue/inbox', body: 'private', headers: { receipt: 'r3' } });
  await receipt(alice1, 'r3');
  await waitFor(() => inbox1.length === n1 + 1, 10000, 'alice');
  await sleep(300);
  assert.deepEqual(got.map((g) => g.length), got.map(() => 0));
  // Nor can a durable or named queue carry a user destination over to
  // another session.
  for (const h of [{ durable: 'true' }, { 'x-queue-name': 'alice-inbox' }]) {
    const m = raw(gw1, 'alice');
    await m.ready;
    m.stomp('SUBSCRIBE', { id: 'd', destination: '/user/queue/inbox', ...h });
    assert.equal((await m.frame('ERROR')).headers.message, 'Invalid destination');
  }
  // A malformed user destination is an ERROR, not a silent drop.
  const m4 = raw(gw1, 'alice');
  await m4.ready;
  m4.stomp('SEND', { destination: '/user/bob' }, 'x');
  assert.equal((await m4.frame('ERROR')).headers.message, 'Invalid destination');
});

test("user queues are bindings on each gateway worker's one queue for the user exchange", async () => {
  const keys = ['inbox', 'alerts', 'feed'];
  const subs = [];
  for (const k of keys) subs.push(await subscribe(alice1, `/user/queue/${k}`), await subscribe(bob, `/user/queue/${k}`));
  // (mallory's keys of the case before may still linger.)
  const b = await sharedBindings('stompgate.user', (k) => /^user\.(alice|bob)\./.test(k));
  // gw1 holds alice1 and bob: one queue, a binding per distinct user key.
  const gw1Keys = b.filter(([q]) => b.some(([q2, k]) => q2 === q && k === 'user.bob.inbox'));
  assert.equal(new Set(gw1Keys.map(([q]) => q)).size, 1);
  assert.deepEqual(gw1Keys.map(([, k]) => k).sort(),
    [...keys.map((k) => `user.alice.${k}`), ...keys.map((k) => `user.bob.${k}`)].sort());
  const conn = await amqpConnect();
  const ch = await conn.createConfirmChannel();
  for (const k of keys) ch.publish('stompgate.user', `user.bob.${k}`, Buffer.from(k));
  await ch.waitForConfirms();
  await waitFor(() => keys.every((_, i) => subs[2 * i + 1].length === 1), 10000, "bob's queues");
  await sleep(200);
  for (const [i, k] of keys.entries()) {
    assert.equal(subs[2 * i].length, 0, `alice's ${k}`);
    assert.equal(subs[2 * i + 1][0].body, k);
    assert.equal(subs[2 * i + 1][0].headers.destination, `/user/queue/${k}`);
  }
  await conn.close();
  for (const s of subs) s.sub.unsubscribe();
});
