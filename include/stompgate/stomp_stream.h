/* SPDX-License-Identifier: MIT */
#ifndef STOMPGATE_STOMP_STREAM_H
#define STOMPGATE_STOMP_STREAM_H

/* Where frames end in a STOMP byte stream (STOMP over TCP or TLS), so that
 * a transport can hand the session one frame at a time and stop between
 * two when the session is paused. No I/O, no copies: it only follows the
 * framing (EOLs between frames, the command and header lines, a body of
 * content-length bytes or up to the NUL) the way the parser
 * (stomp_codec.h) does, which stays the one that checks frames and limits.
 * Fed pieces of any size, it finds the same ends. */

#include <stddef.h>
#include <stdint.h>

/* Framer state. Treat the members as private. */
typedef struct sg_stomp_stream {
  uint8_t state;     /* between frames, head, body by length, body to NUL */
  uint8_t header;    /* past the command line */
  uint8_t match;     /* bytes of "content-length:" matched on this line */
  uint8_t value_bad; /* this line's content-length value is not a number */
  uint8_t value_cr;  /* a CR followed the value's digits */
  uint8_t last;      /* the line's last byte so far */
  uint8_t has_clen;
  uint8_t digits;
  size_t line_len;
  uint64_t value;    /* the content-length value being read */
  uint64_t clen;
  uint64_t left;     /* body bytes and NUL still to come */
  uint64_t frames;   /* frames that ended */
} sg_stomp_stream_t;

void sg_stomp_stream_init(sg_stomp_stream_t *s);

/* Follows data[0..len) (borrowed). Returns the number of bytes up to and
 * including the end of the first frame that ends in them, with *end = 1;
 * or len with *end = 0 when no frame ends there (EOLs between frames are
 * counted with the frame that follows them). */
size_t sg_stomp_stream_scan(sg_stomp_stream_t *s, const char *data, size_t len, int *end);

#endif
