/* SPDX-License-Identifier: MIT */
/* Shared subscriptions with routing in the gateway. Every queue is
 * declared and consumed on the worker's long-lived fan-out channel. Binds
 * and unbinds go, pipelined, on a second channel of the same connection
 * (the queues are exclusive to it): a refusal (a missing exchange, no
 * permission) closes the channel it came on, so it must not be the one
 * that consumes. The refused bind is the oldest one unanswered; it fails
 * its members alone, and what was sent after it is sent again on a fresh
 * channel. */
#include "fanout.h"

#include <amqp_framing.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "stompgate/container.h"
#include "stompgate/err.h"
#include "stompgate/topic_match.h"

/* A binding whose last member left is kept this long before it is
 * unbound: sessions that come and go (page reloads, reconnects) find it
 * ready instead of costing the broker a bind and an unbind each time. A
 * queue goes with its last binding. */
#define FANOUT_LINGER_MS 2000

enum { CHAN_NONE = 0, CHAN_OPENING, CHAN_OPEN, CHAN_CLOSING };
enum { Q_WAIT_CHANNEL = 0, Q_DECLARING, Q_READY };
enum { B_WAIT = 0, B_BINDING, B_BOUND };
/* What an op sends: a queue's bind or unbind, or, before the first bind
 * of an exact key on a topic exchange, the declaration of the exchange's
 * exact-key companion and its binding to the exchange, or, before a
 * history stream is consumed, a passive declare that it exists (consuming
 * a missing queue would close the channel every shared queue is on). */
enum { OP_BIND = 0, OP_UNBIND, OP_X_DECLARE, OP_X_BIND, OP_S_CHECK };
#define OP_IS_X(kind) ((kind) == OP_X_DECLARE || (kind) == OP_X_BIND)

struct sg_fanout_queue {
  sg_fanout_t *f;
  sg_fanout_hnode_t by_name, by_tag;
  char *exchange;
  char *key;              /* unrouted: its one binding key; NULL: routed here */
  char *exact_x;          /* a topic exchange's companion for exact keys; NULL: none */
  sg_matcher_t matcher;   /* its bindings' keys */
  char tag[40];
  char queue[96];
  int state;
  uint64_t ready_seq;     /* fan-out channel: its consume-ok */
  sg_fanout_queue_t *pend_next;
  sg_fanout_dl_t subs;    /* its bindings */
  size_t nsubs;
  size_t ops;             /* its binds and unbinds not answered yet */
  int iterating;          /* held by a walk; freed after it */
  uint64_t delivered;
  unsigned in_tables : 1, in_pending : 1, dead : 1;
  unsigned stream : 1;        /* a history stream (queue): consumed from an offset, acked */
  int64_t read;               /* stream: the last offset read, -1 none */
  unsigned exact_sent : 1;    /* companion declared and bound on this connection */
  unsigned exact_refused : 1; /* the broker refused it: exact keys bind on exchange */
};

struct sg_fanout_sub {
  sg_fanout_queue_t *q;
  sg_fanout_hnode_t node;      /* in f->subs */
  sg_matcher_sub_t ms;         /* its key, in q's matcher */
  sg_fanout_dl_t q_link;       /* in q->subs */
  sg_fanout_dl_t bind_link;    /* in f->to_bind */
  sg_fanout_dl_t idle_link;    /* in f->idle */
  sg_fanout_op_t *op;          /* its bind in flight */
  int state;
  unsigned dead : 1;
  unsigned exact : 1;          /* its key has no wildcard word */
  unsigned via_exact : 1;      /* bound on its queue's exact_x */
  sg_fanout_member_t *members;
  size_t nmembers;
  int iterating;
  sg_fanout_member_t *iter_next;
  uint64_t idle_since;         /* uv_now when its last member left */
};

struct sg_fanout_op {
  sg_fanout_op_t *next;
  sg_fanout_queue_t *q;
  sg_fanout_sub_t *fs; /* a bind: its binding (NULL once dropped); an unbind: NULL */
  uint64_t seq;        /* its reply on the bind channel; 0: to send (again) */
  int kind;            /* OP_* */
  unsigned via_exact : 1; /* a bind or unbind on q->exact_x */
  char key[];          /* an unbind's key */
};

/* ---------- lists and tables ---------- */

static void dl_init(sg_fanout_dl_t *h) { h->next = h->prev = h; }
static int dl_empty(const sg_fanout_dl_t *h) { return h->next == h; }
static int dl_linked(const sg_fanout_dl_t *n) { return n->next != NULL; }

static void dl_push(sg_fanout_dl_t *h, sg_fanout_dl_t *n) {
  n->prev = h->prev;
  n->next = h;
  h->prev->next = n;
  h->prev = n;
}

static void dl_del(sg_fanout_dl_t *n) {
  if (!dl_linked(n)) return;
  n->prev->next = n->next;
  n->next->prev = n->prev;
  n->next = n->prev = NULL;
}

/* FNV-1a from a per-fan-out random basis: binding keys come from clients. */
static uint64_t hash_bytes(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

static uint64_t queue_hash(const sg_fanout_t *f, const char *exchange, const char *key) {
  uint64_t h = hash_bytes(f->seed[0], exchange, strlen(exchange) + 1);
  return key ? hash_bytes(h ^ 1, key, strlen(key)) : h;
}

static uint64_t tag_hash(const sg_fanout_t *f, const void *tag, size_t len) {
  return hash_bytes(f->seed[1], tag, len);
}

static uint64_t sub_hash(const sg_fanout_t *f, const sg_fanout_queue_t *q, const char *key,
                         size_t len) {
  uintptr_t qp = (uintptr_t)q;
  return hash_bytes(hash_bytes(f->seed[0] ^ f->seed[1], &qp, sizeof(qp)), key, len);
}

static int ht_add(sg_fanout_table_t *t, sg_fanout_hnode_t *n, uint64_t hash) {
  if (t->n + 1 > t->nbuckets) {
    size_t nb = t->nbuckets ? t->nbuckets * 2 : 64;
    sg_fanout_hnode_t **b = calloc(nb, sizeof(*b));
    if (b == NULL) return SG_ERR_NOMEM;
    for (size_t i = 0; i < t->nbuckets; i++) {
      sg_fanout_hnode_t *e = t->buckets[i];
      while (e) {
        sg_fanout_hnode_t *next = e->next;
        e->next = b[e->hash & (nb - 1)];
        b[e->hash & (nb - 1)] = e;
        e = next;
      }
    }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = nb;
  }
  n->hash = hash;
  n->next = t->buckets[hash & (t->nbuckets - 1)];
  t->buckets[hash & (t->nbuckets - 1)] = n;
  t->n++;
  return 0;
}

static void ht_del(sg_fanout_table_t *t, sg_fanout_hnode_t *n) {
  for (sg_fanout_hnode_t **p = &t->buckets[n->hash & (t->nbuckets - 1)]; *p; p = &(*p)->next)
    if (*p == n) {
      *p = n->next;
      t->n--;
      return;
    }
}

static sg_fanout_hnode_t *ht_chain(const sg_fanout_table_t *t, uint64_t hash) {
  return t->n ? t->buckets[hash & (t->nbuckets - 1)] : NULL;
}

static sg_fanout_queue_t *find_queue(sg_fanout_t *f, const char *exchange, const char *key,
                                      int stream) {
  uint64_t h = queue_hash(f, exchange, key);
  for (sg_fanout_hnode_t *n = ht_chain(&f->queues, h); n; n = n->next) {
    sg_fanout_queue_t *q = container_of(n, sg_fanout_queue_t, by_name);
    if (n->hash == h && strcmp(q->exchange, exchange) == 0 && q->stream == (unsigned)(stream != 0) &&
        (key == NULL ? q->key == NULL : q->key != NULL && strcmp(q->key, key) == 0))
      return q;
  }
  return NULL;
}

static sg_fanout_queue_t *find_tag(sg_fanout_t *f, amqp_bytes_t tag) {
  uint64_t h = tag_hash(f, tag.bytes, tag.len);
  for (sg_fanout_hnode_t *n = ht_chain(&f->tags, h); n; n = n->next) {
    sg_fanout_queue_t *q = container_of(n, sg_fanout_queue_t, by_tag);
    if (n->hash == h && strlen(q->tag) == tag.len && memcmp(q->tag, tag.bytes, tag.len) == 0)
      return q;
  }
  return NULL;
}

static sg_fanout_sub_t *find_sub(sg_fanout_t *f, sg_fanout_queue_t *q, const char *key,
                                 size_t len) {
  uint64_t h = sub_hash(f, q, key, len);
  for (sg_fanout_hnode_t *n = ht_chain(&f->subs, h); n; n = n->next) {
    sg_fanout_sub_t *fs = container_of(n, sg_fanout_sub_t, node);
    size_t kl;
    const char *k = sg_matcher_sub_key(&fs->ms, &kl);
    if (n->hash == h && fs->q == q && kl == len && memcmp(k, key, len) == 0) return fs;
  }
  return NULL;
}

/* ---------- exchange kinds ---------- */

/* How deliveries through exchange are routed here: an sg_match_kind_t
 * (SG_MATCH_TOPIC, _DIRECT, _FANOUT) for the built-in amq.topic,
 * amq.direct and amq.fanout and for the topic exchanges the gateway
 * declares itself on --broker's vhost (the application and user
 * exchanges), or 0 when the gateway does not know its type: AMQP gives no
 * way to ask, so such an exchange keeps a queue per binding key. */
static int exchange_kind(const sg_fanout_t *f, const char *exchange) {
  if (strcmp(exchange, "amq.topic") == 0) return SG_MATCH_TOPIC;
  if (strcmp(exchange, "amq.direct") == 0) return SG_MATCH_DIRECT;
  if (strcmp(exchange, "amq.fanout") == 0) return SG_MATCH_FANOUT;
  /* The gateway declares these as topic exchanges, on --broker's vhost
   * only; a declaration the broker refused is logged at start-up. */
  const sg_config_t *c = f->pool->cfg;
  if (strcmp(f->pool->vhost, c->broker.vhost) != 0) return 0;
  if (c->user_exchange && strcmp(exchange, c->user_exchange) == 0 &&
      strncmp(exchange, "amq.", 4) != 0)
    return SG_MATCH_TOPIC;
  if (c->app_prefixes.n > 0 && c->app_exchange && strcmp(exchange, c->app_exchange) == 0)
    return SG_MATCH_TOPIC;
  return 0;
}

/* ---------- forward declarations ---------- */

typedef struct {
  int code;
  const char *text;
} fail_arg_t;

static void q_check(sg_fanout_queue_t *q);
static void q_fail(sg_fanout_queue_t *q, void *arg);
static void q_maybe_free(sg_fanout_queue_t *q);
static void b_empty(sg_fanout_sub_t *fs);
static void flush_binds(sg_fanout_t *f);
static void open_channel(sg_fanout_t *f);
static void open_bind(sg_fanout_t *f);
static void linger_cb(uv_timer_t *t);

/* Whether a lost channel went with its whole connection (a node that
 * closed, froze or went away) rather than being closed alone by the
 * broker for something it did. */
static int conn_gone(const sg_amqp_t *a) {
  return a->conn == NULL || a->conn->state != SG_AMQP_OPEN;
}

static int chan_usable(int state) { return state == CHAN_OPENING || state == CHAN_OPEN; }

/* ---------- bindings ---------- */

static void member_link(sg_fanout_sub_t *fs, sg_fanout_member_t *m) {
  m->fs = fs;
  m->prev = NULL;
  m->next = fs->members;
  if (fs->members) fs->members->prev = m;
  fs->members = m;
  fs->nmembers++;
}

/* Records where fs is bound at the broker: on its queue's companion or
 * not (also when not bound at all). */
static void b_set_via(sg_fanout_sub_t *fs, int via_exact) {
  if (fs->via_exact == (unsigned)via_exact) return;
  fs->via_exact = via_exact != 0;
  sg_metrics_shared_gauges(0, 0, via_exact ? 1 : -1);
}

/* fs is to be bound (again): it waits on the to-bind list. */
static void b_requeue(sg_fanout_sub_t *fs) {
  fs->state = B_WAIT;
  if (!dl_linked(&fs->bind_link)) dl_push(&fs->q->f->to_bind, &fs->bind_link);
}

static sg_fanout_sub_t *b_new(sg_fanout_queue_t *q, const char *key, size_t len) {
  sg_fanout_t *f = q->f;
  sg_fanout_sub_t *fs = calloc(1, sizeof(*fs));
  if (fs == NULL) return NULL;
  fs->q = q;
  fs->ms.data = fs;
  fs->exact = q->exact_x != NULL && sg_topic_key_exact(key, len);
  if (sg_matcher_add(&q->matcher, &fs->ms, key, len) < 0) {
    free(fs);
    return NULL;
  }
  if (ht_add(&f->subs, &fs->node, sub_hash(f, q, key, len)) != 0) {
    sg_matcher_remove(&q->matcher, &fs->ms);
    free(fs);
    return NULL;
  }
  dl_push(&q->subs, &fs->q_link);
  q->nsubs++;
  sg_metrics_shared_gauges(0, 1, 0);
  b_requeue(fs);
  return fs;
}

/* Drops the binding from every table (its broker binding, if any, is the
 * caller's business); freed at once unless a walk holds it. */
static void b_free(sg_fanout_sub_t *fs) {
  sg_fanout_queue_t *q = fs->q;
  if (!fs->dead) {
    fs->dead = 1;
    sg_matcher_remove(&q->matcher, &fs->ms);
    ht_del(&q->f->subs, &fs->node);
    dl_del(&fs->q_link);
    dl_del(&fs->bind_link);
    dl_del(&fs->idle_link);
    if (fs->op) fs->op->fs = NULL;
    fs->op = NULL;
    q->nsubs--;
    sg_metrics_shared_gauges(0, -1, fs->via_exact ? -1 : 0);
  }
  if (fs->iterating) return;
  free(fs);
  q_check(q);
}

/* After a walk over fs's members: what they did while it ran takes effect. */
static void b_after_walk(sg_fanout_sub_t *fs) {
  fs->iter_next = NULL;
  if (fs->iterating) return;
  if (fs->dead) b_free(fs);
  else if (fs->nmembers == 0) b_empty(fs);
}

/* The binding cannot be had or is gone: every member hears, then it is
 * dropped. */
static void b_fail(sg_fanout_sub_t *fs, int code, const char *text) {
  sg_fanout_t *f = fs->q->f;
  if (fs->dead) return;
  fs->iterating++;
  b_free(fs);
  /* One member at a time, each unlinked before it hears: its owner may
   * make others leave from inside the callback. */
  sg_fanout_member_t *m;
  while ((m = fs->members) != NULL) {
    fs->members = m->next;
    if (m->next) m->next->prev = NULL;
    fs->nmembers--;
    int was_ready = m->ready;
    m->next = m->prev = NULL;
    m->fs = NULL;
    m->ready = 0;
    if (was_ready) f->cbs->on_lost_cb(m, code, text);
    else f->cbs->on_ready_cb(m, code ? code : -1, text);
  }
  fs->iterating--;
  b_after_walk(fs);
}

/* The broker confirmed the binding: its waiting members are ready. */
static void b_bound(sg_fanout_sub_t *fs) {
  sg_fanout_t *f = fs->q->f;
  fs->state = B_BOUND;
  fs->iterating++;
  for (sg_fanout_member_t *m = fs->members; m; m = fs->iter_next) {
    fs->iter_next = m->next;
    if (m->ready) continue;
    m->ready = 1;
    f->cbs->on_ready_cb(m, 0, NULL);
  }
  fs->iterating--;
  b_after_walk(fs);
}

/* The binding's last member left: a bound one lingers, one not sent yet
 * goes at once, one being bound lingers once it is (b_bound). */
static void b_empty(sg_fanout_sub_t *fs) {
  sg_fanout_t *f = fs->q->f;
  if (fs->state == B_WAIT) {
    b_free(fs);
    return;
  }
  if (fs->state != B_BOUND || dl_linked(&fs->idle_link)) return;
  uv_loop_t *loop = f->pool->loop;
  fs->idle_since = uv_now(loop);
  dl_push(&f->idle, &fs->idle_link);
  if (!f->linger_init) {
    if (uv_timer_init(loop, &f->linger) != 0) return; /* kept until the queue goes */
    uv_unref((uv_handle_t *)&f->linger);
    f->linger_init = 1;
  }
  if (!uv_is_active((uv_handle_t *)&f->linger))
    uv_timer_start(&f->linger, linger_cb, FANOUT_LINGER_MS / 2, FANOUT_LINGER_MS / 2);
}

/* ---------- binds and unbinds ---------- */

static void op_append(sg_fanout_t *f, sg_fanout_op_t *op) {
  op->next = NULL;
  *f->ops_tail = op;
  f->ops_tail = &op->next;
  op->q->ops++;
}

/* Whether a bind of fs goes to its queue's exact-key companion: an
 * exact key on a topic exchange whose companion the broker did not
 * refuse. A direct binding costs the broker less than half of a topic one
 * (no topic-trie records) and is made faster; the companion receives
 * every message of the exchange through its '#' binding and routes it by
 * equality, which for a key without wildcards is what the topic exchange
 * would do. A message reaches the queue once, however many of its
 * bindings match. */
static int b_via_exact(const sg_fanout_sub_t *fs) {
  return fs->exact && !fs->q->exact_refused; /* exact implies q->exact_x */
}

/* Exact keys of q bind on its exchange itself from now on, as they would
 * without a companion: correct, only heavier for the broker. what says
 * why, once per queue. */
static void x_give_up(sg_fanout_queue_t *q, const char *what) {
  if (!q->exact_refused)
    sg_log_warn("worker %d: exact keys of exchange '%s' bind on it: %s", q->f->worker, q->exchange,
                what);
  q->exact_refused = 1;
  q->exact_sent = 0;
}

/* Sends op on the bind channel. A failure means the link went: its lost
 * callbacks have run, op was not touched and is the caller's. A bind
 * decides here, at each sending, whether it goes through the companion. */
static int op_send(sg_fanout_t *f, sg_fanout_op_t *op) {
  sg_fanout_queue_t *q = op->q;
  int64_t r;
  if (op->kind == OP_S_CHECK) {
    amqp_queue_declare_t d;
    memset(&d, 0, sizeof(d));
    d.queue = amqp_cstring_bytes(q->queue);
    d.passive = 1;
    d.arguments = amqp_empty_table;
    r = sg_amqp_rpc(&f->bind, AMQP_QUEUE_DECLARE_METHOD, &d, AMQP_QUEUE_DECLARE_OK_METHOD);
  } else if (op->kind == OP_X_DECLARE) {
    amqp_exchange_declare_t d;
    memset(&d, 0, sizeof(d));
    d.exchange = amqp_cstring_bytes(q->exact_x);
    d.type = amqp_cstring_bytes("direct");
    d.internal = 1; /* reached only through its binding to the exchange */
    d.arguments = amqp_empty_table;
    r = sg_amqp_rpc(&f->bind, AMQP_EXCHANGE_DECLARE_METHOD, &d, AMQP_EXCHANGE_DECLARE_OK_METHOD);
  } else if (op->kind == OP_X_BIND) {
    amqp_exchange_bind_t b = {0, amqp_cstring_bytes(q->exact_x), amqp_cstring_bytes(q->exchange),
                              amqp_cstring_bytes("#"), 0, amqp_empty_table};
    r = sg_amqp_rpc(&f->bind, AMQP_EXCHANGE_BIND_METHOD, &b, AMQP_EXCHANGE_BIND_OK_METHOD);
  } else {
    size_t len;
    const char *key = op->fs ? sg_matcher_sub_key(&op->fs->ms, &len) : op->key;
    if (!op->fs) len = strlen(op->key);
    if (op->kind == OP_BIND) op->via_exact = op->fs && b_via_exact(op->fs);
    amqp_bytes_t qb = amqp_cstring_bytes(q->queue);
    amqp_bytes_t xb = amqp_cstring_bytes(op->via_exact ? q->exact_x : q->exchange);
    amqp_bytes_t kb = {len, (void *)key};
    if (op->kind == OP_UNBIND) {
      amqp_queue_unbind_t u = {0, qb, xb, kb, amqp_empty_table};
      r = sg_amqp_rpc(&f->bind, AMQP_QUEUE_UNBIND_METHOD, &u, AMQP_QUEUE_UNBIND_OK_METHOD);
    } else {
      amqp_queue_bind_t b = {0, qb, xb, kb, 0, amqp_empty_table};
      r = sg_amqp_rpc(&f->bind, AMQP_QUEUE_BIND_METHOD, &b, AMQP_QUEUE_BIND_OK_METHOD);
    }
  }
  if (r < 0) return -1;
  op->seq = (uint64_t)r;
  return 0;
}

/* Before q's first bind through its companion on this connection: the
 * companion is declared and bound to the exchange, pipelined ahead of it.
 * Both are idempotent, and other workers and gateways share them. */
static int x_prepare(sg_fanout_t *f, sg_fanout_queue_t *q) {
  for (int kind = OP_X_DECLARE; kind <= OP_X_BIND; kind++) {
    sg_fanout_op_t *op = calloc(1, sizeof(*op));
    if (op == NULL) return -1;
    op->q = q;
    op->kind = kind;
    if (op_send(f, op) != 0) {
      free(op);
      return -1;
    }
    op_append(f, op);
  }
  q->exact_sent = 1;
  return 0;
}

/* Frees every op: the bind channel's work is void (its connection went,
 * or everything fails). Bindings being bound wait to be sent again. */
static void ops_clear(sg_fanout_t *f) {
  sg_fanout_op_t *op = f->ops;
  f->ops = NULL;
  f->ops_tail = &f->ops;
  while (op) {
    sg_fanout_op_t *next = op->next;
    sg_fanout_queue_t *q = op->q;
    sg_fanout_sub_t *fs = op->fs;
    if (fs) {
      fs->op = NULL;
      b_requeue(fs);
    }
    if (OP_IS_X(op->kind)) q->exact_sent = 0;
    q->ops--;
    free(op);
    if (q->dead) q_maybe_free(q);
    op = next;
  }
}

/* Sends the binds of every binding whose queue is consumed. A history
 * stream's bindings need none (the stream is bound to the exchange with
 * its pattern): they are ready once the stream is consumed. */
static void flush_binds(sg_fanout_t *f) {
  sg_fanout_dl_t ready;
  dl_init(&ready);
  for (sg_fanout_dl_t *n = f->to_bind.next; n != &f->to_bind;) {
    sg_fanout_dl_t *next = n->next;
    sg_fanout_sub_t *fs = container_of(n, sg_fanout_sub_t, bind_link);
    if (fs->q->stream && fs->q->state == Q_READY) {
      dl_del(n);
      dl_push(&ready, n);
    }
    n = next;
  }
  /* One at a time, each off the list before its members hear: they may
   * make others leave. */
  while (!dl_empty(&ready)) {
    sg_fanout_sub_t *fs = container_of(ready.next, sg_fanout_sub_t, bind_link);
    dl_del(&fs->bind_link);
    b_bound(fs);
  }
  if (f->bind_state != CHAN_OPEN) {
    if (f->bind_state == CHAN_NONE && f->chan_state == CHAN_OPEN && !dl_empty(&f->to_bind))
      open_bind(f);
    return;
  }
  sg_fanout_dl_t *n = f->to_bind.next;
  while (n != &f->to_bind) {
    sg_fanout_dl_t *next = n->next;
    sg_fanout_sub_t *fs = container_of(n, sg_fanout_sub_t, bind_link);
    if (fs->q->state == Q_READY && !fs->q->stream) {
      if (b_via_exact(fs) && !fs->q->exact_sent && x_prepare(f, fs->q) != 0) return;
      sg_fanout_op_t *op = calloc(1, sizeof(*op));
      if (op == NULL) return; /* left waiting for the next flush */
      op->q = fs->q;
      op->fs = fs;
      dl_del(&fs->bind_link);
      if (op_send(f, op) != 0) {
        free(op);
        return;
      }
      fs->op = op;
      fs->state = B_BINDING;
      op_append(f, op);
    }
    n = next;
  }
}

/* The key of fs is to go: unbound at the broker, unless its queue goes
 * with it. */
static void b_unbind(sg_fanout_sub_t *fs) {
  sg_fanout_queue_t *q = fs->q;
  sg_fanout_t *f = q->f;
  if (q->nsubs > 1 && !q->stream && q->state == Q_READY && chan_usable(f->chan_state)) {
    size_t len;
    const char *key = sg_matcher_sub_key(&fs->ms, &len);
    sg_fanout_op_t *op = calloc(1, sizeof(*op) + len + 1);
    if (op != NULL) {
      op->q = q;
      op->kind = OP_UNBIND;
      op->via_exact = fs->via_exact;
      memcpy(op->key, key, len);
      b_free(fs);
      if (f->bind_state == CHAN_OPEN) {
        if (op_send(f, op) != 0) {
          free(op);
          return;
        }
      } else if (f->bind_state == CHAN_NONE) {
        open_bind(f);
      }
      op_append(f, op);
      return;
    }
  }
  b_free(fs);
}

static void linger_cb(uv_timer_t *t) {
  sg_fanout_t *f = container_of(t, sg_fanout_t, linger);
  uint64_t now = uv_now(t->loop);
  while (!dl_empty(&f->idle)) {
    sg_fanout_sub_t *fs = container_of(f->idle.next, sg_fanout_sub_t, idle_link);
    if (now - fs->idle_since < FANOUT_LINGER_MS) break;
    dl_del(&fs->idle_link);
    b_unbind(fs);
  }
  if (dl_empty(&f->idle)) uv_timer_stop(t);
}

/* ---------- queues ---------- */

/* Names a queue afresh: after a move the old one may still exist for a
 * while on the node that was lost, exclusive to a dead connection. */
static void q_name(sg_fanout_queue_t *q, uint64_t id) {
  snprintf(q->queue, sizeof(q->queue), "stompgate.fanout.%d.%" PRIx64 ".%" PRIu64, q->f->worker,
           (uint64_t)uv_hrtime(), id);
}

static sg_fanout_queue_t *q_new(sg_fanout_t *f, const char *exchange, const char *key, int kind,
                                 int stream) {
  sg_fanout_queue_t *q = calloc(1, sizeof(*q));
  if (q == NULL) return NULL;
  q->f = f;
  q->stream = stream != 0;
  q->read = -1;
  dl_init(&q->subs);
  q->exchange = strdup(exchange);
  q->key = key ? strdup(key) : NULL;
  const char *prefix = f->pool->cfg->exact_exchange_prefix;
  if (kind == SG_MATCH_TOPIC && key == NULL && !stream && prefix && strlen(prefix) + strlen(exchange) <= 255 &&
      (q->exact_x = malloc(strlen(prefix) + strlen(exchange) + 1)) != NULL) {
    strcpy(q->exact_x, prefix);
    strcat(q->exact_x, exchange);
  }
  uint64_t id = ++f->next_id;
  snprintf(q->tag, sizeof(q->tag), "fanout-%d-%" PRIu64, f->worker, id);
  if (stream) snprintf(q->queue, sizeof(q->queue), "%s", exchange);
  else q_name(q, id);
  if (q->exchange == NULL || (key && q->key == NULL) ||
      sg_matcher_init(&q->matcher, (sg_match_kind_t)kind, f->seed) != 0)
    goto fail;
  if (ht_add(&f->queues, &q->by_name, queue_hash(f, exchange, key)) != 0) goto fail;
  if (ht_add(&f->tags, &q->by_tag, tag_hash(f, q->tag, strlen(q->tag))) != 0) {
    ht_del(&f->queues, &q->by_name);
    goto fail;
  }
  q->in_tables = 1;
  sg_metrics_shared_gauges(1, 0, 0);
  q->state = Q_WAIT_CHANNEL;
  return q;
fail:
  free(q->exchange);
  free(q->key);
  free(q->exact_x);
  free(q);
  return NULL;
}

static void q_unlist(sg_fanout_queue_t *q) {
  sg_fanout_t *f = q->f;
  if (q->in_tables) {
    ht_del(&f->queues, &q->by_name);
    ht_del(&f->tags, &q->by_tag);
    q->in_tables = 0;
    sg_metrics_shared_gauges(-1, 0, 0);
  }
  if (q->in_pending) {
    for (sg_fanout_queue_t **p = &f->pending; *p; p = &(*p)->pend_next)
      if (*p == q) {
        *p = q->pend_next;
        break;
      }
    q->in_pending = 0;
  }
}

static void q_maybe_free(sg_fanout_queue_t *q) {
  if (!q->dead || q->iterating || q->ops > 0) return;
  sg_matcher_free(&q->matcher);
  free(q->exchange);
  free(q->key);
  free(q->exact_x);
  free(q);
}

/* A queue left without bindings, and no bind or unbind of it in flight,
 * stops being consumed; the broker deletes it (auto-delete). */
static void q_check(sg_fanout_queue_t *q) {
  if (q->dead) {
    q_maybe_free(q);
    return;
  }
  if (q->nsubs > 0 || q->ops > 0) return;
  sg_fanout_t *f = q->f;
  q_unlist(q);
  if (q->state != Q_WAIT_CHANNEL && f->chan_state == CHAN_OPEN) {
    amqp_basic_cancel_t c = {amqp_cstring_bytes(q->tag), 0};
    sg_amqp_rpc(&f->chan, AMQP_BASIC_CANCEL_METHOD, &c, AMQP_BASIC_CANCEL_OK_METHOD);
  }
  q->dead = 1;
  q_maybe_free(q);
}

/* Consumes q on the fan-out channel; it is ready at the consume-ok. */
static void q_consume(sg_fanout_queue_t *q, int no_ack, amqp_table_t args) {
  sg_fanout_t *f = q->f;
  int64_t r = sg_amqp_consume(&f->chan, q->queue, q->tag, no_ack, args);
  if (r < 0) return; /* the channel was lost: its callback moved or failed q */
  q->ready_seq = (uint64_t)r;
  q->pend_next = f->pending;
  f->pending = q;
  q->in_pending = 1;
}

/* A history stream's deliveries in flight per worker: its consumer's
 * prefetch (a stream consumer must have one; each delivery is acked). */
#define FANOUT_STREAM_PREFETCH 1000

/* Consumes a history stream on the fan-out channel: from the next
 * message, or after a move from just after the last offset read, so
 * that the live feed has no gap. The stream is the gateway's, declared
 * and bound at start-up. */
static void q_consume_stream(sg_fanout_queue_t *q) {
  sg_fanout_t *f = q->f;
  amqp_basic_qos_t qos = {0, FANOUT_STREAM_PREFETCH, 0};
  if (sg_amqp_rpc(&f->chan, AMQP_BASIC_QOS_METHOD, &qos, AMQP_BASIC_QOS_OK_METHOD) < 0) return;
  amqp_table_entry_t e;
  e.key = amqp_cstring_bytes("x-stream-offset");
  if (q->read >= 0) {
    e.value.kind = AMQP_FIELD_KIND_I64;
    e.value.value.i64 = q->read + 1;
  } else {
    e.value.kind = AMQP_FIELD_KIND_UTF8;
    e.value.value.bytes = amqp_cstring_bytes("next");
  }
  q_consume(q, 0, (amqp_table_t){1, &e});
}

/* Before a history stream is consumed, the bind channel checks that it
 * exists; op_answered consumes it or fails its members. */
static void q_check_stream(sg_fanout_queue_t *q) {
  sg_fanout_t *f = q->f;
  sg_fanout_op_t *op = calloc(1, sizeof(*op));
  q->state = Q_DECLARING;
  if (op == NULL) {
    fail_arg_t x = {-1, "out of memory"};
    q_fail(q, &x);
    return;
  }
  op->q = q;
  op->kind = OP_S_CHECK;
  if (f->bind_state == CHAN_OPEN) {
    if (op_send(f, op) != 0) {
      free(op); /* the link went: its callbacks moved q */
      return;
    }
  } else if (f->bind_state == CHAN_NONE) {
    open_bind(f);
  }
  op_append(f, op);
}

/* Declares and consumes the queue on the fan-out channel, pipelined. */
static void q_declare(sg_fanout_queue_t *q) {
  sg_fanout_t *f = q->f;
  if (q->stream) {
    q_check_stream(q);
    return;
  }
  amqp_queue_declare_t d;
  memset(&d, 0, sizeof(d));
  d.queue = amqp_cstring_bytes(q->queue);
  d.exclusive = 1;
  d.auto_delete = 1;
  d.arguments = amqp_empty_table;
  q->state = Q_DECLARING;
  if (sg_amqp_rpc(&f->chan, AMQP_QUEUE_DECLARE_METHOD, &d, AMQP_QUEUE_DECLARE_OK_METHOD) < 0)
    return; /* the channel was lost: its callback moved or failed q */
  q_consume(q, 1, amqp_empty_table);
}

/* Calls fn for every queue, on a copy of the list: fn may run callbacks
 * that add or drop queues. */
static void for_each_q(sg_fanout_t *f, void (*fn)(sg_fanout_queue_t *q, void *arg), void *arg) {
  size_t n = f->queues.n, k = 0;
  if (n == 0) return;
  sg_fanout_queue_t **v = malloc(n * sizeof(*v));
  if (v == NULL) return;
  for (size_t i = 0; i < f->queues.nbuckets; i++)
    for (sg_fanout_hnode_t *e = f->queues.buckets[i]; e; e = e->next) {
      v[k] = container_of(e, sg_fanout_queue_t, by_name);
      v[k++]->iterating++;
    }
  for (size_t i = 0; i < k; i++) fn(v[i], arg);
  for (size_t i = 0; i < k; i++) {
    v[i]->iterating--;
    q_maybe_free(v[i]);
  }
  free(v);
}

/* The queue is gone or cannot be had: every binding's members hear. */
static void q_fail(sg_fanout_queue_t *q, void *arg) {
  fail_arg_t *x = arg;
  if (q->dead) return;
  q_unlist(q);
  q->dead = 1;
  q->iterating++;
  while (!dl_empty(&q->subs))
    b_fail(container_of(q->subs.next, sg_fanout_sub_t, q_link), x->code, x->text);
  q->iterating--;
  q_maybe_free(q);
}

/* The connection under the queue was lost: it is declared, bound and
 * consumed again on the fan-out's next channel, which the pool opens on a
 * live node. Members of its bindings stay joined and hear nothing; what
 * was published meanwhile is not delivered to them, as after a reconnect.
 * Bindings with no member left are simply dropped. */
static void q_move(sg_fanout_queue_t *q, void *arg) {
  sg_fanout_t *f = q->f;
  (void)arg;
  if (q->dead) return;
  q->iterating++;
  sg_fanout_dl_t *n = q->subs.next;
  while (n != &q->subs) {
    sg_fanout_dl_t *next = n->next;
    sg_fanout_sub_t *fs = container_of(n, sg_fanout_sub_t, q_link);
    if (fs->nmembers == 0 && !fs->iterating) {
      b_free(fs);
    } else {
      b_set_via(fs, 0);
      dl_del(&fs->idle_link);
      b_requeue(fs);
    }
    n = next;
  }
  q->iterating--;
  if (q->dead) {
    q_maybe_free(q);
    return;
  }
  /* Its tag and table entries stay: deliveries can only come on the next
   * channel, through the queue's new name. */
  q->in_pending = 0;
  q->state = Q_WAIT_CHANNEL;
  q->ready_seq = 0;
  q->exact_sent = 0;
  if (!q->stream) q_name(q, ++f->next_id);
  f->moving++;
  sg_metrics_shared_moved();
}

static void q_start_waiting(sg_fanout_queue_t *q, void *arg) {
  (void)arg;
  if (!q->dead && q->state == Q_WAIT_CHANNEL && q->f->chan_state == CHAN_OPEN) q_declare(q);
}

/* Everything fails: the fan-out channel could not be had, or the broker
 * closed it for something it did. */
static void fail_all(sg_fanout_t *f, int code, const char *text) {
  ops_clear(f);
  fail_arg_t x = {code, text};
  for_each_q(f, q_fail, &x);
  if (chan_usable(f->bind_state)) {
    f->bind_state = CHAN_CLOSING;
    sg_amqp_close(&f->bind);
  }
}

/* ---------- the bind channel ---------- */

static void bind_open_cb(sg_amqp_t *a, int status, const char *message) {
  sg_fanout_t *f = container_of(a, sg_fanout_t, bind);
  if (status != 0) {
    f->bind_state = CHAN_CLOSING;
    if (!conn_gone(a)) {
      /* Nothing can be bound on this connection: what waits fails. */
      sg_log_warn("worker %d: fan-out bind channel failed: %s", f->worker, message);
      ops_clear(f);
      while (!dl_empty(&f->to_bind))
        b_fail(container_of(f->to_bind.next, sg_fanout_sub_t, bind_link), status, message);
    }
    sg_amqp_close(a);
    return;
  }
  f->bind_state = CHAN_OPEN;
  /* What a refused bind left unanswered goes again, in order; a companion
   * the broker refused meanwhile is not asked for again. */
  for (sg_fanout_op_t **p = &f->ops; *p;) {
    sg_fanout_op_t *op = *p;
    if (op->seq == 0 && OP_IS_X(op->kind) && op->q->exact_refused) {
      *p = op->next;
      if (*p == NULL) f->ops_tail = p;
      sg_fanout_queue_t *q = op->q;
      q->ops--;
      free(op);
      q_check(q);
      continue;
    }
    if (op->seq == 0 && op_send(f, op) != 0) return;
    p = &op->next;
  }
  flush_binds(f);
}

/* The broker answered the oldest bind or unbind: it is taken off the list
 * and its binding, if it waits for it, hears that it is bound or, when
 * refused, the broker's code and text. */
static void op_answered(sg_fanout_t *f, int refused, int code, const char *text) {
  sg_fanout_op_t *op = f->ops;
  f->ops = op->next;
  if (f->ops == NULL) f->ops_tail = &f->ops;
  sg_fanout_queue_t *q = op->q;
  sg_fanout_sub_t *fs = op->fs;
  int kind = op->kind, via_exact = op->via_exact;
  q->ops--;
  free(op);
  char what[400];
  if (kind == OP_S_CHECK) {
    if (refused) {
      sg_log_warn("worker %d: history stream '%s' cannot be read: %d %s", f->worker, q->queue,
                  code, text ? text : "");
      fail_arg_t x = {code, text};
      q->iterating++;
      q_fail(q, &x);
      q->iterating--;
    } else if (!q->dead && q->state == Q_DECLARING && f->chan_state == CHAN_OPEN) {
      q_consume_stream(q);
    }
    q_check(q);
    return;
  }
  if (OP_IS_X(kind)) {
    if (refused) {
      snprintf(what, sizeof(what), "the broker refused their direct exchange '%s' (%d %s)",
               q->exact_x, code, text ? text : "");
      x_give_up(q, what);
    }
    q_check(q);
    return;
  }
  if (refused && via_exact && code == 404) {
    /* The companion was deleted under the gateway: the bindings it held
     * went with it. This one binds again, on the exchange itself. */
    snprintf(what, sizeof(what), "their direct exchange '%s' is gone (%s)", q->exact_x,
             text ? text : "");
    x_give_up(q, what);
    if (fs) {
      fs->op = NULL;
      b_requeue(fs);
    }
    q_check(q);
    return;
  }
  q->iterating++;
  if (fs) {
    fs->op = NULL;
    if (refused) {
      b_fail(fs, code, text);
    } else {
      b_set_via(fs, via_exact);
      b_bound(fs);
    }
  }
  q->iterating--;
  q_check(q);
}

static void bind_progress_cb(sg_amqp_t *a) {
  sg_fanout_t *f = container_of(a, sg_fanout_t, bind);
  while (f->ops != NULL && f->ops->seq != 0 && a->rpc_done >= f->ops->seq)
    op_answered(f, 0, 0, NULL);
}

static void bind_lost_cb(sg_amqp_t *a, int code, const char *text) {
  sg_fanout_t *f = container_of(a, sg_fanout_t, bind);
  f->bind_state = CHAN_CLOSING;
  if (!conn_gone(a)) {
    /* The broker refused the oldest unanswered bind or unbind; what was
     * sent after it was ignored and goes again on the next channel. */
    if (f->ops && f->ops->seq == a->rpc_done + 1) op_answered(f, 1, code, text);
    for (sg_fanout_op_t *op = f->ops; op; op = op->next) op->seq = 0;
  }
  /* A lost connection: the fan-out channel's callback moves everything. */
  sg_amqp_close(a);
}

static void bind_closed_cb(sg_amqp_t *a) {
  sg_fanout_t *f = container_of(a, sg_fanout_t, bind);
  f->bind_state = CHAN_NONE;
  if (f->chan_state == CHAN_OPEN && (f->ops || !dl_empty(&f->to_bind))) open_bind(f);
}

static void ignore_delivery_cb(sg_amqp_t *a, const sg_amqp_delivery_t *d) {
  (void)a;
  (void)d;
}
static void ignore_confirm_cb(sg_amqp_t *a, uint64_t tag, int multiple, int ack) {
  (void)a;
  (void)tag;
  (void)multiple;
  (void)ack;
}
static void ignore_cancel_cb(sg_amqp_t *a, amqp_bytes_t tag) {
  (void)a;
  (void)tag;
}

static const sg_amqp_cbs_t bind_cbs = {bind_open_cb, ignore_delivery_cb, ignore_confirm_cb,
                                       bind_progress_cb, ignore_cancel_cb, bind_lost_cb,
                                       bind_closed_cb, NULL};

static void open_bind(sg_fanout_t *f) {
  f->bind_state = CHAN_OPENING;
  if (sg_amqp_open_on(&f->bind, f->chan.conn, &bind_cbs) == 0) return;
  f->bind_state = CHAN_NONE;
  ops_clear(f);
  while (!dl_empty(&f->to_bind))
    b_fail(container_of(f->to_bind.next, sg_fanout_sub_t, bind_link), -1,
           "cannot open a broker channel");
}

/* ---------- the fan-out channel ---------- */

static void chan_open_cb(sg_amqp_t *a, int status, const char *message) {
  sg_fanout_t *f = container_of(a, sg_fanout_t, chan);
  if (status != 0) {
    sg_log_warn("worker %d: fan-out channel failed: %s", f->worker, message);
    f->chan_state = CHAN_CLOSING;
    fail_all(f, status, message);
    sg_amqp_close(a);
    return;
  }
  f->chan_state = CHAN_OPEN;
  if (f->moving > 0) {
    sg_log_info("worker %d: %zu shared subscriptions move to broker %s:%d (%.0f ms after the "
                "loss)",
                f->worker, f->subs.n, a->conn->host, a->conn->port,
                (double)(uv_hrtime() - f->lost_ns) / 1e6);
    f->moving = 0;
  }
  for_each_q(f, q_start_waiting, NULL);
  if (f->chan_state == CHAN_OPEN && f->bind_state == CHAN_NONE) open_bind(f);
}

typedef struct {
  sg_fanout_t *f;
  sg_fanout_msg_t *msg;
} deliver_arg_t;

static void deliver_cb(sg_matcher_sub_t *s, void *arg) {
  deliver_arg_t *x = arg;
  sg_fanout_sub_t *fs = s->data;
  fs->iterating++;
  for (sg_fanout_member_t *m = fs->members; m; m = fs->iter_next) {
    fs->iter_next = m->next;
    if (!m->ready) continue;
    x->f->writes++;
    x->f->cbs->on_message_cb(m, x->msg);
  }
  fs->iterating--;
  b_after_walk(fs);
}

static void chan_delivery_cb(sg_amqp_t *a, const sg_amqp_delivery_t *d) {
  sg_fanout_t *f = container_of(a, sg_fanout_t, chan);
  sg_fanout_queue_t *q = find_tag(f, d->consumer_tag);
  if (q != NULL && q->stream) {
    /* A stream consumer's credit: each delivery is acked, one by one (a
     * multiple ack could reach a tag another stream's ack settled). */
    amqp_basic_ack_t ack = {d->delivery_tag, 0};
    if (sg_amqp_send(a, AMQP_BASIC_ACK_METHOD, &ack) != 0) return;
  }
  if (q == NULL || q->state != Q_READY) return;
  int64_t offset = -1;
  if (q->stream && sg_amqp_delivery_offset(d, &offset) == 0) {
    if (offset <= q->read) return; /* a chunk's start, read already */
    q->read = offset;
  }
  sg_match_key_t local[16], *keys = local;
  size_t n = 1;
  if (q->key == NULL) {
    n = sg_amqp_delivery_keys(d, local, 16);
    if (n > 16) {
      keys = malloc(n * sizeof(*keys));
      if (keys == NULL) return;
      sg_amqp_delivery_keys(d, keys, n);
    }
  } else {
    local[0] = (sg_match_key_t){d->routing_key.bytes, d->routing_key.len};
  }
  sg_fanout_msg_t msg;
  memset(&msg, 0, sizeof(msg));
  msg.d = d;
  msg.seq = ++q->delivered;
  msg.offset = offset;
  msg.tail_utf8[0] = msg.tail_utf8[1] = msg.tail_utf8[2] = -1;
  f->deliveries++;
  deliver_arg_t x = {f, &msg};
  q->iterating++;
  sg_matcher_match(&q->matcher, keys, n, deliver_cb, &x);
  q->iterating--;
  if (keys != local) free(keys);
  for (int v = 0; v < 3; v++) sg_buf_free(&msg.tail[v]);
  q_check(q);
}

static void chan_progress_cb(sg_amqp_t *a) {
  sg_fanout_t *f = container_of(a, sg_fanout_t, chan);
  int ready = 0;
  for (sg_fanout_queue_t **p = &f->pending; *p;) {
    sg_fanout_queue_t *q = *p;
    if (a->rpc_done >= q->ready_seq) {
      *p = q->pend_next;
      q->in_pending = 0;
      q->state = Q_READY;
      ready = 1;
    } else {
      p = &q->pend_next;
    }
  }
  if (ready) flush_binds(f);
}

static void chan_cancel_cb(sg_amqp_t *a, amqp_bytes_t tag) {
  sg_fanout_t *f = container_of(a, sg_fanout_t, chan);
  sg_fanout_queue_t *q = find_tag(f, tag);
  fail_arg_t x = {0, "the broker cancelled the subscription (its queue was deleted)"};
  if (q) q_fail(q, &x);
}

static void chan_lost_cb(sg_amqp_t *a, int code, const char *text) {
  sg_fanout_t *f = container_of(a, sg_fanout_t, chan);
  f->chan_state = CHAN_CLOSING;
  f->pending = NULL;
  if (conn_gone(a) && !f->pool->closing) {
    /* The node or the link went: the queues move to the next channel
     * (chan_closed_cb opens it), keeping their members. */
    sg_log_warn("worker %d: fan-out connection to %s:%d lost (%s); moving %zu shared "
                "subscriptions to a live node",
                f->worker, a->conn ? a->conn->host : "?", a->conn ? a->conn->port : 0, text,
                f->subs.n);
    f->lost_ns = uv_hrtime();
    ops_clear(f);
    for_each_q(f, q_move, NULL);
    sg_amqp_close(a);
    return;
  }
  sg_log_warn("worker %d: fan-out channel lost: %d %s", f->worker, code, text);
  fail_all(f, code, text);
  sg_amqp_close(a);
}

static void chan_closed_cb(sg_amqp_t *a) {
  sg_fanout_t *f = container_of(a, sg_fanout_t, chan);
  f->chan_state = CHAN_NONE;
  /* Joins that came while it closed, and moved queues, wait for a new one. */
  if (f->queues.n > 0) open_channel(f);
}

static const sg_amqp_cbs_t chan_cbs = {chan_open_cb, chan_delivery_cb, ignore_confirm_cb,
                                       chan_progress_cb, chan_cancel_cb, chan_lost_cb,
                                       chan_closed_cb, NULL};

static void open_channel(sg_fanout_t *f) {
  f->chan_state = CHAN_OPENING;
  int r = sg_pool_open_consumer_channel(f->pool, &f->chan, &chan_cbs);
  if (r != 0) {
    f->chan_state = CHAN_NONE;
    fail_all(f, -1, "no broker connection");
  }
}

/* ---------- API ---------- */

int sg_fanout_init(sg_fanout_t *f, sg_pool_t *pool, const sg_fanout_cbs_t *cbs, int worker) {
  memset(f, 0, sizeof(*f));
  f->pool = pool;
  f->cbs = cbs;
  f->worker = worker;
  dl_init(&f->to_bind);
  dl_init(&f->idle);
  f->ops_tail = &f->ops;
  return uv_random(NULL, NULL, f->seed, sizeof(f->seed), 0, NULL);
}

static int join(sg_fanout_t *f, const char *exchange, const char *key, sg_fanout_member_t *m,
                int stream) {
  size_t len = strlen(key);
  m->ready = 0;
  if (len > SG_MATCH_KEY_MAX) return SG_ERR_INVALID;
  int kind = stream ? SG_MATCH_TOPIC : exchange_kind(f, exchange);
  const char *qkey = kind ? NULL : key;
  sg_fanout_queue_t *q = find_queue(f, exchange, qkey, stream);
  int new_q = q == NULL;
  if (new_q && (q = q_new(f, exchange, qkey, kind ? kind : SG_MATCH_FANOUT, stream)) == NULL)
    return SG_ERR_NOMEM;
  sg_fanout_sub_t *fs = find_sub(f, q, key, len);
  if (fs == NULL && (fs = b_new(q, key, len)) == NULL) {
    if (new_q) {
      q_unlist(q);
      q->dead = 1;
      q_maybe_free(q);
    }
    return SG_ERR_NOMEM;
  }
  dl_del(&fs->idle_link);
  member_link(fs, m);
  if (fs->state == B_BOUND) {
    m->ready = 1;
    return 1;
  }
  /* A failure from here on reaches m through on_ready_cb. */
  if (!new_q) flush_binds(f);
  else if (f->chan_state == CHAN_OPEN) q_declare(q);
  else if (f->chan_state == CHAN_NONE) open_channel(f);
  return 0;
}

int sg_fanout_join(sg_fanout_t *f, const char *exchange, const char *key, sg_fanout_member_t *m) {
  return join(f, exchange, key, m, 0);
}

int sg_fanout_join_history(sg_fanout_t *f, const char *queue, const char *key,
                           sg_fanout_member_t *m) {
  return join(f, queue, key, m, 1);
}

int64_t sg_fanout_feed_read(const sg_fanout_member_t *m) {
  return m->fs && m->fs->q->stream ? m->fs->q->read : -1;
}

void sg_fanout_leave(sg_fanout_member_t *m) {
  sg_fanout_sub_t *fs = m->fs;
  if (fs == NULL) return;
  if (fs->iter_next == m) fs->iter_next = m->next;
  if (m->prev) m->prev->next = m->next;
  else fs->members = m->next;
  if (m->next) m->next->prev = m->prev;
  m->next = m->prev = NULL;
  m->fs = NULL;
  m->ready = 0;
  fs->nmembers--;
  if (fs->nmembers > 0 || fs->iterating) return;
  b_empty(fs);
}

