/* SPDX-License-Identifier: MIT */
/* The HTTP layer: each accepted connection's request is parsed once and
 * routed: a static file (--www), SockJS (its /info, xhr requests handed
 * to the worker owning the session, its WebSocket), a WebSocket upgrade
 * (admission first), or a refusal. Only an upgrade makes a STOMP session,
 * through the open function the listener gives. */
#include "http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "admission.h"
#include "log.h"
#include "metrics.h"
#include "session.h"
#include "sockjs.h"
#include "stompgate/err.h"
#include "stompgate/proxy_proto.h"
#include "stompgate/sockjs.h"
#include "www_serve.h"

static void http_sockjs(sg_ws_t *ws, const sg_http_request_t *req, const sg_sockjs_route_t *rt,
                        const char *path);
static int head_malformed(const sg_http_request_t *req);

/* SockJS over WebSocket: o, h, a[...] and c[...] around the messages. */
static const sg_ws_framing_t sockjs_framing = {
    "SockJS", "o", "h", sg_sockjs_frame_message, sg_sockjs_decode, sg_sockjs_next,
    sg_sockjs_frame_close,
};

/* A valid upgrade request: admission, the bearer token, then the
 * WebSocket; sockjs selects SockJS framing. */
static void http_upgrade(sg_ws_t *ws, const sg_http_request_t *req, int sockjs) {
  sg_admit_refusal_t no;
  if (sg_admit(ws->cfg, req, ws->tr.peer, sg_session_count(), uv_now(ws->conn.tcp.loop), &no)) {
    sg_ws_refuse(ws, no.status, no.reason, no.extra);
    return;
  }
  /* A bearer token is the session's credential when the gateway checks
   * JWTs; it is kept until CONNECT. */
  sg_http_slice_t tok;
  int br = ws->cfg->auth == SG_AUTH_JWT ? sg_http_bearer(req, &tok) : 0;
  if (br < 0) {
    sg_ws_refuse(ws, 400, "Invalid Authorization header (expected Bearer and a token of at most 8192 bytes)", NULL);
    return;
  }
  sg_ws_upgrade(ws, req, sockjs ? &sockjs_framing : NULL, ws->cfg->sockjs_heartbeat_ms,
                br > 0 ? tok.p : NULL, br > 0 ? tok.len : 0);
}

/* With --www, a GET or HEAD for another path than the WebSocket endpoint
 * is a request for a static file. */
static int is_static_request(const sg_ws_t *ws, const sg_http_request_t *req) {
  int get = req->method.len == 3 && memcmp(req->method.p, "GET", 3) == 0;
  int head = req->method.len == 4 && memcmp(req->method.p, "HEAD", 4) == 0;
  size_t wl = strlen(ws->cfg->ws_path);
  int ws_path = req->path.len == wl && memcmp(req->path.p, ws->cfg->ws_path, wl) == 0;
  /* The parser answers 404 for a GET of another path, and 405 for any
   * method but GET before it looks at the path. */
  return !ws_path && ((req->status == 404 && get) || (req->status == 405 && head));
}

static void http_serve_static(sg_ws_t *ws, const sg_http_request_t *req) {
  int status = sg_www_respond(ws->cfg->www_root, req, &ws->out);
  sg_log_debug("%s %.*s %.*s -> %d", ws->tr.peer, (int)req->method.len, req->method.p,
               (int)req->path.len, req->path.p, status);
  if (status < 0) {
    sg_ws_abort(ws);
    return;
  }
  sg_ws_respond(ws);
}

/* Writes a complete SockJS response built in ws->out, then closes. */
static void http_reply(sg_ws_t *ws, int status, const sg_http_slice_t *path) {
  sg_log_debug("%s SockJS %.*s -> %d", ws->tr.peer, (int)path->len, path->p, status);
  if (status >= 400) sg_metrics_http_refused(status);
  sg_ws_respond(ws);
}

static void http_sockjs_status(sg_ws_t *ws, const sg_http_request_t *req, int status,
                             const char *body, const char *extra) {
  sg_buf_reset(&ws->out);
  /* The only extra header is Allow, on 405. */
  int r = sg_sockjs_response_extra(&ws->out, status, req->origin, "text/plain; charset=UTF-8",
                                   extra, body, strlen(body));
  if (r != 0) {
    sg_ws_abort(ws);
    return;
  }
  http_reply(ws, status, &req->path);
}

/* An xhr, xhr_streaming or xhr_send POST: waits for the whole body, then
 * hands the connection to the worker that owns the SockJS session. */
static void http_sockjs_xhr(sg_ws_t *ws, const sg_http_request_t *req, const sg_sockjs_route_t *rt) {
  size_t total = req->head_len;
  sg_http_slice_t v;
  const char *bytes = ws->in.base;
  sg_buf_t whole; /* head and de-chunked body */
  sg_buf_init(&whole);
  if (rt->transport == SG_SOCKJS_T_XHR_SEND) {
    size_t max = ws->cfg->sockjs_max_body;
    if (sg_sockjs_header(ws->in.base, req->head_len, "Transfer-Encoding", &v)) {
      /* Node's http client sends bodies chunked. */
      if (sg_buf_append(&whole, ws->in.base, req->head_len) != 0) {
        sg_ws_abort(ws);
        return;
      }
      long used = v.len == 7 && strncasecmp(v.p, "chunked", 7) == 0
                      ? sg_sockjs_dechunk(ws->in.base + req->head_len,
                                          ws->in.len - req->head_len, max, &whole)
                      : SG_ERR_INVALID;
      if (used == SG_ERR_AGAIN) {
        sg_buf_free(&whole);
        return; /* the rest of the body follows */
      }
      if (used < 0) {
        sg_buf_free(&whole);
        if (used == SG_ERR_FRAME_TOO_LARGE) http_sockjs_status(ws, req, 413, "Payload too large.\n", NULL);
        else http_sockjs_status(ws, req, 400, "Bad chunked body.\n", NULL);
        return;
      }
      bytes = whole.base;
      total = whole.len;
    } else {
      unsigned long long n = 0;
      if (sg_sockjs_header(ws->in.base, req->head_len, "Content-Length", &v)) {
        if (v.len == 0 || v.len > 12) n = ~0ull;
        for (size_t i = 0; i < v.len && n != ~0ull; i++)
          n = v.p[i] >= '0' && v.p[i] <= '9' ? n * 10 + (unsigned)(v.p[i] - '0') : ~0ull;
        if (n == ~0ull) {
          http_sockjs_status(ws, req, 400, "Bad Content-Length.\n", NULL);
          return;
        }
      }
      if (n > max) {
        http_sockjs_status(ws, req, 413, "Payload too large.\n", NULL);
        return;
      }
      if (ws->in.len < req->head_len + n) return; /* the rest of the body follows */
      total += (size_t)n;
    }
  }
  /* The worker that owns the SockJS session answers on its own copy of
   * the connection. */
  sg_conn_export_t x = {-1, NULL, NULL};
  int r = sg_conn_export(&ws->conn, &x);
  if (r == 0) r = sg_sockjs_dispatch(ws->conn.tcp.loop, rt, bytes, total, &x, ws->tr.peer);
  sg_buf_free(&whole);
  if (r == 0) {
    sg_ws_handed_off(ws);
    return;
  }
  sg_conn_export_drop(&x);
  if (r == 404) http_sockjs_status(ws, req, 404, "Session not found.\n", NULL);
  else if (r == 503) http_sockjs_status(ws, req, 503, "Too many SockJS sessions.\n", NULL);
  else http_sockjs_status(ws, req, 500, "Internal error.\n", NULL);
}

static int head_malformed(const sg_http_request_t *req) {
  return req->status == 431 ||
         (req->status == 400 && (strncmp(req->reason, "Malformed", 9) == 0 ||
                                 strcmp(req->reason, "HTTP/1.1 required") == 0));
}

static int method_is(const sg_http_request_t *req, const char *m) {
  size_t n = strlen(m);
  return req->method.len == n && memcmp(req->method.p, m, n) == 0;
}

/* A request under the SockJS prefix. */
static void http_sockjs(sg_ws_t *ws, const sg_http_request_t *req, const sg_sockjs_route_t *rt,
                      const char *path) {
  sg_http_slice_t acrh = {0};
  sg_sockjs_header(ws->in.base, req->head_len, "Access-Control-Request-Headers", &acrh);
  int get = method_is(req, "GET"), options = method_is(req, "OPTIONS");
  int r = 0;
  switch (rt->kind) {
  case SG_SOCKJS_ROOT:
    if (!get) break;
    sg_buf_reset(&ws->out);
    r = sg_sockjs_response(&ws->out, 200, req->origin, "text/plain; charset=UTF-8",
                           "Welcome to SockJS!\n", 19);
    goto reply;
  case SG_SOCKJS_INFO:
    if (!get && !options) {
      http_sockjs_status(ws, req, 405, "Method not allowed.\n", "Allow: OPTIONS, GET\r\n");
      return;
    }
    sg_buf_reset(&ws->out);
    r = get ? sg_sockjs_info(&ws->out, req->origin, sg_sockjs_entropy())
            : sg_sockjs_preflight(&ws->out, req->origin, acrh, "OPTIONS, GET");
    goto reply;
  case SG_SOCKJS_RAW_WS:
  case SG_SOCKJS_SESSION:
    if (rt->kind == SG_SOCKJS_RAW_WS || rt->transport == SG_SOCKJS_T_WEBSOCKET) {
      sg_http_request_t up;
      sg_http_upgrade_opts_t opts = {path, ws->cfg->max_head_size};
      sg_http_upgrade_parse(ws->in.base, ws->in.len, &opts, &up);
      if (up.status != 101) {
        sg_ws_refuse(ws, up.status, up.reason, up.extra_header);
        return;
      }
      http_upgrade(ws, &up, rt->kind == SG_SOCKJS_SESSION);
      return;
    }
    if (rt->transport == SG_SOCKJS_T_UNKNOWN) break;
    if (options) {
      sg_buf_reset(&ws->out);
      r = sg_sockjs_preflight(&ws->out, req->origin, acrh, "OPTIONS, POST");
      goto reply;
    }
    if (!method_is(req, "POST")) {
      http_sockjs_status(ws, req, 405, "Method not allowed.\n", "Allow: OPTIONS, POST\r\n");
      return;
    }
    http_sockjs_xhr(ws, req, rt);
    return;
  default:
    break;
  }
  http_sockjs_status(ws, req, 404, "Not found.\n", NULL);
  return;
reply:
  if (r != 0) {
    sg_ws_abort(ws);
    return;
  }
  http_reply(ws, get ? 200 : 204, &req->path);
}

/* X-Forwarded-For and Forwarded name the client only when a trusted proxy
 * sent them; from anyone else they would let a client choose the address
 * its limits and logs go by. Returns 0 to go on, -1 once refused. */
static int forwarded_refuse(sg_ws_t *ws, const char *name, const char *why) {
  char reason[96];
  snprintf(reason, sizeof(reason), "%s header %s", name, why);
  sg_metrics_forwarded(0);
  sg_ws_refuse(ws, 400, reason, NULL);
  return -1;
}

static int http_forwarded(sg_ws_t *ws, const sg_http_request_t *req) {
  const sg_http_slice_t *f = req->forwarded.p ? &req->forwarded : &req->forwarded_for;
  const char *name = req->forwarded.p ? "Forwarded" : "X-Forwarded-For";
  if (f->p == NULL) return 0;
  if (!ws->conn.peer_trusted)
    return forwarded_refuse(ws, name, "from a peer that is not a trusted-proxy");
  struct sockaddr_storage ss;
  if (sg_forwarded_client(f->p, f->len, req->forwarded.p != NULL, ws->cfg->trusted_proxies,
                          ws->cfg->ntrusted_proxies, &ss) != 0)
    return forwarded_refuse(ws, name, "does not name the client's IP address");
  sg_metrics_forwarded(1);
  char was[sizeof(ws->tr.peer)];
  memcpy(was, ws->tr.peer, sizeof(was));
  sg_ws_set_peer(ws, &ss);
  sg_log_debug("%s %s names the client %s", was, name, ws->tr.peer);
  return 0;
}

static void http_head(sg_ws_t *ws) {
  sg_http_request_t req;
  sg_http_upgrade_opts_t opts = {ws->cfg->ws_path, ws->cfg->max_head_size};
  int r = sg_http_upgrade_parse(ws->in.base, ws->in.len, &opts, &req);
  if (r == SG_ERR_AGAIN) return;
  if (r < 0) {
    sg_ws_refuse(ws, 400, "Bad Request", NULL);
    return;
  }
  if (http_forwarded(ws, &req) != 0) return;
  if (ws->cfg->sockjs && req.path.p != NULL && !head_malformed(&req)) {
    char path[1100];
    sg_sockjs_route_t rt = {0};
    if (req.path.len < sizeof(path)) {
      memcpy(path, req.path.p, req.path.len);
      path[req.path.len] = '\0';
      sg_sockjs_route(ws->cfg->sockjs_prefix, path, req.path.len, &rt);
    }
    if (rt.kind != SG_SOCKJS_NONE) {
      /* The route's slices must point into the request, which stays put
       * while this runs; path is only the NUL-terminated copy. */
      sg_sockjs_route(ws->cfg->sockjs_prefix, req.path.p, req.path.len, &rt);
      http_sockjs(ws, &req, &rt, path);
      return;
    }
  }
  if (req.status != 101) {
    if (ws->cfg->www_root && is_static_request(ws, &req)) {
      http_serve_static(ws, &req);
      return;
    }
    sg_ws_refuse(ws, req.status, req.reason, req.extra_header);
    return;
  }
  http_upgrade(ws, &req, 0);
}


int sg_http_accept(uv_stream_t *server, const sg_config_t *cfg, sg_transport_open_fn open,
                   void *arg) {
  return sg_ws_accept(server, cfg, http_head, open, arg);
}
