// SPDX-License-Identifier: MIT
// Configuration: an INI file, STOMPGATE_* variables and flags, flags
// winning; invalid settings stop the gateway with exit code 2, naming the
// setting, before it listens.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { freePort, AMQP_PORT } from './lib/harness.mjs';
import { runToExit, spawnGateway, portOpen, upgradeRequest, httpHead } from './lib/ops.mjs';

const SRC = process.env.STOMPGATE_SRC ?? process.cwd();
const TMP = fs.mkdtempSync(path.join(process.env.SG_TMP ?? '/tmp', 'cfg-'));
const conf = (name, text) => { const p = path.join(TMP, name); fs.writeFileSync(p, text); return p; };

test('--help names every setting, and deploy/stompgate.conf documents each one', async () => {
  const { code, stdout } = await runToExit(['--help']);
  assert.equal(code, 0);
  const names = [...stdout.matchAll(/^ {2}--([a-z-]+) [A-Z]/gm)].map((m) => m[1]);
  assert.ok(names.length >= 30, `settings found: ${names.join(' ')}`);
  const sample = fs.readFileSync(path.join(SRC, 'deploy/stompgate.conf'), 'utf8');
  for (const n of names) {
    if (n === 'config') continue;
    assert.match(sample, new RegExp(`^#? ?${n} =`, 'm'), `${n} missing from deploy/stompgate.conf`);
  }
});

test('deploy/stompgate.conf as shipped is valid', async () => {
  const gw = await spawnGateway(['--config', path.join(SRC, 'deploy/stompgate.conf')]);
  assert.match(gw.log(), /listening on ws:/);
  const r = await gw.stop();
  assert.equal(r.code, 0);
});

async function pathServed(port, p) {
  return (await httpHead(port, upgradeRequest(p))).startsWith('HTTP/1.1 101');
}

test('precedence: file < environment < flag', async () => {
  const port = await freePort();
  const file = conf('prec.conf', `[stompgate]\nlisten = 127.0.0.1:${port}\nws-path = /from-file\n` +
    `broker = amqp://guest:guest@127.0.0.1:${AMQP_PORT}/\n`);
  const cases = [
    [{}, [], '/from-file'],
    [{ STOMPGATE_WS_PATH: '/from-env' }, [], '/from-env'],
    [{ STOMPGATE_WS_PATH: '/from-env' }, ['--ws-path', '/from-flag'], '/from-flag'],
    [{ STOMPGATE_CONFIG: file, STOMPGATE_WS_PATH: '/from-env' }, [], '/from-env'],
  ];
  for (const [env, flags, want] of cases) {
    const args = env.STOMPGATE_CONFIG ? flags : ['--config', file, ...flags];
    const gw = await spawnGateway(args, { noDefaults: true, port, env });
    try {
      for (const p of ['/from-file', '/from-env', '/from-flag'])
        assert.equal(await pathServed(port, p), p === want, `${JSON.stringify(env)} ${flags}: ${p}`);
    } finally {
      assert.equal((await gw.stop()).code, 0);
    }
  }
});

test('a list setting given by a flag replaces the file\'s list', async () => {
  const file = conf('origins.conf', 'allowed-origin = https://a.example\nallowed-origin = https://b.example\n');
  const gw = await spawnGateway(['--config', file, '--allowed-origin', 'https://c.example']);
  try {
    const get = (o) => httpHead(gw.port, upgradeRequest('/ws', { Origin: o }));
    assert.match(await get('https://a.example'), /^HTTP\/1.1 403/);
    assert.match(await get('https://b.example'), /^HTTP\/1.1 403/);
    assert.match(await get('https://c.example'), /^HTTP\/1.1 101/);
  } finally {
    await gw.stop();
  }
});

test('invalid settings: message names the setting, exit code 2, nothing listens', async () => {
  const port = await freePort();
  const base = ['--listen', `127.0.0.1:${port}`];
  const cases = [
    [[...base, '--max-frame-size', '12'], {}, /'max-frame-size'/],
    [[...base, '--admin', 'nonsense'], {}, /'admin'/],
    [[...base, '--log-level', 'loud'], {}, /'log-level'/],
    [[...base, '--allowed-origin', 'example.com'], {}, /'allowed-origin'/],
    [[...base, '--broker', 'http://x'], {}, /'broker'/],
    [[...base, '--tls-cert', '/etc/hostname'], {}, /'tls-key'/],
    [[...base, '--tls-cert', path.join(TMP, 'nope.pem'), '--tls-key', path.join(TMP, 'nope.pem')], {}, /'tls-cert'/],
    [base, { STOMPGATE_MAX_SESSIONS: 'many' }, /'max-sessions'.*STOMPGATE_MAX_SESSIONS/],
    [base, { STOMPGATE_DRAIN_TIMEOUT: '-5' }, /'drain-timeout'/],
    [[...base, '--config', conf('bad1.conf', 'connect-timeout = soon\n')], {}, /'connect-timeout'.*bad1.conf/],
    [[...base, '--config', conf('bad2.conf', 'no-such-thing = 1\n')], {}, /'no-such-thing'/],
    [[...base, '--config', conf('bad3.conf', '[other]\nlisten = 127.0.0.1:1\n')], {}, /section '\[other\]'/],
    [[...base, '--config', conf('bad4.conf', 'this line has no equals sign\n')], {}, /'config'.*bad4.conf.*line 1/],
    [[...base, '--config', path.join(TMP, 'missing.conf')], {}, /'config'/],
  ];
  for (const [args, env, re] of cases) {
    const { code, stderr } = await runToExit(args, env);
    assert.equal(code, 2, `${args.join(' ')} ${JSON.stringify(env)}: ${stderr}`);
    assert.match(stderr, re);
    assert.doesNotMatch(stderr, /listening/);
    assert.equal(await portOpen(port), false);
  }
});

test('an invalid flag wins over a valid file value and still fails', async () => {
  const file = conf('ok.conf', 'max-sessions = 10\n');
  const { code, stderr } = await runToExit(['--config', file, '--max-sessions', 'x']);
  assert.equal(code, 2);
  assert.match(stderr, /'max-sessions' = 'x' \(from --max-sessions\)/);
});

test('the open-files limit is raised to the hard limit at start, and both are logged', async () => {
  // A shell's soft limit is often far below what a gateway needs: one
  // descriptor per client, and another per broker connection.
  const wrapper = conf('low-nofile.sh', '#!/bin/sh\nulimit -Sn 256 || exit 3\nexec "$STOMPGATE_BIN" "$@"\n');
  fs.chmodSync(wrapper, 0o755);
  const hard = Number(fs.readFileSync('/proc/self/limits', 'utf8').match(/^Max open files\s+\d+\s+(\d+)/m)[1]);
  const gw = await spawnGateway([], { bin: wrapper, env: { STOMPGATE_BIN: process.env.STOMPGATE_BIN } });
  const m = gw.log().match(/open-files limit (\d+) \(was (\d+); hard limit (\d+)\)/);
  assert.ok(m, `no open-files line in:\n${gw.log()}`);
  assert.deepEqual(m.slice(1).map(Number), [hard, 256, hard]);
  const pid = gw.child.pid;
  const limits = fs.readFileSync(`/proc/${pid}/limits`, 'utf8');
  assert.match(limits, new RegExp(`^Max open files\\s+${hard}\\s+${hard}`, 'm'));
  await gw.stop();
});
