/* SPDX-License-Identifier: MIT */
/* Which relay serves each relay mode: the one table that knows both. */
#include "relay.h"

const sg_relay_type_t *sg_relay_of(sg_mode_t mode) {
  static const sg_relay_type_t *const types[] = {
      [SG_MODE_PER_SESSION] = &sg_relay_per_session,
      [SG_MODE_SHARED] = &sg_relay_shared,
  };
  return (size_t)mode < sizeof(types) / sizeof(types[0]) ? types[mode] : &sg_relay_per_session;
}
