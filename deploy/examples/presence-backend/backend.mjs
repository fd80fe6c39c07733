// SPDX-License-Identifier: MIT
// An example back end for stompgate's session events: who is in each chat
// room.
//
// Every gateway instance started with --events-exchange publishes its
// sessions' lifecycle to that topic exchange (default here
// "stompgate.events"): session.connected.<vhost>, session.subscribed.<vhost>,
// session.unsubscribed.<vhost>, session.disconnected.<vhost>, each a JSON
// body. This service consumes them all from its own exclusive queue and
// keeps, per room, the users whose sessions subscribe to /topic/chat.<room>
// (the example chat page). A session is known by its instance and session
// id, so sessions on different gateways never mix.
//
// It answers SENDs to /app/presence/<room> (application exchange, routing
// key presence.<room>) with the room's list, through AMQP reply_to, and
// publishes every change to /topic/presence.<room> (amq.topic, routing key
// presence.<room>). A list is {"room", "seq", "users": [{"user", "sessions"}]};
// seq grows with every change, so a page can ignore a list older than the
// one it shows (a reply and a push may cross).
//
// What it knows starts when it starts: sessions opened before it are not
// in its lists until they subscribe again. A gateway that is killed sends
// no disconnects; its sessions stay listed until this service restarts.
//
// Environment: AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/),
// EVENTS_EXCHANGE (default stompgate.events), APP_EXCHANGE (default
// stompgate.app), QUEUE (default presence-service: the requests' queue).
import amqp from 'amqplib';

const url = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672/';
const eventsExchange = process.env.EVENTS_EXCHANGE ?? 'stompgate.events';
const appExchange = process.env.APP_EXCHANGE ?? 'stompgate.app';
const queue = process.env.QUEUE ?? 'presence-service';
const ROOM = /^\/topic\/chat\.([A-Za-z0-9_-]+)$/;

// "instance/session" -> { user, subs: Map(subscription id -> room) }
const sessions = new Map();
let seq = 0;

function roomList(room) {
  const users = new Map();
  for (const s of sessions.values())
    for (const r of s.subs.values())
      if (r === room) users.set(s.user, (users.get(s.user) ?? 0) + 1);
  return {
    room,
    seq,
    users: [...users].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([user, n]) => ({ user, sessions: n })),
  };
}

const conn = await amqp.connect(url);
const ch = await conn.createChannel();

function push(room) {
  seq++;
  ch.publish('amq.topic', `presence.${room}`, Buffer.from(JSON.stringify(roomList(room))),
    { contentType: 'application/json' });
}

function onEvent(e) {
  const key = `${e.instance}/${e.session}`;
  let s = sessions.get(key);
  switch (e.event) {
  case 'connected':
    if (!s) sessions.set(key, { user: e.user, subs: new Map() });
    return;
  case 'subscribed': {
    const m = ROOM.exec(e.destination ?? '');
    if (!m) return;
    if (!s) sessions.set(key, (s = { user: e.user, subs: new Map() }));
    s.subs.set(e.subscription, m[1]);
    push(m[1]);
    return;
  }
  case 'unsubscribed': {
    const room = s?.subs.get(e.subscription);
    if (room === undefined) return;
    s.subs.delete(e.subscription);
    push(room);
    return;
  }
  case 'disconnected': {
    if (!s) return;
    sessions.delete(key);
    for (const room of new Set(s.subs.values())) push(room);
    return;
  }
  default:
  }
}

// The events: an exclusive queue of its own, bound to every session event.
await ch.assertExchange(eventsExchange, 'topic', { durable: true });
const { queue: eventsQueue } = await ch.assertQueue('', { exclusive: true, autoDelete: true });
await ch.bindQueue(eventsQueue, eventsExchange, 'session.#');
await ch.consume(eventsQueue, (msg) => {
  try {
    onEvent(JSON.parse(msg.content.toString('utf8')));
  } catch (err) {
    console.error(`presence-backend: bad event: ${err.message}`);
  }
}, { noAck: true });

// The requests: SEND /app/presence/<room>.
await ch.assertExchange(appExchange, 'topic', { durable: true });
await ch.assertQueue(queue, { durable: false, autoDelete: true });
await ch.bindQueue(queue, appExchange, 'presence.*');
await ch.consume(queue, (msg) => {
  const room = msg.fields.routingKey.slice('presence.'.length);
  if (msg.properties.replyTo) {
    ch.sendToQueue(msg.properties.replyTo, Buffer.from(JSON.stringify(roomList(room))), {
      correlationId: msg.properties.correlationId,
      contentType: 'application/json',
    });
  }
  ch.ack(msg);
});
console.log(`presence-backend ready: events from ${eventsExchange}, requests on ${queue} (${appExchange} presence.*)`);

const stop = async () => {
  try { await ch.close(); await conn.close(); } catch { /* already gone */ }
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
