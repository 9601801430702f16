using Paging.Interop;
using Paging.Logging;
using Paging.Protocol;

namespace Paging.Engine;

/// <summary>What the control thread asks of the engine: regions added and removed, shared arenas discarded, a
/// standby promoted. The region table is copy-on-write (fill threads read it without a lock); removal and Discard
/// wait for the fills in flight on what they take away.</summary>
internal sealed unsafe partial class FaultEngine
{
    private ServedRegion? FindById(ulong id) => Array.Find(Volatile.Read(ref _regions), r => r.Id == id);

    public void Add(ServedRegion region)
    {
        if (region.TrackWrites)
        {
            EnableTracking();
        }
        lock (_tableLock)
        {
            if (Array.Exists(_regions, r => r.Id == region.Id || (r.Start < region.End && region.Start < r.End)))
            {
                throw new PagerException($"region {region.Id} at 0x{region.Start:x} duplicates or overlaps a region this pager serves");
            }
            var list = new List<ServedRegion>(_regions) { region };
            list.Sort((a, b) => a.Start.CompareTo(b.Start));
            Volatile.Write(ref _regions, [.. list]);
        }
        if (_active)
        {
            // Faults a dead predecessor read but never resolved come back.
            Wake(region, region.Start, region.Length);
            if (region.Policy.StreamAll)
            {
                lock (_workLock)
                {
                    _ = _prefetch.Push(region, 0, region.Pages);
                }
                SignalWork();
            }
        }
    }

    /// <summary>Stops serving a region (the application unregistered it already): no new work starts on it, work in
    /// flight finishes (its ioctls fail harmlessly on the unregistered range), then the store is disposed.</summary>
    public void Remove(ulong id)
    {
        ServedRegion? region;
        lock (_tableLock)
        {
            region = Array.Find(_regions, r => r.Id == id);
            if (region is null)
            {
                return;
            }
            Volatile.Write(ref _regions, Array.FindAll(_regions, r => r.Id != id));
        }
        foreach (var t in _threads)
        {
            if (t.LastRegion == region)
            {
                t.LastRegion = null; // a benign race: a thread that still holds it fails TryEnter
            }
        }
        lock (_workLock)
        {
            _readAhead.Drop(region);
            _prefetch.Drop(region);
        }
        while (region.Waiting.TryDequeue(out var waiting))
        {
            region.Claims.Release(waiting.First, waiting.Count);
            region.Exit();
        }
        // Fills in flight finish quickly (their ioctls fail on the unregistered range); one stuck in a store past its
        // deadline keeps the region alive until it returns, and disposes it then.
        _ = region.Close(TimeSpan.FromSeconds(1));
    }

    /// <summary>Punches pages [first, end) out of a shared arena: claims them first (waiting for fills in flight on
    /// them), so no fill can land half in a punched page — a fill writes the page cache through the staging mapping,
    /// and a punch in the middle would leave a fresh zeroed page that the fill then completes only in part.</summary>
    public void Discard(ulong id, long first, long end)
    {
        var region = FindById(id) ?? throw new PagerException($"no region {id}");
        if (end > region.Pages || first >= end || region.Memfd is null)
        {
            throw new PagerException($"discard of pages [{first}, {end}) does not fit region {id} ({region.Pages} pages, {region.Kind})");
        }
        if (!region.TryEnter())
        {
            throw new PagerException($"region {id} is being removed");
        }
        long claimed = first;
        bool leaving = false;
        try
        {
            long deadline = Environment.TickCount64 + (long)(region.ReadTimeout + TimeSpan.FromSeconds(5)).TotalMilliseconds;
            var spin = new SpinWait();
            while (claimed < end)
            {
                if (region.Claims.TryClaim(claimed))
                {
                    claimed++;
                    continue;
                }
                if (Environment.TickCount64 > deadline)
                {
                    throw new PagerException($"discard of region {id}: page {claimed} stayed in flight past the read deadline");
                }
                spin.SpinOnce(sleep1Threshold: 20);
            }
            if (region.CallerFills)
            {
                // No application thread may start a fill of these pages until the punch is over, and any that started
                // before must finish first: its UFFDIO_COPY landing in the middle of the punch would be taken away
                // after it marked the page filled (see RegionControlBlock.MarkLeaving). A fill is one read of the
                // store and one ioctl, so this wait is short; the deadline is the claims'.
                region.Control.MarkLeaving(first, end - first);
                leaving = true;
                for (long p = first; p < end; p++)
                {
                    while (region.Control.IsCallerFilling(p))
                    {
                        if (Environment.TickCount64 > deadline)
                        {
                            throw new PagerException($"discard of region {id}: the application's fill of page {p} stayed in flight past the read deadline");
                        }
                        spin.SpinOnce(sleep1Threshold: 20);
                    }
                }
            }
            // Bits first: a fault racing in after the punch must see the page as not filled.
            region.Control.ClearFilled(first, end - first);
            region.Control.ClearDirty(first, end - first); // Discard drops writes: nothing is left to write back
            region.Cold?.Clear(first, end - first);
            long offset = first << region.PageShift, length = (end - first) << region.PageShift;
            // PUNCH_HOLE also unmaps the range from every mapping, the application's included.
            if (Libc.Fallocate(region.Memfd, FallocateFlags.PunchHole | FallocateFlags.KeepSize, offset, length) != 0)
            {
                throw Libc.Error($"fallocate(PUNCH_HOLE) of {length} bytes at {offset} of region {id}");
            }
        }
        finally
        {
            if (leaving)
            {
                region.Control.ClearLeaving(first, end - first);
            }
            // The pages are no longer filled: faults that joined the claim are woken and fault again on a hole.
            ReleaseClaims(region, first, claimed - first);
            region.Exit();
        }
    }

    /// <summary>Pages of caller-fill and tracked anonymous regions are installed with UFFDIO_COPY and marked filled just
    /// after (the copy is atomic, so a page is complete the moment it is mapped — there is no "before" to mark it in).
    /// A pager killed between its copy and the mark leaves a page mapped, perhaps written, and not filled: never
    /// written back by Flush or eviction, which look at filled pages only; and with synchronous tracking a write to it
    /// faulted forever, since a write fault on a page not filled was taken for one on a page evicted meanwhile. So the
    /// pager that takes over marks every page mapped in the application and not filled as filled (one PAGEMAP_SCAN,
    /// or pagemap read, per 2 MiB; a page being installed at the same moment is marked twice, which counts once).
    /// Found by CallerFillTests.KilledPagersLoseNoWriteMadeThroughFetch (3 of 4 runs lost a write without this) and
    /// SynchronousWriteTrackingTests.WritersSurvivePagerKills (1–2 of 3 anonymous runs livelocked a writer).</summary>
    private void AdoptUnmarkedPages(ServedRegion r, WriteBackScratch s)
    {
        long adopted = 0;
        for (long w = 0; w < r.Pages; w += ClockWindowPages)
        {
            long end = Math.Min(r.Pages, w + ClockWindowPages);
            var categories = s.Categories.AsSpan(0, (int)(end - w));
            if (!App.Categories(r.Start + ((ulong)w << r.PageShift), r.PageSize, categories, s.Regions, out var errno))
            {
                Log.EvictionFailed(_logger, r.Id, $"PAGEMAP_SCAN at takeover failed: {errno}");
                return;
            }
            for (long p = w; p < end; p++)
            {
                if ((categories[(int)(p - w)] & PageCategory.Present) != 0 && !r.Control.IsFilled(p))
                {
                    r.Control.MarkFilled(p, 1);
                    adopted++;
                }
            }
        }
        if (adopted > 0)
        {
            Log.PagesAdopted(_logger, r.Id, adopted);
        }
    }

    /// <summary>Standby → active: start reading the uffd and wake every registered range, because the dead pager may
    /// have read messages it never resolved; their threads fault again and the messages come back.</summary>
    public void Promote()
    {
        if (_active)
        {
            return;
        }
        _active = true;
        foreach (var t in _threads)
        {
            t.WatchFaults();
        }
        foreach (var region in Volatile.Read(ref _regions))
        {
            region.Control.Add(RegionStat.Recoveries, 1);
            if (region.CallerFills)
            {
                region.Control.ClearAllLeaving(); // the dead pager's punches are over
            }
            if (region.TrackWrites && (region.CallerFills || region.Kind == ArenaKind.Anonymous))
            {
                AdoptUnmarkedPages(region, _commandScratch);
            }
            if (region.TrackWrites && (region.Control.Flags & RegionControlBlock.ScanInProgress) != 0)
            {
                // The dead pager re-protected pages it may not have recorded as dirty yet.
                Log.DirtyScanInterrupted(_logger, region.Id);
                region.Control.MarkAllFilledDirty();
                region.Control.Flags &= ~RegionControlBlock.ScanInProgress;
            }
            Wake(region, region.Start, region.Length);
            if (region.Policy.StreamAll)
            {
                lock (_workLock)
                {
                    _ = _prefetch.Push(region, 0, region.Pages);
                }
            }
        }
        SignalWork();
    }
}
