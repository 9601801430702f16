// The floor of a buffer-pool miss on this machine, three ways, in C (docs/BENCHMARKS.md §26): what any design that
// maps a page per miss (vmcache, mmap, Paging) pays against a classic pool that reads into frames it never unmaps.
//   gcc -O2 -pthread -o /tmp/probe-bufferpool-floor bench/probe-bufferpool-floor.c
//   /tmp/probe-bufferpool-floor FILE BUDGET_MIB THREADS SECONDS        (FILE: ≥ 4 × the budget, on a real disk)
// Every operation is a miss: a uniformly random 4 KiB page of FILE that is not resident, read with O_DIRECT.
//   pool:    pread into the next of the thread's frames (allocated and touched once, never unmapped).
//   vmcache: pread straight into the page's address in one anonymous region (the kernel allocates and maps the
//            page inside the read); the thread's oldest page is evicted with MADV_DONTNEED once its share of the
//            budget is full (vmcache, SIGMOD'23, without exmap).
//   uffd:    pread into a thread buffer, then UFFDIO_COPY into the region (registered MISSING; Paging's Fetch in C);
//            evicted with MADV_DONTNEED.
//   mmap:    (MODE=mmap, run inside a memory cgroup whose memory.max is the budget) random loads of the file mapped
//            MAP_SHARED with MADV_RANDOM; misses are the kernel's major faults.
// MODE=<name> runs one mode only. Each mode reports misses/s and the mean ns of its three parts per miss (read, install, evict).
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

enum { POOL, VMCACHE, UFFD, BATCH, MMAP };
static const char *names[] = {"pool", "vmcache", "uffd", "batch64", "mmap"};
static int pidfd;
static int mode, fd, uffd, threads;
static long pages, frames_per_thread;
static char *region;
static _Atomic unsigned char *resident;
static atomic_int stop;

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e9 + t.tv_nsec; }

struct worker { pthread_t t; long misses; double read_ns, install_ns, evict_ns; unsigned long long seed; };

static unsigned long long next(unsigned long long *s) { *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17; return *s; }

static void *run(void *arg) {
    struct worker *w = arg;
    char *frames = NULL, *buffer = aligned_alloc(4096, 4096);
    long *ring = calloc(frames_per_thread, sizeof(long)), head = 0, count = 0;
    if (mode == POOL) {
        frames = aligned_alloc(4096, frames_per_thread * 4096);
        memset(frames, 1, frames_per_thread * 4096);
    }
    memset(buffer, 1, 4096);
    while (mode == MMAP && !atomic_load_explicit(&stop, memory_order_relaxed)) {
        // Random loads of the mapped file; the kernel's page cache (bounded by the cgroup) decides what is a miss:
        // counted as major faults, not here.
        for (int i = 0; i < 64; i++) (void)*(volatile char *)(region + (long)(next(&w->seed) % (unsigned long long)pages) * 4096);
        w->misses += 64;
    }
    while (mode != MMAP && !atomic_load_explicit(&stop, memory_order_relaxed)) {
        long p;
        do {
            p = (long)(next(&w->seed) % (unsigned long long)pages);
        } while (mode != POOL && atomic_exchange(&resident[p], 1)); // a miss: not resident (claimed)
        double t0 = now(), t1, t2;
        if (mode == POOL) {
            char *frame = frames + (head++ % frames_per_thread) * 4096;
            if (pread(fd, frame, 4096, p * 4096) != 4096) { perror("pread"); exit(1); }
            t1 = now();
            (void)*(volatile char *)frame;
            t2 = now();
            w->read_ns += t1 - t0;
            w->misses++;
            continue;
        }
        if (mode == VMCACHE || mode == BATCH) {
            if (pread(fd, region + p * 4096, 4096, p * 4096) != 4096) { perror("pread into region"); exit(1); }
            t1 = now();
        } else {
            if (pread(fd, buffer, 4096, p * 4096) != 4096) { perror("pread"); exit(1); }
            t1 = now();
            struct uffdio_copy c = {.dst = (unsigned long)(region + p * 4096), .src = (unsigned long)buffer, .len = 4096};
            if (ioctl(uffd, UFFDIO_COPY, &c)) { perror("UFFDIO_COPY"); exit(1); }
        }
        (void)*(volatile char *)(region + p * 4096);
        t2 = now();
        if (mode == BATCH && count == frames_per_thread) {
            // The 64 oldest pages in one process_madvise(MADV_DONTNEED) on this process: one TLB flush for all
            // (Linux 6.16 batches the flushes of a vector; 6.13 allows any advice on the calling process).
            struct iovec v[64];
            for (int i = 0; i < 64; i++) v[i] = (struct iovec){region + ring[(head + i) % frames_per_thread] * 4096, 4096};
            if (syscall(SYS_process_madvise, pidfd, v, 64, MADV_DONTNEED, 0) != 64 * 4096) { perror("process_madvise"); exit(1); }
            for (int i = 0; i < 64; i++) atomic_store(&resident[ring[(head + i) % frames_per_thread]], 0);
            count -= 64;
        }
        if (count == frames_per_thread) {
            long victim = ring[head];
            if (madvise(region + victim * 4096, 4096, MADV_DONTNEED)) { perror("madvise"); exit(1); }
            atomic_store(&resident[victim], 0);
            count--;
        }
        w->evict_ns += now() - t2;
        ring[head] = p;
        head = (head + 1) % frames_per_thread;
        count++;
        w->read_ns += t1 - t0;
        w->install_ns += t2 - t1;
        w->misses++;
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: %s FILE BUDGET_MIB THREADS SECONDS\n", argv[0]); return 2; }
    fd = open(argv[1], O_RDONLY | O_DIRECT);
    if (fd < 0) { perror(argv[1]); return 1; }
    struct stat st; fstat(fd, &st);
    pages = st.st_size / 4096;
    long budget = atol(argv[2]) << 20;
    threads = atoi(argv[3]);
    double seconds = atof(argv[4]);
    frames_per_thread = budget / 4096 / threads;
    if (pages < 4 * budget / 4096) { fprintf(stderr, "the file should be at least 4 x the budget\n"); return 2; }
    pidfd = syscall(SYS_pidfd_open, getpid(), 0);
    const char *only = getenv("MODE");
    for (mode = POOL; mode <= MMAP; mode++) {
        if (only ? strcmp(only, names[mode]) != 0 : mode == MMAP) continue;
        if (mode == MMAP) {
            int buffered = open(argv[1], O_RDONLY);
            region = mmap(NULL, pages * 4096, PROT_READ, MAP_SHARED, buffered, 0);
            madvise(region, pages * 4096, MADV_RANDOM);
            close(buffered);
        } else
        region = mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        madvise(region, pages * 4096, MADV_NOHUGEPAGE);
        resident = calloc(pages, 1);
        if (mode == UFFD) {
            uffd = syscall(SYS_userfaultfd, O_CLOEXEC);
            struct uffdio_api api = {.api = UFFD_API};
            if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api)) { perror("userfaultfd"); return 1; }
            struct uffdio_register r = {.range = {(unsigned long)region, pages * 4096}, .mode = UFFDIO_REGISTER_MODE_MISSING};
            if (ioctl(uffd, UFFDIO_REGISTER, &r)) { perror("UFFDIO_REGISTER"); return 1; }
        }
        struct worker *w = calloc(threads, sizeof *w);
        // Warm-up: fill the budget (untimed), so every measured miss also evicts.
        atomic_store(&stop, 0);
        for (int i = 0; i < threads; i++) { w[i].seed = 0x9E3779B97F4A7C15ull * (i + 1 + 17 * mode); pthread_create(&w[i].t, NULL, run, &w[i]); }
        for (;;) {
            long total = 0;
            for (int i = 0; i < threads; i++) total += w[i].misses;
            if (total >= frames_per_thread * threads * (mode == MMAP ? 4 : 1)) break;
            usleep(10000);
        }
        long before[64]; double r0[64], i0[64], e0[64];
        for (int i = 0; i < threads; i++) { before[i] = w[i].misses; r0[i] = w[i].read_ns; i0[i] = w[i].install_ns; e0[i] = w[i].evict_ns; }
        struct rusage u0, u1;
        getrusage(RUSAGE_SELF, &u0);
        double t0 = now();
        usleep((useconds_t)(seconds * 1e6));
        getrusage(RUSAGE_SELF, &u1);
        long misses = 0; double rd = 0, in = 0, ev = 0;
        for (int i = 0; i < threads; i++) { misses += w[i].misses - before[i]; rd += w[i].read_ns - r0[i]; in += w[i].install_ns - i0[i]; ev += w[i].evict_ns - e0[i]; }
        double elapsed = (now() - t0) / 1e9;
        if (mode == MMAP) {
            printf("%-8s threads %d  misses/s %9.0f  (major faults; loads/s %.0f)\n", names[mode], threads,
                   (u1.ru_majflt - u0.ru_majflt) / elapsed, misses / elapsed);
            atomic_store(&stop, 1);
            for (int i = 0; i < threads; i++) pthread_join(w[i].t, NULL);
            munmap(region, pages * 4096);
            continue;
        }
        atomic_store(&stop, 1);
        for (int i = 0; i < threads; i++) pthread_join(w[i].t, NULL);
        printf("%-8s threads %d  misses/s %9.0f  per miss: read %7.0f ns  install %7.0f ns  evict %7.0f ns\n",
               names[mode], threads, misses / elapsed, rd / misses, in / misses, ev / misses);
        fflush(stdout);
        if (mode == UFFD) close(uffd);
        munmap(region, pages * 4096);
        free((void *)resident);
        free(w);
    }
    return 0;
}
