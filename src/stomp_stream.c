/* SPDX-License-Identifier: MIT */
/* The STOMP stream framer: a byte-at-a-time state machine over the head,
 * and a count or a memchr over the body. It mirrors what the parser
 * (stomp_codec.c) takes as a frame's end: the first "content-length:"
 * header line after the command line, with a value of 1 to 19 digits and
 * at most a trailing CR, frames the body; otherwise the first NUL after
 * the blank line ends it. */
#include "stompgate/stomp_stream.h"

#include <string.h>

enum { ST_BETWEEN = 0, ST_HEAD, ST_BODY_LEN, ST_BODY_NUL };

static const char clen_name[] = "content-length:";
#define CLEN_NAME_LEN 15

void sg_stomp_stream_init(sg_stomp_stream_t *s) { memset(s, 0, sizeof(*s)); }

static void line_reset(sg_stomp_stream_t *s) {
  s->line_len = 0;
  s->match = 0;
  s->value_bad = 0;
  s->value_cr = 0;
  s->digits = 0;
  s->value = 0;
  s->last = 0;
}

static void frame_start(sg_stomp_stream_t *s) {
  s->state = ST_HEAD;
  s->header = 0;
  s->has_clen = 0;
  s->clen = 0;
  line_reset(s);
}

/* A header line byte other than LF. */
static void head_byte(sg_stomp_stream_t *s, char c) {
  size_t at = s->line_len++;
  s->last = (uint8_t)c;
  if (!s->header || s->has_clen) return;
  if (s->match < CLEN_NAME_LEN) {
    /* Still matching the name from the start of the line. */
    if (s->match == at && c == clen_name[at]) s->match++;
    else s->match = CLEN_NAME_LEN + 1; /* not a content-length line */
    return;
  }
  if (s->match != CLEN_NAME_LEN || s->value_bad) return;
  if (s->value_cr) {
    s->value_bad = 1; /* only a last CR belongs to the line end */
  } else if (c == '\r') {
    s->value_cr = 1;
  } else if (c >= '0' && c <= '9') {
    if (++s->digits > 19) s->value_bad = 1;
    else s->value = s->value * 10 + (uint64_t)(c - '0');
  } else {
    s->value_bad = 1;
  }
}

/* The LF of a head line. 1 when it ends the head. */
static int head_eol(sg_stomp_stream_t *s) {
  size_t ll = s->line_len - (s->line_len > 0 && s->last == '\r');
  if (s->header && ll == 0) {
    if (s->has_clen) {
      s->state = ST_BODY_LEN;
      s->left = s->clen + 1;
    } else {
      s->state = ST_BODY_NUL;
    }
    return 1;
  }
  if (s->header && !s->has_clen && s->match == CLEN_NAME_LEN && !s->value_bad && s->digits > 0) {
    s->has_clen = 1;
    s->clen = s->value;
  }
  s->header = 1;
  line_reset(s);
  return 0;
}

size_t sg_stomp_stream_scan(sg_stomp_stream_t *s, const char *data, size_t len, int *end) {
  size_t i = 0;
  *end = 0;
  while (i < len) {
    switch (s->state) {
    case ST_BETWEEN:
      while (i < len && (data[i] == '\n' || data[i] == '\r')) i++;
      if (i < len) frame_start(s);
      break;
    case ST_HEAD:
      while (i < len && s->state == ST_HEAD) {
        char c = data[i++];
        if (c == '\n') head_eol(s);
        else head_byte(s, c);
      }
      break;
    case ST_BODY_LEN: {
      uint64_t n = len - i < s->left ? len - i : s->left;
      i += (size_t)n;
      s->left -= n;
      if (s->left == 0) goto ended;
      break;
    }
    case ST_BODY_NUL: {
      const char *z = memchr(data + i, '\0', len - i);
      if (z == NULL) return len;
      i = (size_t)(z - data) + 1;
      goto ended;
    }
    }
  }
  return len;
ended:
  s->state = ST_BETWEEN;
  s->frames++;
  *end = 1;
  return i;
}
