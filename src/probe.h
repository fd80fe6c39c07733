/* SPDX-License-Identifier: MIT */
#ifndef SG_PROBE_H
#define SG_PROBE_H

/* Broker reachability for /readyz. In per-session mode the gateway holds
 * no AMQP connection of its own, so "broker link up" means: the last
 * probe opened a TCP connection to the broker, sent the AMQP 0-9-1
 * protocol header and got a frame back (connection.start), within the
 * probe interval (at most 5 s). For amqps:// brokers the TCP connect alone
 * counts, as the plain header would not be understood. Results go to
 * sg_metrics_broker_link.
 *
 * With several --broker nodes, a failed node is followed at once by the
 * next; when a round finds none, the link is down and rounds repeat with
 * capped exponential back-off and jitter. A node that answers becomes the
 * one new logins try first. */

#include <uv.h>

#include "config.h"

/* Starts probing now and then every cfg->broker_probe_ms. 0 or a libuv
 * error. */
int sg_probe_start(uv_loop_t *loop, const sg_config_t *cfg);
/* Stops probing and closes its handles. */
void sg_probe_stop(void);

#endif
