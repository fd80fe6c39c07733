/* SPDX-License-Identifier: MIT */
/* The shared relay: sessions log in against the broker (or the gateway's
 * own --auth), but their broker work runs under the gateway's credentials
 * on the worker's pooled connections. A session gets a channel of its own
 * only when a frame first needs one, so a session that only reads shared
 * topic subscriptions costs the broker nothing; those subscriptions (auto
 * ack, /topic or /exchange, nothing asking for a queue of its own) join the
 * worker's fan-out. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "log.h"
#include "fanout.h"
#include "metrics.h"
#include "pool.h"
#include "relay_chan.h"
#include "session.h"
#include "stompgate/container.h"
#include "stompgate/err.h"

typedef struct relay_shared relay_shared_t;

/* At most this many vhosts per worker, each with a pool of its own. */
#define MAX_VHOSTS 32

/* What a worker keeps per vhost: its pool of connections and the fan-out
 * of its shared subscriptions. */
typedef struct vhost {
  sg_pool_t pool;
  sg_fanout_t fanout;
} vhost_t;

/* The shared relay's state in one worker. */
typedef struct shared_worker {
  vhost_t main;                  /* --broker's vhost */
  vhost_t *vhosts[MAX_VHOSTS];   /* others, made on first use */
  size_t nvhosts;
  uv_loop_t *loop;
  int id;
} shared_worker_t;

/* A subscription's membership of a shared queue. */
typedef struct member {
  sg_fanout_member_t fm;
  relay_shared_t *x;
  sg_relay_sub_t *sub;
  struct member *next, *prev;
  uint64_t join_no; /* which join of the session it was */
  /* A resumed subscription to a topic with history reads the stream on
   * the session's channel (sub, on ch's consumers) until that read
   * reaches what the worker's live feed has read; from then on it takes
   * the feed's messages after upto, the last offset the read handed up. */
  unsigned catching : 1;
  int64_t upto;
} member_t;

struct relay_shared {
  sg_relay_chan_t ch;
  sg_session_ctx_t *ctx;
  vhost_t *vh;              /* the session's vhost */
  sg_pool_t *pool;          /* its pool */
  sg_auth_req_t *auth;      /* the CONNECT credential check against the broker */
  sg_access_req_t *access;  /* --auth jwt/file: the gateway's own check */
  member_t *members;
  unsigned opening : 1;     /* the channel is being opened; frames wait */
  unsigned in_join : 1;     /* inside sg_fanout_join */
  unsigned join_sync : 1;   /* the join's answer came inside it */
  int join_status;
  char text[320];
};

static relay_shared_t *impl_of(sg_relay_t *r) { return container_of(r, relay_shared_t, ch.base); }

/* ---------- login ---------- */

static void auth_done_cb(void *owner, int status, const char *message) {
  relay_shared_t *x = owner;
  x->auth = NULL;
  if (x->ch.closing) return;
  /* The channel opens when a frame first needs one. */
  x->ch.base.cbs->on_ready_cb(&x->ch.base, status, message, NULL);
}

static void access_done_cb(void *owner, sg_grant_t *grant, const char *why) {
  relay_shared_t *x = owner;
  x->access = NULL;
  if (x->ch.closing) {
    sg_grant_release(grant);
    return;
  }
  if (grant == NULL) x->ch.base.cbs->on_ready_cb(&x->ch.base, SG_RELAY_DENIED, why, NULL);
  else x->ch.base.cbs->on_ready_cb(&x->ch.base, 0, NULL, grant);
}

static const sg_fanout_cbs_t fanout_cbs;

static int vhost_init(vhost_t *v, shared_worker_t *w, const sg_config_t *cfg, const char *vhost) {
  int r = sg_pool_init(&v->pool, w->loop, cfg, w->id, vhost);
  if (r != 0) return r;
  return sg_fanout_init(&v->fanout, &v->pool, &fanout_cbs, w->id);
}

/* The worker's pool and fan-out for vhost, made on first use; NULL when no
 * more can be made. */
static vhost_t *vhost_for(sg_session_ctx_t *ctx, const char *vhost) {
  shared_worker_t *w = ctx->relay_data;
  if (strcmp(vhost, w->main.pool.vhost) == 0) return &w->main;
  for (size_t i = 0; i < w->nvhosts; i++)
    if (strcmp(vhost, w->vhosts[i]->pool.vhost) == 0) return w->vhosts[i];
  if (w->nvhosts == MAX_VHOSTS) return NULL;
  vhost_t *v = calloc(1, sizeof(*v));
  if (v == NULL) return NULL;
  if (vhost_init(v, w, ctx->cfg, vhost) != 0) {
    free(v->pool.vhost);
    free(v);
    return NULL;
  }
  w->vhosts[w->nvhosts++] = v;
  return v;
}

static int sh_login(sg_relay_t *r, const sg_relay_login_t *l, const char **why) {
  relay_shared_t *x = impl_of(r);
  /* Each vhost has its pool of connections in each worker. */
  x->vh = vhost_for(x->ctx, l->vhost);
  if (x->vh == NULL) {
    *why = "this gateway serves no more virtual hosts";
    return 530;
  }
  x->pool = &x->vh->pool;
  int rc;
  if (x->ctx->cfg->auth != SG_AUTH_BROKER)
    /* The gateway checks the credentials itself; the broker work runs
     * under --broker's user. */
    rc = sg_access_check(l->loop, l->login, l->passcode, l->bearer, l->vhost, access_done_cb, x,
                         &x->access);
  else
    rc = sg_auth_check(x->pool, l->user, l->password, l->vhost, auth_done_cb, x, &x->auth);
  if (rc != 0) {
    *why = "cannot check the credentials";
    return rc < 0 ? rc : SG_ERR_INVALID;
  }
  return 0;
}

/* ---------- the session's own channel ---------- */

static void opened(sg_relay_chan_t *ch, int status, const char *message) {
  relay_shared_t *x = container_of(ch, relay_shared_t, ch);
  x->opening = 0;
  if (status != 0) {
    snprintf(x->text, sizeof(x->text), "cannot open a broker channel: %s", message);
    sg_relay_fault_t f = {.kind = SG_RELAY_UNAVAILABLE, .text = x->text};
    sg_relay_chan_fault(ch, &f);
    return;
  }
  ch->base.cbs->on_wake_cb(&ch->base, 0);
}

/* Starts opening the channel: SG_RELAY_WAIT_CHANNEL, or a negative error
 * with *why filled. */
static int open_channel(relay_shared_t *x, sg_relay_fault_t *why) {
  x->opening = 1;
  if (sg_pool_open_channel(x->pool, &x->ch.amqp, &sg_relay_chan_cbs) == 0)
    return SG_RELAY_WAIT_CHANNEL;
  x->opening = 0;
  *why = (sg_relay_fault_t){.kind = SG_RELAY_UNAVAILABLE, .text = "no broker connection"};
  return SG_ERR_INVALID;
}

static int header_true(const sg_stomp_frame_t *f, const char *name) {
  const char *v = sg_stomp_frame_header(f, name, NULL);
  return v && strcmp(v, "true") == 0;
}

/* Whether f needs the session's channel before it can be handled. A
 * SUBSCRIBE is decided by sh_subscribe, which alone knows whether it is
 * shared; BEGIN, ABORT, DISCONNECT and UNSUBSCRIBE (but of a durable
 * subscription, whose queue it deletes) never need it. */
static int needs_channel(const relay_shared_t *x, const sg_stomp_frame_t *f) {
  if (sg_relay_chan_started(&x->ch)) return 0;
  switch (f->cmd) {
  case SG_STOMP_SEND:
  case SG_STOMP_ACK:
  case SG_STOMP_NACK:
  case SG_STOMP_COMMIT:
    return 1;
  case SG_STOMP_UNSUBSCRIBE:
    return header_true(f, "durable") || header_true(f, "persistent");
  default:
    return 0;
  }
}

static int sh_admit(sg_relay_t *r, const sg_stomp_frame_t *f, int behind, sg_relay_fault_t *why) {
  relay_shared_t *x = impl_of(r);
  if (x->ch.blocked && sg_relay_publishes(f)) return SG_RELAY_WAIT_BLOCKED;
  if (x->opening) return SG_RELAY_WAIT_CHANNEL;
  /* While a shared subscription is set up later frames wait, so that a
   * SEND after the SUBSCRIBE reaches it, as with a queue of its own. */
  if (x->ch.joins_done != x->ch.joins_started) return SG_RELAY_WAIT_SETUP;
  if (behind || !needs_channel(x, f)) return SG_RELAY_GO;
  return open_channel(x, why);
}

/* ---------- shared subscriptions ---------- */

/* Whether a subscription can join the worker's fan-out: auto-ack, to
 * /topic, /exchange or a /user/ queue, with nothing that asks for a queue
 * of its own (durable, a name, queue arguments). A user destination's key
 * names one user and holds no wildcard, so a binding on the worker's
 * queue for the user exchange reaches exactly that user's sessions. */
static int shareable(const sg_relay_subreq_t *q) {
  const sg_stomp_frame_t *f = q->f;
  if (f == NULL || !q->no_ack || q->bind_exchange == NULL) return 0;
  if (q->d->kind != SG_DEST_TOPIC && q->d->kind != SG_DEST_EXCHANGE) return 0;
  for (size_t i = 0; i < f->nheaders; i++) {
    const char *n = f->headers[i].name, *v = f->headers[i].value;
    if (strncmp(n, "x-", 2) == 0 || strcmp(n, "auto-delete") == 0 || strcmp(n, "exclusive") == 0)
      return 0;
    if ((strcmp(n, "durable") == 0 || strcmp(n, "persistent") == 0) && strcmp(v, "true") == 0)
      return 0;
  }
  return 1;
}

static void member_leave(member_t *m) {
  relay_shared_t *x = m->x;
  sg_fanout_leave(&m->fm);
  if (m->prev) m->prev->next = m->next;
  else x->members = m->next;
  if (m->next) m->next->prev = m->prev;
  m->sub->impl = NULL;
  free(m);
}

static void fan_ready_cb(sg_fanout_member_t *fm, int status, const char *text) {
  member_t *m = fm->owner;
  relay_shared_t *x = m->x;
  x->ch.joins_done++;
  if (x->in_join) {
    x->join_sync = 1;
    x->join_status = status;
    snprintf(x->text, sizeof(x->text), "%s", text ? text : "");
    return;
  }
  if (x->ch.closing) return;
  if (status != 0) {
    /* The RECEIPT of the SUBSCRIBE that started it carries the ERROR. */
    sg_relay_fault_t f = {.kind = SG_RELAY_LOST, .code = status, .text = text,
                          .blame = SG_RELAY_BLAME_JOIN, .at = m->join_no};
    sg_relay_chan_fault(&x->ch, &f);
    return;
  }
  x->ch.base.cbs->on_progress_cb(&x->ch.base);
  if (!x->ch.closing) x->ch.base.cbs->on_wake_cb(&x->ch.base, 0);
}

/* The catch-up read of m has reached the live feed: the feed's messages
 * after upto go to m from now on, and the read's consumer is cancelled
 * (what it still had in flight is dropped: the feed brings it). */
static void catch_up_done(member_t *m, int64_t upto) {
  relay_shared_t *x = m->x;
  m->catching = 0;
  m->upto = upto;
  if (m->sub->linked) sg_relay_chan_stop(&x->ch.base, m->sub);
  sg_metrics_history_switch();
  sg_log_debug("a resumed subscription caught up at stream offset %lld: the live feed goes on",
               (long long)upto);
}

/* A delivery of a catch-up read (relay_chan.c hands up what this allows):
 * once it has read as far as the live feed, the feed takes over. */
static int history_cb(sg_relay_chan_t *ch, sg_relay_sub_t *sub, int64_t offset) {
  (void)ch;
  member_t *m = sub->impl;
  if (m == NULL) return 1;
  if (!m->catching) return 0;
  int64_t feed = sg_fanout_feed_read(&m->fm);
  if (offset >= 0 && feed >= 0 && offset >= feed) catch_up_done(m, offset);
  return 1; /* the read hands up everything up to upto */
}

static void fan_message_cb(sg_fanout_member_t *fm, sg_fanout_msg_t *msg) {
  member_t *m = fm->owner;
  relay_shared_t *x = m->x;
  if (x->ch.closing) return;
  if (m->catching) {
    /* The read brings this one, unless it has passed it already. */
    if (msg->offset < 0 || m->sub->read < msg->offset) return;
    catch_up_done(m, m->sub->read);
  }
  if (msg->offset >= 0 && msg->offset <= m->upto) return;
  sg_relay_msg_t rm = {msg->d, msg->seq, msg->tail, msg->tail_utf8, m->sub->incomplete};
  m->sub->incomplete = 0;
  x->ch.base.cbs->on_delivery_cb(&x->ch.base, m->sub, &rm);
}

static void fan_lost_cb(sg_fanout_member_t *fm, int code, const char *text) {
  member_t *m = fm->owner;
  sg_relay_fault_t f = {.kind = SG_RELAY_LOST, .code = code, .text = text};
  sg_relay_chan_fault(&m->x->ch, &f);
}

static const sg_fanout_cbs_t fanout_cbs = {fan_ready_cb, fan_message_cb, fan_lost_cb};

static int join(relay_shared_t *x, sg_relay_sub_t *sub, const sg_relay_subreq_t *q,
                sg_relay_fault_t *why) {
  member_t *m = calloc(1, sizeof(*m));
  if (m == NULL) {
    *why = (sg_relay_fault_t){.kind = SG_RELAY_INTERNAL, .text = "cannot join the subscription"};
    return SG_ERR_NOMEM;
  }
  m->upto = -1;
  m->x = x;
  m->sub = sub;
  m->fm.owner = m;
  sub->impl = m;
  sub->no_ack = 1;
  if ((m->next = x->members) != NULL) m->next->prev = m;
  x->members = m;
  m->join_no = ++x->ch.joins_started;
  x->in_join = 1;
  x->join_sync = 0;
  int r = q->history ? sg_fanout_join_history(&x->vh->fanout, q->history->queue, q->bind_key, &m->fm)
                     : sg_fanout_join(&x->vh->fanout, q->bind_exchange, q->bind_key, &m->fm);
  x->in_join = 0;
  if (r == 1) x->ch.joins_done++; /* ready at once */
  if (r < 0 || (x->join_sync && x->join_status != 0)) {
    if (r < 0) {
      x->ch.joins_done++;
      *why = (sg_relay_fault_t){.kind = SG_RELAY_INTERNAL, .text = "cannot join the subscription"};
    } else {
      *why = (sg_relay_fault_t){.kind = SG_RELAY_LOST, .code = x->join_status, .text = x->text};
    }
    member_leave(m);
    return r < 0 ? r : SG_ERR_INVALID;
  }
  /* Ready, or the mark taken now waits for it. */
  return 0;
}

/* A topic with history: the worker's live feed of its stream, and, when
 * the SUBSCRIBE names an offset, a read of the stream from there on the
 * session's channel until it reaches the feed (history_cb). */
static int history_subscribe(relay_shared_t *x, sg_relay_sub_t *sub, const sg_relay_subreq_t *q,
                             sg_relay_fault_t *why) {
  if (q->resume && !sg_relay_chan_started(&x->ch)) {
    int w = open_channel(x, why);
    return w < 0 ? w : SG_ERR_AGAIN;
  }
  int r = join(x, sub, q, why);
  if (r != 0 || !q->resume) return r;
  member_t *m = sub->impl;
  m->catching = 1;
  return sg_relay_chan_subscribe(&x->ch.base, sub, q, why);
}

static int sh_subscribe(sg_relay_t *r, sg_relay_sub_t *sub, const sg_relay_subreq_t *q,
                        sg_relay_fault_t *why) {
  relay_shared_t *x = impl_of(r);
  if (q->history) return history_subscribe(x, sub, q, why);
  if (shareable(q)) return join(x, sub, q, why);
  if (!sg_relay_chan_started(&x->ch)) {
    int w = open_channel(x, why);
    return w < 0 ? w : SG_ERR_AGAIN;
  }
  return sg_relay_chan_subscribe(r, sub, q, why);
}

static int sh_unsubscribe(sg_relay_t *r, sg_relay_sub_t *sub, sg_relay_mark_t *done) {
  if (sub->impl == NULL) return sg_relay_chan_unsubscribe(r, sub, done);
  member_leave(sub->impl);
  /* A catch-up read still under way is cancelled like a consumer. */
  if (sub->linked) return sg_relay_chan_unsubscribe(r, sub, done);
  sub->cancelled = 1;
  *done = (sg_relay_mark_t){0, 0, 0};
  return 0;
}

static void sh_release(sg_relay_t *r, sg_relay_sub_t *sub) {
  if (sub->impl) member_leave(sub->impl);
  sg_relay_chan_release(r, sub);
}

static int sh_close(sg_relay_t *r) {
  relay_shared_t *x = impl_of(r);
  x->ch.closing = 1;
  sg_auth_cancel(x->auth);
  x->auth = NULL;
  sg_access_cancel(x->access);
  x->access = NULL;
  while (x->members) member_leave(x->members);
  x->opening = 0;
  return sg_relay_chan_close(&x->ch);
}

static void sh_free(sg_relay_t *r) {
  relay_shared_t *x = impl_of(r);
  while (x->members) member_leave(x->members);
  sg_relay_chan_free(&x->ch);
  free(x);
}

static const sg_relay_ops_t sh_ops = {
    sh_login,
    sh_admit,
    sg_relay_chan_declare,
    sg_relay_chan_publish,
    sh_subscribe,
    sh_unsubscribe,
    sg_relay_chan_delete_queue,
    sg_relay_chan_ack,
    sg_relay_chan_mark,
    sg_relay_chan_reached,
    sh_release,
    sh_close,
    sh_free,
};

/* A session whose channel held nothing the broker owed it keeps its
 * WebSocket when the channel's connection is lost: its next frame that
 * needs a channel opens one on a live node. */
static int movable(sg_relay_chan_t *ch) {
  (void)ch;
  sg_metrics_session_moved();
  return 1;
}

static sg_relay_t *sh_create(sg_session_ctx_t *ctx, const sg_relay_cbs_t *cbs, void *owner) {
  relay_shared_t *x = malloc(sizeof(*x));
  if (x == NULL) return NULL;
  memset(x, 0, sizeof(*x));
  sg_relay_chan_init(&x->ch, &sh_ops, cbs, owner);
  x->ch.opened = opened;
  x->ch.movable = movable;
  x->ch.history_cb = history_cb;
  x->ch.base.user_dests = ctx->cfg->user_exchange != NULL;
  x->ctx = ctx;
  return &x->ch.base;
}

/* ---------- per worker ---------- */

static int sh_worker_start(sg_session_ctx_t *ctx, uv_loop_t *loop) {
  shared_worker_t *w = calloc(1, sizeof(*w));
  if (w == NULL) return SG_ERR_NOMEM;
  w->loop = loop;
  w->id = ctx->worker;
  int r = vhost_init(&w->main, w, ctx->cfg, NULL);
  if (r != 0) {
    free(w->main.pool.vhost);
    free(w);
    return r;
  }
  ctx->relay_data = w;
  return 0;
}

/* Closes every pooled connection; the worker's loop ends next, so what is
 * left stays as it is (and reachable, for leak checkers). */
static void sh_worker_stop(sg_session_ctx_t *ctx) {
  shared_worker_t *w = ctx->relay_data;
  if (w == NULL) return;
  sg_pool_close(&w->main.pool);
  for (size_t i = 0; i < w->nvhosts; i++) sg_pool_close(&w->vhosts[i]->pool);
}

const sg_relay_type_t sg_relay_shared = {"shared", 1, sh_worker_start, sh_worker_stop, sh_create};
