/* SPDX-License-Identifier: MIT */
/* WebSocket termination: reads the HTTP upgrade, then hands bytes to
 * wslay's event API and writes what it produces. Writes are gathered per
 * loop iteration in a check handle, so a burst of messages becomes one
 * uv_write per socket. */
#include "ws.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admission.h"
#include "log.h"
#include "metrics.h"
#include "tls.h"
#include "stompgate/err.h"
#include "stompgate/utf8.h"
#include "www_serve.h"

#define WS_READ_CHUNK 65536
#define WS_WRITE_CHUNK (1u << 20)
#define WS_LINGER_MS 2000
#define WS_CLOSE_TIMEOUT_MS 5000
/* Input a paused connection still reads, so that it sees the peer close. */
#define WS_PAUSED_MAX 65536

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

typedef struct ws_write {
  uv_write_t req;
  sg_ws_t *ws;
  char *base;
  size_t len;
} ws_write_t;

/* Sockets with bytes to flush this iteration. */
static __thread uv_check_t flush_check;
static __thread sg_ws_t *flush_head;
static __thread int flush_ready;
/* Over all workers: --max-sessions is for the process. */
static atomic_size_t open_count;
/* TLS connections read ciphertext here; it is decrypted into ws->in before
 * the next read, so one buffer per thread is enough. */
static __thread char tls_raw[WS_READ_CHUNK];

size_t sg_ws_open_count(void) { return open_count; }

static void ws_flush(sg_ws_t *ws);
static void ws_begin_shutdown(sg_ws_t *ws);
static void ws_close_handles(sg_ws_t *ws);
static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void flush_check_cb(uv_check_t *h) {
  (void)h;
  /* Flushing may queue more sockets (a close reply); take the list first. */
  while (flush_head != NULL) {
    sg_ws_t *ws = flush_head;
    flush_head = ws->flush_next;
    ws->flush_next = NULL;
    ws->flush_queued = 0;
    ws_flush(ws);
  }
  uv_check_stop(&flush_check);
}

int sg_ws_loop_init(uv_loop_t *loop) {
  int r = uv_check_init(loop, &flush_check);
  if (r) return r;
  uv_unref((uv_handle_t *)&flush_check);
  flush_ready = 1;
  return 0;
}

void sg_ws_loop_close(void) {
  if (flush_ready) uv_close((uv_handle_t *)&flush_check, NULL);
  flush_ready = 0;
}

static void ws_queue_flush(sg_ws_t *ws) {
  if (ws->flush_queued || ws->state == SG_WS_CLOSED) return;
  ws->flush_queued = 1;
  ws->flush_next = flush_head;
  flush_head = ws;
  uv_check_start(&flush_check, flush_check_cb);
}

static void ws_unqueue_flush(sg_ws_t *ws) {
  if (!ws->flush_queued) return;
  for (sg_ws_t **p = &flush_head; *p != NULL; p = &(*p)->flush_next) {
    if (*p == ws) {
      *p = ws->flush_next;
      break;
    }
  }
  ws->flush_queued = 0;
  ws->flush_next = NULL;
}

static void ws_gone(sg_ws_t *ws) {
  if (ws->gone) return;
  ws->gone = 1;
  if (ws->cbs->on_gone_cb) ws->cbs->on_gone_cb(ws);
}

static void handle_closed_cb(uv_handle_t *h) {
  sg_ws_t *ws = h->data;
  if (--ws->handles_open > 0) return;
  if (ws->upgraded) open_count--;
  ws->upgraded = 0;
  ws_unqueue_flush(ws);
  sg_tls_free(ws->tls);
  ws->tls = NULL;
  if (ws->ctx) wslay_event_context_free(ws->ctx);
  ws->ctx = NULL;
  sg_buf_free(&ws->in);
  sg_buf_free(&ws->out);
  ws->cbs->on_closed_cb(ws);
}

static void ws_close_handles(sg_ws_t *ws) {
  if (ws->state == SG_WS_CLOSED) return;
  ws->state = SG_WS_CLOSED;
  ws_gone(ws);
  uv_close((uv_handle_t *)&ws->tcp, handle_closed_cb);
  uv_close((uv_handle_t *)&ws->timer, handle_closed_cb);
}

static void write_cb(uv_write_t *req, int status) {
  ws_write_t *w = container_of(req, ws_write_t, req);
  sg_ws_t *ws = w->ws;
  ws->inflight -= w->len;
  if (status >= 0) sg_metrics_bytes_out(w->len);
  free(w->base);
  free(w);
  if (ws->state == SG_WS_CLOSED) return;
  if (status < 0) {
    sg_log_debug("%s write failed: %s", ws->peer, uv_strerror(status));
    ws_close_handles(ws);
    return;
  }
  /* wslay may have held messages back while a large write was pending. */
  if (ws->ctx && wslay_event_want_write(ws->ctx)) ws_queue_flush(ws);
}

/* Hands bytes to uv_write as they are; takes *buf (left empty). */
static int ws_write_raw(sg_ws_t *ws, sg_buf_t *buf) {
  if (buf->len == 0) return 0;
  ws_write_t *w = malloc(sizeof(*w));
  if (w == NULL) return SG_ERR_NOMEM;
  w->ws = ws;
  w->base = buf->base;
  w->len = buf->len;
  sg_buf_init(buf);
  uv_buf_t b = uv_buf_init(w->base, (unsigned)w->len);
  int r = uv_write(&w->req, (uv_stream_t *)&ws->tcp, &b, 1, write_cb);
  if (r < 0) {
    free(w->base);
    free(w);
    return r;
  }
  ws->inflight += w->len;
  return 0;
}

/* Hands ws->out to uv_write, encrypted first on a TLS connection. */
static int ws_write_out(sg_ws_t *ws) {
  if (ws->out.len == 0) return 0;
  if (ws->tls == NULL) return ws_write_raw(ws, &ws->out);
  sg_buf_t enc;
  sg_buf_init(&enc);
  if (sg_tls_encrypt(ws->tls, ws->out.base, ws->out.len, &enc) != 0) {
    sg_log_debug("%s TLS write failed: %s", ws->peer, sg_tls_error(ws->tls));
    sg_buf_free(&enc);
    return SG_ERR_INVALID;
  }
  sg_buf_reset(&ws->out);
  int r = ws_write_raw(ws, &enc);
  sg_buf_free(&enc);
  return r;
}

static void ws_flush(sg_ws_t *ws) {
  if (ws->state == SG_WS_CLOSED) return;
  ws->fresh = 0;
  if (ws->ctx != NULL && ws->close_pending && wslay_event_get_queued_msg_count(ws->ctx) == 0) {
    /* wslay sends control frames ahead of queued messages; a close queued
     * early would overtake the ERROR frame it follows. */
    ws->close_pending = 0;
    wslay_event_queue_close(ws->ctx, ws->close_code, (const uint8_t *)ws->close_reason,
                            strlen(ws->close_reason));
  }
  if (ws->ctx != NULL) {
    /* Keep at most one chunk in flight so a reader that stops reading
     * leaves its messages in wslay's queue, where they are counted. */
    while (ws->inflight < WS_WRITE_CHUNK && wslay_event_want_write(ws->ctx)) {
      size_t before = ws->out.len;
      if (wslay_event_send(ws->ctx) != 0) {
        ws_close_handles(ws);
        return;
      }
      if (ws->out.len == before) break;
      if (ws_write_out(ws) < 0) {
        ws_close_handles(ws);
        return;
      }
    }
  }
  if (ws_write_out(ws) < 0) {
    ws_close_handles(ws);
    return;
  }
  if (ws->close_pending && ws->ctx && wslay_event_get_queued_msg_count(ws->ctx) == 0) {
    ws_queue_flush(ws);
    return;
  }
  if (ws->state == SG_WS_CLOSING && !ws->shut &&
      (ws->ctx == NULL || (wslay_event_get_close_sent(ws->ctx) &&
                           !wslay_event_want_write(ws->ctx))))
    ws_begin_shutdown(ws);
}

static void linger_cb(uv_timer_t *t) {
  sg_ws_t *ws = container_of(t, sg_ws_t, timer);
  ws_close_handles(ws);
}

static void shutdown_cb(uv_shutdown_t *req, int status) {
  sg_ws_t *ws = req->data;
  free(req);
  if (ws->state == SG_WS_CLOSED) return;
  if (status < 0) {
    ws_close_handles(ws);
    return;
  }
  /* The peer has our last bytes; give it a moment to close its side so the
   * kernel does not answer unread input with a reset. Reading again (a
   * refusal stopped it) discards what comes and ends the wait at the
   * peer's close, rather than holding the socket for the whole moment. */
  uv_timer_start(&ws->timer, linger_cb, WS_LINGER_MS, 0);
  (void)uv_read_start((uv_stream_t *)&ws->tcp, alloc_cb, read_cb);
}

static void ws_begin_shutdown(sg_ws_t *ws) {
  if (ws->shut || ws->state == SG_WS_CLOSED) return;
  ws->shut = 1;
  ws->state = SG_WS_CLOSING;
  ws_gone(ws);
  if (ws->tls) {
    sg_buf_t net;
    sg_buf_init(&net);
    sg_tls_close_notify(ws->tls, &net);
    ws_write_raw(ws, &net);
    sg_buf_free(&net);
  }
  uv_shutdown_t *req = malloc(sizeof(*req));
  if (req == NULL) {
    ws_close_handles(ws);
    return;
  }
  req->data = ws;
  if (uv_shutdown(req, (uv_stream_t *)&ws->tcp, shutdown_cb) < 0) {
    free(req);
    ws_close_handles(ws);
  }
}

static void close_timeout_cb(uv_timer_t *t) {
  sg_ws_t *ws = container_of(t, sg_ws_t, timer);
  sg_log_debug("%s close handshake timed out", ws->peer);
  ws_close_handles(ws);
}

/* wslay answers what its frame layer refuses (a fragmented or oversized
 * control frame, a length with the top bit set) and a one-byte close body
 * with a close frame that has no status code, and it queues only one close.
 * RFC 6455 section 7.4.1 wants 1002 there, so wslay's output is stopped and
 * this close is written after whatever is already on its way. */
static void ws_fail_protocol(sg_ws_t *ws) {
  static const char close_1002[] = {(char)0x88, 0x02, 0x03, (char)0xea};
  sg_log_info("%s closing: WebSocket protocol error (1002)", ws->peer);
  wslay_event_shutdown_write(ws->ctx);
  wslay_event_shutdown_read(ws->ctx);
  ws->state = SG_WS_CLOSING;
  ws_gone(ws);
  if (sg_buf_append(&ws->out, close_1002, sizeof(close_1002)) != 0 || ws_write_out(ws) < 0) {
    ws_close_handles(ws);
    return;
  }
  ws_begin_shutdown(ws);
}

/* wslay callbacks */

static ssize_t recv_callback(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                             void *user_data) {
  (void)flags;
  sg_ws_t *ws = user_data;
  size_t avail = ws->in.len - ws->in_off;
  if (avail == 0) {
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  if (len > avail) len = avail;
  memcpy(buf, ws->in.base + ws->in_off, len);
  ws->in_off += len;
  return (ssize_t)len;
}

static ssize_t send_callback(wslay_event_context_ptr ctx, const uint8_t *data, size_t len,
                             int flags, void *user_data) {
  (void)flags;
  sg_ws_t *ws = user_data;
  if (ws->out.len >= WS_WRITE_CHUNK) {
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  if (sg_buf_append(&ws->out, data, len) != 0) {
    wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
  }
  return (ssize_t)len;
}

static void on_msg_recv_callback(wslay_event_context_ptr ctx,
                                 const struct wslay_event_on_msg_recv_arg *arg,
                                 void *user_data) {
  sg_ws_t *ws = user_data;
  if (ws->state != SG_WS_OPEN) return;
  /* wslay hands over an empty message as NULL; the layers above
   * take a pointer to bytes, so that becomes an empty buffer. */
  const uint8_t *msg = arg->msg ? arg->msg : (const uint8_t *)"";
  switch (arg->opcode) {
  case WSLAY_TEXT_FRAME:
    if (!sg_utf8_valid(msg, arg->msg_length)) {
      static const char reason[] = "Invalid UTF-8 in text message";
      sg_log_info("%s closing: invalid UTF-8 in a text message", ws->peer);
      wslay_event_queue_close(ctx, WSLAY_CODE_INVALID_FRAME_PAYLOAD_DATA,
                              (const uint8_t *)reason, sizeof(reason) - 1);
      ws->state = SG_WS_CLOSING;
      uv_timer_start(&ws->timer, close_timeout_cb, WS_CLOSE_TIMEOUT_MS, 0);
      ws_gone(ws);
      return;
    }
    ws->cbs->on_message_cb(ws, msg, arg->msg_length, 0);
    break;
  case WSLAY_BINARY_FRAME:
    ws->cbs->on_message_cb(ws, msg, arg->msg_length, 1);
    break;
  case WSLAY_CONNECTION_CLOSE:
    if (arg->msg_length == 1) {
      ws_fail_protocol(ws);
      return;
    }
    sg_log_debug("%s sent close %u", ws->peer, arg->status_code);
    ws->state = SG_WS_CLOSING;
    uv_timer_start(&ws->timer, close_timeout_cb, WS_CLOSE_TIMEOUT_MS, 0);
    ws_gone(ws);
    break;
  default:
    break;
  }
}

static const struct wslay_event_callbacks wslay_cbs = {
    recv_callback, send_callback, NULL, NULL, NULL, NULL, on_msg_recv_callback,
};

/* Reading */

/* Drops consumed input so ws->in does not grow without bound. */
static void ws_compact_in(sg_ws_t *ws) {
  if (ws->in_off == ws->in.len) {
    ws->in.len = 0;
    ws->in_off = 0;
  } else if (ws->in_off > 0 && ws->state != SG_WS_HANDSHAKE) {
    sg_buf_consume(&ws->in, ws->in_off);
    ws->in_off = 0;
  }
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  sg_ws_t *ws = h->data;
  if (ws->tls) {
    *buf = uv_buf_init(tls_raw, sizeof(tls_raw));
    return;
  }
  ws_compact_in(ws);
  if (sg_buf_reserve(&ws->in, WS_READ_CHUNK) != 0) {
    *buf = uv_buf_init(NULL, 0);
    return;
  }
  *buf = uv_buf_init(ws->in.base + ws->in.len, (unsigned)(ws->in.cap - ws->in.len - 1));
}

static void ws_refuse(sg_ws_t *ws, int status, const char *reason, const char *extra) {
  sg_log_info("%s handshake refused: %d %s", ws->peer, status, reason);
  sg_metrics_http_refused(status);
  uv_read_stop((uv_stream_t *)&ws->tcp);
  ws->state = SG_WS_CLOSING;
  sg_http_response_error(&ws->out, status, reason, extra);
  if (ws_write_out(ws) < 0) {
    ws_close_handles(ws);
    return;
  }
  ws_begin_shutdown(ws);
}

/* With --www, a GET or HEAD for another path than the WebSocket endpoint
 * is a request for a static file. */
static int is_static_request(const sg_ws_t *ws, const sg_http_request_t *req) {
  int get = req->method.len == 3 && memcmp(req->method.p, "GET", 3) == 0;
  int head = req->method.len == 4 && memcmp(req->method.p, "HEAD", 4) == 0;
  size_t wl = strlen(ws->cfg->ws_path);
  int ws_path = req->path.len == wl && memcmp(req->path.p, ws->cfg->ws_path, wl) == 0;
  /* The parser answers 404 for a GET of another path, and 405 for any
   * method but GET before it looks at the path. */
  return !ws_path && ((req->status == 404 && get) || (req->status == 405 && head));
}

static void ws_serve_static(sg_ws_t *ws, const sg_http_request_t *req) {
  uv_read_stop((uv_stream_t *)&ws->tcp);
  ws->state = SG_WS_CLOSING;
  int status = sg_www_respond(ws->cfg->www_root, req, &ws->out);
  sg_log_debug("%s %.*s %.*s -> %d", ws->peer, (int)req->method.len, req->method.p,
               (int)req->path.len, req->path.p, status);
  if (status < 0 || ws_write_out(ws) < 0) {
    ws_close_handles(ws);
    return;
  }
  ws_begin_shutdown(ws);
}

static void ws_handshake(sg_ws_t *ws) {
  sg_http_request_t req;
  sg_http_upgrade_opts_t opts = {ws->cfg->ws_path, ws->cfg->max_head_size};
  int r = sg_http_upgrade_parse(ws->in.base, ws->in.len, &opts, &req);
  if (r == SG_ERR_AGAIN) return;
  if (r < 0) {
    ws_refuse(ws, 400, "Bad Request", NULL);
    return;
  }
  if (req.status != 101) {
    if (ws->cfg->www_root && is_static_request(ws, &req)) {
      ws_serve_static(ws, &req);
      return;
    }
    ws_refuse(ws, req.status, req.reason, req.extra_header);
    return;
  }
  sg_admit_refusal_t no;
  if (sg_admit(ws->cfg, &req, open_count, uv_now(ws->tcp.loop), &no)) {
    ws_refuse(ws, no.status, no.reason, no.extra);
    return;
  }
  if (wslay_event_context_server_init(&ws->ctx, &wslay_cbs, ws) != 0) {
    ws_close_handles(ws);
    return;
  }
  /* Let the STOMP codec answer an oversized frame with an ERROR; wslay only
   * stops messages far beyond it. */
  wslay_event_config_set_max_recv_msg_length(ws->ctx, ws->cfg->max_frame_size * 2 + 65536);
  if (sg_http_upgrade_accept(&req, &ws->out) != 0) {
    ws_close_handles(ws);
    return;
  }
  ws->in_off = req.head_len;
  ws->state = SG_WS_OPEN;
  ws->upgraded = 1;
  open_count++;
  sg_metrics_upgraded((double)(uv_hrtime() - ws->accepted_ns) / 1e9);
  uv_timer_stop(&ws->timer);
  ws_queue_flush(ws);
  ws->cbs->on_open_cb(ws, req.stomp_version);
}

static void ws_feed(sg_ws_t *ws) {
  if (ws->ctx == NULL || ws->in_off == ws->in.len) return;
  if (!wslay_event_want_read(ws->ctx)) {
    ws->in_off = ws->in.len; /* after a close: discard */
    return;
  }
  int r = wslay_event_recv(ws->ctx);
  if (r == WSLAY_ERR_CALLBACK_FAILURE && ws->state == SG_WS_OPEN) {
    /* Our recv callback never fails, so this is a frame wslay refused. */
    ws_fail_protocol(ws);
    return;
  }
  if (r != 0) {
    ws_close_handles(ws);
    return;
  }
  if (ws->state == SG_WS_CLOSED) return;
  if (!wslay_event_want_read(ws->ctx) && ws->state == SG_WS_OPEN) {
    /* wslay refused the input (unmasked or malformed frame, message too
     * big) and queued a close of its own. */
    sg_log_info("%s closing: WebSocket protocol error (%u)", ws->peer,
                wslay_event_get_status_code_sent(ws->ctx));
    ws->state = SG_WS_CLOSING;
    uv_timer_start(&ws->timer, close_timeout_cb, WS_CLOSE_TIMEOUT_MS, 0);
    ws_gone(ws);
  }
  ws_queue_flush(ws);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  (void)buf;
  sg_ws_t *ws = s->data;
  if (nread == 0) return;
  if (nread < 0) {
    if (nread != UV_EOF) sg_log_debug("%s read failed: %s", ws->peer, uv_strerror((int)nread));
    ws_close_handles(ws);
    return;
  }
  sg_metrics_bytes_in((size_t)nread);
  if (ws->tls) {
    ws_compact_in(ws);
    size_t had = ws->in.len;
    sg_buf_t net;
    sg_buf_init(&net);
    int r = sg_tls_feed(ws->tls, buf->base, (size_t)nread, &ws->in, &net);
    if (ws_write_raw(ws, &net) < 0) r = -1;
    sg_buf_free(&net);
    if (r != 0) {
      if (r < 0) sg_log_info("%s TLS failed: %s", ws->peer, sg_tls_error(ws->tls));
      ws_close_handles(ws);
      return;
    }
    if (ws->in.len == had) return;
  } else {
    ws->in.len += (size_t)nread;
    ws->in.base[ws->in.len] = '\0';
  }
  ws->last_rx = uv_now(s->loop);
  if (ws->shut) {
    ws->in.len = ws->in_off = 0; /* draining before close */
    return;
  }
  if (ws->paused && ws->state == SG_WS_OPEN) {
    /* Held for sg_ws_resume; past a bound the peer's writes back up in
     * TCP. */
    if (ws->in.len - ws->in_off >= WS_PAUSED_MAX) uv_read_stop(s);
    return;
  }
  if (ws->state == SG_WS_HANDSHAKE) {
    ws_handshake(ws);
    if (ws->state != SG_WS_OPEN) return;
  }
  ws_feed(ws);
}

static void handshake_timeout_cb(uv_timer_t *t) {
  sg_ws_t *ws = container_of(t, sg_ws_t, timer);
  if (ws->state == SG_WS_HANDSHAKE) ws_refuse(ws, 408, "Request Timeout", NULL);
}

int sg_ws_init(uv_loop_t *loop, sg_ws_t *ws, const sg_config_t *cfg, const sg_ws_cbs_t *cbs) {
  memset(ws, 0, sizeof(*ws));
  ws->cfg = cfg;
  ws->cbs = cbs;
  int r = uv_tcp_init(loop, &ws->tcp);
  if (r) return r;
  r = uv_timer_init(loop, &ws->timer);
  if (r) {
    /* Nothing is allocated yet; the caller frees ws after this close. */
    uv_close((uv_handle_t *)&ws->tcp, NULL);
    return r;
  }
  ws->tcp.data = ws;
  ws->timer.data = ws;
  ws->handles_open = 2;
  return 0;
}

void sg_ws_start(sg_ws_t *ws) {
  struct sockaddr_storage ss;
  int sl = sizeof(ss);
  char host[48] = "?";
  int port = 0;
  if (uv_tcp_getpeername(&ws->tcp, (struct sockaddr *)&ss, &sl) == 0) {
    if (ss.ss_family == AF_INET6) {
      uv_ip6_name((struct sockaddr_in6 *)&ss, host, sizeof(host));
      port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    } else {
      uv_ip4_name((struct sockaddr_in *)&ss, host, sizeof(host));
      port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
  }
  snprintf(ws->peer, sizeof(ws->peer), "%s:%d", host, port);
  uv_tcp_nodelay(&ws->tcp, 1);
  if (sg_tls_enabled() && (ws->tls = sg_tls_new()) == NULL) {
    ws_close_handles(ws);
    return;
  }
  ws->accepted_ns = uv_hrtime();
  ws->last_rx = ws->last_tx = uv_now(ws->tcp.loop);
  uv_timer_start(&ws->timer, handshake_timeout_cb, ws->cfg->handshake_timeout_ms, 0);
  if (uv_read_start((uv_stream_t *)&ws->tcp, alloc_cb, read_cb) != 0) ws_close_handles(ws);
}

int sg_ws_send(sg_ws_t *ws, const void *data, size_t len, int binary) {
  if (ws->state != SG_WS_OPEN || ws->ctx == NULL) return UV_EPIPE;
  struct wslay_event_msg msg = {binary ? WSLAY_BINARY_FRAME : WSLAY_TEXT_FRAME, data, len};
  if (wslay_event_queue_msg(ws->ctx, &msg) != 0) return SG_ERR_NOMEM;
  ws->fresh += len;
  ws->last_tx = uv_now(ws->tcp.loop);
  ws_queue_flush(ws);
  return 0;
}

size_t sg_ws_backlog(const sg_ws_t *ws) {
  size_t p = sg_ws_pending(ws);
  return p > ws->fresh ? p - ws->fresh : 0;
}

size_t sg_ws_pending(const sg_ws_t *ws) {
  return ws->inflight + ws->out.len + (ws->ctx ? wslay_event_get_queued_msg_length(ws->ctx) : 0);
}

void sg_ws_close(sg_ws_t *ws, uint16_t code, const char *reason) {
  if (ws->state == SG_WS_CLOSED) return;
  if (ws->ctx == NULL || ws->state == SG_WS_HANDSHAKE) {
    ws_close_handles(ws);
    return;
  }
  if (ws->state == SG_WS_OPEN) {
    /* A control frame carries at most 125 bytes: code plus 123 of reason. */
    snprintf(ws->close_reason, sizeof(ws->close_reason), "%s", reason ? reason : "");
    ws->close_code = code;
    ws->close_pending = 1;
    ws->state = SG_WS_CLOSING;
    uv_timer_start(&ws->timer, close_timeout_cb, WS_CLOSE_TIMEOUT_MS, 0);
  }
  ws_queue_flush(ws);
}

void sg_ws_abort(sg_ws_t *ws) { ws_close_handles(ws); }

/* Reading goes on while paused, up to WS_PAUSED_MAX unhandled bytes, so
 * that a client leaving while it waits (a broker alarm can last minutes)
 * is closed at once rather than when the wait ends. */
void sg_ws_pause(sg_ws_t *ws) {
  if (ws->paused || ws->state != SG_WS_OPEN) return;
  ws->paused = 1;
}

void sg_ws_resume(sg_ws_t *ws) {
  if (!ws->paused) return;
  ws->paused = 0;
  if (ws->state != SG_WS_OPEN) return;
  ws->last_rx = uv_now(ws->tcp.loop);
  int r = uv_read_start((uv_stream_t *)&ws->tcp, alloc_cb, read_cb);
  if (r != 0 && r != UV_EALREADY) {
    ws_close_handles(ws);
    return;
  }
  ws_feed(ws);
}
