// SPDX-License-Identifier: MIT
// Observability: the latency histograms and gauges in /metrics after real
// work in the running relay mode, the whole exposition through
// `promtool check metrics`, every metric the Grafana dashboard queries
// present in it, and --log-format json with its access log line.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { connected, subscribe, receipt, waitFor, uniq, AMQP_PORT } from './lib/harness.mjs';
import { spawnGateway, httpGet, parseMetrics } from './lib/ops.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const mode = process.env.SG_MODE ?? 'per-session';
const modeArgs = ['--mode', mode];

const started = [];
after(async () => { for (const g of started) await g.stop('SIGKILL'); });
async function gateway(args, opts) {
  const g = await spawnGateway([...modeArgs, ...args], opts);
  started.push(g);
  return g;
}

function promtool() {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const p = path.join(dir || '.', 'promtool');
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch { /* next */ }
  }
  return null;
}

async function scrape(gw) {
  const r = await httpGet(gw.adminPort, '/metrics');
  assert.equal(r.status, 200);
  return { text: r.body, m: parseMetrics(r.body) };
}

// A gateway that has done some of everything: sessions opened and closed,
// subscriptions to a topic and a queue, SENDs with receipts (publisher
// confirms), deliveries.
let busy;
async function busyGateway() {
  if (busy) return busy;
  const gw = await gateway([]);
  const topic = `/topic/${uniq('obs')}`;
  const queue = `/queue/${uniq('obs')}`;
  const a = await connected(gw.url);
  const b = await connected(gw.url);
  const got = [];
  await subscribe(a, topic, {}, (m) => got.push(m.body));
  await subscribe(b, queue, {}, (m) => got.push(m.body));
  for (let i = 0; i < 5; i++) {
    const t = receipt(a, `t${i}`);
    a.publish({ destination: topic, body: `topic ${i}`, headers: { receipt: `t${i}` } });
    await t;
    const q = receipt(b, `q${i}`);
    b.publish({ destination: queue, body: `queue ${i}`, headers: { receipt: `q${i}` } });
    await q;
  }
  await waitFor(() => got.length === 10, 10000, 'ten deliveries');
  // One session ends (session duration, access log); the other stays, so
  // its broker link is open when /metrics is read.
  await b.deactivate();
  await waitFor(() => /session-\d+ closed .*user=guest/.test(gw.log()), 10000, 'the close line');
  busy = { gw, a };
  return busy;
}

function histCount(m, name, labels = '') {
  return m.get(`${name}_count${labels ? `{${labels}}` : ''}`);
}

test('latency histograms and broker link gauges count real work', async () => {
  const { gw } = await busyGateway();
  const { text, m } = await scrape(gw);
  const relay = mode === 'shared' ? 'shared' : 'per-session';
  const other = mode === 'shared' ? 'per-session' : 'shared';
  assert.ok(histCount(m, 'stompgate_delivery_seconds', `relay="${relay}"`) >= 10, 'deliveries timed');
  assert.equal(histCount(m, 'stompgate_delivery_seconds', `relay="${other}"`), 0);
  assert.ok(histCount(m, 'stompgate_publish_confirm_seconds') >= 10, 'confirms timed');
  assert.ok(histCount(m, 'stompgate_broker_rpc_seconds') >= 2, 'broker RPCs timed');
  assert.ok(histCount(m, 'stompgate_session_duration_seconds') >= 1, 'a closed session timed');
  // Buckets are cumulative and end with +Inf = count.
  const b = [...text.matchAll(/^stompgate_publish_confirm_seconds_bucket\{le="([^"]+)"\} (\d+)$/gm)];
  assert.equal(b[0][1], '0.0005');
  assert.equal(b.at(-1)[1], '+Inf');
  for (let i = 1; i < b.length; i++) assert.ok(+b[i][2] >= +b[i - 1][2]);
  assert.equal(+b.at(-1)[2], histCount(m, 'stompgate_publish_confirm_seconds'));
  // The broker node the gateway's connections reached, with at least the
  // open session's (per-session) or the pool's (shared) connection.
  const node = `stompgate_broker_links{node="127.0.0.1:${AMQP_PORT}"}`;
  assert.ok(m.get(node) >= 1, `${node} in:\n${text.match(/^stompgate_broker_links.*$/gm)}`);
  if (mode === 'shared') {
    assert.ok(m.get('stompgate_shared_queues') >= 1);
    assert.ok(m.get('stompgate_shared_binding_keys') >= 1);
  }
});

test('the whole exposition passes promtool check metrics', async (t) => {
  const tool = promtool();
  if (!tool) {
    t.skip('promtool is not installed (Debian package prometheus)');
    return;
  }
  const { gw } = await busyGateway();
  const { text } = await scrape(gw);
  const r = spawnSync(tool, ['check', 'metrics'], { input: text, encoding: 'utf8' });
  assert.equal(r.error, undefined);
  const complaints = `${r.stdout}${r.stderr}`.trim();
  assert.equal(complaints, '', `promtool: ${complaints}`);
  assert.equal(r.status, 0);
});

// Metric names in a PromQL expression: stompgate_ names, without the
// series suffixes a histogram adds.
function exprMetrics(expr) {
  return [...expr.matchAll(/\bstompgate_[a-z0-9_]+/g)].map((x) => x[0]);
}

test('every metric the Grafana dashboard queries is in /metrics', async () => {
  const exprs = dashboardExprs();
  assert.ok(exprs.length >= 8, 'the dashboard has queries');
  const { gw } = await busyGateway();
  const { text } = await scrape(gw);
  const families = new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((x) => [x[1], x[2]]));
  const missing = new Set();
  for (const e of exprs) {
    for (const name of exprMetrics(e)) {
      if (families.has(name)) continue;
      const base = name.replace(/_(bucket|sum|count)$/, '');
      if (base !== name && families.get(base) === 'histogram') continue;
      missing.add(name);
    }
  }
  assert.deepEqual([...missing], [], 'queried by the dashboard but not exposed');
});

function dashboardExprs() {
  const dash = JSON.parse(fs.readFileSync(path.join(root, 'deploy/grafana/stompgate.json'), 'utf8'));
  const exprs = [];
  const walk = (p) => {
    for (const t of p.targets ?? []) if (t.expr) exprs.push(t.expr);
    for (const c of p.panels ?? []) walk(c);
  };
  for (const p of dash.panels) walk(p);
  return exprs;
}

test('the dashboard\'s queries are valid PromQL, prometheus.yml scrapes the compose gateways', async (t) => {
  const tool = promtool();
  if (!tool) {
    t.skip('promtool is not installed (Debian package prometheus)');
    return;
  }
  // Every query as a recording rule, Grafana's variables given values:
  // promtool parses them.
  const dir = fs.mkdtempSync(path.join(process.env.SG_TMP ?? '/tmp', 'dash-'));
  const rules = dashboardExprs().map((e, i) => `      - record: stompgate:dashboard_query_${i}\n        expr: ${JSON.stringify(
    e.replaceAll('$__rate_interval', '1m').replaceAll('$job', '.*').replaceAll('$instance', '.*'))}`);
  fs.writeFileSync(path.join(dir, 'rules.yml'), `groups:\n  - name: dashboard\n    rules:\n${rules.join('\n')}\n`);
  let r = spawnSync(tool, ['check', 'rules', path.join(dir, 'rules.yml')], { encoding: 'utf8' });
  assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
  r = spawnSync(tool, ['check', 'config', path.join(root, 'deploy/prometheus.yml')], { encoding: 'utf8' });
  assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
  fs.rmSync(dir, { recursive: true, force: true });
  // The targets are the compose file's gateways on their admin port.
  const compose = fs.readFileSync(path.join(root, 'deploy/compose.yaml'), 'utf8');
  const adminPort = compose.match(/STOMPGATE_ADMIN: \S+:(\d+)/)[1];
  const gateways = [...compose.matchAll(/^  (stompgate-\d+): \*stompgate$/gm)].map((x) => x[1]);
  assert.ok(gateways.length >= 1);
  const prom = fs.readFileSync(path.join(root, 'deploy/prometheus.yml'), 'utf8');
  const targets = [...prom.matchAll(/^\s+- (\S+:\d+)$/gm)].map((x) => x[1]).sort();
  assert.deepEqual(targets, gateways.map((g) => `${g}:${adminPort}`).sort());
});

test('--log-format json: one object per line, the close line an access log', async () => {
  const gw = await gateway(['--log-format', 'json']);
  const c = await connected(gw.url);
  const queue = `/queue/${uniq('obs')}`;
  const got = [];
  await subscribe(c, queue, {}, (m) => got.push(m.body));
  const r = receipt(c, 'r1');
  c.publish({ destination: queue, body: 'hello', headers: { receipt: 'r1' } });
  await r;
  await waitFor(() => got.length === 1, 10000, 'the message');
  await c.deactivate();
  await waitFor(() => /"event":"session_closed"/.test(gw.log()), 10000, 'the access line');
  await gw.stop();
  const lines = gw.log().split('\n').filter((l) => l !== '');
  assert.ok(lines.length >= 3);
  const objs = lines.map((l) => {
    try {
      return JSON.parse(l);
    } catch (e) {
      assert.fail(`not a JSON line: ${l}`);
    }
  });
  for (const o of objs) {
    assert.match(o.ts, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.ok(['error', 'warn', 'info', 'debug'].includes(o.level), o.level);
    assert.equal(typeof o.msg, 'string');
  }
  const acc = objs.filter((o) => o.event === 'session_closed');
  assert.equal(acc.length, 1);
  const a = acc[0];
  assert.match(a.client, /^127\.0\.0\.1:\d+$/);
  assert.equal(a.user, 'guest');
  assert.equal(a.vhost, '/');
  assert.ok(Number.isInteger(a.session) && a.session > 0);
  assert.match(a.msg, new RegExp(`^session-${a.session} closed`));
  assert.ok(a.duration_s > 0 && a.duration_s < 60, String(a.duration_s));
  // CONNECT, SUBSCRIBE, SEND, DISCONNECT in; CONNECTED, RECEIPT, MESSAGE
  // and DISCONNECT's RECEIPT out (stompjs asks for one).
  assert.ok(a.frames_in >= 4, `frames_in ${a.frames_in}`);
  assert.ok(a.frames_out >= 3, `frames_out ${a.frames_out}`);
  assert.ok(a.bytes_in > 50 && a.bytes_out > 50, `${a.bytes_in} ${a.bytes_out}`);
  assert.equal(a.reason, 'DISCONNECT');
});

test('the text close line carries the same fields as key=value', async () => {
  const { gw } = await busyGateway();
  const line = gw.log().split('\n').find((l) => /session-\d+ closed /.test(l));
  assert.match(line, /^\S+Z info  session-\d+ closed \(127\.0\.0\.1:\d+\): DISCONNECT \(user=guest vhost=\/ duration_s=\d+\.\d{3} frames_in=\d+ frames_out=\d+ bytes_in=\d+ bytes_out=\d+\)$/);
});
