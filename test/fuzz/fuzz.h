/* SPDX-License-Identifier: MIT */
#ifndef STOMPGATE_TEST_FUZZ_H
#define STOMPGATE_TEST_FUZZ_H

/* Shared by the fuzz targets. A failed check aborts, so that libFuzzer and
 * the corpus replay both report it as a crash with the input kept. */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FZ_CHECK(cond)                                                        \
  do {                                                                        \
    if (!(cond)) {                                                            \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      abort();                                                                \
    }                                                                         \
  } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
