/* inproc_migrate: the smallest complete use of ferry's C API. A "guest" region of memory is
 * migrated to a second region over a unix socket while a destination thread receives it; the
 * main thread is the source and reports dirty pages through a callback. Exit status 0 (and one
 * line of output) only when the destination's memory equals the source's.
 *
 * Build: cc -std=c11 inproc_migrate.c $(pkg-config --cflags --libs ferry) -lpthread */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include <ferry/ferry.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

enum { kPage = 4096, kPages = 1024 }; /* 4 MiB */

static uint8_t* map_region(void) {
  void* p = mmap(NULL, (size_t)kPages * kPage, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

/* The "guest": until stop_guest it writes one page between two dirty fetches, and the fetch
 * reports it, as KVM_GET_DIRTY_LOG would report a vCPU's writes. Both run on the thread inside
 * ferry_source_run(), so no locking is needed here. */
struct guest {
  uint8_t* mem;
  int stopped;
  unsigned writes;
};

static int fetch_dirty(void* opaque, uint64_t* words, size_t nwords) {
  struct guest* g = opaque;
  if (!g->stopped && g->writes < 8) {
    size_t page = 100 + g->writes++;
    memset(g->mem + page * kPage, 0xa0 + (int)g->writes, kPage);
    if (page / 64 < nwords) words[page / 64] |= (uint64_t)1 << (page % 64);
  }
  return 0;
}

static int stop_guest(void* opaque) {
  ((struct guest*)opaque)->stopped = 1; /* a VMM takes its vCPUs out of KVM_RUN here */
  return 0;
}

static void* destination_main(void* arg) {
  ferry_destination* dst = arg;
  ferry_status st = ferry_destination_run(dst);
  if (st != FERRY_OK) {
    fprintf(stderr, "destination: %s: %s\n", ferry_status_name(st), ferry_last_error());
  }
  return (void*)(intptr_t)st;
}

static int fail(const char* what, ferry_status st) {
  fprintf(stderr, "%s: %s: %s\n", what, ferry_status_name(st), ferry_last_error());
  return 1;
}

int main(void) {
  uint8_t* src_mem = map_region();
  uint8_t* dst_mem = map_region();
  if (!src_mem || !dst_mem) return perror("mmap"), 1;
  for (size_t i = 0; i < (size_t)kPages * kPage; i += 64) src_mem[i] = (uint8_t)(i / 64 * 31);
  memset(src_mem + 7 * kPage, 0, kPage); /* a zero page too */

  char uri[64];
  snprintf(uri, sizeof uri, "unix:/tmp/ferry-inproc-%ld.sock", (long)getpid());
  ferry_ram_block dst_block = {"pc.ram", dst_mem, (uint64_t)kPages * kPage, kPage,
                               FERRY_RAM_KNOWN_ZERO};
  ferry_destination* dst = NULL;
  ferry_status st;
  if ((st = ferry_destination_new(NULL, &dst)) != FERRY_OK) return fail("destination", st);
  if ((st = ferry_destination_add_ram(dst, &dst_block)) != FERRY_OK ||
      (st = ferry_destination_listen(dst, uri)) != FERRY_OK) {
    return fail("destination setup", st);
  }
  pthread_t receiver;
  if (pthread_create(&receiver, NULL, destination_main, dst) != 0) return perror("thread"), 1;

  ferry_options opts;
  ferry_options_init(&opts);
  opts.channels = 2;
  ferry_source* src = NULL;
  ferry_ram_block src_block = {"pc.ram", src_mem, (uint64_t)kPages * kPage, kPage, 0};
  struct guest guest = {src_mem, 0, 0};
  ferry_hooks hooks = {stop_guest, NULL, NULL, NULL, &guest};
  if ((st = ferry_source_new(&opts, &src)) != FERRY_OK) return fail("source", st);
  if ((st = ferry_source_add_ram(src, &src_block, fetch_dirty, &guest)) != FERRY_OK ||
      (st = ferry_source_set_hooks(src, &hooks)) != FERRY_OK ||
      (st = ferry_source_connect(src, uri)) != FERRY_OK) {
    ferry_destination_cancel(dst); /* the receiver would otherwise wait for accept_timeout */
    pthread_join(receiver, NULL);
    return fail("source setup", st);
  }
  ferry_status source_status = ferry_source_run(src);
  if (source_status != FERRY_OK) fail("source", source_status);
  void* dst_result = NULL;
  pthread_join(receiver, &dst_result);

  int same = memcmp(src_mem, dst_mem, (size_t)kPages * kPage) == 0;
  if (source_status == FERRY_OK && dst_result == (void*)(intptr_t)FERRY_OK && same) {
    printf("inproc_migrate: %d KiB (%u pages rewritten meanwhile) migrated over %s, "
           "destination identical (ferry %s)\n",
           kPages * kPage / 1024, guest.writes, uri, ferry_version());
  } else if (!same) {
    fprintf(stderr, "inproc_migrate: destination memory differs from the source\n");
  }
  ferry_source_free(src);
  ferry_destination_free(dst);
  munmap(src_mem, (size_t)kPages * kPage);
  munmap(dst_mem, (size_t)kPages * kPage);
  return source_status == FERRY_OK && dst_result == (void*)(intptr_t)FERRY_OK && same ? 0 : 1;
}
