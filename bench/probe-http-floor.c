// The floor of a sequential load over HTTP into mapped memory on this machine, in C (docs/BENCHMARKS.md §26): issue
// #12 compares Paging's shmem arena with 8 streams of 1 MiB range GETs into a buffer that is reused (the harness's
// kernel/http-ranges). This does both in C, in one process, against the same nginx on loopback:
//   buffer: 8 threads, each GETs its next 1 MiB range (HTTP/1.1, keep-alive) into one reused 1 MiB buffer.
//   memfd:  the same, then what a shmem fill must do with the bytes: pwrite(2) them into a memfd (new page-cache
//           pages), UFFDIO_CONTINUE the 1 MiB into a MINOR-registered read-only mapping of it, and one load per
//           4 KiB page through that mapping (the reader's first touch of each new page-table entry).
//   gcc -O2 -pthread -o /tmp/probe-http-floor bench/probe-http-floor.c
//   /tmp/probe-http-floor PORT /PATH BYTES        (nginx serving a file of BYTES at http://127.0.0.1:PORT/PATH)
//   /tmp/probe-http-floor PORT /PATH BYTES write  (instead of memfd: write, below)
//   write:  no network at all: the 8 threads only pwrite(2) their next 1 MiB of a new memfd from a reused buffer:
//           new page-cache pages, each written once (the writes cover whole pages, so shmem does not zero them). A
//           shmem fill must at least put the bytes into new pages, so buffer / write bounds the ratio any shmem
//           arena can reach against the baseline on the same memory (fallocate alone, which never touches the
//           pages' contents, takes 0.45-0.63 us per page: the cost is in the first write to each new page).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define STREAMS 8
#define RANGE (1 << 20)
static int port, mode, uffd, memfd, writeonly;
static const char *path;
static long total;
static atomic_long cursor;
static char *view;

// The machine's busy CPU time so far (all vCPUs, every process, steal included), in seconds: /proc/stat's first line.
static double busy_seconds(void) {
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    if (!f || fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) != 8) { perror("/proc/stat"); exit(1); }
    fclose(f);
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / sysconf(_SC_CLK_TCK);
}

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e9 + t.tv_nsec; }

static int connect_to(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(s, (struct sockaddr *)&a, sizeof a)) { perror("connect"); exit(1); }
    return s;
}

// One GET of [start, start+len): headers parsed for Content-Length, the body read into buf.
static void get(int s, long start, long len, char *buf) {
    char req[512], head[4096];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nRange: bytes=%ld-%ld\r\nAccept-Encoding: identity\r\n\r\n", path, start, start + len - 1);
    if (write(s, req, n) != n) { perror("write"); exit(1); }
    int got = 0;
    char *end = NULL;
    while (!end) {
        ssize_t r = read(s, head + got, sizeof head - 1 - got);
        if (r <= 0) { perror("read head"); exit(1); }
        got += r;
        head[got] = 0;
        end = strstr(head, "\r\n\r\n");
    }
    if (strncmp(head, "HTTP/1.1 206", 12)) { fprintf(stderr, "not 206: %.40s\n", head); exit(1); }
    char *cl = strcasestr(head, "Content-Length:");
    long length = cl ? atol(cl + 15) : -1;
    if (length != len) { fprintf(stderr, "Content-Length %ld for %ld\n", length, len); exit(1); }
    long have = got - (end + 4 - head);
    memcpy(buf, end + 4, have);
    while (have < len) {
        ssize_t r = read(s, buf + have, len - have);
        if (r <= 0) { perror("read body"); exit(1); }
        have += r;
    }
}

static void *stream(void *arg) {
    (void)arg;
    int s = writeonly && mode ? -1 : connect_to();
    char *buf = aligned_alloc(4096, RANGE);
    memset(buf, 0x5a, RANGE);
    for (;;) {
        long start = atomic_fetch_add(&cursor, RANGE);
        if (start >= total) break;
        long len = total - start < RANGE ? total - start : RANGE;
        if (s >= 0) get(s, start, len, buf);
        if (mode == 0) continue;
        for (long done = 0; done < len;) {
            ssize_t w = pwrite(memfd, buf + done, len - done, start + done);
            if (w <= 0) { perror("pwrite(memfd)"); exit(1); }
            done += w;
        }
        if (s < 0) continue;
        struct uffdio_continue c = {.range = {(unsigned long)(view + start), (unsigned long)len}};
        if (ioctl(uffd, UFFDIO_CONTINUE, &c)) { perror("UFFDIO_CONTINUE"); exit(1); }
        volatile long sum = 0;
        for (long o = 0; o < len; o += 4096) sum += view[start + o];
    }
    if (s >= 0) close(s);
    free(buf);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 4 || argc > 5 || (argc == 5 && strcmp(argv[4], "write"))) { fprintf(stderr, "usage: %s PORT /PATH BYTES [write]\n", argv[0]); return 2; }
    writeonly = argc == 5;
    port = atoi(argv[1]);
    path = argv[2];
    total = atol(argv[3]) & ~4095L;
    for (int rep = 0; rep < 2; rep++) {
        for (mode = 0; mode < 2; mode++) {
            if (mode == 1) {
                memfd = memfd_create("probe", MFD_CLOEXEC);
                ftruncate(memfd, total);
            }
            if (mode == 1 && !writeonly) {
                view = mmap(NULL, total, PROT_READ, MAP_SHARED, memfd, 0);
                uffd = syscall(SYS_userfaultfd, O_CLOEXEC);
                struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_MINOR_SHMEM};
                if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api)) { perror("userfaultfd"); return 1; }
                struct uffdio_register r = {.range = {(unsigned long)view, total}, .mode = UFFDIO_REGISTER_MODE_MINOR};
                if (ioctl(uffd, UFFDIO_REGISTER, &r)) { perror("UFFDIO_REGISTER"); return 1; }
            }
            atomic_store(&cursor, 0);
            pthread_t t[STREAMS];
            double b0 = busy_seconds(), t0 = now();
            for (int i = 0; i < STREAMS; i++) pthread_create(&t[i], NULL, stream, NULL);
            for (int i = 0; i < STREAMS; i++) pthread_join(t[i], NULL);
            double s = (now() - t0) / 1e9, busy = busy_seconds() - b0;
            printf("%-6s %d x 1 MiB ranges: %.3f GB/s (%.0f ns per 4 KiB), CPU busy %.2f s = %.0f%% of %ld vCPUs\n", mode ? (writeonly ? "write" : "memfd") : "buffer", STREAMS,
                   total / s / 1e9, s * 1e9 / (total / 4096), busy, 100 * busy / s / sysconf(_SC_NPROCESSORS_ONLN), sysconf(_SC_NPROCESSORS_ONLN));
            fflush(stdout);
            if (mode == 1) {
                if (!writeonly) {
                    munmap(view, total);
                    close(uffd);
                }
                close(memfd);
            }
        }
    }
    return 0;
}
