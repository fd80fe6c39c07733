/* SPDX-License-Identifier: MIT */
#ifndef SG_RELAY_H
#define SG_RELAY_H

/* The relay: everything a STOMP session asks of the broker, and what it
 * hears back. Two implementations, each in its own file: per-session
 * (relay_session.c: a private AMQP connection opened with the client's
 * credentials) and shared (relay_shared.c: a channel on the worker's pooled
 * connections, opened on first need, and auto-ack topic subscriptions
 * through the worker's fan-out). The session calls the operations of the
 * type its context names and never knows which one runs; the relay calls
 * back through the table the session gives at creation.
 *
 * Ordering: operations take effect in the order they are called. A mark
 * (sg_relay_mark) taken after an operation is reached once the broker has
 * done it and everything before it, which is what a RECEIPT waits for. */

#include <amqp.h>
#include <stddef.h>
#include <stdint.h>

#include "broker.h"
#include "stompgate/buf.h"
#include "stompgate/destination.h"
#include "stompgate/stomp_codec.h"

struct sg_session_ctx;
struct sg_grant;

typedef struct sg_relay sg_relay_t;
typedef struct sg_relay_sub sg_relay_sub_t;

/* Where the relay stood when the mark was taken: synchronous methods
 * sent, publishes sent, shared subscriptions started. Compared only by the
 * relay and by sg_relay_blames. */
typedef struct sg_relay_mark {
  uint64_t rpc, pub, join;
} sg_relay_mark_t;

/* Why the relay failed the session. */
enum sg_relay_fault_kind {
  SG_RELAY_LOST = 1,     /* the broker closed the channel or connection: code, text */
  SG_RELAY_UNAVAILABLE,  /* no channel could be had: text */
  SG_RELAY_CANCELLED,    /* the broker cancelled sub's consumer */
  SG_RELAY_REJECTED,     /* the broker nacked publish number tag */
  SG_RELAY_INTERNAL,     /* out of memory or similar: text */
};

/* Which RECEIPT a failure answers: the oldest one still owed whose mark's
 * field is at least at. */
enum sg_relay_blame { SG_RELAY_BLAME_NONE = 0, SG_RELAY_BLAME_RPC, SG_RELAY_BLAME_PUB, SG_RELAY_BLAME_JOIN };

typedef struct sg_relay_fault {
  int kind;           /* enum sg_relay_fault_kind */
  int code;           /* LOST: the AMQP reply code (404, 403, 406, 320 ...), 0 for a lost socket */
  const char *text;   /* the broker's text or the relay's; may be NULL */
  sg_relay_sub_t *sub; /* CANCELLED */
  uint64_t tag;       /* REJECTED */
  int blame;          /* enum sg_relay_blame */
  uint64_t at;
} sg_relay_fault_t;

/* Whether the failure f is the answer to the operation marked m. */
static inline int sg_relay_blames(const sg_relay_fault_t *f, const sg_relay_mark_t *m) {
  switch (f->blame) {
  case SG_RELAY_BLAME_RPC: return m->rpc >= f->at;
  case SG_RELAY_BLAME_PUB: return m->pub >= f->at;
  case SG_RELAY_BLAME_JOIN: return m->join >= f->at;
  default: return 0;
  }
}

/* A subscription as the relay sees it; the session embeds one in its own
 * record and keeps it until sg_relay_release. */
struct sg_relay_sub {
  sg_relay_sub_t *next, *prev; /* the relay's list of consumers on its channel */
  char *tag;       /* AMQP consumer tag (the session's, freed with its record) */
  size_t tag_len;
  char *queue;     /* the queue consumed on the session's channel (the session's) */
  unsigned no_ack : 1;
  unsigned own_queue : 1; /* its queue was declared for it (topic or exchange) */
  unsigned cancelled : 1; /* unsubscribed: no more deliveries go up */
  unsigned linked : 1;
  void *impl;      /* the implementation's, e.g. a fan-out membership */
  /* A topic with history (--history): queue is its stream, consumed from
   * an offset. The relay acks every delivery (a stream consumer's credit)
   * and hands up only those at offset from or later whose routing key (or
   * a CC key) filter matches. The session fills these. */
  char *filter;    /* the subscription's binding key (the session's) */
  int64_t from;    /* offset=N asked for; -1 when none */
  int64_t read;    /* the last offset the consumer read, -1 before the first */
  unsigned history : 1;
  unsigned incomplete : 1; /* the stream began after from: the next message says so */
  unsigned probe : 1;      /* the relay's own: a read at "last" that finds the end (impl: its sub) */
  sg_relay_sub_t *end_probe; /* history with from: that read, until its first delivery */
};

/* What to set up for a subscription. */
enum sg_relay_declare {
  SG_RELAY_DECLARE_NONE = 0, /* consume a queue that exists */
  SG_RELAY_DECLARE,          /* declare queue with durable, exclusive, auto_delete */
  SG_RELAY_DECLARE_ONCE,     /* a durable shared queue: declared once per session unless qargs */
};

typedef struct sg_relay_subreq {
  const sg_stomp_frame_t *f; /* the SUBSCRIBE (NULL for a session's temp queue) */
  const sg_dest_t *d;        /* its destination (NULL for a temp queue) */
  int user;                  /* a /user/ destination (its key names the session's user) */
  int declare;               /* enum sg_relay_declare */
  int durable, exclusive, auto_delete;
  amqp_table_t qargs;        /* queue arguments, borrowed */
  const char *bind_exchange; /* bind the queue to this exchange with bind_key; NULL: no bind */
  const char *bind_key;
  int prefetch;              /* basic.qos prefetch count, or -1 */
  int no_ack;
  amqp_table_t cargs;        /* consumer arguments, borrowed */
  int own_queue;             /* the queue is this subscription's (UNSUBSCRIBE durable deletes it) */
  const struct sg_history *history; /* a topic with history: its stream (sub->history is set) */
  int resume;                /* history: SUBSCRIBE named an x-stream-offset */
} sg_relay_subreq_t;

/* One delivery for a subscription, borrowed for the callback. When tail is
 * not NULL the message goes to many sessions: tail[v] (STOMP 1.0, 1.1,
 * 1.2) holds what follows the per-subscription headers once a first
 * session has encoded it, and tail_utf8[v] whether that is UTF-8 (-1 not
 * yet known). seq is the number the message-id carries. */
typedef struct sg_relay_msg {
  const sg_amqp_delivery_t *d;
  uint64_t seq;
  sg_buf_t *tail;
  int *tail_utf8;
  int incomplete; /* history: messages before this one are past the retention */
} sg_relay_msg_t;

/* What the login needs. Borrowed for the call. */
typedef struct sg_relay_login {
  uv_loop_t *loop;
  const char *login, *passcode; /* as CONNECT gave them, or NULL */
  const char *user, *password;  /* what to log in with: CONNECT's, or --broker's */
  const char *vhost;
  const char *bearer;           /* the upgrade's Authorization bearer token, or NULL */
  const char *conn_name;
} sg_relay_login_t;

/* The status of a login the gateway itself refused (--auth jwt or file). */
#define SG_RELAY_DENIED (-2)

/* Answers of admit. */
enum sg_relay_admit {
  SG_RELAY_GO = 0,
  SG_RELAY_WAIT_BLOCKED, /* the broker blocks publishing: stop reading the client */
  SG_RELAY_WAIT_CHANNEL, /* the session's channel is opening */
  SG_RELAY_WAIT_SETUP,   /* a subscription is being set up */
};

/* The layer above, called by the relay. None of these is called from
 * inside an operation, except on_fault_cb when the operation's broker
 * link failed (the operation then returns a negative value). */
typedef struct sg_relay_cbs {
  /* The login finished: status 0, the broker's refusal (403, 530), -1 for
   * another failure, or SG_RELAY_DENIED; message explains a failure. grant
   * is the gateway's own authorisation (--auth jwt or file), given to the
   * session to release, or NULL. */
  void (*on_ready_cb)(sg_relay_t *r, int status, const char *message, struct sg_grant *grant);
  /* Frames that waited may go (unblocked: publishing is allowed again). */
  void (*on_wake_cb)(sg_relay_t *r, int unblocked);
  /* Marks may have been reached. */
  void (*on_progress_cb)(sg_relay_t *r);
  /* A delivery for sub; m is borrowed for the call. */
  void (*on_delivery_cb)(sg_relay_t *r, sg_relay_sub_t *sub, sg_relay_msg_t *m);
  /* The relay cannot go on; nothing more is delivered. */
  void (*on_fault_cb)(sg_relay_t *r, const sg_relay_fault_t *f);
  /* sg_relay_close finished, when it returned 0: the owner may free. */
  void (*on_closed_cb)(sg_relay_t *r);
} sg_relay_cbs_t;

/* The operations. Those returning int give 0 or a negative error unless
 * said otherwise. */
typedef struct sg_relay_ops {
  /* Starts the login; on_ready_cb reports it, possibly before this
   * returns. 530 when the virtual host cannot be served here, a negative
   * error when nothing could be started; *why then says why. */
  int (*login)(sg_relay_t *r, const sg_relay_login_t *l, const char **why);
  /* Whether frame f may be handled now (SG_RELAY_GO) or must wait for
   * on_wake_cb (and why). behind: other frames wait ahead of f, so it
   * waits anyway and nothing is started for it. Negative, with *why
   * filled, when what f needs cannot be had. */
  int (*admit)(sg_relay_t *r, const sg_stomp_frame_t *f, int behind, sg_relay_fault_t *why);
  /* Declares a durable queue (a SEND to /queue/), once per session unless
   * args has entries (then the broker checks them). */
  int (*declare)(sg_relay_t *r, const char *queue, const amqp_table_t *args);
  /* Publishes; borrows everything. */
  int (*publish)(sg_relay_t *r, const char *exchange, const char *routing_key,
                 const amqp_basic_properties_t *props, const void *body, size_t len);
  /* Sets sub up. 0 when done (a mark taken now covers it), SG_ERR_AGAIN
   * when the frame must wait for on_wake_cb and be handled again, or a
   * negative error with *why filled (nothing to release then). */
  int (*subscribe)(sg_relay_t *r, sg_relay_sub_t *sub, const sg_relay_subreq_t *q,
                   sg_relay_fault_t *why);
  /* Stops sub's deliveries; once *done is reached the broker can no
   * longer refer to it and it may be released. */
  int (*unsubscribe)(sg_relay_t *r, sg_relay_sub_t *sub, sg_relay_mark_t *done);
  /* Deletes a queue (the end of a durable subscription). */
  int (*delete_queue)(sg_relay_t *r, const char *queue);
  /* Acknowledges (ack) or rejects delivery tag, and all before it when
   * multiple; a rejected one is requeued when requeue. */
  int (*ack)(sg_relay_t *r, uint64_t tag, int multiple, int ack, int requeue);
  void (*mark)(sg_relay_t *r, sg_relay_mark_t *m);
  int (*reached)(sg_relay_t *r, const sg_relay_mark_t *m);
  /* The session forgets sub. */
  void (*release)(sg_relay_t *r, sg_relay_sub_t *sub);
  /* Ends everything. 1 when closed at once, 0 when on_closed_cb follows
   * (always from a later loop iteration). */
  int (*close)(sg_relay_t *r);
  /* After close: frees r. */
  void (*free)(sg_relay_t *r);
} sg_relay_ops_t;

struct sg_relay {
  const sg_relay_ops_t *ops;
  const sg_relay_cbs_t *cbs;
  void *owner;              /* the session's */
  unsigned user_dests : 1;  /* it serves /user/ destinations */
};

/* A relay implementation. */
typedef struct sg_relay_type {
  const char *name;
  /* Whether it serves /user/ destinations, whose exchange is then declared
   * at start-up. */
  int user_destinations;
  /* The relay's state in one worker, kept in ctx->relay_data: made before
   * the worker's thread starts, on the thread that owns loop, and stopped
   * on the worker's thread when it ends. NULL when it needs none. 0 or a
   * negative error. */
  int (*worker_start)(struct sg_session_ctx *ctx, uv_loop_t *loop);
  void (*worker_stop)(struct sg_session_ctx *ctx);
  /* A relay for a session of ctx; NULL when out of memory. */
  sg_relay_t *(*create)(struct sg_session_ctx *ctx, const sg_relay_cbs_t *cbs, void *owner);
} sg_relay_type_t;

extern const sg_relay_type_t sg_relay_per_session; /* relay_session.c */
extern const sg_relay_type_t sg_relay_shared;      /* relay_shared.c */

/* The relay of each relay mode, indexed by sg_mode_t (relay.c). */
const sg_relay_type_t *sg_relay_of(sg_mode_t mode);


static inline int sg_relay_login(sg_relay_t *r, const sg_relay_login_t *l, const char **why) {
  return r->ops->login(r, l, why);
}
static inline int sg_relay_admit(sg_relay_t *r, const sg_stomp_frame_t *f, int behind,
                                 sg_relay_fault_t *why) {
  return r->ops->admit(r, f, behind, why);
}
static inline int sg_relay_declare(sg_relay_t *r, const char *queue, const amqp_table_t *args) {
  return r->ops->declare(r, queue, args);
}
static inline int sg_relay_publish(sg_relay_t *r, const char *exchange, const char *rk,
                                   const amqp_basic_properties_t *p, const void *body, size_t len) {
  return r->ops->publish(r, exchange, rk, p, body, len);
}
static inline int sg_relay_subscribe(sg_relay_t *r, sg_relay_sub_t *sub, const sg_relay_subreq_t *q,
                                     sg_relay_fault_t *why) {
  return r->ops->subscribe(r, sub, q, why);
}
static inline int sg_relay_unsubscribe(sg_relay_t *r, sg_relay_sub_t *sub, sg_relay_mark_t *done) {
  return r->ops->unsubscribe(r, sub, done);
}
static inline int sg_relay_delete_queue(sg_relay_t *r, const char *queue) {
  return r->ops->delete_queue(r, queue);
}
static inline int sg_relay_ack(sg_relay_t *r, uint64_t tag, int multiple, int ack, int requeue) {
  return r->ops->ack(r, tag, multiple, ack, requeue);
}
static inline void sg_relay_mark(sg_relay_t *r, sg_relay_mark_t *m) { r->ops->mark(r, m); }
static inline int sg_relay_reached(sg_relay_t *r, const sg_relay_mark_t *m) {
  return r->ops->reached(r, m);
}
static inline void sg_relay_release(sg_relay_t *r, sg_relay_sub_t *sub) { r->ops->release(r, sub); }
static inline int sg_relay_close(sg_relay_t *r) { return r->ops->close(r); }
static inline void sg_relay_free(sg_relay_t *r) { r->ops->free(r); }

#endif
