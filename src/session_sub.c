/* SPDX-License-Identifier: MIT */
/* Subscriptions and acks: the session's subscriptions (a client's and the
 * internal temp-queue ones), UNSUBSCRIBE, and ACK/NACK in each ack mode. */
#include "session_internal.h"

#include <amqp_framing.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "log.h"
#include "metrics.h"

void sg_session_sub_free(sg_sub_t *sub) {
  free(sub->id);
  free(sub->rs.tag);
  free(sub->temp_name);
  free(sub->rs.queue);
  free(sub->rs.filter);
  free(sub->unacked);
  free(sub->user_dest);
  free(sub->dest);
  free(sub);
}


/* ---------- subscriptions ---------- */

sg_sub_t *sg_session_sub_by_id(sg_session_t *s, const char *id) {
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
      sg_session_sub_free(sub);
      return;
    }
  }
}

/* Frees cancelled subscriptions once the broker confirmed the cancel and no
 * ACK can refer to them any more. */
void sg_session_reap_cancelled(sg_session_t *s) {
  sg_sub_t *x = s->subs;
  while (x) {
    sg_sub_t *n = x->next;
    if (x->rs.cancelled && x->un_len == 0 && sg_relay_reached(s->relay, &x->cancel_done))
      sub_unlink(s, x);
    x = n;
  }
}

int sg_session_unacked_push(sg_sub_t *sub, uint64_t tag) {
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

void sg_session_random_hex(char *out, size_t n) {
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
const char *sg_session_temp_queue(sg_session_t *s, const char *tname) {
  for (sg_sub_t *x = s->subs; x; x = x->next)
    if (x->internal && strcmp(x->temp_name, tname) == 0) return x->rs.queue;
  sg_sub_t *sub = calloc(1, sizeof(*sub));
  char qname[96], rnd[17];
  if (sub == NULL) return NULL;
  sg_session_random_hex(rnd, 16);
  snprintf(qname, sizeof(qname), "stomp-temp-%" PRIu64 "-%s-%" PRIu64, s->id, rnd, ++s->temp_seq);
  size_t tl = strlen(tname);
  sub->internal = 1;
  sub->temp_name = strdup(tname);
  sub->rs.queue = strdup(qname);
  sub->id = malloc(tl + 13);
  sub->rs.tag = malloc(tl + 15);
  if (!sub->temp_name || !sub->rs.queue || !sub->id || !sub->rs.tag) {
    sg_session_sub_free(sub);
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


void sg_session_unsubscribe(sg_session_t *s, sg_stomp_frame_t *f) {
  const char *id = sg_stomp_frame_header(f, "id", NULL);
  if (id == NULL && s->version == 10) id = sg_stomp_frame_header(f, "destination", NULL);
  if (id == NULL) {
    sg_session_error_close(s, CLOSE_PROTOCOL, "Missing id", f, "UNSUBSCRIBE requires an id header");
    return;
  }
  /* UNSUBSCRIBE durable:true ends a durable topic subscription for good:
   * its queue is deleted, even when no session consumes it right now. */
  int forget = header_true(f, "durable") || header_true(f, "persistent");
  const char *xqn = sg_stomp_frame_header(f, "x-queue-name", NULL);
  sg_sub_t *sub = sg_session_sub_by_id(s, id);
  if (sub == NULL && !forget) {
    sg_session_error_close(s, CLOSE_PROTOCOL, "No subscription found", f, id);
    return;
  }
  if (sub) {
    if (sg_relay_unsubscribe(s->relay, &sub->rs, &sub->cancel_done) < 0) return;
    s->nsubs--;
    sg_session_event(s, SG_EVENT_UNSUBSCRIBED, sub);
  }
  if (forget && (sub == NULL || sub->rs.own_queue)) {
    char qname[SG_DEST_DURABLE_NAME_SIZE];
    const char *q = sub ? sub->rs.queue : xqn;
    if (q == NULL) {
      sg_dest_durable_queue_name(id, strlen(id), qname);
      q = qname;
    }
    if (sg_session_refused(s, f, SG_PERM_CONFIGURE, SG_DEST_QUEUE, q, NULL, q)) return;
    if (sg_relay_delete_queue(s->relay, q) < 0) return;
  }
  sg_session_add_receipt(s, f, 0);
  /* A subscription nothing can refer to any more goes at once. */
  if (sub) sg_session_reap_cancelled(s);
}


/* ---------- ACK / NACK ---------- */

static int parse_ack_id(const char *v, uint64_t *tag) {
  const char *at = NULL;
  for (const char *p = v; (p = strstr(p, "@@")) != NULL; p += 2) at = p;
  return sg_session_parse_u64(at ? at + 2 : v, tag);
}

void sg_session_ack(sg_session_t *s, sg_stomp_frame_t *f, int ack) {
  const char *idh = s->version >= 12 ? "id" : "message-id";
  const char *v = sg_stomp_frame_header(f, idh, NULL);
  if (v == NULL) {
    char detail[64];
    snprintf(detail, sizeof(detail), "%s requires a %s header", ack ? "ACK" : "NACK", idh);
    sg_session_error_close(s, CLOSE_PROTOCOL, "Missing message id", f, detail);
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
    sg_session_error_close(s, CLOSE_PROTOCOL, ack ? "Unknown message id in ACK" : "Unknown message id in NACK",
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
  if (sub->rs.cancelled) sg_session_reap_cancelled(s);
  sg_session_add_receipt(s, f, 0);
}

