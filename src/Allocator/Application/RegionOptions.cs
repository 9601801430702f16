using Paging.Stores;

namespace Paging;

/// <summary>What to reserve: the arena kind, its length and the store its pages come from. Every value is checked
/// when it is set; that the length is a multiple of the arena's page size is checked at
/// <see cref="PagingRuntime.CreateRegion"/> (the arena may be set after the length).</summary>
public sealed class RegionOptions
{
    /// <summary>The arena kind (default <see cref="ArenaKind.Shmem"/>, whose contents survive a pager restart).</summary>
    public ArenaKind Arena
    {
        get;
        init
        {
            if (!Enum.IsDefined(value))
            {
                throw new ArgumentOutOfRangeException(nameof(Arena), value, "not an arena kind");
            }
            field = value;
        }
    } = ArenaKind.Shmem;

    /// <summary>Bytes to reserve: a positive multiple of the arena's page size (4 KiB, 2 MiB for hugetlbfs). Nothing
    /// is committed until touched, so it may exceed physical memory (1 TiB on a 24 GiB machine is fine).</summary>
    public long Length
    {
        get;
        init
        {
            if (value <= 0)
            {
                throw new ArgumentException($"region length {value} must be positive", nameof(Length));
            }
            field = value;
        }
    }

    /// <summary>Where pages come from (default: zeros).</summary>
    public PageStoreDescriptor Store
    {
        get;
        init => field = value ?? throw new ArgumentNullException(nameof(Store));
    } = PageStoreDescriptor.Zero();

    /// <summary>How long one store read may take (default 30 s; 1 ms … 24 h). A read still running then is cancelled
    /// (asynchronous stores) or abandoned (synchronous ones) and counts as failed: retried, then the pages threads wait
    /// for are poisoned (SIGBUS) — never an endless wait.</summary>
    public TimeSpan ReadTimeout
    {
        get;
        init
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, TimeSpan.FromMilliseconds(1), nameof(ReadTimeout));
            ArgumentOutOfRangeException.ThrowIfGreaterThan(value, TimeSpan.FromHours(24), nameof(ReadTimeout));
            field = value;
        }
    } = TimeSpan.FromSeconds(30);

    /// <summary>Read-ahead, fault-around and streaming (default: read-ahead on sequential streams).</summary>
    public PrefetchOptions Prefetch
    {
        get;
        init => field = value ?? throw new ArgumentNullException(nameof(Prefetch));
    } = new();

    /// <summary>Bytes of this region the pager keeps resident (null: no budget of its own). Past it, the pager evicts
    /// cold pages (CLOCK, second chance), writing dirty ones back first. At least 4 MiB (16 MiB, 8 huge pages, for a
    /// hugetlbfs arena); shmem and hugetlbfs arenas only (the pager unmaps shmem pages by itself; for hugetlbfs, which
    /// it cannot unmap in another process, a thread of the region unmaps what its clock asks; an anonymous page cannot
    /// be evicted without a race that could lose a write). Turns on write tracking (<see cref="WriteBack"/> semantics
    /// for writes: a dirty page is never dropped; with a read-only store it stays resident).</summary>
    public long? MemoryBudget
    {
        get;
        init
        {
            if (value is { } v && v < MinimumBudget)
            {
                throw new ArgumentOutOfRangeException(nameof(MemoryBudget), v, $"a memory budget must be at least {MinimumBudget >> 20} MiB (a fill is up to 256 KiB per fill thread)");
            }
            field = value;
        }
    }

    /// <summary>Track writes (WP_ASYNC + PAGEMAP_SCAN: no fault per write) so <see cref="Region.Flush"/> writes them
    /// back to the store and eviction never drops one. Needs a writable store to flush
    /// (<c>PageStoreDescriptor.File(path, writable: true)</c>) and a shmem or hugetlbfs arena.</summary>
    public bool WriteBack { get; init; }

    /// <summary>Map the region read-only (PROT_READ): a write to it is an access violation, as with a read-only mmap
    /// (the process dies with SIGSEGV), so <see cref="Region.AsSpan"/> and <see cref="Region.AsMemory"/> refuse and
    /// <see cref="Region.AsReadOnlySpan"/> / <see cref="Region.AsReadOnlyMemory"/> serve. For data that is only read —
    /// model weights, a read-only database file — it is also faster: a page mapped without write permission costs less
    /// to touch the first time (on this project's Firecracker VM the first load of a freshly mapped 4 KiB page cost
    /// 1.1–1.5 µs read-only against 6.5–8.5 µs writable, docs/BENCHMARKS.md §20); on hugetlbfs, where one entry maps
    /// 2 MiB, there is nothing to save, and sequential reads with read-ahead measured slower. Not with <see cref="WriteBack"/>
    /// (nothing can be written), nor with a <see cref="MemoryBudget"/> on an anonymous arena (its eviction moves pages
    /// with UFFDIO_MOVE, which wants a writable mapping).</summary>
    public bool ReadOnly { get; init; }

    /// <summary>The smallest budget: 4 MiB, 16 fill threads' 256 KiB runs.</summary>
    public const long MinimumBudget = 4L << 20;

    internal bool TracksWrites => WriteBack || MemoryBudget is not null;

    /// <summary>The application reads pages in on its own threads too (<c>PagedFile.Fetch</c>): shmem arenas with a
    /// synchronous store only (the pager refuses others).</summary>
    internal bool CallerFills { get; init; }
}
