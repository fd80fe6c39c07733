/* SPDX-License-Identifier: MIT */
#ifndef SG_SESSION_INTERNAL_H
#define SG_SESSION_INTERNAL_H

/* What the session's files share (session.c, session_receipt.c,
 * session_sub.c, session_tx.c, session_send.c, session_subscribe.c,
 * session_deliver.c); nothing outside them includes this. */

#include <amqp.h>
#include <stdint.h>
#include <string.h>

#include "access.h"
#include "relay.h"
#include "session.h"
#include "stompgate/app_dest.h"
#include "stompgate/auth.h"
#include "stompgate/buf.h"
#include "stompgate/container.h"
#include "stompgate/destination.h"
#include "stompgate/err.h"
#include "stompgate/stomp_codec.h"
#include "transport.h"

/* WebSocket close codes chosen for each way a session ends. */
#define CLOSE_NORMAL 1000
#define CLOSE_GOING_AWAY 1001
#define CLOSE_PROTOCOL 1002
#define CLOSE_POLICY 1008
#define CLOSE_TOO_BIG 1009
#define CLOSE_INTERNAL 1011

enum { ACK_AUTO = 0, ACK_CLIENT, ACK_CLIENT_INDIVIDUAL };
enum { S_WAIT_CONNECT = 0, S_LOGIN, S_CONNECTED, S_CLOSING };

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
  char *dest;             /* with session events: the SUBSCRIBE's destination */
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
  sg_transport_t *tr;  /* what it runs over: a WebSocket, a SockJS session, a STOMP connection */
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
  char vhost[128];
  /* For the access log line and /metrics: when the upgrade completed
   * (uv_hrtime), and STOMP frames and their bytes each way. */
  uint64_t open_ns;
  uint64_t frames_in, frames_out, bytes_in, bytes_out;
  sg_app_corr_t app_corr; /* recent application requests, to route replies */
  uint64_t app_seq;       /* correlation ids generated for them */
  const char *close_reason;
  char reason_buf[160];
  uint64_t connected_ms; /* uv_now at CONNECTED */
  unsigned announced : 1; /* its connected event went out */
};

/* Scratch buffers of the calling thread: an encoded frame, one rendered
 * headers-table value. */
sg_buf_t *sg_session_scratch(void);
sg_buf_t *sg_session_hscratch(void);

static inline amqp_bytes_t bytes_of(const char *s) { return amqp_cstring_bytes(s); }

static inline int header_true(const sg_stomp_frame_t *f, const char *name) {
  const char *v = sg_stomp_frame_header(f, name, NULL);
  return v && strcmp(v, "true") == 0;
}

#define MAX_QUEUE_ARGS 10

typedef struct queue_args {
  amqp_table_entry_t e[MAX_QUEUE_ARGS];
  amqp_table_t table;
  int durable_type; /* x-queue-type quorum or stream: durable, shared */
} queue_args_t;

/* ---------- session.c: life cycle, failure, dispatch ---------- */

void sg_session_timer_closed_cb(uv_handle_t *h);
void sg_session_teardown(sg_session_t *s);
/* Every way a session ends from its own side (see session.c). */
void sg_session_end(sg_session_t *s, uint16_t code, const char *ws_reason, const char *why);
void sg_session_fail(sg_session_t *s, uint16_t code, const char *message, const char *receipt_id,
                     const char *detail);
void sg_session_error_close(sg_session_t *s, uint16_t code, const char *message,
                            const sg_stomp_frame_t *f, const char *detail);
void sg_session_relay_failed(sg_session_t *s, const sg_relay_fault_t *f, const char *receipt_id);
int sg_session_refused(sg_session_t *s, const sg_stomp_frame_t *f, int perm, int kind,
                       const char *name, const char *key, const char *dst);
void sg_session_send_frame(sg_session_t *s, const sg_buf_t *b);
void sg_session_process_frame(sg_session_t *s, sg_stomp_frame_t *f, int in_commit);
void sg_session_drain_close(sg_session_t *s);
/* Emits a session event (events.h) when they are on; sub for the
 * subscribed and unsubscribed ones. */
void sg_session_event(sg_session_t *s, int kind, const sg_sub_t *sub);

/* ---------- session_receipt.c ---------- */

void sg_session_flush_receipts(sg_session_t *s);
int sg_session_add_receipt_id(sg_session_t *s, const char *id, int disconnect);
int sg_session_add_receipt(sg_session_t *s, const sg_stomp_frame_t *f, int disconnect);

/* ---------- session_sub.c ---------- */

void sg_session_sub_free(sg_sub_t *sub);
sg_sub_t *sg_session_sub_by_id(sg_session_t *s, const char *id);
void sg_session_reap_cancelled(sg_session_t *s);
int sg_session_unacked_push(sg_sub_t *sub, uint64_t tag);
void sg_session_random_hex(char *out, size_t n);
const char *sg_session_temp_queue(sg_session_t *s, const char *tname);
void sg_session_unsubscribe(sg_session_t *s, sg_stomp_frame_t *f);
void sg_session_ack(sg_session_t *s, sg_stomp_frame_t *f, int ack);

/* ---------- session_tx.c ---------- */

void sg_session_tx_free(sg_tx_t *tx);
void sg_session_begin(sg_session_t *s, sg_stomp_frame_t *f);
void sg_session_commit_abort(sg_session_t *s, sg_stomp_frame_t *f, int commit);
int sg_session_tx_take(sg_session_t *s, sg_stomp_frame_t *f);

/* ---------- session_send.c ---------- */

int sg_session_queue_args(sg_session_t *s, const sg_stomp_frame_t *f, queue_args_t *qa);
int sg_session_reserved_header(const char *n);
int sg_session_parse_u64(const char *v, uint64_t *out);
int sg_session_user_dest(const sg_session_t *s, const char *dst);
int sg_session_app_prefix(const sg_session_t *s, const char *dst);
void sg_session_send(sg_session_t *s, sg_stomp_frame_t *f);

/* ---------- session_subscribe.c ---------- */

int sg_session_subscribe(sg_session_t *s, sg_stomp_frame_t *f);

/* ---------- session_deliver.c ---------- */

void sg_session_delivery_cb(sg_relay_t *r, sg_relay_sub_t *rs, sg_relay_msg_t *m);

#endif
