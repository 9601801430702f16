// A switch between two processes against one between two threads of one process, both pinned to CPU 0: two pipes
// ping-ponged 100,000 times (docs/BENCHMARKS.md §22). gcc -O2 -pthread -o /tmp/probe-context-switch bench/probe-context-switch.c
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static int a[2], b[2]; static long iters = 100000;
static void pin(int cpu) { cpu_set_t s; CPU_ZERO(&s); CPU_SET(cpu, &s); sched_setaffinity(0, sizeof s, &s); }
static void *echo(void *x) { (void)x; pin(0); char c; for (long i = 0; i < iters; i++) { if (read(a[0], &c, 1) != 1 || write(b[1], &c, 1) != 1) exit(1); } return 0; }
static double run(int process) {
    pipe(a); pipe(b); pthread_t t; pid_t pid = 0;
    if (process) { pid = fork(); if (pid == 0) { echo(0); _exit(0); } } else pthread_create(&t, 0, echo, 0);
    pin(0); char c = 'x'; struct timespec s, e; clock_gettime(CLOCK_MONOTONIC, &s);
    for (long i = 0; i < iters; i++) { if (write(a[1], &c, 1) != 1 || read(b[0], &c, 1) != 1) exit(1); }
    clock_gettime(CLOCK_MONOTONIC, &e);
    if (process) waitpid(pid, 0, 0); else pthread_join(t, 0);
    close(a[0]); close(a[1]); close(b[0]); close(b[1]);
    return ((e.tv_sec - s.tv_sec) * 1e9 + (e.tv_nsec - s.tv_nsec)) / iters / 2;
}
int main(void) {
    for (int r = 0; r < 3; r++) printf("one CPU, per switch (incl. pipe syscalls): threads %.0f ns, processes %.0f ns\n", run(0), run(1));
    return 0;
}
