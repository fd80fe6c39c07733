// SPDX-License-Identifier: MIT
// Helpers for the broker fault cases: the cluster's nodes, faults caused in
// the real broker, and clients that record what they get and when.
import { execFileSync } from 'node:child_process';
import WebSocket from 'ws';
import { Client } from '@stomp/stompjs';
import { parseFrame } from '../e2e/lib/harness.mjs';

export const PORTS = process.env.SG_CLUSTER_PORTS.split(',').map(Number);
export const DIRS = process.env.SG_CLUSTER_DIRS.split(',');
export const SRC = process.env.STOMPGATE_SRC ?? process.cwd();
export const MODES = ['per-session', 'shared'];

export function rmqCtl(dir, ...args) {
  return execFileSync('bash', [`${SRC}/test/lib/rabbitmq.sh`, 'ctl', dir, ...args],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

// The broker stops reading the connections whose client-given name contains
// name: their reader processes are suspended, as a reader stuck behind
// flow control would be, while the node goes on serving everything else.
// Returns how many connections it stopped reading.
export function suspendReaders(dir, name) {
  const expr = `Sub = <<"${name}">>,
    Ps = [P || P <- rabbit_networking:connections(),
      case catch rabbit_networking:connection_info(P, [client_properties]) of
        [{client_properties, Props}] ->
          case lists:keyfind(<<"connection_name">>, 1, Props) of
            {_, _, N} -> binary:match(N, Sub) =/= nomatch;
            _ -> false
          end;
        _ -> false
      end],
    [sys:suspend(P) || P <- Ps],
    persistent_term:put(sg_suspended, Ps ++ persistent_term:get(sg_suspended, [])),
    length(Ps).`;
  return Number(rmqCtl(dir, 'eval', expr));
}

export function resumeReaders(dir) {
  return Number(rmqCtl(dir, 'eval', `Ps = persistent_term:get(sg_suspended, []),
    [catch sys:resume(P) || P <- Ps], persistent_term:put(sg_suspended, []), length(Ps).`));
}

// A raw STOMP-over-WebSocket client that notes the arrival time of every
// WebSocket message (frames and heart-beats alike).
export function rawStomp(url, connectHeaders = {}) {
  const ws = new WebSocket(url, ['v12.stomp']);
  const c = { ws, frames: [], arrivals: [], errors: [], closed: false, receipts: new Set() };
  ws.on('message', (d) => {
    c.arrivals.push(Date.now());
    const s = d.toString();
    if (s === '\n' || s === '\r\n') return;
    const f = parseFrame(s);
    c.frames.push(f);
    if (f.command === 'ERROR') c.errors.push(f.headers.message);
    if (f.command === 'RECEIPT') c.receipts.add(f.headers['receipt-id']);
  });
  ws.on('close', () => { c.closed = true; });
  c.open = new Promise((resolve, reject) => {
    ws.on('error', reject);
    ws.on('open', () => {
      const h = { 'accept-version': '1.2', host: '/', login: 'guest', passcode: 'guest', ...connectHeaders };
      ws.send(`CONNECT\n${Object.entries(h).map(([k, v]) => `${k}:${v}`).join('\n')}\n\n\0`);
    });
    const t = setInterval(() => {
      if (c.frames.some((f) => f.command === 'CONNECTED')) { clearInterval(t); resolve(); }
      if (c.errors.length || c.closed) { clearInterval(t); reject(new Error(`connect failed: ${c.errors}`)); }
    }, 20);
  });
  c.send = (command, headers = {}, body = '') => {
    ws.send(`${command}\n${Object.entries(headers).map(([k, v]) => `${k}:${v}`).join('\n')}\n\n${body}\0`);
  };
  // The longest silence between two arrivals after since (ms since epoch),
  // counting up to now.
  c.longestGap = (since) => {
    let last = since, gap = 0;
    for (const t of c.arrivals) if (t >= since) { gap = Math.max(gap, t - last); last = t; }
    return Math.max(gap, Date.now() - last);
  };
  return c;
}

// An @stomp/stompjs client that reconnects every 300 ms, as an application
// would, counting its connects and keeping every ERROR it gets (when, its
// message header and its body); onConnect runs after each connect.
export function reconnecting(url, onConnect) {
  const c = new Client({
    webSocketFactory: () => new WebSocket(url, ['v12.stomp']),
    connectHeaders: { login: 'guest', passcode: 'guest' },
    reconnectDelay: 300, heartbeatIncoming: 0, heartbeatOutgoing: 0, debug: () => {},
  });
  c.connects = 0;
  c.errors = [];
  c.onStompError = (f) => c.errors.push({ at: Date.now(), message: f.headers.message, body: f.body });
  c.onConnect = () => { c.connects++; onConnect(c); };
  c.activate();
  return c;
}

// Publishes persistent messages to a queue every 10 ms while producer is
// connected, each with a receipt; receipted lists the bodies receipted so
// far. stop() ends it.
export function receiptedPublisher(producer, queue) {
  const receipted = [];
  let stopped = false, n = 0;
  const done = (async () => {
    while (!stopped) {
      if (producer.connected) {
        const id = `m${n++}`;
        producer.watchForReceipt(`r-${id}`, () => receipted.push(id));
        try {
          producer.publish({ destination: `/amq/queue/${queue}`, body: id,
            headers: { receipt: `r-${id}`, persistent: 'true' } });
        } catch { /* reconnecting */ }
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  return { receipted, stop: () => { stopped = true; return done; } };
}
