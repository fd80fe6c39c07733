/* SPDX-License-Identifier: MIT */
#ifndef STOMPGATE_HTTP_UPGRADE_H
#define STOMPGATE_HTTP_UPGRADE_H

/* RFC 6455 opening handshake: parses the HTTP/1.1 request head and builds
 * the response. No I/O. */

#include <stddef.h>
#include "stompgate/buf.h"

typedef struct sg_http_upgrade_opts {
  const char *ws_path;   /* e.g. "/ws"; the query string is ignored */
  size_t max_head_size;  /* request head over this -> 431 */
} sg_http_upgrade_opts_t;

typedef struct sg_http_slice {
  const char *p; /* points into the caller's buffer, not NUL-terminated */
  size_t len;    /* 0 and p == NULL when absent */
} sg_http_slice_t;

#define SG_HTTP_EXTENSIONS_MAX 4

typedef struct sg_http_request {
  int status;          /* 101 when the upgrade is accepted, else the refusal */
  const char *reason;  /* short static text for a refusal ("Not Found") */
  const char *extra_header; /* static header line(s) for a refusal, CRLF-ended,
                               e.g. "Upgrade: websocket\r\n" for 426; or NULL */
  size_t head_len;     /* bytes of the request head, blank line included */
  sg_http_slice_t method, path, query; /* path without the query string */
  sg_http_slice_t host, origin, authorization, user_agent;
  sg_http_slice_t forwarded_for, forwarded; /* X-Forwarded-For, Forwarded (last line of each) */
  /* Sec-WebSocket-Extensions header lines in order (more than
   * SG_HTTP_EXTENSIONS_MAX are ignored); each is a comma list of offers. */
  sg_http_slice_t extensions[SG_HTTP_EXTENSIONS_MAX];
  int n_extensions;
  int stomp_version;   /* chosen subprotocol: 12, 11, 10, or 0 if none offered */
  char accept[32];     /* Sec-WebSocket-Accept value, NUL-terminated (28 chars) */
} sg_http_request_t;

/* Parses the request head in buf[0..len). Returns:
 *   SG_ERR_AGAIN when the head is not complete yet and len is within
 *     max_head_size (read more and call again with the whole buffer);
 *   0 with req->status == 101 for a valid upgrade to ws_path;
 *   0 with req->status set to the refusal otherwise:
 *     400 malformed request line/headers, bad Sec-WebSocket-Key, missing Host,
 *         no "upgrade" token in Connection, HTTP version other than 1.1+;
 *     404 path other than ws_path; 405 method other than GET;
 *     426 no "Upgrade: websocket" (with extra_header "Upgrade: websocket")
 *         or Sec-WebSocket-Version other than 13 (extra_header
 *         "Sec-WebSocket-Version: 13");
 *     431 head larger than max_head_size.
 * Header names match case-insensitively; repeated Sec-WebSocket-Protocol
 * headers and comma lists are both read. Borrows buf: the slices in req
 * point into it. */
int sg_http_upgrade_parse(const char *buf, size_t len,
                          const sg_http_upgrade_opts_t *opts,
                          sg_http_request_t *req);

/* The longest bearer token kept from an Authorization header. */
#define SG_HTTP_BEARER_MAX 8192

/* The token of an "Authorization: Bearer <token>" header (scheme matched
 * case-insensitively, RFC 6750): 1 with *token pointing into the request
 * buffer, 0 when there is no such header, SG_ERR_INVALID when the token is
 * empty, has characters outside the token68 set, or is longer than
 * SG_HTTP_BEARER_MAX. */
int sg_http_bearer(const sg_http_request_t *req, sg_http_slice_t *token);

/* Appends the 101 response for an accepted request (with
 * Sec-WebSocket-Protocol vNN.stomp when one was chosen, and
 * Sec-WebSocket-Extensions: extensions unless that is NULL). 0 or
 * SG_ERR_NOMEM. */
int sg_http_upgrade_accept(const sg_http_request_t *req, const char *extensions,
                           sg_buf_t *out);

/* Appends a complete refusal: status line, Content-Type: text/plain,
 * Content-Length, Connection: close, extra_header if any, and the reason
 * plus "\n" as the body. 0 or SG_ERR_NOMEM. */
int sg_http_response_error(sg_buf_t *out, int status, const char *reason,
                           const char *extra_header);

#endif
