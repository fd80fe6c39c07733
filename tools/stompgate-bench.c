/* SPDX-License-Identifier: MIT */
/* stompgate-bench: a load generator for any STOMP-over-WebSocket endpoint
 * (stompgate, RabbitMQ Web-STOMP). One libuv loop drives every client
 * session; wslay does the WebSocket framing, OpenSSL checks the upgrade.
 * Each scenario prints one JSON line on stdout; progress goes to stderr. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>
#include <wslay/wslay.h>

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* Hard caps so that no option can make a loop unbounded. */
#define MAX_SESSIONS 20000
#define MAX_MESSAGES 100000000ull
#define MAX_DURATION_S 3600.0
#define MAX_LAT_SAMPLES (20u * 1000 * 1000)

typedef struct {
  char *url;
  char host[256];
  int port;
  char path[512];
  const char *scenarios;
  int subscribers;
  int pairs;
  uint64_t messages; /* 0: use duration */
  double duration;   /* seconds: measured phase cap (or length when messages is 0) */
  double setup_timeout;
  double rate;
  int sessions;
  int concurrency;
  int size;
  int window;
  const char *login, *passcode, *vhost;
  int pid, broker_pid;
  const char *broker_mem_cmd; /* prints the broker's own count of its memory, in bytes */
  double settle;
  int heartbeat_ms;
  int unique_topics; /* connect and idle: each session on a topic of its own */
  int rooms;         /* rooms: room topics shared by the odd sessions */
  long long first_index; /* rooms: global index of this process's first session */
  const char *run_id;    /* rooms: topic prefix shared by cooperating processes */
  const char *ready_file;
  int publish_rooms; /* rooms: this process also publishes one message per room */
  int verbose;
} opts_t;

static opts_t o = {
    .scenarios = "fanout",
    .subscribers = -1,
    .pairs = 10,
    .messages = 0,
    .duration = 0,
    .setup_timeout = 120,
    .rate = 1000,
    .sessions = -1,
    .concurrency = 64,
    .size = 100,
    .window = 0,
    .login = "guest",
    .passcode = "guest",
    .vhost = "/",
    .settle = 2,
    .heartbeat_ms = 10000,
    .rooms = 100,
};

enum conn_state { C_TCP, C_UPGRADE, C_STOMP, C_SUBSCRIBING, C_READY, C_DEAD };
enum conn_role { R_NONE, R_SUB, R_PUB };

typedef struct conn_s {
  uv_tcp_t tcp;
  uv_connect_t creq;
  wslay_event_context_ptr ws;
  enum conn_state state;
  enum conn_role role;
  bool closing;
  bool in_array; /* freed by close_all, not by its close callback */
  char key[32];
  char head[2048];
  size_t head_len;
  const uint8_t *rptr;
  size_t rlen;
  char *obuf;
  size_t olen, ocap;
  char dest[192];      /* subscribed destination, empty for none */
  char send_dest[192]; /* publish destination */
  uint64_t sent, received;
  uint32_t receipts; /* RECEIPT frames after the subscription's */
  struct conn_s *peer; /* pairs: the publisher of this consumer, and back */
  struct conn_s *prev, *next; /* every open session, for heart-beats */
} conn_t;

typedef struct {
  uv_loop_t *loop;
  struct sockaddr_in addr;
  char run_id[24];
  /* session counters for the current phase */
  int started, ready, failed, closed_handles, open_handles;
  uint64_t errors;
  char first_error[256];
  uint64_t delivered;
  uint64_t *lat;
  size_t nlat, lat_cap;
  bool collect_latency;
  conn_t *pub;        /* fan-out / latency publisher */
  int nsubs;          /* fan-out subscriber count */
  uint64_t target;    /* messages to publish per publisher, 0 = until stop */
  bool stop_publishing;
  uint64_t in_flight_cap;
  uint64_t payload_seq;
  uv_timer_t tick;
  uv_timer_t opener; /* starts more sessions as handshakes finish */
  uv_timer_t guard; /* wakes the loop so that run_until sees its deadline */
  uv_timer_t hb;    /* client heart-beats */
  conn_t *all;      /* open sessions */
  int ready_open;   /* sessions subscribed (or connected) and still open */
  int sessions_done;  /* connect scenario */
  /* rooms scenario */
  bool rooms_check;   /* check each MESSAGE body against the session's topic */
  int rooms_complete; /* sessions that got their one message */
  uint64_t rooms_duplicates, rooms_wrong;
  uint64_t last_delivery; /* uv_hrtime of the latest MESSAGE */
  int go;             /* SIGUSR1 count */
  bool pub_no_heartbeat; /* the publisher offers no heart-beats */
  uv_signal_t go_sig;
} bench_t;

static bench_t B;

static void logf_(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("stompgate-bench: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

static double now_s(void) { return (double)uv_hrtime() / 1e9; }

/* ---- /proc readers ---------------------------------------------------- */

/* The broker's memory by its own count (Erlang's, after a collection),
 * which RSS only approximates: the allocators keep what they freed. -1
 * without --broker-mem-cmd or when it printed no number. */
static long long broker_mem_bytes(void) {
  if (o.broker_mem_cmd == NULL) return -1;
  FILE *p = popen(o.broker_mem_cmd, "r");
  if (p == NULL) return -1;
  long long v = -1;
  if (fscanf(p, "%lld", &v) != 1) v = -1;
  pclose(p);
  return v;
}

static long proc_rss_kb(int pid) {
  char p[64], line[256];
  long kb = -1;
  if (pid <= 0) return -1;
  snprintf(p, sizeof(p), "/proc/%d/status", pid);
  FILE *f = fopen(p, "r");
  if (!f) return -1;
  while (fgets(line, sizeof(line), f))
    if (strncmp(line, "VmRSS:", 6) == 0) {
      kb = strtol(line + 6, NULL, 10);
      break;
    }
  fclose(f);
  return kb;
}

/* utime + stime of a process, its threads included, in seconds. */
static double proc_cpu_s(int pid) {
  char p[64], buf[2048];
  if (pid <= 0) return -1;
  snprintf(p, sizeof(p), "/proc/%d/stat", pid);
  FILE *f = fopen(p, "r");
  if (!f) return -1;
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = 0;
  /* The command name may hold spaces and parentheses: fields count from the last ')'. */
  char *s = strrchr(buf, ')');
  if (!s) return -1;
  unsigned long long ut = 0, st = 0;
  /* After ')': state(3) ppid(4) ... utime(14) stime(15). */
  if (sscanf(s + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
    return -1;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

typedef struct {
  double t, gw_cpu, br_cpu, self_cpu;
} mark_t;

/* The load generator's own CPU: when it nears one core, it is the bottleneck. */
static double self_cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
         (double)ru.ru_stime.tv_usec / 1e6;
}

static mark_t mark(void) {
  mark_t m = {now_s(), proc_cpu_s(o.pid), -1, self_cpu_s()};
  if (o.broker_pid > 0 && o.broker_pid != o.pid) m.br_cpu = proc_cpu_s(o.broker_pid);
  return m;
}

/* ---- output ------------------------------------------------------------ */

static char jbuf[4096];
static size_t jlen;

static void j_begin(const char *scenario) {
  jlen = (size_t)snprintf(jbuf, sizeof(jbuf), "{\"scenario\":\"%s\",\"url\":\"%s\"", scenario, o.url);
}
static void j_int(const char *k, long long v) {
  jlen += (size_t)snprintf(jbuf + jlen, sizeof(jbuf) - jlen, ",\"%s\":%lld", k, v);
}
static void j_num(const char *k, double v) {
  if (!isfinite(v))
    jlen += (size_t)snprintf(jbuf + jlen, sizeof(jbuf) - jlen, ",\"%s\":null", k);
  else
    jlen += (size_t)snprintf(jbuf + jlen, sizeof(jbuf) - jlen, ",\"%s\":%.6g", k, v);
}
/* Wall-clock milliseconds since the epoch, to the microsecond. */
static void j_ms(const char *k, double v) {
  if (!isfinite(v))
    jlen += (size_t)snprintf(jbuf + jlen, sizeof(jbuf) - jlen, ",\"%s\":null", k);
  else
    jlen += (size_t)snprintf(jbuf + jlen, sizeof(jbuf) - jlen, ",\"%s\":%.3f", k, v);
}
static void j_str(const char *k, const char *v) {
  jlen += (size_t)snprintf(jbuf + jlen, sizeof(jbuf) - jlen, ",\"%s\":\"", k);
  for (; *v && jlen < sizeof(jbuf) - 8; v++) {
    unsigned char c = (unsigned char)*v;
    if (c == '"' || c == '\\') {
      jbuf[jlen++] = '\\';
      jbuf[jlen++] = (char)c;
    } else if (c < 0x20) {
      jlen += (size_t)snprintf(jbuf + jlen, sizeof(jbuf) - jlen, "\\u%04x", c);
    } else {
      jbuf[jlen++] = (char)c;
    }
  }
  jbuf[jlen++] = '"';
  jbuf[jlen] = 0;
}
/* CPU of the gateway and broker between two marks, and per million deliveries. */
static void j_cpu(mark_t a, mark_t b, uint64_t deliveries) {
  double gw = (a.gw_cpu >= 0 && b.gw_cpu >= 0) ? b.gw_cpu - a.gw_cpu : NAN;
  double br = (a.br_cpu >= 0 && b.br_cpu >= 0) ? b.br_cpu - a.br_cpu : NAN;
  j_num("gateway_cpu_s", gw);
  j_num("broker_cpu_s", br);
  j_num("bench_cpu_s", b.self_cpu - a.self_cpu);
  if (o.pid > 0 && deliveries > 0) {
    double tot = gw + (isnan(br) ? 0 : br);
    j_num("cpu_s_per_million", tot / (double)deliveries * 1e6);
  }
}
static void j_end(void) {
  if (B.errors) j_str("first_error", B.first_error);
  printf("%s}\n", jbuf);
  fflush(stdout);
}

/* ---- connection plumbing ------------------------------------------------ */

static void note_error(const char *fmt, ...) {
  B.errors++;
  if (B.first_error[0]) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(B.first_error, sizeof(B.first_error), fmt, ap);
  va_end(ap);
  logf_("error: %s", B.first_error);
}

static void close_cb(uv_handle_t *h) {
  conn_t *c = container_of(h, conn_t, tcp);
  if (c->ws) wslay_event_context_free(c->ws);
  c->ws = NULL;
  free(c->obuf);
  c->obuf = NULL;
  B.closed_handles++;
  B.open_handles--;
  if (!c->in_array) free(c);
}

static void conn_close(conn_t *c) {
  if (c->closing) return;
  c->closing = true;
  if (c->state != C_READY && c->state != C_DEAD) B.failed++;
  if (c->state == C_READY) B.ready_open--;
  if (c->prev) c->prev->next = c->next;
  else B.all = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
  if (c->peer) c->peer->peer = NULL;
  if (B.pub == c) B.pub = NULL;
  c->state = C_DEAD;
  uv_close((uv_handle_t *)&c->tcp, close_cb);
}

static void fail(conn_t *c, const char *fmt, const char *detail) {
  note_error(fmt, detail);
  conn_close(c);
}

typedef struct {
  uv_write_t req;
  char data[];
} wreq_t;

static void write_cb(uv_write_t *req, int status) {
  wreq_t *w = container_of(req, wreq_t, req);
  conn_t *c = req->data;
  free(w);
  if (status < 0 && status != UV_ECANCELED && !c->closing) fail(c, "write: %s", uv_strerror(status));
}

static int raw_write(conn_t *c, const char *data, size_t len) {
  wreq_t *w = malloc(sizeof(*w) + len);
  if (!w) return UV_ENOMEM;
  memcpy(w->data, data, len);
  w->req.data = c;
  uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
  int r = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, write_cb);
  if (r) free(w);
  return r;
}

/* Runs wslay's sender into obuf, then hands the bytes to libuv in one write. */
static void flush(conn_t *c) {
  if (c->closing || !c->ws) return;
  if (wslay_event_want_write(c->ws) && wslay_event_send(c->ws) != 0) {
    fail(c, "%s", "websocket send failed");
    return;
  }
  if (c->olen) {
    int r = raw_write(c, c->obuf, c->olen);
    c->olen = 0;
    if (r) fail(c, "write: %s", uv_strerror(r));
  }
}

static void send_frame(conn_t *c, const char *frame, size_t len) {
  struct wslay_event_msg m = {WSLAY_TEXT_FRAME, (const uint8_t *)frame, len};
  if (wslay_event_queue_msg(c->ws, &m) != 0) fail(c, "%s", "websocket queue failed");
}

static ssize_t ws_recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *ud) {
  (void)flags;
  conn_t *c = ud;
  if (c->rlen == 0) {
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  size_t n = len < c->rlen ? len : c->rlen;
  memcpy(buf, c->rptr, n);
  c->rptr += n;
  c->rlen -= n;
  return (ssize_t)n;
}

static ssize_t ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                          void *ud) {
  (void)flags;
  conn_t *c = ud;
  if (c->olen + len > c->ocap) {
    size_t cap = c->ocap ? c->ocap : 4096;
    while (cap < c->olen + len) cap *= 2;
    char *n = realloc(c->obuf, cap);
    if (!n) {
      wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
      return -1;
    }
    c->obuf = n;
    c->ocap = cap;
  }
  memcpy(c->obuf + c->olen, data, len);
  c->olen += len;
  return (ssize_t)len;
}

/* Masking keys need not be secret here: they only defeat proxy cache poisoning. */
static int ws_genmask_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *ud) {
  (void)ctx;
  (void)ud;
  static uint64_t x = 88172645463325252ull;
  for (size_t i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    buf[i] = (uint8_t)x;
  }
  return 0;
}

static void pump_publishers(void);
static void pub_pair_pump(conn_t *p);
static void on_ready(conn_t *c);

static void send_subscribe(conn_t *c) {
  char f[512];
  int n = snprintf(f, sizeof(f), "SUBSCRIBE\nid:s0\ndestination:%s\nack:auto\nreceipt:r0\n\n", c->dest);
  send_frame(c, f, (size_t)n + 1);
  c->state = C_SUBSCRIBING;
}

static void rooms_message(conn_t *c, const char *m, size_t len) {
  B.last_delivery = uv_hrtime();
  if (c->received > 1) {
    B.rooms_duplicates++;
    note_error("%s: %" PRIu64 " messages, expected 1", c->dest, c->received);
    return;
  }
  /* The body names the topic it was sent to: "<run>.user.<i>" or "<run>.room.<r>". */
  const char *want = c->dest + 7; /* after "/topic/" */
  size_t wl = strlen(want);
  const char *body = memmem(m, len, "\n\n", 2);
  size_t bl = 0;
  if (body) {
    body += 2;
    /* The body ends at the frame's NUL (Web-STOMP may send an EOL after it). */
    const char *nul = memchr(body, 0, len - (size_t)(body - m));
    bl = nul ? (size_t)(nul - body) : len - (size_t)(body - m);
  }
  if (!body || bl != wl || memcmp(body, want, wl) != 0) {
    B.rooms_wrong++;
    note_error("%s: unexpected body '%.*s'", c->dest, (int)(bl < 80 ? bl : 80), body ? body : "");
    return;
  }
  B.rooms_complete++;
}

static void handle_message(conn_t *c, const char *m, size_t len) {
  c->received++;
  B.delivered++;
  if (B.rooms_check) {
    rooms_message(c, m, len);
    return;
  }
  if (B.collect_latency && B.nlat < B.lat_cap) {
    const char *body = memmem(m, len, "\n\n", 2);
    if (body && len - (size_t)(body - m) > 5 && memcmp(body + 2, "ts=", 3) == 0) {
      uint64_t ts = strtoull(body + 5, NULL, 10);
      uint64_t t = uv_hrtime();
      if (t >= ts) B.lat[B.nlat++] = t - ts;
    }
  }
  if (c->peer)
    pub_pair_pump(c->peer);
  else if (B.pub && (B.delivered & 63) == 0)
    pump_publishers();
}

static void ws_msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *a, void *ud) {
  (void)ctx;
  conn_t *c = ud;
  if (c->closing) return;
  if (a->opcode == WSLAY_CONNECTION_CLOSE) {
    char d[64];
    snprintf(d, sizeof(d), "%u", a->status_code);
    if (B.stop_publishing && c->state == C_READY) conn_close(c);
    else fail(c, "websocket closed by server (code %s)", d);
    return;
  }
  if (a->opcode != WSLAY_TEXT_FRAME && a->opcode != WSLAY_BINARY_FRAME) return;
  const char *m = (const char *)a->msg;
  size_t len = a->msg_length;
  while (len && (*m == '\n' || *m == '\r')) m++, len--; /* heart-beats */
  if (len == 0) return;
  if (len >= 8 && memcmp(m, "MESSAGE\n", 8) == 0) {
    handle_message(c, m, len);
  } else if (len >= 10 && memcmp(m, "CONNECTED\n", 10) == 0) {
    if (c->state != C_STOMP) return;
    if (c->dest[0]) {
      send_subscribe(c);
      flush(c);
    } else {
      on_ready(c);
    }
  } else if (len >= 8 && memcmp(m, "RECEIPT\n", 8) == 0) {
    if (c->state == C_SUBSCRIBING) on_ready(c);
    else c->receipts++;
  } else if (len >= 6 && memcmp(m, "ERROR\n", 6) == 0) {
    char d[200];
    const char *msg = memmem(m, len, "\nmessage:", 9);
    if (msg) {
      msg += 9;
      const char *e = memchr(msg, '\n', len - (size_t)(msg - m));
      size_t l = e ? (size_t)(e - msg) : 0;
      if (l > sizeof(d) - 1) l = sizeof(d) - 1;
      memcpy(d, msg, l);
      d[l] = 0;
    } else {
      snprintf(d, sizeof(d), "(no message header)");
    }
    fail(c, "STOMP ERROR: %s", d);
  }
}

static const struct wslay_event_callbacks ws_cbs = {ws_recv_cb, ws_send_cb, ws_genmask_cb, NULL,
                                                   NULL,       NULL,       ws_msg_cb};

static char read_buf[256 * 1024];

static void alloc_cb(uv_handle_t *h, size_t sz, uv_buf_t *b) {
  (void)h;
  (void)sz;
  /* One shared buffer: every read is consumed (wslay copies what it keeps) before the next. */
  *b = uv_buf_init(read_buf, sizeof(read_buf));
}

static void start_stomp(conn_t *c) {
  char f[1024];
  int n = snprintf(f, sizeof(f),
                   "CONNECT\naccept-version:1.2,1.1,1.0\nhost:%s\nlogin:%s\npasscode:%s\n"
                   "heart-beat:%d,0\n\n",
                   o.vhost, o.login, o.passcode,
                   c->role == R_PUB && B.pub_no_heartbeat ? 0 : o.heartbeat_ms);
  if (wslay_event_context_client_init(&c->ws, &ws_cbs, c) != 0) {
    fail(c, "%s", "wslay init failed");
    return;
  }
  c->state = C_STOMP;
  send_frame(c, f, (size_t)n + 1);
  flush(c);
}

static int check_upgrade(conn_t *c) {
  char want[64];
  unsigned char sha[SHA_DIGEST_LENGTH];
  char src[128];
  int n = snprintf(src, sizeof(src), "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", c->key);
  SHA1((unsigned char *)src, (size_t)n, sha);
  EVP_EncodeBlock((unsigned char *)want, sha, SHA_DIGEST_LENGTH);
  if (strncmp(c->head, "HTTP/1.1 101", 12) != 0) return -1;
  const char *p = c->head;
  while ((p = strchr(p, '\n')) != NULL) {
    p++;
    if (strncasecmp(p, "Sec-WebSocket-Accept:", 21) == 0) {
      p += 21;
      while (*p == ' ') p++;
      return strncmp(p, want, strlen(want)) == 0 ? 0 : -2;
    }
  }
  return -2;
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = container_of(s, conn_t, tcp);
  if (c->closing) return;
  if (nread < 0) {
    if (c->state == C_READY && B.stop_publishing) conn_close(c);
    else {
      char d[300];
      snprintf(d, sizeof(d), "%s (%s)", nread == UV_EOF ? "connection closed by server" : uv_strerror((int)nread),
               c->role == R_PUB ? "publisher" : c->dest[0] ? c->dest : "session");
      fail(c, "read: %s", d);
    }
    return;
  }
  const uint8_t *p = (const uint8_t *)buf->base;
  size_t len = (size_t)nread;
  if (c->state == C_UPGRADE) {
    size_t room = sizeof(c->head) - 1 - c->head_len;
    size_t take = len < room ? len : room;
    memcpy(c->head + c->head_len, p, take);
    c->head_len += take;
    c->head[c->head_len] = 0;
    char *end = strstr(c->head, "\r\n\r\n");
    if (!end) {
      if (c->head_len >= sizeof(c->head) - 1) fail(c, "%s", "upgrade response too large");
      return;
    }
    size_t hl = (size_t)(end + 4 - c->head);
    size_t extra = c->head_len - hl; /* bytes after the head, already WebSocket */
    *end = 0;
    int r = check_upgrade(c);
    if (r) {
      char *eol = strchr(c->head, '\r');
      if (eol) *eol = 0;
      fail(c, r == -1 ? "upgrade refused: %s" : "bad Sec-WebSocket-Accept (%s)", c->head);
      return;
    }
    start_stomp(c);
    if (c->closing) return;
    p = p + take - extra;
    len = extra + (len - take);
  }
  if (len == 0 || !c->ws) return;
  c->rptr = p;
  c->rlen = len;
  if (wslay_event_recv(c->ws) != 0) {
    fail(c, "%s", "websocket protocol error");
    return;
  }
  if (!c->closing) flush(c);
}

static void connect_cb(uv_connect_t *req, int status) {
  conn_t *c = container_of(req, conn_t, creq);
  if (c->closing) return;
  if (status < 0) {
    fail(c, "connect: %s", uv_strerror(status));
    return;
  }
  unsigned char raw[16];
  RAND_bytes(raw, sizeof(raw));
  EVP_EncodeBlock((unsigned char *)c->key, raw, sizeof(raw));
  char req_s[1024];
  int n = snprintf(req_s, sizeof(req_s),
                   "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                   "Sec-WebSocket-Protocol: v12.stomp, v11.stomp, v10.stomp\r\n\r\n",
                   o.path, o.host, o.port, c->key);
  c->state = C_UPGRADE;
  int r;
  if ((r = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb)) || (r = raw_write(c, req_s, (size_t)n)))
    fail(c, "start: %s", uv_strerror(r));
}

/* Starts one session; it subscribes to dest (when not NULL) before it counts as ready. */
static conn_t *conn_open(const char *dest, enum conn_role role) {
  conn_t *c = calloc(1, sizeof(*c));
  if (!c) return NULL;
  c->role = role;
  if (dest) snprintf(c->dest, sizeof(c->dest), "%s", dest);
  uv_tcp_init(B.loop, &c->tcp);
  uv_tcp_nodelay(&c->tcp, 1);
  B.open_handles++;
  B.started++;
  c->next = B.all;
  if (B.all) B.all->prev = c;
  B.all = c;
  c->state = C_TCP;
  int r = uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&B.addr, connect_cb);
  if (r) fail(c, "connect: %s", uv_strerror(r));
  return c;
}

/* ---- phases ------------------------------------------------------------- */

static void tick_cb(uv_timer_t *t) { (void)t; }

/* Browsers' clients send heart-beats (stomp.js: every 10 s); without them
 * Web-STOMP's WebSocket layer closes sessions that have been silent for its
 * idle timeout, which a subscriber in a long run is. */
static void hb_cb(uv_timer_t *t) {
  (void)t;
  for (conn_t *c = B.all, *next; c; c = next) {
    next = c->next;
    if (c->state == C_READY && !c->closing) {
      send_frame(c, "\n", 1);
      flush(c);
    }
  }
}

/* Runs the loop until done() holds or the time is up; true when done. */
static bool run_until(bool (*done)(void), double timeout_s) {
  double end = now_s() + timeout_s;
  bool ok = true;
  uv_timer_start(&B.guard, tick_cb, 10, 10);
  while (!done()) {
    if (now_s() >= end) {
      ok = false;
      break;
    }
    uv_run(B.loop, UV_RUN_ONCE);
  }
  uv_timer_stop(&B.guard);
  return ok;
}

typedef struct {
  conn_t **v;
  int n, cap;
  const char *(*dest_of)(int i);
  enum conn_role role;
  int target;
} opener_t;

static opener_t OP;

static void on_ready(conn_t *c) {
  c->state = C_READY;
  B.ready++;
  B.ready_open++;
  if (c->role == R_NONE && B.sessions_done >= 0) {
    /* connect scenario: the session is done once subscribed; hang up. */
    B.sessions_done++;
    conn_close(c);
  }
}

/* Keeps at most o.concurrency sessions in their handshake at a time. */
static void opener_step(void) {
  while (OP.n < OP.target && (B.started - B.ready - B.failed) < o.concurrency) {
    conn_t *c = conn_open(OP.dest_of ? OP.dest_of(OP.n) : NULL, OP.role);
    if (!c) break;
    if (OP.v) {
      OP.v[OP.n] = c;
      c->in_array = true;
    }
    OP.n++;
  }
}
static void opener_tick_cb(uv_timer_t *t) {
  (void)t;
  opener_step();
}
static bool opener_done(void) {
  opener_step();
  return B.ready + B.failed >= OP.target;
}

/* Opens n sessions, returns the number ready. */
static int open_many(conn_t **v, int n, const char *(*dest_of)(int), enum conn_role role, double timeout) {
  OP = (opener_t){.v = v, .n = 0, .dest_of = dest_of, .role = role, .target = n};
  int ready0 = B.ready, failed0 = B.failed, started0 = B.started;
  B.ready = B.failed = B.started = 0;
  uv_timer_start(&B.opener, opener_tick_cb, 5, 5);
  run_until(opener_done, timeout);
  uv_timer_stop(&B.opener);
  int ready = B.ready;
  B.ready += ready0;
  B.failed += failed0;
  B.started += started0;
  return ready;
}

static bool all_closed(void) { return B.open_handles == 0; }

static void close_all(conn_t **v, int n) {
  for (int i = 0; i < n; i++)
    if (v[i] && !v[i]->closing) conn_close(v[i]);
  run_until(all_closed, 10);
  for (int i = 0; i < n; i++)
    if (v[i]) {
      /* A handle still open after the wait is leaked rather than freed under libuv. */
      if (uv_is_closing((uv_handle_t *)&v[i]->tcp) && B.open_handles == 0) free(v[i]);
      v[i] = NULL;
    }
}

static void reset_counters(void) {
  B.started = B.ready = B.failed = 0;
  B.errors = 0;
  B.first_error[0] = 0;
  B.delivered = 0;
  B.pub = NULL;
  B.stop_publishing = false;
  B.sessions_done = -1;
  B.collect_latency = false;
  B.nlat = 0;
}

static char topic_buf[192];
static const char *topic_dest(int i) {
  (void)i;
  return topic_buf;
}
/* connect and idle: one topic for all, or (--topics unique) a topic per
 * session, as per-user topics are. */
static char session_topic_buf[224];
static const char *session_topic_dest(int i) {
  if (!o.unique_topics) return topic_buf;
  snprintf(session_topic_buf, sizeof(session_topic_buf), "%s.%d", topic_buf, i);
  return session_topic_buf;
}
static char queue_buf[192];
static const char *queue_dest(int i) {
  snprintf(queue_buf, sizeof(queue_buf), "/queue/bench-%s-%d", B.run_id, i);
  return queue_buf;
}

/* Builds a SEND frame whose body is "ts=<monotonic ns>" padded to o.size bytes. */
static size_t build_send(char *f, size_t cap, const char *dest) {
  int h = snprintf(f, cap, "SEND\ndestination:%s\ncontent-length:%d\n\n", dest, o.size);
  char ts[32];
  int tl = snprintf(ts, sizeof(ts), "ts=%" PRIu64 "\n", uv_hrtime());
  size_t body = (size_t)o.size;
  char *b = f + h;
  memset(b, 'x', body);
  memcpy(b, ts, (size_t)tl < body ? (size_t)tl : body);
  b[body] = 0;
  return (size_t)h + body + 1;
}

static void publish(conn_t *p, uint64_t n) {
  static char f[70000];
  for (uint64_t i = 0; i < n && !p->closing; i++) {
    size_t len = build_send(f, sizeof(f), p->send_dest);
    send_frame(p, f, len);
    p->sent++;
  }
  flush(p);
}

/* Fan-out flow control: keep at most o.window messages ahead of the average subscriber. */
static void pump_publishers(void) {
  conn_t *p = B.pub;
  if (!p || p->closing || B.stop_publishing || B.collect_latency) return;
  uint64_t want = B.target ? B.target : UINT64_MAX;
  uint64_t avg = B.nsubs ? B.delivered / (uint64_t)B.nsubs : 0;
  if (p->sent >= want) return;
  uint64_t ahead = p->sent - (avg < p->sent ? avg : p->sent);
  if (ahead >= (uint64_t)o.window) return;
  uint64_t n = (uint64_t)o.window - ahead;
  if (n > 64) n = 64;
  if (n > want - p->sent) n = want - p->sent;
  publish(p, n);
}

static void pub_pair_pump(conn_t *p) {
  conn_t *q = p->peer; /* the consumer */
  if (!q || p->closing || B.stop_publishing) return;
  uint64_t want = B.target ? B.target : UINT64_MAX;
  if (p->sent >= want) return;
  uint64_t ahead = p->sent - q->received;
  if (ahead >= (uint64_t)o.window / 2) return; /* refill in halves to batch writes */
  uint64_t n = (uint64_t)o.window - ahead;
  if (n > want - p->sent) n = want - p->sent;
  publish(p, n);
}

static uint64_t expect_deliveries;
static bool deliveries_done(void) { return B.delivered >= expect_deliveries; }
/* Fan-out: also over when the publisher or every subscriber is gone. */
static bool fanout_done(void) { return deliveries_done() || B.pub == NULL || B.ready_open <= 1; }

/* Timed runs: stop publishing, then wait (bounded) for what is in flight. */
static bool drain(uint64_t expected) {
  B.stop_publishing = true;
  expect_deliveries = expected;
  return run_until(deliveries_done, 30) && deliveries_done();
}

static int ready_count(conn_t **v, int n) {
  int r = 0;
  for (int i = 0; i < n; i++)
    if (v[i] && !v[i]->closing && v[i]->state == C_READY) r++;
  return r;
}

/* ---- scenarios ---------------------------------------------------------- */

static void fanout_tick_cb(uv_timer_t *t) {
  (void)t;
  pump_publishers();
}

static int scenario_fanout(void) {
  int S = o.subscribers > 0 ? o.subscribers : 1000;
  /* --duration alone publishes for that long; otherwise it caps a count. */
  bool timed = !o.messages && o.duration > 0;
  uint64_t M = o.messages ? o.messages : timed ? 0 : 1000;
  double cap = o.duration > 0 ? o.duration : 120;
  if (!o.window) o.window = 200;
  reset_counters();
  snprintf(topic_buf, sizeof(topic_buf), "/topic/bench.fanout.%s", B.run_id);
  conn_t **subs = calloc((size_t)S + 1, sizeof(*subs));
  int ready = open_many(subs, S, topic_dest, R_SUB, o.setup_timeout);
  logf_("fanout: %d/%d subscribers ready", ready, S);
  conn_t *pv[1];
  open_many(pv, 1, NULL, R_PUB, o.setup_timeout);
  conn_t *pub = pv[0];
  snprintf(pub->send_dest, sizeof(pub->send_dest), "%s", topic_buf);
  int ready_subs = ready_count(subs, S);
  B.nsubs = ready_subs;
  B.target = M;
  expect_deliveries = timed ? UINT64_MAX : M * (uint64_t)ready_subs;
  mark_t a = mark();
  bool ok = false;
  if (pub->state == C_READY && ready_subs > 0) {
    B.pub = pub;
    uv_timer_start(&B.tick, fanout_tick_cb, 1, 1);
    pump_publishers();
    ok = run_until(fanout_done, cap) && deliveries_done();
    if (timed) ok = drain(pub->sent * (uint64_t)ready_subs);
    uv_timer_stop(&B.tick);
  }
  mark_t b = mark();
  double el = b.t - a.t;
  uint64_t sent = pub->sent;
  uint64_t complete = 0;
  for (int i = 0; i < S; i++)
    if (subs[i] && subs[i]->received == sent) complete++;
  j_begin("fanout");
  j_int("subscribers", S);
  j_int("subscribers_ready", ready_subs);
  j_int("size", o.size);
  j_int("sent", (long long)sent);
  j_int("expected", (long long)(sent * (uint64_t)ready_subs));
  j_int("delivered", (long long)B.delivered);
  j_int("subscribers_complete", (long long)complete);
  j_int("completed", ok);
  j_num("elapsed_s", el);
  j_num("deliveries_per_s", (double)B.delivered / el);
  j_cpu(a, b, B.delivered);
  j_int("errors", (long long)B.errors);
  B.stop_publishing = true;
  subs[S] = pub;
  close_all(subs, S + 1);
  j_end();
  free(subs);
  return ok && complete == (uint64_t)S && B.errors == 0 ? 0 : 1;
}

static bool pairs_done(void) { return B.delivered >= expect_deliveries || B.ready_open == 0; }

static int scenario_pairs(void) {
  int P = o.pairs > 0 ? o.pairs : 10;
  bool timed = !o.messages && o.duration > 0;
  uint64_t M = o.messages ? o.messages : timed ? 0 : 10000;
  double cap = o.duration > 0 ? o.duration : 120;
  if (!o.window) o.window = 200;
  reset_counters();
  conn_t **v = calloc(2 * (size_t)P, sizeof(*v));
  int rc = open_many(v, P, queue_dest, R_SUB, o.setup_timeout);
  int rp = open_many(v + P, P, NULL, R_PUB, o.setup_timeout);
  logf_("pairs: %d consumers, %d publishers ready", rc, rp);
  int npairs = 0;
  for (int i = 0; i < P; i++) {
    conn_t *q = v[i], *p = v[P + i];
    if (q->state == C_READY && p->state == C_READY) {
      q->peer = p;
      p->peer = q;
      snprintf(p->send_dest, sizeof(p->send_dest), "%s", q->dest);
      npairs++;
    }
  }
  B.target = M;
  expect_deliveries = timed ? UINT64_MAX : M * (uint64_t)npairs;
  mark_t a = mark();
  for (int i = 0; i < P; i++)
    if (v[P + i]->peer) pub_pair_pump(v[P + i]);
  bool ok = npairs > 0 && run_until(pairs_done, cap) && deliveries_done();
  if (timed && npairs > 0) {
    uint64_t n = 0;
    for (int i = 0; i < P; i++)
      if (v[P + i]->peer) n += v[P + i]->sent;
    ok = drain(n);
  }
  mark_t b = mark();
  double el = b.t - a.t;
  uint64_t sent = 0;
  for (int i = 0; i < P; i++) sent += v[P + i]->sent;
  j_begin("pairs");
  j_int("pairs", P);
  j_int("pairs_ready", npairs);
  j_int("size", o.size);
  j_int("sent", (long long)sent);
  j_int("expected", (long long)expect_deliveries);
  j_int("delivered", (long long)B.delivered);
  j_int("completed", ok);
  j_num("elapsed_s", el);
  j_num("messages_per_s", (double)B.delivered / el);
  j_cpu(a, b, B.delivered);
  j_int("errors", (long long)B.errors);
  B.stop_publishing = true;
  close_all(v, 2 * P);
  j_end();
  free(v);
  return ok && B.errors == 0 ? 0 : 1;
}

static bool settle_done(void) { return false; }

static double lat_t0;
static uint64_t lat_total;
static void latency_tick_cb(uv_timer_t *t) {
  (void)t;
  conn_t *p = B.pub;
  if (!p || p->closing || B.stop_publishing) return;
  uint64_t due = (uint64_t)((now_s() - lat_t0) * o.rate);
  if (due > lat_total) due = lat_total;
  if (due > p->sent) {
    uint64_t n = due - p->sent;
    if (n > 1000) n = 1000;
    publish(p, n);
  }
}
static bool latency_done(void) { return B.pub == NULL || B.ready_open <= 1 || B.delivered >= expect_deliveries; }

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}
static double pct_ms(double q) {
  if (B.nlat == 0) return NAN;
  size_t i = (size_t)ceil(q * (double)B.nlat) - 1;
  if (i >= B.nlat) i = B.nlat - 1;
  return (double)B.lat[i] / 1e6;
}

static int scenario_latency(void) {
  int S = o.subscribers > 0 ? o.subscribers : 10;
  double dur = o.duration > 0 ? o.duration : 10;
  uint64_t M = o.messages ? o.messages : (uint64_t)(o.rate * dur);
  if (M == 0) M = 1;
  reset_counters();
  snprintf(topic_buf, sizeof(topic_buf), "/topic/bench.latency.%s", B.run_id);
  conn_t **subs = calloc((size_t)S + 1, sizeof(*subs));
  open_many(subs, S, topic_dest, R_SUB, o.setup_timeout);
  conn_t *pv[1];
  open_many(pv, 1, NULL, R_PUB, o.setup_timeout);
  conn_t *pub = pv[0];
  snprintf(pub->send_dest, sizeof(pub->send_dest), "%s", topic_buf);
  int rs = ready_count(subs, S);
  expect_deliveries = M * (uint64_t)rs;
  B.lat_cap = expect_deliveries < MAX_LAT_SAMPLES ? expect_deliveries : MAX_LAT_SAMPLES;
  B.lat = malloc((B.lat_cap ? B.lat_cap : 1) * sizeof(uint64_t));
  /* Let the broker finish binding (and cleaning up after earlier runs) so
   * that the first samples measure the relay, not the setup. */
  run_until(settle_done, o.settle < 1 ? o.settle : 1);
  B.collect_latency = true;
  lat_total = M;
  mark_t a = mark();
  bool ok = false;
  if (pub->state == C_READY && rs > 0) {
    B.pub = pub;
    lat_t0 = now_s();
    uv_timer_start(&B.tick, latency_tick_cb, 1, 1);
    /* Publishing takes M/rate seconds; allow as long again for the tail. */
    ok = run_until(latency_done, (double)M / o.rate * 2 + 5);
    uv_timer_stop(&B.tick);
  }
  mark_t b = mark();
  qsort(B.lat, B.nlat, sizeof(uint64_t), cmp_u64);
  j_begin("latency");
  j_int("subscribers", S);
  j_int("subscribers_ready", rs);
  j_num("rate", o.rate);
  j_int("size", o.size);
  j_int("sent", (long long)pub->sent);
  j_int("delivered", (long long)B.delivered);
  j_int("completed", ok);
  j_num("elapsed_s", b.t - a.t);
  j_num("p50_ms", pct_ms(0.5));
  j_num("p99_ms", pct_ms(0.99));
  j_num("p999_ms", pct_ms(0.999));
  j_num("max_ms", B.nlat ? (double)B.lat[B.nlat - 1] / 1e6 : NAN);
  j_cpu(a, b, B.delivered);
  j_int("errors", (long long)B.errors);
  B.stop_publishing = true;
  B.collect_latency = false;
  subs[S] = pub;
  close_all(subs, S + 1);
  j_end();
  free(B.lat);
  B.lat = NULL;
  free(subs);
  return ok && B.errors == 0 ? 0 : 1;
}

static int scenario_connect(void) {
  int N = o.sessions > 0 ? o.sessions : 1000;
  reset_counters();
  snprintf(topic_buf, sizeof(topic_buf), "/topic/bench.connect.%s", B.run_id);
  B.sessions_done = 0;
  mark_t a = mark();
  open_many(NULL, N, session_topic_dest, R_NONE, o.duration > 0 ? o.duration : o.setup_timeout);
  mark_t b = mark();
  int done = B.sessions_done;
  B.sessions_done = -1;
  run_until(all_closed, 10);
  j_begin("connect");
  j_int("sessions", N);
  j_str("topics", o.unique_topics ? "unique" : "shared");
  j_int("concurrency", o.concurrency);
  j_int("completed", done);
  j_int("failed", B.failed);
  j_num("elapsed_s", b.t - a.t);
  j_num("sessions_per_s", done / (b.t - a.t));
  j_cpu(a, b, 0);
  j_int("errors", (long long)B.errors);
  j_end();
  return done == N && B.errors == 0 ? 0 : 1;
}

static char warm_buf[240];
static const char *warm_dest(int i) {
  (void)i;
  snprintf(warm_buf, sizeof(warm_buf), "%s.warm", topic_buf);
  return warm_buf;
}

static int scenario_idle(void) {
  int N = o.sessions > 0 ? o.sessions : 1000;
  reset_counters();
  snprintf(topic_buf, sizeof(topic_buf), "/topic/bench.idle.%s", B.run_id);
  /* A few sessions first, on a topic of their own, kept to the end: what
   * a server sets up once for its first sessions (each gateway worker's
   * pooled broker connections, and their buffers at the broker, about 4 MB
   * a worker) is not counted per session. Sixteen reach every worker of a
   * small machine but for a chance of 2^-15 a worker. */
  enum { WARM = 16 };
  conn_t *warm[WARM] = {NULL};
  open_many(warm, WARM, warm_dest, R_SUB, o.setup_timeout);
  run_until(settle_done, 1);
  reset_counters();
  long gw0 = proc_rss_kb(o.pid), br0 = o.broker_pid != o.pid ? proc_rss_kb(o.broker_pid) : -1;
  long long bm0 = broker_mem_bytes();
  conn_t **v = calloc((size_t)N, sizeof(*v));
  mark_t a = mark();
  int ready = open_many(v, N, session_topic_dest, R_SUB, o.setup_timeout);
  mark_t b = mark();
  run_until(settle_done, o.settle); /* let the gateway finish its own bookkeeping */
  int still = ready_count(v, N);
  long gw1 = proc_rss_kb(o.pid), br1 = o.broker_pid != o.pid ? proc_rss_kb(o.broker_pid) : -1;
  long long bm1 = bm0 >= 0 ? broker_mem_bytes() : -1;
  j_begin("idle");
  j_int("sessions", N);
  j_str("topics", o.unique_topics ? "unique" : "shared");
  j_int("ready", ready);
  j_int("open_after_settle", still);
  j_num("setup_s", b.t - a.t);
  if (o.pid > 0) {
    j_int("gateway_rss_kb_before", gw0);
    j_int("gateway_rss_kb_after", gw1);
    j_num("gateway_rss_kb_per_session", still ? (double)(gw1 - gw0) / still : NAN);
  }
  if (br0 >= 0) {
    j_int("broker_rss_kb_before", br0);
    j_int("broker_rss_kb_after", br1);
    j_num("broker_rss_kb_per_session", still ? (double)(br1 - br0) / still : NAN);
  }
  if (bm0 >= 0 && bm1 >= 0) {
    j_int("broker_own_bytes_before", bm0);
    j_int("broker_own_bytes_after", bm1);
    j_num("broker_own_kb_per_session", still ? (double)(bm1 - bm0) / 1024 / still : NAN);
  }
  j_cpu(a, b, 0);
  j_int("errors", (long long)B.errors);
  close_all(v, N);
  close_all(warm, WARM);
  j_end();
  free(v);
  return still == N && B.errors == 0 ? 0 : 1;
}

/* ---- rooms: per-user topics and room topics ------------------------------ */

/* Session i of this process has the global index g = first_index + i: an
 * even g subscribes to a topic of its own ("<run>.user.<g>"), an odd g to
 * one of o.rooms room topics ("<run>.room.<r>"), spread evenly. Several
 * processes with the same --run-id and distinct --first-index share the
 * rooms and never share a user. */
static const char *rooms_run(void) { return o.run_id ? o.run_id : B.run_id; }
static char rooms_buf[224];
static const char *rooms_dest(int i) {
  long long g = o.first_index + i;
  if (g % 2 == 0)
    snprintf(rooms_buf, sizeof(rooms_buf), "/topic/%s.user.%lld", rooms_run(), g);
  else
    snprintf(rooms_buf, sizeof(rooms_buf), "/topic/%s.room.%lld", rooms_run(), (g / 2) % o.rooms);
  return rooms_buf;
}

static double epoch_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void go_cb(uv_signal_t *h, int sig) {
  (void)h;
  (void)sig;
  B.go++;
}
static bool go_once(void) { return B.go >= 1; }
static bool go_twice(void) { return B.go >= 2; }
static int rooms_expected;
static conn_t *pub_warm;
static bool pub_warmed(void) { return pub_warm->closing || pub_warm->receipts > 0; }
static bool rooms_done(void) { return B.rooms_complete >= rooms_expected; }

/* A SEND whose body is the topic's name, so that the receiver can tell a
 * message meant for it from a stray one. */
static void send_named(conn_t *p, const char *topic) {
  char f[512];
  size_t tl = strlen(topic);
  int n = snprintf(f, sizeof(f), "SEND\ndestination:/topic/%s\ncontent-length:%zu\n\n%s", topic, tl, topic);
  if (n < 0 || (size_t)n >= sizeof(f)) return;
  send_frame(p, f, (size_t)n + 1);
  p->sent++;
}

/* Written whole (a temporary file renamed over it), so that a reader never sees half. */
static int write_ready_file(const char *json) {
  char tmp[4096];
  snprintf(tmp, sizeof(tmp), "%s.tmp", o.ready_file);
  FILE *f = fopen(tmp, "w");
  if (!f) return -1;
  fprintf(f, "%s\n", json);
  if (fclose(f) != 0 || rename(tmp, o.ready_file) != 0) return -1;
  return 0;
}

static int scenario_rooms(void) {
  int N = o.sessions > 0 ? o.sessions : 1000;
  struct rlimit rl;
  /* Each session is a descriptor; the publisher and the loop need a few more. */
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && (rlim_t)N + 32 > rl.rlim_cur) {
    fprintf(stderr,
            "stompgate-bench: rooms: %d sessions need %d descriptors; the open-files limit here is %llu "
            "(ulimit -Hn): spread them over more processes\n",
            N, N + 32, (unsigned long long)rl.rlim_cur);
    return 2;
  }
  reset_counters();
  B.rooms_complete = 0;
  B.rooms_duplicates = B.rooms_wrong = 0;
  B.last_delivery = 0;
  uv_signal_start(&B.go_sig, go_cb, SIGUSR1);
  /* The publisher sends its whole round at once. RabbitMQ 3.10's Web-STOMP
   * then blocks it under credit flow, and on the resume the connection's
   * heart-beat receiver exits ({unexpected_message,resume}) and takes the
   * connection down. Without heart-beats there is no receiver. */
  B.pub_no_heartbeat = true;
  conn_t **v = calloc((size_t)N + 1, sizeof(*v));
  double start_ms = epoch_ms();
  mark_t a = mark();
  int ready = open_many(v, N, rooms_dest, R_SUB, o.setup_timeout);
  conn_t *pv[1];
  open_many(pv, 1, NULL, R_PUB, o.setup_timeout);
  conn_t *pub = pv[0];
  v[N] = pub;
  mark_t b = mark();
  double ready_ms = epoch_ms();
  int users = 0, roomers = 0;
  for (int i = 0; i < N; i++)
    if (v[i] && !v[i]->closing && v[i]->state == C_READY) {
      if ((o.first_index + i) % 2 == 0) users++;
      else roomers++;
    }
  /* stompgate opens a session's broker channel on its first SEND and holds
   * only so many frames meanwhile: open it with one SEND and its receipt
   * before the round's burst. */
  if (pub && !pub->closing && pub->state == C_READY) {
    char f[320];
    int n = snprintf(f, sizeof(f), "SEND\ndestination:/topic/%s.warmup\nreceipt:w0\ncontent-length:0\n\n",
                     rooms_run());
    send_frame(pub, f, (size_t)n + 1);
    flush(pub);
    pub_warm = pub;
    if (!run_until(pub_warmed, o.setup_timeout)) note_error("%s", "publisher: no RECEIPT for its first SEND");
  }
  bool pub_ok = pub && !pub->closing && pub->state == C_READY && pub->receipts > 0;
  long self_rss = proc_rss_kb((int)getpid());
  long gw_rss = proc_rss_kb(o.pid);
  logf_("rooms: %d/%d sessions subscribed in %.1f s (%d on user topics, %d in rooms)", users + roomers, N,
        b.t - a.t, users, roomers);
  char rj[1024];
  snprintf(rj, sizeof(rj),
           "{\"sessions\":%d,\"ready\":%d,\"failed\":%d,\"publisher_ready\":%d,\"start_ms\":%.3f,"
           "\"ready_ms\":%.3f,\"connect_s\":%.3f,\"bench_rss_kb\":%ld,\"errors\":%" PRIu64 "}",
           N, users + roomers, N - ready, pub_ok, start_ms, ready_ms, b.t - a.t, self_rss, B.errors);
  /* Every subscribed session expects exactly one message: its own for a
   * user, the room's (published once, by one process) for a room. Counted
   * from now: another process may publish before this one sees its go. */
  B.rooms_check = true;
  rooms_expected = users + roomers;
  if (o.ready_file) {
    if (write_ready_file(rj) != 0) note_error("cannot write %s: %s", o.ready_file, strerror(errno));
    /* The driver sends SIGUSR1 once every process is ready. */
    run_until(go_once, MAX_DURATION_S);
  } else {
    run_until(settle_done, o.settle);
  }
  double go_ms = epoch_ms();
  uint64_t go_t = uv_hrtime();
  mark_t c = mark();
  int pu = 0, pr = 0;
  if (pub_ok) {
    for (int i = 0; i < N; i++)
      if ((o.first_index + i) % 2 == 0 && v[i] && !v[i]->closing && v[i]->state == C_READY) {
        send_named(pub, v[i]->dest + 7);
        pu++;
      }
    if (o.publish_rooms)
      for (int r = 0; r < o.rooms; r++) {
        char t[224];
        snprintf(t, sizeof(t), "%s.room.%d", rooms_run(), r);
        send_named(pub, t);
        pr++;
      }
    flush(pub);
  }
  bool ok = pub_ok && run_until(rooms_done, o.duration > 0 ? o.duration : 300);
  double last_ms = B.last_delivery > go_t ? go_ms + (double)(B.last_delivery - go_t) / 1e6 : NAN;
  mark_t d = mark();
  run_until(settle_done, 1); /* duplicates that come late */
  B.rooms_check = false;
  j_begin("rooms");
  j_str("run_id", rooms_run());
  j_int("first_index", o.first_index);
  j_int("sessions", N);
  j_int("rooms", o.rooms);
  j_int("ready", users + roomers);
  j_int("user_sessions", users);
  j_int("room_sessions", roomers);
  j_int("failed", N - ready);
  j_num("connect_s", b.t - a.t);
  j_num("sessions_per_s", ready / (b.t - a.t));
  j_ms("start_ms", start_ms);
  j_ms("ready_ms", ready_ms);
  j_int("bench_rss_kb", self_rss);
  if (o.pid > 0) j_int("gateway_rss_kb_ready", gw_rss);
  j_int("published_users", pu);
  j_int("published_rooms", pr);
  j_int("expected", rooms_expected);
  j_int("delivered", (long long)B.delivered);
  j_int("sessions_complete", B.rooms_complete);
  j_int("duplicates", (long long)B.rooms_duplicates);
  j_int("wrong", (long long)B.rooms_wrong);
  j_int("completed", ok);
  j_ms("go_ms", go_ms);
  j_ms("last_delivery_ms", last_ms);
  j_num("delivery_s", (last_ms - go_ms) / 1e3);
  j_cpu(c, d, B.delivered);
  j_int("errors", (long long)B.errors);
  j_end();
  /* Under a driver, hold the sessions until it has every process's result. */
  if (o.ready_file) run_until(go_twice, MAX_DURATION_S);
  uv_signal_stop(&B.go_sig);
  B.stop_publishing = true;
  close_all(v, N + 1);
  free(v);
  return ok && B.rooms_complete == N && B.errors == 0 ? 0 : 1;
}

/* ---- options ------------------------------------------------------------ */

static const char usage[] =
    "Usage: stompgate-bench --url ws://127.0.0.1:PORT/ws [OPTION]...\n"
    "Load generator for STOMP over WebSocket (stompgate, RabbitMQ Web-STOMP).\n"
    "Prints one JSON line per scenario on stdout.\n"
    "\n"
    "  --url URL            ws://HOST:PORT/PATH; HOST must be a loopback address\n"
    "  --scenario LIST      comma-separated: fanout, pairs, latency, connect, idle, rooms,\n"
    "                       all (default fanout; all leaves rooms out)\n"
    "  --subscribers N      fanout subscribers (default 1000); latency subscribers (default 10)\n"
    "  --pairs N            publisher/consumer pairs (default 10)\n"
    "  --messages N         messages per publisher (fanout 1000, pairs 10000,\n"
    "                       latency rate*duration)\n"
    "  --duration SEC       with --messages: cap on the measured phase (default 120;\n"
    "                       rooms: time allowed for every delivery, default 300);\n"
    "                       alone: publish for SEC seconds, then drain (fanout, pairs);\n"
    "                       latency: publishing time (default 10)\n"
    "  --rate N             latency: messages published per second (default 1000)\n"
    "  --sessions N         connect, idle and rooms: sessions (default 1000, at most 20000)\n"
    "  --topics shared|unique  connect and idle: every session on one topic, or each on\n"
    "                       a topic of its own (default shared)\n"
    "  --rooms N            rooms: room topics (default 100). Session g (global index)\n"
    "                       subscribes to /topic/RUN.user.g when g is even, else to\n"
    "                       /topic/RUN.room.(g/2 mod N); one SEND to each of its users\n"
    "                       (and, with --publish-rooms, one to each room) from an extra\n"
    "                       session, then every session must get exactly one MESSAGE\n"
    "  --first-index K      rooms: global index of this process's first session (default 0)\n"
    "  --run-id ID          rooms: the RUN in the topic names; processes that share the\n"
    "                       rooms share it (default: made up, [A-Za-z0-9_-])\n"
    "  --publish-rooms      rooms: this process also publishes one message to each room\n"
    "  --ready-file FILE    rooms: once subscribed, write a JSON line to FILE and wait for\n"
    "                       SIGUSR1 before publishing; after the result, hold the sessions\n"
    "                       until a second SIGUSR1 (without it: publish after --settle)\n"
    "  --concurrency N      sessions in their handshake at once (default 64)\n"
    "  --size BYTES         message body size (default 100)\n"
    "  --window N           messages a publisher may run ahead of its consumers (default 200)\n"
    "  --login L --passcode P --host VHOST   CONNECT credentials (default guest/guest, /)\n"
    "  --pid PID            gateway process: RSS (idle) and CPU seconds; for Web-STOMP\n"
    "                       give the broker's beam.smp PID\n"
    "  --broker-pid PID     broker process: CPU seconds and RSS too\n"
    "  --broker-mem-cmd CMD idle: a shell command printing the broker's own count\n"
    "                       of its memory in bytes, run before and after\n"
    "  --setup-timeout SEC  time allowed to open the sessions (default 120)\n"
    "  --settle SEC         idle: wait before reading RSS (default 2)\n"
    "  --heartbeat MS       client heart-beat interval offered in CONNECT and sent\n"
    "                       (default 10000, as stomp.js; 0: none)\n"
    "  -h, --help\n"
    "\n"
    "Exit status: 0 when every scenario completed with exact counts and no errors.\n";

static int parse_url(const char *u) {
  if (strncmp(u, "ws://", 5) != 0) return -1;
  const char *h = u + 5, *slash = strchr(h, '/');
  const char *colon = memchr(h, ':', slash ? (size_t)(slash - h) : strlen(h));
  if (!colon) return -1;
  size_t hl = (size_t)(colon - h);
  if (hl == 0 || hl >= sizeof(o.host)) return -1;
  memcpy(o.host, h, hl);
  o.host[hl] = 0;
  o.port = atoi(colon + 1);
  if (o.port <= 0 || o.port > 65535) return -1;
  snprintf(o.path, sizeof(o.path), "%s", slash ? slash : "/");
  const char *ip = strcmp(o.host, "localhost") == 0 ? "127.0.0.1" : o.host;
  if (uv_ip4_addr(ip, o.port, &B.addr) != 0) return -1;
  /* Only loopback targets: this tool opens thousands of sessions. */
  if ((ntohl(B.addr.sin_addr.s_addr) >> 24) != 127) return -2;
  return 0;
}

static int parse_int(const char *name, const char *s, long long min, long long max, long long *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || *end || v < min || v > max) {
    fprintf(stderr, "stompgate-bench: invalid %s '%s' (expected %lld..%lld)\n", name, s, min, max);
    return -1;
  }
  *out = v;
  return 0;
}

static int parse_dbl(const char *name, const char *s, double min, double max, double *out) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || *end || !(v >= min && v <= max)) {
    fprintf(stderr, "stompgate-bench: invalid %s '%s' (expected %g..%g)\n", name, s, min, max);
    return -1;
  }
  *out = v;
  return 0;
}

enum {
  O_URL = 256, O_SCEN, O_SUBS, O_PAIRS, O_MSGS, O_DUR, O_RATE, O_SESS, O_CONC, O_SIZE, O_WIN,
  O_LOGIN, O_PASS, O_HOST, O_PID, O_BPID, O_SETUP, O_SETTLE, O_HB, O_TOPICS,
  O_ROOMS, O_FIRST, O_RUNID, O_READY, O_PUBROOMS, O_BMEM,
};

static int parse_opts(int argc, char **argv) {
  static const struct option lo[] = {
      {"url", 1, 0, O_URL},         {"scenario", 1, 0, O_SCEN},  {"subscribers", 1, 0, O_SUBS},
      {"pairs", 1, 0, O_PAIRS},     {"messages", 1, 0, O_MSGS},  {"duration", 1, 0, O_DUR},
      {"rate", 1, 0, O_RATE},       {"sessions", 1, 0, O_SESS},  {"concurrency", 1, 0, O_CONC},
      {"size", 1, 0, O_SIZE},       {"window", 1, 0, O_WIN},     {"login", 1, 0, O_LOGIN},
      {"passcode", 1, 0, O_PASS},   {"host", 1, 0, O_HOST},      {"pid", 1, 0, O_PID},
      {"broker-pid", 1, 0, O_BPID}, {"setup-timeout", 1, 0, O_SETUP},
      {"settle", 1, 0, O_SETTLE},   {"heartbeat", 1, 0, O_HB},   {"topics", 1, 0, O_TOPICS},
      {"rooms", 1, 0, O_ROOMS},     {"first-index", 1, 0, O_FIRST}, {"run-id", 1, 0, O_RUNID},
      {"ready-file", 1, 0, O_READY}, {"publish-rooms", 0, 0, O_PUBROOMS},
      {"broker-mem-cmd", 1, 0, O_BMEM},
      {"help", 0, 0, 'h'},
      {0, 0, 0, 0},
  };
  int c;
  long long v;
  while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
    switch (c) {
    case O_URL: o.url = optarg; break;
    case O_SCEN: o.scenarios = optarg; break;
    case O_SUBS: if (parse_int("--subscribers", optarg, 1, MAX_SESSIONS, &v)) return 2; o.subscribers = (int)v; break;
    case O_PAIRS: if (parse_int("--pairs", optarg, 1, MAX_SESSIONS / 2, &v)) return 2; o.pairs = (int)v; break;
    case O_MSGS: if (parse_int("--messages", optarg, 1, (long long)MAX_MESSAGES, &v)) return 2; o.messages = (uint64_t)v; break;
    case O_DUR: if (parse_dbl("--duration", optarg, 0.1, MAX_DURATION_S, &o.duration)) return 2; break;
    case O_RATE: if (parse_dbl("--rate", optarg, 1, 1e7, &o.rate)) return 2; break;
    case O_SESS: if (parse_int("--sessions", optarg, 1, MAX_SESSIONS, &v)) return 2; o.sessions = (int)v; break;
    case O_CONC: if (parse_int("--concurrency", optarg, 1, 4096, &v)) return 2; o.concurrency = (int)v; break;
    case O_SIZE: if (parse_int("--size", optarg, 32, 65536, &v)) return 2; o.size = (int)v; break;
    case O_WIN: if (parse_int("--window", optarg, 2, 1000000, &v)) return 2; o.window = (int)v; break;
    case O_LOGIN: o.login = optarg; break;
    case O_PASS: o.passcode = optarg; break;
    case O_HOST: o.vhost = optarg; break;
    case O_PID: if (parse_int("--pid", optarg, 1, INT32_MAX, &v)) return 2; o.pid = (int)v; break;
    case O_BMEM: o.broker_mem_cmd = optarg; break;
    case O_BPID: if (parse_int("--broker-pid", optarg, 1, INT32_MAX, &v)) return 2; o.broker_pid = (int)v; break;
    case O_SETUP: if (parse_dbl("--setup-timeout", optarg, 1, MAX_DURATION_S, &o.setup_timeout)) return 2; break;
    case O_HB: if (parse_int("--heartbeat", optarg, 0, 3600000, &v)) return 2; o.heartbeat_ms = (int)v; break;
    case O_SETTLE: if (parse_dbl("--settle", optarg, 0, 600, &o.settle)) return 2; break;
    case O_TOPICS:
      if (strcmp(optarg, "unique") != 0 && strcmp(optarg, "shared") != 0) {
        fprintf(stderr, "stompgate-bench: invalid --topics '%s' (expected shared or unique)\n", optarg);
        return 2;
      }
      o.unique_topics = strcmp(optarg, "unique") == 0;
      break;
    case O_ROOMS: if (parse_int("--rooms", optarg, 1, 1000000, &v)) return 2; o.rooms = (int)v; break;
    case O_FIRST: if (parse_int("--first-index", optarg, 0, 1000000000, &v)) return 2; o.first_index = v; break;
    case O_RUNID:
      if (!*optarg || strlen(optarg) > 64 || strspn(optarg, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") != strlen(optarg)) {
        fprintf(stderr, "stompgate-bench: invalid --run-id '%s' (expected 1 to 64 of A-Z a-z 0-9 _ -)\n", optarg);
        return 2;
      }
      o.run_id = optarg;
      break;
    case O_READY: o.ready_file = optarg; break;
    case O_PUBROOMS: o.publish_rooms = 1; break;
    case 'h': fputs(usage, stdout); return 1;
    default: fputs(usage, stderr); return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "stompgate-bench: unexpected argument '%s'\n", argv[optind]);
    return 2;
  }
  if (!o.url) {
    fprintf(stderr, "stompgate-bench: --url is required\n");
    return 2;
  }
  int r = parse_url(o.url);
  if (r == -2) {
    fprintf(stderr, "stompgate-bench: refusing non-loopback target '%s'\n", o.url);
    return 2;
  }
  if (r) {
    fprintf(stderr, "stompgate-bench: invalid --url '%s' (expected ws://127.0.0.1:PORT/PATH)\n", o.url);
    return 2;
  }
  if (strchr(o.login, '\n') || strchr(o.passcode, '\n') || strchr(o.vhost, '\n')) {
    fprintf(stderr, "stompgate-bench: credentials may not contain newlines\n");
    return 2;
  }
  return 0;
}

/* Every session needs a descriptor: raise the soft limit to the hard one. */
static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

int main(int argc, char **argv) {
  int r = parse_opts(argc, argv);
  if (r) return r == 1 ? 0 : r;
  signal(SIGPIPE, SIG_IGN);
  raise_nofile();
  B.loop = uv_default_loop();
  uv_timer_init(B.loop, &B.tick);
  uv_timer_init(B.loop, &B.guard);
  uv_timer_init(B.loop, &B.opener);
  uv_timer_init(B.loop, &B.hb);
  uv_signal_init(B.loop, &B.go_sig);
  if (o.heartbeat_ms > 0)
    uv_timer_start(&B.hb, hb_cb, (uint64_t)o.heartbeat_ms / 2, (uint64_t)o.heartbeat_ms / 2);
  unsigned char rnd[4];
  RAND_bytes(rnd, sizeof(rnd));
  snprintf(B.run_id, sizeof(B.run_id), "%d-%02x%02x%02x%02x", (int)getpid(), rnd[0], rnd[1], rnd[2],
           rnd[3]);
  B.sessions_done = -1;

  char *list = strdup(strcmp(o.scenarios, "all") == 0 ? "idle,connect,fanout,pairs,latency" : o.scenarios);
  int status = 0;
  for (char *save = NULL, *s = strtok_r(list, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
    int w = o.window;
    if (strcmp(s, "fanout") == 0) status |= scenario_fanout();
    else if (strcmp(s, "pairs") == 0) status |= scenario_pairs();
    else if (strcmp(s, "latency") == 0) status |= scenario_latency();
    else if (strcmp(s, "connect") == 0) status |= scenario_connect();
    else if (strcmp(s, "idle") == 0) status |= scenario_idle();
    else if (strcmp(s, "rooms") == 0) status |= scenario_rooms();
    else {
      fprintf(stderr, "stompgate-bench: unknown scenario '%s'\n", s);
      status = 2;
      break;
    }
    o.window = w;
  }
  free(list);
  uv_close((uv_handle_t *)&B.tick, NULL);
  uv_close((uv_handle_t *)&B.guard, NULL);
  uv_close((uv_handle_t *)&B.opener, NULL);
  uv_close((uv_handle_t *)&B.hb, NULL);
  uv_close((uv_handle_t *)&B.go_sig, NULL);
  uv_run(B.loop, UV_RUN_NOWAIT);
  return status;
}
