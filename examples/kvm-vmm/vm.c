/* vm.c: /dev/kvm, the VM, its memory slot with dirty logging, CPUID, and the boot image. */
#define _GNU_SOURCE
#include "vm.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "layout.h"
#include "util.h"

extern const uint8_t guest_code_start[];
extern const uint8_t guest_code_end[];

uint64_t vm_data_pages(const vm* vm) { return (vm->mem_size - DATA_ADDR) / GUEST_PAGE_SIZE; }

static int open_kvm(vm* vm) {
  vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (vm->kvm_fd < 0) {
    report_errno("cannot open /dev/kvm (no KVM on this machine, or no access)");
    return -1;
  }
  int api = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
  if (api != KVM_API_VERSION) {
    report_error("/dev/kvm speaks API %d, this VMM needs %d", api, KVM_API_VERSION);
    return -1;
  }
  return 0;
}

/* Capabilities without which the VMM cannot work, each with why. */
static int check_capabilities(vm* vm) {
  static const struct { int cap; const char* name; } needed[] = {
      {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
      {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT (stopping the vCPU)"},
      {KVM_CAP_XCRS, "KVM_CAP_XCRS"},
      {KVM_CAP_VCPU_EVENTS, "KVM_CAP_VCPU_EVENTS"},
      {KVM_CAP_DEBUGREGS, "KVM_CAP_DEBUGREGS"},
      {KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 (dirty log)"},
  };
  for (size_t i = 0; i < sizeof needed / sizeof needed[0]; ++i) {
    if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, needed[i].cap) <= 0) {
      report_error("KVM lacks %s", needed[i].name);
      return -1;
    }
  }
  vm->vcpu_mmap_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (vm->vcpu_mmap_size < (int)sizeof(struct kvm_run)) {
    report_errno("KVM_GET_VCPU_MMAP_SIZE");
    return -1;
  }
  return 0;
}

static int create_vm_fd(vm* vm) {
  vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
  if (vm->vm_fd < 0) {
    report_errno("KVM_CREATE_VM");
    return -1;
  }
  /* Must come before the slot exists. Not INITIALLY_SET: ferry's bulk pass sends every page
   * anyway, the log only has to catch writes from the start on. */
  struct kvm_enable_cap cap = {.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
                               .args = {KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE}};
  if (ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap) < 0) {
    report_errno("KVM_ENABLE_CAP(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2)");
    return -1;
  }
  int xsave2 = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
  vm->xsave_size = xsave2 > (int)sizeof(struct kvm_xsave) ? (uint32_t)xsave2
                                                           : (uint32_t)sizeof(struct kvm_xsave);
  return 0;
}

/* Allocates every page of guest RAM now (like QEMU's -mem-prealloc). A guest's first write to
 * a page otherwise waits for the host to allocate it, which inside a nested VM costs more than
 * the guest's whole write: the guest could not reach its dirty rate while it still touches new
 * pages. */
static int preallocate(vm* vm) {
  if (madvise(vm->mem, vm->mem_size, MADV_POPULATE_WRITE) == 0) return 0;
  if (errno != EINVAL) {
    report_errno("madvise(MADV_POPULATE_WRITE) of guest RAM");
    return -1;
  }
  for (uint64_t off = 0; off < vm->mem_size; off += GUEST_PAGE_SIZE) {
    ((volatile uint8_t*)vm->mem)[off] = 0; /* kernels before 5.14: touch each page */
  }
  return 0;
}

static int create_memory(vm* vm, bool prealloc, bool dirty_log) {
  vm->mem = mmap(NULL, vm->mem_size, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (vm->mem == MAP_FAILED) {
    vm->mem = NULL;
    report_errno("mmap of %llu MiB guest RAM", (unsigned long long)(vm->mem_size >> 20));
    return -1;
  }
  if (prealloc && preallocate(vm)) return -1;
  vm->slot = 0;
  struct kvm_userspace_memory_region region = {.slot = vm->slot,
                                               .flags = dirty_log ? KVM_MEM_LOG_DIRTY_PAGES : 0,
                                               .guest_phys_addr = 0,
                                               .memory_size = vm->mem_size,
                                               .userspace_addr = (uintptr_t)vm->mem};
  if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
    report_errno("KVM_SET_USER_MEMORY_REGION (%llu MiB%s)",
                 (unsigned long long)(vm->mem_size >> 20), dirty_log ? ", dirty logging" : "");
    return -1;
  }
  return 0;
}

/* KVM_GET_SUPPORTED_CPUID, growing the buffer while KVM says E2BIG. */
static int read_supported_cpuid(vm* vm) {
  for (uint32_t n = 64; n <= 4096; n *= 2) {
    struct kvm_cpuid2* c = calloc(1, sizeof *c + n * sizeof(struct kvm_cpuid_entry2));
    if (!c) {
      report_error("out of memory for CPUID");
      return -1;
    }
    c->nent = n;
    if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
      vm->cpuid = c;
      return 0;
    }
    free(c);
    if (errno != E2BIG) break;
  }
  report_errno("KVM_GET_SUPPORTED_CPUID");
  return -1;
}

int vm_create(vm* vm, uint64_t mem_size, bool prealloc, bool dirty_log) {
  memset(vm, 0, sizeof *vm);
  vm->kvm_fd = vm->vm_fd = -1;
  vm->mem_size = mem_size;
  if (mem_size < 2 * (uint64_t)DATA_ADDR || mem_size % (2u << 20) != 0 ||
      mem_size > ((uint64_t)MAX_MEM_GIB << 30)) {
    report_error("guest memory must be a multiple of 2 MiB between 4 MiB and %d GiB", MAX_MEM_GIB);
    return -1;
  }
  if ((size_t)(guest_code_end - guest_code_start) > CODE_MAX) {
    report_error("guest code does not fit its %d bytes", CODE_MAX);
    return -1;
  }
  if (open_kvm(vm) || check_capabilities(vm) || create_vm_fd(vm) ||
      create_memory(vm, prealloc, dirty_log) || read_supported_cpuid(vm)) {
    return -1;
  }
  return 0;
}

/* Identity map of all RAM with 2 MiB pages; the U bit at every level, so CPL3 reaches it all. */
static void write_page_tables(vm* vm) {
  uint64_t* pml4 = (uint64_t*)(vm->mem + PML4_ADDR);
  uint64_t* pdpt = (uint64_t*)(vm->mem + PDPT_ADDR);
  const uint64_t present_rw_user = 0x7, huge = 0x80;
  pml4[0] = PDPT_ADDR | present_rw_user;
  uint64_t gib = (vm->mem_size + (1u << 30) - 1) >> 30;
  for (uint64_t g = 0; g < gib; ++g) {
    uint64_t pd_addr = PD_ADDR + g * 0x1000;
    uint64_t* pd = (uint64_t*)(vm->mem + pd_addr);
    pdpt[g] = pd_addr | present_rw_user;
    for (uint64_t i = 0; i < 512; ++i) {
      uint64_t phys = (g << 30) | (i << 21);
      if (phys < vm->mem_size) pd[i] = phys | present_rw_user | huge;
    }
  }
}

/* GDT: null, kernel code/data, user data/code (DPL 3, selectors 0x23/0x1b), 64-bit TSS. The CPU
 * uses the descriptor caches KVM_SET_SREGS loads; the table is there for consistency. */
static void write_gdt(vm* vm) {
  uint64_t* gdt = (uint64_t*)(vm->mem + GDT_ADDR);
  gdt[0] = 0;
  gdt[1] = 0x00af9b000000ffffull; /* kernel code, 64-bit */
  gdt[2] = 0x00cf93000000ffffull; /* kernel data */
  gdt[3] = 0x00affb000000ffffull; /* user code, 64-bit, DPL 3 (0x1b) */
  gdt[4] = 0x00cff3000000ffffull; /* user data, DPL 3 (0x23) */
  const uint64_t base = TSS_ADDR, limit = TSS_LIMIT;
  gdt[5] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0xbull << 40) | (1ull << 47) |
           (((limit >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56);
  gdt[6] = base >> 32;
}

/* A TSS whose I/O permission bitmap allows every port. IOPL 3 alone is not enough under PVM: it
 * keeps only some RFLAGS bits across its first exit from native guest code, so IOPL reads 0
 * afterwards, in/out at CPL3 raise #GP, and PVM emulates them, checking this bitmap as the CPU
 * would. (On hardware KVM IOPL 3 suffices and the bitmap is never consulted.) */
static void write_tss(vm* vm) {
  memset(vm->mem + TSS_ADDR, 0, TSS_LIMIT + 1);
  *(uint16_t*)(vm->mem + TSS_ADDR + 0x66) = TSS_IO_BITMAP; /* bitmap offset; 0 bits = allowed */
  vm->mem[TSS_ADDR + TSS_LIMIT] = 0xff;                    /* the bitmap's terminating byte */
}

void vm_load_boot_image(vm* vm) {
  write_page_tables(vm);
  write_gdt(vm);
  write_tss(vm);
  size_t code_size = (size_t)(guest_code_end - guest_code_start);
  memcpy(vm->mem + CODE_ADDR, guest_code_start, code_size);
}

void vm_destroy(vm* vm) {
  if (vm->mem) munmap(vm->mem, vm->mem_size);
  if (vm->vm_fd >= 0) close(vm->vm_fd);
  if (vm->kvm_fd >= 0) close(vm->kvm_fd);
  free(vm->cpuid);
  memset(vm, 0, sizeof *vm);
  vm->kvm_fd = vm->vm_fd = -1;
}
