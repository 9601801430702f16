// The floor of many one-page faults in flight on this machine, in C (docs/BENCHMARKS.md §26): what issue #9's
// "slow store" and "cold-random" targets ask of the engine, with none of the engine — one process, no protocol, no
// managed code, a handler that does only what a fill must.
//   gcc -O2 -pthread -o /tmp/probe-uffd-concurrent bench/probe-uffd-concurrent.c
//   /tmp/probe-uffd-concurrent delay 1000 THREADS PAGES      every fill takes 1000 µs more (a timer, like a network store)
//   /tmp/probe-uffd-concurrent file PATH THREADS PAGES       every fill is a 4 KiB pread of PATH (drop caches first: cold)
//   /tmp/probe-uffd-concurrent xdelay 1000 THREADS PAGES     (xdelay, xfile: the handlers in a child process, as a pager)
//   /tmp/probe-uffd-concurrent pread PATH THREADS PAGES      the baseline: THREADS threads pread 4 KiB pages, no uffd
// THREADS threads touch distinct random pages (a shuffled order) of an anonymous region registered MISSING, one load each. The handler:
// HANDLERS threads (= THREADS, at most 64) each block in read() on the uffd; in file mode a handler preads the page
// and installs it (UFFDIO_COPY, which wakes the toucher); in delay mode it queues the fault, and one completion thread
// sleeps until each fault is due (FIFO: the delay is constant) and installs it. Prints pages/s and the p50 touch.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
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
#include <sys/prctl.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

static int uffd, fd, threads, delay_mode, pread_mode;
static long pages, delay_ns;
static char *region;
static double *latency;
static atomic_long latency_n;

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e9 + t.tv_nsec; }
static unsigned long long next(unsigned long long *s) { *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17; return *s; }

// Delay mode's FIFO of (address, due time): handlers push, the completion thread pops.
#define QCAP (1 << 20)
static unsigned long qaddr[QCAP];
static double qdue[QCAP];
static long qhead, qtail;
static pthread_mutex_t qlock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t qcond = PTHREAD_COND_INITIALIZER;

static void install(unsigned long addr, const char *src) {
    struct uffdio_copy c = {.dst = addr & ~4095ul, .src = (unsigned long)src, .len = 4096};
    if (ioctl(uffd, UFFDIO_COPY, &c) && errno != EEXIST) { perror("UFFDIO_COPY"); exit(1); }
}

static void *handler(void *arg) {
    (void)arg;
    char *buffer = aligned_alloc(4096, 4096);
    memset(buffer, 7, 4096);
    struct uffd_msg msgs[16];
    for (;;) {
        ssize_t n = read(uffd, msgs, sizeof msgs);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            if (errno == EBADF) return NULL;
            perror("read(uffd)"); exit(1);
        }
        for (ssize_t i = 0; i < n / (ssize_t)sizeof msgs[0]; i++) {
            unsigned long addr = msgs[i].arg.pagefault.address;
            if (delay_mode) {
                pthread_mutex_lock(&qlock);
                qaddr[qtail % QCAP] = addr;
                qdue[qtail % QCAP] = now() + delay_ns;
                qtail++;
                pthread_cond_signal(&qcond);
                pthread_mutex_unlock(&qlock);
            } else {
                long p = (long)((addr - (unsigned long)region) / 4096);
                if (pread(fd, buffer, 4096, p * 4096) != 4096) { perror("pread"); exit(1); }
                install(addr, buffer);
            }
        }
    }
}

static void *completer(void *arg) {
    (void)arg;
    char *buffer = aligned_alloc(4096, 4096);
    memset(buffer, 7, 4096);
    for (;;) {
        pthread_mutex_lock(&qlock);
        while (qhead == qtail) pthread_cond_wait(&qcond, &qlock);
        unsigned long addr = qaddr[qhead % QCAP];
        double due = qdue[qhead % QCAP];
        qhead++;
        pthread_mutex_unlock(&qlock);
        double wait = due - now();
        if (wait > 0) {
            struct timespec t = {.tv_sec = (time_t)(wait / 1e9), .tv_nsec = (long)((long long)wait % 1000000000)};
            nanosleep(&t, NULL);
        }
        install(addr, buffer);
    }
    return NULL;
}

static long *order; // a random permutation of the pages: each touch takes the next, so every touch is a fault
static atomic_long cursor;

static void *toucher(void *arg) {
    (void)arg;
    char *buffer = aligned_alloc(4096, 4096);
    for (;;) {
        long i = atomic_fetch_add(&cursor, 1);
        if (i >= pages) break;
        long p = order[i];
        double t0 = now();
        if (pread_mode) {
            if (pread(fd, buffer, 4096, p * 4096) != 4096) { perror("pread"); exit(1); }
        } else {
            (void)*(volatile char *)(region + p * 4096);
        }
        latency[atomic_fetch_add(&latency_n, 1)] = now() - t0;
    }
    return NULL;
}

static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return x < y ? -1 : x > y; }

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: %s delay US|file PATH|pread PATH THREADS PAGES\n", argv[0]); return 2; }
    int separate = argv[1][0] == 'x'; // xdelay, xfile: the handler threads live in a child process, as a pager does
    if (separate) argv[1]++;
    delay_mode = !strcmp(argv[1], "delay");
    pread_mode = !strcmp(argv[1], "pread");
    threads = atoi(argv[3]);
    pages = atol(argv[4]);
    if (delay_mode) {
        delay_ns = atol(argv[2]) * 1000;
    } else {
        fd = open(argv[2], O_RDONLY);
        if (fd < 0) { perror(argv[2]); return 1; }
        struct stat st; fstat(fd, &st);
        if (st.st_size / 4096 < pages) pages = st.st_size / 4096;
    }
    region = mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    madvise(region, pages * 4096, MADV_NOHUGEPAGE);
    order = malloc(pages * sizeof(long));
    unsigned long long seed = 0x9E3779B97F4A7C15ull;
    for (long i = 0; i < pages; i++) order[i] = i;
    for (long i = pages - 1; i > 0; i--) { long j = (long)(next(&seed) % (unsigned long long)(i + 1)), x = order[i]; order[i] = order[j]; order[j] = x; }
    latency = calloc(pages + threads, sizeof(double));
    pthread_t t;
    if (!pread_mode) {
        uffd = syscall(SYS_userfaultfd, O_CLOEXEC);
        struct uffdio_api api = {.api = UFFD_API};
        if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api)) { perror("userfaultfd"); return 1; }
        struct uffdio_register r = {.range = {(unsigned long)region, pages * 4096}, .mode = UFFDIO_REGISTER_MODE_MISSING};
        if (ioctl(uffd, UFFDIO_REGISTER, &r)) { perror("UFFDIO_REGISTER"); return 1; }
        int handlers = delay_mode ? 2 : (threads < 64 ? threads : 64);
        pid_t child = separate ? fork() : 0;
        if (child == 0) {
            // The child installs into the parent's memory through the inherited uffd (its own copy of the region
            // is not registered: no UFFD_FEATURE_EVENT_FORK).
            for (int i = 0; i < handlers; i++) pthread_create(&t, NULL, handler, NULL);
            if (delay_mode) pthread_create(&t, NULL, completer, NULL);
            if (separate) { prctl(PR_SET_PDEATHSIG, SIGKILL); for (;;) pause(); }
        }
    }
    pthread_t *ts = calloc(threads, sizeof *ts);
    double t0 = now();
    for (long i = 0; i < threads; i++) pthread_create(&ts[i], NULL, toucher, (void *)i);
    for (int i = 0; i < threads; i++) pthread_join(ts[i], NULL);
    double seconds = (now() - t0) / 1e9;
    long n = atomic_load(&latency_n);
    qsort(latency, n, sizeof(double), cmp);
    printf("%-6s threads %3d  pages %7ld  pages/s %8.0f  p50 %9.0f ns  p99 %9.0f ns\n", argv[1], threads, n, n / seconds,
           latency[n / 2], latency[n * 99 / 100]);
    return 0;
}
