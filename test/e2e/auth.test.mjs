// SPDX-License-Identifier: MIT
// The gateway's own authentication and authorisation in shared relay mode:
// JWTs (HS256, RS256, ES256, made here with node:crypto) in the CONNECT
// passcode or the handshake's Authorization header, a users file with
// PBKDF2 hashes, and RabbitMQ-style scopes on every SUBSCRIBE and SEND.
// These modes exist only in shared mode, so the gateways here run in it
// whatever SG_MODE says.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import { startGateway, stompClient, connect, subscribe, receipt, parseFrame, waitFor, uniq, sleep, amqpConnect, BIN } from './lib/harness.mjs';

const dir = fs.mkdtempSync(path.join(process.env.SG_TMP ?? os.tmpdir(), 'auth-'));
const secret = crypto.randomBytes(48).toString('base64');
const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const AUD = 'stompgate-e2e';
const now = () => Math.floor(Date.now() / 1000);
const b64u = (b) => Buffer.from(b).toString('base64url');

function jwt(alg, claims, { key, header = {} } = {}) {
  const h = b64u(JSON.stringify({ alg, typ: 'JWT', ...header }));
  const p = b64u(JSON.stringify(claims));
  const data = `${h}.${p}`;
  let sig = Buffer.alloc(0);
  if (alg === 'HS256') sig = crypto.createHmac('sha256', key ?? secret).update(data).digest();
  else if (alg === 'RS256') sig = crypto.sign('sha256', Buffer.from(data), key ?? rsa.privateKey);
  else if (alg === 'ES256') sig = crypto.sign('sha256', Buffer.from(data), { key: key ?? ec.privateKey, dsaEncoding: 'ieee-p1363' });
  return `${data}.${b64u(sig)}`;
}

// What most cases' tokens grant: chat topics both ways, one queue, the
// application exchange for orders.
const SCOPES = 'rabbitmq.read:*/amq.topic/chat.* rabbitmq.write:*/amq.topic/chat.* ' +
  'rabbitmq.read:*/jobs-* rabbitmq.write:*/jobs-* rabbitmq.write:*/stompgate.app/orders.* other.read:*/*';
const claims = (extra = {}) => ({ sub: 'alice', aud: AUD, exp: now() + 600, scope: SCOPES, ...extra });

// PBKDF2 hashes in the users-file form; a low count keeps the cases fast.
function hashOf(password, iter = 1000) {
  const salt = crypto.randomBytes(16);
  const dk = crypto.pbkdf2Sync(password, salt, iter, 32, 'sha256');
  return `pbkdf2-sha256$${iter}$${salt.toString('base64')}$${dk.toString('base64')}`;
}

function run(args, input) {
  return new Promise((resolve) => {
    const p = spawn(BIN, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { err += d; });
    p.on('exit', (code) => resolve({ code, out, err }));
    // A gateway that refuses its settings exits before reading stdin.
    p.stdin.on('error', () => {});
    p.stdin.end(input ?? '');
  });
}

let jgw;
let fgw;
const usersFile = path.join(dir, 'users');
const clients = [];

before(async () => {
  fs.writeFileSync(path.join(dir, 'secret'), secret + '\n');
  fs.writeFileSync(path.join(dir, 'rsa.pem'), rsa.publicKey.export({ type: 'spki', format: 'pem' }));
  fs.writeFileSync(path.join(dir, 'ec.pem'), ec.publicKey.export({ type: 'spki', format: 'pem' }));
  // --hash-password makes carol's entry, as an operator would.
  const h = await run(['--hash-password'], 'carol-pw\n');
  assert.equal(h.code, 0, h.err);
  assert.match(h.out, /^pbkdf2-sha256\$600000\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+\n$/);
  fs.writeFileSync(usersFile, [
    '# stompgate users',
    `bob ${hashOf('bob-pw')} rabbitmq.read:%2F/amq.topic/chat.* rabbitmq.write:%2F/amq.topic/chat.*`,
    `carol ${h.out.trim()} rabbitmq.read:*/amq.topic/news.*`,
    '',
  ].join('\n'));
  jgw = await startGateway(['--mode', 'shared', '--workers', '1', '--auth', 'jwt',
    '--jwt-secret-file', path.join(dir, 'secret'), '--jwt-key-file', path.join(dir, 'rsa.pem'),
    '--jwt-key-file', `ec1=${path.join(dir, 'ec.pem')}`, '--jwt-audience', AUD, '--jwt-leeway', '0']);
  fgw = await startGateway(['--mode', 'shared', '--workers', '1', '--auth', 'file', '--users-file', usersFile]);
});
after(async () => {
  for (const c of clients) await c.deactivate().catch(() => {});
  await jgw?.stop();
  await fgw?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function open(url, connectHeaders, opts = {}) {
  const c = stompClient(url, { connectHeaders, ...opts });
  clients.push(c);
  await connect(c);
  return c;
}

// A raw session (optionally with handshake headers) that records frames
// and the close code.
function raw(url, headers = {}) {
  const ws = new WebSocket(url, ['v12.stomp'], { headers });
  ws.frames = [];
  ws.on('message', (d) => ws.frames.push(d.toString()));
  ws.on('error', () => {});
  ws.closed = new Promise((r) => ws.on('close', (code) => r(code)));
  ws.opened = new Promise((resolve, reject) => { ws.on('open', resolve); ws.on('unexpected-response', (req, res) => reject(new Error(`HTTP ${res.statusCode}`))); });
  ws.stomp = (cmd, h = {}, body = '') => ws.send(`${cmd}\n${Object.entries(h).map(([k, v]) => `${k}:${v}\n`).join('')}\n${body}\0`);
  ws.frame = async (cmd, ms = 10000) => {
    await waitFor(() => ws.frames.some((f) => f.startsWith(cmd + '\n')), ms, `frame ${cmd}`);
    return parseFrame(ws.frames.find((f) => f.startsWith(cmd + '\n')));
  };
  return ws;
}

// CONNECT with the given passcode; resolves with the first reply frame.
async function tryConnect(url, passcode, login = 'ignored') {
  const ws = raw(url);
  await ws.opened;
  const h = { 'accept-version': '1.2', host: '/', login };
  if (passcode !== undefined) h.passcode = passcode;
  ws.stomp('CONNECT', h);
  await waitFor(() => ws.frames.length > 0, 10000, 'CONNECT reply');
  const f = parseFrame(ws.frames[0]);
  const code = f.command === 'ERROR' ? await ws.closed : null;
  ws.close();
  return { f, code };
}

for (const alg of ['HS256', 'RS256', 'ES256']) {
  test(`${alg}: allowed SUBSCRIBE and SEND work and messages flow`, async () => {
    const c = await open(jgw.url, { login: 'anything', passcode: jwt(alg, claims()) });
    const t = `/topic/chat.${uniq(alg)}`;
    const got = await subscribe(c, t);
    const q = `/queue/${uniq('jobs')}`;
    const qgot = await subscribe(c, q);
    c.publish({ destination: t, body: `hello ${alg}`, headers: { receipt: 'r1' } });
    c.publish({ destination: q, body: `job ${alg}`, headers: { receipt: 'r2' } });
    await receipt(c, 'r2');
    await waitFor(() => got.length === 1 && qgot.length === 1, 10000, 'both messages');
    assert.equal(got[0].body, `hello ${alg}`);
    assert.equal(qgot[0].body, `job ${alg}`);
    await c.deactivate();
  });
}

test('a denied SUBSCRIBE gets ERROR Access refused naming the destination, then close 1008', async () => {
  const ws = raw(jgw.url);
  await ws.opened;
  ws.stomp('CONNECT', { 'accept-version': '1.2', host: '/', passcode: jwt('HS256', claims()) });
  await ws.frame('CONNECTED');
  ws.stomp('SUBSCRIBE', { id: 's1', destination: '/topic/secret.plans', receipt: 'x' });
  const e = await ws.frame('ERROR');
  assert.equal(e.headers.message, 'Access refused');
  assert.equal(e.headers['receipt-id'], 'x');
  assert.equal(e.body, "read access to exchange 'amq.topic' with routing key 'secret.plans' in vhost '/' " +
    "refused for user 'alice' (SUBSCRIBE /topic/secret.plans)");
  assert.equal(await ws.closed, 1008);
});

test('a denied SEND gets ERROR Access refused naming the destination and nothing is published', async () => {
  const amqp = await amqpConnect();
  const ch = await amqp.createChannel();
  const q = uniq('forbidden');
  await ch.assertQueue(q, { durable: false, autoDelete: true });
  const ws = raw(jgw.url);
  await ws.opened;
  ws.stomp('CONNECT', { 'accept-version': '1.2', host: '/', passcode: jwt('RS256', claims()) });
  await ws.frame('CONNECTED');
  ws.stomp('SEND', { destination: `/queue/${q}` }, 'should not arrive');
  const e = await ws.frame('ERROR');
  assert.equal(e.headers.message, 'Access refused');
  assert.match(e.body, new RegExp(`^write access to queue '${q}' in vhost '/' refused for user 'alice' \\(SEND /queue/${q}\\)$`));
  assert.equal(await ws.closed, 1008);
  const { messageCount } = await ch.checkQueue(q);
  assert.equal(messageCount, 0);
  // The same for a topic key outside the scopes and an exchange.
  for (const [dst, want] of [['/topic/news.today', "write access to exchange 'amq.topic' with routing key 'news.today'"],
    ['/exchange/amq.fanout/k', "write access to exchange 'amq.fanout' with routing key 'k'"],
    ['/app/admin/reset', "write access to exchange 'stompgate.app' with routing key 'admin.reset'"]]) {
    const w = raw(jgw.url);
    await w.opened;
    w.stomp('CONNECT', { 'accept-version': '1.2', host: '/', passcode: jwt('ES256', claims()) });
    await w.frame('CONNECTED');
    w.stomp('SEND', { destination: dst }, 'x');
    const f = await w.frame('ERROR');
    assert.equal(f.headers.message, 'Access refused');
    assert.ok(f.body.startsWith(want) && f.body.endsWith(`(SEND ${dst})`), f.body);
    assert.equal(await w.closed, 1008);
  }
  await amqp.close();
});

test('application SENDs carry the token user to the back end; /temp-queue/ needs no scope', async () => {
  const amqp = await amqpConnect();
  const ch = await amqp.createChannel();
  const { queue } = await ch.assertQueue('', { exclusive: true });
  await ch.bindQueue(queue, 'stompgate.app', 'orders.#');
  const seen = [];
  await ch.consume(queue, (m) => seen.push(m), { noAck: true });
  const c = await open(jgw.url, { passcode: jwt('HS256', claims({ sub: 'alice@example' })) });
  c.publish({ destination: '/app/orders/new', body: 'tea', headers: { receipt: 'a1', 'reply-to': '/temp-queue/answers' } });
  await receipt(c, 'a1');
  await waitFor(() => seen.length === 1, 10000, 'application message');
  assert.equal(seen[0].properties.headers['stompgate-user'], 'alice@example');
  await c.deactivate();
  await amqp.close();
});

test('tokens refused at CONNECT: expired, bad signature, wrong or missing aud, alg none, no token', async () => {
  const cases = [
    ['expired', jwt('HS256', claims({ exp: now() - 60 })), 'token expired'],
    ['not yet valid', jwt('RS256', claims({ nbf: now() + 600 })), 'token not valid yet (nbf)'],
    ['bad signature', jwt('HS256', claims(), { key: 'another secret of at least thirty-two bytes' }), 'bad token signature'],
    ['foreign RSA key', jwt('RS256', claims(), { key: crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey }), 'bad token signature'],
    ['wrong kid', jwt('ES256', claims(), { header: { kid: 'ec1' }, key: crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey }), 'bad token signature'],
    ['wrong aud', jwt('ES256', claims({ aud: 'someone-else' })), 'token audience (aud) does not match'],
    ['no aud', jwt('ES256', claims({ aud: undefined })), 'token audience (aud) does not match'],
    ['alg none', jwt('none', claims()), 'token algorithm not accepted (HS256, RS256 or ES256 only)'],
    ['garbage', 'not-a-token', 'malformed token: expected three dot-separated parts'],
    ['no token', undefined, 'no token: send a JWT as the CONNECT passcode or an Authorization: Bearer header'],
  ];
  for (const [what, token, why] of cases) {
    const { f, code } = await tryConnect(jgw.url, token);
    assert.equal(f.command, 'ERROR', what);
    assert.equal(f.headers.message, 'Access refused', what);
    assert.equal(f.body, why, what);
    assert.equal(code, 1008, what);
  }
  // aud may be an array holding ours.
  const { f } = await tryConnect(jgw.url, jwt('HS256', claims({ aud: ['x', AUD] })));
  assert.equal(f.command, 'CONNECTED');
});

test('a session ends with ERROR Token expired when its token expires', async () => {
  const ws = raw(jgw.url);
  await ws.opened;
  ws.stomp('CONNECT', { 'accept-version': '1.2', host: '/', passcode: jwt('HS256', claims({ exp: now() + 2 })) });
  await ws.frame('CONNECTED');
  const t0 = Date.now();
  ws.stomp('SUBSCRIBE', { id: 's', destination: '/topic/chat.exp', receipt: 'r' });
  await ws.frame('RECEIPT');
  const e = await ws.frame('ERROR', 6000);
  assert.equal(e.headers.message, 'Token expired');
  assert.equal(await ws.closed, 1008);
  assert.ok(Date.now() - t0 >= 900, 'not before exp');
});

test('the Authorization: Bearer header of the handshake carries the token', async () => {
  const ws = raw(jgw.url, { Authorization: `Bearer ${jwt('RS256', claims({ sub: 'bearer-user' }))}` });
  await ws.opened;
  ws.stomp('CONNECT', { 'accept-version': '1.2', host: '/' });
  await ws.frame('CONNECTED');
  ws.stomp('SUBSCRIBE', { id: 's', destination: '/topic/chat.bearer', receipt: 'r' });
  await ws.frame('RECEIPT');
  ws.stomp('SEND', { destination: '/topic/chat.bearer' }, 'via bearer');
  const m = await ws.frame('MESSAGE');
  assert.equal(m.body, 'via bearer');
  ws.stomp('SUBSCRIBE', { id: 's2', destination: '/topic/secret.x' });
  const e = await ws.frame('ERROR');
  assert.match(e.body, /refused for user 'bearer-user'/);
  ws.close();
  // A bad bearer token is refused at CONNECT like a bad passcode.
  const bad = raw(jgw.url, { Authorization: `Bearer ${jwt('HS256', claims({ exp: now() - 100 }))}` });
  await bad.opened;
  bad.stomp('CONNECT', { 'accept-version': '1.2', host: '/' });
  const f = await bad.frame('ERROR');
  assert.equal(f.body, 'token expired');
  // A header that is not a token is refused before the upgrade.
  const junk = raw(jgw.url, { Authorization: 'Bearer a b c' });
  await assert.rejects(junk.opened, /HTTP 400/);
});

test('users file: good and bad passwords, scopes per user, a hash made by --hash-password', async () => {
  const bob = await open(fgw.url, { login: 'bob', passcode: 'bob-pw' });
  const t = `/topic/chat.${uniq('f')}`;
  const got = await subscribe(bob, t);
  bob.publish({ destination: t, body: 'from bob' });
  await waitFor(() => got.length === 1, 10000, 'bob hears himself');
  await bob.deactivate();
  for (const [login, pw] of [['bob', 'wrong'], ['bob', ''], ['nobody', 'x'], [undefined, undefined]]) {
    const { f, code } = await tryConnect(fgw.url, pw, login);
    assert.equal(f.headers.message, 'Access refused', `${login}/${pw}`);
    assert.equal(f.body, 'unknown user or wrong password');
    assert.equal(code, 1008);
  }
  // carol may read news but not write it.
  const ws = raw(fgw.url);
  await ws.opened;
  ws.stomp('CONNECT', { 'accept-version': '1.2', host: '/', login: 'carol', passcode: 'carol-pw' });
  await ws.frame('CONNECTED');
  ws.stomp('SUBSCRIBE', { id: 's', destination: '/topic/news.eu', receipt: 'r' });
  await ws.frame('RECEIPT');
  ws.stomp('SEND', { destination: '/topic/news.eu' }, 'x');
  const e = await ws.frame('ERROR');
  assert.equal(e.headers.message, 'Access refused');
  assert.equal(e.body, "write access to exchange 'amq.topic' with routing key 'news.eu' in vhost '/' refused for user 'carol' (SEND /topic/news.eu)");
  assert.equal(await ws.closed, 1008);
});

test('SIGHUP reloads the users file; a broken file keeps the users in use', async () => {
  const before = fs.readFileSync(usersFile, 'utf8');
  fs.writeFileSync(usersFile, before + `dave ${hashOf('dave-pw')}\n`);
  fgw.child.kill('SIGHUP');
  await waitFor(() => fgw.log().includes('SIGHUP: users file reloaded'), 5000, 'reload');
  assert.equal((await tryConnect(fgw.url, 'dave-pw', 'dave')).f.command, 'CONNECTED');
  fs.writeFileSync(usersFile, 'dave nothash\n');
  fgw.child.kill('SIGHUP');
  await waitFor(() => fgw.log().includes('users file reload failed'), 5000, 'failed reload');
  assert.match(fgw.log(), /users-file.*line 1/);
  assert.equal((await tryConnect(fgw.url, 'bob-pw', 'bob')).f.command, 'CONNECTED');
  fs.writeFileSync(usersFile, before);
});

test('configuration: jwt and file need shared mode and their files', async () => {
  const cases = [
    [['--auth', 'jwt', '--mode', 'per-session', '--jwt-secret-file', path.join(dir, 'secret')], /'auth' = 'jwt': needs mode shared/],
    [['--auth', 'file', '--mode', 'per-session', '--users-file', usersFile], /'auth' = 'file': needs mode shared/],
    [['--auth', 'jwt', '--mode', 'shared'], /needs jwt-secret-file or jwt-key-file/],
    [['--auth', 'file', '--mode', 'shared'], /needs users-file/],
    [['--auth', 'ldap'], /expected broker, jwt or file/],
    [['--auth', 'jwt', '--mode', 'shared', '--jwt-key-file', usersFile], /'jwt-key-file'.*no PEM public key/],
    [['--auth', 'jwt', '--mode', 'shared', '--jwt-key-file', path.join(dir, 'missing.pem')], /'jwt-key-file'/],
  ];
  fs.writeFileSync(path.join(dir, 'short'), 'too short');
  cases.push([['--auth', 'jwt', '--mode', 'shared', '--jwt-secret-file', path.join(dir, 'short')], /at least 32 bytes/]);
  fs.writeFileSync(path.join(dir, 'badusers'), 'eve pbkdf2-sha256$1000$x\n');
  cases.push([['--auth', 'file', '--mode', 'shared', '--users-file', path.join(dir, 'badusers')], /'users-file'.*line 1: a password hash/]);
  for (const [args, want] of cases) {
    const r = await run(['--listen', '127.0.0.1:0', ...args]);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
    assert.match(r.err, want);
  }
  assert.equal((await run(['--hash-password'], '')).code, 2);
});
