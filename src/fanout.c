/* SPDX-License-Identifier: MIT */
/* Shared subscriptions. Each shared queue is declared and bound on a
 * short-lived set-up channel, so that a refusal (a missing exchange, no
 * permission) closes only that channel and fails only that join; it is
 * consumed on the worker's long-lived fan-out channel on the same
 * connection (the queue is exclusive to the connection). */
#include "fanout.h"

#include <amqp_framing.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "stompgate/err.h"

/* A shared queue whose last member left is kept this long before it is
 * cancelled: sessions that come and go (page reloads, reconnects) find
 * it ready instead of costing the broker a declare, bind, consume and
 * delete each time. */
#define FANOUT_LINGER_MS 2000

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

enum { CHAN_NONE = 0, CHAN_OPENING, CHAN_OPEN, CHAN_CLOSING };
enum { FS_WAIT_CHANNEL = 0, FS_SETUP, FS_CONSUMING, FS_READY };

struct sg_fanout_sub {
  sg_fanout_t *f;
  sg_fanout_sub_t *key_next, *tag_next, *pend_next;
  char *exchange, *rkey;
  char tag[40];
  char queue[96];
  int state;
  unsigned in_tables : 1, in_pending : 1, setup_active : 1, dead : 1;
  sg_amqp_t setup;      /* declare + bind, then closed */
  uint64_t bind_seq;    /* setup channel: reply that completes the binding */
  uint64_t ready_seq;   /* fan-out channel: consume-ok */
  sg_fanout_member_t *members;
  size_t nmembers;
  int iterating;
  sg_fanout_member_t *iter_next;
  uint64_t delivered;
  uint64_t idle_since;  /* uv_now when its last member left */
};

/* ---------- tables ---------- */

static uint64_t hash_bytes(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

static uint64_t key_hash(const char *exchange, const char *rkey) {
  uint64_t h = hash_bytes(14695981039346656037ull, exchange, strlen(exchange) + 1);
  return hash_bytes(h, rkey, strlen(rkey));
}

static uint64_t tag_hash(const void *tag, size_t len) {
  return hash_bytes(14695981039346656037ull, tag, len);
}

static int table_grow(sg_fanout_table_t *t, int by_tag) {
  size_t nb = t->nbuckets ? t->nbuckets * 2 : 64;
  sg_fanout_sub_t **b = calloc(nb, sizeof(*b));
  if (b == NULL) return SG_ERR_NOMEM;
  for (size_t i = 0; i < t->nbuckets; i++) {
    sg_fanout_sub_t *fs = t->buckets[i];
    while (fs) {
      sg_fanout_sub_t *next = by_tag ? fs->tag_next : fs->key_next;
      uint64_t h = by_tag ? tag_hash(fs->tag, strlen(fs->tag)) : key_hash(fs->exchange, fs->rkey);
      sg_fanout_sub_t **slot = &b[h & (nb - 1)];
      if (by_tag) fs->tag_next = *slot;
      else fs->key_next = *slot;
      *slot = fs;
      fs = next;
    }
  }
  free(t->buckets);
  t->buckets = b;
  t->nbuckets = nb;
  return 0;
}

static int tables_add(sg_fanout_t *f, sg_fanout_sub_t *fs) {
  if ((f->by_key.n + 1 > f->by_key.nbuckets && table_grow(&f->by_key, 0) != 0) ||
      (f->by_tag.n + 1 > f->by_tag.nbuckets && table_grow(&f->by_tag, 1) != 0))
    return SG_ERR_NOMEM;
  sg_fanout_sub_t **k = &f->by_key.buckets[key_hash(fs->exchange, fs->rkey) & (f->by_key.nbuckets - 1)];
  fs->key_next = *k;
  *k = fs;
  f->by_key.n++;
  sg_fanout_sub_t **t = &f->by_tag.buckets[tag_hash(fs->tag, strlen(fs->tag)) & (f->by_tag.nbuckets - 1)];
  fs->tag_next = *t;
  *t = fs;
  f->by_tag.n++;
  fs->in_tables = 1;
  return 0;
}

static void tables_remove(sg_fanout_t *f, sg_fanout_sub_t *fs) {
  if (!fs->in_tables) return;
  fs->in_tables = 0;
  sg_fanout_sub_t **p = &f->by_key.buckets[key_hash(fs->exchange, fs->rkey) & (f->by_key.nbuckets - 1)];
  for (; *p; p = &(*p)->key_next)
    if (*p == fs) {
      *p = fs->key_next;
      f->by_key.n--;
      break;
    }
  p = &f->by_tag.buckets[tag_hash(fs->tag, strlen(fs->tag)) & (f->by_tag.nbuckets - 1)];
  for (; *p; p = &(*p)->tag_next)
    if (*p == fs) {
      *p = fs->tag_next;
      f->by_tag.n--;
      break;
    }
}

static sg_fanout_sub_t *find_key(sg_fanout_t *f, const char *exchange, const char *rkey) {
  if (f->by_key.n == 0) return NULL;
  sg_fanout_sub_t *fs = f->by_key.buckets[key_hash(exchange, rkey) & (f->by_key.nbuckets - 1)];
  for (; fs; fs = fs->key_next)
    if (strcmp(fs->exchange, exchange) == 0 && strcmp(fs->rkey, rkey) == 0) return fs;
  return NULL;
}

static sg_fanout_sub_t *find_tag(sg_fanout_t *f, amqp_bytes_t tag) {
  if (f->by_tag.n == 0) return NULL;
  sg_fanout_sub_t *fs = f->by_tag.buckets[tag_hash(tag.bytes, tag.len) & (f->by_tag.nbuckets - 1)];
  for (; fs; fs = fs->tag_next)
    if (strlen(fs->tag) == tag.len && memcmp(fs->tag, tag.bytes, tag.len) == 0) return fs;
  return NULL;
}

static void pending_remove(sg_fanout_t *f, sg_fanout_sub_t *fs) {
  if (!fs->in_pending) return;
  for (sg_fanout_sub_t **p = &f->pending; *p; p = &(*p)->pend_next)
    if (*p == fs) {
      *p = fs->pend_next;
      break;
    }
  fs->in_pending = 0;
}

/* ---------- shared queue life cycle ---------- */

/* Whether a lost channel went with its whole connection (a node that
 * closed, froze or went away) rather than being closed alone by the
 * broker for something it did. */
static int conn_gone(const sg_amqp_t *a) {
  return a->conn == NULL || a->conn->state != SG_AMQP_OPEN;
}

/* Names a shared queue afresh: after a move the old one may still exist
 * for a while on the node that was lost, exclusive to a dead connection. */
static void fs_name(sg_fanout_sub_t *fs, uint64_t id) {
  snprintf(fs->queue, sizeof(fs->queue), "stompgate.fanout.%d.%" PRIx64 ".%" PRIu64, fs->f->worker,
           (uint64_t)uv_hrtime(), id);
}

static void fs_maybe_free(sg_fanout_sub_t *fs) {
  if (!fs->dead || fs->setup_active || fs->iterating) return;
  free(fs->exchange);
  free(fs->rkey);
  free(fs);
}

static void members_unlink_all(sg_fanout_sub_t *fs, sg_fanout_member_t **out) {
  *out = fs->members;
  for (sg_fanout_member_t *m = fs->members; m; m = m->next) m->fs = NULL;
  fs->members = NULL;
  fs->nmembers = 0;
  fs->iter_next = NULL;
}

/* The shared queue is gone or never came: every member hears, then fs is
 * dropped. */
static void fs_fail(sg_fanout_sub_t *fs, int code, const char *text) {
  sg_fanout_t *f = fs->f;
  if (fs->dead) return;
  fs->dead = 1;
  tables_remove(f, fs);
  pending_remove(f, fs);
  sg_fanout_member_t *m;
  members_unlink_all(fs, &m);
  fs->iterating++; /* members' callbacks must not free fs under us */
  while (m) {
    sg_fanout_member_t *next = m->next;
    int was_ready = m->ready;
    m->next = m->prev = NULL;
    m->ready = 0;
    if (was_ready) f->cbs->on_lost_cb(m, code, text);
    else f->cbs->on_ready_cb(m, code ? code : -1, text);
    m = next;
  }
  fs->iterating--;
  if (fs->setup_active && fs->setup.state != SG_AMQP_CLOSING && fs->setup.state != SG_AMQP_CLOSED)
    sg_amqp_close(&fs->setup);
  fs_maybe_free(fs);
}

/* The last member left: stop consuming; the broker deletes the queue (it
 * is auto-delete). */
static void fs_retire(sg_fanout_sub_t *fs) {
  sg_fanout_t *f = fs->f;
  if (fs->state != FS_READY) return; /* finished when it gets ready */
  tables_remove(f, fs);
  if (f->chan_state == CHAN_OPEN) {
    amqp_basic_cancel_t c = {amqp_cstring_bytes(fs->tag), 0};
    sg_amqp_rpc(&f->chan, AMQP_BASIC_CANCEL_METHOD, &c, AMQP_BASIC_CANCEL_OK_METHOD);
  }
  fs->dead = 1;
  fs_maybe_free(fs);
}

static void linger_cb(uv_timer_t *t);
static void for_each_fs(sg_fanout_t *f, void (*fn)(sg_fanout_sub_t *fs, void *arg), void *arg);

/* A ready queue lost its last member: cancelled after FANOUT_LINGER_MS
 * unless someone joins again. */
static void fs_idle(sg_fanout_sub_t *fs) {
  sg_fanout_t *f = fs->f;
  uv_loop_t *loop = f->pool->loop;
  fs->idle_since = uv_now(loop);
  if (!f->linger_init) {
    if (uv_timer_init(loop, &f->linger) != 0) {
      fs_retire(fs);
      return;
    }
    uv_unref((uv_handle_t *)&f->linger);
    f->linger_init = 1;
  }
  if (!uv_is_active((uv_handle_t *)&f->linger))
    uv_timer_start(&f->linger, linger_cb, FANOUT_LINGER_MS / 2, FANOUT_LINGER_MS / 2);
}

typedef struct {
  uint64_t now;
  size_t lingering; /* queues without members still waiting out the delay */
} linger_sweep_t;

static void linger_one(sg_fanout_sub_t *fs, void *arg) {
  linger_sweep_t *sw = arg;
  if (fs->state != FS_READY || fs->nmembers > 0 || fs->iterating) return;
  if (sw->now - fs->idle_since >= FANOUT_LINGER_MS) fs_retire(fs);
  else sw->lingering++;
}

static void linger_cb(uv_timer_t *t) {
  sg_fanout_t *f = container_of(t, sg_fanout_t, linger);
  linger_sweep_t sw = {uv_now(t->loop), 0};
  for_each_fs(f, linger_one, &sw);
  if (sw.lingering == 0) uv_timer_stop(t);
}

static void fs_ready(sg_fanout_sub_t *fs) {
  sg_fanout_t *f = fs->f;
  fs->state = FS_READY;
  if (fs->nmembers == 0) {
    fs_idle(fs);
    return;
  }
  fs->iterating++;
  for (sg_fanout_member_t *m = fs->members; m; m = fs->iter_next) {
    fs->iter_next = m->next;
    if (m->ready) continue;
    m->ready = 1;
    f->cbs->on_ready_cb(m, 0, NULL);
  }
  fs->iter_next = NULL;
  fs->iterating--;
  if (fs->nmembers == 0 && !fs->dead) fs_idle(fs);
  else fs_maybe_free(fs);
}

/* Set-up channel callbacks. */

static void setup_open_cb(sg_amqp_t *a, int status, const char *message) {
  sg_fanout_sub_t *fs = container_of(a, sg_fanout_sub_t, setup);
  if (status != 0) {
    fs_fail(fs, status, message);
    if (a->state != SG_AMQP_CLOSING && a->state != SG_AMQP_CLOSED) sg_amqp_close(a);
    return;
  }
  amqp_queue_declare_t q;
  memset(&q, 0, sizeof(q));
  q.queue = amqp_cstring_bytes(fs->queue);
  q.exclusive = 1;
  q.auto_delete = 1;
  q.arguments = amqp_empty_table;
  amqp_queue_bind_t b;
  memset(&b, 0, sizeof(b));
  b.queue = amqp_cstring_bytes(fs->queue);
  b.exchange = amqp_cstring_bytes(fs->exchange);
  b.routing_key = amqp_cstring_bytes(fs->rkey);
  b.arguments = amqp_empty_table;
  int64_t r = sg_amqp_rpc(a, AMQP_QUEUE_DECLARE_METHOD, &q, AMQP_QUEUE_DECLARE_OK_METHOD);
  if (r > 0) r = sg_amqp_rpc(a, AMQP_QUEUE_BIND_METHOD, &b, AMQP_QUEUE_BIND_OK_METHOD);
  if (r > 0) fs->bind_seq = (uint64_t)r;
}

static void setup_progress_cb(sg_amqp_t *a) {
  sg_fanout_sub_t *fs = container_of(a, sg_fanout_sub_t, setup);
  if (fs->state != FS_SETUP || a->rpc_done < fs->bind_seq || fs->bind_seq == 0) return;
  sg_fanout_t *f = fs->f;
  sg_amqp_close(a);
  if (fs->dead) return;
  if (f->chan_state != CHAN_OPEN) {
    fs_fail(fs, 0, "Broker connection lost");
    return;
  }
  amqp_basic_consume_t c;
  memset(&c, 0, sizeof(c));
  c.queue = amqp_cstring_bytes(fs->queue);
  c.consumer_tag = amqp_cstring_bytes(fs->tag);
  c.no_ack = 1;
  c.arguments = amqp_empty_table;
  int64_t r = sg_amqp_rpc(&f->chan, AMQP_BASIC_CONSUME_METHOD, &c, AMQP_BASIC_CONSUME_OK_METHOD);
  if (r < 0) return; /* the fan-out channel was lost: its callback failed fs */
  fs->ready_seq = (uint64_t)r;
  fs->state = FS_CONSUMING;
  fs->pend_next = f->pending;
  f->pending = fs;
  fs->in_pending = 1;
}

static void fs_move(sg_fanout_sub_t *fs);

static void setup_lost_cb(sg_amqp_t *a, int code, const char *text) {
  sg_fanout_sub_t *fs = container_of(a, sg_fanout_sub_t, setup);
  /* The whole connection went: the queue is set up again on the next one. */
  if (conn_gone(a)) fs_move(fs);
  else fs_fail(fs, code, text);
  if (a->state != SG_AMQP_CLOSING && a->state != SG_AMQP_CLOSED) sg_amqp_close(a);
}

static void fs_start(sg_fanout_sub_t *fs);

static void setup_closed_cb(sg_amqp_t *a) {
  sg_fanout_sub_t *fs = container_of(a, sg_fanout_sub_t, setup);
  fs->setup_active = 0;
  /* A queue that is moving waited for this channel to be free. */
  if (!fs->dead && fs->state == FS_WAIT_CHANNEL && fs->f->chan_state == CHAN_OPEN) {
    fs_start(fs);
    return;
  }
  fs_maybe_free(fs);
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

static const sg_amqp_cbs_t setup_cbs = {setup_open_cb, ignore_delivery_cb, ignore_confirm_cb,
                                        setup_progress_cb, ignore_cancel_cb, setup_lost_cb,
                                        setup_closed_cb, NULL};

static void fs_start(sg_fanout_sub_t *fs) {
  sg_fanout_t *f = fs->f;
  fs->state = FS_SETUP;
  fs->setup_active = 1;
  int r = sg_amqp_open_on(&fs->setup, f->chan.conn, &setup_cbs);
  if (r != 0) {
    fs->setup_active = 0;
    fs_fail(fs, -1, "cannot open a broker channel");
  }
}

/* ---------- the fan-out channel ---------- */

/* Calls fn for every shared queue; fn may drop the one it is given. */
static void for_each_fs(sg_fanout_t *f, void (*fn)(sg_fanout_sub_t *fs, void *arg), void *arg) {
  for (size_t i = 0; i < f->by_key.nbuckets; i++) {
    sg_fanout_sub_t *fs = f->by_key.buckets[i];
    while (fs) {
      sg_fanout_sub_t *next = fs->key_next;
      fn(fs, arg);
      fs = next;
    }
  }
}

static void start_waiting(sg_fanout_sub_t *fs, void *arg) {
  (void)arg;
  /* A moving queue whose old set-up channel still closes starts from
   * setup_closed_cb. */
  if (fs->state == FS_WAIT_CHANNEL && !fs->setup_active) fs_start(fs);
}

/* The connection under the shared queue was lost: the queue is declared,
 * bound and consumed again on the fan-out's next channel, which the pool
 * opens on a live node. Its members stay joined and hear nothing; what
 * was published meanwhile is not delivered to them, as after a
 * reconnect. A queue with no member left is simply dropped. */
static void fs_move(sg_fanout_sub_t *fs) {
  sg_fanout_t *f = fs->f;
  if (fs->dead || fs->state == FS_WAIT_CHANNEL) return;
  pending_remove(f, fs);
  if (fs->nmembers == 0 && !fs->iterating) {
    tables_remove(f, fs);
    fs->dead = 1;
    if (fs->setup_active && fs->setup.state != SG_AMQP_CLOSING &&
        fs->setup.state != SG_AMQP_CLOSED)
      sg_amqp_close(&fs->setup);
    fs_maybe_free(fs);
    return;
  }
  fs->state = FS_WAIT_CHANNEL;
  fs->bind_seq = fs->ready_seq = 0;
  fs_name(fs, ++f->next_id);
  if (fs->setup_active && fs->setup.state != SG_AMQP_CLOSING && fs->setup.state != SG_AMQP_CLOSED)
    sg_amqp_close(&fs->setup);
  f->moving++;
  sg_metrics_shared_moved();
}

static void move_one(sg_fanout_sub_t *fs, void *arg) {
  (void)arg;
  fs_move(fs);
}

typedef struct {
  int code;
  const char *text;
} fail_arg_t;

static void fail_one(sg_fanout_sub_t *fs, void *arg) {
  fail_arg_t *x = arg;
  fs_fail(fs, x->code, x->text);
}

static void open_channel(sg_fanout_t *f);

static void chan_open_cb(sg_amqp_t *a, int status, const char *message) {
  sg_fanout_t *f = container_of(a, sg_fanout_t, chan);
  if (status != 0) {
    sg_log_warn("worker %d: fan-out channel failed: %s", f->worker, message);
    f->chan_state = CHAN_CLOSING;
    fail_arg_t x = {status, message};
    for_each_fs(f, fail_one, &x);
    sg_amqp_close(a);
    return;
  }
  f->chan_state = CHAN_OPEN;
  if (f->moving > 0) {
    sg_log_info("worker %d: %zu shared subscriptions move to broker %s:%d (%.0f ms after the "
                "loss)",
                f->worker, f->moving, a->conn->host, a->conn->port,
                (double)(uv_hrtime() - f->lost_ns) / 1e6);
    f->moving = 0;
  }
  for_each_fs(f, start_waiting, NULL);
}

static void chan_delivery_cb(sg_amqp_t *a, const sg_amqp_delivery_t *d) {
  sg_fanout_t *f = container_of(a, sg_fanout_t, chan);
  sg_fanout_sub_t *fs = find_tag(f, d->consumer_tag);
  if (fs == NULL || fs->state != FS_READY) return;
  sg_fanout_msg_t msg;
  memset(&msg, 0, sizeof(msg));
  msg.d = d;
  msg.seq = ++fs->delivered;
  msg.tail_utf8[0] = msg.tail_utf8[1] = msg.tail_utf8[2] = -1;
  f->deliveries++;
  fs->iterating++;
  for (sg_fanout_member_t *m = fs->members; m; m = fs->iter_next) {
    fs->iter_next = m->next;
    if (!m->ready) continue;
    f->writes++;
    f->cbs->on_message_cb(m, &msg);
  }
  fs->iter_next = NULL;
  fs->iterating--;
  for (int v = 0; v < 3; v++) sg_buf_free(&msg.tail[v]);
  if (fs->nmembers == 0 && !fs->dead) fs_idle(fs);
  else fs_maybe_free(fs);
}

static void chan_progress_cb(sg_amqp_t *a) {
  sg_fanout_t *f = container_of(a, sg_fanout_t, chan);
  sg_fanout_sub_t **p = &f->pending;
  while (*p) {
    sg_fanout_sub_t *fs = *p;
    if (a->rpc_done >= fs->ready_seq) {
      *p = fs->pend_next;
      fs->in_pending = 0;
      fs_ready(fs);
      p = &f->pending; /* callbacks may have changed the list */
    } else {
      p = &fs->pend_next;
    }
  }
}

static void chan_cancel_cb(sg_amqp_t *a, amqp_bytes_t tag) {
  sg_fanout_t *f = container_of(a, sg_fanout_t, chan);
  sg_fanout_sub_t *fs = find_tag(f, tag);
  if (fs) fs_fail(fs, 0, "the broker cancelled the subscription (its queue was deleted)");
}

static void chan_lost_cb(sg_amqp_t *a, int code, const char *text) {
  sg_fanout_t *f = container_of(a, sg_fanout_t, chan);
  f->chan_state = CHAN_CLOSING;
  if (conn_gone(a) && !f->pool->closing) {
    /* The node or the link went: the shared queues move to the next
     * channel (chan_closed_cb opens it), keeping their members. */
    sg_log_warn("worker %d: fan-out connection to %s:%d lost (%s); moving %zu shared "
                "subscriptions to a live node",
                f->worker, a->conn ? a->conn->host : "?", a->conn ? a->conn->port : 0, text,
                f->by_key.n);
    f->lost_ns = uv_hrtime();
    for_each_fs(f, move_one, NULL);
    f->pending = NULL;
    sg_amqp_close(a);
    return;
  }
  sg_log_warn("worker %d: fan-out channel lost: %d %s", f->worker, code, text);
  f->pending = NULL;
  fail_arg_t x = {code, text};
  for_each_fs(f, fail_one, &x);
  sg_amqp_close(a);
}

static void chan_closed_cb(sg_amqp_t *a) {
  sg_fanout_t *f = container_of(a, sg_fanout_t, chan);
  f->chan_state = CHAN_NONE;
  /* Joins that came while it closed wait for a new channel. */
  if (f->by_key.n > 0) open_channel(f);
}

static const sg_amqp_cbs_t chan_cbs = {chan_open_cb, chan_delivery_cb, ignore_confirm_cb,
                                       chan_progress_cb, chan_cancel_cb, chan_lost_cb,
                                       chan_closed_cb, NULL};

static void open_channel(sg_fanout_t *f) {
  f->chan_state = CHAN_OPENING;
  int r = sg_pool_open_consumer_channel(f->pool, &f->chan, &chan_cbs);
  if (r != 0) {
    f->chan_state = CHAN_NONE;
    fail_arg_t x = {-1, "no broker connection"};
    for_each_fs(f, fail_one, &x);
  }
}

/* ---------- API ---------- */

void sg_fanout_init(sg_fanout_t *f, sg_pool_t *pool, const sg_fanout_cbs_t *cbs, int worker) {
  memset(f, 0, sizeof(*f));
  f->pool = pool;
  f->cbs = cbs;
  f->worker = worker;
}

static void member_link(sg_fanout_sub_t *fs, sg_fanout_member_t *m) {
  m->fs = fs;
  m->prev = NULL;
  m->next = fs->members;
  if (fs->members) fs->members->prev = m;
  fs->members = m;
  fs->nmembers++;
}

int sg_fanout_join(sg_fanout_t *f, const char *exchange, const char *key, sg_fanout_member_t *m) {
  m->ready = 0;
  sg_fanout_sub_t *fs = find_key(f, exchange, key);
  if (fs != NULL) {
    member_link(fs, m);
    if (fs->state == FS_READY) {
      m->ready = 1;
      return 1;
    }
    return 0;
  }
  fs = calloc(1, sizeof(*fs));
  if (fs == NULL) return SG_ERR_NOMEM;
  fs->f = f;
  fs->exchange = strdup(exchange);
  fs->rkey = strdup(key);
  uint64_t id = ++f->next_id;
  snprintf(fs->tag, sizeof(fs->tag), "fanout-%d-%" PRIu64, f->worker, id);
  fs_name(fs, id);
  if (fs->exchange == NULL || fs->rkey == NULL || tables_add(f, fs) != 0) {
    free(fs->exchange);
    free(fs->rkey);
    free(fs);
    return SG_ERR_NOMEM;
  }
  member_link(fs, m);
  fs->state = FS_WAIT_CHANNEL;
  /* A failure from here on reaches m through on_ready_cb. */
  if (f->chan_state == CHAN_OPEN) fs_start(fs);
  else if (f->chan_state == CHAN_NONE) open_channel(f);
  return 0;
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
  if (fs->state == FS_READY) {
    fs_idle(fs);
  } else if (fs->state == FS_WAIT_CHANNEL) {
    tables_remove(fs->f, fs);
    fs->dead = 1;
    fs_maybe_free(fs);
  }
  /* Set-up in flight: fs_ready retires it once it is consumed. */
}

size_t sg_fanout_queues(const sg_fanout_t *f) { return f->by_key.n; }
