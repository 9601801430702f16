namespace Paging.Policies;

/// <summary>A region's batching settings in pages, as the pager applies them (the application derives them from its
/// PrefetchOptions and sends them in AddRegion).</summary>
/// <param name="ReadAhead">Detect sequential streams and read ahead of them.</param>
/// <param name="BlockPages">Pages one sequential fault resolves (fault-around block), at least 1.</param>
/// <param name="MaxWindowPages">The largest read-ahead window, at least 1.</param>
/// <param name="StreamAll">Stream the whole region in the background from creation.</param>
internal readonly record struct ReadAheadPolicy(bool ReadAhead, long BlockPages, long MaxWindowPages, bool StreamAll)
{
    /// <summary>Read-ahead is for 4 KiB arenas. A hugetlbfs fault already brings 2 MiB, and one background chunk is a
    /// whole huge page (~0.3 ms to fill), which an urgent fault then waits behind: measured slower with read-ahead on
    /// (docs/BENCHMARKS.md, hugetlb rows). Prefetch and StreamAll still work there.</summary>
    public static ReadAheadPolicy For(bool readAhead, int faultAroundBytes, int maxReadAheadBytes, bool streamAll, int pageSize) => new(
        readAhead && pageSize <= 64 * 1024,
        Math.Max(1, faultAroundBytes / pageSize),
        Math.Max(1, maxReadAheadBytes / pageSize),
        streamAll);
}
