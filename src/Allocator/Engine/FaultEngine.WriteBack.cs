using Paging.Interop;
using Paging.Logging;
using Paging.Protocol;
using Paging.Simd;
using Paging.Stores;

namespace Paging.Engine;

/// <summary>
/// Flush: every page written before the request goes back to the store, then the store makes it durable. One
/// PAGEMAP_SCAN per run of resident pages reports the written pages and write-protects them again in the same walk;
/// they join the dirty bitmap (shared memory: a pager that takes over still knows them). Each dirty run is then
/// claimed, copied into a snapshot with <see cref="PageCopy"/> and checked: a page written during the copy is copied
/// again (a write after the check is seen by the next scan), so what reaches the store is a page as it was at one
/// instant — never half of one write. A run that fails to write stays dirty and the Flush reports it.
/// </summary>
internal sealed unsafe partial class FaultEngine
{
    /// <summary>Copies of a run while the application keeps writing it: after 4 the last copy is written anyway (it
    /// holds every write made before the Flush began) and the pages stay dirty for the next write-back.</summary>
    private const int SnapshotAttempts = 4;

    /// <summary>Writes back every page of region <paramref name="id"/> written before the call and flushes the store.
    /// Throws <see cref="PageStoreException"/> naming the first failure when any page could not be written.</summary>
    public void Flush(ulong id)
    {
        var r = FindById(id) ?? throw new PagerException($"no region {id}");
        if (!r.TrackWrites)
        {
            throw new PagerException($"region {id} does not track writes: create it with RegionOptions.WriteBack = true (or a MemoryBudget) to flush it");
        }
        if (!r.TryEnter())
        {
            throw new PagerException($"region {id} is being removed");
        }
        var s = _commandScratch;
        var control = r.Control;
        try
        {
            long failed = 0;
            string? firstError = null;
            control.Flags |= RegionControlBlock.ScanInProgress;
            bool recorded = false;
            try
            {
                long scanStart = System.Diagnostics.Stopwatch.GetTimestamp();
                long scanned = CollectDirty(r, s);
                recorded = true;
                control.Add(RegionStat.DirtyScanNanoseconds, (long)System.Diagnostics.Stopwatch.GetElapsedTime(scanStart).TotalNanoseconds);
                control.Add(RegionStat.DirtyScannedPages, scanned);
                if (!r.Writable && AnyDirty(control))
                {
                    throw new PageStoreException(PageStoreError.ReadOnly, $"region {id} has written pages but its store ({r.StoreName}) is read-only: nothing can be flushed");
                }
                // A run's own re-check scans re-protect only pages that stay dirty until their write succeeds.
                if (r.Shadow != 0)
                {
                    // Anonymous: no move may start while the pages are read (see FaultEngine.EvictAnonymous).
                    lock (r.ShadowLock)
                    {
                        WaitForUnmapper(r);
                        SettleMoves(r, s);
                        WriteBackDirty(r, s, ref failed, ref firstError);
                    }
                }
                else
                {
                    WriteBackDirty(r, s, ref failed, ref firstError);
                }
            }
            finally
            {
                if (!recorded)
                {
                    // The scan failed part-way: it may have re-protected pages it never recorded.
                    control.MarkAllFilledDirty();
                }
                control.Flags &= ~RegionControlBlock.ScanInProgress;
            }
            if (failed > 0)
            {
                throw new PageStoreException(PageStoreError.Io, $"{failed} dirty pages of region {id} could not be written back (they stay resident and dirty): {firstError}");
            }
            r.Store.Flush();
            control.Add(RegionStat.Flushes, 1);
        }
        finally
        {
            r.Exit();
        }
    }

    private static bool AnyDirty(RegionControlBlock control)
    {
        for (long p = 0; p < control.PageCount; p += 64)
        {
            if (control.DirtyWord(p) != 0)
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>PAGEMAP_SCAN with re-protection over the runs of resident pages (gaps under 64 pages are scanned
    /// through: one call instead of many; empty PTEs there report Written and are ignored). Written resident pages
    /// join the dirty bitmap. Returns the pages the scans covered.</summary>
    private long CollectDirty(ServedRegion r, WriteBackScratch s)
    {
        if (_syncWrites)
        {
            return 0; // every write faulted first and set its bit: the bitmap is complete
        }
        var control = r.Control;
        long p = 0, scanned = 0;
        while (p < r.Pages)
        {
            if (control.FilledWord(p) == 0)
            {
                p = (p | 63) + 1;
                continue;
            }
            if (!control.IsFilled(p))
            {
                p++;
                continue;
            }
            long q = p + 1, lastFilled = p;
            while (q < r.Pages && q - lastFilled <= 64)
            {
                if ((q & 63) == 0 && q + 64 <= r.Pages && control.FilledWord(q) == ulong.MaxValue)
                {
                    // 64 resident pages at once: a word, not 64 bit tests (the scan's ioctl costs ~2-3 ns per clean
                    // resident page, BENCHMARKS §23: the bitmap walk must stay well below that).
                    lastFilled = q + 63;
                    q += 64;
                    continue;
                }
                if (control.IsFilled(q))
                {
                    lastFilled = q;
                }
                q++;
            }
            ScanWritten(r, s, p, lastFilled + 1);
            scanned += lastFilled + 1 - p;
            p = lastFilled + 1;
        }
        return scanned;
    }

    /// <summary>Scans [first, end) for written pages, re-protecting them, and marks dirty the resident ones and those a
    /// fill is installing. A page installed with UFFDIO_COPY (caller-fill regions, by the pager or the application) is
    /// marked filled just after the copy; a write in between, then this scan, would otherwise leave it written,
    /// re-protected and never dirty (CallerFillTests.FlushesRacingTheEvictorLoseNoWrite lost one write in 3 runs of 10
    /// that way). The fill's claim (or caller-filling bit) is read before the filled bit: the fill marks the page
    /// filled before it lets either go.</summary>
    private void ScanWritten(ServedRegion r, WriteBackScratch s, long first, long end)
    {
        var app = App;
        ulong at = r.Start + ((ulong)first << r.PageShift), stop = r.Start + ((ulong)end << r.PageShift);
        while (at < stop)
        {
            int n;
            ulong walkEnd;
            // The re-protection and the marks as one step for the evictor (see ServedRegion.DirtyLock).
            lock (r.DirtyLock)
            {
                n = app.Scan(at, stop, reprotect: true, PageCategory.Written, PageCategory.None, s.Regions, out walkEnd, out var errno);
                if (n < 0)
                {
                    throw Libc.Error(errno, $"PAGEMAP_SCAN of region {r.Id}", "the pager lost access to the application's pagemap");
                }
                for (int i = 0; i < n; i++)
                {
                    long a = (long)((s.Regions[i].Start - r.Start) >> r.PageShift), b = (long)((s.Regions[i].End - r.Start) >> r.PageShift);
                    for (long page = a; page < b; page++)
                    {
                        if (FillInFlight(r, page) || r.Control.IsFilled(page))
                        {
                            r.Control.MarkDirty(page, 1);
                        }
                    }
                }
            }
            if (walkEnd <= at)
            {
                throw new PagerException($"PAGEMAP_SCAN of region {r.Id} made no progress at 0x{at:x}");
            }
            at = walkEnd;
        }
    }

    /// <summary>Writes every dirty run back (claimed, snapshotted, checked), clearing its dirty bits.</summary>
    private void WriteBackDirty(ServedRegion r, WriteBackScratch s, ref long failed, ref string? firstError)
    {
        var control = r.Control;
        long maxRun = Math.Max(1, MaxRunBytes >> r.PageShift);
        long p = 0;
        while (p < r.Pages)
        {
            if (control.DirtyWord(p) == 0)
            {
                p = (p | 63) + 1;
                continue;
            }
            if (!control.IsDirty(p))
            {
                p++;
                continue;
            }
            long q = p + 1;
            while (q < r.Pages && q - p < maxRun && control.IsDirty(q))
            {
                q++;
            }
            WriteBackRun(r, s, p, q, ref failed, ref firstError);
            p = q;
        }
    }

    /// <summary>A fill, an eviction or a discard holds the page (pager side), or an application thread is reading it in.</summary>
    private static bool FillInFlight(ServedRegion r, long page) =>
        r.Claims.IsClaimed(page) || (r.CallerFills && r.Control.IsCallerFilling(page));

    private void WriteBackRun(ServedRegion r, WriteBackScratch s, long first, long end, ref long failed, ref string? firstError)
    {
        var control = r.Control;
        // A dirty page not filled yet may be a fill between its copy and its mark that was written meanwhile (see
        // ScanWritten): wait for it, so that this Flush writes it back. A fill is a read and an ioctl; the deadline is
        // the claims'.
        long deadline = Environment.TickCount64 + (long)(r.ReadTimeout + TimeSpan.FromSeconds(5)).TotalMilliseconds;
        var spin = new SpinWait();
        for (long p = first; p < end; p++)
        {
            while (!control.IsFilled(p) && control.IsDirty(p) && FillInFlight(r, p) && Environment.TickCount64 < deadline)
            {
                spin.SpinOnce(sleep1Threshold: 20);
            }
        }
        int count = ClaimFilled(r, first, end, s, pinnedToo: true);
        try
        {
            // Pages no longer resident were written back by their eviction (which clears their bits) or discarded.
            for (long p = first; p < end; p++)
            {
                if (!control.IsFilled(p))
                {
                    control.ClearDirty(p, 1);
                }
            }
            int i = 0;
            while (i < count)
            {
                long p = s.Victims[i], q = p + 1;
                int j = i + 1;
                while (j < count && s.Victims[j] == q)
                {
                    q++;
                    j++;
                }
                WriteSnapshot(r, s, p, q, ref failed, ref firstError);
                i = j;
            }
        }
        finally
        {
            for (int k = 0; k < count; k++)
            {
                r.Claims.Release(s.Victims[k], 1);
            }
            Wake(r, r.Start + ((ulong)first << r.PageShift), (ulong)(end - first) << r.PageShift);
        }
    }

    /// <summary>Copies [first, end) into the snapshot, re-copies pages written meanwhile, writes the snapshot.</summary>
    private void WriteSnapshot(ServedRegion r, WriteBackScratch s, long first, long end, ref long failed, ref string? firstError)
    {
        long offset = first << r.PageShift;
        int length = checked((int)((end - first) << r.PageShift));
        var copy = PageCopy.Best;
        if (_syncWrites)
        {
            // Protect first, then copy: the run is claimed, so a write from now on faults and waits for the release —
            // the one copy is a page as it was at one instant. Its writers fault again after it and mark it dirty anew.
            var wp = _uffd.WriteProtect(r.Start + (ulong)offset, (ulong)length, protect: true);
            if (wp != Errno.None)
            {
                r.Control.Add(RegionStat.WriteErrors, 1);
                failed += end - first;
                firstError ??= $"UFFDIO_WRITEPROTECT of {length} bytes at {offset} failed: {wp}";
                return;
            }
        }
        if (r.Staging is null)
        {
            // Anonymous (synchronous tracking only): protected above, so one read out of the application is the copy.
            try
            {
                ReadAnonymousRun(r, s, first, end);
            }
#pragma warning disable CA1031 // Reported to the caller of Flush through failed/firstError; the pages stay dirty.
            catch (Exception e) when (e is not OutOfMemoryException)
#pragma warning restore CA1031
            {
                r.Control.Add(RegionStat.WriteErrors, 1);
                failed += end - first;
                firstError ??= e.Message;
                return;
            }
        }
        else
        {
            PageCopy.Copy(s.Snapshot, r.Staging.Pointer + offset, (nuint)length, nonTemporal: false, copy);
        }
        // The Victims array holds this run's claimed pages; the check uses the Unmap array for its results.
        int rewritten = 0;
        for (int attempt = 1; attempt < SnapshotAttempts && !_syncWrites; attempt++)
        {
            rewritten = ScanWrittenInto(r, s, first, end);
            if (rewritten == 0)
            {
                break;
            }
            for (int k = 0; k < rewritten; k++)
            {
                long page = s.Unmap[k];
                long o = (page - first) << r.PageShift;
                PageCopy.Copy(s.Snapshot + o, r.Staging!.Pointer + offset + o, (nuint)r.PageSize, nonTemporal: false, copy);
            }
        }
        bool stable = true;
        if (rewritten > 0)
        {
            // Written during every copy: take the pages out of the application's page tables (they are claimed, so a
            // write now faults and waits for this write-back), then copy once more — a copy nobody can race. The
            // copies mapped them into the pager too, and reclaim leaves a page mapped twice alone: drop that first.
            ZapStaging(r, offset, length);
            stable = Quiesce(r, s, rewritten);
            if (stable)
            {
                for (int k = 0; k < rewritten; k++)
                {
                    long o = (s.Unmap[k] - first) << r.PageShift;
                    PageCopy.Copy(s.Snapshot + o, r.Staging!.Pointer + offset + o, (nuint)r.PageSize, nonTemporal: false, copy);
                }
                // Their PTEs are empty now, which reads as "written": protect them (a uffd-wp marker) so the next
                // scan sees them clean unless they are written again.
                for (int k = 0; k < rewritten; k++)
                {
                    _ = _uffd.WriteProtect(r.Start + ((ulong)s.Unmap[k] << r.PageShift), (ulong)r.PageSize, protect: true);
                }
                rewritten = 0;
            }
        }
        try
        {
            r.Store.Write(offset, new ReadOnlySpan<byte>(s.Snapshot, length));
        }
#pragma warning disable CA1031 // Reported to the caller of Flush through failed/firstError; the pages stay dirty.
        catch (Exception e) when (e is not OutOfMemoryException)
#pragma warning restore CA1031
        {
            ZapStaging(r, offset, length);
            r.Control.Add(RegionStat.WriteErrors, 1);
            Log.WriteBackFailed(_logger, length, offset, r.Id, e.Message);
            failed += end - first;
            firstError ??= e.Message;
            return;
        }
        ZapStaging(r, offset, length);
        r.Control.ClearDirty(first, end - first);
        if (!stable)
        {
            // The kernel would not unmap them (a page it cannot take right now): the last copy holds every write made
            // before the Flush and may mix in later ones; the pages stay dirty, so the next write-back sends them whole.
            rewritten = ScanWrittenInto(r, s, first, end);
            for (int k = 0; k < rewritten; k++)
            {
                r.Control.MarkDirty(s.Unmap[k], 1);
            }
        }
        r.Control.Add(RegionStat.PagesWrittenBack, end - first);
        r.Control.Add(RegionStat.BytesWritten, length);
    }

    /// <summary>Unmaps the pages s.Unmap[0..count) (claimed by the caller) and checks that none is mapped any more;
    /// false when the kernel kept one (it skips a page it cannot isolate at that moment).</summary>
    private bool Quiesce(ServedRegion r, WriteBackScratch s, int count)
    {
        if (r.Kind == ArenaKind.HugeTlb)
        {
            return false; // only the application can unmap its huge pages, and a write-back must not wait for it
        }
        var ranges = s.IoVecs.AsSpan(0, Math.Min(count, s.IoVecs.Length));
        for (int k = 0; k < ranges.Length; k++)
        {
            ranges[k] = new Libc.IoVec { Base = (void*)(r.Start + ((ulong)s.Unmap[k] << r.PageShift)), Length = (nuint)r.PageSize };
        }
        for (int attempt = 0; attempt < 3; attempt++)
        {
            if (App.PageOut(ranges, out _) < 0)
            {
                return false;
            }
            bool mapped = false;
            for (int k = 0; k < count && !mapped; k++)
            {
                var one = s.Categories.AsSpan(0, 1);
                mapped = !App.Categories(r.Start + ((ulong)s.Unmap[k] << r.PageShift), r.PageSize, one, s.Regions, out _) || (one[0] & PageCategory.Present) != 0;
            }
            if (!mapped)
            {
                return true;
            }
            App.DrainLruBatches((nint)r.Start, r.PageSize); // a page filled moments ago is not on the LRU yet
        }
        return false;
    }

    /// <summary>Pages of [first, end) written since the last scan (re-protected now), into s.Unmap; returns how many.</summary>
    private int ScanWrittenInto(ServedRegion r, WriteBackScratch s, long first, long end)
    {
        var app = App;
        ulong at = r.Start + ((ulong)first << r.PageShift), stop = r.Start + ((ulong)end << r.PageShift);
        int found = 0;
        while (at < stop)
        {
            int n = app.Scan(at, stop, reprotect: true, PageCategory.Written, PageCategory.None, s.Regions, out ulong walkEnd, out var errno);
            if (n < 0)
            {
                throw Libc.Error(errno, $"PAGEMAP_SCAN of region {r.Id}", "the pager lost access to the application's pagemap");
            }
            for (int i = 0; i < n; i++)
            {
                for (ulong a = s.Regions[i].Start; a < s.Regions[i].End && found < s.Unmap.Length; a += (ulong)r.PageSize)
                {
                    s.Unmap[found++] = (long)((a - r.Start) >> r.PageShift);
                }
            }
            if (walkEnd <= at)
            {
                break;
            }
            at = walkEnd;
        }
        return found;
    }
}
