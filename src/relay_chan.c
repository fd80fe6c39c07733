/* SPDX-License-Identifier: MIT */
/* The session's own AMQP channel, for both relay implementations. Broker
 * work is pipelined on the one channel; synchronous replies arrive in order
 * and are counted, publishes are confirmed, and a mark is reached once both
 * counts have passed it. */
#include "relay_chan.h"

#include <amqp_framing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "stompgate/container.h"
#include "stompgate/err.h"

static sg_relay_chan_t *chan_of(sg_relay_t *r) { return container_of(r, sg_relay_chan_t, base); }

static amqp_bytes_t bytes_of(const char *s) { return amqp_cstring_bytes(s); }

int sg_relay_publishes(const sg_stomp_frame_t *f) {
  return f->cmd == SG_STOMP_SEND || f->cmd == SG_STOMP_COMMIT;
}

int sg_relay_chan_started(const sg_relay_chan_t *ch) { return ch->amqp.state != SG_AMQP_IDLE; }

void sg_relay_chan_fault(sg_relay_chan_t *ch, const sg_relay_fault_t *f) {
  if (!ch->closing) ch->base.cbs->on_fault_cb(&ch->base, f);
}

static sg_relay_sub_t *sub_by_tag(sg_relay_chan_t *ch, amqp_bytes_t tag) {
  for (sg_relay_sub_t *x = ch->subs; x; x = x->next)
    if (x->tag_len == tag.len && memcmp(x->tag, tag.bytes, tag.len) == 0) return x;
  return NULL;
}

static void sub_link(sg_relay_chan_t *ch, sg_relay_sub_t *sub) {
  sub->prev = NULL;
  sub->next = ch->subs;
  if (ch->subs) ch->subs->prev = sub;
  ch->subs = sub;
  sub->linked = 1;
}

static void unlink_sub(sg_relay_chan_t *ch, sg_relay_sub_t *sub);

/* basic.consume of sub's queue on sub's tag; the reply's number, or a
 * negative error. */
static int64_t consume(sg_relay_chan_t *ch, const sg_relay_sub_t *sub, int no_ack,
                       amqp_table_t args) {
  return sg_amqp_consume(&ch->amqp, sub->queue, sub->tag, no_ack, args);
}

/* basic.cancel of the consumer tag; as consume. */
static int64_t cancel(sg_relay_chan_t *ch, const char *tag) {
  amqp_basic_cancel_t c = {amqp_cstring_bytes(tag), 0};
  return sg_amqp_rpc(&ch->amqp, AMQP_BASIC_CANCEL_METHOD, &c, AMQP_BASIC_CANCEL_OK_METHOD);
}

/* basic.qos: n deliveries in flight per consumer started after it. */
static int64_t prefetch(sg_relay_chan_t *ch, int n) {
  amqp_basic_qos_t qos = {0, (uint16_t)n, 0};
  return sg_amqp_rpc(&ch->amqp, AMQP_BASIC_QOS_METHOD, &qos, AMQP_BASIC_QOS_OK_METHOD);
}

/* Cancels sub's consumer when the channel is usable and forgets it at
 * once (what it still had in flight is dropped). */
static void stop_consumer(sg_relay_chan_t *ch, sg_relay_sub_t *sub) {
  if (ch->amqp.state == SG_AMQP_OPEN && !ch->closing) cancel(ch, sub->tag);
  unlink_sub(ch, sub);
}

/* Ends sub's end probe (history_consume). */
static void probe_drop(sg_relay_chan_t *ch, sg_relay_sub_t *sub) {
  sg_relay_sub_t *p = sub->end_probe;
  if (p == NULL) return;
  sub->end_probe = NULL;
  stop_consumer(ch, p);
  free(p->tag);
  free(p);
}

void sg_relay_chan_release(sg_relay_t *r, sg_relay_sub_t *sub) {
  sg_relay_chan_t *ch = chan_of(r);
  probe_drop(ch, sub);
  unlink_sub(ch, sub);
}

void sg_relay_chan_stop(sg_relay_t *r, sg_relay_sub_t *sub) {
  sg_relay_chan_t *ch = chan_of(r);
  probe_drop(ch, sub);
  stop_consumer(ch, sub);
}

static void unlink_sub(sg_relay_chan_t *ch, sg_relay_sub_t *sub) {
  if (!sub->linked) return;
  if (sub->prev) sub->prev->next = sub->next;
  else ch->subs = sub->next;
  if (sub->next) sub->next->prev = sub->prev;
  sub->next = sub->prev = NULL;
  sub->linked = 0;
}

/* ---------- channel callbacks ---------- */

static sg_relay_chan_t *chan_of_amqp(sg_amqp_t *a) { return container_of(a, sg_relay_chan_t, amqp); }

static void chan_open_cb(sg_amqp_t *a, int status, const char *message) {
  sg_relay_chan_t *ch = chan_of_amqp(a);
  if (ch->closing) return;
  /* A pooled connection may be blocked already. */
  if (status == 0) ch->blocked = a->conn && a->conn->blocked;
  ch->opened(ch, status, message);
}

/* Whether sub's key matches a key d was routed by. */
static int history_matches(const sg_relay_sub_t *sub, const sg_amqp_delivery_t *d) {
  sg_match_key_t local[16], *keys = local;
  size_t n = sg_amqp_delivery_keys(d, local, 16);
  if (n > 16) {
    if ((keys = malloc(n * sizeof(*keys))) == NULL) return 0;
    sg_amqp_delivery_keys(d, keys, n);
  }
  size_t fl = strlen(sub->filter);
  int hit = 0;
  for (size_t i = 0; i < n && !hit; i++)
    hit = sg_topic_match_one(sub->filter, fl, keys[i].base, keys[i].len);
  if (keys != local) free(keys);
  return hit;
}

/* A delivery from a topic's history stream: acked at once (the credit of
 * a stream consumer; it settles nothing), then handed up when it is at or
 * after the offset asked for and its keys match the subscription's. The
 * first offset read tells whether the stream still held the one asked
 * for: a later one means the retention dropped what lay between. */
static void history_delivery(sg_relay_chan_t *ch, sg_relay_sub_t *sub,
                             const sg_amqp_delivery_t *d) {
  amqp_basic_ack_t ack = {d->delivery_tag, 0};
  if (sg_amqp_send(&ch->amqp, AMQP_BASIC_ACK_METHOD, &ack) != 0 || sub->cancelled) return;
  int64_t off;
  int has = sg_amqp_delivery_offset(d, &off) == 0;
  if (has) {
    /* The read starts one before from (the client's last message; offsets
     * are not contiguous: a segment may begin with an entry that is no
     * message), so a first offset past that says the retention dropped it. */
    if (sub->read < 0 && sub->from >= 0 && off > (sub->from > 0 ? sub->from - 1 : 0)) {
      sub->incomplete = 1;
      sg_metrics_history_incomplete();
    }
    sub->read = off;
  }
  if (has && sub->from >= 0 && off < sub->from) return; /* before the offset asked for */
  if (ch->history_cb && !ch->history_cb(ch, sub, has ? off : -1)) return;
  if (!history_matches(sub, d)) return;
  sg_relay_msg_t m = {d, d->delivery_tag, NULL, NULL, sub->incomplete};
  sub->incomplete = 0;
  sg_metrics_history_catchup_msg();
  ch->base.cbs->on_delivery_cb(&ch->base, sub, &m);
}

/* Reads the stream from offset spec (a string such as "first") on sub's
 * consumer tag. */
static int64_t history_read_from(sg_relay_chan_t *ch, sg_relay_sub_t *sub, const char *spec) {
  amqp_table_entry_t e;
  e.key = amqp_cstring_bytes("x-stream-offset");
  e.value.kind = AMQP_FIELD_KIND_UTF8;
  e.value.value.bytes = amqp_cstring_bytes(spec);
  return consume(ch, sub, 0, (amqp_table_t){1, &e});
}

/* The first delivery of sub's end probe: the stream's last chunk. When
 * the stream ends before the client's last message (from - 1) and sub has
 * read nothing, the stream is not the one the offset came from (deleted
 * and declared again, a broker reset): RabbitMQ would hold sub back until
 * the stream's offsets reach from. sub reads it from its start instead,
 * and its first message says that what lay between is unknown. */
static void probe_delivery(sg_relay_chan_t *ch, sg_relay_sub_t *p, const sg_amqp_delivery_t *d) {
  amqp_basic_ack_t ack = {d->delivery_tag, 0};
  if (sg_amqp_send(&ch->amqp, AMQP_BASIC_ACK_METHOD, &ack) != 0) return;
  sg_relay_sub_t *sub = p->impl;
  int64_t end;
  if (sub == NULL || sub->end_probe != p || sg_amqp_delivery_offset(d, &end) != 0) return;
  int reset = sub->read < 0 && sub->from > 0 && end < sub->from - 1 && !sub->cancelled;
  probe_drop(ch, sub);
  if (!reset) return;
  sg_log_warn("stream '%s' ends at offset %lld, before the offset %lld a subscription resumes "
              "from (deleted and declared again?): it is read from its first message",
              sub->queue, (long long)end, (long long)sub->from);
  if (cancel(ch, sub->tag) < 0) return;
  sub->from = -1;
  sub->incomplete = 1;
  sg_metrics_history_incomplete();
  history_read_from(ch, sub, "first");
}

static void chan_delivery_cb(sg_amqp_t *a, const sg_amqp_delivery_t *d) {
  sg_relay_chan_t *ch = chan_of_amqp(a);
  if (ch->closing) return;
  sg_relay_sub_t *sub = sub_by_tag(ch, d->consumer_tag);
  if (sub == NULL) return;
  if (sub->probe) {
    probe_delivery(ch, sub, d);
    return;
  }
  if (sub->history) {
    history_delivery(ch, sub, d);
    return;
  }
  if (sub->cancelled) {
    /* Already in flight when the cancel went out: give it back. */
    if (!sub->no_ack) {
      amqp_basic_reject_t rj = {d->delivery_tag, 1};
      sg_amqp_send(a, AMQP_BASIC_REJECT_METHOD, &rj);
    }
    return;
  }
  sg_relay_msg_t m = {d, d->delivery_tag, NULL, NULL, 0};
  ch->base.cbs->on_delivery_cb(&ch->base, sub, &m);
}

static void confirm_advance(sg_relay_chan_t *ch) {
  int moved = 1;
  while (moved) {
    moved = 0;
    for (size_t i = 0; i < ch->nooo; i++) {
      if (ch->ooo[i] <= ch->confirmed + 1) {
        if (ch->ooo[i] == ch->confirmed + 1) ch->confirmed++;
        ch->ooo[i] = ch->ooo[--ch->nooo];
        moved = 1;
        break;
      }
    }
  }
}

static void chan_confirm_cb(sg_amqp_t *a, uint64_t tag, int multiple, int ack) {
  sg_relay_chan_t *ch = chan_of_amqp(a);
  sg_metrics_confirm(ack);
  if (ch->closing) return;
  if (!ack) {
    sg_relay_fault_t f = {.kind = SG_RELAY_REJECTED, .tag = tag, .blame = SG_RELAY_BLAME_PUB,
                          .at = tag};
    sg_relay_chan_fault(ch, &f);
    return;
  }
  if (multiple) {
    if (tag > ch->confirmed) ch->confirmed = tag;
  } else if (tag == ch->confirmed + 1) {
    ch->confirmed = tag;
  } else if (tag > ch->confirmed) {
    if (ch->nooo == ch->ooo_cap) {
      size_t cap = ch->ooo_cap ? ch->ooo_cap * 2 : 16;
      uint64_t *n = realloc(ch->ooo, cap * sizeof(*n));
      if (n == NULL) return;
      ch->ooo = n;
      ch->ooo_cap = cap;
    }
    ch->ooo[ch->nooo++] = tag;
  }
  confirm_advance(ch);
  ch->base.cbs->on_progress_cb(&ch->base);
}

static void chan_progress_cb(sg_amqp_t *a) {
  sg_relay_chan_t *ch = chan_of_amqp(a);
  if (!ch->closing) ch->base.cbs->on_progress_cb(&ch->base);
}

static void chan_cancel_cb(sg_amqp_t *a, amqp_bytes_t tag) {
  sg_relay_chan_t *ch = chan_of_amqp(a);
  sg_relay_sub_t *sub = sub_by_tag(ch, tag);
  if (sub == NULL || sub->cancelled) return;
  sg_relay_fault_t f = {.kind = SG_RELAY_CANCELLED, .sub = sub};
  sg_relay_chan_fault(ch, &f);
}

/* Nothing on the channel is waiting for the broker. */
static int chan_idle(const sg_relay_chan_t *ch) {
  const sg_amqp_t *a = &ch->amqp;
  return ch->subs == NULL && a->rpc_done >= a->rpc_sent && ch->confirmed >= a->pub_seq;
}

static void chan_lost_cb(sg_amqp_t *a, int code, const char *text) {
  sg_relay_chan_t *ch = chan_of_amqp(a);
  if (!ch->closing && ch->movable && (a->conn == NULL || a->conn->state != SG_AMQP_OPEN) &&
      chan_idle(ch) && ch->movable(ch)) {
    ch->moving = 1;
    sg_amqp_close(a);
    return;
  }
  /* The failing command is the oldest synchronous one not answered. */
  sg_relay_fault_t f = {.kind = SG_RELAY_LOST, .code = code, .text = text,
                        .blame = SG_RELAY_BLAME_RPC, .at = a->rpc_done + 1};
  sg_relay_chan_fault(ch, &f);
}

static void chan_closed_cb(sg_amqp_t *a) {
  sg_relay_chan_t *ch = chan_of_amqp(a);
  if (ch->moving && !ch->closing) {
    /* As if it had never been opened: the next frame that needs it opens
     * one on a live connection, and marks count from there. */
    ch->moving = 0;
    ch->blocked = 0;
    ch->confirmed = 0;
    ch->nooo = 0;
    void *data = a->data;
    memset(a, 0, sizeof(*a));
    a->data = data;
    return;
  }
  ch->moving = 0;
  ch->base.cbs->on_closed_cb(&ch->base);
}

static void chan_blocked_cb(sg_amqp_t *a, int blocked) {
  sg_relay_chan_t *ch = chan_of_amqp(a);
  ch->blocked = blocked != 0;
  if (!blocked && !ch->closing) ch->base.cbs->on_wake_cb(&ch->base, 1);
}

const sg_amqp_cbs_t sg_relay_chan_cbs = {chan_open_cb,    chan_delivery_cb, chan_confirm_cb,
                                         chan_progress_cb, chan_cancel_cb,  chan_lost_cb,
                                         chan_closed_cb,  chan_blocked_cb};

/* ---------- life cycle ---------- */

void sg_relay_chan_init(sg_relay_chan_t *ch, const sg_relay_ops_t *ops, const sg_relay_cbs_t *cbs,
                        void *owner) {
  memset(ch, 0, sizeof(*ch));
  ch->base.ops = ops;
  ch->base.cbs = cbs;
  ch->base.owner = owner;
}

int sg_relay_chan_close(sg_relay_chan_t *ch) {
  ch->closing = 1;
  if (ch->amqp.state == SG_AMQP_IDLE) return 1;
  sg_amqp_close(&ch->amqp);
  return 0;
}

void sg_relay_chan_free(sg_relay_chan_t *ch) {
  /* End probes are the relay's own; the session's records are its own. */
  for (sg_relay_sub_t *x = ch->subs, *next; x; x = next) {
    next = x->next;
    if (!x->probe) continue;
    free(x->tag);
    free(x);
  }
  ch->subs = NULL;
  while (ch->declared) {
    sg_relay_name_t *n = ch->declared->next;
    free(ch->declared->name);
    free(ch->declared);
    ch->declared = n;
  }
  free(ch->ooo);
  ch->ooo = NULL;
}

/* ---------- operations ---------- */

static int declared_already(sg_relay_chan_t *ch, const char *name) {
  for (sg_relay_name_t *n = ch->declared; n; n = n->next)
    if (strcmp(n->name, name) == 0) return 1;
  return 0;
}

static void remember_declared(sg_relay_chan_t *ch, const char *name) {
  sg_relay_name_t *n = malloc(sizeof(*n));
  if (n == NULL) return;
  if ((n->name = strdup(name)) == NULL) {
    free(n);
    return;
  }
  n->next = ch->declared;
  ch->declared = n;
}

static int declare_queue(sg_relay_chan_t *ch, const char *name, int durable, int exclusive,
                         int auto_delete, amqp_table_t args) {
  amqp_queue_declare_t m;
  memset(&m, 0, sizeof(m));
  m.queue = bytes_of(name);
  m.durable = durable;
  m.exclusive = exclusive;
  m.auto_delete = auto_delete;
  m.arguments = args;
  int64_t r = sg_amqp_rpc(&ch->amqp, AMQP_QUEUE_DECLARE_METHOD, &m, AMQP_QUEUE_DECLARE_OK_METHOD);
  return r < 0 ? (int)r : 0;
}

/* A queue is declared once per session, unless the frame names queue
 * arguments: then the broker checks them against the queue. */
static int declare_once(sg_relay_chan_t *ch, const char *name, amqp_table_t args) {
  if (args.num_entries == 0 && declared_already(ch, name)) return 0;
  int r = declare_queue(ch, name, 1, 0, 0, args);
  if (r == 0 && !declared_already(ch, name)) remember_declared(ch, name);
  return r;
}

int sg_relay_chan_declare(sg_relay_t *r, const char *queue, const amqp_table_t *args) {
  return declare_once(chan_of(r), queue, *args);
}

int sg_relay_chan_publish(sg_relay_t *r, const char *exchange, const char *rk,
                          const amqp_basic_properties_t *p, const void *body, size_t len) {
  uint64_t seq;
  return sg_amqp_publish(&chan_of(r)->amqp, bytes_of(exchange), bytes_of(rk), p,
                         (amqp_bytes_t){len, (void *)body}, &seq);
}

/* A resume from an offset also reads the stream at "last" once, to learn
 * where it ends (probe_delivery). */
static int probe_start(sg_relay_chan_t *ch, sg_relay_sub_t *sub) {
  sg_relay_sub_t *p = calloc(1, sizeof(*p));
  if (p == NULL) return SG_ERR_NOMEM;
  char tag[48];
  snprintf(tag, sizeof(tag), "E_%llu", (unsigned long long)++ch->probes);
  if ((p->tag = strdup(tag)) == NULL) {
    free(p);
    return SG_ERR_NOMEM;
  }
  p->tag_len = strlen(tag);
  p->queue = sub->queue;
  p->probe = 1;
  p->impl = sub;
  sub->end_probe = p;
  sub_link(ch, p);
  int64_t x = history_read_from(ch, p, "last");
  return x < 0 ? (int)x : 0;
}

/* A topic with history: its stream consumed from the offset the
 * SUBSCRIBE named (or next), with a prefetch, and acked here. */
static int history_consume(sg_relay_chan_t *ch, sg_relay_sub_t *sub, const sg_relay_subreq_t *q) {
  sub->no_ack = 0;
  if (prefetch(ch, q->prefetch > 0 ? q->prefetch : SG_RELAY_HISTORY_PREFETCH) < 0) return -1;
  sub_link(ch, sub);
  if (sub->from > 0 && probe_start(ch, sub) != 0) return SG_ERR_NOMEM;
  int64_t x = q->cargs.num_entries == 0 ? history_read_from(ch, sub, "next")
                                        : consume(ch, sub, 0, q->cargs);
  return x < 0 ? (int)x : 0;
}

int sg_relay_chan_subscribe(sg_relay_t *r, sg_relay_sub_t *sub, const sg_relay_subreq_t *q,
                            sg_relay_fault_t *why) {
  sg_relay_chan_t *ch = chan_of(r);
  (void)why; /* a failing method has reported the lost channel already */
  int rc = 0;
  if (q->history) return history_consume(ch, sub, q);
  sub->no_ack = q->no_ack != 0;
  sub->own_queue = q->own_queue != 0;
  if (q->declare == SG_RELAY_DECLARE)
    rc = declare_queue(ch, sub->queue, q->durable, q->exclusive, q->auto_delete, q->qargs);
  else if (q->declare == SG_RELAY_DECLARE_ONCE)
    rc = declare_once(ch, sub->queue, q->qargs);
  if (rc == 0 && q->bind_exchange) {
    amqp_queue_bind_t b;
    memset(&b, 0, sizeof(b));
    b.queue = bytes_of(sub->queue);
    b.exchange = bytes_of(q->bind_exchange);
    b.routing_key = bytes_of(q->bind_key);
    b.arguments = amqp_empty_table;
    int64_t x = sg_amqp_rpc(&ch->amqp, AMQP_QUEUE_BIND_METHOD, &b, AMQP_QUEUE_BIND_OK_METHOD);
    if (x < 0) rc = (int)x;
  }
  if (rc == 0 && q->prefetch >= 0) {
    int64_t x = prefetch(ch, q->prefetch);
    if (x < 0) rc = (int)x;
  }
  sub_link(ch, sub);
  if (rc == 0) {
    int64_t x = consume(ch, sub, q->no_ack, q->cargs);
    if (x < 0) rc = (int)x;
  }
  return rc;
}

int sg_relay_chan_unsubscribe(sg_relay_t *r, sg_relay_sub_t *sub, sg_relay_mark_t *done) {
  sg_relay_chan_t *ch = chan_of(r);
  probe_drop(ch, sub);
  int64_t seq = cancel(ch, sub->tag);
  if (seq < 0) return (int)seq;
  sub->cancelled = 1;
  *done = (sg_relay_mark_t){(uint64_t)seq, 0, 0};
  return 0;
}

int sg_relay_chan_delete_queue(sg_relay_t *r, const char *queue) {
  amqp_queue_delete_t del;
  memset(&del, 0, sizeof(del));
  del.queue = bytes_of(queue);
  int64_t x = sg_amqp_rpc(&chan_of(r)->amqp, AMQP_QUEUE_DELETE_METHOD, &del,
                          AMQP_QUEUE_DELETE_OK_METHOD);
  return x < 0 ? (int)x : 0;
}

int sg_relay_chan_ack(sg_relay_t *r, uint64_t tag, int multiple, int ack, int requeue) {
  sg_amqp_t *a = &chan_of(r)->amqp;
  if (ack) {
    amqp_basic_ack_t m = {tag, (amqp_boolean_t)multiple};
    return sg_amqp_send(a, AMQP_BASIC_ACK_METHOD, &m);
  }
  amqp_basic_nack_t m = {tag, (amqp_boolean_t)multiple, (amqp_boolean_t)requeue};
  return sg_amqp_send(a, AMQP_BASIC_NACK_METHOD, &m);
}

void sg_relay_chan_mark(sg_relay_t *r, sg_relay_mark_t *m) {
  sg_relay_chan_t *ch = chan_of(r);
  m->rpc = ch->amqp.rpc_sent;
  m->pub = ch->amqp.pub_seq;
  m->join = ch->joins_started;
}

int sg_relay_chan_reached(sg_relay_t *r, const sg_relay_mark_t *m) {
  sg_relay_chan_t *ch = chan_of(r);
  return ch->amqp.rpc_done >= m->rpc && ch->confirmed >= m->pub && ch->joins_done >= m->join;
}
