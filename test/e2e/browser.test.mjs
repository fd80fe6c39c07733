// SPDX-License-Identifier: MIT
// Real browsers: headless Chromium (Debian's) driven by playwright-core
// loads the example chat app from stompgate's --www root and talks through
// stompgate to RabbitMQ. A screenshot is kept as a test artefact.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { launchChromium, skip } from './lib/browser.mjs';
import { startGateway, freePort, waitFor, uniq } from './lib/harness.mjs';
import { makeCerts } from './lib/certs.mjs';

const artifacts = process.env.SG_ARTIFACTS ?? path.join(os.tmpdir(), 'stompgate-artifacts');

let browser, root, gw;

// The example app with the @stomp/stompjs bundle beside it, in a temporary
// directory so the source tree stays untouched.
function exampleRoot() {
  const dir = fs.mkdtempSync(path.join(process.env.SG_TMP ?? os.tmpdir(), 'chat-'));
  fs.cpSync('deploy/examples/chat', dir, { recursive: true });
  fs.mkdirSync(path.join(dir, 'vendor'), { recursive: true });
  fs.copyFileSync('node_modules/@stomp/stompjs/bundles/stomp.umd.min.js', path.join(dir, 'vendor', 'stomp.umd.min.js'));
  return dir;
}

before(async () => {
  if (skip) return;
  root = exampleRoot();
  gw = await startGateway(['--www', root]);
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  await gw?.stop();
});

async function openChat(base, name, room) {
  const page = await browser.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(e));
  await page.goto(`${base}/?name=${name}&room=${room}`);
  await page.waitForSelector('body[data-connected="yes"]', { timeout: 15000 });
  return page;
}

test('two pages chat through stompgate', { skip }, async () => {
  const room = uniq('room');
  const base = `http://127.0.0.1:${gw.port}`;
  const alice = await openChat(base, 'alice', room);
  const bob = await openChat(base, 'bob', room);
  // Both subscriptions are receipted before anyone speaks.
  await alice.waitForTimeout(300);
  await alice.fill('#text', 'hello bob');
  await alice.click('#send');
  await bob.waitForSelector('#messages li:has-text("hello bob")', { timeout: 10000 });
  await bob.fill('#text', 'hi alice ✓');
  await bob.press('#text', 'Enter');
  await alice.waitForSelector('#messages li:has-text("hi alice ✓")', { timeout: 10000 });
  const seen = await alice.$$eval('#messages li', (lis) => lis.map((li) => li.textContent));
  assert.deepEqual(seen, ['alicehello bob', 'bobhi alice ✓']);
  fs.mkdirSync(artifacts, { recursive: true });
  await alice.screenshot({ path: path.join(artifacts, 'chat.png') });
  assert.ok(fs.statSync(path.join(artifacts, 'chat.png')).size > 1000, 'screenshot written');
  assert.deepEqual([...alice.errors, ...bob.errors], []);
  await alice.close();
  await bob.close();
});

test('a binary body with every byte value reaches the other browser intact', { skip }, async () => {
  const room = uniq('bin');
  const base = `http://127.0.0.1:${gw.port}`;
  const a = await openChat(base, 'a', room);
  const b = await openChat(base, 'b', room);
  const dest = `/topic/chat.${room}.raw`;
  await b.evaluate((d) => new Promise((resolve) => {
    window.got = [];
    window.chat.client.subscribe(d, (m) => window.got.push(Array.from(m.binaryBody)), { receipt: 'raw' });
    window.chat.client.watchForReceipt('raw', resolve);
  }), dest);
  await a.evaluate((d) => {
    const bytes = new Uint8Array(256).map((_, i) => i);
    window.chat.client.publish({ destination: d, binaryBody: bytes, headers: { 'content-type': 'application/octet-stream' } });
  }, dest);
  await b.waitForFunction(() => window.got.length === 1, null, { timeout: 10000 });
  const got = await b.evaluate(() => window.got[0]);
  assert.deepEqual(got, Array.from({ length: 256 }, (_, i) => i));
  // The socket survived the binary frame and still carries text.
  assert.equal(await b.getAttribute('body', 'data-connected'), 'yes');
  await a.close();
  await b.close();
});

test('the page reconnects after the gateway restarts', { skip }, async () => {
  const port = await freePort();
  let g = await startGateway(['--www', root], undefined, { port });
  const room = uniq('re');
  const page = await openChat(`http://127.0.0.1:${port}`, 'carol', room);
  await g.stop();
  await page.waitForSelector('body[data-connected="no"]', { timeout: 10000 });
  g = await startGateway(['--www', root], undefined, { port });
  try {
    await page.waitForSelector('body[data-connected="yes"]', { timeout: 15000 });
    await page.waitForTimeout(300); // the new subscription's receipt
    await page.fill('#text', 'back again');
    await page.click('#send');
    await page.waitForSelector('#messages li:has-text("back again")', { timeout: 10000 });
    await waitFor(() => g.log().includes('connected as'), 5000, 'a session on the new gateway');
  } finally {
    await page.close();
    await g.stop();
  }
});

// The SHA-256 of a certificate's public key, as Chromium's
// --ignore-certificate-errors-spki-list takes it.
function spkiHash(certFile) {
  const pub = execFileSync('openssl', ['x509', '-in', certFile, '-noout', '-pubkey']);
  const der = execFileSync('openssl', ['pkey', '-pubin', '-outform', 'der'], { input: pub });
  return execFileSync('openssl', ['dgst', '-sha256', '-binary'], { input: der }).toString('base64');
}

test('over https and wss with a test certificate, two pages chat', { skip }, async () => {
  const C = makeCerts(fs.mkdtempSync(path.join(process.env.SG_TMP ?? os.tmpdir(), 'wss-')));
  const g = await startGateway(['--www', root, '--tls-cert', C.a[0], '--tls-key', C.a[1]]);
  // This browser accepts the test certificate's key and nothing else: a
  // TLS mistake on the gateway still fails the page load.
  const tlsBrowser = await launchChromium([`--ignore-certificate-errors-spki-list=${spkiHash(C.a[0])}`]);
  try {
    const room = uniq('tls');
    const open = async (name) => {
      const page = await tlsBrowser.newPage();
      page.errors = [];
      page.on('pageerror', (e) => page.errors.push(e));
      await page.goto(`https://127.0.0.1:${g.port}/?name=${name}&room=${room}`);
      await page.waitForSelector('body[data-connected="yes"]', { timeout: 15000 });
      return page;
    };
    const alice = await open('alice');
    const bob = await open('bob');
    assert.equal(await alice.evaluate(() => window.chat.client.webSocket.url.split(':')[0]), 'wss');
    await alice.waitForTimeout(300);
    await alice.fill('#text', 'sealed hello');
    await alice.click('#send');
    await bob.waitForSelector('#messages li:has-text("sealed hello")', { timeout: 10000 });
    fs.mkdirSync(artifacts, { recursive: true });
    await bob.screenshot({ path: path.join(artifacts, 'chat-wss.png') });
    assert.deepEqual([...alice.errors, ...bob.errors], []);
  } finally {
    await tlsBrowser.close();
    await g.stop();
  }
});
