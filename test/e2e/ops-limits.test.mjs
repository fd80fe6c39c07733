// SPDX-License-Identifier: MIT
// Admission limits, answered with plain HTTP before the upgrade: the
// session cap (503), the new-session rate (429) and allowed Origins (403).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { connected, rawWs, waitFor, sleep } from './lib/harness.mjs';
import { spawnGateway, httpHead, httpGet, parseMetrics, upgradeRequest } from './lib/ops.mjs';

const started = [];
after(async () => { for (const g of started) await g.stop('SIGKILL'); });
async function gateway(args) {
  const g = await spawnGateway(args);
  started.push(g);
  return g;
}

test('--max-sessions: one more gets 503 before the upgrade, a freed slot is reused', async () => {
  const gw = await gateway(['--max-sessions', '2']);
  const a = await connected(gw.url);
  const b = rawWs(gw.url);
  await b.opened;
  const head = await httpHead(gw.port, upgradeRequest());
  assert.match(head, /^HTTP\/1.1 503 Service Unavailable/);
  assert.match(head, /Retry-After: 1/i);
  // The stompjs client sees the refusal as a failed WebSocket.
  const refused = rawWs(gw.url);
  await assert.rejects(refused.opened, /503/);
  b.close();
  await b.closed;
  await waitFor(() => false, 200).catch(() => {});
  const c = await connected(gw.url);
  await a.deactivate();
  await c.deactivate();
  const m = parseMetrics((await httpGet(gw.adminPort, '/metrics')).body);
  assert.equal(m.get('stompgate_upgrades_refused_total{status="503"}'), 2);
  await gw.stop();
});

test('--session-rate: a burst beyond the bucket gets 429, later ones pass', async () => {
  const gw = await gateway(['--session-rate', '2', '--session-burst', '2']);
  const heads = [];
  for (let i = 0; i < 4; i++) heads.push(await httpHead(gw.port, upgradeRequest()));
  assert.match(heads[0], /^HTTP\/1.1 101/);
  assert.match(heads[1], /^HTTP\/1.1 101/);
  assert.match(heads[2], /^HTTP\/1.1 429 Too Many Requests/);
  assert.match(heads[3], /^HTTP\/1.1 429/);
  await sleep(600); // one token back at 2 per second
  assert.match(await httpHead(gw.port, upgradeRequest()), /^HTTP\/1.1 101/);
  await gw.stop();
});

test('--allowed-origin: other Origins get 403, listed ones and no Origin pass', async () => {
  const gw = await gateway(['--allowed-origin', 'https://app.example', '--allowed-origin', 'http://localhost:8080']);
  const get = (extra) => httpHead(gw.port, upgradeRequest('/ws', extra));
  assert.match(await get({ Origin: 'https://evil.example' }), /^HTTP\/1.1 403 Forbidden/);
  assert.match(await get({ Origin: 'https://app.example.evil' }), /^HTTP\/1.1 403/);
  assert.match(await get({ Origin: 'http://app.example' }), /^HTTP\/1.1 403/);
  assert.match(await get({ Origin: 'https://app.example' }), /^HTTP\/1.1 101/);
  assert.match(await get({ Origin: 'HTTP://LOCALHOST:8080' }), /^HTTP\/1.1 101/);
  assert.match(await get({}), /^HTTP\/1.1 101/);
  await gw.stop();
});

test('existing per-session limits still apply: frame size, subscriptions, CONNECT timeout', async () => {
  const gw = await gateway(['--max-frame-size', '2048', '--max-subscriptions', '1', '--connect-timeout', '300']);
  const idle = rawWs(gw.url);
  await idle.opened;
  const f = await idle.waitFrame('ERROR', 3000);
  assert.match(f, /message:Timed out waiting for CONNECT/);
  const big = rawWs(gw.url);
  await big.opened;
  big.send(big.frame('CONNECT', { 'accept-version': '1.2', login: 'guest', passcode: 'guest' }));
  await big.waitFrame('CONNECTED');
  big.send(big.frame('SUBSCRIBE', { id: '1', destination: '/topic/a' }));
  big.send(big.frame('SUBSCRIBE', { id: '2', destination: '/topic/b' }));
  assert.match(await big.waitFrame('ERROR'), /ubscriptions/);
  const huge = rawWs(gw.url);
  await huge.opened;
  huge.send(huge.frame('CONNECT', { 'accept-version': '1.2', login: 'guest', passcode: 'guest' }));
  await huge.waitFrame('CONNECTED');
  huge.send(huge.frame('SEND', { destination: '/topic/a' }, 'x'.repeat(4096)));
  assert.equal((await huge.closed).code, 1009);
  await gw.stop();
});
