// SPDX-License-Identifier: MIT
// What the soak drivers share: TAP output, free ports, a port check, an HTTP GET that
// never throws, a metric from Prometheus text, and an environment without
// STOMPGATE_* settings, so that only a gateway's flags count.
import net from 'node:net';
import http from 'node:http';

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
    s.on('error', reject);
  });
}

export function portOpen(port) {
  return new Promise((r) => {
    const c = net.connect(port, '127.0.0.1');
    c.on('connect', () => { c.destroy(); r(true); });
    c.on('error', () => r(false));
  });
}

export function httpGet(port, path) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path, timeout: 3000 }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve({ status: 0, body: '' }));
  });
}

export function metric(text, name) {
  const m = text.match(new RegExp(`^${name} (\\S+)$`, 'm'));
  return m ? +m[1] : NaN;
}

export function cleanEnv() {
  const e = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('STOMPGATE_')) e[k] = v;
  return e;
}

// TAP for a driver: check, skip and diag record as they go (and log each
// line through log), printTap writes the plan at the end.
export function tap(log) {
  const points = [];
  const diags = [];
  return {
    check(ok, name, detail = []) {
      points.push({ ok: !!ok, name, detail });
      log(`${ok ? 'ok' : 'NOT OK'}: ${name}`);
    },
    skip(name, why) { points.push({ ok: true, name: `${name} # SKIP ${why}`, detail: [] }); },
    diag(line) { diags.push(line); log(line); },
    anyFailed: () => points.some((p) => !p.ok),
    printTap() {
      const out = ['TAP version 13'];
      for (const d of diags) out.push(`# ${d}`);
      points.forEach((p, i) => {
        out.push(`${p.ok ? 'ok' : 'not ok'} ${i + 1} - ${p.name}`);
        for (const d of p.detail) out.push(`# ${d}`);
      });
      out.push(`1..${points.length}`);
      process.stdout.write(out.join('\n') + '\n');
    },
  };
}
