// SPDX-License-Identifier: MIT
// Helpers for end-to-end cases: a stompgate process per file, real clients
// (@stomp/stompjs, ws, amqplib) and the broker started by run.sh.
import { spawn } from 'node:child_process';
import { after } from 'node:test';
import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import { Client } from '@stomp/stompjs';
import amqp from 'amqplib';

export const AMQP_PORT = +process.env.SG_AMQP_PORT;
export const BIN = process.env.STOMPGATE_BIN;

export function uniq(prefix = 't') {
  return `${prefix}-${randomBytes(5).toString('hex')}`;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Every gateway a case starts is stopped when its file ends, even when the
// case failed before stopping it: a leftover process would keep the test
// runner waiting.
const gateways = new Set();
export function track(child) {
  gateways.add(child);
  child.on('exit', () => gateways.delete(child));
  watchSanitizer(child);
  return child;
}

// GCC's UBSan runtime writes its reports to stderr whatever log_path says:
// a gateway's report lines are copied to SG_SAN_DIR, where the last case
// (zz-sanitizers.test.mjs) finds them.
function watchSanitizer(child) {
  const dir = process.env.SG_SAN_DIR;
  if (!dir || !child.stderr || (process.env.SG_SANITIZE ?? 'none') === 'none') return;
  let tail = '';
  child.stderr.on('data', (d) => {
    const lines = (tail + d).split('\n');
    tail = lines.pop();
    const bad = lines.filter((l) => /runtime error:|ERROR: (Address|Leak)Sanitizer/.test(l));
    if (bad.length) fs.appendFileSync(path.join(dir, `stderr.${child.pid}`), bad.join('\n') + '\n');
  });
}
after(() => {
  for (const c of gateways) c.kill('SIGKILL');
});

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

async function waitPort(port, ms = 10000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const ok = await new Promise((r) => {
      const c = net.connect(port, '127.0.0.1');
      c.on('connect', () => { c.destroy(); r(true); });
      c.on('error', () => r(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`port ${port} did not open`);
}

// Starts stompgate in front of the given AMQP port; returns a handle with
// url, port, log() and stop().
// SG_MODE (per-session or shared) runs every case against that relay mode.
function modeArgs() {
  return process.env.SG_MODE ? ['--mode', process.env.SG_MODE] : [];
}

// opts.port fixes the listening port (to restart a gateway where clients
// reconnect).
export async function startGateway(extra = [], amqpPort = AMQP_PORT, opts = {}) {
  const port = opts.port ?? await freePort();
  // --broker is repeatable (cluster nodes): a case that names its own
  // broker does not also get the default one.
  const broker = extra.includes('--broker') ? [] : ['--broker', `amqp://guest:guest@127.0.0.1:${amqpPort}/`];
  const args = ['--listen', `127.0.0.1:${port}`, ...broker, '--log-level', 'info', ...modeArgs(), ...extra];
  const child = track(spawn(BIN, args, { stdio: ['ignore', 'ignore', 'pipe'] }));
  let log = '';
  child.stderr.on('data', (d) => { log += d; });
  const exited = new Promise((r) => child.on('exit', (code, sig) => r({ code, sig })));
  await waitPort(port);
  return {
    port,
    url: `ws://127.0.0.1:${port}/ws`,
    child,
    log: () => log,
    exited,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      const r = await exited;
      clearTimeout(t);
      return r;
    },
  };
}

// A @stomp/stompjs client; connect() resolves with the CONNECTED frame or
// rejects with the ERROR frame / close.
export function stompClient(url, opts = {}) {
  const client = new Client({
    webSocketFactory: () => new WebSocket(url, opts.protocols ?? ['v12.stomp', 'v11.stomp', 'v10.stomp']),
    connectHeaders: opts.connectHeaders ?? { host: '/', login: 'guest', passcode: 'guest' },
    reconnectDelay: 0,
    heartbeatIncoming: opts.heartbeatIncoming ?? 0,
    heartbeatOutgoing: opts.heartbeatOutgoing ?? 0,
    debug: () => {},
  });
  client.errors = [];
  client.onStompError = (f) => client.errors.push(f);
  return client;
}

export function connect(client, ms = 10000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('connect timed out')), ms);
    client.onConnect = (f) => { clearTimeout(t); resolve(f); };
    client.onStompError = (f) => { client.errors.push(f); clearTimeout(t); reject(Object.assign(new Error(f.headers.message), { frame: f })); };
    client.onWebSocketClose = (e) => { clearTimeout(t); reject(Object.assign(new Error('closed'), { event: e })); };
    client.activate();
  });
}

export async function connected(url, opts) {
  const c = stompClient(url, opts);
  await connect(c);
  return c;
}

export function receipt(client, id, ms = 10000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no RECEIPT ${id}`)), ms);
    client.watchForReceipt(id, (f) => { clearTimeout(t); resolve(f); });
  });
}

// Subscribes and waits for the subscription's RECEIPT so that later
// publishes are routed to it. Messages collect in the returned array.
export async function subscribe(client, destination, headers = {}, onMessage) {
  const msgs = [];
  const rid = uniq('r');
  const sub = client.subscribe(destination, (m) => { msgs.push(m); onMessage?.(m); }, { ...headers, receipt: rid });
  await receipt(client, rid);
  msgs.sub = sub;
  return msgs;
}

export async function waitFor(pred, ms = 10000, what = 'condition') {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (pred()) return;
    await sleep(20);
  }
  throw new Error(`timed out waiting for ${what}`);
}

export async function amqpConnect() {
  return amqp.connect(`amqp://guest:guest@127.0.0.1:${AMQP_PORT}`);
}

// A raw WebSocket speaking STOMP by hand, for what a client library hides.
// opts go to ws (perMessageDeflate: false declines compression).
export function rawWs(url, protocols = ['v12.stomp'], opts = {}) {
  const ws = new WebSocket(url, protocols, opts);
  ws.frames = [];
  ws.binaryFlags = [];
  ws.closed = new Promise((r) => ws.on('close', (code, reason) => r({ code, reason: reason.toString() })));
  ws.on('message', (data, isBinary) => { ws.frames.push(data.toString('latin1')); ws.binaryFlags.push(isBinary); });
  ws.on('error', () => {});
  ws.opened = new Promise((resolve, reject) => { ws.on('open', resolve); ws.on('error', reject); });
  ws.frame = (cmd, headers = {}, body = '') => {
    let s = cmd + '\n';
    for (const [k, v] of Object.entries(headers)) s += `${k}:${v}\n`;
    return s + '\n' + body + '\0';
  };
  ws.waitFrame = async (prefix, ms = 10000) => {
    await waitFor(() => ws.frames.some((f) => f.startsWith(prefix)), ms, `frame ${prefix}`);
    return ws.frames.find((f) => f.startsWith(prefix));
  };
  return ws;
}

export function parseFrame(s) {
  const i = s.indexOf('\n\n');
  const lines = s.slice(0, i).split('\n');
  const headers = {};
  for (const l of lines.slice(1)) {
    const c = l.indexOf(':');
    if (!(l.slice(0, c) in headers)) headers[l.slice(0, c)] = l.slice(c + 1);
  }
  return { command: lines[0], headers, body: s.slice(i + 2, s.lastIndexOf('\0')) };
}

// Sends raw bytes over TCP and returns everything the server wrote until it
// closed the connection.
export function rawHttp(port, request, ms = 10000) {
  return new Promise((resolve, reject) => {
    const c = net.connect(port, '127.0.0.1');
    let out = '';
    const t = setTimeout(() => { c.destroy(); reject(new Error('no close')); }, ms);
    c.on('connect', () => c.write(request));
    c.on('data', (d) => { out += d.toString('latin1'); });
    c.on('close', () => { clearTimeout(t); resolve(out); });
    c.on('error', () => {});
  });
}

// Runs a bash script (test/lib/rabbitmq.sh's functions, say); resolves with
// its standard output, trimmed, or rejects on a non-zero exit.
export function sh(script) {
  return new Promise((resolve, reject) => {
    const p = spawn('bash', ['-c', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.on('exit', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`${script}: exit ${code}`))));
  });
}

// rabbitmqctl against the broker run.sh started; resolves with its output.
export function rmqctl(...args) {
  return new Promise((resolve, reject) => {
    const p = spawn('bash', ['-c', '. test/lib/rabbitmq.sh; rmq_ctl "$@"', 'rmqctl', process.env.SG_BROKER_DIR, ...args],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { err += d; });
    p.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`rabbitmqctl ${args.join(' ')}: ${err}`))));
  });
}

// The bindings from exchange to the gateways' shared queues, as
// [queue, key] pairs, optionally only those whose key passes keep.
// A topic exchange's keys without wildcards are bound on its exact-key
// direct exchange (--exact-key-exchange, default prefix stompgate.exact.):
// those count as the exchange's, and each entry says where it is
// ([queue, key, source exchange]).
export async function sharedBindings(exchange, keep = () => true) {
  const out = await rmqctl('list_bindings', '-q', '--no-table-headers', 'source_name', 'destination_name', 'routing_key');
  const sources = [exchange, `stompgate.exact.${exchange}`];
  return out.split('\n').map((l) => l.split('\t'))
    .filter(([src, dst, k]) => sources.includes(src) && dst?.startsWith('stompgate.fanout.') && keep(k))
    .map(([src, dst, k]) => [dst, k, src]);
}

// The shared queues bound to exchange with key.
export async function boundQueues(exchange, key) {
  return (await sharedBindings(exchange, (k) => k === key)).map(([q]) => q);
}
