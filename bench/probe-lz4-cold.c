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
int LZ4_decompress_safe(const char *src, char *dst, int compressedSize, int dstCapacity);

static long size, block, nblocks;
static long *offsets; // compressed offset of block i; offsets[nblocks] = pack length
static int rawfd, packfd, threads;
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
    long t = (long)arg, chunk = 1 << 20, per = size / threads;
    long from = t * per, to = t == threads - 1 ? size : from + per;
    char *buf = malloc(LZ4_compressBound((int)chunk) + chunk);
    for (long at = from; at < to; at += chunk) {
        long n = to - at < chunk ? to - at : chunk;
        if (mode == 0) {
            if (pread(rawfd, dest + at, n, at) != n) { perror("pread raw"); exit(1); }
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
    dest = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | (getenv("POPULATE") ? MAP_POPULATE : 0), -1, 0);
    pthread_t th[64];
    double t0 = now();
    for (long t = 0; t < threads; t++) pthread_create(&th[t], NULL, worker, (void *)t);
    for (int t = 0; t < threads; t++) pthread_join(th[t], NULL);
    double s = now() - t0;
    // Spot check: the first word of every 4 KiB page is its offset (as the harness writes it).
    for (long p = 0; p < size; p += 4096)
        if (*(uint64_t *)(dest + p) != (uint64_t)p) { fprintf(stderr, "wrong word at %ld\n", p); exit(1); }
    munmap(dest, size);
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
    rawfd = open(raw, O_RDWR | O_CREAT | O_TRUNC, 0600);
    packfd = open(pack, O_RDWR | O_CREAT | O_TRUNC, 0600);
    offsets = calloc(nblocks + 1, sizeof(long));
    char *cbuf = malloc(LZ4_compressBound((int)block));
    long packed = 0;
    for (long at = 0; at < size; at += mib) {
        for (long p = 0; p < mib; p += 4096) *(uint64_t *)(one + p) = (uint64_t)(at + p);
        if (pwrite(rawfd, one, mib, at) != mib) { perror("pwrite raw"); return 1; }
        for (long b = 0; b < mib; b += block) {
            int c = LZ4_compress_default(one + b, cbuf, (int)block, LZ4_compressBound((int)block));
            offsets[(at + b) / block] = packed;
            if (pwrite(packfd, cbuf, c, packed) != c) { perror("pwrite pack"); return 1; }
            packed += c;
        }
    }
    offsets[nblocks] = packed;
    fsync(rawfd);
    fsync(packfd);
    printf("raw %ld MiB, pack %ld MiB (%.2f:1), %ld KiB blocks, %d threads\n", size >> 20, packed >> 20, (double)size / packed, block >> 10, threads);
    for (int round = 0; round < 3; round++) {
        double r = run(0), l = run(1);
        printf("round %d: raw %.3f GB/s, lz4 %.3f GB/s (lz4/raw %.2f)\n", round + 1, r, l, l / r);
    }
    unlink(raw);
    unlink(pack);
    return 0;
}
