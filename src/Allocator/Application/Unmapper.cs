using Paging.Interop;
using Paging.Protocol;

namespace Paging;

/// <summary>
/// The application's share of evicting a hugetlbfs region: one thread that unmaps the huge pages the pager's clock
/// asks for (<c>madvise(MADV_DONTNEED)</c> on the region's own mapping; the page stays in the hugetlbfs file, so a
/// touch maps it back with a MINOR fault, the clock's "referenced" signal). The pager cannot do it from its process:
/// <c>process_madvise</c> refuses MADV_DONTNEED for another process and MADV_PAGEOUT skips hugetlb mappings (both
/// checked on Linux 6.18). Requests come through the control block's mailbox, a shared futex wakes this thread, and
/// the pager never waits for it — it only posts again once this request is done — so a thread of ours delayed by a
/// garbage collection delays an unmapping, never a fault.
/// <para>A tracked anonymous region's unmapper works on the region's shadow instead: it moves the pages the pager
/// evicts into it (UFFDIO_MOVE, which only the owning process may call) and frees shadow slots the pager has settled
/// (see FaultEngine.EvictAnonymous). A fault on a page moved out is served from the shadow by the pager, so nothing
/// waits for this thread there either.</para>
/// </summary>
internal sealed class Unmapper : IDisposable
{
    private readonly RegionControlBlock _control;
    private readonly nint _start;
    private readonly int _pageShift;
    private readonly long _pages;
    private readonly Thread _thread;
    private readonly (long First, long Count)[] _ranges = new (long, long)[RegionControlBlock.UnmapSlots];

    private readonly Kernel.Userfaultfd? _uffd;
    private readonly nint _moveFrom;

    /// <summary>An unmapper of [start, start+length). With <paramref name="uffd"/>, a tracked anonymous region's:
    /// <paramref name="start"/> is its shadow, and a request may also move pages of the region (at
    /// <paramref name="moveFrom"/>) into the shadow (UFFDIO_MOVE works only from the process that owns the memory:
    /// fs/userfaultfd.c refuses a cross-mm move with EINVAL, checked on 6.18).</summary>
    public Unmapper(RegionControlBlock control, nint start, long length, int pageSize, Kernel.Userfaultfd? uffd = null, nint moveFrom = 0)
    {
        _uffd = uffd;
        _moveFrom = moveFrom;
        _control = control;
        _start = start;
        _pages = length / pageSize;
        _pageShift = System.Numerics.BitOperations.Log2((uint)pageSize);
        _thread = new Thread(Run) { IsBackground = true, Name = "paging-unmap" };
        _thread.Start();
    }

    private void Run()
    {
        int seen = 0; // a new control block: request 0, done 0
        while (!_control.UnmapperStopping)
        {
            int seq = _control.WaitForUnmapRequest(seen, -1);
            if (seq == seen || _control.UnmapperStopping)
            {
                continue;
            }
            int n = _control.ReadUnmapRanges(_ranges);
            for (int i = 0; i < n; i++)
            {
                var (first, count) = _ranges[i];
                if (count < 0 && _uffd is not null && first >= 0 && -count <= _pages - first)
                {
                    Move(first, -count);
                    continue;
                }
                if (first < 0 || count <= 0 || count > _pages - first)
                {
                    continue; // never outside the region, whatever the shared block says
                }
                // MAP_SHARED over a hugetlbfs memfd: this only unmaps (the kernel leaves a uffd-wp marker on a
                // write-protected page, so the pager can still tell it clean); nothing is lost if the page was
                // filled again or evicted meanwhile — the next touch faults and the pager maps what the file holds.
                _ = Libc.Madvise(_start + (nint)(first << _pageShift), (nuint)(count << _pageShift), Advice.DontNeed);
            }
            _control.CompleteUnmap(seq);
            seen = seq;
        }
    }

    /// <summary>Moves pages [first, first+count) of the region into the same slots of the shadow. A page that will
    /// not move (its slot still holds a page: EEXIST; pinned for I/O: EBUSY) stays where it is; the pager sees it
    /// still mapped when the request is done.</summary>
    private void Move(long first, long count)
    {
        long p = first, end = first + count;
        while (p < end)
        {
            ulong offset = (ulong)p << _pageShift, length = (ulong)(end - p) << _pageShift;
            var errno = _uffd!.Move((ulong)_start + offset, (ulong)_moveFrom + offset, length, out long moved);
            if (errno == Errno.None)
            {
                return;
            }
            p += moved > 0 ? moved >> _pageShift : 1;
        }
    }

    /// <summary>Stops the thread and waits for it (it is at most in one madvise).</summary>
    public void Dispose()
    {
        _control.StopUnmapper();
        _thread.Join();
    }
}
