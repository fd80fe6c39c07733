/* SPDX-License-Identifier: MIT */
#ifndef SG_CONFIG_H
#define SG_CONFIG_H

#include <stddef.h>
#include <stdint.h>

typedef struct sg_broker_addr {
  char *host;
  int port;
  char *user;
  char *password;
  char *vhost;
} sg_broker_addr_t;

typedef enum sg_mode { SG_MODE_PER_SESSION = 0, SG_MODE_SHARED } sg_mode_t;

typedef struct sg_config {
  char *listen_host;
  int listen_port;
  char *ws_path;
  sg_broker_addr_t broker;
  sg_mode_t mode;
  int workers;                   /* event loop threads (--workers) */
  size_t max_outbound_bytes;     /* per session, queued for the client */
  int slow_consumer_drop;        /* 1: drop topic messages over it; 0: close */
  uint64_t auth_cache_ttl_ms;    /* shared mode: how long a credential check holds */
  int log_level;
  int require_host;              /* STOMP 1.1+ CONNECT without host is an ERROR */
  size_t max_frame_size;
  size_t max_headers;
  size_t max_header_size;
  size_t max_head_size;         /* HTTP request head */
  uint64_t handshake_timeout_ms; /* TCP accept -> WebSocket upgrade */
  uint64_t connect_timeout_ms;   /* WebSocket open -> STOMP CONNECT */
  uint64_t heartbeat_min_ms;     /* shortest heart-beat interval granted */
  size_t max_subscriptions;
  size_t max_transactions;
  size_t max_tx_frames;
  size_t max_pending_frames;     /* frames queued while the broker login runs */
  char **app_prefixes;           /* application destination prefixes (--app-prefix) */
  size_t n_app_prefixes;
  char *app_exchange;            /* topic exchange they are published to */
  char *www_root;                /* static file root (--www), realpath'd, or NULL */
} sg_config_t;

/* Fills cfg from the command line. Returns 0 to run, 1 when --help or
 * --version was printed, 2 after printing a message for invalid input. */
int sg_config_parse(sg_config_t *cfg, int argc, char **argv);
void sg_config_free(sg_config_t *cfg);

/* Parses an amqp://user:pass@host:port/vhost URL into a (owning). 0 or -1. */
int sg_broker_addr_parse(sg_broker_addr_t *a, const char *url);

#endif
