namespace Paging.Policies;

/// <summary>A region's batching settings in pages, as the pager applies them (the application derives them from its
/// PrefetchOptions and sends them in AddRegion).</summary>
/// <param name="ReadAhead">Detect sequential streams and read ahead of them.</param>
/// <param name="BlockPages">Pages one sequential fault resolves (fault-around block), at least 1.</param>
/// <param name="MaxWindowPages">The largest read-ahead window, at least 1; 0 on the wire means automatic (the pager
/// picks by store, <see cref="ForStore"/>).</param>
/// <param name="StreamAll">Stream the whole region in the background from creation.</param>
internal readonly record struct ReadAheadPolicy(bool ReadAhead, long BlockPages, long MaxWindowPages, bool StreamAll)
{
    /// <summary>The policy the application asks for; the pager narrows it to what suits the store
    /// (<see cref="ForStore"/>).</summary>
    public static ReadAheadPolicy For(bool readAhead, int faultAroundBytes, int maxReadAheadBytes, bool streamAll, int pageSize) => new(
        readAhead,
        Math.Max(1, faultAroundBytes / pageSize),
        maxReadAheadBytes == 0 ? 0 : Math.Max(1, maxReadAheadBytes / pageSize),
        streamAll);

    /// <summary>The pager's window for this region's store. Automatic (0): <see cref="DefaultWindowBytes"/>, or
    /// <see cref="AsyncWindowBytes"/> for an asynchronous store. Huge-page arenas read ahead too, in windows of at
    /// least 4 huge pages (8 MiB) for a synchronous store and 8 (16 MiB) for an asynchronous one, whatever was asked.
    /// Synchronous: a window's chunks are filled by idle fill threads while the reader maps the page it faulted on —
    /// the hugetlb harness's sequential row went from 843–1160 to 524–534 ns per 4 KiB (two alternating runs each) and
    /// a 2 GiB checkpoint touched tensor by tensor from 380–403 to 191–203 ms hot, random rows unchanged
    /// (docs/BENCHMARKS.md §16); it had been off for them since a measurement with the engine of that time found it
    /// slower. Asynchronous: one 2 MiB request per fault, one after another, left a network store at half the link
    /// (§7).</summary>
    /// <param name="pageSize">The arena's page size.</param>
    /// <param name="asynchronous">The store completes reads later (a network store).</param>
    /// <param name="budgetPages">The region's memory budget in pages; 0 for none. A window is then at most
    /// 1/<see cref="BudgetShare"/> of it, automatic or pinned, huge pages or not: pages read ahead count against the
    /// budget before they are touched, and a window near the budget's size evicts its own pages before the reader gets
    /// to them.</param>
    public ReadAheadPolicy ForStore(int pageSize, bool asynchronous, long budgetPages = 0)
    {
        long window = MaxWindowPages > 0 ? MaxWindowPages : Math.Max(1, (asynchronous ? AsyncWindowBytes : DefaultWindowBytes) / pageSize);
        if (pageSize > 64 * 1024)
        {
            // A window of huge pages holds at least 8 (16 MiB) for a network: with the default 4 MiB it would be two
            // requests, too few in flight to keep a link busy.
            window = Math.Max(window, asynchronous ? 8 : 4);
        }
        if (budgetPages > 0)
        {
            window = Math.Clamp(budgetPages / BudgetShare, 1, window);
        }
        return this with { MaxWindowPages = window };
    }

    /// <summary>A window is at most 1/8 of a region's memory budget: room for the windows of several streams (up to 8
    /// per region) and the pages their readers hold. A 24 MiB object over HTTP behind a 6 MiB budget (1,536 pages),
    /// touched by four threads for 3 s in random pages and 64-page runs: with 16 MiB windows the peak was 2,095–2,395
    /// pages; with 768 KiB windows (this cap) 1,949–1,961; with in-flight reads also counted against the budget, 1,536
    /// (NetworkRegionTests.AnHttpRegionOverItsBudgetEvictsAndRefetches, docs/BUFFER-POOL.md).</summary>
    public const long BudgetShare = 8;

    /// <summary>The automatic window of a synchronous store: 4 MiB, the window of every figure for local stores in
    /// docs/BENCHMARKS.md before it became automatic, and a bounded overshoot for a stream that stops (a tensor, a
    /// table scan).</summary>
    public const int DefaultWindowBytes = 4 << 20;

    /// <summary>The automatic window of an asynchronous store: 16 MiB, 64 requests of 256 KiB. A 1 GiB sequential
    /// read from nginx on loopback into a shmem arena with 4 MiB windows left the two vCPUs 27–59% idle (the reader
    /// waiting on too few requests); alternating runs of three rows each, GB/s: 4 MiB 0.41–0.75, 8 MiB 0.65–0.85,
    /// 16 MiB 0.54–1.00, 32 MiB 0.72–1.06, 64 MiB 0.57–0.67 (docs/BENCHMARKS.md §29). A loader that stops its
    /// streams early pins a smaller window (<see cref="PrefetchOptions.MaxReadAheadBytes"/>): the weights loader does.</summary>
    public const int AsyncWindowBytes = 16 << 20;
}
