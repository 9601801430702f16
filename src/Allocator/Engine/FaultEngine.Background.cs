using Paging.Protocol;

namespace Paging.Engine;

/// <summary>Background work: read-ahead windows (first, in the order they were scheduled, so the window right ahead
/// of a stream is filled before the one after it), then prefetches and streaming. Taken in 64 KiB chunks between real
/// faults, by any idle fill thread, so several windows are in flight at once; each chunk claims its pages when it
/// starts, so a fault on a page a queued window has not reached yet fills that page itself.</summary>
internal sealed unsafe partial class FaultEngine
{
    /// <summary>Background work done between two checks for faults: 64 KiB is a 5–10 µs pread from the page cache
    /// plus a 16-page CONTINUE (~4 µs, limits row 10.14), so a real fault waits at most ~15 µs behind streaming.</summary>
    internal const int BackgroundChunkBytes = 64 * 1024;

    /// <summary>Queued background ranges. Fixed, so the fault path can queue a read-ahead window without allocating;
    /// a window that does not fit is dropped (the stream faults again).</summary>
    internal const int WorkCapacity = 1024;

    private readonly Lock _workLock = new();
    private readonly WorkQueue _readAhead = new();
    private readonly WorkQueue _prefetch = new();

    /// <summary>True when background work is queued (read without the lock: a hint for waking a thread).</summary>
    private bool HasBackgroundWork => _readAhead.Count + _prefetch.Count > 0;

    /// <summary>A fault continuing a sequential stream resolves the whole block and schedules the next window.</summary>
    private void ExtendForReadAhead(ServedRegion region, long first, long end, ref long from, ref long to)
    {
        var policy = region.Policy;
        bool hit, late;
        long aheadFirst, aheadEnd;
        lock (region.PolicyLock)
        {
            hit = region.Streams.OnFault(first, end, policy.BlockPages, policy.MaxWindowPages, region.Pages, out aheadFirst, out aheadEnd, out late);
        }
        if (!hit)
        {
            return;
        }
        region.Control.Add(RegionStat.SequentialHits, 1);
        from = Math.Min(first, first / policy.BlockPages * policy.BlockPages);
        to = Math.Max(end, Math.Min(region.Pages, (first / policy.BlockPages + 1) * policy.BlockPages));
        lock (_workLock)
        {
            if (late)
            {
                region.Control.Add(RegionStat.PrefetchLate, 1);
                _readAhead.SkipAhead(region, first, to);
            }
            if (aheadEnd > aheadFirst)
            {
                _ = _readAhead.Push(region, aheadFirst, aheadEnd, marker: region.IsAsync && !region.TrackWrites); // full: dropped, the stream faults again
            }
        }
        // An asynchronous store's window is started by two threads (one per vCPU here): starting a read prepares its
        // staging pages (~150 µs per 256 KiB run, MADV_POPULATE_WRITE), which would otherwise delay the window's
        // last request by 16 × that.
        SignalWork(region.IsAsync ? 2 : 1);
    }

    /// <summary>Takes one chunk of background work and runs it. False when there is none (or the store of the next
    /// chunk has all its asynchronous reads in flight).</summary>
    private bool BackgroundStep(FillThread t)
    {
        ServedRegion r;
        long next, end;
        bool marker;
        lock (_workLock)
        {
            var queue = _readAhead.Count > 0 ? _readAhead : _prefetch.Count > 0 ? _prefetch : null;
            if (queue is null)
            {
                return false;
            }
            ref var w = ref queue.Front;
            r = w.Region;
            if (r.IsAsync && !r.Waiting.IsEmpty)
            {
                return false; // its reads are all in flight; a completion signals for more
            }
            // An asynchronous store's read does not hold the fill thread, so its chunks are whole runs (256 KiB: one
            // network request each, several in flight) instead of the 64 KiB that bounds a synchronous fill.
            end = Math.Min(w.End, w.Next + Math.Max(1, (r.IsAsync ? MaxRunBytes : BackgroundChunkBytes) >> r.PageShift));
            next = w.Next;
            w.Next = end;
            marker = w.Marker && end - next > 1;
            w.Marker = false;
            if (end >= w.End)
            {
                queue.Pop();
            }
        }
        if (!r.TryEnter())
        {
            return true;
        }
        try
        {
            // A marker keeps an asynchronous store's stream ahead of the reader. Pages mapped ahead never fault, so
            // without it the pager would hear of the stream only when the reader has used up the window and stalls
            // (one window in flight, a request's latency lost per window). The first page of each window is left
            // for the reader to fault on: a cheap MINOR fault for shmem (the page is filled, only not mapped), a
            // one-page fill for anonymous arenas (it is left out of the window). That fault is a sequential hit, so
            // the next window is on its way while the reader consumes this one — the kernel's async read-ahead mark.
            if (marker && r.Kind == ArenaKind.Anonymous)
            {
                next++;
                marker = false;
            }
            Plan(t, r, next, end, 0, 0, since: 0, fromFault: false, marker);
        }
        finally
        {
            r.Exit();
        }
        return true;
    }

    /// <summary>Queues pages [first, end) of a region for background filling and pre-mapping.</summary>
    public void Prefetch(ulong id, long first, long end)
    {
        var region = FindById(id) ?? throw new PagerException($"no region {id}");
        if (first < 0 || end > region.Pages || first > end)
        {
            throw new PagerException($"prefetch of pages [{first}, {end}) is outside region {id} ({region.Pages} pages)");
        }
        lock (_workLock)
        {
            if (!_prefetch.Push(region, first, end))
            {
                throw new PagerException($"the pager's background queue is full ({WorkCapacity} ranges); prefetch larger ranges or fewer at a time");
            }
        }
        SignalWork();
    }

    /// <summary>Drops every queued background range of a region. When it returns, no further background fill of the
    /// region starts (chunks already taken finish).</summary>
    public void CancelPrefetch(ulong id)
    {
        var region = FindById(id);
        if (region is null)
        {
            return;
        }
        lock (_workLock)
        {
            _readAhead.Drop(region);
            _prefetch.Drop(region);
        }
        lock (region.PolicyLock)
        {
            region.Streams.Reset();
        }
    }
}
