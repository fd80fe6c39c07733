/* SPDX-License-Identifier: MIT */
/* STOMP over TCP and TLS. Input is handed up one frame at a time (the
 * stream framer finds the ends), so a session paused between two frames
 * leaves the rest in this connection's buffer and, past a bound, in the
 * client's TCP window, as a WebSocket's would. Output is gathered per loop
 * iteration in a check handle and written with one uv_write per socket. */
#include "stomp_tcp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admission.h"
#include "log.h"
#include "metrics.h"
#include "stompgate/buf.h"
#include "stompgate/container.h"
#include "stompgate/err.h"
#include "stompgate/proxy_proto.h"
#include "stompgate/stomp_codec.h"
#include "stompgate/stomp_stream.h"
#include "conn.h"
#include "transport.h"

#define ST_READ_CHUNK 65536
/* At most this much in uv_write at once: a client that stops reading
 * leaves the rest in out, where the session's slow-consumer check sees
 * it. */
#define ST_WRITE_CHUNK (1u << 20)
/* Input a paused connection still reads, so that it sees the peer leave. */
#define ST_PAUSED_MAX 65536
#define ST_LINGER_MS 2000
#define ST_CLOSE_TIMEOUT_MS 5000

enum { ST_OPEN = 0, ST_CLOSING, ST_CLOSED };

typedef struct st_conn st_conn_t;
struct st_conn {
  sg_transport_t tr; /* what the session sees */
  sg_conn_t conn;    /* the TCP connection, plain or TLS (--stomp-tls) */
  uv_timer_t timer;  /* close timeout, then the linger after our FIN */
  const sg_config_t *cfg;
  sg_session_ctx_t *ctx;
  sg_stomp_stream_t framer;
  sg_buf_t in;       /* read but not handed up: while paused, or TLS plaintext */
  size_t in_off;     /* first byte of in not handed up */
  sg_buf_t out;      /* queued plaintext not yet handed to uv_write */
  size_t fresh;      /* bytes queued since the last flush began */
  int state;
  int handles_open;
  unsigned gone : 1;         /* on_gone_cb was called */
  unsigned shut : 1;         /* uv_shutdown was requested */
  unsigned opened : 1;       /* a session runs on tr */
  unsigned reading : 1;      /* uv_read_start is in force */
  unsigned delivering : 1;   /* handing input up: no nested delivery */
  unsigned proxy_wait : 1;   /* a PROXY header is due before anything else */
  unsigned proxy_check : 1;  /* the first bytes must not be a PROXY header */
};

/* Every read lands here first; only what is not handed up at once (a
 * paused session, TLS plaintext) is copied into the connection. */
static __thread char read_buf[ST_READ_CHUNK];
static void st_flush(st_conn_t *c);
static void st_close_handles(st_conn_t *c);
static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

int sg_stomp_tcp_loop_init(uv_loop_t *loop) { return sg_conn_loop_init(loop); }

static void queue_flush(st_conn_t *c) {
  if (c->state != ST_CLOSED) sg_conn_queue_flush(&c->conn);
}

static void st_gone(st_conn_t *c) {
  if (c->gone) return;
  c->gone = 1;
  if (c->opened && c->tr.cbs->on_gone_cb) c->tr.cbs->on_gone_cb(&c->tr);
}

static void handle_closed_cb(uv_handle_t *h) {
  st_conn_t *c = h->data;
  if (--c->handles_open > 0) return;
  sg_conn_unqueue_flush(&c->conn);
  sg_conn_closed(&c->conn);
  sg_buf_free(&c->in);
  sg_buf_free(&c->out);
  if (c->opened) c->tr.cbs->on_closed_cb(&c->tr);
  free(c);
}

static void st_close_handles(st_conn_t *c) {
  if (c->state == ST_CLOSED) return;
  c->state = ST_CLOSED;
  st_gone(c);
  uv_close((uv_handle_t *)&c->conn.tcp, handle_closed_cb);
  uv_close((uv_handle_t *)&c->timer, handle_closed_cb);
}

/* Writing */

static void st_flush_cb(sg_conn_t *cn) { st_flush(container_of(cn, st_conn_t, conn)); }

static void st_written(sg_conn_t *cn, size_t n, int status) {
  (void)n;
  st_conn_t *c = container_of(cn, st_conn_t, conn);
  if (c->state == ST_CLOSED) return;
  if (status < 0) {
    sg_log_debug("%s write failed: %s", c->tr.peer, uv_strerror(status));
    st_close_handles(c);
    return;
  }
  /* What waited behind a full chunk goes now. */
  if (c->out.len > 0 || c->state == ST_CLOSING) queue_flush(c);
}

/* Hands c->out to the connection, which encrypts it on TLS. */
static int write_out(st_conn_t *c) {
  if (c->out.len == 0) return 0;
  int r = sg_conn_write(&c->conn, &c->out);
  if (r < 0) sg_log_debug("%s write failed: %s", c->tr.peer, sg_conn_error(&c->conn));
  return r;
}

static void linger_cb(uv_timer_t *t) { st_close_handles(container_of(t, st_conn_t, timer)); }

static void shutdown_cb(sg_conn_t *conn, int status) {
  st_conn_t *c = container_of(conn, st_conn_t, conn);
  if (c->state == ST_CLOSED) return;
  if (status < 0) {
    st_close_handles(c);
    return;
  }
  /* The peer has our last bytes; give it a moment to close its side, so
   * that unread input does not turn the close into a reset that could
   * overtake the ERROR frame. What it still sends is read and dropped. */
  uv_timer_start(&c->timer, linger_cb, ST_LINGER_MS, 0);
  if (!c->reading && uv_read_start((uv_stream_t *)&c->conn.tcp, alloc_cb, read_cb) == 0) c->reading = 1;
}

static void begin_shutdown(st_conn_t *c) {
  if (c->shut || c->state == ST_CLOSED) return;
  c->shut = 1;
  c->state = ST_CLOSING;
  st_gone(c);
  if (sg_conn_shutdown(&c->conn, shutdown_cb) < 0) st_close_handles(c);
}

static void st_flush(st_conn_t *c) {
  if (c->state == ST_CLOSED || c->shut) return;
  /* Plaintext waits for the TLS handshake; the read that completes it
   * queues the flush again. */
  if (!sg_conn_ready(&c->conn)) return;
  c->fresh = 0;
  if (c->conn.inflight < ST_WRITE_CHUNK && write_out(c) < 0) {
    st_close_handles(c);
    return;
  }
  if (c->state == ST_CLOSING && c->out.len == 0) begin_shutdown(c);
}

static void close_timeout_cb(uv_timer_t *t) {
  st_conn_t *c = container_of(t, st_conn_t, timer);
  sg_log_debug("%s close timed out with %zu bytes unwritten", c->tr.peer,
               c->conn.inflight + c->out.len);
  st_close_handles(c);
}

/* Reading */

/* Hands data[0..len) up frame by frame until the session pauses or the
 * connection closes. Returns the bytes handed up (all of them once the
 * connection is closing: the rest is dropped). */
static size_t deliver(st_conn_t *c, const char *data, size_t len) {
  size_t off = 0;
  c->delivering = 1;
  while (off < len && c->state == ST_OPEN && !c->tr.paused) {
    int end;
    size_t n = sg_stomp_stream_scan(&c->framer, data + off, len - off, &end);
    c->tr.cbs->on_message_cb(&c->tr, (const uint8_t *)data + off, n, 0);
    off += n;
  }
  c->delivering = 0;
  return c->state == ST_OPEN ? off : len;
}

/* Hands up what waits in c->in. */
static void deliver_buffered(st_conn_t *c) {
  if (c->delivering || c->in_off == c->in.len) return;
  c->in_off += deliver(c, c->in.base + c->in_off, c->in.len - c->in_off);
  if (c->in_off == c->in.len) {
    /* An idle connection holds no input buffer. */
    sg_buf_free(&c->in);
    c->in_off = 0;
  }
}

static void compact_in(st_conn_t *c) {
  if (c->in_off == 0) return;
  sg_buf_consume(&c->in, c->in_off);
  c->in_off = 0;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h, (void)suggested;
  *buf = uv_buf_init(read_buf, sizeof(read_buf));
}

static void proxy_input(st_conn_t *c, const char *data, size_t len);

/* Bytes from the client (data is borrowed; not c->in). */
static void st_input(st_conn_t *c, const char *data, size_t len) {
  uv_stream_t *s = (uv_stream_t *)&c->conn.tcp;
  if (!sg_conn_reads_in_place(&c->conn) && !c->shut) {
    /* What was read is not the plaintext (TLS): the connection's type
     * turns it into the plaintext, appended to c->in. */
    compact_in(c);
    int r = sg_conn_feed(&c->conn, data, len, &c->in);
    if (r < 0) {
      sg_log_info("%s %s failed: %s", c->tr.peer, c->conn.type->name, sg_conn_error(&c->conn));
      st_close_handles(c);
      return;
    }
    if (r == 1) {
      /* close_notify: the frames before it count, as those before a FIN
       * do on a plain connection. */
      if (c->state == ST_OPEN) deliver_buffered(c);
      st_close_handles(c);
      return;
    }
    /* What was queued before the handshake ended (a refusal) goes now. */
    if (c->out.len > 0) queue_flush(c);
    if (c->state != ST_OPEN) {
      sg_buf_free(&c->in);
      c->in_off = 0;
      return;
    }
    deliver_buffered(c);
  } else {
    if (c->state != ST_OPEN) return; /* closing: dropped */
    if (c->in_off == c->in.len && !c->tr.paused) {
      size_t used = deliver(c, data, len);
      data += used;
      len -= used;
    }
    if (len > 0 && c->state == ST_OPEN) {
      compact_in(c);
      if (sg_buf_append(&c->in, data, len) != 0) {
        st_close_handles(c);
        return;
      }
      deliver_buffered(c);
    }
  }
  if (c->state == ST_OPEN && c->tr.paused && c->in.len - c->in_off >= ST_PAUSED_MAX &&
      c->reading) {
    /* Held for resume; past the bound the client's writes back up in
     * TCP. */
    uv_read_stop(s);
    c->reading = 0;
  }
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  st_conn_t *c = s->data;
  if (nread == 0) return;
  if (nread < 0) {
    if (c->proxy_wait && c->state != ST_CLOSED) {
      const char *why = c->in.len > 0 ? "truncated" : "no_header";
      sg_conn_proxy_refused(c->tr.peer, why);
    } else if (nread != UV_EOF) {
      sg_log_debug("%s read failed: %s", c->tr.peer, uv_strerror((int)nread));
    }
    st_close_handles(c);
    return;
  }
  sg_metrics_bytes_in((size_t)nread);
  if (c->state == ST_CLOSED) return;
  c->tr.last_rx = uv_now(s->loop);
  if (c->proxy_wait || c->proxy_check) proxy_input(c, buf->base, (size_t)nread);
  else st_input(c, buf->base, (size_t)nread);
}

/* The transport's functions */

static int tr_send(sg_transport_t *t, const void *data, size_t len, int binary) {
  (void)binary; /* a byte stream has no text or binary messages */
  st_conn_t *c = container_of(t, st_conn_t, tr);
  if (c->state != ST_OPEN) return UV_EPIPE;
  if (sg_buf_append(&c->out, data, len) != 0) return SG_ERR_NOMEM;
  c->fresh += len;
  c->tr.last_tx = uv_now(c->conn.tcp.loop);
  queue_flush(c);
  return 0;
}

static size_t tr_backlog(const sg_transport_t *t) {
  const st_conn_t *c = container_of(t, const st_conn_t, tr);
  size_t p = c->conn.inflight + c->out.len;
  return p > c->fresh ? p - c->fresh : 0;
}

/* Reading goes on while paused, up to ST_PAUSED_MAX bytes not handed up,
 * so that a client leaving while it waits is noticed at once. */
static void tr_pause(sg_transport_t *t) {
  st_conn_t *c = container_of(t, st_conn_t, tr);
  if (c->tr.paused || c->state != ST_OPEN) return;
  c->tr.paused = 1;
}

static void tr_resume(sg_transport_t *t) {
  st_conn_t *c = container_of(t, st_conn_t, tr);
  if (!c->tr.paused) return;
  c->tr.paused = 0;
  if (c->state != ST_OPEN) return;
  c->tr.last_rx = uv_now(c->conn.tcp.loop);
  if (!c->reading) {
    int r = uv_read_start((uv_stream_t *)&c->conn.tcp, alloc_cb, read_cb);
    if (r != 0 && r != UV_EALREADY) {
      st_close_handles(c);
      return;
    }
    c->reading = 1;
  }
  deliver_buffered(c);
}

/* STOMP has no close frame: the ERROR (if any) was queued before this, so
 * the connection ends with a FIN once everything queued is written. code
 * and reason are for WebSocket clients. */
static void tr_close(sg_transport_t *t, uint16_t code, const char *reason) {
  (void)code, (void)reason;
  st_conn_t *c = container_of(t, st_conn_t, tr);
  if (c->state != ST_OPEN) return;
  c->state = ST_CLOSING;
  uv_timer_start(&c->timer, close_timeout_cb, ST_CLOSE_TIMEOUT_MS, 0);
  queue_flush(c);
}

static const sg_transport_ops_t st_ops = {tr_send, tr_backlog, tr_pause, tr_resume, tr_close};

/* Accepting */

/* An admission refusal: an ERROR frame (headers without escapes, since
 * no version was agreed), then close. */
static void refuse(st_conn_t *c, const char *reason) {
  sg_log_info("%s STOMP connection refused: %s", c->tr.peer, reason);
  sg_metrics_error(reason);
  sg_stomp_encode_start(&c->out, SG_STOMP_ERROR);
  sg_stomp_encode_headerz(&c->out, 10, SG_STOMP_ERROR, "message", reason);
  sg_stomp_encode_finish(&c->out, NULL, 0);
  c->state = ST_CLOSING;
  uv_timer_start(&c->timer, close_timeout_cb, ST_CLOSE_TIMEOUT_MS, 0);
  queue_flush(c);
}

/* Admission (by the client's address), then the session. 0 or an error;
 * a refusal is not one. */
static int admit_and_open(st_conn_t *c) {
  uv_loop_t *loop = c->conn.tcp.loop;
  sg_http_request_t none; /* no HTTP request: no Origin to check */
  memset(&none, 0, sizeof(none));
  sg_admit_refusal_t no;
  if (sg_admit(c->cfg, &none, c->tr.peer, sg_session_count(), uv_now(loop), &no)) {
    sg_metrics_stomp_tcp(0);
    refuse(c, no.reason);
    return 0;
  }
  sg_metrics_stomp_tcp(1);
  int r = sg_session_open(&c->tr, c->ctx, 0);
  if (r != 0) {
    st_close_handles(c);
    return r;
  }
  c->opened = 1;
  return 0;
}

/* The PROXY protocol (--proxy-protocol), as on the WebSocket listener: a
 * trusted proxy's connection begins with a header naming the client,
 * before TLS or STOMP; from any other peer a header is refused. There is
 * no one to answer: such a connection is logged, counted and closed. */
static void proxy_refuse(st_conn_t *c, const char *why) {
  sg_conn_proxy_refused(c->tr.peer, why);
  c->proxy_wait = c->proxy_check = 0;
  st_close_handles(c);
}

static void proxy_timeout_cb(uv_timer_t *t) {
  st_conn_t *c = container_of(t, st_conn_t, timer);
  if (c->proxy_wait) proxy_refuse(c, c->in.len > 0 ? "truncated" : "no_header");
}

static void proxy_input(st_conn_t *c, const char *data, size_t len) {
  sg_proxy_info_t info;
  if (c->proxy_check) {
    /* From another peer: the first bytes must not begin a header (a
     * partial signature of four bytes or more counts). */
    c->proxy_check = 0;
    if (sg_conn_proxy_unexpected(data, len)) {
      proxy_refuse(c, "untrusted");
      return;
    }
    st_input(c, data, len);
    return;
  }
  if (sg_buf_append(&c->in, data, len) != 0) {
    st_close_handles(c);
    return;
  }
  int r = sg_proxy_parse((const uint8_t *)c->in.base, c->in.len, &info);
  if (r == SG_ERR_AGAIN) return; /* bounded: the parser refuses a header too long */
  if (r < 0) {
    proxy_refuse(c, info.why);
    return;
  }
  c->proxy_wait = 0;
  uv_timer_stop(&c->timer);
  sg_metrics_proxy_header(info.version);
  if (!info.local) {
    char was[sizeof(c->tr.peer)];
    memcpy(was, c->tr.peer, sizeof(was));
    sg_conn_name_peer(&c->conn, c->cfg, &info.src, c->tr.peer, sizeof(c->tr.peer));
    sg_log_debug("%s PROXY v%d header names the client %s", was, info.version, c->tr.peer);
  }
  /* The client's bytes after the header go through the usual path, which
   * fills c->in itself. */
  sg_buf_t rest = c->in;
  size_t off = info.header_len;
  sg_buf_init(&c->in);
  c->in_off = 0;
  if (admit_and_open(c) == 0 && off < rest.len) st_input(c, rest.base + off, rest.len - off);
  sg_buf_free(&rest);
}

int sg_stomp_tcp_accept(uv_stream_t *server, sg_session_ctx_t *ctx) {
  uv_loop_t *loop = server->loop;
  st_conn_t *c = calloc(1, sizeof(*c));
  if (c == NULL) return SG_ERR_NOMEM;
  c->cfg = ctx->cfg;
  c->ctx = ctx;
  c->tr.ops = &st_ops;
  c->tr.loop = loop;
  sg_stomp_stream_init(&c->framer);
  int r = sg_conn_init(loop, &c->conn);
  if (r) {
    free(c);
    return r;
  }
  c->conn.on_written = st_written;
  c->conn.on_flush = st_flush_cb;
  c->conn.tcp.data = c;
  c->handles_open = 1;
  if ((r = uv_timer_init(loop, &c->timer)) != 0) {
    c->state = ST_CLOSED;
    uv_close((uv_handle_t *)&c->conn.tcp, handle_closed_cb);
    return r;
  }
  c->timer.data = c;
  c->handles_open = 2;
  if ((r = uv_accept(server, (uv_stream_t *)&c->conn.tcp)) != 0) {
    st_close_handles(c);
    return r;
  }
  sg_conn_name_socket_peer(&c->conn, c->cfg, c->tr.peer, sizeof(c->tr.peer));
  c->tr.last_rx = c->tr.last_tx = uv_now(loop);
  if ((r = sg_conn_start(&c->conn, c->cfg, SG_CONN_STOMP)) != 0) {
    st_close_handles(c);
    return r;
  }
  if ((r = uv_read_start((uv_stream_t *)&c->conn.tcp, alloc_cb, read_cb)) != 0) {
    st_close_handles(c);
    return r;
  }
  c->reading = 1;
  /* A trusted proxy must send the PROXY header; anyone else must not. The
   * session (and admission, by the client's address) waits for the
   * header, at most the handshake timeout. */
  if (c->cfg->proxy_protocol) {
    c->proxy_wait = c->conn.peer_trusted;
    c->proxy_check = !c->conn.peer_trusted;
  }
  if (c->proxy_wait) {
    uv_timer_start(&c->timer, proxy_timeout_cb, c->cfg->handshake_timeout_ms, 0);
    return 0;
  }
  return admit_and_open(c);
}
