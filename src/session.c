/* SPDX-License-Identifier: MIT */
/* The STOMP session state machine. It reaches the broker only through its
 * relay (relay.h), whichever mode that is.
 *
 * Ordering: frames are handled in arrival order. A RECEIPT waits until the
 * relay has reached the mark taken after its frame: every broker method
 * before it answered, every publish before it confirmed, every shared
 * subscription before it set up. So a RECEIPT always means "all that came
 * before is done". */
#include "session_internal.h"

#include <amqp.h>
#include <amqp_framing.h>
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "events.h"
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

static const sg_relay_cbs_t relay_cbs;
static void run_pending(sg_session_t *s);

static atomic_size_t live_sessions;
static atomic_uint_fast64_t next_session_id = 1;
/* This worker's sessions, for drain. */
static __thread sg_session_t *live_head;
static __thread sg_buf_t scratch;
static __thread sg_buf_t hscratch; /* one rendered headers-table value */

/* The other session files reach the thread's buffers through these rather
 * than through extern thread-local variables, whose addresses GCC's
 * UndefinedBehaviorSanitizer checks against NULL with flags it did not
 * set (a false "member access within null pointer"). */
sg_buf_t *sg_session_scratch(void) { return &scratch; }
sg_buf_t *sg_session_hscratch(void) { return &hscratch; }

size_t sg_session_count(void) { return live_sessions; }

void sg_session_thread_done(void) {
  sg_buf_free(&scratch);
  sg_buf_free(&hscratch);
}

/* --auth jwt/file: whether the session may do command (perm) on the
 * destination of that kind, name and key; if not, ERROR "Access refused"
 * naming destination and permission, and close, as RabbitMQ does. */
int sg_session_refused(sg_session_t *s, const sg_stomp_frame_t *f, int perm, int kind,
                   const char *name, const char *key, const char *dst) {
  char detail[1200];
  if (s->grant == NULL ||
      sg_grant_allows(s->grant, perm, kind, name, key, f->command, dst, detail, sizeof(detail)))
    return 0;
  sg_session_error_close(s, CLOSE_POLICY, "Access refused", f, detail);
  return 1;
}


/* ---------- freeing ---------- */

static void session_free(sg_session_t *s) {
  sg_stomp_parser_free(&s->parser);
  for (size_t i = s->pend_head; i < s->npending; i++) sg_stomp_frame_free(s->pending[i]);
  free(s->pending);
  while (s->subs) {
    sg_sub_t *n = s->subs->next;
    sg_relay_release(s->relay, &s->subs->rs);
    sg_session_sub_free(s->subs);
    s->subs = n;
  }
  while (s->txs) {
    sg_tx_t *n = s->txs->next;
    sg_session_tx_free(s->txs);
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

void sg_session_send_frame(sg_session_t *s, const sg_buf_t *b) {
  int binary = !sg_utf8_valid(b->base, b->len);
  sg_metrics_frame_out(b->base, b->len);
  s->frames_out++;
  s->bytes_out += b->len;
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
  sg_session_send_frame(s, b);
}

/* Every way a session ends from its own side: why is for the close log
 * line and the metrics, code and ws_reason go to the client with the
 * close, and the broker side is torn down. */
void sg_session_end(sg_session_t *s, uint16_t code, const char *ws_reason, const char *why) {
  if (s->state == S_CLOSING) return;
  s->close_reason = why;
  sg_transport_close(s->tr, code, ws_reason);
  sg_session_teardown(s);
}

/* Sends ERROR (with receipt-id when the failing frame asked for a receipt)
 * and closes: the spec's rule, which Web-STOMP does not keep. */
void sg_session_fail(sg_session_t *s, uint16_t code, const char *message,
                         const char *receipt_id, const char *detail) {
  if (s->state == S_CLOSING) return;
  /* The reason is for the close log line; long details are cut. */
  snprintf(s->reason_buf, sizeof(s->reason_buf), "ERROR %.60s%s%.90s", message,
           detail ? ": " : "", detail ? detail : "");
  send_error(s, message, receipt_id, detail);
  sg_session_end(s, code, message, s->reason_buf);
}

/* sg_session_fail for frame f (NULL: no frame is to blame). */
void sg_session_error_close(sg_session_t *s, uint16_t code, const char *message,
                        const sg_stomp_frame_t *f, const char *detail) {
  sg_session_fail(s, code, message, f ? sg_stomp_frame_header(f, "receipt", NULL) : NULL, detail);
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
    sg_session_error_close(s, CLOSE_PROTOCOL, "Heart-beat timeout", NULL,
                "nothing was received within twice the agreed heart-beat interval");
    return;
  }
  if (s->hb_send_ms && now - s->tr->last_tx + s->hb_tick_ms / 2 >= s->hb_send_ms)
    sg_transport_send(s->tr, "\n", 1, 0);
}

static void connect_timeout_cb(uv_timer_t *t) {
  sg_session_t *s = container_of(t, sg_session_t, timer);
  if (s->state == S_WAIT_CONNECT)
    sg_session_error_close(s, CLOSE_POLICY, "Timed out waiting for CONNECT", NULL, NULL);
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
    sg_session_send_frame(s, b);
    sg_session_end(s, CLOSE_PROTOCOL, "Unsupported STOMP version", "no common STOMP version");
    return;
  }
  s->version = v;
  sg_stomp_parser_set_version(&s->parser, v);
  const char *host = sg_stomp_frame_header(f, "host", NULL);
  if (host == NULL && v >= 11 && s->cfg->require_host) {
    sg_session_error_close(s, CLOSE_PROTOCOL, "Missing host header", f,
                "STOMP 1.1 and 1.2 require a host header in CONNECT (the virtual host, e.g. /)");
    return;
  }
  uint64_t cx, cy;
  if (parse_heartbeat(sg_stomp_frame_header(f, "heart-beat", NULL), &cx, &cy) != 0) {
    sg_session_error_close(s, CLOSE_PROTOCOL, "Invalid heart-beat header", f,
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
  snprintf(s->vhost, sizeof(s->vhost), "%s", vhost);
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
                        s->tr->bearer,
                        name};
  const char *why = NULL;
  int r = sg_relay_login(s->relay, &l, &why);
  if (r == 530)
    sg_session_error_close(s, CLOSE_POLICY, "Virtual host not available", f, why);
  else if (r != 0)
    sg_session_error_close(s, CLOSE_INTERNAL, "Internal error", f, why);
}

/* ---------- frame dispatch ---------- */

static int frame_owned_by_tx(sg_session_t *s, sg_stomp_frame_t *f, int in_commit) {
  if (in_commit) return 0;
  return sg_session_tx_take(s, f);
}

static void pending_unshift(sg_session_t *s, sg_stomp_frame_t *f);

/* Handles f and frees it, unless a transaction or the relay keeps it. */
void sg_session_process_frame(sg_session_t *s, sg_stomp_frame_t *f, int in_commit) {
  int t;
  switch (f->cmd) {
  case SG_STOMP_SEND:
    if ((t = frame_owned_by_tx(s, f, in_commit)) != 0) {
      if (t > 0) return;
      break;
    }
    sg_session_send(s, f);
    break;
  case SG_STOMP_ACK:
  case SG_STOMP_NACK:
    if (f->cmd == SG_STOMP_NACK && s->version == 10) {
      sg_session_error_close(s, CLOSE_PROTOCOL, "NACK is not part of STOMP 1.0", f, NULL);
      break;
    }
    if ((t = frame_owned_by_tx(s, f, in_commit)) != 0) {
      if (t > 0) return;
      break;
    }
    sg_session_ack(s, f, f->cmd == SG_STOMP_ACK);
    break;
  case SG_STOMP_SUBSCRIBE:
    if (sg_session_subscribe(s, f)) {
      pending_unshift(s, f);
      return;
    }
    break;
  case SG_STOMP_UNSUBSCRIBE:
    sg_session_unsubscribe(s, f);
    break;
  case SG_STOMP_BEGIN:
    sg_session_begin(s, f);
    break;
  case SG_STOMP_COMMIT:
    sg_session_commit_abort(s, f, 1);
    break;
  case SG_STOMP_ABORT:
    sg_session_commit_abort(s, f, 0);
    break;
  case SG_STOMP_DISCONNECT:
    if (sg_session_add_receipt(s, f, 1) <= 0 && s->state == S_CONNECTED)
      sg_session_end(s, CLOSE_NORMAL, "", "DISCONNECT");
    break;
  case SG_STOMP_CONNECT:
  case SG_STOMP_STOMP:
    sg_session_error_close(s, CLOSE_PROTOCOL, "Already connected", f, NULL);
    break;
  default: {
    char detail[160];
    snprintf(detail, sizeof(detail), "Could not interpret command %.64s", f->command);
    sg_session_error_close(s, CLOSE_PROTOCOL, "Unknown command", f, detail);
    break;
  }
  }
  sg_stomp_frame_free(f);
}

/* Keeps f to handle later, in arrival order. */
static void pending_push(sg_session_t *s, sg_stomp_frame_t *f, const char *too_many) {
  if (s->npending - s->pend_head >= s->cfg->max_pending_frames) {
    sg_session_error_close(s, CLOSE_POLICY, too_many, f, NULL);
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
      sg_session_error_close(s, CLOSE_INTERNAL, "Internal error", f, "out of memory");
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

/* Stops reading the client while the broker does not take its publishes
 * (connection.blocked, or a broker link whose output is over its bound). */
static void hold_client(sg_session_t *s) {
  if (s->tr->paused) return;
  sg_metrics_session_held();
  sg_transport_pause(s->tr);
}

/* Handles the frames that waited, until one makes the session wait again. */
static void run_pending(sg_session_t *s) {
  while (s->pend_head < s->npending && s->state == S_CONNECTED) {
    sg_stomp_frame_t *f = s->pending[s->pend_head];
    sg_relay_fault_t why;
    int w = sg_relay_admit(s->relay, f, 0, &why);
    if (w < 0) {
      sg_session_relay_failed(s, &why, NULL);
      break;
    }
    if (w == SG_RELAY_WAIT_BLOCKED) hold_client(s);
    if (w != SG_RELAY_GO) break;
    s->pend_head++;
    sg_session_process_frame(s, f, 0);
  }
  if (s->pend_head == s->npending) s->pend_head = s->npending = 0;
}

static void on_frame(sg_session_t *s, sg_stomp_frame_t *f) {
  sg_metrics_frame_in(f->cmd);
  s->frames_in++;
  switch (s->state) {
  case S_WAIT_CONNECT:
    if (f->cmd == SG_STOMP_CONNECT || f->cmd == SG_STOMP_STOMP) {
      do_connect(s, f);
    } else {
      char detail[160];
      snprintf(detail, sizeof(detail), "the first frame must be CONNECT or STOMP, not %.64s",
               f->command);
      sg_session_error_close(s, CLOSE_PROTOCOL, "Expected CONNECT", f, detail);
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
      sg_session_relay_failed(s, &why, NULL);
      sg_stomp_frame_free(f);
    } else if (w == SG_RELAY_GO && !behind) {
      sg_session_process_frame(s, f, 0);
    } else {
      /* Blocked: stop reading this client until the broker takes
       * publishes again; what it sends meanwhile waits in TCP, not here. */
      if (w == SG_RELAY_WAIT_BLOCKED) hold_client(s);
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
  s->state = S_WAIT_CONNECT;
  s->open_ns = uv_hrtime();
  sg_log_info("session-%" PRIu64 " open from %s (subprotocol %s)", s->id, ws->peer,
              stomp_version == 12 ? "v12.stomp" : stomp_version == 11 ? "v11.stomp"
                                      : stomp_version == 10 ? "v10.stomp" : "none");
  uv_timer_start(&s->timer, connect_timeout_cb, s->cfg->connect_timeout_ms, 0);
}

static void ws_message_cb(sg_transport_t *ws, const uint8_t *data, size_t len, int binary) {
  (void)binary;
  sg_session_t *s = ws->owner;
  const char *p = (const char *)data;
  s->bytes_in += len;
  while (len > 0 && s->state != S_CLOSING) {
    size_t used = 0;
    sg_stomp_frame_t *f = NULL;
    int r = sg_stomp_parser_execute(&s->parser, p, len, &used, &f);
    if (r < 0) {
      sg_session_error_close(s, r == SG_ERR_FRAME_TOO_LARGE ? CLOSE_TOO_BIG : CLOSE_PROTOCOL,
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
  sg_session_teardown(s);
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
  sg_session_teardown(s);
  maybe_free(s);
}

static const sg_transport_cbs_t session_transport_cbs = {ws_open_cb, ws_message_cb, ws_gone_cb,
                                                       ws_closed_cb};

/* ---------- relay callbacks ---------- */

static void session_connected(sg_session_t *s);

static void token_expired_cb(void *owner) {
  sg_session_t *s = owner;
  sg_session_error_close(s, CLOSE_POLICY, "Token expired", NULL,
              "the session's token has expired: reconnect with a new one");
}

static void relay_ready_cb(sg_relay_t *r, int status, const char *message, sg_grant_t *grant) {
  sg_session_t *s = r->owner;
  if (s->state != S_LOGIN) {
    sg_grant_release(grant);
    return;
  }
  if (status == SG_RELAY_DENIED) {
    sg_session_error_close(s, CLOSE_POLICY, "Access refused", NULL, message);
    return;
  }
  if (status != 0) {
    const char *m = status == 403   ? "Access refused"
                    : status == 530 ? "Virtual host not available"
                                    : "Broker unavailable";
    int code = (status == 403 || status == 530) ? CLOSE_POLICY : CLOSE_INTERNAL;
    char detail[320];
    snprintf(detail, sizeof(detail), "login '%s': %s", s->login, message);
    sg_session_error_close(s, (uint16_t)code, m, NULL, detail);
    return;
  }
  if (grant) {
    /* --auth jwt/file: the gateway's check says who the session is. */
    s->grant = grant;
    snprintf(s->login, sizeof(s->login), "%s", sg_grant_user(grant));
    if (sg_grant_watch(grant, s->tr->loop, token_expired_cb, s) != 0) {
      sg_session_error_close(s, CLOSE_INTERNAL, "Internal error", NULL, "cannot watch the token's expiry");
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
  sg_session_send_frame(s, b);
  sg_log_info("session-%" PRIu64 " connected as '%s' (STOMP %d.%d, heart-beat %s)", s->id,
              s->login, s->version / 10, s->version % 10, hb);
  s->connected_ms = uv_now(s->tr->loop);
  sg_session_event(s, SG_EVENT_CONNECTED, NULL);
  s->announced = 1;
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


static void relay_progress_cb(sg_relay_t *r) {
  sg_session_t *s = r->owner;
  sg_session_reap_cancelled(s);
  sg_session_flush_receipts(s);
}

static void relay_wake_cb(sg_relay_t *r, int unblocked) {
  sg_session_t *s = r->owner;
  if (s->state != S_CONNECTED) return;
  /* The frames that waited go first; the client is read again only if none
   * of them made the session wait once more, or what it sent meanwhile
   * would queue up behind them. */
  run_pending(s);
  if (unblocked && s->state == S_CONNECTED && s->pend_head == s->npending)
    sg_transport_resume(s->tr);
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
void sg_session_relay_failed(sg_session_t *s, const sg_relay_fault_t *f, const char *receipt_id) {
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
    sg_session_fail(s, wc, m, receipt_id, f->text);
    return;
  }
  case SG_RELAY_UNAVAILABLE:
    sg_session_fail(s, wc, "Broker unavailable", receipt_id, f->text);
    return;
  case SG_RELAY_CANCELLED: {
    const sg_sub_t *sub = container_of(f->sub, sg_sub_t, rs);
    snprintf(detail, sizeof(detail),
             "the broker cancelled subscription '%s' (queue '%s' deleted?)", sub->id,
             sub->rs.queue ? sub->rs.queue : "");
    sg_session_fail(s, wc, "Subscription cancelled by the broker", receipt_id, detail);
    return;
  }
  case SG_RELAY_REJECTED:
    snprintf(detail, sizeof(detail), "publish %" PRIu64 " was nacked", f->tag);
    sg_session_fail(s, wc, "Message rejected by the broker", receipt_id, detail);
    return;
  default:
    sg_session_fail(s, wc, "Internal error", receipt_id, f->text);
    return;
  }
}

static void relay_fault_cb(sg_relay_t *r, const sg_relay_fault_t *f) {
  sg_session_t *s = r->owner;
  /* A login that fails is on_ready_cb's to report. */
  if (s->state != S_CONNECTED && !(s->state == S_LOGIN && f->kind == SG_RELAY_LOST)) return;
  sg_session_relay_failed(s, f, NULL);
}

static void relay_closed_cb(sg_relay_t *r) {
  sg_session_t *s = r->owner;
  s->relay_closed = 1;
  maybe_free(s);
}

static const sg_relay_cbs_t relay_cbs = {relay_ready_cb,  relay_wake_cb,  relay_progress_cb,
                                         sg_session_delivery_cb, relay_fault_cb, relay_closed_cb};

/* ---------- life cycle ---------- */

void sg_session_timer_closed_cb(uv_handle_t *h) {
  sg_session_t *s = h->data;
  s->timer_closed = 1;
  maybe_free(s);
}

void sg_session_event(sg_session_t *s, int kind, const sg_sub_t *sub) {
  if (s->ctx->events == NULL) return;
  sg_event_t e;
  memset(&e, 0, sizeof(e));
  e.kind = kind;
  e.session = s->id;
  e.user = s->login;
  e.vhost = s->vhost;
  e.client = s->tr->peer;
  if (sub) {
    e.destination = sub->dest;
    e.subscription = sub->id;
  }
  if (kind == SG_EVENT_DISCONNECTED) {
    e.reason = s->close_reason;
    e.duration_ms = uv_now(s->tr->loop) - s->connected_ms;
  }
  sg_events_emit(s->ctx->events, &e);
}

void sg_session_teardown(sg_session_t *s) {
  if (s->torn_down) return;
  s->torn_down = 1;
  sg_metrics_session_closed(s->close_reason);
  if (s->announced) sg_session_event(s, SG_EVENT_DISCONNECTED, NULL);
  s->state = S_CLOSING;
  double secs = (double)(uv_hrtime() - s->open_ns) / 1e9;
  sg_metrics_session_duration(secs);
  sg_log_access_t a = {s->id, s->tr->peer, s->login, s->vhost,
                       s->close_reason ? s->close_reason : "closed", secs, s->frames_in,
                       s->frames_out, s->bytes_in, s->bytes_out};
  sg_log_access(SG_LOG_INFO, &a);
  uv_close((uv_handle_t *)&s->timer, sg_session_timer_closed_cb);
  sg_grant_release(s->grant);
  s->grant = NULL;
  if (sg_relay_close(s->relay)) s->relay_closed = 1;
}

/* A session comes into being only over an open transport: the upgrade of
 * a WebSocket, a new SockJS session, an admitted STOMP connection. From
 * here until it frees itself it counts in sg_session_count. */
int sg_session_open(sg_transport_t *tr, sg_session_ctx_t *ctx, int stomp_version) {
  const sg_config_t *cfg = ctx->cfg;
  sg_session_t *s = calloc(1, sizeof(*s));
  if (s == NULL) return SG_ERR_NOMEM;
  s->cfg = cfg;
  s->ctx = ctx;
  s->id = atomic_fetch_add(&next_session_id, 1);
  s->version = 12;
  s->rc_tail = &s->rc_head;
  if ((s->relay = ctx->relay->create(ctx, &relay_cbs, s)) == NULL) {
    free(s);
    return SG_ERR_NOMEM;
  }
  sg_stomp_limits_t lim = {cfg->max_frame_size, cfg->max_headers, cfg->max_header_size};
  sg_stomp_parser_init(&s->parser, &lim);
  s->tr = tr;
  tr->owner = s;
  tr->cbs = &session_transport_cbs;
  uv_timer_init(tr->loop, &s->timer);
  s->timer.data = s;
  live_sessions++;
  if ((s->live_next = live_head) != NULL) live_head->live_prev = &s->live_next;
  live_head = s;
  s->live_prev = &live_head;
  ws_open_cb(tr, stomp_version);
  return 0;
}


/* ---------- shutdown ---------- */

/* A draining session closes once every RECEIPT it owes is out, so a client
 * never loses the confirmation of a message the broker took. */
void sg_session_drain_close(sg_session_t *s) {
  if (s->state == S_CLOSING) return;
  s->draining = 1;
  /* With receipts owed, sg_session_flush_receipts calls again once they are out. */
  if (s->state == S_CONNECTED && s->rc_head != NULL) return;
  sg_session_error_close(s, CLOSE_GOING_AWAY, "server shutting down", NULL,
              "the gateway is shutting down; reconnect to another instance");
}

void sg_session_drain_all(void) {
  sg_session_t *s = live_head;
  while (s != NULL) {
    sg_session_t *next = s->live_next; /* closing never frees synchronously */
    sg_session_drain_close(s);
    s = next;
  }
}

