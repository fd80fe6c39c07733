/* SPDX-License-Identifier: MIT */
/* Settings: one table drives the flags, the STOMPGATE_* environment
 * variables, the INI file keys and --help, so the four cannot drift apart. */
#include "config.h"

#include <amqp.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "sg_config.h"

extern char **environ;

static void broker_addr_free(sg_broker_addr_t *a);

/* Precedence of each source; a list setting given by a higher one replaces
 * what a lower one gave instead of adding to it. */
enum { LVL_DEFAULT = 0, LVL_FILE, LVL_ENV, LVL_FLAG };

enum opt_type { T_SIZE, T_MS, T_STR, T_PATH, T_CUSTOM };

typedef struct setting setting_t;
typedef int (*apply_fn)(sg_config_t *cfg, const setting_t *st, const char *v, int level,
                        const char *where);

struct setting {
  const char *name;
  const char *meta; /* NULL: no argument */
  enum opt_type type;
  size_t off;       /* field for T_SIZE, T_MS, T_STR, T_PATH */
  unsigned long long min, max;
  apply_fn apply;   /* T_CUSTOM */
  const char *help;
};

static int bad(const setting_t *st, const char *v, const char *where, const char *expect) {
  fprintf(stderr, "stompgate: invalid setting '%s' = '%s' (from %s): expected %s\n", st->name, v,
          where, expect);
  return -1;
}

static int set_str(char **field, const char *v) {
  char *n = strdup(v);
  if (n == NULL) return -1;
  free(*field);
  *field = n;
  return 0;
}

/* An empty value turns a string setting off. Always 0. */
static int clear_str(char **field) {
  free(*field);
  *field = NULL;
  return 0;
}

static int parse_hostport(const setting_t *st, const char *s, const char *where, char **host,
                          int *port) {
  const char *colon = strrchr(s, ':');
  if (colon == NULL || colon == s) return bad(st, s, where, "HOST:PORT");
  char *end;
  errno = 0;
  unsigned long p = strtoul(colon + 1, &end, 10);
  if (errno || end == colon + 1 || *end || p > 65535) return bad(st, s, where, "HOST:PORT with a port 0..65535");
  const char *h = s;
  size_t hl = (size_t)(colon - s);
  if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
    h++;
    hl -= 2;
  }
  char *n = strndup(h, hl);
  if (n == NULL) return -1;
  free(*host);
  *host = n;
  *port = (int)p;
  return 0;
}

static int apply_listen(sg_config_t *cfg, const setting_t *st, const char *v, int level,
                        const char *where) {
  (void)level;
  return parse_hostport(st, v, where, &cfg->listen_host, &cfg->listen_port);
}

static int apply_admin(sg_config_t *cfg, const setting_t *st, const char *v, int level,
                       const char *where) {
  (void)level;
  if (*v == '\0' || strcmp(v, "off") == 0) {
    free(cfg->admin_host);
    cfg->admin_host = NULL;
    return 0;
  }
  return parse_hostport(st, v, where, &cfg->admin_host, &cfg->admin_port);
}

static int apply_ws_path(sg_config_t *cfg, const setting_t *st, const char *v, int level,
                         const char *where) {
  (void)level;
  if (v[0] != '/') return bad(st, v, where, "a path starting with /");
  return set_str(&cfg->ws_path, v);
}

static int apply_sockjs_prefix(sg_config_t *cfg, const setting_t *st, const char *v, int level,
                               const char *where) {
  (void)level;
  size_t n = strlen(v);
  if (v[0] != '/' || n < 2 || v[n - 1] == '/' || strchr(v, '?') || strchr(v, '.'))
    return bad(st, v, where, "a path starting with / and not ending with /");
  return set_str(&cfg->sockjs_prefix, v);
}

/* Repeatable: the nodes of one cluster, tried in order. A higher source
 * replaces the list of a lower one. */
static int apply_broker(sg_config_t *cfg, const setting_t *st, const char *v, int level,
                        const char *where) {
  if (level > cfg->brokers_level) {
    for (size_t i = 0; i < cfg->nbrokers; i++) broker_addr_free(&cfg->brokers[i]);
    cfg->nbrokers = 0;
    cfg->brokers_level = level;
  }
  sg_broker_addr_t a;
  memset(&a, 0, sizeof(a));
  if (sg_broker_addr_parse(&a, v))
    return bad(st, v, where, "amqp://user:pass@host:port/vhost or amqps://...");
  sg_broker_addr_t *n = realloc(cfg->brokers, (cfg->nbrokers + 1) * sizeof(*n));
  if (n == NULL) {
    broker_addr_free(&a);
    return -1;
  }
  cfg->brokers = n;
  cfg->brokers[cfg->nbrokers++] = a;
  return 0;
}

static int apply_mode(sg_config_t *cfg, const setting_t *st, const char *v, int level,
                      const char *where) {
  (void)level;
  if (strcmp(v, "per-session") == 0) cfg->mode = SG_MODE_PER_SESSION;
  else if (strcmp(v, "shared") == 0) cfg->mode = SG_MODE_SHARED;
  else return bad(st, v, where, "per-session or shared");
  return 0;
}

static int apply_auth(sg_config_t *cfg, const setting_t *st, const char *v, int level,
                      const char *where) {
  (void)level;
  if (strcmp(v, "broker") == 0) cfg->auth = SG_AUTH_BROKER;
  else if (strcmp(v, "jwt") == 0) cfg->auth = SG_AUTH_JWT;
  else if (strcmp(v, "file") == 0) cfg->auth = SG_AUTH_FILE;
  else return bad(st, v, where, "broker, jwt or file");
  return 0;
}

static int apply_slow(sg_config_t *cfg, const setting_t *st, const char *v, int level,
                      const char *where) {
  (void)level;
  if (strcmp(v, "close") == 0) cfg->slow_consumer_drop = 0;
  else if (strcmp(v, "drop") == 0) cfg->slow_consumer_drop = 1;
  else return bad(st, v, where, "close or drop");
  return 0;
}

static int apply_workers(sg_config_t *cfg, const setting_t *st, const char *v, int level,
                         const char *where) {
  (void)level;
  char *end;
  errno = 0;
  unsigned long n = strtoul(v, &end, 10);
  if (errno || end == v || *end || v[0] == '-' || n < 1 || n > 64)
    return bad(st, v, where, "an integer 1..64");
  cfg->workers = (int)n;
  return 0;
}

static int apply_app_exchange(sg_config_t *cfg, const setting_t *st, const char *v, int level,
                              const char *where) {
  (void)level;
  if (v[0] == '\0' || strlen(v) > 255 || strncmp(v, "amq.", 4) == 0)
    return bad(st, v, where, "an exchange name of 1..255 bytes, not amq.*");
  return set_str(&cfg->app_exchange, v);
}

static int apply_user_exchange(sg_config_t *cfg, const setting_t *st, const char *v, int level,
                               const char *where) {
  (void)level;
  if (*v == '\0') return clear_str(&cfg->user_exchange);
  if (strlen(v) > 255) return bad(st, v, where, "an exchange name of 1..255 bytes");
  return set_str(&cfg->user_exchange, v);
}

static int apply_exact_exchange(sg_config_t *cfg, const setting_t *st, const char *v, int level,
                                const char *where) {
  (void)level;
  if (*v == '\0') return clear_str(&cfg->exact_exchange_prefix);
  if (strlen(v) > 200 || strncmp(v, "amq.", 4) == 0)
    return bad(st, v, where, "an exchange name prefix of 0..200 bytes, not amq.*");
  return set_str(&cfg->exact_exchange_prefix, v);
}

static int apply_www(sg_config_t *cfg, const setting_t *st, const char *v, int level,
                     const char *where) {
  (void)level;
  if (*v == '\0') return clear_str(&cfg->www_root);
  struct stat sb;
  char *real = realpath(v, NULL);
  if (real == NULL || stat(real, &sb) != 0 || !S_ISDIR(sb.st_mode) || strcmp(real, "/") == 0) {
    free(real);
    return bad(st, v, where, "an existing directory, not /");
  }
  free(cfg->www_root);
  cfg->www_root = real;
  return 0;
}

static int apply_log_level(sg_config_t *cfg, const setting_t *st, const char *v, int level,
                           const char *where) {
  (void)level;
  if ((cfg->log_level = sg_log_level_parse(v)) < 0)
    return bad(st, v, where, "error, warn, info or debug");
  return 0;
}

static int apply_log_format(sg_config_t *cfg, const setting_t *st, const char *v, int level,
                            const char *where) {
  (void)level;
  if ((cfg->log_json = sg_log_format_parse(v)) < 0) return bad(st, v, where, "text or json");
  return 0;
}

static int apply_bool(int *field, const setting_t *st, const char *v, const char *where) {
  if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on") || !strcmp(v, "1")) *field = 1;
  else if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off") || !strcmp(v, "0"))
    *field = 0;
  else return bad(st, v, where, "true or false");
  return 0;
}

static int apply_require_host(sg_config_t *cfg, const setting_t *st, const char *v, int level,
                              const char *where) {
  (void)level;
  if (*v == '\0') { /* the bare flag */
    cfg->require_host = 1;
    return 0;
  }
  return apply_bool(&cfg->require_host, st, v, where);
}

static int apply_broker_verify(sg_config_t *cfg, const setting_t *st, const char *v, int level,
                               const char *where) {
  (void)level;
  return apply_bool(&cfg->broker_tls_verify, st, v, where);
}

static int apply_sockjs(sg_config_t *cfg, const setting_t *st, const char *v, int level,
                        const char *where) {
  (void)level;
  return apply_bool(&cfg->sockjs, st, v, where);
}

static int apply_compression(sg_config_t *cfg, const setting_t *st, const char *v, int level,
                             const char *where) {
  (void)level;
  return apply_bool(&cfg->compression, st, v, where);
}

static void strlist_clear(sg_strlist_t *l) {
  for (size_t i = 0; i < l->n; i++) free(l->v[i]);
  free(l->v);
  l->v = NULL;
  l->n = 0;
}

/* A list setting from a higher source replaces the list of a lower one. */
static void strlist_at_level(sg_strlist_t *l, int level) {
  if (level > l->level) {
    strlist_clear(l);
    l->level = level;
  }
}

/* Appends a copy of s[0..n). */
static int strlist_push(sg_strlist_t *l, const char *s, size_t n) {
  char **nv = realloc(l->v, (l->n + 1) * sizeof(*nv));
  if (nv == NULL) return -1;
  l->v = nv;
  if ((l->v[l->n] = strndup(s, n)) == NULL) return -1;
  l->n++;
  return 0;
}

/* A list setting takes one or more values separated by commas or blanks;
 * it may be repeated within one source. */
static int apply_origin(sg_config_t *cfg, const setting_t *st, const char *v, int level,
                        const char *where) {
  sg_strlist_t *l = &cfg->allowed_origins;
  strlist_at_level(l, level);
  const char *p = v;
  while (*p) {
    while (*p == ',' || isspace((unsigned char)*p)) p++;
    const char *e = p;
    while (*e && *e != ',' && !isspace((unsigned char)*e)) e++;
    if (e == p) break;
    size_t n = (size_t)(e - p);
    if (!(n == 1 && *p == '*') && !((n > 7 && !strncmp(p, "http://", 7)) ||
                                     (n > 8 && !strncmp(p, "https://", 8)))) {
      char *one = strndup(p, n);
      int r = bad(st, one ? one : v, where, "an origin such as https://app.example.com, or *");
      free(one);
      return r;
    }
    if (strlist_push(l, p, n) != 0) return -1;
    p = e;
  }
  return 0;
}

/* Repeatable; a higher source replaces the list of a lower one, and an
 * empty value turns application destinations off. "/app/" means "/app". */
static int apply_app_prefix(sg_config_t *cfg, const setting_t *st, const char *v, int level,
                            const char *where) {
  sg_strlist_t *l = &cfg->app_prefixes;
  strlist_at_level(l, level);
  if (*v == '\0') return 0;
  size_t n = strlen(v);
  while (n > 1 && v[n - 1] == '/') n--;
  if (v[0] != '/' || n < 2 || n > 200) return bad(st, v, where, "a prefix such as /app");
  return strlist_push(l, v, n);
}

/* Repeatable: PATTERN[:RETENTION]; a higher source replaces the list of a
 * lower one, and an empty value empties it. */
static int apply_history(sg_config_t *cfg, const setting_t *st, const char *v, int level,
                         const char *where) {
  if (level > cfg->history_level) {
    for (size_t i = 0; i < cfg->nhistory; i++) sg_history_free(&cfg->history[i]);
    cfg->nhistory = 0;
    cfg->history_level = level;
  }
  if (*v == '\0') return 0;
  sg_history_t h;
  const char *why = NULL;
  if (sg_history_parse(v, &h, &why) != 0) return bad(st, v, where, why);
  if (cfg->nhistory == SG_HISTORY_MAX) {
    sg_history_free(&h);
    return bad(st, v, where, "at most 64 history patterns");
  }
  for (size_t i = 0; i < cfg->nhistory; i++)
    if (strcmp(cfg->history[i].pattern, h.pattern) == 0) {
      sg_history_free(&h);
      return bad(st, v, where, "each pattern once");
    }
  sg_history_t *nv = realloc(cfg->history, (cfg->nhistory + 1) * sizeof(*nv));
  if (nv == NULL) {
    sg_history_free(&h);
    return -1;
  }
  cfg->history = nv;
  cfg->history[cfg->nhistory++] = h;
  return 0;
}

/* Repeatable: PEM files of public keys, each optionally named KID=FILE.
 * A higher source replaces the list of a lower one. */
static int apply_key_file(sg_config_t *cfg, const setting_t *st, const char *v, int level,
                          const char *where) {
  sg_strlist_t *l = &cfg->jwt_key_files;
  strlist_at_level(l, level);
  if (*v == '\0') return 0;
  const char *eq = strchr(v, '=');
  const char *path = eq ? eq + 1 : v;
  FILE *f = fopen(path, "r");
  if (f == NULL || (eq && eq == v)) {
    if (f) fclose(f);
    return bad(st, v, where, "a readable PEM file, optionally as KID=FILE");
  }
  fclose(f);
  return strlist_push(l, v, strlen(v));
}

static int apply_config(sg_config_t *cfg, const setting_t *st, const char *v, int level,
                        const char *where) {
  (void)st, (void)where, (void)level;
  return set_str(&cfg->config_file, v);
}

/* Clients behind load balancers: the PROXY protocol and the peers trusted
 * to name the client (a PROXY header, X-Forwarded-For, Forwarded). */
static int apply_proxy_protocol(sg_config_t *cfg, const setting_t *st, const char *v, int level,
                                const char *where) {
  (void)level;
  if (*v == '\0') { /* the bare flag */
    cfg->proxy_protocol = 1;
    return 0;
  }
  return apply_bool(&cfg->proxy_protocol, st, v, where);
}

/* Repeatable, comma- or blank-separated; a higher source replaces the list
 * of a lower one, and an empty value clears it. */
static int apply_trusted_proxy(sg_config_t *cfg, const setting_t *st, const char *v, int level,
                               const char *where) {
  if (level > cfg->trusted_proxies_level) {
    free(cfg->trusted_proxies);
    cfg->trusted_proxies = NULL;
    cfg->ntrusted_proxies = 0;
    cfg->trusted_proxies_level = level;
  }
  const char *p = v;
  while (*p) {
    while (*p == ',' || isspace((unsigned char)*p)) p++;
    const char *e = p;
    while (*e && *e != ',' && !isspace((unsigned char)*e)) e++;
    if (e == p) break;
    char one[80];
    sg_cidr_t c;
    snprintf(one, sizeof(one), "%.*s", (int)(e - p), p);
    if ((size_t)(e - p) >= sizeof(one) || sg_cidr_parse(one, &c) != 0)
      return bad(st, one, where, "an address or block such as 10.0.0.0/8 or fd00::/8");
    sg_cidr_t *nv = realloc(cfg->trusted_proxies, (cfg->ntrusted_proxies + 1) * sizeof(*nv));
    if (nv == NULL) return -1;
    cfg->trusted_proxies = nv;
    nv[cfg->ntrusted_proxies++] = c;
    p = e;
  }
  return 0;
}

static int check_proxies(const sg_config_t *cfg) {
  if (cfg->proxy_protocol && cfg->ntrusted_proxies == 0) {
    fprintf(stderr, "stompgate: invalid setting 'proxy-protocol': needs trusted-proxy (the "
                    "load balancers' addresses)\n");
    return -1;
  }
  return 0;
}

/* STOMP over TCP: an address, or '' / off for none (the default). */
static int apply_stomp_listen(sg_config_t *cfg, const setting_t *st, const char *v, int level,
                              const char *where) {
  (void)level;
  if (*v == '\0' || strcmp(v, "off") == 0) {
    free(cfg->stomp_listen_host);
    cfg->stomp_listen_host = NULL;
    return 0;
  }
  return parse_hostport(st, v, where, &cfg->stomp_listen_host, &cfg->stomp_listen_port);
}

static int apply_stomp_tls(sg_config_t *cfg, const setting_t *st, const char *v, int level,
                           const char *where) {
  (void)level;
  if (*v == '\0') { /* the bare flag */
    cfg->stomp_tls = 1;
    return 0;
  }
  return apply_bool(&cfg->stomp_tls, st, v, where);
}

#define F(field) offsetof(sg_config_t, field)

static const setting_t settings[] = {
    {"config", "FILE", T_CUSTOM, 0, 0, 0, apply_config,
     "read settings from this INI file first (see deploy/stompgate.conf)"},
    {"listen", "HOST:PORT", T_CUSTOM, 0, 0, 0, apply_listen,
     "WebSocket listener (default 127.0.0.1:15674)"},
    {"ws-path", "PATH", T_CUSTOM, 0, 0, 0, apply_ws_path, "WebSocket endpoint path (default /ws)"},
    {"broker", "URL", T_CUSTOM, 0, 0, 0, apply_broker,
     "amqp://user:pass@host:port/vhost, or amqps:// for TLS\n"
     "(default amqp://guest:guest@127.0.0.1:5672/); its\n"
     "credentials are used when CONNECT has no login.\n"
     "Repeat it (or separate URLs with commas in the\n"
     "environment) for the nodes of a cluster: logins try\n"
     "the node last seen up first, then the others"},
    {"broker-ca", "FILE", T_PATH, F(broker_ca), 0, 0, NULL,
     "CA certificates that verify an amqps:// broker\n(default: the system store)"},
    {"broker-tls-verify", "BOOL", T_CUSTOM, 0, 0, 0, apply_broker_verify,
     "verify the amqps:// broker's certificate and name\n(default true)"},
    {"broker-probe-interval", "MS", T_MS, F(broker_probe_ms), 100, 3600000, NULL,
     "how often the admin endpoint checks that the broker\nanswers AMQP (default 5000)"},
    {"broker-heartbeat", "SECONDS", T_SIZE, F(broker_heartbeat_s), 0, 3600, NULL,
     "AMQP heart-beat interval asked of the broker; a\nbroker connection that hears nothing for two\n"
     "intervals is lost, and TCP keepalive follows it\n(default 10; 0 turns heart-beats off)"},
    {"broker-frame-max", "BYTES", T_SIZE, F(broker_frame_max), 4096, 131072, NULL,
     "largest AMQP frame a session's own broker\nconnection (per-session mode) negotiates; smaller\n"
     "frames cost less memory per session (default 16384)"},
    {"broker-output-limit", "BYTES", T_SIZE, F(broker_output_limit), 16384, (size_t)1 << 30, NULL,
     "bytes that may wait for the broker to read one\nconnection; past it the sessions publishing\n"
     "through it are not read until half is written\n(default 1048576)"},
    {"session-link-max", "N", T_SIZE, F(session_link_max), 1, 2047, NULL,
     "per-session mode: sessions with the same login,\nvhost and broker that may share one AMQP\n"
     "connection, a channel each; 1 gives every session\na connection of its own (default 16)"},
    {"session-link-window", "MS", T_MS, F(session_link_window_ms), 0, 3600000, NULL,
     "per-session mode: how long after its login a\nconnection takes more sessions with the same\n"
     "credentials (default 5000; 0: never)"},
    {"mode", "MODE", T_CUSTOM, 0, 0, 0, apply_mode,
     "relay mode: per-session (default; each STOMP\nsession logs in with its own credentials) or\n"
     "shared (sessions get channels on a few pooled\nconnections under the broker credentials, and\n"
     "topic subscriptions share one queue per worker)"},
    {"workers", "N", T_CUSTOM, 0, 0, 0, apply_workers,
     "event loop threads sharing the listening port\n(default: the number of cores)"},
    {"auth-cache-ttl", "MS", T_MS, F(auth_cache_ttl_ms), 0, 86400000, NULL,
     "shared mode: how long a successful check of\nCONNECT credentials against the broker is\n"
     "reused (default 30000; 0 checks every time)"},
    {"auth", "MODE", T_CUSTOM, 0, 0, 0, apply_auth,
     "who checks CONNECT credentials: broker (default; a\nRabbitMQ login with them), or, in shared mode\n"
     "only, jwt (a JSON Web Token in the passcode or an\nAuthorization: Bearer header) or file (the\n"
     "users-file); jwt and file authorise each SEND and\nSUBSCRIBE by RabbitMQ-style scopes"},
    {"jwt-secret-file", "FILE", T_PATH, F(jwt_secret_file), 0, 0, NULL,
     "auth jwt: the HS256 secret (the file's bytes, one\ntrailing newline dropped)"},
    {"jwt-key-file", "[KID=]FILE", T_CUSTOM, 0, 0, 0, apply_key_file,
     "auth jwt: PEM public keys for RS256 (RSA) and\nES256 (P-256), repeatable; a file may hold several.\n"
     "With KID= a token whose kid header names it uses\nonly those keys"},
    {"jwt-leeway", "SECONDS", T_SIZE, F(jwt_leeway_s), 0, 86400, NULL,
     "auth jwt: clock skew allowed on exp and nbf\n(default 30)"},
    {"jwt-audience", "AUD", T_STR, F(jwt_audience), 0, 0, NULL,
     "auth jwt: required value in the token's aud claim\n(default: aud not checked)"},
    {"jwt-user-claim", "CLAIM", T_STR, F(jwt_user_claim), 0, 0, NULL,
     "auth jwt: claim naming the user (default sub)"},
    {"jwt-scope-prefix", "PREFIX", T_STR, F(jwt_scope_prefix), 0, 0, NULL,
     "prefix of the scopes in tokens and the users file\n(default rabbitmq.)"},
    {"users-file", "FILE", T_PATH, F(users_file), 0, 0, NULL,
     "auth file: lines 'name HASH scope...' (SIGHUP\nreloads it); make HASH with --hash-password"},
    {"max-outbound-bytes", "BYTES", T_SIZE, F(max_outbound_bytes), 65536, (size_t)1 << 30, NULL,
     "bytes queued for one client before it counts as\na slow consumer (default 4194304)"},
    {"slow-consumer", "POLICY", T_CUSTOM, 0, 0, 0, apply_slow,
     "close (default): ERROR 'slow consumer' and close;\ndrop: drop messages of auto-ack /topic and\n"
     "/exchange subscriptions while over the limit\n(counted), close for the others and for topics\n"
     "with history (they resume from their offset)"},
    {"require-host", NULL, T_CUSTOM, 0, 0, 0, apply_require_host,
     "refuse a STOMP 1.1/1.2 CONNECT without a host\nheader, as the spec says; by default it means\n"
     "the broker's vhost, as with RabbitMQ Web-STOMP\n(@stomp/stompjs sends no host unless told to)"},
    {"app-prefix", "PREFIX", T_CUSTOM, 0, 0, 0, apply_app_prefix,
     "application destination prefix, repeatable: SENDs\nunder it go to back-end services through\n"
     "app-exchange (default /app; '' turns it off)"},
    {"app-exchange", "NAME", T_CUSTOM, 0, 0, 0, apply_app_exchange,
     "topic exchange for application destinations,\ndeclared at start-up (default stompgate.app)"},
    {"user-exchange", "NAME", T_CUSTOM, 0, 0, 0, apply_user_exchange,
     "shared mode: topic exchange of user destinations\n(/user/queue/X, /user/U/queue/X), declared at\n"
     "start-up unless amq.* (default stompgate.user;\n'' turns them off)"},
    {"exact-key-exchange", "PREFIX", T_CUSTOM, 0, 0, 0, apply_exact_exchange,
     "shared mode: a binding key without wildcards on\na topic exchange X is bound on the direct\n"
     "exchange PREFIX+X, which the gateway declares and\nbinds to X with '#': it costs the broker "
     "less than\nhalf as much (default stompgate.exact.; '' binds\non X itself)"},
    {"history", "PATTERN[:RETENTION]", T_CUSTOM, 0, 0, 0, apply_history,
     "keep /topic messages whose key PATTERN matches in\na RabbitMQ stream for RETENTION (x-max-age: 30m,\n"
     "1h, 7D; default 1D), repeatable: their MESSAGEs\ncarry x-stream-offset, and a SUBSCRIBE with\n"
     "x-stream-offset resumes from it (default: none)"},
    {"history-segment-size", "BYTES", T_SIZE, F(history_segment_bytes), 4096, (size_t)1 << 31, NULL,
     "segment size of the history streams: retention\ndrops whole segments (default 16777216)"},
    {"www", "DIR", T_CUSTOM, 0, 0, 0, apply_www,
     "serve the files under DIR for GET and HEAD on\nother paths than ws-path (no listings; for\n"
     "small pages such as the example app)"},
    {"sockjs", "BOOL", T_CUSTOM, 0, 0, 0, apply_sockjs,
     "serve SockJS clients (new SockJS(url)) under\nsockjs-prefix (default true; off disables)"},
    {"sockjs-prefix", "PATH", T_CUSTOM, 0, 0, 0, apply_sockjs_prefix,
     "SockJS endpoint: PATH/info, PATH/websocket (plain\nSTOMP over WebSocket) and "
     "PATH/<server>/<session>/\n{websocket,xhr_streaming,xhr,xhr_send}\n(default /stomp)"},
    {"sockjs-heartbeat", "MS", T_MS, F(sockjs_heartbeat_ms), 100, 3600000, NULL,
     "SockJS heartbeat frame period (default 25000)"},
    {"sockjs-disconnect-delay", "MS", T_MS, F(sockjs_disconnect_ms), 100, 3600000, NULL,
     "a SockJS xhr session with no receiving request for\nthis long is closed (default 5000)"},
    {"sockjs-response-limit", "BYTES", T_SIZE, F(sockjs_response_limit), 4096, 1u << 30, NULL,
     "bytes sent in one xhr_streaming response before\nthe client is made to open a new one "
     "(default\n131072)"},
    {"sockjs-max-body", "BYTES", T_SIZE, F(sockjs_max_body), 1024, 1u << 30, NULL,
     "largest xhr_send request body; more gets HTTP 413\n(default 1048576)"},
    {"sockjs-max-sessions", "N", T_SIZE, F(sockjs_max_sessions), 1, 10000000, NULL,
     "SockJS xhr sessions open at once; more get HTTP 503\n(default 10000; max-sessions "
     "counts them too)"},
    {"log-level", "LEVEL", T_CUSTOM, 0, 0, 0, apply_log_level,
     "error, warn, info (default) or debug"},
    {"log-format", "FORMAT", T_CUSTOM, 0, 0, 0, apply_log_format,
     "text (default) or json: one object per line with\nts, level and msg; a session's close "
     "line (event\nsession_closed) adds client, user, vhost, session,\nduration_s, frames_in, "
     "frames_out, bytes_in,\nbytes_out and reason"},
    {"admin", "HOST:PORT", T_CUSTOM, 0, 0, 0, apply_admin,
     "admin HTTP endpoint: /healthz, /readyz, /metrics\n(default off)"},
    {"max-sessions", "N", T_SIZE, F(max_sessions), 0, 10000000, NULL,
     "open WebSocket sessions allowed; more get HTTP 503\n(default 0, unlimited)"},
    {"session-rate", "N", T_SIZE, F(session_rate), 0, 10000000, NULL,
     "new sessions per second; more get HTTP 429\n(default 0, unlimited)"},
    {"session-burst", "N", T_SIZE, F(session_burst), 0, 10000000, NULL,
     "new sessions allowed at once above session-rate\n(default: equal to session-rate)"},
    {"allowed-origin", "ORIGIN", T_CUSTOM, 0, 0, 0, apply_origin,
     "an Origin allowed to open sessions, repeatable or\ncomma-separated; others get HTTP 403. "
     "Requests\nwithout Origin (non-browser clients) are allowed.\n(default: any)"},
    {"proxy-protocol", NULL, T_CUSTOM, 0, 0, 0, apply_proxy_protocol,
     "connections from a trusted-proxy begin with a PROXY\nprotocol v1 or v2 header naming "
     "the client (as\nHAProxy's send-proxy-v2 sends); from those peers\nit is required, from "
     "others refused (default off)"},
    {"trusted-proxy", "CIDR", T_CUSTOM, 0, 0, 0, apply_trusted_proxy,
     "a load balancer's address or block (10.0.0.0/8,\nfd00::/8), repeatable or "
     "comma-separated: its\nPROXY header, X-Forwarded-For and Forwarded name\nthe client. "
     "Those headers from other peers get\nHTTP 400 (default: none)"},
    {"session-rate-per-address", "N", T_SIZE, F(session_rate_per_address), 0, 10000000, NULL,
     "new sessions per second from one client address\n(the forwarded one behind a "
     "trusted-proxy), as\nmany at once; more get HTTP 429 (default 0,\nunlimited)"},
    {"max-frame-size", "BYTES", T_SIZE, F(max_frame_size), 1024, 256u << 20, NULL,
     "largest STOMP frame accepted (default 4194304)"},
    {"max-headers", "N", T_SIZE, F(max_headers), 8, 100000, NULL,
     "most headers in a frame (default 256)"},
    {"max-header-size", "BYTES", T_SIZE, F(max_header_size), 64, 1u << 20, NULL,
     "longest header line (default 8192)"},
    {"max-http-head", "BYTES", T_SIZE, F(max_head_size), 512, 1u << 20, NULL,
     "largest HTTP request head (default 8192)"},
    {"compression", "BOOL", T_CUSTOM, 0, 0, 0, apply_compression,
     "permessage-deflate for clients that offer it, as\nbrowsers do (default on; off declines it)"},
    {"compression-threshold", "BYTES", T_SIZE, F(compression_threshold), 0, 1u << 30, NULL,
     "messages shorter than this are sent uncompressed\n(default 128)"},
    {"compression-level", "N", T_SIZE, F(compression_level), 1, 9, NULL,
     "zlib level of the messages sent, 1 (fastest) to 9\n(default 6)"},
    {"compression-window-bits", "N", T_SIZE, F(compression_window_bits), 9, 15, NULL,
     "window of the messages sent, 2^N bytes (9..15,\ndefault 15); one deflater per worker"},
    {"compression-client-window-bits", "N", T_SIZE, F(compression_client_window_bits), 9, 15,
     NULL,
     "window asked of clients that accept a limit (9..15,\ndefault 10): each such session's "
     "inflater holds\n2^N bytes plus about 7 KB once it has inflated"},
    {"handshake-timeout", "MS", T_MS, F(handshake_timeout_ms), 10, 3600000, NULL,
     "time allowed for the WebSocket upgrade (default 10000)"},
    {"connect-timeout", "MS", T_MS, F(connect_timeout_ms), 10, 3600000, NULL,
     "time allowed between upgrade and CONNECT (default 10000)"},
    {"heartbeat-min", "MS", T_MS, F(heartbeat_min_ms), 10, 3600000, NULL,
     "shortest heart-beat interval granted either way\n(default 500)"},
    {"max-subscriptions", "N", T_SIZE, F(max_subscriptions), 1, 1000000, NULL,
     "subscriptions per session (default 1024)"},
    {"max-transactions", "N", T_SIZE, F(max_transactions), 1, 100000, NULL,
     "open transactions per session (default 16)"},
    {"max-tx-frames", "N", T_SIZE, F(max_tx_frames), 1, 10000000, NULL,
     "frames in one transaction (default 10000)"},
    {"drain-timeout", "MS", T_MS, F(drain_timeout_ms), 0, 86400000, NULL,
     "on SIGTERM, time open sessions keep running before\nthey get ERROR 'server shutting down' "
     "(default 30000)"},
    {"drain-timeout-int", "MS", T_MS, F(drain_timeout_int_ms), 0, 86400000, NULL,
     "the same on SIGINT (default 0)"},
    {"tls-cert", "FILE", T_PATH, F(tls_cert), 0, 0, NULL,
     "PEM certificate: serve wss:// instead of ws://\n(SIGHUP reloads the files)"},
    {"tls-key", "FILE", T_PATH, F(tls_key), 0, 0, NULL, "PEM private key for tls-cert"},
    {"tls-chain", "FILE", T_PATH, F(tls_chain), 0, 0, NULL,
     "PEM intermediate certificates sent after tls-cert"},
    {"tls-client-ca", "FILE", T_PATH, F(tls_client_ca), 0, 0, NULL,
     "require client certificates signed by these CAs"},
    {"stomp-listen", "HOST:PORT", T_CUSTOM, 0, 0, 0, apply_stomp_listen,
     "also serve STOMP straight over TCP on this address\n(61613 by convention; default off): the "
     "same\nsessions, relay, authentication and limits as\nover WebSocket"},
    {"stomp-tls", NULL, T_CUSTOM, 0, 0, 0, apply_stomp_tls,
     "serve stomp-listen over TLS with tls-cert and\ntls-key (which also make the WebSocket "
     "listener\nwss://); in the file or environment: true/false"},
    {"events-exchange", "NAME", T_STR, F(events_exchange), 0, 0, NULL,
     "publish session events (connected, subscribed,\nunsubscribed, disconnected) as JSON to this\n"
     "durable topic exchange on the broker's vhost,\ndeclared at start-up (default off)"},
    {"events-buffer", "N", T_SIZE, F(events_buffer), 1, 10000000, NULL,
     "events that may wait per worker while the broker\nis away or pushes back; more are dropped and\n"
     "counted (default 10000)"},
    {"instance-id", "ID", T_STR, F(instance_id), 0, 0, NULL,
     "names this gateway in session events (default\nHOSTNAME:PID)"},
};
#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

static const setting_t *setting_find(const char *name) {
  for (size_t i = 0; i < NSETTINGS; i++)
    if (strcmp(settings[i].name, name) == 0) return &settings[i];
  return NULL;
}

static int apply(sg_config_t *cfg, const setting_t *st, const char *v, int level,
                 const char *where) {
  char *base = (char *)cfg;
  switch (st->type) {
  case T_SIZE:
  case T_MS: {
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || end == v || *end || v[0] == '-' || n < st->min || n > st->max) {
      char expect[64];
      snprintf(expect, sizeof(expect), "an integer %llu..%llu", st->min, st->max);
      return bad(st, v, where, expect);
    }
    if (st->type == T_SIZE) *(size_t *)(base + st->off) = (size_t)n;
    else *(uint64_t *)(base + st->off) = n;
    return 0;
  }
  case T_STR:
  case T_PATH:
    if (*v == '\0') return clear_str((char **)(base + st->off));
    return set_str((char **)(base + st->off), v);
  case T_CUSTOM:
    return st->apply(cfg, st, v, level, where);
  }
  return -1;
}

static void print_help(void) {
  printf("Usage: stompgate [OPTION]...\n"
         "Relay STOMP 1.0/1.1/1.2 over WebSocket (and, with --stomp-listen, over\n"
         "TCP or TLS) to RabbitMQ over AMQP 0-9-1.\n\n"
         "Every setting can also be given in the --config file (as 'name = value')\n"
         "or as an environment variable STOMPGATE_NAME (upper case, '-' as '_').\n"
         "Flags win over the environment, which wins over the file.\n\n");
  for (size_t i = 0; i < NSETTINGS; i++) {
    const setting_t *st = &settings[i];
    char left[48];
    snprintf(left, sizeof(left), "--%s %s", st->name, st->meta ? st->meta : "");
    printf("  %-26s", left);
    if (strlen(left) > 25) printf("\n  %-26s", "");
    for (const char *p = st->help; *p; p++) {
      putchar(*p);
      if (*p == '\n') printf("  %-26s", "");
    }
    putchar('\n');
  }
  printf("  %-26s%s\n  %-26s%s\n", "--hash-password",
         "read a password on standard input, print its\n", "",
         "users-file hash (PBKDF2-HMAC-SHA256) and exit");
  printf("  %-26s%s\n  %-26s%s\n", "-h, --help", "show this help and exit", "-V, --version",
         "show the version and exit");
}

static void env_name(const setting_t *st, char *out, size_t cap) {
  size_t n = (size_t)snprintf(out, cap, "STOMPGATE_%s", st->name);
  for (size_t i = 10; i < n && i < cap; i++)
    out[i] = out[i] == '-' ? '_' : (char)toupper((unsigned char)out[i]);
}

typedef struct file_ctx {
  sg_config_t *cfg;
  const char *path;
  int failed;
} file_ctx_t;

static int ini_cb(void *user, const char *section, const char *name, const char *value) {
  file_ctx_t *fc = user;
  char where[600];
  snprintf(where, sizeof(where), "%s", fc->path);
  if (section[0] && strcmp(section, "stompgate") != 0) {
    fprintf(stderr, "stompgate: unknown section '[%s]' (from %s): settings go at the top or in "
                    "[stompgate]\n", section, where);
    fc->failed = 1;
    return 1;
  }
  const setting_t *st = setting_find(name);
  if (st == NULL || strcmp(name, "config") == 0) {
    fprintf(stderr, "stompgate: unknown setting '%s' (from %s)\n", name, where);
    fc->failed = 1;
    return 1;
  }
  if (apply(fc->cfg, st, value, LVL_FILE, where)) fc->failed = 1;
  return 1;
}

static void set_defaults(sg_config_t *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->listen_host = strdup("127.0.0.1");
  cfg->listen_port = 15674;
  cfg->ws_path = strdup("/ws");
  cfg->sockjs = 1;
  cfg->sockjs_prefix = strdup("/stomp");
  cfg->sockjs_heartbeat_ms = 25000;
  cfg->sockjs_disconnect_ms = 5000;
  cfg->sockjs_response_limit = 128u << 10;
  cfg->sockjs_max_body = 1u << 20;
  cfg->sockjs_max_sessions = 10000;
  sg_broker_addr_parse(&cfg->broker, "amqp://guest:guest@127.0.0.1:5672/");
  cfg->mode = SG_MODE_PER_SESSION;
  cfg->log_level = SG_LOG_INFO;
  cfg->max_frame_size = 4u << 20;
  cfg->max_headers = 256;
  cfg->max_header_size = 8192;
  cfg->max_head_size = 8192;
  cfg->compression = 1;
  cfg->compression_threshold = 128;
  cfg->compression_level = 6;
  cfg->compression_window_bits = 15;
  cfg->compression_client_window_bits = 10;
  cfg->handshake_timeout_ms = 10000;
  cfg->connect_timeout_ms = 10000;
  cfg->heartbeat_min_ms = 500;
  cfg->max_subscriptions = 1024;
  cfg->max_transactions = 16;
  cfg->max_tx_frames = 10000;
  cfg->max_pending_frames = 1000;
  cfg->broker_probe_ms = 5000;
  cfg->broker_heartbeat_s = 10;
  cfg->broker_frame_max = 16384;
  cfg->session_link_max = 16;
  cfg->session_link_window_ms = 5000;
  cfg->broker_output_limit = 1u << 20;
  cfg->drain_timeout_ms = 30000;
  cfg->drain_timeout_int_ms = 0;
  cfg->broker_tls_verify = 1;
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  cfg->workers = ncpu < 1 ? 1 : ncpu > 64 ? 64 : (int)ncpu;
  cfg->auth_cache_ttl_ms = 30000;
  cfg->jwt_leeway_s = 30;
  cfg->jwt_user_claim = strdup("sub");
  cfg->jwt_scope_prefix = strdup("rabbitmq.");
  cfg->max_outbound_bytes = 4u << 20;
  cfg->app_exchange = strdup("stompgate.app");
  cfg->user_exchange = strdup("stompgate.user");
  cfg->exact_exchange_prefix = strdup("stompgate.exact.");
  cfg->events_buffer = 10000;
  cfg->history_segment_bytes = 16u << 20;
  cfg->app_prefixes.v = calloc(1, sizeof(char *));
  if (cfg->app_prefixes.v && (cfg->app_prefixes.v[0] = strdup("/app")) != NULL)
    cfg->app_prefixes.n = 1;
}

/* Settings that only make sense together are checked once all sources are
 * read, so a flag can complete what the file started. */
static int check_combined(sg_config_t *cfg) {
  if (cfg->events_exchange && (strlen(cfg->events_exchange) > 255 ||
                               strncmp(cfg->events_exchange, "amq.", 4) == 0)) {
    fprintf(stderr, "stompgate: invalid setting 'events-exchange' = '%s': expected an exchange "
                    "name of 1..255 bytes, not amq.*\n", cfg->events_exchange);
    return -1;
  }
  if (cfg->instance_id == NULL) {
    char host[256] = "localhost", id[300];
    if (gethostname(host, sizeof(host) - 1) != 0) strcpy(host, "localhost");
    host[sizeof(host) - 1] = '\0';
    snprintf(id, sizeof(id), "%s:%ld", host, (long)getpid());
    if ((cfg->instance_id = strdup(id)) == NULL) return -1;
  }
  if ((cfg->tls_cert == NULL) != (cfg->tls_key == NULL)) {
    fprintf(stderr, "stompgate: invalid setting '%s': tls-cert and tls-key go together\n",
            cfg->tls_cert ? "tls-key" : "tls-cert");
    return -1;
  }
  if (cfg->tls_cert == NULL && (cfg->tls_chain || cfg->tls_client_ca)) {
    fprintf(stderr, "stompgate: invalid setting '%s': needs tls-cert and tls-key\n",
            cfg->tls_chain ? "tls-chain" : "tls-client-ca");
    return -1;
  }
  const char *files[] = {"tls-cert", cfg->tls_cert, "tls-key", cfg->tls_key,
                         "tls-chain", cfg->tls_chain, "tls-client-ca", cfg->tls_client_ca,
                         "broker-ca", cfg->broker_ca, "jwt-secret-file", cfg->jwt_secret_file,
                         "users-file", cfg->users_file};
  for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i += 2) {
    if (files[i + 1] == NULL) continue;
    FILE *f = fopen(files[i + 1], "r");
    if (f == NULL) {
      fprintf(stderr, "stompgate: invalid setting '%s' = '%s': %s\n", files[i], files[i + 1],
              strerror(errno));
      return -1;
    }
    fclose(f);
  }
  if (cfg->sockjs) {
    /* The WebSocket endpoint must not be one of the SockJS paths. */
    size_t pl = strlen(cfg->sockjs_prefix);
    if (strncmp(cfg->ws_path, cfg->sockjs_prefix, pl) == 0 &&
        (cfg->ws_path[pl] == '\0' || cfg->ws_path[pl] == '/')) {
      fprintf(stderr, "stompgate: invalid setting 'sockjs-prefix' = '%s': ws-path '%s' lies under "
                      "it (choose another, or sockjs = off)\n", cfg->sockjs_prefix, cfg->ws_path);
      return -1;
    }
  }
  if (cfg->auth != SG_AUTH_BROKER) {
    const char *name = cfg->auth == SG_AUTH_JWT ? "jwt" : "file";
    if (cfg->mode != SG_MODE_SHARED) {
      fprintf(stderr, "stompgate: invalid setting 'auth' = '%s': needs mode shared (in "
                      "per-session mode RabbitMQ checks every login itself)\n", name);
      return -1;
    }
    if (cfg->auth == SG_AUTH_JWT && cfg->jwt_secret_file == NULL && cfg->jwt_key_files.n == 0) {
      fprintf(stderr, "stompgate: invalid setting 'auth' = 'jwt': needs jwt-secret-file or "
                      "jwt-key-file\n");
      return -1;
    }
    if (cfg->auth == SG_AUTH_FILE && cfg->users_file == NULL) {
      fprintf(stderr, "stompgate: invalid setting 'auth' = 'file': needs users-file\n");
      return -1;
    }
    if (cfg->jwt_user_claim == NULL) {
      fprintf(stderr, "stompgate: invalid setting 'jwt-user-claim': must not be empty\n");
      return -1;
    }
  }
  if (cfg->stomp_tls && (cfg->stomp_listen_host == NULL || cfg->tls_cert == NULL)) {
    fprintf(stderr, "stompgate: invalid setting 'stomp-tls': needs stomp-listen, tls-cert and "
                    "tls-key\n");
    return -1;
  }
  if (cfg->stomp_listen_host && cfg->stomp_listen_port != 0 &&
      cfg->stomp_listen_port == cfg->listen_port) {
    /* Both listeners bind with SO_REUSEPORT: on one port the kernel would
     * share the connections between them. */
    fprintf(stderr, "stompgate: invalid setting 'stomp-listen' = '%s:%d': the port of listen\n",
            cfg->stomp_listen_host, cfg->stomp_listen_port);
    return -1;
  }
  if (cfg->session_rate && cfg->session_burst == 0) cfg->session_burst = cfg->session_rate;
  if (check_proxies(cfg)) return -1;
  if (cfg->nbrokers > 0) {
    for (size_t i = 1; i < cfg->nbrokers; i++) {
      const sg_broker_addr_t *a = &cfg->brokers[0], *b = &cfg->brokers[i];
      if (a->tls != b->tls || strcmp(a->user, b->user) || strcmp(a->password, b->password) ||
          strcmp(a->vhost, b->vhost)) {
        fprintf(stderr, "stompgate: invalid setting 'broker': the nodes of one cluster need the "
                        "same scheme, credentials and vhost\n");
        return -1;
      }
    }
    const sg_broker_addr_t *f = &cfg->brokers[0];
    sg_broker_addr_t copy = {strdup(f->host), f->port, strdup(f->user), strdup(f->password),
                             strdup(f->vhost), f->tls};
    if (!copy.host || !copy.user || !copy.password || !copy.vhost) {
      broker_addr_free(&copy);
      return -1;
    }
    broker_addr_free(&cfg->broker);
    cfg->broker = copy;
  } else {
    /* No --broker anywhere: the default is the one node. */
    cfg->brokers = calloc(1, sizeof(*cfg->brokers));
    if (cfg->brokers == NULL) return -1;
    if (sg_broker_addr_parse(&cfg->brokers[0], "amqp://guest:guest@127.0.0.1:5672/") != 0)
      return -1;
    cfg->nbrokers = 1;
  }
  return 0;
}

int sg_config_load(sg_config_t *cfg, int argc, char **argv, char **envp) {
  set_defaults(cfg);
  if (envp == NULL) envp = environ;

  struct option *opts = calloc(NSETTINGS + 4, sizeof(*opts));
  if (opts == NULL) return 2;
  for (size_t i = 0; i < NSETTINGS; i++) {
    opts[i].name = settings[i].name;
    opts[i].has_arg = settings[i].meta ? required_argument : no_argument;
    opts[i].val = 256 + (int)i;
  }
  opts[NSETTINGS] = (struct option){"help", no_argument, NULL, 'h'};
  opts[NSETTINGS + 1] = (struct option){"version", no_argument, NULL, 'V'};
  opts[NSETTINGS + 2] = (struct option){"hash-password", no_argument, NULL, 'P'};

  /* First pass: --help, --version and where the config file is, since the
   * file is read before the flags that override it. */
  int c, rc = 0;
  const char *cfile = NULL;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
    if (c == 'h') {
      print_help();
      rc = 1;
      goto out;
    }
    if (c == 'V') {
      printf("stompgate %s\n", SG_VERSION);
      rc = 1;
      goto out;
    }
    if (c == 'P') {
      rc = SG_CONFIG_HASH_PASSWORD;
      goto out;
    }
    if (c >= 256 && strcmp(settings[c - 256].name, "config") == 0) cfile = optarg;
  }
  for (char **e = envp; cfile == NULL && *e; e++)
    if (strncmp(*e, "STOMPGATE_CONFIG=", 17) == 0) cfile = *e + 17;
  if (cfile != NULL && *cfile) {
    set_str(&cfg->config_file, cfile);
    file_ctx_t fc = {cfg, cfile, 0};
    int r = ini_parse(cfile, ini_cb, &fc);
    if (r < 0) {
      fprintf(stderr, "stompgate: invalid setting 'config' = '%s': cannot read it: %s\n", cfile,
              strerror(errno));
      rc = 2;
      goto out;
    }
    if (r > 0) {
      fprintf(stderr, "stompgate: invalid setting 'config' = '%s': line %d: expected 'name = value'\n",
              cfile, r);
      rc = 2;
      goto out;
    }
    if (fc.failed) {
      rc = 2;
      goto out;
    }
  }

  for (char **e = envp; *e; e++) {
    if (strncmp(*e, "STOMPGATE_", 10) != 0) continue;
    const char *eq = strchr(*e, '=');
    if (eq == NULL) continue;
    size_t kl = (size_t)(eq - *e);
    const setting_t *st = NULL;
    char en[80];
    for (size_t i = 0; i < NSETTINGS && st == NULL; i++) {
      env_name(&settings[i], en, sizeof(en));
      if (strlen(en) == kl && strncmp(en, *e, kl) == 0) st = &settings[i];
    }
    /* STOMPGATE_BIN, STOMPGATE_SRC and the like belong to scripts, not to
     * the gateway: unknown names are ignored rather than refused. */
    if (st == NULL || strcmp(st->name, "config") == 0) continue;
    int bad_env = 0;
    if (strcmp(st->name, "broker") == 0) {
      /* URLs cannot contain a bare comma, so a list splits safely. */
      char *list = strdup(eq + 1), *save = NULL;
      for (char *u = list ? strtok_r(list, ", ", &save) : NULL; u && !bad_env;
           u = strtok_r(NULL, ", ", &save))
        bad_env = apply(cfg, st, u, LVL_ENV, en) != 0;
      free(list);
    } else {
      bad_env = apply(cfg, st, eq + 1, LVL_ENV, en) != 0;
    }
    if (bad_env) {
      rc = 2;
      goto out;
    }
  }

  opterr = 1;
  optind = 1;
  while ((c = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
    if (c < 256) {
      fputs("Try 'stompgate --help'.\n", stderr);
      rc = 2;
      goto out;
    }
    const setting_t *st = &settings[c - 256];
    char where[64];
    snprintf(where, sizeof(where), "--%s", st->name);
    if (apply(cfg, st, optarg ? optarg : "", LVL_FLAG, where)) {
      rc = 2;
      goto out;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "stompgate: unexpected argument '%s'\n", argv[optind]);
    rc = 2;
    goto out;
  }
  if (check_combined(cfg)) rc = 2;
out:
  free(opts);
  return rc;
}

int sg_config_parse(sg_config_t *cfg, int argc, char **argv) {
  return sg_config_load(cfg, argc, argv, NULL);
}

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
  if (amqp_parse_url(copy, &info) != AMQP_STATUS_OK) {
    free(copy);
    return -1;
  }
  sg_broker_addr_t n;
  n.host = strdup(info.host);
  n.port = info.port;
  n.user = strdup(info.user);
  n.password = strdup(info.password);
  n.tls = info.ssl;
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

void sg_config_free(sg_config_t *cfg) {
  free(cfg->config_file);
  free(cfg->listen_host);
  free(cfg->ws_path);
  free(cfg->sockjs_prefix);
  free(cfg->admin_host);
  free(cfg->tls_cert);
  free(cfg->tls_key);
  free(cfg->tls_chain);
  free(cfg->tls_client_ca);
  free(cfg->stomp_listen_host);
  free(cfg->broker_ca);
  free(cfg->app_exchange);
  free(cfg->user_exchange);
  free(cfg->exact_exchange_prefix);
  free(cfg->events_exchange);
  free(cfg->instance_id);
  free(cfg->www_root);
  free(cfg->jwt_secret_file);
  free(cfg->jwt_audience);
  free(cfg->jwt_user_claim);
  free(cfg->jwt_scope_prefix);
  free(cfg->users_file);
  strlist_clear(&cfg->jwt_key_files);
  strlist_clear(&cfg->allowed_origins);
  strlist_clear(&cfg->app_prefixes);
  for (size_t i = 0; i < cfg->nhistory; i++) sg_history_free(&cfg->history[i]);
  free(cfg->history);
  free(cfg->trusted_proxies);
  for (size_t i = 0; i < cfg->nbrokers; i++) broker_addr_free(&cfg->brokers[i]);
  free(cfg->brokers);
  broker_addr_free(&cfg->broker);
}
