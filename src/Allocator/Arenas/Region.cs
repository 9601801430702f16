using Paging.Interop;
using Paging.Pages;

namespace Paging;

/// <summary>
/// A reserved range of virtual memory whose pages are produced on first touch by its store. Read and write it like
/// any memory (<see cref="Pointer"/>, <see cref="AsSpan"/>); the touching thread waits while the pager fills the page.
/// </summary>
public sealed unsafe class Region : IDisposable
{
    private readonly PagingRuntime _runtime;
    private readonly Mapping _user;
    private readonly FileDescriptor? _memfd;
    private readonly RegionControlBlock _control;
    private readonly FileDescriptor _controlFd;
    private int _disposed;

    internal Region(PagingRuntime runtime, ulong id, ArenaKind arena, int pageSize, Mapping user, FileDescriptor? memfd,
        RegionControlBlock control, FileDescriptor controlFd, PageStoreDescriptor store, PrefetchOptions prefetch)
    {
        Prefetch = prefetch;
        _runtime = runtime;
        Id = id;
        Arena = arena;
        PageSize = pageSize;
        _user = user;
        _memfd = memfd;
        _control = control;
        _controlFd = controlFd;
        Store = store;
    }

    internal ulong Id { get; }

    /// <summary>The arena kind.</summary>
    public ArenaKind Arena { get; }

    /// <summary>The page size: the unit of every fault and fill.</summary>
    public int PageSize { get; }

    /// <summary>Length in bytes.</summary>
    public long Length => _user.Length;

    /// <summary>The region's batching settings.</summary>
    public PrefetchOptions Prefetch { get; }

    /// <summary>The store the pages come from.</summary>
    public PageStoreDescriptor Store { get; }

    internal string StoreKind => Store.Kind;

    /// <summary>The first byte. Valid until <see cref="Dispose"/>; touching it afterwards is a segmentation fault.</summary>
    public nint Address
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed != 0, this);
            return _user.Address;
        }
    }

    internal nint UserAddress => _user.Address;

    /// <summary>The first byte as a pointer (see <see cref="Address"/>).</summary>
    public byte* Pointer => (byte*)Address;

    /// <summary>A span over [offset, offset+length).</summary>
    public Span<byte> AsSpan(long offset, int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        if (offset + length > Length)
        {
            throw new ArgumentOutOfRangeException(nameof(length), $"[{offset}, {offset + length}) is outside the region's {Length} bytes");
        }
        return new Span<byte>(Pointer + offset, length);
    }

    /// <summary>Fills [offset, offset+length) in the background, in order, and maps it ahead so touching it does not
    /// fault; real faults go first. Returns when the pager has queued it (not when it is done).</summary>
    public void PrefetchRange(long offset, long length)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        if (offset + length > Length)
        {
            throw new ArgumentOutOfRangeException(nameof(length), $"[{offset}, {offset + length}) is outside the region's {Length} bytes");
        }
        long first = offset / PageSize, end = (offset + length + PageSize - 1) / PageSize;
        _runtime.SendPrefetch(this, Faults.PagerProtocol.MessageType.Prefetch, first, end);
    }

    /// <summary>Drops the region's queued background work (prefetches, streaming, read-ahead windows). Pages already
    /// filled stay; when it returns, no further background fill of this region starts.</summary>
    public void CancelPrefetch()
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        _runtime.SendPrefetch(this, Faults.PagerProtocol.MessageType.CancelPrefetch, 0, 0);
    }

    /// <summary>
    /// Drops the pages of [offset, offset+length) (whole pages only: the range must be page-aligned): their memory is
    /// freed and the next touch fills them again from the store. Writes to those pages are discarded with them.
    /// Shmem/hugetlbfs: the page cache is punched out of the memfd and the mappings dropped; anonymous: the pages are
    /// dropped with MADV_DONTNEED. (Any pager fill racing with this is safe: a page whose bit is set but whose page-cache
    /// page is gone is filled again, see the fault loop.)
    /// </summary>
    public void Discard(long offset, long length)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        if (offset < 0 || length < 0 || offset % PageSize != 0 || length % PageSize != 0 || offset + length > Length)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), $"[{offset}, {offset + length}) must be whole {PageSize}-byte pages inside the region's {Length} bytes");
        }
        if (length == 0)
        {
            return;
        }
        _control.ClearFilled(offset / PageSize, length / PageSize);
        if (_memfd is not null && Libc.Fallocate(_memfd.Fd, Libc.FALLOC_FL_PUNCH_HOLE | Libc.FALLOC_FL_KEEP_SIZE, offset, length) != 0)
        {
            throw Libc.Error($"fallocate(PUNCH_HOLE) of {length} bytes at {offset}");
        }
        if (Libc.Madvise(_user.Address + (nint)offset, (nuint)length, Libc.MADV_DONTNEED) != 0)
        {
            throw Libc.Error($"madvise(DONTNEED) of {length} bytes at {offset}");
        }
    }

    /// <summary>The fds the pager needs: the control block, and the memfd for shmem/hugetlbfs.</summary>
    internal int[] FdsForPager => _memfd is null ? [_controlFd.Fd] : [_controlFd.Fd, _memfd.Fd];

    /// <summary>The region's counters (the pager keeps them in shared memory).</summary>
    public RegionStatistics Statistics => new(
        ReadStat(RegionStat.MissingFaults), ReadStat(RegionStat.MinorFaults), ReadStat(RegionStat.Messages), ReadStat(RegionStat.Batches),
        ReadStat(RegionStat.PagesFilled), ReadStat(RegionStat.ZeroPagesFilled), ReadStat(RegionStat.BytesRead), ReadStat(RegionStat.Resolutions),
        ReadStat(RegionStat.AlreadyPresent), ReadStat(RegionStat.Retries), ReadStat(RegionStat.Errors), ReadStat(RegionStat.Poisoned),
        ReadStat(RegionStat.Recoveries), ReadStat(RegionStat.PagesPrefetched), ReadStat(RegionStat.SequentialHits),
        ReadStat(RegionStat.PrefetchLate), ReadStat(RegionStat.StaleFaults), ReadStat(RegionStat.ManagedBytesAllocated));

    /// <summary>How many of the pages in [firstPage, firstPage+count) the pager has filled.</summary>
    public long CountFilledPages(long firstPage, long count)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        ArgumentOutOfRangeException.ThrowIfNegative(firstPage);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(firstPage + count, _control.PageCount);
        return _control.CountFilled(firstPage, count);
    }

    internal long ReadStat(RegionStat stat) => _disposed != 0 ? 0 : _control.Read(stat);

    internal void CopyLatency(Span<long> destination)
    {
        if (_disposed == 0)
        {
            _control.CopyLatency(destination);
        }
    }

    /// <summary>Unregisters the range (waking any waiting thread), tells the pagers, and unmaps it.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        _runtime.RemoveRegion(this);
        _user.Dispose();
        _memfd?.Dispose();
        _control.Dispose();
        _controlFd.Dispose();
    }
}
