// SPDX-License-Identifier: MIT
// Real browsers: headless Chromium (Debian's) driven by playwright-core
// loads the example chat app from stompgate's --www root and talks through
// stompgate to RabbitMQ. A screenshot is kept as a test artefact. With
// --history the page resumes its room after a reconnect or a reload from the
// last stream offset it showed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { launchChromium, skip } from './lib/browser.mjs';
import { startGateway, freePort, waitFor, uniq, sleep, amqpConnect } from './lib/harness.mjs';
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

async function openChat(base, name, room, page) {
  if (!page) {
    page = await browser.newPage();
    page.errors = [];
    page.on('pageerror', (e) => page.errors.push(e));
  }
  await page.goto(`${base}/?name=${name}&room=${room}`);
  await page.waitForSelector('body[data-connected="yes"]', { timeout: 15000 });
  return page;
}

// What a chat page shows, one string per line: "<who>|<text>", or
// "notice|..." for a notice line.
const lines = (page) => page.$$eval('#messages li', (lis) => lis.map((li) => (li.classList.contains('notice')
  ? `notice|${li.textContent}` : `${li.querySelector('.who').textContent}|${li.querySelector('.text').textContent}`)));

// Waits until the page's room subscription has its receipt.
const joined = (page, room) => page.waitForSelector(`body[data-joined="${room}"]`, { timeout: 15000 });

async function say(page, text) {
  await page.fill('#text', text);
  await page.click('#send');
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

// Two gateways with the chat's history; page A on the first, page B on the
// second. The first is killed, B and an AMQP publisher go on, and A, once
// the gateway is back on its port, shows what it missed once and in order.
test('with --history a page that lost its gateway shows every missed message once, in order; a reload resumes too', { skip }, async () => {
  const hist = ['--www', root, '--history', 'chat.#:1h'];
  const port1 = await freePort();
  let g1 = await startGateway(hist, undefined, { port: port1 });
  const g2 = await startGateway(hist);
  const amqp = await amqpConnect();
  const ch = await amqp.createConfirmChannel();
  const room = uniq('hist');
  const base1 = `http://127.0.0.1:${port1}`;
  let a, b;
  // The chat's own format: a text body, the sender's name in x-chat-name.
  const post = async (text) => {
    ch.publish('amq.topic', `chat.${room}`, Buffer.from(text), { headers: { 'x-chat-name': 'amqp' } });
    await ch.waitForConfirms();
  };
  // Each message is seen by B before the next goes, so that the order of
  // B's page and of the publishes agree.
  const fromB = async (text) => { await say(b, text); await b.waitForSelector(`#messages li:has-text("${text}")`, { timeout: 10000 }); };
  const fromAmqp = async (text) => { await post(text); await b.waitForSelector(`#messages li:has-text("${text}")`, { timeout: 10000 }); };
  try {
    a = await openChat(base1, 'alice', room);
    b = await openChat(`http://127.0.0.1:${g2.port}`, 'bob', room);
    await joined(a, room);
    await joined(b, room);
    await say(a, 'before 1');
    await a.waitForSelector('#messages li:has-text("before 1")', { timeout: 10000 });
    await fromB('before 2');
    await a.waitForSelector('#messages li:has-text("before 2")', { timeout: 10000 });
    const had = ['alice|before 1', 'bob|before 2'];
    assert.deepEqual(await lines(a), had);
    const stored = await a.evaluate((r) => window.chat.lastOffset(r), room);
    assert.equal(typeof stored, 'number', 'the page keeps the last offset it showed');

    g1.child.kill('SIGKILL');
    await g1.exited;
    await a.waitForSelector('body[data-connected="no"]', { timeout: 10000 });
    const missed = [];
    for (let i = 1; i <= 4; i++) {
      await fromB(`missed b${i}`);
      missed.push(`bob|missed b${i}`);
      await fromAmqp(`missed amqp${i}`);
      missed.push(`amqp|missed amqp${i}`);
    }
    // And a burst, in order on one channel.
    for (let i = 0; i < 100; i++) ch.publish('amq.topic', `chat.${room}`, Buffer.from(`burst ${i}`), { headers: { 'x-chat-name': 'amqp' } });
    await ch.waitForConfirms();
    for (let i = 0; i < 100; i++) missed.push(`amqp|burst ${i}`);
    await fromAmqp('missed last');
    missed.push('amqp|missed last');
    // A keeps trying every 500 ms; the gateway comes back on the same port.
    g1 = await startGateway(hist, undefined, { port: port1 });
    await a.waitForSelector('body[data-connected="yes"]', { timeout: 15000 });
    await a.waitForSelector('#messages li:has-text("missed last")', { timeout: 15000 });
    await fromB('live again');
    await a.waitForSelector('#messages li:has-text("live again")', { timeout: 10000 });
    await sleep(300);
    assert.deepEqual(await lines(a), [...had, ...missed, 'bob|live again']);
    assert.deepEqual(await lines(b), [...had, ...missed, 'bob|live again']);
    assert.ok(await a.evaluate((r) => window.chat.lastOffset(r), room) > stored);
    fs.mkdirSync(artifacts, { recursive: true });
    await a.screenshot({ path: path.join(artifacts, 'chat-history.png') });
    assert.ok(fs.statSync(path.join(artifacts, 'chat-history.png')).size > 1000, 'screenshot written');

    // A leaves the page; what is said meanwhile shows when it comes back,
    // from the offset in localStorage, and nothing it had shown before.
    await a.goto('about:blank');
    await fromB('while away 1');
    await fromAmqp('while away 2');
    await openChat(base1, 'alice', room, a);
    await a.waitForSelector('#messages li:has-text("while away 2")', { timeout: 15000 });
    await joined(a, room);
    await sleep(300);
    assert.deepEqual(await lines(a), ['bob|while away 1', 'amqp|while away 2']);
    // A plain reload with nothing missed shows nothing old.
    await a.reload();
    await a.waitForSelector('body[data-connected="yes"]', { timeout: 15000 });
    await joined(a, room);
    await fromB('after reload');
    await a.waitForSelector('#messages li:has-text("after reload")', { timeout: 10000 });
    await sleep(300);
    assert.deepEqual(await lines(a), ['bob|after reload']);
    assert.deepEqual([...a.errors, ...b.errors], []);
  } finally {
    await a?.close();
    await b?.close();
    await amqp.close().catch(() => {});
    await g1.stop();
    await g2.stop();
  }
});

// A room whose history expired while the page was away: it shows what is
// left, after a notice that older messages are no longer kept.
test('with --history an offset older than the retention shows a notice, then what is left', { skip }, async () => {
  const room = uniq('exp');
  // This room alone, kept 2 s on 4 KiB segments.
  const g = await startGateway(['--www', root, '--history', `chat.${room}:2s`, '--history-segment-size', '4096']);
  const amqp = await amqpConnect();
  const ch = await amqp.createConfirmChannel();
  const base = `http://127.0.0.1:${g.port}`;
  const post = async (from, to) => {
    for (let i = from; i < to; i++) ch.publish('amq.topic', `chat.${room}`, Buffer.from(`old ${i} ${'.'.repeat(40)}`), { headers: { 'x-chat-name': 'amqp' } });
    await ch.waitForConfirms();
  };
  let page;
  try {
    page = await openChat(base, 'dave', room);
    await joined(page, room);
    await say(page, 'first');
    await page.waitForSelector('#messages li:has-text("first")', { timeout: 10000 });
    await page.goto('about:blank');
    await post(0, 200);
    await sleep(3000);
    await post(200, 400);
    await openChat(base, 'dave', room, page);
    await page.waitForSelector('#messages li:has-text("old 399 ")', { timeout: 20000 });
    await sleep(300);
    const got = await lines(page);
    assert.match(got[0], /^notice\|Older messages are no longer kept/);
    assert.equal(got.filter((l) => l.startsWith('notice|')).length, 1, 'one notice');
    fs.mkdirSync(artifacts, { recursive: true });
    await page.$eval('#messages', (ol) => { ol.scrollTop = 0; }); // the notice in view
    await page.screenshot({ path: path.join(artifacts, 'chat-history-incomplete.png') });
    const nums = got.slice(1).map((l) => Number(l.split(' ')[1]));
    assert.ok(nums[0] > 0, `the oldest are gone (first left: ${nums[0]})`);
    assert.deepEqual(nums, Array.from({ length: 400 - nums[0] }, (_, i) => nums[0] + i), 'what is left, once, in order');
    assert.deepEqual(page.errors, []);
  } finally {
    await page?.close();
    await ch.deleteQueue(`stompgate.history.chat.${room}`).catch(() => {});
    await amqp.close().catch(() => {});
    await g.stop();
  }
});

// A page that kept an offset from a gateway with history, now in front of
// one without: the refused SUBSCRIBE makes it forget the offset, and it
// chats as before.
test('an offset kept from a gateway with history is dropped by one without', { skip }, async () => {
  const port = await freePort();
  const room = uniq('nohist');
  let g = await startGateway(['--www', root, '--history', 'chat.#:1h'], undefined, { port });
  let page;
  try {
    page = await openChat(`http://127.0.0.1:${port}`, 'erin', room);
    await joined(page, room);
    await say(page, 'kept');
    await page.waitForSelector('#messages li:has-text("kept")', { timeout: 10000 });
    assert.equal(typeof await page.evaluate((r) => window.chat.lastOffset(r), room), 'number');
    await page.goto('about:blank');
    await g.stop();
    g = await startGateway(['--www', root], undefined, { port });
    await openChat(`http://127.0.0.1:${port}`, 'erin', room, page).catch(() => {});
    await joined(page, room);
    assert.equal(await page.evaluate((r) => window.chat.lastOffset(r), room), null);
    await say(page, 'plain again');
    await page.waitForSelector('#messages li:has-text("plain again")', { timeout: 10000 });
    assert.deepEqual(await lines(page), ['erin|plain again']);
    assert.match(g.log(), /No history for this subscription|no --history pattern/);
  } finally {
    await page?.close();
    await g.stop();
  }
});

// Offsets are kept per room: a page that goes to another room and comes
// back shows what the first room said meanwhile.
test('with --history a page back from another room shows what the first room said meanwhile', { skip }, async () => {
  const g = await startGateway(['--www', root, '--history', 'chat.#:1h']);
  const amqp = await amqpConnect();
  const ch = await amqp.createConfirmChannel();
  const [x, y] = [uniq('rx'), uniq('ry')];
  const post = async (room, text) => {
    ch.publish('amq.topic', `chat.${room}`, Buffer.from(text), { headers: { 'x-chat-name': 'amqp' } });
    await ch.waitForConfirms();
  };
  const go = async (room) => {
    await page.fill('#room', room);
    await page.dispatchEvent('#room', 'change');
    await joined(page, room);
  };
  let page;
  try {
    page = await openChat(`http://127.0.0.1:${g.port}`, 'frank', x);
    await joined(page, x);
    await say(page, 'in x');
    await page.waitForSelector('#messages li:has-text("in x")', { timeout: 10000 });
    await go(y);
    await post(x, 'x meanwhile 1');
    await post(x, 'x meanwhile 2');
    await post(y, 'in y');
    await page.waitForSelector('#messages li:has-text("in y")', { timeout: 10000 });
    await go(x);
    await page.waitForSelector('#messages li:has-text("x meanwhile 2")', { timeout: 10000 });
    await sleep(300);
    assert.deepEqual(await lines(page), ['frank|in x', 'amqp|in y', 'amqp|x meanwhile 1', 'amqp|x meanwhile 2']);
    const kept = await page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('stompgate-chat offset ')).length);
    assert.equal(kept, 2, 'an offset per room in localStorage');
    assert.deepEqual(page.errors, []);
  } finally {
    await page?.close();
    await amqp.close().catch(() => {});
    await g.stop();
  }
});
