/* SPDX-License-Identifier: MIT */
/* A main() for the fuzz targets when libFuzzer is not linked in: runs each
 * file named on the command line (or each file in a named directory) once
 * through LLVMFuzzerTestOneInput. The meson test suite 'fuzz' uses it to
 * replay the committed corpora under any compiler and sanitizer. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static int run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    perror(path);
    return -1;
  }
  size_t cap = 4096, len = 0;
  uint8_t *buf = malloc(cap);
  if (buf == NULL) {
    fclose(f);
    return -1;
  }
  size_t n;
  while ((n = fread(buf + len, 1, cap - len, f)) > 0) {
    len += n;
    if (len == cap) {
      uint8_t *g = realloc(buf, cap * 2);
      if (g == NULL) {
        free(buf);
        fclose(f);
        return -1;
      }
      buf = g;
      cap *= 2;
    }
  }
  fclose(f);
  /* An exact-size copy lets ASan see reads past the end of the input. */
  uint8_t *exact = malloc(len ? len : 1);
  if (exact == NULL) {
    free(buf);
    return -1;
  }
  memcpy(exact, buf, len);
  free(buf);
  LLVMFuzzerTestOneInput(exact, len);
  free(exact);
  return 0;
}

int main(int argc, char **argv) {
  int files = 0, failed = 0;
  for (int i = 1; i < argc; i++) {
    struct stat st;
    if (stat(argv[i], &st) != 0) {
      perror(argv[i]);
      failed++;
      continue;
    }
    if (!S_ISDIR(st.st_mode)) {
      failed += run_file(argv[i]) != 0;
      files++;
      continue;
    }
    DIR *d = opendir(argv[i]);
    if (d == NULL) {
      perror(argv[i]);
      failed++;
      continue;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
      if (e->d_name[0] == '.') continue;
      char path[4096];
      snprintf(path, sizeof(path), "%s/%s", argv[i], e->d_name);
      if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
      failed += run_file(path) != 0;
      files++;
    }
    closedir(d);
  }
  printf("replayed %d input(s), %d unreadable\n", files, failed);
  return failed || files == 0 ? 1 : 0;
}
