namespace Paging;

/// <summary>What to reserve: the arena kind, its length and the store its pages come from.</summary>
public sealed class RegionOptions
{
    /// <summary>The arena kind (default <see cref="ArenaKind.Shmem"/>, whose contents survive a pager restart).</summary>
    public ArenaKind Arena { get; init; } = ArenaKind.Shmem;

    /// <summary>Bytes to reserve: a positive multiple of the arena's page size (4 KiB, 2 MiB for hugetlbfs). Nothing
    /// is committed until touched, so it may exceed physical memory (1 TiB on a 24 GiB machine is fine).</summary>
    public long Length { get; init; }

    /// <summary>Where pages come from (default: zeros).</summary>
    public PageStoreDescriptor Store { get; init; } = PageStoreDescriptor.Zero();

    /// <summary>Read-ahead, fault-around and streaming (default: read-ahead on sequential streams).</summary>
    public PrefetchOptions Prefetch { get; init; } = new();
}

/// <summary>A region's counters, read from its control block (the pager writes them; they survive pager restarts).</summary>
public readonly record struct RegionStatistics(
    long MissingFaults, long MinorFaults, long Messages, long Batches, long PagesFilled, long ZeroPagesFilled, long BytesRead,
    long Resolutions, long AlreadyPresent, long Retries, long Errors, long Poisoned, long Recoveries,
    long PagesPrefetched, long SequentialHits, long PrefetchLate, long StaleFaults, long ManagedBytesAllocated)
{
    /// <summary>Pages filled because a thread faulted on them (the rest were read ahead or streamed).</summary>
    public long PagesOnDemand => PagesFilled - PagesPrefetched;

    /// <summary>Faults the pager served.</summary>
    public long Faults => MissingFaults + MinorFaults;
}
