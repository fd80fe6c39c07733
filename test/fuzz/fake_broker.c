/* SPDX-License-Identifier: MIT */
/* A fake AMQP 0-9-1 server for the session fuzz target. librabbitmq-c
 * encodes and decodes the method and property fields; the frame layout
 * (type, channel, size, payload, 0xCE) is written here. Only what the
 * gateway sends is answered; anything else is ignored, as a reply the
 * gateway waits for would be missing from a real broker too. */
#include "fake_broker.h"

#include <amqp.h>
#include <amqp_framing.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FB_FRAME_MAX 131072
#define FB_CHANNEL_MAX 256
#define FB_FRAME_END 0xCE

typedef struct fb_chan {
  unsigned confirm : 1;
  unsigned in_publish : 1; /* a basic.publish waits for its content */
  uint64_t body_left;
  uint64_t pub_tag;  /* confirms sent */
  uint64_t dtag;     /* deliveries sent */
  unsigned consumers;
} fb_chan_t;

typedef struct fb_conn {
  uv_tcp_t tcp;
  uint8_t *in;
  size_t len, cap;
  int got_header;
  int closed;
  int pool;          /* logged in as the pool user */
  int blocked;       /* connection.blocked sent, unblocked not yet */
  unsigned methods;  /* methods received, for the drop and forced close */
  amqp_pool_t mem;
  fb_chan_t chans[FB_CHANNEL_MAX + 1];
} fb_conn_t;

typedef struct fb_write {
  uv_write_t req;
  uint8_t data[];
} fb_write_t;

static uv_tcp_t listener;
static const char *pool_user;
static unsigned faults, fault_arg;
static size_t open_conns;   /* not counting the pool user's */
static unsigned activity;
static uint64_t name_seq;

void fb_set_script(unsigned f, unsigned arg) {
  faults = f;
  fault_arg = arg;
}

size_t fb_open_connections(void) { return open_conns; }

unsigned fb_take_activity(void) {
  unsigned a = activity;
  activity = 0;
  return a;
}

static void put16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v) {
  put16(p, (uint16_t)(v >> 16));
  put16(p + 2, (uint16_t)v);
}

static void put64(uint8_t *p, uint64_t v) {
  put32(p, (uint32_t)(v >> 32));
  put32(p + 4, (uint32_t)v);
}

static uint32_t get32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void write_cb(uv_write_t *req, int status) {
  (void)status;
  free(req); /* the first member of its fb_write_t */
}

static void conn_closed_cb(uv_handle_t *h) {
  fb_conn_t *c = h->data;
  if (!c->pool) open_conns--;
  empty_amqp_pool(&c->mem);
  free(c->in);
  free(c);
}

static void conn_drop(fb_conn_t *c) {
  if (c->closed) return;
  c->closed = 1;
  activity++;
  uv_close((uv_handle_t *)&c->tcp, conn_closed_cb);
}

static void send_frame(fb_conn_t *c, uint8_t type, uint16_t channel, const uint8_t *payload,
                       size_t len) {
  if (c->closed) return;
  fb_write_t *w = malloc(sizeof(*w) + len + 8);
  if (w == NULL) {
    conn_drop(c);
    return;
  }
  w->data[0] = type;
  put16(w->data + 1, channel);
  put32(w->data + 3, (uint32_t)len);
  memcpy(w->data + 7, payload, len);
  w->data[7 + len] = FB_FRAME_END;
  uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)(len + 8));
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, write_cb) != 0) {
    free(w);
    conn_drop(c);
  }
}

static void send_method(fb_conn_t *c, uint16_t channel, amqp_method_number_t id, void *m) {
  uint8_t buf[8192];
  put32(buf, id);
  int n = amqp_encode_method(id, m, (amqp_bytes_t){sizeof(buf) - 4, buf + 4});
  if (n < 0) {
    fprintf(stderr, "fake broker: cannot encode method 0x%08x\n", id);
    abort();
  }
  send_frame(c, AMQP_FRAME_METHOD, channel, buf, (size_t)n + 4);
}

static void send_connection_close(fb_conn_t *c, uint16_t code, const char *text) {
  amqp_connection_close_t m = {code, amqp_cstring_bytes(text), 0, 0};
  send_method(c, 0, AMQP_CONNECTION_CLOSE_METHOD, &m);
}

static void send_channel_close(fb_conn_t *c, uint16_t ch, uint16_t code, const char *text,
                               amqp_method_number_t cause) {
  amqp_channel_close_t m = {code, amqp_cstring_bytes(text), (uint16_t)(cause >> 16),
                            (uint16_t)cause};
  send_method(c, ch, AMQP_CHANNEL_CLOSE_METHOD, &m);
}

static void send_start(fb_conn_t *c) {
  amqp_table_entry_t caps[4];
  const char *names[4] = {"publisher_confirms", "consumer_cancel_notify", "basic.nack",
                          "connection.blocked"};
  for (int i = 0; i < 4; i++) {
    caps[i].key = amqp_cstring_bytes(names[i]);
    caps[i].value.kind = AMQP_FIELD_KIND_BOOLEAN;
    caps[i].value.value.boolean = 1;
  }
  amqp_table_entry_t props[2];
  props[0].key = amqp_cstring_bytes("product");
  props[0].value.kind = AMQP_FIELD_KIND_UTF8;
  props[0].value.value.bytes = amqp_cstring_bytes("fake broker");
  props[1].key = amqp_cstring_bytes("capabilities");
  props[1].value.kind = AMQP_FIELD_KIND_TABLE;
  props[1].value.value.table = (amqp_table_t){4, caps};
  amqp_connection_start_t m = {0, 9, {2, props}, amqp_cstring_bytes("PLAIN AMQPLAIN"),
                               amqp_cstring_bytes("en_US")};
  send_method(c, 0, AMQP_CONNECTION_START_METHOD, &m);
}

/* One delivery to consumer tag on channel ch; what it carries follows the
 * script's argument, so that text, binary, empty and multi-frame bodies
 * all reach the gateway. */
static void send_delivery(fb_conn_t *c, uint16_t ch, amqp_bytes_t tag, amqp_bytes_t queue,
                          unsigned variant) {
  fb_chan_t *st = &c->chans[ch];
  amqp_basic_deliver_t d = {tag, ++st->dtag, variant & 1, amqp_cstring_bytes(""), queue};
  if (variant & 2) {
    d.exchange = amqp_cstring_bytes("amq.topic");
    d.routing_key = amqp_cstring_bytes("a.b");
  }
  send_method(c, ch, AMQP_BASIC_DELIVER_METHOD, &d);

  static uint8_t big[FB_FRAME_MAX + 1000];
  static const uint8_t binary[] = {0xff, 0xfe, 0x00, 'x'};
  const uint8_t *body = (const uint8_t *)"hello";
  size_t body_len = 5;
  switch ((variant >> 2) & 3) {
  case 1:
    body = binary;
    body_len = sizeof(binary);
    break;
  case 2:
    body_len = 0;
    break;
  case 3:
    memset(big, 'b', sizeof(big));
    body = big;
    body_len = sizeof(big);
    break;
  }
  amqp_table_entry_t hdrs[3];
  hdrs[0].key = amqp_cstring_bytes("x-str");
  hdrs[0].value.kind = AMQP_FIELD_KIND_UTF8;
  hdrs[0].value.value.bytes = amqp_cstring_bytes("v\nw:x");
  hdrs[1].key = amqp_cstring_bytes("x-int");
  hdrs[1].value.kind = AMQP_FIELD_KIND_I64;
  hdrs[1].value.value.i64 = -7;
  hdrs[2].key = amqp_cstring_bytes("x-bool");
  hdrs[2].value.kind = AMQP_FIELD_KIND_BOOLEAN;
  hdrs[2].value.value.boolean = 1;
  amqp_basic_properties_t p;
  memset(&p, 0, sizeof(p));
  p._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_HEADERS_FLAG |
             AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_PRIORITY_FLAG |
             AMQP_BASIC_CORRELATION_ID_FLAG | AMQP_BASIC_REPLY_TO_FLAG |
             AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_TIMESTAMP_FLAG;
  p.content_type = amqp_cstring_bytes("text/plain");
  p.headers = (amqp_table_t){3, hdrs};
  p.delivery_mode = 2;
  p.priority = 3;
  p.correlation_id = amqp_cstring_bytes("c-1");
  p.reply_to = amqp_cstring_bytes((variant & 1) ? "amq.gen-reply" : "/queue/r");
  p.message_id = amqp_cstring_bytes("m-1");
  p.timestamp = 1700000000;

  uint8_t hb[4096];
  put16(hb, AMQP_BASIC_CLASS);
  put16(hb + 2, 0);
  put64(hb + 4, body_len);
  int n = amqp_encode_properties(AMQP_BASIC_CLASS, &p, (amqp_bytes_t){sizeof(hb) - 12, hb + 12});
  if (n < 0) abort();
  send_frame(c, AMQP_FRAME_HEADER, ch, hb, (size_t)n + 12);
  size_t off = 0, piece = FB_FRAME_MAX - 8;
  while (off < body_len) {
    size_t k = body_len - off < piece ? body_len - off : piece;
    send_frame(c, AMQP_FRAME_BODY, ch, body + off, k);
    off += k;
  }
}

static void confirm(fb_conn_t *c, uint16_t ch) {
  fb_chan_t *st = &c->chans[ch];
  st->in_publish = 0;
  if (!st->confirm) return;
  st->pub_tag++;
  if (faults & FB_NACK) {
    amqp_basic_nack_t k = {st->pub_tag, 0, 0};
    send_method(c, ch, AMQP_BASIC_NACK_METHOD, &k);
  } else {
    amqp_basic_ack_t k = {st->pub_tag, 0};
    send_method(c, ch, AMQP_BASIC_ACK_METHOD, &k);
  }
}

static amqp_bytes_t made_name(char *buf, size_t cap, const char *prefix) {
  snprintf(buf, cap, "%s%llu", prefix, (unsigned long long)++name_seq);
  return amqp_cstring_bytes(buf);
}

static void chan_method(fb_conn_t *c, uint16_t ch, amqp_method_number_t id, void *decoded) {
  fb_chan_t *st = &c->chans[ch];
  char name[64];
  switch (id) {
  case AMQP_CHANNEL_OPEN_METHOD: {
    memset(st, 0, sizeof(*st));
    amqp_channel_open_ok_t ok = {amqp_empty_bytes};
    send_method(c, ch, AMQP_CHANNEL_OPEN_OK_METHOD, &ok);
    return;
  }
  case AMQP_CHANNEL_CLOSE_METHOD: {
    amqp_channel_close_ok_t ok = {0};
    memset(st, 0, sizeof(*st));
    send_method(c, ch, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
    return;
  }
  case AMQP_CHANNEL_CLOSE_OK_METHOD:
    memset(st, 0, sizeof(*st));
    return;
  case AMQP_CONFIRM_SELECT_METHOD: {
    amqp_confirm_select_t *m = decoded;
    st->confirm = 1;
    amqp_confirm_select_ok_t ok = {0};
    if (!m->nowait) send_method(c, ch, AMQP_CONFIRM_SELECT_OK_METHOD, &ok);
    return;
  }
  case AMQP_EXCHANGE_DECLARE_METHOD: {
    amqp_exchange_declare_t *m = decoded;
    amqp_exchange_declare_ok_t ok = {0};
    if (!m->nowait) send_method(c, ch, AMQP_EXCHANGE_DECLARE_OK_METHOD, &ok);
    return;
  }
  case AMQP_EXCHANGE_BIND_METHOD: {
    amqp_exchange_bind_t *m = decoded;
    amqp_exchange_bind_ok_t ok = {0};
    if (!m->nowait) send_method(c, ch, AMQP_EXCHANGE_BIND_OK_METHOD, &ok);
    return;
  }
  case AMQP_QUEUE_DECLARE_METHOD: {
    amqp_queue_declare_t *m = decoded;
    if (faults & FB_DECLARE_404) {
      send_channel_close(c, ch, 404, "NOT_FOUND - no queue 'q' in vhost '/'", id);
      return;
    }
    amqp_queue_declare_ok_t ok = {m->queue, 0, 0};
    if (m->queue.len == 0) ok.queue = made_name(name, sizeof(name), "amq.gen-");
    if (!m->nowait) send_method(c, ch, AMQP_QUEUE_DECLARE_OK_METHOD, &ok);
    return;
  }
  case AMQP_QUEUE_BIND_METHOD: {
    amqp_queue_bind_t *m = decoded;
    if (faults & FB_DENY) {
      send_channel_close(c, ch, 403, "ACCESS_REFUSED - read access to exchange denied", id);
      return;
    }
    amqp_queue_bind_ok_t ok = {0};
    if (!m->nowait) send_method(c, ch, AMQP_QUEUE_BIND_OK_METHOD, &ok);
    return;
  }
  case AMQP_QUEUE_UNBIND_METHOD: {
    amqp_queue_unbind_ok_t ok = {0};
    send_method(c, ch, AMQP_QUEUE_UNBIND_OK_METHOD, &ok);
    return;
  }
  case AMQP_QUEUE_DELETE_METHOD: {
    amqp_queue_delete_t *m = decoded;
    amqp_queue_delete_ok_t ok = {0};
    if (!m->nowait) send_method(c, ch, AMQP_QUEUE_DELETE_OK_METHOD, &ok);
    return;
  }
  case AMQP_QUEUE_PURGE_METHOD: {
    amqp_queue_purge_t *m = decoded;
    amqp_queue_purge_ok_t ok = {0};
    if (!m->nowait) send_method(c, ch, AMQP_QUEUE_PURGE_OK_METHOD, &ok);
    return;
  }
  case AMQP_BASIC_QOS_METHOD: {
    amqp_basic_qos_ok_t ok = {0};
    send_method(c, ch, AMQP_BASIC_QOS_OK_METHOD, &ok);
    return;
  }
  case AMQP_BASIC_CONSUME_METHOD: {
    amqp_basic_consume_t *m = decoded;
    amqp_basic_consume_ok_t ok = {m->consumer_tag};
    if (m->consumer_tag.len == 0) ok.consumer_tag = made_name(name, sizeof(name), "amq.ctag-");
    if (!m->nowait) send_method(c, ch, AMQP_BASIC_CONSUME_OK_METHOD, &ok);
    st->consumers++;
    if (c->blocked) {
      /* After the consume-ok, so that publishes the subscription held
       * back meet the block first. */
      amqp_connection_unblocked_t u = {0};
      send_method(c, 0, AMQP_CONNECTION_UNBLOCKED_METHOD, &u);
      c->blocked = 0;
    }
    if (faults & FB_DELIVER) {
      unsigned n = 1 + ((fault_arg >> 4) & 3);
      for (unsigned i = 0; i < n; i++)
        send_delivery(c, ch, ok.consumer_tag, m->queue, (fault_arg >> 2) + i);
    }
    if (faults & FB_CANCEL) {
      amqp_basic_cancel_t cn = {ok.consumer_tag, 0};
      send_method(c, ch, AMQP_BASIC_CANCEL_METHOD, &cn);
    }
    return;
  }
  case AMQP_BASIC_CANCEL_METHOD: {
    amqp_basic_cancel_t *m = decoded;
    amqp_basic_cancel_ok_t ok = {m->consumer_tag};
    if (!m->nowait) send_method(c, ch, AMQP_BASIC_CANCEL_OK_METHOD, &ok);
    return;
  }
  case AMQP_BASIC_PUBLISH_METHOD:
    if (faults & FB_DENY) {
      send_channel_close(c, ch, 403, "ACCESS_REFUSED - write access to exchange denied", id);
      return;
    }
    st->in_publish = 1;
    st->body_left = 0;
    return;
  case AMQP_BASIC_RECOVER_METHOD: {
    amqp_basic_recover_ok_t ok = {0};
    send_method(c, ch, AMQP_BASIC_RECOVER_OK_METHOD, &ok);
    return;
  }
  case AMQP_TX_SELECT_METHOD: {
    amqp_tx_select_ok_t ok = {0};
    send_method(c, ch, AMQP_TX_SELECT_OK_METHOD, &ok);
    return;
  }
  case AMQP_TX_COMMIT_METHOD: {
    amqp_tx_commit_ok_t ok = {0};
    send_method(c, ch, AMQP_TX_COMMIT_OK_METHOD, &ok);
    return;
  }
  case AMQP_TX_ROLLBACK_METHOD: {
    amqp_tx_rollback_ok_t ok = {0};
    send_method(c, ch, AMQP_TX_ROLLBACK_OK_METHOD, &ok);
    return;
  }
  default:
    /* basic.ack, basic.nack, basic.reject, channel.flow-ok ...: no reply. */
    return;
  }
}

static void conn_method(fb_conn_t *c, amqp_method_number_t id, void *decoded) {
  switch (id) {
  case AMQP_CONNECTION_START_OK_METHOD: {
    amqp_connection_start_ok_t *m = decoded;
    /* PLAIN: "\0user\0password". */
    const char *r = m->response.bytes;
    size_t rl = m->response.len, ul = 0;
    if (rl > 1 && r[0] == '\0')
      while (1 + ul < rl && r[1 + ul] != '\0') ul++;
    c->pool = rl > 1 && ul == strlen(pool_user) && memcmp(r + 1, pool_user, ul) == 0;
    if (c->pool) open_conns--;
    if ((faults & FB_REFUSE_LOGIN) && !c->pool) {
      send_connection_close(c, 403,
                            "ACCESS_REFUSED - Login was refused using authentication "
                            "mechanism PLAIN");
      return;
    }
    amqp_connection_tune_t t = {FB_CHANNEL_MAX, FB_FRAME_MAX, 0};
    send_method(c, 0, AMQP_CONNECTION_TUNE_METHOD, &t);
    return;
  }
  case AMQP_CONNECTION_OPEN_METHOD: {
    amqp_connection_open_t *m = decoded;
    if (m->virtual_host.len > 0 && ((char *)m->virtual_host.bytes)[0] == '!') {
      send_connection_close(c, 530, "NOT_ALLOWED - vhost not found");
      return;
    }
    amqp_connection_open_ok_t ok = {amqp_empty_bytes};
    send_method(c, 0, AMQP_CONNECTION_OPEN_OK_METHOD, &ok);
    if ((faults & FB_BLOCKED) && !c->pool) {
      amqp_connection_blocked_t b = {amqp_cstring_bytes("low on memory")};
      send_method(c, 0, AMQP_CONNECTION_BLOCKED_METHOD, &b);
      c->blocked = 1;
    }
    return;
  }
  case AMQP_CONNECTION_CLOSE_METHOD: {
    amqp_connection_close_ok_t ok = {0};
    send_method(c, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
    return; /* the client closes the socket */
  }
  case AMQP_CONNECTION_CLOSE_OK_METHOD:
    conn_drop(c);
    return;
  default:
    return; /* tune-ok, heartbeats */
  }
}

/* One whole frame; returns -1 when the connection must go. */
static int on_frame(fb_conn_t *c, uint8_t type, uint16_t ch, const uint8_t *p, size_t len) {
  activity++;
  if (ch > FB_CHANNEL_MAX) return -1;
  fb_chan_t *st = &c->chans[ch];
  if (type == AMQP_FRAME_HEADER) {
    if (!st->in_publish || len < 12) return 0;
    uint64_t size = (uint64_t)get32(p + 4) << 32 | get32(p + 8);
    st->body_left = size;
    if (size == 0) confirm(c, ch);
    return 0;
  }
  if (type == AMQP_FRAME_BODY) {
    if (!st->in_publish) return 0;
    st->body_left = len >= st->body_left ? 0 : st->body_left - len;
    if (st->body_left == 0) confirm(c, ch);
    return 0;
  }
  if (type != AMQP_FRAME_METHOD || len < 4) return 0;
  amqp_method_number_t id = get32(p);
  void *decoded = NULL;
  recycle_amqp_pool(&c->mem);
  if (amqp_decode_method(id, &c->mem, (amqp_bytes_t){len - 4, (void *)(p + 4)}, &decoded) < 0) {
    fprintf(stderr, "fake broker: cannot decode method 0x%08x\n", id);
    return -1;
  }
  c->methods++;
  if (!c->pool && (faults & (FB_DROP | FB_FORCE_CLOSE)) &&
      c->methods == 1 + (fault_arg & 15)) {
    if (faults & FB_DROP) return -1;
    send_connection_close(c, 320, "CONNECTION_FORCED - broker forced connection closure");
    return 0;
  }
  if (ch == 0) conn_method(c, id, decoded);
  else chan_method(c, ch, id, decoded);
  return 0;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  fb_conn_t *c = h->data;
  if (suggested < 65536) suggested = 65536;
  if (c->cap - c->len < suggested) {
    uint8_t *n = realloc(c->in, c->len + suggested);
    if (n == NULL) {
      *b = uv_buf_init(NULL, 0);
      return;
    }
    c->in = n;
    c->cap = c->len + suggested;
  }
  *b = uv_buf_init((char *)c->in + c->len, (unsigned)(c->cap - c->len));
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  (void)b;
  fb_conn_t *c = s->data;
  if (n < 0) {
    conn_drop(c);
    return;
  }
  c->len += (size_t)n;
  size_t off = 0;
  if (!c->got_header) {
    if (c->len < 8) return;
    if (memcmp(c->in, "AMQP\0\0\x09\x01", 8) != 0) {
      conn_drop(c);
      return;
    }
    c->got_header = 1;
    off = 8;
    activity++;
    send_start(c);
  }
  while (!c->closed && c->len - off >= 7) {
    const uint8_t *f = c->in + off;
    uint32_t size = get32(f + 3);
    if (size > FB_FRAME_MAX) {
      conn_drop(c);
      return;
    }
    if (c->len - off < (size_t)size + 8) break;
    if (f[7 + size] != FB_FRAME_END ||
        on_frame(c, f[0], (uint16_t)(f[1] << 8 | f[2]), f + 7, size) != 0) {
      conn_drop(c);
      return;
    }
    off += (size_t)size + 8;
  }
  if (c->closed) return;
  memmove(c->in, c->in + off, c->len - off);
  c->len -= off;
}

static void accept_cb(uv_stream_t *server, int status) {
  if (status < 0) return;
  fb_conn_t *c = calloc(1, sizeof(*c));
  if (c == NULL) abort();
  uv_tcp_init(server->loop, &c->tcp);
  c->tcp.data = c;
  init_amqp_pool(&c->mem, 4096);
  open_conns++;
  activity++;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
    conn_drop(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
}

int fb_start(uv_loop_t *loop, const char *user, int *port) {
  struct sockaddr_in sa;
  pool_user = user;
  int r = uv_ip4_addr("127.0.0.1", 0, &sa);
  if (r == 0) r = uv_tcp_init(loop, &listener);
  if (r == 0) r = uv_tcp_bind(&listener, (const struct sockaddr *)&sa, 0);
  if (r == 0) r = uv_listen((uv_stream_t *)&listener, 128, accept_cb);
  if (r) return r;
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  if ((r = uv_tcp_getsockname(&listener, (struct sockaddr *)&ss, &len)) != 0) return r;
  *port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
  return 0;
}
