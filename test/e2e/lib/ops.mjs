// SPDX-License-Identifier: MIT
// Helpers for the operations cases: a gateway started with a chosen
// environment, plain HTTP requests to the admin endpoint, and running the
// binary to completion.
import { spawn } from 'node:child_process';
import net from 'node:net';
import http from 'node:http';
import { BIN, AMQP_PORT, freePort, sleep, track } from './harness.mjs';

// Runs the gateway expecting it to exit by itself (invalid settings,
// --help); resolves with { code, stdout, stderr }.
export function runToExit(args, env = {}, ms = 10000) {
  return new Promise((resolve, reject) => {
    const child = track(spawn(BIN, args, { env: { ...cleanEnv(), ...env }, stdio: ['ignore', 'pipe', 'pipe'] }));
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const t = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`still running: ${args.join(' ')}\n${stderr}`)); }, ms);
    child.on('exit', (code) => { clearTimeout(t); resolve({ code, stdout, stderr }); });
  });
}

// The test runner's environment without STOMPGATE_* settings, so a case
// controls exactly which ones the gateway sees.
export function cleanEnv() {
  const e = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('STOMPGATE_')) e[k] = v;
  return e;
}

export async function waitPort(port, ms = 10000, host = '127.0.0.1') {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const ok = await new Promise((r) => {
      const c = net.connect(port, host);
      c.on('connect', () => { c.destroy(); r(true); });
      c.on('error', () => r(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`port ${port} did not open`);
}

export async function portOpen(port) {
  return new Promise((r) => {
    const c = net.connect(port, '127.0.0.1');
    c.on('connect', () => { c.destroy(); r(true); });
    c.on('error', () => r(false));
  });
}

// Starts the gateway with full control of its flags and environment.
// Unless opts.noDefaults, adds --listen on a free port, --broker at the
// test broker and --admin on another free port. Resolves once the
// listener (or opts.waitFor port) accepts connections.
export async function spawnGateway(args = [], opts = {}) {
  const port = opts.port ?? await freePort();
  const adminPort = opts.adminPort ?? await freePort();
  const amqpPort = opts.amqpPort ?? AMQP_PORT;
  // --broker is repeatable (cluster nodes), so the default one is only
  // added when the case names none.
  const broker = args.includes('--broker') ? [] : ['--broker', `amqp://guest:guest@127.0.0.1:${amqpPort}/`];
  const full = opts.noDefaults ? args : ['--listen', `127.0.0.1:${port}`, ...broker,
    '--admin', `127.0.0.1:${adminPort}`, '--log-level', 'info', ...args];
  const child = track(spawn(opts.bin ?? BIN, full, { env: { ...cleanEnv(), ...(opts.env ?? {}) }, stdio: ['ignore', 'ignore', 'pipe'] }));
  let log = '';
  child.stderr.on('data', (d) => { log += d; });
  const exited = new Promise((r) => child.on('exit', (code, sig) => r({ code, sig })));
  try {
    await waitPort(opts.waitFor ?? port);
  } catch (e) {
    child.kill('SIGKILL');
    throw new Error(`${e.message}; log:\n${log}`);
  }
  const scheme = opts.tls ? 'wss' : 'ws';
  return {
    port, adminPort, child, exited,
    url: `${scheme}://127.0.0.1:${port}/ws`,
    log: () => log,
    async stop(sig = 'SIGTERM', ms = 15000) {
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      child.kill(sig);
      const t = setTimeout(() => child.kill('SIGKILL'), ms);
      const r = await exited;
      clearTimeout(t);
      return r;
    },
  };
}

// GET on the admin endpoint; resolves with { status, headers, body }.
export function httpGet(port, path, ms = 5000) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, timeout: ms }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

// Parses Prometheus text into a map from "name{labels}" to a number.
export function parseMetrics(text) {
  const m = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    m.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return m;
}

// A plain WebSocket upgrade request head.
export function upgradeRequest(path = '/ws', extra = {}) {
  let s = `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n' +
    'Sec-WebSocket-Protocol: v12.stomp\r\n';
  for (const [k, v] of Object.entries(extra)) s += `${k}: ${v}\r\n`;
  return s + '\r\n';
}

// Sends request over TCP (or TLS when opts.tls is a tls.connect options
// object) and resolves with the response head (status line and headers)
// as soon as it is complete, then drops the connection.
export function httpHead(port, request, opts = {}) {
  return new Promise((resolve, reject) => {
    const c = opts.tls ? opts.tls.connect({ port, host: '127.0.0.1', ...opts.tlsOptions })
      : net.connect(port, '127.0.0.1');
    let out = '';
    const t = setTimeout(() => { c.destroy(); reject(new Error(`no response head: ${out}`)); }, opts.ms ?? 5000);
    c.on(opts.tls ? 'secureConnect' : 'connect', () => c.write(request));
    c.on('data', (d) => {
      out += d.toString('latin1');
      const i = out.indexOf('\r\n\r\n');
      if (i >= 0) { clearTimeout(t); c.destroy(); resolve(out.slice(0, i)); }
    });
    c.on('close', () => { clearTimeout(t); resolve(out); });
    c.on('error', (e) => { clearTimeout(t); reject(e); });
  });
}
