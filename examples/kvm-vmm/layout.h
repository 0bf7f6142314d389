/* layout.h: the guest's physical memory map and I/O ports, shared by the VMM (C) and the guest
 * code (guest.S, through the C preprocessor). Guest physical = guest virtual (identity map) =
 * offset in the one memory slot. Plain #defines only, so the assembler can read it. */
#ifndef KVM_VMM_LAYOUT_H
#define KVM_VMM_LAYOUT_H

/* The first 2 MiB hold everything that is not data; the guest's data pages follow. */
#define GDT_ADDR 0x1000
#define TSS_ADDR 0x2000
#define TSS_IO_BITMAP 0x68                 /* I/O bitmap offset in the TSS */
#define TSS_LIMIT (TSS_IO_BITMAP + 0x2000) /* 65536 ports + the 0xff end byte */
#define PML4_ADDR 0x10000
#define PDPT_ADDR 0x11000
#define PD_ADDR 0x12000 /* one page directory per GiB, up to MAX_MEM_GIB */
#define CODE_ADDR 0x1C0000
#define CODE_MAX 0x10000
#define STACK_TOP 0x1EF000
#define CTRL_ADDR 0x1F0000 /* the guest's control block (below) */
#define DATA_ADDR 0x200000

#define MAX_MEM_GIB 256 /* PD_ADDR + 256 page directories end below CODE_ADDR */
#define GUEST_PAGE_SIZE 4096

/* Selectors (GDT index << 3 | RPL). */
#define SEL_USER_CODE 0x1b
#define SEL_USER_DATA 0x23
#define SEL_TSS 0x28

/* Ports. CMD: the guest reads it after every batch of pages (0 = go on, 1 = verify now).
 * RESULT: the guest writes its verdict (RESULT_PASS / RESULT_FAIL_*), details in the control
 * block. EXIT: the guest is done and will not run again. */
#define PORT_CMD 0x10
#define PORT_RESULT 0x11
#define PORT_EXIT 0x12
#define CMD_CONTINUE 0
#define CMD_VERIFY 1
#define RESULT_PASS 1
#define RESULT_FAIL_PAGE 2   /* a page is neither zero nor the pattern of its own counter */
#define RESULT_FAIL_LEDGER 3 /* the XOR ledger in memory disagrees with the pages */
#define RESULT_FAIL_SUM 4    /* the counter sum kept in xmm0 disagrees with the pages */

#define BATCH_PAGES 32

/* Control block fields (byte offsets from CTRL_ADDR). */
#define CTRL_LEDGER 0          /* running XOR over written pages of h(page, counter) */
#define CTRL_COUNTER 8         /* the write counter, stored before every CMD read */
#define CTRL_RESULT 16         /* RESULT_* */
#define CTRL_BAD_PAGE 24       /* first bad page (RESULT_FAIL_PAGE) */
#define CTRL_CHECK_LEDGER 32   /* ledger recomputed from the pages */
#define CTRL_CHECK_SUM 40      /* sum of the pages' counters */
#define CTRL_RUNNING_SUM 48    /* xmm0 at verify time */
#define CTRL_PAGES_WRITTEN 56  /* pages with a non-zero counter at verify time */

/* Initial registers: the guest's working state lives in registers (so a register lost in
 * migration shows), the ledger in memory. */
/*   r12 LCG state, r13 write counter, r14 number of data pages, r15 DATA_ADDR, rbx CTRL_ADDR,
 *   xmm0 (low qword) sum over pages of their latest counter. */

/* Pattern constants (odd 64-bit multipliers), see guest.S. */
#define K_SEED_COUNTER 0x9E3779B97F4A7C15
#define K_SEED_PAGE 0xC2B2AE3D27D4EB4F
#define K_STEP 0xD6E8FEB86659FD93
#define K_HASH_XOR 0x94D049BB133111EB
#define K_HASH_MUL 0xBF58476D1CE4E5B9
#define LCG_MUL 6364136223846793005
#define LCG_ADD 1442695040888963407

#endif
