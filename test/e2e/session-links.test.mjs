// SPDX-License-Identifier: MIT
// Per-session mode: sessions that log in with the same credentials within
// --session-link-window of each other share one AMQP connection, a channel
// each, at most --session-link-max on it. What must hold: a login that
// differs in anything never joins, one session's failure stays on its own
// channel, a session's topic queue goes with it, and the connection closes
// with its last session. The gateways here run in per-session mode
// whatever SG_MODE says, so the cases run once, in the per-session pass.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { rawWs, parseFrame, waitFor, sleep, uniq, rmqctl, amqpConnect } from './lib/harness.mjs';
import { spawnGateway, httpGet, parseMetrics } from './lib/ops.mjs';

const skip = process.env.SG_MODE === 'shared' ? 'per-session mode only; runs in the per-session pass' : false;

const started = [];
after(async () => { for (const g of started) await g.stop('SIGKILL'); });
async function gateway(args = []) {
  // One worker: connections are shared within a worker only.
  const g = await spawnGateway(['--mode', 'per-session', '--workers', '1', ...args]);
  started.push(g);
  return g;
}

// A raw session; resolves once CONNECTED or ERROR arrived.
async function session(url, login = 'guest', passcode = 'guest') {
  const ws = rawWs(url);
  await ws.opened;
  ws.send(ws.frame('CONNECT', { 'accept-version': '1.2', host: '/', login, passcode }));
  await waitFor(() => ws.frames.some((f) => /^(CONNECTED|ERROR)\n/.test(f)), 15000, 'CONNECTED or ERROR');
  ws.port = ws._socket.localPort;
  return ws;
}
const isUp = (ws) => ws.frames[0].startsWith('CONNECTED');

async function metrics(gw) {
  return parseMetrics((await httpGet(gw.adminPort, '/metrics')).body);
}

// The broker's connections that carry these sessions: a connection is
// named after the session whose login opened it.
async function links(sessions) {
  const out = await rmqctl('list_connections', '-q', '--no-table-headers', 'client_properties', 'channels');
  const ports = sessions.map((s) => `127.0.0.1:${s.port} session-`);
  return out.split('\n').map((l) => {
    const name = /\{"connection_name","([^"]*)"\}/.exec(l)?.[1];
    return { name, channels: Number(l.slice(l.lastIndexOf('\t') + 1)) };
  }).filter(({ name }) => name && ports.some((p) => name.includes(p)));
}

test('sessions of one login share connections, at most session-link-max on each', { skip }, async () => {
  const gw = await gateway(['--session-link-max', '4']);
  const v = await Promise.all(Array.from({ length: 10 }, () => session(gw.url)));
  assert.ok(v.every(isUp), 'every session is connected');
  const m = await metrics(gw);
  const opened = m.get('stompgate_broker_session_links_opened_total');
  const joined = m.get('stompgate_broker_session_links_joined_total');
  assert.equal(opened + joined, 10);
  assert.ok(opened >= 3 && opened < 10, `10 sessions over 3 to 9 connections (got ${opened})`);
  const l = await links(v);
  assert.equal(l.length, opened, 'the broker sees the connections the gateway counts');
  assert.ok(l.every((c) => c.channels >= 1 && c.channels <= 4), JSON.stringify(l));
  assert.equal(l.reduce((n, c) => n + c.channels, 0), 10, 'a channel per session');
  // Every session works on its own channel: each subscribes and gets its
  // own message.
  const topic = uniq('links');
  for (const [i, ws] of v.entries()) {
    ws.send(ws.frame('SUBSCRIBE', { id: 's', destination: `/topic/${topic}.${i}`, receipt: `sub${i}` }));
  }
  for (const [i, ws] of v.entries()) await ws.waitFrame(`RECEIPT\nreceipt-id:sub${i}`);
  for (const [i, ws] of v.entries()) ws.send(ws.frame('SEND', { destination: `/topic/${topic}.${i}` }, `to ${i}`));
  for (const [i, ws] of v.entries()) {
    await ws.waitFrame('MESSAGE');
    const got = ws.frames.filter((f) => f.startsWith('MESSAGE')).map((f) => parseFrame(f).body);
    assert.deepEqual(got, [`to ${i}`]);
  }
  for (const ws of v) ws.close();
  await gw.stop();
});

test('a login that differs in its password never joins an open connection', { skip }, async () => {
  const gw = await gateway();
  const good = await session(gw.url);
  assert.ok(isUp(good));
  // At once and after the connection is open: the wrong password is
  // refused by the broker on a login of its own.
  const [bad1, good2] = await Promise.all([session(gw.url, 'guest', 'wrong'), session(gw.url)]);
  const bad2 = await session(gw.url, 'guest', 'guest2');
  for (const bad of [bad1, bad2]) {
    const f = parseFrame(bad.frames[0]);
    assert.equal(f.command, 'ERROR');
    assert.match(f.headers.message + f.body, /refused|denied|ACCESS_REFUSED|login/i);
    await bad.closed;
  }
  assert.ok(isUp(good2));
  const m = await metrics(gw);
  assert.equal(m.get('stompgate_broker_session_links_joined_total'), 1, 'only the right password joined');
  assert.equal(m.get('stompgate_broker_session_links_opened_total'), 3);
  good.close();
  good2.close();
  await gw.stop();
});

test('one session\'s channel error leaves the sessions on its connection alone', { skip }, async () => {
  const gw = await gateway(['--session-link-max', '2']);
  const a = await session(gw.url);
  const b = await session(gw.url);
  assert.equal((await links([a, b])).length, 1, 'both on one connection');
  a.send(a.frame('SUBSCRIBE', { id: 's', destination: `/amq/queue/${uniq('missing')}`, receipt: 'r' }));
  const err = parseFrame(await a.waitFrame('ERROR'));
  assert.match(err.headers.message + err.body, /NOT_FOUND|no queue|not found/i);
  await a.closed;
  const topic = uniq('alone');
  b.send(b.frame('SUBSCRIBE', { id: 's', destination: `/topic/${topic}`, receipt: 'sub' }));
  await b.waitFrame('RECEIPT\nreceipt-id:sub');
  b.send(b.frame('SEND', { destination: `/topic/${topic}`, receipt: 'sent' }, 'still here'));
  await b.waitFrame('RECEIPT\nreceipt-id:sent');
  assert.equal(parseFrame(await b.waitFrame('MESSAGE')).body, 'still here');
  b.close();
  await gw.stop();
});

test('a leaving session takes its topic queue; the connection goes with the last one', { skip }, async () => {
  const gw = await gateway(['--session-link-max', '2']);
  const a = await session(gw.url);
  const b = await session(gw.url);
  const l = await links([a, b]);
  assert.deepEqual(l.map((c) => c.channels), [2], JSON.stringify(l));
  const topic = uniq('leave');
  a.send(a.frame('SUBSCRIBE', { id: 's', destination: `/topic/${topic}`, receipt: 'sub' }));
  await a.waitFrame('RECEIPT\nreceipt-id:sub');
  const amqp = await amqpConnect();
  const ch = await amqp.createChannel();
  const q = await ch.assertQueue('', { exclusive: true });
  await ch.bindQueue(q.queue, 'amq.topic', topic);
  const boundTo = async () => (await rmqctl('list_bindings', '-q', '--no-table-headers', 'source_name', 'routing_key'))
    .split('\n').filter((l) => l === `amq.topic\t${topic}`).length;
  assert.equal(await boundTo(), 2, 'the session\'s queue and the test\'s');
  a.close();
  await a.closed;
  let n = 2;
  for (let i = 0; i < 100 && n !== 1; i++) { await sleep(100); n = await boundTo(); }
  assert.equal(n, 1, 'the closed session\'s queue is gone');
  assert.equal((await links([a, b]))[0]?.channels, 1, 'the other session keeps the connection');
  b.close();
  await b.closed;
  let left = 1;
  for (let i = 0; i < 100 && left; i++) { await sleep(100); left = (await links([a, b])).length; }
  assert.equal(left, 0, 'the connection closed with its last session');
  await amqp.close();
  await gw.stop();
});

test('--session-link-max 1 and --session-link-window 0 give each session a connection', { skip }, async () => {
  for (const args of [['--session-link-max', '1'], ['--session-link-window', '0']]) {
    const gw = await gateway(args);
    const v = await Promise.all(Array.from({ length: 4 }, () => session(gw.url)));
    assert.ok(v.every(isUp));
    const m = await metrics(gw);
    assert.equal(m.get('stompgate_broker_session_links_opened_total'), 4, args.join(' '));
    assert.equal(m.get('stompgate_broker_session_links_joined_total'), 0, args.join(' '));
    assert.equal((await links(v)).length, 4);
    for (const ws of v) ws.close();
    await gw.stop();
  }
});

test('a login past the window of an open connection opens another', { skip }, async () => {
  const gw = await gateway(['--session-link-window', '300']);
  const a = await session(gw.url);
  await sleep(600);
  const b = await session(gw.url);
  const m = await metrics(gw);
  assert.equal(m.get('stompgate_broker_session_links_opened_total'), 2);
  assert.equal((await links([a, b])).length, 2);
  a.close();
  b.close();
  await gw.stop();
});
