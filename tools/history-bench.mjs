// SPDX-License-Identifier: MIT
// Costs of topics with history (--history): how fast one session catches
// up from a stream, and what the stream costs the broker on disk. Called
// by tools/compare.sh (BENCH_SCENARIOS=history), which starts the broker
// and the gateways; prints one JSON line.
//
//   node tools/history-bench.mjs fill --amqp-port P --key K --messages N
//        [--keys 1] [--size 100] [--stream-dir DIR]
//     publishes N messages of SIZE bytes to amq.topic, in turn with keys
//     K.0 .. K.<keys-1> (the gateway's --history pattern must cover them,
//     so that they land in its stream), with publisher confirms; with
//     --stream-dir, the bytes of that directory (the stream's segments and
//     indexes) before and after.
//
//   node tools/history-bench.mjs catchup --url WS --dest D --messages N
//        [--ack client --prefetch 1000 --ack-every 100] [--pid P] [--broker-pid B]
//     one session subscribes to D with x-stream-offset: first and counts
//     messages until N came: catch-up messages/s, the CPU seconds of the
//     gateway and the broker per million, and their memory. stompgate reads
//     a /topic/K of a --history pattern (ack: auto); Web-STOMP reads the
//     stream queue itself (/amq/queue/NAME) with ack: client and a
//     prefetch, acking every --ack-every messages as it goes.
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import WebSocket from 'ws';
import amqp from 'amqplib';

const [cmd, ...rest] = process.argv.slice(2);
const args = Object.fromEntries(rest.reduce((a, v, i, all) =>
  (v.startsWith('--') ? a.concat([[v.slice(2), all[i + 1]]]) : a), []));
const N = +(args.messages ?? 100000);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const HZ = 100; // USER_HZ, the unit of utime and stime in /proc/PID/stat
const cpuOf = (p) => {
  const f = fs.readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1].split(' ');
  return (+f[11] + +f[12]) / HZ;
};
const status = (p, field) => +new RegExp(`${field}:\\s+(\\d+)`).exec(fs.readFileSync(`/proc/${p}/status`, 'utf8'))[1];
const dirBytes = (d) => +execFileSync('du', ['-sb', d]).toString().split('\t')[0];
// Bytes of the files in d whose names end in ext (.segment, .index).
const filesBytes = (d, ext) => fs.readdirSync(d).filter((f) => f.endsWith(ext))
  .reduce((n, f) => n + fs.statSync(`${d}/${f}`).size, 0);

async function fill() {
  const size = +(args.size ?? 100);
  const keys = +(args.keys ?? 1);
  const before = args['stream-dir'] ? dirBytes(args['stream-dir']) : undefined;
  const conn = await amqp.connect(`amqp://guest:guest@127.0.0.1:${args['amqp-port']}`);
  const ch = await conn.createConfirmChannel();
  const t0 = Date.now();
  for (let i = 0; i < N; i++) {
    // A numbered body of SIZE bytes.
    const head = `${i}|`;
    ch.publish('amq.topic', `${args.key}.${i % keys}`, Buffer.from(head + 'x'.repeat(Math.max(0, size - head.length))));
    if (i % 1000 === 999) await ch.waitForConfirms();
  }
  await ch.waitForConfirms();
  const seconds = (Date.now() - t0) / 1000;
  await conn.close();
  // The stream writes and flushes its segments on its own schedule.
  await sleep(2000);
  const dir = args['stream-dir'];
  const after = dir ? dirBytes(dir) : undefined;
  console.log(JSON.stringify({
    scenario: 'history-fill', messages: N, size, keys, publish_s: seconds, publish_per_s: Math.round(N / seconds),
    stream_dir: args['stream-dir'], stream_bytes_before: before, stream_bytes_after: after,
    disk_bytes_per_message: after !== undefined ? (after - before) / N : undefined,
    segment_bytes: dir ? filesBytes(dir, '.segment') : undefined, index_bytes: dir ? filesBytes(dir, '.index') : undefined,
  }));
}

const frame = (c, h = {}, b = '') => c + '\n' + Object.entries(h).map(([k, v]) => `${k}:${v}\n`).join('') + '\n' + b + '\0';

async function catchup() {
  const pid = args.pid, bpid = args['broker-pid'];
  const webstomp = pid === bpid;
  const ackMode = args.ack ?? 'auto';
  const ackEvery = +(args['ack-every'] ?? 100);
  const ws = new WebSocket(args.url, ['v12.stomp'], { perMessageDeflate: false });
  let buf = '';
  let connected = false, got = 0, firstOffset, lastOffset, firstBody, lastBody, error;
  let tFirst;
  const sub = { id: 'h', destination: args.dest, ack: ackMode, 'x-stream-offset': 'first' };
  if (args.prefetch) sub['prefetch-count'] = args.prefetch;
  ws.on('message', (d) => {
    buf += d.toString();
    let z;
    while ((z = buf.indexOf('\0')) >= 0) {
      const raw = buf.slice(0, z).replace(/^[\r\n]+/, '');
      buf = buf.slice(z + 1);
      const nl = raw.indexOf('\n');
      const c = raw.slice(0, nl);
      if (c === 'CONNECTED') { connected = true; continue; }
      if (c === 'ERROR') { error = raw.slice(0, 300); continue; }
      if (c !== 'MESSAGE') continue;
      const sep = raw.indexOf('\n\n');
      const head = raw.slice(0, sep);
      got++;
      if (got === 1) {
        tFirst = process.hrtime.bigint();
        firstBody = raw.slice(sep + 2, sep + 12);
        firstOffset = /\nx-stream-offset:(\d+)/.exec(head)?.[1];
      }
      if (got === N) {
        lastBody = raw.slice(sep + 2, sep + 12);
        lastOffset = /\nx-stream-offset:(\d+)/.exec(head)?.[1];
      }
      if (ackMode !== 'auto' && (got % ackEvery === 0 || got === N)) {
        const id = /\nack:([^\n]*)/.exec(head)?.[1] ?? /\nmessage-id:([^\n]*)/.exec(head)[1];
        ws.send(frame('ACK', { id }));
      }
    }
  });
  await new Promise((r, j) => { ws.on('open', r); ws.on('error', j); });
  ws.send(frame('CONNECT', { 'accept-version': '1.2', host: '/', login: 'guest', passcode: 'guest', 'heart-beat': '0,0' }));
  while (!connected && !error) await sleep(5);
  const rss0 = pid ? status(pid, 'VmRSS') : undefined;
  const brss0 = bpid ? status(bpid, 'VmRSS') : undefined;
  const cpu0 = pid ? cpuOf(pid) : 0, bcpu0 = bpid ? cpuOf(bpid) : 0;
  const self0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  let peak = 0, bpeak = 0;
  ws.send(frame('SUBSCRIBE', sub));
  const deadline = Date.now() + +(args.timeout ?? 300) * 1000;
  while (got < N && !error && Date.now() < deadline) {
    await sleep(20);
    if (pid) peak = Math.max(peak, status(pid, 'VmRSS'));
    if (bpid) bpeak = Math.max(bpeak, status(bpid, 'VmRSS'));
  }
  const t1 = process.hrtime.bigint();
  const seconds = Number(t1 - t0) / 1e9;
  const cpu = pid ? cpuOf(pid) - cpu0 : undefined, bcpu = bpid ? cpuOf(bpid) - bcpu0 : undefined;
  const self = process.cpuUsage(self0);
  ws.send(frame('DISCONNECT'));
  ws.close();
  // Gateway + broker CPU; Web-STOMP runs inside the broker and counts once.
  const total = webstomp ? bcpu : (cpu ?? 0) + (bcpu ?? 0);
  console.log(JSON.stringify({
    scenario: 'history-catchup', dest: args.dest, ack: ackMode, prefetch: args.prefetch ? +args.prefetch : undefined,
    expected: N, delivered: got, completed: got === N ? 1 : 0, errors: error ? 1 : 0, first_error: error,
    first_offset: firstOffset === undefined ? undefined : +firstOffset, last_offset: lastOffset === undefined ? undefined : +lastOffset,
    first_body: firstBody, last_body: lastBody,
    seconds, messages_per_s: Math.round(got / seconds),
    first_message_ms: tFirst ? Number(tFirst - t0) / 1e6 : undefined,
    gateway_cpu_s: webstomp ? undefined : cpu, broker_cpu_s: bcpu,
    cpu_s_per_million: got ? total / got * 1e6 : undefined,
    client_cpu_s: (self.user + self.system) / 1e6,
    gateway_rss_kb_before: webstomp ? undefined : rss0, gateway_rss_kb_peak: webstomp ? undefined : peak,
    broker_rss_kb_before: brss0, broker_rss_kb_peak: bpeak,
  }));
  process.exit(got === N && !error ? 0 : 1);
}

if (cmd === 'fill') await fill();
else if (cmd === 'catchup') await catchup();
else { console.error('usage: history-bench.mjs fill|catchup ...'); process.exit(2); }
