/* SPDX-License-Identifier: MIT */
/* Delivery: a MESSAGE for each message the relay hands up, within the
 * client's outbound bound. */
#include "session_internal.h"

#include <amqp_framing.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "stompgate/amqp_table.h"
#include "stompgate/app_dest.h"
#include "stompgate/utf8.h"

/* Whether a MESSAGE of len bytes for sub may be queued for the client. One
 * that is too far behind (--max-outbound-bytes unread since the last
 * write) loses the message when
 * --slow-consumer is drop and sub is an auto-ack topic subscription, and is
 * closed with an ERROR otherwise: memory stays bounded either way. */
static int outbound_room(sg_session_t *s, const sg_sub_t *sub, size_t len) {
  /* What the client left unread since the last write, not the burst the
   * broker just handed over: a reading client drains it every iteration. */
  if (sg_transport_backlog(s->tr) + len <= s->cfg->max_outbound_bytes) return 1;
  /* A topic with history is closed rather than given a gap: the client
   * resumes from its last offset. */
  if (s->cfg->slow_consumer_drop && sub->ack_mode == ACK_AUTO && sub->topic_like &&
      !sub->rs.history) {
    if (s->dropped++ == 0)
      sg_log_info("session-%" PRIu64 " is a slow consumer: dropping topic messages", s->id);
    sg_metrics_slow_drop();
    return 0;
  }
  char detail[160];
  snprintf(detail, sizeof(detail), "more than %zu bytes were waiting to be written to the client%s",
           s->cfg->max_outbound_bytes,
           sub->rs.history ? "; resume from the last x-stream-offset" : "");
  sg_session_error_close(s, CLOSE_POLICY, "slow consumer", NULL, detail);
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
        if (sg_session_reserved_header(key)) continue;
        sg_buf_t *hb = sg_session_hscratch();
        sg_buf_reset(hb);
        if (sg_amqp_field_render(hb, &e->value) != 0) continue;
        const char *val = hb->base;
        size_t vl = hb->len;
        sg_stomp_encode_header(b, v, SG_STOMP_MESSAGE, e->key.bytes, e->key.len, val, vl);
      }
    }
  }
  sg_stomp_encode_finish(b, d->body, d->body_len);
}

/* d's MESSAGE was handed to the client's transport (which writes it at
 * the end of this loop iteration): /metrics' delivery latency. */
static void delivered(const sg_session_t *s, const sg_amqp_delivery_t *d) {
  if (d->arrived_ns)
    sg_metrics_delivery_latency(s->ctx->relay->name, (double)(uv_hrtime() - d->arrived_ns) / 1e9);
}

/* A delivery for sub: MESSAGE to the client. */
void sg_session_delivery_cb(sg_relay_t *r, sg_relay_sub_t *rs, sg_relay_msg_t *m) {
  sg_session_t *s = r->owner;
  if (s->state != S_CONNECTED) return;
  sg_sub_t *sub = container_of(rs, sg_sub_t, rs);
  const sg_amqp_delivery_t *d = m->d;
  sg_metrics_delivery();
  if (sub->ack_mode != ACK_AUTO && sg_session_unacked_push(sub, d->delivery_tag) != 0) {
    sg_session_error_close(s, CLOSE_INTERNAL, "Internal error", NULL, "out of memory");
    return;
  }
  sg_buf_t *b = sg_session_scratch();
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
    int pi = to ? sg_session_app_prefix(s, to) : -1;
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
  if (m->incomplete) {
    /* The stream no longer held every message from the offset asked for. */
    sg_stomp_encode_headerz(b, v, SG_STOMP_MESSAGE, "x-history-incomplete", "true");
    sg_log_info("session-%" PRIu64 " resumed subscription %s past the history's retention",
                s->id, sub->id);
  }
  if (m->tail == NULL || dest != NULL) {
    encode_message_tail(b, v, d, dest);
    if (outbound_room(s, sub, b->len)) {
      sg_session_send_frame(s, b);
      delivered(s, d);
    }
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
  s->frames_out++;
  s->bytes_out += b->len;
  sg_transport_send(s->tr, b->base, b->len, binary);
  delivered(s, d);
}

