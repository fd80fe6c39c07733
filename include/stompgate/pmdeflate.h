/* SPDX-License-Identifier: MIT */
#ifndef STOMPGATE_PMDEFLATE_H
#define STOMPGATE_PMDEFLATE_H

/* permessage-deflate (RFC 7692): negotiating the extension from a
 * client's Sec-WebSocket-Extensions offers, and compressing and inflating
 * message payloads with zlib's raw deflate. No I/O. */

#include <stddef.h>
#include <stdint.h>

#include "stompgate/buf.h"

/* The longest response sg_pmd_negotiate builds, terminator included. */
#define SG_PMD_RESPONSE_MAX 128

typedef struct sg_pmd_limits {
  /* 9..15: the largest LZ77 window (2^bits bytes) the gateway compresses
   * with. zlib's raw deflate cannot use 8. */
  int server_max_window_bits;
  /* 9..15: the window asked of a client that offers client_max_window_bits;
   * it bounds the memory of that session's inflater. */
  int client_max_window_bits;
} sg_pmd_limits_t;

typedef struct sg_pmd_params {
  int server_window_bits;         /* the gateway deflates with this window, 9..15 */
  int client_window_bits;         /* the client's messages inflate with this window, 9..15 */
  int client_no_context_takeover; /* each client message is a stream of its own */
  char response[SG_PMD_RESPONSE_MAX]; /* the Sec-WebSocket-Extensions value to answer */
} sg_pmd_params_t;

/* Reads one Sec-WebSocket-Extensions header value (a comma list of offers,
 * each with ;-separated parameters whose values may be quoted) and picks
 * the first permessage-deflate offer the gateway can honour. An offer is
 * declined when it has an unknown, repeated or malformed parameter, a
 * window size outside 8..15, or server_max_window_bits=8 (raw deflate
 * cannot keep to a 256-byte window). The gateway always answers
 * server_no_context_takeover: every message it sends is compressed on its
 * own, so one deflater per thread serves every session. It echoes
 * client_no_context_takeover when offered, answers server_max_window_bits
 * when offered or when it uses less than 15, and client_max_window_bits
 * (at most lim's value and the offer's) when the client allows it.
 * Returns 1 with *out filled, or 0 when no offer is acceptable (the
 * connection then goes on uncompressed). Borrows offers for the call. */
int sg_pmd_negotiate(const char *offers, size_t len, const sg_pmd_limits_t *lim,
                     sg_pmd_params_t *out);

/* Counters of an encoder, for tests and metrics. */
typedef struct sg_pmd_stats {
  uint64_t messages;   /* messages compressed */
  uint64_t shared;     /* of them, messages that reused a compressed tail */
  uint64_t bytes_in;   /* bytes before compression */
  uint64_t bytes_out;  /* payload bytes after it */
} sg_pmd_stats_t;

/* Compresses outgoing messages, each on its own (no context is carried
 * from one message to the next). One serves every connection of a thread.
 *
 * Fan-out: the frames a broadcast sends to N sessions differ only in their
 * first header lines (subscription, message-id) and end with the same
 * headers and body. Deflate blocks that end on a sync flush can be
 * concatenated, and blocks compressed from a fresh state refer to nothing
 * before them, so the encoder compresses such a shared tail once and, for
 * each later frame that ends with the same bytes, compresses only the
 * differing head and appends the stored tail. The tail is found by
 * comparing a frame with the one before it (a memcmp, much cheaper than
 * deflate); frames shorter than shared_min are always compressed whole. */
typedef struct sg_pmd_encoder sg_pmd_encoder_t;

/* A new encoder with a zlib level (0..9, or -1 for zlib's default) and
 * the shortest tail worth sharing (0: never share). NULL when out of
 * memory. Deflaters are created per window size on first use. */
sg_pmd_encoder_t *sg_pmd_encoder_new(int level, size_t shared_min);
void sg_pmd_encoder_free(sg_pmd_encoder_t *e);

/* Compresses msg[0..len) as one message with a window of window_bits
 * (9..15) and appends the payload to send with RSV1 set (the final
 * 00 00 ff ff of the sync flush removed) to out. Copies msg where it keeps
 * it for tail sharing. 0, SG_ERR_NOMEM or SG_ERR_INVALID (bad window). */
int sg_pmd_encode(sg_pmd_encoder_t *e, int window_bits, const void *msg, size_t len,
                  sg_buf_t *out);

void sg_pmd_encoder_stats(const sg_pmd_encoder_t *e, sg_pmd_stats_t *st);
/* Bytes the encoder holds: zlib's state and the remembered frames. */
size_t sg_pmd_encoder_memory(const sg_pmd_encoder_t *e);

/* Inflates incoming messages: one per session when the client keeps its
 * context across messages, else one per thread. */
typedef struct sg_pmd_inflater sg_pmd_inflater_t;

/* A new inflater with a window of window_bits (9..15); zlib allocates the
 * window itself only when the first message needs it. NULL when out of
 * memory or window_bits is out of range. */
sg_pmd_inflater_t *sg_pmd_inflater_new(int window_bits);
void sg_pmd_inflater_free(sg_pmd_inflater_t *inf);
/* Bytes the inflater holds (zlib's state and window). */
size_t sg_pmd_inflater_memory(const sg_pmd_inflater_t *inf);

/* Inflates one message's payload in[0..len) (the 00 00 ff ff the sender
 * dropped is added here) and appends the message to out. fresh starts from
 * an empty context (client_no_context_takeover, or an inflater shared by
 * many clients); otherwise earlier messages' bytes may be referred to.
 * Returns 0; SG_ERR_FRAME_TOO_LARGE as soon as the message would pass max
 * bytes, so that out never grows past twice max whatever the ratio;
 * SG_ERR_INVALID when the payload is not deflate data; SG_ERR_NOMEM. After
 * an error the inflater is usable again only with fresh set. Copies in. */
int sg_pmd_inflate(sg_pmd_inflater_t *inf, const void *in, size_t len, size_t max, int fresh,
                   sg_buf_t *out);

#endif
