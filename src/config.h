/* SPDX-License-Identifier: MIT */
#ifndef SG_CONFIG_H
#define SG_CONFIG_H

/* Settings come from, lowest precedence first: built-in defaults, an INI
 * file (--config or STOMPGATE_CONFIG), STOMPGATE_* environment variables,
 * and command-line flags. Every setting has one name used in all four. */

#include <stddef.h>
#include <stdint.h>

#include "stompgate/history.h"
#include "stompgate/proxy_proto.h"

typedef struct sg_broker_addr {
  char *host;
  int port;
  char *user;
  char *password;
  char *vhost;
  int tls; /* amqps:// */
} sg_broker_addr_t;

typedef enum sg_mode { SG_MODE_PER_SESSION = 0, SG_MODE_SHARED } sg_mode_t;

/* Who checks CONNECT credentials: RabbitMQ (a login with them), or, in
 * shared mode, the gateway itself with JWTs or a users file. */
typedef enum sg_auth_mode { SG_AUTH_BROKER = 0, SG_AUTH_JWT, SG_AUTH_FILE } sg_auth_mode_t;

typedef struct sg_strlist {
  char **v;
  size_t n;
  int level; /* precedence of the source that filled it; a higher one replaces it */
} sg_strlist_t;

typedef struct sg_config {
  char *config_file;
  char *listen_host;
  int listen_port;
  char *ws_path;
  sg_broker_addr_t broker;       /* the first of brokers: credentials, vhost, scheme */
  sg_broker_addr_t *brokers;     /* every --broker, in order (cluster nodes) */
  size_t nbrokers;
  int brokers_level;
  sg_mode_t mode;
  int workers;                   /* event loop threads */
  uint64_t auth_cache_ttl_ms;    /* shared mode: how long a credential check holds */
  sg_auth_mode_t auth;
  char *jwt_secret_file;         /* HS256 secret */
  sg_strlist_t jwt_key_files;    /* [KID=]FILE, PEM public keys for RS256/ES256 */
  size_t jwt_leeway_s;           /* clock skew allowed for exp and nbf */
  char *jwt_audience;            /* NULL: aud not checked */
  char *jwt_user_claim;          /* default "sub" */
  char *jwt_scope_prefix;        /* default "rabbitmq." */
  char *users_file;              /* --auth file */
  size_t max_outbound_bytes;     /* per session, queued for the client */
  int slow_consumer_drop;        /* 1: drop topic messages over it; 0: close */
  int require_host;              /* STOMP 1.1+ CONNECT without host is an ERROR */
  sg_strlist_t app_prefixes;     /* application destination prefixes */
  char *app_exchange;            /* topic exchange they are published to */
  char *user_exchange;           /* shared mode: /user/ destinations; NULL: off */
  char *exact_exchange_prefix;   /* shared mode: exact keys' direct exchanges; NULL: off */
  sg_history_t *history;         /* topics with history: streams bound to amq.topic */
  size_t nhistory;
  int history_level;
  size_t history_segment_bytes;  /* their streams' x-stream-max-segment-size-bytes */
  char *events_exchange;         /* session events' topic exchange; NULL: off */
  size_t events_buffer;          /* events waiting per worker before drops */
  char *instance_id;             /* names this gateway in events (hostname:pid) */
  char *www_root;                /* static file root, realpath'd, or NULL */
  int sockjs;                    /* serve SockJS under sockjs_prefix */
  char *sockjs_prefix;           /* e.g. "/stomp", no trailing '/' */
  uint64_t sockjs_heartbeat_ms;  /* SockJS 'h' frame period */
  uint64_t sockjs_disconnect_ms; /* xhr session without a receiving request */
  size_t sockjs_response_limit;  /* bytes per xhr_streaming response */
  size_t sockjs_max_body;        /* xhr_send request body */
  size_t sockjs_max_sessions;    /* SockJS xhr sessions in the process */
  int log_level;
  int log_json; /* --log-format json */
  size_t max_frame_size;
  size_t max_headers;
  size_t max_header_size;
  size_t max_head_size;         /* HTTP request head */
  /* permessage-deflate (RFC 7692) */
  int compression;               /* negotiate it with clients that offer it */
  size_t compression_threshold;  /* messages shorter than this go uncompressed */
  size_t compression_level;      /* zlib level 1..9 */
  size_t compression_window_bits; /* largest window the gateway deflates with */
  size_t compression_client_window_bits; /* asked of clients that allow it */
  uint64_t handshake_timeout_ms; /* TCP accept -> WebSocket upgrade */
  uint64_t connect_timeout_ms;   /* WebSocket open -> STOMP CONNECT */
  uint64_t heartbeat_min_ms;     /* shortest heart-beat interval granted */
  size_t max_subscriptions;
  size_t max_transactions;
  size_t max_tx_frames;
  size_t max_pending_frames;     /* frames queued while the broker login runs */
  /* Operations */
  char *admin_host;              /* NULL: no admin endpoint */
  int admin_port;
  uint64_t broker_probe_ms;      /* broker reachability probe period */
  size_t broker_heartbeat_s;     /* AMQP heart-beat asked for; 0: none */
  size_t broker_frame_max;       /* frame_max of a session's own connection */
  size_t broker_output_limit;    /* unsent bytes per broker connection */
  size_t session_link_max;       /* per-session mode: sessions per connection */
  uint64_t session_link_window_ms; /* ... joining it within this of its login */
  size_t max_sessions;           /* 0: unlimited */
  size_t session_rate;           /* new sessions per second, 0: unlimited */
  size_t session_burst;          /* bucket size for session_rate */
  sg_strlist_t allowed_origins;  /* empty: any Origin */
  /* Clients behind load balancers */
  int proxy_protocol;            /* trusted peers begin with a PROXY v1/v2 header */
  sg_cidr_t *trusted_proxies;    /* peers whose PROXY header, X-Forwarded-For and
                                    Forwarded name the client */
  size_t ntrusted_proxies;
  int trusted_proxies_level;
  size_t session_rate_per_address; /* new sessions per second per client address */
  uint64_t drain_timeout_ms;     /* SIGTERM grace period */
  uint64_t drain_timeout_int_ms; /* SIGINT grace period */
  /* TLS for the WebSocket listener (wss://) */
  char *tls_cert;
  char *tls_key;
  char *tls_chain;
  char *tls_client_ca;
  /* STOMP over TCP (or TLS with the tls-* files) */
  char *stomp_listen_host;       /* NULL: no STOMP listener */
  int stomp_listen_port;
  int stomp_tls;
  /* TLS to the broker (amqps://) */
  char *broker_ca;
  int broker_tls_verify;
} sg_config_t;

/* Fills cfg from defaults, the config file, the environment (envp, NULL
 * for environ) and argv. Returns 0 to run, 1 when --help or --version was
 * printed, 2 after printing a message that names the invalid setting, and
 * SG_CONFIG_HASH_PASSWORD when --hash-password asks for a password hash
 * instead of a gateway. */
#define SG_CONFIG_HASH_PASSWORD 3
int sg_config_load(sg_config_t *cfg, int argc, char **argv, char **envp);
/* The same with the process environment. */
int sg_config_parse(sg_config_t *cfg, int argc, char **argv);
void sg_config_free(sg_config_t *cfg);

/* Parses an amqp[s]://user:pass@host:port/vhost URL into a (owning). 0 or -1. */
int sg_broker_addr_parse(sg_broker_addr_t *a, const char *url);

#endif
