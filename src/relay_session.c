/* SPDX-License-Identifier: MIT */
/* The per-session relay: every session owns one AMQP connection, opened
 * with its own CONNECT credentials and host as vhost, so RabbitMQ applies
 * its users and permissions exactly as for its Web-STOMP plugin. All of
 * the session's broker work runs on that connection's one channel. */
#include <stdlib.h>

#include "relay_chan.h"
#include "session.h"
#include "stompgate/container.h"
#include "stompgate/err.h"

typedef struct relay_session {
  sg_relay_chan_t ch;
  const sg_config_t *cfg;
} relay_session_t;

static relay_session_t *impl_of(sg_relay_t *r) {
  return container_of(r, relay_session_t, ch.base);
}

static void opened(sg_relay_chan_t *ch, int status, const char *message) {
  ch->base.cbs->on_ready_cb(&ch->base, status, message, NULL);
}

static int ps_login(sg_relay_t *r, const sg_relay_login_t *l, const char **why) {
  relay_session_t *x = impl_of(r);
  const sg_broker_addr_t *ba = &x->cfg->broker;
  if (sg_amqp_open(&x->ch.amqp, l->loop, &sg_relay_chan_cbs, ba->host, ba->port, l->user,
                   l->password, l->vhost, l->conn_name) != 0) {
    *why = "cannot start the broker login";
    return SG_ERR_INVALID;
  }
  return 0;
}

static int ps_admit(sg_relay_t *r, const sg_stomp_frame_t *f, int behind, sg_relay_fault_t *why) {
  (void)behind, (void)why;
  relay_session_t *x = impl_of(r);
  return x->ch.blocked && sg_relay_publishes(f) ? SG_RELAY_WAIT_BLOCKED : SG_RELAY_GO;
}

static int ps_close(sg_relay_t *r) { return sg_relay_chan_close(&impl_of(r)->ch); }

static void ps_free(sg_relay_t *r) {
  relay_session_t *x = impl_of(r);
  sg_relay_chan_free(&x->ch);
  free(x);
}

static const sg_relay_ops_t ps_ops = {
    ps_login,
    ps_admit,
    sg_relay_chan_declare,
    sg_relay_chan_publish,
    sg_relay_chan_subscribe,
    sg_relay_chan_unsubscribe,
    sg_relay_chan_delete_queue,
    sg_relay_chan_ack,
    sg_relay_chan_mark,
    sg_relay_chan_reached,
    sg_relay_chan_release,
    ps_close,
    ps_free,
};

static sg_relay_t *ps_create(sg_session_ctx_t *ctx, const sg_relay_cbs_t *cbs, void *owner) {
  relay_session_t *x = malloc(sizeof(*x));
  if (x == NULL) return NULL;
  sg_relay_chan_init(&x->ch, &ps_ops, cbs, owner);
  x->ch.opened = opened;
  x->cfg = ctx->cfg;
  return &x->ch.base;
}

/* Each session has a connection of its own: nothing is kept per worker. */
const sg_relay_type_t sg_relay_per_session = {"per-session", 0, NULL, NULL, ps_create};
