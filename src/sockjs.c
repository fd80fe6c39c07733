/* SPDX-License-Identifier: MIT */
/* SockJS xhr sessions: a process-wide registry of session ids, one inbox
 * per worker that receives connections handed over from other workers,
 * and the sessions themselves, which queue a STOMP session's messages
 * until a receiving request (xhr_streaming or xhr) takes them. */
#include "sockjs.h"

#include <openssl/rand.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admission.h"
#include "log.h"
#include "metrics.h"
#include "stompgate/container.h"
#include "stompgate/err.h"

#define SJ_MAX_WORKERS 64
#define SJ_BUCKETS 1024
#define SJ_PRELUDE 2048

typedef struct sj_worker sj_worker_t;
typedef struct sj_sess sj_sess_t;

/* A connection handed from one worker to another, with what was read. */
typedef struct sj_handoff {
  struct sj_handoff *next;
  sg_conn_export_t conn;
  char peer[64];
  size_t len;
  char bytes[];
} sj_handoff_t;

struct sj_worker {
  uv_async_t async;
  uv_mutex_t lock; /* guards head/tail */
  sj_handoff_t *head, **tail;
  uv_loop_t *loop;
  sg_session_ctx_t *ctx;
  int id;
};

/* Registry entry. sess is set and read only by the owning worker; the
 * others read worker, to know where to send a request. */
typedef struct sj_entry {
  struct sj_entry *next;
  int worker;
  sj_sess_t *sess; /* NULL while the owner has not created it yet */
  char id[SG_SOCKJS_ID_MAX + 1];
} sj_entry_t;

enum { SJ_OPEN = 0, SJ_CLOSING, SJ_CLOSED };

/* One receiving or sending request on a connection handed over by http.c:
 * the response is written as it comes, then the connection ends (a FIN,
 * and a moment for the client's). Input is read only to notice the client
 * leaving. */
enum { SJC_OPEN = 0, SJC_ENDING, SJC_CLOSED };
typedef struct sj_conn {
  sg_conn_t conn;
  uv_timer_t linger;
  const sg_config_t *cfg;
  int state;
  int handles;
  char peer[64];
  sj_sess_t *sess;  /* while it is the session's receiving request */
  int streaming;    /* xhr_streaming (chunked) rather than xhr polling */
  size_t written;   /* frame bytes of this response */
  char origin[256];
} sj_conn_t;

struct sj_sess {
  sg_transport_t tr; /* the STOMP session runs on this */
  sj_worker_t *w;
  sj_entry_t *entry;
  uv_timer_t expire;  /* no receiving request for the disconnect delay */
  uv_timer_t beat;    /* heartbeat frames */
  uv_timer_t flush;   /* batches the messages of one loop iteration */
  int handles;
  int state;
  sj_conn_t *recv;    /* the receiving request, if any */
  sg_buf_t queue;     /* quoted messages not sent yet, comma-separated */
  char close_frame[200];
  unsigned close_owed : 1; /* close_frame not sent yet */
  unsigned gone : 1;       /* on_gone_cb called */
  unsigned opened : 1;     /* a STOMP session runs on tr */
};

static sj_worker_t *workers[SJ_MAX_WORKERS];
static uv_once_t reg_once = UV_ONCE_INIT;
static uv_mutex_t reg_lock;
static sj_entry_t *buckets[SJ_BUCKETS];
static atomic_size_t nsessions;

uint32_t sg_sockjs_entropy(void) {
  uint32_t v = 0;
  if (RAND_bytes((unsigned char *)&v, sizeof(v)) != 1) v = (uint32_t)uv_hrtime();
  return v;
}

static void reg_init(void) { uv_mutex_init(&reg_lock); }

static unsigned id_hash(const char *p, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 16777619u;
  return h % SJ_BUCKETS;
}

/* Under reg_lock. */
static sj_entry_t *reg_find(const char *id, size_t n) {
  for (sj_entry_t *e = buckets[id_hash(id, n)]; e; e = e->next)
    if (strlen(e->id) == n && memcmp(e->id, id, n) == 0) return e;
  return NULL;
}

/* Under reg_lock: a new entry owned by worker, or NULL. */
static sj_entry_t *reg_add(const char *id, size_t n, int worker) {
  sj_entry_t *e = calloc(1, sizeof(*e));
  if (e == NULL) return NULL;
  memcpy(e->id, id, n);
  e->worker = worker;
  unsigned h = id_hash(id, n);
  e->next = buckets[h];
  buckets[h] = e;
  nsessions++;
  return e;
}

static void reg_remove(sj_entry_t *e) {
  uv_mutex_lock(&reg_lock);
  for (sj_entry_t **p = &buckets[id_hash(e->id, strlen(e->id))]; *p; p = &(*p)->next) {
    if (*p == e) {
      *p = e->next;
      nsessions--;
      break;
    }
  }
  uv_mutex_unlock(&reg_lock);
  free(e);
}

/* ---------- the request's connection ---------- */

#define SJC_LINGER_MS 2000

static __thread char sjc_read_buf[4096];

static void sjc_gone(sj_conn_t *c);

static void sjc_handle_closed(uv_handle_t *h) {
  sj_conn_t *c = h->data;
  if (--c->handles > 0) return;
  sg_conn_closed(&c->conn);
  free(c);
}

static void sjc_close(sj_conn_t *c) {
  if (c->state == SJC_CLOSED) return;
  c->state = SJC_CLOSED;
  sjc_gone(c);
  uv_close((uv_handle_t *)&c->conn.tcp, sjc_handle_closed);
  uv_close((uv_handle_t *)&c->linger, sjc_handle_closed);
}

static void sjc_written(sg_conn_t *cn, size_t n, int status) {
  (void)n;
  sj_conn_t *c = container_of(cn, sj_conn_t, conn);
  if (status < 0 && c->state != SJC_CLOSED) {
    sg_log_debug("%s write failed: %s", c->peer, uv_strerror(status));
    sjc_close(c);
  }
}

static void sjc_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h, (void)suggested;
  *buf = uv_buf_init(sjc_read_buf, sizeof(sjc_read_buf));
}

/* What the client sends after its request is dropped (through the
 * connection's type, which answers TLS alerts); its end ends this. */
static void sjc_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  sj_conn_t *c = st->data;
  if (nread == 0 || c->state == SJC_CLOSED) return;
  if (nread < 0) {
    sjc_close(c);
    return;
  }
  sg_metrics_bytes_in((size_t)nread);
  sg_buf_t plain;
  sg_buf_init(&plain);
  int r = sg_conn_feed(&c->conn, buf->base, (size_t)nread, &plain);
  sg_buf_free(&plain);
  if (r != 0) sjc_close(c);
}

/* Queues bytes (copied) of the response. */
static void sjc_write(sj_conn_t *c, const void *data, size_t len) {
  if (c->state != SJC_OPEN || len == 0) return;
  sg_buf_t b;
  sg_buf_init(&b);
  if (sg_buf_append(&b, data, len) != 0 || sg_conn_write(&c->conn, &b) != 0) {
    sg_buf_free(&b);
    sjc_close(c);
  }
}

static void sjc_linger_cb(uv_timer_t *t) { sjc_close(t->data); }

static void sjc_shutdown_cb(sg_conn_t *conn, int status) {
  sj_conn_t *c = container_of(conn, sj_conn_t, conn);
  if (c->state == SJC_CLOSED) return;
  if (status < 0) {
    sjc_close(c);
    return;
  }
  uv_timer_start(&c->linger, sjc_linger_cb, SJC_LINGER_MS, 0);
}

/* The response is complete: a FIN once it is written. */
static void sjc_end(sj_conn_t *c) {
  if (c->state != SJC_OPEN) return;
  c->state = SJC_ENDING;
  if (sg_conn_shutdown(&c->conn, sjc_shutdown_cb) < 0) sjc_close(c);
}

/* Takes the connection of a request handed over (x, taken) on loop. NULL
 * when nothing could be made (x is freed then). */
static sj_conn_t *sjc_import(uv_loop_t *loop, const sg_config_t *cfg, sg_conn_export_t *x,
                             const char *peer) {
  sj_conn_t *c = calloc(1, sizeof(*c));
  if (c == NULL || sg_conn_init(loop, &c->conn) != 0) {
    free(c);
    sg_conn_export_drop(x);
    if (x->state) x->type->free_state(x->state);
    return NULL;
  }
  uv_timer_init(loop, &c->linger);
  c->conn.tcp.data = c->linger.data = c;
  c->conn.on_written = sjc_written;
  c->handles = 2;
  c->cfg = cfg;
  snprintf(c->peer, sizeof(c->peer), "%s", peer);
  if (sg_conn_import(&c->conn, x) != 0 ||
      uv_read_start((uv_stream_t *)&c->conn.tcp, sjc_alloc, sjc_read) != 0) {
    c->state = SJC_OPEN;
    sjc_close(c);
    return NULL;
  }
  return c;
}

/* ---------- responses ---------- */

static sg_http_slice_t conn_origin(const sj_conn_t *c) {
  return (sg_http_slice_t){c->origin, strlen(c->origin)};
}

/* A whole response, then the end of the connection. */
static void conn_respond(sj_conn_t *c, int status, const char *ctype, const char *body,
                         size_t len) {
  sg_buf_t b;
  sg_buf_init(&b);
  if (sg_sockjs_response(&b, status, conn_origin(c), ctype, body, len) == 0)
    sjc_write(c, b.base, b.len);
  sg_buf_free(&b);
  sjc_end(c);
}

static void conn_text(sj_conn_t *c, int status, const char *body) {
  conn_respond(c, status, "text/plain; charset=UTF-8", body, strlen(body));
}

/* Starts the chunked response of xhr_streaming with its prelude. */
static int conn_stream_start(sj_conn_t *c) {
  sg_buf_t b;
  sg_buf_init(&b);
  sg_http_slice_t none = {0};
  int r = sg_buf_appendz(&b, "HTTP/1.1 200 OK\r\n"
                             "Content-Type: application/javascript; charset=UTF-8\r\n"
                             "Transfer-Encoding: chunked\r\n"
                             "Cache-Control: no-store, no-cache, no-transform, must-revalidate, "
                             "max-age=0\r\n"
                             "Connection: close\r\n");
  if (r == 0) r = sg_sockjs_cors(&b, conn_origin(c), none);
  /* Some browsers deliver nothing of a streamed response before 2 KiB. */
  if (r == 0) r = sg_buf_printf(&b, "\r\n%x\r\n", SJ_PRELUDE + 1);
  if (r == 0 && sg_buf_reserve(&b, SJ_PRELUDE + 4) == 0) {
    memset(b.base + b.len, 'h', SJ_PRELUDE);
    b.len += SJ_PRELUDE;
    r = sg_buf_appendz(&b, "\n\r\n");
  } else {
    r = SG_ERR_NOMEM;
  }
  if (r == 0) sjc_write(c, b.base, b.len);
  sg_buf_free(&b);
  return r != 0 || c->state != SJC_OPEN ? SG_ERR_NOMEM : 0;
}

/* Sends one frame (without its newline) on the receiving request. Returns
 * 1 when the request is complete and must end (a poll answers one frame;
 * a stream ends at the response limit), else 0. */
static int conn_frame(sj_conn_t *c, const char *f, size_t len) {
  c->written += len + 1;
  if (!c->streaming) {
    sg_buf_t body;
    sg_buf_init(&body);
    if (sg_buf_append(&body, f, len) == 0 && sg_buf_append(&body, "\n", 1) == 0)
      conn_respond(c, 200, "application/javascript; charset=UTF-8", body.base, body.len);
    else
      sjc_end(c);
    sg_buf_free(&body);
    return 1;
  }
  sg_buf_t b;
  sg_buf_init(&b);
  if (sg_buf_printf(&b, "%zx\r\n", len + 1) == 0 && sg_buf_append(&b, f, len) == 0 &&
      sg_buf_append(&b, "\n\r\n", 3) == 0)
    sjc_write(c, b.base, b.len);
  sg_buf_free(&b);
  return c->written >= c->cfg->sockjs_response_limit;
}

static void conn_end(sj_conn_t *c) {
  if (c->streaming) sjc_write(c, "0\r\n\r\n", 5);
  sjc_end(c);
}

/* ---------- sessions ---------- */

static void expire_cb(uv_timer_t *t);

static void sess_wait(sj_sess_t *s) {
  uv_timer_start(&s->expire, expire_cb, s->w->ctx->cfg->sockjs_disconnect_ms, 0);
}

/* The receiving request is done: end it, and wait for the next. */
static void sess_detach(sj_sess_t *s) {
  sj_conn_t *c = s->recv;
  if (c == NULL) return;
  s->recv = NULL;
  c->sess = NULL;
  conn_end(c);
  sess_wait(s);
}

/* Sends what is queued on the receiving request. */
static void sess_flush(sj_sess_t *s) {
  sj_conn_t *c = s->recv;
  if (c == NULL) return;
  int done = 0;
  if (s->queue.len > 0) {
    sg_buf_t f;
    sg_buf_init(&f);
    if (sg_buf_reserve(&f, s->queue.len + 3) == 0) {
      sg_buf_append(&f, "a[", 2);
      sg_buf_append(&f, s->queue.base, s->queue.len);
      sg_buf_append(&f, "]", 1);
      done = conn_frame(c, f.base, f.len);
    }
    sg_buf_free(&f);
    sg_buf_reset(&s->queue);
  }
  if (!done && s->close_owed) {
    s->close_owed = 0;
    s->state = SJ_CLOSED;
    conn_frame(c, s->close_frame, strlen(s->close_frame));
    done = 1;
  }
  if (done) sess_detach(s);
}

static void flush_cb(uv_timer_t *t) { sess_flush(container_of(t, sj_sess_t, flush)); }

static void beat_cb(uv_timer_t *t) {
  sj_sess_t *s = container_of(t, sj_sess_t, beat);
  if (s->recv && conn_frame(s->recv, "h", 1)) sess_detach(s);
}

static void sess_handle_closed(uv_handle_t *h) {
  sj_sess_t *s = h->data;
  if (--s->handles > 0) return;
  sg_buf_free(&s->queue);
  if (s->opened) s->tr.cbs->on_closed_cb(&s->tr);
  free(s);
}

/* The client stopped asking: the session ends, and the STOMP session on it. */
static void sess_expire(sj_sess_t *s) {
  sg_log_debug("SockJS session %s expired", s->entry->id);
  reg_remove(s->entry);
  s->entry = NULL;
  s->state = SJ_CLOSED;
  if (s->recv) {
    s->recv->sess = NULL;
    conn_end(s->recv);
    s->recv = NULL;
  }
  if (s->opened && !s->gone) {
    s->gone = 1;
    s->tr.cbs->on_gone_cb(&s->tr);
  }
  uv_close((uv_handle_t *)&s->expire, sess_handle_closed);
  uv_close((uv_handle_t *)&s->beat, sess_handle_closed);
  uv_close((uv_handle_t *)&s->flush, sess_handle_closed);
}

static void expire_cb(uv_timer_t *t) { sess_expire(container_of(t, sj_sess_t, expire)); }

/* Transport operations for the STOMP session. */

static int tr_send(sg_transport_t *t, const void *data, size_t len, int binary) {
  (void)binary; /* SockJS carries text: other bytes are escaped */
  sj_sess_t *s = container_of(t, sj_sess_t, tr);
  if (s->state != SJ_OPEN) return UV_EPIPE;
  if (s->queue.len > 0 && sg_buf_append(&s->queue, ",", 1) != 0) return SG_ERR_NOMEM;
  if (sg_sockjs_quote(&s->queue, data, len) != 0) return SG_ERR_NOMEM;
  t->last_tx = uv_now(t->loop);
  if (!uv_is_active((uv_handle_t *)&s->flush)) uv_timer_start(&s->flush, flush_cb, 0, 0);
  return 0;
}

static size_t tr_backlog(const sg_transport_t *t) {
  const sj_sess_t *s = container_of(t, const sj_sess_t, tr);
  return s->queue.len + (s->recv ? s->recv->conn.inflight : 0);
}

static void tr_pause(sg_transport_t *t) { t->paused = 1; }
static void tr_resume(sg_transport_t *t) { t->paused = 0; }

static void tr_close(sg_transport_t *t, uint16_t code, const char *reason) {
  sj_sess_t *s = container_of(t, sj_sess_t, tr);
  if (s->state != SJ_OPEN) return;
  sg_buf_t b;
  sg_buf_init(&b);
  if (sg_sockjs_frame_close(&b, code, reason) != 0 || b.len >= sizeof(s->close_frame)) {
    sg_buf_reset(&b);
    sg_sockjs_frame_close(&b, code, "");
  }
  snprintf(s->close_frame, sizeof(s->close_frame), "%s", b.base ? b.base : "c[1011,\"\"]");
  sg_buf_free(&b);
  s->state = SJ_CLOSING;
  s->close_owed = 1;
  if (!uv_is_active((uv_handle_t *)&s->flush)) uv_timer_start(&s->flush, flush_cb, 0, 0);
}

static const sg_transport_ops_t sess_ops = {tr_send, tr_backlog, tr_pause, tr_resume, tr_close};

static sj_sess_t *sess_new(sj_worker_t *w, sj_entry_t *e, const char *peer) {
  sj_sess_t *s = calloc(1, sizeof(*s));
  if (s == NULL) return NULL;
  s->w = w;
  s->entry = e;
  s->tr.ops = &sess_ops;
  s->tr.loop = w->loop;
  s->tr.last_rx = s->tr.last_tx = uv_now(w->loop);
  snprintf(s->tr.peer, sizeof(s->tr.peer), "%s", peer);
  sg_buf_init(&s->queue);
  uv_timer_init(w->loop, &s->expire);
  uv_timer_init(w->loop, &s->beat);
  uv_timer_init(w->loop, &s->flush);
  s->expire.data = s->beat.data = s->flush.data = s;
  s->handles = 3;
  uint64_t hb = w->ctx->cfg->sockjs_heartbeat_ms;
  uv_timer_start(&s->beat, beat_cb, hb, hb);
  sess_wait(s);
  return s;
}

/* ---------- requests on the owning worker ---------- */

/* The client went away: a receiving request lets its session wait for the
 * next. */
static void sjc_gone(sj_conn_t *c) {
  sj_sess_t *s = c->sess;
  if (s == NULL || s->recv != c) return;
  /* The client went away mid-response: what was written may be lost, as
   * with any SockJS server; what is queued waits for the next request. */
  s->recv = NULL;
  c->sess = NULL;
  sess_wait(s);
}

/* The session id names a session of this worker: its sj_sess_t, or NULL. */
static sj_sess_t *local_sess(sj_worker_t *w, sg_http_slice_t id) {
  uv_mutex_lock(&reg_lock);
  sj_entry_t *e = reg_find(id.p, id.len);
  sj_sess_t *s = e && e->worker == w->id ? e->sess : NULL;
  uv_mutex_unlock(&reg_lock);
  return s;
}

static void do_xhr_send(sj_worker_t *w, sj_conn_t *c, sg_http_slice_t id, const char *body,
                        size_t len) {
  sj_sess_t *s = local_sess(w, id);
  if (s == NULL || s->state != SJ_OPEN) {
    conn_text(c, 404, "Session not found.\n");
    return;
  }
  if (len == 0) {
    conn_text(c, 500, "Payload expected.");
    return;
  }
  sg_buf_t dec;
  sg_buf_init(&dec);
  int n = sg_sockjs_decode(body, len, &dec);
  if (n < 0) {
    sg_buf_free(&dec);
    conn_text(c, 500, n == SG_ERR_NOMEM ? "Internal error." : "Broken JSON encoding.");
    return;
  }
  s->tr.last_rx = uv_now(w->loop);
  size_t off = 0, m;
  const char *p;
  while (s->state == SJ_OPEN && s->opened && sg_sockjs_next(&dec, &off, &p, &m))
    s->tr.cbs->on_message_cb(&s->tr, (const uint8_t *)p, m, 0);
  sg_buf_free(&dec);
  conn_respond(c, 204, "text/plain; charset=UTF-8", NULL, 0);
}

static void do_xhr_recv(sj_worker_t *w, sj_conn_t *c, const sg_http_request_t *req,
                        sg_http_slice_t id) {
  const sg_config_t *cfg = w->ctx->cfg;
  sj_sess_t *s = NULL;
  sj_entry_t *e;
  int fresh = 0;
  uv_mutex_lock(&reg_lock);
  e = reg_find(id.p, id.len);
  if (e != NULL && e->worker != w->id) {
    /* Expired and opened again elsewhere since the hand-over. */
    uv_mutex_unlock(&reg_lock);
    conn_text(c, 404, "Session not found.\n");
    return;
  }
  if (e == NULL) {
    if (nsessions >= cfg->sockjs_max_sessions || (e = reg_add(id.p, id.len, w->id)) == NULL) {
      uv_mutex_unlock(&reg_lock);
      conn_text(c, 503, "Too many SockJS sessions.\n");
      return;
    }
  }
  s = e->sess;
  uv_mutex_unlock(&reg_lock);
  if (s == NULL) {
    sg_admit_refusal_t no;
    if (sg_admit(cfg, req, c->peer, sg_session_count(), uv_now(w->loop), &no)) {
      reg_remove(e);
      conn_text(c, no.status, no.reason);
      return;
    }
    if ((s = sess_new(w, e, c->peer)) == NULL) {
      reg_remove(e);
      conn_text(c, 500, "Internal error.\n");
      return;
    }
    uv_mutex_lock(&reg_lock);
    e->sess = s;
    uv_mutex_unlock(&reg_lock);
    fresh = 1;
    if (sg_session_open(&s->tr, w->ctx, 0) == 0) {
      s->opened = 1;
    } else {
      s->state = SJ_CLOSED;
      snprintf(s->close_frame, sizeof(s->close_frame), "c[1011,\"Internal error\"]");
      s->close_owed = 1;
    }
  }
  if (c->streaming && conn_stream_start(c) != 0) {
    sjc_end(c);
    return;
  }
  if (fresh && conn_frame(c, "o", 1)) {
    conn_end(c);
    return;
  }
  if (s->recv != NULL) {
    conn_frame(c, "c[2010,\"Another connection still open\"]", 39);
    conn_end(c);
    return;
  }
  if (s->state == SJ_CLOSED && !s->close_owed) {
    conn_frame(c, s->close_frame, strlen(s->close_frame));
    conn_end(c);
    return;
  }
  s->recv = c;
  c->sess = s;
  uv_timer_stop(&s->expire);
  sess_flush(s);
}

static void handle(sj_worker_t *w, sj_handoff_t *h) {
  const sg_config_t *cfg = w->ctx->cfg;
  sg_http_request_t req;
  sg_http_upgrade_opts_t opts = {"/", cfg->max_head_size};
  sg_sockjs_route_t rt;
  sg_http_upgrade_parse(h->bytes, h->len, &opts, &req);
  sg_sockjs_route(cfg->sockjs_prefix, req.path.p, req.path.len, &rt);
  sg_log_debug("%s SockJS %.*s on worker %d", h->peer, (int)req.path.len, req.path.p, w->id);
  sj_conn_t *c = sjc_import(w->loop, cfg, &h->conn, h->peer);
  if (c == NULL) return;
  if (req.origin.len > 0 && req.origin.len < sizeof(c->origin))
    memcpy(c->origin, req.origin.p, req.origin.len);
  c->streaming = rt.transport == SG_SOCKJS_T_XHR_STREAMING;
  if (rt.transport == SG_SOCKJS_T_XHR_SEND)
    do_xhr_send(w, c, rt.session, h->bytes + req.head_len, h->len - req.head_len);
  else
    do_xhr_recv(w, c, &req, rt.session);
}

static void async_cb(uv_async_t *a) {
  sj_worker_t *w = a->data;
  uv_mutex_lock(&w->lock);
  sj_handoff_t *h = w->head;
  w->head = NULL;
  w->tail = &w->head;
  uv_mutex_unlock(&w->lock);
  while (h != NULL) {
    sj_handoff_t *next = h->next;
    handle(w, h);
    free(h);
    h = next;
  }
}

int sg_sockjs_worker_init(uv_loop_t *loop, int id, sg_session_ctx_t *ctx) {
  uv_once(&reg_once, reg_init);
  if (id < 0 || id >= SJ_MAX_WORKERS) return UV_EINVAL;
  sj_worker_t *w = calloc(1, sizeof(*w));
  if (w == NULL) return UV_ENOMEM;
  int r = uv_async_init(loop, &w->async, async_cb);
  if (r) {
    free(w);
    return r;
  }
  /* Workers live as long as the process; the async handle must not keep
   * a stopping loop alive. */
  uv_unref((uv_handle_t *)&w->async);
  uv_mutex_init(&w->lock);
  w->async.data = w;
  w->tail = &w->head;
  w->loop = loop;
  w->ctx = ctx;
  w->id = id;
  workers[id] = w;
  return 0;
}

int sg_sockjs_dispatch(uv_loop_t *loop, const sg_sockjs_route_t *rt, const char *bytes,
                       size_t len, const sg_conn_export_t *x, const char *peer) {
  int self = -1;
  for (int i = 0; i < SJ_MAX_WORKERS && self < 0; i++)
    if (workers[i] && workers[i]->loop == loop) self = i;
  if (self < 0) return SG_ERR_INVALID;
  int target;
  uv_mutex_lock(&reg_lock);
  sj_entry_t *e = reg_find(rt->session.p, rt->session.len);
  if (e != NULL) target = e->worker;
  else if (rt->transport == SG_SOCKJS_T_XHR_SEND) target = -1;
  else target = self; /* a new session opens where it was asked for */
  uv_mutex_unlock(&reg_lock);
  if (target < 0) return 404;
  if (target != self) sg_log_debug("%s SockJS request handed from worker %d to %d", peer, self, target);
  sj_handoff_t *h = malloc(sizeof(*h) + len);
  if (h == NULL) return SG_ERR_NOMEM;
  h->next = NULL;
  h->conn = *x;
  snprintf(h->peer, sizeof(h->peer), "%s", peer);
  h->len = len;
  memcpy(h->bytes, bytes, len);
  sj_worker_t *w = workers[target];
  uv_mutex_lock(&w->lock);
  *w->tail = h;
  w->tail = &h->next;
  uv_mutex_unlock(&w->lock);
  uv_async_send(&w->async);
  return 0;
}
