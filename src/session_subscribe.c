/* SPDX-License-Identifier: MIT */
/* SUBSCRIBE: checks the frame, names the queue, and asks the relay to set
 * the subscription up. */
#include "session_internal.h"

#include <amqp_framing.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "log.h"
#include "metrics.h"
#include "stompgate/history.h"
#include "stompgate/user_dest.h"

/* ---------- SUBSCRIBE / UNSUBSCRIBE ---------- */

/* Handles a SUBSCRIBE. 1 when the relay makes it wait: f is kept and
 * handled again later; 0 when done with f. */
int sg_session_subscribe(sg_session_t *s, sg_stomp_frame_t *f) {
  const char *dst = sg_stomp_frame_header(f, "destination", NULL);
  const char *id = sg_stomp_frame_header(f, "id", NULL);
  const char *ack = sg_stomp_frame_header(f, "ack", NULL);
  if (dst == NULL) {
    sg_session_error_close(s, CLOSE_PROTOCOL, "Missing destination", f,
                "SUBSCRIBE requires a destination header");
    return 0;
  }
  if (id == NULL) {
    if (s->version >= 11) {
      sg_session_error_close(s, CLOSE_PROTOCOL, "Missing id", f, "SUBSCRIBE requires an id header");
      return 0;
    }
    id = dst; /* STOMP 1.0: the destination identifies the subscription */
  }
  if (strncmp(id, "/temp-queue/", 12) == 0) {
    sg_session_error_close(s, CLOSE_PROTOCOL, "Invalid subscription id", f,
                "ids starting with /temp-queue/ are reserved");
    return 0;
  }
  if (sg_session_sub_by_id(s, id)) {
    sg_session_error_close(s, CLOSE_PROTOCOL, "Duplicated subscription identifier", f, id);
    return 0;
  }
  if (s->nsubs >= s->cfg->max_subscriptions) {
    sg_session_error_close(s, CLOSE_POLICY, "Too many subscriptions", f, NULL);
    return 0;
  }
  int mode;
  if (ack == NULL || strcmp(ack, "auto") == 0) mode = ACK_AUTO;
  else if (strcmp(ack, "client") == 0) mode = ACK_CLIENT;
  else if (strcmp(ack, "client-individual") == 0) mode = ACK_CLIENT_INDIVIDUAL;
  else {
    sg_session_error_close(s, CLOSE_PROTOCOL, "Invalid ack mode", f, ack);
    return 0;
  }
  int app = sg_session_app_prefix(s, dst);
  if (app >= 0) {
    char msg[240];
    snprintf(msg, sizeof(msg), "Cannot subscribe under the application prefix %s",
             s->cfg->app_prefixes.v[app]);
    sg_session_error_close(s, CLOSE_PROTOCOL, msg, f,
                "application destinations are handled by back-end services: SEND to them; "
                "their replies arrive without a subscription");
    return 0;
  }
  queue_args_t qa;
  if (sg_session_queue_args(s, f, &qa) != 0) return 0;
  /* Streams are read from an offset, given as a consumer argument. */
  amqp_table_entry_t ce;
  amqp_table_t cargs = amqp_empty_table;
  const char *so = sg_stomp_frame_header(f, "x-stream-offset", NULL);
  sg_stream_offset_t off = {0};
  if (so) {
    if (sg_dest_parse_stream_offset(so, &off) != 0) {
      sg_session_error_close(s, CLOSE_PROTOCOL, "Invalid x-stream-offset", f,
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
    sg_session_error_close(s, CLOSE_PROTOCOL, "Invalid x-queue-name", f, "a queue name has 1 to 255 bytes");
    return 0;
  }
  if (durable && xqn == NULL && sg_stomp_frame_header(f, "id", NULL) == NULL) {
    sg_session_error_close(s, CLOSE_PROTOCOL, "Missing id", f, "a durable subscription requires an id header");
    return 0;
  }
  sg_dest_t d;
  const sg_history_t *hist = NULL;
  int user = sg_session_user_dest(s, dst);
  if (user && (xqn || durable)) {
    /* A named or durable queue could be found again by another user. */
    sg_session_error_close(s, CLOSE_PROTOCOL, "Invalid destination", f,
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
      sg_session_error_close(s, CLOSE_PROTOCOL, "Invalid destination", f,
                  "a user destination to SUBSCRIBE to is /user/queue/NAME");
      return 0;
    }
    d.key = key.base;
    if ((d.name = strdup(s->cfg->user_exchange)) == NULL) {
      sg_dest_free(&d);
      sg_session_error_close(s, CLOSE_INTERNAL, "Internal error", f, "out of memory");
      return 0;
    }
  } else if (sg_dest_parse(dst, strlen(dst), &d) != 0) {
    sg_session_error_close(s, CLOSE_PROTOCOL, "Invalid destination", f, dst);
    return 0;
  }
  if (d.kind == SG_DEST_TEMP_QUEUE) {
    sg_dest_free(&d);
    sg_session_error_close(s, CLOSE_PROTOCOL, "Invalid destination", f,
                "a /temp-queue/ destination is only valid in a reply-to header");
    return 0;
  }
  if (!user && sg_session_refused(s, f, SG_PERM_READ, (int)d.kind, d.name, d.key, dst)) {
    sg_dest_free(&d);
    return 0;
  }
  /* A topic with history (--history): a non-durable auto-ack subscription
   * reads its stream, with offsets; others are as without history. An
   * offset on a /topic/ destination asks for history, which must be had. */
  if (d.kind == SG_DEST_TOPIC) {
    /* The streams live on --broker's vhost. */
    int broker_vhost = strcmp(s->vhost, s->cfg->broker.vhost) == 0;
    const sg_history_t *h =
        broker_vhost ? sg_history_find(s->cfg->history, s->cfg->nhistory, d.name) : NULL;
    const char *no = NULL;
    if (h && !durable && xqn == NULL && qa.table.num_entries == 0 && mode == ACK_AUTO)
      hist = h;
    else if (h)
      no = "a topic's history is read by a subscription with ack:auto, not durable, without "
           "x-queue-name or queue arguments";
    else if (s->cfg->nhistory && !broker_vhost)
      no = "topics with history are kept on the gateway's broker vhost only";
    else
      no = "no --history pattern of the gateway covers this topic";
    if (so && hist == NULL) {
      sg_dest_free(&d);
      sg_session_error_close(s, CLOSE_PROTOCOL, "No history for this subscription", f, no);
      return 0;
    }
  }
  /* A topic subscription that names its queue, or a durable one, may meet
   * another's queue by that name: declaring it needs configure on it. */
  if (s->grant && (d.kind == SG_DEST_TOPIC || d.kind == SG_DEST_EXCHANGE) && (xqn || durable)) {
    char dq[SG_DEST_DURABLE_NAME_SIZE];
    if (xqn == NULL) sg_dest_durable_queue_name(id, strlen(id), dq);
    if (sg_session_refused(s, f, SG_PERM_CONFIGURE, SG_DEST_QUEUE, xqn ? xqn : dq, NULL, dst)) {
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
  if (s->ctx->events && (sub->dest = strdup(dst)) == NULL) goto nomem;
  if (sub->rs.tag_len > 255) {
    sg_session_sub_free(sub);
    sg_dest_free(&d);
    sg_session_error_close(s, CLOSE_PROTOCOL, "Invalid subscription id", f, "id is longer than 253 bytes");
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
    } else if (xqn == NULL && hist == NULL) {
      sg_session_random_hex(rnd, 16);
      snprintf(qname, sizeof(qname), "stomp-subscription-%s", rnd);
    }
    /* A topic with history reads its stream (here or in the worker's
     * fan-out), from the offset asked for or the next message. */
    if ((sub->rs.queue = strdup(hist ? hist->queue : xqn ? xqn : qname)) == NULL) goto nomem;
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
    if (q.bind_key == NULL) q.bind_key = "";
    if (hist) {
      if ((sub->rs.filter = strdup(d.name)) == NULL) goto nomem;
      sub->rs.history = 1;
      sub->rs.from = -1;
      sub->rs.read = -1;
      q.history = hist;
      q.resume = so != NULL;
      q.own_queue = 0;
      q.declare = SG_RELAY_DECLARE_NONE;
      if (so && off.kind == SG_STREAM_OFFSET) {
        /* Read from the message before it, the client's last one: the
         * relay drops it, and tells by it whether the stream still held
         * what was asked for. */
        sub->rs.from = off.value;
        if (off.value > 0) ce.value.value.i64 = off.value - 1;
      }
    }
    /* AMQP carries a binding key in a short string. */
    if (strlen(q.bind_key) > 255) {
      sg_dest_free(&d);
      sg_session_sub_free(sub);
      sg_session_error_close(s, CLOSE_PROTOCOL, "Invalid destination", f,
                             "a binding key has at most 255 bytes");
      return 0;
    }
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
  q.prefetch = pf && sg_session_parse_u64(pf, &prefetch) == 0 && prefetch <= 65535 ? (int)prefetch : -1;
  sg_relay_fault_t why;
  memset(&why, 0, sizeof(why));
  int r = sg_relay_subscribe(s->relay, &sub->rs, &q, &why);
  sg_dest_free(&d);
  if (r == SG_ERR_AGAIN) {
    /* The relay must set something up first; the frame is handled again
     * from the start once it wakes the session. */
    sg_session_sub_free(sub);
    return 1;
  }
  if (r < 0 && why.kind) {
    sg_session_sub_free(sub);
    sg_session_relay_failed(s, &why, sg_stomp_frame_header(f, "receipt", NULL));
    return 0;
  }
  sub->next = s->subs;
  s->subs = sub;
  s->nsubs++;
  if (r < 0) return 0; /* the link is lost; on_fault_cb closed the session */
  if (hist && so) {
    sg_metrics_history_resume();
    sg_log_debug("session-%" PRIu64 " resumes %s from %s in stream '%s'", s->id, dst, so,
                 hist->queue);
  }
  sg_session_event(s, SG_EVENT_SUBSCRIBED, sub);
  sg_session_add_receipt(s, f, 0);
  return 0;
nomem:
  sg_dest_free(&d);
  if (sub) sg_session_sub_free(sub);
  sg_session_error_close(s, CLOSE_INTERNAL, "Internal error", f, "out of memory");
  return 0;
}

