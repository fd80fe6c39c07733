/* SPDX-License-Identifier: MIT */
/* Receipts and confirms: a RECEIPT is owed from the frame that asks for it
 * and goes out, in order, once the relay has reached the mark taken after
 * that frame, so it always means "all that came before is done". */
#include "session_internal.h"

#include <amqp_framing.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"

static void send_receipt(sg_session_t *s, const char *id) {
  sg_buf_t *b = sg_session_scratch();
  sg_buf_reset(b);
  sg_stomp_encode_start(b, SG_STOMP_RECEIPT);
  sg_stomp_encode_headerz(b, s->version, SG_STOMP_RECEIPT, "receipt-id", id);
  sg_stomp_encode_finish(b, NULL, 0);
  sg_session_send_frame(s, b);
}


/* ---------- receipts and confirms ---------- */

void sg_session_drain_close(sg_session_t *s);

void sg_session_flush_receipts(sg_session_t *s) {
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
      sg_session_end(s, CLOSE_NORMAL, "", "DISCONNECT");
      return;
    }
    if (s->draining && s->rc_head == NULL) sg_session_drain_close(s);
  }
}

int sg_session_add_receipt_id(sg_session_t *s, const char *id, int disconnect) {
  sg_receipt_t *r = calloc(1, sizeof(*r));
  if (r == NULL || (r->id = strdup(id)) == NULL) {
    free(r);
    return SG_ERR_NOMEM;
  }
  sg_relay_mark(s->relay, &r->mark);
  r->disconnect = disconnect;
  *s->rc_tail = r;
  s->rc_tail = &r->next;
  sg_session_flush_receipts(s);
  return 1;
}

int sg_session_add_receipt(sg_session_t *s, const sg_stomp_frame_t *f, int disconnect) {
  const char *id = sg_stomp_frame_header(f, "receipt", NULL);
  return id ? sg_session_add_receipt_id(s, id, disconnect) : 0;
}

