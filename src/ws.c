/* SPDX-License-Identifier: MIT */
/* WebSocket termination: reads the request for the HTTP layer (http.c)
 * to route, then hands bytes to wslay's event API and writes what it
 * produces through the connection (conn.c). Writes are gathered per
 * loop iteration in a check handle, so a burst of messages becomes one
 * uv_write per socket. */
#include "ws.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#include "log.h"
#include "metrics.h"
#include "stompgate/container.h"
#include "stompgate/err.h"
#include "stompgate/proxy_proto.h"
#include "stompgate/utf8.h"

#define WS_READ_CHUNK 65536
#define WS_WRITE_CHUNK (1u << 20)
#define WS_LINGER_MS 2000
#define WS_CLOSE_TIMEOUT_MS 5000
/* Input a paused connection still reads, so that it sees the peer close. */
#define WS_PAUSED_MAX 65536

typedef struct ws_write {
  uv_write_t req;
  sg_ws_t *ws;
  char *base;
  size_t len;
} ws_write_t;

/* Every read lands here first: TLS ciphertext is decrypted into ws->in, and
 * plain bytes are copied there only when a read leaves a partial frame or
 * a handshake behind. Each read is consumed before the next, so one buffer
 * per thread serves every connection and an idle one holds no input
 * buffer at all. */
static __thread char read_buf[WS_READ_CHUNK];

/* Quiet connections park: they free their wslay context, most of an idle
 * session's memory, and make a new one when a byte comes or goes. A
 * thread's sweep looks at its open connections once a second; one quiet
 * for WS_PARK_IDLE_MS between whole messages parks. Freed contexts leave
 * holes in the heap, which malloc_trim gives back to the system. */
#define WS_PARK_IDLE_MS 2000
#define WS_PARK_SWEEP_MS 1000
static __thread uv_timer_t park_sweep;
static __thread sg_ws_t *open_head;
static __thread size_t parked_untrimmed; /* parks since the last malloc_trim */

/* A framed message being built (sg_ws_framing_t), one per thread. */
static __thread sg_buf_t framed;

/* permessage-deflate, per thread: every message sent is compressed on its
 * own (the gateway answers server_no_context_takeover), so one encoder
 * serves every session of the thread and an idle session holds no
 * compression state; the inflater serves clients that start each message
 * afresh. Created on first use. pmd_in holds an inflated message while
 * the layers above read it, and pmd_out a compressed one until wslay has
 * copied it; they are separate because a message handed up may be
 * answered at once. */
static __thread sg_pmd_encoder_t *pmd_encoder;
static __thread sg_pmd_inflater_t *pmd_inflater;
static __thread sg_buf_t pmd_in, pmd_out;
/* Frames of a fan-out share their tail (headers and body); from this
 * length on it is compressed once for all of them (see pmdeflate.h).
 * docs/operations.md (Compression) has the figures. */
#define WS_PMD_SHARED_MIN 1024
/* A scratch buffer grown past this by one big message is given back. */
#define WS_PMD_KEEP (256u << 10)

static void ws_flush(sg_ws_t *ws);
static void ws_close(sg_ws_t *ws, uint16_t code, const char *reason);
static int ws_send(sg_ws_t *ws, const void *data, size_t len, int binary);
static size_t ws_backlog(const sg_ws_t *ws);
static size_t ws_pending(const sg_ws_t *ws);
static void ws_pause(sg_ws_t *ws);
static void ws_resume(sg_ws_t *ws);
static void ws_begin_shutdown(sg_ws_t *ws);
static void ws_close_handles(sg_ws_t *ws);
static void ws_gone(sg_ws_t *ws);
static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void ws_input(sg_ws_t *ws, char *base, size_t n);

static void park_sweep_cb(uv_timer_t *t);

int sg_ws_loop_init(uv_loop_t *loop) {
  int r = sg_conn_loop_init(loop);
  if (r) return r;
  if ((r = uv_timer_init(loop, &park_sweep)) != 0) return r;
  uv_unref((uv_handle_t *)&park_sweep);
  uv_timer_start(&park_sweep, park_sweep_cb, WS_PARK_SWEEP_MS, WS_PARK_SWEEP_MS);
  return 0;
}

void sg_ws_thread_done(void) {
  sg_buf_free(&framed);
  sg_pmd_encoder_free(pmd_encoder);
  pmd_encoder = NULL;
  sg_pmd_inflater_free(pmd_inflater);
  pmd_inflater = NULL;
  sg_buf_free(&pmd_in);
  sg_buf_free(&pmd_out);
}

/* The largest message taken from a client, compressed or not: the STOMP
 * codec answers a frame over max-frame-size with an ERROR; wslay only
 * stops messages far beyond it. */
static size_t ws_max_message(const sg_config_t *cfg) { return cfg->max_frame_size * 2 + 65536; }

static void pmd_trim(sg_buf_t *b) {
  if (b->cap > WS_PMD_KEEP) sg_buf_free(b);
}

static void ws_queue_flush(sg_ws_t *ws) {
  if (ws->state != SG_WS_CLOSED) sg_conn_queue_flush(&ws->conn);
}

static void ws_gone(sg_ws_t *ws) {
  if (ws->gone) return;
  ws->gone = 1;
  if (ws->tr.cbs->on_gone_cb) ws->tr.cbs->on_gone_cb(&ws->tr);
}

static void handle_closed_cb(uv_handle_t *h) {
  sg_ws_t *ws = h->data;
  if (--ws->handles_open > 0) return;
  if (ws->parked) sg_metrics_ws_park(-1);
  ws->parked = 0;
  if (ws->open_pprev) {
    *ws->open_pprev = ws->open_next;
    if (ws->open_next) ws->open_next->open_pprev = ws->open_pprev;
    ws->open_next = NULL;
    ws->open_pprev = NULL;
  }
  sg_conn_unqueue_flush(&ws->conn);
  sg_conn_closed(&ws->conn);
  if (ws->ctx) wslay_event_context_free(ws->ctx);
  ws->ctx = NULL;
  sg_buf_free(&ws->in);
  sg_buf_free(&ws->out);
  free(ws->bearer);
  ws->bearer = NULL;
  ws->tr.bearer = NULL;
  sg_pmd_inflater_free(ws->inflater);
  ws->inflater = NULL;
  int heap = ws->heap;
  ws->tr.cbs->on_closed_cb(&ws->tr);
  if (heap) free(ws);
}

static void ws_close_handles(sg_ws_t *ws) {
  if (ws->state == SG_WS_CLOSED) return;
  ws->state = SG_WS_CLOSED;
  ws_gone(ws);
  uv_close((uv_handle_t *)&ws->conn.tcp, handle_closed_cb);
  uv_close((uv_handle_t *)&ws->timer, handle_closed_cb);
}

static void ws_flush_cb(sg_conn_t *c) { ws_flush(container_of(c, sg_ws_t, conn)); }

/* Bytes handed to the connection are written (or failed). */
static void ws_written(sg_conn_t *c, size_t n, int status) {
  (void)n;
  sg_ws_t *ws = container_of(c, sg_ws_t, conn);
  if (ws->state == SG_WS_CLOSED) return;
  if (status < 0) {
    sg_log_debug("%s write failed: %s", ws->tr.peer, uv_strerror(status));
    ws_close_handles(ws);
    return;
  }
  /* wslay may have held messages back while a large write was pending. */
  if (ws->ctx && wslay_event_want_write(ws->ctx)) ws_queue_flush(ws);
}

/* Hands ws->out to the connection, which encrypts it on TLS. */
static int ws_write_out(sg_ws_t *ws) {
  if (ws->out.len == 0) return 0;
  int r = sg_conn_write(&ws->conn, &ws->out);
  if (r < 0) sg_log_debug("%s write failed: %s", ws->tr.peer, sg_conn_error(&ws->conn));
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
    while (ws->conn.inflight < WS_WRITE_CHUNK && wslay_event_want_write(ws->ctx)) {
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

static void shutdown_cb(sg_conn_t *c, int status) {
  sg_ws_t *ws = container_of(c, sg_ws_t, conn);
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
  (void)uv_read_start((uv_stream_t *)&ws->conn.tcp, alloc_cb, read_cb);
}

static void ws_begin_shutdown(sg_ws_t *ws) {
  if (ws->shut || ws->state == SG_WS_CLOSED) return;
  ws->shut = 1;
  ws->state = SG_WS_CLOSING;
  ws_gone(ws);
  if (sg_conn_shutdown(&ws->conn, shutdown_cb) < 0) ws_close_handles(ws);
}

static void close_timeout_cb(uv_timer_t *t) {
  sg_ws_t *ws = container_of(t, sg_ws_t, timer);
  sg_log_debug("%s close handshake timed out", ws->tr.peer);
  ws_close_handles(ws);
}

/* wslay answers what its frame layer refuses (a fragmented or oversized
 * control frame, a length with the top bit set) and a one-byte close body
 * with a close frame that has no status code, and it queues only one close.
 * RFC 6455 section 7.4.1 wants 1002 there, so wslay's output is stopped and
 * this close is written after whatever is already on its way. */
static void ws_fail_protocol(sg_ws_t *ws) {
  static const char close_1002[] = {(char)0x88, 0x02, 0x03, (char)0xea};
  sg_log_info("%s closing: WebSocket protocol error (1002)", ws->tr.peer);
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

/* ---------- parking ---------- */

static const struct wslay_event_callbacks wslay_cbs;

/* Follows the frames in the bytes handed to wslay: at a boundary between
 * whole messages wslay holds nothing of the input. Client frames are
 * masked (wslay refuses others and closes). */
static void rx_track(sg_ws_t *ws, const uint8_t *p, size_t n) {
  while (n > 0) {
    if (ws->rx_left > 0) {
      size_t k = n < ws->rx_left ? n : (size_t)ws->rx_left;
      p += k;
      n -= k;
      ws->rx_left -= k;
      continue;
    }
    ws->rx_hdr[ws->rx_hlen++] = *p++;
    n--;
    if (ws->rx_hlen < 2) continue;
    uint8_t l7 = ws->rx_hdr[1] & 0x7f;
    size_t need = 2u + (l7 == 126 ? 2u : l7 == 127 ? 8u : 0u) + ((ws->rx_hdr[1] & 0x80) ? 4u : 0u);
    if (ws->rx_hlen < need) continue;
    uint64_t len = l7;
    if (l7 == 126) {
      len = ((uint64_t)ws->rx_hdr[2] << 8) | ws->rx_hdr[3];
    } else if (l7 == 127) {
      len = 0;
      for (int i = 0; i < 8; i++) len = (len << 8) | ws->rx_hdr[2 + i];
    }
    uint8_t opcode = ws->rx_hdr[0] & 0x0f;
    if (opcode < 8) ws->rx_frag = (ws->rx_hdr[0] & 0x80) == 0; /* data: FIN ends the message */
    ws->rx_left = len;
    ws->rx_hlen = 0;
  }
}

static int ws_ctx_new(sg_ws_t *ws) {
  if (wslay_event_context_server_init(&ws->ctx, &wslay_cbs, ws) != 0) {
    ws->ctx = NULL;
    return SG_ERR_NOMEM;
  }
  wslay_event_config_set_max_recv_msg_length(ws->ctx, ws_max_message(ws->cfg));
  if (ws->pmd_bits) wslay_event_config_set_allowed_rsv_bits(ws->ctx, WSLAY_RSV1_BIT);
  return 0;
}

/* A parked connection gets a context again; 0, or SG_ERR_NOMEM after
 * which the caller closes. */
static int ws_unpark(sg_ws_t *ws) {
  if (!ws->parked) return 0;
  if (ws_ctx_new(ws) != 0) return SG_ERR_NOMEM;
  ws->parked = 0;
  sg_metrics_ws_park(-1);
  return 0;
}

/* A STOMP heart-beat: a message of at most two line-end bytes. Heart-beats
 * do not keep a connection from parking. */
static int is_beat(const void *data, size_t len) {
  const uint8_t *p = data;
  for (size_t i = 0; i < len; i++)
    if (len > 2 || (p[i] != '\n' && p[i] != '\r')) return 0;
  return 1;
}

/* A parked connection takes its client's heart-beats (a whole, masked,
 * uncompressed text frame of line ends; stomp.js sends one every 10 s)
 * without waking: 1 when nothing is left for wslay (or the session
 * stopped taking input), 0 when the rest needs it. */
static int ws_parked_beats(sg_ws_t *ws) {
  while (ws->in_off < ws->in.len && ws->state == SG_WS_OPEN && !ws->tr.paused) {
    const uint8_t *p = (const uint8_t *)ws->in.base + ws->in_off;
    size_t n = ws->in.len - ws->in_off, len = p[1] & 0x7f;
    if (n < 6 || p[0] != 0x81 || (p[1] & 0x80) == 0 || len > 2 || n < 6 + len) return 0;
    uint8_t beat[2];
    for (size_t i = 0; i < len; i++) {
      beat[i] = p[6 + i] ^ p[2 + (i & 3)];
      if (beat[i] != '\n' && beat[i] != '\r') return 0;
    }
    ws->in_off += 6 + len;
    ws->tr.cbs->on_message_cb(&ws->tr, len ? beat : (const uint8_t *)"", len, 0);
  }
  return 1;
}

/* ... and sends small messages without waking: a frame of at most 125
 * bytes is written here as wslay would (a server's frames are not
 * masked). Nothing is queued in wslay while parked, so order holds. */
static int ws_parked_send(sg_ws_t *ws, int opcode, const void *data, size_t len) {
  uint8_t head[2] = {(uint8_t)(0x80 | opcode), (uint8_t)len};
  if (sg_buf_append(&ws->out, head, 2) != 0 || sg_buf_append(&ws->out, data, len) != 0)
    return SG_ERR_NOMEM;
  return 0;
}

static int ws_parkable(const sg_ws_t *ws, uint64_t now) {
  if (ws->parked || ws->ctx == NULL || ws->state != SG_WS_OPEN || ws->tr.paused ||
      ws->close_pending || ws->conn.flush_queued || ws->out.len > 0)
    return 0;
  if (ws->rx_left > 0 || ws->rx_hlen > 0 || ws->rx_frag || ws->in_off < ws->in.len) return 0;
  if (wslay_event_want_write(ws->ctx) || wslay_event_get_queued_msg_count(ws->ctx) > 0) return 0;
  return now - ws->last_busy >= WS_PARK_IDLE_MS;
}

static void park_sweep_cb(uv_timer_t *t) {
  uint64_t now = uv_now(t->loop);
  size_t n = 0;
  for (sg_ws_t *ws = open_head; ws; ws = ws->open_next) {
    if (!ws_parkable(ws, now)) continue;
    wslay_event_context_free(ws->ctx);
    ws->ctx = NULL;
    ws->parked = 1;
    n++;
  }
  if (n > 0) sg_metrics_ws_park((int64_t)n);
  parked_untrimmed += n;
  /* The freed contexts' pages sit in the middle of the heap, where free()
   * keeps them: given back once many have parked, or once parking pauses. */
  if (parked_untrimmed >= 64 || (n == 0 && parked_untrimmed > 0)) {
    malloc_trim(0);
    parked_untrimmed = 0;
  }
}

/* wslay callbacks */

static ssize_t recv_callback(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                             void *user_data) {
  (void)flags;
  sg_ws_t *ws = user_data;
  size_t avail = ws->in.len - ws->in_off;
  /* A paused session takes no more messages: the rest waits here. */
  if (avail == 0 || ws->tr.paused) {
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  if (len > avail) len = avail;
  memcpy(buf, ws->in.base + ws->in_off, len);
  ws->in_off += len;
  rx_track(ws, buf, len);
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

/* A framed text message (SockJS: a JSON array of strings) holds messages
 * for the layer above. */
static void ws_framed_input(sg_ws_t *ws, const uint8_t *data, size_t len) {
  if (len == 0) return;
  sg_buf_t dec;
  sg_buf_init(&dec);
  int n = ws->framing->unwrap((const char *)data, len, &dec);
  if (n < 0) {
    sg_buf_free(&dec);
    sg_log_info("%s closing: broken %s framing", ws->tr.peer, ws->framing->name);
    ws_close(ws, 1002, "Broken framing.");
    ws_gone(ws);
    return;
  }
  size_t off = 0, m;
  const char *p;
  while (ws->state == SG_WS_OPEN && ws->framing->next(&dec, &off, &p, &m))
    ws->tr.cbs->on_message_cb(&ws->tr, (const uint8_t *)p, m, 0);
  sg_buf_free(&dec);
}

/* Closes with code after a message that cannot be taken. */
static void ws_fail_message(sg_ws_t *ws, uint16_t code, const char *reason) {
  wslay_event_queue_close(ws->ctx, code, (const uint8_t *)reason, strlen(reason));
  ws->state = SG_WS_CLOSING;
  uv_timer_start(&ws->timer, close_timeout_cb, WS_CLOSE_TIMEOUT_MS, 0);
  ws_gone(ws);
}

/* Inflates a message sent with RSV1 into pmd_in, never past the size an
 * uncompressed message may have. */
static int ws_inflate(sg_ws_t *ws, const uint8_t *msg, size_t len) {
  sg_pmd_inflater_t *inf;
  if (ws->pmd_client_fresh) {
    if (pmd_inflater == NULL) pmd_inflater = sg_pmd_inflater_new(15);
    inf = pmd_inflater;
  } else {
    if (ws->inflater == NULL) ws->inflater = sg_pmd_inflater_new(ws->pmd_client_bits);
    inf = ws->inflater;
  }
  if (inf == NULL) return SG_ERR_NOMEM;
  sg_buf_reset(&pmd_in);
  return sg_pmd_inflate(inf, msg, len, ws_max_message(ws->cfg), ws->pmd_client_fresh, &pmd_in);
}

static void on_msg_recv_callback(wslay_event_context_ptr ctx,
                                 const struct wslay_event_on_msg_recv_arg *arg,
                                 void *user_data) {
  (void)ctx;
  sg_ws_t *ws = user_data;
  if (ws->state != SG_WS_OPEN) return;
  /* wslay hands over an empty message as NULL; the layers above
   * take a pointer to bytes, so that becomes an empty buffer. */
  const uint8_t *msg = arg->msg ? arg->msg : (const uint8_t *)"";
  size_t len = arg->msg_length;
  if (!is_beat(msg, len)) ws->last_busy = uv_now(ws->conn.tcp.loop);
  /* wslay lets RSV1 through only when permessage-deflate was negotiated,
   * and only on the first frame of a data message. */
  if (wslay_get_rsv1(arg->rsv) &&
      (arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME)) {
    int r = ws_inflate(ws, msg, len);
    if (r == SG_ERR_FRAME_TOO_LARGE) {
      sg_log_info("%s closing: compressed message inflates past %zu bytes", ws->tr.peer,
                  ws_max_message(ws->cfg));
      pmd_trim(&pmd_in);
      ws_fail_message(ws, WSLAY_CODE_MESSAGE_TOO_BIG, "Message too big");
      return;
    }
    if (r != 0) {
      sg_log_info("%s closing: a compressed message is not valid deflate data", ws->tr.peer);
      ws_fail_message(ws, r == SG_ERR_NOMEM ? WSLAY_CODE_INTERNAL_SERVER_ERROR
                                            : WSLAY_CODE_INVALID_FRAME_PAYLOAD_DATA,
                      r == SG_ERR_NOMEM ? "Out of memory" : "Invalid compressed data");
      return;
    }
    msg = (const uint8_t *)pmd_in.base;
    len = pmd_in.len;
  }
  switch (arg->opcode) {
  case WSLAY_TEXT_FRAME:
    /* Also the check of a compressed text message, which wslay cannot
     * make before it is inflated. */
    if (!sg_utf8_valid(msg, len)) {
      sg_log_info("%s closing: invalid UTF-8 in a text message", ws->tr.peer);
      ws_fail_message(ws, WSLAY_CODE_INVALID_FRAME_PAYLOAD_DATA, "Invalid UTF-8 in text message");
      break;
    }
    if (ws->framing) ws_framed_input(ws, msg, len);
    else ws->tr.cbs->on_message_cb(&ws->tr, msg, len, 0);
    break;
  case WSLAY_BINARY_FRAME:
    if (!ws->framing) ws->tr.cbs->on_message_cb(&ws->tr, msg, len, 1);
    break;
  case WSLAY_CONNECTION_CLOSE:
    if (arg->msg_length == 1) {
      ws_fail_protocol(ws);
      return;
    }
    sg_log_debug("%s sent close %u", ws->tr.peer, arg->status_code);
    ws->state = SG_WS_CLOSING;
    uv_timer_start(&ws->timer, close_timeout_cb, WS_CLOSE_TIMEOUT_MS, 0);
    ws_gone(ws);
    break;
  default:
    break;
  }
  if (msg == (const uint8_t *)pmd_in.base) pmd_trim(&pmd_in);
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
  ws_compact_in(ws);
  if (!sg_conn_reads_in_place(&ws->conn) || ws->in.len == 0) {
    *buf = uv_buf_init(read_buf, sizeof(read_buf));
    return;
  }
  if (sg_buf_reserve(&ws->in, WS_READ_CHUNK) != 0) {
    *buf = uv_buf_init(NULL, 0);
    return;
  }
  *buf = uv_buf_init(ws->in.base + ws->in.len, (unsigned)(ws->in.cap - ws->in.len - 1));
}

void sg_ws_respond(sg_ws_t *ws) {
  uv_read_stop((uv_stream_t *)&ws->conn.tcp);
  ws->state = SG_WS_CLOSING;
  if (ws_write_out(ws) < 0) {
    ws_close_handles(ws);
    return;
  }
  ws_begin_shutdown(ws);
}

void sg_ws_refuse(sg_ws_t *ws, int status, const char *reason, const char *extra) {
  sg_log_info("%s handshake refused: %d %s", ws->tr.peer, status, reason);
  sg_metrics_http_refused(status);
  sg_http_response_error(&ws->out, status, reason, extra);
  sg_ws_respond(ws);
}

static void framing_beat_cb(uv_timer_t *t) {
  sg_ws_t *ws = container_of(t, sg_ws_t, timer);
  if (ws->state != SG_WS_OPEN) return;
  const char *beat = ws->framing->beat;
  size_t n = strlen(beat);
  if (ws->parked) {
    if (ws_parked_send(ws, WSLAY_TEXT_FRAME, beat, n) == 0) ws_queue_flush(ws);
    return;
  }
  struct wslay_event_msg msg = {WSLAY_TEXT_FRAME, (const uint8_t *)beat, n};
  if (wslay_event_queue_msg(ws->ctx, &msg) == 0) ws_queue_flush(ws);
}

void sg_ws_upgrade(sg_ws_t *ws, const sg_http_request_t *req, const sg_ws_framing_t *framing,
                   uint64_t beat_ms, const char *bearer, size_t bearer_len) {
  if (bearer != NULL) {
    if ((ws->bearer = strndup(bearer, bearer_len)) == NULL) {
      ws_close_handles(ws);
      return;
    }
    ws->tr.bearer = ws->bearer;
  }
  if (wslay_event_context_server_init(&ws->ctx, &wslay_cbs, ws) != 0) {
    ws_close_handles(ws);
    return;
  }
  wslay_event_config_set_max_recv_msg_length(ws->ctx, ws_max_message(ws->cfg));
  /* The first offer that can be honoured, header line by header line. */
  sg_pmd_params_t pmd;
  const char *extensions = NULL;
  sg_pmd_limits_t lim = {(int)ws->cfg->compression_window_bits,
                         (int)ws->cfg->compression_client_window_bits};
  for (int i = 0; ws->cfg->compression && extensions == NULL && i < req->n_extensions; i++)
    if (sg_pmd_negotiate(req->extensions[i].p, req->extensions[i].len, &lim, &pmd))
      extensions = pmd.response;
  if (extensions) {
    wslay_event_config_set_allowed_rsv_bits(ws->ctx, WSLAY_RSV1_BIT);
    ws->pmd_bits = (uint8_t)pmd.server_window_bits;
    ws->pmd_client_bits = (uint8_t)pmd.client_window_bits;
    ws->pmd_client_fresh = (uint8_t)pmd.client_no_context_takeover;
  }
  if (sg_http_upgrade_accept(req, extensions, &ws->out) != 0) {
    ws_close_handles(ws);
    return;
  }
  ws->in_off = req->head_len;
  ws->state = SG_WS_OPEN;
  ws->last_busy = uv_now(ws->conn.tcp.loop);
  ws->open_next = open_head;
  if (open_head) open_head->open_pprev = &ws->open_next;
  ws->open_pprev = &open_head;
  open_head = ws;
  sg_metrics_upgraded((double)(uv_hrtime() - ws->accepted_ns) / 1e9);
  uv_timer_stop(&ws->timer);
  if (framing) {
    /* The framing's open message, then its heart-beats while open. */
    struct wslay_event_msg msg = {WSLAY_TEXT_FRAME, (const uint8_t *)framing->open,
                                  strlen(framing->open)};
    ws->framing = framing;
    if (wslay_event_queue_msg(ws->ctx, &msg) != 0) {
      ws_close_handles(ws);
      return;
    }
    uv_timer_start(&ws->timer, framing_beat_cb, beat_ms, beat_ms);
  }
  ws_queue_flush(ws);
  ws->tr.cbs->on_open_cb(&ws->tr, req->stomp_version);
}

/* The client's address, "host:port", becomes the connection's name in logs,
 * admission and the broker connection's name. */
void sg_ws_set_peer(sg_ws_t *ws, const struct sockaddr_storage *ss) {
  sg_conn_name_peer(&ws->conn, ws->cfg, ss, ws->tr.peer, sizeof(ws->tr.peer));
}

static void ws_feed(sg_ws_t *ws) {
  if (ws->in_off == ws->in.len) return;
  if (ws->parked && ws_parked_beats(ws)) return;
  if (ws_unpark(ws) != 0) {
    ws_close_handles(ws);
    return;
  }
  if (ws->ctx == NULL) return;
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
    sg_log_info("%s closing: WebSocket protocol error (%u)", ws->tr.peer,
                wslay_event_get_status_code_sent(ws->ctx));
    ws->state = SG_WS_CLOSING;
    uv_timer_start(&ws->timer, close_timeout_cb, WS_CLOSE_TIMEOUT_MS, 0);
    ws_gone(ws);
  }
  ws_queue_flush(ws);
}

/* The PROXY protocol (--proxy-protocol): a trusted proxy's connection
 * begins with a header naming the client, before the TLS handshake or the
 * HTTP request. There is no one to answer: a connection whose header is
 * missing or bad is logged, counted and closed. */
static void ws_proxy_refuse(sg_ws_t *ws, const char *why) {
  sg_conn_proxy_refused(ws->tr.peer, why);
  ws->proxy_wait = ws->proxy_check = 0;
  ws_close_handles(ws);
}

/* Makes n bytes just read part of ws->in: copied from the thread's read
 * buffer, or already in place when the read went into ws->in's spare room.
 * 0 or SG_ERR_NOMEM. */
static int ws_take_read(sg_ws_t *ws, char *base, size_t n) {
  if (base == read_buf) return sg_buf_append(&ws->in, read_buf, n) != 0 ? SG_ERR_NOMEM : 0;
  ws->in.len += n;
  ws->in.base[ws->in.len] = '\0';
  return 0;
}

static void ws_proxy_input(sg_ws_t *ws, char *base, size_t n) {
  sg_proxy_info_t info;
  if (ws->proxy_check) {
    /* From another peer: the first bytes must not begin a header (a
     * partial signature of four bytes or more counts). */
    ws->proxy_check = 0;
    if (sg_conn_proxy_unexpected(base, n)) {
      ws_proxy_refuse(ws, "untrusted");
      return;
    }
    ws_input(ws, base, n);
    return;
  }
  if (ws_take_read(ws, base, n) != 0) {
    ws_close_handles(ws);
    return;
  }
  int r = sg_proxy_parse((const uint8_t *)ws->in.base, ws->in.len, &info);
  if (r == SG_ERR_AGAIN) return; /* bounded: the parser refuses a header too long */
  if (r < 0) {
    ws_proxy_refuse(ws, info.why);
    return;
  }
  ws->proxy_wait = 0;
  sg_metrics_proxy_header(info.version);
  if (!info.local) {
    char was[sizeof(ws->tr.peer)];
    memcpy(was, ws->tr.peer, sizeof(was));
    sg_ws_set_peer(ws, &info.src);
    sg_log_debug("%s PROXY v%d header names the client %s", was, info.version, ws->tr.peer);
  }
  size_t rest = ws->in.len - info.header_len;
  if (rest == 0) {
    sg_buf_free(&ws->in);
  } else if (!sg_conn_reads_in_place(&ws->conn)) {
    /* TLS decrypts into ws->in: the ciphertext after the header moves out
     * first. */
    char *tmp = malloc(rest);
    if (tmp == NULL) {
      ws_close_handles(ws);
      return;
    }
    memcpy(tmp, ws->in.base + info.header_len, rest);
    sg_buf_free(&ws->in);
    ws_input(ws, tmp, rest);
    free(tmp);
  } else {
    sg_buf_consume(&ws->in, info.header_len);
    ws_input(ws, ws->in.base + ws->in.len, 0);
  }
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  sg_ws_t *ws = s->data;
  if (nread == 0) return;
  if (nread < 0) {
    if (nread != UV_EOF) sg_log_debug("%s read failed: %s", ws->tr.peer, uv_strerror((int)nread));
    if (ws->proxy_wait && ws->in.len > 0) {
      ws_proxy_refuse(ws, "truncated");
      return;
    }
    ws_close_handles(ws);
    return;
  }
  sg_metrics_bytes_in((size_t)nread);
  if (ws->proxy_wait || ws->proxy_check) {
    ws_proxy_input(ws, buf->base, (size_t)nread);
    return;
  }
  ws_input(ws, buf->base, (size_t)nread);
}

/* Bytes read (or, from the PROXY header's reader, left after the header):
 * in read_buf, at the end of ws->in where alloc_cb put them, or elsewhere
 * when TLS decrypts them. */
static void ws_input(sg_ws_t *ws, char *base, size_t n) {
  uv_stream_t *s = (uv_stream_t *)&ws->conn.tcp;
  if (!sg_conn_reads_in_place(&ws->conn)) {
    /* What was read is not the plaintext (TLS): the connection's type
     * turns it into the plaintext, appended to ws->in. */
    ws_compact_in(ws);
    size_t had = ws->in.len;
    int r = sg_conn_feed(&ws->conn, base, n, &ws->in);
    if (r != 0) {
      if (r < 0)
        sg_log_info("%s %s failed: %s", ws->tr.peer, ws->conn.type->name, sg_conn_error(&ws->conn));
      ws_close_handles(ws);
      return;
    }
    if (ws->in.len == had) return;
  } else if (ws_take_read(ws, base, n) != 0) {
    ws_close_handles(ws);
    return;
  }
  ws->tr.last_rx = uv_now(s->loop);
  if (ws->shut) {
    ws->in.len = ws->in_off = 0; /* draining before close */
    return;
  }
  if (ws->tr.paused && ws->state == SG_WS_OPEN) {
    /* Held for ws_resume; past a bound the peer's writes back up in
     * TCP. */
    if (ws->in.len - ws->in_off >= WS_PAUSED_MAX) uv_read_stop(s);
    return;
  }
  if (ws->state == SG_WS_HANDSHAKE) {
    ws->on_head(ws);
    if (ws->state != SG_WS_OPEN) return;
  }
  ws_feed(ws);
  /* wslay keeps its own partial frame: what is consumed here is done. */
  if (ws->in_off == ws->in.len) {
    sg_buf_free(&ws->in);
    ws->in_off = 0;
  }
}

static void handshake_timeout_cb(uv_timer_t *t) {
  sg_ws_t *ws = container_of(t, sg_ws_t, timer);
  if (ws->proxy_wait) ws_proxy_refuse(ws, ws->in.len > 0 ? "truncated" : "no_header");
  else if (ws->state == SG_WS_HANDSHAKE) sg_ws_refuse(ws, 408, "Request Timeout", NULL);
}

static int tr_send(sg_transport_t *t, const void *data, size_t len, int binary) {
  return ws_send(container_of(t, sg_ws_t, tr), data, len, binary);
}
static size_t tr_backlog(const sg_transport_t *t) {
  return ws_backlog(container_of(t, const sg_ws_t, tr));
}
static void tr_pause(sg_transport_t *t) { ws_pause(container_of(t, sg_ws_t, tr)); }
static void tr_resume(sg_transport_t *t) { ws_resume(container_of(t, sg_ws_t, tr)); }
static void tr_close(sg_transport_t *t, uint16_t code, const char *reason) {
  ws_close(container_of(t, sg_ws_t, tr), code, reason);
}
static const sg_transport_ops_t ws_ops = {tr_send, tr_backlog, tr_pause, tr_resume, tr_close};

static int ws_init(uv_loop_t *loop, sg_ws_t *ws, const sg_config_t *cfg, const sg_ws_cbs_t *cbs) {
  memset(ws, 0, sizeof(*ws));
  ws->cfg = cfg;
  ws->tr.ops = &ws_ops;
  ws->tr.cbs = cbs;
  ws->tr.loop = loop;
  int r = sg_conn_init(loop, &ws->conn);
  if (r) return r;
  ws->conn.on_written = ws_written;
  ws->conn.on_flush = ws_flush_cb;
  r = uv_timer_init(loop, &ws->timer);
  if (r) {
    /* Nothing is allocated yet; the caller frees ws after this close. */
    uv_close((uv_handle_t *)&ws->conn.tcp, NULL);
    return r;
  }
  ws->conn.tcp.data = ws;
  ws->timer.data = ws;
  ws->handles_open = 2;
  return 0;
}

static void ws_start(sg_ws_t *ws) {
  sg_conn_name_socket_peer(&ws->conn, ws->cfg, ws->tr.peer, sizeof(ws->tr.peer));
  /* A trusted proxy must send the PROXY header; anyone else must not. */
  if (ws->cfg->proxy_protocol) {
    ws->proxy_wait = ws->conn.peer_trusted;
    ws->proxy_check = !ws->conn.peer_trusted;
  }
  if (sg_conn_start(&ws->conn, ws->cfg, SG_CONN_HTTP) != 0) {
    ws_close_handles(ws);
    return;
  }
  ws->accepted_ns = uv_hrtime();
  ws->tr.last_rx = ws->tr.last_tx = uv_now(ws->conn.tcp.loop);
  uv_timer_start(&ws->timer, handshake_timeout_cb, ws->cfg->handshake_timeout_ms, 0);
  if (uv_read_start((uv_stream_t *)&ws->conn.tcp, alloc_cb, read_cb) != 0) ws_close_handles(ws);
}

/* An accepted connection before its upgrade: nobody above it yet. The
 * upgrade hands it to the open function, which replaces these. */
static void http_open_cb(sg_transport_t *t, int stomp_version) {
  sg_ws_t *ws = container_of(t, sg_ws_t, tr);
  int r = ws->open_fn(t, ws->open_arg, stomp_version);
  if (r != 0) {
    sg_log_warn("%s cannot start a session: %s", t->peer, sg_strerror(r));
    ws_close_handles(ws);
  }
}
static void http_message_cb(sg_transport_t *t, const uint8_t *d, size_t n, int b) {
  (void)t, (void)d, (void)n, (void)b;
}
static void http_noop_cb(sg_transport_t *t) { (void)t; }
static const sg_transport_cbs_t http_cbs = {http_open_cb, http_message_cb, http_noop_cb,
                                            http_noop_cb};

int sg_ws_accept(uv_stream_t *server, const sg_config_t *cfg, sg_ws_head_fn on_head,
                 sg_transport_open_fn open, void *arg) {
  sg_ws_t *ws = malloc(sizeof(*ws));
  if (ws == NULL) return SG_ERR_NOMEM;
  /* libuv's tcp and timer initialisations cannot fail on an open loop. */
  int r = ws_init(server->loop, ws, cfg, &http_cbs);
  if (r) {
    free(ws);
    return r;
  }
  ws->heap = 1;
  ws->on_head = on_head;
  ws->open_fn = open;
  ws->open_arg = arg;
  if ((r = uv_accept(server, (uv_stream_t *)&ws->conn.tcp)) != 0) {
    ws_close_handles(ws);
    return r;
  }
  ws_start(ws);
  return 0;
}

/* Queues one message (copied). Returns 0, or a negative error when the
 * socket is closing. The bytes go out at the end of this loop iteration. */
static int ws_send(sg_ws_t *ws, const void *data, size_t len, int binary) {
  if (ws->state != SG_WS_OPEN || (ws->ctx == NULL && !ws->parked)) return UV_EPIPE;
  if (!is_beat(data, len)) ws->last_busy = uv_now(ws->conn.tcp.loop);
  if (ws->framing) {
    /* Framed messages are text (SockJS escapes bytes that are not
     * UTF-8). */
    sg_buf_reset(&framed);
    if (ws->framing->wrap(&framed, data, len) != 0) return SG_ERR_NOMEM;
    data = framed.base;
    len = framed.len;
    binary = 0;
  }
  uint8_t rsv = WSLAY_RSV_NONE;
  if (ws->pmd_bits && len > 0 && len >= ws->cfg->compression_threshold) {
    if (pmd_encoder == NULL)
      pmd_encoder = sg_pmd_encoder_new((int)ws->cfg->compression_level, WS_PMD_SHARED_MIN);
    sg_buf_reset(&pmd_out);
    /* What does not shrink goes as it is, which spares the client an
     * inflate. */
    if (pmd_encoder && sg_pmd_encode(pmd_encoder, ws->pmd_bits, data, len, &pmd_out) == 0 &&
        pmd_out.len < len) {
      sg_metrics_deflated(len, pmd_out.len);
      data = pmd_out.base;
      len = pmd_out.len;
      rsv = WSLAY_RSV1_BIT;
    }
  }
  int opcode = binary ? WSLAY_BINARY_FRAME : WSLAY_TEXT_FRAME;
  int r;
  if (ws->parked && rsv == WSLAY_RSV_NONE && len <= 125) {
    r = ws_parked_send(ws, opcode, data, len);
  } else if ((r = ws_unpark(ws)) == 0) {
    struct wslay_event_msg msg = {(uint8_t)opcode, data, len};
    r = wslay_event_queue_msg_ex(ws->ctx, &msg, rsv);
  }
  pmd_trim(&pmd_out);
  if (r != 0) {
    if (ws->parked) ws_close_handles(ws); /* no context for what follows */
    return SG_ERR_NOMEM;
  }
  ws->fresh += len;
  ws->tr.last_tx = uv_now(ws->conn.tcp.loop);
  ws_queue_flush(ws);
  return 0;
}

/* Of the bytes not yet on the wire, the ones that were already waiting
 * when the last write of this connection started: what a client that
 * reads is never far behind on, whatever burst the current loop iteration
 * queued. */
static size_t ws_backlog(const sg_ws_t *ws) {
  size_t p = ws_pending(ws);
  return p > ws->fresh ? p - ws->fresh : 0;
}

/* Bytes queued or being written but not yet on the wire. */
static size_t ws_pending(const sg_ws_t *ws) {
  return ws->conn.inflight + ws->out.len + (ws->ctx ? wslay_event_get_queued_msg_length(ws->ctx) : 0);
}

/* Starts the close handshake with code and reason, after everything queued
 * has been written. */
static void ws_close(sg_ws_t *ws, uint16_t code, const char *reason) {
  if (ws->state == SG_WS_CLOSED) return;
  if (ws_unpark(ws) != 0) {
    ws_close_handles(ws);
    return;
  }
  if (ws->ctx == NULL || ws->state == SG_WS_HANDSHAKE) {
    ws_close_handles(ws);
    return;
  }
  if (ws->state == SG_WS_OPEN && ws->framing) {
    /* Clients of a framing learn the code and reason from its close
     * message (SockJS's c[...]). */
    sg_buf_reset(&framed);
    if (ws->framing->close(&framed, code, reason) == 0) {
      struct wslay_event_msg msg = {WSLAY_TEXT_FRAME, (const uint8_t *)framed.base, framed.len};
      wslay_event_queue_msg(ws->ctx, &msg);
    }
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

void sg_ws_handed_off(sg_ws_t *ws) {
  sg_conn_exported(&ws->conn);
  uv_read_stop((uv_stream_t *)&ws->conn.tcp);
  ws->state = SG_WS_CLOSING;
  ws_close_handles(ws);
}

/* Reading goes on while paused, up to WS_PAUSED_MAX unhandled bytes, so
 * that a client leaving while it waits (a broker alarm can last minutes)
 * is closed at once rather than when the wait ends. */
static void ws_pause(sg_ws_t *ws) {
  if (ws->tr.paused || ws->state != SG_WS_OPEN) return;
  ws->tr.paused = 1;
}

static void ws_resume(sg_ws_t *ws) {
  if (!ws->tr.paused) return;
  ws->tr.paused = 0;
  if (ws->state != SG_WS_OPEN) return;
  ws->tr.last_rx = uv_now(ws->conn.tcp.loop);
  int r = uv_read_start((uv_stream_t *)&ws->conn.tcp, alloc_cb, read_cb);
  if (r != 0 && r != UV_EALREADY) {
    ws_close_handles(ws);
    return;
  }
  ws_feed(ws);
}
