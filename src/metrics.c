/* SPDX-License-Identifier: MIT */
#include "metrics.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "events.h"
#include "stompgate/err.h"

#define NCMD (SG_STOMP_ERROR + 1)
#define MAX_KINDS 48
#define MAX_NODES 16
#define NODE_LEN 80
#define KIND_LEN 64

/* Seconds, for every histogram: 0.5 ms to 10 s, roughly 1-2.5-5 steps
 * (listed in docs/operations.md, under Health and metrics). */
static const double buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                 0.1,    0.25,  0.5,    1,     2.5,  5,    10};
#define NBUCKETS (sizeof(buckets) / sizeof(buckets[0]))

typedef struct histogram {
  uint64_t counts[NBUCKETS]; /* per bucket, made cumulative when rendered */
  uint64_t count;
  double sum;
} histogram_t;

/* Open broker connections to one node ("host:port"). */
typedef struct node_gauge {
  char name[NODE_LEN];
  int64_t n;
} node_gauge_t;

typedef struct kind_counter {
  char name[KIND_LEN];
  uint64_t n;
} kind_counter_t;

/* Close reasons: a small fixed set so the label stays bounded. */
enum {
  CR_DISCONNECT = 0, CR_CLIENT_CLOSED, CR_PROTOCOL_ERROR, CR_AUTH, CR_BROKER, CR_TIMEOUT,
  CR_SHUTDOWN, CR_OTHER, CR_COUNT
};
static const char *const close_names[CR_COUNT] = {
    "disconnect", "client_closed", "protocol_error", "auth_failed",
    "broker_error", "timeout", "shutdown", "other"};

/* Why a PROXY header was refused: sg_proxy_info_t's reasons, then the
 * connection's own. */
enum { PR_NO_HEADER = 0, PR_TOO_LONG, PR_BAD_LENGTH, PR_MALFORMED, PR_TRUNCATED, PR_UNTRUSTED,
       PR_COUNT };
static const char *const proxy_reasons[PR_COUNT] = {"no_header", "too_long", "bad_length",
                                                    "malformed", "truncated", "untrusted"};

typedef struct metrics {
  uint64_t bytes_in, bytes_out;
  uint64_t proxy_headers[2]; /* v1, v2 */
  uint64_t proxy_refused[PR_COUNT];
  uint64_t forwarded[2];     /* refused, honoured */
  uint64_t deflate_in, deflate_out, deflate_messages;
  uint64_t sessions_total;
  uint64_t closed[CR_COUNT];
  uint64_t refused[6]; /* 400, 403, 404, 429, 503, other */
  uint64_t frames_in[NCMD], frames_out[NCMD];
  uint64_t deliveries, confirms_ack, confirms_nack, client_acks, client_nacks;
  kind_counter_t errors[MAX_KINDS];
  size_t nerrors;
  uint64_t errors_other;
  uint64_t slow_drops;
  uint64_t logins_ok, logins_failed;
  int broker_up, broker_seen_up;
  uint64_t broker_reconnects, broker_failovers;
  uint64_t broker_hb_timeouts;
  uint64_t links_held_total;
  uint64_t shared_moves;
  uint64_t history_resumes, history_switches, history_catchup_msgs, history_incomplete;
  uint64_t sessions_moved;
  uint64_t sessions_held;
  uint64_t session_links_opened, session_links_joined;
  uint64_t ws_parks;
  int64_t shared_queues, shared_keys, shared_exact; /* this thread's fan-out */
  int64_t ws_parked; /* this thread's parks minus unparks */
  uint64_t stomp_tcp, stomp_tcp_refused;
  int64_t conns_open; /* this thread's accepted connections minus closed ones */
  int64_t links_held; /* this thread's holds minus releases */
  histogram_t handshake, login;
  histogram_t delivery[2]; /* by relay mode: per-session, shared */
  histogram_t confirm, rpc, session_duration;
  node_gauge_t nodes[MAX_NODES];
  size_t nnodes;
  struct metrics *next;
} metrics_t;

/* Each thread (every worker, the main loop, the thread pool) counts in its
 * own block, so updates take no lock and share no cache line; /metrics
 * adds the blocks up. Blocks live as long as the process. */
static uv_once_t reg_once = UV_ONCE_INIT;
static uv_mutex_t reg_lock;
static metrics_t *reg_head;
static __thread metrics_t *mine;

static void reg_init(void) {
  if (uv_mutex_init(&reg_lock) != 0) abort();
}

static metrics_t *cur(void) {
  if (mine) return mine;
  static metrics_t fallback; /* only if calloc fails */
  metrics_t *b = calloc(1, sizeof(*b));
  if (b == NULL) return &fallback;
  uv_once(&reg_once, reg_init);
  uv_mutex_lock(&reg_lock);
  b->next = reg_head;
  reg_head = b;
  uv_mutex_unlock(&reg_lock);
  return mine = b;
}

static void hist_add(histogram_t *to, const histogram_t *h) {
  for (size_t i = 0; i < NBUCKETS; i++) to->counts[i] += h->counts[i];
  to->count += h->count;
  to->sum += h->sum;
}

/* The sum of every thread's block. */
static void aggregate(metrics_t *t) {
  memset(t, 0, sizeof(*t));
  uv_once(&reg_once, reg_init);
  uv_mutex_lock(&reg_lock);
  for (const metrics_t *b = reg_head; b; b = b->next) {
    t->bytes_in += b->bytes_in;
    t->bytes_out += b->bytes_out;
    for (int i = 0; i < 2; i++) {
      t->proxy_headers[i] += b->proxy_headers[i];
      t->forwarded[i] += b->forwarded[i];
    }
    for (int i = 0; i < PR_COUNT; i++) t->proxy_refused[i] += b->proxy_refused[i];
    t->deflate_in += b->deflate_in;
    t->deflate_out += b->deflate_out;
    t->deflate_messages += b->deflate_messages;
    t->sessions_total += b->sessions_total;
    for (int i = 0; i < CR_COUNT; i++) t->closed[i] += b->closed[i];
    for (int i = 0; i < 6; i++) t->refused[i] += b->refused[i];
    for (int i = 0; i < NCMD; i++) {
      t->frames_in[i] += b->frames_in[i];
      t->frames_out[i] += b->frames_out[i];
    }
    t->deliveries += b->deliveries;
    t->confirms_ack += b->confirms_ack;
    t->confirms_nack += b->confirms_nack;
    t->client_acks += b->client_acks;
    t->client_nacks += b->client_nacks;
    for (size_t i = 0; i < b->nerrors; i++) {
      size_t k = 0;
      while (k < t->nerrors && strcmp(t->errors[k].name, b->errors[i].name) != 0) k++;
      if (k == t->nerrors) {
        if (k == MAX_KINDS) {
          t->errors_other += b->errors[i].n;
          continue;
        }
        t->errors[t->nerrors++] = b->errors[i];
      } else {
        t->errors[k].n += b->errors[i].n;
      }
    }
    t->errors_other += b->errors_other;
    t->slow_drops += b->slow_drops;
    t->logins_ok += b->logins_ok;
    t->logins_failed += b->logins_failed;
    /* Only the main loop's probe sets these. */
    t->broker_up |= b->broker_up;
    t->broker_seen_up |= b->broker_seen_up;
    t->broker_reconnects += b->broker_reconnects;
    t->broker_failovers += b->broker_failovers;
    t->broker_hb_timeouts += b->broker_hb_timeouts;
    t->links_held_total += b->links_held_total;
    t->shared_moves += b->shared_moves;
    t->history_resumes += b->history_resumes;
    t->history_switches += b->history_switches;
    t->history_catchup_msgs += b->history_catchup_msgs;
    t->history_incomplete += b->history_incomplete;
    t->sessions_moved += b->sessions_moved;
    t->sessions_held += b->sessions_held;
    t->session_links_opened += b->session_links_opened;
    t->session_links_joined += b->session_links_joined;
    t->ws_parks += b->ws_parks;
    t->shared_queues += b->shared_queues;
    t->shared_keys += b->shared_keys;
    t->shared_exact += b->shared_exact;
    t->ws_parked += b->ws_parked;
    t->stomp_tcp += b->stomp_tcp;
    t->stomp_tcp_refused += b->stomp_tcp_refused;
    t->conns_open += b->conns_open;
    t->links_held += b->links_held;
    hist_add(&t->handshake, &b->handshake);
    hist_add(&t->login, &b->login);
    for (int i = 0; i < 2; i++) hist_add(&t->delivery[i], &b->delivery[i]);
    hist_add(&t->confirm, &b->confirm);
    hist_add(&t->rpc, &b->rpc);
    hist_add(&t->session_duration, &b->session_duration);
    for (size_t i = 0; i < b->nnodes; i++) {
      size_t k = 0;
      while (k < t->nnodes && strcmp(t->nodes[k].name, b->nodes[i].name) != 0) k++;
      if (k == t->nnodes) t->nodes[t->nnodes++] = b->nodes[i];
      else t->nodes[k].n += b->nodes[i].n;
    }
  }
  uv_mutex_unlock(&reg_lock);
}

static void observe(histogram_t *h, double v) {
  for (size_t i = 0; i < NBUCKETS; i++)
    if (v <= buckets[i]) {
      h->counts[i]++;
      break;
    }
  h->count++;
  h->sum += v;
}

void sg_metrics_bytes_in(size_t n) { cur()->bytes_in += n; }
void sg_metrics_bytes_out(size_t n) { cur()->bytes_out += n; }
void sg_metrics_deflated(size_t plain, size_t deflated) {
  metrics_t *m = cur();
  m->deflate_messages++;
  m->deflate_in += plain;
  m->deflate_out += deflated;
}

void sg_metrics_upgraded(double seconds) {
  cur()->sessions_total++;
  observe(&cur()->handshake, seconds);
}

void sg_metrics_http_refused(int status) {
  static const int codes[] = {400, 403, 404, 429, 503};
  size_t i = 0;
  while (i < 5 && codes[i] != status) i++;
  cur()->refused[i]++;
}

void sg_metrics_proxy_header(int version) {
  if (version == 1 || version == 2) cur()->proxy_headers[version - 1]++;
}

void sg_metrics_proxy_refused(const char *reason) {
  int i = 0;
  while (i < PR_COUNT && strcmp(proxy_reasons[i], reason) != 0) i++;
  cur()->proxy_refused[i < PR_COUNT ? i : PR_MALFORMED]++;
}

void sg_metrics_forwarded(int honoured) { cur()->forwarded[honoured ? 1 : 0]++; }

void sg_metrics_session_closed(const char *r) {
  if (r == NULL) return;
  int c;
  if (strcmp(r, "DISCONNECT") == 0) c = CR_DISCONNECT;
  else if (strstr(r, "server shutting down")) c = CR_SHUTDOWN;
  else if (strcmp(r, "client closed the connection") == 0) c = CR_CLIENT_CLOSED;
  else if (strstr(r, "Timed out") || strstr(r, "timeout")) c = CR_TIMEOUT;
  else if (strstr(r, "Access refused") || strstr(r, "Token expired") || strstr(r, "Virtual host"))
    c = CR_AUTH;
  else if (strstr(r, "Broker") || strstr(r, "broker")) c = CR_BROKER;
  else if (strncmp(r, "ERROR", 5) == 0 || strstr(r, "STOMP version")) c = CR_PROTOCOL_ERROR;
  else c = CR_OTHER;
  cur()->closed[c]++;
}

void sg_metrics_frame_in(sg_stomp_cmd_t cmd) {
  if ((unsigned)cmd < NCMD) cur()->frames_in[cmd]++;
}

void sg_metrics_frame_out(const char *frame, size_t len) {
  size_t n = 0;
  while (n < len && frame[n] != '\n' && frame[n] != '\r') n++;
  sg_stomp_cmd_t cmd = n == 0 ? SG_STOMP_UNKNOWN : sg_stomp_cmd_from(frame, n);
  cur()->frames_out[cmd]++;
}

void sg_metrics_delivery(void) { cur()->deliveries++; }

void sg_metrics_confirm(int ack) {
  if (ack) cur()->confirms_ack++;
  else cur()->confirms_nack++;
}

void sg_metrics_client_ack(int ack) {
  if (ack) cur()->client_acks++;
  else cur()->client_nacks++;
}

void sg_metrics_error(const char *message) {
  for (size_t i = 0; i < cur()->nerrors; i++)
    if (strncmp(cur()->errors[i].name, message, KIND_LEN - 1) == 0) {
      cur()->errors[i].n++;
      return;
    }
  /* ERROR messages are fixed texts, but a cap keeps the series bounded
   * whatever a future one looks like. */
  if (cur()->nerrors == MAX_KINDS) {
    cur()->errors_other++;
    return;
  }
  kind_counter_t *k = &cur()->errors[cur()->nerrors++];
  size_t j = 0;
  for (const char *p = message; *p && j < KIND_LEN - 1; p++)
    k->name[j++] = (*p == '"' || *p == '\\' || *p == '\n') ? '_' : *p;
  k->name[j] = '\0';
  k->n = 1;
}

void sg_metrics_slow_drop(void) { cur()->slow_drops++; }

/* The relay label of each delivery histogram, as the relays name themselves. */
static const char *const delivery_relays[2] = {"per-session", "shared"};

void sg_metrics_delivery_latency(const char *relay, double seconds) {
  observe(&cur()->delivery[strcmp(relay, delivery_relays[1]) == 0], seconds);
}

void sg_metrics_confirm_latency(double seconds) { observe(&cur()->confirm, seconds); }

void sg_metrics_rpc_latency(double seconds) { observe(&cur()->rpc, seconds); }

void sg_metrics_session_duration(double seconds) {
  observe(&cur()->session_duration, seconds);
}

void sg_metrics_broker_conn(const char *node, int delta) {
  metrics_t *m = cur();
  size_t k = 0;
  while (k < m->nnodes && strncmp(m->nodes[k].name, node, NODE_LEN - 1) != 0) k++;
  if (k == m->nnodes) {
    /* Nodes come from the configuration, so the set is small; past the
     * cap the last entry stands for the rest. */
    if (k == MAX_NODES) k = MAX_NODES - 1;
    else m->nnodes++;
    size_t j = 0;
    for (const char *p = node; *p && j < NODE_LEN - 1; p++)
      m->nodes[k].name[j++] = (*p == '"' || *p == '\\' || *p == '\n') ? '_' : *p;
    m->nodes[k].name[j] = '\0';
  }
  m->nodes[k].n += delta;
}

void sg_metrics_broker_login(double seconds, int ok) {
  if (ok) {
    cur()->logins_ok++;
    observe(&cur()->login, seconds);
  } else {
    cur()->logins_failed++;
  }
}

void sg_metrics_broker_link(int up) {
  if (up && !cur()->broker_up && cur()->broker_seen_up) cur()->broker_reconnects++;
  if (up) cur()->broker_seen_up = 1;
  cur()->broker_up = up;
}

int sg_metrics_broker_up(void) {
  metrics_t t;
  aggregate(&t);
  return t.broker_up;
}

void sg_metrics_broker_failover(void) { cur()->broker_failovers++; }

void sg_metrics_broker_heartbeat_timeout(void) { cur()->broker_hb_timeouts++; }

void sg_metrics_shared_moved(void) { cur()->shared_moves++; }
void sg_metrics_history_resume(void) { cur()->history_resumes++; }
void sg_metrics_history_switch(void) { cur()->history_switches++; }
void sg_metrics_history_catchup_msg(void) { cur()->history_catchup_msgs++; }
void sg_metrics_history_incomplete(void) { cur()->history_incomplete++; }

void sg_metrics_session_moved(void) { cur()->sessions_moved++; }

void sg_metrics_session_held(void) { cur()->sessions_held++; }

void sg_metrics_shared_gauges(int queues, int keys, int exact) {
  cur()->shared_queues += queues;
  cur()->shared_keys += keys;
  cur()->shared_exact += exact;
}

void sg_metrics_ws_park(int64_t n) {
  if (n > 0) cur()->ws_parks += (uint64_t)n;
  cur()->ws_parked += n;
}

void sg_metrics_session_link(int joined) {
  if (joined)
    cur()->session_links_joined++;
  else
    cur()->session_links_opened++;
}

void sg_metrics_connection(int delta) { cur()->conns_open += delta; }

void sg_metrics_stomp_tcp(int accepted) {
  if (accepted) cur()->stomp_tcp++;
  else cur()->stomp_tcp_refused++;
}

void sg_metrics_broker_link_held(int held) {
  if (held) {
    cur()->links_held_total++;
    cur()->links_held++;
  } else {
    cur()->links_held--;
  }
}

static int header(sg_buf_t *o, const char *name, const char *type, const char *help) {
  return sg_buf_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A metric with one value and no labels. */
static int single(sg_buf_t *o, const char *name, const char *type, const char *help, uint64_t v) {
  return header(o, name, type, help) | sg_buf_printf(o, "%s %" PRIu64 "\n", name, v);
}

/* One histogram's series; label is "" or 'name="value",'. */
static int hist_series(sg_buf_t *o, const char *name, const char *label, const histogram_t *h) {
  int r = 0;
  uint64_t cum = 0;
  size_t ll = strlen(label);
  int ln = ll ? (int)ll - 1 : 0; /* without its trailing comma */
  for (size_t i = 0; i < NBUCKETS; i++) {
    cum += h->counts[i];
    r |= sg_buf_printf(o, "%s_bucket{%sle=\"%g\"} %lu\n", name, label, buckets[i],
                       (unsigned long)cum);
  }
  r |= sg_buf_printf(o, "%s_bucket{%sle=\"+Inf\"} %lu\n", name, label, (unsigned long)h->count);
  if (ll)
    r |= sg_buf_printf(o, "%s_sum{%.*s} %.6f\n%s_count{%.*s} %lu\n", name, ln, label, h->sum,
                       name, ln, label, (unsigned long)h->count);
  else
    r |= sg_buf_printf(o, "%s_sum %.6f\n%s_count %lu\n", name, h->sum, name,
                       (unsigned long)h->count);
  return r;
}

static int histogram(sg_buf_t *o, const char *name, const char *help, const histogram_t *h) {
  return header(o, name, "histogram", help) | hist_series(o, name, "", h);
}

int sg_metrics_render(sg_buf_t *o, const sg_metrics_gauges_t *g) {
  int r = 0;
  static metrics_t t;
  aggregate(&t);
  r |= single(o, "stompgate_connections_open", "gauge",
              "Accepted TCP connections currently open (HTTP, WebSocket, SockJS, STOMP over TCP).",
              (t.conns_open > 0 ? t.conns_open : 0));
  r |= single(o, "stompgate_sessions_open", "gauge",
              "STOMP sessions currently open (over WebSocket, SockJS or STOMP over TCP).",
              g->sessions_open);
  r |= single(o, "stompgate_sessions_total", "counter",
              "WebSocket sessions opened (upgrades).",
              t.sessions_total);
  r |= header(o, "stompgate_sessions_closed_total", "counter", "Sessions ended, by reason.");
  for (int i = 0; i < CR_COUNT; i++)
    r |= sg_buf_printf(o, "stompgate_sessions_closed_total{reason=\"%s\"} %lu\n", close_names[i],
                       (unsigned long)t.closed[i]);
  r |= header(o, "stompgate_upgrades_refused_total", "counter",
              "WebSocket upgrade requests refused, by HTTP status.");
  static const char *const st[] = {"400", "403", "404", "429", "503", "other"};
  for (int i = 0; i < 6; i++)
    r |= sg_buf_printf(o, "stompgate_upgrades_refused_total{status=\"%s\"} %lu\n", st[i],
                       (unsigned long)t.refused[i]);
  r |= header(o, "stompgate_proxy_headers_total", "counter",
              "PROXY protocol headers accepted from trusted proxies, by version.");
  for (int i = 0; i < 2; i++)
    r |= sg_buf_printf(o, "stompgate_proxy_headers_total{version=\"%d\"} %lu\n", i + 1,
                       (unsigned long)t.proxy_headers[i]);
  r |= header(o, "stompgate_proxy_headers_refused_total", "counter",
              "Connections closed for their PROXY protocol header, by reason.");
  for (int i = 0; i < PR_COUNT; i++)
    r |= sg_buf_printf(o, "stompgate_proxy_headers_refused_total{reason=\"%s\"} %lu\n",
                       proxy_reasons[i], (unsigned long)t.proxy_refused[i]);
  r |= header(o, "stompgate_forwarded_headers_total", "counter",
              "Requests with X-Forwarded-For or Forwarded: honoured from a trusted proxy, "
              "refused (HTTP 400) from another peer.");
  r |= sg_buf_printf(o, "stompgate_forwarded_headers_total{result=\"honoured\"} %lu\n"
                        "stompgate_forwarded_headers_total{result=\"refused\"} %lu\n",
                     (unsigned long)t.forwarded[1], (unsigned long)t.forwarded[0]);
  r |= header(o, "stompgate_frames_in_total", "counter", "STOMP frames received, by command.");
  for (int c = SG_STOMP_CONNECT; c <= SG_STOMP_DISCONNECT; c++)
    r |= sg_buf_printf(o, "stompgate_frames_in_total{command=\"%s\"} %lu\n",
                       sg_stomp_cmd_name((sg_stomp_cmd_t)c), (unsigned long)t.frames_in[c]);
  r |= header(o, "stompgate_frames_out_total", "counter", "STOMP frames sent, by command.");
  for (int c = SG_STOMP_CONNECTED; c <= SG_STOMP_ERROR; c++)
    r |= sg_buf_printf(o, "stompgate_frames_out_total{command=\"%s\"} %lu\n",
                       sg_stomp_cmd_name((sg_stomp_cmd_t)c), (unsigned long)t.frames_out[c]);
  r |= single(o, "stompgate_bytes_in_total", "counter",
              "Bytes read from client sockets.",
              t.bytes_in);
  r |= single(o, "stompgate_bytes_out_total", "counter",
              "Bytes written to client sockets.",
              t.bytes_out);
  r |= single(o, "stompgate_deflate_messages_total", "counter",
              "WebSocket messages sent compressed (permessage-deflate).",
              t.deflate_messages);
  r |= single(o, "stompgate_deflate_bytes_in_total", "counter",
              "Bytes of the messages sent compressed, before compression.",
              t.deflate_in);
  r |= single(o, "stompgate_deflate_bytes_out_total", "counter",
              "Bytes of the messages sent compressed, after compression.",
              t.deflate_out);
  r |= single(o, "stompgate_deliveries_total", "counter",
              "Messages the broker delivered to sessions.",
              t.deliveries);
  r |= header(o, "stompgate_publish_confirms_total", "counter",
              "Publisher confirms from the broker, by result.");
  r |= sg_buf_printf(o, "stompgate_publish_confirms_total{result=\"ack\"} %lu\n"
                        "stompgate_publish_confirms_total{result=\"nack\"} %lu\n",
                     (unsigned long)t.confirms_ack, (unsigned long)t.confirms_nack);
  r |= header(o, "stompgate_client_acks_total", "counter", "ACK and NACK frames relayed.");
  r |= sg_buf_printf(o, "stompgate_client_acks_total{kind=\"ack\"} %lu\n"
                        "stompgate_client_acks_total{kind=\"nack\"} %lu\n",
                     (unsigned long)t.client_acks, (unsigned long)t.client_nacks);
  r |= header(o, "stompgate_errors_total", "counter", "ERROR frames sent, by message.");
  for (size_t i = 0; i < t.nerrors; i++)
    r |= sg_buf_printf(o, "stompgate_errors_total{kind=\"%s\"} %lu\n", t.errors[i].name,
                       (unsigned long)t.errors[i].n);
  r |= sg_buf_printf(o, "stompgate_errors_total{kind=\"other\"} %lu\n",
                     (unsigned long)t.errors_other);
  r |= single(o, "stompgate_slow_consumer_drops_total", "counter",
              "Messages dropped because a client read too slowly.",
              t.slow_drops);
  r |= header(o, "stompgate_broker_logins_total", "counter", "AMQP logins, by result.");
  r |= sg_buf_printf(o, "stompgate_broker_logins_total{result=\"ok\"} %lu\n"
                        "stompgate_broker_logins_total{result=\"failed\"} %lu\n",
                     (unsigned long)t.logins_ok, (unsigned long)t.logins_failed);
  r |= single(o, "stompgate_broker_link_up", "gauge",
              "1 when the last broker probe got an AMQP answer.",
              t.broker_up);
  r |= single(o, "stompgate_broker_reconnects_total", "counter",
              "Times the broker came back after a failed probe.",
              t.broker_reconnects);
  r |= single(o, "stompgate_broker_failovers_total", "counter",
              "Times a login or the probe found the preferred broker node down and moved on.",
              t.broker_failovers);
  r |= single(o, "stompgate_broker_heartbeat_timeouts_total", "counter",
              "Broker connections lost because the broker sent nothing for two heart-beat "
              "intervals.",
              t.broker_hb_timeouts);
  r |= single(o, "stompgate_broker_links_held_total", "counter",
              "Times a broker connection's unsent output passed broker-output-limit, so the "
              "sessions publishing through it stopped being read.",
              t.links_held_total);
  r |= single(o, "stompgate_broker_links_held", "gauge",
              "Broker connections whose publishing sessions are not read now because the broker "
              "is not reading their output.",
              (t.links_held > 0 ? t.links_held : 0));
  r |= single(o, "stompgate_shared_queues", "gauge",
              "Shared mode: broker queues the workers consume shared subscriptions from (one per "
              "worker, vhost and exchange, or per key where the gateway cannot route).",
              (t.shared_queues > 0 ? t.shared_queues : 0));
  r |= single(o, "stompgate_shared_binding_keys", "gauge",
              "Shared mode: distinct binding keys on those queues, each one broker binding.",
              (t.shared_keys > 0 ? t.shared_keys : 0));
  r |= single(o, "stompgate_shared_exact_bindings", "gauge",
              "Shared mode: those keys bound on a topic exchange's exact-key direct exchange "
              "(--exact-key-exchange) rather than on the topic exchange itself.",
              (t.shared_exact > 0 ? t.shared_exact : 0));
  r |= header(o, "stompgate_broker_links", "gauge",
              "AMQP connections open to each broker node (sessions' and the shared pool's).");
  for (size_t i = 0; i < t.nnodes; i++)
    r |= sg_buf_printf(o, "stompgate_broker_links{node=\"%s\"} %" PRId64 "\n", t.nodes[i].name,
                       t.nodes[i].n > 0 ? t.nodes[i].n : 0);
  r |= single(o, "stompgate_ws_parked_total", "counter",
              "Times a quiet WebSocket gave its framing state and buffers back (made again "
              "when a byte comes or goes).",
              t.ws_parks);
  r |= single(o, "stompgate_ws_parked", "gauge",
              "WebSockets holding no framing state or buffers now, because they are quiet.",
              (t.ws_parked > 0 ? t.ws_parked : 0));
  r |= single(o, "stompgate_broker_session_links_opened_total", "counter",
              "Per-session mode: AMQP connections opened by a session's login.",
              t.session_links_opened);
  r |= single(o, "stompgate_broker_session_links_joined_total", "counter",
              "Per-session mode: sessions that got a channel on a connection a session with the "
              "same credentials had just opened (session-link-max, session-link-window).",
              t.session_links_joined);
  r |= single(o, "stompgate_shared_moves_total", "counter",
              "Shared subscription queues set up again on a live node after their broker "
              "connection was lost (their sessions stayed open).",
              t.shared_moves);
  r |= single(o, "stompgate_history_resumes_total", "counter",
              "Subscriptions to a topic with history that named an x-stream-offset to resume "
              "from.",
              t.history_resumes);
  r |= single(o, "stompgate_history_switches_total", "counter",
              "Shared mode: resumed subscriptions whose catch-up read of the stream reached the "
              "worker's live feed and moved onto it.",
              t.history_switches);
  r |= single(o, "stompgate_history_catchup_messages_total", "counter",
              "Messages delivered from catch-up reads of history streams (shared mode) or from "
              "a session's own stream consumer (per-session mode).",
              t.history_catchup_msgs);
  r |= single(o, "stompgate_history_incomplete_total", "counter",
              "Resumes whose offset the stream no longer held (past the retention): their first "
              "message carried x-history-incomplete.",
              t.history_incomplete);
  r |= single(o, "stompgate_sessions_moved_total", "counter",
              "Shared-mode sessions that kept their WebSocket when their broker channel's "
              "connection was lost (nothing was owed on it).",
              t.sessions_moved);
  r |= single(o, "stompgate_sessions_held_total", "counter",
              "Times a session stopped reading its client because the broker would not take its "
              "publishes (connection.blocked, or its link over broker-output-limit).",
              t.sessions_held);
  r |= single(o, "stompgate_stomp_tcp_connections_total", "counter",
              "STOMP over TCP or TLS connections (stomp-listen) that became sessions.",
              t.stomp_tcp);
  r |= single(o, "stompgate_stomp_tcp_refused_total", "counter",
              "STOMP over TCP or TLS connections refused with an ERROR by the admission limits "
              "(max-sessions, session-rate, shutdown).",
              t.stomp_tcp_refused);
  r |= single(o, "stompgate_draining", "gauge",
              "1 while shutting down.",
              g->draining);
  r |= sg_events_metrics(o);
  r |= histogram(o, "stompgate_handshake_seconds",
                 "TCP accept to completed WebSocket upgrade (TLS included).", &t.handshake);
  r |= histogram(o, "stompgate_broker_login_seconds", "STOMP CONNECT to AMQP login done.",
                 &t.login);
  r |= header(o, "stompgate_delivery_seconds", "histogram",
              "Broker delivery (its last AMQP frame read) to its MESSAGE frame handed to the "
              "client's transport, by relay mode.");
  r |= hist_series(o, "stompgate_delivery_seconds", "relay=\"per-session\",", &t.delivery[0]);
  r |= hist_series(o, "stompgate_delivery_seconds", "relay=\"shared\",", &t.delivery[1]);
  r |= histogram(o, "stompgate_publish_confirm_seconds",
                 "AMQP publish of a SEND to the broker's publisher confirm.", &t.confirm);
  r |= histogram(o, "stompgate_broker_rpc_seconds",
                 "Synchronous AMQP method sent to its reply (declare, bind, consume ...).",
                 &t.rpc);
  r |= histogram(o, "stompgate_session_duration_seconds",
                 "Lifetime of sessions that completed their upgrade, open to close.",
                 &t.session_duration);
  return r ? SG_ERR_NOMEM : 0;
}
