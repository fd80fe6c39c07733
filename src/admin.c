/* SPDX-License-Identifier: MIT */
#include "admin.h"

#include <stdlib.h>
#include <string.h>

#include "admission.h"
#include "log.h"
#include "metrics.h"
#include "session.h"
#include "stompgate/buf.h"
#include "stompgate/container.h"

#define ADMIN_MAX_HEAD 8192
#define ADMIN_TIMEOUT_MS 5000

typedef struct admin_conn {
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_write_t write;
  sg_buf_t in;
  sg_buf_t out;
  int handles_open;
  int answered;
} admin_conn_t;

static uv_tcp_t server;
static int server_open;

static void conn_closed_cb(uv_handle_t *h) {
  admin_conn_t *c = h->data;
  if (--c->handles_open > 0) return;
  sg_buf_free(&c->in);
  sg_buf_free(&c->out);
  free(c);
}

static void conn_close(admin_conn_t *c) {
  if (uv_is_closing((uv_handle_t *)&c->tcp)) return;
  uv_close((uv_handle_t *)&c->tcp, conn_closed_cb);
  uv_close((uv_handle_t *)&c->timer, conn_closed_cb);
}

static void write_cb(uv_write_t *w, int status) {
  (void)status;
  conn_close(container_of(w, admin_conn_t, write));
}

static void respond(admin_conn_t *c, int head_only, int status, const char *reason,
                    const char *type, const sg_buf_t *body) {
  c->answered = 1;
  uv_read_stop((uv_stream_t *)&c->tcp);
  sg_buf_printf(&c->out,
                "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                status, reason, type, body->len);
  if (!head_only && body->len) sg_buf_append(&c->out, body->base, body->len);
  uv_buf_t b = uv_buf_init(c->out.base, (unsigned)c->out.len);
  if (uv_write(&c->write, (uv_stream_t *)&c->tcp, &b, 1, write_cb) < 0) conn_close(c);
}

static void handle(admin_conn_t *c) {
  const char *p = c->in.base;
  int head = 0;
  if (strncmp(p, "GET ", 4) == 0) p += 4;
  else if (strncmp(p, "HEAD ", 5) == 0) p += 5, head = 1;
  else {
    sg_buf_t body = {(char *)"only GET and HEAD\n", 18, 0};
    respond(c, 0, 405, "Method Not Allowed", "text/plain", &body);
    return;
  }
  const char *e = strchr(p, ' ');
  size_t n = e ? (size_t)(e - p) : strlen(p);
  const char *q = memchr(p, '?', n);
  if (q) n = (size_t)(q - p);
  sg_buf_t body;
  sg_buf_init(&body);
#define IS(path) (n == sizeof(path) - 1 && memcmp(p, path, n) == 0)
  if (IS("/healthz")) {
    sg_buf_appendz(&body, "ok\n");
    respond(c, head, 200, "OK", "text/plain", &body);
  } else if (IS("/readyz")) {
    int draining = sg_admit_draining(), up = sg_metrics_broker_up();
    if (!draining && up) {
      sg_buf_appendz(&body, "ready\n");
      respond(c, head, 200, "OK", "text/plain", &body);
    } else {
      sg_buf_appendz(&body, draining ? "not ready: draining\n" : "not ready: broker unreachable\n");
      respond(c, head, 503, "Service Unavailable", "text/plain", &body);
    }
  } else if (IS("/metrics")) {
    sg_metrics_gauges_t g = {sg_session_count(), sg_admit_draining()};
    if (sg_metrics_render(&body, &g) != 0) {
      sg_buf_reset(&body);
      respond(c, head, 500, "Internal Server Error", "text/plain", &body);
    } else {
      respond(c, head, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", &body);
    }
  } else {
    sg_buf_appendz(&body, "not found: try /healthz, /readyz or /metrics\n");
    respond(c, head, 404, "Not Found", "text/plain", &body);
  }
#undef IS
  sg_buf_free(&body);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  admin_conn_t *c = h->data;
  if (sg_buf_reserve(&c->in, 1024) != 0) {
    *buf = uv_buf_init(NULL, 0);
    return;
  }
  *buf = uv_buf_init(c->in.base + c->in.len, (unsigned)(c->in.cap - c->in.len - 1));
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  (void)buf;
  admin_conn_t *c = s->data;
  if (n == 0 || c->answered) return;
  if (n < 0) {
    conn_close(c);
    return;
  }
  c->in.len += (size_t)n;
  c->in.base[c->in.len] = '\0';
  if (strstr(c->in.base, "\r\n\r\n") || strstr(c->in.base, "\n\n")) {
    handle(c);
  } else if (c->in.len > ADMIN_MAX_HEAD) {
    sg_buf_t body = {(char *)"request too large\n", 18, 0};
    respond(c, 0, 431, "Request Header Fields Too Large", "text/plain", &body);
  }
}

static void timeout_cb(uv_timer_t *t) { conn_close(t->data); }

static void connection_cb(uv_stream_t *srv, int status) {
  if (status < 0) return;
  admin_conn_t *c = calloc(1, sizeof(*c));
  if (c == NULL) return;
  uv_tcp_init(srv->loop, &c->tcp);
  uv_timer_init(srv->loop, &c->timer);
  c->tcp.data = c->timer.data = c;
  c->handles_open = 2;
  if (uv_accept(srv, (uv_stream_t *)&c->tcp) != 0) {
    conn_close(c);
    return;
  }
  uv_timer_start(&c->timer, timeout_cb, ADMIN_TIMEOUT_MS, 0);
  if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) != 0) conn_close(c);
}

int sg_admin_start(uv_loop_t *loop, const sg_config_t *cfg) {
  struct sockaddr_storage ss;
  int r = uv_ip4_addr(cfg->admin_host, cfg->admin_port, (struct sockaddr_in *)&ss);
  if (r) r = uv_ip6_addr(cfg->admin_host, cfg->admin_port, (struct sockaddr_in6 *)&ss);
  if (r) return r;
  if ((r = uv_tcp_init(loop, &server))) return r;
  server_open = 1;
  if ((r = uv_tcp_bind(&server, (struct sockaddr *)&ss, 0)) ||
      (r = uv_listen((uv_stream_t *)&server, 128, connection_cb))) {
    sg_admin_stop();
    return r;
  }
  return 0;
}

void sg_admin_stop(void) {
  if (server_open) uv_close((uv_handle_t *)&server, NULL);
  server_open = 0;
}
