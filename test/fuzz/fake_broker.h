/* SPDX-License-Identifier: MIT */
#ifndef STOMPGATE_TEST_FAKE_BROKER_H
#define STOMPGATE_TEST_FAKE_BROKER_H

/* A minimal AMQP 0-9-1 server on a loopback libuv listener, for the session
 * fuzz target: it answers the login, channels, confirms, declares, binds,
 * consumers and publishes the way RabbitMQ does, in the same loop as the
 * gateway. A script (set per input) makes it misbehave in the ways a real
 * broker can: refuse a login, close a channel with 404 or 403, deliver,
 * cancel a consumer, nack a publish, block publishing, force the
 * connection closed or drop it. Connections that log in as the pool user are spared the
 * connection-level faults, so that the shared-mode pool stays up from one
 * input to the next. */

#include <stddef.h>
#include <uv.h>

enum fb_fault {
  FB_REFUSE_LOGIN = 1 << 0, /* connection.close 403 after start-ok */
  FB_DECLARE_404 = 1 << 1,  /* queue.declare gets channel.close 404 */
  FB_DENY = 1 << 2,         /* queue.bind and basic.publish get channel.close 403 */
  FB_DELIVER = 1 << 3,      /* every consumer gets deliveries */
  FB_NACK = 1 << 4,         /* publishes are nacked */
  FB_CANCEL = 1 << 5,       /* every consumer is cancelled by the broker */
  FB_DROP = 1 << 6,         /* the socket is dropped after some methods */
  FB_FORCE_CLOSE = 1 << 7,  /* connection.close 320 after some methods */
  FB_BLOCKED = 1 << 8,      /* connection.blocked after the login, unblocked after the
                               first basic.consume-ok */
};

/* Binds 127.0.0.1 on an ephemeral port in loop and starts accepting.
 * pool_user names the login that is spared connection faults (borrowed for
 * the life of the loop). 0 or a libuv error; *port gets the port. */
int fb_start(uv_loop_t *loop, const char *pool_user, int *port);

/* What connections do from now on: enum fb_fault bits, and arg, which
 * picks how many methods pass before a drop or forced close, how many
 * deliveries a consumer gets and what they carry. */
void fb_set_script(unsigned faults, unsigned arg);

/* Open connections, not counting those of the pool user. */
size_t fb_open_connections(void);

/* Frames or connections seen since the last call (0: nothing happened). */
unsigned fb_take_activity(void);

#endif
