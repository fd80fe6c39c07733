/* SPDX-License-Identifier: MIT */
#include "pool.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "stompgate/err.h"

/* Channels per pooled connection before another one is opened: spreads
 * sessions over a few sockets instead of filling one to channel_max. */
#define POOL_CHANNELS_PER_CONN 1000
#define AUTH_CACHE_MAX 4096
#define AUTH_DENY_TTL_MS 5000

/* ---------- connections ---------- */

enum { KIND_PUBLISH = 0, KIND_CONSUME = 1 };

static void pool_serve_waiting(sg_pool_t *p, int kind);

static sg_amqp_t **waiting_list(sg_pool_t *p, int kind) {
  return kind == KIND_CONSUME ? &p->waiting_consumers : &p->waiting;
}

static void pool_remove(sg_pool_t *p, sg_amqp_conn_t *c) {
  for (size_t i = 0; i < p->nconns; i++)
    if (p->conns[i] == c) {
      p->conns[i] = p->conns[--p->nconns];
      return;
    }
}

static sg_amqp_t *waiting_pop(sg_amqp_t **list) {
  sg_amqp_t *a = *list;
  *list = a->wait_next;
  if (*list) (*list)->wait_pprev = list;
  a->wait_next = NULL;
  a->wait_pprev = NULL;
  return a;
}

static void fail_waiting(sg_pool_t *p, int kind, int status, const char *message) {
  sg_amqp_t **list = waiting_list(p, kind);
  while (*list) {
    sg_amqp_t *a = waiting_pop(list);
    a->state = SG_AMQP_DEAD;
    a->cbs->on_open_cb(a, status, message);
  }
}

static void conn_open_cb(sg_amqp_conn_t *c, int status, const char *message) {
  sg_pool_t *p = c->data;
  if (status != 0) {
    sg_log_warn("worker %d: broker connection failed: %s", p->worker, message);
    pool_remove(p, c);
    sg_amqp_conn_close(c);
    fail_waiting(p, c->kind, status, message);
    return;
  }
  sg_log_info("worker %d: broker connection %s open", p->worker, c->name);
  pool_serve_waiting(p, c->kind);
}

static void conn_lost_cb(sg_amqp_conn_t *c, int code, const char *text) {
  sg_pool_t *p = c->data;
  sg_log_warn("worker %d: broker connection %s lost (%d %s)", p->worker, c->name, code, text);
  pool_remove(p, c);
  sg_amqp_conn_close(c);
}

static void conn_closed_cb(sg_amqp_conn_t *c) {
  sg_pool_t *p = c->data;
  pool_remove(p, c);
  free(c);
}

static const sg_amqp_conn_cbs_t conn_cbs = {conn_open_cb, conn_lost_cb, conn_closed_cb};

static int pool_grow(sg_pool_t *p, int kind) {
  if (p->nconns == SG_POOL_MAX_CONNS) return UV_EBUSY;
  sg_amqp_conn_t *c = calloc(1, sizeof(*c));
  if (c == NULL) return SG_ERR_NOMEM;
  const sg_broker_addr_t *b = &p->cfg->broker;
  char name[96];
  snprintf(name, sizeof(name), "stompgate worker %d %s %llu", p->worker,
           kind == KIND_CONSUME ? "fan-out" : "pool", (unsigned long long)++p->conns_opened);
  int r = sg_amqp_conn_open(c, p->loop, &conn_cbs, b->host, b->port, b->user, b->password,
                            p->vhost, name);
  if (r) {
    free(c);
    return r;
  }
  c->data = p;
  c->kind = kind;
  p->conns[p->nconns++] = c;
  return 0;
}

/* The open connection of that kind with the most room below the
 * per-connection cap. A connection the broker blocked takes no new
 * channels: they could not even open until it is unblocked. */
static sg_amqp_conn_t *pool_pick(sg_pool_t *p, int kind) {
  sg_amqp_conn_t *best = NULL;
  for (size_t i = 0; i < p->nconns; i++) {
    sg_amqp_conn_t *c = p->conns[i];
    if (c->kind != kind || c->state != SG_AMQP_OPEN || c->blocked) continue;
    if (sg_amqp_conn_room(c) == 0 || c->nchans >= POOL_CHANNELS_PER_CONN) continue;
    if (best == NULL || c->nchans < best->nchans) best = c;
  }
  return best;
}

static int pool_logging_in(const sg_pool_t *p, int kind) {
  for (size_t i = 0; i < p->nconns; i++)
    if (p->conns[i]->kind == kind && p->conns[i]->state == SG_AMQP_LOGIN) return 1;
  return 0;
}

static void pool_serve_waiting(sg_pool_t *p, int kind) {
  sg_amqp_t **list = waiting_list(p, kind);
  while (*list) {
    sg_amqp_conn_t *c = pool_pick(p, kind);
    if (c == NULL) {
      if (!pool_logging_in(p, kind) && pool_grow(p, kind) != 0)
        fail_waiting(p, kind, -1, "no broker connection");
      return;
    }
    sg_amqp_t *a = waiting_pop(list);
    const sg_amqp_cbs_t *cbs = a->cbs;
    if (sg_amqp_open_on(a, c, cbs) != 0) {
      a->state = SG_AMQP_DEAD;
      cbs->on_open_cb(a, -1, "cannot open a channel");
    }
  }
}

static int pool_open(sg_pool_t *p, sg_amqp_t *a, const sg_amqp_cbs_t *cbs, int kind) {
  if (p->closing) return UV_ECANCELED;
  sg_amqp_conn_t *c = pool_pick(p, kind);
  if (c != NULL) return sg_amqp_open_on(a, c, cbs);
  /* Wait, in order, for a connection to open. */
  void *data = a->data;
  memset(a, 0, sizeof(*a));
  a->data = data;
  a->cbs = cbs;
  a->state = SG_AMQP_LOGIN;
  sg_amqp_t **tail = waiting_list(p, kind);
  while (*tail) tail = &(*tail)->wait_next;
  *tail = a;
  a->wait_pprev = tail;
  if (!pool_logging_in(p, kind)) {
    int r = pool_grow(p, kind);
    if (r) {
      *a->wait_pprev = NULL;
      a->wait_pprev = NULL;
      a->state = SG_AMQP_IDLE;
      return r;
    }
  }
  return 0;
}

int sg_pool_open_channel(sg_pool_t *p, sg_amqp_t *a, const sg_amqp_cbs_t *cbs) {
  return pool_open(p, a, cbs, KIND_PUBLISH);
}

int sg_pool_open_consumer_channel(sg_pool_t *p, sg_amqp_t *a, const sg_amqp_cbs_t *cbs) {
  return pool_open(p, a, cbs, KIND_CONSUME);
}

int sg_pool_init(sg_pool_t *p, uv_loop_t *loop, const sg_config_t *cfg, int worker,
                 const char *vhost) {
  memset(p, 0, sizeof(*p));
  p->loop = loop;
  p->cfg = cfg;
  p->worker = worker;
  p->vhost = strdup(vhost ? vhost : cfg->broker.vhost);
  return p->vhost ? 0 : SG_ERR_NOMEM;
}

/* ---------- credential checks ---------- */

typedef struct sg_auth_entry {
  char *user, *vhost;
  unsigned char hash[32];
  int status;
  char message[256];
  uint64_t expires;
} sg_auth_entry_t;

struct sg_auth_req {
  uv_work_t work;
  sg_pool_t *pool;
  const sg_broker_addr_t *broker;
  char *user, *password, *vhost;
  unsigned char hash[32];
  int status;
  char message[256];
  sg_auth_cb cb;
  void *owner; /* NULL once cancelled */
};

/* The answers are shared by all workers (a session lands on any of them);
 * CONNECT is not the hot path, so a lock is fine here. */
static uv_once_t auth_once = UV_ONCE_INIT;
static uv_mutex_t auth_lock;
static sg_auth_entry_t *auth_cache;
static size_t auth_n;

static void auth_lock_init(void) {
  if (uv_mutex_init(&auth_lock) != 0) abort();
}

/* Passwords are remembered only as salted SHA-256, with a salt per run. */
static void password_hash(const char *password, unsigned char out[32]) {
  static unsigned char salt[16];
  static int salted;
  if (!salted) {
    if (RAND_bytes(salt, sizeof(salt)) != 1) memset(salt, 0x5a, sizeof(salt));
    salted = 1;
  }
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  unsigned int n = 0;
  if (ctx == NULL || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) ||
      !EVP_DigestUpdate(ctx, salt, sizeof(salt)) ||
      !EVP_DigestUpdate(ctx, password, strlen(password)) || !EVP_DigestFinal_ex(ctx, out, &n))
    memset(out, 0, 32);
  EVP_MD_CTX_free(ctx);
}

/* Answers are kept per user, vhost and password: a wrong password never
 * displaces the answer for the right one. */
static int auth_same(const sg_auth_entry_t *e, const char *user, const char *vhost,
                     const unsigned char hash[32]) {
  return strcmp(e->user, user) == 0 && strcmp(e->vhost, vhost) == 0 &&
         memcmp(e->hash, hash, 32) == 0;
}

/* Copies a remembered answer into *status and message. 1 when found. */
static int auth_find(const char *user, const char *vhost, const unsigned char hash[32],
                     uint64_t now, int *status, char *message, size_t cap) {
  int found = 0;
  uv_mutex_lock(&auth_lock);
  for (size_t i = 0; i < auth_n && !found; i++) {
    sg_auth_entry_t *e = &auth_cache[i];
    if (e->expires > now && auth_same(e, user, vhost, hash)) {
      *status = e->status;
      snprintf(message, cap, "%s", e->message);
      found = 1;
    }
  }
  uv_mutex_unlock(&auth_lock);
  return found;
}

static void auth_remember(sg_pool_t *p, const sg_auth_req_t *q, uint64_t now) {
  uint64_t ttl = q->status == 0 ? p->cfg->auth_cache_ttl_ms
                                : (p->cfg->auth_cache_ttl_ms < AUTH_DENY_TTL_MS
                                       ? p->cfg->auth_cache_ttl_ms
                                       : AUTH_DENY_TTL_MS);
  /* Only answers from the broker are remembered, not failures to reach it. */
  if (ttl == 0 || (q->status != 0 && q->status != 403 && q->status != 530)) return;
  uv_mutex_lock(&auth_lock);
  /* Drop expired entries, and an older answer for the same password. */
  for (size_t i = 0; i < auth_n;) {
    sg_auth_entry_t *e = &auth_cache[i];
    if (e->expires <= now || auth_same(e, q->user, q->vhost, q->hash)) {
      free(e->user);
      free(e->vhost);
      *e = auth_cache[--auth_n];
    } else {
      i++;
    }
  }
  if (auth_n == AUTH_CACHE_MAX) goto out;
  if (auth_cache == NULL) {
    auth_cache = calloc(AUTH_CACHE_MAX, sizeof(*auth_cache));
    if (auth_cache == NULL) goto out;
  }
  sg_auth_entry_t *e = &auth_cache[auth_n];
  e->user = strdup(q->user);
  e->vhost = strdup(q->vhost);
  if (e->user == NULL || e->vhost == NULL) {
    free(e->user);
    free(e->vhost);
    goto out;
  }
  memcpy(e->hash, q->hash, 32);
  e->status = q->status;
  snprintf(e->message, sizeof(e->message), "%s", q->message);
  e->expires = now + ttl;
  auth_n++;
out:
  uv_mutex_unlock(&auth_lock);
}

static void auth_free(sg_auth_req_t *q) {
  free(q->user);
  if (q->password) OPENSSL_cleanse(q->password, strlen(q->password));
  free(q->password);
  free(q->vhost);
  free(q);
}

static void auth_work_cb(uv_work_t *w) {
  sg_auth_req_t *q = w->data;
  const sg_broker_addr_t *b = q->broker;
  amqp_connection_state_t conn =
      sg_amqp_login_blocking(b->host, b->port, q->user, q->password, q->vhost,
                             "stompgate credential check", &q->status, q->message,
                             sizeof(q->message), NULL);
  if (conn) {
    amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn);
  }
}

static void auth_done_cb(uv_work_t *w, int status) {
  sg_auth_req_t *q = w->data;
  if (status == UV_ECANCELED) q->status = -1;
  auth_remember(q->pool, q, uv_hrtime() / 1000000);
  if (q->owner) q->cb(q->owner, q->status, q->message);
  auth_free(q);
}

int sg_auth_check(sg_pool_t *p, const char *user, const char *password, const char *vhost,
                  sg_auth_cb done_cb, void *owner, sg_auth_req_t **req) {
  unsigned char hash[32];
  int status;
  char message[256];
  *req = NULL;
  uv_once(&auth_once, auth_lock_init);
  password_hash(password, hash);
  if (auth_find(user, vhost, hash, uv_hrtime() / 1000000, &status, message, sizeof(message))) {
    done_cb(owner, status, message);
    return 0;
  }
  sg_auth_req_t *q = calloc(1, sizeof(*q));
  if (q == NULL) return SG_ERR_NOMEM;
  q->pool = p;
  q->broker = &p->cfg->broker;
  q->user = strdup(user);
  q->password = strdup(password);
  q->vhost = strdup(vhost);
  memcpy(q->hash, hash, 32);
  q->cb = done_cb;
  q->owner = owner;
  q->work.data = q;
  if (!q->user || !q->password || !q->vhost) {
    auth_free(q);
    return SG_ERR_NOMEM;
  }
  (void)uv_queue_work(p->loop, &q->work, auth_work_cb, auth_done_cb);
  *req = q;
  return 0;
}

void sg_auth_cancel(sg_auth_req_t *req) {
  if (req) req->owner = NULL;
}

void sg_pool_close(sg_pool_t *p) {
  p->closing = 1;
  fail_waiting(p, KIND_PUBLISH, -1, "the gateway is stopping");
  fail_waiting(p, KIND_CONSUME, -1, "the gateway is stopping");
  while (p->nconns) {
    sg_amqp_conn_t *c = p->conns[--p->nconns];
    sg_amqp_conn_close(c);
  }
}
