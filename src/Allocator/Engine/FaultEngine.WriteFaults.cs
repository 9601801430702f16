using Paging.Logging;
using Paging.Protocol;

namespace Paging.Engine;

/// <summary>
/// Synchronous write tracking (<see cref="WriteTracking.Synchronous"/>: a uffd without WP_ASYNC). Tracked pages are
/// mapped write-protected, as with WP_ASYNC, but the kernel hands the first write to each to the pager: the page is
/// claimed, marked dirty in the shared bitmap, then unprotected, which wakes the writer. The bitmap is therefore
/// complete — a page can only be written after its bit is set — so Flush needs no scan and eviction trusts the bit.
/// A write to a page someone has claimed (a write-back copying it, an eviction) joins that claim and faults again
/// when it is released: write-back re-protects a run before it copies it, so the copy cannot tear.
/// </summary>
internal sealed unsafe partial class FaultEngine
{
    /// <summary>Key bit of a write-protect fault in <see cref="ProcessBatch"/>'s sorted keys (bit 0 is MINOR).</summary>
    private const ulong WriteFaultKey = 2;

    /// <summary>True when the uffd resolves nothing by itself: writes to protected pages fault to the pager.</summary>
    private readonly bool _syncWrites;

    /// <summary>Serves the write-protect faults of <paramref name="r"/> from sorted[k] on (consecutive keys of the
    /// region with the write bit): one UFFDIO_WRITEPROTECT per run of pages. Returns the index of the first key not
    /// served.</summary>
    private int ServeWriteFaults(ServedRegion r, Span<ulong> sorted, int k)
    {
        var control = r.Control;
        long runFirst = -1, runEnd = -1, last = -1;
        long maxRun = Math.Max(1, MaxRunBytes >> r.PageShift);
        int j = k;
        while (j < sorted.Length)
        {
            ulong key = sorted[j];
            ulong a = key & ~3UL;
            if ((key & WriteFaultKey) == 0 || a < r.Start || a >= r.End)
            {
                break;
            }
            j++;
            long page = (long)((a - r.Start) >> r.PageShift);
            control.Add(RegionStat.Messages, 1);
            if (page == last)
            {
                continue; // several threads on one page: one resolution wakes them all
            }
            last = page;
            control.Add(RegionStat.WriteFaults, 1);
            if (!r.Claims.TryClaim(page))
            {
                // A fill, a write-back or an eviction has it: its release wakes this writer, which faults again.
                UnprotectRun(r, runFirst, runEnd);
                runFirst = runEnd = -1;
                JoinOrWake(r, page);
                continue;
            }
            if (!control.IsFilled(page))
            {
                // Evicted or discarded since the write faulted, or installed by a copy whose filled mark is a moment
                // away (an application thread's caller fill): woken, the writer faults again and gets a fill, or
                // finds the page marked.
                UnprotectRun(r, runFirst, runEnd);
                runFirst = runEnd = -1;
                ReleaseClaims(r, page, 1);
                Wake(r, r.Start + ((ulong)page << r.PageShift), (ulong)r.PageSize);
                continue;
            }
            // Dirty before writable: a pager that dies between the two leaves a page marked dirty and still protected
            // (a write-back too many), never a written page the bitmap does not know.
            control.MarkDirty(page, 1);
            if (page == runEnd && runEnd - runFirst < maxRun)
            {
                runEnd++;
                continue;
            }
            UnprotectRun(r, runFirst, runEnd);
            runFirst = page;
            runEnd = page + 1;
        }
        UnprotectRun(r, runFirst, runEnd);
        return j;
    }

    /// <summary>Lifts the protection of claimed pages [first, end), waking their writers, and releases the claims.</summary>
    private void UnprotectRun(ServedRegion r, long first, long end)
    {
        if (first < 0)
        {
            return;
        }
        ulong start = r.Start + ((ulong)first << r.PageShift), length = (ulong)(end - first) << r.PageShift;
        var errno = _uffd.WriteProtect(start, length, protect: false, wake: true);
        if (errno != Errno.None)
        {
            // EAGAIN: the address space is changing (an munmap or madvise in flight); the writers fault again.
            r.Control.Add(RegionStat.Errors, 1);
            Log.UffdCallFailed(_logger, "UFFDIO_WRITEPROTECT", length, start, errno);
            Wake(r, start, length);
        }
        else
        {
            r.Control.Add(RegionStat.Resolutions, 1);
        }
        ReleaseClaims(r, first, end - first);
    }
}
