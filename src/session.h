/* SPDX-License-Identifier: MIT */
#ifndef SG_SESSION_H
#define SG_SESSION_H

/* A STOMP session: the state machine between one transport (a WebSocket, a
 * SockJS session or a STOMP connection) and the broker, which it reaches through the relay
 * that its context names (relay.h). */

#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "transport.h"

struct sg_relay_type;
struct sg_events;

/* What a worker gives its sessions: the relay they use and that relay's
 * state in the worker. */
typedef struct sg_session_ctx {
  const sg_config_t *cfg;
  const struct sg_relay_type *relay;
  void *relay_data; /* the relay's own (relay->worker_start) */
  struct sg_events *events; /* the worker's session events; NULL: off */
  int worker;
} sg_session_ctx_t;

typedef struct sg_session sg_session_t;

/* Creates a session over tr, a transport of the calling worker's loop that
 * has just opened (an upgraded WebSocket, a SockJS session, an admitted
 * STOMP connection), and sets tr->cbs and tr->owner; stomp_version is the
 * subprotocol the WebSocket chose (0: none). The session frees itself
 * after tr's on_closed_cb, which the transport must call once it has
 * called on_gone_cb or been closed; the transport's memory stays the
 * transport's. ctx is borrowed for the life of the loop. 0 or an error
 * (then tr->cbs is unchanged). */
int sg_session_open(sg_transport_t *tr, sg_session_ctx_t *ctx, int stomp_version);

/* Shutdown: every open session of the calling thread's worker sends the
 * RECEIPTs it still owes (as the broker confirms), then an ERROR "server
 * shutting down" and closes with WebSocket code 1001. Sessions free
 * themselves as usual. */
void sg_session_drain_all(void);

/* A worker thread is ending: frees what the session layer kept for it. */
void sg_session_thread_done(void);

/* STOMP sessions in this process, over all workers: from the opening of
 * their transport (a WebSocket upgrade, a SockJS session, a STOMP
 * connection admitted) until they have closed both sides. Plain HTTP
 * requests never count. Admission (--max-sessions), drain and /metrics go
 * by this count. */
size_t sg_session_count(void);

#endif
