/* Plain C11 (+ POSIX threads): compiled as C in the test executable. */
#define _GNU_SOURCE
#include "tests/capi/c_guest.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

enum { kPage = 4096 };

struct c_guest {
  uint8_t* mem;
  size_t pages;
  _Atomic uint64_t* dirty; /* bit per page, set by the writer after its write */
  size_t nwords;
  pthread_t writer;
  int writer_running;
  atomic_int stop_writer;
  atomic_uint_fast64_t writes;
  atomic_int fetch_failure;
  int stop_failure;
  int stops, resumes, iterations;
  uint32_t seed;
};

static uint32_t next_random(uint32_t* s) {
  /* xorshift32: deterministic per seed, good enough to make pages differ */
  uint32_t x = *s;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return *s = x;
}

static void fill_page(uint8_t* p, uint32_t* seed) {
  for (size_t i = 0; i < kPage; i += 4) {
    uint32_t v = next_random(seed);
    memcpy(p + i, &v, 4);
  }
}

c_guest* c_guest_new(size_t pages, uint32_t seed) {
  c_guest* g = calloc(1, sizeof *g);
  if (!g) return NULL;
  g->pages = pages;
  g->seed = seed ? seed : 1;
  g->nwords = (pages + 63) / 64;
  g->dirty = calloc(g->nwords, sizeof *g->dirty);
  g->mem = mmap(NULL, pages * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (!g->dirty || g->mem == MAP_FAILED) {
    free(g->dirty);
    free(g);
    return NULL;
  }
  for (size_t i = 0; i < pages; ++i) {
    if (i % 3 != 0) fill_page(g->mem + i * kPage, &g->seed);
  }
  return g;
}

void c_guest_free(c_guest* g) {
  if (!g) return;
  c_guest_stop_writer(g);
  munmap(g->mem, g->pages * kPage);
  free(g->dirty);
  free(g);
}

void* c_guest_memory(c_guest* g) { return g->mem; }
size_t c_guest_bytes(const c_guest* g) { return g->pages * kPage; }
uint64_t c_guest_writes(c_guest* g) { return atomic_load(&g->writes); }

/* Rewrites random pages (a third of them with zeros) and marks each after writing it. */
static void* writer_main(void* arg) {
  c_guest* g = arg;
  uint32_t seed = g->seed ^ 0x9e3779b9u;
  while (!atomic_load(&g->stop_writer)) {
    size_t page = next_random(&seed) % g->pages;
    uint8_t* p = g->mem + page * kPage;
    if (page % 3 == 0) {
      memset(p, 0, kPage);
    } else {
      fill_page(p, &seed);
    }
    atomic_fetch_or(&g->dirty[page / 64], (uint64_t)1 << (page % 64));
    /* A busy guest, not a flood: leave the shared machine's cores to the migration too. */
    if (atomic_fetch_add(&g->writes, 1) % 16 == 15) {
      struct timespec pause = {0, 50 * 1000};
      nanosleep(&pause, NULL);
    }
  }
  return NULL;
}

void c_guest_start_writer(c_guest* g) {
  if (g->writer_running) return;
  atomic_store(&g->stop_writer, 0);
  if (pthread_create(&g->writer, NULL, writer_main, g) == 0) g->writer_running = 1;
}

void c_guest_stop_writer(c_guest* g) {
  if (!g->writer_running) return;
  atomic_store(&g->stop_writer, 1);
  pthread_join(g->writer, NULL);
  g->writer_running = 0;
}

int c_guest_fetch(void* opaque, uint64_t* words, size_t nwords) {
  c_guest* g = opaque;
  int failure = atomic_load(&g->fetch_failure);
  if (failure) return failure;
  if (nwords != g->nwords) return -1;
  for (size_t w = 0; w < nwords; ++w) words[w] = atomic_exchange(&g->dirty[w], 0);
  return 0;
}

void c_guest_fail_fetches(c_guest* g, int code) { atomic_store(&g->fetch_failure, code); }

static int hook_stop(void* opaque) {
  c_guest* g = opaque;
  if (g->stop_failure) return g->stop_failure;
  c_guest_stop_writer(g);
  g->stops++;
  return 0;
}

static void hook_resume(void* opaque) {
  c_guest* g = opaque;
  g->resumes++;
  c_guest_start_writer(g);
}

static void hook_iteration(void* opaque, const ferry_iteration_stats* stats) {
  c_guest* g = opaque;
  (void)stats;
  g->iterations++;
}

ferry_hooks c_guest_hooks(c_guest* g) {
  ferry_hooks h;
  memset(&h, 0, sizeof h);
  h.stop_guest = hook_stop;
  h.resume_guest = hook_resume;
  h.on_iteration = hook_iteration;
  h.opaque = g;
  return h;
}

int c_guest_stops(c_guest* g) { return g->stops; }
int c_guest_resumes(c_guest* g) { return g->resumes; }
int c_guest_iterations(c_guest* g) { return g->iterations; }
void c_guest_fail_stop(c_guest* g, int code) { g->stop_failure = code; }

static int blob_save(void* opaque, void* buf, size_t capacity, size_t* len) {
  c_blob* b = opaque;
  b->saves++;
  if (b->save_result) return b->save_result;
  if (b->overreport) {
    *len = capacity + 1;
    return 0;
  }
  if (b->len > capacity) return -1;
  memcpy(buf, b->bytes, b->len);
  *len = b->len;
  return 0;
}

static int blob_load(void* opaque, const void* buf, size_t len) {
  c_blob* b = opaque;
  b->loads++;
  if (b->load_result) return b->load_result;
  if (len > sizeof b->bytes) return -1;
  memcpy(b->bytes, buf, len);
  b->len = len;
  return 0;
}

ferry_device_ops c_blob_ops(size_t max_bytes, uint32_t version) {
  ferry_device_ops ops;
  memset(&ops, 0, sizeof ops);
  ops.save = blob_save;
  ops.load = blob_load;
  ops.max_bytes = max_bytes;
  ops.version = version;
  return ops;
}

ferry_status c_run_source(c_guest* g, const char* uri, uint32_t channels, char** stats_json) {
  ferry_options o;
  ferry_options_init(&o);
  o.channels = channels;
  /* Hardly any downtime allowed: the writer keeps pages dirty, so several iterations run and
   * each must resend what it wrote. */
  o.downtime_limit_ms = 1;
  o.max_iterations = 5;
  ferry_source* src = NULL;
  ferry_status st = ferry_source_new(&o, &src);
  if (st != FERRY_OK) return st;
  ferry_ram_block block = {"pc.ram", g->mem, g->pages * kPage, kPage, 0};
  ferry_hooks hooks = c_guest_hooks(g);
  if ((st = ferry_source_add_ram(src, &block, c_guest_fetch, g)) == FERRY_OK &&
      (st = ferry_source_set_hooks(src, &hooks)) == FERRY_OK &&
      (st = ferry_source_connect(src, uri)) == FERRY_OK) {
    st = ferry_source_run(src);
  }
  if (stats_json) ferry_source_stats_json(src, stats_json);
  ferry_source_free(src);
  return st;
}
