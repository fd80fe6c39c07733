/* SPDX-License-Identifier: MIT */
#include "broker.h"

#include <amqp_framing.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "sg_config.h"
#include "stompgate/container.h"
#include "stompgate/err.h"

#define CLOSE_OK_WAIT_MS 1000
#define LOGIN_TIMEOUT_S 10
#define NODE_CONNECT_TIMEOUT_S 3

static void conn_finish(sg_amqp_conn_t *c);
static void conn_maybe_free(sg_amqp_conn_t *c);
static void chan_finish(sg_amqp_t *a);

/* ---------- deferred channel close callbacks ---------- */

/* on_closed_cb must not run inside sg_amqp_close (the owner may free the
 * channel from it); finished channels wait here for the next iteration. */
static __thread uv_idle_t reap_check;
static __thread int reap_ready;
static __thread sg_amqp_t *reap_head;

static void slink_check(void);
static void slink_idle(sg_amqp_conn_t *c);
static const sg_amqp_conn_cbs_t slink_cbs;

static void reap_cb(uv_idle_t *h) {
  uv_idle_stop(h);
  while (reap_head) {
    sg_amqp_t *a = reap_head;
    reap_head = a->reap_next;
    a->reap_next = NULL;
    a->reaping = 0;
    a->cbs->on_closed_cb(a);
  }
  slink_check();
}

int sg_amqp_loop_init(uv_loop_t *loop) {
  if (reap_ready) return 0;
  /* An idle handle, not a check: a pending one keeps the loop from
   * blocking in poll, so owners hear at once even when nothing else
   * happens. */
  int r = uv_idle_init(loop, &reap_check);
  if (r) return r;
  uv_unref((uv_handle_t *)&reap_check);
  reap_ready = 1;
  return 0;
}

/* ---------- where and how logins connect ---------- */

/* Set once at start-up, before the first login (sg_amqp_set_link). */
static struct {
  unsigned heartbeat_s;
  int session_frame_max;
  size_t output_limit;
  size_t session_max;          /* sessions one per-session login may carry */
  uint64_t session_window_ms;  /* ... joining within this of its login */
} link_opts = {10, 16384, 1u << 20, 1, 0};

void sg_amqp_set_link(unsigned heartbeat_s, int session_frame_max, size_t output_limit) {
  link_opts.heartbeat_s = heartbeat_s;
  link_opts.session_frame_max = session_frame_max;
  link_opts.output_limit = output_limit;
}

void sg_amqp_set_session_sharing(size_t max_sessions, uint64_t window_ms) {
  link_opts.session_max = max_sessions;
  link_opts.session_window_ms = window_ms;
}

/* amqps:// settings shared by every login; set once before the first. */
static struct {
  int enabled;
  int verify;
  char *ca_file;
} link_tls;

int sg_amqp_set_tls(int enabled, const char *ca_file, int verify) {
  link_tls.enabled = enabled;
  link_tls.verify = verify;
  free(link_tls.ca_file);
  link_tls.ca_file = ca_file ? strdup(ca_file) : NULL;
  /* Initialise OpenSSL for librabbitmq here, on the main thread, rather
   * than lazily inside the first login on the thread pool. */
  if (enabled && amqp_initialize_ssl_library() != AMQP_STATUS_OK) return -1;
  return 0;
}

/* Cluster nodes, fixed before the first login; logins start at the one
 * last seen working, which every thread may update. */
static struct {
  char **host;
  int *port;
  size_t n;
  size_t preferred; /* accessed with __atomic builtins */
} nodes;

int sg_amqp_set_nodes(const sg_broker_addr_t *list, size_t n) {
  nodes.host = calloc(n, sizeof(*nodes.host));
  nodes.port = calloc(n, sizeof(*nodes.port));
  if (nodes.host == NULL || nodes.port == NULL) return -1;
  for (size_t i = 0; i < n; i++) {
    if ((nodes.host[i] = strdup(list[i].host)) == NULL) return -1;
    nodes.port[i] = list[i].port;
  }
  nodes.n = n;
  return 0;
}

void sg_amqp_prefer_node(size_t i) {
  if (i < nodes.n) __atomic_store_n(&nodes.preferred, i, __ATOMIC_RELAXED);
}

size_t sg_amqp_preferred_node(void) { return __atomic_load_n(&nodes.preferred, __ATOMIC_RELAXED); }

static amqp_socket_t *new_socket(amqp_connection_state_t conn) {
  if (!link_tls.enabled) return amqp_tcp_socket_new(conn);
  amqp_socket_t *sock = amqp_ssl_socket_new(conn);
  if (sock == NULL) return NULL;
  /* Output waits in the link's buffer, which may move between a write
   * that would block and its retry. */
  SSL_CTX_set_mode(amqp_ssl_socket_get_context(sock), SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  amqp_ssl_socket_set_verify_peer(sock, link_tls.verify);
  amqp_ssl_socket_set_verify_hostname(sock, link_tls.verify);
  if (link_tls.ca_file) {
    if (amqp_ssl_socket_set_cacert(sock, link_tls.ca_file) != AMQP_STATUS_OK) return NULL;
  } else {
    SSL_CTX_set_default_verify_paths(amqp_ssl_socket_get_context(sock));
  }
  return sock;
}

/* ---------- the link: AMQP frames over the loop, never waiting ---------- */

/* librabbitmq-c logs in (on the thread pool, with blocking calls); after
 * that the link does the framing itself with librabbitmq-c's codec
 * (amqp_encode_method, amqp_decode_method and their properties twins), so
 * that:
 *  - nothing on the loop waits for a broker socket: frames are encoded
 *    into the link's output buffer, written while the socket takes them,
 *    and the rest when uv_poll reports it writable;
 *  - an idle link holds almost nothing: the input and output buffers and
 *    the decoding pool are given back once drained. librabbitmq-c's own
 *    connection state costs about 50 KiB of touched memory per connection
 *    (a 128 KiB input buffer, a 64 KiB page per channel); over plain TCP it
 *    is freed after the login and the link keeps a duplicate of its
 *    socket. Over TLS the OpenSSL session lives in librabbitmq-c's socket
 *    object, so the state is kept, only as that socket's holder, and the
 *    link reads and writes through the socket's own class of functions
 *    (librabbitmq-c's private amqp_socket.h; the same layout since 0.5). */
typedef struct sock_class {
  ssize_t (*send)(void *sock, const void *buf, size_t len, int flags);
  ssize_t (*recv)(void *sock, void *buf, size_t len, int flags);
  int (*open)(void *sock, const char *host, int port, const struct timeval *timeout);
  int (*close)(void *sock, int force);
  int (*get_sockfd)(void *sock);
  void (*del)(void *sock);
} sock_class_t;

/* librabbitmq-c's "would block" statuses. */
#define SOCK_NEEDREAD (-0x1301)
#define SOCK_NEEDWRITE (-0x1302)

#define FRAME_HEADER 7 /* type, channel, size */
#define FRAME_END_OCTET 0xCE
/* Input is read this much at a time, and the buffer grows to a frame. */
#define READ_CHUNK 16384
#define POOL_PAGE 4096

struct sg_amqp_link {
  int fd;                    /* plain TCP: the socket, owned; -1 over TLS */
  void *sock;                /* TLS: librabbitmq-c's socket object */
  sg_buf_t out;              /* bytes not yet written start at out_off */
  size_t out_off;
  sg_buf_t in;               /* bytes read, not yet framed, start at in_off */
  size_t in_off;
  amqp_pool_t pool;          /* decoded frames; emptied when no delivery spans frames */
  size_t frame_max;
  unsigned want_write : 1;   /* the poll handle waits for writability */
  unsigned failed : 1;
};

enum { IO_AGAIN = -1, IO_ERROR = -2, IO_EOF = -3 };

static ssize_t link_write(sg_amqp_link_t *l, const void *buf, size_t len) {
  if (l->fd >= 0) {
    for (;;) {
      ssize_t n = send(l->fd, buf, len, MSG_NOSIGNAL);
      if (n >= 0) return n;
      if (errno == EINTR) continue;
      return errno == EAGAIN || errno == EWOULDBLOCK ? IO_AGAIN : IO_ERROR;
    }
  }
  ssize_t n = (*(const sock_class_t **)l->sock)->send(l->sock, buf, len, 0);
  if (n >= 0) return n;
  return n == SOCK_NEEDWRITE || n == SOCK_NEEDREAD ? IO_AGAIN : IO_ERROR;
}

static ssize_t link_read(sg_amqp_link_t *l, void *buf, size_t len) {
  if (l->fd >= 0) {
    for (;;) {
      ssize_t n = recv(l->fd, buf, len, 0);
      if (n > 0) return n;
      if (n == 0) return IO_EOF;
      if (errno == EINTR) continue;
      return errno == EAGAIN || errno == EWOULDBLOCK ? IO_AGAIN : IO_ERROR;
    }
  }
  ssize_t n = (*(const sock_class_t **)l->sock)->recv(l->sock, buf, len, 0);
  if (n > 0) return n;
  if (n == 0) return IO_EOF;
  return n == SOCK_NEEDWRITE || n == SOCK_NEEDREAD ? IO_AGAIN : IO_ERROR;
}

static size_t link_pending(const sg_amqp_link_t *l) { return l->out.len - l->out_off; }

static void poll_cb(uv_poll_t *p, int status, int events);

/* Watches for writability only while something waits to be written. */
static void link_watch(sg_amqp_conn_t *c) {
  sg_amqp_link_t *l = c->link;
  unsigned want = link_pending(l) > 0;
  if (want == l->want_write || !c->poll_init || c->state != SG_AMQP_OPEN) return;
  l->want_write = want;
  uv_poll_start(&c->poll, UV_READABLE | UV_DISCONNECT | (want ? UV_WRITABLE : 0), poll_cb);
}

/* Tells the channels' owners when publishing becomes held or free again;
 * the reason (the broker's connection.blocked or a full link) is the
 * connection's. */
static void conn_update_blocked(sg_amqp_conn_t *c) {
  unsigned blocked = c->broker_blocked || c->out_full;
  if (blocked == c->blocked) return;
  c->blocked = blocked;
  for (uint32_t i = 1; i < c->chans_cap && c->nchans; i++) {
    sg_amqp_t *a = c->chans[i];
    if (a && a->state == SG_AMQP_OPEN && a->cbs->on_blocked_cb) a->cbs->on_blocked_cb(a, blocked);
  }
}

/* Holds the connection's publishers while its unsent output is over the
 * bound, and frees them once half of that is written. */
static void link_check_bound(sg_amqp_conn_t *c) {
  size_t n = link_pending(c->link);
  if (!c->out_full && n > link_opts.output_limit) {
    c->out_full = 1;
    sg_metrics_broker_link_held(1);
    sg_log_info("broker link %s (%s:%d): %zu bytes wait for the broker to read; its publishing "
                "sessions are not read until it drains",
                c->name, c->host, c->port, n);
    conn_update_blocked(c);
  } else if (c->out_full && n <= link_opts.output_limit / 2) {
    c->out_full = 0;
    sg_metrics_broker_link_held(0);
    sg_log_info("broker link %s (%s:%d) drained; its publishing sessions are read again", c->name,
                c->host, c->port);
    conn_update_blocked(c);
  }
}

/* Writes what the socket takes now. 0, or -1 when the socket failed. */
static int link_flush(sg_amqp_conn_t *c) {
  sg_amqp_link_t *l = c->link;
  while (l->out_off < l->out.len) {
    ssize_t n = link_write(l, l->out.base + l->out_off, l->out.len - l->out_off);
    if (n > 0) {
      l->out_off += (size_t)n;
      continue;
    }
    if (n == IO_AGAIN) break;
    l->failed = 1;
    return -1;
  }
  if (l->out_off == l->out.len) {
    /* An idle link holds no buffer. */
    sg_buf_free(&l->out);
    l->out_off = 0;
  } else if (l->out_off >= 65536 && l->out_off * 2 >= l->out.len) {
    sg_buf_consume(&l->out, l->out_off);
    l->out_off = 0;
  }
  link_watch(c);
  return 0;
}

/* Ends a group of frames: writes them unless the socket is known to be
 * full, and holds the publishers past the bound. 0 or UV_EPIPE. */
static int link_commit(sg_amqp_conn_t *c) {
  sg_amqp_link_t *l = c->link;
  c->last_tx = uv_now(c->loop);
  if (!l->want_write && link_flush(c) != 0) return UV_EPIPE;
  link_watch(c);
  link_check_bound(c);
  return 0;
}

static void put_u16(char *p, uint16_t v) {
  p[0] = (char)(v >> 8);
  p[1] = (char)v;
}
static void put_u32(char *p, uint32_t v) {
  put_u16(p, (uint16_t)(v >> 16));
  put_u16(p + 2, (uint16_t)v);
}
static uint16_t get_u16(const char *p) {
  return (uint16_t)(((unsigned char)p[0] << 8) | (unsigned char)p[1]);
}
static uint32_t get_u32(const char *p) { return ((uint32_t)get_u16(p) << 16) | get_u16(p + 2); }
static uint64_t get_u64(const char *p) { return ((uint64_t)get_u32(p) << 32) | get_u32(p + 4); }

/* Appends one frame whose payload encode() writes into at most room
 * bytes, returning its length or a negative error. 0 or an error. */
static int put_frame(sg_amqp_link_t *l, uint8_t type, uint16_t channel, size_t prefix_len,
                     const char *prefix, int (*encode)(void *arg, amqp_bytes_t room), void *arg) {
  size_t room = l->frame_max - FRAME_HEADER - 1;
  if (sg_buf_reserve(&l->out, l->frame_max) != 0) return SG_ERR_NOMEM;
  char *f = l->out.base + l->out.len;
  f[0] = (char)type;
  put_u16(f + 1, channel);
  memcpy(f + FRAME_HEADER, prefix, prefix_len);
  int n = encode ? encode(arg, (amqp_bytes_t){room - prefix_len, f + FRAME_HEADER + prefix_len}) : 0;
  if (n < 0) return n;
  size_t size = prefix_len + (size_t)n;
  put_u32(f + 3, (uint32_t)size);
  f[FRAME_HEADER + size] = (char)FRAME_END_OCTET;
  l->out.len += FRAME_HEADER + size + 1;
  return 0;
}

typedef struct encode_arg {
  amqp_method_number_t id;
  uint16_t class_id;
  const void *decoded;
} encode_arg_t;

static int encode_method_cb(void *arg, amqp_bytes_t room) {
  encode_arg_t *e = arg;
  return amqp_encode_method(e->id, (void *)e->decoded, room);
}

static int encode_props_cb(void *arg, amqp_bytes_t room) {
  encode_arg_t *e = arg;
  return amqp_encode_properties(e->class_id, (void *)e->decoded, room);
}

static int put_method(sg_amqp_link_t *l, uint16_t channel, amqp_method_number_t id,
                      const void *decoded) {
  char mid[4];
  put_u32(mid, id);
  encode_arg_t e = {id, 0, decoded};
  return put_frame(l, AMQP_FRAME_METHOD, channel, 4, mid, encode_method_cb, &e);
}

/* Sends a method frame. 0, or UV_EPIPE when the link failed. */
static int link_send_method(sg_amqp_conn_t *c, uint16_t channel, amqp_method_number_t id,
                            const void *decoded) {
  sg_amqp_link_t *l = c->link;
  if (l == NULL || l->failed || put_method(l, channel, id, decoded) != 0) return UV_EPIPE;
  return link_commit(c);
}

/* basic.publish, its content header and its body frames. */
static int link_publish(sg_amqp_conn_t *c, uint16_t channel, amqp_bytes_t exchange,
                        amqp_bytes_t routing_key, const amqp_basic_properties_t *props,
                        amqp_bytes_t body) {
  sg_amqp_link_t *l = c->link;
  if (l == NULL || l->failed) return UV_EPIPE;
  amqp_basic_publish_t m;
  memset(&m, 0, sizeof(m));
  m.exchange = exchange;
  m.routing_key = routing_key;
  amqp_basic_properties_t none;
  if (props == NULL) {
    memset(&none, 0, sizeof(none));
    props = &none;
  }
  char head[12];
  put_u16(head, AMQP_BASIC_CLASS);
  put_u16(head + 2, 0);
  uint64_t size = body.len;
  put_u32(head + 4, (uint32_t)(size >> 32));
  put_u32(head + 8, (uint32_t)size);
  encode_arg_t e = {0, AMQP_BASIC_CLASS, props};
  if (put_method(l, channel, AMQP_BASIC_PUBLISH_METHOD, &m) != 0 ||
      put_frame(l, AMQP_FRAME_HEADER, channel, sizeof(head), head, encode_props_cb, &e) != 0)
    return UV_EPIPE;
  size_t chunk = l->frame_max - FRAME_HEADER - 1;
  for (size_t off = 0; off < body.len; off += chunk) {
    size_t n = body.len - off < chunk ? body.len - off : chunk;
    if (put_frame(l, AMQP_FRAME_BODY, channel, n, (const char *)body.bytes + off, NULL, NULL) != 0)
      return UV_EPIPE;
  }
  return link_commit(c);
}

static int link_heartbeat(sg_amqp_conn_t *c) {
  sg_amqp_link_t *l = c->link;
  if (l == NULL || l->failed || put_frame(l, AMQP_FRAME_HEARTBEAT, 0, 0, "", NULL, NULL) != 0)
    return UV_EPIPE;
  return link_commit(c);
}

/* Decodes the frame at p (payload of size bytes) into f. Its bytes are
 * copied into the link's pool, so what f points to stays valid while a
 * delivery is assembled across frames. 0 or an error. */
static int link_decode(sg_amqp_link_t *l, const char *p, size_t size, amqp_frame_t *f) {
  memset(f, 0, sizeof(*f));
  f->frame_type = (uint8_t)p[0];
  f->channel = get_u16(p + 1);
  amqp_bytes_t b;
  amqp_pool_alloc_bytes(&l->pool, size ? size : 1, &b);
  if (b.bytes == NULL) return SG_ERR_NOMEM;
  memcpy(b.bytes, p + FRAME_HEADER, size);
  const char *q = b.bytes;
  switch (f->frame_type) {
  case AMQP_FRAME_METHOD:
    if (size < 4) return SG_ERR_INVALID;
    f->payload.method.id = get_u32(q);
    return amqp_decode_method(f->payload.method.id, &l->pool,
                              (amqp_bytes_t){size - 4, (char *)q + 4},
                              &f->payload.method.decoded) < 0 ? SG_ERR_INVALID : 0;
  case AMQP_FRAME_HEADER:
    if (size < 12) return SG_ERR_INVALID;
    f->payload.properties.class_id = get_u16(q);
    f->payload.properties.body_size = get_u64(q + 4);
    f->payload.properties.raw = (amqp_bytes_t){size - 12, (char *)q + 12};
    return amqp_decode_properties(f->payload.properties.class_id, &l->pool,
                                  f->payload.properties.raw,
                                  &f->payload.properties.decoded) < 0 ? SG_ERR_INVALID : 0;
  case AMQP_FRAME_BODY:
    f->payload.body_fragment = (amqp_bytes_t){size, (char *)q};
    return 0;
  case AMQP_FRAME_HEARTBEAT:
    return 0;
  default:
    return SG_ERR_INVALID;
  }
}

static void conn_frame(sg_amqp_conn_t *c, amqp_frame_t *f);

/* Takes the connection over from librabbitmq-c once its login is done.
 * Returns the socket to watch, or -1. */
static int link_install(sg_amqp_conn_t *c) {
  sg_amqp_link_t *l = calloc(1, sizeof(*l));
  if (l == NULL) return -1;
  int fm = amqp_get_frame_max(c->conn);
  l->frame_max = fm < 4096 ? 4096 : (size_t)fm;
  init_amqp_pool(&l->pool, POOL_PAGE);
  l->fd = -1;
  c->link = l;
  amqp_socket_t *sock = amqp_get_socket(c->conn);
  int fd = amqp_socket_get_sockfd(sock);
  /* Whole frames librabbitmq-c read past the login's last reply (rare: the
   * broker sends nothing unasked so soon) are handled as the link's. */
  while (amqp_data_in_buffer(c->conn)) {
    amqp_frame_t f;
    struct timeval zero = {0, 0};
    if (amqp_simple_wait_frame_noblock(c->conn, &f, &zero) != AMQP_STATUS_OK) break;
    conn_frame(c, &f);
  }
  if (link_tls.enabled) {
    l->sock = sock;
    return fd;
  }
  /* Plain TCP: the link keeps a duplicate of the socket and librabbitmq-c's
   * state goes, with its buffers (closing its descriptor leaves the socket
   * open through the duplicate). */
  l->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (l->fd < 0) return -1;
  amqp_destroy_connection(c->conn);
  c->conn = NULL;
  return l->fd;
}

/* Once the poll handle is closed. */
static void link_free(sg_amqp_conn_t *c) {
  sg_amqp_link_t *l = c->link;
  if (l == NULL) return;
  if (l->fd >= 0) close(l->fd);
  if (c->out_full) sg_metrics_broker_link_held(0);
  sg_buf_free(&l->out);
  sg_buf_free(&l->in);
  empty_amqp_pool(&l->pool);
  free(l);
  c->link = NULL;
}

/* Keepalive and TCP_USER_TIMEOUT follow the heart-beat, so the kernel
 * also gives up on a peer that stopped acknowledging within about the
 * time the heart-beats take to notice. */
static void link_tune_socket(int fd) {
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
  int hb = (int)link_opts.heartbeat_s;
  if (hb == 0) return;
  int idle = hb, intvl = hb > 1 ? hb / 2 : 1, cnt = 3;
  unsigned timeout_ms = 3u * (unsigned)hb * 1000u;
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
  setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &timeout_ms, sizeof(timeout_ms));
}

static void conn_lost(sg_amqp_conn_t *c, int code, const char *text);

/* Every half heart-beat: a link that heard nothing from the broker for two
 * intervals is lost; one that sent nothing for half an interval sends a
 * heart-beat. */
static void heartbeat_cb(uv_timer_t *t) {
  sg_amqp_conn_t *c = container_of(t, sg_amqp_conn_t, timer);
  if (c->state != SG_AMQP_OPEN) return;
  uint64_t now = uv_now(c->loop), hb_ms = c->heartbeat_ms;
  if (now - c->last_rx >= 2 * hb_ms) {
    char text[160];
    snprintf(text, sizeof(text), "no heart-beat from the broker at %s:%d for %.1f s", c->host,
             c->port, (double)(now - c->last_rx) / 1000);
    sg_log_warn("broker link %s lost: %s", c->name, text);
    sg_metrics_broker_heartbeat_timeout();
    conn_lost(c, 0, text);
    return;
  }
  if (now - c->last_tx >= hb_ms / 2 && link_heartbeat(c) != 0)
    conn_lost(c, 0, "Broker connection lost");
}

/* ---------- connections ---------- */

static void copy_reply_text(char *out, size_t cap, int code, amqp_bytes_t text) {
  snprintf(out, cap, "%d %.*s", code, (int)(text.len > 200 ? 200 : text.len),
           (const char *)text.bytes);
}

/* The client properties every login sends. */
typedef struct login_props {
  amqp_table_entry_t caps[5];
  amqp_table_entry_t props[4];
  amqp_table_t table;
} login_props_t;

static void login_props_init(login_props_t *lp, const char *conn_name) {
  static const char *const cap_names[5] = {"authentication_failure_close", "connection.blocked",
                                           "consumer_cancel_notify", "publisher_confirms",
                                           "basic.nack"};
  for (int i = 0; i < 5; i++) {
    lp->caps[i].key = amqp_cstring_bytes(cap_names[i]);
    lp->caps[i].value.kind = AMQP_FIELD_KIND_BOOLEAN;
    lp->caps[i].value.value.boolean = 1;
  }
  amqp_table_entry_t *p = lp->props;
  p[0].key = amqp_cstring_bytes("product");
  p[0].value.kind = AMQP_FIELD_KIND_UTF8;
  p[0].value.value.bytes = amqp_cstring_bytes("stompgate");
  p[1].key = amqp_cstring_bytes("version");
  p[1].value.kind = AMQP_FIELD_KIND_UTF8;
  p[1].value.value.bytes = amqp_cstring_bytes(SG_VERSION);
  p[2].key = amqp_cstring_bytes("capabilities");
  p[2].value.kind = AMQP_FIELD_KIND_TABLE;
  p[2].value.value.table.num_entries = 5;
  p[2].value.value.table.entries = lp->caps;
  p[3].key = amqp_cstring_bytes("connection_name");
  p[3].value.kind = AMQP_FIELD_KIND_UTF8;
  p[3].value.value.bytes = amqp_cstring_bytes(conn_name);
  lp->table.num_entries = 4;
  lp->table.entries = lp->props;
}

/* Appends to a login's message, "; " between the nodes' reasons; the
 * message stays terminated and *len never passes cap - 1. */
static void __attribute__((format(printf, 4, 5)))
msg_add(char *message, size_t cap, size_t *len, const char *fmt, ...) {
  if (*len + 1 >= cap) return;
  if (*len > 0) *len += (size_t)snprintf(message + *len, cap - *len, "; ");
  if (*len + 1 >= cap) {
    *len = cap - 1;
    return;
  }
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(message + *len, cap - *len, fmt, ap);
  va_end(ap);
  if (n > 0) *len = *len + (size_t)n < cap ? *len + (size_t)n : cap - 1;
}

/* One node: connect and log in. Returns the connection, or NULL with
 * *status the broker's refusal (403, 530: the same on every node of a
 * cluster) or -1 for a node that could not be reached or did not answer,
 * and a message appended at *mlen. */
static amqp_connection_state_t login_node(const char *h, int p, const char *user,
                                          const char *password, const char *vhost,
                                          const login_props_t *lp, int frame_max, int several,
                                          int *status, char *message, size_t cap, size_t *mlen) {
  /* With several nodes, a node that does not answer (down, or frozen with
   * its sockets open) should not hold the login up for long before the
   * next one is tried. */
  struct timeval tv = {LOGIN_TIMEOUT_S, 0};
  struct timeval node_tv = {several ? NODE_CONNECT_TIMEOUT_S : LOGIN_TIMEOUT_S, 0};
  *status = -1;
  amqp_connection_state_t conn = amqp_new_connection();
  amqp_socket_t *sock = conn ? new_socket(conn) : NULL;
  if (sock == NULL) {
    msg_add(message, cap, mlen, "cannot set up the broker socket%s",
            link_tls.enabled ? " (TLS settings)" : "");
    goto fail;
  }
  amqp_set_handshake_timeout(conn, &node_tv);
  amqp_set_rpc_timeout(conn, &tv);
  int r = amqp_socket_open_noblock(sock, h, p, &node_tv);
  if (r != AMQP_STATUS_OK) {
    msg_add(message, cap, mlen, "cannot reach the broker at %s:%d: %s", h, p,
            amqp_error_string2(r));
    goto fail;
  }
  amqp_rpc_reply_t rep =
      amqp_login_with_properties(conn, vhost, 0, frame_max, (int)link_opts.heartbeat_s, &lp->table,
                                 AMQP_SASL_METHOD_PLAIN, user, password);
  if (rep.reply_type == AMQP_RESPONSE_NORMAL) {
    *status = 0;
    amqp_maybe_release_buffers(conn);
    return conn;
  }
  if (rep.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
      rep.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
    /* A refusal replaces whatever the nodes tried before said. */
    amqp_connection_close_t *m = rep.reply.decoded;
    *status = m->reply_code;
    copy_reply_text(message, cap, m->reply_code, m->reply_text);
    *mlen = strlen(message);
  } else if (rep.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION) {
    msg_add(message, cap, mlen, "unexpected reply from the broker at %s:%d", h, p);
  } else if (rep.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION) {
    int e = rep.library_error;
    msg_add(message, cap, mlen, "the broker at %s:%d %s", h, p,
            e == AMQP_STATUS_CONNECTION_CLOSED || e == AMQP_STATUS_SOCKET_ERROR
                ? "closed the connection during login"
            : e == AMQP_STATUS_TIMEOUT ? "did not answer the login in time"
                                       : amqp_error_string2(e));
  } else {
    msg_add(message, cap, mlen, "login at %s:%d failed", h, p);
  }
fail:
  if (conn) amqp_destroy_connection(conn);
  return NULL;
}

static amqp_connection_state_t login_blocking(const char *host, int port, const char *user,
                                              const char *password, const char *vhost,
                                              const char *conn_name, int frame_max, int *status,
                                              char *message, size_t cap, int *failed_over,
                                              char *node, size_t node_cap) {
  size_t n = nodes.n ? nodes.n : 1, first = nodes.n ? sg_amqp_preferred_node() % n : 0;
  size_t mlen = 0;
  login_props_t lp;
  login_props_init(&lp, conn_name);
  message[0] = '\0';
  *status = -1;
  for (size_t k = 0; k < n; k++) {
    size_t i = (first + k) % n;
    const char *h = nodes.n ? nodes.host[i] : host;
    int p = nodes.n ? nodes.port[i] : port;
    amqp_connection_state_t conn = login_node(h, p, user, password, vhost, &lp, frame_max, n > 1,
                                              status, message, cap, &mlen);
    if (conn) {
      if (failed_over) *failed_over = k > 0;
      if (node) snprintf(node, node_cap, "%s:%d", h, p);
      /* Every login counts, whoever made it (a session, the pool, a
       * credential check, the start-up declaration). */
      if (k > 0) {
        sg_metrics_broker_failover();
        sg_log_warn("broker node %s:%d answers; new sessions log in there (%s)", h, p, message);
      }
      if (nodes.n) sg_amqp_prefer_node(i);
      return conn;
    }
    /* Credentials and vhosts are the cluster's: another node would refuse
     * them too. */
    if (*status > 0) return NULL;
  }
  return NULL;
}

amqp_connection_state_t sg_amqp_login_blocking(const char *host, int port, const char *user,
                                               const char *password, const char *vhost,
                                               const char *conn_name, int *status,
                                               char *message, size_t cap, int *failed_over) {
  return login_blocking(host, port, user, password, vhost, conn_name, SG_AMQP_FRAME_MAX, status,
                        message, cap, failed_over, NULL, 0);
}

/* Thread pool: the blocking part of opening a connection. Touches only c's
 * login fields and the new connection until after_login_cb runs. */
static void login_work_cb(uv_work_t *w) {
  sg_amqp_conn_t *c = container_of(w, sg_amqp_conn_t, work);
  c->conn = login_blocking(c->host, c->port, c->user, c->password, c->vhost, c->name,
                           c->frame_max, &c->login_status, c->login_message,
                           sizeof(c->login_message), &c->failed_over, c->node,
                           sizeof(c->node));
}

static void chan_lost(sg_amqp_t *a, int code, const char *text);

static void conn_lost(sg_amqp_conn_t *c, int code, const char *text) {
  if (c->state != SG_AMQP_OPEN) return;
  c->state = SG_AMQP_DEAD;
  if (c->poll_init) uv_poll_stop(&c->poll);
  for (uint32_t i = 1; i < c->chans_cap && c->nchans; i++)
    if (c->chans[i]) chan_lost(c->chans[i], code, text);
  c->cbs->on_lost_cb(c, code, text);
}

static void conn_handle_closed_cb(uv_handle_t *h) {
  sg_amqp_conn_t *c = h->data;
  if (--c->handles_open > 0) return;
  if (c->counted) sg_metrics_broker_conn(c->node, -1);
  c->counted = 0;
  link_free(c);
  if (c->conn) amqp_destroy_connection(c->conn);
  c->conn = NULL;
  /* Channels still closing can finish now: nothing more will come. The
   * connection is freed only after the loop, once handles_closed is set. */
  for (uint32_t i = 1; i < c->chans_cap && c->nchans; i++) {
    sg_amqp_t *a = c->chans[i];
    if (a && a->state == SG_AMQP_CLOSING) chan_finish(a);
  }
  c->handles_closed = 1;
  conn_maybe_free(c);
}

static void conn_maybe_free(sg_amqp_conn_t *c) {
  if (!c->handles_closed || c->nchans > 0) return;
  free(c->host);
  free(c->user);
  free(c->password);
  free(c->vhost);
  free(c->name);
  free(c->chans);
  c->chans = NULL;
  c->cbs->on_closed_cb(c);
}

/* Closes the handles; the connection is destroyed once they are closed. */
static void conn_finish(sg_amqp_conn_t *c) {
  if (c->state == SG_AMQP_CLOSED) return;
  int was_open = c->state == SG_AMQP_OPEN;
  c->state = SG_AMQP_CLOSED;
  if (was_open) {
    /* Owners of channels still open hear of it before the handles go. */
    for (uint32_t i = 1; i < c->chans_cap && c->nchans; i++)
      if (c->chans[i]) chan_lost(c->chans[i], 0, "Broker connection closed");
  }
  if (c->poll_init) uv_close((uv_handle_t *)&c->poll, conn_handle_closed_cb);
  uv_close((uv_handle_t *)&c->timer, conn_handle_closed_cb);
}

/* ---------- channels: frames ---------- */

static void rpc_clear(sg_amqp_t *a) { a->rpc_head = a->rpc_len = 0; }

static void chan_detach(sg_amqp_t *a) {
  sg_amqp_conn_t *c = a->conn;
  if (a->assembling && c) c->assembling--;
  a->assembling = 0;
  a->conn = NULL;
  if (c == NULL || c->chans == NULL || a->channel == 0 || c->chans[a->channel] != a) return;
  c->chans[a->channel] = NULL;
  if (--c->nchans > 0) return;
  if (c->cbs == &slink_cbs && c->state == SG_AMQP_OPEN)
    slink_idle(c);
  else
    conn_maybe_free(c);
}

static void chan_finish(sg_amqp_t *a) {
  if (a->state == SG_AMQP_CLOSED) return;
  a->state = SG_AMQP_CLOSED;
  chan_detach(a);
  free(a->rpcs);
  a->rpcs = NULL;
  free(a->pub_ns);
  a->pub_ns = NULL;
  sg_buf_free(&a->body);
  if (!a->reaping) {
    a->reaping = 1;
    a->reap_next = reap_head;
    reap_head = a;
    uv_idle_start(&reap_check, reap_cb);
  }
}

static void chan_lost(sg_amqp_t *a, int code, const char *text) {
  switch (a->state) {
  case SG_AMQP_LOGIN:
    a->state = SG_AMQP_DEAD;
    rpc_clear(a);
    a->cbs->on_open_cb(a, code ? code : -1, text);
    return;
  case SG_AMQP_OPEN:
    a->state = SG_AMQP_DEAD;
    rpc_clear(a);
    a->cbs->on_lost_cb(a, code, text);
    return;
  case SG_AMQP_CLOSING:
    /* For a private connection the connection's close finishes it. */
    if (!a->private_conn) chan_finish(a);
    return;
  default:
    return;
  }
}

static void delivery_done(sg_amqp_t *a) {
  a->in_delivery = 0;
  a->cur.arrived_ns = uv_hrtime();
  a->cbs->on_delivery_cb(a, &a->cur);
  sg_buf_reset(&a->body);
}

/* Confirm latency of tag (and, with multiple, of the tags before it whose
 * send times the ring still holds). */
static void confirm_times(sg_amqp_t *a, uint64_t tag, int multiple) {
  if (a->pub_ns == NULL || tag == 0 || tag > a->pub_seq) return;
  uint64_t now = uv_hrtime();
  uint64_t lo = a->pub_seq >= SG_AMQP_PUB_RING ? a->pub_seq - SG_AMQP_PUB_RING + 1 : 1;
  uint64_t from = multiple ? lo : tag;
  for (uint64_t t = from < lo ? lo : from; t <= tag; t++) {
    uint64_t *ns = &a->pub_ns[t % SG_AMQP_PUB_RING];
    if (*ns == 0) continue;
    sg_metrics_confirm_latency((double)(now - *ns) / 1e9);
    *ns = 0;
  }
}

static void chan_method(sg_amqp_t *a, amqp_method_t *m) {
  sg_amqp_conn_t *c = a->conn;
  if (m->id == AMQP_CHANNEL_CLOSE_METHOD) {
    amqp_channel_close_t *cl = m->decoded;
    char text[256];
    snprintf(text, sizeof(text), "%.*s", (int)cl->reply_text.len, (char *)cl->reply_text.bytes);
    amqp_channel_close_ok_t ok = {0};
    link_send_method(c, a->channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
    if (a->state == SG_AMQP_CLOSING) {
      if (!a->private_conn) chan_finish(a);
      return;
    }
    chan_lost(a, cl->reply_code, text);
    return;
  }
  if (m->id == AMQP_CHANNEL_CLOSE_OK_METHOD) {
    if (a->state == SG_AMQP_CLOSING && !a->private_conn) chan_finish(a);
    return;
  }
  if (a->state != SG_AMQP_OPEN && a->state != SG_AMQP_LOGIN) return;
  switch (m->id) {
  case AMQP_BASIC_DELIVER_METHOD: {
    amqp_basic_deliver_t *d = m->decoded;
    memset(&a->cur, 0, sizeof(a->cur));
    a->cur.consumer_tag = d->consumer_tag;
    a->cur.delivery_tag = d->delivery_tag;
    a->cur.redelivered = d->redelivered;
    a->cur.exchange = d->exchange;
    a->cur.routing_key = d->routing_key;
    a->in_delivery = 1;
    a->skip_content = 0;
    return;
  }
  case AMQP_BASIC_RETURN_METHOD:
    a->skip_content = 1;
    return;
  case AMQP_BASIC_ACK_METHOD: {
    amqp_basic_ack_t *k = m->decoded;
    confirm_times(a, k->delivery_tag, k->multiple);
    a->cbs->on_confirm_cb(a, k->delivery_tag, k->multiple, 1);
    return;
  }
  case AMQP_BASIC_NACK_METHOD: {
    amqp_basic_nack_t *k = m->decoded;
    confirm_times(a, k->delivery_tag, k->multiple);
    a->cbs->on_confirm_cb(a, k->delivery_tag, k->multiple, 0);
    return;
  }
  case AMQP_BASIC_CANCEL_METHOD: {
    amqp_basic_cancel_t *cn = m->decoded;
    amqp_basic_cancel_ok_t ok = {cn->consumer_tag};
    if (!cn->nowait) link_send_method(c, a->channel, AMQP_BASIC_CANCEL_OK_METHOD, &ok);
    a->cbs->on_cancel_cb(a, cn->consumer_tag);
    return;
  }
  case AMQP_CHANNEL_FLOW_METHOD: {
    amqp_channel_flow_t *f = m->decoded;
    amqp_channel_flow_ok_t ok = {f->active};
    link_send_method(c, a->channel, AMQP_CHANNEL_FLOW_OK_METHOD, &ok);
    return;
  }
  default:
    break;
  }
  /* Anything else answers the oldest pipelined synchronous method that
   * expects it. Replies usually come in order, but not always: RabbitMQ
   * sends basic.cancel-ok from the queue process, so a queue.delete-ok
   * sent right after it can overtake it. */
  size_t i = 0;
  while (i < a->rpc_len && a->rpcs[(a->rpc_head + i) % a->rpc_cap].expect != m->id) i++;
  if (i == a->rpc_len) {
    sg_log_warn("unexpected AMQP method 0x%08x on %s channel %u", m->id, c->name, a->channel);
    chan_lost(a, 0, "unexpected reply from the broker");
    return;
  }
  sg_metrics_rpc_latency((double)(uv_hrtime() - a->rpcs[(a->rpc_head + i) % a->rpc_cap].sent_ns) /
                         1e9);
  for (; i > 0; i--)
    a->rpcs[(a->rpc_head + i) % a->rpc_cap] = a->rpcs[(a->rpc_head + i - 1) % a->rpc_cap];
  a->rpc_head = (a->rpc_head + 1) % a->rpc_cap;
  a->rpc_len--;
  a->rpc_done++;
  if (a->state == SG_AMQP_LOGIN) {
    if (a->rpc_done >= a->open_seq) {
      a->state = SG_AMQP_OPEN;
      a->cbs->on_open_cb(a, 0, NULL);
    }
    return;
  }
  a->cbs->on_progress_cb(a);
}

static void chan_frame(sg_amqp_t *a, amqp_frame_t *f) {
  switch (f->frame_type) {
  case AMQP_FRAME_METHOD:
    chan_method(a, &f->payload.method);
    break;
  case AMQP_FRAME_HEADER:
    if (a->skip_content) {
      if (f->payload.properties.body_size == 0) a->skip_content = 0;
      else a->body_size = f->payload.properties.body_size;
      break;
    }
    if (!a->in_delivery) break;
    a->cur.props = f->payload.properties.decoded;
    a->body_size = f->payload.properties.body_size;
    if (a->body_size == 0) {
      a->cur.body = "";
      delivery_done(a);
    }
    break;
  case AMQP_FRAME_BODY: {
    amqp_bytes_t frag = f->payload.body_fragment;
    if (a->skip_content) {
      if (a->body_size <= frag.len) a->skip_content = 0;
      else a->body_size -= frag.len;
      break;
    }
    if (!a->in_delivery) break;
    if (a->body.len == 0 && frag.len >= a->body_size) {
      /* The usual case: the whole body in one frame, used in place. */
      a->cur.body = frag.bytes;
      a->cur.body_len = frag.len;
      delivery_done(a);
      break;
    }
    if (sg_buf_append(&a->body, frag.bytes, frag.len) != 0) {
      chan_lost(a, 0, "out of memory");
      break;
    }
    if (a->body.len >= a->body_size) {
      a->cur.body = a->body.base;
      a->cur.body_len = a->body.len;
      delivery_done(a);
    }
    break;
  }
  default:
    break;
  }
}

static void conn_method(sg_amqp_conn_t *c, amqp_method_t *m) {
  switch (m->id) {
  case AMQP_CONNECTION_CLOSE_METHOD: {
    amqp_connection_close_t *cl = m->decoded;
    char text[256];
    snprintf(text, sizeof(text), "%.*s", (int)cl->reply_text.len, (char *)cl->reply_text.bytes);
    amqp_connection_close_ok_t ok = {0};
    link_send_method(c, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
    if (c->state == SG_AMQP_CLOSING) conn_finish(c);
    else conn_lost(c, cl->reply_code, text);
    return;
  }
  case AMQP_CONNECTION_CLOSE_OK_METHOD:
    if (c->state == SG_AMQP_CLOSING) conn_finish(c);
    return;
  case AMQP_CONNECTION_BLOCKED_METHOD:
  case AMQP_CONNECTION_UNBLOCKED_METHOD:
    c->broker_blocked = m->id == AMQP_CONNECTION_BLOCKED_METHOD;
    if (c->broker_blocked)
      sg_log_warn("broker %s:%d blocked publishing (%s)", c->host, c->port, c->name);
    else sg_log_info("broker %s:%d unblocked publishing (%s)", c->host, c->port, c->name);
    /* The broker stops reading a blocked connection: publishing now would
     * only fill the link. The channels' owners hold their publishes. */
    conn_update_blocked(c);
    return;
  default:
    return;
  }
}

static void conn_frame(sg_amqp_conn_t *c, amqp_frame_t *f) {
  if (f->channel == 0) {
    if (f->frame_type == AMQP_FRAME_METHOD) conn_method(c, &f->payload.method);
    return;
  }
  sg_amqp_t *a = f->channel < c->chans_cap ? c->chans[f->channel] : NULL;
  if (a == NULL || a->state == SG_AMQP_CLOSED || c->state == SG_AMQP_CLOSED) return;
  chan_frame(a, f);
  /* Only this channel's delivery can have begun or ended; the connection
   * counts the channels in the middle of one, whose decoded frames the
   * pool still holds. a stays valid until its on_closed_cb. */
  unsigned now = a->conn != NULL && (a->in_delivery || a->skip_content);
  if (now != a->assembling) {
    a->assembling = now;
    if (now) a->conn->assembling++;
    else a->conn->assembling--;
  }
}

/* The link failed: a closing connection finishes, an open one is lost. */
static void link_failed(sg_amqp_conn_t *c, const char *why) {
  if (c->state == SG_AMQP_CLOSING) {
    conn_finish(c);
    return;
  }
  if (why) sg_log_info("broker link %s lost: %s", c->name, why);
  conn_lost(c, 0, "Broker connection lost");
}

/* Reads what there is and handles every whole frame: bytes left in
 * OpenSSL's buffers would not wake uv_poll again. */
static void pump(sg_amqp_conn_t *c) {
  sg_amqp_link_t *l = c->link;
  while (c->state == SG_AMQP_OPEN || c->state == SG_AMQP_CLOSING) {
    /* Whole frames first. */
    size_t avail = l->in.len - l->in_off;
    if (avail >= FRAME_HEADER) {
      const char *p = l->in.base + l->in_off;
      uint32_t size = get_u32(p + 3);
      if ((size_t)size + FRAME_HEADER + 1 > l->frame_max) {
        link_failed(c, "a frame larger than frame_max");
        return;
      }
      if (avail >= (size_t)size + FRAME_HEADER + 1) {
        if ((unsigned char)p[FRAME_HEADER + size] != FRAME_END_OCTET) {
          link_failed(c, "a frame without its frame-end octet");
          return;
        }
        amqp_frame_t f;
        if (link_decode(l, p, size, &f) != 0) {
          link_failed(c, "a frame that does not decode");
          return;
        }
        l->in_off += (size_t)size + FRAME_HEADER + 1;
        if (f.frame_type != AMQP_FRAME_HEARTBEAT) conn_frame(c, &f);
        if (c->link == NULL) return;
        if (c->assembling == 0) recycle_amqp_pool(&l->pool);
        continue;
      }
    }
    /* Then more bytes, after what is left of a frame. */
    if (l->in_off > 0) {
      sg_buf_consume(&l->in, l->in_off);
      l->in_off = 0;
    }
    if (sg_buf_reserve(&l->in, READ_CHUNK) != 0) {
      link_failed(c, "out of memory");
      return;
    }
    ssize_t n = link_read(l, l->in.base + l->in.len, l->in.cap - l->in.len - 1);
    if (n == IO_AGAIN) break;
    if (n < 0) {
      link_failed(c, n == IO_EOF ? "the broker closed the connection" : "socket error");
      return;
    }
    l->in.len += (size_t)n;
    c->last_rx = uv_now(c->loop);
  }
  /* An idle link gives its memory back. */
  if (c->link && l->in_off == l->in.len && c->assembling == 0) {
    sg_buf_free(&l->in);
    l->in_off = 0;
    empty_amqp_pool(&l->pool);
  }
}

static void poll_cb(uv_poll_t *p, int status, int events) {
  (void)events;
  sg_amqp_conn_t *c = container_of(p, sg_amqp_conn_t, poll);
  if (status < 0) {
    if (c->state == SG_AMQP_CLOSING) conn_finish(c);
    else conn_lost(c, 0, "Broker connection lost");
    return;
  }
  sg_amqp_link_t *l = c->link;
  if (l && link_pending(l) > 0) {
    if (link_flush(c) != 0) {
      link_failed(c, "socket error");
      return;
    }
    link_check_bound(c);
  }
  if (c->link) pump(c);
}

static void after_login_cb(uv_work_t *w, int status) {
  sg_amqp_conn_t *c = container_of(w, sg_amqp_conn_t, work);
  if (c->close_requested || status == UV_ECANCELED) {
    conn_finish(c);
    return;
  }
  sg_metrics_broker_login((double)(uv_hrtime() - c->login_start_ns) / 1e9,
                          c->login_status == 0 && c->conn != NULL);
  if (c->login_status != 0 || c->conn == NULL) {
    if (c->login_status == 0) c->login_status = -1;
    c->state = SG_AMQP_DEAD;
    c->cbs->on_open_cb(c, c->login_status, c->login_message);
    return;
  }
  int max = amqp_get_channel_max(c->conn);
  c->channel_max = (uint16_t)(max <= 0 || max > 65535 ? 65535 : max);
  /* Channel numbers are handed out lowest first, so the table grows with
   * the channels open at once; a per-session connection needs a few. */
  c->chans_cap = 2;
  c->chans = calloc(c->chans_cap, sizeof(*c->chans));
  c->heartbeat_ms = (uint64_t)amqp_get_heartbeat(c->conn) * 1000;
  int fd = link_install(c);
  if (fd >= 0) link_tune_socket(fd);
  if (c->chans == NULL || fd < 0 || uv_poll_init(c->loop, &c->poll, fd) != 0) {
    c->state = SG_AMQP_DEAD;
    c->cbs->on_open_cb(c, -1, "cannot watch the broker socket");
    return;
  }
  c->poll.data = c;
  c->poll_init = 1;
  c->handles_open++;
  c->state = SG_AMQP_OPEN;
  if (c->node[0] == '\0') snprintf(c->node, sizeof(c->node), "%s:%d", c->host, c->port);
  sg_metrics_broker_conn(c->node, 1);
  c->counted = 1;
  c->last_rx = c->last_tx = uv_now(c->loop);
  uv_poll_start(&c->poll, UV_READABLE | UV_DISCONNECT, poll_cb);
  /* The interval is what the login agreed on: the broker may ask for a
   * shorter one than stompgate did. The link sends and checks heart-beats
   * on the loop's timer. */
  if (c->heartbeat_ms > 0)
    uv_timer_start(&c->timer, heartbeat_cb, c->heartbeat_ms / 2, c->heartbeat_ms / 2);
  c->cbs->on_open_cb(c, 0, NULL);
  /* Bytes that came with the last login reply may already be buffered. */
  if (c->state == SG_AMQP_OPEN && c->link && c->link->in.len > 0) pump(c);
}

static int conn_open(sg_amqp_conn_t *c, uv_loop_t *loop, const sg_amqp_conn_cbs_t *cbs,
                     const char *host, int port, const char *user, const char *password,
                     const char *vhost, const char *conn_name, int frame_max) {
  memset(c, 0, sizeof(*c));
  c->loop = loop;
  c->cbs = cbs;
  c->port = port;
  c->host = strdup(host);
  c->user = strdup(user);
  c->password = strdup(password);
  c->vhost = strdup(vhost);
  c->name = strdup(conn_name);
  c->frame_max = frame_max;
  int r = SG_ERR_NOMEM;
  if (!c->host || !c->user || !c->password || !c->vhost || !c->name) goto fail;
  if ((r = sg_amqp_loop_init(loop)) != 0) goto fail;
  if ((r = uv_timer_init(loop, &c->timer)) != 0) goto fail;
  c->timer.data = c;
  c->handles_open = 1;
  c->state = SG_AMQP_LOGIN;
  c->login_start_ns = uv_hrtime();
  /* Fails only for a NULL work callback. */
  (void)uv_queue_work(loop, &c->work, login_work_cb, after_login_cb);
  return 0;
fail:
  free(c->host);
  free(c->user);
  free(c->password);
  free(c->vhost);
  free(c->name);
  memset(c, 0, sizeof(*c));
  return r;
}

int sg_amqp_conn_open(sg_amqp_conn_t *c, uv_loop_t *loop, const sg_amqp_conn_cbs_t *cbs,
                      const char *host, int port, const char *user, const char *password,
                      const char *vhost, const char *conn_name) {
  return conn_open(c, loop, cbs, host, port, user, password, vhost, conn_name, SG_AMQP_FRAME_MAX);
}

static void close_wait_cb(uv_timer_t *t) {
  conn_finish(container_of(t, sg_amqp_conn_t, timer));
}

void sg_amqp_conn_close(sg_amqp_conn_t *c) {
  switch (c->state) {
  case SG_AMQP_LOGIN:
    c->close_requested = 1; /* after_login_cb finishes */
    return;
  case SG_AMQP_OPEN: {
    amqp_connection_close_t cl = {200, amqp_cstring_bytes("Goodbye"), 0, 0};
    c->state = SG_AMQP_CLOSING;
    if (link_send_method(c, 0, AMQP_CONNECTION_CLOSE_METHOD, &cl) != 0) {
      conn_finish(c);
      return;
    }
    uv_timer_start(&c->timer, close_wait_cb, CLOSE_OK_WAIT_MS, 0);
    return;
  }
  case SG_AMQP_DEAD:
    conn_finish(c);
    return;
  default:
    return;
  }
}

size_t sg_amqp_conn_room(const sg_amqp_conn_t *c) {
  if (c->state != SG_AMQP_OPEN) return 0;
  return c->channel_max - c->nchans;
}

/* ---------- channels: opening and use ---------- */

static int rpc_push(sg_amqp_t *a, amqp_method_number_t expect) {
  if (a->rpc_len == a->rpc_cap) {
    size_t cap = a->rpc_cap ? a->rpc_cap * 2 : 4;
    sg_amqp_rpc_t *n = malloc(cap * sizeof(*n));
    if (n == NULL) return SG_ERR_NOMEM;
    for (size_t i = 0; i < a->rpc_len; i++) n[i] = a->rpcs[(a->rpc_head + i) % a->rpc_cap];
    free(a->rpcs);
    a->rpcs = n;
    a->rpc_cap = cap;
    a->rpc_head = 0;
  }
  sg_amqp_rpc_t *r = &a->rpcs[(a->rpc_head + a->rpc_len) % a->rpc_cap];
  r->expect = expect;
  r->sent_ns = uv_hrtime();
  a->rpc_len++;
  return 0;
}

static int64_t chan_rpc(sg_amqp_t *a, amqp_method_number_t method, void *decoded,
                        amqp_method_number_t expect) {
  if (rpc_push(a, expect) != 0) return SG_ERR_NOMEM;
  if (link_send_method(a->conn, a->channel, method, decoded) != 0) {
    a->rpc_len--;
    conn_lost(a->conn, 0, "Broker connection lost");
    return UV_EPIPE;
  }
  return (int64_t)++a->rpc_sent;
}

/* channel.open and confirm.select, pipelined; OPEN when both are answered. */
static int chan_start(sg_amqp_t *a) {
  amqp_channel_open_t o = {amqp_empty_bytes};
  amqp_confirm_select_t cs = {0};
  a->state = SG_AMQP_LOGIN;
  int64_t r = chan_rpc(a, AMQP_CHANNEL_OPEN_METHOD, &o, AMQP_CHANNEL_OPEN_OK_METHOD);
  if (r < 0) return UV_EPIPE;
  if (a->conn->no_confirms) { /* fire-and-forget publishing */
    a->open_seq = (uint64_t)r;
    return 0;
  }
  r = chan_rpc(a, AMQP_CONFIRM_SELECT_METHOD, &cs, AMQP_CONFIRM_SELECT_OK_METHOD);
  if (r < 0) return (int)r;
  a->open_seq = (uint64_t)r;
  return 0;
}

static int chan_attach(sg_amqp_t *a, sg_amqp_conn_t *c) {
  if (c->state != SG_AMQP_OPEN) return UV_ENOTCONN;
  if (c->nchans >= c->channel_max) return UV_EBUSY;
  /* The lowest free number: librabbitmq keeps a memory pool per channel
   * number for the life of the connection, so reusing numbers keeps that
   * memory in proportion to the channels open at once, not to every
   * channel ever opened. */
  uint32_t n = 1;
  while (n < c->chans_cap && c->chans[n] != NULL) n++;
  if (n > c->channel_max) return UV_EBUSY;
  if (n == c->chans_cap) {
    size_t cap = c->chans_cap * 2 > (size_t)c->channel_max + 1 ? (size_t)c->channel_max + 1
                                                                 : c->chans_cap * 2;
    sg_amqp_t **t = realloc(c->chans, cap * sizeof(*t));
    if (t == NULL) return SG_ERR_NOMEM;
    memset(t + c->chans_cap, 0, (cap - c->chans_cap) * sizeof(*t));
    c->chans = t;
    c->chans_cap = (uint32_t)cap;
  }
  c->chans[n] = a;
  c->nchans++;
  a->conn = c;
  a->channel = (uint16_t)n;
  return 0;
}

int sg_amqp_open_on(sg_amqp_t *a, sg_amqp_conn_t *c, const sg_amqp_cbs_t *cbs) {
  void *data = a->data;
  memset(a, 0, sizeof(*a));
  a->data = data;
  a->cbs = cbs;
  int r = chan_attach(a, c);
  if (r) return r;
  /* A failure here lost the connection, and chan_lost has already
   * reported it through on_open_cb. */
  (void)chan_start(a);
  return 0;
}

/* A private connection reports to its one channel. */
static void priv_open_cb(sg_amqp_conn_t *c, int status, const char *message) {
  sg_amqp_t *a = c->data;
  if (status != 0) {
    a->state = SG_AMQP_DEAD;
    a->cbs->on_open_cb(a, status, message);
    return;
  }
  if (chan_attach(a, c) != 0) {
    a->state = SG_AMQP_DEAD;
    a->cbs->on_open_cb(a, -1, "cannot open a channel");
    return;
  }
  chan_start(a);
}

static void priv_lost_cb(sg_amqp_conn_t *c, int code, const char *text) {
  (void)code;
  (void)text;
  sg_amqp_t *a = c->data;
  if (a->state == SG_AMQP_CLOSING) conn_finish(c);
}

static void priv_closed_cb(sg_amqp_conn_t *c) {
  sg_amqp_t *a = c->data;
  free(c);
  a->conn = NULL;
  if (a->state != SG_AMQP_CLOSED) {
    a->state = SG_AMQP_CLOSING;
    chan_finish(a);
  }
}

static const sg_amqp_conn_cbs_t priv_cbs = {priv_open_cb, priv_lost_cb, priv_closed_cb};

/* ---------- per-session mode: a connection shared by one login ---------- */

/* Sessions that log in with the same credentials, vhost and broker within
 * session_window_ms of each other get a channel each on one connection,
 * at most session_max of them. A connection login is the bulk of what a
 * new session costs the broker (its reader, its heart-beats, the SASL
 * exchange, the handshake's round trips); a channel is a fraction of it.
 * The window bounds how long a login the broker would now refuse (a
 * password changed, a user deleted) can still admit sessions. */
typedef struct slink {
  sg_amqp_conn_t conn;      /* first: the connection's data is the link */
  struct slink *next, **pprev; /* in this thread's list while it takes sessions */
  struct slink *check_next; /* queued to be closed once idle */
  uint64_t born;            /* uv_now when its login started */
  sg_amqp_t *waiting;       /* channels waiting for the login */
  unsigned check_queued : 1;
} slink_t;

static __thread slink_t *slinks;
static __thread slink_t *slink_checks;

static void slink_unlist(slink_t *l) {
  if (l->pprev == NULL) return;
  *l->pprev = l->next;
  if (l->next) l->next->pprev = l->pprev;
  l->next = NULL;
  l->pprev = NULL;
}

static size_t slink_users(const slink_t *l) {
  size_t n = l->conn.nchans;
  for (const sg_amqp_t *a = l->waiting; a; a = a->wait_next) n++;
  return n;
}

static void slink_wait(slink_t *l, sg_amqp_t *a) {
  a->state = SG_AMQP_LOGIN;
  a->wait_next = l->waiting;
  if (l->waiting) l->waiting->wait_pprev = &a->wait_next;
  a->wait_pprev = &l->waiting;
  l->waiting = a;
}

static sg_amqp_t *slink_pop(slink_t *l) {
  sg_amqp_t *a = l->waiting;
  l->waiting = a->wait_next;
  if (l->waiting) l->waiting->wait_pprev = &l->waiting;
  a->wait_next = NULL;
  a->wait_pprev = NULL;
  return a;
}

/* Constant time in the secret's bytes: which login matched is not for a
 * timing to tell. */
static int same_secret(const char *x, const char *y) {
  size_t n = strlen(x);
  if (n != strlen(y)) return 0;
  return CRYPTO_memcmp(x, y, n) == 0;
}

/* Closes a link that no channel uses any more; runs from reap_cb, outside
 * the frame handling that detached the last channel. */
static void slink_check(void) {
  while (slink_checks) {
    slink_t *l = slink_checks;
    slink_checks = l->check_next;
    l->check_next = NULL;
    l->check_queued = 0;
    if (l->conn.state == SG_AMQP_OPEN && l->conn.nchans == 0 && l->waiting == NULL) {
      slink_unlist(l);
      sg_amqp_conn_close(&l->conn);
    }
  }
}

static void slink_idle(sg_amqp_conn_t *c) {
  slink_t *l = (slink_t *)c;
  if (l->check_queued) return;
  l->check_queued = 1;
  l->check_next = slink_checks;
  slink_checks = l;
  uv_idle_start(&reap_check, reap_cb);
}

static void slink_open_cb(sg_amqp_conn_t *c, int status, const char *message) {
  slink_t *l = (slink_t *)c;
  if (status != 0) {
    slink_unlist(l);
    while (l->waiting) {
      sg_amqp_t *a = slink_pop(l);
      a->state = SG_AMQP_DEAD;
      a->cbs->on_open_cb(a, status, message);
    }
    sg_amqp_conn_close(c);
    return;
  }
  while (l->waiting) {
    sg_amqp_t *a = slink_pop(l);
    if (chan_attach(a, c) != 0) {
      a->state = SG_AMQP_DEAD;
      a->cbs->on_open_cb(a, -1, "cannot open a channel");
      continue;
    }
    if (chan_start(a) != 0) break; /* the connection is lost: all were told */
  }
  if (c->state == SG_AMQP_OPEN && c->nchans == 0) slink_idle(c);
}

static void slink_lost_cb(sg_amqp_conn_t *c, int code, const char *text) {
  (void)code, (void)text; /* each channel's owner has been told */
  slink_unlist((slink_t *)c);
  sg_amqp_conn_close(c);
}

static void slink_closed_cb(sg_amqp_conn_t *c) {
  slink_t *l = (slink_t *)c;
  slink_unlist(l);
  if (l->check_queued) {
    slink_t **pp = &slink_checks;
    while (*pp != l) pp = &(*pp)->check_next;
    *pp = l->check_next;
  }
  free(l);
}

static const sg_amqp_conn_cbs_t slink_cbs = {slink_open_cb, slink_lost_cb, slink_closed_cb};

/* A link with the same login that still takes sessions, or NULL. Links
 * past their window leave the list on the way. */
static slink_t *slink_find(uv_loop_t *loop, const char *host, int port, const char *user,
                           const char *password, const char *vhost) {
  uint64_t now = uv_now(loop);
  for (slink_t *l = slinks, *next; l; l = next) {
    next = l->next;
    sg_amqp_conn_t *c = &l->conn;
    if (now - l->born >= link_opts.session_window_ms || c->close_requested ||
        (c->state != SG_AMQP_LOGIN && c->state != SG_AMQP_OPEN)) {
      slink_unlist(l);
      continue;
    }
    if (c->port != port || strcmp(c->host, host) != 0 || strcmp(c->user, user) != 0 ||
        strcmp(c->vhost, vhost) != 0 || !same_secret(c->password, password))
      continue;
    if (slink_users(l) >= link_opts.session_max) continue;
    if (c->state == SG_AMQP_OPEN && sg_amqp_conn_room(c) == 0) continue;
    /* A held connection may not be read at all by the broker (a resource
     * alarm stops the reader of a publishing connection): a new session
     * would wait for its channel as long. */
    if (c->blocked) continue;
    return l;
  }
  return NULL;
}

static int slink_open(sg_amqp_t *a, uv_loop_t *loop, const sg_amqp_cbs_t *cbs, const char *host,
                      int port, const char *user, const char *password, const char *vhost,
                      const char *conn_name) {
  void *data = a->data;
  memset(a, 0, sizeof(*a));
  a->data = data;
  a->cbs = cbs;
  slink_t *l = slink_find(loop, host, port, user, password, vhost);
  if (l != NULL) {
    sg_metrics_session_link(1);
    if (l->conn.state == SG_AMQP_LOGIN) {
      slink_wait(l, a);
      return 0;
    }
    int r = chan_attach(a, &l->conn);
    if (r) return r;
    (void)chan_start(a); /* a failure has told the owner through on_open_cb */
    return 0;
  }
  if ((l = calloc(1, sizeof(*l))) == NULL) return SG_ERR_NOMEM;
  int r = conn_open(&l->conn, loop, &slink_cbs, host, port, user, password, vhost, conn_name,
                    link_opts.session_frame_max);
  if (r) {
    free(l);
    return r;
  }
  sg_metrics_session_link(0);
  l->conn.data = l;
  l->born = uv_now(loop);
  l->next = slinks;
  if (slinks) slinks->pprev = &l->next;
  l->pprev = &slinks;
  slinks = l;
  slink_wait(l, a);
  return 0;
}

int sg_amqp_open(sg_amqp_t *a, uv_loop_t *loop, const sg_amqp_cbs_t *cbs, const char *host,
                 int port, const char *user, const char *password, const char *vhost,
                 const char *conn_name) {
  if (link_opts.session_max > 1 && link_opts.session_window_ms > 0)
    return slink_open(a, loop, cbs, host, port, user, password, vhost, conn_name);
  void *data = a->data;
  memset(a, 0, sizeof(*a));
  a->data = data;
  a->cbs = cbs;
  a->private_conn = 1;
  sg_amqp_conn_t *c = calloc(1, sizeof(*c));
  if (c == NULL) return SG_ERR_NOMEM;
  int r = conn_open(c, loop, &priv_cbs, host, port, user, password, vhost, conn_name,
                    link_opts.session_frame_max);
  if (r) {
    free(c);
    return r;
  }
  sg_metrics_session_link(0);
  c->data = a;
  a->conn = c;
  a->state = SG_AMQP_LOGIN;
  return 0;
}

int64_t sg_amqp_rpc(sg_amqp_t *a, amqp_method_number_t method, void *decoded,
                    amqp_method_number_t expect) {
  if (a->state != SG_AMQP_OPEN) return UV_ENOTCONN;
  return chan_rpc(a, method, decoded, expect);
}

int sg_amqp_send(sg_amqp_t *a, amqp_method_number_t method, void *decoded) {
  if (a->state != SG_AMQP_OPEN) return UV_ENOTCONN;
  if (link_send_method(a->conn, a->channel, method, decoded) != 0) {
    conn_lost(a->conn, 0, "Broker connection lost");
    return UV_EPIPE;
  }
  return 0;
}

int sg_amqp_publish(sg_amqp_t *a, amqp_bytes_t exchange, amqp_bytes_t routing_key,
                    const amqp_basic_properties_t *props, amqp_bytes_t body, uint64_t *seq) {
  if (a->state != SG_AMQP_OPEN) return UV_ENOTCONN;
  if (link_publish(a->conn, a->channel, exchange, routing_key, props, body) != 0) {
    conn_lost(a->conn, 0, "Broker connection lost");
    return UV_EPIPE;
  }
  *seq = ++a->pub_seq;
  if (a->pub_ns == NULL) a->pub_ns = calloc(SG_AMQP_PUB_RING, sizeof(*a->pub_ns));
  if (a->pub_ns) a->pub_ns[a->pub_seq % SG_AMQP_PUB_RING] = uv_hrtime();
  return 0;
}

void sg_amqp_close(sg_amqp_t *a) {
  sg_amqp_conn_t *c = a->conn;
  if (a->wait_pprev) {
    /* Still waiting in a pool for a connection: nothing was sent. */
    *a->wait_pprev = a->wait_next;
    if (a->wait_next) a->wait_next->wait_pprev = a->wait_pprev;
    a->wait_next = NULL;
    a->wait_pprev = NULL;
    a->state = SG_AMQP_CLOSING;
    chan_finish(a);
    return;
  }
  switch (a->state) {
  case SG_AMQP_IDLE:
    a->state = SG_AMQP_CLOSING;
    chan_finish(a);
    return;
  case SG_AMQP_LOGIN:
  case SG_AMQP_OPEN:
  case SG_AMQP_DEAD:
    if (a->private_conn) {
      if (c == NULL) { /* the connection is gone already */
        a->state = SG_AMQP_CLOSING;
        chan_finish(a);
        return;
      }
      /* During the login this only marks it; the login's end closes. */
      a->state = SG_AMQP_CLOSING;
      sg_amqp_conn_close(c);
      return;
    }
    if (a->state == SG_AMQP_DEAD || c == NULL || c->state != SG_AMQP_OPEN) {
      a->state = SG_AMQP_CLOSING;
      chan_finish(a);
      return;
    }
    /* Shared connection: close this channel only; its number is reused
     * once the broker confirms. */
    a->state = SG_AMQP_CLOSING;
    a->in_delivery = 0;
    {
      amqp_channel_close_t cl = {200, amqp_cstring_bytes("Goodbye"), 0, 0};
      if (link_send_method(c, a->channel, AMQP_CHANNEL_CLOSE_METHOD, &cl) != 0)
        conn_lost(c, 0, "Broker connection lost");
    }
    return;
  default:
    return;
  }
}

int64_t sg_amqp_consume(sg_amqp_t *a, const char *queue, const char *tag, int no_ack,
                        amqp_table_t args) {
  amqp_basic_consume_t m;
  memset(&m, 0, sizeof(m));
  m.queue = amqp_cstring_bytes(queue);
  m.consumer_tag = amqp_cstring_bytes(tag);
  m.no_ack = no_ack != 0;
  m.arguments = args;
  return sg_amqp_rpc(a, AMQP_BASIC_CONSUME_METHOD, &m, AMQP_BASIC_CONSUME_OK_METHOD);
}

/* ---------- deliveries ---------- */

size_t sg_amqp_delivery_keys(const sg_amqp_delivery_t *d, sg_match_key_t *keys, size_t cap) {
  size_t n = 0;
  keys[n++] = (sg_match_key_t){d->routing_key.bytes, d->routing_key.len};
  const amqp_basic_properties_t *p = d->props;
  if (p == NULL || !(p->_flags & AMQP_BASIC_HEADERS_FLAG)) return n;
  for (int i = 0; i < p->headers.num_entries; i++) {
    const amqp_table_entry_t *e = &p->headers.entries[i];
    if (e->key.len != 2 || memcmp(e->key.bytes, "CC", 2) != 0) continue;
    if (e->value.kind != AMQP_FIELD_KIND_ARRAY) break;
    const amqp_array_t *arr = &e->value.value.array;
    for (int j = 0; j < arr->num_entries; j++) {
      const amqp_field_value_t *v = &arr->entries[j];
      if (v->kind != AMQP_FIELD_KIND_UTF8 && v->kind != AMQP_FIELD_KIND_BYTES) continue;
      if (n < cap) keys[n] = (sg_match_key_t){v->value.bytes.bytes, v->value.bytes.len};
      n++;
    }
    break;
  }
  return n;
}

int sg_amqp_delivery_offset(const sg_amqp_delivery_t *d, int64_t *offset) {
  const amqp_basic_properties_t *p = d->props;
  if (p == NULL || !(p->_flags & AMQP_BASIC_HEADERS_FLAG)) return -1;
  for (int i = 0; i < p->headers.num_entries; i++) {
    const amqp_table_entry_t *e = &p->headers.entries[i];
    if (e->key.len != 15 || memcmp(e->key.bytes, "x-stream-offset", 15) != 0) continue;
    switch (e->value.kind) {
    case AMQP_FIELD_KIND_I64: *offset = e->value.value.i64; return 0;
    case AMQP_FIELD_KIND_U64: *offset = (int64_t)e->value.value.u64; return 0;
    case AMQP_FIELD_KIND_I32: *offset = e->value.value.i32; return 0;
    case AMQP_FIELD_KIND_U32: *offset = e->value.value.u32; return 0;
    default: return -1;
    }
  }
  return -1;
}
