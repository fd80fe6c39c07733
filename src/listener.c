/* SPDX-License-Identifier: MIT */
#include "listener.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http.h"
#include "log.h"

static void connection_cb(uv_stream_t *server, int status) {
  sg_listener_t *l = server->data;
  if (status < 0) {
    sg_log_warn("accept failed: %s", uv_strerror(status));
    return;
  }
  int r = l->accept(server, l->ctx);
  if (r < 0) sg_log_warn("cannot take a connection: %s", uv_strerror(r));
}

/* A WebSocket upgraded on the listener becomes a STOMP session. */
static int open_session(sg_transport_t *tr, void *ctx, int stomp_version) {
  return sg_session_open(tr, ctx, stomp_version);
}

static int accept_http(uv_stream_t *server, sg_session_ctx_t *ctx) {
  return sg_http_accept(server, ctx->cfg, open_session, ctx);
}

int sg_listener_start(sg_listener_t *l, uv_loop_t *loop, sg_session_ctx_t *ctx, int port) {
  const sg_config_t *cfg = ctx->cfg;
  return sg_listener_bind(l, loop, ctx, cfg->listen_host, port ? port : cfg->listen_port,
                          accept_http);
}

int sg_listener_bind(sg_listener_t *l, uv_loop_t *loop, sg_session_ctx_t *ctx, const char *host,
                     int port, sg_listener_accept_fn accept) {
  struct sockaddr_storage ss;
  memset(l, 0, sizeof(*l));
  l->ctx = ctx;
  l->accept = accept;
  int r = uv_ip4_addr(host, port, (struct sockaddr_in *)&ss);
  if (r) r = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss);
  if (r) return r;
  /* libuv binds without SO_REUSEPORT, so the socket is made here. */
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int one = 1;
  socklen_t len = ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
      bind(fd, (struct sockaddr *)&ss, len) != 0) {
    r = -errno;
    close(fd);
    return r;
  }
  if ((r = uv_tcp_init(loop, &l->tcp))) {
    close(fd);
    return r;
  }
  l->tcp.data = l;
  l->open = 1;
  if ((r = uv_tcp_open(&l->tcp, fd))) {
    sg_listener_close(l);
    return r;
  }
  return 0;
}

int sg_listener_listen(sg_listener_t *l) {
  return uv_listen((uv_stream_t *)&l->tcp, 1024, connection_cb);
}

int sg_listener_port(const sg_listener_t *l) {
  struct sockaddr_storage ss;
  int n = sizeof(ss);
  if (!l->open || uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&ss, &n) != 0) return -1;
  return ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                  : ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

void sg_listener_close(sg_listener_t *l) {
  if (l->open) uv_close((uv_handle_t *)&l->tcp, NULL);
  l->open = 0;
}
