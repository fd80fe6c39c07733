/* SPDX-License-Identifier: MIT */
#ifndef SG_TRANSPORT_H
#define SG_TRANSPORT_H

/* What a STOMP session runs over: a WebSocket (ws.c), a SockJS session
 * whose HTTP requests come and go (sockjs.c), or STOMP over TCP
 * (stomp_tcp.c). The session sees whole messages both ways and never the
 * connection underneath. */

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct sg_transport sg_transport_t;

/* The layer above, called by the transport. */
typedef struct sg_transport_cbs {
  /* Open; stomp_version is the chosen subprotocol (0 if none). */
  void (*on_open_cb)(sg_transport_t *t, int stomp_version);
  /* One whole message; data is borrowed for the call. */
  void (*on_message_cb)(sg_transport_t *t, const uint8_t *data, size_t len, int binary);
  /* The peer went away: stop sending. At most once, before on_closed_cb. */
  void (*on_gone_cb)(sg_transport_t *t);
  /* Everything is closed: the owner may free its memory. */
  void (*on_closed_cb)(sg_transport_t *t);
} sg_transport_cbs_t;

/* The transport's own functions; ws.c's say what each means. */
typedef struct sg_transport_ops {
  int (*send)(sg_transport_t *t, const void *data, size_t len, int binary); /* copies */
  size_t (*backlog)(const sg_transport_t *t);
  void (*pause)(sg_transport_t *t);
  void (*resume)(sg_transport_t *t);
  void (*close)(sg_transport_t *t, uint16_t code, const char *reason);
} sg_transport_ops_t;

/* Hands a transport that has just opened to the layer above, which sets
 * tr->cbs and tr->owner (sg_session_open does): arg is what the listener
 * was given, stomp_version the WebSocket subprotocol chosen (0: none). 0, or
 * an error after which the transport closes. */
typedef int (*sg_transport_open_fn)(sg_transport_t *tr, void *arg, int stomp_version);

struct sg_transport {
  const sg_transport_ops_t *ops;
  const sg_transport_cbs_t *cbs;
  void *owner;       /* the layer above's object */
  uv_loop_t *loop;
  uint64_t last_rx;  /* uv_now of the last input */
  uint64_t last_tx;  /* uv_now of the last message queued */
  unsigned paused : 1;
  /* The Authorization: Bearer token of a WebSocket upgrade (owned by the
   * transport, NULL once it is closed), or NULL. */
  const char *bearer;
  char peer[64];
};

static inline int sg_transport_send(sg_transport_t *t, const void *d, size_t n, int binary) {
  return t->ops->send(t, d, n, binary);
}
static inline size_t sg_transport_backlog(const sg_transport_t *t) { return t->ops->backlog(t); }
static inline void sg_transport_pause(sg_transport_t *t) { t->ops->pause(t); }
static inline void sg_transport_resume(sg_transport_t *t) { t->ops->resume(t); }
static inline void sg_transport_close(sg_transport_t *t, uint16_t code, const char *reason) {
  t->ops->close(t, code, reason);
}

#endif
