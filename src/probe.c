/* SPDX-License-Identifier: MIT */
#include "probe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "log.h"
#include "metrics.h"
#include "stompgate/container.h"

#define PROBE_MAX_WAIT_MS 5000
#define BACKOFF_BASE_MS 100

/* One probe attempt; freed when its handles are closed. */
typedef struct attempt {
  uv_getaddrinfo_t gai;
  uv_connect_t connect;
  uv_write_t write;
  uv_tcp_t tcp;
  uv_timer_t timeout;
  int handles_open;
  int done;
  char buf[64];
} attempt_t;

static const sg_config_t *cfg;
static uv_loop_t *loop;
static uv_timer_t tick;
static int running;
static attempt_t *current;
static size_t node;      /* index into cfg->brokers being probed */
static size_t tried;     /* nodes tried in this round */
static unsigned failures; /* rounds in a row where no node answered */

static void tick_cb(uv_timer_t *t);

/* Capped exponential back-off with jitter: after n failed rounds wait
 * base * 2^n, at most the probe interval, times a random 50..100 %, so
 * gateways that lost the same broker do not all come back in step. */
static uint64_t backoff_ms(unsigned n) {
  uint64_t cap = cfg->broker_probe_ms > BACKOFF_BASE_MS ? cfg->broker_probe_ms : BACKOFF_BASE_MS;
  uint64_t d = n >= 20 ? cap : (uint64_t)BACKOFF_BASE_MS << n;
  if (d > cap) d = cap;
  return d / 2 + (uint64_t)random() % (d / 2 + 1);
}

static void schedule(uint64_t ms) {
  if (running) uv_timer_start(&tick, tick_cb, ms, 0);
}

/* handles_open also counts the name lookup, which cannot be closed, only
 * waited for. */
static void attempt_unref(attempt_t *a) {
  if (--a->handles_open == 0) free(a);
}

static void attempt_closed_cb(uv_handle_t *h) { attempt_unref(h->data); }

static void finish(attempt_t *a, int up, const char *why) {
  if (a->done) return;
  a->done = 1;
  if (current == a) current = NULL;
  uv_close((uv_handle_t *)&a->timeout, attempt_closed_cb);
  uv_close((uv_handle_t *)&a->tcp, attempt_closed_cb);
  if (!running) return;
  const sg_broker_addr_t *b = &cfg->brokers[node];
  int was = sg_metrics_broker_up();
  if (up) {
    if (cfg->nbrokers > 1 && node != sg_amqp_preferred_node()) {
      sg_log_warn("broker node %s:%d answers; new sessions log in there", b->host, b->port);
      sg_amqp_prefer_node(node);
      sg_metrics_broker_failover();
    }
    sg_metrics_broker_link(1);
    if (!was) sg_log_info("broker %s:%d reachable", b->host, b->port);
    failures = 0;
    tried = 0;
    schedule(cfg->broker_probe_ms);
    return;
  }
  sg_log_debug("broker probe %s:%d failed: %s", b->host, b->port, why);
  node = (node + 1) % cfg->nbrokers;
  if (++tried < cfg->nbrokers) {
    schedule(0); /* the next node, at once */
    return;
  }
  sg_metrics_broker_link(0);
  if (was) sg_log_warn("broker unreachable (%zu node%s tried): %s", cfg->nbrokers,
                       cfg->nbrokers > 1 ? "s" : "", why);
  tried = 0;
  schedule(backoff_ms(failures++));
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  attempt_t *a = h->data;
  *buf = uv_buf_init(a->buf, sizeof(a->buf));
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  attempt_t *a = s->data;
  if (n == 0) return;
  if (n < 0) {
    finish(a, 0, n == UV_EOF ? "closed without answering AMQP" : uv_strerror((int)n));
    return;
  }
  /* A method frame (type 1) is connection.start; anything else (such as
   * the protocol header sent back) means the peer does not speak 0-9-1. */
  if ((unsigned char)buf->base[0] == 1) finish(a, 1, NULL);
  else finish(a, 0, "unexpected answer to the AMQP header");
}

static void write_cb(uv_write_t *w, int status) {
  attempt_t *a = container_of(w, attempt_t, write);
  if (status < 0 && !a->done) finish(a, 0, uv_strerror(status));
}

static void connect_cb(uv_connect_t *c, int status) {
  attempt_t *a = container_of(c, attempt_t, connect);
  if (a->done) return;
  if (status < 0) {
    finish(a, 0, uv_strerror(status));
    return;
  }
  if (cfg->broker.tls) {
    finish(a, 1, NULL);
    return;
  }
  static const char header[8] = {'A', 'M', 'Q', 'P', 0, 0, 9, 1};
  uv_buf_t b = uv_buf_init((char *)header, sizeof(header));
  if (uv_write(&a->write, (uv_stream_t *)&a->tcp, &b, 1, write_cb) < 0 ||
      uv_read_start((uv_stream_t *)&a->tcp, alloc_cb, read_cb) < 0)
    finish(a, 0, "cannot write");
}

static void gai_cb(uv_getaddrinfo_t *g, int status, struct addrinfo *res) {
  attempt_t *a = container_of(g, attempt_t, gai);
  if (!a->done) {
    if (status < 0) {
      finish(a, 0, uv_strerror(status));
    } else {
      int r = uv_tcp_connect(&a->connect, &a->tcp, res->ai_addr, connect_cb);
      if (r < 0) finish(a, 0, uv_strerror(r));
    }
  }
  uv_freeaddrinfo(res);
  attempt_unref(a);
}

static void timeout_cb(uv_timer_t *t) {
  attempt_t *a = t->data;
  finish(a, 0, "timed out");
}

static void tick_cb(uv_timer_t *t) {
  (void)t;
  if (current != NULL) return; /* the last one is still waiting */
  /* A round starts where logins last succeeded. */
  if (tried == 0) node = sg_amqp_preferred_node() % cfg->nbrokers;
  const sg_broker_addr_t *b = &cfg->brokers[node];
  attempt_t *a = calloc(1, sizeof(*a));
  if (a == NULL) return;
  uv_tcp_init(loop, &a->tcp);
  uv_timer_init(loop, &a->timeout);
  a->tcp.data = a->timeout.data = a;
  a->handles_open = 3;
  current = a;
  uint64_t wait = cfg->broker_probe_ms < PROBE_MAX_WAIT_MS ? cfg->broker_probe_ms : PROBE_MAX_WAIT_MS;
  uv_timer_start(&a->timeout, timeout_cb, wait, 0);
  char port[16];
  snprintf(port, sizeof(port), "%d", b->port);
  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_socktype = SOCK_STREAM;
  int r = uv_getaddrinfo(loop, &a->gai, gai_cb, b->host, port, &hints);
  if (r < 0) {
    finish(a, 0, uv_strerror(r));
    attempt_unref(a);
  }
}

int sg_probe_start(uv_loop_t *l, const sg_config_t *c) {
  loop = l;
  cfg = c;
  int r = uv_timer_init(loop, &tick);
  if (r) return r;
  running = 1;
  srandom((unsigned)uv_hrtime());
  return uv_timer_start(&tick, tick_cb, 0, 0);
}

void sg_probe_stop(void) {
  if (!running) return;
  running = 0;
  uv_close((uv_handle_t *)&tick, NULL);
  if (current) finish(current, 0, "stopped");
}
