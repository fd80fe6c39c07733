/* SPDX-License-Identifier: MIT */
#ifndef SG_FANOUT_H
#define SG_FANOUT_H

/* Shared subscriptions (shared relay mode), per worker. Every non-durable
 * auto-ack subscription to the same (exchange, binding key) shares one
 * exclusive auto-delete queue, declared for the first subscriber and
 * cancelled two seconds after the last leaves (unless one joins again).
 * The broker keeps doing the routing, so every exchange type behaves as
 * with a queue per subscription; it sends each message once per worker,
 * and the worker writes it to every member. When the connection under the
 * queues is lost, they are set up again on a live node and their members
 * stay joined. The layer above hears through the callback table it gives. */

#include <stdint.h>

#include "broker.h"
#include "pool.h"
#include "stompgate/buf.h"

typedef struct sg_fanout sg_fanout_t;
typedef struct sg_fanout_sub sg_fanout_sub_t;

typedef struct sg_fanout_member {
  struct sg_fanout_member *next, *prev;
  sg_fanout_sub_t *fs; /* NULL when not joined */
  unsigned ready : 1;
  void *owner;         /* the layer above's */
} sg_fanout_member_t;

/* One delivery from a shared queue. The layer above encodes the parts of
 * the MESSAGE that are the same for every member once per STOMP version and
 * keeps them here (tail[v], owned by the message, freed after the last
 * member); seq numbers the deliveries of the shared queue. */
typedef struct sg_fanout_msg {
  const sg_amqp_delivery_t *d;
  uint64_t seq;
  sg_buf_t tail[3];     /* STOMP 1.0, 1.1, 1.2 */
  int tail_utf8[3];     /* 1 valid, 0 not, -1 not computed */
} sg_fanout_msg_t;

typedef struct sg_fanout_cbs {
  /* A join that was pending is ready (status 0: the queue is bound and
   * consumed), or failed (then m is no longer joined). */
  void (*on_ready_cb)(sg_fanout_member_t *m, int status, const char *text);
  /* A delivery for m; msg is borrowed for the call. */
  void (*on_message_cb)(sg_fanout_member_t *m, sg_fanout_msg_t *msg);
  /* The shared queue or its broker channel was lost; m is no longer
   * joined. */
  void (*on_lost_cb)(sg_fanout_member_t *m, int code, const char *text);
} sg_fanout_cbs_t;

typedef struct sg_fanout_table {
  sg_fanout_sub_t **buckets;
  size_t nbuckets, n;
} sg_fanout_table_t;

struct sg_fanout {
  sg_pool_t *pool;
  const sg_fanout_cbs_t *cbs;
  int worker;
  sg_amqp_t chan;            /* the channel every shared queue is consumed on */
  int chan_state;            /* 0 none, 1 opening, 2 open, 3 closing */
  sg_fanout_table_t by_key;  /* exchange + binding key -> shared queue */
  sg_fanout_table_t by_tag;  /* consumer tag -> shared queue */
  sg_fanout_sub_t *pending;  /* declared, waiting for their consume-ok */
  uint64_t next_id;
  uint64_t deliveries;       /* messages received from shared queues */
  uint64_t writes;           /* messages handed to members */
  uv_timer_t linger;         /* cancels shared queues left without members */
  size_t moving;             /* shared queues waiting for a new channel after a loss */
  uint64_t lost_ns;          /* uv_hrtime of that loss */
  unsigned linger_init : 1;
};

void sg_fanout_init(sg_fanout_t *f, sg_pool_t *pool, const sg_fanout_cbs_t *cbs, int worker);

/* Joins m to the shared queue for (exchange, key), creating it if needed.
 * Returns 1 when ready at once, 0 when on_ready_cb will follow, or a
 * negative error (m not joined). Copies exchange and key. */
int sg_fanout_join(sg_fanout_t *f, const char *exchange, const char *key, sg_fanout_member_t *m);

/* Leaves; safe from inside this member's callbacks, and when not joined. */
void sg_fanout_leave(sg_fanout_member_t *m);

/* Shared queues and members now. */
size_t sg_fanout_queues(const sg_fanout_t *f);

#endif
