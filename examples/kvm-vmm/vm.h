/* vm.h: the KVM virtual machine: /dev/kvm, the VM, one memory slot of guest RAM with dirty
 * logging (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2), the CPUID to give the vCPU, and the boot image
 * (long-mode page tables, GDT, TSS, guest code). */
#ifndef KVM_VMM_VM_H
#define KVM_VMM_VM_H

#include <stdbool.h>
#include <stdint.h>

struct kvm_cpuid2;

typedef struct vm {
  int kvm_fd;
  int vm_fd;
  uint8_t* mem;       /* guest RAM: guest physical 0 .. mem_size */
  uint64_t mem_size;
  uint32_t slot;      /* the memory slot of mem */
  int vcpu_mmap_size;
  uint32_t xsave_size; /* bytes of KVM_GET_XSAVE2's state */
  struct kvm_cpuid2* cpuid; /* KVM_GET_SUPPORTED_CPUID */
} vm;

/* The number of 4 KiB data pages the guest writes (after the first 2 MiB). */
uint64_t vm_data_pages(const vm* vm);

/* Opens /dev/kvm, checks the capabilities the VMM needs, creates the VM with manual dirty-log
 * protection and the memory slot. mem_size: a multiple of 2 MiB, 4 MiB .. MAX_MEM_GIB GiB.
 * prealloc: allocate all of guest RAM up front instead of on first touch. dirty_log: create the
 * slot with KVM_MEM_LOG_DIRTY_PAGES (the source). A destination does not log: under PVM a logged
 * slot makes the guest's later reads of its RAM several times slower (measured: the 1 GiB
 * self-check took 12 s instead of 1.5 s). Returns 0, or -1 after reporting what failed. */
int vm_create(vm* vm, uint64_t mem_size, bool prealloc, bool dirty_log);
/* Writes page tables, GDT, TSS and the guest code into guest RAM (the source only: the
 * destination receives them with the rest of RAM). */
void vm_load_boot_image(vm* vm);
void vm_destroy(vm* vm);

#endif
