/* SPDX-License-Identifier: MIT */
#ifndef SG_LISTENER_H
#define SG_LISTENER_H

#include <uv.h>

#include "config.h"
#include "session.h"

/* Takes the connection pending on server (an HTTP connection, sg_http_accept,
 * on the WebSocket listener; sg_stomp_tcp_accept on the STOMP one). */
typedef int (*sg_listener_accept_fn)(uv_stream_t *server, sg_session_ctx_t *ctx);

typedef struct sg_listener {
  uv_tcp_t tcp;
  sg_session_ctx_t *ctx;
  sg_listener_accept_fn accept;
  int open;
} sg_listener_t;

/* Binds cfg's address with SO_REUSEPORT, so that every
 * worker has a listener of its own on the same port and the kernel spreads
 * connections over them; port overrides cfg's when non-zero (the port the
 * first worker got for a listen port of 0). Accepted sockets become
 * sessions with ctx. 0 or a libuv error. */
int sg_listener_start(sg_listener_t *l, uv_loop_t *loop, sg_session_ctx_t *ctx, int port);
/* The same on host:port, with accept taking each connection. */
int sg_listener_bind(sg_listener_t *l, uv_loop_t *loop, sg_session_ctx_t *ctx, const char *host,
                     int port, sg_listener_accept_fn accept);
/* Starts accepting: until then the port is bound but refuses connections,
 * so nothing connects before the gateway says it is listening. */
int sg_listener_listen(sg_listener_t *l);
/* The port it is bound to, or -1. */
int sg_listener_port(const sg_listener_t *l);
void sg_listener_close(sg_listener_t *l);

#endif
