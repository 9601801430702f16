namespace Paging.Policies;

/// <summary>
/// Sequential-stream detection for one region, like the kernel's read-ahead state but for up to
/// <see cref="Slots"/> streams at once (threads scanning side by side). Owned by the fault thread: no locks, no
/// allocation after construction.
/// <para>A fault that lands inside a stream's last window or right after it is a hit: the faulting block is resolved
/// now, and the next window (twice the last, up to the maximum) is scheduled for the background. Anything else starts
/// a new stream in the least recently used slot and reads only the faulting page, so random access reads nothing it
/// does not touch.</para>
/// </summary>
internal sealed class StreamTracker
{
    /// <summary>Streams tracked per region: enough for the scanning threads of a 2-vCPU machine many times over;
    /// each slot is 24 bytes.</summary>
    public const int Slots = 8;

    private readonly long[] _next = new long[Slots];
    private readonly long[] _window = new long[Slots];
    private readonly long[] _used = new long[Slots];
    private long _clock;

    public StreamTracker()
    {
        Array.Fill(_next, -1);
    }

    /// <summary>Classifies a fault on pages [first, end).</summary>
    /// <returns>True for a sequential hit; then [aheadFirst, aheadEnd) is the window to read in the background and
    /// <paramref name="late"/> says the fault landed in a window scheduled but not yet filled.</returns>
    public bool OnFault(long first, long end, long blockPages, long maxWindowPages, long regionPages, out long aheadFirst, out long aheadEnd, out bool late)
    {
        _clock++;
        aheadFirst = aheadEnd = 0;
        late = false;
        int lru = 0;
        for (int s = 0; s < Slots; s++)
        {
            long next = _next[s];
            if (next >= 0 && first <= next && first >= next - _window[s] - 1)
            {
                late = first < next && _window[s] > 0;
                long block = Math.Max(blockPages, 1);
                long blockEnd = Math.Min(regionPages, (first / block + 1) * block);
                long window = Math.Min(maxWindowPages, _window[s] == 0 ? 2 * block : 2 * _window[s]);
                aheadFirst = Math.Max(next, Math.Max(blockEnd, end));
                aheadEnd = Math.Min(regionPages, aheadFirst + window);
                _next[s] = Math.Max(aheadEnd, end);
                _window[s] = window;
                _used[s] = _clock;
                return true;
            }
            if (_used[s] < _used[lru])
            {
                lru = s;
            }
        }
        _next[lru] = end;
        _window[lru] = 0;
        _used[lru] = _clock;
        return false;
    }

    /// <summary>Forgets every stream (after the region's prefetches were cancelled).</summary>
    public void Reset()
    {
        Array.Fill(_next, -1);
        Array.Fill(_window, 0);
    }
}
