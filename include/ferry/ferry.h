/* ferry.h: the C API of libferry (C11, also valid C++).
 *
 * A hypervisor written in C, Rust, Go or anything with a C FFI moves a running guest's RAM and
 * device state with two objects:
 *
 *   source side                              destination side
 *   ferry_source_new(&opts, &src)            ferry_destination_new(&opts, &dst)
 *   ferry_source_add_ram(...)  per block     ferry_destination_add_ram(...)  same blocks
 *   ferry_source_add_device(...)             ferry_destination_add_device(...)  same devices
 *   ferry_source_set_hooks(stop/resume/...)  ferry_destination_listen(dst, "tcp:0.0.0.0:4444")
 *   ferry_source_connect(src, uri)           ferry_destination_run(dst)  (accepts, receives)
 *   ferry_source_run(src)                    -> resume the guest here
 *   ferry_source_free(src)                   ferry_destination_free(dst)
 *
 * Errors. Every call that can fail returns a ferry_status; FERRY_OK is 0. On failure,
 * ferry_last_error() returns a message saying what failed and why (for a failed migration the
 * same text as the "error" field of the stats JSON). No C++ exception ever leaves the library.
 *
 * Threads. An object is used by one thread at a time, except ferry_source_cancel(),
 * ferry_destination_cancel() and ferry_source_progress(), which any thread may call at any time
 * while the object exists (typically while another thread is inside *_run()). Different objects
 * are independent. ferry_source_run() runs the callbacks below on its own calling thread (dirty
 * fetches, hooks, device save) except where a callback says otherwise; it starts worker threads
 * for the channels and joins them all before it returns.
 *
 * Memory. The library copies every string and struct passed in. Guest RAM (ferry_ram_block.host)
 * stays owned by the caller and must stay mapped until the object is freed; the destination
 * writes into it only inside *_run(). Device opaque pointers and vmstate descriptions must stay
 * valid until the object is freed. Strings the library returns through char** are the caller's
 * and are released with ferry_free(); const char* results belong to the library (see each).
 *
 * Guarantees (the same as the C++ API, include/ferry/migration.h): the source never writes guest
 * memory; if the migration fails or is cancelled after stop_guest, resume_guest is called before
 * ferry_source_run() returns, so the guest runs on at the source; the destination writes only
 * inside its registered blocks whatever arrives on the wire.
 */
#ifndef FERRY_FERRY_H
#define FERRY_FERRY_H

#include <stddef.h>
#include <stdint.h>

#include "ferry/export.h"
#include "ferry/version.h"
#include "ferry/vmstate.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Opaque handles (below: ferry_source_new, ferry_destination_new). */
typedef struct ferry_source ferry_source;
typedef struct ferry_destination ferry_destination;

/* ---- Status and errors ------------------------------------------------------------------ */

typedef enum ferry_status {
  FERRY_OK = 0,
  FERRY_ERR_INVALID = 1,   /* bad argument, or a call not allowed in the object's state */
  FERRY_ERR_TRANSPORT = 2, /* listen, connect, accept or a channel failed */
  FERRY_ERR_MIGRATION = 3, /* the migration failed: peer, wire data, device, a hook */
  FERRY_ERR_CANCELLED = 4, /* *_cancel() was called */
  FERRY_ERR_NOMEM = 5,
  FERRY_ERR_SYSTEM = 6,    /* a system call failed (e.g. setting up dirty tracking) */
  FERRY_ERR_INTERNAL = 7   /* a bug in ferry; the message says where */
} ferry_status;

/* The message of the last failed call on this thread ("" if none): owned by the library, valid
 * until the next ferry call on the same thread. */
FERRY_API const char* ferry_last_error(void);
/* "FERRY_OK", "FERRY_ERR_INVALID", ...: a static string. */
FERRY_API const char* ferry_status_name(ferry_status status);
/* The version of the loaded library, e.g. "0.1.0" (compare with FERRY_VERSION_STRING). */
FERRY_API const char* ferry_version(void);
/* Releases a string the library returned through a char** out-parameter. NULL is fine. */
FERRY_API void ferry_free(void* p);

/* ---- Options ---------------------------------------------------------------------------- */

/* Fill with ferry_options_init() first, then change what you need. struct_size lets later
 * versions add fields at the end: the library reads only what the caller's struct has. Flags are
 * 0 (off) or 1 (on). */
/* ferry_options.verify. DIGEST: both sides keep a digest of every page as it is sent and as it
 * lands, compared per block at completion (one round trip, no pass over memory); it catches
 * pages lost, damaged or misplaced on the way. FULL: both sides re-hash all RAM after the final
 * pass instead, which also catches pages the dirty tracking missed, at the cost of a pass over
 * memory inside the blackout. */
#define FERRY_VERIFY_OFF 0u
#define FERRY_VERIFY_DIGEST 1u
#define FERRY_VERIFY_FULL 2u

typedef struct ferry_options {
  uint32_t struct_size;            /* sizeof(ferry_options), set by ferry_options_init */
  /* Transport */
  uint32_t channels;               /* source: channels to open (1..64, default 1); destination:
                                      channels to expect, 0 = as many as the source opens (the
                                      default with NULL options; ferry_options_init sets 1) */
  uint32_t connect_timeout_ms;     /* per channel, retries included (10000) */
  uint32_t handshake_timeout_ms;   /* per connection (5000) */
  uint32_t accept_timeout_ms;      /* destination: a whole session (60000) */
  uint32_t io_timeout_ms;          /* a blocking send/recv that makes no progress (60000; 0 =
                                      wait forever) */
  /* Migration (source) */
  uint32_t downtime_limit_ms;      /* converge when the final pass fits (300) */
  uint32_t max_iterations;         /* then stop the guest anyway (30) */
  uint64_t bandwidth_limit_bytes_per_s; /* 0 = unlimited */
  uint32_t zero_pages;             /* zero-page detection (1) */
  uint32_t xbzrle;                 /* XBZRLE deltas for re-sent pages (0) */
  uint64_t xbzrle_cache_bytes;     /* (256 MiB) */
  uint32_t lz4;                    /* LZ4 for pages XBZRLE does not take (0) */
  uint32_t auto_converge;          /* call hooks.throttle while not converging (1) */
  uint32_t verify;                 /* FERRY_VERIFY_* (FERRY_VERIFY_OFF) */
  uint32_t rdma_placement;         /* RDMA WRITE into destination pages on rdma: (1) */
  /* Since struct_size 80 (older callers get the default). With zero_pages: pages of private
   * anonymous RAM that the page tables show never populated (or mapping the shared zero page) go
   * as zero without being read, on Linux 6.7+ (1). 0: every page is read. */
  uint32_t page_table_zero;
  /* Since struct_size 96 (older callers get no key). Authentication (tcp, unix and rdma): psk
   * points to psk_len bytes of pre-shared key, at least 32 (256 bits), the same on both ends;
   * NULL/0 = no key. The library copies the bytes in ferry_source_new/ferry_destination_new: the
   * caller may wipe and free them once that returned (the library wipes its copies when it frees
   * them). With a key every channel proves it both ways and a peer without it (or with another)
   * is refused, naming which end lacks what; without one, a peer that requires a key is refused.
   * A destination refuses to listen on a tcp or rdma address that is not loopback without a key
   * unless insecure is 1 (unix and loopback are fine without). */
  const uint8_t* psk;              /* (NULL) */
  uint32_t psk_len;                /* (0; else >= 32) */
  uint32_t insecure;               /* (0) */
} ferry_options;

FERRY_API void ferry_options_init(ferry_options* options);

/* ---- RAM blocks ------------------------------------------------------------------------- */

/* Destination only: the block is all zero when run starts (fresh anonymous memory), so zero
 * pages need neither a read nor a write. */
#define FERRY_RAM_KNOWN_ZERO 1u

/* One contiguous piece of guest RAM (a KVM memory slot, a QEMU RAMBlock). Both sides add the same
 * blocks in the same order (name, size, page size); the destination refuses a mismatch naming
 * the block. */
typedef struct ferry_ram_block {
  const char* name;   /* unique, 1..255 bytes; copied */
  void* host;         /* page_size aligned, owned by the caller */
  uint64_t size;      /* a multiple of page_size */
  uint64_t page_size; /* 4096 or 2 MiB */
  uint32_t flags;     /* FERRY_RAM_* */
} ferry_ram_block;

/* ---- Dirty tracking (source) ------------------------------------------------------------ */

/* Fills the dirty log of one block: bit i of words[w] set for each page 64 * w + i written since
 * the previous call (since ferry_source_add_ram for the first), and re-arms logging in the same
 * step (KVM_GET_DIRTY_LOG's contract): a write racing the call must show up in this call or the
 * next. words arrive zeroed, nwords = (pages + 63) / 64. Return 0, or non-zero to fail the
 * migration (the guest runs on). Called from the thread inside ferry_source_run(), once per
 * iteration and once after stop_guest. */
typedef int (*ferry_dirty_fetch_fn)(void* opaque, uint64_t* words, size_t nwords);

/* A block whose dirty pages come from the caller's callback. */
FERRY_API ferry_status ferry_source_add_ram(ferry_source* source,
                                            const ferry_ram_block* block,
                                            ferry_dirty_fetch_fn fetch, void* opaque);

/* KVM's dirty log for memory slot `slot` of VM `vm_fd` (a slot created with
 * KVM_MEM_LOG_DIRTY_PAGES whose memory is block->host): KVM_GET_DIRTY_LOG per iteration, and with
 * FERRY_KVM_MANUAL_PROTECT (the VM has KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 enabled) followed by
 * KVM_CLEAR_DIRTY_LOG of the pages it reported. slot includes the address space id in bits 16+
 * as KVM expects. block->page_size must be the host page size (KVM logs one bit per base page).
 * The fd stays the caller's. */
#define FERRY_KVM_MANUAL_PROTECT 1u
FERRY_API ferry_status ferry_source_add_ram_kvm(ferry_source* source,
                                                const ferry_ram_block* block, int vm_fd,
                                                uint32_t slot, uint32_t flags);

/* Memory of this process tracked by the kernel (userfaultfd write-protect + PAGEMAP_SCAN, Linux
 * 6.7+): for a VMM whose guest RAM is its own anonymous memory written by the VMM's threads.
 * Fails with FERRY_ERR_SYSTEM and the reason where the kernel cannot. */
FERRY_API ferry_status ferry_source_add_ram_tracked(ferry_source* source,
                                                    const ferry_ram_block* block);

/* ---- Devices (both sides register the same ones) ---------------------------------------- */

/* A device described by a vmstate description (ferry/vmstate.h) over `opaque`: saved on the
 * source after the final RAM pass (pre_save hooks run), loaded on the destination before it
 * confirms completion (post_load hooks run). Encoded byte for byte like QEMU's vmstate. */
FERRY_API ferry_status ferry_source_add_device(ferry_source* source, const char* idstr,
                                               uint32_t instance_id,
                                               const FerryVmsDescription* vmsd, void* opaque);
FERRY_API ferry_status ferry_destination_add_device(ferry_destination* destination,
                                                    const char* idstr, uint32_t instance_id,
                                                    const FerryVmsDescription* vmsd,
                                                    void* opaque);

/* A device whose state is opaque bytes the caller produces and consumes. save writes at most
 * `capacity` bytes to buf and sets *len (return non-zero on failure); load receives exactly
 * what save produced (non-zero: the migration fails naming the device). capacity is
 * ferry_device_ops.max_bytes on both sides. Both run on the thread inside *_run(). */
typedef struct ferry_device_ops {
  int (*save)(void* opaque, void* buf, size_t capacity, size_t* len);
  int (*load)(void* opaque, const void* buf, size_t len);
  size_t max_bytes; /* largest state, 1 .. 4 MiB - 4 KiB (a device travels in one packet of at
                       most 4 MiB); memory for it is reserved at registration */
  uint32_t version; /* 1.. ; the destination refuses a newer one and loads an older one (load is
                       not told which: keep a format marker in the bytes if it changes) */
} ferry_device_ops;

FERRY_API ferry_status ferry_source_add_device_opaque(ferry_source* source,
                                                      const char* idstr, uint32_t instance_id,
                                                      const ferry_device_ops* ops, void* opaque);
FERRY_API ferry_status ferry_destination_add_device_opaque(
    ferry_destination* destination, const char* idstr, uint32_t instance_id,
    const ferry_device_ops* ops, void* opaque);

/* ---- Source ----------------------------------------------------------------------------- */

/* options may be NULL (defaults). */
FERRY_API ferry_status ferry_source_new(const ferry_options* options, ferry_source** out);
/* Not while ferry_source_run() runs on another thread. NULL is fine. */
FERRY_API void ferry_source_free(ferry_source* source);

/* After one iteration (the bulk pass is 0; the pass with the guest stopped has final_pass 1). */
typedef struct ferry_iteration_stats {
  uint32_t iteration;
  uint32_t final_pass;
  uint64_t dirty_pages;           /* found dirty by this iteration's sync (all blocks) */
  uint64_t normal_pages, zero_pages, xbzrle_pages, lz4_pages; /* sent, by kind */
  uint64_t wire_bytes;
  double seconds;
  double throughput_bytes_per_s;
  double dirty_rate_pages_per_s;
  uint64_t remaining_dirty_pages; /* found by the sync after it */
  double expected_downtime_s;
  uint32_t throttle_percent;
} ferry_iteration_stats;

/* Every member may be NULL. All run on the thread inside ferry_source_run(). */
typedef struct ferry_hooks {
  /* Precopy converged: stop the guest (vCPUs out of KVM_RUN, device models quiet) and return 0.
   * After it returns nothing may write guest memory. Non-zero fails the migration; the guest is
   * then taken to be still running and resume_guest is not called (throttle(0) is, if the
   * guest was throttled). */
  int (*stop_guest)(void* opaque);
  /* The migration failed or was cancelled after stop_guest: the guest runs on here. */
  void (*resume_guest)(void* opaque);
  /* Auto-converge: keep the guest's vCPUs paused this percent (0..99) of the time; 0 at the end. */
  void (*throttle)(void* opaque, uint32_t percent);
  void (*on_iteration)(void* opaque, const ferry_iteration_stats* stats);
  void* opaque;
} ferry_hooks;

FERRY_API ferry_status ferry_source_set_hooks(ferry_source* source, const ferry_hooks* hooks);

/* Opens options.channels channels of one session to the destination listening at uri
 * ("tcp:HOST:PORT", "unix:/path", "rdma:HOST:PORT", "file:/path" for a stream file). Bounded by
 * connect_timeout_ms. */
FERRY_API ferry_status ferry_source_connect(ferry_source* source, const char* uri);
/* Runs the whole precopy migration over the connected channels; returns when the destination has
 * confirmed (FERRY_OK), or on failure / cancel with the guest running (see guarantees). Once per
 * object. */
FERRY_API ferry_status ferry_source_run(ferry_source* source);
/* Any thread, any time: run() (or a run() not yet started) ends soon with FERRY_ERR_CANCELLED,
 * and so does a later ferry_source_connect(); a connect in progress is not interrupted (it is
 * bounded by connect_timeout_ms). */
FERRY_API void ferry_source_cancel(ferry_source* source);

typedef struct ferry_progress {
  uint32_t iteration;
  uint32_t final_pass;
  uint64_t pages_sent_this_iteration;
  uint64_t pages_dirty_this_iteration;
  uint64_t wire_bytes;
  double elapsed_seconds;
  double throughput_bytes_per_s;
} ferry_progress;

/* Any thread, any time. */
FERRY_API ferry_status ferry_source_progress(ferry_source* source, ferry_progress* out);

/* The statistics of the last run (also after a failure) as a JSON object like QEMU's
 * query-migrate: status, total-time, blackout, downtime, ram, iterations[...]. Before run, status is
 * "none". Release with ferry_free. */
FERRY_API ferry_status ferry_source_stats_json(ferry_source* source, char** json);

/* ---- Destination ------------------------------------------------------------------------ */

FERRY_API ferry_status ferry_destination_new(const ferry_options* options,
                                             ferry_destination** out);
FERRY_API void ferry_destination_free(ferry_destination* destination);

/* The block's memory is written only inside ferry_destination_run(). */
FERRY_API ferry_status ferry_destination_add_ram(ferry_destination* destination,
                                                 const ferry_ram_block* block);

/* Binds and listens (port 0: the kernel picks one). */
FERRY_API ferry_status ferry_destination_listen(ferry_destination* destination, const char* uri);
/* Where the source should connect, with the real port ("tcp:127.0.0.1:40123"). Release with
 * ferry_free. */
FERRY_API ferry_status ferry_destination_address(ferry_destination* destination, char** uri);
/* Accepts one session's channels (bounded by accept_timeout_ms) and receives until the source's
 * completion handshake, devices loaded: on FERRY_OK the guest may run here. Once per object. */
FERRY_API ferry_status ferry_destination_run(ferry_destination* destination);
/* Any thread, any time: run() ends soon with FERRY_ERR_CANCELLED (an accept in progress ends
 * within about 100 ms). */
FERRY_API void ferry_destination_cancel(ferry_destination* destination);
/* Pages, bytes, iterations, devices, seconds and the error of the last run, as JSON: status
 * ("none" before run, "completed", "failed", "cancelled"), error-desc, total-time, ram{...} with
 * the source's key names, device-state, vmdesc (the source's device description). The counts
 * are those of a completed run; after a failure only status, error-desc and total-time. */
FERRY_API ferry_status ferry_destination_stats_json(ferry_destination* destination, char** json);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* FERRY_FERRY_H */
