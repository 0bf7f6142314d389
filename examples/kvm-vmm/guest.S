/* guest.S: the guest. 64-bit code run at CPL3 (see kvm-notes: native speed there). The VMM copies
 * the bytes between guest_code_start and guest_code_end to CODE_ADDR; the code uses no absolute
 * addresses of its own labels, so it runs wherever it is copied.
 *
 * Work loop: pick a data page with an LCG, write a full-page pattern derived from a global write
 * counter and the page number (first qword = the counter), and keep two ledgers that depend on
 * every page's latest counter: CTRL_LEDGER in memory (XOR of h(page, counter)) and xmm0 (sum of
 * counters). After every BATCH_PAGES pages read PORT_CMD: 0 = go on, 1 = verify.
 *
 * Verify: recompute both ledgers from the pages' contents (each page is all zero or the pattern
 * of its own first qword), compare, report through PORT_RESULT, stop through PORT_EXIT.
 *
 * Registers: r12 LCG, r13 counter, r14 data pages, r15 DATA_ADDR, rbx CTRL_ADDR, xmm0 sum.
 * Helpers clobber rax, rdx, r9, r10, xmm1.
 */
#include "layout.h"

        .section .rodata.kvm_vmm_guest, "a"
        .globl guest_code_start
        .globl guest_code_end
        .code64
guest_code_start:
        pxor    %xmm0, %xmm0

work:   mov     $BATCH_PAGES, %ebp
one_page:
        /* r12 = r12 * LCG_MUL + LCG_ADD; page = (r12 >> 32) * pages >> 32 (uniform, no div). */
        movabs  $LCG_MUL, %rax
        imul    %rax, %r12
        movabs  $LCG_ADD, %rax
        add     %rax, %r12
        mov     %r12, %rax
        shr     $32, %rax
        imul    %r14, %rax
        shr     $32, %rax
        mov     %rax, %rsi              /* rsi = page */
        mov     %rsi, %rdi
        shl     $12, %rdi
        add     %r15, %rdi              /* rdi = its address */
        mov     (%rdi), %rcx            /* its previous counter (0: never written) */
        test    %rcx, %rcx
        jz      1f
        call    ledger_xor              /* take the old version out of both ledgers */
        movq    %rcx, %xmm1
        psubq   %xmm1, %xmm0
1:      inc     %r13
        mov     %r13, %rcx
        call    write_page
        call    ledger_xor              /* and the new one in */
        movq    %rcx, %xmm1
        paddq   %xmm1, %xmm0
        dec     %ebp
        jnz     one_page
        mov     %r13, CTRL_COUNTER(%rbx)
        mov     $PORT_CMD, %dx
        in      %dx, %eax
        cmp     $CMD_VERIFY, %eax
        je      verify
        jmp     work

/* rax = seed(rcx = counter, rsi = page). Clobbers rdx. */
seed:   movabs  $K_SEED_COUNTER, %rax
        imul    %rcx, %rax
        movabs  $K_SEED_PAGE, %rdx
        imul    %rsi, %rdx
        xor     %rdx, %rax
        ret

/* rax = h(page, counter): seed through a 64-bit finaliser. Clobbers rdx. */
hash:   call    seed
        movabs  $K_HASH_XOR, %rdx
        xor     %rdx, %rax
        mov     %rax, %rdx
        shr     $31, %rdx
        xor     %rdx, %rax
        movabs  $K_HASH_MUL, %rdx
        imul    %rdx, %rax
        mov     %rax, %rdx
        shr     $29, %rdx
        xor     %rdx, %rax
        ret

/* CTRL_LEDGER ^= h(rsi, rcx). */
ledger_xor:
        call    hash
        xor     %rax, CTRL_LEDGER(%rbx)
        ret

/* Page at rdi := counter rcx, then qword i (1..511) = seed + i * K_STEP. */
write_page:
        call    seed
        mov     %rcx, (%rdi)
        movabs  $K_STEP, %rdx
        lea     (%rax, %rdx), %r9
        mov     $1, %r10d
2:      mov     %r9, (%rdi, %r10, 8)
        add     %rdx, %r9
        inc     %r10d
        cmp     $512, %r10d
        jb      2b
        ret

/* ---- Self-check. r11 = recomputed ledger, r8 = recomputed sum, rsi = page, rdi = address,
 * rbp = pages found written. */
verify: xor     %r11d, %r11d
        xor     %r8d, %r8d
        xor     %ebp, %ebp
        xor     %esi, %esi
        mov     %r15, %rdi
check_page:
        mov     (%rdi), %rcx
        test    %rcx, %rcx
        jnz     check_pattern
        mov     $1, %r10d               /* never written: all zero */
3:      mov     (%rdi, %r10, 8), %rax
        test    %rax, %rax
        jnz     bad_page
        inc     %r10d
        cmp     $512, %r10d
        jb      3b
        jmp     next_page
check_pattern:
        call    seed
        movabs  $K_STEP, %rdx
        lea     (%rax, %rdx), %r9
        mov     $1, %r10d
4:      cmp     %r9, (%rdi, %r10, 8)
        jne     bad_page
        add     %rdx, %r9
        inc     %r10d
        cmp     $512, %r10d
        jb      4b
        call    hash
        xor     %rax, %r11
        add     %rcx, %r8
        inc     %rbp
next_page:
        add     $GUEST_PAGE_SIZE, %rdi
        inc     %rsi
        cmp     %r14, %rsi
        jb      check_page

        mov     %r11, CTRL_CHECK_LEDGER(%rbx)
        mov     %r8, CTRL_CHECK_SUM(%rbx)
        movq    %xmm0, %rax
        mov     %rax, CTRL_RUNNING_SUM(%rbx)
        mov     %rbp, CTRL_PAGES_WRITTEN(%rbx)
        mov     $RESULT_FAIL_LEDGER, %eax
        cmp     CTRL_LEDGER(%rbx), %r11
        jne     report
        mov     $RESULT_FAIL_SUM, %eax
        movq    %xmm0, %rdx
        cmp     %rdx, %r8
        jne     report
        mov     $RESULT_PASS, %eax
        jmp     report
bad_page:
        mov     %rsi, CTRL_BAD_PAGE(%rbx)
        mov     $RESULT_FAIL_PAGE, %eax
report: mov     %eax, CTRL_RESULT(%rbx)
        mov     %r13, CTRL_COUNTER(%rbx)
        mov     $PORT_RESULT, %dx
        out     %eax, %dx
        mov     $PORT_EXIT, %dx
        out     %eax, %dx
5:      jmp     5b
guest_code_end:

        .section .note.GNU-stack, "", @progbits
