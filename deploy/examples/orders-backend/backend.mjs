// SPDX-License-Identifier: MIT
// An example back end for stompgate's application destinations.
//
// Browsers SEND to /app/orders/<action>; stompgate publishes each SEND to the
// application exchange (topic, default "stompgate.app") with routing key
// "orders.<action>". This service consumes them from its own durable queue,
// answers the sender through AMQP reply_to with the request's correlation
// id, and broadcasts a running summary to /topic/orders.summary by
// publishing to amq.topic. Any AMQP 0-9-1 client in any language can do the
// same.
//
// Environment: AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/),
// APP_EXCHANGE (default stompgate.app), QUEUE (default orders-service).
import amqp from 'amqplib';

const url = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672/';
const exchange = process.env.APP_EXCHANGE ?? 'stompgate.app';
const queue = process.env.QUEUE ?? 'orders-service';

const conn = await amqp.connect(url);
const ch = await conn.createChannel();
await ch.assertExchange(exchange, 'topic', { durable: true });
await ch.assertQueue(queue, { durable: true });
await ch.bindQueue(queue, exchange, 'orders.*');
await ch.prefetch(50);

let orders = 0;
await ch.consume(queue, (msg) => {
  const h = msg.properties.headers ?? {};
  const user = String(h['stompgate-user'] ?? '');
  const action = msg.fields.routingKey.slice('orders.'.length);
  let order;
  try {
    order = JSON.parse(msg.content.toString('utf8'));
  } catch {
    order = null;
  }
  const reply = order && typeof order === 'object'
    ? { status: 'accepted', action, order, orderNo: ++orders, user, session: String(h['stompgate-session'] ?? '') }
    : { status: 'rejected', action, error: 'body is not a JSON object', user };
  if (msg.properties.replyTo) {
    const headers = {};
    // Echo the caller's trace header, so it can follow a request end to end.
    if (h['x-trace'] !== undefined) headers['x-trace'] = h['x-trace'];
    ch.sendToQueue(msg.properties.replyTo, Buffer.from(JSON.stringify(reply)), {
      correlationId: msg.properties.correlationId,
      contentType: 'application/json',
      headers,
    });
  }
  if (reply.status === 'accepted') {
    const summary = { orders, last: { action, user } };
    ch.publish('amq.topic', 'orders.summary', Buffer.from(JSON.stringify(summary)), { contentType: 'application/json' });
  }
  ch.ack(msg);
});
console.log(`orders-backend ready: queue ${queue} bound to ${exchange} with orders.*`);

const stop = async () => {
  try { await ch.close(); await conn.close(); } catch { /* already gone */ }
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
