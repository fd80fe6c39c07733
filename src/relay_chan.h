/* SPDX-License-Identifier: MIT */
#ifndef SG_RELAY_CHAN_H
#define SG_RELAY_CHAN_H

/* The session's own AMQP channel, as both relay implementations use it:
 * the queue declares, binds, consumers, publishes, acks and the publisher
 * confirms that marks are measured against. Private to relay_*.c. An
 * implementation embeds sg_relay_chan_t first in its own struct. */

#include "relay.h"

/* The prefetch of a history stream's consumer when SUBSCRIBE names none. */
#define SG_RELAY_HISTORY_PREFETCH 256

typedef struct sg_relay_name {
  struct sg_relay_name *next;
  char *name;
} sg_relay_name_t;

typedef struct sg_relay_chan sg_relay_chan_t;

struct sg_relay_chan {
  sg_relay_t base;
  sg_amqp_t amqp;
  /* The implementation's part of opening: the channel (or the per-session
   * connection) opened, or failed with status and message. */
  void (*opened)(sg_relay_chan_t *ch, int status, const char *message);
  /* Optional: the channel was lost with its whole connection and holds
   * nothing the broker still owes (no consumer, every reply and confirm
   * in). Returning 1 takes the loss quietly: the channel closes and the
   * next frame that needs one opens it again, wherever the implementation
   * finds a live connection. */
  int (*movable)(sg_relay_chan_t *ch);
  /* Optional: a delivery of sub's history stream at offset (-1: none
   * given) was read; 1 hands it up (when its keys match sub's), 0 keeps it
   * back. The shared relay uses it to move a catching-up subscription onto
   * the worker's live feed. */
  int (*history_cb)(sg_relay_chan_t *ch, sg_relay_sub_t *sub, int64_t offset);
  sg_relay_sub_t *subs;      /* consumers on the channel */
  sg_relay_name_t *declared; /* queues declared already */
  uint64_t confirmed;        /* every publish up to this tag is confirmed */
  uint64_t *ooo;             /* confirms above it, out of order */
  size_t nooo, ooo_cap;
  uint64_t joins_started, joins_done; /* shared subscriptions (relay_shared.c) */
  uint64_t probes;           /* end probes started, for their tags */
  unsigned blocked : 1;      /* the broker blocks publishing on the channel's connection */
  unsigned closing : 1;      /* sg_relay_close was called: nothing more goes up */
  unsigned moving : 1;       /* lost quietly (movable): waiting for the close */
};

/* The channel callbacks every implementation gives the broker layer. */
extern const sg_amqp_cbs_t sg_relay_chan_cbs;

void sg_relay_chan_init(sg_relay_chan_t *ch, const sg_relay_ops_t *ops, const sg_relay_cbs_t *cbs,
                        void *owner);
/* Frees what the channel part holds (not ch itself). */
void sg_relay_chan_free(sg_relay_chan_t *ch);
/* Closes the channel: 1 when there was none, 0 when on_closed_cb follows. */
int sg_relay_chan_close(sg_relay_chan_t *ch);
/* Frames that put a message on the broker. */
int sg_relay_publishes(const sg_stomp_frame_t *f);
/* The channel is open, or being opened. */
int sg_relay_chan_started(const sg_relay_chan_t *ch);
/* Reports a failure upward, unless the relay is closing. */
void sg_relay_chan_fault(sg_relay_chan_t *ch, const sg_relay_fault_t *f);

/* Operations on the channel, shared by the implementations' tables. */
int sg_relay_chan_declare(sg_relay_t *r, const char *queue, const amqp_table_t *args);
int sg_relay_chan_publish(sg_relay_t *r, const char *exchange, const char *rk,
                          const amqp_basic_properties_t *p, const void *body, size_t len);
int sg_relay_chan_subscribe(sg_relay_t *r, sg_relay_sub_t *sub, const sg_relay_subreq_t *q,
                            sg_relay_fault_t *why);
int sg_relay_chan_unsubscribe(sg_relay_t *r, sg_relay_sub_t *sub, sg_relay_mark_t *done);
int sg_relay_chan_delete_queue(sg_relay_t *r, const char *queue);
int sg_relay_chan_ack(sg_relay_t *r, uint64_t tag, int multiple, int ack, int requeue);
void sg_relay_chan_mark(sg_relay_t *r, sg_relay_mark_t *m);
int sg_relay_chan_reached(sg_relay_t *r, const sg_relay_mark_t *m);
void sg_relay_chan_release(sg_relay_t *r, sg_relay_sub_t *sub);
/* Cancels sub's consumer and forgets it, without marking sub unsubscribed:
 * its subscription goes on elsewhere (a catch-up read that reached the
 * shared live feed). */
void sg_relay_chan_stop(sg_relay_t *r, sg_relay_sub_t *sub);

#endif
