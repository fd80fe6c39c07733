/* SPDX-License-Identifier: MIT */
#ifndef SG_HTTP_H
#define SG_HTTP_H
/* The HTTP layer of the WebSocket listener: accept, parse the request
 * once, route it (static file, SockJS, WebSocket upgrade, refusal). */
#include <uv.h>

#include "config.h"
#include "transport.h"
#include "ws.h"

/* Accepts the connection pending on server and routes its request. An
 * upgraded WebSocket is handed to open (with arg), which makes it a STOMP
 * session. The connection frees itself once closed. 0 or an error. */
int sg_http_accept(uv_stream_t *server, const sg_config_t *cfg, sg_transport_open_fn open,
                   void *arg);

#endif
