/* SPDX-License-Identifier: MIT */
#ifndef STOMPGATE_STOMP_CODEC_H
#define STOMPGATE_STOMP_CODEC_H

/* STOMP 1.0/1.1/1.2 frame parser and encoder. No I/O: the parser is fed
 * bytes as they arrive, in pieces of any size, and hands out whole frames. */

#include <stddef.h>
#include "stompgate/buf.h"

typedef enum sg_stomp_cmd {
  SG_STOMP_UNKNOWN = 0,
  /* client commands */
  SG_STOMP_CONNECT,
  SG_STOMP_STOMP,
  SG_STOMP_SEND,
  SG_STOMP_SUBSCRIBE,
  SG_STOMP_UNSUBSCRIBE,
  SG_STOMP_ACK,
  SG_STOMP_NACK,
  SG_STOMP_BEGIN,
  SG_STOMP_COMMIT,
  SG_STOMP_ABORT,
  SG_STOMP_DISCONNECT,
  /* server commands */
  SG_STOMP_CONNECTED,
  SG_STOMP_MESSAGE,
  SG_STOMP_RECEIPT,
  SG_STOMP_ERROR,
} sg_stomp_cmd_t;

/* Returns the wire name of cmd ("SEND"), or "UNKNOWN". */
const char *sg_stomp_cmd_name(sg_stomp_cmd_t cmd);
/* Maps a wire name to its command; SG_STOMP_UNKNOWN when not a command. */
sg_stomp_cmd_t sg_stomp_cmd_from(const char *s, size_t len);

/* A decoded header. name and value are NUL-terminated and already
 * unescaped; they may contain NUL only if the escape rules allowed it
 * (they do not), so the lengths are for convenience. */
typedef struct sg_stomp_header {
  const char *name;
  size_t name_len;
  const char *value;
  size_t value_len;
} sg_stomp_header_t;

/* A frame handed out by the parser. All pointers point into one
 * allocation owned by the frame; free it with sg_stomp_frame_free. */
typedef struct sg_stomp_frame {
  sg_stomp_cmd_t cmd;
  const char *command;        /* the command text as received, NUL-terminated */
  size_t nheaders;
  sg_stomp_header_t *headers; /* in wire order; repeated names kept */
  const char *body;           /* NUL-terminated one byte past body_len */
  size_t body_len;
  int has_content_length;     /* 1 if a content-length header framed the body */
} sg_stomp_frame_t;

void sg_stomp_frame_free(sg_stomp_frame_t *f);

/* Returns the value of the first header named name (the 1.2 rule for
 * repeated headers), or NULL. *len (if not NULL) gets its length. */
const char *sg_stomp_frame_header(const sg_stomp_frame_t *f, const char *name,
                                  size_t *len);

typedef struct sg_stomp_limits {
  size_t max_frame_size;  /* command + headers + body, bytes */
  size_t max_headers;     /* header lines per frame */
  size_t max_header_size; /* bytes of one header line (name:value) */
} sg_stomp_limits_t;

/* Parser state. Treat the members as private. */
typedef struct sg_stomp_parser {
  sg_stomp_limits_t limits;
  int version;        /* 10, 11 or 12: selects the escape rules */
  sg_buf_t in;        /* bytes of the frame being assembled */
  size_t scan;        /* resume offset for the current search */
  size_t head_end;    /* offset after the blank line, 0 while unknown */
  size_t body_need;   /* unused, kept zero */
  size_t nheaders;    /* header lines seen so far */
  size_t clen;        /* content-length value when has_clen */
  int head_done;      /* head_end is valid */
  int has_clen;
  unsigned long heartbeats; /* EOLs seen between frames */
} sg_stomp_parser_t;

void sg_stomp_parser_init(sg_stomp_parser_t *p, const sg_stomp_limits_t *lim);
/* Selects the escape rules for frames that follow (10, 11 or 12).
 * CONNECT, STOMP and CONNECTED headers are never unescaped. */
void sg_stomp_parser_set_version(sg_stomp_parser_t *p, int version);
void sg_stomp_parser_free(sg_stomp_parser_t *p);

/* Feeds len bytes. Consumes input up to and including the end of the first
 * complete frame, sets *consumed to the bytes used and:
 *   returns 1 and sets *frame (caller owns it) when a frame is complete;
 *   returns 0 when all input was consumed and no frame is complete yet;
 *   returns a negative sg_err when the input is invalid:
 *     SG_ERR_FRAME_TOO_LARGE, SG_ERR_TOO_MANY_HEADERS, SG_ERR_HEADER_TOO_LONG,
 *     SG_ERR_BAD_ESCAPE, SG_ERR_BAD_CONTENT_LENGTH, SG_ERR_MALFORMED_FRAME,
 *     SG_ERR_NOMEM. After an error the parser must not be fed again.
 * EOLs (LF or CRLF) between frames are heart-beats: consumed and counted.
 * A frame with an unknown command is returned with cmd SG_STOMP_UNKNOWN;
 * deciding what to do with it is the caller's business. Borrows data. */
int sg_stomp_parser_execute(sg_stomp_parser_t *p, const char *data, size_t len,
                            size_t *consumed, sg_stomp_frame_t **frame);

/* Encoding. Frames are built in an sg_buf_t piece by piece:
 *   sg_stomp_encode_start(b, cmd);
 *   sg_stomp_encode_header(b, version, cmd, name, nlen, value, vlen); ...
 *   sg_stomp_encode_finish(b, body, body_len);
 * encode_header escapes per version (1.0: none; 1.1: \\ \n \c; 1.2: also \r),
 * never for CONNECTED. encode_finish adds content-length when body_len > 0,
 * the blank line, the body and the NUL. Each returns 0 or SG_ERR_NOMEM and
 * copies what it is given. */
int sg_stomp_encode_start(sg_buf_t *b, sg_stomp_cmd_t cmd);
int sg_stomp_encode_header(sg_buf_t *b, int version, sg_stomp_cmd_t cmd,
                           const char *name, size_t name_len,
                           const char *value, size_t value_len);
int sg_stomp_encode_headerz(sg_buf_t *b, int version, sg_stomp_cmd_t cmd,
                            const char *name, const char *value);
int sg_stomp_encode_finish(sg_buf_t *b, const char *body, size_t body_len);

#endif
