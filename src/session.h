/* SPDX-License-Identifier: MIT */
#ifndef SG_SESSION_H
#define SG_SESSION_H

/* A STOMP session: the state machine between one WebSocket and its AMQP
 * connection (per-session relay mode). */

#include <uv.h>

#include "config.h"

typedef struct sg_session sg_session_t;

/* Creates a session for a connection pending on server and accepts it.
 * The session frees itself when both sides are closed. 0 or an error. */
int sg_session_accept(uv_stream_t *server, const sg_config_t *cfg);

/* Shutdown: every open session sends the RECEIPTs it still owes (as the
 * broker confirms), then an ERROR "server shutting down" and closes with
 * WebSocket code 1001. Sessions free themselves as usual. */
void sg_session_drain_all(void);

/* Sessions currently alive in this process. */
size_t sg_session_count(void);

#endif
