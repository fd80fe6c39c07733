/* SPDX-License-Identifier: MIT */
#ifndef SG_STOMP_TCP_H
#define SG_STOMP_TCP_H

/* STOMP straight over TCP, or TLS (--stomp-listen, --stomp-tls): a
 * transport (transport.h) whose messages are the frames of the byte
 * stream, found by the stream framer (stomp_stream.h), so that the same
 * session runs over it as over a WebSocket. */

#include <stddef.h>
#include <uv.h>

#include "session.h"

/* Per-thread set-up: the check handle that writes what the loop iteration
 * queued. Call once per worker loop before accepting. */
int sg_stomp_tcp_loop_init(uv_loop_t *loop);

/* Accepts the connection pending on server and starts a session on it, or
 * answers an admission refusal with an ERROR frame. The connection frees
 * itself once closed. 0 or an error. */
int sg_stomp_tcp_accept(uv_stream_t *server, sg_session_ctx_t *ctx);


#endif
