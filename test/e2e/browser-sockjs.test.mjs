// SPDX-License-Identifier: MIT
// SockJS in a real browser: headless Chromium (Debian's) loads a page from
// stompgate's --www root that connects @stomp/stompjs through sockjs-client,
// as a Spring withSockJS() front end does, with each transport forced in
// turn, and two such pages exchange a message.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { launchChromium, skip } from './lib/browser.mjs';
import { startGateway, uniq } from './lib/harness.mjs';


let browser, gw;

const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>SockJS</title>
<script src="sockjs.min.js"></script>
<script src="stomp.umd.min.js"></script>
<script>
  // ?transport=xhr-streaming&dest=/topic/x: connects and records messages.
  const q = new URLSearchParams(location.search);
  window.got = [];
  window.transportUsed = null;
  const client = new StompJs.Client({
    webSocketFactory: () => {
      const s = new SockJS('/stomp', null, { transports: [q.get('transport')] });
      s.addEventListener('open', () => { window.transportUsed = s.transport; });
      return s;
    },
    connectHeaders: { login: 'guest', passcode: 'guest' },
    reconnectDelay: 0,
    heartbeatIncoming: 0,
    heartbeatOutgoing: 0,
  });
  client.onConnect = () => {
    client.subscribe(q.get('dest'), (m) => window.got.push(m.body), { receipt: 'sub' });
    client.watchForReceipt('sub', () => { document.body.dataset.ready = 'yes'; });
  };
  client.onStompError = (f) => { window.stompError = f.headers.message; };
  window.client = client;
  client.activate();
</script>
<body>`;

before(async () => {
  if (skip) return;
  const root = fs.mkdtempSync(path.join(process.env.SG_TMP ?? os.tmpdir(), 'sockjs-www-'));
  fs.writeFileSync(path.join(root, 'index.html'), PAGE);
  fs.copyFileSync('node_modules/sockjs-client/dist/sockjs.min.js', path.join(root, 'sockjs.min.js'));
  fs.copyFileSync('node_modules/@stomp/stompjs/bundles/stomp.umd.min.js', path.join(root, 'stomp.umd.min.js'));
  gw = await startGateway(['--www', root, '--workers', '2']);
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  await gw?.stop();
});

async function openPage(transport, dest) {
  const page = await browser.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(e));
  await page.goto(`http://127.0.0.1:${gw.port}/?transport=${transport}&dest=${encodeURIComponent(dest)}`);
  await page.waitForSelector('body[data-ready="yes"]', { state: 'attached', timeout: 15000 });
  assert.equal(await page.evaluate(() => window.transportUsed), transport);
  return page;
}

for (const transport of ['xhr-streaming', 'xhr-polling', 'websocket']) {
  test(`two pages exchange messages through SockJS ${transport}`, { skip }, async () => {
    const dest = `/topic/${uniq('sockjs')}`;
    const a = await openPage(transport, dest);
    const b = await openPage(transport, dest);
    const text = `hello over ${transport} ✓ "quoted" \u2028`;
    await a.evaluate(([d, t]) => window.client.publish({ destination: d, body: t }), [dest, text]);
    await b.waitForFunction(() => window.got.length === 1, null, { timeout: 10000 });
    assert.equal(await b.evaluate(() => window.got[0]), text);
    await b.evaluate((d) => window.client.publish({ destination: d, body: 'and back' }), dest);
    await a.waitForFunction(() => window.got.length === 2, null, { timeout: 10000 });
    assert.deepEqual(await a.evaluate(() => window.got), [text, 'and back']);
    assert.deepEqual([...a.errors, ...b.errors], []);
    assert.equal(await a.evaluate(() => window.stompError ?? null), null);
    await a.close();
    await b.close();
  });
}

test('no sanitizer report in the gateway\'s log', { skip }, () => {
  assert.doesNotMatch(gw.log(), /runtime error|AddressSanitizer|LeakSanitizer/);
});
