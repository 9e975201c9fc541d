/*
 * copycount.c: counts the bytes a process copies in user space, for the
 * "bytes copied per request" part of `make bench`.
 *
 *   COPYCOUNT_FILE=/path LD_PRELOAD=build/copycount.so program ...
 *
 * Every call of memcpy, memmove, mempcpy and their _chk forms that goes
 * through the dynamic linker (calls from the program and from its shared
 * libraries: libevent, OpenSSL, LuaJIT) is counted, then handed to the C
 * library's own function. So is a realloc that moves a block: the C library
 * copies the old contents with its internal memcpy, which no preload sees,
 * except for a block it got from mmap, which it moves with mremap (pages,
 * not bytes; not counted). Not counted either: copies the compiler inlined
 * (small fixed-size ones: struct assignments, a few bytes), other copies
 * inside the C library (its stdio, for instance), and the kernel's copies in
 * read() and write(), which are not user space.
 *
 * The counts live in COPYCOUNT_FILE, mapped shared, so `make bench` reads
 * them while the process runs, before and after a workload:
 *
 *   offset 0: bytes copied    offset 8: calls     (native 64-bit integers)
 *
 * Without COPYCOUNT_FILE (or if it cannot be mapped) nothing is recorded.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <fcntl.h>
#include <malloc.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

struct counts {
    uint64_t bytes;
    uint64_t calls;
};

typedef void *(*copy_fn)(void *, const void *, size_t);
typedef void *(*realloc_fn)(void *, size_t);

static struct counts *counts;
static copy_fn real_memcpy, real_memmove, real_mempcpy;
static realloc_fn real_realloc;

/* Until the real functions are known (the loader may copy before that). */
static void *
copy_bytes(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;

    if (d < s) {
        while (n--)
            *d++ = *s++;
    } else {
        while (n--)
            d[n] = s[n];
    }
    return dst;
}

static void
count(size_t n)
{
    if (counts != NULL) {
        __atomic_fetch_add(&counts->bytes, n, __ATOMIC_RELAXED);
        __atomic_fetch_add(&counts->calls, 1, __ATOMIC_RELAXED);
    }
}

__attribute__((constructor)) static void
copycount_init(void)
{
    const char *path = getenv("COPYCOUNT_FILE");
    int fd;
    void *map;

    real_memcpy = (copy_fn)dlsym(RTLD_NEXT, "memcpy");
    real_memmove = (copy_fn)dlsym(RTLD_NEXT, "memmove");
    real_mempcpy = (copy_fn)dlsym(RTLD_NEXT, "mempcpy");
    real_realloc = (realloc_fn)dlsym(RTLD_NEXT, "realloc");
    if (path == NULL || (fd = open(path, O_RDWR)) < 0)
        return;
    map = mmap(NULL, sizeof(struct counts), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (map != MAP_FAILED)
        counts = map;
}

void *
memcpy(void *dst, const void *src, size_t n)
{
    count(n);
    return real_memcpy ? real_memcpy(dst, src, n) : copy_bytes(dst, src, n);
}

void *
memmove(void *dst, const void *src, size_t n)
{
    count(n);
    return real_memmove ? real_memmove(dst, src, n) : copy_bytes(dst, src, n);
}

void *
mempcpy(void *dst, const void *src, size_t n)
{
    count(n);
    if (real_mempcpy)
        return real_mempcpy(dst, src, n);
    return (char *)copy_bytes(dst, src, n) + n;
}

/*
 * glibc marks a block it got from mmap with bit 1 of the size word just
 * before it; realloc moves such a block with mremap.
 */
static int
block_is_mapped(void *p)
{
    return (((size_t *)p)[-1] & 2) != 0;
}

void *
realloc(void *p, size_t n)
{
    size_t old;
    int mapped;
    void *q;

    if (real_realloc == NULL)
        real_realloc = (realloc_fn)dlsym(RTLD_NEXT, "realloc");
    if (p == NULL)
        return real_realloc(p, n);
    old = malloc_usable_size(p);
    mapped = block_is_mapped(p);
    q = real_realloc(p, n);
    if (q != NULL && q != p && !mapped)
        count(old < n ? old : n);
    return q;
}

void *
__memcpy_chk(void *dst, const void *src, size_t n, size_t dst_len)
{
    if (n > dst_len)
        abort();
    return memcpy(dst, src, n);
}

void *
__memmove_chk(void *dst, const void *src, size_t n, size_t dst_len)
{
    if (n > dst_len)
        abort();
    return memmove(dst, src, n);
}

void *
__mempcpy_chk(void *dst, const void *src, size_t n, size_t dst_len)
{
    if (n > dst_len)
        abort();
    return mempcpy(dst, src, n);
}
