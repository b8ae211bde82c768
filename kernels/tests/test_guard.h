/* Inputs against an inaccessible page, for the C kernel tests (test_x86.c, test_x86_float.c, test_fused.h): a kernel
 * that reads outside its input faults. guarded(n, at_end) returns n bytes in an mmap'ed region with an inaccessible
 * page right after them (at_end) or right before them (elsewhere: a malloc'ed block); the previous block is
 * released. guard_init() once first, guard_release() at the end. */
#ifndef DFX_TEST_GUARD_H
#define DFX_TEST_GUARD_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#if defined(__unix__) || defined(__APPLE__)
#define GUARD_PAGES 1
#include <sys/mman.h>
#include <unistd.h>
#else
#define GUARD_PAGES 0
#endif

static uint8_t *region;
#if GUARD_PAGES
static size_t page, region_size;
#endif

static void guard_init(void)
{
#if GUARD_PAGES
    page = (size_t)sysconf(_SC_PAGESIZE);
#endif
}

static void *guarded(size_t n, int at_end)
{
#if !GUARD_PAGES
    (void)at_end;
    free(region);
    region = malloc(n ? n : 1);
    if (!region) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return region;
#else
    size_t body = (n + page - 1) / page * page;
    if (region) munmap(region, region_size);
    region_size = body + 2 * page;
    region = mmap(NULL, region_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    if (mprotect(region, page, PROT_NONE) || mprotect(region + page + body, page, PROT_NONE)) {
        perror("mprotect");
        exit(1);
    }
    return at_end ? region + page + body - n : region + page;
#endif
}

static void guard_release(void)
{
#if GUARD_PAGES
    if (region) munmap(region, region_size);
#else
    free(region);
#endif
    region = NULL;
}

#endif
