/* SPDX-License-Identifier: MIT */
#include "broker.h"

#include <amqp_framing.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "metrics.h"
#include "sg_config.h"
#include "stompgate/err.h"

#define SG_CHANNEL 1
#define AMQP_FRAME_MAX 131072
#define CLOSE_OK_WAIT_MS 1000
#define LOGIN_TIMEOUT_S 10
#define NODE_CONNECT_TIMEOUT_S 3

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

static void link_finish(sg_amqp_t *a);

/* amqps:// settings shared by every link; set once before the first. */
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
  /* Initialise OpenSSL for librabbitmq here, on the loop thread, rather
   * than lazily inside the first login on the thread pool. */
  if (enabled && amqp_initialize_ssl_library() != AMQP_STATUS_OK) return -1;
  return 0;
}

/* Cluster nodes, fixed before the first login; logins start at the one
 * last seen working, which the thread pool and the loop both update. */
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

static amqp_socket_t *new_socket(sg_amqp_t *a) {
  if (!link_tls.enabled) return amqp_tcp_socket_new(a->conn);
  amqp_socket_t *sock = amqp_ssl_socket_new(a->conn);
  if (sock == NULL) return NULL;
  amqp_ssl_socket_set_verify_peer(sock, link_tls.verify);
  amqp_ssl_socket_set_verify_hostname(sock, link_tls.verify);
  if (link_tls.ca_file) {
    if (amqp_ssl_socket_set_cacert(sock, link_tls.ca_file) != AMQP_STATUS_OK) return NULL;
  } else {
    SSL_CTX_set_default_verify_paths(amqp_ssl_socket_get_context(sock));
  }
  return sock;
}
static void copy_reply_text(char *out, size_t cap, int code, amqp_bytes_t text) {
  snprintf(out, cap, "%d %.*s", code, (int)(text.len > 200 ? 200 : text.len),
           (const char *)text.bytes);
}

/* Thread pool: the blocking part of opening a connection. Touches only a's
 * login fields and the new connection until after_login_cb runs. */
static void login_work_cb(uv_work_t *w) {
  sg_amqp_t *a = container_of(w, sg_amqp_t, work);
  a->login_status = -1;
  struct timeval tv = {LOGIN_TIMEOUT_S, 0};
  /* With several nodes, a node that does not answer should not hold the
   * login up for long before the next one is tried. */
  struct timeval connect_tv = {nodes.n > 1 ? NODE_CONNECT_TIMEOUT_S : LOGIN_TIMEOUT_S, 0};
  size_t n = nodes.n ? nodes.n : 1, first = nodes.n ? sg_amqp_preferred_node() % n : 0;
  size_t mlen = 0;
  int opened = 0;
  a->login_message[0] = '\0';
  for (size_t k = 0; k < n && !opened; k++) {
    size_t i = (first + k) % n;
    const char *host = nodes.n ? nodes.host[i] : a->host;
    int port = nodes.n ? nodes.port[i] : a->port;
    if (a->conn) amqp_destroy_connection(a->conn);
    a->conn = amqp_new_connection();
    if (a->conn == NULL) {
      snprintf(a->login_message, sizeof(a->login_message), "out of memory");
      return;
    }
    amqp_socket_t *sock = new_socket(a);
    if (sock == NULL) {
      snprintf(a->login_message, sizeof(a->login_message), "cannot set up the broker socket%s",
               link_tls.enabled ? " (TLS settings)" : "");
      return;
    }
    amqp_set_handshake_timeout(a->conn, &tv);
    amqp_set_rpc_timeout(a->conn, &tv);
    int r = amqp_socket_open_noblock(sock, host, port, &connect_tv);
    if (r == AMQP_STATUS_OK) {
      opened = 1;
      a->failed_over = k > 0;
      if (nodes.n) sg_amqp_prefer_node(i);
      break;
    }
    if (mlen < sizeof(a->login_message))
      mlen += (size_t)snprintf(a->login_message + mlen, sizeof(a->login_message) - mlen,
                               "%scannot reach the broker at %s:%d: %s", k ? "; " : "", host,
                               port, amqp_error_string2(r));
  }
  if (!opened) return;

  amqp_table_entry_t caps[5];
  const char *cap_names[5] = {"authentication_failure_close", "connection.blocked",
                              "consumer_cancel_notify", "publisher_confirms", "basic.nack"};
  for (int i = 0; i < 5; i++) {
    caps[i].key = amqp_cstring_bytes(cap_names[i]);
    caps[i].value.kind = AMQP_FIELD_KIND_BOOLEAN;
    caps[i].value.value.boolean = 1;
  }
  amqp_table_entry_t props[4];
  props[0].key = amqp_cstring_bytes("product");
  props[0].value.kind = AMQP_FIELD_KIND_UTF8;
  props[0].value.value.bytes = amqp_cstring_bytes("stompgate");
  props[1].key = amqp_cstring_bytes("version");
  props[1].value.kind = AMQP_FIELD_KIND_UTF8;
  props[1].value.value.bytes = amqp_cstring_bytes(SG_VERSION);
  props[2].key = amqp_cstring_bytes("capabilities");
  props[2].value.kind = AMQP_FIELD_KIND_TABLE;
  props[2].value.value.table.num_entries = 5;
  props[2].value.value.table.entries = caps;
  props[3].key = amqp_cstring_bytes("connection_name");
  props[3].value.kind = AMQP_FIELD_KIND_UTF8;
  props[3].value.value.bytes = amqp_cstring_bytes(a->name);
  amqp_table_t ptable = {4, props};

  amqp_rpc_reply_t rep = amqp_login_with_properties(a->conn, a->vhost, 0, AMQP_FRAME_MAX, 0,
                                                    &ptable, AMQP_SASL_METHOD_PLAIN, a->user,
                                                    a->password);
  if (rep.reply_type == AMQP_RESPONSE_NORMAL) {
    amqp_channel_open(a->conn, SG_CHANNEL);
    rep = amqp_get_rpc_reply(a->conn);
    if (rep.reply_type == AMQP_RESPONSE_NORMAL) {
      amqp_confirm_select(a->conn, SG_CHANNEL);
      rep = amqp_get_rpc_reply(a->conn);
    }
  }
  switch (rep.reply_type) {
  case AMQP_RESPONSE_NORMAL:
    a->login_status = 0;
    break;
  case AMQP_RESPONSE_SERVER_EXCEPTION:
    if (rep.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
      amqp_connection_close_t *m = rep.reply.decoded;
      a->login_status = m->reply_code;
      copy_reply_text(a->login_message, sizeof(a->login_message), m->reply_code, m->reply_text);
    } else if (rep.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
      amqp_channel_close_t *m = rep.reply.decoded;
      a->login_status = m->reply_code;
      copy_reply_text(a->login_message, sizeof(a->login_message), m->reply_code, m->reply_text);
    } else {
      snprintf(a->login_message, sizeof(a->login_message), "unexpected broker reply");
    }
    break;
  case AMQP_RESPONSE_LIBRARY_EXCEPTION:
    snprintf(a->login_message, sizeof(a->login_message), "%s",
             rep.library_error == AMQP_STATUS_CONNECTION_CLOSED ||
                     rep.library_error == AMQP_STATUS_SOCKET_ERROR
                 ? "the broker closed the connection during login"
                 : amqp_error_string2(rep.library_error));
    break;
  default:
    snprintf(a->login_message, sizeof(a->login_message), "login failed");
  }
  amqp_maybe_release_buffers(a->conn);
}

static void rpc_clear(sg_amqp_t *a) {
  a->rpc_head = a->rpc_len = 0;
}

static void link_lost(sg_amqp_t *a, int code, const char *text) {
  if (a->state != SG_AMQP_OPEN) return;
  a->state = SG_AMQP_DEAD;
  rpc_clear(a);
  if (a->poll_init) uv_poll_stop(&a->poll);
  a->cbs->on_lost_cb(a, code, text);
}

static void delivery_done(sg_amqp_t *a) {
  a->in_delivery = 0;
  a->cbs->on_delivery_cb(a, &a->cur);
  sg_buf_reset(&a->body);
  if (a->state == SG_AMQP_OPEN) amqp_maybe_release_buffers(a->conn);
}

static void handle_method(sg_amqp_t *a, amqp_channel_t ch, amqp_method_t *m) {
  if (ch == 0) {
    switch (m->id) {
    case AMQP_CONNECTION_CLOSE_METHOD: {
      amqp_connection_close_t *c = m->decoded;
      char text[256];
      snprintf(text, sizeof(text), "%.*s", (int)c->reply_text.len, (char *)c->reply_text.bytes);
      amqp_connection_close_ok_t ok = {0};
      amqp_send_method(a->conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
      link_lost(a, c->reply_code, text);
      return;
    }
    case AMQP_CONNECTION_CLOSE_OK_METHOD:
      if (a->state == SG_AMQP_CLOSING) link_finish(a);
      return;
    case AMQP_CONNECTION_BLOCKED_METHOD:
      a->blocked = 1;
      sg_log_warn("broker %s:%d blocked publishing (%s)", a->host, a->port, a->name);
      return;
    case AMQP_CONNECTION_UNBLOCKED_METHOD:
      a->blocked = 0;
      sg_log_info("broker %s:%d unblocked (%s)", a->host, a->port, a->name);
      return;
    default:
      return;
    }
  }
  if (a->state != SG_AMQP_OPEN) return;
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
    a->cbs->on_confirm_cb(a, k->delivery_tag, k->multiple, 1);
    return;
  }
  case AMQP_BASIC_NACK_METHOD: {
    amqp_basic_nack_t *k = m->decoded;
    a->cbs->on_confirm_cb(a, k->delivery_tag, k->multiple, 0);
    return;
  }
  case AMQP_BASIC_CANCEL_METHOD: {
    amqp_basic_cancel_t *c = m->decoded;
    amqp_basic_cancel_ok_t ok = {c->consumer_tag};
    if (!c->nowait) amqp_send_method(a->conn, SG_CHANNEL, AMQP_BASIC_CANCEL_OK_METHOD, &ok);
    a->cbs->on_cancel_cb(a, c->consumer_tag);
    return;
  }
  case AMQP_CHANNEL_CLOSE_METHOD: {
    amqp_channel_close_t *c = m->decoded;
    char text[256];
    snprintf(text, sizeof(text), "%.*s", (int)c->reply_text.len, (char *)c->reply_text.bytes);
    amqp_channel_close_ok_t ok = {0};
    amqp_send_method(a->conn, SG_CHANNEL, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
    link_lost(a, c->reply_code, text);
    return;
  }
  case AMQP_CHANNEL_FLOW_METHOD: {
    amqp_channel_flow_t *f = m->decoded;
    amqp_channel_flow_ok_t ok = {f->active};
    amqp_send_method(a->conn, SG_CHANNEL, AMQP_CHANNEL_FLOW_OK_METHOD, &ok);
    return;
  }
  default:
    break;
  }
  /* Anything else answers the oldest pipelined synchronous method. */
  if (a->rpc_len == 0 || a->rpcs[a->rpc_head].expect != m->id) {
    sg_log_warn("unexpected AMQP method 0x%08x on %s", m->id, a->name);
    link_lost(a, 0, "unexpected reply from the broker");
    return;
  }
  a->rpc_head = (a->rpc_head + 1) % a->rpc_cap;
  a->rpc_len--;
  a->rpc_done++;
  a->cbs->on_progress_cb(a);
}

static void handle_frame(sg_amqp_t *a, amqp_frame_t *f) {
  switch (f->frame_type) {
  case AMQP_FRAME_METHOD:
    handle_method(a, f->channel, &f->payload.method);
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
      link_lost(a, 0, "out of memory");
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

static void pump(sg_amqp_t *a) {
  while (a->state == SG_AMQP_OPEN || a->state == SG_AMQP_CLOSING) {
    amqp_frame_t f;
    struct timeval zero = {0, 0};
    int r = amqp_simple_wait_frame_noblock(a->conn, &f, &zero);
    if (r == AMQP_STATUS_TIMEOUT) break;
    if (r != AMQP_STATUS_OK) {
      if (a->state == SG_AMQP_CLOSING) {
        link_finish(a);
        return;
      }
      sg_log_info("broker link %s lost: %s", a->name, amqp_error_string2(r));
      link_lost(a, 0, "Broker connection lost");
      return;
    }
    handle_frame(a, &f);
  }
  if ((a->state == SG_AMQP_OPEN || a->state == SG_AMQP_CLOSING) && !a->in_delivery &&
      !a->skip_content)
    amqp_maybe_release_buffers(a->conn);
}

static void poll_cb(uv_poll_t *p, int status, int events) {
  (void)events;
  sg_amqp_t *a = container_of(p, sg_amqp_t, poll);
  if (status < 0) {
    if (a->state == SG_AMQP_CLOSING) link_finish(a);
    else link_lost(a, 0, "Broker connection lost");
    return;
  }
  pump(a);
}

static void handle_closed_cb(uv_handle_t *h) {
  sg_amqp_t *a = h->data;
  if (--a->handles_open > 0) return;
  if (a->conn) amqp_destroy_connection(a->conn);
  a->conn = NULL;
  free(a->host);
  free(a->user);
  free(a->password);
  free(a->vhost);
  free(a->name);
  free(a->rpcs);
  sg_buf_free(&a->body);
  a->cbs->on_closed_cb(a);
}

/* Closes the handles; the connection is destroyed once they are closed. */
static void link_finish(sg_amqp_t *a) {
  if (a->state == SG_AMQP_CLOSED) return;
  a->state = SG_AMQP_CLOSED;
  if (a->poll_init) uv_close((uv_handle_t *)&a->poll, handle_closed_cb);
  uv_close((uv_handle_t *)&a->timer, handle_closed_cb);
}

static void after_login_cb(uv_work_t *w, int status) {
  sg_amqp_t *a = container_of(w, sg_amqp_t, work);
  if (a->close_requested || status == UV_ECANCELED) {
    link_finish(a);
    return;
  }
  sg_metrics_broker_login((double)(uv_hrtime() - a->login_start_ns) / 1e9, a->login_status == 0);
  if (a->failed_over) sg_metrics_broker_failover();
  if (a->login_status != 0) {
    a->state = SG_AMQP_DEAD;
    a->cbs->on_open_cb(a, a->login_status, a->login_message);
    return;
  }
  int fd = amqp_socket_get_sockfd(amqp_get_socket(a->conn));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
  if (uv_poll_init(a->loop, &a->poll, fd) != 0) {
    a->state = SG_AMQP_DEAD;
    a->cbs->on_open_cb(a, -1, "cannot watch the broker socket");
    return;
  }
  a->poll.data = a;
  a->poll_init = 1;
  a->handles_open++;
  a->state = SG_AMQP_OPEN;
  uv_poll_start(&a->poll, UV_READABLE | UV_DISCONNECT, poll_cb);
  a->cbs->on_open_cb(a, 0, NULL);
  /* Frames that came with the last login reply may already be buffered. */
  if (a->state == SG_AMQP_OPEN && amqp_data_in_buffer(a->conn)) pump(a);
}

int sg_amqp_open(sg_amqp_t *a, uv_loop_t *loop, const sg_amqp_cbs_t *cbs, const char *host,
                 int port, const char *user, const char *password, const char *vhost,
                 const char *conn_name) {
  memset(a, 0, sizeof(*a));
  a->loop = loop;
  a->cbs = cbs;
  a->port = port;
  a->host = strdup(host);
  a->user = strdup(user);
  a->password = strdup(password);
  a->vhost = strdup(vhost);
  a->name = strdup(conn_name);
  int r = SG_ERR_NOMEM;
  if (!a->host || !a->user || !a->password || !a->vhost || !a->name) goto fail_strings;
  r = uv_timer_init(loop, &a->timer);
  if (r) goto fail_strings;
  a->timer.data = a;
  a->handles_open = 1;
  a->state = SG_AMQP_LOGIN;
  a->login_start_ns = uv_hrtime();
  r = uv_queue_work(loop, &a->work, login_work_cb, after_login_cb);
  if (r) {
    a->state = SG_AMQP_DEAD;
    return r; /* the caller closes the link, which closes the timer */
  }
  return 0;
fail_strings:
  free(a->host);
  free(a->user);
  free(a->password);
  free(a->vhost);
  free(a->name);
  memset(a, 0, sizeof(*a));
  return r;
}

static int rpc_push(sg_amqp_t *a, amqp_method_number_t expect) {
  if (a->rpc_len == a->rpc_cap) {
    size_t cap = a->rpc_cap ? a->rpc_cap * 2 : 8;
    sg_amqp_rpc_t *n = malloc(cap * sizeof(*n));
    if (n == NULL) return SG_ERR_NOMEM;
    for (size_t i = 0; i < a->rpc_len; i++) n[i] = a->rpcs[(a->rpc_head + i) % a->rpc_cap];
    free(a->rpcs);
    a->rpcs = n;
    a->rpc_cap = cap;
    a->rpc_head = 0;
  }
  a->rpcs[(a->rpc_head + a->rpc_len) % a->rpc_cap].expect = expect;
  a->rpc_len++;
  return 0;
}

int64_t sg_amqp_rpc(sg_amqp_t *a, amqp_method_number_t method, void *decoded,
                    amqp_method_number_t expect) {
  if (a->state != SG_AMQP_OPEN) return UV_ENOTCONN;
  if (rpc_push(a, expect) != 0) return SG_ERR_NOMEM;
  if (amqp_send_method(a->conn, SG_CHANNEL, method, decoded) != AMQP_STATUS_OK) {
    a->rpc_len--;
    link_lost(a, 0, "Broker connection lost");
    return UV_EPIPE;
  }
  return (int64_t)++a->rpc_sent;
}

int sg_amqp_send(sg_amqp_t *a, amqp_method_number_t method, void *decoded) {
  if (a->state != SG_AMQP_OPEN) return UV_ENOTCONN;
  if (amqp_send_method(a->conn, SG_CHANNEL, method, decoded) != AMQP_STATUS_OK) {
    link_lost(a, 0, "Broker connection lost");
    return UV_EPIPE;
  }
  return 0;
}

int sg_amqp_publish(sg_amqp_t *a, amqp_bytes_t exchange, amqp_bytes_t routing_key,
                    const amqp_basic_properties_t *props, amqp_bytes_t body, uint64_t *seq) {
  if (a->state != SG_AMQP_OPEN) return UV_ENOTCONN;
  if (amqp_basic_publish(a->conn, SG_CHANNEL, exchange, routing_key, 0, 0, props, body) !=
      AMQP_STATUS_OK) {
    link_lost(a, 0, "Broker connection lost");
    return UV_EPIPE;
  }
  *seq = ++a->pub_seq;
  return 0;
}

static void close_wait_cb(uv_timer_t *t) {
  link_finish(container_of(t, sg_amqp_t, timer));
}

void sg_amqp_close(sg_amqp_t *a) {
  switch (a->state) {
  case SG_AMQP_LOGIN:
    a->close_requested = 1; /* after_login_cb finishes */
    return;
  case SG_AMQP_OPEN: {
    amqp_connection_close_t c = {200, amqp_cstring_bytes("Goodbye"), 0, 0};
    a->state = SG_AMQP_CLOSING;
    a->in_delivery = 0;
    if (amqp_send_method(a->conn, 0, AMQP_CONNECTION_CLOSE_METHOD, &c) != AMQP_STATUS_OK) {
      link_finish(a);
      return;
    }
    uv_timer_start(&a->timer, close_wait_cb, CLOSE_OK_WAIT_MS, 0);
    return;
  }
  case SG_AMQP_DEAD:
    link_finish(a);
    return;
  default:
    return;
  }
}
