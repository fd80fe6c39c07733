/* SPDX-License-Identifier: MIT */
#ifndef STOMPGATE_AMQP_TABLE_H
#define STOMPGATE_AMQP_TABLE_H

/* Renders AMQP headers-table values as STOMP header text. No I/O.
 *
 * A top-level value becomes:
 *   long string / bytes   the bytes as they are
 *   boolean               "true" or "false"
 *   any integer           its decimal form ("-7", "42")
 *   float / double        the shortest decimal text that reads back to the
 *                         same value ("2.5", "0.1")
 *   decimal               the scaled value with its places ("12.34", "0.005")
 *   timestamp             seconds since the epoch
 *   void                  "" (an empty value)
 *   table                 JSON text: an object whose values follow these
 *                         rules, strings quoted ({"a":"b","n":1,"ok":true})
 *   array                 JSON text: an array ([1,"x",false])
 * Inside JSON, void is null and a decimal is a bare JSON number. */

#include <amqp.h>

#include "stompgate/buf.h"

/* Appends the rendering of v to out. Borrows v. 0 or SG_ERR_NOMEM. */
int sg_amqp_field_render(sg_buf_t *out, const amqp_field_value_t *v);

#endif
