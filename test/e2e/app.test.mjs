// SPDX-License-Identifier: MIT
// Application destinations: SENDs under /app go to back-end services over
// the application exchange; their replies come back to the sending session
// only. Driven with @stomp/stompjs and the example back end in
// deploy/examples/orders-backend against the real broker.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { startGateway, connected, subscribe, receipt, rawWs, parseFrame, waitFor, uniq, amqpConnect, AMQP_PORT } from './lib/harness.mjs';

let gw;
const queue = uniq('orders-service');

function startBackend() {
  const child = spawn(process.execPath, ['deploy/examples/orders-backend/backend.mjs'], {
    env: { ...process.env, AMQP_URL: `amqp://guest:guest@127.0.0.1:${AMQP_PORT}/`, QUEUE: queue },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  const exited = new Promise((r) => child.on('exit', r));
  return {
    child,
    ready: waitFor(() => out.includes('ready'), 15000, 'back end ready'),
    async stop() { if (child.exitCode === null) child.kill('SIGTERM'); await exited; },
  };
}

let backend;
before(async () => {
  gw = await startGateway();
  await waitFor(() => gw.log().includes("application exchange 'stompgate.app' declared"), 15000, 'exchange declared');
  backend = startBackend();
  await backend.ready;
});
after(async () => {
  await backend?.stop();
  await gw.stop();
});

// Collects the MESSAGE frames a session receives outside any subscription.
async function appClient(url = gw.url) {
  const c = await connected(url);
  c.replies = [];
  c.onUnhandledMessage = (m) => c.replies.push(m);
  return c;
}

test('request/reply: the reply reaches the sender with the request destination and correlation id', async () => {
  const c = await appClient();
  const rid = uniq('r');
  c.publish({ destination: '/app/orders/new', body: JSON.stringify({ item: 'tea', qty: 2 }),
    headers: { 'correlation-id': 'c-1', 'content-type': 'application/json', receipt: rid } });
  await receipt(c, rid);
  await waitFor(() => c.replies.length === 1, 10000, 'reply');
  const m = c.replies[0];
  assert.equal(m.headers.destination, '/app/orders/new');
  assert.equal(m.headers['correlation-id'], 'c-1');
  assert.equal(m.headers.subscription, '/app');
  assert.equal(m.headers['content-type'], 'application/json');
  const body = JSON.parse(m.body);
  assert.equal(body.status, 'accepted');
  assert.equal(body.action, 'new');
  assert.deepEqual(body.order, { item: 'tea', qty: 2 });
  assert.equal(body.user, 'guest');
  assert.match(body.session, /^session-\d+$/);
  await c.deactivate();
});

test('a SEND without correlation-id still gets its reply routed to the /app destination', async () => {
  const c = await appClient();
  c.publish({ destination: '/app/orders/cancel', body: '{"id":7}' });
  await waitFor(() => c.replies.length === 1, 10000, 'reply');
  assert.equal(c.replies[0].headers.destination, '/app/orders/cancel');
  assert.match(c.replies[0].headers['correlation-id'], /^session-\d+-\d+$/);
  assert.equal(JSON.parse(c.replies[0].body).action, 'cancel');
  await c.deactivate();
});

test('a back end broadcasts through amq.topic to /topic subscribers', async () => {
  const watcher = await connected(gw.url);
  const got = await subscribe(watcher, '/topic/orders.summary');
  const c = await appClient();
  c.publish({ destination: '/app/orders/new', body: '{"item":"cake"}' });
  await waitFor(() => got.some((m) => JSON.parse(m.body).last.action === 'new'), 10000, 'summary');
  assert.ok(JSON.parse(got.at(-1).body).orders >= 1);
  await c.deactivate();
  await watcher.deactivate();
});

test('two sessions never see each other\'s replies', async () => {
  const a = await appClient();
  const b = await appClient();
  for (let i = 0; i < 5; i++) {
    a.publish({ destination: '/app/orders/new', body: JSON.stringify({ from: 'a', i }), headers: { 'correlation-id': `a${i}` } });
    b.publish({ destination: '/app/orders/new', body: JSON.stringify({ from: 'b', i }), headers: { 'correlation-id': `b${i}` } });
  }
  await waitFor(() => a.replies.length === 5 && b.replies.length === 5, 10000, 'ten replies');
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(a.replies.length, 5);
  assert.equal(b.replies.length, 5);
  assert.ok(a.replies.every((m) => JSON.parse(m.body).order.from === 'a' && m.headers['correlation-id'].startsWith('a')));
  assert.ok(b.replies.every((m) => JSON.parse(m.body).order.from === 'b' && m.headers['correlation-id'].startsWith('b')));
  await a.deactivate();
  await b.deactivate();
});

test('headers travel both ways; a client cannot forge the gateway\'s stompgate-* headers', async () => {
  const c = await appClient();
  c.publish({ destination: '/app/orders/new', body: '{}',
    headers: { 'x-trace': 'trace-42', 'stompgate-user': 'mallory', 'stompgate-session': 'session-0' } });
  await waitFor(() => c.replies.length === 1, 10000, 'reply');
  const m = c.replies[0];
  assert.equal(m.headers['x-trace'], 'trace-42', 'the back end saw the header and echoed it');
  const body = JSON.parse(m.body);
  assert.equal(body.user, 'guest');
  assert.notEqual(body.session, 'session-0');
  await c.deactivate();
});

test('the request on the wire: exchange, routing key, reply_to and headers', async () => {
  const conn = await amqpConnect();
  const ch = await conn.createChannel();
  const { queue: q } = await ch.assertQueue('', { exclusive: true });
  await ch.bindQueue(q, 'stompgate.app', 'audit.#');
  const seen = [];
  await ch.consume(q, (m) => seen.push(m), { noAck: true });
  const c = await appClient();
  c.publish({ destination: '/app/audit/login/ok', body: 'x', headers: { 'correlation-id': 'k1', 'x-a': '1' } });
  await waitFor(() => seen.length === 1, 10000, 'raw request');
  const m = seen[0];
  assert.equal(m.fields.exchange, 'stompgate.app');
  assert.equal(m.fields.routingKey, 'audit.login.ok');
  assert.equal(m.properties.correlationId, 'k1');
  assert.match(m.properties.replyTo, /^stomp-temp-/);
  assert.equal(m.properties.headers['x-a'], '1');
  assert.equal(m.properties.headers['stompgate-destination'], '/app/audit/login/ok');
  assert.equal(m.properties.headers['stompgate-user'], 'guest');
  await c.deactivate();
  await conn.close();
});

test('back end down: the SEND is receipted once confirmed, waits in the queue, and is answered later', async () => {
  await backend.stop();
  const c = await appClient();
  const rid = uniq('r');
  c.publish({ destination: '/app/orders/new', body: '{"item":"late"}', headers: { 'correlation-id': 'late-1', receipt: rid } });
  await receipt(c, rid);
  const conn = await amqpConnect();
  const ch = await conn.createChannel();
  const { messageCount } = await ch.checkQueue(queue);
  assert.equal(messageCount, 1, 'the request waits in the back end\'s queue');
  await conn.close();
  assert.equal(c.replies.length, 0);
  backend = startBackend();
  await backend.ready;
  await waitFor(() => c.replies.length === 1, 10000, 'late reply');
  assert.equal(c.replies[0].headers['correlation-id'], 'late-1');
  assert.equal(JSON.parse(c.replies[0].body).order.item, 'late');
  await c.deactivate();
});

test('SUBSCRIBE to an application destination: ERROR naming the prefix, then close', async () => {
  const ws = rawWs(gw.url);
  await ws.opened;
  ws.send(ws.frame('CONNECT', { 'accept-version': '1.2', host: '/', login: 'guest', passcode: 'guest' }));
  await ws.waitFrame('CONNECTED');
  ws.send(ws.frame('SUBSCRIBE', { id: 's1', destination: '/app/orders/new', receipt: 'r1' }));
  const { code } = await ws.closed;
  const f = parseFrame(ws.frames.find((x) => x.startsWith('ERROR')));
  assert.match(f.headers.message, /application prefix \/app/);
  assert.equal(f.headers['receipt-id'], 'r1');
  assert.equal(code, 1002);
});

test('a SEND to the bare prefix or with an empty segment: ERROR Invalid destination', async () => {
  for (const dst of ['/app', '/app/', '/app/orders//new']) {
    const ws = rawWs(gw.url);
    await ws.opened;
    ws.send(ws.frame('CONNECT', { 'accept-version': '1.2', host: '/', login: 'guest', passcode: 'guest' }));
    await ws.waitFrame('CONNECTED');
    ws.send(ws.frame('SEND', { destination: dst }, 'x'));
    await ws.closed;
    const f = parseFrame(ws.frames.find((x) => x.startsWith('ERROR')));
    assert.equal(f.headers.message, 'Invalid destination', dst);
    assert.match(f.body, /application prefix '\/app'/);
  }
});

test('--app-prefix and --app-exchange: custom prefixes, and /app is then an ordinary (invalid) destination', async () => {
  const exchange = uniq('my.app');
  const gw2 = await startGateway(['--app-prefix', '/svc', '--app-prefix', '/rpc/', '--app-exchange', exchange]);
  try {
    await waitFor(() => gw2.log().includes(`application exchange '${exchange}' declared`), 15000, 'exchange declared');
    const conn = await amqpConnect();
    const ch = await conn.createChannel();
    const { queue: q } = await ch.assertQueue('', { exclusive: true });
    await ch.bindQueue(q, exchange, '#');
    const seen = [];
    await ch.consume(q, (m) => {
      seen.push(m);
      ch.sendToQueue(m.properties.replyTo, Buffer.from('pong'), { correlationId: m.properties.correlationId });
    }, { noAck: true });
    const c = await appClient(gw2.url);
    c.publish({ destination: '/svc/a/b', body: 'ping' });
    c.publish({ destination: '/rpc/c', body: 'ping' });
    await waitFor(() => c.replies.length === 2, 10000, 'two replies');
    assert.deepEqual(seen.map((m) => m.fields.routingKey), ['a.b', 'c']);
    assert.deepEqual(c.replies.map((m) => [m.headers.destination, m.headers.subscription]),
      [['/svc/a/b', '/svc'], ['/rpc/c', '/rpc']]);
    await c.deactivate();
    await conn.close();

    const ws = rawWs(gw2.url);
    await ws.opened;
    ws.send(ws.frame('CONNECT', { 'accept-version': '1.2', host: '/', login: 'guest', passcode: 'guest' }));
    await ws.waitFrame('CONNECTED');
    ws.send(ws.frame('SEND', { destination: '/app/orders/new' }, 'x'));
    await ws.closed;
    assert.equal(parseFrame(ws.frames.find((x) => x.startsWith('ERROR'))).headers.message, 'Invalid destination');
  } finally {
    await gw2.stop();
  }
});
