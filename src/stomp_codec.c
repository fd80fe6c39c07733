/* SPDX-License-Identifier: MIT */
/* STOMP frame parser and encoder. The parser gathers the bytes of one frame
 * in a buffer, scanning each byte once: first line by line until the blank
 * line, then to content-length or the NUL. Limits are checked while the
 * frame grows, so an oversized frame is refused before it is all read. */
#include "stompgate/stomp_codec.h"

#include <stdlib.h>
#include <string.h>

#include "stompgate/err.h"

static const char *const cmd_names[] = {
    "UNKNOWN", "CONNECT", "STOMP", "SEND", "SUBSCRIBE", "UNSUBSCRIBE", "ACK", "NACK", "BEGIN",
    "COMMIT", "ABORT", "DISCONNECT", "CONNECTED", "MESSAGE", "RECEIPT", "ERROR",
};

const char *sg_stomp_cmd_name(sg_stomp_cmd_t cmd) {
  if ((unsigned)cmd >= sizeof(cmd_names) / sizeof(cmd_names[0])) return "UNKNOWN";
  return cmd_names[cmd];
}

sg_stomp_cmd_t sg_stomp_cmd_from(const char *s, size_t len) {
  for (size_t i = 1; i < sizeof(cmd_names) / sizeof(cmd_names[0]); i++)
    if (strlen(cmd_names[i]) == len && memcmp(cmd_names[i], s, len) == 0) return (sg_stomp_cmd_t)i;
  return SG_STOMP_UNKNOWN;
}

void sg_stomp_frame_free(sg_stomp_frame_t *f) { free(f); }

const char *sg_stomp_frame_header(const sg_stomp_frame_t *f, const char *name, size_t *len) {
  for (size_t i = 0; i < f->nheaders; i++) {
    if (strcmp(f->headers[i].name, name) == 0) {
      if (len) *len = f->headers[i].value_len;
      return f->headers[i].value;
    }
  }
  return NULL;
}

void sg_stomp_parser_init(sg_stomp_parser_t *p, const sg_stomp_limits_t *lim) {
  memset(p, 0, sizeof(*p));
  p->limits = *lim;
  p->version = 12;
  sg_buf_init(&p->in);
}

void sg_stomp_parser_set_version(sg_stomp_parser_t *p, int version) { p->version = version; }

void sg_stomp_parser_free(sg_stomp_parser_t *p) { sg_buf_free(&p->in); }

/* Length of the line [s, nl) without a trailing CR. */
static size_t line_len(const char *s, const char *nl) {
  size_t n = (size_t)(nl - s);
  if (n && s[n - 1] == '\r') n--;
  return n;
}

/* Unescapes src[0..n) into dst; returns the new length or -1. */
static long unescape(char *dst, const char *src, size_t n, int version) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    char c = src[i];
    if (c != '\\') {
      dst[o++] = c;
      continue;
    }
    if (++i == n) return -1;
    switch (src[i]) {
    case 'n': dst[o++] = '\n'; break;
    case 'c': dst[o++] = ':'; break;
    case '\\': dst[o++] = '\\'; break;
    case 'r':
      if (version < 12) return -1;
      dst[o++] = '\r';
      break;
    default: return -1;
    }
  }
  return (long)o;
}

static int parse_clen(const char *v, size_t n, size_t *out) {
  if (n == 0 || n > 19) return -1;
  size_t x = 0;
  for (size_t i = 0; i < n; i++) {
    if (v[i] < '0' || v[i] > '9') return -1;
    x = x * 10 + (size_t)(v[i] - '0');
  }
  *out = x;
  return 0;
}

/* Builds the frame from the complete bytes b[0..end). */
static int build_frame(sg_stomp_parser_t *p, const char *b, size_t head_end, size_t body_len,
                       sg_stomp_frame_t **out) {
  size_t nlines = 0;
  for (size_t i = 0; i < head_end; i++)
    if (b[i] == '\n') nlines++;
  /* nlines counts the command line, the headers and the blank line. */
  size_t nh = nlines >= 2 ? nlines - 2 : 0;
  size_t size = sizeof(sg_stomp_frame_t) + nh * sizeof(sg_stomp_header_t) + head_end + nh * 2 +
                body_len + 2;
  sg_stomp_frame_t *f = malloc(size);
  if (f == NULL) return SG_ERR_NOMEM;
  memset(f, 0, sizeof(*f));
  f->headers = (sg_stomp_header_t *)(f + 1);
  char *w = (char *)(f->headers + nh);

  const char *nl = memchr(b, '\n', head_end);
  size_t cl = line_len(b, nl);
  memcpy(w, b, cl);
  w[cl] = '\0';
  f->command = w;
  f->cmd = sg_stomp_cmd_from(b, cl);
  w += cl + 1;
  int raw = p->version == 10 || f->cmd == SG_STOMP_CONNECT || f->cmd == SG_STOMP_STOMP ||
            f->cmd == SG_STOMP_CONNECTED;

  const char *s = nl + 1;
  for (size_t i = 0; i < nh; i++) {
    nl = memchr(s, '\n', (size_t)(b + head_end - s));
    size_t ll = line_len(s, nl);
    const char *colon = memchr(s, ':', ll);
    if (colon == NULL) goto malformed;
    size_t nlen = (size_t)(colon - s), vlen = ll - nlen - 1;
    sg_stomp_header_t *h = &f->headers[i];
    long r;
    if (raw) {
      memcpy(w, s, nlen);
      r = (long)nlen;
    } else if ((r = unescape(w, s, nlen, p->version)) < 0) {
      free(f);
      return SG_ERR_BAD_ESCAPE;
    }
    w[r] = '\0';
    h->name = w;
    h->name_len = (size_t)r;
    w += r + 1;
    if (raw) {
      memcpy(w, colon + 1, vlen);
      r = (long)vlen;
    } else if ((r = unescape(w, colon + 1, vlen, p->version)) < 0) {
      free(f);
      return SG_ERR_BAD_ESCAPE;
    }
    w[r] = '\0';
    h->value = w;
    h->value_len = (size_t)r;
    w += r + 1;
    s = nl + 1;
  }
  f->nheaders = nh;
  memcpy(w, b + head_end, body_len);
  w[body_len] = '\0';
  f->body = w;
  f->body_len = body_len;
  f->has_content_length = p->has_clen;
  *out = f;
  return 0;
malformed:
  free(f);
  return SG_ERR_MALFORMED_FRAME;
}

/* Scans the header block from p->scan. 1 when the blank line was found,
 * 0 when more bytes are needed, or a negative error. */
static int scan_head(sg_stomp_parser_t *p) {
  const char *b = p->in.base;
  size_t n = p->in.len, pos = p->scan;
  while (pos < n) {
    const char *nl = memchr(b + pos, '\n', n - pos);
    if (nl == NULL) break;
    size_t ll = line_len(b + pos, nl);
    /* A NUL ends a frame, so one among the command and header lines means
     * a broken frame. Passed on, it would cut names and values short for
     * code that reads them as C strings ("destination\0x" would match). */
    if (memchr(b + pos, '\0', ll)) return SG_ERR_MALFORMED_FRAME;
    if (ll == 0 && pos > 0) {
      p->head_end = (size_t)(nl - b) + 1;
      p->scan = p->head_end;
      p->head_done = 1;
      return 1;
    }
    if (ll > p->limits.max_header_size) return SG_ERR_HEADER_TOO_LONG;
    if (pos > 0) {
      if (++p->nheaders > p->limits.max_headers) return SG_ERR_TOO_MANY_HEADERS;
      if (!p->has_clen && ll >= 15 && memcmp(b + pos, "content-length:", 15) == 0) {
        if (parse_clen(b + pos + 15, ll - 15, &p->clen) != 0) return SG_ERR_BAD_CONTENT_LENGTH;
        p->has_clen = 1;
      }
    }
    pos = (size_t)(nl - b) + 1;
  }
  p->scan = pos;
  if (memchr(b + pos, '\0', n - pos)) return SG_ERR_MALFORMED_FRAME;
  /* The line is not complete: a last CR may be the start of its CRLF and
   * does not count, or a line of exactly the limit would pass or fail
   * depending on where the input was split. */
  size_t tail = n - pos;
  if (tail && b[n - 1] == '\r') tail--;
  if (tail > p->limits.max_header_size) return SG_ERR_HEADER_TOO_LONG;
  return 0;
}

static void parser_reset(sg_stomp_parser_t *p) {
  p->in.len = 0;
  p->scan = 0;
  p->head_end = 0;
  p->nheaders = 0;
  p->clen = 0;
  p->head_done = 0;
  p->has_clen = 0;
}

/* Looks for the end of the frame in the buffered bytes. 1 with *end and
 * *body_len set when complete, 0 when more bytes are needed, or an error. */
static int try_complete(sg_stomp_parser_t *p, size_t *end, size_t *body_len) {
  size_t n = p->in.len, max = p->limits.max_frame_size;
  if (!p->head_done) {
    int r = scan_head(p);
    if (r < 0) return r;
    if (r == 0) return n > max ? SG_ERR_FRAME_TOO_LARGE : 0;
    if (p->has_clen && (p->clen >= max || p->head_end + p->clen + 1 > max))
      return SG_ERR_FRAME_TOO_LARGE;
  }
  if (p->has_clen) {
    *end = p->head_end + p->clen + 1;
    if (n < *end) return 0;
    if (p->in.base[*end - 1] != '\0') return SG_ERR_MALFORMED_FRAME;
    *body_len = p->clen;
    return 1;
  }
  size_t from = p->scan > p->head_end ? p->scan : p->head_end;
  const char *z = memchr(p->in.base + from, '\0', n - from);
  if (z == NULL) {
    p->scan = n;
    return n > max ? SG_ERR_FRAME_TOO_LARGE : 0;
  }
  *end = (size_t)(z - p->in.base) + 1;
  if (*end > max) return SG_ERR_FRAME_TOO_LARGE;
  *body_len = *end - 1 - p->head_end;
  return 1;
}

int sg_stomp_parser_execute(sg_stomp_parser_t *p, const char *data, size_t len, size_t *consumed,
                            sg_stomp_frame_t **frame) {
  size_t i = 0;
  *frame = NULL;
  *consumed = 0;
  if (p->in.len == 0) {
    while (i < len && (data[i] == '\n' || data[i] == '\r')) {
      if (data[i] == '\n') p->heartbeats++;
      i++;
    }
    if (i == len) {
      *consumed = len;
      return 0;
    }
  }
  /* Take the input in growing pieces so that many small frames in one
   * message are not each copied with the whole rest of the message. */
  size_t chunk = 512;
  while (i < len) {
    size_t take = len - i < chunk ? len - i : chunk;
    if (sg_buf_append(&p->in, data + i, take) != 0) return SG_ERR_NOMEM;
    i += take;
    chunk *= 2;
    size_t end = 0, body_len = 0;
    int r = try_complete(p, &end, &body_len);
    if (r < 0) return r;
    if (r == 0) continue;
    r = build_frame(p, p->in.base, p->head_end, body_len, frame);
    if (r < 0) return r;
    /* Bytes buffered past the frame's end are handed back. */
    *consumed = i - (p->in.len - end);
    parser_reset(p);
    return 1;
  }
  *consumed = len;
  return 0;
}

/* Encoding */

int sg_stomp_encode_start(sg_buf_t *b, sg_stomp_cmd_t cmd) {
  const char *name = sg_stomp_cmd_name(cmd);
  if (sg_buf_appendz(b, name) != 0) return SG_ERR_NOMEM;
  return sg_buf_append(b, "\n", 1);
}

static int append_escaped(sg_buf_t *b, int version, int raw, const char *s, size_t n) {
  if (sg_buf_reserve(b, n * 2) != 0) return SG_ERR_NOMEM;
  char *w = b->base + b->len;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (raw) {
      /* 1.0 and CONNECTED have no escapes: keep the frame parseable. */
      if (c == '\n' || c == '\r') c = ' ';
      *w++ = c;
      continue;
    }
    switch (c) {
    case '\\': *w++ = '\\', *w++ = '\\'; break;
    case '\n': *w++ = '\\', *w++ = 'n'; break;
    case ':': *w++ = '\\', *w++ = 'c'; break;
    case '\r':
      if (version >= 12) *w++ = '\\', *w++ = 'r';
      else *w++ = ' ';
      break;
    default: *w++ = c;
    }
  }
  b->len = (size_t)(w - b->base);
  b->base[b->len] = '\0';
  return 0;
}

int sg_stomp_encode_header(sg_buf_t *b, int version, sg_stomp_cmd_t cmd, const char *name,
                           size_t name_len, const char *value, size_t value_len) {
  int raw = version == 10 || cmd == SG_STOMP_CONNECTED || cmd == SG_STOMP_CONNECT ||
            cmd == SG_STOMP_STOMP;
  if (append_escaped(b, version, raw, name, name_len) != 0) return SG_ERR_NOMEM;
  if (raw && memchr(name, ':', name_len)) {
    /* A colon in a raw name would split it; there is no escape for it. */
    for (size_t i = b->len - name_len; i < b->len; i++)
      if (b->base[i] == ':') b->base[i] = '_';
  }
  if (sg_buf_append(b, ":", 1) != 0) return SG_ERR_NOMEM;
  if (append_escaped(b, version, raw, value, value_len) != 0) return SG_ERR_NOMEM;
  return sg_buf_append(b, "\n", 1);
}

int sg_stomp_encode_headerz(sg_buf_t *b, int version, sg_stomp_cmd_t cmd, const char *name,
                            const char *value) {
  return sg_stomp_encode_header(b, version, cmd, name, strlen(name), value, strlen(value));
}

int sg_stomp_encode_finish(sg_buf_t *b, const char *body, size_t body_len) {
  if (body_len > 0 && sg_buf_printf(b, "content-length:%zu\n", body_len) != 0) return SG_ERR_NOMEM;
  if (sg_buf_append(b, "\n", 1) != 0) return SG_ERR_NOMEM;
  if (body_len > 0 && sg_buf_append(b, body, body_len) != 0) return SG_ERR_NOMEM;
  return sg_buf_append(b, "\0", 1);
}
