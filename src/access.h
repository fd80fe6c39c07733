/* SPDX-License-Identifier: MIT */
#ifndef SG_ACCESS_H
#define SG_ACCESS_H

/* The gateway's own authentication (--auth jwt or file, shared mode): the
 * keys and users loaded at start, CONNECT checks run on libuv's thread
 * pool (PBKDF2 is slow on purpose; it must not stall a worker's loop), and
 * per-session grants that authorise destinations and watch token expiry. */

#include <uv.h>

#include "config.h"

typedef struct sg_access_req sg_access_req_t;
typedef struct sg_grant sg_grant_t;

/* Loads what cfg->auth needs (keys, secret, users file). Prints a message
 * naming the setting and returns -1 when one cannot be used; 0 otherwise
 * (also for --auth broker, which needs nothing). cfg is borrowed for the
 * life of the process. */
int sg_access_init(const sg_config_t *cfg);

/* Reads the users file again (SIGHUP). On failure the users in use stay
 * and the log says why. 0, -1, or 1 when there is no users file. */
int sg_access_reload(void);

/* The check is done: grant is the caller's (release it with
 * sg_grant_release) or NULL with a reason in why (valid during the call). */
typedef void (*sg_access_cb)(void *owner, sg_grant_t *grant, const char *why);

/* Checks CONNECT credentials: in jwt mode the token is passcode when it is
 * not empty, else bearer (the WebSocket handshake's Authorization: Bearer
 * value, or NULL); in file mode login and passcode. Strings are copied.
 * done_cb runs later on loop's thread unless sg_access_cancel comes first.
 * 0 or a negative error. */
int sg_access_check(uv_loop_t *loop, const char *login, const char *passcode, const char *bearer,
                    const char *vhost, sg_access_cb done_cb, void *owner, sg_access_req_t **req);
/* done_cb will not run. NULL is allowed. */
void sg_access_cancel(sg_access_req_t *req);

/* The user name the credentials proved. Borrowed from g. */
const char *sg_grant_user(const sg_grant_t *g);

/* Calls expired_cb(owner) when g's token expires (exp plus the leeway);
 * nothing for users-file grants. 0 or a libuv error. */
int sg_grant_watch(sg_grant_t *g, uv_loop_t *loop, void (*expired_cb)(void *owner), void *owner);

/* Whether g allows perm (SG_PERM_READ for SUBSCRIBE, SG_PERM_WRITE for
 * SEND) on the destination of that kind, name and key (see
 * sg_authz_resource). When not, detail[0..cap) gets the ERROR body naming
 * command, destination and the permission needed. 1 allowed, 0 refused. */
int sg_grant_allows(const sg_grant_t *g, int perm, int kind, const char *name, const char *key,
                    const char *command, const char *destination, char *detail, size_t cap);

/* Stops the expiry watch; g is freed once its timer is closed. NULL is
 * allowed. */
void sg_grant_release(sg_grant_t *g);

#endif
