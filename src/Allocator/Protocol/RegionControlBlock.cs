using System.Numerics;
using Paging.Interop;

namespace Paging.Protocol;

/// <summary>Counters kept per region in its control block.</summary>
internal enum RegionStat
{
    MissingFaults = 0,
    MinorFaults = 1,
    Messages = 2,
    Batches = 3,
    PagesFilled = 4,
    ZeroPagesFilled = 5,
    BytesRead = 6,
    Resolutions = 7,
    AlreadyPresent = 8,
    Retries = 9,
    Errors = 10,
    Poisoned = 11,
    Wakes = 12,
    Recoveries = 13,
    /// <summary>Pages filled by read-ahead, Prefetch or streaming rather than by a fault on them.</summary>
    PagesPrefetched = 14,
    /// <summary>Faults recognised as the continuation of a sequential stream.</summary>
    SequentialHits = 15,
    /// <summary>Faults on pages a read-ahead window had already scheduled but not yet filled (prefetch too late).</summary>
    PrefetchLate = 16,
    /// <summary>Faults whose page was already mapped when the message was read (another thread's fault or
    /// read-ahead got there first): resolved with a wake.</summary>
    StaleFaults = 17,
    /// <summary>Managed bytes the pager's fault thread allocated while serving this region's faults (should stay 0).</summary>
    ManagedBytesAllocated = 18,
    /// <summary>UFFDIO_WAKE (or UNREGISTER) calls the kernel refused.</summary>
    FailedWakes = 19,
    /// <summary>Pages in the page table now (a gauge: filled minus evicted or discarded).</summary>
    ResidentPages = 20,
    /// <summary>The most <see cref="ResidentPages"/> ever was.</summary>
    PeakResidentPages = 21,
    /// <summary>Pages evicted under the memory budget (or by Evict).</summary>
    PagesEvicted = 22,
    /// <summary>Dirty pages written back to the store (by eviction or Flush).</summary>
    PagesWrittenBack = 23,
    BytesWritten = 24,
    /// <summary>Store writes that failed (the pages stay dirty and resident; Flush reports it).</summary>
    WriteErrors = 25,
    /// <summary>Pages unmapped by the eviction clock (second-chance: a touch maps them back with a MINOR fault).</summary>
    PagesUnmapped = 26,
    /// <summary>Unmapped pages touched again before the clock came back: kept.</summary>
    SecondChances = 27,
    /// <summary>Flush calls completed.</summary>
    Flushes = 28,
    /// <summary>Time the Flushes spent in their dirty scans (PAGEMAP_SCAN with re-protection over the resident runs).</summary>
    DirtyScanNanoseconds = 29,
    /// <summary>Resident pages those scans covered.</summary>
    DirtyScannedPages = 30,
    /// <summary>Writes to write-protected pages that faulted to the pager (synchronous write tracking only).</summary>
    WriteFaults = 31,
    /// <summary>Pages the application read and installed on its own thread (caller fills, <c>PagedFile.Fetch</c>).</summary>
    CallerFills = 32,
    /// <summary>The number of counters (at most 120 fit before the latency histogram).</summary>
    Count = 33,
}

/// <summary>
/// The region's page table and counters, in a memfd the application owns and both processes map. It outlives any
/// one pager: a pager started after a crash finds which pages were completely filled, so it never maps a page a dead
/// pager left half-written and never refills (and so overwrites) a page the application may already have written.
/// Layout: a 4 KiB header (magic, page count, flags, counters, a log2 latency histogram) then six bitmaps of one bit
/// per page, each 4 KiB aligned: filled, dirty (written and not yet written back: kept here, not in the pager, so a
/// pager that takes over after a crash still writes those pages back), pinned (set by the application: never
/// evicted), and for regions the application fills itself (caller fills) referenced (set by the application when it
/// uses a page, cleared by the eviction clock) and caller-filling (set by an application thread while it reads a page
/// in: the pager never evicts such a page) and leaving (set by the pager while it punches a caller-fill region's
/// pages out: no application thread starts a fill of such a page). The memfd is
/// sparse, so the page table costs memory only where pages are resident (one 4 KiB bitmap page per 128 MiB of
/// 4 KiB pages): a 1 TiB reservation reserves 32 MiB of address space and commits nothing until touched.
/// </summary>
internal sealed unsafe class RegionControlBlock : IDisposable
{
    /// <summary>"PGGCTL05" little-endian; the trailing digits are the layout version (docs/PROTOCOL.md).</summary>
    private const ulong Magic = 0x35304C5443474750;
    private const int FlagsOffset = 16;

    /// <summary>Header flag: a pager is between a re-protecting dirty scan and recording its result in the dirty
    /// bitmap. A pager that takes over and finds it set cannot know which pages that scan saw: it marks every filled
    /// page dirty (a write-back too many, never a write lost).</summary>
    internal const long ScanInProgress = 1;
    private const int HeaderBytes = 4096;
    private const int StatsOffset = 64;
    private const int LatencyOffset = 1024;
    internal const int LatencyBuckets = 64;

    // The unmap mailbox (hugetlbfs regions under a budget): the pager cannot unmap huge pages in the application
    // (process_madvise refuses MADV_DONTNEED for another process, and MADV_PAGEOUT skips hugetlb), so it posts the
    // ranges here and the application's unmapper thread, waiting on RequestSeq with a shared futex, unmaps them.
    private const int MailboxOffset = 2048;
    private const int RequestSeqOffset = MailboxOffset;        // int: bumped by the pager per request (the futex word)
    private const int DoneSeqOffset = MailboxOffset + 4;       // int: the request the application finished
    private const int StopOffset = MailboxOffset + 8;          // int: 1 when the application's unmapper must exit
    private const int RangeCountOffset = MailboxOffset + 12;   // int
    private const int RangesOffset = MailboxOffset + 16;       // UnmapSlots × (long first page, long pages)

    /// <summary>Ranges per unmap request: 64 × 16 B = 1 KiB of the header (ends at byte 3088 of 4096).</summary>
    internal const int UnmapSlots = 64;

    private readonly Mapping _mapping;
    private readonly ulong* _bitmap;
    private readonly ulong* _dirty;
    private readonly ulong* _pinned;
    private readonly ulong* _referenced;
    private readonly ulong* _callerFilling;
    private readonly ulong* _leaving;
    private readonly long* _stats;
    private readonly long* _latency;

    private RegionControlBlock(Mapping mapping, long pageCount)
    {
        _mapping = mapping;
        PageCount = pageCount;
        _stats = (long*)(mapping.Pointer + StatsOffset);
        _latency = (long*)(mapping.Pointer + LatencyOffset);
        _bitmap = (ulong*)(mapping.Pointer + HeaderBytes);
        _dirty = (ulong*)(mapping.Pointer + HeaderBytes + BitmapBytes(pageCount));
        _pinned = (ulong*)(mapping.Pointer + HeaderBytes + 2 * BitmapBytes(pageCount));
        _referenced = (ulong*)(mapping.Pointer + HeaderBytes + 3 * BitmapBytes(pageCount));
        _callerFilling = (ulong*)(mapping.Pointer + HeaderBytes + 4 * BitmapBytes(pageCount));
        _leaving = (ulong*)(mapping.Pointer + HeaderBytes + 5 * BitmapBytes(pageCount));
    }

    public long PageCount { get; }

    public static long SizeFor(long pageCount) => HeaderBytes + 6 * BitmapBytes(pageCount);

    private static long BitmapBytes(long pageCount) => AlignUp((pageCount + 63) / 64 * 8, 4096);

    private static long AlignUp(long value, long alignment) => (value + alignment - 1) & ~(alignment - 1);

    /// <summary>Creates the memfd (application side) and initialises the header.</summary>
    public static RegionControlBlock Create(long pageCount, out FileDescriptor memfd)
    {
        memfd = FileDescriptor.Check(Libc.MemfdCreate("paging-ctl", MemfdFlags.CloseOnExec | MemfdFlags.AllowSealing), "memfd_create(paging-ctl)");
        try
        {
            long size = SizeFor(pageCount);
            if (Libc.Ftruncate(memfd, size) != 0)
            {
                throw Libc.Error($"ftruncate(control block, {size})");
            }
            _ = Libc.Fcntl(memfd, Libc.F_ADD_SEALS, (int)(SealFlags.Shrink | SealFlags.Grow));
            var block = new RegionControlBlock(MapShared(memfd, size), pageCount);
            *(long*)(block._mapping.Pointer + 8) = pageCount;
            Volatile.Write(ref *(ulong*)block._mapping.Pointer, Magic);
            return block;
        }
        catch
        {
            memfd.Dispose();
            throw;
        }
    }

    /// <summary>Maps a control block received from the application (pager side) and checks its header.</summary>
    public static RegionControlBlock Attach(FileDescriptor fd, long pageCount)
    {
        long size = SizeFor(pageCount);
        // A memfd shorter than the block would SIGBUS this process on first access: check before mapping.
        using (var view = new Microsoft.Win32.SafeHandles.SafeFileHandle(fd.Fd, ownsHandle: false))
        {
            long actual = RandomAccess.GetLength(view);
            if (actual < size)
            {
                throw new PagerException($"the region control block is {actual} bytes, {size} expected for {pageCount} pages");
            }
        }
        var mapping = MapShared(fd, size);
        if (*(ulong*)mapping.Pointer != Magic || *(long*)(mapping.Pointer + 8) != pageCount)
        {
            mapping.Dispose();
            throw new PagerException("the region control block has a bad header (protocol mismatch between library and pager?)");
        }
        return new RegionControlBlock(mapping, pageCount);
    }

    private static Mapping MapShared(FileDescriptor fd, long size) =>
        Mapping.Map(size, Protection.ReadWrite, MapFlags.Shared | MapFlags.NoReserve, fd, 0, "mmap(control block)");

    public bool IsFilled(long page) => (Volatile.Read(ref _bitmap[page >> 6]) & (1UL << (int)(page & 63))) != 0;

    /// <summary>Marks pages filled. Called after their bytes are completely in place and before they are mapped.</summary>
    public void MarkFilled(long first, long count)
    {
        long added = SetBits(_bitmap, first, count);
        if (added != 0)
        {
            long now = Interlocked.Add(ref _stats[(int)RegionStat.ResidentPages], added);
            long peak = Volatile.Read(ref _stats[(int)RegionStat.PeakResidentPages]);
            while (now > peak)
            {
                long seen = Interlocked.CompareExchange(ref _stats[(int)RegionStat.PeakResidentPages], now, peak);
                if (seen == peak)
                {
                    break;
                }
                peak = seen;
            }
        }
    }

    /// <summary>Sets bits [first, first+count) a word at a time; returns how many were clear.</summary>
    private static long SetBits(ulong* bits, long first, long count)
    {
        long end = first + count, changed = 0;
        while (first < end)
        {
            int bit = (int)(first & 63);
            int n = (int)Math.Min(64 - bit, end - first);
            ulong mask = n == 64 ? ulong.MaxValue : ((1UL << n) - 1) << bit;
            ulong old = Interlocked.Or(ref bits[first >> 6], mask);
            changed += BitOperations.PopCount(~old & mask);
            first += n;
        }
        return changed;
    }

    /// <summary>Clears bits [first, first+count) a word at a time; returns how many were set.</summary>
    private static long ClearBits(ulong* bits, long first, long count)
    {
        long end = first + count, changed = 0;
        while (first < end)
        {
            int bit = (int)(first & 63);
            int n = (int)Math.Min(64 - bit, end - first);
            ulong mask = n == 64 ? ulong.MaxValue : ((1UL << n) - 1) << bit;
            ulong old = Interlocked.And(ref bits[first >> 6], ~mask);
            changed += BitOperations.PopCount(old & mask);
            first += n;
        }
        return changed;
    }

    private static bool Test(ulong* bits, long page) => (Volatile.Read(ref bits[page >> 6]) & (1UL << (int)(page & 63))) != 0;

    /// <summary>The word of the filled bitmap that holds <paramref name="page"/> (bit page % 64): lets a scan skip 64 empty pages at once.</summary>
    public ulong FilledWord(long page) => Volatile.Read(ref _bitmap[page >> 6]);

    /// <summary>The word of the dirty bitmap that holds <paramref name="page"/>.</summary>
    public ulong DirtyWord(long page) => Volatile.Read(ref _dirty[page >> 6]);

    public bool IsDirty(long page) => Test(_dirty, page);

    /// <summary>Records pages as written and not yet written back.</summary>
    public void MarkDirty(long first, long count) => SetBits(_dirty, first, count);

    /// <summary>Pages written back (or dropped): no longer dirty.</summary>
    public void ClearDirty(long first, long count) => ClearBits(_dirty, first, count);

    /// <summary>Every filled page becomes dirty (a pager taking over after a crash mid-scan).</summary>
    public void MarkAllFilledDirty()
    {
        long words = (PageCount + 63) / 64;
        for (long w = 0; w < words; w++)
        {
            ulong f = Volatile.Read(ref _bitmap[w]);
            if (f != 0)
            {
                Interlocked.Or(ref _dirty[w], f);
            }
        }
    }

    public bool IsPinned(long page) => Test(_pinned, page);

    /// <summary>Pins (application side): the pager never evicts these pages.</summary>
    public void Pin(long first, long count) => SetBits(_pinned, first, count);

    public void Unpin(long first, long count) => ClearBits(_pinned, first, count);

    /// <summary>Marks a page used (application side, caller-fill regions): the clock keeps it one more turn. The word is
    /// read first so that a page used again and again costs a load, not a locked write to a shared line.</summary>
    public void MarkReferenced(long page)
    {
        ulong bit = 1UL << (int)(page & 63);
        if ((Volatile.Read(ref _referenced[page >> 6]) & bit) == 0)
        {
            Interlocked.Or(ref _referenced[page >> 6], bit);
        }
    }

    /// <summary>The clock's test (pager side): true when the page was used since the hand last passed, and clears it.</summary>
    public bool TestAndClearReferenced(long page)
    {
        ulong bit = 1UL << (int)(page & 63);
        return (Volatile.Read(ref _referenced[page >> 6]) & bit) != 0 && (Interlocked.And(ref _referenced[page >> 6], ~bit) & bit) != 0;
    }

    /// <summary>An application thread starts reading the page in itself: false when another thread already is. A full
    /// fence (a locked or), so the caller's next read of the filled bit cannot pass it (see
    /// <see cref="IsCallerFilling"/>).</summary>
    public bool TryBeginCallerFill(long page)
    {
        ulong bit = 1UL << (int)(page & 63);
        return (Interlocked.Or(ref _callerFilling[page >> 6], bit) & bit) == 0;
    }

    /// <summary>The application thread is done with the page (installed, found present, or failed).</summary>
    public void EndCallerFill(long page) => Interlocked.And(ref _callerFilling[page >> 6], ~(1UL << (int)(page & 63)));

    /// <summary>Pager side, read after the page is claimed and marked leaving: an application thread may be reading this
    /// page from the store, so it must not be evicted (its write-back and punch could land between that read and the
    /// thread's UFFDIO_COPY, which would then install stale bytes). The pairing: the application sets the bit then
    /// reads the filled and leaving bits; the evictor marks the page leaving (a locked write) then reads this bit, and
    /// clears the filled bit only after the write-back. Either the evictor sees the bit, or the application sees the
    /// page filled or leaving (and touches it: the fault waits for the eviction), or sees both cleared after the
    /// punch (and reads the latest bytes into a hole nothing is punching).</summary>
    public bool IsCallerFilling(long page) => Test(_callerFilling, page);

    /// <summary>Pager side, before it checks the caller-filling bits of pages it is about to punch out of a caller-fill
    /// region (a locked or per word, so the check that follows cannot pass it): from now until
    /// <see cref="ClearLeaving"/> no application thread starts a caller fill of these pages. A fill started anyway would
    /// be a UFFDIO_COPY landing in the middle of the punch — after its first pass took the old page, before its second
    /// pass — which the punch then takes away after the thread marked the page filled: a filled page with no bytes,
    /// which the next eviction would write back as zeros.</summary>
    public void MarkLeaving(long first, long count) => SetBits(_leaving, first, count);

    /// <summary>The punch is over (pager side).</summary>
    public void ClearLeaving(long first, long count) => ClearBits(_leaving, first, count);

    /// <summary>Application side, read after <see cref="TryBeginCallerFill"/>: the pager is punching the page out.</summary>
    public bool IsLeaving(long page) => Test(_leaving, page);

    /// <summary>A pager that takes over: the dead pager's punches are over (it exited), so none of its marks stand.</summary>
    public void ClearAllLeaving()
    {
        long words = (PageCount + 63) / 64;
        for (long w = 0; w < words; w++)
        {
            if (Volatile.Read(ref _leaving[w]) != 0) // read first: the bitmap is sparse, a write would commit its page
            {
                Volatile.Write(ref _leaving[w], 0);
            }
        }
    }

    /// <summary>Header flags (<see cref="ScanInProgress"/>).</summary>
    public long Flags
    {
        get => Volatile.Read(ref *(long*)(_mapping.Pointer + FlagsOffset));
        set => Volatile.Write(ref *(long*)(_mapping.Pointer + FlagsOffset), value);
    }

    public void ClearFilled(long page) => ClearFilled(page, 1);

    /// <summary>Marks pages not filled (their page-cache pages were dropped): a word at a time, like <see cref="MarkFilled"/>.</summary>
    public void ClearFilled(long first, long count)
    {
        long removed = ClearBits(_bitmap, first, count);
        if (removed != 0)
        {
            Interlocked.Add(ref _stats[(int)RegionStat.ResidentPages], -removed);
        }
    }

    /// <summary>Counts filled pages among [first, first+count) (a test and diagnostics helper; reads only that range).</summary>
    public long CountFilled(long first, long count)
    {
        long n = 0;
        for (long p = first; p < first + count; p++)
        {
            if (IsFilled(p))
            {
                n++;
            }
        }
        return n;
    }

    public void Add(RegionStat stat, long value) => Interlocked.Add(ref _stats[(int)stat], value);

    public long Read(RegionStat stat) => Volatile.Read(ref _stats[(int)stat]);

    /// <summary>Adds one sample to the log2 histogram: bucket b holds [2^(b-1), 2^b) ns.</summary>
    public void RecordLatency(long nanoseconds)
    {
        int bucket = nanoseconds <= 0 ? 0 : Math.Min(LatencyBuckets - 1, 64 - BitOperations.LeadingZeroCount((ulong)nanoseconds));
        Interlocked.Increment(ref _latency[bucket]);
    }

    public void CopyLatency(Span<long> destination)
    {
        for (int i = 0; i < LatencyBuckets; i++)
        {
            destination[i] = Volatile.Read(ref _latency[i]);
        }
    }

    private int* MailboxInt(int offset) => (int*)(_mapping.Pointer + offset);

    private long* Ranges => (long*)(_mapping.Pointer + RangesOffset);

    /// <summary>Pager side: posts pages[0..count) (ascending) as ranges for the application to unmap (with
    /// <paramref name="move"/>: to move out of a tracked anonymous region into its shadow), up to
    /// <see cref="UnmapSlots"/> ranges, and wakes its unmapper. Returns how many of the pages were posted: 0 when the
    /// previous request is not done yet (nothing waits for it: the clock posts again on a later turn).</summary>
    public int TryPostUnmap(ReadOnlySpan<long> pages, bool move = false)
    {
        int* request = MailboxInt(RequestSeqOffset);
        int seq = Volatile.Read(ref *request);
        if (Volatile.Read(ref *MailboxInt(DoneSeqOffset)) != seq || pages.IsEmpty)
        {
            return 0;
        }
        long* ranges = Ranges;
        int n = 0, posted = 0;
        for (int i = 0; i < pages.Length && n < UnmapSlots;)
        {
            long p = pages[i], q = p + 1;
            int j = i + 1;
            while (j < pages.Length && pages[j] == q)
            {
                q++;
                j++;
            }
            ranges[2 * n] = p;
            ranges[2 * n + 1] = move ? p - q : q - p; // negative: move the region's pages into its shadow
            n++;
            posted = j;
            i = j;
        }
        Volatile.Write(ref *MailboxInt(RangeCountOffset), n);
        Volatile.Write(ref *request, seq + 1); // publishes the ranges (a release store)
        Libc.FutexWakeAll(request);
        return posted;
    }

    /// <summary>Pager side: true when the application has finished the last request (a new one may be posted).</summary>
    public bool UnmapMailboxFree => Volatile.Read(ref *MailboxInt(DoneSeqOffset)) == Volatile.Read(ref *MailboxInt(RequestSeqOffset));

    /// <summary>Application side: waits (up to <paramref name="timeoutMilliseconds"/>) for a request after
    /// <paramref name="seen"/>; returns the newest request's number (<paramref name="seen"/> when none came).</summary>
    public int WaitForUnmapRequest(int seen, int timeoutMilliseconds)
    {
        int* request = MailboxInt(RequestSeqOffset);
        if (Volatile.Read(ref *request) == seen && Volatile.Read(ref *MailboxInt(StopOffset)) == 0)
        {
            Libc.FutexWait(request, seen, timeoutMilliseconds);
        }
        return Volatile.Read(ref *request);
    }

    /// <summary>Application side: the ranges of the current request (first page, pages), at most <see cref="UnmapSlots"/>.</summary>
    public int ReadUnmapRanges(Span<(long First, long Count)> ranges)
    {
        int n = Math.Min(Math.Min(Volatile.Read(ref *MailboxInt(RangeCountOffset)), UnmapSlots), ranges.Length);
        long* r = Ranges;
        for (int i = 0; i < n; i++)
        {
            ranges[i] = (r[2 * i], r[2 * i + 1]);
        }
        return n;
    }

    /// <summary>Application side: request <paramref name="seq"/> is done; the pager may post the next.</summary>
    public void CompleteUnmap(int seq) => Volatile.Write(ref *MailboxInt(DoneSeqOffset), seq);

    /// <summary>True once <see cref="StopUnmapper"/> was called.</summary>
    public bool UnmapperStopping => Volatile.Read(ref *MailboxInt(StopOffset)) != 0;

    /// <summary>Application side: tells the unmapper thread to exit (and wakes it).</summary>
    public void StopUnmapper()
    {
        Volatile.Write(ref *MailboxInt(StopOffset), 1);
        int* request = MailboxInt(RequestSeqOffset);
        Interlocked.Increment(ref *request);
        Libc.FutexWakeAll(request);
    }

    public void Dispose() => _mapping.Dispose();
}
