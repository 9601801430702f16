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
/// </summary>
internal sealed class Unmapper : IDisposable
{
    private readonly RegionControlBlock _control;
    private readonly nint _start;
    private readonly int _pageShift;
    private readonly long _pages;
    private readonly Thread _thread;
    private readonly (long First, long Count)[] _ranges = new (long, long)[RegionControlBlock.UnmapSlots];

    public Unmapper(RegionControlBlock control, nint start, long length, int pageSize)
    {
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

    /// <summary>Stops the thread and waits for it (it is at most in one madvise).</summary>
    public void Dispose()
    {
        _control.StopUnmapper();
        _thread.Join();
    }
}
