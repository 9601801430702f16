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

    /// <summary>Huge-page arenas read ahead too, in windows of at least 4 huge pages (8 MiB) for a synchronous store
    /// and 8 (16 MiB) for an asynchronous one. Synchronous: a window's chunks are filled by idle fill threads while
    /// the reader maps the page it faulted on — the hugetlb harness's sequential row went from 843–1160 to 524–534 ns
    /// per 4 KiB (two alternating runs each) and a 2 GiB checkpoint touched tensor by tensor from 380–403 to 191–203 ms
    /// hot, random rows unchanged (docs/BENCHMARKS.md §16); it had been off for them since a measurement with the engine
    /// of that time found it slower. Asynchronous: one 2 MiB request per fault, one after another, left a network
    /// store at half the link (§7).</summary>
    public ReadAheadPolicy ForStore(int pageSize, bool asynchronous) => pageSize <= 64 * 1024
        ? this
        : this with
        {
            // A window of huge pages holds at least 8 (16 MiB) for a network: with the default 4 MiB it would be two
            // requests, too few in flight to keep a link busy.
            MaxWindowPages = asynchronous ? Math.Max(MaxWindowPages, 8) : Math.Max(MaxWindowPages, 4),
        };
}
