// What the first access to a freshly mapped 4 KiB page costs, by how the page was mapped (docs/BENCHMARKS.md §20).
// gcc -O2 -o /tmp/probe-first-touch bench/probe-first-touch.c && /tmp/probe-first-touch 128      (MiB per case)
// Each case: a new range, filled in 64 KiB calls (UFFDIO_COPY for anonymous memory, pwrite into a memfd then
// UFFDIO_CONTINUE for shmem), then one load per page (the first access), one more pass of loads, and, where the
// mapping is writable, one store per page. ns per page.
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#define RUN 65536

static size_t n;
static volatile long sink;
static int uffd;
static char *src;

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e9 + t.tv_nsec; }
static double loads(char *p) { double a = now(); for (size_t o = 0; o < n; o += 4096) sink += p[o]; return (now() - a) / (n / 4096); }
static double stores(char *p) { double a = now(); for (size_t o = 0; o < n; o += 4096) p[o] = 9; return (now() - a) / (n / 4096); }
static void check(int rc, const char *what) { if (rc) { perror(what); exit(1); } }

static char *anon(int prot, int wp) {
    char *p = mmap(0, n, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    madvise(p, n, MADV_NOHUGEPAGE);
    struct uffdio_register r = { .range = { (unsigned long)p, n }, .mode = UFFDIO_REGISTER_MODE_MISSING | (wp ? UFFDIO_REGISTER_MODE_WP : 0) };
    check(ioctl(uffd, UFFDIO_REGISTER, &r), "UFFDIO_REGISTER");
    for (size_t o = 0; o < n; o += RUN) {
        struct uffdio_copy c = { .dst = (unsigned long)p + o, .src = (unsigned long)src, .len = RUN, .mode = wp ? UFFDIO_COPY_MODE_WP : 0 };
        check(ioctl(uffd, UFFDIO_COPY, &c), "UFFDIO_COPY");
    }
    return p;
}

static char *shmem(int prot) {
    int fd = memfd_create("probe", 0);
    check(ftruncate(fd, n), "ftruncate");
    for (size_t o = 0; o < n; o += RUN) if (pwrite(fd, src, RUN, o) != RUN) check(1, "pwrite");
    char *p = mmap(0, n, prot, MAP_SHARED, fd, 0);
    struct uffdio_register r = { .range = { (unsigned long)p, n }, .mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_MINOR };
    check(ioctl(uffd, UFFDIO_REGISTER, &r), "UFFDIO_REGISTER");
    for (size_t o = 0; o < n; o += RUN) {
        struct uffdio_continue c = { .range = { (unsigned long)p + o, RUN } };
        check(ioctl(uffd, UFFDIO_CONTINUE, &c), "UFFDIO_CONTINUE");
    }
    return p;
}

static void report(const char *what, char *p, int writable) {
    double first = loads(p), second = loads(p);
    if (writable) printf("%-44s first load %6.0f  second %4.0f  then a store %6.0f\n", what, first, second, stores(p));
    else printf("%-44s first load %6.0f  second %4.0f\n", what, first, second);
}

int main(int argc, char **argv) {
    n = (size_t)(argc > 1 ? atol(argv[1]) : 128) << 20;
    src = aligned_alloc(4096, RUN);
    memset(src, 7, RUN);
    uffd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_WP_ASYNC };
    check(ioctl(uffd, UFFDIO_API, &api), "UFFDIO_API");
    report("anonymous, PROT_READ|PROT_WRITE, COPY", anon(PROT_READ | PROT_WRITE, 0), 1);
    report("anonymous, PROT_READ, COPY", anon(PROT_READ, 0), 0);
    report("anonymous, PROT_READ|PROT_WRITE, COPY_MODE_WP", anon(PROT_READ | PROT_WRITE, 1), 1);
    report("shmem, PROT_READ|PROT_WRITE, CONTINUE", shmem(PROT_READ | PROT_WRITE), 1);
    report("shmem, PROT_READ, CONTINUE", shmem(PROT_READ), 0);
    char *plain = mmap(0, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    madvise(plain, n, MADV_NOHUGEPAGE);
    printf("%-44s first store %6.0f\n", "anonymous, no uffd (the kernel's own fault)", stores(plain));
    return 0;
}
