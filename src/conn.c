/* SPDX-License-Identifier: MIT */
/* Connections: the TCP handle, the write path every layer above shares,
 * and the two connection types, plain and TLS. */
#include "conn.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "stompgate/container.h"
#include "stompgate/err.h"
#include "stompgate/proxy_proto.h"
#include "tls.h"

typedef struct conn_write {
  uv_write_t req;
  sg_conn_t *c;
  char *base;
  size_t len;
} conn_write_t;

static void write_cb(uv_write_t *req, int status) {
  conn_write_t *w = container_of(req, conn_write_t, req);
  sg_conn_t *c = w->c;
  size_t n = w->len;
  c->inflight -= n;
  if (status >= 0) sg_metrics_bytes_out(n);
  free(w->base);
  free(w);
  if (c->on_written) c->on_written(c, n, status);
}

/* Writes raw bytes as they are; takes *buf. 0 or negative. */
static int conn_write_raw(sg_conn_t *c, sg_buf_t *buf) {
  if (buf->len == 0) return 0;
  conn_write_t *w = malloc(sizeof(*w));
  if (w == NULL) return SG_ERR_NOMEM;
  w->c = c;
  w->base = buf->base;
  w->len = buf->len;
  sg_buf_init(buf);
  uv_buf_t b = uv_buf_init(w->base, (unsigned)w->len);
  int r = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, write_cb);
  if (r < 0) {
    free(w->base);
    free(w);
    return r;
  }
  c->inflight += w->len;
  return 0;
}

/* ---------- the flush at the end of a loop iteration ---------- */

static __thread uv_check_t flush_check;
/* Active while a flush is due, so the loop does not block in poll before
 * the check phase: output queued from a timer goes out at once. */
static __thread uv_idle_t flush_idle;
static __thread sg_conn_t *flush_head;
static __thread int flush_ready;

static void flush_check_cb(uv_check_t *h) {
  (void)h;
  /* Flushing may queue more connections (a close reply); take the list
   * first. */
  while (flush_head != NULL) {
    sg_conn_t *c = flush_head;
    flush_head = c->flush_next;
    c->flush_next = NULL;
    c->flush_queued = 0;
    c->on_flush(c);
  }
  uv_check_stop(&flush_check);
  uv_idle_stop(&flush_idle);
}

static void flush_idle_cb(uv_idle_t *h) { (void)h; }

int sg_conn_loop_init(uv_loop_t *loop) {
  if (flush_ready) return 0;
  int r = uv_check_init(loop, &flush_check);
  if (r) return r;
  uv_unref((uv_handle_t *)&flush_check);
  if ((r = uv_idle_init(loop, &flush_idle)) != 0) {
    uv_close((uv_handle_t *)&flush_check, NULL);
    return r;
  }
  uv_unref((uv_handle_t *)&flush_idle);
  flush_ready = 1;
  return 0;
}

void sg_conn_queue_flush(sg_conn_t *c) {
  if (c->flush_queued) return;
  c->flush_queued = 1;
  c->flush_next = flush_head;
  flush_head = c;
  uv_check_start(&flush_check, flush_check_cb);
  uv_idle_start(&flush_idle, flush_idle_cb);
}

void sg_conn_unqueue_flush(sg_conn_t *c) {
  if (!c->flush_queued) return;
  for (sg_conn_t **p = &flush_head; *p != NULL; p = &(*p)->flush_next) {
    if (*p == c) {
      *p = c->flush_next;
      break;
    }
  }
  c->flush_queued = 0;
  c->flush_next = NULL;
}

/* ---------- plain TCP ---------- */

static int plain_feed(sg_conn_t *c, const char *data, size_t n, sg_buf_t *plain) {
  (void)c;
  return sg_buf_append(plain, data, n) != 0 ? SG_ERR_NOMEM : 0;
}

static int plain_write(sg_conn_t *c, sg_buf_t *out) { return conn_write_raw(c, out); }

static void plain_end(sg_conn_t *c) { (void)c; }

static int plain_ready(const sg_conn_t *c) { return (void)c, 1; }

static void plain_free(void *state) { (void)state; }

const sg_conn_type_t sg_conn_plain = {"TCP",      plain_feed,  plain_write, plain_end,
                                      plain_ready, plain_free, 1};

/* ---------- TLS ---------- */

static int tls_feed(sg_conn_t *c, const char *data, size_t n, sg_buf_t *plain) {
  sg_buf_t net;
  sg_buf_init(&net);
  int r = sg_tls_feed(c->state, data, n, plain, &net);
  if (conn_write_raw(c, &net) < 0 && r == 0) r = SG_ERR_INVALID;
  sg_buf_free(&net);
  return r;
}

static int tls_write(sg_conn_t *c, sg_buf_t *out) {
  if (out->len == 0) return 0;
  sg_buf_t enc;
  sg_buf_init(&enc);
  if (sg_tls_encrypt(c->state, out->base, out->len, &enc) != 0) {
    sg_buf_free(&enc);
    return SG_ERR_INVALID;
  }
  /* As on a plain connection, an idle one keeps no output buffer. */
  sg_buf_free(out);
  int r = conn_write_raw(c, &enc);
  sg_buf_free(&enc);
  return r;
}

static void tls_end(sg_conn_t *c) {
  sg_buf_t net;
  sg_buf_init(&net);
  sg_tls_close_notify(c->state, &net);
  conn_write_raw(c, &net);
  sg_buf_free(&net);
}

static int tls_ready(const sg_conn_t *c) { return sg_tls_handshake_done(c->state); }

static void tls_free(void *state) { sg_tls_free(state); }

const sg_conn_type_t sg_conn_tls = {"TLS", tls_feed, tls_write, tls_end, tls_ready, tls_free, 0};

static void conn_shut_cb(uv_shutdown_t *req, int status) {
  sg_conn_t *c = req->data;
  c->on_shut(c, status);
}

int sg_conn_shutdown(sg_conn_t *c, sg_conn_shut_fn done) {
  sg_conn_end(c);
  c->on_shut = done;
  c->shut_req.data = c;
  return uv_shutdown(&c->shut_req, (uv_stream_t *)&c->tcp, conn_shut_cb);
}

const char *sg_conn_error(const sg_conn_t *c) {
  return c->type == &sg_conn_tls && c->state ? sg_tls_error(c->state) : "connection failed";
}

/* ---------- life ---------- */

int sg_conn_init(uv_loop_t *loop, sg_conn_t *c) {
  c->type = &sg_conn_plain;
  c->state = NULL;
  c->inflight = 0;
  c->counted = 0;
  c->flush_next = NULL;
  c->flush_queued = 0;
  return uv_tcp_init(loop, &c->tcp);
}

int sg_conn_start(sg_conn_t *c, const sg_config_t *cfg, int kind) {
  int tls = kind == SG_CONN_HTTP ? sg_tls_enabled() : cfg->stomp_tls;
  c->type = &sg_conn_plain;
  c->state = NULL;
  if (tls) {
    c->type = &sg_conn_tls;
    c->state = kind == SG_CONN_HTTP ? sg_tls_new() : sg_tls_new_stream();
    if (c->state == NULL) return SG_ERR_NOMEM;
  }
  c->counted = 1;
  sg_metrics_connection(1);
  uv_tcp_nodelay(&c->tcp, 1);
  return 0;
}

void sg_conn_closed(sg_conn_t *c) {
  if (c->state) c->type->free_state(c->state);
  c->state = NULL;
  if (c->counted) sg_metrics_connection(-1);
  c->counted = 0;
}

void sg_conn_name_peer(sg_conn_t *c, const sg_config_t *cfg, const struct sockaddr_storage *ss,
                       char *peer, size_t n) {
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (ss->ss_family == AF_INET6) {
    uv_ip6_name((const struct sockaddr_in6 *)ss, host, sizeof(host));
    port = ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
  } else if (ss->ss_family == AF_INET) {
    uv_ip4_name((const struct sockaddr_in *)ss, host, sizeof(host));
    port = ntohs(((const struct sockaddr_in *)ss)->sin_port);
  }
  snprintf(peer, n, "%s:%d", host, port);
  c->peer_trusted = sg_cidr_match(cfg->trusted_proxies, cfg->ntrusted_proxies,
                                  (const struct sockaddr *)ss) != 0;
}

void sg_conn_name_socket_peer(sg_conn_t *c, const sg_config_t *cfg, char *peer, size_t n) {
  struct sockaddr_storage ss;
  int sl = sizeof(ss);
  memset(&ss, 0, sizeof(ss));
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) != 0) ss.ss_family = AF_UNSPEC;
  sg_conn_name_peer(c, cfg, &ss, peer, n);
}

/* ---------- PROXY protocol ---------- */

static const char *proxy_cause(const char *why) {
  if (strcmp(why, "no_header") == 0) return "no PROXY protocol header from a trusted-proxy";
  if (strcmp(why, "too_long") == 0) return "PROXY protocol header too long";
  if (strcmp(why, "bad_length") == 0) return "PROXY protocol v2 header with a bad length";
  if (strcmp(why, "truncated") == 0) return "PROXY protocol header cut short";
  if (strcmp(why, "untrusted") == 0)
    return "PROXY protocol header from a peer that is not a trusted-proxy";
  return "malformed PROXY protocol header";
}

int sg_conn_proxy_unexpected(const char *data, size_t n) {
  sg_proxy_info_t info;
  int r = sg_proxy_parse((const uint8_t *)data, n, &info);
  return r == 0 || (r == SG_ERR_AGAIN && n >= 4) ||
         (r == SG_ERR_INVALID && strcmp(info.why, "no_header") != 0);
}

void sg_conn_proxy_refused(const char *peer, const char *why) {
  sg_log_info("%s closing: %s", peer, proxy_cause(why));
  sg_metrics_proxy_refused(why);
}

/* ---------- hand-over ---------- */

int sg_conn_export(sg_conn_t *c, sg_conn_export_t *x) {
  uv_os_fd_t fd;
  if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0) return SG_ERR_INVALID;
  x->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (x->fd < 0) return SG_ERR_NOMEM;
  x->type = c->type;
  x->state = c->state;
  return 0;
}

void sg_conn_exported(sg_conn_t *c) { c->state = NULL; }

void sg_conn_export_drop(sg_conn_export_t *x) {
  if (x->fd >= 0) close(x->fd);
  x->fd = -1;
}

int sg_conn_import(sg_conn_t *c, sg_conn_export_t *x) {
  c->type = x->type;
  c->state = x->state;
  int r = uv_tcp_open(&c->tcp, x->fd);
  if (r != 0) {
    close(x->fd);
    return r;
  }
  c->counted = 1;
  sg_metrics_connection(1);
  uv_tcp_nodelay(&c->tcp, 1);
  return 0;
}
