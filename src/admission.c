/* SPDX-License-Identifier: MIT */
#include "admission.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include <strings.h>

/* Set by the main thread, read by every worker. */
static atomic_int draining;
/* The rate bucket is shared by the workers; taking it is once per upgrade,
 * not on the hot path, so a lock is fine. */
static uv_mutex_t rate_lock;
static uv_once_t rate_once = UV_ONCE_INIT;
static double tokens = -1; /* -1: bucket not filled yet */
static uint64_t last_ms;

static void rate_lock_init(void) {
  if (uv_mutex_init(&rate_lock) != 0) abort();
}

void sg_admit_set_draining(int d) { draining = d; }
int sg_admit_draining(void) { return draining; }

static int origin_allowed(const sg_config_t *cfg, const sg_http_slice_t *o) {
  const sg_strlist_t *l = &cfg->allowed_origins;
  if (l->n == 0) return 1;
  /* Browsers always send Origin on a WebSocket upgrade; a client that does
   * not is not a browser page, and the check protects browser users only. */
  if (o->p == NULL) return 1;
  for (size_t i = 0; i < l->n; i++) {
    const char *a = l->v[i];
    if (a[0] == '*' && a[1] == '\0') return 1;
    /* Scheme and host compare case-insensitively (RFC 6454). */
    if (strlen(a) == o->len && strncasecmp(a, o->p, o->len) == 0) return 1;
  }
  return 0;
}

static int rate_take(const sg_config_t *cfg, uint64_t now) {
  double cap = (double)cfg->session_burst;
  if (tokens < 0) {
    tokens = cap;
  } else {
    tokens += (double)(now - last_ms) * (double)cfg->session_rate / 1000.0;
    if (tokens > cap) tokens = cap;
  }
  last_ms = now;
  if (tokens < 1) return 0;
  tokens -= 1;
  return 1;
}

/* Per client address: a bucket of session-rate-per-address tokens per
 * address, in a fixed table. An address looks in a few slots from its
 * hash and, when none is its own, takes the one idle longest; a bucket
 * idle for a second is full again, so that loses nothing unless more
 * addresses than the table holds open sessions within a second. */
#define ADDR_SLOTS 4096
#define ADDR_PROBE 8
typedef struct addr_bucket {
  char host[48];
  double tokens;
  uint64_t last_ms;
} addr_bucket_t;
static addr_bucket_t *addr_table;

/* The address part of "host:port". */
static size_t host_len(const char *peer) {
  const char *c = strrchr(peer, ':');
  return c ? (size_t)(c - peer) : strlen(peer);
}

static int addr_take(const sg_config_t *cfg, const char *peer, uint64_t now) {
  if (addr_table == NULL && (addr_table = calloc(ADDR_SLOTS, sizeof(*addr_table))) == NULL)
    return 1;
  size_t n = host_len(peer);
  if (n >= sizeof(addr_table->host)) n = sizeof(addr_table->host) - 1;
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)peer[i]) * 16777619u;
  addr_bucket_t *b = NULL, *oldest = NULL;
  for (size_t i = 0; i < ADDR_PROBE && b == NULL; i++) {
    addr_bucket_t *e = &addr_table[(h + i) % ADDR_SLOTS];
    if (strlen(e->host) == n && memcmp(e->host, peer, n) == 0) b = e;
    else if (oldest == NULL || e->last_ms < oldest->last_ms) oldest = e;
  }
  double cap = (double)cfg->session_rate_per_address;
  if (b == NULL) {
    b = oldest;
    memcpy(b->host, peer, n);
    b->host[n] = '\0';
    b->tokens = cap;
    b->last_ms = now;
  } else {
    /* Workers' clocks are read at different moments: never backwards. */
    if (now > b->last_ms) b->tokens += (double)(now - b->last_ms) * cap / 1000.0;
    if (b->tokens > cap) b->tokens = cap;
  }
  if (now > b->last_ms) b->last_ms = now;
  if (b->tokens < 1) return 0;
  b->tokens -= 1;
  return 1;
}

static int addr_ok(const sg_config_t *cfg, const char *peer, uint64_t now) {
  if (cfg->session_rate_per_address == 0 || peer == NULL) return 1;
  uv_once(&rate_once, rate_lock_init);
  uv_mutex_lock(&rate_lock);
  int ok = addr_take(cfg, peer, now);
  uv_mutex_unlock(&rate_lock);
  return ok;
}

static int rate_ok(const sg_config_t *cfg, uint64_t now) {
  if (cfg->session_rate == 0) return 1;
  uv_once(&rate_once, rate_lock_init);
  uv_mutex_lock(&rate_lock);
  int ok = rate_take(cfg, now);
  uv_mutex_unlock(&rate_lock);
  return ok;
}

int sg_admit(const sg_config_t *cfg, const sg_http_request_t *req, const char *peer,
             size_t open, uint64_t now_ms, sg_admit_refusal_t *out) {
  if (draining) {
    *out = (sg_admit_refusal_t){503, "Service Unavailable: shutting down", "Retry-After: 1\r\n"};
    return 1;
  }
  if (!origin_allowed(cfg, &req->origin)) {
    *out = (sg_admit_refusal_t){403, "Forbidden: Origin not allowed", NULL};
    return 1;
  }
  if (cfg->max_sessions && open >= cfg->max_sessions) {
    *out = (sg_admit_refusal_t){503, "Service Unavailable: session limit reached",
                                "Retry-After: 1\r\n"};
    return 1;
  }
  /* Before the process-wide bucket, so one busy address does not spend
   * everybody's tokens. */
  if (!addr_ok(cfg, peer, now_ms)) {
    *out = (sg_admit_refusal_t){429, "Too Many Requests: session rate limit for this address",
                                "Retry-After: 1\r\n"};
    return 1;
  }
  if (!rate_ok(cfg, now_ms)) {
    *out = (sg_admit_refusal_t){429, "Too Many Requests: session rate limit", "Retry-After: 1\r\n"};
    return 1;
  }
  return 0;
}
