// SPDX-License-Identifier: MIT
// wss:// with OpenSSL: certificate and key, an intermediate chain, TLS 1.2
// or newer, ALPN http/1.1, client certificates, and SIGHUP reloading the
// certificate without dropping open sessions.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import WebSocket from 'ws';
import { Client } from '@stomp/stompjs';
import { connect, subscribe, receipt, waitFor, uniq, sleep } from './lib/harness.mjs';
import { spawnGateway, runToExit, httpHead, upgradeRequest } from './lib/ops.mjs';
import { makeCerts } from './lib/certs.mjs';

let C;
const started = [];
before(() => { C = makeCerts(fs.mkdtempSync(path.join(process.env.SG_TMP ?? '/tmp', 'tls-'))); });
after(async () => { for (const g of started) await g.stop('SIGKILL'); });

async function gateway(args) {
  const g = await spawnGateway(args, { tls: true });
  started.push(g);
  return g;
}

function tlsClient(url, wsOpts) {
  const c = new Client({
    webSocketFactory: () => new WebSocket(url, ['v12.stomp'], wsOpts),
    connectHeaders: { login: 'guest', passcode: 'guest' },
    reconnectDelay: 0, heartbeatIncoming: 0, heartbeatOutgoing: 0, debug: () => {},
  });
  c.errors = [];
  return c;
}

function peer(port, opts = {}) {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ port, host: '127.0.0.1', ca: fs.readFileSync(C.ca), servername: 'localhost', ...opts }, () => {
      const r = { cn: s.getPeerCertificate().subject?.CN, alpn: s.alpnProtocol, version: s.getProtocol(), authorized: s.authorized };
      s.end();
      resolve(r);
    });
    s.on('error', reject);
  });
}

test('wss:// carries STOMP end to end, TLS 1.2+ with ALPN http/1.1', async () => {
  const gw = await gateway(['--tls-cert', C.a[0], '--tls-key', C.a[1]]);
  assert.match(gw.log(), /listening on wss:/);
  const ca = fs.readFileSync(C.ca);
  const c = tlsClient(gw.url, { ca });
  await connect(c);
  const dest = `/queue/${uniq('tls')}`;
  const msgs = await subscribe(c, dest);
  c.publish({ destination: dest, body: 'over tls' });
  await waitFor(() => msgs.length === 1);
  assert.equal(msgs[0].body, 'over tls');
  // Larger than a TLS record and a socket read, both ways.
  const big = 'x'.repeat(1 << 20) + 'end';
  c.publish({ destination: dest, body: big });
  await waitFor(() => msgs.length === 2, 10000, 'the large message');
  assert.equal(msgs[1].body, big);
  await c.deactivate();

  const p = await peer(gw.port, { ALPNProtocols: ['h2', 'http/1.1'] });
  assert.equal(p.cn, 'gateway-a');
  assert.equal(p.alpn, 'http/1.1');
  assert.ok(p.authorized);
  assert.ok(['TLSv1.2', 'TLSv1.3'].includes(p.version));
  assert.equal((await peer(gw.port, { maxVersion: 'TLSv1.2' })).version, 'TLSv1.2');
  // A client that only speaks h2 cannot do a WebSocket upgrade here.
  await assert.rejects(peer(gw.port, { ALPNProtocols: ['h2'] }));
  // Plain HTTP on the TLS port is not answered as HTTP.
  const plain = await httpHead(gw.port, upgradeRequest(), { ms: 2000 }).catch(() => '');
  assert.doesNotMatch(plain, /^HTTP/);
  await gw.stop();
});

test('--tls-chain sends the intermediate so clients trusting only the root verify', async () => {
  const without = await gateway(['--tls-cert', C.leaf[0], '--tls-key', C.leaf[1]]);
  await assert.rejects(peer(without.port), /unable to (get|verify)/);
  await without.stop();
  const gw = await gateway(['--tls-cert', C.leaf[0], '--tls-key', C.leaf[1], '--tls-chain', C.inter]);
  const p = await peer(gw.port);
  assert.equal(p.cn, 'gateway-leaf');
  assert.ok(p.authorized);
  await gw.stop();
});

test('--tls-client-ca requires a client certificate from that CA', async () => {
  const gw = await gateway(['--tls-cert', C.a[0], '--tls-key', C.a[1], '--tls-client-ca', C.ca]);
  const ca = fs.readFileSync(C.ca);
  const anon = tlsClient(gw.url, { ca });
  await assert.rejects(connect(anon, 3000));
  await anon.deactivate();
  const [cert, key] = C.client.map((f) => fs.readFileSync(f));
  const ok = tlsClient(gw.url, { ca, cert, key });
  await connect(ok);
  await ok.deactivate();
  // A certificate from another issuer is refused too.
  const [bc, bk] = C.leaf.map((f) => fs.readFileSync(f));
  const other = tlsClient(gw.url, { ca, cert: bc, key: bk });
  await assert.rejects(connect(other, 3000));
  await other.deactivate();
  await gw.stop();
});

test('SIGHUP reloads the certificate; open sessions keep working', async () => {
  const dir = fs.mkdtempSync(path.join(C.dir, 'live-'));
  const cert = path.join(dir, 'cert.pem'), key = path.join(dir, 'key.pem');
  fs.copyFileSync(C.a[0], cert);
  fs.copyFileSync(C.a[1], key);
  const gw = await gateway(['--tls-cert', cert, '--tls-key', key]);
  const ca = fs.readFileSync(C.ca);
  const old = tlsClient(gw.url, { ca });
  await connect(old);
  const topic = `/topic/${uniq('hup')}`;
  const got = await subscribe(old, topic);
  assert.equal((await peer(gw.port)).cn, 'gateway-a');

  fs.copyFileSync(C.b[0], cert);
  fs.copyFileSync(C.b[1], key);
  gw.child.kill('SIGHUP');
  await waitFor(() => /TLS certificates reloaded/.test(gw.log()), 3000, 'reload');
  assert.equal((await peer(gw.port)).cn, 'gateway-b');

  // A broken file on the next reload keeps the working certificate.
  fs.writeFileSync(key, 'not a key\n');
  gw.child.kill('SIGHUP');
  await waitFor(() => /TLS reload failed/.test(gw.log()), 3000, 'failed reload');
  assert.equal((await peer(gw.port)).cn, 'gateway-b');

  const fresh = tlsClient(gw.url, { ca });
  await connect(fresh);
  const rid = uniq('r');
  fresh.publish({ destination: topic, body: 'after reload', headers: { receipt: rid } });
  await receipt(fresh, rid);
  await waitFor(() => got.length === 1, 5000, 'delivery to the session opened before the reload');
  assert.equal(got[0].body, 'after reload');
  assert.equal(old.connected, true);
  await old.deactivate();
  await fresh.deactivate();
  await gw.stop();
});

test('unusable TLS files stop the gateway with exit code 2 before it listens', async () => {
  let r = await runToExit(['--listen', '127.0.0.1:0', '--tls-cert', C.a[0], '--tls-key', C.b[1]]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /'tls-key'/);
  r = await runToExit(['--listen', '127.0.0.1:0', '--tls-cert', C.a[1], '--tls-key', C.a[1]]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /'tls-cert'/);
  assert.doesNotMatch(r.stderr, /listening/);
});
