using Paging.Interop;
using Paging.Pages;

namespace Paging.Faults;

/// <summary>The pager's view of one region: where it lives in the application, the staging mapping of its memfd
/// (shmem / hugetlbfs), its control block and its store.</summary>
internal sealed unsafe class ServedRegion : IDisposable
{
    public ServedRegion(ulong id, ArenaKind kind, ulong start, ulong length, int pageSize, RegionControlBlock control,
        Mapping? staging, IPageStore store, string storeName, RegionPolicy policy, FileDescriptor? memfd = null)
    {
        Memfd = memfd;
        Policy = policy;
        Pages = (long)(length / (ulong)pageSize);
        Id = id;
        Kind = kind;
        Start = start;
        Length = length;
        End = start + length;
        PageSize = pageSize;
        PageShift = System.Numerics.BitOperations.Log2((uint)pageSize);
        Control = control;
        Staging = staging;
        Store = store;
        StoreName = storeName;
    }

    public ulong Id { get; }
    public ArenaKind Kind { get; }
    public ulong Start { get; }
    public ulong Length { get; }
    public ulong End { get; }
    public int PageSize { get; }
    public int PageShift { get; }
    public RegionControlBlock Control { get; }
    public Mapping? Staging { get; }

    /// <summary>The arena's memfd (shmem/hugetlbfs), kept for splice fills.</summary>
    public FileDescriptor? Memfd { get; }
    public IPageStore Store { get; }
    public string StoreName { get; }
    public RegionPolicy Policy { get; }
    public long Pages { get; }

    /// <summary>Sequential streams of this region (touched only by the fault thread).</summary>
    public StreamTracker Streams { get; } = new();

    public void Dispose()
    {
        Store.Dispose();
        Staging?.Dispose();
        Memfd?.Dispose();
        Control.Dispose();
    }
}

/// <summary>A region's batching settings in pages, as the pager uses them (from <see cref="PrefetchOptions"/>).</summary>
internal readonly record struct RegionPolicy(bool ReadAhead, long BlockPages, long MaxWindowPages, bool StreamAll)
{
    /// <summary>Read-ahead is for 4 KiB arenas. A hugetlbfs fault already brings 2 MiB, and one background chunk is a
    /// whole huge page (~0.3 ms to fill), which an urgent fault then waits behind: measured slower with read-ahead on
    /// (docs/BENCHMARKS.md, hugetlb rows). Prefetch and StreamAll still work there.</summary>
    public static RegionPolicy From(PrefetchOptions o, int pageSize) => new(
        o.ReadAhead && pageSize <= 64 * 1024,
        Math.Max(1, o.FaultAroundBytes / pageSize),
        Math.Max(1, o.MaxReadAheadBytes / pageSize),
        o.StreamAll);
}
