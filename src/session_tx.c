/* SPDX-License-Identifier: MIT */
/* Transactions: BEGIN, COMMIT and ABORT, and the frames kept for a
 * transaction until it ends (within --max-tx-frames). */
#include "session_internal.h"

#include <amqp_framing.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"

void sg_session_tx_free(sg_tx_t *tx) {
  for (size_t i = 0; i < tx->n; i++) sg_stomp_frame_free(tx->frames[i]);
  free(tx->frames);
  free(tx->id);
  free(tx);
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
  if (t == NULL) sg_session_error_close(s, CLOSE_PROTOCOL, "Missing transaction", f,
                             "BEGIN, COMMIT and ABORT require a transaction header");
  return t;
}

void sg_session_begin(sg_session_t *s, sg_stomp_frame_t *f) {
  const char *t = tx_header(s, f);
  if (t == NULL) return;
  if (tx_find(s, t, NULL)) {
    sg_session_error_close(s, CLOSE_PROTOCOL, "Transaction already started", f, t);
    return;
  }
  if (s->ntxs >= s->cfg->max_transactions) {
    sg_session_error_close(s, CLOSE_POLICY, "Too many transactions", f, NULL);
    return;
  }
  sg_tx_t *tx = calloc(1, sizeof(*tx));
  if (tx == NULL || (tx->id = strdup(t)) == NULL) {
    free(tx);
    sg_session_error_close(s, CLOSE_INTERNAL, "Internal error", f, "out of memory");
    return;
  }
  tx->next = s->txs;
  s->txs = tx;
  s->ntxs++;
  sg_session_add_receipt(s, f, 0);
}

void sg_session_commit_abort(sg_session_t *s, sg_stomp_frame_t *f, int commit) {
  const char *t = tx_header(s, f);
  if (t == NULL) return;
  sg_tx_t **link, *tx = tx_find(s, t, &link);
  if (tx == NULL) {
    sg_session_error_close(s, CLOSE_PROTOCOL, "Unknown transaction", f, t);
    return;
  }
  *link = tx->next;
  s->ntxs--;
  if (commit) {
    for (size_t i = 0; i < tx->n; i++) {
      if (s->state == S_CONNECTED) sg_session_process_frame(s, tx->frames[i], 1);
      else sg_stomp_frame_free(tx->frames[i]);
      tx->frames[i] = NULL;
    }
    tx->n = 0;
  }
  sg_session_tx_free(tx);
  if (s->state == S_CONNECTED) sg_session_add_receipt(s, f, 0);
}

/* Keeps f for its transaction. Returns 1 if taken, 0 if f has no
 * transaction, -1 after an error closed the session. */
int sg_session_tx_take(sg_session_t *s, sg_stomp_frame_t *f) {
  const char *t = sg_stomp_frame_header(f, "transaction", NULL);
  if (t == NULL) return 0;
  sg_tx_t *tx = tx_find(s, t, NULL);
  if (tx == NULL) {
    sg_session_error_close(s, CLOSE_PROTOCOL, "Unknown transaction", f, t);
    return -1;
  }
  if (tx->n >= s->cfg->max_tx_frames) {
    sg_session_error_close(s, CLOSE_POLICY, "Transaction too large", f, t);
    return -1;
  }
  if (tx->n == tx->cap) {
    size_t cap = tx->cap ? tx->cap * 2 : 8;
    sg_stomp_frame_t **n = realloc(tx->frames, cap * sizeof(*n));
    if (n == NULL) {
      sg_session_error_close(s, CLOSE_INTERNAL, "Internal error", f, "out of memory");
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
      sg_session_flush_receipts(s);
    } else {
      free(r);
    }
  }
  return 1;
}

