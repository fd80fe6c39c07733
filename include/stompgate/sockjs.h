/* SPDX-License-Identifier: MIT */
#ifndef STOMPGATE_SOCKJS_H
#define STOMPGATE_SOCKJS_H

/* The SockJS protocol, without I/O: where a request path leads, the JSON
 * string encoding of frames both ways, and the fixed HTTP answers. The
 * JSON here is hand-written on purpose: STOMP frames end with a NUL byte,
 * which travels as "\u0000" and which NUL-terminated JSON libraries cut. */

#include <stddef.h>
#include <stdint.h>

#include "stompgate/buf.h"
#include "stompgate/http_upgrade.h"

/* Longest server or session id segment accepted. */
#define SG_SOCKJS_ID_MAX 64

enum sg_sockjs_kind {
  SG_SOCKJS_NONE = 0,  /* not under the prefix */
  SG_SOCKJS_ROOT,      /* <prefix> or <prefix>/: the greeting */
  SG_SOCKJS_INFO,      /* <prefix>/info */
  SG_SOCKJS_RAW_WS,    /* <prefix>/websocket: plain STOMP over WebSocket */
  SG_SOCKJS_SESSION,   /* <prefix>/<server>/<session>/<transport> */
  SG_SOCKJS_NOT_FOUND, /* under the prefix, but nothing served there */
};

enum sg_sockjs_transport {
  SG_SOCKJS_T_UNKNOWN = 0, /* eventsource, htmlfile, jsonp...: not served */
  SG_SOCKJS_T_WEBSOCKET,
  SG_SOCKJS_T_XHR,
  SG_SOCKJS_T_XHR_STREAMING,
  SG_SOCKJS_T_XHR_SEND,
};

typedef struct sg_sockjs_route {
  int kind;               /* enum sg_sockjs_kind */
  int transport;          /* enum sg_sockjs_transport, for SG_SOCKJS_SESSION */
  sg_http_slice_t server; /* point into the path */
  sg_http_slice_t session;
} sg_sockjs_route_t;

/* Classifies the request path path[0..len) (no query string) against
 * prefix (no trailing '/'). Server and session ids are 1 to
 * SG_SOCKJS_ID_MAX bytes without '/' or '.'. Borrows path. Always 0. */
int sg_sockjs_route(const char *prefix, const char *path, size_t len, sg_sockjs_route_t *out);

/* Appends data[0..len) as a JSON string in double quotes, escaping what
 * JSON requires and the characters SockJS wants escaped because browsers
 * mangle them (controls, U+007F..U+009F, format and separator characters,
 * U+FFF0..U+FFFF). Bytes that are not UTF-8 go out as \u00XX, one per
 * byte. 0 or SG_ERR_NOMEM. */
int sg_sockjs_quote(sg_buf_t *out, const void *data, size_t len);

/* Appends the message frame a["..."] holding one message. */
int sg_sockjs_frame_message(sg_buf_t *out, const void *data, size_t len);

/* Appends the close frame c[code,"reason"]. */
int sg_sockjs_frame_close(sg_buf_t *out, unsigned code, const char *reason);

/* Decodes a JSON array of strings (what a client sends) into out: each
 * string as a 4-byte native-endian length and its UTF-8 bytes. Lone
 * surrogates become U+FFFD. Returns the number of strings, or
 * SG_ERR_INVALID when json is not an array of strings, or SG_ERR_NOMEM.
 * out is appended to; on failure it may hold a partial result. */
int sg_sockjs_decode(const char *json, size_t len, sg_buf_t *out);

/* Steps through what sg_sockjs_decode produced: sets *p and *n to the
 * message at *off and advances *off. 1 while there was one, 0 at the end. */
int sg_sockjs_next(const sg_buf_t *decoded, size_t *off, const char **p, size_t *n);

/* Finds header name (case-insensitive) in the request head[0..len);
 * 1 with *out set (value trimmed, pointing into head), or 0. */
int sg_sockjs_header(const char *head, size_t len, const char *name, sg_http_slice_t *out);

/* Decodes a chunked request body (RFC 9112 section 7.1) from in[0..len),
 * appending its data to out. Returns the bytes of in it took (through the
 * last chunk and the trailer); SG_ERR_AGAIN when it is not complete yet;
 * SG_ERR_FRAME_TOO_LARGE when the data exceeds max; SG_ERR_INVALID when
 * it is malformed; SG_ERR_NOMEM. Chunk extensions and trailers are
 * skipped. */
long sg_sockjs_dechunk(const char *in, size_t len, size_t max, sg_buf_t *out);

/* Appends the CORS header lines SockJS servers send: the request's Origin
 * echoed with credentials allowed ("*" when there is none, or "null"), and
 * Access-Control-Allow-Headers echoing what the preflight asked for. */
int sg_sockjs_cors(sg_buf_t *out, sg_http_slice_t origin, sg_http_slice_t req_headers);

/* Appends a whole response with CORS headers, Cache-Control no-store and
 * Connection: close: status with body[0..len) of content_type (NULL for
 * none, with an empty body). */
int sg_sockjs_response(sg_buf_t *out, int status, sg_http_slice_t origin, const char *content_type,
                       const char *body, size_t len);
/* The same with extra header lines (each ending in CRLF, e.g. "Allow: GET\r\n"),
 * written with the others before the blank line; NULL for none. */
int sg_sockjs_response_extra(sg_buf_t *out, int status, sg_http_slice_t origin,
                             const char *content_type, const char *extra, const char *body,
                             size_t len);

/* Appends the response to GET <prefix>/info. */
int sg_sockjs_info(sg_buf_t *out, sg_http_slice_t origin, uint32_t entropy);

/* Appends the 204 answer to a CORS preflight (OPTIONS) allowing methods
 * (e.g. "OPTIONS, POST"), cacheable for a year as SockJS servers do. */
int sg_sockjs_preflight(sg_buf_t *out, sg_http_slice_t origin, sg_http_slice_t req_headers,
                        const char *methods);

#endif
