/* The C half of the C API tests: a guest written by a thread with its own dirty log, hooks that
 * stop and resume that writer, and opaque devices, all in plain C11 (c_guest.c) so the test
 * proves ferry.h works from C. capi_test.cc drives the migrations. */
#ifndef FERRY_TESTS_CAPI_C_GUEST_H
#define FERRY_TESTS_CAPI_C_GUEST_H

#include <stddef.h>
#include <stdint.h>

#include "ferry/ferry.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Anonymous memory of `pages` 4 KiB pages: random pages, with every third page zero. A writer
 * thread (c_guest_start_writer) keeps rewriting random pages and marking them in the guest's
 * dirty log until stop_guest. */
typedef struct c_guest c_guest;

c_guest* c_guest_new(size_t pages, uint32_t seed);
void c_guest_free(c_guest* g);
void* c_guest_memory(c_guest* g);
size_t c_guest_bytes(const c_guest* g);
void c_guest_start_writer(c_guest* g);
/* Stops and joins the writer (idempotent). */
void c_guest_stop_writer(c_guest* g);
uint64_t c_guest_writes(c_guest* g);
/* The ferry_dirty_fetch_fn: moves the dirty log into words. opaque = the guest. */
int c_guest_fetch(void* opaque, uint64_t* words, size_t nwords);
/* Fails every fetch from now on with the given code (0 = succeed again). */
void c_guest_fail_fetches(c_guest* g, int code);

/* Hooks over the guest: stop_guest stops the writer, resume_guest counts (and restarts it). */
ferry_hooks c_guest_hooks(c_guest* g);
int c_guest_stops(c_guest* g);
int c_guest_resumes(c_guest* g);
int c_guest_iterations(c_guest* g);
/* stop_guest returns this instead of stopping (0 = stop normally). */
void c_guest_fail_stop(c_guest* g, int code);

/* An opaque device: `len` bytes of state. save copies them out (or fails, or reports more than
 * the capacity); load copies them in (or fails). */
typedef struct c_blob {
  uint8_t bytes[1000];
  size_t len;
  int save_result;    /* returned by save */
  int load_result;    /* returned by load */
  int overreport;     /* save claims capacity + 1 bytes */
  int saves, loads;
} c_blob;

ferry_device_ops c_blob_ops(size_t max_bytes, uint32_t version);

/* The whole source side of a migration in C: new, add_ram (c_guest_fetch), hooks, connect,
 * run. Returns run's status (or the first failing call's); the source's stats JSON goes to
 * *stats_json (ferry_free it). */
ferry_status c_run_source(c_guest* g, const char* uri, uint32_t channels, char** stats_json);

#ifdef __cplusplus
}
#endif

#endif
