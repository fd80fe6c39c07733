// SPDX-License-Identifier: MIT
// Bytes on the wire with and without permessage-deflate, for any STOMP
// over WebSocket endpoint (stompgate or Web-STOMP): SUBSCRIBERS sessions
// (ws, offering the extension or not) subscribe to one topic, a publisher
// that does not compress sends MESSAGES JSON bodies of 4.8 KB, and
// the script prints one JSON line: the extension the server answered,
// bytes read per MESSAGE by the subscribers, the server's CPU per thousand
// deliveries (alone and with the broker's), and its RSS per subscribed
// session.
//   node tools/wire-bytes.mjs --url ws://127.0.0.1:15674/ws --compress on|off
//        [--pid PID] [--broker-pid PID] [--subscribers 100] [--messages 50]
import fs from 'node:fs';
import WebSocket from 'ws';

const args = Object.fromEntries(process.argv.slice(2).reduce((a, v, i, all) =>
  (v.startsWith('--') ? a.concat([[v.slice(2), all[i + 1]]]) : a), []));
const url = args.url;
const compress = (args.compress ?? 'on') === 'on';
const SUBS = +(args.subscribers ?? 100);
const MSGS = +(args.messages ?? 50);
// Web-STOMP runs inside the broker: the same PID twice counts once.
const pids = [...new Set([args.pid, args['broker-pid']].filter(Boolean))];

const HZ = 100; // USER_HZ, the unit of utime and stime in /proc/PID/stat
const cpuOf = (list) => list.reduce((s, p) => {
  const f = fs.readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1].split(' ');
  return s + (+f[11] + +f[12]) / HZ;
}, 0);
const cpu = () => [cpuOf(args.pid ? [args.pid] : []), cpuOf(pids)];
const rss = (p) => p ? +/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${p}/status`, 'utf8'))[1] : NaN;

// The k-th body: the same keys and symbols each time, other prices and
// ids, as a stream of updates has; about 4.8 KB.
function body(k) {
  const rows = [];
  for (let i = 0; rows.join(',').length < 4750; i++)
    rows.push(JSON.stringify({ id: k * 1000 + i, symbol: `SYM${i % 40}`, price: +((i * 7.31 + k * 3.17) % 1000).toFixed(2),
      side: (i + k) % 2 ? 'buy' : 'sell' }));
  return '[' + rows.join(',') + ']';
}
const frame = (cmd, h = {}, b = '') => cmd + '\n' + Object.entries(h).map(([k, v]) => `${k}:${v}\n`).join('') + '\n' + b + '\0';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function session(pmd) {
  const ws = new WebSocket(url, ['v12.stomp'], { perMessageDeflate: pmd });
  ws.n = 0;
  ws.answer = '';
  ws.on('upgrade', (res) => { ws.answer = res.headers['sec-websocket-extensions'] ?? ''; });
  ws.on('message', (d) => { ws.n++; ws.last = d.toString(); });
  await new Promise((r, j) => { ws.on('open', r); ws.on('error', j); });
  ws.send(frame('CONNECT', { 'accept-version': '1.2', host: '/', login: 'guest', passcode: 'guest' }));
  while (ws.n < 1) await sleep(5);
  return ws;
}

const topic = `/topic/wire.${process.pid}.${Date.now()}`;
const rss0 = rss(args.pid);
const subs = [];
for (let i = 0; i < SUBS; i++) {
  const s = await session(compress);
  s.send(frame('SUBSCRIBE', { id: 'sub-0', destination: topic, receipt: 'r' }));
  subs.push(s);
}
while (subs.some((s) => s.n < 2)) await sleep(10);
await sleep(500);
const rss1 = rss(args.pid);
const pub = await session(false);
const bodies = Array.from({ length: MSGS }, (_, k) => body(k));
const read0 = subs.reduce((n, s) => n + s._socket.bytesRead, 0);
const cpu0 = cpu();
const t0 = Date.now();
for (const b of bodies) pub.send(frame('SEND', { destination: topic, 'content-type': 'application/json' }, b));
const end = Date.now() + 120000;
while (subs.some((s) => s.n < 2 + MSGS) && Date.now() < end) await sleep(10);
const seconds = (Date.now() - t0) / 1000;
const cpu1 = cpu();
const read1 = subs.reduce((n, s) => n + s._socket.bytesRead, 0);
const delivered = subs.reduce((n, s) => n + s.n - 2, 0);
const intact = subs.every((s) => s.last.includes('\n\n' + bodies[MSGS - 1] + '\0'));
console.log(JSON.stringify({
  url, compress, extensions: subs[0].answer, subscribers: SUBS, messages: MSGS, body_bytes: Math.round(bodies.reduce((n, b) => n + b.length, 0) / MSGS),
  delivered, expected: SUBS * MSGS, intact,
  wire_bytes_per_message: Math.round((read1 - read0) / Math.max(1, delivered)),
  server_cpu_s_per_thousand: args.pid ? +((cpu1[0] - cpu0[0]) / delivered * 1000).toFixed(4) : null,
  with_broker_cpu_s_per_thousand: pids.length ? +((cpu1[1] - cpu0[1]) / delivered * 1000).toFixed(4) : null,
  rss_kb_per_session: args.pid ? +((rss1 - rss0) / SUBS).toFixed(1) : null,
  seconds,
}));
for (const s of subs) s.terminate();
pub.terminate();
process.exit(0);
