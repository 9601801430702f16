// The floor of issue #13's "cold sequential read of a compressible file beats the uncompressed cold file store", in C:
// no pager, no protocol, no managed code. Writes a text-like file as the harness's `--data text` does (LZ4 ~2.5:1) and
// its LZ4 pack (independent blocks, index kept in memory), then, after dropping the page cache, reads each into fresh
// anonymous memory with THREADS threads, each a contiguous share:
//   raw  pread 1 MiB at a time straight into the destination (what the file store's read-ahead does);
//   lz4  pread the compressed bytes of 1 MiB of output at a time into a buffer, LZ4_decompress_safe each block into
//        the destination (what the compressed store does, minus everything else).
// Both write the same fresh pages, so both pay the same first-touch cost; what differs is bytes read against CPU spent
// decoding. Three alternating rounds, GB/s of output.
//
// gcc -O2 -pthread -o /tmp/probe-lz4-cold bench/probe-lz4-cold.c -l:liblz4.so.1
// /tmp/probe-lz4-cold DIR SIZE_MIB BLOCK_KIB THREADS        (root: drops caches; DIR on the disk under test)
//   LEVEL=9      pack with LZ4 HC at that level (the pack tool's default; without it LZ4's fast mode)
//   HUGETLB=1    the destination is a hugetlbfs memfd mapped shared, each 2 MiB populated (MADV_POPULATE_WRITE) just
//                before it is written, as the pager's staging mapping is; the chunk is 2 MiB (one fill); raw reads
//                use O_DIRECT, as the file store does for a cold hugetlbfs fill. Reserve the pages first:
//                echo $((SIZE_MIB / 2 + 8)) > /proc/sys/vm/nr_hugepages (and put back the old value after).
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

int LZ4_compressBound(int inputSize);
int LZ4_compress_default(const char *src, char *dst, int srcSize, int dstCapacity);
int LZ4_compress_HC(const char *src, char *dst, int srcSize, int dstCapacity, int level);
int LZ4_decompress_safe(const char *src, char *dst, int compressedSize, int dstCapacity);

static long size, block, nblocks;
static long *offsets; // compressed offset of block i; offsets[nblocks] = pack length
static int rawfd, rawdirectfd, packfd, threads, hugetlb;
static char *dest;
static int mode; // 0 raw, 1 lz4

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void drop_caches(void) {
    sync();
    int fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
    if (fd < 0 || write(fd, "3\n", 2) != 2) { perror("drop_caches"); exit(1); }
    close(fd);
}

static void *worker(void *arg) {
    long t = (long)arg, chunk = hugetlb ? 2 << 20 : 1 << 20, per = size / threads / chunk * chunk;
    long from = t * per, to = t == threads - 1 ? size : from + per;
    char *buf = malloc(LZ4_compressBound((int)chunk) + chunk);
    for (long at = from; at < to; at += chunk) {
        long n = to - at < chunk ? to - at : chunk;
        if (hugetlb && madvise(dest + at, n, MADV_POPULATE_WRITE) != 0) { perror("MADV_POPULATE_WRITE"); exit(1); }
        if (mode == 0) {
            if (pread(hugetlb ? rawdirectfd : rawfd, dest + at, n, at) != n) { perror("pread raw"); exit(1); }
            continue;
        }
        long b0 = at / block, b1 = (at + n) / block;
        long c0 = offsets[b0], c1 = offsets[b1];
        if (pread(packfd, buf, c1 - c0, c0) != c1 - c0) { perror("pread pack"); exit(1); }
        for (long b = b0; b < b1; b++) {
            int got = LZ4_decompress_safe(buf + (offsets[b] - c0), dest + b * block, (int)(offsets[b + 1] - offsets[b]), (int)block);
            if (got != block) { fprintf(stderr, "decode of block %ld: %d\n", b, got); exit(1); }
        }
    }
    free(buf);
    return NULL;
}

static double run(int m) {
    mode = m;
    drop_caches();
    // POPULATE=1: the destination is faulted in before the clock starts (what is left is read against decode).
    int hfd = -1;
    if (hugetlb) {
        hfd = memfd_create("probe-staging", MFD_HUGETLB);
        if (hfd < 0 || ftruncate(hfd, size) != 0) { perror("hugetlbfs memfd"); exit(1); }
        dest = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, hfd, 0);
    } else {
        dest = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | (getenv("POPULATE") ? MAP_POPULATE : 0), -1, 0);
    }
    if (dest == MAP_FAILED) { perror("mmap destination (hugetlb: reserve the pages first)"); exit(1); }
    pthread_t th[64];
    double t0 = now();
    for (long t = 0; t < threads; t++) pthread_create(&th[t], NULL, worker, (void *)t);
    for (int t = 0; t < threads; t++) pthread_join(th[t], NULL);
    double s = now() - t0;
    // Spot check: the first word of every 4 KiB page is its offset (as the harness writes it).
    for (long p = 0; p < size; p += 4096)
        if (*(uint64_t *)(dest + p) != (uint64_t)p) { fprintf(stderr, "wrong word at %ld\n", p); exit(1); }
    munmap(dest, size);
    if (hfd >= 0) close(hfd);
    return size / s / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: %s DIR SIZE_MIB BLOCK_KIB THREADS\n", argv[0]); return 2; }
    size = atol(argv[2]) << 20; block = atol(argv[3]) << 10; threads = atoi(argv[4]);
    nblocks = size / block;
    char raw[4096], pack[4096];
    snprintf(raw, sizeof raw, "%s/probe-raw.bin", argv[1]);
    snprintf(pack, sizeof pack, "%s/probe-pack.bin", argv[1]);
    // The harness's text: words drawn at random into 1 MiB, repeated, each page's first word its offset.
    static const char *words[] = {"page ", "fault ", "userfaultfd ", "the ", "pager ", "fills ", "region ", "\n", "0.0213 ", "-1.5e-3 "};
    long mib = 1 << 20;
    char *one = malloc(mib);
    srand(1);
    for (long i = 0; i < mib;)
        for (const char *w = words[rand() % 10]; *w && i < mib; w++) one[i++] = *w;
    hugetlb = getenv("HUGETLB") != NULL;
    int level = getenv("LEVEL") ? atoi(getenv("LEVEL")) : 1;
    rawfd = open(raw, O_RDWR | O_CREAT | O_TRUNC, 0600);
    packfd = open(pack, O_RDWR | O_CREAT | O_TRUNC, 0600);
    offsets = calloc(nblocks + 1, sizeof(long));
    char *cbuf = malloc(LZ4_compressBound((int)block));
    long packed = 0;
    for (long at = 0; at < size; at += mib) {
        for (long p = 0; p < mib; p += 4096) *(uint64_t *)(one + p) = (uint64_t)(at + p);
        if (pwrite(rawfd, one, mib, at) != mib) { perror("pwrite raw"); return 1; }
        for (long b = 0; b < mib; b += block) {
            int c = level > 1 ? LZ4_compress_HC(one + b, cbuf, (int)block, LZ4_compressBound((int)block), level)
                              : LZ4_compress_default(one + b, cbuf, (int)block, LZ4_compressBound((int)block));
            offsets[(at + b) / block] = packed;
            if (pwrite(packfd, cbuf, c, packed) != c) { perror("pwrite pack"); return 1; }
            packed += c;
        }
    }
    offsets[nblocks] = packed;
    fsync(rawfd);
    fsync(packfd);
    rawdirectfd = open(raw, O_RDONLY | O_DIRECT);
    if (rawdirectfd < 0) { perror("open O_DIRECT"); return 1; }
    printf("raw %ld MiB, pack %ld MiB (%.2f:1, level %d), %ld KiB blocks, %d threads, into %s\n", size >> 20, packed >> 20,
           (double)size / packed, level, block >> 10, threads, hugetlb ? "hugetlbfs staging (raw O_DIRECT)" : "anonymous memory");
    for (int round = 0; round < 3; round++) {
        double r = run(0), l = run(1);
        printf("round %d: raw %.3f GB/s, lz4 %.3f GB/s (lz4/raw %.2f)\n", round + 1, r, l, l / r);
    }
    unlink(raw);
    unlink(pack);
    return 0;
}
