/* SPDX-License-Identifier: MIT */
#ifndef SG_METRICS_H
#define SG_METRICS_H

/* Process-wide counters for /metrics. Every thread counts in a block of its
 * own (no locks or shared cache lines on the hot path); rendering adds the
 * blocks up and produces Prometheus text format 0.0.4. */

#include <stddef.h>
#include <stdint.h>

#include "stompgate/buf.h"
#include "stompgate/stomp_codec.h"

void sg_metrics_bytes_in(size_t n);
void sg_metrics_bytes_out(size_t n);
/* A message of plain bytes was sent compressed (permessage-deflate) in
 * deflated bytes. */
void sg_metrics_deflated(size_t plain, size_t deflated);
/* A WebSocket upgrade completed, seconds after the TCP accept. */
void sg_metrics_upgraded(double seconds);
/* An upgrade request was refused with this HTTP status. */
void sg_metrics_http_refused(int status);
/* A PROXY protocol header (version 1 or 2) was accepted. */
void sg_metrics_proxy_header(int version);
/* A connection was closed for its PROXY header: one of sg_proxy_info_t's
 * reasons, "truncated" (the peer closed or timed out inside the header) or
 * "untrusted" (a header from a peer that is not a trusted-proxy). */
void sg_metrics_proxy_refused(const char *reason);
/* A request carried X-Forwarded-For or Forwarded: honoured (a trusted
 * proxy) or refused. */
void sg_metrics_forwarded(int honoured);
/* A session that had completed its upgrade ended; reason is the text the
 * session logs ("DISCONNECT", "ERROR ...", ...), classified here. NULL for
 * a connection that never upgraded: not counted. */
void sg_metrics_session_closed(const char *reason);
void sg_metrics_frame_in(sg_stomp_cmd_t cmd);
/* A frame sent to a client, read from its encoded bytes (borrowed). */
void sg_metrics_frame_out(const char *frame, size_t len);
void sg_metrics_delivery(void);
void sg_metrics_confirm(int ack);
void sg_metrics_client_ack(int ack);
/* An ERROR frame with this message header (borrowed) was sent. */
void sg_metrics_error(const char *message);
/* Messages dropped because a client reads too slowly. */
void sg_metrics_slow_drop(void);
/* A delivery's MESSAGE was handed to the client's transport, seconds
 * after its last AMQP frame was read; shared is the relay mode. */
void sg_metrics_delivery_latency(const char *relay, double seconds);
/* A publish was confirmed (or rejected), seconds after it was sent. */
void sg_metrics_confirm_latency(double seconds);
/* A synchronous AMQP method got its reply, seconds after it was sent. */
void sg_metrics_rpc_latency(double seconds);
/* A session that had completed its upgrade ended after seconds. */
void sg_metrics_session_duration(double seconds);
/* An AMQP connection to node ("host:port") opened (1) or closed (-1). */
void sg_metrics_broker_conn(const char *node, int delta);
/* Broker AMQP login finished after seconds; ok is 0 on failure. */
void sg_metrics_broker_login(double seconds, int ok);
/* The periodic broker probe's result. A change from down to up after the
 * first success counts as a reconnect. */
void sg_metrics_broker_link(int up);
int sg_metrics_broker_up(void);
/* The probe moved new logins to another cluster node. */
void sg_metrics_broker_failover(void);
/* A broker connection was lost because the broker sent nothing for two
 * heart-beat intervals. */
void sg_metrics_broker_heartbeat_timeout(void);
/* A broker connection's unsent output passed its bound, so its publishing
 * sessions stopped being read (held 1), or drained again (held 0). */
void sg_metrics_broker_link_held(int held);
/* Shared mode: a fan-out queue (queues), binding key (keys) or binding on
 * an exact-key exchange (exact) came (1) or went (-1). */
void sg_metrics_shared_gauges(int queues, int keys, int exact);
/* n WebSockets gave their wslay context back (n > 0), or one made it
 * again or closed while parked (n = -1). */
void sg_metrics_ws_park(int64_t n);
/* Per-session mode: a login opened a connection (0) or joined one (1). */
void sg_metrics_session_link(int joined);
/* A shared subscription queue moved to a live node after its connection
 * was lost. */
void sg_metrics_shared_moved(void);
/* Topics with history: a SUBSCRIBE named an offset to resume from; a
 * catch-up moved onto the live feed; a message came from a stream read of
 * a session's own; a resume found its offset past the retention. */
void sg_metrics_history_resume(void);
void sg_metrics_history_switch(void);
void sg_metrics_history_catchup_msg(void);
void sg_metrics_history_incomplete(void);
/* A shared-mode session's channel was lost with its connection while it
 * held nothing the broker owed: the session stays open. */
void sg_metrics_session_moved(void);
/* A session stopped reading its client because the broker would not take
 * its publishes. */
void sg_metrics_session_held(void);
/* A connection on the STOMP listener (--stomp-listen) became a session
 * (accepted 1), or was refused by admission (0). */
void sg_metrics_stomp_tcp(int accepted);
/* An accepted TCP connection (HTTP, WebSocket, SockJS request, STOMP over
 * TCP) opened (1) or closed (-1) on this thread. */
void sg_metrics_connection(int delta);

typedef struct sg_metrics_gauges {
  size_t sessions_open;
  int draining;
} sg_metrics_gauges_t;

/* Appends the whole exposition to out. 0 or SG_ERR_NOMEM. */
int sg_metrics_render(sg_buf_t *out, const sg_metrics_gauges_t *g);

#endif
