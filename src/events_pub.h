/* SPDX-License-Identifier: MIT */
#ifndef SG_EVENTS_PUB_H
#define SG_EVENTS_PUB_H

#include <uv.h>

#include "config.h"
#include "events.h"

/* Starts a worker's session events publisher on loop (before the loop
 * runs): its own AMQP connection under the --broker credentials, opened
 * from the loop and opened again with back-off when lost. NULL when
 * events are off (cfg->events_exchange NULL) or out of memory. cfg is
 * borrowed for the life of the loop. */
sg_events_t *sg_events_pub_start(uv_loop_t *loop, const sg_config_t *cfg, int worker);

#endif
