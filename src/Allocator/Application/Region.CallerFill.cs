using System.Diagnostics;
using Paging.Protocol;

namespace Paging;

/// <summary>What <see cref="Region.BeginCallerFill"/> found.</summary>
internal enum CallerFillStart
{
    /// <summary>The page is filled: use it (a touch maps it if the clock unmapped it).</summary>
    Resident,

    /// <summary>Another application thread is reading it in, or the pager is evicting it: touch it (a fault waits for
    /// the pager, which fills it with an atomic UFFDIO_COPY that races the other thread's harmlessly).</summary>
    Busy,

    /// <summary>This thread reads it: call <see cref="Region.CompleteCallerFill"/> or <see cref="Region.AbortCallerFill"/>.</summary>
    Begun,
}

/// <summary>
/// Caller fills: an application thread that is about to use a page that is not resident reads it from the store itself
/// and installs it with UFFDIO_COPY through the runtime's uffd, so the miss costs one store read and one ioctl on the
/// caller's thread instead of a fault, a message, a pager thread's wake-up and its read (vmcache's explicit miss). On
/// this VM a fault round trip adds ~100 µs of hypervisor and wake-up time to a buffer-pool miss (docs/BENCHMARKS.md
/// §22). Nothing here blocks a fault: the application thread holds only its caller-filling bit, which the pager's
/// fills never wait on (they install with UFFDIO_COPY as well: whichever copy comes second gets EEXIST) and which
/// only stops the evictor from taking that page. A thread stopped by a garbage collection in the middle therefore
/// delays nobody's fault (docs/BUFFER-POOL.md, "Caller fills").
/// </summary>
public sealed unsafe partial class Region
{
    /// <summary>How long a caller fill waits for the evictor to make room before it goes over the budget anyway (as
    /// a pager fill does: a budget is a target, never a reason to hang).</summary>
    private static readonly long CallerRoomWaitTicks = Stopwatch.Frequency;

    private readonly long _callerBudgetPages; // -1: caller fills are off for this region; 0: on, no budget of its own

    /// <summary>True when the region takes caller fills (<see cref="RegionOptions.CallerFills"/>).</summary>
    internal bool CallerFills => _callerBudgetPages >= 0;

    /// <summary>Starts a caller fill of <paramref name="page"/>: notes the page as used (the clock's reference bit)
    /// and, if it is not resident and no other thread is reading it, claims it for this thread.</summary>
    internal CallerFillStart BeginCallerFill(long page)
    {
        var control = _control;
        if (control.IsFilled(page))
        {
            control.MarkReferenced(page);
            return CallerFillStart.Resident;
        }
        WaitForCallerRoom();
        if (!control.TryBeginCallerFill(page))
        {
            return CallerFillStart.Busy;
        }
        // Read after the bit is set (TryBeginCallerFill is a locked or, a full fence): see
        // RegionControlBlock.IsCallerFilling for why the evictor and this thread cannot both go on.
        if (control.IsFilled(page))
        {
            control.EndCallerFill(page);
            control.MarkReferenced(page);
            return CallerFillStart.Resident;
        }
        if (control.IsLeaving(page))
        {
            // The pager is punching it out (filled bit already clear): a copy now could land inside the punch and be
            // taken away after this thread marked the page filled. The touch faults and waits for the eviction.
            control.EndCallerFill(page);
            return CallerFillStart.Busy;
        }
        return CallerFillStart.Begun;
    }

    /// <summary>Installs the page's bytes (<see cref="PageSize"/> of them at <paramref name="bytes"/>, read after
    /// <see cref="BeginCallerFill"/> returned Begun) and ends the caller fill. False when the page was installed by
    /// someone else meanwhile (a fault's fill): the bytes read are dropped.</summary>
    /// <exception cref="PagerException">UFFDIO_COPY failed for a reason other than the page being present.</exception>
    internal bool CompleteCallerFill(long page, byte* bytes, int bytesRead)
    {
        var control = _control;
        try
        {
            var errno = _runtime.Uffd.Copy((ulong)(_arena.User.Address + page * PageSize), (ulong)bytes, (ulong)PageSize, out _, writeProtect: TracksWrites);
            control.MarkReferenced(page);
            if (errno == Errno.None)
            {
                // Marked after the copy, as the pager does for COPY: the page is complete the moment it is mapped.
                control.MarkFilled(page, 1);
                control.Add(RegionStat.CallerFills, 1);
                control.Add(RegionStat.BytesRead, bytesRead);
                return true;
            }
            if (errno is Errno.EEXIST or Errno.EAGAIN)
            {
                // EEXIST: a fault's fill got there first. EAGAIN: the address space was changing; the next touch
                // faults and the pager fills it.
                return false;
            }
            throw new PagerException($"UFFDIO_COPY of page {page} of region {Id} from the application failed: {errno}");
        }
        finally
        {
            control.EndCallerFill(page);
        }
    }

    /// <summary>Ends a caller fill that will not install (the store read failed).</summary>
    internal void AbortCallerFill(long page) => _control.EndCallerFill(page);

    /// <summary>Past the region's budget or the runtime's shared one, waits (yielding, then sleeping; at most 1 s)
    /// for the evictor, which looks at the resident counts at least every 10 ms and as soon as a pager fill crosses
    /// its start mark.</summary>
    private void WaitForCallerRoom()
    {
        if (!NoRoom())
        {
            return;
        }
        long deadline = Stopwatch.GetTimestamp() + CallerRoomWaitTicks;
        var spin = new SpinWait();
        while (NoRoom() && Stopwatch.GetTimestamp() < deadline && !IsDisposed)
        {
            spin.SpinOnce(sleep1Threshold: 30);
        }
    }

    private bool NoRoom() =>
        (_callerBudgetPages > 0 && _control.Read(RegionStat.ResidentPages) >= _callerBudgetPages) || _runtime.OverSharedBudget(PageSize);

    /// <summary>Bytes resident now (0 once torn down).</summary>
    internal long ResidentBytes => ReadStat(RegionStat.ResidentPages) * PageSize;
}
