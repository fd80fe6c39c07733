/* SPDX-License-Identifier: MIT */
#include "config.h"

#include <amqp.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "sg_config.h"

static const char usage[] =
    "Usage: stompgate [OPTION]...\n"
    "Relay STOMP 1.0/1.1/1.2 over WebSocket to RabbitMQ over AMQP 0-9-1.\n"
    "\n"
    "  --listen HOST:PORT        WebSocket listener (default 127.0.0.1:15674)\n"
    "  --ws-path PATH            WebSocket endpoint path (default /ws)\n"
    "  --broker URL              amqp://user:pass@host:port/vhost\n"
    "                            (default amqp://guest:guest@127.0.0.1:5672/);\n"
    "                            its credentials are used when CONNECT has no login\n"
    "  --mode MODE               relay mode: per-session (default; each STOMP\n"
    "                            session opens its own AMQP connection) or\n"
    "                            shared (sessions get channels on a few pooled\n"
    "                            connections under the --broker credentials, and\n"
    "                            topic subscriptions share one queue per worker)\n"
    "  --workers N               event loop threads sharing the listening port\n"
    "                            (default: the number of cores)\n"
    "  --max-outbound-bytes N    bytes queued for one client before it counts\n"
    "                            as a slow consumer (default 4194304)\n"
    "  --slow-consumer POLICY    close (default): ERROR 'slow consumer' and close;\n"
    "                            drop: drop messages of auto-ack /topic and\n"
    "                            /exchange subscriptions while over the limit\n"
    "                            (counted), close for the others\n"
    "  --auth-cache-ttl MS       shared mode: how long a successful check of\n"
    "                            CONNECT credentials against the broker is\n"
    "                            reused (default 30000; 0 checks every time)\n"
    "  --log-level LEVEL         error, warn, info (default) or debug\n"
    "  --max-frame-size BYTES    largest STOMP frame accepted (default 4194304)\n"
    "  --max-headers N           most headers in a frame (default 256)\n"
    "  --max-header-size BYTES   longest header line (default 8192)\n"
    "  --max-http-head BYTES     largest HTTP request head (default 8192)\n"
    "  --handshake-timeout MS    time allowed for the WebSocket upgrade\n"
    "                            (default 10000)\n"
    "  --connect-timeout MS      time allowed between upgrade and CONNECT\n"
    "                            (default 10000)\n"
    "  --heartbeat-min MS        shortest heart-beat interval granted either way\n"
    "                            (default 500)\n"
    "  --max-subscriptions N     subscriptions per session (default 1024)\n"
    "  --max-transactions N      open transactions per session (default 16)\n"
    "  --max-tx-frames N         frames in one transaction (default 10000)\n"
    "  --require-host            refuse a STOMP 1.1/1.2 CONNECT without a host\n"
    "                            header, as the spec says; by default it means\n"
    "                            --broker's vhost, as with RabbitMQ Web-STOMP\n"
    "                            (@stomp/stompjs sends no host unless told to)\n"
    "  --app-prefix PREFIX       application destination prefix; SENDs under it\n"
    "                            go to back-end services through --app-exchange\n"
    "                            (default /app; repeatable; '' turns it off)\n"
    "  --app-exchange NAME       topic exchange for application destinations,\n"
    "                            declared at start-up (default stompgate.app)\n"
    "  --www DIR                 serve the files under DIR for GET and HEAD on\n"
    "                            other paths than --ws-path (no listings; for\n"
    "                            small pages such as the example app)\n"
    "  -h, --help                show this help and exit\n"
    "  -V, --version             show the version and exit\n";

enum {
  OPT_LISTEN = 256, OPT_WS_PATH, OPT_BROKER, OPT_MODE, OPT_LOG_LEVEL, OPT_MAX_FRAME,
  OPT_MAX_HEADERS, OPT_MAX_HEADER_SIZE, OPT_MAX_HEAD, OPT_HS_TIMEOUT, OPT_CONNECT_TIMEOUT,
  OPT_HB_MIN, OPT_MAX_SUBS, OPT_MAX_TX, OPT_MAX_TX_FRAMES, OPT_APP_PREFIX, OPT_APP_EXCHANGE, OPT_WWW, OPT_WORKERS, OPT_AUTH_TTL, OPT_MAX_OUT, OPT_SLOW, OPT_REQUIRE_HOST,
};

static const struct option long_opts[] = {
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"ws-path", required_argument, NULL, OPT_WS_PATH},
    {"broker", required_argument, NULL, OPT_BROKER},
    {"mode", required_argument, NULL, OPT_MODE},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"max-frame-size", required_argument, NULL, OPT_MAX_FRAME},
    {"max-headers", required_argument, NULL, OPT_MAX_HEADERS},
    {"max-header-size", required_argument, NULL, OPT_MAX_HEADER_SIZE},
    {"max-http-head", required_argument, NULL, OPT_MAX_HEAD},
    {"handshake-timeout", required_argument, NULL, OPT_HS_TIMEOUT},
    {"connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT},
    {"heartbeat-min", required_argument, NULL, OPT_HB_MIN},
    {"max-subscriptions", required_argument, NULL, OPT_MAX_SUBS},
    {"max-transactions", required_argument, NULL, OPT_MAX_TX},
    {"max-tx-frames", required_argument, NULL, OPT_MAX_TX_FRAMES},
    {"app-prefix", required_argument, NULL, OPT_APP_PREFIX},
    {"app-exchange", required_argument, NULL, OPT_APP_EXCHANGE},
    {"www", required_argument, NULL, OPT_WWW},
    {"workers", required_argument, NULL, OPT_WORKERS},
    {"auth-cache-ttl", required_argument, NULL, OPT_AUTH_TTL},
    {"max-outbound-bytes", required_argument, NULL, OPT_MAX_OUT},
    {"slow-consumer", required_argument, NULL, OPT_SLOW},
    {"require-host", no_argument, NULL, OPT_REQUIRE_HOST},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

static void broker_addr_free(sg_broker_addr_t *a) {
  free(a->host);
  free(a->user);
  free(a->password);
  free(a->vhost);
  memset(a, 0, sizeof(*a));
}

int sg_broker_addr_parse(sg_broker_addr_t *a, const char *url) {
  struct amqp_connection_info info;
  char *copy = strdup(url);
  if (copy == NULL) return -1;
  amqp_default_connection_info(&info);
  if (amqp_parse_url(copy, &info) != AMQP_STATUS_OK || info.ssl) {
    free(copy);
    return -1;
  }
  sg_broker_addr_t n;
  n.host = strdup(info.host);
  n.port = info.port;
  n.user = strdup(info.user);
  n.password = strdup(info.password);
  /* "amqp://h/" names the empty vhost in the URI spec; nobody means that, so
   * it is read as "/", like a URL with no path. */
  n.vhost = strdup(info.vhost[0] ? info.vhost : "/");
  free(copy);
  if (!n.host || !n.user || !n.password || !n.vhost) {
    broker_addr_free(&n);
    return -1;
  }
  broker_addr_free(a);
  *a = n;
  return 0;
}

static void app_prefixes_free(sg_config_t *cfg) {
  for (size_t i = 0; i < cfg->n_app_prefixes; i++) free(cfg->app_prefixes[i]);
  free(cfg->app_prefixes);
  cfg->app_prefixes = NULL;
  cfg->n_app_prefixes = 0;
}

/* The first --app-prefix replaces the default; later ones add to it. An
 * empty one turns application destinations off. */
static int add_app_prefix(sg_config_t *cfg, const char *p, int *seen) {
  if (!*seen) app_prefixes_free(cfg);
  *seen = 1;
  if (p[0] == '\0') return 0;
  size_t n = strlen(p);
  while (n > 1 && p[n - 1] == '/') n--; /* "/app/" means "/app" */
  if (p[0] != '/' || n < 2 || n > 200) {
    fprintf(stderr, "stompgate: invalid --app-prefix '%s' (expected /NAME)\n", p);
    return -1;
  }
  char **a = realloc(cfg->app_prefixes, (cfg->n_app_prefixes + 1) * sizeof(*a));
  if (a == NULL) return -1;
  cfg->app_prefixes = a;
  if ((a[cfg->n_app_prefixes] = strndup(p, n)) == NULL) return -1;
  cfg->n_app_prefixes++;
  return 0;
}

static int parse_size(const char *name, const char *s, size_t min, size_t max, size_t *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s || *end || s[0] == '-' || v < min || v > max) {
    fprintf(stderr, "stompgate: invalid %s '%s' (expected %zu..%zu)\n", name, s, min, max);
    return -1;
  }
  *out = (size_t)v;
  return 0;
}

static int parse_listen(sg_config_t *cfg, const char *s) {
  const char *colon = strrchr(s, ':');
  size_t port;
  if (colon == NULL || colon == s) goto bad;
  if (parse_size("--listen port", colon + 1, 0, 65535, &port)) return -1;
  const char *h = s;
  size_t hl = (size_t)(colon - s);
  if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
    h++;
    hl -= 2;
  }
  free(cfg->listen_host);
  cfg->listen_host = strndup(h, hl);
  cfg->listen_port = (int)port;
  return 0;
bad:
  fprintf(stderr, "stompgate: invalid --listen '%s' (expected HOST:PORT)\n", s);
  return -1;
}

int sg_config_parse(sg_config_t *cfg, int argc, char **argv) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->listen_host = strdup("127.0.0.1");
  cfg->listen_port = 15674;
  cfg->ws_path = strdup("/ws");
  sg_broker_addr_parse(&cfg->broker, "amqp://guest:guest@127.0.0.1:5672/");
  cfg->mode = SG_MODE_PER_SESSION;
  {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->workers = n < 1 ? 1 : n > 64 ? 64 : (int)n;
  }
  cfg->auth_cache_ttl_ms = 30000;
  cfg->max_outbound_bytes = 4u << 20;
  cfg->log_level = SG_LOG_INFO;
  cfg->max_frame_size = 4u << 20;
  cfg->max_headers = 256;
  cfg->max_header_size = 8192;
  cfg->max_head_size = 8192;
  cfg->handshake_timeout_ms = 10000;
  cfg->connect_timeout_ms = 10000;
  cfg->heartbeat_min_ms = 500;
  cfg->max_subscriptions = 1024;
  cfg->max_transactions = 16;
  cfg->max_tx_frames = 10000;
  cfg->max_pending_frames = 1000;
  cfg->app_exchange = strdup("stompgate.app");
  int app_prefix_seen = 0;
  add_app_prefix(cfg, "/app", &app_prefix_seen);
  app_prefix_seen = 0;

  int c;
  size_t v;
  optind = 1;
  while ((c = getopt_long(argc, argv, "hV", long_opts, NULL)) != -1) {
    switch (c) {
    case 'h':
      fputs(usage, stdout);
      return 1;
    case 'V':
      printf("stompgate %s\n", SG_VERSION);
      return 1;
    case OPT_LISTEN:
      if (parse_listen(cfg, optarg)) return 2;
      break;
    case OPT_WS_PATH:
      if (optarg[0] != '/') {
        fprintf(stderr, "stompgate: invalid --ws-path '%s' (must start with /)\n", optarg);
        return 2;
      }
      free(cfg->ws_path);
      cfg->ws_path = strdup(optarg);
      break;
    case OPT_BROKER:
      if (sg_broker_addr_parse(&cfg->broker, optarg)) {
        fprintf(stderr, "stompgate: invalid --broker '%s' (expected amqp://user:pass@host:port/vhost)\n",
                optarg);
        return 2;
      }
      break;
    case OPT_MODE:
      if (strcmp(optarg, "per-session") == 0) {
        cfg->mode = SG_MODE_PER_SESSION;
      } else if (strcmp(optarg, "shared") == 0) {
        cfg->mode = SG_MODE_SHARED;
      } else {
        fprintf(stderr, "stompgate: invalid --mode '%s' (per-session or shared)\n", optarg);
        return 2;
      }
      break;
    case OPT_WORKERS:
      if (parse_size("--workers", optarg, 1, 64, &v)) return 2;
      cfg->workers = (int)v;
      break;
    case OPT_MAX_OUT:
      if (parse_size("--max-outbound-bytes", optarg, 65536, (size_t)1 << 30, &cfg->max_outbound_bytes))
        return 2;
      break;
    case OPT_SLOW:
      if (strcmp(optarg, "close") == 0) {
        cfg->slow_consumer_drop = 0;
      } else if (strcmp(optarg, "drop") == 0) {
        cfg->slow_consumer_drop = 1;
      } else {
        fprintf(stderr, "stompgate: invalid --slow-consumer '%s' (close or drop)\n", optarg);
        return 2;
      }
      break;
    case OPT_AUTH_TTL:
      if (parse_size("--auth-cache-ttl", optarg, 0, 86400000, &v)) return 2;
      cfg->auth_cache_ttl_ms = v;
      break;
    case OPT_LOG_LEVEL:
      if ((cfg->log_level = sg_log_level_parse(optarg)) < 0) {
        fprintf(stderr, "stompgate: invalid --log-level '%s' (error, warn, info, debug)\n", optarg);
        return 2;
      }
      break;
    case OPT_MAX_FRAME:
      if (parse_size("--max-frame-size", optarg, 1024, 256u << 20, &cfg->max_frame_size)) return 2;
      break;
    case OPT_MAX_HEADERS:
      if (parse_size("--max-headers", optarg, 8, 100000, &cfg->max_headers)) return 2;
      break;
    case OPT_MAX_HEADER_SIZE:
      if (parse_size("--max-header-size", optarg, 64, 1u << 20, &cfg->max_header_size)) return 2;
      break;
    case OPT_MAX_HEAD:
      if (parse_size("--max-http-head", optarg, 512, 1u << 20, &cfg->max_head_size)) return 2;
      break;
    case OPT_HS_TIMEOUT:
      if (parse_size("--handshake-timeout", optarg, 10, 3600000, &v)) return 2;
      cfg->handshake_timeout_ms = v;
      break;
    case OPT_CONNECT_TIMEOUT:
      if (parse_size("--connect-timeout", optarg, 10, 3600000, &v)) return 2;
      cfg->connect_timeout_ms = v;
      break;
    case OPT_HB_MIN:
      if (parse_size("--heartbeat-min", optarg, 10, 3600000, &v)) return 2;
      cfg->heartbeat_min_ms = v;
      break;
    case OPT_MAX_SUBS:
      if (parse_size("--max-subscriptions", optarg, 1, 1000000, &cfg->max_subscriptions)) return 2;
      break;
    case OPT_MAX_TX:
      if (parse_size("--max-transactions", optarg, 1, 100000, &cfg->max_transactions)) return 2;
      break;
    case OPT_MAX_TX_FRAMES:
      if (parse_size("--max-tx-frames", optarg, 1, 10000000, &cfg->max_tx_frames)) return 2;
      break;
    case OPT_APP_PREFIX:
      if (add_app_prefix(cfg, optarg, &app_prefix_seen)) return 2;
      break;
    case OPT_APP_EXCHANGE:
      if (optarg[0] == '\0' || strlen(optarg) > 255 || strncmp(optarg, "amq.", 4) == 0) {
        fprintf(stderr, "stompgate: invalid --app-exchange '%s' (1..255 bytes, not amq.*)\n", optarg);
        return 2;
      }
      free(cfg->app_exchange);
      cfg->app_exchange = strdup(optarg);
      break;
    case OPT_REQUIRE_HOST:
      cfg->require_host = 1;
      break;
    case OPT_WWW: {
      struct stat st;
      char *real = realpath(optarg, NULL);
      if (real == NULL || stat(real, &st) != 0 || !S_ISDIR(st.st_mode) || strcmp(real, "/") == 0) {
        fprintf(stderr, "stompgate: invalid --www '%s' (expected an existing directory, not /)\n",
                optarg);
        free(real);
        return 2;
      }
      free(cfg->www_root);
      cfg->www_root = real;
      break;
    }
    default:
      fputs("Try 'stompgate --help'.\n", stderr);
      return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "stompgate: unexpected argument '%s'\n", argv[optind]);
    return 2;
  }
  return 0;
}

void sg_config_free(sg_config_t *cfg) {
  free(cfg->listen_host);
  free(cfg->ws_path);
  free(cfg->app_exchange);
  free(cfg->www_root);
  app_prefixes_free(cfg);
  broker_addr_free(&cfg->broker);
}
