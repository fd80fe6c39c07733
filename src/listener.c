/* SPDX-License-Identifier: MIT */
#include "listener.h"

#include <string.h>

#include "log.h"
#include "session.h"

static void connection_cb(uv_stream_t *server, int status) {
  sg_listener_t *l = server->data;
  if (status < 0) {
    sg_log_warn("accept failed: %s", uv_strerror(status));
    return;
  }
  int r = sg_session_accept(server, l->cfg);
  if (r < 0) sg_log_warn("cannot start a session: %s", uv_strerror(r));
}

int sg_listener_start(sg_listener_t *l, uv_loop_t *loop, const sg_config_t *cfg) {
  struct sockaddr_storage ss;
  memset(l, 0, sizeof(*l));
  l->cfg = cfg;
  int r = uv_ip4_addr(cfg->listen_host, cfg->listen_port, (struct sockaddr_in *)&ss);
  if (r) r = uv_ip6_addr(cfg->listen_host, cfg->listen_port, (struct sockaddr_in6 *)&ss);
  if (r) return r;
  if ((r = uv_tcp_init(loop, &l->tcp))) return r;
  l->tcp.data = l;
  l->open = 1;
  if ((r = uv_tcp_bind(&l->tcp, (struct sockaddr *)&ss, 0)) ||
      (r = uv_listen((uv_stream_t *)&l->tcp, 1024, connection_cb))) {
    sg_listener_close(l);
    return r;
  }
  return 0;
}

void sg_listener_close(sg_listener_t *l) {
  if (l->open) uv_close((uv_handle_t *)&l->tcp, NULL);
  l->open = 0;
}
