/* SPDX-License-Identifier: MIT */
#ifndef SG_TLS_H
#define SG_TLS_H

/* TLS for the WebSocket listener (and the STOMP one) with OpenSSL, through memory BIOs so the
 * socket stays libuv's: ciphertext read from the socket goes in, plaintext
 * comes out for the WebSocket layer, and whatever OpenSSL wants to send
 * (handshake records, alerts, encrypted data) is handed back to be written.
 * TLS 1.2 or newer, ALPN http/1.1, optional client certificates. */

#include <stddef.h>

#include "config.h"
#include "stompgate/buf.h"

typedef struct sg_tls sg_tls_t;

/* Builds the server context from cfg's tls-* files. 0, or -1 after logging
 * which setting failed. */
int sg_tls_init(const sg_config_t *cfg);
/* Builds a new context from the same files; new connections use it, open
 * ones keep theirs. On failure the old context stays. 0 or -1. */
int sg_tls_reload(const sg_config_t *cfg);
int sg_tls_enabled(void);

/* A server-side connection on the current context, or NULL. */
sg_tls_t *sg_tls_new(void);
/* The same for STOMP over TLS (--stomp-tls): ALPN is not required to
 * offer http/1.1. */
sg_tls_t *sg_tls_new_stream(void);
void sg_tls_free(sg_tls_t *t);

/* Feeds len bytes of ciphertext (borrowed). Appends decrypted bytes to
 * plain and bytes to send to net. Returns 0, 1 when the peer sent
 * close_notify, or -1 on a TLS failure (net may hold an alert to send). */
int sg_tls_feed(sg_tls_t *t, const void *in, size_t len, sg_buf_t *plain, sg_buf_t *net);
/* Encrypts len plaintext bytes (borrowed) into net. 0 or -1. Only valid
 * once sg_tls_feed has completed the handshake. */
int sg_tls_encrypt(sg_tls_t *t, const void *data, size_t len, sg_buf_t *net);
/* Appends a close_notify alert to net. */
void sg_tls_close_notify(sg_tls_t *t, sg_buf_t *net);
int sg_tls_handshake_done(const sg_tls_t *t);
/* The last failure, for the log. Static storage. */
const char *sg_tls_error(const sg_tls_t *t);

#endif
