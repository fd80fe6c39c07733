// SPDX-License-Identifier: MIT
// amqps:// to the broker: the TLS listener run.sh adds to the test broker,
// with CA verification on by default.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { connected, stompClient, connect, subscribe, waitFor, uniq } from './lib/harness.mjs';
import { spawnGateway, httpGet } from './lib/ops.mjs';
import { makeCerts } from './lib/certs.mjs';

const PORT = +process.env.SG_AMQPS_PORT;
const CA = process.env.SG_BROKER_CA;
const started = [];
after(async () => { for (const g of started) await g.stop('SIGKILL'); });

async function gateway(host, args) {
  const g = await spawnGateway(['--broker', `amqps://guest:guest@${host}:${PORT}/`, '--broker-probe-interval', '100', ...args]);
  started.push(g);
  return g;
}

test('sessions relay over amqps:// with the broker certificate verified', async () => {
  const gw = await gateway('localhost', ['--broker-ca', CA]);
  assert.match(gw.log(), /broker amqps:\/\/localhost/);
  const c = await connected(gw.url);
  const q = `/queue/${uniq('amqps')}`;
  const msgs = await subscribe(c, q);
  c.publish({ destination: q, body: 'via amqps' });
  await waitFor(() => msgs.length === 1);
  assert.equal(msgs[0].body, 'via amqps');
  // A burst, so deliveries arrive several TLS records at a time.
  for (let i = 0; i < 300; i++) c.publish({ destination: q, body: `m${i}-${'y'.repeat(2000)}` });
  await waitFor(() => msgs.length === 301, 10000, 'the burst');
  assert.equal(msgs[300].body.split('-')[0], 'm299');
  await c.deactivate();
  await waitFor(() => false, 300).catch(() => {});
  assert.equal((await httpGet(gw.adminPort, '/readyz')).status, 200);
  await gw.stop();
});

test('a broker certificate from another CA is refused; --broker-tls-verify false accepts it', async () => {
  const other = makeCerts(fs.mkdtempSync(path.join(process.env.SG_TMP ?? '/tmp', 'amqps-')));
  const gw = await gateway('localhost', ['--broker-ca', other.ca]);
  const c = stompClient(gw.url);
  const err = await connect(c).then(() => null, (e) => e);
  assert.ok(err?.frame, 'ERROR frame expected');
  assert.equal(err.frame.headers.message, 'Broker unavailable');
  assert.match(err.frame.body, /certificate|verif|SSL/i);
  await c.deactivate();
  await gw.stop();
  const lax = await gateway('localhost', ['--broker-ca', other.ca, '--broker-tls-verify', 'false']);
  const ok = await connected(lax.url);
  await ok.deactivate();
  await lax.stop();
});

test('the broker name is checked against its certificate', async () => {
  // The broker's certificate names localhost only; 127.0.0.1 is the same
  // listener under a name the certificate does not carry.
  const gw = await gateway('127.0.0.1', ['--broker-ca', CA]);
  const c = stompClient(gw.url);
  const err = await connect(c).then(() => null, (e) => e);
  assert.equal(err?.frame?.headers.message, 'Broker unavailable');
  assert.match(err.frame.body, /hostname|verif/i);
  await c.deactivate();
  await gw.stop();
  const lax = await gateway('127.0.0.1', ['--broker-ca', CA, '--broker-tls-verify', 'false']);
  const ok = await connected(lax.url);
  await ok.deactivate();
  await lax.stop();
});
