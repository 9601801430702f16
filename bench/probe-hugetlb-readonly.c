// What a touch of a hugetlbfs page costs once UFFDIO_CONTINUE has mapped it, read-only against read-write
// (docs/BENCHMARKS.md §22). Needs huge pages reserved: echo 80 > /proc/sys/vm/nr_hugepages (restore the old value after).
// gcc -O2 -o /tmp/probe-hugetlb-readonly bench/probe-hugetlb-readonly.c && /tmp/probe-hugetlb-readonly 64 8 [1]
// Arguments: huge pages, huge pages per CONTINUE call, 1 to map read-only first. For each protection, two passes: a new
// registered mapping of the same memfd (the pages were written through an unregistered one), CONTINUE over all of it,
// then one load per 4 KiB page, each timed.
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#define HP (2UL << 20)
static uint64_t now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000ULL + t.tv_nsec; }
static int cmp(const void *a, const void *b) { uint64_t x = *(uint64_t *)a, y = *(uint64_t *)b; return x < y ? -1 : x > y; }
int main(int argc, char **argv) {
    size_t n = (argc > 1 ? atol(argv[1]) : 64) * HP; size_t chunk = (argc > 2 ? atol(argv[2]) : 8) * HP;
    int fd = memfd_create("h", MFD_HUGETLB); if (fd < 0 || ftruncate(fd, n)) { perror("memfd"); return 1; }
    char *staging = mmap(0, n, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0); if (staging == MAP_FAILED) { perror("staging"); return 1; }
    for (size_t i = 0; i < n; i += 4096) staging[i] = (char)(i >> 12);
    int first = argc > 3 ? atoi(argv[3]) : 0;
    for (int k = 0; k < 2; k++) {
        int ro = k ^ first;
        for (int pass = 0; pass < 2; pass++) {
            int uffd = syscall(SYS_userfaultfd, O_CLOEXEC);
            struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_MINOR_HUGETLBFS };
            if (ioctl(uffd, UFFDIO_API, &api)) { perror("api"); return 1; }
            char *user = mmap(0, n, ro ? PROT_READ : PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            struct uffdio_register reg = { .range = { (uint64_t)user, n }, .mode = UFFDIO_REGISTER_MODE_MINOR };
            if (ioctl(uffd, UFFDIO_REGISTER, &reg)) { perror("register"); return 1; }
            uint64_t t0 = now();
            for (size_t at = 0; at < n; at += chunk) {
                struct uffdio_continue c = { .range = { (uint64_t)user + at, chunk } };
                if (ioctl(uffd, UFFDIO_CONTINUE, &c)) { perror("continue"); return 1; }
            }
            uint64_t t1 = now();
            size_t touches = n / 4096; uint64_t *lat = malloc(touches * 8); volatile char sink = 0;
            for (size_t i = 0; i < touches; i++) { uint64_t a = now(); sink += user[i * 4096]; lat[i] = now() - a; }
            uint64_t t2 = now();
            qsort(lat, touches, 8, cmp);
            printf("%s pass %d: continue %.0f ns/4K, touch %.1f ns/4K (p50 %lu p99 %lu)\n", ro ? "read-only " : "read-write", pass,
                   (double)(t1 - t0) / touches, (double)(t2 - t1) / touches, lat[touches / 2], lat[touches * 99 / 100]);
            free(lat); munmap(user, n); close(uffd);
        }
    }
    return 0;
}
