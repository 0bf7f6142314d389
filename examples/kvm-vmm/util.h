/* util.h: error reporting, clocks and number parsing shared by the VMM's files. */
#ifndef KVM_VMM_UTIL_H
#define KVM_VMM_UTIL_H

#include <stdbool.h>
#include <stdint.h>

/* "kvm-vmm: <message>" on stderr. Every failing function reports what failed and returns -1. */
void report_error(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same with ": <strerror(errno)>" appended (errno as it was on entry). */
void report_errno(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

/* CLOCK_MONOTONIC in nanoseconds: system-wide, so two processes on one host share it. */
uint64_t monotonic_ns(void);
/* Sleeps until CLOCK_MONOTONIC reaches deadline_ns; returns early on a signal. */
void sleep_until_ns(uint64_t deadline_ns);
void sleep_seconds(double seconds);

/* "1G", "64M", "4096", "512K" (binary units) -> bytes. False on anything else. */
bool parse_size(const char* text, uint64_t* out);
/* A non-negative decimal like "0.5". */
bool parse_seconds(const char* text, double* out);
/* An unsigned integer in [min, max]. */
bool parse_uint(const char* text, uint64_t min, uint64_t max, uint64_t* out);

#endif
