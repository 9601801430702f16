#!/usr/bin/env python3
"""Two ways to fill a shmem memfd from a page-cache-hot file, per 4 KiB page (the measurement behind the pager's
splice fills, docs/BENCHMARKS.md): splice file -> pipe -> memfd, and pread into a shared mapping of the memfd.
Usage: python3 bench/probe-splice.py [MiB]"""
import fcntl, mmap, os, sys, tempfile, time

size = int(sys.argv[1] if len(sys.argv) > 1 else 64) << 20
with tempfile.NamedTemporaryFile(delete=False) as f:
    f.write(os.urandom(size))
    path = f.name
fd = os.open(path, os.O_RDONLY)
os.pread(fd, size, 0)  # page-cache hot

def per_page(seconds):
    return f"{seconds * 1e9 / (size // 4096):.0f} ns/page"

try:
    m = os.memfd_create("probe-copy-file-range")
    os.ftruncate(m, size)
    os.copy_file_range(fd, m, 1 << 20, 0, 0)
    print("copy_file_range file -> memfd: works")
except OSError as e:
    print(f"copy_file_range file -> memfd: {e} (cross-filesystem)")

m = os.memfd_create("probe-splice")
os.ftruncate(m, size)
r, w = os.pipe()
fcntl.fcntl(w, 1031, 1 << 20)  # F_SETPIPE_SZ
t = time.perf_counter()
n = 0
while n < size:
    a = os.splice(fd, w, 1 << 20, offset_src=n)
    while a > 0:
        b = os.splice(r, m, a, offset_dst=n)
        n += b
        a -= b
print("splice file -> pipe -> memfd:", per_page(time.perf_counter() - t))

m = os.memfd_create("probe-pread")
os.ftruncate(m, size)
view = memoryview(mmap.mmap(m, size))
t = time.perf_counter()
n = 0
while n < size:
    n += os.preadv(fd, [view[n:n + (64 << 10)]], n)
print("pread 64 KiB into a mapping of the memfd:", per_page(time.perf_counter() - t))
os.unlink(path)
