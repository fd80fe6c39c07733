/* SPDX-License-Identifier: MIT */
#ifndef SG_WS_H
#define SG_WS_H

/* One accepted TCP connection: the HTTP upgrade, then WebSocket messages
 * through wslay's event API. The layer above is reached only through the
 * callback table it passes in. */

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <wslay/wslay.h>

#include "config.h"
#include "stompgate/buf.h"
#include "stompgate/http_upgrade.h"
#include "tls.h"

typedef struct sg_ws sg_ws_t;

typedef struct sg_ws_cbs {
  /* The upgrade succeeded; stomp_version is the chosen subprotocol (0 if
   * none was offered). */
  void (*on_open_cb)(sg_ws_t *ws, int stomp_version);
  /* A whole text or binary message. data is borrowed for the call. */
  void (*on_message_cb)(sg_ws_t *ws, const uint8_t *data, size_t len, int binary);
  /* The peer went away or the socket failed; the layer above should stop
   * sending. Called at most once, before on_closed_cb. */
  void (*on_gone_cb)(sg_ws_t *ws);
  /* Every handle is closed: the owner may free the memory holding ws. */
  void (*on_closed_cb)(sg_ws_t *ws);
} sg_ws_cbs_t;

enum sg_ws_state { SG_WS_HANDSHAKE = 0, SG_WS_OPEN, SG_WS_CLOSING, SG_WS_CLOSED };

struct sg_ws {
  uv_tcp_t tcp;
  uv_timer_t timer;
  const sg_config_t *cfg;
  const sg_ws_cbs_t *cbs;
  wslay_event_context_ptr ctx;
  sg_tls_t *tls;        /* NULL on a plain ws:// listener */
  sg_buf_t in;          /* unread input: handshake bytes, then WebSocket bytes */
  size_t in_off;        /* first unread byte of in */
  sg_buf_t out;         /* bytes produced by wslay, not yet handed to uv_write */
  size_t inflight;      /* bytes handed to uv_write, not yet written */
  size_t fresh;         /* bytes queued since the last flush began */
  int state;
  int handles_open;
  unsigned gone : 1;       /* on_gone_cb was called */
  unsigned shut : 1;       /* uv_shutdown was requested */
  unsigned flush_queued : 1;
  unsigned close_pending : 1; /* close to queue once the messages before it are out */
  unsigned paused : 1;        /* reading stopped by sg_ws_pause */
  unsigned upgraded : 1;      /* counted in sg_ws_open_count */
  uint16_t close_code;
  char close_reason[124];
  sg_ws_t *flush_next;
  uint64_t last_rx;     /* uv_now of the last byte read */
  uint64_t last_tx;     /* uv_now of the last message queued */
  uint64_t accepted_ns; /* uv_hrtime at accept, for the handshake histogram */
  char peer[64];
};

/* Per-thread set-up: the check handle that flushes written messages once
 * per loop iteration. Call once per loop before accepting. */
int sg_ws_loop_init(uv_loop_t *loop);
void sg_ws_loop_close(void);

/* Initialises ws's handles on loop; the listener then accepts into
 * &ws->tcp and calls sg_ws_start. */
int sg_ws_init(uv_loop_t *loop, sg_ws_t *ws, const sg_config_t *cfg, const sg_ws_cbs_t *cbs);
void sg_ws_start(sg_ws_t *ws);

/* Queues one message (copied). Returns 0, or a negative error when the
 * socket is closing. The bytes go out at the end of this loop iteration. */
int sg_ws_send(sg_ws_t *ws, const void *data, size_t len, int binary);
/* Bytes queued or being written but not yet on the wire. */
size_t sg_ws_pending(const sg_ws_t *ws);
/* Of those, the ones that were already waiting when the last write of
 * this connection started: what a client that reads is never far behind
 * on, whatever burst the current loop iteration queued. */
size_t sg_ws_backlog(const sg_ws_t *ws);

/* Stops handing messages up (the peer's writes back up in TCP once a
 * bound is read, and a peer that leaves is noticed), and starts again.
 * Paused time does not count as silence for heart-beats. */
void sg_ws_pause(sg_ws_t *ws);
void sg_ws_resume(sg_ws_t *ws);
/* Upgraded WebSockets on this thread not yet closed. */
size_t sg_ws_open_count(void);

/* Starts the close handshake with code and reason, after everything queued
 * has been written. */
void sg_ws_close(sg_ws_t *ws, uint16_t code, const char *reason);
/* Closes the socket now, dropping what is queued. */
void sg_ws_abort(sg_ws_t *ws);

#endif
