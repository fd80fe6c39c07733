/* SPDX-License-Identifier: MIT */
#ifndef SG_WS_H
#define SG_WS_H

/* A connection of the HTTP listener (its bytes cross an sg_conn_t, plain
 * or TLS): it reads the request, which http.c routes, and once upgraded
 * carries WebSocket messages through wslay's event API. The layer above
 * reaches it as a transport (ws->tr, transport.h) and is reached only
 * through the callback table it passes in. */

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <wslay/wslay.h>

#include "config.h"
#include "stompgate/buf.h"
#include "stompgate/http_upgrade.h"
#include "stompgate/pmdeflate.h"
#include "conn.h"
#include "transport.h"

typedef struct sg_ws sg_ws_t;

/* The layer above is reached through ws->tr.cbs (see transport.h): on_open
 * once the upgrade succeeded, with the chosen subprotocol (0 if none was
 * offered); on_message for each whole text or binary message; on_gone when
 * the peer went away or the socket failed; on_closed when every handle is
 * closed and the owner may free the memory holding ws. */
typedef sg_transport_cbs_t sg_ws_cbs_t;
/* A subprotocol's own framing of messages inside WebSocket text messages
 * (SockJS's o, h, a[...], c[...]; http.c chooses it): the layer above
 * sends and receives the messages inside, and binary messages are not
 * taken. */
typedef struct sg_ws_framing {
  const char *name;  /* for the log */
  const char *open;  /* sent at once on upgrade */
  const char *beat;  /* sent every beat interval while open */
  /* Appends the text message that carries data[0..len) to out. 0 or an
   * error. */
  int (*wrap)(sg_buf_t *out, const void *data, size_t len);
  /* Decodes a text message into out, whose messages next steps through.
   * Negative when it is not valid framing. */
  int (*unwrap)(const char *data, size_t len, sg_buf_t *out);
  int (*next)(const sg_buf_t *decoded, size_t *off, const char **p, size_t *n);
  /* Appends the text message announcing a close. 0 or an error. */
  int (*close)(sg_buf_t *out, unsigned code, const char *reason);
} sg_ws_framing_t;
/* The layer that routes the request (http.c): called while the connection
 * waits for its request, each time more of it has been read (ws->in). It
 * answers (sg_ws_respond, sg_ws_refuse), upgrades (sg_ws_upgrade), hands
 * the connection over (sg_conn_export, sg_ws_handed_off), or returns to
 * wait for more. */
typedef void (*sg_ws_head_fn)(sg_ws_t *ws);

enum sg_ws_state { SG_WS_HANDSHAKE = 0, SG_WS_OPEN, SG_WS_CLOSING, SG_WS_CLOSED };

struct sg_ws {
  sg_transport_t tr;    /* what the session sees; peer, last_rx/tx live here */
  sg_conn_t conn;       /* the TCP connection, plain or TLS */
  uv_timer_t timer;
  const sg_config_t *cfg;
  wslay_event_context_ptr ctx;
  sg_buf_t in;          /* unread input: handshake bytes, then WebSocket bytes */
  size_t in_off;        /* first unread byte of in */
  sg_buf_t out;         /* bytes produced by wslay, not yet handed to uv_write */
  size_t fresh;         /* bytes queued since the last flush began */
  int state;
  int handles_open;
  unsigned gone : 1;       /* on_gone_cb was called */
  unsigned shut : 1;       /* uv_shutdown was requested */
  unsigned close_pending : 1; /* close to queue once the messages before it are out */
  unsigned proxy_wait : 1;    /* a PROXY protocol header must come first */
  unsigned proxy_check : 1;   /* the first bytes must not be a PROXY header */
  uint16_t close_code;
  char close_reason[124];
  uint64_t accepted_ns; /* uv_hrtime at accept, for the handshake histogram */
  char *bearer;         /* Authorization: Bearer token of the upgrade, or NULL */
  /* permessage-deflate: the window messages are sent with (0: the
   * extension was not negotiated), the window the client's are inflated
   * with, and whether the client starts each message afresh (then a
   * thread's shared inflater serves; otherwise this session's own, made
   * when its first compressed message arrives). */
  sg_pmd_inflater_t *inflater;
  uint8_t pmd_bits;
  uint8_t pmd_client_bits;
  uint8_t pmd_client_fresh;
  /* An open connection that has been quiet for a while gives its wslay
   * context (about 8.5 KB, most of it two 4 KB buffers) back between
   * messages, and gets a new one when a byte comes or goes. That is safe
   * only between frames: the input handed to wslay is followed frame by
   * frame here. */
  uint8_t rx_hlen;        /* bytes of a frame header seen so far */
  uint8_t rx_hdr[14];
  unsigned rx_frag : 1;   /* inside a fragmented data message */
  unsigned parked : 1;    /* open, with no wslay context */
  uint64_t rx_left;       /* bytes of the current frame still to come */
  uint64_t last_busy;     /* uv_now of the last message other than a heart-beat */
  sg_ws_t *open_next, **open_pprev; /* this thread's open connections */
  /* An accepted connection (sg_ws_accept): its own memory, freed once
   * closed, and what its upgrade is handed to. */
  unsigned heap : 1;
  sg_ws_head_fn on_head;
  const sg_ws_framing_t *framing; /* NULL: messages are WebSocket messages */
  sg_transport_open_fn open_fn;
  void *open_arg;
};

/* Per-thread set-up: the check handle that flushes written messages once
 * per loop iteration. Call once per loop before accepting. */
int sg_ws_loop_init(uv_loop_t *loop);
/* The worker's loop has ended: frees the thread's buffers and compression
 * state (the handles stay with the loop, as its sessions do). */
void sg_ws_thread_done(void);

/* Accepts the connection pending on server: it reads a request, which
 * on_head routes, and once upgraded it is handed to open (with arg) as an
 * open transport. The connection frees itself once closed. 0 or an
 * error. */
int sg_ws_accept(uv_stream_t *server, const sg_config_t *cfg, sg_ws_head_fn on_head,
                 sg_transport_open_fn open, void *arg);
/* The answers to a request: a complete response built in ws->out, written
 * before the connection closes; a refusal (an error response with status,
 * reason and extra header lines, logged and counted). */
void sg_ws_respond(sg_ws_t *ws);
void sg_ws_refuse(sg_ws_t *ws, int status, const char *reason, const char *extra);
/* Upgrades to a WebSocket, answering req (ws->in holds it); framing (NULL
 * for none) frames the messages inside, with its heart-beat every beat_ms; bearer[0..bearer_len) is the request's bearer token
 * (copied), or NULL. The transport then opens. */
void sg_ws_upgrade(sg_ws_t *ws, const sg_http_request_t *req, const sg_ws_framing_t *framing,
                   uint64_t beat_ms, const char *bearer, size_t bearer_len);
/* The connection's name in logs and admission, from the client's address;
 * also whether that address is a trusted proxy. */
void sg_ws_set_peer(sg_ws_t *ws, const struct sockaddr_storage *ss);
/* Handing the connection to another worker: once the other worker took
 * what sg_conn_export(&ws->conn) gave, closes this handle without writing
 * or freeing the TLS state. */
void sg_ws_handed_off(sg_ws_t *ws);

/* Closes the socket now, dropping what is queued. */
void sg_ws_abort(sg_ws_t *ws);

#endif
