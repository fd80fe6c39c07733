// SPDX-License-Identifier: MIT
// The conformance cases. Each one is a real client exchange through a
// Web-STOMP endpoint: @stomp/stompjs where a client library is what
// applications use, a raw WebSocket where the library would hide the wire.
// Expectations follow the STOMP specification (1.0, 1.1, 1.2) and, for the
// AMQP mapping, RabbitMQ's STOMP guide; `clause` names the text each case
// checks.
import assert from 'node:assert/strict';
import { sleep, uniq, unescapeHeader, waitFor } from './lib.mjs';

const cases = [];
const c = (id, clause, run) => cases.push({ id, clause, run });
const S12 = 'STOMP 1.2';
const S11 = 'STOMP 1.1';
const S10 = 'STOMP 1.0';
const RMQ = 'RabbitMQ STOMP guide';

// Sends and waits for the RECEIPT on a raw session.
async function rawSend(ws, headers, body = '') {
  const rid = uniq('r');
  ws.put('SEND', { ...headers, receipt: rid }, body);
  return ws.take('RECEIPT').then((f) => { assert.equal(f.headers['receipt-id'], rid); return f; });
}
async function rawSub(ws, headers) {
  const rid = uniq('r');
  ws.put('SUBSCRIBE', { ...headers, receipt: rid });
  const f = await ws.take('RECEIPT');
  assert.equal(f.headers['receipt-id'], rid);
}

// ---------------- connection and negotiation ----------------

c('connect-negotiates-1.2', `${S12} §Protocol Negotiation`, async (x) => {
  const ws = await x.stomp('1.0,1.1,1.2');
  assert.equal(ws.connected.headers.version, '1.2');
});

c('connect-negotiates-1.1', `${S12} §Protocol Negotiation`, async (x) => {
  const ws = await x.stomp('1.1');
  assert.equal(ws.connected.headers.version, '1.1');
});

c('connect-without-accept-version-is-1.0', `${S11} §Protocol Negotiation (no accept-version = 1.0)`, async (x) => {
  const ws = await x.stomp('1.0');
  assert.ok(ws.connected.headers.version === undefined || ws.connected.headers.version === '1.0',
    `version ${ws.connected.headers.version}`);
});

c('stomp-frame-connects', `${S12} §STOMP frame`, async (x) => {
  const ws = await x.raw();
  ws.put('STOMP', { 'accept-version': '1.2', host: '/', login: 'guest', passcode: 'guest' });
  const f = await ws.take('CONNECTED');
  assert.equal(f.headers.version, '1.2');
});

c('unsupported-version-error', `${S12} §Protocol Negotiation (ERROR with version header)`, async (x) => {
  const ws = await x.raw();
  ws.put('CONNECT', { 'accept-version': '2.0', host: '/', login: 'guest', passcode: 'guest' });
  const f = await x.errorThenClose(ws);
  assert.ok(f.headers.version, 'ERROR names the supported versions');
});

c('host-required-1.2', `${S12} §CONNECT (host REQUIRED)`, async (x) => {
  const ws = await x.raw();
  ws.put('CONNECT', { 'accept-version': '1.2', login: 'guest', passcode: 'guest' });
  const f = await x.errorThenClose(ws);
  assert.match(f.headers.message, /host/i);
});

c('host-required-1.1', `${S11} §CONNECT (host REQUIRED)`, async (x) => {
  const ws = await x.raw();
  ws.put('CONNECT', { 'accept-version': '1.1', login: 'guest', passcode: 'guest' });
  const f = await x.errorThenClose(ws);
  assert.match(f.headers.message, /host/i);
});

c('host-optional-1.0', `${S10} §CONNECT (no host header)`, async (x) => {
  const ws = await x.raw();
  ws.put('CONNECT', { login: 'guest', passcode: 'guest' });
  await ws.take('CONNECTED');
});

c('host-names-vhost', `${RMQ} §Virtual hosts (host header = vhost)`, async (x) => {
  const ws = await x.stomp('1.2', { host: 'sgvhost' });
  // A queue declared through this session lives in sgvhost, not in /.
  const q = uniq('vh');
  await rawSend(ws, { destination: `/queue/${q}` }, 'in sgvhost');
  assert.equal(await x.queueExists(q), null, 'the queue is not in vhost /');
});

c('unknown-vhost-error-close', `${S12} §ERROR + §Connecting (server closes after ERROR)`, async (x) => {
  const ws = await x.raw();
  ws.put('CONNECT', { 'accept-version': '1.2', host: 'no-such-vhost', login: 'guest', passcode: 'guest' });
  await x.errorThenClose(ws);
});

c('bad-passcode-error-close', `${S12} §CONNECT (authentication refused: ERROR, close)`, async (x) => {
  const ws = await x.raw();
  ws.put('CONNECT', { 'accept-version': '1.2', host: '/', login: 'guest', passcode: 'wrong' });
  await x.errorThenClose(ws);
});

c('vhost-access-refused-403', `${RMQ} §Access control (403 as ERROR, close)`, async (x) => {
  const ws = await x.raw();
  ws.put('CONNECT', { 'accept-version': '1.2', host: '/', login: 'sgnoperm', passcode: 'sgpass' });
  const f = await x.errorThenClose(ws);
  assert.match(`${f.headers.message} ${f.body}`, /access|refused|denied|not_allowed|permission/i);
});

c('server-heart-beats', `${S12} §Heart-beating`, async (x) => {
  const ws = await x.stomp('1.2', { 'heart-beat': '0,500' });
  const [sx] = ws.connected.headers['heart-beat'].split(',').map(Number);
  assert.ok(sx > 0, `server offers to send heart-beats (${ws.connected.headers['heart-beat']})`);
  await waitFor(() => ws.beats > 0, Math.max(3000, sx * 3), 'a heart-beat EOL');
});

c('client-heart-beats-accepted', `${S12} §Heart-beating (EOLs between frames)`, async (x) => {
  const ws = await x.stomp('1.2');
  ws.send('\n');
  ws.send('\r\n');
  const q = uniq('hb');
  ws.send(`\n\n${'SEND\ndestination:/queue/' + q + '\nreceipt:r1\n\nbody\0'}\n`);
  await ws.take('RECEIPT');
});

c('frame-before-connect-error-close', `${S12} §Connecting (first frame is CONNECT)`, async (x) => {
  const ws = await x.raw();
  ws.put('SEND', { destination: '/queue/x', receipt: 'early' }, 'x');
  await x.errorThenClose(ws);
});

c('unknown-command-error-close', `${S12} §ERROR (server closes after ERROR)`, async (x) => {
  const ws = await x.stomp();
  ws.put('FROB', {});
  await x.errorThenClose(ws);
});

c('second-connect-error', `${S12} §CONNECT (once per connection)`, async (x) => {
  const ws = await x.stomp();
  ws.put('CONNECT', { 'accept-version': '1.2', host: '/', login: 'guest', passcode: 'guest' });
  await x.errorThenClose(ws);
});

c('disconnect-receipt', `${S12} §DISCONNECT (graceful shutdown)`, async (x) => {
  const ws = await x.stomp();
  ws.put('DISCONNECT', { receipt: 'bye' });
  const f = await ws.take('RECEIPT');
  assert.equal(f.headers['receipt-id'], 'bye');
  await ws.closedWithin(3000);
});

c('connect-disconnect-back-to-back', `${S12} §DISCONNECT (RECEIPT before close)`, async (x) => {
  const ws = await x.raw();
  ws.send(`CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\n\n\0DISCONNECT\nreceipt:bye\n\n\0`);
  await ws.take('CONNECTED');
  const f = await ws.take('RECEIPT');
  assert.equal(f.headers['receipt-id'], 'bye');
});

c('subprotocol-v12', 'Web-STOMP subprotocols (v12.stomp)', async (x) => {
  const ws = await x.raw(['v12.stomp']);
  assert.equal(ws.protocol, 'v12.stomp');
});

c('stompjs-connects', '@stomp/stompjs CONNECT/CONNECTED', async (x) => {
  const cl = await x.client();
  assert.equal(cl.connectedFrame.headers.version, '1.2');
});

// ---------------- frames and escaping ----------------

c('escape-1.2-roundtrip', `${S12} §Value Encoding (\\r \\n \\c \\\\)`, async (x) => {
  const ws = await x.stomp('1.2');
  const t = `/topic/${uniq('esc')}`;
  await rawSub(ws, { destination: t, id: 's1' });
  ws.send(`SEND\ndestination:${t}\nx-e:a\\cb\\nc\\\\d\\re\n\nx\0`);
  const m = await ws.take('MESSAGE');
  assert.equal(m.headers['x-e'], 'a\\cb\\nc\\\\d\\re', 'escaped on the wire again');
});

c('escape-1.1-roundtrip', `${S11} §Value Encoding (\\n \\c \\\\)`, async (x) => {
  const ws = await x.stomp('1.1');
  const t = `/topic/${uniq('esc')}`;
  await rawSub(ws, { destination: t, id: 's1' });
  ws.send(`SEND\ndestination:${t}\nx-e:a\\cb\\nc\\\\d\n\nx\0`);
  const m = await ws.take('MESSAGE');
  assert.equal(m.headers['x-e'], 'a\\cb\\nc\\\\d');
});

c('escape-1.0-literal', `${S10} (no header escaping)`, async (x) => {
  const ws = await x.stomp('1.0');
  const t = `/topic/${uniq('esc')}`;
  await rawSub(ws, { destination: t });
  ws.send(`SEND\ndestination:${t}\nx-e:a\\cb:c\n\nx\0`);
  const m = await ws.take('MESSAGE');
  assert.equal(m.headers['x-e'], 'a\\cb:c', 'backslash and colon kept literally');
});

c('escape-undefined-fatal-1.2', `${S12} §Value Encoding (undefined escape is fatal)`, async (x) => {
  const ws = await x.stomp('1.2');
  ws.send(`SEND\ndestination:/topic/x\nx-e:a\\tb\n\nx\0`);
  await x.errorThenClose(ws);
});

c('escape-r-undefined-1.1', `${S11} §Value Encoding (only \\n \\c \\\\ defined)`, async (x) => {
  const ws = await x.stomp('1.1');
  ws.send(`SEND\ndestination:/topic/x\nx-e:a\\rb\n\nx\0`);
  await x.errorThenClose(ws);
});

c('repeated-header-first-wins', `${S12} §Repeated Header Entries`, async (x) => {
  const ws = await x.stomp('1.2');
  const t = `/topic/${uniq('rep')}`;
  await rawSub(ws, { destination: t, id: 's1' });
  ws.send(`SEND\ndestination:${t}\nx-r:first\nx-r:second\n\nx\0`);
  const m = await ws.take('MESSAGE');
  assert.equal(m.headers['x-r'], 'first');
});

c('header-whitespace-kept-1.2', `${S12} §Value Encoding (MUST never trim or pad)`, async (x) => {
  const ws = await x.stomp('1.2');
  const t = `/topic/${uniq('ws')}`;
  await rawSub(ws, { destination: t, id: 's1' });
  ws.send(`SEND\ndestination:${t}\nx-w: padded \n\nx\0`);
  const m = await ws.take('MESSAGE');
  assert.equal(m.headers['x-w'], ' padded ');
});

c('crlf-line-endings', `${S12} §Augmented BNF (EOL may be CRLF)`, async (x) => {
  const ws = await x.stomp('1.2');
  const t = `/topic/${uniq('crlf')}`;
  ws.send(`SUBSCRIBE\r\ndestination:${t}\r\nid:s1\r\nreceipt:r1\r\n\r\n\0`);
  await ws.take('RECEIPT');
  ws.send(`SEND\r\ndestination:${t}\r\n\r\ncrlf body\0`);
  const m = await ws.take('MESSAGE');
  assert.equal(m.body, 'crlf body');
});

c('content-length-nul-body', `${S12} §Body (content-length, NUL octets)`, async (x) => {
  const ws = await x.stomp('1.2');
  const t = `/topic/${uniq('nul')}`;
  await rawSub(ws, { destination: t, id: 's1' });
  const body = 'a\0b\0c';
  ws.send(`SEND\ndestination:${t}\ncontent-length:${body.length}\n\n${body}\0`);
  const m = await ws.take('MESSAGE');
  assert.equal(m.text.slice(m.text.indexOf('\n\n') + 2, m.text.indexOf('\n\n') + 2 + body.length), body);
});

c('message-content-length', `${S12} §Standard Headers (content-length SHOULD be on MESSAGE)`, async (x) => {
  const ws = await x.stomp('1.2');
  const t = `/topic/${uniq('cl')}`;
  await rawSub(ws, { destination: t, id: 's1' });
  ws.put('SEND', { destination: t }, 'héllo');
  const m = await ws.take('MESSAGE');
  assert.equal(m.headers['content-length'], String(Buffer.byteLength('héllo')));
});

c('binary-body-binary-frame', 'RFC 6455 §5.6 (text frames carry UTF-8 only)', async (x) => {
  const ws = await x.stomp('1.2');
  const t = `/topic/${uniq('bin')}`;
  await rawSub(ws, { destination: t, id: 's1' });
  const body = Buffer.from([0xff, 0xfe, 0x00, 0x80]);
  const head = Buffer.from(`SEND\ndestination:${t}\ncontent-length:4\n\n`);
  ws.send(Buffer.concat([head, body, Buffer.from([0])]));
  const m = await ws.take('MESSAGE');
  // A byte stream has no text or binary messages; over TCP only the bytes count.
  if (x.transport === 'ws') assert.equal(m.binary, true, 'non-UTF-8 body sent as a binary WebSocket frame');
  assert.ok(m.bytes.includes(body), 'body bytes intact');
});

c('stompjs-utf8-body', '@stomp/stompjs text body round trip', async (x) => {
  const a = await x.client(), b = await x.client();
  const t = `/topic/${uniq('utf')}`;
  const msgs = await x.sub(a, t);
  b.publish({ destination: t, body: 'grüße ✓ 日本' });
  await waitFor(() => msgs.length === 1);
  assert.equal(msgs[0].body, 'grüße ✓ 日本');
});

// ---------------- destinations ----------------

c('topic-pubsub', `${RMQ} §Destinations /topic`, async (x) => {
  const a = await x.client(), b = await x.client();
  const t = `/topic/${uniq('t')}`;
  const msgs = await x.sub(a, t);
  await x.publishConfirmed(b, t, 'hello');
  await waitFor(() => msgs.length === 1);
  assert.equal(msgs[0].headers.destination, t);
});

c('topic-wildcard-star', `${RMQ} §Destinations /topic (* wildcard)`, async (x) => {
  const a = await x.client();
  const k = uniq('w');
  const msgs = await x.sub(a, `/topic/${k}.*.c`);
  await x.publishConfirmed(a, `/topic/${k}.b.b.c`, 'no');
  await x.publishConfirmed(a, `/topic/${k}.b.c`, 'yes');
  await waitFor(() => msgs.length >= 1);
  await sleep(200);
  assert.deepEqual(msgs.map((m) => m.body), ['yes']);
  assert.equal(msgs[0].headers.destination, `/topic/${k}.b.c`);
});

c('topic-wildcard-hash', `${RMQ} §Destinations /topic (# wildcard)`, async (x) => {
  const a = await x.client();
  const k = uniq('h');
  const msgs = await x.sub(a, `/topic/${k}.#`);
  await x.publishConfirmed(a, `/topic/${k}.a.b.c`, '1');
  await x.publishConfirmed(a, `/topic/${k}`, '2');
  await x.publishConfirmed(a, `/topic/other.${k}`, 'no');
  await waitFor(() => msgs.length >= 2);
  await sleep(200);
  assert.deepEqual(msgs.map((m) => m.body).sort(), ['1', '2']);
});

c('exchange-with-key', `${RMQ} §Destinations /exchange/X/K`, async (x) => {
  const a = await x.client();
  const k = uniq('k');
  const msgs = await x.sub(a, `/exchange/amq.direct/${k}`);
  await x.publishConfirmed(a, `/exchange/amq.direct/${k}`, 'direct');
  await x.publishConfirmed(a, `/exchange/amq.direct/${k}-other`, 'no');
  await waitFor(() => msgs.length === 1);
  await sleep(150);
  assert.equal(msgs.length, 1);
  assert.equal(msgs[0].headers.destination, `/exchange/amq.direct/${k}`);
});

c('exchange-without-key', `${RMQ} §Destinations /exchange/X`, async (x) => {
  const ch = await x.channel();
  const ex = uniq('fan');
  await ch.assertExchange(ex, 'fanout', { autoDelete: true });
  const a = await x.client();
  const msgs = await x.sub(a, `/exchange/${ex}`);
  await x.publishConfirmed(a, `/exchange/${ex}`, 'fan');
  await waitFor(() => msgs.length === 1);
  assert.equal(msgs[0].headers.destination, `/exchange/${ex}`);
});

c('exchange-topic-pattern', `${RMQ} §Destinations /exchange/amq.topic/pattern`, async (x) => {
  const a = await x.client();
  const k = uniq('p');
  const msgs = await x.sub(a, `/exchange/amq.topic/${k}.*`);
  await x.publishConfirmed(a, `/topic/${k}.x`, 'via topic');
  await waitFor(() => msgs.length === 1);
  assert.equal(msgs[0].body, 'via topic');
});

c('queue-send-declares-durable', `${RMQ} §Destinations /queue (durable, shared)`, async (x) => {
  const a = await x.client();
  const q = uniq('q');
  await x.publishConfirmed(a, `/queue/${q}`, 'stored');
  const r = await x.queueExists(q);
  assert.ok(r, 'SEND declared the queue');
  assert.equal(r.messageCount, 1);
  assert.equal(await x.declareOk(q, { durable: true }), true, 'durable, not exclusive, not auto-delete');
});

c('queue-subscribe-receives', `${RMQ} §Destinations /queue`, async (x) => {
  const a = await x.client(), b = await x.client();
  const q = `/queue/${uniq('q')}`;
  const msgs = await x.sub(a, q);
  await x.publishConfirmed(b, q, 'to queue');
  await waitFor(() => msgs.length === 1);
  assert.equal(msgs[0].headers.destination, q);
});

c('queue-competing-consumers', `${RMQ} §Destinations /queue (one consumer per message)`, async (x) => {
  const a = await x.client(), b = await x.client();
  const q = `/queue/${uniq('work')}`;
  const ma = await x.sub(a, q), mb = await x.sub(b, q);
  for (let i = 0; i < 10; i++) a.publish({ destination: q, body: `m${i}` });
  await waitFor(() => ma.length + mb.length === 10);
  await sleep(150);
  assert.equal(new Set([...ma, ...mb].map((m) => m.body)).size, 10);
  assert.ok(ma.length > 0 && mb.length > 0);
});

c('amq-queue-existing', `${RMQ} §Destinations /amq/queue`, async (x) => {
  const ch = await x.channel();
  const q = uniq('aq');
  await ch.assertQueue(q, { durable: false, autoDelete: false });
  const a = await x.client();
  const msgs = await x.sub(a, `/amq/queue/${q}`);
  await x.publishConfirmed(a, `/amq/queue/${q}`, 'existing');
  await waitFor(() => msgs.length === 1);
  assert.equal(msgs[0].body, 'existing');
});

c('amq-queue-send-no-declare', `${RMQ} §Destinations /amq/queue (no declare)`, async (x) => {
  const ws = await x.stomp();
  const q = uniq('nodecl');
  await rawSend(ws, { destination: `/amq/queue/${q}` }, 'lost');
  assert.equal(await x.queueExists(q), null);
});

c('amq-queue-missing-404', `${S12} §SUBSCRIBE (cannot subscribe: ERROR, close); ${RMQ} /amq/queue`, async (x) => {
  const ws = await x.stomp();
  const q = uniq('missing');
  ws.put('SUBSCRIBE', { destination: `/amq/queue/${q}`, id: 's1', receipt: 'r404' });
  const f = await x.errorThenClose(ws);
  assert.match(`${f.headers.message} ${f.body}`, /not.found|404/i);
  assert.match(f.body, new RegExp(q));
});

c('temp-queue-reply-to', `${RMQ} §Temp queue destinations`, async (x) => {
  const ch = await x.channel();
  const q = uniq('rpc');
  await ch.assertQueue(q, { autoDelete: true });
  const seen = [];
  await ch.consume(q, (m) => { seen.push(m); ch.sendToQueue(m.properties.replyTo, Buffer.from('pong')); }, { noAck: true });
  const ws = await x.stomp();
  ws.put('SEND', { destination: `/amq/queue/${q}`, 'reply-to': '/temp-queue/foo' }, 'ping');
  const m = await ws.take('MESSAGE');
  assert.equal(m.body, 'pong');
  assert.equal(m.headers.subscription, '/temp-queue/foo');
  assert.ok(!seen[0].properties.replyTo.startsWith('/temp-queue/'), 'reply_to is the real queue');
});

c('temp-queue-one-per-name', `${RMQ} §Temp queue destinations (one queue per name per session)`, async (x) => {
  const ch = await x.channel();
  const q = uniq('rt');
  await ch.assertQueue(q, { autoDelete: true });
  // By body: the two sessions' publishes may reach the queue in any order.
  const seen = [];
  await ch.consume(q, (m) => { seen[+m.content.toString() - 1] = m.properties.replyTo; }, { noAck: true });
  const ws = await x.stomp();
  ws.put('SEND', { destination: `/amq/queue/${q}`, 'reply-to': '/temp-queue/a' }, '1');
  ws.put('SEND', { destination: `/amq/queue/${q}`, 'reply-to': '/temp-queue/a' }, '2');
  ws.put('SEND', { destination: `/amq/queue/${q}`, 'reply-to': '/temp-queue/b' }, '3');
  const ws2 = await x.stomp();
  ws2.put('SEND', { destination: `/amq/queue/${q}`, 'reply-to': '/temp-queue/a' }, '4');
  await waitFor(() => seen.filter((r) => r !== undefined).length === 4);
  assert.equal(seen[0], seen[1], 'same name, same queue');
  assert.notEqual(seen[0], seen[2], 'other name, other queue');
  assert.notEqual(seen[0], seen[3], 'other session, other queue');
});

c('temp-queue-exclusive', `${RMQ} §Temp queue destinations (exclusive)`, async (x) => {
  const ch = await x.channel();
  const q = uniq('rx');
  await ch.assertQueue(q, { autoDelete: true });
  let rt;
  await ch.consume(q, (m) => { rt = m.properties.replyTo; }, { noAck: true });
  const ws = await x.stomp();
  ws.put('SEND', { destination: `/amq/queue/${q}`, 'reply-to': '/temp-queue/ex' }, '1');
  await waitFor(() => rt);
  const ch2 = await x.channel();
  const name = rt.replace(/^\/reply-queue\//, '');
  await assert.rejects(ch2.consume(name, () => {}), /RESOURCE_LOCKED|405|exclusive/i);
});

c('temp-queue-subscribe-invalid', `${RMQ} §Temp queue destinations (reply-to only)`, async (x) => {
  const ws = await x.stomp();
  ws.put('SUBSCRIBE', { destination: '/temp-queue/nope', id: 's1' });
  await x.errorThenClose(ws);
});

c('reply-queue-send', `${RMQ} §Destinations /reply-queue`, async (x) => {
  const ch = await x.channel();
  const { queue } = await ch.assertQueue('', { exclusive: true });
  const got = [];
  await ch.consume(queue, (m) => got.push(m.content.toString()), { noAck: true });
  const a = await x.client();
  await x.publishConfirmed(a, `/reply-queue/${queue}`, 'reply');
  await waitFor(() => got.length === 1);
  assert.equal(got[0], 'reply');
});

c('stomp-rpc-roundtrip', `${RMQ} §Temp queue destinations (reply-to usable by a STOMP responder)`, async (x) => {
  const server = await x.client(), requester = await x.stomp();
  const q = `/queue/${uniq('svc')}`;
  await x.sub(server, q, {}, (m) => server.publish({ destination: m.headers['reply-to'], body: `re:${m.body}` }));
  requester.put('SEND', { destination: q, 'reply-to': '/temp-queue/r' }, 'ask');
  const m = await requester.take('MESSAGE');
  assert.equal(m.body, 're:ask');
});

c('escaped-slash-queue-name', `${RMQ} §Destinations (%2F escapes /)`, async (x) => {
  const a = await x.client();
  const q = uniq('sl');
  await x.publishConfirmed(a, `/queue/${q}%2Fpart`, 'x');
  assert.ok(await x.queueExists(`${q}/part`), 'queue name contains /');
});

c('escaped-slash-routing-key', `${RMQ} §Destinations (%2F escapes / in keys)`, async (x) => {
  const a = await x.client();
  const k = uniq('rk');
  const msgs = await x.sub(a, `/exchange/amq.direct/${k}%2Fsub`);
  const ch = await x.channel();
  ch.publish('amq.direct', `${k}/sub`, Buffer.from('slash'));
  await waitFor(() => msgs.length === 1);
  assert.equal(msgs[0].headers.destination, `/exchange/amq.direct/${k}%2Fsub`);
});

c('invalid-destination-error', `${RMQ} §Destinations (unknown prefix: ERROR)`, async (x) => {
  const ws = await x.stomp();
  ws.put('SEND', { destination: '/nowhere/x' }, 'x');
  const f = await x.errorThenClose(ws);
  assert.match(`${f.headers.message} ${f.body}`, /destination/i);
});

c('empty-queue-name-error', `${RMQ} §Destinations (empty name: ERROR)`, async (x) => {
  const ws = await x.stomp();
  ws.put('SUBSCRIBE', { destination: '/queue/', id: 's1' });
  await x.errorThenClose(ws);
});

c('missing-destination-error', `${S12} §SEND (destination REQUIRED)`, async (x) => {
  const ws = await x.stomp();
  ws.put('SEND', {}, 'x');
  await x.errorThenClose(ws);
});

c('amqp-to-stomp-topic', `${RMQ} §Interoperability (amq.topic <-> /topic)`, async (x) => {
  const a = await x.client();
  const k = uniq('n');
  const msgs = await x.sub(a, `/topic/${k}`);
  const ch = await x.channel();
  ch.publish('amq.topic', k, Buffer.from('native'));
  await waitFor(() => msgs.length === 1);
  assert.equal(msgs[0].body, 'native');
  assert.equal(msgs[0].headers.destination, `/topic/${k}`);
});

c('stomp-to-amqp-queue', `${RMQ} §Interoperability (/queue -> AMQP consumer)`, async (x) => {
  const a = await x.client();
  const q = uniq('toamqp');
  await x.publishConfirmed(a, `/queue/${q}`, 'for amqp');
  const ch = await x.channel();
  const m = await ch.get(q, { noAck: true });
  assert.equal(m.content.toString(), 'for amqp');
});

// ---------------- subscriptions, durable, queue arguments ----------------

c('subscribe-id-required-1.2', `${S12} §SUBSCRIBE (id REQUIRED)`, async (x) => {
  const ws = await x.stomp('1.2');
  ws.put('SUBSCRIBE', { destination: '/topic/x' });
  await x.errorThenClose(ws);
});

c('subscribe-1.0-without-id', `${S10} §SUBSCRIBE (id optional), §UNSUBSCRIBE by destination`, async (x) => {
  const ws = await x.stomp('1.0');
  const t = `/topic/${uniq('t10')}`;
  await rawSub(ws, { destination: t });
  ws.put('SEND', { destination: t }, 'one');
  await ws.take('MESSAGE');
  ws.put('UNSUBSCRIBE', { destination: t, receipt: 'u' });
  await ws.take('RECEIPT');
  ws.put('SEND', { destination: t }, 'two');
  await ws.none('MESSAGE');
});

c('subscription-header-on-message', `${S12} §MESSAGE (subscription header)`, async (x) => {
  const ws = await x.stomp('1.2');
  const t = `/topic/${uniq('sh')}`;
  await rawSub(ws, { destination: t, id: 'my-sub' });
  ws.put('SEND', { destination: t }, 'x');
  const m = await ws.take('MESSAGE');
  assert.equal(m.headers.subscription, 'my-sub');
  assert.ok(m.headers['message-id']);
});

c('unsubscribe-stops-delivery', `${S12} §UNSUBSCRIBE`, async (x) => {
  const a = await x.client();
  const t = `/topic/${uniq('u')}`;
  const msgs = await x.sub(a, t);
  const rid = uniq('u');
  const r = x.receipt(a, rid);
  msgs.sub.unsubscribe({ receipt: rid });
  await r;
  await x.publishConfirmed(a, t, 'late');
  await sleep(300);
  assert.equal(msgs.length, 0);
});

c('duplicate-subscription-id-error', `${S12} §SUBSCRIBE (id unique per connection)`, async (x) => {
  const ws = await x.stomp();
  await rawSub(ws, { destination: '/topic/a', id: 'dup' });
  ws.put('SUBSCRIBE', { destination: '/topic/b', id: 'dup' });
  await x.errorThenClose(ws);
});

c('invalid-ack-mode-error', `${S12} §SUBSCRIBE ack Header`, async (x) => {
  const ws = await x.stomp();
  ws.put('SUBSCRIBE', { destination: '/topic/a', id: 's', ack: 'sometimes' });
  await x.errorThenClose(ws);
});

c('durable-topic-subscription', `${RMQ} §Durable topic subscriptions (durable:true + id)`, async (x) => {
  const t = `/topic/${uniq('dur')}`;
  const id = uniq('dsub');
  const a = await x.client();
  await x.sub(a, t, { id, durable: 'true', 'auto-delete': 'false' });
  await a.deactivate();
  const p = await x.client();
  await x.publishConfirmed(p, t, 'while away');
  const b = await x.client();
  const msgs = await x.sub(b, t, { id, durable: 'true', 'auto-delete': 'false' });
  await waitFor(() => msgs.length === 1, 5000, 'the message kept while away');
  assert.equal(msgs[0].body, 'while away');
  const rid = uniq('u');
  const r = x.receipt(b, rid);
  msgs.sub.unsubscribe({ durable: 'true', receipt: rid });
  await r;
});

c('durable-unsubscribe-deletes-queue', `${RMQ} §Durable topic subscriptions (UNSUBSCRIBE durable:true deletes)`, async (x) => {
  const t = `/topic/${uniq('dd')}`;
  const id = uniq('dsub');
  const a = await x.client();
  const msgs = await x.sub(a, t, { id, durable: 'true', 'auto-delete': 'false' });
  const rid = uniq('u');
  const r = x.receipt(a, rid);
  msgs.sub.unsubscribe({ durable: 'true', receipt: rid });
  await r;
  const p = await x.client();
  await x.publishConfirmed(p, t, 'after delete');
  const b = await x.client();
  const again = await x.sub(b, t, { id, durable: 'true', 'auto-delete': 'false' });
  await sleep(400);
  assert.equal(again.length, 0, 'the old queue was deleted, so nothing was kept');
  const rid2 = uniq('u');
  const r2 = x.receipt(b, rid2);
  again.sub.unsubscribe({ durable: 'true', receipt: rid2 });
  await r2;
});

c('persistent-true-subscription', `${RMQ} §Durable topic subscriptions (persistent:true synonym)`, async (x) => {
  const t = `/topic/${uniq('pers')}`;
  const id = uniq('psub');
  const a = await x.client();
  await x.sub(a, t, { id, persistent: 'true', 'auto-delete': 'false' });
  await a.deactivate();
  const p = await x.client();
  await x.publishConfirmed(p, t, 'kept');
  const b = await x.client();
  const msgs = await x.sub(b, t, { id, persistent: 'true', 'auto-delete': 'false' });
  await waitFor(() => msgs.length === 1);
  const rid = uniq('u');
  const r = x.receipt(b, rid);
  msgs.sub.unsubscribe({ persistent: 'true', receipt: rid });
  await r;
});

c('x-queue-name-topic', `${RMQ} §Queue naming (x-queue-name)`, async (x) => {
  const a = await x.client();
  const t = `/topic/${uniq('xq')}`;
  const name = uniq('named');
  const msgs = await x.sub(a, t, { 'x-queue-name': name });
  assert.ok(await x.queueExists(name), 'the subscription queue has the given name');
  const ch = await x.channel();
  ch.publish('amq.topic', t.slice(7), Buffer.from('bound'));
  await waitFor(() => msgs.length === 1);
});

c('x-queue-name-durable-survives', `${RMQ} §Durable topic subscriptions (x-queue-name + durable)`, async (x) => {
  const t = `/topic/${uniq('xqd')}`;
  const name = uniq('named');
  const id = uniq('i');
  const h = { id, durable: 'true', 'auto-delete': 'false', 'x-queue-name': name };
  const a = await x.client();
  await x.sub(a, t, h);
  await a.deactivate();
  assert.ok(await x.queueExists(name), 'durable queue survives the session');
  const b = await x.client();
  const again = await x.sub(b, t, h);
  const rid = uniq('u');
  const r = x.receipt(b, rid);
  again.sub.unsubscribe({ durable: 'true', 'x-queue-name': name, receipt: rid });
  await r;
  assert.equal(await x.queueExists(name), null, 'deleted by UNSUBSCRIBE durable:true');
});

c('non-durable-topic-queue-removed', `${RMQ} §Destinations /topic (non-durable queue goes with the session)`, async (x) => {
  const a = await x.client();
  const name = uniq('tmp');
  await x.sub(a, `/topic/${uniq('nd')}`, { 'x-queue-name': name });
  await a.deactivate();
  let gone = false;
  for (let i = 0; i < 20 && !gone; i++) { gone = (await x.queueExists(name)) === null; if (!gone) await sleep(100); }
  assert.ok(gone, 'queue deleted after the session ended');
});

c('queue-arg-message-ttl', `${RMQ} §Queue properties (x-message-ttl)`, async (x) => {
  const ws = await x.stomp();
  const q = uniq('ttl');
  await rawSend(ws, { destination: `/queue/${q}`, 'x-message-ttl': '100' }, 'expires');
  await sleep(400);
  const r = await x.queueExists(q);
  assert.ok(r);
  assert.equal(r.messageCount, 0, 'the message expired');
});

c('queue-arg-expires', `${RMQ} §Queue properties (x-expires)`, async (x) => {
  const ws = await x.stomp();
  const q = uniq('exp');
  await rawSend(ws, { destination: `/queue/${q}`, 'x-expires': '400' }, 'x');
  // A passive declare counts as use, so look only once, after the expiry.
  await sleep(1500);
  assert.equal(await x.queueExists(q), null, 'an unused queue expires');
});

c('queue-arg-max-length', `${RMQ} §Queue properties (x-max-length)`, async (x) => {
  const ws = await x.stomp();
  const q = uniq('ml');
  for (const b of ['1', '2', '3']) await rawSend(ws, { destination: `/queue/${q}`, 'x-max-length': '1' }, b);
  await rawSub(ws, { destination: `/queue/${q}`, id: 's', 'x-max-length': '1' });
  const m = await ws.take('MESSAGE');
  assert.equal(m.body, '3', 'only the newest is kept');
  await ws.none('MESSAGE', 200);
});

c('queue-arg-max-length-bytes', `${RMQ} §Queue properties (x-max-length-bytes)`, async (x) => {
  const ws = await x.stomp();
  const q = uniq('mlb');
  await rawSend(ws, { destination: `/queue/${q}`, 'x-max-length-bytes': '5' }, '12345');
  await rawSend(ws, { destination: `/queue/${q}`, 'x-max-length-bytes': '5' }, 'abcde');
  const r = await x.queueExists(q);
  assert.equal(r.messageCount, 1);
  assert.equal(await x.declareOk(q, { durable: true, arguments: { 'x-max-length-bytes': 5 } }), true);
});

c('queue-arg-max-priority', `${RMQ} §Queue properties (x-max-priority)`, async (x) => {
  const ws = await x.stomp();
  const q = uniq('pri');
  for (const p of ['1', '9', '5']) await rawSend(ws, { destination: `/queue/${q}`, 'x-max-priority': '10', priority: p }, p);
  await rawSub(ws, { destination: `/queue/${q}`, id: 's', 'x-max-priority': '10' });
  const got = [];
  for (let i = 0; i < 3; i++) got.push((await ws.take('MESSAGE')).body);
  assert.deepEqual(got, ['9', '5', '1']);
});

c('queue-arg-dead-letter', `${RMQ} §Queue properties (x-dead-letter-exchange, x-dead-letter-routing-key)`, async (x) => {
  const ws = await x.stomp();
  const q = uniq('dl'), dlq = uniq('dlq');
  await rawSend(ws, { destination: `/queue/${dlq}` }, 'init');
  await rawSub(ws, { destination: `/queue/${dlq}`, id: 'dlq' });
  await ws.take('MESSAGE');
  await rawSend(ws, { destination: `/queue/${q}`, 'x-message-ttl': '50', 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': dlq }, 'dead');
  const m = await ws.take('MESSAGE');
  assert.equal(m.body, 'dead');
});

c('queue-arg-quorum', `${RMQ} §Queue properties (x-queue-type quorum)`, async (x) => {
  const a = await x.client();
  const q = uniq('qq');
  const msgs = await x.sub(a, `/queue/${q}`, { 'x-queue-type': 'quorum' });
  assert.equal(await x.declareOk(q, { durable: true, arguments: { 'x-queue-type': 'quorum' } }), true);
  await x.publishConfirmed(a, `/queue/${q}`, 'quorum', { 'x-queue-type': 'quorum' });
  await waitFor(() => msgs.length === 1);
});

c('queue-arg-stream-offset-first', `${RMQ} §Streams (x-queue-type stream, x-stream-offset first)`, async (x) => {
  const ws = await x.stomp();
  const q = uniq('st');
  const h = { destination: `/queue/${q}`, 'x-queue-type': 'stream', 'x-max-age': '1D' };
  for (const b of ['a', 'b', 'c']) await rawSend(ws, h, b);
  await rawSub(ws, { ...h, id: 's', ack: 'client-individual', 'prefetch-count': '10', 'x-stream-offset': 'first' });
  const got = [];
  for (let i = 0; i < 3; i++) got.push((await ws.take('MESSAGE')).body);
  assert.deepEqual(got, ['a', 'b', 'c']);
  assert.equal(await x.declareOk(q, { durable: true, arguments: { 'x-queue-type': 'stream', 'x-max-age': '1D' } }), true);
});

c('queue-arg-stream-offset-next', `${RMQ} §Streams (x-stream-offset next)`, async (x) => {
  const ws = await x.stomp();
  const q = uniq('sn');
  const h = { destination: `/queue/${q}`, 'x-queue-type': 'stream' };
  await rawSend(ws, h, 'old');
  await rawSub(ws, { ...h, id: 's', ack: 'client-individual', 'prefetch-count': '10', 'x-stream-offset': 'next' });
  await rawSend(ws, h, 'new');
  const m = await ws.take('MESSAGE');
  assert.equal(m.body, 'new');
});

c('queue-arg-stream-offset-number', `${RMQ} §Streams (x-stream-offset offset=N)`, async (x) => {
  const ws = await x.stomp();
  const q = uniq('so');
  const h = { destination: `/queue/${q}`, 'x-queue-type': 'stream' };
  for (const b of ['0', '1', '2']) await rawSend(ws, h, b);
  await rawSub(ws, { ...h, id: 's', ack: 'client-individual', 'prefetch-count': '10', 'x-stream-offset': 'offset=1' });
  const m = await ws.take('MESSAGE');
  assert.equal(m.body, '1');
});

c('queue-arg-invalid-integer-error', 'DESIGN §Destinations (integer queue arguments)', async (x) => {
  const ws = await x.stomp();
  ws.put('SUBSCRIBE', { destination: `/queue/${uniq('bad')}`, id: 's', 'x-message-ttl': 'soon' });
  const f = await x.errorThenClose(ws);
  assert.match(`${f.headers.message} ${f.body}`, /x-message-ttl/);
});

c('stream-offset-invalid-error', `${RMQ} §Streams (x-stream-offset values)`, async (x) => {
  const ws = await x.stomp();
  ws.put('SUBSCRIBE', { destination: `/queue/${uniq('sbad')}`, id: 's', 'x-queue-type': 'stream',
    ack: 'client', 'prefetch-count': '1', 'x-stream-offset': 'somewhere' });
  await x.errorThenClose(ws);
});

c('durable-without-id-error', `${RMQ} §Durable topic subscriptions (id required)`, async (x) => {
  const ws = await x.stomp('1.0');
  ws.put('SUBSCRIBE', { destination: `/topic/${uniq('noid')}`, durable: 'true' });
  await x.errorThenClose(ws);
});

c('durable-unsubscribe-when-inactive', `${RMQ} §Durable topic subscriptions (UNSUBSCRIBE durable:true deletes)`, async (x) => {
  const name = uniq('inact');
  const id = uniq('i');
  const a = await x.stomp();
  await rawSub(a, { destination: `/topic/${uniq('t')}`, id, durable: 'true', 'auto-delete': 'false', 'x-queue-name': name });
  a.put('DISCONNECT', {});
  await a.closed;
  assert.ok(await x.queueExists(name));
  const b = await x.stomp();
  b.put('UNSUBSCRIBE', { id, durable: 'true', 'x-queue-name': name, receipt: 'gone' });
  await b.take('RECEIPT');
  assert.equal(await x.queueExists(name), null);
});

c('prefetch-count', `${RMQ} §Prefetch (prefetch-count -> basic.qos)`, async (x) => {
  const a = await x.client();
  const q = `/queue/${uniq('pf')}`;
  for (let i = 0; i < 5; i++) await x.publishConfirmed(a, q, `m${i}`);
  const msgs = await x.sub(a, q, { ack: 'client-individual', 'prefetch-count': '2' });
  await waitFor(() => msgs.length === 2);
  await sleep(300);
  assert.equal(msgs.length, 2, 'no more than prefetch-count unacked');
  msgs[0].ack();
  await waitFor(() => msgs.length === 3);
});

// ---------------- broker refusals ----------------

c('refusal-406-durable-mismatch', `${S12} §SUBSCRIBE (cannot subscribe: ERROR, close); AMQP 406`, async (x) => {
  const ch = await x.channel();
  const q = uniq('nd');
  await ch.assertQueue(q, { durable: false });
  const ws = await x.stomp();
  ws.put('SUBSCRIBE', { destination: `/queue/${q}`, id: 's', receipt: 'r406' });
  const f = await x.errorThenClose(ws);
  assert.match(`${f.headers.message} ${f.body}`, /precondition|406|inequivalent/i);
});

c('refusal-406-argument-mismatch', `${S12} §SUBSCRIBE (cannot subscribe: ERROR, close); AMQP 406 inequivalent args`, async (x) => {
  const ws = await x.stomp();
  const q = uniq('am');
  await rawSend(ws, { destination: `/queue/${q}`, 'x-max-length': '10' }, 'x');
  ws.put('SUBSCRIBE', { destination: `/queue/${q}`, id: 's', 'x-max-length': '5' });
  const f = await x.errorThenClose(ws);
  assert.match(`${f.headers.message} ${f.body}`, /precondition|inequivalent/i);
});

c('refusal-403-reserved-name', `${S12} §SEND (cannot process: ERROR, close); AMQP 403`, async (x) => {
  const ws = await x.stomp();
  ws.put('SEND', { destination: '/queue/amq.reserved-name', receipt: 'r403' }, 'x');
  const f = await x.errorThenClose(ws);
  assert.match(`${f.headers.message} ${f.body}`, /access|refused|403/i);
});

c('refusal-404-exchange-subscribe', `${S12} §SUBSCRIBE (cannot subscribe: ERROR, close); AMQP 404`, async (x) => {
  const ws = await x.stomp();
  ws.put('SUBSCRIBE', { destination: `/exchange/${uniq('nox')}/k`, id: 's' });
  const f = await x.errorThenClose(ws);
  assert.match(`${f.headers.message} ${f.body}`, /not.found|404/i);
});

c('refusal-404-exchange-send', `${S12} §SEND (cannot process: ERROR, close); AMQP 404`, async (x) => {
  const ws = await x.stomp();
  ws.put('SEND', { destination: `/exchange/${uniq('nox')}/k`, receipt: 'rs' }, 'x');
  const f = await x.errorThenClose(ws);
  assert.match(`${f.headers.message} ${f.body}`, /not.found|404/i);
});

c('refusal-406-user-id', `${S12} §SEND (cannot process: ERROR, close); AMQP 406 user-id`, async (x) => {
  const ws = await x.stomp();
  ws.put('SEND', { destination: `/queue/${uniq('uid')}`, 'user-id': 'someone-else', receipt: 'ru' }, 'x');
  const f = await x.errorThenClose(ws);
  assert.match(`${f.headers.message} ${f.body}`, /precondition|user_id|user-id/i);
});

c('error-carries-receipt-id', `${S12} §ERROR (receipt-id of the failing frame)`, async (x) => {
  const ws = await x.stomp();
  ws.put('SUBSCRIBE', { destination: `/amq/queue/${uniq('gone')}`, id: 's', receipt: 'failing' });
  const f = await ws.take('ERROR');
  assert.equal(f.headers['receipt-id'], 'failing');
});

// ---------------- acks ----------------

async function ackSession(x, version, mode, n) {
  const ws = await x.stomp(version);
  const q = `/queue/${uniq('ack')}`;
  for (let i = 0; i < n; i++) await rawSend(ws, { destination: q }, `m${i}`);
  const h = { destination: q, ack: mode, id: 's1' };
  if (version === '1.0') delete h.id;
  await rawSub(ws, h);
  const ms = [];
  for (let i = 0; i < n; i++) ms.push(await ws.take('MESSAGE'));
  return { ws, q, ms };
}
async function redeliveredBodies(x, q, ms = 500) {
  const ws = await x.stomp();
  await rawSub(ws, { destination: q, id: 'again', ack: 'client-individual' });
  await sleep(ms);
  return ws.frames.filter((f) => f.command === 'MESSAGE').map((f) => `${f.body}:${f.headers.redelivered}`);
}

c('ack-client-individual', `${S12} §SUBSCRIBE ack client-individual`, async (x) => {
  const { ws, q, ms } = await ackSession(x, '1.2', 'client-individual', 3);
  ws.put('ACK', { id: ms[1].headers.ack, receipt: 'a' });
  await ws.take('RECEIPT');
  ws.close();
  await ws.closed;
  assert.deepEqual((await redeliveredBodies(x, q)).sort(), ['m0:true', 'm2:true']);
});

c('ack-client-cumulative', `${S12} §SUBSCRIBE ack client (cumulative)`, async (x) => {
  const { ws, q, ms } = await ackSession(x, '1.2', 'client', 3);
  ws.put('ACK', { id: ms[1].headers.ack, receipt: 'a' });
  await ws.take('RECEIPT');
  ws.close();
  await ws.closed;
  assert.deepEqual(await redeliveredBodies(x, q), ['m2:true']);
});

c('nack-requeues', `${S12} §NACK (redelivered)`, async (x) => {
  const { ws, ms } = await ackSession(x, '1.2', 'client-individual', 1);
  ws.put('NACK', { id: ms[0].headers.ack });
  const m = await ws.take('MESSAGE');
  assert.equal(m.body, 'm0');
  assert.equal(m.headers.redelivered, 'true');
});

c('nack-requeue-false-dead-letters', `${RMQ} §NACK (requeue:false)`, async (x) => {
  const ws = await x.stomp();
  const q = uniq('nq'), dlq = uniq('dlq');
  const args = { 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': dlq };
  await rawSend(ws, { destination: `/queue/${dlq}` }, 'marker');
  await rawSend(ws, { destination: `/queue/${q}`, ...args }, 'rejected');
  await rawSub(ws, { destination: `/queue/${q}`, id: 's', ack: 'client-individual', ...args });
  const m = await ws.take('MESSAGE');
  ws.put('NACK', { id: m.headers.ack, requeue: 'false', receipt: 'n' });
  await ws.take('RECEIPT');
  await ws.none('MESSAGE', 300);
  const ch = await x.channel();
  await ch.get(dlq, { noAck: true });
  let d = false;
  for (let i = 0; i < 20 && !d; i++) { d = await ch.get(dlq, { noAck: true }); if (!d) await sleep(50); }
  assert.ok(d, 'the message was dead-lettered, not requeued');
  assert.equal(d.content.toString(), 'rejected');
});

c('nack-client-cumulative', `${S12} §NACK (client mode is cumulative)`, async (x) => {
  const { ws, ms } = await ackSession(x, '1.2', 'client', 3);
  ws.put('NACK', { id: ms[1].headers.ack });
  const got = [(await ws.take('MESSAGE')).body, (await ws.take('MESSAGE')).body].sort();
  assert.deepEqual(got, ['m0', 'm1']);
});

c('ack-unknown-id-error', `${S12} §ACK (unknown id: ERROR)`, async (x) => {
  const ws = await x.stomp();
  ws.put('ACK', { id: 'no-such-message', receipt: 'bad' });
  const f = await x.errorThenClose(ws);
  assert.equal(f.headers['receipt-id'], 'bad');
});

c('nack-unknown-id-error', `${S12} §NACK (unknown id: ERROR)`, async (x) => {
  const ws = await x.stomp();
  ws.put('NACK', { id: 'no-such-message' });
  await x.errorThenClose(ws);
});

c('ack-header-1.2-only-client-modes', `${S12} §MESSAGE (ack header when acks are required)`, async (x) => {
  const ws = await x.stomp('1.2');
  const t = `/topic/${uniq('ah')}`;
  await rawSub(ws, { destination: t, id: 'auto' });
  await rawSub(ws, { destination: t, id: 'cli', ack: 'client' });
  ws.put('SEND', { destination: t }, 'x');
  const a = await ws.take('MESSAGE'), b = await ws.take('MESSAGE');
  const [auto, cli] = a.headers.subscription === 'auto' ? [a, b] : [b, a];
  assert.equal(auto.headers.ack, undefined);
  assert.ok(cli.headers.ack);
});

c('ack-1.1-message-id', `${S11} §ACK (message-id + subscription headers)`, async (x) => {
  const { ws, q, ms } = await ackSession(x, '1.1', 'client-individual', 1);
  assert.equal(ms[0].headers.ack, undefined, 'no ack header before 1.2');
  ws.put('ACK', { 'message-id': ms[0].headers['message-id'], subscription: 's1', receipt: 'a' });
  await ws.take('RECEIPT');
  ws.close();
  await ws.closed;
  assert.deepEqual(await redeliveredBodies(x, q, 300), []);
});

c('nack-1.1', `${S11} §NACK (message-id)`, async (x) => {
  const { ws, ms } = await ackSession(x, '1.1', 'client-individual', 1);
  ws.put('NACK', { 'message-id': ms[0].headers['message-id'], subscription: 's1' });
  const m = await ws.take('MESSAGE');
  assert.equal(m.headers.redelivered, 'true');
});

c('ack-1.0-message-id', `${S10} §ACK (message-id)`, async (x) => {
  const { ws, q, ms } = await ackSession(x, '1.0', 'client', 1);
  ws.put('ACK', { 'message-id': ms[0].headers['message-id'], receipt: 'a' });
  await ws.take('RECEIPT');
  ws.close();
  await ws.closed;
  assert.deepEqual(await redeliveredBodies(x, q, 300), []);
});

c('nack-not-in-1.0', `${S10} (no NACK frame)`, async (x) => {
  const { ws, ms } = await ackSession(x, '1.0', 'client', 1);
  ws.put('NACK', { 'message-id': ms[0].headers['message-id'] });
  await x.errorThenClose(ws);
});

c('ack-with-receipt', `${S12} §RECEIPT (any client frame may ask)`, async (x) => {
  const { ws, ms } = await ackSession(x, '1.2', 'client-individual', 1);
  ws.put('ACK', { id: ms[0].headers.ack, receipt: 'ack-r' });
  const r = await ws.take('RECEIPT');
  assert.equal(r.headers['receipt-id'], 'ack-r');
});

c('stompjs-ack-nack', '@stomp/stompjs message.ack()/nack()', async (x) => {
  const a = await x.client();
  const q = `/queue/${uniq('js')}`;
  let seen = 0;
  const msgs = await x.sub(a, q, { ack: 'client-individual' }, (m) => { if (seen++ === 0) m.nack(); else m.ack(); });
  await x.publishConfirmed(a, q, 'once');
  await waitFor(() => msgs.length === 2);
  assert.equal(msgs[1].headers.redelivered, 'true');
});

// ---------------- receipts ----------------

c('send-receipt-after-confirm', `${RMQ} §Receipts (RECEIPT after publisher confirm)`, async (x) => {
  const a = await x.client();
  const q = uniq('rc');
  await x.publishConfirmed(a, `/queue/${q}`, 'one');
  await x.publishConfirmed(a, `/queue/${q}`, 'two');
  const r = await x.queueExists(q);
  assert.equal(r.messageCount, 2, 'both messages are in the queue when the RECEIPT arrives');
});

c('broker-nack-error-receipt', `${RMQ} §Receipts (broker nack: ERROR with receipt-id)`, async (x) => {
  const ch = await x.channel();
  const q = uniq('rej');
  await ch.assertQueue(q, { arguments: { 'x-max-length': 1, 'x-overflow': 'reject-publish' } });
  const ws = await x.stomp();
  await rawSend(ws, { destination: `/amq/queue/${q}` }, 'fits');
  ws.put('SEND', { destination: `/amq/queue/${q}`, receipt: 'over' }, 'rejected');
  const f = await ws.take('ERROR');
  assert.equal(f.headers['receipt-id'], 'over');
  await ws.none('RECEIPT', 100);
});

c('subscribe-receipt-means-active', `${S12} §RECEIPT (subscription in place)`, async (x) => {
  const a = await x.client();
  const k = uniq('act');
  const msgs = await x.sub(a, `/topic/${k}`);
  const ch = await x.channel();
  ch.publish('amq.topic', k, Buffer.from('right after'));
  await waitFor(() => msgs.length === 1);
});

c('receipts-in-order', `${S12} §RECEIPT (frames processed in order)`, async (x) => {
  const ws = await x.stomp();
  const q = `/queue/${uniq('ord')}`;
  for (let i = 0; i < 20; i++) ws.put('SEND', { destination: q, receipt: `r${i}` }, `${i}`);
  const got = [];
  for (let i = 0; i < 20; i++) got.push((await ws.take('RECEIPT')).headers['receipt-id']);
  assert.deepEqual(got, Array.from({ length: 20 }, (_, i) => `r${i}`));
});

// ---------------- transactions ----------------

c('tx-send-on-commit', `${S12} §BEGIN/§COMMIT`, async (x) => {
  const a = await x.client();
  const t = `/topic/${uniq('tx')}`;
  const msgs = await x.sub(a, t);
  const tx = a.begin();
  a.publish({ destination: t, body: 'in tx', headers: { transaction: tx.id } });
  await sleep(300);
  assert.equal(msgs.length, 0, 'not delivered before COMMIT');
  tx.commit();
  await waitFor(() => msgs.length === 1);
});

c('tx-abort-discards', `${S12} §ABORT`, async (x) => {
  const a = await x.client();
  const t = `/topic/${uniq('ab')}`;
  const msgs = await x.sub(a, t);
  const tx = a.begin();
  a.publish({ destination: t, body: 'never', headers: { transaction: tx.id } });
  tx.abort();
  await x.publishConfirmed(a, t, 'after');
  await waitFor(() => msgs.length === 1);
  await sleep(150);
  assert.deepEqual(msgs.map((m) => m.body), ['after']);
});

c('tx-ack-on-commit', `${S12} §ACK (transaction header)`, async (x) => {
  const { ws, q, ms } = await ackSession(x, '1.2', 'client-individual', 2);
  ws.put('BEGIN', { transaction: 't1' });
  ws.put('ACK', { id: ms[0].headers.ack, transaction: 't1' });
  ws.put('ACK', { id: ms[1].headers.ack, transaction: 't1' });
  ws.put('COMMIT', { transaction: 't1', receipt: 'c' });
  await ws.take('RECEIPT');
  ws.close();
  await ws.closed;
  assert.deepEqual(await redeliveredBodies(x, q, 300), []);
});

c('tx-ack-aborted', `${S12} §ABORT (acks in the transaction are dropped)`, async (x) => {
  const { ws, q, ms } = await ackSession(x, '1.2', 'client-individual', 1);
  ws.put('BEGIN', { transaction: 't1' });
  ws.put('ACK', { id: ms[0].headers.ack, transaction: 't1' });
  ws.put('ABORT', { transaction: 't1', receipt: 'a' });
  await ws.take('RECEIPT');
  ws.close();
  await ws.closed;
  assert.deepEqual(await redeliveredBodies(x, q), ['m0:true']);
});

c('tx-nack-on-commit', `${S12} §NACK (transaction header)`, async (x) => {
  const { ws, ms } = await ackSession(x, '1.2', 'client-individual', 1);
  ws.put('BEGIN', { transaction: 't1' });
  ws.put('NACK', { id: ms[0].headers.ack, transaction: 't1' });
  await ws.none('MESSAGE', 300);
  ws.put('COMMIT', { transaction: 't1' });
  const m = await ws.take('MESSAGE');
  assert.equal(m.headers.redelivered, 'true');
});

c('tx-dropped-on-disconnect', `${S12} §BEGIN (implicitly aborted on DISCONNECT)`, async (x) => {
  const ws = await x.stomp();
  const q = uniq('txd');
  await rawSend(ws, { destination: `/queue/${q}` }, 'plain');
  ws.put('BEGIN', { transaction: 't1' });
  ws.put('SEND', { destination: `/queue/${q}`, transaction: 't1' }, 'never');
  ws.put('DISCONNECT', { receipt: 'd' });
  await ws.take('RECEIPT');
  await sleep(200);
  assert.equal((await x.queueExists(q)).messageCount, 1);
});

c('tx-commit-unknown-error', `${S12} §COMMIT (unknown transaction: ERROR)`, async (x) => {
  const ws = await x.stomp();
  ws.put('COMMIT', { transaction: 'nope' });
  await x.errorThenClose(ws);
});

c('tx-begin-duplicate-error', `${S12} §BEGIN (transaction id unique)`, async (x) => {
  const ws = await x.stomp();
  ws.put('BEGIN', { transaction: 'dup' });
  ws.put('BEGIN', { transaction: 'dup' });
  await x.errorThenClose(ws);
});

c('tx-send-unknown-error', `${S12} §SEND (transaction must be open)`, async (x) => {
  const ws = await x.stomp();
  ws.put('SEND', { destination: '/topic/x', transaction: 'never-begun' }, 'x');
  await x.errorThenClose(ws);
});

c('tx-frame-cap', 'DESIGN §Transactions (frames per transaction capped)', async (x) => {
  const cap = x.caps.maxTxFrames ?? 10000;
  const ws = await x.stomp();
  ws.put('BEGIN', { transaction: 'big' });
  let s = '';
  for (let i = 0; i <= cap; i++) s += `SEND\ndestination:/topic/cap\ntransaction:big\n\n${i}\0`;
  ws.send(s);
  const f = await x.errorThenClose(ws);
  assert.match(f.headers.message, /transaction/i);
});

c('tx-open-cap', 'DESIGN §Transactions (open transactions per session capped)', async (x) => {
  const cap = x.caps.maxTransactions ?? 16;
  const ws = await x.stomp();
  for (let i = 0; i <= cap; i++) ws.put('BEGIN', { transaction: `t${i}` });
  const f = await x.errorThenClose(ws);
  assert.match(f.headers.message, /transaction/i);
});

// ---------------- headers ----------------

async function amqpReceive(x, sendHeaders, body = 'p') {
  const ch = await x.channel();
  const q = uniq('hq');
  await ch.assertQueue(q, { autoDelete: true });
  const got = [];
  await ch.consume(q, (m) => got.push(m), { noAck: true });
  const ws = await x.stomp();
  await rawSend(ws, { destination: `/amq/queue/${q}`, ...sendHeaders }, body);
  await waitFor(() => got.length === 1);
  return got[0];
}
async function stompReceive(x, props, body = 'p', version = '1.2') {
  const ws = await x.stomp(version);
  const k = uniq('hk');
  await rawSub(ws, { destination: `/topic/${k}`, id: 's' });
  const ch = await x.channel();
  ch.publish('amq.topic', k, Buffer.from(body), props);
  return ws.take('MESSAGE');
}

c('props-stomp-to-amqp-strings', `${RMQ} §Message properties (STOMP -> AMQP)`, async (x) => {
  const m = await amqpReceive(x, {
    'content-type': 'text/plain', 'content-encoding': 'gzip', 'correlation-id': 'c-1', expiration: '60000',
    type: 'order', 'user-id': 'guest', 'app-id': 'shop', 'amqp-message-id': 'mid-1',
  });
  const p = m.properties;
  assert.deepEqual([p.contentType, p.contentEncoding, p.correlationId, p.expiration, p.type, p.userId, p.appId, p.messageId],
    ['text/plain', 'gzip', 'c-1', '60000', 'order', 'guest', 'shop', 'mid-1']);
});

c('props-stomp-to-amqp-numbers', `${RMQ} §Message properties (priority, timestamp, persistent)`, async (x) => {
  const m = await amqpReceive(x, { priority: '7', timestamp: '1700000000', persistent: 'true' });
  assert.equal(m.properties.priority, 7);
  assert.equal(Number(m.properties.timestamp), 1700000000);
  assert.equal(m.properties.deliveryMode, 2);
});

c('props-reply-to-to-amqp', `${RMQ} §Message properties (reply-to)`, async (x) => {
  const m = await amqpReceive(x, { 'reply-to': '/queue/answers' });
  assert.equal(m.properties.replyTo, '/queue/answers');
});

c('props-custom-headers-to-table', `${RMQ} §Message properties (other headers -> headers table)`, async (x) => {
  const m = await amqpReceive(x, { 'x-custom': 'v1', 'another-one': 'v2' });
  assert.equal(String(m.properties.headers['x-custom']), 'v1');
  assert.equal(String(m.properties.headers['another-one']), 'v2');
});

c('props-amqp-to-stomp', `${RMQ} §Message properties (AMQP -> STOMP)`, async (x) => {
  const m = await stompReceive(x, {
    contentType: 'application/json', contentEncoding: 'utf-8', correlationId: 'corr', expiration: '90000',
    messageId: 'amid', type: 't1', userId: 'guest', appId: 'native', priority: 3, timestamp: 1700000001, deliveryMode: 2,
  });
  const h = m.headers;
  assert.deepEqual([h['content-type'], h['content-encoding'], h['correlation-id'], h.expiration, h['amqp-message-id'], h.type,
    h['user-id'], h['app-id'], h.priority, h.timestamp, h.persistent],
  ['application/json', 'utf-8', 'corr', '90000', 'amid', 't1', 'guest', 'native', '3', '1700000001', 'true']);
});

c('props-amqp-reply-to-to-stomp', `${RMQ} §Message properties (reply-to queue name -> /reply-queue/)`, async (x) => {
  const m = await stompReceive(x, { replyTo: 'amq.gen-abc' });
  assert.equal(m.headers['reply-to'], '/reply-queue/amq.gen-abc');
});

c('table-strings-and-ints', `${RMQ} §Message properties (headers table -> STOMP headers)`, async (x) => {
  const m = await stompReceive(x, { headers: { 'x-str': 'text', 'x-int': 42, 'x-neg': -7 } });
  assert.equal(m.headers['x-str'], 'text');
  assert.equal(m.headers['x-int'], '42');
  assert.equal(m.headers['x-neg'], '-7');
});

c('table-booleans', 'DESIGN §Headers (table booleans -> true/false)', async (x) => {
  const m = await stompReceive(x, { headers: { 'x-yes': true, 'x-no': false } });
  assert.equal(m.headers['x-yes'], 'true');
  assert.equal(m.headers['x-no'], 'false');
});

c('table-decimal', 'DESIGN §Headers (table decimals -> decimal text)', async (x) => {
  const m = await stompReceive(x, { headers: { 'x-dec': { '!': 'decimal', value: { places: 2, digits: 1234 } } } });
  assert.equal(m.headers['x-dec'], '12.34');
});

c('table-float', 'DESIGN §Headers (table floats -> number text)', async (x) => {
  const m = await stompReceive(x, { headers: { 'x-f': { '!': 'double', value: 2.5 } } });
  assert.equal(m.headers['x-f'], '2.5');
});

c('table-nested-table', 'DESIGN §Headers (nested tables -> JSON text)', async (x) => {
  const m = await stompReceive(x, { headers: { 'x-t': { a: 'b', n: 1, ok: true } } });
  assert.deepEqual(JSON.parse(unescapeHeader(m.headers['x-t'])), { a: 'b', n: 1, ok: true });
});

c('table-array', 'DESIGN §Headers (arrays -> JSON text)', async (x) => {
  const m = await stompReceive(x, { headers: { 'x-a': ['s', 2, false] } });
  assert.deepEqual(JSON.parse(unescapeHeader(m.headers['x-a'])), ['s', 2, false]);
});

c('table-value-escaped-1.2', `${S12} §Value Encoding (table values escaped)`, async (x) => {
  const m = await stompReceive(x, { headers: { 'x-nl': 'a:b\nc' } });
  assert.equal(m.headers['x-nl'], 'a\\cb\\nc');
});

for (const h of ['message-id', 'subscription', 'ack']) {
  c(`send-${h}-refused`, `${RMQ} §Message properties (a client cannot set ${h} on SEND)`, async (x) => {
    const ws = await x.stomp();
    const t = `/topic/${uniq('forge')}`;
    await rawSub(ws, { destination: t, id: 'real', ack: 'client' });
    ws.put('SEND', { destination: t, [h]: 'forged' }, 'x');
    const f = await x.errorThenClose(ws);
    assert.match(`${f.headers.message} ${f.body}`, new RegExp(h));
    assert.equal(ws.frames.filter((m) => m.command === 'MESSAGE').length, 0, 'nothing was published');
  });
}

c('custom-header-stomp-roundtrip', `${RMQ} §Message properties (custom headers STOMP -> STOMP)`, async (x) => {
  const a = await x.client();
  const t = `/topic/${uniq('ch')}`;
  const msgs = await x.sub(a, t);
  a.publish({ destination: t, body: 'x', headers: { 'x-app': 'value', 'content-type': 'text/x' } });
  await waitFor(() => msgs.length === 1);
  assert.equal(msgs[0].headers['x-app'], 'value');
  assert.equal(msgs[0].headers['content-type'], 'text/x');
});

c('message-redelivered-false', `${RMQ} §MESSAGE (redelivered header)`, async (x) => {
  const m = await stompReceive(x, {});
  assert.equal(m.headers.redelivered, 'false');
});

c('table-headers-1.0-literal', `${S10} (header values not escaped)`, async (x) => {
  const m = await stompReceive(x, { headers: { 'x-c': 'a:b' } }, 'p', '1.0');
  assert.equal(m.headers['x-c'], 'a:b');
});

export default cases;
