// SPDX-License-Identifier: MIT
// The presence example: deploy/examples/presence-backend follows the
// session events of two gateway instances and keeps who is in each chat
// room; users on different instances see each other come and go, from Node
// clients (@stomp/stompjs) and from the example chat page in headless
// Chromium.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { launchChromium, skip as noBrowser } from './lib/browser.mjs';
import { startGateway, connected, subscribe, receipt, waitFor, uniq, rmqctl, AMQP_PORT } from './lib/harness.mjs';

const exchange = uniq('stompgate.events');
const queue = uniq('presence-service');
const users = { alice: uniq('alice'), bob: uniq('bob') };
const PASS = 'p-presence';
let gws = [], backend, root, browser;

function startBackend() {
  const child = spawn(process.execPath, ['deploy/examples/presence-backend/backend.mjs'], {
    env: { ...process.env, AMQP_URL: `amqp://guest:guest@127.0.0.1:${AMQP_PORT}/`, EVENTS_EXCHANGE: exchange, QUEUE: queue },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  const exited = new Promise((r) => child.on('exit', r));
  return {
    ready: waitFor(() => out.includes('ready'), 15000, 'back end ready'),
    async stop() { if (child.exitCode === null) child.kill('SIGTERM'); await exited; },
  };
}

function exampleRoot() {
  const dir = fs.mkdtempSync(path.join(process.env.SG_TMP ?? os.tmpdir(), 'chat-'));
  fs.cpSync('deploy/examples/chat', dir, { recursive: true });
  fs.mkdirSync(path.join(dir, 'vendor'), { recursive: true });
  fs.copyFileSync('node_modules/@stomp/stompjs/bundles/stomp.umd.min.js', path.join(dir, 'vendor', 'stomp.umd.min.js'));
  return dir;
}

before(async () => {
  for (const u of Object.values(users)) {
    await rmqctl('add_user', u, PASS);
    await rmqctl('set_permissions', '-p', '/', u, '.*', '.*', '.*');
  }
  root = exampleRoot();
  for (const name of ['a', 'b']) {
    const gw = await startGateway(['--events-exchange', exchange, '--instance-id', `presence-${name}`, '--workers', '2', '--www', root]);
    gws.push(gw);
    await waitFor(() => gw.log().includes("application exchange 'stompgate.app' declared") &&
      gw.log().includes(`session events exchange '${exchange}' declared`), 15000, 'exchanges declared');
  }
  backend = startBackend();
  await backend.ready;
});
after(async () => {
  await browser?.close();
  await backend?.stop();
  for (const gw of gws) await gw.stop();
  for (const u of Object.values(users)) await rmqctl('delete_user', u).catch(() => {});
});

const names = (list) => list.users.map((u) => u.user);

// A user's session on a gateway that watches a room's presence, then
// joins it.
async function member(gw, user, room) {
  const c = await connected(gw.url, { connectHeaders: { host: '/', login: user, passcode: PASS } });
  c.lists = [];
  c.replies = [];
  c.onUnhandledMessage = (m) => c.replies.push(JSON.parse(m.body));
  await subscribe(c, `/topic/presence.${room}`, {}, (m) => c.lists.push(JSON.parse(m.body)));
  await subscribe(c, `/topic/chat.${room}`, { id: `chat-${room}` });
  c.last = () => c.lists.reduce((a, b) => (a === null || b.seq > a.seq ? b : a), null);
  return c;
}

test('a user on each instance sees the other; one leaves, the other sees it', async () => {
  const room = uniq('room').replace(/[^A-Za-z0-9_-]/g, '-');
  const alice = await member(gws[0], users.alice, room);
  const bob = await member(gws[1], users.bob, room);
  const both = [users.alice, users.bob].sort();
  await waitFor(() => alice.last() && names(alice.last()).join() === both.join(), 10000, 'alice sees bob');
  await waitFor(() => bob.last() && names(bob.last()).join() === both.join(), 10000, 'bob sees alice');
  assert.equal(alice.last().room, room);

  // Asking: /app/presence/<room> answers the sender with the list.
  const rid = uniq('r');
  alice.publish({ destination: `/app/presence/${room}`, headers: { receipt: rid } });
  await receipt(alice, rid);
  await waitFor(() => alice.replies.length === 1, 10000, 'presence reply');
  assert.deepEqual(alice.replies[0].users, both.map((user) => ({ user, sessions: 1 })));

  // A second session of alice counts, and leaving the room (UNSUBSCRIBE)
  // takes it off again.
  const alice2 = await member(gws[1], users.alice, room);
  await waitFor(() => bob.last().users.find((u) => u.user === users.alice)?.sessions === 2, 10000, 'two sessions');
  const r2 = uniq('r');
  alice2.unsubscribe(`chat-${room}`, { receipt: r2 });
  await receipt(alice2, r2);
  await waitFor(() => bob.last().users.find((u) => u.user === users.alice)?.sessions === 1, 10000, 'one session again');
  await alice2.deactivate();

  // Bob leaves: his gateway's disconnected event reaches the back end,
  // which tells alice on the other instance.
  await bob.deactivate();
  await waitFor(() => names(alice.last()).join() === users.alice, 10000, 'alice sees bob leave');
  await alice.deactivate();
});

test('the chat page shows who is online, across instances (Chromium)', { skip: noBrowser }, async () => {
  browser = await launchChromium();
  const room = uniq('room').replace(/[^A-Za-z0-9_-]/g, '-');
  const open = async (gw, user) => {
    const page = await browser.newPage();
    page.errors = [];
    page.on('pageerror', (e) => page.errors.push(e));
    await page.goto(`http://127.0.0.1:${gw.port}/?name=${user}&room=${room}&login=${user}&passcode=${PASS}`);
    await page.waitForSelector('body[data-connected="yes"]', { timeout: 15000 });
    return page;
  };
  const a = await open(gws[0], users.alice);
  const b = await open(gws[1], users.bob);
  await a.waitForSelector(`#online li[data-user="${users.bob}"]`, { timeout: 10000 });
  await b.waitForSelector(`#online li[data-user="${users.alice}"]`, { timeout: 10000 });
  assert.deepEqual(await a.$$eval('#online li', (lis) => lis.map((li) => li.dataset.user)), [users.alice, users.bob].sort());
  // Bob closes his page; alice's list loses him.
  await b.close();
  await a.waitForSelector(`#online li[data-user="${users.bob}"]`, { state: 'detached', timeout: 10000 });
  assert.deepEqual(await a.$$eval('#online li', (lis) => lis.map((li) => li.dataset.user)), [users.alice]);
  assert.deepEqual(a.errors, []);
  await a.close();
});
