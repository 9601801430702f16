using System.Diagnostics;
using Paging.Interop;
using Paging.Kernel;
using Paging.Logging;
using Paging.Protocol;

namespace Paging.Engine;

/// <summary>
/// Eviction under a memory budget (shmem arenas whose writes are tracked). A CLOCK with second chance that needs no
/// help from the application: the hand walks the region in 2 MiB windows; a resident page that is mapped is unmapped
/// (process_madvise(MADV_PAGEOUT) on the application: the page cache stays, so a touch maps it back with a cheap MINOR
/// fault) and marked cold; a cold page still unmapped when the hand comes back was not touched for a whole turn and is
/// evicted: claimed (a fault on it now waits), checked again, written back if dirty, punched out of the memfd.
/// <para>Dirty, without a fault per write: pages are mapped write-protected (UFFDIO_CONTINUE_MODE_WP under
/// WP_ASYNC), the kernel lifts the protection at the first write, and PAGEMAP_SCAN reports which pages were written.
/// When reclaim unmaps a protected page it leaves a uffd-wp marker; a written page leaves none. So a cold page is
/// clean only with the proof — the marker and no Written bit and no bit in the dirty bitmap; anything else is written
/// back first. A claimed, unmapped page cannot be written (a write must fault, and the fault waits for the claim), so
/// what is written back is what is punched: no write can race an eviction.</para>
/// </summary>
internal sealed unsafe partial class FaultEngine
{
    /// <summary>Pages the clock looks at per step: 512 × 4 KiB = 2 MiB, one PAGEMAP_SCAN and one process_madvise.
    /// 8 MiB windows were tried (fewer calls, so fewer TLB-shootdown batches): the bufferpool harness did not move
    /// (9.7k vs 10.1k lookups/s, within run-to-run noise), so the smaller step, which keeps a fill's wait short, stays.</summary>
    internal const int ClockWindowPages = 512;

    /// <summary>How long a fill waits for the evictor to make room before it goes over the budget anyway: a budget
    /// is a target the evictor keeps, never a reason for a fault to hang (a region whose pages are all pinned or
    /// dirty with a read-only store cannot shrink).</summary>
    private static readonly long RoomWaitTicks = Stopwatch.Frequency;

    private readonly long _runtimeBudgetBytes;
    private readonly int _applicationPid;
    private readonly Lock _trackingLock = new();
    private readonly AutoResetEvent _evictSignal = new(false);
    private readonly WriteBackScratch _evictScratch = new();
    private readonly WriteBackScratch _commandScratch = new();
    private ApplicationMemory? _app;
    private Thread? _evictor;
    private int _regionCursor;

    /// <summary>Opens the application's pagemap and pidfd and starts the evictor, once, for the first region whose
    /// writes are tracked.</summary>
    private void EnableTracking()
    {
        lock (_trackingLock)
        {
            if (_applicationPid <= 0)
            {
                throw new PagerException("write tracking needs the application's pid (this engine was built without one)");
            }
            _app ??= ApplicationMemory.Open(_applicationPid, useScan: !_syncWrites);
            if (_evictor is null)
            {
                _evictor = new Thread(EvictLoop) { IsBackground = true, Name = "paging-evict" };
                _evictor.Start();
            }
        }
    }

    private ApplicationMemory App => _app ?? throw new PagerException("write tracking is not enabled in this pager");

    /// <summary>The evictor starts at budget − 1/16 and stops at budget − 1/8: 1/16 of the budget (16 MiB of a
    /// 256 MiB budget, 4096 fills) is headroom the fills use while it works, so a fill seldom waits for room.</summary>
    private static long High(long budget) => budget - Math.Max(1, budget / 16);

    private static long Low(long budget) => budget - Math.Max(2, budget / 8);

    private static long TotalResidentBytes(ServedRegion[] regions)
    {
        long total = 0;
        foreach (var r in regions)
        {
            total += r.CommittedPages << r.PageShift;
        }
        return total;
    }

    private bool OverBudget(ServedRegion r, long pages)
    {
        if (r.BudgetPages > 0 && r.CommittedPages + pages > r.BudgetPages)
        {
            return true;
        }
        return _runtimeBudgetBytes > 0 && TotalResidentBytes(Volatile.Read(ref _regions)) + (pages << r.PageShift) > _runtimeBudgetBytes;
    }

    /// <summary>Before a fill of an evictable region: wakes the evictor when the budget is near, and waits (up to
    /// 1 s) while the fill would go over it. Regions that cannot be evicted never wait.</summary>
    private void WaitForRoom(ServedRegion r, long pages)
    {
        if (!r.TrackWrites || (r.BudgetPages == 0 && _runtimeBudgetBytes == 0))
        {
            return;
        }
        if (r.BudgetPages > 0 ? r.CommittedPages + pages > High(r.BudgetPages) : TotalResidentBytes(Volatile.Read(ref _regions)) > High(_runtimeBudgetBytes))
        {
            _evictSignal.Set();
        }
        if (!OverBudget(r, pages))
        {
            return;
        }
        long deadline = Stopwatch.GetTimestamp() + RoomWaitTicks;
        var spin = new SpinWait();
        while (OverBudget(r, pages) && !_stopping && Stopwatch.GetTimestamp() < deadline)
        {
            _evictSignal.Set();
            // Yield first (the evictor usually frees room within microseconds), then sleep: on 2 vCPUs a spinning
            // fill thread takes the CPU the evictor needs.
            spin.SpinOnce(sleep1Threshold: 30);
        }
    }

    private void EvictLoop()
    {
        while (!_stopping)
        {
            // Checked 100 times a second even when no fill asks: a budget lowered by other regions' growth (the
            // runtime's shared budget) is noticed within 10 ms.
            try
            {
                _evictSignal.WaitOne(10);
            }
            catch (ObjectDisposedException)
            {
                return; // released by a Dispose that gave up waiting for this thread
            }
            if (!_active || _stopping)
            {
                continue;
            }
            try
            {
                if (Rebalance(_evictScratch) == 0)
                {
                    // Over budget but nothing could go (pages just filled are not on the kernel's LRU yet, so reclaim
                    // cannot unmap them; pinned or dirty read-only pages): let a millisecond pass, not a busy loop.
                    Thread.Sleep(1);
                }
            }
#pragma warning disable CA1031 // The evictor must keep running: one failed step is logged and retried.
            catch (Exception e) when (e is not OutOfMemoryException)
#pragma warning restore CA1031
            {
                Log.EvictionFailed(_logger, 0, e.Message);
                Thread.Sleep(100);
            }
        }
    }

    /// <summary>Evicts what the budgets ask for; returns the pages evicted (0 also when nothing was over).</summary>
    private long Rebalance(WriteBackScratch s)
    {
        long evicted = 0;
        var regions = Volatile.Read(ref _regions);
        foreach (var r in regions)
        {
            if (r.Cold is not null && r.BudgetPages > 0 && r.CommittedPages > High(r.BudgetPages) && r.TryEnter())
            {
                try
                {
                    // Room for the pages on their way too (asynchronous fills in flight), or they land over the budget.
                    evicted += EvictFrom(r, Math.Min(r.ResidentPages, r.CommittedPages - Low(r.BudgetPages)), s);
                }
                finally
                {
                    r.Exit();
                }
            }
        }
        if (_runtimeBudgetBytes <= 0 || regions.Length == 0)
        {
            return evicted;
        }
        long need = TotalResidentBytes(regions) - Low(_runtimeBudgetBytes);
        if (TotalResidentBytes(regions) <= High(_runtimeBudgetBytes))
        {
            return evicted;
        }
        int evictable = regions.Count(r => r.Cold is not null);
        for (int i = 0; i < regions.Length && need > 0 && evictable > 0; i++)
        {
            var r = regions[(int)((uint)Interlocked.Increment(ref _regionCursor) % (uint)regions.Length)];
            if (r.Cold is null || !r.TryEnter())
            {
                continue;
            }
            try
            {
                long share = Math.Max(1, (need >> r.PageShift) / evictable + 1);
                long n = EvictFrom(r, share, s);
                evicted += n;
                need -= n << r.PageShift;
            }
            finally
            {
                r.Exit();
            }
        }
        return evicted;
    }

    /// <summary>Turns the clock of <paramref name="r"/> until <paramref name="want"/> pages are evicted or it has gone
    /// round twice (once to unmap, once to evict). Returns the pages evicted.</summary>
    private long EvictFrom(ServedRegion r, long want, WriteBackScratch s)
    {
        // Two turns at most: one to unmap, one to evict what stayed untouched.
        long evicted = 0, visited = 0, limit = 2 * r.Pages + ClockWindowPages;
        bool drained = false;
        while (evicted < want && visited < limit && !_stopping)
        {
            if (!drained && visited >= r.Pages && r.Kind == ArenaKind.Shmem)
            {
                // A whole turn and still short: pages filled last may be waiting in a CPU's LRU batch, where reclaim
                // cannot unmap them.
                App.DrainLruBatches((nint)r.Start, r.PageSize);
                drained = true;
            }
            if (r.Kind == ArenaKind.Anonymous && !AwaitUnmapper(r))
            {
                break; // the application's unmapper is still busy: the hand stays, the evictor comes back
            }
            long first = r.Hand, end = Math.Min(r.Pages, first + ClockWindowPages);
            r.Hand = end >= r.Pages ? 0 : end;
            visited += end - first;
            if (AnyFilled(r.Control, first, end))
            {
                evicted += r.Kind == ArenaKind.Anonymous ? SweepAnonymous(r, first, end, want - evicted, s)
                    : r.CallerFills ? SweepReferenced(r, first, end, want - evicted, s)
                    : SweepWindow(r, first, end, want - evicted, s);
            }
        }
        return evicted;
    }

    private static bool AnyFilled(RegionControlBlock control, long first, long end)
    {
        for (long p = first & ~63L; p < end; p += 64)
        {
            if (control.FilledWord(p) != 0)
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>One step of the clock over [first, end): mapped pages are unmapped and marked cold (a cold page found
    /// mapped again was touched: its second chance); pages cold and still unmapped are evicted, up to
    /// <paramref name="want"/>.</summary>
    private long SweepWindow(ServedRegion r, long first, long end, long want, WriteBackScratch s)
    {
        int n = (int)(end - first);
        var categories = s.Categories.AsSpan(0, n);
        if (!App.Categories(r.Start + ((ulong)first << r.PageShift), r.PageSize, categories, s.Regions, out var errno))
        {
            Log.EvictionFailed(_logger, r.Id, $"PAGEMAP_SCAN failed: {errno}");
            return 0;
        }
        var cold = r.Cold!;
        var control = r.Control;
        int victims = 0, unmaps = 0;
        // Hugetlbfs: the application's unmapper unmaps (see Unmapper), one request of at most UnmapSlots ranges at a
        // time; a mapped page is marked cold only if this step's request will carry it.
        bool mailbox = r.Kind == ArenaKind.HugeTlb;
        bool canUnmap = !mailbox || control.UnmapMailboxFree;
        int ranges = 0;
        for (long p = first; p < end; p++)
        {
            if (!control.IsFilled(p) || r.Claims.IsClaimed(p) || control.IsPinned(p))
            {
                continue;
            }
            if ((categories[(int)(p - first)] & PageCategory.Present) != 0)
            {
                if (!canUnmap)
                {
                    continue;
                }
                if (mailbox && (unmaps == 0 || s.Unmap[unmaps - 1] != p - 1) && ++ranges > RegionControlBlock.UnmapSlots)
                {
                    canUnmap = false;
                    continue;
                }
                if (!cold.TrySet(p))
                {
                    control.Add(RegionStat.SecondChances, 1);
                }
                s.Unmap[unmaps++] = p;
            }
            else if (cold.IsSet(p) && victims < want)
            {
                s.Victims[victims++] = p;
            }
            else
            {
                _ = cold.TrySet(p); // unmapped by someone else (reclaim, DAMON): evicted next turn unless touched
            }
        }
        long evicted = 0;
        if (victims > 0)
        {
            int claimed = 0;
            for (int i = 0; i < victims; i++)
            {
                long p = s.Victims[i];
                if (r.Claims.TryClaim(p))
                {
                    if (control.IsFilled(p))
                    {
                        s.Victims[claimed++] = p;
                    }
                    else
                    {
                        ReleaseClaims(r, p, 1);
                    }
                }
            }
            evicted = EvictClaimed(r, s, claimed, first, end);
        }
        if (unmaps > 0)
        {
            PageOut(r, s, unmaps);
        }
        return evicted;
    }

    /// <summary>One step of the clock over [first, end) for a region the application fills itself (caller fills): the
    /// application sets a page's referenced bit whenever it uses it (<c>PagedFile.Fetch</c>), so the hand only tests
    /// and clears bits — no page is unmapped to learn whether it is touched again. That unmapping was the evictor's
    /// main cost: on this VM each process_madvise(MADV_PAGEOUT) batch is a TLB-shootdown hypercall, and the clock
    /// unmapped every resident page once per turn (2.2–3.8 pages per eviction in the bufferpool harness, 36% of all CPU
    /// samples with caller fills on). Pages whose bit stayed clear for a whole turn are claimed (skipping any an
    /// application thread is reading in), unmapped in one batch and evicted as before: the unmapping still proves
    /// a page clean (the uffd-wp marker) and makes a late touch wait for the claim.</summary>
    private long SweepReferenced(ServedRegion r, long first, long end, long want, WriteBackScratch s)
    {
        var control = r.Control;
        int victims = 0;
        for (long p = first; p < end; p++)
        {
            if ((p & 63) == 0 && p + 64 <= end && control.FilledWord(p) == 0)
            {
                p += 63; // 64 pages not resident
                continue;
            }
            if (!control.IsFilled(p) || control.IsPinned(p) || r.Claims.IsClaimed(p))
            {
                continue;
            }
            if (control.TestAndClearReferenced(p) || victims >= want)
            {
                continue; // used since the hand last came by: one more turn
            }
            if (r.Claims.TryClaim(p))
            {
                if (control.IsFilled(p) && !control.IsCallerFilling(p))
                {
                    s.Victims[victims++] = p;
                }
                else
                {
                    ReleaseClaims(r, p, 1);
                }
            }
        }
        if (victims == 0)
        {
            return 0;
        }
        s.Victims.AsSpan(0, victims).CopyTo(s.Unmap);
        PageOut(r, s, victims);
        return EvictClaimed(r, s, victims, first, end);
    }

    /// <summary>Unmaps pages s.Unmap[0..count) from the application with one process_madvise(MADV_PAGEOUT), or, for
    /// hugetlbfs, posts them to the application's unmapper (SweepWindow kept them within one request).</summary>
    private void PageOut(ServedRegion r, WriteBackScratch s, int count)
    {
        if (r.Kind == ArenaKind.HugeTlb)
        {
            r.Control.Add(RegionStat.PagesUnmapped, r.Control.TryPostUnmap(s.Unmap.AsSpan(0, count)));
            return;
        }
        int runs = 0;
        for (int i = 0; i < count;)
        {
            if (runs == s.IoVecs.Length)
            {
                // More runs than one call takes (scattered pages): send these, go on with the rest.
                if (App.PageOut(s.IoVecs.AsSpan(0, runs), out var e) < 0)
                {
                    Log.EvictionFailed(_logger, r.Id, $"process_madvise(MADV_PAGEOUT) failed: {e}");
                    return;
                }
                runs = 0;
            }
            long p = s.Unmap[i], q = p + 1;
            int j = i + 1;
            while (j < count && s.Unmap[j] == q)
            {
                q++;
                j++;
            }
            s.IoVecs[runs++] = new Libc.IoVec { Base = (void*)(r.Start + ((ulong)p << r.PageShift)), Length = (nuint)((q - p) << r.PageShift) };
            i = j;
        }
        if (App.PageOut(s.IoVecs.AsSpan(0, runs), out var errno) < 0)
        {
            Log.EvictionFailed(_logger, r.Id, $"process_madvise(MADV_PAGEOUT) failed: {errno}");
            return;
        }
        r.Control.Add(RegionStat.PagesUnmapped, count);
    }

    /// <summary>Evicts the claimed pages s.Victims[0..count) of the window [first, end): a page found mapped again
    /// is kept; a dirty one is written back from the staging mapping first (it is unmapped and claimed, so nobody can
    /// write it meanwhile); then the page is punched out of the memfd. Every claim is released and the window woken
    /// (faults that arrived on a claimed page wait for that). Returns the pages evicted.</summary>
    private long EvictClaimed(ServedRegion r, WriteBackScratch s, int count, long first, long end)
    {
        if (count == 0)
        {
            return 0;
        }
        var control = r.Control;
        long evicted = 0;
        if (r.CallerFills)
        {
            // Before the caller-filling bits are read below (see RegionControlBlock.MarkLeaving): from here to the
            // end of the punch no application thread starts a fill of these pages.
            for (int k = 0; k < count; k++)
            {
                control.MarkLeaving(s.Victims[k], 1);
            }
        }
        try
        {
            // Read again now that the pages are claimed: between the first scan and the claim a fault may have mapped
            // one of them again.
            int n = (int)(end - first);
            var categories = s.Categories.AsSpan(0, n);
            lock (r.DirtyLock)
            {
                // Read, and what it says recorded, in one step against a Flush's re-protecting scan (see
                // ServedRegion.DirtyLock): a victim whose PTE says it may be written is marked dirty now, so that a
                // marker the scan installs afterwards cannot make it look clean below.
                if (!App.Categories(r.Start + ((ulong)first << r.PageShift), r.PageSize, categories, s.Regions, out var errno))
                {
                    Log.EvictionFailed(_logger, r.Id, $"PAGEMAP_SCAN failed: {errno}");
                    return 0;
                }
                if (!_syncWrites)
                {
                    for (int k = 0; k < count; k++)
                    {
                        long v = s.Victims[k];
                        var cv = categories[(int)(v - first)];
                        if ((cv & PageCategory.Present) == 0 && IsDirtyUnmapped(control, v, cv))
                        {
                            control.MarkDirty(v, 1);
                        }
                    }
                }
            }
            int i = 0;
            while (i < count)
            {
                // A run of consecutive victims that are all evictable, at most one write-back's worth.
                long p = s.Victims[i];
                var c = categories[(int)(p - first)];
                if (r.CallerFills && control.IsCallerFilling(p))
                {
                    // An application thread is reading this page from the store (it saw it not filled earlier, and a
                    // fault has filled it since): evicting it now could let that thread install bytes older than this
                    // write-back. It stays; the leaving mark (a locked write) came before this read.
                    i++;
                    continue;
                }
                if ((c & PageCategory.Present) != 0)
                {
                    control.Add(RegionStat.SecondChances, 1);
                    i++;
                    continue;
                }
                bool dirty = IsDirtyUnmapped(control, p, c);
                if (dirty && !r.Writable)
                {
                    i++; // a dirty page of a read-only store stays
                    continue;
                }
                long q = p + 1;
                int j = i + 1;
                long maxRun = Math.Max(1, MaxRunBytes >> r.PageShift);
                while (j < count && s.Victims[j] == q && q - p < maxRun)
                {
                    var cq = categories[(int)(q - first)];
                    bool dq = IsDirtyUnmapped(control, q, cq);
                    if ((cq & PageCategory.Present) != 0 || (dq && !r.Writable) || (r.CallerFills && control.IsCallerFilling(q)))
                    {
                        break;
                    }
                    dirty |= dq;
                    q++;
                    j++;
                }
                if (dirty && !StoreRun(r, s, p, q - p))
                {
                    i = j;
                    continue;
                }
                if (r.RetainsEvicted)
                {
                    RetainEvicted(r, s, p, q - p, bytesInSnapshot: dirty);
                }
                control.ClearFilled(p, q - p);
                control.ClearDirty(p, q - p);
                r.Cold!.Clear(p, q - p);
                long offset = p << r.PageShift, length = (q - p) << r.PageShift;
                if (Libc.Fallocate(r.Memfd!, FallocateFlags.PunchHole | FallocateFlags.KeepSize, offset, length) != 0)
                {
                    // The pages stay in the page cache, unmapped and not marked filled: the next touch fills them
                    // again from the store, which holds their bytes (they were clean or just written back).
                    Log.EvictionFailed(_logger, r.Id, $"fallocate(PUNCH_HOLE) of {length} bytes at {offset} failed: {Libc.LastErrno}");
                }
                evicted += q - p;
                i = j;
            }
            control.Add(RegionStat.PagesEvicted, evicted);
            return evicted;
        }
        finally
        {
            for (int k = 0; k < count; k++)
            {
                if (r.CallerFills)
                {
                    control.ClearLeaving(s.Victims[k], 1);
                }
                r.Claims.Release(s.Victims[k], 1);
            }
            Wake(r, r.Start + ((ulong)first << r.PageShift), (ulong)(end - first) << r.PageShift);
        }
    }

    /// <summary>Whether an unmapped page must be written back: clean only with the proof (a uffd-wp marker, no
    /// Written bit, no dirty bit); an empty PTE may have been written before it was unmapped.
    /// With synchronous tracking the bit alone decides: no page is written before its write fault sets it.</summary>
    private bool IsDirtyUnmapped(RegionControlBlock control, long page, PageCategory c) =>
        control.IsDirty(page) || (!_syncWrites && ((c & PageCategory.Written) != 0 || (c & PageCategory.Swapped) == 0));

    /// <summary>Writes pages [page, page+count) to the store (the pages are claimed and unmapped from the application,
    /// so they cannot change meanwhile). The bytes are read from the memfd with pread(2) into the scratch buffer, not
    /// through the staging mapping: touching the staging mapping would map the page and, by fault-around, up to 15
    /// neighbours into the pager, and reclaim never unmaps a page mapped twice — those neighbours could no longer be
    /// evicted. With <paramref name="application"/> (anonymous regions: the region itself, or its shadow) they are read
    /// out of the application instead; the region's own pages are write-protected first (synchronous tracking: a
    /// write then faults and waits for the claim). False when it failed (logged, counted; the pages stay dirty).</summary>
    private bool StoreRun(ServedRegion r, WriteBackScratch s, long page, long count, ulong application = 0)
    {
        long offset = page << r.PageShift;
        int length = checked((int)(count << r.PageShift));
        try
        {
            if (application == 0)
            {
                if (!ReadMemfd(r, s, offset, length))
                {
                    throw Libc.Error($"pread of {length} bytes at {offset} from the memfd of region {r.Id}");
                }
            }
            else
            {
                if (application == r.Start)
                {
                    var wp = _uffd.WriteProtect(r.Start + (ulong)offset, (ulong)length, protect: true);
                    if (wp != Errno.None)
                    {
                        throw new PagerException($"UFFDIO_WRITEPROTECT of {length} bytes at {offset} failed: {wp}");
                    }
                }
                ReadApplication(application, r, s.Snapshot, offset, length);
            }
            r.Store.Write(offset, new ReadOnlySpan<byte>(s.Snapshot, length));
        }
#pragma warning disable CA1031 // A failing store is reported through the counters and the log; the pages stay.
        catch (Exception e) when (e is not OutOfMemoryException)
#pragma warning restore CA1031
        {
            r.Control.Add(RegionStat.WriteErrors, 1);
            Log.WriteBackFailed(_logger, length, offset, r.Id, e.Message);
            return false;
        }
        r.Control.Add(RegionStat.PagesWrittenBack, count);
        r.Control.Add(RegionStat.BytesWritten, length);
        return true;
    }

    /// <summary>Hands the bytes of an evicted run to a store that keeps them (a compressed tier): read from the memfd
    /// unless the write-back just did.</summary>
    private static void RetainEvicted(ServedRegion r, WriteBackScratch s, long page, long count, bool bytesInSnapshot)
    {
        long offset = page << r.PageShift;
        int length = checked((int)(count << r.PageShift));
        if (!bytesInSnapshot && !ReadMemfd(r, s, offset, length))
        {
            return; // nothing to keep: the store reads them as usual next time
        }
        r.Store.Retain(offset, new ReadOnlySpan<byte>(s.Snapshot, length));
    }

    /// <summary>pread(2) of [offset, offset+length) of the arena's memfd into the scratch buffer (no mapping, see
    /// <see cref="StoreRun"/>). False on an error other than EINTR (errno left for the caller).</summary>
    private static bool ReadMemfd(ServedRegion r, WriteBackScratch s, long offset, int length)
    {
        long done = 0;
        while (done < length)
        {
            nint n = Libc.Pread(r.Memfd!, s.Snapshot + done, (nuint)(length - done), offset + done);
            if (n <= 0)
            {
                if (n < 0 && Libc.LastErrno == Errno.EINTR)
                {
                    continue;
                }
                return false;
            }
            done += n;
        }
        return true;
    }

    /// <summary>Drops the pager's own page tables over [offset, offset+length) of the staging mapping, widened to the
    /// kernel's 64 KiB fault-around window (fault_around_bytes): a page mapped in the pager too is one reclaim will
    /// not unmap from the application, so it could never be evicted. MADV_DONTNEED on a shared mapping keeps the
    /// page cache.</summary>
    private static void ZapStaging(ServedRegion r, long offset, long length)
    {
        if (r.Staging is null)
        {
            return; // anonymous: the pager never maps the region's pages
        }
        const long window = 64 * 1024;
        long start = offset & ~(window - 1), end = Math.Min((long)r.Length, (offset + length + window - 1) & ~(window - 1));
        _ = Libc.Madvise((nint)(r.Staging!.Pointer + start), (nuint)(end - start), Advice.DontNeed);
    }

    /// <summary>Application hint: writes [first, end) back where dirty and drops it. Pages pinned or still mapped
    /// after the unmap (the kernel may skip a page it cannot take) stay.</summary>
    public void Evict(ulong id, long first, long end)
    {
        var r = FindById(id) ?? throw new PagerException($"no region {id}");
        if (r.Cold is null)
        {
            throw new PagerException($"region {id} does not track writes, so it cannot evict safely: create it with RegionOptions.WriteBack or a MemoryBudget (or use Discard, which drops writes)");
        }
        if (end > r.Pages || first >= end)
        {
            throw new PagerException($"evict of pages [{first}, {end}) does not fit region {id} ({r.Pages} pages)");
        }
        if (!r.TryEnter())
        {
            throw new PagerException($"region {id} is being removed");
        }
        var s = _commandScratch;
        try
        {
            if (r.Kind == ArenaKind.Anonymous)
            {
                EvictAnonymousRange(r, first, end, s);
                return;
            }
            for (long w = first; w < end; w += ClockWindowPages)
            {
                long we = Math.Min(end, w + ClockWindowPages);
                int count = ClaimFilled(r, w, we, s, pinnedToo: false);
                int unmaps = 0;
                for (int i = 0; i < count; i++)
                {
                    s.Unmap[unmaps++] = s.Victims[i];
                }
                if (unmaps > 0)
                {
                    PageOut(r, s, unmaps);
                    if (r.Kind != ArenaKind.HugeTlb && AnyStillMapped(r, s, count, w, we))
                    {
                        // Pages filled moments ago wait in a CPU's LRU batch, where reclaim cannot take them: drain the
                        // batches and ask once more, so an explicit Evict leaves only what the kernel truly keeps.
                        App.DrainLruBatches((nint)r.Start, r.PageSize);
                        PageOut(r, s, unmaps);
                    }
                }
                _ = EvictClaimed(r, s, count, w, we);
            }
        }
        finally
        {
            r.Exit();
        }
    }

    /// <summary>Whether any of the claimed pages s.Victims[0..count) of [first, end) is still mapped (true when the
    /// kernel cannot say).</summary>
    private bool AnyStillMapped(ServedRegion r, WriteBackScratch s, int count, long first, long end)
    {
        var categories = s.Categories.AsSpan(0, (int)(end - first));
        if (!App.Categories(r.Start + ((ulong)first << r.PageShift), r.PageSize, categories, s.Regions, out _))
        {
            return true;
        }
        for (int i = 0; i < count; i++)
        {
            if ((categories[(int)(s.Victims[i] - first)] & PageCategory.Present) != 0)
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>Claims every filled page of [first, end) (waiting for fills and evictions in flight on them, up to the
    /// read deadline) into s.Victims; returns how many.</summary>
    private int ClaimFilled(ServedRegion r, long first, long end, WriteBackScratch s, bool pinnedToo)
    {
        int count = 0;
        long deadline = Environment.TickCount64 + (long)(r.ReadTimeout + TimeSpan.FromSeconds(5)).TotalMilliseconds;
        var spin = new SpinWait();
        for (long p = first; p < end; p++)
        {
            if (!r.Control.IsFilled(p) || (!pinnedToo && r.Control.IsPinned(p)))
            {
                continue;
            }
            while (!r.Claims.TryClaim(p))
            {
                if (Environment.TickCount64 > deadline)
                {
                    for (int i = 0; i < count; i++)
                    {
                        ReleaseClaims(r, s.Victims[i], 1);
                    }
                    throw new PagerException($"page {p} of region {r.Id} stayed in flight past the read deadline");
                }
                spin.SpinOnce(sleep1Threshold: 20);
            }
            if (r.Control.IsFilled(p))
            {
                s.Victims[count++] = p;
            }
            else
            {
                ReleaseClaims(r, p, 1);
            }
        }
        return count;
    }
}

/// <summary>Scratch space of one eviction or write-back thread (the evictor's, the control thread's): nothing is
/// allocated per step.</summary>
internal sealed unsafe class WriteBackScratch : IDisposable
{
    public PageCategory[] Categories { get; } = new PageCategory[FaultEngine.ClockWindowPages];
    public Libc.PageRegion[] Regions { get; } = new Libc.PageRegion[ApplicationMemory.ScanCapacity];
    public Libc.IoVec[] IoVecs { get; } = new Libc.IoVec[ApplicationMemory.MaxIoVecs];
    public long[] Victims { get; } = new long[FaultEngine.ClockWindowPages];
    public long[] Unmap { get; } = new long[FaultEngine.ClockWindowPages];

    /// <summary>A run's snapshot for write-back: 256 KiB of 4 KiB pages or one 2 MiB huge page (a run is at least a
    /// page), 4 KiB aligned (PageCopy's aligned stores). Untouched memory until a write-back uses it.</summary>
    public byte* Snapshot { get; } = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(SnapshotBytes, 4096);

    internal const int SnapshotBytes = FaultEngine.MaxRunBytes > (2 << 20) ? FaultEngine.MaxRunBytes : 2 << 20;

    public void Dispose() => System.Runtime.InteropServices.NativeMemory.AlignedFree(Snapshot);
}
