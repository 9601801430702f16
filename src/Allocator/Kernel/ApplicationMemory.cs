using Paging.Interop;

namespace Paging.Kernel;

/// <summary>
/// The pager's handle on the application's address space beyond the uffd: its /proc/&lt;pid&gt;/pagemap (PAGEMAP_SCAN:
/// which pages were written since they were last write-protected, re-protecting them atomically) and its pidfd
/// (process_madvise(MADV_PAGEOUT): unmapping cold shmem pages while their page cache stays). Both work from another
/// process with the rights the pager has (root, or the same user with ptrace read access); neither waits for the
/// application's threads, so eviction and write-back never depend on managed code in the application.
/// </summary>
internal sealed unsafe class ApplicationMemory : IDisposable
{
    /// <summary>page_region entries per PAGEMAP_SCAN call: 512 × 24 B = 12 KiB, one call per 2 MiB window even when
    /// every other page differs.</summary>
    internal const int ScanCapacity = 512;

    /// <summary>iovecs per process_madvise call: the kernel's UIO_MAXIOV.</summary>
    internal const int MaxIoVecs = 1024;

    private readonly FileDescriptor _pagemap;
    private readonly FileDescriptor _pidfd;
    private readonly bool _scan;

    private ApplicationMemory(FileDescriptor pagemap, FileDescriptor pidfd, bool scan)
    {
        _pagemap = pagemap;
        _pidfd = pidfd;
        _scan = scan;
    }

    /// <summary>Opens the application's pagemap and a pidfd for it. Throws with what to do when the pager lacks the rights.
    /// Without <paramref name="useScan"/> (synchronous write tracking, for kernels before PAGEMAP_SCAN),
    /// <see cref="Categories"/> reads the pagemap's 64-bit entries instead.</summary>
    public static ApplicationMemory Open(int pid, bool useScan = true)
    {
        var pagemap = FileDescriptor.Check(Libc.Open($"/proc/{pid}/pagemap", OpenFlags.ReadOnly | OpenFlags.CloseOnExec, 0),
            $"open(/proc/{pid}/pagemap)", "dirty tracking needs the pager to read the application's pagemap: run both as the same user with ptrace access (or as root)");
        try
        {
            return new ApplicationMemory(pagemap, Libc.PidfdOpen(pid), useScan);
        }
        catch
        {
            pagemap.Dispose();
            throw;
        }
    }

    /// <summary>One PAGEMAP_SCAN over [start, end): fills <paramref name="regions"/> with runs whose categories
    /// match (<paramref name="mask"/>: all required; <paramref name="anyOf"/>: at least one, when not None) and returns
    /// how many, or -1 with <paramref name="error"/>. <paramref name="walkEnd"/> is where the walk stopped (the vector
    /// was full before <paramref name="end"/>). With <paramref name="reprotect"/> the matching pages are write-protected
    /// again in the same walk (PM_SCAN_WP_MATCHING): a write after it is seen by the next scan.</summary>
    public int Scan(ulong start, ulong end, bool reprotect, PageCategory mask, PageCategory anyOf, Span<Libc.PageRegion> regions, out ulong walkEnd, out Errno error)
    {
        fixed (Libc.PageRegion* vec = regions)
        {
            var arg = new Libc.PmScanArg
            {
                Size = (ulong)sizeof(Libc.PmScanArg),
                Flags = reprotect ? Libc.PM_SCAN_WP_MATCHING | Libc.PM_SCAN_CHECK_WPASYNC : 0,
                Start = start,
                End = end,
                Vec = (ulong)vec,
                VecLen = (ulong)regions.Length,
                CategoryMask = (ulong)mask,
                CategoryAnyofMask = (ulong)anyOf,
                // A caller that names only required categories gets runs of pages that have them, not each run's other
                // categories: for the write-back scan (Written, re-protect) that is the kernel's fast path in
                // pagemap_scan_pmd_entry (category and return mask both exactly PAGE_IS_WRITTEN), which tests each PTE's
                // uffd-wp bit instead of computing every category: 24-48 -> ~2 ns per clean resident page here
                // (docs/BENCHMARKS.md §23).
                ReturnMask = anyOf == PageCategory.None ? (ulong)mask : (ulong)PageCategory.All,
            };
            long n = Libc.IoctlLong(_pagemap, Libc.PAGEMAP_SCAN, &arg);
            if (n < 0)
            {
                error = Libc.LastErrno;
                walkEnd = start;
                return -1;
            }
            error = Errno.None;
            walkEnd = arg.WalkEnd == 0 ? end : arg.WalkEnd;
            return (int)n;
        }
    }

    /// <summary>Writes the categories of each page of [start, start + pages·pageSize) into <paramref name="categories"/>
    /// (one scan call per <see cref="ScanCapacity"/> runs). False with <paramref name="error"/> when the kernel refused.</summary>
    public bool Categories(ulong start, int pageSize, Span<PageCategory> categories, Span<Libc.PageRegion> scratch, out Errno error)
    {
        if (!_scan)
        {
            return ReadEntries(start, pageSize, categories, out error);
        }
        ulong end = start + (ulong)categories.Length * (ulong)pageSize;
        ulong at = start;
        categories.Clear();
        while (at < end)
        {
            int n = Scan(at, end, reprotect: false, PageCategory.None, PageCategory.All, scratch, out ulong walkEnd, out error);
            if (n < 0)
            {
                return false;
            }
            for (int i = 0; i < n; i++)
            {
                ref var run = ref scratch[i];
                for (ulong a = run.Start; a < run.End; a += (ulong)pageSize)
                {
                    categories[(int)((a - start) / (ulong)pageSize)] = (PageCategory)run.Categories;
                }
            }
            if (walkEnd <= at)
            {
                error = Errno.EIO;
                return false;
            }
            at = walkEnd;
        }
        error = Errno.None;
        return true;
    }

    /// <summary>Pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst): 63 present, 62 swapped (also a PTE
    /// marker), 61 file page or shared anonymous, 57 the PTE is uffd write-protected.</summary>
    private const ulong EntryPresent = 1UL << 63, EntrySwapped = 1UL << 62, EntryFile = 1UL << 61, EntryUffdWp = 1UL << 57;

    /// <summary><see cref="Categories"/> from /proc/&lt;pid&gt;/pagemap's entries (any kernel since 4.2; the uffd-wp bit
    /// since 5.19): one 8-byte entry per 4 KiB of address space, read in one pread per 512 pages (per huge page, its
    /// first entry). Written is reported as PAGEMAP_SCAN does: a PTE without the uffd-wp bit, empty ones included.</summary>
    private bool ReadEntries(ulong start, int pageSize, Span<PageCategory> categories, out Errno error)
    {
        const int Chunk = 512;
        ulong* entries = stackalloc ulong[Chunk];
        int stride = pageSize / 4096;
        int done = 0;
        while (done < categories.Length)
        {
            int n = stride == 1 ? Math.Min(Chunk, categories.Length - done) : 1;
            long offset = (long)((start + (ulong)done * (ulong)pageSize) / 4096) * 8;
            nint got = Libc.Pread(_pagemap, entries, (nuint)(n * 8), offset);
            if (got < 0 && Libc.LastErrno == Errno.EINTR)
            {
                continue;
            }
            if (got != n * 8)
            {
                error = got < 0 ? Libc.LastErrno : Errno.EIO;
                return false;
            }
            for (int i = 0; i < n; i++)
            {
                ulong e = entries[i];
                var c = PageCategory.None;
                if ((e & EntryPresent) != 0)
                {
                    c |= PageCategory.Present;
                }
                if ((e & EntrySwapped) != 0)
                {
                    c |= PageCategory.Swapped;
                }
                if ((e & EntryFile) != 0)
                {
                    c |= PageCategory.File;
                }
                if ((e & EntryUffdWp) == 0)
                {
                    c |= PageCategory.Written;
                }
                categories[done + i] = c;
            }
            done += n;
        }
        error = Errno.None;
        return true;
    }

    /// <summary>process_madvise(MADV_PAGEOUT) over the ranges: one syscall for the batch. Returns the bytes advised or -1.</summary>
    public long PageOut(ReadOnlySpan<Libc.IoVec> ranges, out Errno error)
    {
        fixed (Libc.IoVec* iov = ranges)
        {
            long done = Libc.Syscall(Libc.SYS_process_madvise, _pidfd, iov, ranges.Length, Libc.MADV_PAGEOUT, 0);
            error = done < 0 ? Libc.LastErrno : Errno.None;
            return done;
        }
    }

    /// <summary>
    /// Moves the calling thread to each CPU it may run on and advises one page there, so every CPU drains its batch
    /// of folios waiting to join the LRU (madvise(PAGEOUT) drains only the caller's CPU). A page filled moments ago
    /// sits in such a batch, where reclaim cannot isolate it, so PAGEOUT silently skips it: when a fill thread on
    /// the other vCPU filled the last few pages, nothing else drains that batch until 31 more pages arrive there.
    /// Restores the thread's affinity. One syscall pair per CPU; called only when a clock turn found nothing to take.
    /// </summary>
    public void DrainLruBatches(nint anyPageOfTheApplication, int pageSize)
    {
        byte* saved = stackalloc byte[Libc.CpuSetBytes];
        byte* one = stackalloc byte[Libc.CpuSetBytes];
        if (Libc.SchedGetaffinity(0, Libc.CpuSetBytes, saved) != 0)
        {
            return;
        }
        var range = new Libc.IoVec { Base = (void*)anyPageOfTheApplication, Length = (nuint)pageSize };
        for (int cpu = 0; cpu < Libc.CpuSetBytes * 8; cpu++)
        {
            if ((saved[cpu >> 3] & (1 << (cpu & 7))) == 0)
            {
                continue;
            }
            new Span<byte>(one, Libc.CpuSetBytes).Clear();
            one[cpu >> 3] = (byte)(1 << (cpu & 7));
            if (Libc.SchedSetaffinity(0, Libc.CpuSetBytes, one) == 0)
            {
                _ = PageOut(new ReadOnlySpan<Libc.IoVec>(&range, 1), out _);
            }
        }
        _ = Libc.SchedSetaffinity(0, Libc.CpuSetBytes, saved);
    }

    public void Dispose()
    {
        _pagemap.Dispose();
        _pidfd.Dispose();
    }
}
