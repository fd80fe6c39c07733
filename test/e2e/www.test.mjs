// SPDX-License-Identifier: MIT
// The static file root (--www): what it serves, and everything it refuses.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startGateway, connected, rawHttp } from './lib/harness.mjs';

let gw, root;
before(async () => {
  const base = fs.mkdtempSync(path.join(process.env.SG_TMP ?? os.tmpdir(), 'www-'));
  root = path.join(base, 'root');
  fs.mkdirSync(path.join(root, 'sub'), { recursive: true });
  fs.writeFileSync(path.join(root, 'index.html'), '<h1>hello</h1>');
  fs.writeFileSync(path.join(root, 'app.js'), 'console.log(1)');
  fs.writeFileSync(path.join(root, 'sub', 'index.html'), 'sub index');
  fs.writeFileSync(path.join(root, '.secret'), 'hidden');
  fs.writeFileSync(path.join(base, 'outside.txt'), 'outside');
  fs.symlinkSync(path.join(base, 'outside.txt'), path.join(root, 'escape.txt'));
  fs.symlinkSync(path.join(root, 'app.js'), path.join(root, 'alias.js'));
  gw = await startGateway(['--www', root]);
});
after(async () => { await gw.stop(); });

const get = (p, method = 'GET') => rawHttp(gw.port, `${method} ${p} HTTP/1.1\r\nHost: x\r\n\r\n`);
const status = (r) => +r.slice(9, 12);
const body = (r) => r.slice(r.indexOf('\r\n\r\n') + 4);

test('GET / serves index.html with its type and safe headers', async () => {
  const r = await get('/');
  assert.equal(status(r), 200);
  assert.match(r, /Content-Type: text\/html; charset=utf-8\r\n/);
  assert.match(r, /Content-Length: 14\r\n/);
  assert.match(r, /X-Content-Type-Options: nosniff\r\n/);
  assert.equal(body(r), '<h1>hello</h1>');
});

test('files, query strings, directories and HEAD', async () => {
  let r = await get('/app.js?v=3');
  assert.equal(status(r), 200);
  assert.match(r, /Content-Type: text\/javascript/);
  assert.equal(body(r), 'console.log(1)');
  r = await get('/sub/');
  assert.equal(body(r), 'sub index');
  r = await get('/sub');
  assert.equal(status(r), 301);
  assert.match(r, /Location: \/sub\/\r\n/);
  r = await get('/app.js', 'HEAD');
  assert.equal(status(r), 200);
  assert.match(r, /Content-Length: 14\r\n/);
  assert.equal(body(r), '');
  r = await get('/alias.js');
  assert.equal(body(r), 'console.log(1)', 'a symlink inside the root is followed');
});

test('nothing outside the root, hidden or missing is served', async () => {
  for (const p of ['/../outside.txt', '/%2e%2e/outside.txt', '/sub/../../outside.txt', '/escape.txt',
    '/.secret', '/%2esecret', '/nope.html', '//etc/passwd', '/sub%2f..%2f..%2foutside.txt', '/a%00b']) {
    const r = await get(p);
    assert.equal(status(r), 404, p);
    assert.doesNotMatch(r, /outside|hidden/, p);
  }
});

test('other methods are refused; the WebSocket path still upgrades and refuses plain GETs', async () => {
  let r = await get('/index.html', 'POST');
  assert.equal(status(r), 405);
  r = await get('/ws');
  assert.equal(status(r), 426);
  const c = await connected(gw.url);
  await c.deactivate();
});

test('--www must name a directory', async () => {
  const { spawnSync } = await import('node:child_process');
  const r = spawnSync(process.env.STOMPGATE_BIN, ['--www', path.join(root, 'index.html')]);
  assert.equal(r.status, 2);
  assert.match(r.stderr.toString(), /invalid setting 'www'/);
});
