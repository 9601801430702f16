using System.Diagnostics;
using Paging.Interop;
using Paging.Logging;
using Paging.Protocol;
using Paging.Stores;

namespace Paging.Engine;

/// <summary>
/// Eviction and write-back of anonymous regions (a runtime with synchronous write tracking). An anonymous page lives
/// only in the application's page table; no call lets another process drop it only if it is unwritten, and
/// UFFDIO_MOVE, which takes a page out atomically, works only from the process that owns the memory (fs/userfaultfd.c:
/// a cross-mm move is EINVAL, checked on Linux 6.18). So the pager writes a page back (protected first: with
/// synchronous tracking a write then faults to the pager), and asks the region's unmapper thread in the application to
/// move it into the region's shadow — a mapping as long as the region that nothing else touches. Nothing waits for
/// that thread: a write before the move faults, is recorded and lands (the page goes to the shadow dirty and is
/// written back from there); a touch after the move faults on a page that is filled but not mapped, and the pager
/// takes the bytes back from the shadow (filled, not mapped, and in the shadow means the shadow holds the page's
/// latest bytes — the only way in is a move). When the request is done the pager settles each page: gone from the
/// region and in the shadow, it is evicted (written back from the shadow if dirty, then the slot is freed by the next
/// request) — when the hand comes back, or at once for an Evict hint; still mapped (it would not move, or it was taken
/// back), it stays. The pager reads the region's own pages
/// only while the mailbox is idle and the region's shadow lock is held, so no move can start under the read (reading a
/// moved page would fault on the pager itself); it reads the shadow only where pagemap shows a page.
/// <para>The clock's second chance comes from the shadow, as shmem's from the page cache: a page moved out stays there,
/// cold, until the hand comes back; a touch meanwhile takes it back (no store read) and it is kept; one still in the
/// shadow then is evicted. (Pagemap has no accessed bit: taking the page away is the only way to see a touch.)</para>
/// </summary>
internal sealed unsafe partial class FaultEngine
{
    /// <summary>How long Flush and Evict wait for the application's unmapper to finish a request: it runs managed code,
    /// so a garbage collection can hold it up; no fault ever waits for it.</summary>
    private static readonly TimeSpan UnmapperWait = TimeSpan.FromSeconds(10);

    /// <summary>One step of the evictor on an anonymous region: settles a finished move request, hands freed shadow
    /// slots to the unmapper, or posts the next move request with up to <paramref name="want"/> pages of [first, end).
    /// Never waits for the unmapper. Returns the pages evicted or on their way out.</summary>
    private long SweepAnonymous(ServedRegion r, long first, long end, long want, WriteBackScratch s)
    {
        lock (r.ShadowLock)
        {
            if (!r.Control.UnmapMailboxFree)
            {
                return 0;
            }
            // Over the budget itself (not only past the evictor's start mark): no time for a second chance — the
            // pages that left are evicted now. Otherwise they wait in the shadow, cold, for the hand to come back.
            // (Each page needs a round trip to the unmapper before the hand can see it untouched, and a collection
            // stops that thread: under heavy GC a pure second-chance clock evicted nothing in 20 s.)
            long settled = SettleMoves(r, s, evict: OverBudget(r, 0));
            if (PostFrees(r, s))
            {
                return settled;
            }
            return settled + PostMoves(r, s, first, end, want);
        }
    }

    /// <summary>Application hint for an anonymous region: evicts [first, end) and returns when it is done (waiting for
    /// the unmapper, up to <see cref="UnmapperWait"/> per request).</summary>
    private void EvictAnonymousRange(ServedRegion r, long first, long end, WriteBackScratch s)
    {
        lock (r.ShadowLock)
        {
            for (long w = first; w < end; w += ClockWindowPages)
            {
                long we = Math.Min(end, w + ClockWindowPages);
                WaitForUnmapper(r);
                SettleMoves(r, s, evict: true);
                if (PostFrees(r, s))
                {
                    WaitForUnmapper(r);
                }
                if (PostMoves(r, s, w, we, long.MaxValue, waitForClaims: true) > 0)
                {
                    WaitForUnmapper(r);
                    SettleMoves(r, s, evict: true);
                }
            }
            if (PostFrees(r, s))
            {
                WaitForUnmapper(r);
            }
        }
    }

    /// <summary>The evictor's wait for the unmapper: spins up to 1 ms (a request takes ~30–100 µs, mostly the wake of
    /// the thread on this 2-vCPU VM), never sleeps; false when it is still busy. A fill waiting for room waits for
    /// the evictor at most 1 s and then goes on, so this never holds a fault for long.</summary>
    private static bool AwaitUnmapper(ServedRegion r)
    {
        long deadline = Stopwatch.GetTimestamp() + Stopwatch.Frequency / 1000;
        while (!r.Control.UnmapMailboxFree)
        {
            if (Stopwatch.GetTimestamp() > deadline)
            {
                return false;
            }
            Thread.SpinWait(64);
        }
        return true;
    }

    /// <summary>Waits until the unmapper has done the last request. Throws after <see cref="UnmapperWait"/>.</summary>
    private static void WaitForUnmapper(ServedRegion r)
    {
        long deadline = Stopwatch.GetTimestamp() + (long)(UnmapperWait.TotalSeconds * Stopwatch.Frequency);
        var spin = new SpinWait();
        while (!r.Control.UnmapMailboxFree)
        {
            if (Stopwatch.GetTimestamp() > deadline)
            {
                throw new PagerException($"the unmapper thread of region {r.Id} did not finish its request within {UnmapperWait.TotalSeconds} s");
            }
            spin.SpinOnce(sleep1Threshold: 20);
        }
    }

    /// <summary>Settles the pages of the move request just done (lock held, mailbox idle): with
    /// <paramref name="evict"/> (an Evict hint) the pages that left are evicted now; otherwise they stay in the shadow,
    /// cold, until the clock's hand comes back (a touch meanwhile takes them back: their second chance). Returns the
    /// pages evicted.</summary>
    private long SettleMoves(ServedRegion r, WriteBackScratch s, bool evict = false)
    {
        if (!r.MoveOutstanding)
        {
            return 0;
        }
        r.MoveOutstanding = false;
        long evicted = 0;
        for (int i = 0; i < r.LeavingCount; i++)
        {
            evicted += SettleOne(r, s, r.Leaving![i], wait: true, evict);
        }
        r.LeavingCount = 0;
        r.Control.Add(RegionStat.PagesEvicted, evicted);
        return evicted;
    }

    /// <summary>Settles one page that may have moved into the shadow (lock held, mailbox idle): claimed, then — mapped
    /// in the region: it stays (a copy left in the shadow is freed); gone and in the shadow: cold (without
    /// <paramref name="evict"/>: counted as unmapped, left there), or written back from there if dirty, then evicted and
    /// its slot freed. Returns 1 when it was evicted.</summary>
    private int SettleOne(ServedRegion r, WriteBackScratch s, long p, bool wait, bool evict)
    {
        if (!ClaimOne(r, p, wait))
        {
            return 0; // a fault is taking it back right now: it stays, and is settled with a later request
        }
        var control = r.Control;
        try
        {
            if (!control.IsFilled(p))
            {
                return 0;
            }
            bool mapped = IsMapped(r, r.Start, p), inShadow = IsMapped(r, r.Shadow, p);
            if (mapped)
            {
                if (inShadow)
                {
                    QueueFree(r, p);
                }
                return 0;
            }
            if (inShadow && !evict)
            {
                control.Add(RegionStat.PagesUnmapped, 1);
                return 0;
            }
            if (inShadow && control.IsDirty(p) && !StoreRun(r, s, p, 1, application: r.Shadow))
            {
                // Written after the move was asked for and before it happened (the shadow has the last bytes), and the
                // store refused them: the page stays (filled, in the shadow, dirty); a touch takes it back, a Flush retries.
                return 0;
            }
            // Gone from the region: its bytes are in the store (clean, or just written back). Neither mapped nor in
            // the shadow happens only when the application dropped the page itself (madvise): nothing is left to keep.
            control.ClearFilled(p, 1);
            control.ClearDirty(p, 1);
            r.Cold!.Clear(p, 1);
            if (inShadow)
            {
                QueueFree(r, p);
            }
            return 1;
        }
        finally
        {
            ReleaseClaims(r, p, 1);
        }
    }

    /// <summary>Claims one page, waiting (up to a second) for a fault that holds it when <paramref name="wait"/>.</summary>
    private static bool ClaimOne(ServedRegion r, long p, bool wait)
    {
        if (r.Claims.TryClaim(p))
        {
            return true;
        }
        if (!wait)
        {
            return false;
        }
        long deadline = Stopwatch.GetTimestamp() + Stopwatch.Frequency;
        var spin = new SpinWait();
        while (!r.Claims.TryClaim(p))
        {
            if (Stopwatch.GetTimestamp() > deadline)
            {
                return false;
            }
            spin.SpinOnce(sleep1Threshold: 20);
        }
        return true;
    }

    /// <summary>Whether page <paramref name="p"/> of the mapping at <paramref name="mappingStart"/> (the region or its
    /// shadow) is mapped, from the application's pagemap (true when it cannot be read: never read a hole).</summary>
    private bool IsMapped(ServedRegion r, ulong mappingStart, long p)
    {
        Span<PageCategory> one = stackalloc PageCategory[1];
        Span<Libc.PageRegion> scratch = stackalloc Libc.PageRegion[1];
        if (!App.Categories(mappingStart + ((ulong)p << r.PageShift), r.PageSize, one, scratch, out var errno))
        {
            throw new PagerException($"reading the pagemap of region {r.Id} failed: {errno}");
        }
        return (one[0] & PageCategory.Present) != 0;
    }

    /// <summary>Queues shadow slot <paramref name="p"/> to be freed by a later request (no lock needed).</summary>
    private static void QueueFree(ServedRegion r, long p)
    {
        if (r.FreeQueue!.TrySet(p))
        {
            Interlocked.Increment(ref r.FreeCount);
        }
    }

    /// <summary>Hands queued shadow slots to the unmapper to free (lock held, mailbox idle): up to
    /// <see cref="RegionControlBlock.UnmapSlots"/> ranges. True when a request went out.</summary>
    private static bool PostFrees(ServedRegion r, WriteBackScratch s)
    {
        var queue = r.FreeQueue!;
        if (Interlocked.Read(ref r.FreeCount) == 0)
        {
            return false;
        }
        int n = 0;
        long start = r.ShadowCursor & ~63L, p = start;
        do
        {
            ulong word = queue.Word(p);
            for (int b = 0; word != 0 && b < 64 && n < s.Unmap.Length; b++)
            {
                if ((word & (1UL << b)) != 0 && p + b < r.Pages)
                {
                    s.Unmap[n++] = p + b;
                }
            }
            p += 64;
            if (p >= r.Pages)
            {
                p = 0;
            }
        }
        while (n < s.Unmap.Length && p != start);
        if (n == 0)
        {
            Interlocked.Exchange(ref r.FreeCount, 0);
            return false;
        }
        s.Unmap.AsSpan(0, n).Sort(); // ascending, as the mailbox wants (the walk may have wrapped round)
        int posted = r.Control.TryPostUnmap(s.Unmap.AsSpan(0, n));
        for (int i = 0; i < posted; i++)
        {
            queue.Clear(s.Unmap[i], 1);
        }
        Interlocked.Add(ref r.FreeCount, -posted);
        r.ShadowCursor = posted < n ? s.Unmap[posted] : p;
        r.MoveOutstanding = false;
        return posted > 0;
    }

    /// <summary>Picks up to <paramref name="want"/> resident, unpinned pages of [first, end) whose shadow slot is free,
    /// writes the dirty ones back (lock held, mailbox idle: no move can start while they are read) and posts a request
    /// to move them into the shadow. Pages filled but not mapped (in the shadow since a request that could not be
    /// settled) are settled now. With <paramref name="waitForClaims"/> (an Evict hint) pages in flight are waited for
    /// (up to a second each), not skipped: the fill thread releases a write fault's claim just after it wakes the
    /// writer, so an Evict called right after a write can find the page still claimed (seen in CI: one of two dirty
    /// pages left mapped). Returns the pages posted.</summary>
    private long PostMoves(ServedRegion r, WriteBackScratch s, long first, long end, long want, bool waitForClaims = false)
    {
        var control = r.Control;
        int n = (int)(end - first);
        if (waitForClaims)
        {
            // Before the pagemap is read: a take-back in flight changes what it would say.
            for (long p = first; p < end; p++)
            {
                if (control.IsFilled(p) && !control.IsPinned(p) && r.Claims.IsClaimed(p) && ClaimOne(r, p, wait: true))
                {
                    ReleaseClaims(r, p, 1);
                }
            }
        }
        var categories = s.Categories.AsSpan(0, n);
        if (!App.Categories(r.Start + ((ulong)first << r.PageShift), r.PageSize, categories, s.Regions, out var errno))
        {
            Log.EvictionFailed(_logger, r.Id, $"reading the pagemap failed: {errno}");
            return 0;
        }
        int victims = 0;
        for (long p = first; p < end && victims < want; p++)
        {
            if (!control.IsFilled(p) || control.IsPinned(p) || r.FreeQueue!.IsSet(p) || r.Claims.IsClaimed(p))
            {
                continue;
            }
            if ((categories[(int)(p - first)] & PageCategory.Present) == 0)
            {
                // Moved out a turn ago and not touched since (a touch takes it back): evicted now.
                control.Add(RegionStat.PagesEvicted, SettleOne(r, s, p, wait: false, evict: true));
                continue;
            }
            if (control.IsDirty(p) && !r.Writable)
            {
                continue; // a dirty page of a read-only store stays
            }
            s.Victims[victims++] = p;
        }
        // Dirty runs go back to the store first: claimed, protected (a write now faults and waits), read, written.
        int kept = 0;
        for (int i = 0; i < victims;)
        {
            long p = s.Victims[i];
            if (!control.IsDirty(p))
            {
                s.Victims[kept++] = p;
                i++;
                continue;
            }
            long q = p;
            int j = i;
            long maxRun = Math.Max(1, MaxRunBytes >> r.PageShift);
            while (j < victims && s.Victims[j] == q && q - p < maxRun && control.IsDirty(q) && ClaimOne(r, q, wait: waitForClaims && q == p))
            {
                q++;
                j++;
            }
            if (q == p)
            {
                i++; // claimed by a fault meanwhile: next time
                continue;
            }
            bool written = StoreRun(r, s, p, q - p, application: r.Start);
            if (written)
            {
                control.ClearDirty(p, q - p);
            }
            ReleaseClaims(r, p, q - p);
            if (written)
            {
                for (long x = p; x < q; x++)
                {
                    s.Victims[kept++] = x;
                }
            }
            i = j;
        }
        if (kept == 0)
        {
            return 0;
        }
        int posted = control.TryPostUnmap(s.Victims.AsSpan(0, kept), move: true);
        s.Victims.AsSpan(0, posted).CopyTo(r.Leaving);
        r.LeavingCount = posted;
        r.MoveOutstanding = posted > 0;
        return posted;
    }

    /// <summary>Copies [offset, offset+length) of the region's pages (at <paramref name="mappingStart"/>: the region, or
    /// its shadow) out of the application with process_vm_readv. The caller knows the pages are mapped (a hole would
    /// fault on this thread). Throws when the kernel refuses or comes up short.</summary>
    private void ReadApplication(ulong mappingStart, ServedRegion r, byte* destination, long offset, int length)
    {
        int done = 0;
        while (done < length)
        {
            var local = new Libc.IoVec { Base = destination + done, Length = (nuint)(length - done) };
            var remote = new Libc.IoVec { Base = (void*)(mappingStart + (ulong)offset + (ulong)done), Length = (nuint)(length - done) };
            nint n = Libc.ProcessVmReadv(_applicationPid, &local, 1, &remote, 1, 0);
            if (n <= 0)
            {
                if (n < 0 && Libc.LastErrno == Errno.EINTR)
                {
                    continue;
                }
                throw Libc.Error($"process_vm_readv of {length - done} bytes at {offset + done} of region {r.Id}");
            }
            done += (int)n;
        }
    }

    /// <summary>Flush of a tracked anonymous region (lock held, mailbox idle): reads the claimed run [first, end) into
    /// the snapshot, each page from the region where it is mapped, else from the shadow (moved, not settled), else
    /// zeros (the application dropped it itself).</summary>
    private void ReadAnonymousRun(ServedRegion r, WriteBackScratch s, long first, long end)
    {
        int n = (int)(end - first);
        var categories = s.Categories.AsSpan(0, n);
        if (!App.Categories(r.Start + ((ulong)first << r.PageShift), r.PageSize, categories, s.Regions, out var errno))
        {
            throw new PagerException($"reading the pagemap of region {r.Id} failed: {errno}");
        }
        long p = first;
        while (p < end)
        {
            long q = p + 1;
            bool mapped = (categories[(int)(p - first)] & PageCategory.Present) != 0;
            if (mapped)
            {
                while (q < end && (categories[(int)(q - first)] & PageCategory.Present) != 0)
                {
                    q++;
                }
                ReadApplication(r.Start, r, s.Snapshot + ((p - first) << r.PageShift), p << r.PageShift, checked((int)((q - p) << r.PageShift)));
            }
            else if (IsMapped(r, r.Shadow, p))
            {
                ReadApplication(r.Shadow, r, s.Snapshot + ((p - first) << r.PageShift), p << r.PageShift, r.PageSize);
            }
            else
            {
                new Span<byte>(s.Snapshot + ((p - first) << r.PageShift), r.PageSize).Clear();
            }
            p = q;
        }
    }

    /// <summary>MapAgain of a claimed page of a tracked anonymous region: mapped already (a stale message: woken, done),
    /// or taken back from the shadow. False when neither (the caller reads the store). The region is checked first:
    /// only a page gone from it can be in the shadow with its latest bytes (a copy left there after a take-back may be
    /// being freed right now, so it is never read).</summary>
    private bool TakeBackTracked(FillThread t, ServedRegion r, long p)
    {
        var one = t.Categories.AsSpan(0, 1);
        if (!App.Categories(r.Start + ((ulong)p << r.PageShift), r.PageSize, one, t.ScanRegions, out _) || (one[0] & PageCategory.Present) != 0)
        {
            Wake(r, r.Start + ((ulong)p << r.PageShift), (ulong)r.PageSize);
            return true;
        }
        return TakeBackFromShadow(t, r, p);
    }

    /// <summary>A fault on a page of a tracked anonymous region that is filled but not mapped: if the shadow holds it
    /// (moved out and not settled yet), its bytes are copied back, protected (clean) — its dirty bit is kept — and the
    /// stale copy in the shadow is queued to be freed. False when the shadow has nothing (the caller reads the store).
    /// The page is claimed by the caller.</summary>
    private bool TakeBackFromShadow(FillThread t, ServedRegion r, long p)
    {
        var one = t.Categories.AsSpan(0, 1);
        if (!App.Categories(r.Shadow + ((ulong)p << r.PageShift), r.PageSize, one, t.ScanRegions, out _) || (one[0] & PageCategory.Present) == 0)
        {
            return false;
        }
        ReadApplication(r.Shadow, r, t.CopyBuffer, p << r.PageShift, r.PageSize);
        MapAnonymous(r, p, 1, PageReadStatus.Data, t.CopyBuffer, stale: true);
        QueueFree(r, p);
        r.Control.Add(RegionStat.SecondChances, 1);
        return true;
    }
}
