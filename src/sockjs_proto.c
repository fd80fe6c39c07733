/* SPDX-License-Identifier: MIT */
#include "stompgate/sockjs.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "stompgate/err.h"
#include "stompgate/utf8.h"

static int seg_ok(const char *p, size_t n) {
  if (n == 0 || n > SG_SOCKJS_ID_MAX) return 0;
  for (size_t i = 0; i < n; i++)
    if (p[i] == '.' || p[i] == '/') return 0;
  return 1;
}

static int eq(const char *p, size_t n, const char *lit) {
  return n == strlen(lit) && memcmp(p, lit, n) == 0;
}

int sg_sockjs_route(const char *prefix, const char *path, size_t len, sg_sockjs_route_t *out) {
  memset(out, 0, sizeof(*out));
  size_t pl = strlen(prefix);
  if (len < pl || memcmp(path, prefix, pl) != 0 || (len > pl && path[pl] != '/')) return 0;
  const char *rest = path + pl;
  size_t rl = len - pl;
  if (rl <= 1) {
    out->kind = SG_SOCKJS_ROOT;
    return 0;
  }
  rest++, rl--; /* past the '/' */
  out->kind = SG_SOCKJS_NOT_FOUND;
  if (eq(rest, rl, "info")) out->kind = SG_SOCKJS_INFO;
  else if (eq(rest, rl, "websocket")) out->kind = SG_SOCKJS_RAW_WS;
  if (out->kind != SG_SOCKJS_NOT_FOUND) return 0;
  const char *s1 = memchr(rest, '/', rl);
  if (s1 == NULL) return 0;
  const char *s2 = memchr(s1 + 1, '/', rl - (size_t)(s1 + 1 - rest));
  if (s2 == NULL) return 0;
  const char *t = s2 + 1;
  size_t tl = rl - (size_t)(t - rest);
  if (!seg_ok(rest, (size_t)(s1 - rest)) || !seg_ok(s1 + 1, (size_t)(s2 - s1 - 1)) ||
      memchr(t, '/', tl) != NULL)
    return 0;
  out->server = (sg_http_slice_t){rest, (size_t)(s1 - rest)};
  out->session = (sg_http_slice_t){s1 + 1, (size_t)(s2 - s1 - 1)};
  out->kind = SG_SOCKJS_SESSION;
  if (eq(t, tl, "websocket")) out->transport = SG_SOCKJS_T_WEBSOCKET;
  else if (eq(t, tl, "xhr")) out->transport = SG_SOCKJS_T_XHR;
  else if (eq(t, tl, "xhr_streaming")) out->transport = SG_SOCKJS_T_XHR_STREAMING;
  else if (eq(t, tl, "xhr_send")) out->transport = SG_SOCKJS_T_XHR_SEND;
  else out->transport = SG_SOCKJS_T_UNKNOWN;
  return 0;
}

/* ---------- encoding ---------- */

/* Code points SockJS clients expect escaped: browsers drop or rewrite
 * them in responses (the set sockjs-node and its protocol tests use). */
static int must_escape(uint32_t c) {
  return c < 0x20 || (c >= 0x7f && c <= 0x9f) || c == 0xad || (c >= 0x600 && c <= 0x604) ||
         c == 0x70f || c == 0x17b4 || c == 0x17b5 || (c >= 0x200c && c <= 0x200f) ||
         (c >= 0x2028 && c <= 0x202f) || (c >= 0x2060 && c <= 0x206f) || c == 0xfeff ||
         (c >= 0xfff0 && c <= 0xffff);
}

int sg_sockjs_quote(sg_buf_t *out, const void *data, size_t len) {
  const unsigned char *s = data;
  /* Most text needs no escapes: reserve for that case up front. */
  if (sg_buf_reserve(out, len + 2) != 0) return SG_ERR_NOMEM;
  if (sg_buf_append(out, "\"", 1) != 0) return SG_ERR_NOMEM;
  size_t i = 0;
  while (i < len) {
    /* Copy the longest run that needs nothing. */
    size_t run = i;
    while (run < len && s[run] >= 0x20 && s[run] < 0x7f && s[run] != '"' && s[run] != '\\') run++;
    if (run > i && sg_buf_append(out, s + i, run - i) != 0) return SG_ERR_NOMEM;
    i = run;
    if (i == len) break;
    uint32_t cp;
    size_t n = sg_utf8_decode(s + i, len - i, &cp);
    char esc[8];
    int r;
    if (n == 0) {
      snprintf(esc, sizeof(esc), "\\u%04x", s[i]);
      r = sg_buf_append(out, esc, 6);
      n = 1;
    } else if (cp == '"') {
      r = sg_buf_append(out, "\\\"", 2);
    } else if (cp == '\\') {
      r = sg_buf_append(out, "\\\\", 2);
    } else if (cp == '\n') {
      r = sg_buf_append(out, "\\n", 2);
    } else if (must_escape(cp)) {
      snprintf(esc, sizeof(esc), "\\u%04x", (unsigned)cp);
      r = sg_buf_append(out, esc, 6);
    } else {
      r = sg_buf_append(out, s + i, n);
    }
    if (r != 0) return SG_ERR_NOMEM;
    i += n;
  }
  return sg_buf_append(out, "\"", 1);
}

int sg_sockjs_frame_message(sg_buf_t *out, const void *data, size_t len) {
  if (sg_buf_append(out, "a[", 2) != 0 || sg_sockjs_quote(out, data, len) != 0) return SG_ERR_NOMEM;
  return sg_buf_append(out, "]", 1);
}

int sg_sockjs_frame_close(sg_buf_t *out, unsigned code, const char *reason) {
  if (sg_buf_printf(out, "c[%u,", code) != 0 ||
      sg_sockjs_quote(out, reason ? reason : "", reason ? strlen(reason) : 0) != 0)
    return SG_ERR_NOMEM;
  return sg_buf_append(out, "]", 1);
}

/* ---------- decoding ---------- */

static size_t skip_ws(const char *s, size_t n, size_t i) {
  while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
  return i;
}

static int hex4(const char *s, uint32_t *v) {
  uint32_t r = 0;
  for (int i = 0; i < 4; i++) {
    char c = s[i];
    r <<= 4;
    if (c >= '0' && c <= '9') r |= (uint32_t)(c - '0');
    else if (c >= 'a' && c <= 'f') r |= (uint32_t)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') r |= (uint32_t)(c - 'A' + 10);
    else return -1;
  }
  *v = r;
  return 0;
}

static int put_utf8(sg_buf_t *out, uint32_t c) {
  char b[4];
  size_t n;
  if (c < 0x80) b[0] = (char)c, n = 1;
  else if (c < 0x800) b[0] = (char)(0xc0 | (c >> 6)), b[1] = (char)(0x80 | (c & 0x3f)), n = 2;
  else if (c < 0x10000) {
    b[0] = (char)(0xe0 | (c >> 12));
    b[1] = (char)(0x80 | ((c >> 6) & 0x3f));
    b[2] = (char)(0x80 | (c & 0x3f));
    n = 3;
  } else {
    b[0] = (char)(0xf0 | (c >> 18));
    b[1] = (char)(0x80 | ((c >> 12) & 0x3f));
    b[2] = (char)(0x80 | ((c >> 6) & 0x3f));
    b[3] = (char)(0x80 | (c & 0x3f));
    n = 4;
  }
  return sg_buf_append(out, b, n);
}

/* Decodes the JSON string whose opening quote is at s[*i]; appends its
 * bytes to out and leaves *i past the closing quote. */
static int decode_string(const char *s, size_t n, size_t *i, sg_buf_t *out) {
  size_t k = *i + 1;
  while (k < n) {
    unsigned char c = (unsigned char)s[k];
    if (c == '"') {
      *i = k + 1;
      return 0;
    }
    if (c < 0x20) return SG_ERR_INVALID;
    if (c != '\\') {
      size_t run = k;
      while (run < n && s[run] != '"' && s[run] != '\\' && (unsigned char)s[run] >= 0x20) run++;
      if (sg_buf_append(out, s + k, run - k) != 0) return SG_ERR_NOMEM;
      k = run;
      continue;
    }
    if (k + 1 >= n) return SG_ERR_INVALID;
    char e = s[k + 1];
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    const char *simple = e != '\0' ? strchr(from, e) : NULL;
    if (simple != NULL) {
      if (sg_buf_append(out, &to[simple - from], 1) != 0) return SG_ERR_NOMEM;
      k += 2;
      continue;
    }
    if (e != 'u' || k + 6 > n) return SG_ERR_INVALID;
    uint32_t u;
    if (hex4(s + k + 2, &u) != 0) return SG_ERR_INVALID;
    k += 6;
    if (u >= 0xd800 && u <= 0xdbff) {
      uint32_t lo;
      if (k + 6 <= n && s[k] == '\\' && s[k + 1] == 'u' && hex4(s + k + 2, &lo) == 0 &&
          lo >= 0xdc00 && lo <= 0xdfff) {
        u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
        k += 6;
      } else {
        u = 0xfffd;
      }
    } else if (u >= 0xdc00 && u <= 0xdfff) {
      u = 0xfffd;
    }
    if (put_utf8(out, u) != 0) return SG_ERR_NOMEM;
  }
  return SG_ERR_INVALID;
}

int sg_sockjs_decode(const char *json, size_t len, sg_buf_t *out) {
  size_t i = skip_ws(json, len, 0);
  int count = 0;
  if (i >= len || json[i] != '[') return SG_ERR_INVALID;
  i = skip_ws(json, len, i + 1);
  if (i < len && json[i] == ']') {
    i++;
  } else {
    for (;;) {
      if (i >= len || json[i] != '"') return SG_ERR_INVALID;
      uint32_t n32 = 0;
      size_t at = out->len;
      if (sg_buf_append(out, &n32, sizeof(n32)) != 0) return SG_ERR_NOMEM;
      int r = decode_string(json, len, &i, out);
      if (r != 0) return r;
      if (out->len - at - sizeof(n32) > UINT32_MAX) return SG_ERR_INVALID;
      n32 = (uint32_t)(out->len - at - sizeof(n32));
      memcpy(out->base + at, &n32, sizeof(n32));
      count++;
      i = skip_ws(json, len, i);
      if (i < len && json[i] == ',') {
        i = skip_ws(json, len, i + 1);
        continue;
      }
      if (i < len && json[i] == ']') {
        i++;
        break;
      }
      return SG_ERR_INVALID;
    }
  }
  if (skip_ws(json, len, i) != len) return SG_ERR_INVALID;
  return count;
}

int sg_sockjs_next(const sg_buf_t *decoded, size_t *off, const char **p, size_t *n) {
  uint32_t n32;
  if (*off + sizeof(n32) > decoded->len) return 0;
  memcpy(&n32, decoded->base + *off, sizeof(n32));
  *p = decoded->base + *off + sizeof(n32);
  *n = n32;
  *off += sizeof(n32) + n32;
  return 1;
}

/* ---------- HTTP ---------- */

int sg_sockjs_header(const char *head, size_t len, const char *name, sg_http_slice_t *out) {
  size_t nl = strlen(name);
  const char *p = memchr(head, '\n', len); /* skip the request line */
  const char *end = head + len;
  while (p != NULL && p + 1 < end) {
    p++;
    const char *e = memchr(p, '\n', (size_t)(end - p));
    if (e == NULL) e = end;
    if ((size_t)(e - p) > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
      const char *v = p + nl + 1, *ve = e;
      while (v < ve && (*v == ' ' || *v == '\t')) v++;
      while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t' || ve[-1] == '\r')) ve--;
      *out = (sg_http_slice_t){v, (size_t)(ve - v)};
      return 1;
    }
    p = e < end ? e : NULL;
  }
  return 0;
}

/* The end of the line starting at in[i]: the index past its LF, or 0. */
static size_t line_end(const char *in, size_t len, size_t i) {
  const char *nl = memchr(in + i, '\n', len - i);
  return nl ? (size_t)(nl - in) + 1 : 0;
}

long sg_sockjs_dechunk(const char *in, size_t len, size_t max, sg_buf_t *out) {
  size_t i = 0, total = 0;
  for (;;) {
    size_t e = line_end(in, len, i);
    if (e == 0) return len - i > 64 ? SG_ERR_INVALID : SG_ERR_AGAIN;
    size_t size = 0, k = i;
    int digits = 0;
    for (; k < e; k++) {
      char c = in[k];
      int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
      if (v < 0) break;
      if (++digits > 8) return SG_ERR_INVALID;
      size = size * 16 + (size_t)v;
    }
    if (digits == 0 || (in[k] != '\r' && in[k] != '\n' && in[k] != ';')) return SG_ERR_INVALID;
    i = e;
    if (size == 0) {
      /* Trailer lines, up to an empty one. */
      for (;;) {
        e = line_end(in, len, i);
        if (e == 0) return SG_ERR_AGAIN;
        int empty = e - i == 1 || (e - i == 2 && in[i] == '\r');
        i = e;
        if (empty) return (long)i;
      }
    }
    total += size;
    if (total > max) return SG_ERR_FRAME_TOO_LARGE;
    if (len - i < size + 1) return SG_ERR_AGAIN;
    if (sg_buf_append(out, in + i, size) != 0) return SG_ERR_NOMEM;
    i += size;
    if (in[i] == '\r') {
      if (len - i < 2) return SG_ERR_AGAIN;
      i++;
    }
    if (in[i] != '\n') return SG_ERR_INVALID;
    i++;
  }
}

static int has_crlf(sg_http_slice_t s) {
  return memchr(s.p, '\r', s.len) != NULL || memchr(s.p, '\n', s.len) != NULL;
}

int sg_sockjs_cors(sg_buf_t *out, sg_http_slice_t origin, sg_http_slice_t req_headers) {
  int r;
  if (origin.len == 0 || has_crlf(origin) || (origin.len == 4 && memcmp(origin.p, "null", 4) == 0))
    r = sg_buf_appendz(out, "Access-Control-Allow-Origin: *\r\n");
  else
    r = sg_buf_printf(out, "Access-Control-Allow-Origin: %.*s\r\nVary: Origin\r\n",
                      (int)origin.len, origin.p);
  if (r == 0) r = sg_buf_appendz(out, "Access-Control-Allow-Credentials: true\r\n");
  if (r == 0 && req_headers.len > 0 && !has_crlf(req_headers))
    r = sg_buf_printf(out, "Access-Control-Allow-Headers: %.*s\r\n", (int)req_headers.len,
                      req_headers.p);
  return r == 0 ? 0 : SG_ERR_NOMEM;
}

static const char *status_text(int status) {
  switch (status) {
  case 200: return "OK";
  case 204: return "No Content";
  case 400: return "Bad Request";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 411: return "Length Required";
  case 413: return "Payload Too Large";
  case 429: return "Too Many Requests";
  case 500: return "Internal Server Error";
  case 503: return "Service Unavailable";
  default: return "Error";
  }
}

int sg_sockjs_response(sg_buf_t *out, int status, sg_http_slice_t origin, const char *content_type,
                       const char *body, size_t len) {
  return sg_sockjs_response_extra(out, status, origin, content_type, NULL, body, len);
}

int sg_sockjs_response_extra(sg_buf_t *out, int status, sg_http_slice_t origin,
                             const char *content_type, const char *extra, const char *body,
                             size_t len) {
  sg_http_slice_t none = {0};
  if (sg_buf_printf(out, "HTTP/1.1 %d %s\r\n", status, status_text(status)) != 0 ||
      sg_sockjs_cors(out, origin, none) != 0 ||
      sg_buf_appendz(out, "Cache-Control: no-store, no-cache, no-transform, must-revalidate, "
                          "max-age=0\r\nConnection: close\r\n") != 0)
    return SG_ERR_NOMEM;
  if (content_type && sg_buf_printf(out, "Content-Type: %s\r\n", content_type) != 0)
    return SG_ERR_NOMEM;
  if (status != 204 && sg_buf_printf(out, "Content-Length: %zu\r\n", len) != 0)
    return SG_ERR_NOMEM;
  if (extra && sg_buf_appendz(out, extra) != 0) return SG_ERR_NOMEM;
  if (sg_buf_append(out, "\r\n", 2) != 0) return SG_ERR_NOMEM;
  return len ? sg_buf_append(out, body, len) : 0;
}

int sg_sockjs_info(sg_buf_t *out, sg_http_slice_t origin, uint32_t entropy) {
  char body[160];
  int n = snprintf(body, sizeof(body),
                   "{\"websocket\":true,\"origins\":[\"*:*\"],\"cookie_needed\":false,"
                   "\"entropy\":%u}",
                   (unsigned)entropy);
  return sg_sockjs_response(out, 200, origin, "application/json; charset=UTF-8", body,
                            (size_t)n);
}

int sg_sockjs_preflight(sg_buf_t *out, sg_http_slice_t origin, sg_http_slice_t req_headers,
                        const char *methods) {
  if (sg_buf_appendz(out, "HTTP/1.1 204 No Content\r\n") != 0 ||
      sg_sockjs_cors(out, origin, req_headers) != 0 ||
      sg_buf_printf(out,
                    "Access-Control-Allow-Methods: %s\r\n"
                    "Access-Control-Max-Age: 31536000\r\n"
                    "Cache-Control: public, max-age=31536000\r\n"
                    "Connection: close\r\n\r\n",
                    methods) != 0)
    return SG_ERR_NOMEM;
  return 0;
}
