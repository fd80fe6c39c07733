/* SPDX-License-Identifier: MIT */
#ifndef SG_BROKER_H
#define SG_BROKER_H

/* AMQP 0-9-1 connections and channels, driven from the libuv loop.
 *
 * A connection's blocking login (librabbitmq-c) runs on the thread pool;
 * after it the link frames AMQP itself with librabbitmq-c's codec, and
 * nothing on the loop waits for the broker's socket. Frames are read when
 * uv_poll reports the socket readable; what is written goes into the
 * link's output buffer, which the loop drains when the socket is writable.
 * Past a bound (sg_amqp_set_link) the connection counts as blocked, as with
 * the broker's own connection.blocked, and the owners of its channels hold
 * their publishes until it drains. Heart-beats are negotiated; a link that
 * hears nothing for two intervals is lost.
 *
 * A channel (sg_amqp_t) is what sessions and the fan-out work with. In
 * per-session mode a channel owns a private connection, opened with the
 * session's credentials (sg_amqp_open); in shared mode channels are opened
 * on pooled connections (sg_amqp_open_on). Synchronous methods are
 * pipelined per channel; their replies arrive in order and are counted,
 * which is what the layer above needs to order its receipts. */

#include <amqp.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "stompgate/buf.h"
#include "stompgate/topic_match.h"

typedef struct sg_amqp sg_amqp_t;
typedef struct sg_amqp_conn sg_amqp_conn_t;
typedef struct sg_amqp_link sg_amqp_link_t;

typedef struct sg_amqp_delivery {
  amqp_bytes_t consumer_tag;
  uint64_t delivery_tag;
  int redelivered;
  amqp_bytes_t exchange;
  amqp_bytes_t routing_key;
  const amqp_basic_properties_t *props;
  const char *body;
  size_t body_len;
  uint64_t arrived_ns; /* uv_hrtime when its last frame was read */
} sg_amqp_delivery_t;

/* The stream offset a stream consumer's delivery carries (its
 * x-stream-offset header): 0 and *offset, or -1 when it has none. */
int sg_amqp_delivery_offset(const sg_amqp_delivery_t *d, int64_t *offset);

/* The keys d was routed by: its routing key, then its CC header's (BCC
 * is stripped by the broker). Fills keys[0..cap) and returns how many
 * there are, which may be more than cap. */
size_t sg_amqp_delivery_keys(const sg_amqp_delivery_t *d, sg_match_key_t *keys, size_t cap);

/* What a channel reports to its owner. */
typedef struct sg_amqp_cbs {
  /* The channel is open (status 0; publisher confirms are on), or could not
   * be opened: non-zero with a message (the broker's reply text when it
   * gave one; 403 and 530 are the login refusals). */
  void (*on_open_cb)(sg_amqp_t *a, int status, const char *message);
  /* A whole delivery; everything in d is borrowed for the call. */
  void (*on_delivery_cb)(sg_amqp_t *a, const sg_amqp_delivery_t *d);
  /* A publisher confirm (ack) or rejection (ack == 0). */
  void (*on_confirm_cb)(sg_amqp_t *a, uint64_t tag, int multiple, int ack);
  /* Another synchronous reply arrived: a->rpc_done went up. */
  void (*on_progress_cb)(sg_amqp_t *a);
  /* The broker cancelled a consumer (its queue was deleted). */
  void (*on_cancel_cb)(sg_amqp_t *a, amqp_bytes_t consumer_tag);
  /* The channel or its connection failed. code is the AMQP reply code
   * (404, 406, 403, 320 ...) or 0 for a socket failure. Nothing more is
   * delivered; close the channel. */
  void (*on_lost_cb)(sg_amqp_t *a, int code, const char *text);
  /* sg_amqp_close finished: the owner may free the memory holding a.
   * Always called from a later loop iteration than sg_amqp_close. */
  void (*on_closed_cb)(sg_amqp_t *a);
  /* The broker blocked (1) or unblocked (0) publishing on the channel's
   * connection (resource alarm). Optional. */
  void (*on_blocked_cb)(sg_amqp_t *a, int blocked);
} sg_amqp_cbs_t;

enum sg_amqp_state {
  SG_AMQP_IDLE = 0, /* never opened */
  SG_AMQP_LOGIN,    /* connection login or channel.open in progress */
  SG_AMQP_OPEN,
  SG_AMQP_CLOSING,  /* sg_amqp_close called, waiting for the broker */
  SG_AMQP_DEAD,     /* lost; waiting for sg_amqp_close */
  SG_AMQP_CLOSED
};

typedef struct sg_amqp_rpc {
  amqp_method_number_t expect;
  uint64_t sent_ns; /* uv_hrtime when sent: /metrics' round trip */
} sg_amqp_rpc_t;

/* Send times of the latest publishes, for the confirm latency histogram:
 * tag t is at t % SG_AMQP_PUB_RING while pub_seq - t < SG_AMQP_PUB_RING
 * (publishes further behind their confirm are not measured). */
#define SG_AMQP_PUB_RING 64

struct sg_amqp {
  sg_amqp_conn_t *conn;
  const sg_amqp_cbs_t *cbs;
  void *data;          /* the owner's */
  int state;
  uint16_t channel;
  unsigned private_conn : 1; /* conn was opened for this channel alone */
  unsigned skip_content : 1;
  unsigned in_delivery : 1;
  unsigned reaping : 1;
  unsigned assembling : 1; /* counted in conn->assembling */
  sg_amqp_t *reap_next;
  /* While it waits for a pooled connection: its link in the pool's list,
   * undone by sg_amqp_close. */
  sg_amqp_t *wait_next, **wait_pprev;
  /* Pipelined synchronous methods waiting for their reply. */
  sg_amqp_rpc_t *rpcs;
  size_t rpc_head, rpc_len, rpc_cap;
  uint64_t rpc_sent;  /* synchronous methods sent */
  uint64_t rpc_done;  /* replies received */
  uint64_t open_seq;  /* the reply that completes the opening */
  uint64_t pub_seq;   /* publishes sent (= last confirm tag) */
  uint64_t *pub_ns;   /* SG_AMQP_PUB_RING send times (0: confirmed), from the first publish */
  /* Delivery being assembled. */
  sg_amqp_delivery_t cur;
  uint64_t body_size;
  sg_buf_t body;
};

/* What a pooled connection reports to the pool. */
typedef struct sg_amqp_conn_cbs {
  /* Login finished: 0, or an error as for sg_amqp_cbs_t.on_open_cb. */
  void (*on_open_cb)(sg_amqp_conn_t *c, int status, const char *message);
  /* The connection failed, after every channel on it got on_lost_cb. */
  void (*on_lost_cb)(sg_amqp_conn_t *c, int code, const char *text);
  /* Closed, and no channel refers to it any more: free c. */
  void (*on_closed_cb)(sg_amqp_conn_t *c);
} sg_amqp_conn_cbs_t;

struct sg_amqp_conn {
  uv_loop_t *loop;
  const sg_amqp_conn_cbs_t *cbs;
  void *data; /* the owner's */
  int kind;   /* the owner's */
  int state;  /* enum sg_amqp_state */
  amqp_connection_state_t conn; /* librabbitmq-c: the login; afterwards only over TLS */
  uv_work_t work;
  uv_poll_t poll;
  uv_timer_t timer;
  int handles_open;
  unsigned poll_init : 1;
  unsigned close_requested : 1;
  unsigned handles_closed : 1;
  /* Publishing is held: the broker sent connection.blocked, or the link's
   * unsent output passed its bound. */
  unsigned blocked : 1;
  unsigned broker_blocked : 1; /* connection.blocked from the broker */
  unsigned out_full : 1;       /* unsent output over the bound */
  unsigned no_confirms : 1;    /* the owner's: channels opened on it skip confirm.select */
  sg_amqp_link_t *link;        /* framing and buffers, once logged in */
  uint64_t last_rx;            /* uv_now when bytes last came from the broker */
  uint64_t last_tx;            /* uv_now when a frame was last queued for it */
  char *host, *user, *password, *vhost, *name;
  int port;
  char node[80];               /* "host:port" the login reached */
  unsigned counted : 1;        /* in /metrics' stompgate_broker_links */
  int frame_max;               /* asked for at login */
  uint64_t heartbeat_ms;       /* agreed at login; 0: none */
  size_t assembling;           /* channels in the middle of a delivery */
  int login_status;
  int failed_over;  /* the login had to skip the preferred node */
  uint64_t login_start_ns;
  char login_message[256];
  sg_amqp_t **chans; /* by channel number; NULL where free */
  uint32_t chans_cap; /* entries in chans (channel 0 is never used) */
  uint16_t channel_max;
  size_t nchans;     /* channels attached, including closing ones */
  sg_amqp_t *reap_head;
};

/* Makes every later login use amqps:// (enabled), verifying the broker's
 * certificate and host name against ca_file (NULL: the system store)
 * unless verify is 0. Copies ca_file. Call before the first login. 0 or
 * -1. */
int sg_amqp_set_tls(int enabled, const char *ca_file, int verify);

/* The broker nodes (a cluster) logins may use, in order. Copies the host
 * names and ports; only the first list given counts. 0 or -1. A login
 * tries the preferred node first, then the others, and prefers the one
 * that answered from then on. */
int sg_amqp_set_nodes(const sg_broker_addr_t *list, size_t n);
/* Link settings for every later connection: the AMQP heart-beat interval
 * asked for at login (0: none), the frame_max of a session's private
 * connection (pooled connections ask for SG_AMQP_FRAME_MAX), and how many
 * unsent bytes a connection may hold before its publishers are held. */
#define SG_AMQP_FRAME_MAX 131072
void sg_amqp_set_link(unsigned heartbeat_s, int session_frame_max, size_t output_limit);
/* Per-session mode (sg_amqp_open): logins with the same credentials, vhost
 * and broker within window_ms of a connection's own login share it, a
 * channel each, up to max_sessions on it. max_sessions 1 or window_ms 0
 * gives every sg_amqp_open a connection of its own. */
void sg_amqp_set_session_sharing(size_t max_sessions, uint64_t window_ms);

/* Makes node i (an index into that list) the first one tried. */
void sg_amqp_prefer_node(size_t i);
size_t sg_amqp_preferred_node(void);

/* Thread pool only: connects and logs in with blocking calls. Returns the
 * connection, or NULL with *status the broker's refusal code (403 access
 * refused, 530 no such vhost) or -1, and message filled. With a node list
 * (sg_amqp_set_nodes) host and port are only used when it is empty; a
 * login that had to pass over the preferred node sets *failed_over when
 * failed_over is not NULL. */
amqp_connection_state_t sg_amqp_login_blocking(const char *host, int port, const char *user,
                                               const char *password, const char *vhost,
                                               const char *conn_name, int *status,
                                               char *message, size_t cap, int *failed_over);

/* Per-thread set-up; called again it does nothing. 0 or a libuv error. */
int sg_amqp_loop_init(uv_loop_t *loop);

/* Per-session mode: opens a channel on a connection logged in with these
 * credentials: one of its own, or one that a login with the same
 * credentials just opened (sg_amqp_set_session_sharing). Copies its
 * arguments. on_open_cb reports the result.
 * 0 or a negative error (then nothing was started). */
int sg_amqp_open(sg_amqp_t *a, uv_loop_t *loop, const sg_amqp_cbs_t *cbs, const char *host,
                 int port, const char *user, const char *password, const char *vhost,
                 const char *conn_name);

/* Starts a connection's login. Copies its arguments. 0 or a negative
 * error (then c is untouched and need not be closed). */
int sg_amqp_conn_open(sg_amqp_conn_t *c, uv_loop_t *loop, const sg_amqp_conn_cbs_t *cbs,
                      const char *host, int port, const char *user, const char *password,
                      const char *vhost, const char *conn_name);
/* Closes the connection (its channels get on_lost_cb first);
 * on_closed_cb follows once every channel is closed. */
void sg_amqp_conn_close(sg_amqp_conn_t *c);
/* Channels that can still be opened on c. */
size_t sg_amqp_conn_room(const sg_amqp_conn_t *c);

/* Shared mode: opens a channel on an open connection. 0, UV_ENOTCONN when c
 * is not open, UV_EBUSY when it has no free channel number. */
int sg_amqp_open_on(sg_amqp_t *a, sg_amqp_conn_t *c, const sg_amqp_cbs_t *cbs);

/* Sends a synchronous method on the channel whose reply is expect. decoded
 * is borrowed for the call. Returns the method's sequence number (>= 1):
 * its reply has arrived once a->rpc_done >= it. Negative on failure. */
int64_t sg_amqp_rpc(sg_amqp_t *a, amqp_method_number_t method, void *decoded,
                    amqp_method_number_t expect);

/* basic.consume of queue on consumer tag, as sg_amqp_rpc. args borrowed. */
int64_t sg_amqp_consume(sg_amqp_t *a, const char *queue, const char *tag, int no_ack,
                        amqp_table_t args);
/* Sends an asynchronous method (basic.ack, basic.nack ...). */
int sg_amqp_send(sg_amqp_t *a, amqp_method_number_t method, void *decoded);
/* Publishes; *seq gets the confirm tag. Borrows everything. */
int sg_amqp_publish(sg_amqp_t *a, amqp_bytes_t exchange, amqp_bytes_t routing_key,
                    const amqp_basic_properties_t *props, amqp_bytes_t body, uint64_t *seq);

/* Closes the channel (and a private connection) politely; on_closed_cb
 * follows. Safe in any state and from inside this channel's callbacks. */
void sg_amqp_close(sg_amqp_t *a);

#endif
