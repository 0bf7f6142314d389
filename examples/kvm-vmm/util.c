/* util.c: error reporting, clocks and number parsing. */
#define _GNU_SOURCE
#include "util.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void report_error(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("kvm-vmm: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

void report_errno(const char* fmt, ...) {
  int saved = errno;
  va_list ap;
  va_start(ap, fmt);
  fputs("kvm-vmm: ", stderr);
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, ": %s\n", strerror(saved));
  va_end(ap);
  errno = saved;
}

uint64_t monotonic_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void sleep_until_ns(uint64_t deadline_ns) {
  struct timespec ts = {(time_t)(deadline_ns / 1000000000u), (long)(deadline_ns % 1000000000u)};
  clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL); /* EINTR: the caller goes on */
}

void sleep_seconds(double seconds) {
  uint64_t deadline = monotonic_ns() + (uint64_t)(seconds * 1e9);
  while (monotonic_ns() < deadline) sleep_until_ns(deadline);
}

bool parse_size(const char* text, uint64_t* out) {
  char* end = NULL;
  errno = 0;
  unsigned long long value = strtoull(text, &end, 10);
  if (errno != 0 || end == text || text[0] == '-') return false;
  unsigned shift = 0;
  switch (*end) {
    case '\0': break;
    case 'k': case 'K': shift = 10; ++end; break;
    case 'm': case 'M': shift = 20; ++end; break;
    case 'g': case 'G': shift = 30; ++end; break;
    default: return false;
  }
  if (*end == 'i' && end[1] == 'B') end += 2; /* accept "64MiB" too */
  if (*end != '\0' || (shift && value > (UINT64_MAX >> shift))) return false;
  *out = (uint64_t)value << shift;
  return true;
}

bool parse_seconds(const char* text, double* out) {
  char* end = NULL;
  errno = 0;
  double value = strtod(text, &end);
  if (errno != 0 || end == text || *end != '\0' || !isfinite(value) || value < 0) return false;
  *out = value;
  return true;
}

bool parse_uint(const char* text, uint64_t min, uint64_t max, uint64_t* out) {
  char* end = NULL;
  errno = 0;
  unsigned long long value = strtoull(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || value < min || value > max) {
    return false;
  }
  *out = value;
  return true;
}
