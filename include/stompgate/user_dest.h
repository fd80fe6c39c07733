/* SPDX-License-Identifier: MIT */
#ifndef STOMPGATE_USER_DEST_H
#define STOMPGATE_USER_DEST_H

/* User destinations, as Spring's STOMP support has them: a session of user
 * U that SUBSCRIBEs to /user/queue/X receives what anyone SENDs to
 * /user/U/queue/X. Both map to one routing key, "user.<U>.<X>", on the
 * user exchange, where U and X are escaped so that each is exactly one
 * word: every byte outside [A-Za-z0-9_-] becomes %XX (upper-case hex), so
 * no user name or queue name can reach another's key or add a wildcard.
 * No I/O. */

#include "stompgate/buf.h"

#define SG_USER_PREFIX "/user/"

/* Whether dst is under /user/. */
int sg_user_dest_is(const char *dst);

/* The key for user (as authenticated) subscribing to dst, which must be
 * /user/queue/X with X not empty (%XX in X is decoded first). Appends it to
 * key. 0, SG_ERR_BAD_DESTINATION (another form, or a key over 255 bytes),
 * SG_ERR_NOMEM. */
int sg_user_dest_subscribe_key(sg_buf_t *key, const char *user, const char *dst);

/* The key a SEND to dst = /user/U/queue/X publishes with (U and X
 * %XX-decoded first). Appends it to key. 0, SG_ERR_BAD_DESTINATION,
 * SG_ERR_NOMEM. */
int sg_user_dest_send_key(sg_buf_t *key, const char *dst);

#endif
