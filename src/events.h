/* SPDX-License-Identifier: MIT */
#ifndef SG_EVENTS_H
#define SG_EVENTS_H

/* Session events (--events-exchange): every session's connect, subscribe,
 * unsubscribe and disconnect, published as JSON to a topic exchange so
 * that back ends can follow who is there.
 *
 * This half does no I/O: it encodes an event (routing key and JSON body),
 * keeps a bounded queue of those not yet published, and counts what was
 * published and dropped. Each worker's publisher (events_pub.c) empties
 * the queue on its own broker connection. Publishing never makes a session
 * wait: when the queue is full the event is dropped and counted. */

#include <stddef.h>
#include <stdint.h>

#include "stompgate/buf.h"

enum sg_event_kind {
  SG_EVENT_CONNECTED = 0,
  SG_EVENT_SUBSCRIBED,
  SG_EVENT_UNSUBSCRIBED,
  SG_EVENT_DISCONNECTED,
  SG_EVENT_KINDS
};

enum sg_event_drop {
  SG_EVENT_DROP_BLOCKED = 0, /* the broker pushed back (connection.blocked, or output over its bound) */
  SG_EVENT_DROP_DISCONNECTED, /* no broker connection */
  SG_EVENT_DROP_ERROR,        /* could not be encoded (out of memory) */
  SG_EVENT_DROPS
};

/* One event; every string is borrowed for the call and may be NULL. */
typedef struct sg_event {
  int kind;
  uint64_t session;        /* the session's number: "session-N" */
  const char *user;        /* the login the session is known by */
  const char *vhost;
  const char *client;      /* the client's address */
  const char *destination; /* subscribed, unsubscribed */
  const char *subscription;
  const char *reason;      /* disconnected: why it closed */
  uint64_t duration_ms;    /* disconnected: since connected */
} sg_event_t;

typedef struct sg_event_msg {
  int kind;
  char *key;  /* NUL-terminated; body follows in the same allocation */
  char *body;
  size_t body_len;
} sg_event_msg_t;

typedef struct sg_events sg_events_t;
struct sg_events {
  const char *exchange;
  const char *instance;
  size_t cap;            /* bound of the queue */
  sg_event_msg_t *q;     /* ring of cap entries */
  size_t head, n;
  int connected;         /* the publisher has a channel (drops say why) */
  uint64_t dropping;     /* dropped since the queue last had room */
  int worker;
  /* The publisher: called after an event was queued. */
  void (*kick_cb)(sg_events_t *ev);
  void *data;
};

extern const char *const sg_event_kind_names[SG_EVENT_KINDS];

/* Encodes e: key gets the routing key (session.<kind>.<vhost>), body the
 * JSON object. time_ms is the Unix time in milliseconds. 0 or -1. */
int sg_events_encode(sg_buf_t *key, sg_buf_t *body, const sg_event_t *e, const char *instance,
                     uint64_t time_ms);

/* Sets up ev's queue; 0 or -1. */
int sg_events_init(sg_events_t *ev, const char *exchange, const char *instance, size_t cap,
                   int worker);
/* Queues e for publishing (ev NULL: events are off, nothing happens). */
void sg_events_emit(sg_events_t *ev, const sg_event_t *e);
/* The oldest queued event, or NULL. */
sg_event_msg_t *sg_events_peek(sg_events_t *ev);
/* Takes the oldest queued event off after it was published. */
void sg_events_pop(sg_events_t *ev);

/* Counters over every worker, for /metrics. */
void sg_events_count_published(int kind);
int sg_events_metrics(sg_buf_t *o);

#endif
