/* SPDX-License-Identifier: MIT */
#ifndef SG_FANOUT_H
#define SG_FANOUT_H

/* Shared subscriptions (shared relay mode), per worker and vhost, with
 * routing in the gateway. The worker consumes from one exclusive
 * auto-delete queue per exchange whose routing it reproduces (topic, direct
 * and fanout exchanges whose type it knows, exchange_kind in fanout.c). Each
 * distinct binding key its subscriptions use is one binding on that queue,
 * counted by subscription and unbound two seconds after the last leaves
 * (unless one joins again). A delivery's routing key and CC keys are
 * matched against the bindings of the exchange it came through (the
 * consumer tag tells which), and each member of each matching binding gets
 * the message once, as from a queue of its own. An exchange the gateway
 * cannot route for (headers, plugin types, types it does not know) keeps a
 * queue per binding key, where every delivery goes to every member.
 *
 * When the connection under the queues is lost, they are declared, bound
 * and consumed again on a live node and their members stay joined. The
 * layer above hears through the callback table it gives. */

#include <stdint.h>

#include "broker.h"
#include "pool.h"
#include "stompgate/buf.h"

typedef struct sg_fanout sg_fanout_t;
typedef struct sg_fanout_sub sg_fanout_sub_t;   /* a binding and its members */
typedef struct sg_fanout_queue sg_fanout_queue_t; /* a broker queue of the worker's */
typedef struct sg_fanout_op sg_fanout_op_t;     /* a bind or unbind sent */

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
  int64_t offset;       /* a history stream's: the delivery's offset; -1 otherwise */
  sg_buf_t tail[3];     /* STOMP 1.0, 1.1, 1.2 */
  int tail_utf8[3];     /* 1 valid, 0 not, -1 not computed */
} sg_fanout_msg_t;

typedef struct sg_fanout_cbs {
  /* A join that was pending is ready (status 0: its binding is in place
   * and its queue consumed), or failed (then m is no longer joined). */
  void (*on_ready_cb)(sg_fanout_member_t *m, int status, const char *text);
  /* A delivery for m; msg is borrowed for the call. */
  void (*on_message_cb)(sg_fanout_member_t *m, sg_fanout_msg_t *msg);
  /* The shared queue or its broker channel was lost; m is no longer
   * joined. */
  void (*on_lost_cb)(sg_fanout_member_t *m, int code, const char *text);
} sg_fanout_cbs_t;

/* A chained hash table of records that embed an sg_fanout_hnode_t. */
typedef struct sg_fanout_hnode {
  struct sg_fanout_hnode *next;
  uint64_t hash;
} sg_fanout_hnode_t;

/* An intrusive doubly-linked list; a head links to itself when empty, a
 * record's links are NULL when it is on no list. */
typedef struct sg_fanout_dl {
  struct sg_fanout_dl *next, *prev;
} sg_fanout_dl_t;

typedef struct sg_fanout_table {
  sg_fanout_hnode_t **buckets;
  size_t nbuckets, n;
} sg_fanout_table_t;

struct sg_fanout {
  sg_pool_t *pool;
  const sg_fanout_cbs_t *cbs;
  int worker;
  sg_amqp_t chan;            /* declares and consumes every queue */
  int chan_state;            /* 0 none, 1 opening, 2 open, 3 closing */
  sg_amqp_t bind;            /* binds and unbinds, on chan's connection */
  int bind_state;
  sg_fanout_table_t queues;  /* exchange (and key, unrouted) -> queue */
  sg_fanout_table_t tags;    /* consumer tag -> queue */
  sg_fanout_table_t subs;    /* (queue, binding key) -> binding */
  sg_fanout_queue_t *pending; /* declared, waiting for their consume-ok */
  sg_fanout_dl_t to_bind;    /* bindings not sent yet, oldest first */
  sg_fanout_dl_t idle;       /* bound bindings without members, oldest first */
  sg_fanout_op_t *ops, **ops_tail; /* binds and unbinds sent, in order */
  uint64_t seed[2];          /* keys the hashes of client-chosen keys */
  uint64_t next_id;
  uint64_t deliveries;       /* messages received from shared queues */
  uint64_t writes;           /* messages handed to members */
  uv_timer_t linger;         /* unbinds keys left without members */
  size_t moving;             /* queues waiting for a new channel after a loss */
  uint64_t lost_ns;          /* uv_hrtime of that loss */
  unsigned linger_init : 1;
};

/* Makes an empty fan-out for pool's vhost. 0 or a negative error. */
int sg_fanout_init(sg_fanout_t *f, sg_pool_t *pool, const sg_fanout_cbs_t *cbs, int worker);

/* Joins m to the binding (exchange, key), creating it (and its queue) if
 * needed. Returns 1 when ready at once, 0 when on_ready_cb will follow, or
 * a negative error (m not joined): SG_ERR_INVALID for a key over 255
 * bytes. Copies exchange and key. */
int sg_fanout_join(sg_fanout_t *f, const char *exchange, const char *key, sg_fanout_member_t *m);

/* Joins m to the live feed of a topic with history: the worker's consumer
 * of the stream (queue names it), which starts at the next message (or,
 * after its connection was lost, just after the last offset it read), acks
 * each delivery as credit and routes by key as for amq.topic. No broker
 * binding is made per key: the stream is bound already. Returns as
 * sg_fanout_join. */
int sg_fanout_join_history(sg_fanout_t *f, const char *queue, const char *key,
                           sg_fanout_member_t *m);

/* The last stream offset the live feed m is joined to has read, or -1
 * when it has read none (or m is not joined to a history feed). */
int64_t sg_fanout_feed_read(const sg_fanout_member_t *m);

/* Leaves; safe from inside this member's callbacks, and when not joined. */
void sg_fanout_leave(sg_fanout_member_t *m);

#endif
