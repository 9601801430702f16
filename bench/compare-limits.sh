#!/usr/bin/env bash
# Runs ../shared/limits (sections 4 and 5: single-page and 16-page uffd round trips in C) and the Paging harness
# back to back, and prints Paging's ns/page as a ratio to the C floor measured in the same session.
#   sudo bench/compare-limits.sh [PAGES]
set -euo pipefail
cd "$(dirname "$0")/.."
pages=${1:-65536}
limits=../shared/limits
out=$(mktemp -d)
(cd "$limits" && ./run.sh 1 5 -s 4,5) > "$out/limits.txt"
dotnet run -c Release --project bench/Paging.Bench -- --arena anonymous,shmem --backend zero,file \
    --pattern seq,refault --readahead off --pages "$pages" --no-baselines --json > "$out/paging.jsonl"
python3 - "$out/limits.txt" "$out/paging.jsonl" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    if line.startswith("CSV|"):
        f = line.split("|")
        rows[f[1]] = (f[2].strip(), float(f[4]))
paging = {}
for line in open(sys.argv[2]):
    r = json.loads(line)
    paging[r["scenario"]] = r
pairs = [
    ("paging/anonymous/zero/seq", "4.2", "anonymous, zero store: UFFDIO_ZEROPAGE per fault"),
    ("paging/anonymous/file/seq", "4.1", "anonymous, file store: pread 4 KiB + UFFDIO_COPY per fault"),
    ("paging/shmem/refault/seq", "5.1", "shmem, page in page cache (MINOR): UFFDIO_CONTINUE per fault"),
    ("paging/shmem/file/seq", "5.1", "shmem, file store: splice into the page cache + CONTINUE per fault"),
    ("paging/shmem/zero/seq", "5.1", "shmem, zero store: clear the page + CONTINUE per fault"),
]
print(f"{'Paging scenario':34} {'ns/page':>9} {'p50 ns':>8} {'p99 ns':>8}   {'C row':6} {'C ns/page':>10} {'ratio':>6}  what")
for name, row, what in pairs:
    key = name.replace("/refault/seq", "/file/refault").replace("paging/", "paging-1pg/")
    r = paging.get(key)
    if r is None or row not in rows:
        continue
    c = rows[row][1]
    print(f"{key:34} {r['ns_per_page']:9.0f} {r['p50_ns']:8.0f} {r['p99_ns']:8.0f}   {row:6} {c:10.0f} {r['ns_per_page']/c:5.2f}x  {what}")
for row in ("4.10", "5.8"):
    if row in rows:
        print(f"(C row {row}, same work with handler and faulter on one CPU: {rows[row][1]:.0f} ns/page — {rows[row][0].strip()})")
PY
echo "raw results in $out"
