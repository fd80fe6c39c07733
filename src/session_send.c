/* SPDX-License-Identifier: MIT */
/* SEND: destination, application and user destinations, the STOMP headers
 * to AMQP properties, reply-to temp queues; and the queue-argument headers
 * SEND and SUBSCRIBE share. */
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
#include "stompgate/user_dest.h"

/* ---------- queue arguments ---------- */

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
int sg_session_queue_args(sg_session_t *s, const sg_stomp_frame_t *f, queue_args_t *qa) {
  const char *bad = NULL;
  if (queue_args_from(f, qa, &bad) == 0) return 0;
  char detail[128];
  snprintf(detail, sizeof(detail), "'%s' must be an integer", bad);
  sg_session_error_close(s, CLOSE_PROTOCOL, "Invalid queue argument", f, detail);
  return -1;
}



/* ---------- SEND ---------- */

int sg_session_reserved_header(const char *n) {
  static const char *const names[] = {
      "destination", "content-length", "transaction", "receipt", "message-id", "ack",
      "subscription", "content-type", "content-encoding", "correlation-id", "reply-to",
      "expiration", "priority", "timestamp", "type", "user-id", "app-id", "amqp-message-id",
      "persistent", "redelivered", NULL};
  for (int i = 0; names[i]; i++)
    if (strcmp(n, names[i]) == 0) return 1;
  return 0;
}

int sg_session_parse_u64(const char *v, uint64_t *out) {
  if (v == NULL || *v < '0' || *v > '9') return -1;
  char *end;
  unsigned long long x = strtoull(v, &end, 10);
  if (*end) return -1;
  *out = x;
  return 0;
}

/* ---------- application destinations ---------- */

/* Whether dst is a user destination (/user/...) that the relay serves. */
int sg_session_user_dest(const sg_session_t *s, const char *dst) {
  return s->relay->user_dests && s->cfg->user_exchange && sg_user_dest_is(dst);
}

int sg_session_app_prefix(const sg_session_t *s, const char *dst) {
  return sg_app_match((const char *const *)s->cfg->app_prefixes.v, s->cfg->app_prefixes.n, dst);
}

/* The session's queue for back-end replies: an internal temp queue under a
 * name no client can give (client /temp-queue/ names are never empty). */
static const char *app_reply_queue(sg_session_t *s) {
  const char *q = sg_session_temp_queue(s, "");
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

void sg_session_send(sg_session_t *s, sg_stomp_frame_t *f) {
  const char *dst = sg_stomp_frame_header(f, "destination", NULL);
  if (dst == NULL) {
    sg_session_error_close(s, CLOSE_PROTOCOL, "Missing destination", f, "SEND requires a destination header");
    return;
  }
  /* These are the server's to set on MESSAGE; a client that sends them
   * would otherwise forge them for every subscriber. */
  static const char *const forbidden[] = {"message-id", "subscription", "ack"};
  for (size_t i = 0; i < sizeof(forbidden) / sizeof(forbidden[0]); i++) {
    if (sg_stomp_frame_header(f, forbidden[i], NULL)) {
      char detail[96];
      snprintf(detail, sizeof(detail), "'%s' is not allowed on SEND", forbidden[i]);
      sg_session_error_close(s, CLOSE_PROTOCOL, "Invalid header", f, detail);
      return;
    }
  }
  queue_args_t qa;
  if (sg_session_queue_args(s, f, &qa) != 0) return;
  sg_dest_t d;
  const char *exchange, *rk;
  sg_buf_t app_key;
  sg_buf_init(&app_key);
  int app = sg_session_app_prefix(s, dst), user = 0;
  if (app >= 0) {
    memset(&d, 0, sizeof(d));
    if (sg_app_routing_key(&app_key, s->cfg->app_prefixes.v[app], dst) != 0) {
      char detail[300];
      snprintf(detail, sizeof(detail),
               "'%.200s' needs a path under the application prefix '%s', with no empty segment",
               dst, s->cfg->app_prefixes.v[app]);
      sg_buf_free(&app_key);
      sg_session_error_close(s, CLOSE_PROTOCOL, "Invalid destination", f, detail);
      return;
    }
    exchange = s->cfg->app_exchange;
    rk = app_key.base;
  } else if (sg_session_user_dest(s, dst)) {
    /* /user/U/queue/X reaches every session of U that subscribed to
     * /user/queue/X, on any gateway: they are bound with this key. */
    memset(&d, 0, sizeof(d));
    if (sg_user_dest_send_key(&app_key, dst) != 0) {
      sg_buf_free(&app_key);
      sg_session_error_close(s, CLOSE_PROTOCOL, "Invalid destination", f,
                  "a user destination to SEND to is /user/USER/queue/NAME");
      return;
    }
    user = 1;
    exchange = s->cfg->user_exchange;
    rk = app_key.base;
  } else if (sg_dest_parse(dst, strlen(dst), &d) != 0) {
    sg_session_error_close(s, CLOSE_PROTOCOL, "Invalid destination", f, dst);
    return;
  } else if (sg_dest_publish_target(&d, &exchange, &rk) != 0) {
    sg_dest_free(&d);
    sg_session_error_close(s, CLOSE_PROTOCOL, "Invalid destination", f,
                "a /temp-queue/ destination is only valid in a reply-to header");
    return;
  }
  if (app >= 0 || user ? sg_session_refused(s, f, SG_PERM_WRITE, SG_DEST_EXCHANGE, exchange, rk, dst)
                       : sg_session_refused(s, f, SG_PERM_WRITE, (int)d.kind, d.name, d.key, dst)) {
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
        rq = sg_session_temp_queue(s, rq + 12);
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
      if (sg_session_parse_u64(h->value, &num) == 0 && num <= 255) {
        p._flags |= AMQP_BASIC_PRIORITY_FLAG;
        p.priority = (uint8_t)num;
      }
    } else if (strcmp(n, "timestamp") == 0) {
      if (sg_session_parse_u64(h->value, &num) == 0) {
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
    } else if (!sg_session_reserved_header(n) && strncmp(n, "stompgate-", 10) != 0) {
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
  sg_session_add_receipt(s, f, 0);
  return;
lost:
  sg_dest_free(&d);
  sg_buf_free(&app_key);
  if (s->state != S_CLOSING) sg_session_error_close(s, CLOSE_INTERNAL, "Internal error", f, NULL);
}

