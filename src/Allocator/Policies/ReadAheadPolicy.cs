namespace Paging.Policies;

/// <summary>A region's batching settings in pages, as the pager applies them (the application derives them from its
/// PrefetchOptions and sends them in AddRegion).</summary>
/// <param name="ReadAhead">Detect sequential streams and read ahead of them.</param>
/// <param name="BlockPages">Pages one sequential fault resolves (fault-around block), at least 1.</param>
/// <param name="MaxWindowPages">The largest read-ahead window, at least 1.</param>
/// <param name="StreamAll">Stream the whole region in the background from creation.</param>
internal readonly record struct ReadAheadPolicy(bool ReadAhead, long BlockPages, long MaxWindowPages, bool StreamAll)
{
    /// <summary>The policy the application asks for; the pager narrows it to what suits the store
    /// (<see cref="ForStore"/>).</summary>
    public static ReadAheadPolicy For(bool readAhead, int faultAroundBytes, int maxReadAheadBytes, bool streamAll, int pageSize) => new(
        readAhead,
        Math.Max(1, faultAroundBytes / pageSize),
        Math.Max(1, maxReadAheadBytes / pageSize),
        streamAll);

    /// <summary>Read-ahead is for 4 KiB arenas over synchronous stores. A hugetlbfs fault already brings 2 MiB, and
    /// one background chunk is a whole huge page (~0.3 ms to fill from a file) that holds its fill thread while an
    /// urgent fault waits: measured slower with read-ahead on (docs/BENCHMARKS.md, hugetlb rows). An asynchronous
    /// store's read holds no thread, and one 2 MiB request per fault, one after another, left a network store at half
    /// the link (docs/BENCHMARKS.md §7): read-ahead stays on there. Prefetch and StreamAll work everywhere.</summary>
    public ReadAheadPolicy ForStore(int pageSize, bool asynchronous) => pageSize <= 64 * 1024
        ? this
        : this with
        {
            ReadAhead = ReadAhead && asynchronous,
            // A window of huge pages holds at least 8 (16 MiB): with the default 4 MiB it would be two requests,
            // too few in flight to keep a link busy.
            MaxWindowPages = asynchronous ? Math.Max(MaxWindowPages, 8) : MaxWindowPages,
        };
}
