/* SPDX-License-Identifier: MIT */
#ifndef SG_APP_SETUP_H
#define SG_APP_SETUP_H

#include <uv.h>

#include "config.h"

/* Declares the application exchange (a durable topic exchange named by
 * cfg->app_exchange) and, in shared mode, the user exchange
 * (cfg->user_exchange, unless it is an amq.* one) with the --broker
 * credentials, and the history streams (--history: a durable stream per
 * pattern, bound to amq.topic with it), off the loop on the thread pool,
 * retrying with back-off until the broker accepts them. With history the
 * first attempt runs before this returns, so that the streams exist before
 * a subscription consumes one. Does nothing when nothing is configured.
 * cfg is borrowed for the life of the loop. 0 or a libuv error. */
int sg_app_setup_start(uv_loop_t *loop, const sg_config_t *cfg);

#endif
