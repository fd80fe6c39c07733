// SPDX-License-Identifier: MIT
// Thousands of sessions opened and dropped in every way a client can leave:
// clean DISCONNECT, socket destroyed after CONNECTED or during the broker
// login, drops in the middle of the HTTP handshake or before CONNECT, ERROR
// frames before and after CONNECT, subscriptions and open transactions left
// behind. Afterwards the gateway must still serve, hold no session, and
// (in a plain build) its RSS must be back near the baseline taken after a
// warm-up. In a sanitizer build LeakSanitizer's report at exit is what
// counts: zz-sanitizers.test.mjs fails on any.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import fs from 'node:fs';
import { startGateway, rawWs, connected, subscribe, receipt, waitFor, sleep, uniq } from './lib/harness.mjs';
import { upgradeRequest } from './lib/rawframes.mjs';

const SESSIONS = +(process.env.SG_CHURN_SESSIONS ?? 2000);
const WARMUP = 200;
const PARALLEL = 16;
const sanitized = (process.env.SG_SANITIZE ?? 'none') !== 'none';

const CONNECT = { 'accept-version': '1.2', host: '/', login: 'guest', passcode: 'guest' };
const frame = (cmd, headers = {}, body = '') => {
  let s = cmd + '\n';
  for (const [k, v] of Object.entries(headers)) s += `${k}:${v}\n`;
  return s + '\n' + body + '\0';
};

let gw;
before(async () => { gw = await startGateway(['--log-level', 'warn']); });
after(async () => { if (gw) await gw.stop(); });

function rssKb(pid) {
  return +/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1];
}

async function opened() {
  const ws = rawWs(gw.url);
  await ws.opened;
  return ws;
}

async function connectedWs() {
  const ws = await opened();
  ws.send(frame('CONNECT', CONNECT));
  await ws.waitFrame('CONNECTED');
  return ws;
}

// Each kind returns once its client side is done; the counts say which ran.
const kinds = {
  async clean() {
    const ws = await connectedWs();
    ws.send(frame('DISCONNECT', { receipt: 'bye' }));
    const { code } = await ws.closed;
    assert.equal(code, 1000);
  },
  async destroyAfterConnected() {
    const ws = await connectedWs();
    ws.terminate();
  },
  async midHandshake() {
    const c = net.connect(gw.port, '127.0.0.1');
    c.on('error', () => {});
    await new Promise((r) => c.on('connect', r));
    const req = upgradeRequest();
    c.write(req.slice(0, 1 + Math.floor(Math.random() * (req.length - 2))));
    await sleep(1);
    c.destroy();
  },
  async beforeConnect() {
    const ws = await opened();
    ws.terminate();
  },
  async duringLogin() {
    const ws = await opened();
    ws.send(frame('CONNECT', CONNECT));
    await sleep(Math.random() * 5);
    ws.terminate();
  },
  async errorAfterConnect() {
    const ws = await connectedWs();
    ws.send(frame('SEND', { destination: '/nowhere/x' }));
    const { code } = await ws.closed;
    assert.equal(code, 1002);
  },
  async errorBeforeConnect() {
    const ws = await opened();
    ws.send('BOGUS\n\n\0');
    const { code } = await ws.closed;
    assert.equal(code, 1002);
  },
  async subscribedThenDestroyed() {
    const ws = await connectedWs();
    ws.send(frame('SUBSCRIBE', { destination: `/topic/churn.${uniq()}`, id: 's', ack: 'client', receipt: 'r' }));
    await ws.waitFrame('RECEIPT');
    ws.terminate();
  },
  async openTransactionDropped() {
    const ws = await connectedWs();
    ws.send(frame('BEGIN', { transaction: 't' }) +
            frame('SEND', { destination: '/topic/churn.tx', transaction: 't' }, 'held'.repeat(100)));
    await sleep(2);
    ws.terminate();
  },
  async clientClose() {
    const ws = await connectedWs();
    ws.close(4000, 'going');
    const { code } = await ws.closed;
    assert.equal(code, 4000);
  },
};
const names = Object.keys(kinds);

async function churn(n, counts) {
  let next = 0;
  const failures = [];
  async function worker() {
    while (next < n) {
      const kind = names[next++ % names.length];
      try {
        await kinds[kind]();
        counts[kind] = (counts[kind] ?? 0) + 1;
      } catch (e) {
        failures.push(`${kind}: ${e.message}`);
      }
    }
  }
  await Promise.all(Array.from({ length: PARALLEL }, worker));
  return failures;
}

test(`${SESSIONS} sessions opened and dropped: the gateway keeps serving and gives its memory back`, { timeout: 900000 }, async () => {
  const pid = gw.child.pid;
  const warm = {};
  assert.deepEqual(await churn(WARMUP, warm), []);
  await sleep(3000); // closing sockets linger up to 2 s
  const baseline = rssKb(pid);

  const counts = {};
  const t0 = Date.now();
  const failures = await churn(SESSIONS, counts);
  const secs = (Date.now() - t0) / 1000;
  assert.deepEqual(failures, [], `client-side failures:\n${failures.slice(0, 20).join('\n')}`);
  let peak = rssKb(pid);

  // Still serving: a full publish/subscribe round trip.
  const topic = uniq('after-churn');
  const sub = await connected(gw.url);
  const got = await subscribe(sub, `/topic/${topic}`);
  const pub = await connected(gw.url);
  pub.publish({ destination: `/topic/${topic}`, body: 'still here', headers: { receipt: 'p' } });
  await receipt(pub, 'p');
  await waitFor(() => got.length === 1, 5000, 'the message');
  await sub.deactivate();
  await pub.deactivate();

  await sleep(3000);
  peak = Math.max(peak, rssKb(pid));
  const end = rssKb(pid);
  console.log(`# churn: ${SESSIONS} sessions in ${secs.toFixed(1)} s ${JSON.stringify(counts)}; ` +
              `RSS baseline ${baseline} kB, peak ${peak} kB, after ${end} kB`);
  assert.equal(Object.values(counts).reduce((a, b) => a + b, 0), SESSIONS);

  // Every session was freed: the gateway logs how many are left on SIGTERM.
  const r = await gw.stop();
  assert.equal(r.code, 0, `gateway exit ${JSON.stringify(r)}`);
  const left = /\((\d+) sessions open\)/.exec(gw.log());
  if (left) assert.equal(+left[1], 0, 'sessions still allocated after all clients left');
  gw = null;

  // ASan keeps freed memory in quarantine, so RSS says nothing there;
  // LeakSanitizer's exit report does.
  if (!sanitized) {
    assert.ok(end - baseline < Math.max(8192, baseline * 0.25),
      `RSS ${end} kB after the churn vs ${baseline} kB before`);
  }
});
