/* SPDX-License-Identifier: MIT */
#ifndef SG_BROKER_H
#define SG_BROKER_H

/* One AMQP 0-9-1 connection with one channel, driven from the libuv loop.
 * The blocking login runs on the thread pool; after it, librabbitmq-c is
 * used as a framing layer only: methods go out with amqp_send_method and
 * frames are read with a zero timeout when uv_poll reports the socket
 * readable, so the loop never waits for the broker. Synchronous methods are
 * pipelined; their replies arrive in order and are counted, which is what
 * the layer above needs to order its receipts. */

#include <amqp.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "stompgate/buf.h"

typedef struct sg_amqp sg_amqp_t;

typedef struct sg_amqp_delivery {
  amqp_bytes_t consumer_tag;
  uint64_t delivery_tag;
  int redelivered;
  amqp_bytes_t exchange;
  amqp_bytes_t routing_key;
  const amqp_basic_properties_t *props;
  const char *body;
  size_t body_len;
} sg_amqp_delivery_t;

typedef struct sg_amqp_cbs {
  /* Login finished: status 0, or non-zero with a message (the broker's
   * reply text when it gave one). */
  void (*on_open_cb)(sg_amqp_t *a, int status, const char *message);
  /* A whole delivery; everything in d is borrowed for the call. */
  void (*on_delivery_cb)(sg_amqp_t *a, const sg_amqp_delivery_t *d);
  /* A publisher confirm (ack) or rejection (ack == 0). */
  void (*on_confirm_cb)(sg_amqp_t *a, uint64_t tag, int multiple, int ack);
  /* Another synchronous reply arrived: a->rpc_done went up. */
  void (*on_progress_cb)(sg_amqp_t *a);
  /* The broker cancelled a consumer (its queue was deleted). */
  void (*on_cancel_cb)(sg_amqp_t *a, amqp_bytes_t consumer_tag);
  /* The channel or connection failed. code is the AMQP reply code (404,
   * 406, 403, 320 ...) or 0 for a socket failure. Nothing more is
   * delivered; close the link. */
  void (*on_lost_cb)(sg_amqp_t *a, int code, const char *text);
  /* All handles are closed and the connection destroyed: free a. */
  void (*on_closed_cb)(sg_amqp_t *a);
} sg_amqp_cbs_t;

enum sg_amqp_state {
  SG_AMQP_IDLE = 0, SG_AMQP_LOGIN, SG_AMQP_OPEN, SG_AMQP_CLOSING, SG_AMQP_DEAD, SG_AMQP_CLOSED
};

typedef struct sg_amqp_rpc {
  amqp_method_number_t expect;
} sg_amqp_rpc_t;

struct sg_amqp {
  uv_loop_t *loop;
  const sg_amqp_cbs_t *cbs;
  int state;
  amqp_connection_state_t conn;
  uv_work_t work;
  uv_poll_t poll;
  uv_timer_t timer;
  int handles_open;
  unsigned poll_init : 1;
  unsigned close_requested : 1;
  unsigned blocked : 1;   /* connection.blocked from the broker */
  unsigned skip_content : 1;
  unsigned in_delivery : 1;
  /* Login parameters and result, owned. */
  char *host, *user, *password, *vhost, *name;
  int port;
  int login_status;
  uint64_t login_start_ns;
  int failed_over; /* the login had to skip the preferred node */
  char login_message[256];
  /* Pipelined synchronous methods waiting for their reply. */
  sg_amqp_rpc_t *rpcs;
  size_t rpc_head, rpc_len, rpc_cap;
  uint64_t rpc_sent;  /* synchronous methods sent */
  uint64_t rpc_done;  /* replies received */
  uint64_t pub_seq;   /* publishes sent (= last confirm tag) */
  /* Delivery being assembled. */
  sg_amqp_delivery_t cur;
  uint64_t body_size;
  sg_buf_t body;
};

/* Makes every later link use amqps:// (enabled), verifying the broker's
 * certificate and host name against ca_file (NULL: the system store)
 * unless verify is 0. Copies ca_file. 0 or -1. */
int sg_amqp_set_tls(int enabled, const char *ca_file, int verify);

/* The broker nodes (a cluster) logins may use, in order. Copies the host
 * names and ports; only the first list given counts. 0 or -1. A login
 * tries the preferred node first, then the others, and prefers the one
 * that answered from then on. */
int sg_amqp_set_nodes(const sg_broker_addr_t *list, size_t n);
/* Makes node i (an index into that list) the first one tried. */
void sg_amqp_prefer_node(size_t i);
size_t sg_amqp_preferred_node(void);

/* Starts connecting and logging in with the given credentials. Copies its
 * arguments. on_open_cb reports the result. 0 or a negative error. */
int sg_amqp_open(sg_amqp_t *a, uv_loop_t *loop, const sg_amqp_cbs_t *cbs, const char *host,
                 int port, const char *user, const char *password, const char *vhost,
                 const char *conn_name);

/* Sends a synchronous method on channel 1 whose reply is expect. decoded is
 * borrowed for the call. Returns the method's sequence number (>= 1): its
 * reply has arrived once a->rpc_done >= it. Negative on failure. */
int64_t sg_amqp_rpc(sg_amqp_t *a, amqp_method_number_t method, void *decoded,
                    amqp_method_number_t expect);
/* Sends an asynchronous method on channel 1 (basic.ack, basic.nack ...). */
int sg_amqp_send(sg_amqp_t *a, amqp_method_number_t method, void *decoded);
/* Publishes; *seq gets the confirm tag. Borrows everything. */
int sg_amqp_publish(sg_amqp_t *a, amqp_bytes_t exchange, amqp_bytes_t routing_key,
                    const amqp_basic_properties_t *props, amqp_bytes_t body, uint64_t *seq);

/* Closes the connection politely (connection.close, short wait for
 * close-ok) and then the handles; on_closed_cb follows. Safe in any state
 * and from inside this link's callbacks. */
void sg_amqp_close(sg_amqp_t *a);

#endif
