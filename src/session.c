/* SPDX-License-Identifier: MIT */
/* The STOMP session state machine. It reaches the broker only through its
 * relay (relay.h), whichever mode that is.
 *
 * Ordering: frames are handled in arrival order. A RECEIPT waits until the
 * relay has reached the mark taken after its frame: every broker method
 * before it answered, every publish before it confirmed, every shared
 * subscription before it set up. So a RECEIPT always means "all that came
 * before is done". */
#include "session.h"

#include <amqp.h>
#include <amqp_framing.h>
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "log.h"
#include "metrics.h"
#include "relay.h"
#include "sg_config.h"
#include "stompgate/amqp_table.h"
#include "stompgate/app_dest.h"
#include "stompgate/auth.h"
#include "stompgate/destination.h"
#include "stompgate/err.h"
#include "stompgate/stomp_codec.h"
#include "stompgate/user_dest.h"
#include "stompgate/utf8.h"
#include "ws.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* WebSocket close codes chosen for each way a session ends. */
#define CLOSE_NORMAL 1000
#define CLOSE_GOING_AWAY 1001
#define CLOSE_PROTOCOL 1002
#define CLOSE_POLICY 1008
#define CLOSE_TOO_BIG 1009
#define CLOSE_INTERNAL 1011

enum { ACK_AUTO = 0, ACK_CLIENT, ACK_CLIENT_INDIVIDUAL };
enum { S_WAIT_UPGRADE = 0, S_WAIT_CONNECT, S_LOGIN, S_CONNECTED, S_CLOSING };

typedef struct sg_sub {
  struct sg_sub *next;
  char *id;
  sg_relay_sub_t rs;      /* the relay's part; rs.tag is "T_" + id, rs.cancelled
                             once UNSUBSCRIBEd (kept while its acks may still come) */
  sg_relay_mark_t cancel_done; /* reached: the broker cannot refer to it any more */
  int ack_mode;
  unsigned internal : 1;  /* a temp-queue consumer, not a client subscription */
  unsigned app_reply : 1; /* the queue back ends answer application SENDs on */
  char *temp_name;        /* /temp-queue/ name for internal consumers */
  uint64_t *unacked;      /* delivery tags awaiting ACK/NACK, ascending */
  size_t un_len, un_cap;
  unsigned topic_like : 1; /* /topic or /exchange: messages a slow reader may lose */
  char *user_dest;        /* /user/queue/X: the destination its MESSAGEs carry */
} sg_sub_t;

typedef struct sg_tx {
  struct sg_tx *next;
  char *id;
  sg_stomp_frame_t **frames;
  size_t n, cap;
} sg_tx_t;

typedef struct sg_receipt {
  struct sg_receipt *next;
  char *id;
  sg_relay_mark_t mark;
  int disconnect;
} sg_receipt_t;

struct sg_session {
  sg_ws_t ws;          /* the connection of a session accepted here */
  sg_transport_t *tr;  /* what it runs over: &ws.tr, or a SockJS session */
  sg_transport_t closed_tr; /* stands in for tr once that is closed */
  sg_relay_t *relay;        /* everything the session asks of the broker */
  uv_timer_t timer; /* CONNECT timeout, then heart-beats */
  const sg_config_t *cfg;
  sg_session_ctx_t *ctx;
  sg_grant_t *grant;     /* --auth jwt/file: who the session is and may do */
  uint64_t dropped;      /* messages dropped as a slow consumer */
  uint64_t id;
  int state;
  int version; /* 10, 11, 12 */
  int ws_version;
  unsigned ws_closed : 1, relay_closed : 1, timer_closed : 1;
  unsigned torn_down : 1;
  unsigned draining : 1; /* shutting down once its receipts are out */
  sg_session_t *live_next, **live_prev;
  sg_stomp_parser_t parser;
  /* Frames that wait, in order: during the broker login, and while the
   * relay makes them wait (sg_relay_admit). */
  sg_stomp_frame_t **pending;
  size_t pend_head, npending, pending_cap;
  sg_sub_t *subs;
  size_t nsubs;
  sg_tx_t *txs;
  size_t ntxs;
  sg_receipt_t *rc_head, **rc_tail;
  uint64_t temp_seq;
  uint64_t hb_send_ms, hb_recv_ms, hb_tick_ms;
  char login[128];
  sg_app_corr_t app_corr; /* recent application requests, to route replies */
  uint64_t app_seq;       /* correlation ids generated for them */
  const char *close_reason;
  char reason_buf[160];
};

static atomic_size_t live_sessions;
static atomic_uint_fast64_t next_session_id = 1;
/* This worker's sessions, for drain. */
static __thread sg_session_t *live_head;
static __thread sg_buf_t scratch;
static __thread sg_buf_t hscratch; /* one rendered headers-table value */

size_t sg_session_count(void) { return live_sessions; }

void sg_session_thread_done(void) {
  sg_buf_free(&scratch);
  sg_buf_free(&hscratch);
}

static void session_teardown(sg_session_t *s);
static const sg_relay_cbs_t relay_cbs;
static void process_frame(sg_session_t *s, sg_stomp_frame_t *f, int in_commit);
static void run_pending(sg_session_t *s);
static void relay_failed(sg_session_t *s, const sg_relay_fault_t *f, const char *receipt_id);
static void error_close(sg_session_t *s, uint16_t code, const char *message,
                        const sg_stomp_frame_t *f, const char *detail);

/* --auth jwt/file: whether the session may do command (perm) on the
 * destination of that kind, name and key; if not, ERROR "Access refused"
 * naming destination and permission, and close, as RabbitMQ does. */
static int refused(sg_session_t *s, const sg_stomp_frame_t *f, int perm, int kind,
                   const char *name, const char *key, const char *dst) {
  char detail[1200];
  if (s->grant == NULL ||
      sg_grant_allows(s->grant, perm, kind, name, key, f->command, dst, detail, sizeof(detail)))
    return 0;
  error_close(s, CLOSE_POLICY, "Access refused", f, detail);
  return 1;
}

/* ---------- freeing ---------- */

static void sub_free(sg_sub_t *sub) {
  free(sub->id);
  free(sub->rs.tag);
  free(sub->temp_name);
  free(sub->rs.queue);
  free(sub->unacked);
  free(sub->user_dest);
  free(sub);
}

static void tx_free(sg_tx_t *tx) {
  for (size_t i = 0; i < tx->n; i++) sg_stomp_frame_free(tx->frames[i]);
  free(tx->frames);
  free(tx->id);
  free(tx);
}

static void session_free(sg_session_t *s) {
  sg_stomp_parser_free(&s->parser);
  for (size_t i = s->pend_head; i < s->npending; i++) sg_stomp_frame_free(s->pending[i]);
  free(s->pending);
  while (s->subs) {
    sg_sub_t *n = s->subs->next;
    sg_relay_release(s->relay, &s->subs->rs);
    sub_free(s->subs);
    s->subs = n;
  }
  while (s->txs) {
    sg_tx_t *n = s->txs->next;
    tx_free(s->txs);
    s->txs = n;
  }
  while (s->rc_head) {
    sg_receipt_t *n = s->rc_head->next;
    free(s->rc_head->id);
    free(s->rc_head);
    s->rc_head = n;
  }
  sg_relay_free(s->relay);
  sg_app_corr_free(&s->app_corr);
  if ((*s->live_prev = s->live_next) != NULL) s->live_next->live_prev = s->live_prev;
  live_sessions--;
  free(s);
}

static void maybe_free(sg_session_t *s) {
  if (s->ws_closed && s->relay_closed && s->timer_closed) session_free(s);
}

/* ---------- sending frames ---------- */

static void send_frame_buf(sg_session_t *s, const sg_buf_t *b) {
  int binary = !sg_utf8_valid(b->base, b->len);
  sg_metrics_frame_out(b->base, b->len);
  sg_transport_send(s->tr, b->base, b->len, binary);
}

static void send_error(sg_session_t *s, const char *message, const char *receipt_id,
                       const char *detail) {
  sg_buf_t *b = &scratch;
  sg_metrics_error(message);
  sg_buf_reset(b);
  sg_stomp_encode_start(b, SG_STOMP_ERROR);
  sg_stomp_encode_headerz(b, s->version, SG_STOMP_ERROR, "message", message);
  if (receipt_id) sg_stomp_encode_headerz(b, s->version, SG_STOMP_ERROR, "receipt-id", receipt_id);
  if (detail && *detail) {
    sg_stomp_encode_headerz(b, s->version, SG_STOMP_ERROR, "content-type", "text/plain");
    sg_stomp_encode_finish(b, detail, strlen(detail));
  } else {
    sg_stomp_encode_finish(b, NULL, 0);
  }
  send_frame_buf(s, b);
}

/* Every way a session ends from its own side: why is for the close log
 * line and the metrics, code and ws_reason go to the client with the
 * close, and the broker side is torn down. */
static void session_end(sg_session_t *s, uint16_t code, const char *ws_reason, const char *why) {
  if (s->state == S_CLOSING) return;
  s->close_reason = why;
  sg_transport_close(s->tr, code, ws_reason);
  session_teardown(s);
}

/* Sends ERROR (with receipt-id when the failing frame asked for a receipt)
 * and closes: the spec's rule, which Web-STOMP does not keep. */
static void session_fail(sg_session_t *s, uint16_t code, const char *message,
                         const char *receipt_id, const char *detail) {
  if (s->state == S_CLOSING) return;
  /* The reason is for the close log line; long details are cut. */
  snprintf(s->reason_buf, sizeof(s->reason_buf), "ERROR %.60s%s%.90s", message,
           detail ? ": " : "", detail ? detail : "");
  send_error(s, message, receipt_id, detail);
  session_end(s, code, message, s->reason_buf);
}

/* session_fail for frame f (NULL: no frame is to blame). */
static void error_close(sg_session_t *s, uint16_t code, const char *message,
                        const sg_stomp_frame_t *f, const char *detail) {
  session_fail(s, code, message, f ? sg_stomp_frame_header(f, "receipt", NULL) : NULL, detail);
}

static void send_receipt(sg_session_t *s, const char *id) {
  sg_buf_t *b = &scratch;
  sg_buf_reset(b);
  sg_stomp_encode_start(b, SG_STOMP_RECEIPT);
  sg_stomp_encode_headerz(b, s->version, SG_STOMP_RECEIPT, "receipt-id", id);
  sg_stomp_encode_finish(b, NULL, 0);
  send_frame_buf(s, b);
}

/* ---------- receipts and confirms ---------- */

static void drain_close(sg_session_t *s);

static void flush_receipts(sg_session_t *s) {
  while (s->rc_head && s->state == S_CONNECTED) {
    sg_receipt_t *r = s->rc_head;
    if (!sg_relay_reached(s->relay, &r->mark)) break;
    s->rc_head = r->next;
    if (s->rc_head == NULL) s->rc_tail = &s->rc_head;
    send_receipt(s, r->id);
    int disc = r->disconnect;
    free(r->id);
    free(r);
    if (disc) {
      session_end(s, CLOSE_NORMAL, "", "DISCONNECT");
      return;
    }
    if (s->draining && s->rc_head == NULL) drain_close(s);
  }
}

static int add_receipt_id(sg_session_t *s, const char *id, int disconnect) {
  sg_receipt_t *r = calloc(1, sizeof(*r));
  if (r == NULL || (r->id = strdup(id)) == NULL) {
    free(r);
    return SG_ERR_NOMEM;
  }
  sg_relay_mark(s->relay, &r->mark);
  r->disconnect = disconnect;
  *s->rc_tail = r;
  s->rc_tail = &r->next;
  flush_receipts(s);
  return 1;
}

static int add_receipt(sg_session_t *s, const sg_stomp_frame_t *f, int disconnect) {
  const char *id = sg_stomp_frame_header(f, "receipt", NULL);
  return id ? add_receipt_id(s, id, disconnect) : 0;
}

/* ---------- subscriptions ---------- */

static sg_sub_t *sub_by_id(sg_session_t *s, const char *id) {
  for (sg_sub_t *x = s->subs; x; x = x->next)
    if (!x->internal && !x->rs.cancelled && strcmp(x->id, id) == 0) return x;
  return NULL;
}

/* Frees a cancelled subscription (no longer counted in nsubs). */
static void sub_unlink(sg_session_t *s, sg_sub_t *sub) {
  for (sg_sub_t **p = &s->subs; *p; p = &(*p)->next) {
    if (*p == sub) {
      *p = sub->next;
      sg_relay_release(s->relay, &sub->rs);
      sub_free(sub);
      return;
    }
  }
}

/* Frees cancelled subscriptions once the broker confirmed the cancel and no
 * ACK can refer to them any more. */
static void reap_cancelled(sg_session_t *s) {
  sg_sub_t *x = s->subs;
  while (x) {
    sg_sub_t *n = x->next;
    if (x->rs.cancelled && x->un_len == 0 && sg_relay_reached(s->relay, &x->cancel_done))
      sub_unlink(s, x);
    x = n;
  }
}

static int unacked_push(sg_sub_t *sub, uint64_t tag) {
  if (sub->un_len == sub->un_cap) {
    size_t cap = sub->un_cap ? sub->un_cap * 2 : 16;
    uint64_t *n = realloc(sub->unacked, cap * sizeof(*n));
    if (n == NULL) return SG_ERR_NOMEM;
    sub->unacked = n;
    sub->un_cap = cap;
  }
  sub->unacked[sub->un_len++] = tag;
  return 0;
}

/* ---------- queues of the session's own ---------- */

static amqp_bytes_t bytes_of(const char *s) { return amqp_cstring_bytes(s); }

static void random_hex(char *out, size_t n) {
  static const char hex[] = "0123456789abcdef";
  uint64_t x = uv_hrtime() ^ ((uint64_t)(uintptr_t)out << 17);
  for (size_t i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    out[i] = hex[x & 15];
  }
  out[n] = '\0';
}

/* The exclusive reply queue behind /temp-queue/NAME, created on first use. */
static const char *temp_queue(sg_session_t *s, const char *tname) {
  for (sg_sub_t *x = s->subs; x; x = x->next)
    if (x->internal && strcmp(x->temp_name, tname) == 0) return x->rs.queue;
  sg_sub_t *sub = calloc(1, sizeof(*sub));
  char qname[96], rnd[17];
  if (sub == NULL) return NULL;
  random_hex(rnd, 16);
  snprintf(qname, sizeof(qname), "stomp-temp-%" PRIu64 "-%s-%" PRIu64, s->id, rnd, ++s->temp_seq);
  size_t tl = strlen(tname);
  sub->internal = 1;
  sub->temp_name = strdup(tname);
  sub->rs.queue = strdup(qname);
  sub->id = malloc(tl + 13);
  sub->rs.tag = malloc(tl + 15);
  if (!sub->temp_name || !sub->rs.queue || !sub->id || !sub->rs.tag) {
    sub_free(sub);
    return NULL;
  }
  sprintf(sub->id, "/temp-queue/%s", tname);
  sprintf(sub->rs.tag, "T_/temp-queue/%s", tname);
  sub->rs.tag_len = strlen(sub->rs.tag);
  sub->ack_mode = ACK_AUTO;
  sub->next = s->subs;
  s->subs = sub;
  sg_relay_subreq_t q;
  memset(&q, 0, sizeof(q));
  q.declare = SG_RELAY_DECLARE;
  q.exclusive = 1;
  q.auto_delete = 1;
  q.qargs = amqp_empty_table;
  q.cargs = amqp_empty_table;
  q.prefetch = -1;
  q.no_ack = 1;
  sg_relay_fault_t why;
  if (sg_relay_subscribe(s->relay, &sub->rs, &q, &why) != 0) return NULL;
  return sub->rs.queue;
}

/* ---------- queue arguments ---------- */

#define MAX_QUEUE_ARGS 10

typedef struct queue_args {
  amqp_table_entry_t e[MAX_QUEUE_ARGS];
  amqp_table_t table;
  int durable_type; /* x-queue-type quorum or stream: durable, shared */
} queue_args_t;

/* Collects the queue-argument headers of f (RabbitMQ's names, first
 * occurrence wins) into qa, borrowing the header strings. Returns 0, or
 * SG_ERR_INVALID with *bad naming a header whose integer does not parse. */
static int queue_args_from(const sg_stomp_frame_t *f, queue_args_t *qa, const char **bad) {
  memset(qa, 0, sizeof(*qa));
  qa->table.entries = qa->e;
  for (size_t i = 0; i < f->nheaders; i++) {
    const sg_stomp_header_t *h = &f->headers[i];
    sg_qarg_type_t t = sg_dest_queue_arg_type(h->name);
    if (t == SG_QARG_NONE || sg_stomp_frame_header(f, h->name, NULL) != h->value) continue;
    if (qa->table.num_entries >= MAX_QUEUE_ARGS) break;
    amqp_table_entry_t *e = &qa->e[qa->table.num_entries];
    e->key = (amqp_bytes_t){h->name_len, (void *)h->name};
    if (t == SG_QARG_INT) {
      int64_t v;
      if (sg_dest_parse_int(h->value, &v) != 0) {
        *bad = h->name;
        return SG_ERR_INVALID;
      }
      e->value.kind = AMQP_FIELD_KIND_I64;
      e->value.value.i64 = v;
    } else {
      e->value.kind = AMQP_FIELD_KIND_UTF8;
      e->value.value.bytes = (amqp_bytes_t){h->value_len, (void *)h->value};
      if (strcmp(h->name, "x-queue-type") == 0 &&
          (strcmp(h->value, "quorum") == 0 || strcmp(h->value, "stream") == 0))
        qa->durable_type = 1;
    }
    qa->table.num_entries++;
  }
  return 0;
}

/* queue_args_from, answering a malformed argument with ERROR. 0 or -1
 * after the session was closed. */
static int take_queue_args(sg_session_t *s, const sg_stomp_frame_t *f, queue_args_t *qa) {
  const char *bad = NULL;
  if (queue_args_from(f, qa, &bad) == 0) return 0;
  char detail[128];
  snprintf(detail, sizeof(detail), "'%s' must be an integer", bad);
  error_close(s, CLOSE_PROTOCOL, "Invalid queue argument", f, detail);
  return -1;
}

static int header_true(const sg_stomp_frame_t *f, const char *name) {
  const char *v = sg_stomp_frame_header(f, name, NULL);
  return v && strcmp(v, "true") == 0;
}

/* ---------- SEND ---------- */

static int is_reserved_send_header(const char *n) {
  static const char *const names[] = {
      "destination", "content-length", "transaction", "receipt", "message-id", "ack",
      "subscription", "content-type", "content-encoding", "correlation-id", "reply-to",
      "expiration", "priority", "timestamp", "type", "user-id", "app-id", "amqp-message-id",
      "persistent", "redelivered", NULL};
  for (int i = 0; names[i]; i++)
    if (strcmp(n, names[i]) == 0) return 1;
  return 0;
}

static int parse_u64(const char *v, uint64_t *out) {
  if (v == NULL || *v < '0' || *v > '9') return -1;
  char *end;
  unsigned long long x = strtoull(v, &end, 10);
  if (*end) return -1;
  *out = x;
  return 0;
}

/* ---------- application destinations ---------- */

/* Whether dst is a user destination (/user/...) that the relay serves. */
static int user_dest_of(const sg_session_t *s, const char *dst) {
  return s->relay->user_dests && s->cfg->user_exchange && sg_user_dest_is(dst);
}

static int app_prefix_of(const sg_session_t *s, const char *dst) {
  return sg_app_match((const char *const *)s->cfg->app_prefixes.v, s->cfg->app_prefixes.n, dst);
}

/* The session's queue for back-end replies: an internal temp queue under a
 * name no client can give (client /temp-queue/ names are never empty). */
static const char *app_reply_queue(sg_session_t *s) {
  const char *q = temp_queue(s, "");
  if (q == NULL) return NULL;
  for (sg_sub_t *x = s->subs; x; x = x->next)
    if (x->internal && x->temp_name[0] == '\0') x->app_reply = 1;
  return q;
}

static int app_corr_remember(sg_app_corr_t *c, amqp_bytes_t id, const char *dst) {
  char buf[256];
  snprintf(buf, sizeof(buf), "%.*s", (int)(id.len < 255 ? id.len : 255), (const char *)id.bytes);
  return sg_app_corr_add(c, buf, dst);
}

static void do_send(sg_session_t *s, sg_stomp_frame_t *f) {
  const char *dst = sg_stomp_frame_header(f, "destination", NULL);
  if (dst == NULL) {
    error_close(s, CLOSE_PROTOCOL, "Missing destination", f, "SEND requires a destination header");
    return;
  }
  /* These are the server's to set on MESSAGE; a client that sends them
   * would otherwise forge them for every subscriber. */
  static const char *const forbidden[] = {"message-id", "subscription", "ack"};
  for (size_t i = 0; i < sizeof(forbidden) / sizeof(forbidden[0]); i++) {
    if (sg_stomp_frame_header(f, forbidden[i], NULL)) {
      char detail[96];
      snprintf(detail, sizeof(detail), "'%s' is not allowed on SEND", forbidden[i]);
      error_close(s, CLOSE_PROTOCOL, "Invalid header", f, detail);
      return;
    }
  }
  queue_args_t qa;
  if (take_queue_args(s, f, &qa) != 0) return;
  sg_dest_t d;
  const char *exchange, *rk;
  sg_buf_t app_key;
  sg_buf_init(&app_key);
  int app = app_prefix_of(s, dst), user = 0;
  if (app >= 0) {
    memset(&d, 0, sizeof(d));
    if (sg_app_routing_key(&app_key, s->cfg->app_prefixes.v[app], dst) != 0) {
      char detail[300];
      snprintf(detail, sizeof(detail),
               "'%.200s' needs a path under the application prefix '%s', with no empty segment",
               dst, s->cfg->app_prefixes.v[app]);
      sg_buf_free(&app_key);
      error_close(s, CLOSE_PROTOCOL, "Invalid destination", f, detail);
      return;
    }
    exchange = s->cfg->app_exchange;
    rk = app_key.base;
  } else if (user_dest_of(s, dst)) {
    /* /user/U/queue/X reaches every session of U that subscribed to
     * /user/queue/X, on any gateway: they are bound with this key. */
    memset(&d, 0, sizeof(d));
    if (sg_user_dest_send_key(&app_key, dst) != 0) {
      sg_buf_free(&app_key);
      error_close(s, CLOSE_PROTOCOL, "Invalid destination", f,
                  "a user destination to SEND to is /user/USER/queue/NAME");
      return;
    }
    user = 1;
    exchange = s->cfg->user_exchange;
    rk = app_key.base;
  } else if (sg_dest_parse(dst, strlen(dst), &d) != 0) {
    error_close(s, CLOSE_PROTOCOL, "Invalid destination", f, dst);
    return;
  } else if (sg_dest_publish_target(&d, &exchange, &rk) != 0) {
    sg_dest_free(&d);
    error_close(s, CLOSE_PROTOCOL, "Invalid destination", f,
                "a /temp-queue/ destination is only valid in a reply-to header");
    return;
  }
  if (app >= 0 || user ? refused(s, f, SG_PERM_WRITE, SG_DEST_EXCHANGE, exchange, rk, dst)
                       : refused(s, f, SG_PERM_WRITE, (int)d.kind, d.name, d.key, dst)) {
    sg_dest_free(&d);
    sg_buf_free(&app_key);
    return;
  }
  if (d.kind == SG_DEST_QUEUE && sg_relay_declare(s->relay, d.name, &qa.table) < 0) goto lost;

  amqp_basic_properties_t p;
  memset(&p, 0, sizeof(p));
  /* Application SENDs carry three more entries: session, user, destination. */
  amqp_table_entry_t *entries = calloc(f->nheaders + 3, sizeof(*entries));
  if (entries == NULL) goto lost;
  size_t nent = 0;
  for (size_t i = 0; i < f->nheaders; i++) {
    const sg_stomp_header_t *h = &f->headers[i];
    /* The first of repeated headers wins; skip later copies. */
    if (sg_stomp_frame_header(f, h->name, NULL) != h->value) continue;
    const char *n = h->name;
    amqp_bytes_t v = {h->value_len, (void *)h->value};
    uint64_t num;
    if (strcmp(n, "content-type") == 0) {
      p._flags |= AMQP_BASIC_CONTENT_TYPE_FLAG;
      p.content_type = v;
    } else if (strcmp(n, "content-encoding") == 0) {
      p._flags |= AMQP_BASIC_CONTENT_ENCODING_FLAG;
      p.content_encoding = v;
    } else if (strcmp(n, "correlation-id") == 0) {
      p._flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
      p.correlation_id = v;
    } else if (strcmp(n, "reply-to") == 0) {
      const char *rq = h->value;
      if (strncmp(rq, "/temp-queue/", 12) == 0 && rq[12]) {
        rq = temp_queue(s, rq + 12);
        if (rq == NULL) {
          free(entries);
          goto lost;
        }
      }
      p._flags |= AMQP_BASIC_REPLY_TO_FLAG;
      p.reply_to = bytes_of(rq);
    } else if (strcmp(n, "expiration") == 0) {
      p._flags |= AMQP_BASIC_EXPIRATION_FLAG;
      p.expiration = v;
    } else if (strcmp(n, "priority") == 0) {
      if (parse_u64(h->value, &num) == 0 && num <= 255) {
        p._flags |= AMQP_BASIC_PRIORITY_FLAG;
        p.priority = (uint8_t)num;
      }
    } else if (strcmp(n, "timestamp") == 0) {
      if (parse_u64(h->value, &num) == 0) {
        p._flags |= AMQP_BASIC_TIMESTAMP_FLAG;
        p.timestamp = num;
      }
    } else if (strcmp(n, "type") == 0) {
      p._flags |= AMQP_BASIC_TYPE_FLAG;
      p.type = v;
    } else if (strcmp(n, "user-id") == 0) {
      p._flags |= AMQP_BASIC_USER_ID_FLAG;
      p.user_id = v;
    } else if (strcmp(n, "app-id") == 0) {
      p._flags |= AMQP_BASIC_APP_ID_FLAG;
      p.app_id = v;
    } else if (strcmp(n, "amqp-message-id") == 0) {
      p._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
      p.message_id = v;
    } else if (strcmp(n, "persistent") == 0) {
      if (strcmp(h->value, "true") == 0) {
        p._flags |= AMQP_BASIC_DELIVERY_MODE_FLAG;
        p.delivery_mode = AMQP_DELIVERY_PERSISTENT;
      }
    } else if (!is_reserved_send_header(n) && strncmp(n, "stompgate-", 10) != 0) {
      /* stompgate-* entries are the gateway's word to back ends (who sent
       * it); a client cannot forge them. */
      entries[nent].key = (amqp_bytes_t){h->name_len, (void *)h->name};
      entries[nent].value.kind = AMQP_FIELD_KIND_UTF8;
      entries[nent].value.value.bytes = v;
      nent++;
    }
  }
  char app_corr[48], app_session[32];
  if (app >= 0) {
    /* The back end answers on the session's reply queue with the request's
     * correlation id, which tells the reply's destination. */
    if (!(p._flags & AMQP_BASIC_REPLY_TO_FLAG)) {
      const char *rq = app_reply_queue(s);
      if (rq == NULL) {
        free(entries);
        goto lost;
      }
      p._flags |= AMQP_BASIC_REPLY_TO_FLAG;
      p.reply_to = bytes_of(rq);
    }
    if (!(p._flags & AMQP_BASIC_CORRELATION_ID_FLAG)) {
      snprintf(app_corr, sizeof(app_corr), "session-%" PRIu64 "-%" PRIu64, s->id, ++s->app_seq);
      p._flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
      p.correlation_id = bytes_of(app_corr);
    }
    if ((s->app_corr.cap == 0 && sg_app_corr_init(&s->app_corr, 256) != 0) ||
        app_corr_remember(&s->app_corr, p.correlation_id, dst) != 0) {
      free(entries);
      goto lost;
    }
    snprintf(app_session, sizeof(app_session), "session-%" PRIu64, s->id);
    const char *extra[3][2] = {{"stompgate-session", app_session},
                               {"stompgate-user", s->login},
                               {"stompgate-destination", dst}};
    for (int i = 0; i < 3; i++) {
      entries[nent].key = bytes_of(extra[i][0]);
      entries[nent].value.kind = AMQP_FIELD_KIND_UTF8;
      entries[nent].value.value.bytes = bytes_of(extra[i][1]);
      nent++;
    }
  }
  if (nent) {
    p._flags |= AMQP_BASIC_HEADERS_FLAG;
    p.headers.num_entries = (int)nent;
    p.headers.entries = entries;
  }
  int r = sg_relay_publish(s->relay, exchange, rk, &p, f->body, f->body_len);
  free(entries);
  sg_dest_free(&d);
  sg_buf_free(&app_key);
  if (r < 0) return; /* on_fault_cb has closed the session */
  add_receipt(s, f, 0);
  return;
lost:
  sg_dest_free(&d);
  sg_buf_free(&app_key);
  if (s->state != S_CLOSING) error_close(s, CLOSE_INTERNAL, "Internal error", f, NULL);
}

/* ---------- SUBSCRIBE / UNSUBSCRIBE ---------- */

/* Handles a SUBSCRIBE. 1 when the relay makes it wait: f is kept and
 * handled again later; 0 when done with f. */
static int do_subscribe(sg_session_t *s, sg_stomp_frame_t *f) {
  const char *dst = sg_stomp_frame_header(f, "destination", NULL);
  const char *id = sg_stomp_frame_header(f, "id", NULL);
  const char *ack = sg_stomp_frame_header(f, "ack", NULL);
  if (dst == NULL) {
    error_close(s, CLOSE_PROTOCOL, "Missing destination", f,
                "SUBSCRIBE requires a destination header");
    return 0;
  }
  if (id == NULL) {
    if (s->version >= 11) {
      error_close(s, CLOSE_PROTOCOL, "Missing id", f, "SUBSCRIBE requires an id header");
      return 0;
    }
    id = dst; /* STOMP 1.0: the destination identifies the subscription */
  }
  if (strncmp(id, "/temp-queue/", 12) == 0) {
    error_close(s, CLOSE_PROTOCOL, "Invalid subscription id", f,
                "ids starting with /temp-queue/ are reserved");
    return 0;
  }
  if (sub_by_id(s, id)) {
    error_close(s, CLOSE_PROTOCOL, "Duplicated subscription identifier", f, id);
    return 0;
  }
  if (s->nsubs >= s->cfg->max_subscriptions) {
    error_close(s, CLOSE_POLICY, "Too many subscriptions", f, NULL);
    return 0;
  }
  int mode;
  if (ack == NULL || strcmp(ack, "auto") == 0) mode = ACK_AUTO;
  else if (strcmp(ack, "client") == 0) mode = ACK_CLIENT;
  else if (strcmp(ack, "client-individual") == 0) mode = ACK_CLIENT_INDIVIDUAL;
  else {
    error_close(s, CLOSE_PROTOCOL, "Invalid ack mode", f, ack);
    return 0;
  }
  int app = app_prefix_of(s, dst);
  if (app >= 0) {
    char msg[240];
    snprintf(msg, sizeof(msg), "Cannot subscribe under the application prefix %s",
             s->cfg->app_prefixes.v[app]);
    error_close(s, CLOSE_PROTOCOL, msg, f,
                "application destinations are handled by back-end services: SEND to them; "
                "their replies arrive without a subscription");
    return 0;
  }
  queue_args_t qa;
  if (take_queue_args(s, f, &qa) != 0) return 0;
  /* Streams are read from an offset, given as a consumer argument. */
  amqp_table_entry_t ce;
  amqp_table_t cargs = amqp_empty_table;
  const char *so = sg_stomp_frame_header(f, "x-stream-offset", NULL);
  if (so) {
    sg_stream_offset_t off;
    if (sg_dest_parse_stream_offset(so, &off) != 0) {
      error_close(s, CLOSE_PROTOCOL, "Invalid x-stream-offset", f,
                  "expected first, last, next, offset=N or timestamp=T");
      return 0;
    }
    ce.key = amqp_cstring_bytes("x-stream-offset");
    switch (off.kind) {
    case SG_STREAM_OFFSET:
      ce.value.kind = AMQP_FIELD_KIND_I64;
      ce.value.value.i64 = off.value;
      break;
    case SG_STREAM_TIMESTAMP:
      ce.value.kind = AMQP_FIELD_KIND_TIMESTAMP;
      ce.value.value.u64 = (uint64_t)off.value;
      break;
    default:
      ce.value.kind = AMQP_FIELD_KIND_UTF8;
      ce.value.value.bytes = amqp_cstring_bytes(so);
      break;
    }
    cargs.num_entries = 1;
    cargs.entries = &ce;
  }
  /* durable:true (persistent:true in older clients) asks for a topic
   * subscription that outlives the session; it is found again by its id
   * or by x-queue-name. */
  int durable = header_true(f, "durable") || header_true(f, "persistent");
  const char *xqn = sg_stomp_frame_header(f, "x-queue-name", NULL);
  if (xqn && (*xqn == '\0' || strlen(xqn) > 255)) {
    error_close(s, CLOSE_PROTOCOL, "Invalid x-queue-name", f, "a queue name has 1 to 255 bytes");
    return 0;
  }
  if (durable && xqn == NULL && sg_stomp_frame_header(f, "id", NULL) == NULL) {
    error_close(s, CLOSE_PROTOCOL, "Missing id", f, "a durable subscription requires an id header");
    return 0;
  }
  sg_dest_t d;
  int user = user_dest_of(s, dst);
  if (user && (xqn || durable)) {
    /* A named or durable queue could be found again by another user. */
    error_close(s, CLOSE_PROTOCOL, "Invalid destination", f,
                "a user destination has a queue of the session's own: no durable or x-queue-name");
    return 0;
  }
  if (user) {
    /* /user/queue/X: a queue of this session's own, bound to the user
     * exchange with this user's key; nobody else's key can be named. */
    sg_buf_t key;
    sg_buf_init(&key);
    memset(&d, 0, sizeof(d));
    d.kind = SG_DEST_EXCHANGE;
    if (sg_user_dest_subscribe_key(&key, s->login, dst) != 0) {
      sg_buf_free(&key);
      error_close(s, CLOSE_PROTOCOL, "Invalid destination", f,
                  "a user destination to SUBSCRIBE to is /user/queue/NAME");
      return 0;
    }
    d.key = key.base;
    if ((d.name = strdup(s->cfg->user_exchange)) == NULL) {
      sg_dest_free(&d);
      error_close(s, CLOSE_INTERNAL, "Internal error", f, "out of memory");
      return 0;
    }
  } else if (sg_dest_parse(dst, strlen(dst), &d) != 0) {
    error_close(s, CLOSE_PROTOCOL, "Invalid destination", f, dst);
    return 0;
  }
  if (d.kind == SG_DEST_TEMP_QUEUE) {
    sg_dest_free(&d);
    error_close(s, CLOSE_PROTOCOL, "Invalid destination", f,
                "a /temp-queue/ destination is only valid in a reply-to header");
    return 0;
  }
  if (!user && refused(s, f, SG_PERM_READ, (int)d.kind, d.name, d.key, dst)) {
    sg_dest_free(&d);
    return 0;
  }
  /* A topic subscription that names its queue, or a durable one, may meet
   * another's queue by that name: declaring it needs configure on it. */
  if (s->grant && (d.kind == SG_DEST_TOPIC || d.kind == SG_DEST_EXCHANGE) && (xqn || durable)) {
    char dq[SG_DEST_DURABLE_NAME_SIZE];
    if (xqn == NULL) sg_dest_durable_queue_name(id, strlen(id), dq);
    if (refused(s, f, SG_PERM_CONFIGURE, SG_DEST_QUEUE, xqn ? xqn : dq, NULL, dst)) {
      sg_dest_free(&d);
      return 0;
    }
  }
  sg_sub_t *sub = calloc(1, sizeof(*sub));
  size_t il = strlen(id);
  if (sub == NULL) goto nomem;
  sub->id = strdup(id);
  sub->rs.tag = malloc(il + 3);
  if (!sub->id || !sub->rs.tag) goto nomem;
  memcpy(sub->rs.tag, "T_", 2);
  memcpy(sub->rs.tag + 2, id, il + 1);
  sub->rs.tag_len = il + 2;
  sub->ack_mode = mode;
  if (user && (sub->user_dest = strdup(dst)) == NULL) goto nomem;
  if (sub->rs.tag_len > 255) {
    sub_free(sub);
    sg_dest_free(&d);
    error_close(s, CLOSE_PROTOCOL, "Invalid subscription id", f, "id is longer than 253 bytes");
    return 0;
  }

  sub->topic_like = d.kind == SG_DEST_TOPIC || d.kind == SG_DEST_EXCHANGE;
  sg_relay_subreq_t q;
  memset(&q, 0, sizeof(q));
  q.f = f;
  q.d = &d;
  q.user = user;
  q.qargs = qa.table;
  q.cargs = cargs;
  q.no_ack = mode == ACK_AUTO;
  switch (d.kind) {
  case SG_DEST_EXCHANGE:
  case SG_DEST_TOPIC: {
    char rnd[17], qname[64];
    if (xqn == NULL && durable) {
      sg_dest_durable_queue_name(id, strlen(id), qname);
    } else if (xqn == NULL) {
      random_hex(rnd, 16);
      snprintf(qname, sizeof(qname), "stomp-subscription-%s", rnd);
    }
    if ((sub->rs.queue = strdup(xqn ? xqn : qname)) == NULL) goto nomem;
    q.own_queue = 1;
    q.declare = SG_RELAY_DECLARE;
    /* A durable subscription's queue (and any quorum or stream queue)
     * outlives the session; otherwise it is the session's alone. */
    if (durable || qa.durable_type) {
      q.durable = 1;
      q.auto_delete = header_true(f, "auto-delete");
    } else { /* a named queue may be shared with others unless exclusive:true */
      q.exclusive = xqn == NULL || header_true(f, "exclusive");
      q.auto_delete = 1;
    }
    q.bind_exchange = d.kind == SG_DEST_TOPIC ? "amq.topic" : d.name;
    q.bind_key = d.kind == SG_DEST_TOPIC ? d.name : d.key;
    break;
  }
  case SG_DEST_QUEUE:
    if ((sub->rs.queue = strdup(d.name)) == NULL) goto nomem;
    q.declare = SG_RELAY_DECLARE_ONCE;
    break;
  default: /* /amq/queue/ and /reply-queue/: consume what exists */
    if ((sub->rs.queue = strdup(d.name)) == NULL) goto nomem;
    break;
  }
  const char *pf = sg_stomp_frame_header(f, "prefetch-count", NULL);
  uint64_t prefetch;
  q.prefetch = pf && parse_u64(pf, &prefetch) == 0 && prefetch <= 65535 ? (int)prefetch : -1;
  sg_relay_fault_t why;
  memset(&why, 0, sizeof(why));
  int r = sg_relay_subscribe(s->relay, &sub->rs, &q, &why);
  sg_dest_free(&d);
  if (r == SG_ERR_AGAIN) {
    /* The relay must set something up first; the frame is handled again
     * from the start once it wakes the session. */
    sub_free(sub);
    return 1;
  }
  if (r < 0 && why.kind) {
    sub_free(sub);
    relay_failed(s, &why, sg_stomp_frame_header(f, "receipt", NULL));
    return 0;
  }
  sub->next = s->subs;
  s->subs = sub;
  s->nsubs++;
  if (r < 0) return 0; /* the link is lost; on_fault_cb closed the session */
  add_receipt(s, f, 0);
  return 0;
nomem:
  sg_dest_free(&d);
  if (sub) sub_free(sub);
  error_close(s, CLOSE_INTERNAL, "Internal error", f, "out of memory");
  return 0;
}

static void do_unsubscribe(sg_session_t *s, sg_stomp_frame_t *f) {
  const char *id = sg_stomp_frame_header(f, "id", NULL);
  if (id == NULL && s->version == 10) id = sg_stomp_frame_header(f, "destination", NULL);
  if (id == NULL) {
    error_close(s, CLOSE_PROTOCOL, "Missing id", f, "UNSUBSCRIBE requires an id header");
    return;
  }
  /* UNSUBSCRIBE durable:true ends a durable topic subscription for good:
   * its queue is deleted, even when no session consumes it right now. */
  int forget = header_true(f, "durable") || header_true(f, "persistent");
  const char *xqn = sg_stomp_frame_header(f, "x-queue-name", NULL);
  sg_sub_t *sub = sub_by_id(s, id);
  if (sub == NULL && !forget) {
    error_close(s, CLOSE_PROTOCOL, "No subscription found", f, id);
    return;
  }
  if (sub) {
    if (sg_relay_unsubscribe(s->relay, &sub->rs, &sub->cancel_done) < 0) return;
    s->nsubs--;
  }
  if (forget && (sub == NULL || sub->rs.own_queue)) {
    char qname[SG_DEST_DURABLE_NAME_SIZE];
    const char *q = sub ? sub->rs.queue : xqn;
    if (q == NULL) {
      sg_dest_durable_queue_name(id, strlen(id), qname);
      q = qname;
    }
    if (refused(s, f, SG_PERM_CONFIGURE, SG_DEST_QUEUE, q, NULL, q)) return;
    if (sg_relay_delete_queue(s->relay, q) < 0) return;
  }
  add_receipt(s, f, 0);
  /* A subscription nothing can refer to any more goes at once. */
  if (sub) reap_cancelled(s);
}

/* ---------- ACK / NACK ---------- */

static int parse_ack_id(const char *v, uint64_t *tag) {
  const char *at = NULL;
  for (const char *p = v; (p = strstr(p, "@@")) != NULL; p += 2) at = p;
  return parse_u64(at ? at + 2 : v, tag);
}

static void do_ack(sg_session_t *s, sg_stomp_frame_t *f, int ack) {
  const char *idh = s->version >= 12 ? "id" : "message-id";
  const char *v = sg_stomp_frame_header(f, idh, NULL);
  if (v == NULL) {
    char detail[64];
    snprintf(detail, sizeof(detail), "%s requires a %s header", ack ? "ACK" : "NACK", idh);
    error_close(s, CLOSE_PROTOCOL, "Missing message id", f, detail);
    return;
  }
  uint64_t tag;
  sg_sub_t *sub = NULL;
  size_t pos = 0;
  if (parse_ack_id(v, &tag) == 0) {
    for (sg_sub_t *x = s->subs; x && !sub; x = x->next)
      for (size_t i = 0; i < x->un_len; i++)
        if (x->unacked[i] == tag) {
          sub = x;
          pos = i;
          break;
        }
  }
  if (sub == NULL) {
    error_close(s, CLOSE_PROTOCOL, ack ? "Unknown message id in ACK" : "Unknown message id in NACK",
                f, v);
    return;
  }
  int requeue = 1;
  const char *rq = sg_stomp_frame_header(f, "requeue", NULL);
  if (rq && strcmp(rq, "false") == 0) requeue = 0;

  size_t first = sub->ack_mode == ACK_CLIENT ? 0 : pos;
  int multiple = 0;
  if (sub->ack_mode == ACK_CLIENT && pos > 0) {
    /* One multiple ack is right only if no other subscription has a tag
     * at or below this one; otherwise ack this subscription's one by one. */
    multiple = 1;
    for (sg_sub_t *x = s->subs; x; x = x->next)
      if (x != sub && x->un_len && x->unacked[0] < tag) multiple = 0;
  }
  int r = 0;
  if (multiple || first == pos) {
    r = sg_relay_ack(s->relay, tag, multiple, ack, requeue);
  } else {
    for (size_t i = first; i <= pos && r == 0; i++)
      r = sg_relay_ack(s->relay, sub->unacked[i], 0, ack, requeue);
  }
  if (r < 0) return;
  sg_metrics_client_ack(ack);
  memmove(sub->unacked + first, sub->unacked + pos + 1, (sub->un_len - pos - 1) * sizeof(uint64_t));
  sub->un_len -= pos + 1 - first;
  if (sub->rs.cancelled) reap_cancelled(s);
  add_receipt(s, f, 0);
}

/* ---------- transactions ---------- */

static sg_tx_t *tx_find(sg_session_t *s, const char *id, sg_tx_t ***link) {
  for (sg_tx_t **p = &s->txs; *p; p = &(*p)->next)
    if (strcmp((*p)->id, id) == 0) {
      if (link) *link = p;
      return *p;
    }
  return NULL;
}

static const char *tx_header(sg_session_t *s, sg_stomp_frame_t *f) {
  const char *t = sg_stomp_frame_header(f, "transaction", NULL);
  if (t == NULL) error_close(s, CLOSE_PROTOCOL, "Missing transaction", f,
                             "BEGIN, COMMIT and ABORT require a transaction header");
  return t;
}

static void do_begin(sg_session_t *s, sg_stomp_frame_t *f) {
  const char *t = tx_header(s, f);
  if (t == NULL) return;
  if (tx_find(s, t, NULL)) {
    error_close(s, CLOSE_PROTOCOL, "Transaction already started", f, t);
    return;
  }
  if (s->ntxs >= s->cfg->max_transactions) {
    error_close(s, CLOSE_POLICY, "Too many transactions", f, NULL);
    return;
  }
  sg_tx_t *tx = calloc(1, sizeof(*tx));
  if (tx == NULL || (tx->id = strdup(t)) == NULL) {
    free(tx);
    error_close(s, CLOSE_INTERNAL, "Internal error", f, "out of memory");
    return;
  }
  tx->next = s->txs;
  s->txs = tx;
  s->ntxs++;
  add_receipt(s, f, 0);
}

static void do_commit_abort(sg_session_t *s, sg_stomp_frame_t *f, int commit) {
  const char *t = tx_header(s, f);
  if (t == NULL) return;
  sg_tx_t **link, *tx = tx_find(s, t, &link);
  if (tx == NULL) {
    error_close(s, CLOSE_PROTOCOL, "Unknown transaction", f, t);
    return;
  }
  *link = tx->next;
  s->ntxs--;
  if (commit) {
    for (size_t i = 0; i < tx->n; i++) {
      if (s->state == S_CONNECTED) process_frame(s, tx->frames[i], 1);
      else sg_stomp_frame_free(tx->frames[i]);
      tx->frames[i] = NULL;
    }
    tx->n = 0;
  }
  tx_free(tx);
  if (s->state == S_CONNECTED) add_receipt(s, f, 0);
}

/* Keeps f for its transaction. Returns 1 if taken, 0 if f has no
 * transaction, -1 after an error closed the session. */
static int tx_take(sg_session_t *s, sg_stomp_frame_t *f) {
  const char *t = sg_stomp_frame_header(f, "transaction", NULL);
  if (t == NULL) return 0;
  sg_tx_t *tx = tx_find(s, t, NULL);
  if (tx == NULL) {
    error_close(s, CLOSE_PROTOCOL, "Unknown transaction", f, t);
    return -1;
  }
  if (tx->n >= s->cfg->max_tx_frames) {
    error_close(s, CLOSE_POLICY, "Transaction too large", f, t);
    return -1;
  }
  if (tx->n == tx->cap) {
    size_t cap = tx->cap ? tx->cap * 2 : 8;
    sg_stomp_frame_t **n = realloc(tx->frames, cap * sizeof(*n));
    if (n == NULL) {
      error_close(s, CLOSE_INTERNAL, "Internal error", f, "out of memory");
      return -1;
    }
    tx->frames = n;
    tx->cap = cap;
  }
  tx->frames[tx->n++] = f;
  /* The frame is accepted into the transaction; its effect comes with
   * COMMIT, whose receipt waits for it. */
  const char *rid = sg_stomp_frame_header(f, "receipt", NULL);
  if (rid) {
    sg_receipt_t *r = calloc(1, sizeof(*r));
    if (r && (r->id = strdup(rid))) {
      sg_relay_mark(s->relay, &r->mark);
      *s->rc_tail = r;
      s->rc_tail = &r->next;
      flush_receipts(s);
    } else {
      free(r);
    }
  }
  return 1;
}

/* ---------- CONNECT ---------- */

static int pick_version(const char *accept) {
  if (accept == NULL) return 10;
  int best = 0;
  const char *p = accept;
  while (*p) {
    while (*p == ' ' || *p == ',') p++;
    const char *e = p;
    while (*e && *e != ',') e++;
    size_t n = (size_t)(e - p);
    while (n && p[n - 1] == ' ') n--;
    if (n == 3 && memcmp(p, "1.2", 3) == 0 && best < 12) best = 12;
    else if (n == 3 && memcmp(p, "1.1", 3) == 0 && best < 11) best = 11;
    else if (n == 3 && memcmp(p, "1.0", 3) == 0 && best < 10) best = 10;
    p = e;
  }
  return best;
}

static int parse_heartbeat(const char *v, uint64_t *cx, uint64_t *cy) {
  if (v == NULL) {
    *cx = *cy = 0;
    return 0;
  }
  char *end;
  if (*v < '0' || *v > '9') return -1;
  /* strtoull saturates on overflow; a value past 64 bits is refused rather
   * than read as the largest one (doubled, that wraps to a tiny timeout). */
  errno = 0;
  unsigned long long a = strtoull(v, &end, 10);
  if (*end != ',' || end[1] < '0' || end[1] > '9') return -1;
  unsigned long long b = strtoull(end + 1, &end, 10);
  if (*end || errno == ERANGE) return -1;
  /* Nobody needs a heart-beat rarer than every 49 days; the cap keeps the
   * interval arithmetic from overflowing. */
  if (a > UINT32_MAX) a = UINT32_MAX;
  if (b > UINT32_MAX) b = UINT32_MAX;
  *cx = a;
  *cy = b;
  return 0;
}

static void heartbeat_cb(uv_timer_t *t) {
  sg_session_t *s = container_of(t, sg_session_t, timer);
  if (s->state != S_CONNECTED) return;
  uint64_t now = uv_now(t->loop);
  if (s->hb_recv_ms && !s->tr->paused && now - s->tr->last_rx > 2 * s->hb_recv_ms) {
    error_close(s, CLOSE_PROTOCOL, "Heart-beat timeout", NULL,
                "nothing was received within twice the agreed heart-beat interval");
    return;
  }
  if (s->hb_send_ms && now - s->tr->last_tx + s->hb_tick_ms / 2 >= s->hb_send_ms)
    sg_transport_send(s->tr, "\n", 1, 0);
}

static void connect_timeout_cb(uv_timer_t *t) {
  sg_session_t *s = container_of(t, sg_session_t, timer);
  if (s->state == S_WAIT_CONNECT)
    error_close(s, CLOSE_POLICY, "Timed out waiting for CONNECT", NULL, NULL);
}

static void do_connect(sg_session_t *s, sg_stomp_frame_t *f) {
  const char *accept = sg_stomp_frame_header(f, "accept-version", NULL);
  int v = pick_version(accept);
  if (v == 0) {
    sg_buf_t *b = &scratch;
    sg_buf_reset(b);
    sg_stomp_encode_start(b, SG_STOMP_ERROR);
    sg_stomp_encode_headerz(b, 12, SG_STOMP_ERROR, "version", "1.0,1.1,1.2");
    sg_stomp_encode_headerz(b, 12, SG_STOMP_ERROR, "content-type", "text/plain");
    sg_stomp_encode_headerz(b, 12, SG_STOMP_ERROR, "message", "Supported protocol versions are 1.0,1.1,1.2");
    sg_stomp_encode_finish(b, "Supported protocol versions are 1.0 1.1 1.2", 43);
    send_frame_buf(s, b);
    session_end(s, CLOSE_PROTOCOL, "Unsupported STOMP version", "no common STOMP version");
    return;
  }
  s->version = v;
  sg_stomp_parser_set_version(&s->parser, v);
  const char *host = sg_stomp_frame_header(f, "host", NULL);
  if (host == NULL && v >= 11 && s->cfg->require_host) {
    error_close(s, CLOSE_PROTOCOL, "Missing host header", f,
                "STOMP 1.1 and 1.2 require a host header in CONNECT (the virtual host, e.g. /)");
    return;
  }
  uint64_t cx, cy;
  if (parse_heartbeat(sg_stomp_frame_header(f, "heart-beat", NULL), &cx, &cy) != 0) {
    error_close(s, CLOSE_PROTOCOL, "Invalid heart-beat header", f,
                "expected two comma-separated integers");
    return;
  }
  uint64_t min = s->cfg->heartbeat_min_ms;
  s->hb_send_ms = cy ? (cy > min ? cy : min) : 0;
  s->hb_recv_ms = cx ? (cx > min ? cx : min) : 0;

  const char *login = sg_stomp_frame_header(f, "login", NULL);
  const char *pass = sg_stomp_frame_header(f, "passcode", NULL);
  const sg_broker_addr_t *ba = &s->cfg->broker;
  if (login == NULL) {
    login = ba->user;
    if (pass == NULL) pass = ba->password;
  }
  if (pass == NULL) pass = "";
  const char *vhost = host && *host ? host : ba->vhost;
  snprintf(s->login, sizeof(s->login), "%s", login);
  char name[160];
  snprintf(name, sizeof(name), "stompgate %s session-%" PRIu64, s->tr->peer, s->id);
  uv_timer_stop(&s->timer);
  s->state = S_LOGIN;
  /* Only a WebSocket upgrade can carry an Authorization header. */
  sg_relay_login_t l = {s->tr->loop,
                        sg_stomp_frame_header(f, "login", NULL),
                        sg_stomp_frame_header(f, "passcode", NULL),
                        login,
                        pass,
                        vhost,
                        s->tr == &s->ws.tr ? s->ws.bearer : NULL,
                        name};
  const char *why = NULL;
  int r = sg_relay_login(s->relay, &l, &why);
  if (r == 530)
    error_close(s, CLOSE_POLICY, "Virtual host not available", f, why);
  else if (r != 0)
    error_close(s, CLOSE_INTERNAL, "Internal error", f, why);
}

/* ---------- frame dispatch ---------- */

static int frame_owned_by_tx(sg_session_t *s, sg_stomp_frame_t *f, int in_commit) {
  if (in_commit) return 0;
  return tx_take(s, f);
}

static void pending_unshift(sg_session_t *s, sg_stomp_frame_t *f);

/* Handles f and frees it, unless a transaction or the relay keeps it. */
static void process_frame(sg_session_t *s, sg_stomp_frame_t *f, int in_commit) {
  int t;
  switch (f->cmd) {
  case SG_STOMP_SEND:
    if ((t = frame_owned_by_tx(s, f, in_commit)) != 0) {
      if (t > 0) return;
      break;
    }
    do_send(s, f);
    break;
  case SG_STOMP_ACK:
  case SG_STOMP_NACK:
    if (f->cmd == SG_STOMP_NACK && s->version == 10) {
      error_close(s, CLOSE_PROTOCOL, "NACK is not part of STOMP 1.0", f, NULL);
      break;
    }
    if ((t = frame_owned_by_tx(s, f, in_commit)) != 0) {
      if (t > 0) return;
      break;
    }
    do_ack(s, f, f->cmd == SG_STOMP_ACK);
    break;
  case SG_STOMP_SUBSCRIBE:
    if (do_subscribe(s, f)) {
      pending_unshift(s, f);
      return;
    }
    break;
  case SG_STOMP_UNSUBSCRIBE:
    do_unsubscribe(s, f);
    break;
  case SG_STOMP_BEGIN:
    do_begin(s, f);
    break;
  case SG_STOMP_COMMIT:
    do_commit_abort(s, f, 1);
    break;
  case SG_STOMP_ABORT:
    do_commit_abort(s, f, 0);
    break;
  case SG_STOMP_DISCONNECT:
    if (add_receipt(s, f, 1) <= 0 && s->state == S_CONNECTED)
      session_end(s, CLOSE_NORMAL, "", "DISCONNECT");
    break;
  case SG_STOMP_CONNECT:
  case SG_STOMP_STOMP:
    error_close(s, CLOSE_PROTOCOL, "Already connected", f, NULL);
    break;
  default: {
    char detail[160];
    snprintf(detail, sizeof(detail), "Could not interpret command %.64s", f->command);
    error_close(s, CLOSE_PROTOCOL, "Unknown command", f, detail);
    break;
  }
  }
  sg_stomp_frame_free(f);
}

/* Keeps f to handle later, in arrival order. */
static void pending_push(sg_session_t *s, sg_stomp_frame_t *f, const char *too_many) {
  if (s->npending - s->pend_head >= s->cfg->max_pending_frames) {
    error_close(s, CLOSE_POLICY, too_many, f, NULL);
    sg_stomp_frame_free(f);
    return;
  }
  if (s->npending == s->pending_cap) {
    if (s->pend_head > 0) {
      memmove(s->pending, s->pending + s->pend_head,
              (s->npending - s->pend_head) * sizeof(*s->pending));
      s->npending -= s->pend_head;
      s->pend_head = 0;
    }
  }
  if (s->npending == s->pending_cap) {
    size_t cap = s->pending_cap ? s->pending_cap * 2 : 8;
    sg_stomp_frame_t **n = realloc(s->pending, cap * sizeof(*n));
    if (n == NULL) {
      error_close(s, CLOSE_INTERNAL, "Internal error", f, "out of memory");
      sg_stomp_frame_free(f);
      return;
    }
    s->pending = n;
    s->pending_cap = cap;
  }
  s->pending[s->npending++] = f;
}

/* Puts f back at the head of the waiting frames, where it came from. */
static void pending_unshift(sg_session_t *s, sg_stomp_frame_t *f) {
  if (s->pend_head > 0) s->pending[--s->pend_head] = f;
  else pending_push(s, f, "Too many frames while the broker channel opens"); /* came straight in */
}

/* The ERROR for a client that sends more than may wait for w. */
static const char *too_many(int w) {
  switch (w) {
  case SG_RELAY_WAIT_BLOCKED: return "Too many frames while the broker blocks publishing";
  case SG_RELAY_WAIT_CHANNEL: return "Too many frames while the broker channel opens";
  default: return "Too many frames while a subscription is set up";
  }
}

/* Handles the frames that waited, until one makes the session wait again. */
static void run_pending(sg_session_t *s) {
  while (s->pend_head < s->npending && s->state == S_CONNECTED) {
    sg_stomp_frame_t *f = s->pending[s->pend_head];
    sg_relay_fault_t why;
    int w = sg_relay_admit(s->relay, f, 0, &why);
    if (w < 0) {
      relay_failed(s, &why, NULL);
      break;
    }
    if (w == SG_RELAY_WAIT_BLOCKED) sg_transport_pause(s->tr);
    if (w != SG_RELAY_GO) break;
    s->pend_head++;
    process_frame(s, f, 0);
  }
  if (s->pend_head == s->npending) s->pend_head = s->npending = 0;
}

static void on_frame(sg_session_t *s, sg_stomp_frame_t *f) {
  sg_metrics_frame_in(f->cmd);
  switch (s->state) {
  case S_WAIT_CONNECT:
    if (f->cmd == SG_STOMP_CONNECT || f->cmd == SG_STOMP_STOMP) {
      do_connect(s, f);
    } else {
      char detail[160];
      snprintf(detail, sizeof(detail), "the first frame must be CONNECT or STOMP, not %.64s",
               f->command);
      error_close(s, CLOSE_PROTOCOL, "Expected CONNECT", f, detail);
    }
    sg_stomp_frame_free(f);
    return;
  case S_LOGIN:
    pending_push(s, f, "Too many frames before CONNECTED");
    return;
  case S_CONNECTED: {
    /* Frames that wait keep their order: one behind them waits too. */
    int behind = s->pend_head < s->npending;
    sg_relay_fault_t why;
    int w = sg_relay_admit(s->relay, f, behind, &why);
    if (w < 0) {
      relay_failed(s, &why, NULL);
      sg_stomp_frame_free(f);
    } else if (w == SG_RELAY_GO && !behind) {
      process_frame(s, f, 0);
    } else {
      /* Blocked: stop reading this client until the broker takes
       * publishes again; what it sends meanwhile waits in TCP, not here. */
      if (w == SG_RELAY_WAIT_BLOCKED) sg_transport_pause(s->tr);
      pending_push(s, f, too_many(w));
    }
    return;
  }
  default:
    sg_stomp_frame_free(f);
  }
}

/* ---------- WebSocket callbacks ---------- */

static void ws_open_cb(sg_transport_t *ws, int stomp_version) {
  sg_session_t *s = ws->owner;
  s->ws_version = stomp_version;
  s->state = S_WAIT_CONNECT;
  sg_log_info("session-%" PRIu64 " open from %s (subprotocol %s)", s->id, ws->peer,
              stomp_version == 12 ? "v12.stomp" : stomp_version == 11 ? "v11.stomp"
                                      : stomp_version == 10 ? "v10.stomp" : "none");
  uv_timer_start(&s->timer, connect_timeout_cb, s->cfg->connect_timeout_ms, 0);
}

static void ws_message_cb(sg_transport_t *ws, const uint8_t *data, size_t len, int binary) {
  (void)binary;
  sg_session_t *s = ws->owner;
  const char *p = (const char *)data;
  while (len > 0 && s->state != S_CLOSING) {
    size_t used = 0;
    sg_stomp_frame_t *f = NULL;
    int r = sg_stomp_parser_execute(&s->parser, p, len, &used, &f);
    if (r < 0) {
      error_close(s, r == SG_ERR_FRAME_TOO_LARGE ? CLOSE_TOO_BIG : CLOSE_PROTOCOL,
                  sg_strerror(r), NULL, NULL);
      return;
    }
    p += used;
    len -= used;
    if (r == 1) on_frame(s, f);
    else if (used == 0) break;
  }
}

static void ws_gone_cb(sg_transport_t *ws) {
  sg_session_t *s = ws->owner;
  if (s->close_reason == NULL) s->close_reason = "client closed the connection";
  session_teardown(s);
}

/* What a session whose transport is closed talks to: the transport's
 * memory may be gone (a SockJS session frees its own), so late calls from
 * broker callbacks land here. */
static int closed_send(sg_transport_t *t, const void *d, size_t n, int b) {
  (void)t, (void)d, (void)n, (void)b;
  return UV_EPIPE;
}
static size_t closed_backlog(const sg_transport_t *t) { return (void)t, 0; }
static void closed_noop(sg_transport_t *t) { (void)t; }
static void closed_close(sg_transport_t *t, uint16_t c, const char *r) { (void)t, (void)c, (void)r; }
static const sg_transport_ops_t closed_ops = {closed_send, closed_backlog, closed_noop,
                                              closed_noop, closed_close};

static void ws_closed_cb(sg_transport_t *ws) {
  sg_session_t *s = ws->owner;
  s->closed_tr = *ws;
  s->closed_tr.ops = &closed_ops;
  s->tr = &s->closed_tr;
  s->ws_closed = 1;
  session_teardown(s);
  maybe_free(s);
}

static const sg_ws_cbs_t ws_cbs = {ws_open_cb, ws_message_cb, ws_gone_cb, ws_closed_cb};

/* ---------- relay callbacks ---------- */

static void session_connected(sg_session_t *s);

static void token_expired_cb(void *owner) {
  sg_session_t *s = owner;
  error_close(s, CLOSE_POLICY, "Token expired", NULL,
              "the session's token has expired: reconnect with a new one");
}

static void relay_ready_cb(sg_relay_t *r, int status, const char *message, sg_grant_t *grant) {
  sg_session_t *s = r->owner;
  if (s->state != S_LOGIN) {
    sg_grant_release(grant);
    return;
  }
  if (status == SG_RELAY_DENIED) {
    error_close(s, CLOSE_POLICY, "Access refused", NULL, message);
    return;
  }
  if (status != 0) {
    const char *m = status == 403   ? "Access refused"
                    : status == 530 ? "Virtual host not available"
                                    : "Broker unavailable";
    int code = (status == 403 || status == 530) ? CLOSE_POLICY : CLOSE_INTERNAL;
    char detail[320];
    snprintf(detail, sizeof(detail), "login '%s': %s", s->login, message);
    error_close(s, (uint16_t)code, m, NULL, detail);
    return;
  }
  if (grant) {
    /* --auth jwt/file: the gateway's check says who the session is. */
    s->grant = grant;
    snprintf(s->login, sizeof(s->login), "%s", sg_grant_user(grant));
    if (sg_grant_watch(grant, s->tr->loop, token_expired_cb, s) != 0) {
      error_close(s, CLOSE_INTERNAL, "Internal error", NULL, "cannot watch the token's expiry");
      return;
    }
  }
  session_connected(s);
}

/* Sends CONNECTED and handles the frames that arrived during the login. */
static void session_connected(sg_session_t *s) {
  s->state = S_CONNECTED;
  sg_buf_t *b = &scratch;
  char hb[48], sess[32];
  sg_buf_reset(b);
  sg_stomp_encode_start(b, SG_STOMP_CONNECTED);
  if (s->version >= 11)
    sg_stomp_encode_headerz(b, s->version, SG_STOMP_CONNECTED, "version",
                            s->version == 12 ? "1.2" : "1.1");
  snprintf(hb, sizeof(hb), "%" PRIu64 ",%" PRIu64, s->hb_send_ms, s->hb_recv_ms);
  sg_stomp_encode_headerz(b, s->version, SG_STOMP_CONNECTED, "heart-beat", hb);
  sg_stomp_encode_headerz(b, s->version, SG_STOMP_CONNECTED, "server", "stompgate/" SG_VERSION);
  snprintf(sess, sizeof(sess), "session-%" PRIu64, s->id);
  sg_stomp_encode_headerz(b, s->version, SG_STOMP_CONNECTED, "session", sess);
  sg_stomp_encode_finish(b, NULL, 0);
  send_frame_buf(s, b);
  sg_log_info("session-%" PRIu64 " connected as '%s' (STOMP %d.%d, heart-beat %s)", s->id,
              s->login, s->version / 10, s->version % 10, hb);
  uint64_t tick = 0;
  if (s->hb_send_ms) tick = s->hb_send_ms / 2;
  if (s->hb_recv_ms && (tick == 0 || s->hb_recv_ms / 2 < tick)) tick = s->hb_recv_ms / 2;
  if (tick) {
    if (tick < 5) tick = 5;
    s->hb_tick_ms = tick;
    uv_timer_start(&s->timer, heartbeat_cb, tick, tick);
  }
  /* Frames that arrived while the login ran. */
  run_pending(s);
}

/* Whether a MESSAGE of len bytes for sub may be queued for the client. One
 * that is too far behind (--max-outbound-bytes unread since the last
 * write) loses the message when
 * --slow-consumer is drop and sub is an auto-ack topic subscription, and is
 * closed with an ERROR otherwise: memory stays bounded either way. */
static int outbound_room(sg_session_t *s, const sg_sub_t *sub, size_t len) {
  /* What the client left unread since the last write, not the burst the
   * broker just handed over: a reading client drains it every iteration. */
  if (sg_transport_backlog(s->tr) + len <= s->cfg->max_outbound_bytes) return 1;
  if (s->cfg->slow_consumer_drop && sub->ack_mode == ACK_AUTO && sub->topic_like) {
    if (s->dropped++ == 0)
      sg_log_info("session-%" PRIu64 " is a slow consumer: dropping topic messages", s->id);
    sg_metrics_slow_drop();
    return 0;
  }
  char detail[160];
  snprintf(detail, sizeof(detail), "more than %zu bytes were waiting to be written to the client",
           s->cfg->max_outbound_bytes);
  error_close(s, CLOSE_POLICY, "slow consumer", NULL, detail);
  return 0;
}

/* Appends everything of a MESSAGE after its subscription, message-id and
 * ack headers: destination (dest, or rebuilt from the exchange and routing
 * key), redelivered, the AMQP properties and headers table, and the body.
 * The same bytes serve every session with STOMP version v, which is how a
 * shared delivery is encoded once. */
static void encode_message_tail(sg_buf_t *b, int v, const sg_amqp_delivery_t *d,
                                const char *dest) {
  char num[32];
  if (dest) {
    sg_stomp_encode_headerz(b, v, SG_STOMP_MESSAGE, "destination", dest);
  } else {
    sg_buf_t db;
    sg_buf_init(&db);
    sg_dest_format(&db, d->exchange.bytes, d->exchange.len, d->routing_key.bytes,
                   d->routing_key.len);
    sg_stomp_encode_header(b, v, SG_STOMP_MESSAGE, "destination", 11, db.base ? db.base : "",
                           db.len);
    sg_buf_free(&db);
  }
  sg_stomp_encode_headerz(b, v, SG_STOMP_MESSAGE, "redelivered", d->redelivered ? "true" : "false");
  const amqp_basic_properties_t *p = d->props;
  if (p) {
    amqp_flags_t fl = p->_flags;
#define BYTES_HDR(flag, field, name)                                                       \
  if (fl & (flag))                                                                        \
    sg_stomp_encode_header(b, v, SG_STOMP_MESSAGE, name, sizeof(name) - 1, p->field.bytes, \
                           p->field.len);
    BYTES_HDR(AMQP_BASIC_CONTENT_TYPE_FLAG, content_type, "content-type")
    BYTES_HDR(AMQP_BASIC_CONTENT_ENCODING_FLAG, content_encoding, "content-encoding")
    BYTES_HDR(AMQP_BASIC_CORRELATION_ID_FLAG, correlation_id, "correlation-id")
    BYTES_HDR(AMQP_BASIC_EXPIRATION_FLAG, expiration, "expiration")
    BYTES_HDR(AMQP_BASIC_MESSAGE_ID_FLAG, message_id, "amqp-message-id")
    BYTES_HDR(AMQP_BASIC_TYPE_FLAG, type, "type")
    BYTES_HDR(AMQP_BASIC_USER_ID_FLAG, user_id, "user-id")
    BYTES_HDR(AMQP_BASIC_APP_ID_FLAG, app_id, "app-id")
#undef BYTES_HDR
    if (fl & AMQP_BASIC_REPLY_TO_FLAG) {
      /* A bare queue name becomes a destination a STOMP client can SEND to. */
      sg_buf_t rt;
      sg_buf_init(&rt);
      if (p->reply_to.len == 0 || ((const char *)p->reply_to.bytes)[0] != '/')
        sg_buf_appendz(&rt, "/reply-queue/");
      sg_buf_append(&rt, p->reply_to.bytes, p->reply_to.len);
      sg_stomp_encode_header(b, v, SG_STOMP_MESSAGE, "reply-to", 8, rt.base ? rt.base : "", rt.len);
      sg_buf_free(&rt);
    }
    if ((fl & AMQP_BASIC_DELIVERY_MODE_FLAG) && p->delivery_mode == AMQP_DELIVERY_PERSISTENT)
      sg_stomp_encode_headerz(b, v, SG_STOMP_MESSAGE, "persistent", "true");
    if (fl & AMQP_BASIC_PRIORITY_FLAG) {
      snprintf(num, sizeof(num), "%u", p->priority);
      sg_stomp_encode_headerz(b, v, SG_STOMP_MESSAGE, "priority", num);
    }
    if (fl & AMQP_BASIC_TIMESTAMP_FLAG) {
      snprintf(num, sizeof(num), "%" PRIu64, p->timestamp);
      sg_stomp_encode_headerz(b, v, SG_STOMP_MESSAGE, "timestamp", num);
    }
    if (fl & AMQP_BASIC_HEADERS_FLAG) {
      for (int i = 0; i < p->headers.num_entries; i++) {
        const amqp_table_entry_t *e = &p->headers.entries[i];
        char key[256];
        snprintf(key, sizeof(key), "%.*s", (int)e->key.len, (const char *)e->key.bytes);
        if (is_reserved_send_header(key)) continue;
        sg_buf_reset(&hscratch);
        if (sg_amqp_field_render(&hscratch, &e->value) != 0) continue;
        const char *val = hscratch.base;
        size_t vl = hscratch.len;
        sg_stomp_encode_header(b, v, SG_STOMP_MESSAGE, e->key.bytes, e->key.len, val, vl);
      }
    }
  }
  sg_stomp_encode_finish(b, d->body, d->body_len);
}

/* A delivery for sub: MESSAGE to the client. */
static void relay_delivery_cb(sg_relay_t *r, sg_relay_sub_t *rs, sg_relay_msg_t *m) {
  sg_session_t *s = r->owner;
  if (s->state != S_CONNECTED) return;
  sg_sub_t *sub = container_of(rs, sg_sub_t, rs);
  const sg_amqp_delivery_t *d = m->d;
  sg_metrics_delivery();
  if (sub->ack_mode != ACK_AUTO && unacked_push(sub, d->delivery_tag) != 0) {
    error_close(s, CLOSE_INTERNAL, "Internal error", NULL, "out of memory");
    return;
  }
  sg_buf_t *b = &scratch;
  int v = s->version;
  char mid[320];
  const char *subscription = sub->id, *dest = NULL;
  if (sub->app_reply) {
    /* A back end's reply: it goes to the destination of the request it
     * answers, on the implicit subscription named after its prefix. */
    const amqp_basic_properties_t *rp = d->props;
    const char *to = NULL;
    if (rp && (rp->_flags & AMQP_BASIC_CORRELATION_ID_FLAG))
      to = sg_app_corr_find(&s->app_corr, rp->correlation_id.bytes, rp->correlation_id.len);
    int pi = to ? app_prefix_of(s, to) : -1;
    subscription = s->cfg->app_prefixes.v[pi >= 0 ? pi : 0];
    dest = to ? to : subscription;
  } else if (sub->user_dest) {
    dest = sub->user_dest; /* as Spring: the destination the user subscribed to */
  }
  sg_buf_reset(b);
  sg_stomp_encode_start(b, SG_STOMP_MESSAGE);
  sg_stomp_encode_headerz(b, v, SG_STOMP_MESSAGE, "subscription", subscription);
  snprintf(mid, sizeof(mid), "%s@@session-%" PRIu64 "@@%" PRIu64, sub->rs.tag, s->id, m->seq);
  sg_stomp_encode_headerz(b, v, SG_STOMP_MESSAGE, "message-id", mid);
  if (v >= 12 && sub->ack_mode != ACK_AUTO) sg_stomp_encode_headerz(b, v, SG_STOMP_MESSAGE, "ack", mid);
  if (m->tail == NULL || dest != NULL) {
    encode_message_tail(b, v, d, dest);
    if (outbound_room(s, sub, b->len)) send_frame_buf(s, b);
    return;
  }
  /* A message for many sessions: the first with this STOMP version
   * encodes everything after the per-subscription headers for all. */
  int vi = v == 10 ? 0 : v == 11 ? 1 : 2;
  sg_buf_t *tail = &m->tail[vi];
  if (m->tail_utf8[vi] < 0) {
    encode_message_tail(tail, v, d, NULL);
    m->tail_utf8[vi] = sg_utf8_valid(tail->base, tail->len);
  }
  int binary = !m->tail_utf8[vi] || !sg_utf8_valid(b->base, b->len);
  if (!outbound_room(s, sub, b->len + tail->len) || sg_buf_append(b, tail->base, tail->len) != 0)
    return;
  sg_metrics_frame_out(b->base, b->len);
  sg_transport_send(s->tr, b->base, b->len, binary);
}

static void relay_progress_cb(sg_relay_t *r) {
  sg_session_t *s = r->owner;
  reap_cancelled(s);
  flush_receipts(s);
}

static void relay_wake_cb(sg_relay_t *r, int unblocked) {
  sg_session_t *s = r->owner;
  if (s->state != S_CONNECTED) return;
  if (unblocked) sg_transport_resume(s->tr);
  run_pending(s);
}

/* The ERROR message and close code for a broker refusal or failure. */
static const char *broker_error_name(int code, uint16_t *close_code) {
  *close_code = CLOSE_PROTOCOL;
  switch (code) {
  case 404: return "Not found";
  case 403: *close_code = CLOSE_POLICY; return "Access refused";
  case 406: return "Precondition failed";
  case 405: return "Resource locked";
  case 0:
  case 320: /* connection-forced: the node is shutting down */
    *close_code = CLOSE_INTERNAL;
    return "Broker connection lost";
  default: *close_code = CLOSE_INTERNAL; return "Broker error";
  }
}

/* The relay cannot go on: ERROR and close. The ERROR carries receipt_id,
 * or else the receipt of the oldest frame still owed one that the failure
 * answers. */
static void relay_failed(sg_session_t *s, const sg_relay_fault_t *f, const char *receipt_id) {
  if (receipt_id == NULL)
    for (sg_receipt_t *r = s->rc_head; r; r = r->next)
      if (sg_relay_blames(f, &r->mark)) {
        receipt_id = r->id;
        break;
      }
  uint16_t wc = CLOSE_INTERNAL;
  char detail[320];
  switch (f->kind) {
  case SG_RELAY_LOST: {
    const char *m = broker_error_name(f->code, &wc);
    session_fail(s, wc, m, receipt_id, f->text);
    return;
  }
  case SG_RELAY_UNAVAILABLE:
    session_fail(s, wc, "Broker unavailable", receipt_id, f->text);
    return;
  case SG_RELAY_CANCELLED: {
    const sg_sub_t *sub = container_of(f->sub, sg_sub_t, rs);
    snprintf(detail, sizeof(detail),
             "the broker cancelled subscription '%s' (queue '%s' deleted?)", sub->id,
             sub->rs.queue ? sub->rs.queue : "");
    session_fail(s, wc, "Subscription cancelled by the broker", receipt_id, detail);
    return;
  }
  case SG_RELAY_REJECTED:
    snprintf(detail, sizeof(detail), "publish %" PRIu64 " was nacked", f->tag);
    session_fail(s, wc, "Message rejected by the broker", receipt_id, detail);
    return;
  default:
    session_fail(s, wc, "Internal error", receipt_id, f->text);
    return;
  }
}

static void relay_fault_cb(sg_relay_t *r, const sg_relay_fault_t *f) {
  sg_session_t *s = r->owner;
  /* A login that fails is on_ready_cb's to report. */
  if (s->state != S_CONNECTED && !(s->state == S_LOGIN && f->kind == SG_RELAY_LOST)) return;
  relay_failed(s, f, NULL);
}

static void relay_closed_cb(sg_relay_t *r) {
  sg_session_t *s = r->owner;
  s->relay_closed = 1;
  maybe_free(s);
}

static const sg_relay_cbs_t relay_cbs = {relay_ready_cb,  relay_wake_cb,  relay_progress_cb,
                                         relay_delivery_cb, relay_fault_cb, relay_closed_cb};

/* ---------- life cycle ---------- */

static void timer_closed_cb(uv_handle_t *h) {
  sg_session_t *s = h->data;
  s->timer_closed = 1;
  maybe_free(s);
}

static void session_teardown(sg_session_t *s) {
  if (s->torn_down) return;
  s->torn_down = 1;
  /* A connection that never became a session (a static file, a refused
   * upgrade, one SockJS xhr request) is not worth a line at info. */
  int never_open = s->state == S_WAIT_UPGRADE;
  sg_metrics_session_closed(never_open ? NULL : s->close_reason);
  s->state = S_CLOSING;
  if (never_open)
    sg_log_debug("session-%" PRIu64 " closed (%s): %s", s->id, s->tr->peer,
                 s->close_reason ? s->close_reason : "closed");
  else
    sg_log_info("session-%" PRIu64 " closed (%s): %s", s->id, s->tr->peer,
                s->close_reason ? s->close_reason : "closed");
  uv_close((uv_handle_t *)&s->timer, timer_closed_cb);
  sg_grant_release(s->grant);
  s->grant = NULL;
  if (sg_relay_close(s->relay)) s->relay_closed = 1;
}

static sg_session_t *session_new(sg_session_ctx_t *ctx) {
  const sg_config_t *cfg = ctx->cfg;
  sg_session_t *s = calloc(1, sizeof(*s));
  if (s == NULL) return NULL;
  s->cfg = cfg;
  s->ctx = ctx;
  s->id = atomic_fetch_add(&next_session_id, 1);
  s->version = 12;
  s->rc_tail = &s->rc_head;
  if ((s->relay = ctx->relay->create(ctx, &relay_cbs, s)) == NULL) {
    free(s);
    return NULL;
  }
  sg_stomp_limits_t lim = {cfg->max_frame_size, cfg->max_headers, cfg->max_header_size};
  sg_stomp_parser_init(&s->parser, &lim);
  return s;
}

static void session_link(sg_session_t *s, uv_loop_t *loop) {
  uv_timer_init(loop, &s->timer);
  s->timer.data = s;
  live_sessions++;
  if ((s->live_next = live_head) != NULL) live_head->live_prev = &s->live_next;
  live_head = s;
  s->live_prev = &live_head;
}

int sg_session_open(sg_transport_t *tr, sg_session_ctx_t *ctx) {
  sg_session_t *s = session_new(ctx);
  if (s == NULL) return SG_ERR_NOMEM;
  s->tr = tr;
  tr->owner = s;
  tr->cbs = &ws_cbs;
  session_link(s, tr->loop);
  ws_open_cb(tr, 0);
  return 0;
}

int sg_session_accept(uv_stream_t *server, sg_session_ctx_t *ctx) {
  const sg_config_t *cfg = ctx->cfg;
  sg_session_t *s = session_new(ctx);
  if (s == NULL) return SG_ERR_NOMEM;
  int r = sg_ws_init(server->loop, &s->ws, cfg, &ws_cbs);
  if (r) {
    sg_stomp_parser_free(&s->parser);
    sg_relay_free(s->relay);
    free(s);
    return r;
  }
  s->tr = &s->ws.tr;
  s->ws.tr.owner = s;
  session_link(s, server->loop);
  r = uv_accept(server, (uv_stream_t *)&s->ws.tcp);
  if (r) {
    s->close_reason = "accept failed";
    s->state = S_CLOSING;
    s->torn_down = 1;
    sg_relay_close(s->relay);
    s->relay_closed = 1;
    uv_close((uv_handle_t *)&s->timer, timer_closed_cb);
    sg_ws_abort(&s->ws);
    return r;
  }
  sg_ws_start(&s->ws);
  return 0;
}

/* ---------- shutdown ---------- */

/* A draining session closes once every RECEIPT it owes is out, so a client
 * never loses the confirmation of a message the broker took. */
static void drain_close(sg_session_t *s) {
  if (s->state == S_CLOSING) return;
  s->draining = 1;
  if (s->state == S_CONNECTED && s->rc_head != NULL) return; /* flush_receipts calls again */
  error_close(s, CLOSE_GOING_AWAY, "server shutting down", NULL,
              "the gateway is shutting down; reconnect to another instance");
}

void sg_session_drain_all(void) {
  sg_session_t *s = live_head;
  while (s != NULL) {
    sg_session_t *next = s->live_next; /* closing never frees synchronously */
    drain_close(s);
    s = next;
  }
}
