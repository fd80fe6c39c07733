/* SPDX-License-Identifier: MIT */
#ifndef SG_CONN_H
#define SG_CONN_H
/* An accepted TCP connection and how bytes cross it. A connection type
 * (sg_conn_type_t, as redis's ConnectionType) is plain TCP or TLS; the
 * layers above (ws.c for HTTP and WebSocket, stomp_tcp.c, the SockJS
 * responses) read and write plaintext and never ask which. A connection
 * can be handed to another worker: exported (a duplicate of the socket
 * and the type's state), then imported on the other loop. Connections
 * count in /metrics' stompgate_connections_open while their socket is
 * theirs. */
#include <stddef.h>
#include <sys/socket.h>
#include <uv.h>

#include "config.h"
#include "stompgate/buf.h"

typedef struct sg_conn sg_conn_t;

typedef struct sg_conn_type {
  const char *name;
  /* n bytes read from the socket (borrowed): appends the plaintext they
   * carry to plain and writes what the protocol answers by itself (TLS
   * handshake records). 0; 1 when the peer ended the stream (TLS
   * close_notify); negative on failure (sg_conn_error says why). */
  int (*feed)(sg_conn_t *c, const char *data, size_t n, sg_buf_t *plain);
  /* Writes the plaintext in *out, which it takes (out is left empty). 0 or
   * negative. */
  int (*write)(sg_conn_t *c, sg_buf_t *out);
  /* Writes what must precede our FIN (TLS close_notify). */
  void (*end)(sg_conn_t *c);
  /* Plaintext can be written now (TLS: the handshake is done). */
  int (*ready)(const sg_conn_t *c);
  void (*free_state)(void *state);
  /* Bytes read are the plaintext itself: they may be read straight into
   * the reader's buffer. */
  int reads_in_place;
} sg_conn_type_t;

extern const sg_conn_type_t sg_conn_plain;
extern const sg_conn_type_t sg_conn_tls;

/* Bytes handed to uv_write are done: n of them, status from libuv. */
typedef void (*sg_conn_written_fn)(sg_conn_t *c, size_t n, int status);
/* The end of a loop iteration for a connection that asked for it. */
typedef void (*sg_conn_flush_fn)(sg_conn_t *c);
/* Our side of the connection is closed (sg_conn_shutdown): status 0 once
 * the peer has every byte, negative when that failed or the handle
 * closed first. */
typedef void (*sg_conn_shut_fn)(sg_conn_t *c, int status);

struct sg_conn {
  uv_tcp_t tcp;
  const sg_conn_type_t *type;
  void *state;                  /* the type's own (TLS: an sg_tls_t) */
  sg_conn_written_fn on_written; /* may be NULL */
  sg_conn_flush_fn on_flush;    /* for sg_conn_queue_flush */
  size_t inflight;              /* handed to uv_write, not yet written */
  sg_conn_t *flush_next;
  uv_shutdown_t shut_req;       /* sg_conn_shutdown's */
  sg_conn_shut_fn on_shut;
  unsigned flush_queued : 1;
  unsigned counted : 1;         /* in the connections gauge */
  unsigned peer_trusted : 1;    /* the peer lies in --trusted-proxy */
};

/* A connection handed from one worker to another. */
typedef struct sg_conn_export {
  uv_os_sock_t fd;
  const sg_conn_type_t *type;
  void *state;
} sg_conn_export_t;

/* Per-thread set-up of the flush at the end of each loop iteration; a
 * second call on the same thread does nothing. 0 or a libuv error. */
int sg_conn_loop_init(uv_loop_t *loop);
/* Output is gathered over a loop iteration and written once: c's on_flush
 * runs at the end of this iteration (once however often it is queued).
 * Take it off before c's memory goes. */
void sg_conn_queue_flush(sg_conn_t *c);
void sg_conn_unqueue_flush(sg_conn_t *c);

/* Initialises c's handle on loop (the listener then accepts into &c->tcp),
 * plain until sg_conn_start says otherwise. 0 or a libuv error. */
int sg_conn_init(uv_loop_t *loop, sg_conn_t *c);
/* What a listener serves: HTTP (TLS when the gateway has a certificate,
 * with ALPN http/1.1), or STOMP (TLS with --stomp-tls). */
enum { SG_CONN_HTTP = 0, SG_CONN_STOMP };
/* The connection was accepted on a listener of that kind: it gets its
 * type and joins the connections gauge. 0, or SG_ERR_NOMEM when no TLS
 * state could be made (then close it). */
int sg_conn_start(sg_conn_t *c, const sg_config_t *cfg, int kind);
/* The connection's handle is closed: frees the type's state, leaves the
 * gauge. Call from the close callback. */
void sg_conn_closed(sg_conn_t *c);

static inline int sg_conn_feed(sg_conn_t *c, const char *data, size_t n, sg_buf_t *plain) {
  return c->type->feed(c, data, n, plain);
}
static inline int sg_conn_write(sg_conn_t *c, sg_buf_t *out) { return c->type->write(c, out); }
static inline void sg_conn_end(sg_conn_t *c) { c->type->end(c); }
/* Closes our side once what is written is out: what must precede the
 * FIN (sg_conn_end), then the FIN itself; done hears how it went. At
 * most once per connection. 0, or negative when it could not start (done
 * is not called then). */
int sg_conn_shutdown(sg_conn_t *c, sg_conn_shut_fn done);
static inline int sg_conn_reads_in_place(const sg_conn_t *c) { return c->type->reads_in_place; }
static inline int sg_conn_ready(const sg_conn_t *c) { return c->type->ready(c); }
/* The last failure of the type's state, for the log. */
const char *sg_conn_error(const sg_conn_t *c);

/* The client's address as "host:port" in peer (n bytes), and whether it
 * is a trusted proxy (--trusted-proxy), which c->peer_trusted keeps. */
void sg_conn_name_peer(sg_conn_t *c, const sg_config_t *cfg, const struct sockaddr_storage *ss,
                       char *peer, size_t n);
/* The peer address of the socket, as sg_conn_name_peer names it. */
void sg_conn_name_socket_peer(sg_conn_t *c, const sg_config_t *cfg, char *peer, size_t n);

/* The PROXY protocol (--proxy-protocol), before TLS: whether the first
 * bytes of a peer that is not a trusted proxy begin a header (a partial
 * signature of four bytes or more counts), which is refused; and the log
 * line and count of a connection closed for its header (why as
 * sg_proxy_parse says, or "untrusted"). */
int sg_conn_proxy_unexpected(const char *data, size_t n);
void sg_conn_proxy_refused(const char *peer, const char *why);

/* Hands the connection over: x gets a duplicate of the socket and the
 * type and its state, which c keeps until sg_conn_exported. 0 or
 * negative. */
int sg_conn_export(sg_conn_t *c, sg_conn_export_t *x);
/* The other side took x: c's state is no longer c's. */
void sg_conn_exported(sg_conn_t *c);
/* x was not taken (or not made: x->fd is -1): closes the duplicate. */
void sg_conn_export_drop(sg_conn_export_t *x);
/* Opens c (initialised on its loop) around x, which it takes whatever
 * happens. 0 or a libuv error (then close c's handle as usual). */
int sg_conn_import(sg_conn_t *c, sg_conn_export_t *x);

#endif
