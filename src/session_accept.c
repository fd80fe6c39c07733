/* SPDX-License-Identifier: MIT */
/* A session over a WebSocket accepted on a listener: the connection is
 * embedded in the session. */
#include "session_internal.h"

#include <stdlib.h>

int sg_session_accept(uv_stream_t *server, sg_session_ctx_t *ctx) {
  const sg_config_t *cfg = ctx->cfg;
  sg_session_t *s = sg_session_new(ctx);
  if (s == NULL) return SG_ERR_NOMEM;
  int r = sg_ws_init(server->loop, &s->ws, cfg, &sg_session_transport_cbs);
  if (r) {
    sg_stomp_parser_free(&s->parser);
    sg_relay_free(s->relay);
    free(s);
    return r;
  }
  s->tr = &s->ws.tr;
  s->ws.tr.owner = s;
  sg_session_link(s, server->loop);
  r = uv_accept(server, (uv_stream_t *)&s->ws.tcp);
  if (r) {
    s->close_reason = "accept failed";
    s->state = S_CLOSING;
    s->torn_down = 1;
    sg_relay_close(s->relay);
    s->relay_closed = 1;
    uv_close((uv_handle_t *)&s->timer, sg_session_timer_closed_cb);
    sg_ws_abort(&s->ws);
    return r;
  }
  sg_ws_start(&s->ws);
  return 0;
}

