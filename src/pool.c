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

static void pool_serve_waiting(sg_pool_t *p);

static void pool_remove(sg_pool_t *p, sg_amqp_conn_t *c) {
  for (size_t i = 0; i < p->nconns; i++)
    if (p->conns[i] == c) {
      p->conns[i] = p->conns[--p->nconns];
      return;
    }
}

static void fail_waiting(sg_pool_t *p, int status, const char *message) {
  while (p->waiting) {
    sg_amqp_t *a = p->waiting;
    p->waiting = a->wait_next;
    if (p->waiting) p->waiting->wait_pprev = &p->waiting;
    a->wait_next = NULL;
    a->wait_pprev = NULL;
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
    fail_waiting(p, status, message);
    return;
  }
  sg_log_info("worker %d: broker connection %s open", p->worker, c->name);
  pool_serve_waiting(p);
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

static int pool_grow(sg_pool_t *p) {
  if (p->nconns == SG_POOL_MAX_CONNS) return UV_EBUSY;
  sg_amqp_conn_t *c = calloc(1, sizeof(*c));
  if (c == NULL) return SG_ERR_NOMEM;
  const sg_broker_addr_t *b = &p->cfg->broker;
  char name[96];
  snprintf(name, sizeof(name), "stompgate worker %d pool %llu", p->worker,
           (unsigned long long)++p->conns_opened);
  int r = sg_amqp_conn_open(c, p->loop, &conn_cbs, b->host, b->port, b->user, b->password,
                            b->vhost, name);
  if (r) {
    free(c);
    return r;
  }
  c->data = p;
  p->conns[p->nconns++] = c;
  return 0;
}

/* The open connection with the most room below the per-connection cap. */
static sg_amqp_conn_t *pool_pick(sg_pool_t *p) {
  sg_amqp_conn_t *best = NULL;
  for (size_t i = 0; i < p->nconns; i++) {
    sg_amqp_conn_t *c = p->conns[i];
    if (c->state != SG_AMQP_OPEN || sg_amqp_conn_room(c) == 0) continue;
    if (c->nchans >= POOL_CHANNELS_PER_CONN) continue;
    if (best == NULL || c->nchans < best->nchans) best = c;
  }
  return best;
}

static int pool_logging_in(const sg_pool_t *p) {
  for (size_t i = 0; i < p->nconns; i++)
    if (p->conns[i]->state == SG_AMQP_LOGIN) return 1;
  return 0;
}

static void pool_serve_waiting(sg_pool_t *p) {
  while (p->waiting) {
    sg_amqp_conn_t *c = pool_pick(p);
    if (c == NULL) {
      if (!pool_logging_in(p) && pool_grow(p) != 0) fail_waiting(p, -1, "no broker connection");
      return;
    }
    sg_amqp_t *a = p->waiting;
    p->waiting = a->wait_next;
    if (p->waiting) p->waiting->wait_pprev = &p->waiting;
    a->wait_next = NULL;
    a->wait_pprev = NULL;
    const sg_amqp_cbs_t *cbs = a->cbs;
    if (sg_amqp_open_on(a, c, cbs) != 0) {
      a->state = SG_AMQP_DEAD;
      cbs->on_open_cb(a, -1, "cannot open a channel");
    }
  }
}

int sg_pool_open_channel(sg_pool_t *p, sg_amqp_t *a, const sg_amqp_cbs_t *cbs) {
  if (p->closing) return UV_ECANCELED;
  sg_amqp_conn_t *c = pool_pick(p);
  if (c != NULL) return sg_amqp_open_on(a, c, cbs);
  /* Wait, in order, for a connection to open. */
  void *data = a->data;
  memset(a, 0, sizeof(*a));
  a->data = data;
  a->cbs = cbs;
  a->state = SG_AMQP_LOGIN;
  sg_amqp_t **tail = &p->waiting;
  while (*tail) tail = &(*tail)->wait_next;
  *tail = a;
  a->wait_pprev = tail;
  if (!pool_logging_in(p)) {
    int r = pool_grow(p);
    if (r) {
      *a->wait_pprev = NULL;
      a->wait_pprev = NULL;
      a->state = SG_AMQP_IDLE;
      return r;
    }
  }
  return 0;
}

int sg_pool_init(sg_pool_t *p, uv_loop_t *loop, const sg_config_t *cfg, int worker) {
  memset(p, 0, sizeof(*p));
  p->loop = loop;
  p->cfg = cfg;
  p->worker = worker;
  return sg_amqp_loop_init(loop);
}

/* ---------- credential checks ---------- */

struct sg_auth_entry {
  char *user, *vhost;
  unsigned char hash[32];
  int status;
  char message[256];
  uint64_t expires;
};

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

static sg_auth_entry_t *auth_find(sg_pool_t *p, const char *user, const char *vhost,
                                  uint64_t now) {
  for (size_t i = 0; i < p->nauth; i++) {
    sg_auth_entry_t *e = &p->auth[i];
    if (e->expires > now && strcmp(e->user, user) == 0 && strcmp(e->vhost, vhost) == 0) return e;
  }
  return NULL;
}

static void auth_remember(sg_pool_t *p, const sg_auth_req_t *q, uint64_t now) {
  uint64_t ttl = q->status == 0 ? p->cfg->auth_cache_ttl_ms
                                : (p->cfg->auth_cache_ttl_ms < AUTH_DENY_TTL_MS
                                       ? p->cfg->auth_cache_ttl_ms
                                       : AUTH_DENY_TTL_MS);
  /* Only answers from the broker are remembered, not failures to reach it. */
  if (ttl == 0 || (q->status != 0 && q->status != 403 && q->status != 530)) return;
  /* Drop expired entries, and a stale answer for the same user. */
  for (size_t i = 0; i < p->nauth;) {
    sg_auth_entry_t *e = &p->auth[i];
    if (e->expires <= now ||
        (strcmp(e->user, q->user) == 0 && strcmp(e->vhost, q->vhost) == 0)) {
      free(e->user);
      free(e->vhost);
      *e = p->auth[--p->nauth];
    } else {
      i++;
    }
  }
  if (p->nauth == AUTH_CACHE_MAX) return;
  if (p->auth == NULL) {
    p->auth = calloc(AUTH_CACHE_MAX, sizeof(*p->auth));
    if (p->auth == NULL) return;
  }
  sg_auth_entry_t *e = &p->auth[p->nauth];
  e->user = strdup(q->user);
  e->vhost = strdup(q->vhost);
  if (e->user == NULL || e->vhost == NULL) {
    free(e->user);
    free(e->vhost);
    return;
  }
  memcpy(e->hash, q->hash, 32);
  e->status = q->status;
  snprintf(e->message, sizeof(e->message), "%s", q->message);
  e->expires = now + ttl;
  p->nauth++;
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
                             sizeof(q->message));
  if (conn) {
    amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn);
  }
}

static void auth_done_cb(uv_work_t *w, int status) {
  sg_auth_req_t *q = w->data;
  if (status == UV_ECANCELED) q->status = -1;
  auth_remember(q->pool, q, uv_now(q->pool->loop));
  if (q->owner) q->cb(q->owner, q->status, q->message);
  auth_free(q);
}

int sg_auth_check(sg_pool_t *p, const char *user, const char *password, const char *vhost,
                  sg_auth_cb done_cb, void *owner, sg_auth_req_t **req) {
  unsigned char hash[32];
  *req = NULL;
  password_hash(password, hash);
  sg_auth_entry_t *e = auth_find(p, user, vhost, uv_now(p->loop));
  if (e && memcmp(e->hash, hash, 32) == 0) {
    done_cb(owner, e->status, e->message);
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
  fail_waiting(p, -1, "the gateway is stopping");
  while (p->nconns) {
    sg_amqp_conn_t *c = p->conns[--p->nconns];
    sg_amqp_conn_close(c);
  }
  for (size_t i = 0; i < p->nauth; i++) {
    free(p->auth[i].user);
    free(p->auth[i].vhost);
  }
  free(p->auth);
  p->auth = NULL;
  p->nauth = 0;
}
