// SPDX-License-Identifier: MIT
// History soak: topics with history (--history) under steady traffic while
// clients keep losing their connections. For each relay mode in turn, two
// gateways in that mode keep one stream (pattern hs<mode>.#); a publisher
// sends a steady rate to a few keys through amq.topic, and a share of it as
// STOMP SENDs through a gateway. Clients subscribe to one key (one client to
// all of them with a wildcard), and every few seconds drop their WebSocket
// without a DISCONNECT, stay away a moment and resume through a random
// gateway with x-stream-offset: offset=<last+1>. At the end every client
// must have received, exactly once and in stream order, every message of
// its keys that the stream holds from its first delivery on: the stream
// itself, read over AMQP, is the reference. Prints TAP on stdout; the rest
// goes to stderr.
//
// Environment (set by test/soak/history.sh): STOMPGATE_BIN, SG_AMQP_PORT,
// SG_TMP; HISTORY_SOAK_SECONDS (publishing time per mode, default 30),
// HISTORY_SOAK_MODES (default "per-session,shared"), HISTORY_SOAK_RATE
// (messages per second in all, default 200), HISTORY_SOAK_CLIENTS
// (default 8), HISTORY_SOAK_SEGMENT_SIZE (--history-segment-size, default
// 4096), HISTORY_SOAK_PLANT (gap or dup: one client drops or repeats one
// delivery on purpose, to see the run fail).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { freePort, portOpen, httpGet, metric, cleanEnv, tap } from './lib.mjs';
import WebSocket from 'ws';
import amqp from 'amqplib';

const BIN = process.env.STOMPGATE_BIN;
const AMQP_PORT = +process.env.SG_AMQP_PORT;
const TMP = process.env.SG_TMP;
const SECONDS = +(process.env.HISTORY_SOAK_SECONDS ?? 30);
const MODES = (process.env.HISTORY_SOAK_MODES ?? 'per-session,shared').split(',').filter(Boolean);
const RATE = +(process.env.HISTORY_SOAK_RATE ?? 200);
const NCLIENTS = +(process.env.HISTORY_SOAK_CLIENTS ?? 8);
const PLANT = process.env.HISTORY_SOAK_PLANT ?? '';
// Segments of about 20 messages, so that resumes land on segment
// boundaries (the stream's offsets skip the entry that begins each
// segment) a few times a run.
const SEGMENT = +(process.env.HISTORY_SOAK_SEGMENT_SIZE ?? 4096);
const KEYS = 4;
// Every STOMP_EVERY-th message goes as a STOMP SEND through a gateway.
const STOMP_EVERY = 5;
// A client drops its connection after DROP_MIN..DROP_MAX ms, and stays away
// up to AWAY_MAX ms (now and then longer, so that the catch-up is long).
const DROP_MIN = 2000, DROP_MAX = 5000, AWAY_MAX = 800, LONG_AWAY = 3000;
const SANITIZED = (process.env.SG_SANITIZE ?? 'none') !== 'none';
const SAN_DIR = process.env.SG_SAN_DIR;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const t0 = Date.now();
const log = (...a) => console.error(`[history-soak ${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);

// ---- TAP ----------------------------------------------------------------

const { check, skip, diag, printTap, anyFailed } = tap(log);

// ---- the verdict on one client --------------------------------------------

// want: the stream offsets the client must get, ascending; got: the offsets
// of its deliveries, in arrival order. A gap is a wanted offset never
// delivered, a duplicate a delivery of an offset already delivered, out of
// order a first delivery of an offset below one delivered before it; extra
// is a delivery of an offset that is not wanted (another key, or one the
// stream does not hold).
export function score(want, got) {
  const wanted = new Set(want);
  const seen = new Set();
  let dups = 0, outOfOrder = 0, extra = 0, max = -Infinity;
  for (const o of got) {
    if (seen.has(o)) { dups++; continue; }
    seen.add(o);
    if (!wanted.has(o)) extra++;
    if (o < max) outOfOrder++;
    max = Math.max(max, o);
  }
  const missing = want.filter((o) => !seen.has(o));
  return { gaps: missing.length, missing, dups, outOfOrder, extra };
}

// The counter must see what it is there to see: a skipped, a repeated and
// a swapped delivery, each on its own.
function selfCheck() {
  const want = [3, 5, 6, 9, 10, 12];
  const cases = [
    ['exact', [3, 5, 6, 9, 10, 12], { gaps: 0, dups: 0, outOfOrder: 0, extra: 0 }],
    ['one skipped', [3, 5, 9, 10, 12], { gaps: 1, dups: 0, outOfOrder: 0, extra: 0 }],
    ['one repeated after a resume', [3, 5, 6, 9, 9, 10, 12], { gaps: 0, dups: 1, outOfOrder: 0, extra: 0 }],
    ['two swapped', [3, 5, 9, 6, 10, 12], { gaps: 0, dups: 0, outOfOrder: 1, extra: 0 }],
    ['a foreign offset', [3, 4, 5, 6, 9, 10, 12], { gaps: 0, dups: 0, outOfOrder: 0, extra: 1 }],
  ];
  const wrong = [];
  for (const [what, got, exp] of cases) {
    const s = score(want, got);
    for (const k of Object.keys(exp)) if (s[k] !== exp[k]) wrong.push(`${what}: ${k} ${s[k]}, expected ${exp[k]}`);
  }
  check(wrong.length === 0, 'self-check: the counter finds a skipped, a repeated and a swapped delivery', wrong);
}

// ---- gateways -------------------------------------------------------------

const gateways = [];
class Gateway {
  constructor(name, mode, workers, history) {
    this.name = name; this.mode = mode; this.workers = workers; this.history = history;
  }

  async start() {
    this.port = await freePort();
    this.adminPort = await freePort();
    this.url = `ws://127.0.0.1:${this.port}/ws`;
    const logFd = fs.openSync(`${TMP}/gateway-${this.name}.log`, 'a');
    this.child = spawn(BIN, [
      '--listen', `127.0.0.1:${this.port}`, '--admin', `127.0.0.1:${this.adminPort}`,
      '--broker', `amqp://guest:guest@127.0.0.1:${AMQP_PORT}/`, '--mode', this.mode,
      '--workers', String(this.workers), '--log-level', 'info', '--history', this.history,
      '--history-segment-size', String(SEGMENT),
    ], { env: cleanEnv(), stdio: ['ignore', 'ignore', logFd] });
    fs.closeSync(logFd);
    fs.appendFileSync(`${TMP}/pids`, `${this.child.pid}\n`);
    this.exit = null;
    const child = this.child;
    this.exited = new Promise((r) => child.on('exit', (code, sig) => { this.exit = { code, sig }; r(); }));
    for (let i = 0; i < 200 && !(await portOpen(this.port)); i++) await sleep(50);
    // Ready once the history stream is declared and bound.
    for (let i = 0; i < 200 && (await httpGet(this.adminPort, '/readyz')).status !== 200; i++) await sleep(50);
  }

  alive() { return this.exit === null && this.child.exitCode === null && this.child.signalCode === null; }

  async stop() {
    if (!this.alive()) return;
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(t);
  }
}

process.on('exit', () => { for (const g of gateways) if (g.child && g.alive()) g.child.kill('SIGKILL'); });
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { console.log(`Bail out! ${sig}`); process.exit(1); });

// ---- STOMP over a bare WebSocket ----------------------------------------------

function frame(command, headers, body = '') {
  let s = `${command}\n`;
  for (const [k, v] of Object.entries(headers)) s += `${k}:${v}\n`;
  return `${s}\n${body}\0`;
}

// Splits what a WebSocket brings into frames (one message may carry
// several; heart-beats are bare newlines). Header values here need no
// unescaping.
function frameParser(onFrame) {
  let buf = '';
  return (data) => {
    buf += data.toString();
    let z;
    while ((z = buf.indexOf('\0')) >= 0) {
      const raw = buf.slice(0, z).replace(/^[\r\n]+/, '');
      buf = buf.slice(z + 1);
      const sep = raw.indexOf('\n\n');
      const head = (sep < 0 ? raw : raw.slice(0, sep)).split('\n');
      const headers = {};
      for (const line of head.slice(1)) {
        const c = line.indexOf(':');
        if (c > 0 && !(line.slice(0, c) in headers)) headers[line.slice(0, c)] = line.slice(c + 1);
      }
      onFrame({ command: head[0], headers, body: sep < 0 ? '' : raw.slice(sep + 2) });
    }
  };
}

// Opens a session on url; resolves with the socket once CONNECTED came.
function stompOpen(url, onFrame) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, ['v12.stomp']);
    const t = setTimeout(() => { ws.terminate(); reject(new Error(`no CONNECTED from ${url}`)); }, 10000);
    let connected = false;
    ws.on('open', () => ws.send(frame('CONNECT', { 'accept-version': '1.2', host: '/', login: 'guest', passcode: 'guest', 'heart-beat': '0,0' })));
    ws.on('message', frameParser((f) => {
      if (!connected && f.command === 'CONNECTED') { connected = true; clearTimeout(t); resolve(ws); return; }
      if (!connected) { clearTimeout(t); ws.terminate(); reject(new Error(`${f.command} ${f.headers.message ?? ''}`)); return; }
      onFrame(f, ws);
    }));
    ws.on('error', (e) => { if (!connected) { clearTimeout(t); reject(e); } });
    ws.on('close', () => { if (!connected) { clearTimeout(t); reject(new Error(`closed before CONNECTED (${url})`)); } });
  });
}

// ---- a client that keeps dropping and resuming ------------------------------

class Resumer {
  constructor(name, dest, matches, pickGateway) {
    this.name = name; this.dest = dest; this.matches = matches; this.pick = pickGateway;
    this.got = [];          // offsets, in arrival order, over every session
    this.bodies = new Map(); // offset -> body, as first delivered
    this.last = null;       // offset of the last delivery
    this.ws = null;
    this.sessions = 0; this.drops = 0; this.errors = []; this.incomplete = 0; this.noOffset = 0;
    this.planted = false;
    this.first = false;
  }

  async connect() {
    for (let attempt = 0; ; attempt++) {
      const gw = this.pick();
      const headers = { id: 'h', destination: this.dest, ack: 'auto' };
      if (this.last !== null) headers['x-stream-offset'] = `offset=${this.last + 1}`;
      try {
        const ws = await stompOpen(gw.url, (f, sock) => this.onFrame(f, sock));
        this.ws = ws;
        this.gw = gw;
        ws.on('close', () => { if (this.ws === ws) this.ws = null; });
        ws.send(frame('SUBSCRIBE', headers));
        this.sessions++;
        return;
      } catch (e) {
        this.errors.push(`connect to ${gw.name}: ${e.message}`);
        if (attempt > 20) throw e;
        await sleep(200);
      }
    }
  }

  onFrame(f, sock) {
    // Whatever a dropped socket still hands over is not counted: the
    // client has given that session up.
    if (sock !== this.ws) return;
    if (f.command === 'ERROR') { this.errors.push(`ERROR ${f.headers.message}: ${f.body.slice(0, 200)}`); return; }
    if (f.command !== 'MESSAGE') return;
    const o = Number(f.headers['x-stream-offset']);
    if (!Number.isInteger(o)) { this.noOffset++; return; }
    if (f.headers['x-history-incomplete'] !== undefined) this.incomplete++;
    this.last = o;
    // A planted fault, to see the verdict fail: one delivery of the first
    // client left out, or counted twice.
    if (PLANT && this.first && !this.planted && this.got.length === 200) {
      this.planted = true;
      if (PLANT === 'gap') return;
      if (PLANT === 'dup') this.got.push(o);
    }
    this.got.push(o);
    if (!this.bodies.has(o)) this.bodies.set(o, f.body);
  }

  // Drops the connection without a DISCONNECT: the TCP connection is
  // destroyed, as when a network goes away.
  drop() {
    if (!this.ws) return;
    const ws = this.ws;
    this.ws = null;
    ws.terminate();
    this.drops++;
  }

  async run(until) {
    await this.connect();
    while (Date.now() < until()) {
      await sleep(DROP_MIN + Math.random() * (DROP_MAX - DROP_MIN));
      if (Date.now() >= until()) break;
      this.drop();
      await sleep(Math.random() < 0.15 ? LONG_AWAY : Math.random() * AWAY_MAX);
      await this.connect();
    }
  }

  close() { if (this.ws) { try { this.ws.send(frame('DISCONNECT', {})); } catch { /* gone */ } this.ws.close(); this.ws = null; } }
}

// ---- one relay mode -----------------------------------------------------------

// The stream's content, read over AMQP from its first offset: offset ->
// { key, body }, until `total` entries are in or nothing comes for 2 s.
async function readStream(conn, queue, total) {
  const ch = await conn.createChannel();
  await ch.prefetch(1000);
  const entries = new Map();
  let lastAt = Date.now();
  await ch.consume(queue, (m) => {
    const o = Number(m.properties.headers['x-stream-offset']);
    entries.set(o, { key: m.fields.routingKey, body: m.content.toString() });
    lastAt = Date.now();
    ch.ack(m);
  }, { noAck: false, arguments: { 'x-stream-offset': 'first' } });
  while (entries.size < total || Date.now() - lastAt < 300) {
    if (Date.now() - lastAt > 2000) break;
    await sleep(50);
  }
  await ch.close().catch(() => {});
  return entries;
}

async function runMode(mode, conn) {
  const tag = mode === 'shared' ? 'sh' : 'ps';
  const prefix = `hs${tag}${process.pid}`;
  const history = `${prefix}.#:1h`;
  const queue = `stompgate.history.${prefix}.#`;
  const keys = Array.from({ length: KEYS }, (_, i) => `${prefix}.k${i}`);
  const gws = [new Gateway(`${mode}-a`, mode, 2, history), new Gateway(`${mode}-b`, mode, 1, history)];
  gateways.push(...gws);
  for (const g of gws) await g.start();
  diag(`${mode}: gateways pid ${gws.map((g) => `${g.child.pid} port ${g.port}`).join(', ')}; stream ${queue}`);
  check(gws.every((g) => g.alive()), `${mode}: both gateways started with --history ${history}`,
    gws.filter((g) => !g.alive()).map((g) => `${g.name} exited: ${JSON.stringify(g.exit)}`));

  // Publishers: amq.topic over a confirm channel, and STOMP SENDs with
  // receipts through the first gateway, at RATE in all, round robin over
  // the keys.
  const ch = await conn.createConfirmChannel();
  let amqpSent = 0, stompSent = 0, receipts = 0, seq = 0;
  const sendErrors = [];
  const sender = await stompOpen(gws[0].url, (f) => {
    if (f.command === 'RECEIPT') receipts++;
    else if (f.command === 'ERROR') sendErrors.push(`${f.headers.message}: ${f.body.slice(0, 200)}`);
  });
  let publishing = true;
  const publisher = (async () => {
    const start = Date.now();
    while (publishing) {
      const due = Math.floor(((Date.now() - start) / 1000) * RATE);
      while (seq < due) {
        const key = keys[seq % KEYS];
        const body = `${key}|${seq}`;
        if (seq % STOMP_EVERY === STOMP_EVERY - 1) {
          sender.send(frame('SEND', { destination: `/topic/${key}`, receipt: `r${seq}` }, body));
          stompSent++;
        } else {
          ch.publish('amq.topic', key, Buffer.from(body));
          amqpSent++;
        }
        seq++;
      }
      await ch.waitForConfirms();
      await sleep(20);
    }
  })();

  // Clients: one key each, and one on every key through a wildcard.
  const pick = () => gws[Math.floor(Math.random() * gws.length)];
  const clients = [];
  for (let i = 0; i < NCLIENTS; i++) {
    if (i === NCLIENTS - 1 && NCLIENTS > 1) clients.push(new Resumer(`${mode}-c${i}`, `/topic/${prefix}.*`, () => true, pick));
    else { const k = keys[i % KEYS]; clients.push(new Resumer(`${mode}-c${i}`, `/topic/${k}`, (key) => key === k, pick)); }
  }
  clients[0].first = true;
  const end = Date.now() + SECONDS * 1000;
  const runs = clients.map(async (c, i) => { await sleep(i * 150); return c.run(() => end); });
  let clientFailure;
  try { await Promise.all(runs); } catch (e) { clientFailure = e; }
  publishing = false;
  await publisher;
  const total = amqpSent + stompSent;
  const receiptsIn = await waitFor(() => receipts === stompSent, 10000);
  check(!clientFailure, `${mode}: every client could always reconnect`, clientFailure ? [clientFailure.message] : []);
  check(receiptsIn && sendErrors.length === 0, `${mode}: every STOMP SEND was receipted`,
    [`receipts ${receipts} of ${stompSent}`, ...sendErrors.slice(0, 5)]);

  // The reference: what the stream holds, read over AMQP.
  const stream = await readStream(conn, queue, total);
  const bodies = new Set([...stream.values()].map((e) => e.body));
  let lostByBroker = 0;
  for (let s = 0; s < seq; s++) if (!bodies.has(`${keys[s % KEYS]}|${s}`)) lostByBroker++;
  diag(`${mode}: published ${total} (${amqpSent} over AMQP, ${stompSent} as STOMP SEND) in ${SECONDS}s; the stream holds ${stream.size}`);
  check(lostByBroker === 0 && stream.size === total, `${mode}: the stream holds every published message once`,
    [`${lostByBroker} published bodies not in the stream; ${stream.size} entries for ${total} published`]);
  const ordered = [...stream.keys()].sort((a, b) => a - b);

  // What each client must get: every message of its keys in the stream
  // from its first delivery on. Every client catches up to the last one.
  const wantOf = (c) => {
    if (!c.got.length) return [];
    const from = c.got.reduce((a, b) => Math.min(a, b), Infinity);
    return ordered.filter((o) => o >= from && c.matches(stream.get(o).key));
  };
  const lastWanted = new Map(clients.map((c) => { const w = wantOf(c); return [c, w[w.length - 1]]; }));
  await waitFor(() => clients.every((c) => c.ws && (lastWanted.get(c) === undefined || c.last >= lastWanted.get(c))), 30000);
  await sleep(1000); // anything late (a duplicate) comes in too
  for (const c of clients) c.close();

  // ---- verdicts ----
  let gaps = 0, dups = 0, outOfOrder = 0, extra = 0, wrongBody = 0, delivered = 0, drops = 0, sessions = 0;
  let incomplete = 0, noOffset = 0;
  const detail = [];
  for (const c of clients) {
    const want = wantOf(c);
    const s = score(want, c.got);
    for (const [o, b] of c.bodies) if (stream.get(o)?.body !== b) wrongBody++;
    gaps += s.gaps; dups += s.dups; outOfOrder += s.outOfOrder; extra += s.extra;
    delivered += c.got.length; drops += c.drops; sessions += c.sessions;
    incomplete += c.incomplete; noOffset += c.noOffset;
    const line = `${c.name} ${c.dest}: ${c.sessions} sessions, ${c.drops} drops, ${c.got.length} deliveries, ${want.length} wanted` +
      ` (offsets ${want[0] ?? '-'}..${want[want.length - 1] ?? '-'}): gaps ${s.gaps}, duplicates ${s.dups}, out of order ${s.outOfOrder}, foreign ${s.extra}`;
    diag(line);
    if (s.gaps || s.dups || s.outOfOrder || s.extra) {
      detail.push(line);
      if (s.missing.length) detail.push(`  missing offsets, first ones: ${s.missing.slice(0, 10).join(' ')}`);
    }
    if (c.errors.length) detail.push(`  ${c.name} errors: ${c.errors.slice(0, 3).join('; ')}`);
  }
  diag(`${mode}: gaps ${gaps}`);
  diag(`${mode}: duplicates ${dups}`);
  diag(`${mode}: out of order ${outOfOrder}`);
  diag(`${mode}: foreign ${extra}, wrong bodies ${wrongBody}, without x-stream-offset ${noOffset}, marked x-history-incomplete ${incomplete}`);
  diag(`${mode}: ${delivered} deliveries to ${clients.length} clients over ${sessions} sessions (${drops} abrupt drops)`);
  check(clients.every((c) => c.got.length > 0), `${mode}: every client received messages`);
  check(drops >= clients.length, `${mode}: clients dropped and resumed (${drops} drops)`);
  check(gaps === 0 && dups === 0, `${mode}: every client got every message of its keys once, through every resume (gaps ${gaps}, duplicates ${dups})`, detail.slice(0, 30));
  check(outOfOrder === 0 && extra === 0 && wrongBody === 0, `${mode}: in stream order, only its keys, bodies intact (out of order ${outOfOrder}, foreign ${extra}, wrong bodies ${wrongBody})`);
  check(noOffset === 0 && incomplete === 0, `${mode}: every MESSAGE carries x-stream-offset and none is marked incomplete`);
  check(clients.every((c) => c.errors.every((e) => !e.startsWith('ERROR'))), `${mode}: no ERROR frame`,
    clients.flatMap((c) => c.errors.filter((e) => e.startsWith('ERROR')).map((e) => `${c.name}: ${e}`)).slice(0, 10));

  // The gateways' own count.
  const m = { resumes: 0, switches: 0, catchup: 0, incomplete: 0 };
  for (const g of gws) {
    const t = (await httpGet(g.adminPort, '/metrics')).body;
    m.resumes += metric(t, 'stompgate_history_resumes_total');
    m.switches += metric(t, 'stompgate_history_switches_total');
    m.catchup += metric(t, 'stompgate_history_catchup_messages_total');
    m.incomplete += metric(t, 'stompgate_history_incomplete_total');
  }
  diag(`${mode}: metrics of both gateways: resumes ${m.resumes}, switches ${m.switches}, catch-up messages ${m.catchup}, incomplete ${m.incomplete}`);
  const resumes = sessions - clients.length;
  // Each resume counts once; a client dropped the moment it sent its
  // SUBSCRIBE may go uncounted, at most one per client.
  if (m.resumes !== resumes) diag(`${mode}: stompgate_history_resumes_total ${m.resumes} for ${resumes} resumes made`);
  check(m.resumes <= resumes && m.resumes >= resumes - clients.length && m.incomplete === 0,
    `${mode}: the gateways counted the ${resumes} resumes once each and no incomplete one`,
    [`stompgate_history_resumes_total ${m.resumes}, stompgate_history_incomplete_total ${m.incomplete}`]);
  if (mode === 'shared') {
    check(m.switches > 0, `${mode}: resumed subscriptions moved from their catch-up read onto the worker's live feed (${m.switches} switches)`);
  }
  check(gws.every((g) => g.alive()), `${mode}: both gateways still up`, gws.map((g) => `${g.name}: exit ${JSON.stringify(g.exit)}`));

  sender.close();
  await ch.close().catch(() => {});
  for (const g of gws) await g.stop();
}

async function waitFor(pred, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await pred()) return true;
    await sleep(100);
  }
  return !!(await pred());
}

async function main() {
  selfCheck();
  diag(`modes ${MODES.join(', ')}: ${SECONDS}s each at ${RATE} messages/s over ${KEYS} keys (1 in ${STOMP_EVERY} as STOMP SEND), ${NCLIENTS} clients dropping every ${DROP_MIN / 1000}-${DROP_MAX / 1000}s${PLANT ? `; planted: ${PLANT}` : ''}`);
  const conn = await amqp.connect(`amqp://guest:guest@127.0.0.1:${AMQP_PORT}`);
  try {
    for (const mode of MODES) await runMode(mode, conn);
  } finally {
    await conn.close().catch(() => {});
  }
  diag(`run took ${((Date.now() - t0) / 1000).toFixed(1)}s`);
}

try {
  await main();
} catch (e) {
  log(e.stack);
  check(false, `history soak completed: ${e.message}`);
}
for (const g of gateways) await g.stop();
if (SANITIZED && SAN_DIR) {
  const reports = fs.readdirSync(SAN_DIR).map((f) => fs.readFileSync(`${SAN_DIR}/${f}`, 'utf8'));
  check(reports.length === 0, 'no sanitizer reports from the gateways',
    reports.join('\n').split('\n').filter(Boolean).slice(0, 40));
} else if (SANITIZED) {
  skip('no sanitizer reports from the gateways', 'SG_SAN_DIR not set');
}
printTap();
process.exit(anyFailed() ? 1 : 0);
