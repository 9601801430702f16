using Paging.Interop;
using Paging.Policies;
using Paging.Protocol;
using Paging.Stores;

namespace Paging.Engine;

/// <summary>The pager's view of one region: where it lives in the application, the staging mapping of its memfd
/// (shmem / hugetlbfs), its control block and its store.</summary>
internal sealed unsafe class ServedRegion : IDisposable
{
    public ServedRegion(ulong id, ArenaKind kind, ulong start, ulong length, int pageSize, RegionControlBlock control,
        Mapping? staging, IPageStore store, string storeName, ReadAheadPolicy policy, FileDescriptor? memfd = null)
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
        SpliceSource = kind == ArenaKind.Shmem && memfd is not null && (store.Capabilities & PageStoreCapabilities.FileSource) != 0 ? store.FileSource : null;
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

    /// <summary>The store's file, when it offers one (<see cref="PageStoreCapabilities.FileSource"/>) and the arena
    /// is shmem: fills then splice kernel-side.</summary>
    public FileSlice? SpliceSource { get; }
    public string StoreName { get; }
    public ReadAheadPolicy Policy { get; }
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
