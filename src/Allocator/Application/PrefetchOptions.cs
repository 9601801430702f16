namespace Paging;

/// <summary>
/// How a region batches: read-ahead on sequential streams, background streaming and pre-mapping. The kernel never
/// faults around inside a userfaultfd range, and a one-page round trip costs ~60 µs on a quiet machine of this kind
/// (../shared/limits row 5.1) against ~0.3 µs per page for the kernel's own fault-around (row 3.6): batching is ours.
/// Every value is checked when it is set.
/// </summary>
public sealed class PrefetchOptions
{
    /// <summary>The block one fault resolves once a stream is sequential (default 64 KiB, rounded down to whole pages;
    /// 0 or less than a page means one page). A block never crosses the region's end and never touches a page that is
    /// already present.</summary>
    public int FaultAroundBytes
    {
        get;
        init
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value, nameof(FaultAroundBytes));
            field = value;
        }
    } = 64 * 1024;

    /// <summary>Detect sequential streams (up to 8 per region, for threads that scan side by side) and read ahead of
    /// them in the background with a window that doubles on every sequential fault and collapses on a random one, as
    /// the kernel's read-ahead does. Random faults read only the page they touch. Default on.</summary>
    public bool ReadAhead { get; init; } = true;

    /// <summary>The largest read-ahead window. 0 (the default) lets the pager pick by store: 4 MiB, or 16 MiB for an
    /// asynchronous (network) store, where 4 MiB kept too few requests in flight. A positive value is the cap; set it
    /// when streams stop early (a loader of tensors, a scan that ends), where a window runs past the end: 10% of a
    /// checkpoint's tensors over HTTP read 614 MiB with 16 MiB windows against 396 MiB with 4 MiB, for ~299 MiB touched
    /// (docs/BENCHMARKS.md §29). Hugetlbfs arenas read at least 4 huge pages ahead (8 MiB), 8 (16 MiB) for a network,
    /// whatever is set. Under a <see cref="RegionOptions.MemoryBudget"/> the window is at most an eighth of the budget,
    /// whatever is set (pages read ahead count against it before they are read).</summary>
    public int MaxReadAheadBytes
    {
        get;
        init
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value, nameof(MaxReadAheadBytes));
            field = value;
        }
    }

    /// <summary>Stream the whole region into memory in the background from creation, in order, while real faults
    /// jump the queue (QEMU postcopy's pattern). Pages are pre-mapped: a thread touching a streamed page never faults.</summary>
    public bool StreamAll { get; init; }

    /// <summary>One page per fault, no read-ahead: the baseline the batching is measured against.</summary>
    public static PrefetchOptions None { get; } = new() { ReadAhead = false, FaultAroundBytes = 0 };
}
