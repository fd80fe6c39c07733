/* SPDX-License-Identifier: MIT */
#include "stompgate/http_upgrade.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "stompgate/err.h"

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

static int refuse(sg_http_request_t *req, int status, const char *reason, const char *extra) {
  req->status = status;
  req->reason = reason;
  req->extra_header = extra;
  return 0;
}

static int slice_eq(sg_http_slice_t s, const char *lit) {
  size_t n = strlen(lit);
  return s.len == n && strncasecmp(s.p, lit, n) == 0;
}

/* Does the comma list v contain token (case-insensitive)? */
static int has_token(const char *v, size_t n, const char *token) {
  size_t tl = strlen(token), i = 0;
  while (i < n) {
    while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) i++;
    size_t s = i;
    while (i < n && v[i] != ',') i++;
    size_t e = i;
    while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t')) e--;
    if (e - s == tl && strncasecmp(v + s, token, tl) == 0) return 1;
  }
  return 0;
}

static int is_tchar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* The longest method accepted; the registered ones are far shorter. */
#define METHOD_MAX 32

/* Checks the request line as far as it has arrived: METHOD SP TARGET SP
 * HTTP/d.d, then CRLF or LF. Returns 1 while the bytes so far can still
 * begin a request line, 0 as soon as one byte rules that out, so that a
 * peer that speaks something else is answered at once rather than when
 * the handshake times out. */
static int request_line_plausible(const char *buf, size_t len) {
  static const char version[] = "HTTP/";
  size_t i = 0, n;
  for (n = 0; i < len && buf[i] != ' '; i++, n++)
    if (!is_tchar(buf[i]) || n == METHOD_MAX) return 0;
  if (i == len) return 1;
  if (n == 0) return 0;
  i++;
  /* The target: visible ASCII (RFC 3986 has no other bytes in a URI). */
  for (n = 0; i < len && buf[i] != ' '; i++, n++)
    if ((unsigned char)buf[i] <= 0x20 || (unsigned char)buf[i] >= 0x7f) return 0;
  if (i == len) return 1;
  if (n == 0) return 0;
  i++;
  for (n = 0; i < len && n < sizeof(version) - 1; i++, n++)
    if (buf[i] != version[n]) return 0;
  /* HTTP/d.d: another version than 1.1 is refused by name once the head is
   * complete. */
  for (n = 0; i < len && n < 3; i++, n++)
    if (n == 1 ? buf[i] != '.' : (buf[i] < '0' || buf[i] > '9')) return 0;
  if (i == len) return 1;
  if (buf[i] == '\n') return 1;
  if (buf[i] != '\r') return 0;
  return ++i == len || buf[i] == '\n';
}

int sg_http_upgrade_parse(const char *buf, size_t len, const sg_http_upgrade_opts_t *opts,
                          sg_http_request_t *req) {
  memset(req, 0, sizeof(*req));
  if (!request_line_plausible(buf, len)) return refuse(req, 400, "Malformed request line", NULL);
  /* Find the end of the head: an empty line (CRLF or bare LF). */
  size_t head = 0;
  for (size_t i = 0; i < len; i++) {
    if (buf[i] != '\n') continue;
    if (i + 1 < len && buf[i + 1] == '\n') {
      head = i + 2;
      break;
    }
    if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n') {
      head = i + 3;
      break;
    }
  }
  if (head == 0 || head > opts->max_head_size) {
    if (len > opts->max_head_size || head > opts->max_head_size)
      return refuse(req, 431, "Request Header Fields Too Large", NULL);
    return SG_ERR_AGAIN;
  }
  req->head_len = head;

  const char *p = buf, *end = buf + head;
  const char *nl = memchr(p, '\n', (size_t)(end - p));
  size_t ll = (size_t)(nl - p);
  if (ll && p[ll - 1] == '\r') ll--;
  /* Request line: METHOD SP TARGET SP HTTP/x.y */
  const char *sp1 = memchr(p, ' ', ll);
  if (sp1 == NULL || sp1 == p) return refuse(req, 400, "Malformed request line", NULL);
  const char *sp2 = memchr(sp1 + 1, ' ', ll - (size_t)(sp1 + 1 - p));
  if (sp2 == NULL || sp2 == sp1 + 1) return refuse(req, 400, "Malformed request line", NULL);
  for (const char *c = p; c < sp1; c++)
    if (!is_tchar(*c)) return refuse(req, 400, "Malformed request line", NULL);
  req->method = (sg_http_slice_t){p, (size_t)(sp1 - p)};
  const char *target = sp1 + 1;
  size_t tl = (size_t)(sp2 - target);
  const char *q = memchr(target, '?', tl);
  req->path = (sg_http_slice_t){target, q ? (size_t)(q - target) : tl};
  if (q) req->query = (sg_http_slice_t){q + 1, tl - (size_t)(q + 1 - target)};
  const char *ver = sp2 + 1;
  size_t vl = ll - (size_t)(ver - p);
  if (vl != 8 || memcmp(ver, "HTTP/1.", 7) != 0 || ver[7] < '1' || ver[7] > '9')
    return refuse(req, 400, "HTTP/1.1 required", NULL);

  sg_http_slice_t upgrade = {0}, connection = {0}, version = {0}, key = {0};
  int best = 0, nkeys = 0;
  p = nl + 1;
  while (p < end) {
    nl = memchr(p, '\n', (size_t)(end - p));
    ll = (size_t)(nl - p);
    if (ll && p[ll - 1] == '\r') ll--;
    if (ll == 0) break;
    const char *colon = memchr(p, ':', ll);
    if (colon == NULL || colon == p) return refuse(req, 400, "Malformed header", NULL);
    for (const char *c = p; c < colon; c++)
      if (!is_tchar(*c)) return refuse(req, 400, "Malformed header", NULL);
    sg_http_slice_t name = {p, (size_t)(colon - p)};
    const char *v = colon + 1, *ve = p + ll;
    while (v < ve && (*v == ' ' || *v == '\t')) v++;
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
    sg_http_slice_t val = {v, (size_t)(ve - v)};
    if (slice_eq(name, "Host")) req->host = val;
    else if (slice_eq(name, "Origin")) req->origin = val;
    else if (slice_eq(name, "Authorization")) req->authorization = val;
    else if (slice_eq(name, "User-Agent")) req->user_agent = val;
    else if (slice_eq(name, "X-Forwarded-For")) req->forwarded_for = val;
    else if (slice_eq(name, "Forwarded")) req->forwarded = val;
    else if (slice_eq(name, "Upgrade")) upgrade = val;
    else if (slice_eq(name, "Connection")) connection = val;
    else if (slice_eq(name, "Sec-WebSocket-Version")) version = val;
    else if (slice_eq(name, "Sec-WebSocket-Key")) key = val, nkeys++;
    else if (slice_eq(name, "Sec-WebSocket-Extensions")) {
      if (req->n_extensions < SG_HTTP_EXTENSIONS_MAX) req->extensions[req->n_extensions++] = val;
    }
    else if (slice_eq(name, "Sec-WebSocket-Protocol")) {
      if (has_token(val.p, val.len, "v12.stomp")) best = 12;
      else if (has_token(val.p, val.len, "v11.stomp") && best < 11) best = 11;
      else if (has_token(val.p, val.len, "v10.stomp") && best < 10) best = 10;
    }
    p = nl + 1;
  }

  if (!slice_eq(req->method, "GET")) return refuse(req, 405, "Method Not Allowed", "Allow: GET\r\n");
  size_t wl = strlen(opts->ws_path);
  if (req->path.len != wl || memcmp(req->path.p, opts->ws_path, wl) != 0)
    return refuse(req, 404, "Not Found", NULL);
  if (req->host.p == NULL) return refuse(req, 400, "Missing Host header", NULL);
  if (upgrade.p == NULL || !has_token(upgrade.p, upgrade.len, "websocket"))
    return refuse(req, 426, "Expected a WebSocket upgrade", "Upgrade: websocket\r\nConnection: Upgrade\r\n");
  if (connection.p == NULL || !has_token(connection.p, connection.len, "upgrade"))
    return refuse(req, 400, "Connection header must include upgrade", NULL);
  if (!(version.len == 2 && memcmp(version.p, "13", 2) == 0))
    return refuse(req, 426, "Unsupported WebSocket version", "Sec-WebSocket-Version: 13\r\n");
  unsigned char raw[32];
  if (nkeys != 1 || key.len != 24 || EVP_DecodeBlock(raw, (const unsigned char *)key.p, 24) != 18 ||
      key.p[22] != '=' || key.p[23] != '=')
    return refuse(req, 400, "Invalid Sec-WebSocket-Key", NULL);

  /* Sec-WebSocket-Accept = base64(SHA-1(key + GUID)) */
  char cat[24 + sizeof(ws_guid)];
  memcpy(cat, key.p, 24);
  memcpy(cat + 24, ws_guid, sizeof(ws_guid) - 1);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  if (!EVP_Digest(cat, 24 + sizeof(ws_guid) - 1, md, &mdlen, EVP_sha1(), NULL))
    return refuse(req, 500, "Internal Server Error", NULL);
  EVP_EncodeBlock((unsigned char *)req->accept, md, (int)mdlen);
  req->stomp_version = best;
  req->status = 101;
  return 0;
}

int sg_http_bearer(const sg_http_request_t *req, sg_http_slice_t *token) {
  sg_http_slice_t a = req->authorization;
  if (a.p == NULL || a.len < 7 || strncasecmp(a.p, "Bearer ", 7) != 0) return 0;
  const char *p = a.p + 7, *e = a.p + a.len;
  while (p < e && *p == ' ') p++;
  size_t n = (size_t)(e - p);
  if (n == 0 || n > SG_HTTP_BEARER_MAX) return SG_ERR_INVALID;
  for (size_t i = 0; i < n; i++) {
    char c = p[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          strchr("-._~+/=", c)))
      return SG_ERR_INVALID;
  }
  *token = (sg_http_slice_t){p, n};
  return 1;
}

int sg_http_upgrade_accept(const sg_http_request_t *req, const char *extensions,
                           sg_buf_t *out) {
  if (sg_buf_printf(out,
                    "HTTP/1.1 101 Switching Protocols\r\n"
                    "Upgrade: websocket\r\n"
                    "Connection: Upgrade\r\n"
                    "Sec-WebSocket-Accept: %s\r\n",
                    req->accept) != 0)
    return SG_ERR_NOMEM;
  if (req->stomp_version &&
      sg_buf_printf(out, "Sec-WebSocket-Protocol: v%d.stomp\r\n", req->stomp_version) != 0)
    return SG_ERR_NOMEM;
  if (extensions && sg_buf_printf(out, "Sec-WebSocket-Extensions: %s\r\n", extensions) != 0)
    return SG_ERR_NOMEM;
  return sg_buf_append(out, "\r\n", 2);
}

static const char *status_text(int status) {
  switch (status) {
  case 400: return "Bad Request";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 426: return "Upgrade Required";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 503: return "Service Unavailable";
  default: return "Error";
  }
}

int sg_http_response_error(sg_buf_t *out, int status, const char *reason, const char *extra) {
  return sg_buf_printf(out,
                       "HTTP/1.1 %d %s\r\n"
                       "Content-Type: text/plain; charset=utf-8\r\n"
                       "Content-Length: %zu\r\n"
                       "Connection: close\r\n"
                       "%s\r\n"
                       "%s\n",
                       status, status_text(status), strlen(reason) + 1, extra ? extra : "", reason);
}
