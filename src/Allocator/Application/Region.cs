using System.Buffers;
using Paging.Interop;
using Paging.Metrics;
using Paging.Protocol;
using Paging.Stores;

namespace Paging;

/// <summary>
/// A reserved range of virtual memory whose pages are produced on first touch by its store. Read and write it like
/// any memory (<see cref="AsMemory"/>, <see cref="AsSpan"/>, <see cref="Pointer"/>); the touching thread waits while
/// the pager fills the page.
/// <para>Lifetime: <see cref="Dispose"/> unregisters and unmaps the range. A <see cref="Memory{T}"/> from
/// <see cref="AsMemory"/> that is pinned (<see cref="Memory{T}.Pin"/>, as async I/O does) keeps the region mapped
/// until it is unpinned, and asking a view for its span after disposal throws. A raw <see cref="Span{T}"/> or pointer
/// cannot be tracked: using one after <see cref="Dispose"/> is a segmentation fault (the range is made inaccessible
/// before it is unregistered), never a wrong byte.</para>
/// </summary>
public sealed unsafe partial class Region : IDisposable, IAsyncDisposable, IRegionCounters
{
    private readonly PagingRuntime _runtime;
    private readonly Arena _arena;
    private readonly RegionControlBlock _control;
    private readonly FileDescriptor _controlFd;
    private int _disposeRequested;
    private int _references = 1; // the owner's, dropped by Dispose; each pinned view adds one
    private int _tornDown;
    private readonly Unmapper? _unmapper; // tracked hugetlbfs regions: unmaps what the clock asks; tracked anonymous: frees the shadow

    internal Region(PagingRuntime runtime, ulong id, Arena arena, RegionControlBlock control, FileDescriptor controlFd,
        PageStoreDescriptor store, PrefetchOptions prefetch, bool tracksWrites = false, bool readOnly = false, long callerFillBudget = -1)
    {
        _callerBudgetPages = callerFillBudget < 0 ? -1 : callerFillBudget / arena.PageSize;
        TracksWrites = tracksWrites;
        IsReadOnly = readOnly;
        _runtime = runtime;
        Id = id;
        _arena = arena;
        _control = control;
        _controlFd = controlFd;
        Store = store;
        Prefetch = prefetch;
        if (tracksWrites && arena.Kind == ArenaKind.HugeTlb)
        {
            _unmapper = new Unmapper(control, arena.User.Address, arena.User.Length, arena.PageSize);
        }
        else if (arena.Shadow is { } shadow)
        {
            _unmapper = new Unmapper(control, shadow.Address, shadow.Length, arena.PageSize, runtime.Uffd, arena.User.Address); // moves and frees evicted pages
        }
    }

    internal ulong Id { get; }

    /// <summary>The arena kind.</summary>
    public ArenaKind Arena => _arena.Kind;

    /// <summary>The page size: the unit of every fault and fill.</summary>
    public int PageSize => _arena.PageSize;

    /// <summary>Length in bytes.</summary>
    public long Length => _arena.User.Length;

    /// <summary>The region's batching settings.</summary>
    public PrefetchOptions Prefetch { get; }

    /// <summary>The store the pages come from.</summary>
    public PageStoreDescriptor Store { get; }

    /// <summary>True once <see cref="Dispose"/> was called.</summary>
    public bool IsDisposed => Volatile.Read(ref _disposeRequested) != 0;

    /// <summary>The first byte. Valid until <see cref="Dispose"/>; touching it afterwards is a segmentation fault.</summary>
    public nint Address
    {
        get
        {
            ObjectDisposedException.ThrowIf(IsDisposed, this);
            return _arena.User.Address;
        }
    }

    internal nint UserAddress => _arena.User.Address;

    /// <summary>The first byte as a pointer (see <see cref="Address"/>).</summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Naming", "CA1720", Justification = "It is a pointer, named as MemoryHandle.Pointer is.")]
    public byte* Pointer => (byte*)Address;

    /// <summary>A span over [offset, offset+length). It cannot keep the region alive: prefer <see cref="AsMemory"/>
    /// for anything that may outlive a <see cref="Dispose"/>.</summary>
    /// <exception cref="InvalidOperationException">the region is <see cref="IsReadOnly"/>: a write through the span
    /// would kill the process (use <see cref="AsReadOnlySpan"/>).</exception>
    public Span<byte> AsSpan(long offset, int length)
    {
        CheckWritable();
        CheckRange(offset, length);
        return new Span<byte>(Pointer + offset, length);
    }

    /// <summary>A read-only span over [offset, offset+length), for any region. Like <see cref="AsSpan"/>, it cannot
    /// keep the region alive.</summary>
    public ReadOnlySpan<byte> AsReadOnlySpan(long offset, int length)
    {
        CheckRange(offset, length);
        return new ReadOnlySpan<byte>(Pointer + offset, length);
    }

    /// <summary>Whether the region is mapped read-only (<see cref="RegionOptions.ReadOnly"/>).</summary>
    public bool IsReadOnly { get; }

    private void CheckWritable()
    {
        if (IsReadOnly)
        {
            throw new InvalidOperationException("the region is read-only (RegionOptions.ReadOnly): a write would be an access violation; use AsReadOnlySpan or AsReadOnlyMemory");
        }
    }

    /// <summary>A <see cref="Memory{T}"/> over [offset, offset+length) that knows its region: its span throws
    /// <see cref="ObjectDisposedException"/> once the region is disposed, and while it is pinned the region stays
    /// mapped (disposal completes at the last unpin).</summary>
    /// <exception cref="InvalidOperationException">the region is <see cref="IsReadOnly"/> (use
    /// <see cref="AsReadOnlyMemory"/>).</exception>
    public Memory<byte> AsMemory(long offset, int length)
    {
        CheckWritable();
        CheckRange(offset, length);
        return new RegionMemoryManager(this, offset, length).Memory;
    }

    /// <summary>A <see cref="ReadOnlyMemory{T}"/> over [offset, offset+length) that knows its region, as
    /// <see cref="AsMemory"/>, for any region.</summary>
    public ReadOnlyMemory<byte> AsReadOnlyMemory(long offset, int length)
    {
        CheckRange(offset, length);
        return new RegionMemoryManager(this, offset, length).Memory;
    }

    private void CheckRange(long offset, int length)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        if (offset + length > Length)
        {
            throw new ArgumentOutOfRangeException(nameof(length), $"[{offset}, {offset + length}) is outside the region's {Length} bytes");
        }
    }

    /// <summary>Fills [offset, offset+length) in the background, in order, and maps it ahead so touching it does not
    /// fault; real faults go first. Returns when the pager has queued it (not when it is done).</summary>
    public void PrefetchRange(long offset, long length)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        if (offset + length > Length)
        {
            throw new ArgumentOutOfRangeException(nameof(length), $"[{offset}, {offset + length}) is outside the region's {Length} bytes");
        }
        long first = offset / PageSize, end = (offset + length + PageSize - 1) / PageSize;
        _runtime.Prefetch(this, first, end);
    }

    /// <summary>Drops the region's queued background work (prefetches, streaming, read-ahead windows). Pages already
    /// filled stay; when it returns, no further background fill of this region starts.</summary>
    public void CancelPrefetch()
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        _runtime.CancelPrefetch(this);
    }

    /// <summary>
    /// Drops the pages of [offset, offset+length) (whole pages only: the range must be page-aligned): their memory is
    /// freed and the next touch fills them again from the store. Writes to those pages are discarded with them.
    /// Shmem/hugetlbfs: the pager punches the pages out of the memfd (which also unmaps them) on its fault thread,
    /// between fills, so a fill in flight can never land half in a punched page; this returns once that is done.
    /// Anonymous: this process drops the pages with MADV_DONTNEED (a racing fill installs a whole page atomically with
    /// UFFDIO_COPY, so it can only leave the store's bytes, which is what a refill would read).
    /// </summary>
    public void Discard(long offset, long length)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        if (offset < 0 || length < 0 || offset % PageSize != 0 || length % PageSize != 0 || offset + length > Length)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), $"[{offset}, {offset + length}) must be whole {PageSize}-byte pages inside the region's {Length} bytes");
        }
        if (length == 0)
        {
            return;
        }
        if (_arena.Memfd is not null)
        {
            _runtime.Discard(this, offset / PageSize, (offset + length) / PageSize);
            return;
        }
        _control.ClearFilled(offset / PageSize, length / PageSize);
        if (Libc.Madvise(_arena.User.Address + (nint)offset, (nuint)length, Advice.DontNeed) != 0)
        {
            throw Libc.Error($"madvise(DONTNEED) of {length} bytes at {offset}");
        }
    }

    /// <summary>True when the region tracks writes (<see cref="RegionOptions.WriteBack"/> or a
    /// <see cref="RegionOptions.MemoryBudget"/>): <see cref="Flush"/> and <see cref="Evict"/> work on it.</summary>
    public bool TracksWrites { get; }

    /// <summary>
    /// Writes every page written before this call back to the store and makes it durable (the file store: pwrite, then
    /// fdatasync), then returns. A page written while the flush runs goes out whole as it was at one instant (a
    /// snapshot checked against further writes), now or with the next write-back, never torn. Throws
    /// <see cref="PagerException"/> naming the first failed write when the store refused any (those pages stay dirty
    /// and resident: a later Flush retries them), and when the region does not track writes.
    /// </summary>
    public void Flush()
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        if (!TracksWrites)
        {
            throw new InvalidOperationException("this region does not track writes: create it with RegionOptions.WriteBack = true (or a MemoryBudget) to flush it");
        }
        _runtime.Flush(this);
    }

    /// <summary><see cref="Flush"/> on the thread pool.</summary>
    public Task FlushAsync(CancellationToken cancellationToken = default) => Task.Run(Flush, cancellationToken);

    /// <summary>Hint: the application is done with [offset, offset+length) for now (whole pages). Dirty pages are written
    /// back, then the pages are dropped; the next touch reads them again. Pinned pages, and pages the kernel would not
    /// unmap right now, stay. Needs write tracking (otherwise use <see cref="Discard"/>, which drops writes).</summary>
    public void Evict(long offset, long length)
    {
        var (first, end) = WholePages(offset, length);
        if (!TracksWrites)
        {
            throw new InvalidOperationException("Evict needs write tracking (RegionOptions.WriteBack or a MemoryBudget); Discard drops pages without writing them back");
        }
        if (end > first)
        {
            if (_unmapper is not null && _arena.Kind == ArenaKind.HugeTlb)
            {
                // Hugetlbfs: only this process can unmap its huge pages (see Unmapper); unmapped first, the pages are
                // ones the pager can evict (a page touched again meanwhile is mapped again and kept, as with shmem).
                for (long p = first; p < end; p++)
                {
                    if (!_control.IsPinned(p))
                    {
                        _ = Libc.Madvise(_arena.User.Address + (nint)(p * PageSize), (nuint)PageSize, Advice.DontNeed);
                    }
                }
            }
            _runtime.Evict(this, first, end);
        }
    }

    /// <summary>Hint: [offset, offset+length) will be needed soon: it is read and mapped in the background
    /// (<see cref="PrefetchRange"/>).</summary>
    public void WillNeed(long offset, long length) => PrefetchRange(offset, length);

    /// <summary>Keeps the pages of [offset, offset+length) (whole pages) resident: eviction skips them until
    /// <see cref="Unpin"/> (a B-tree's root and inner nodes). A pinned page not yet resident is read on its first touch as
    /// usual and stays from then on. Pins are bits, not counts: the application pairs them.</summary>
    public void Pin(long offset, long length)
    {
        var (first, end) = WholePages(offset, length);
        _control.Pin(first, end - first);
    }

    /// <summary>Lets eviction take the pages of [offset, offset+length) again.</summary>
    public void Unpin(long offset, long length)
    {
        var (first, end) = WholePages(offset, length);
        _control.Unpin(first, end - first);
    }

    private (long First, long End) WholePages(long offset, long length)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        if (offset < 0 || length < 0 || offset % PageSize != 0 || length % PageSize != 0 || offset + length > Length)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), $"[{offset}, {offset + length}) must be whole {PageSize}-byte pages inside the region's {Length} bytes");
        }
        return (offset / PageSize, (offset + length) / PageSize);
    }

    /// <summary>The region's counters (the pager keeps them in shared memory).</summary>
    public RegionStatistics Statistics => new(
        ReadStat(RegionStat.MissingFaults), ReadStat(RegionStat.MinorFaults), ReadStat(RegionStat.Messages), ReadStat(RegionStat.Batches),
        ReadStat(RegionStat.PagesFilled), ReadStat(RegionStat.ZeroPagesFilled), ReadStat(RegionStat.BytesRead), ReadStat(RegionStat.Resolutions),
        ReadStat(RegionStat.AlreadyPresent), ReadStat(RegionStat.Retries), ReadStat(RegionStat.Errors), ReadStat(RegionStat.Poisoned),
        ReadStat(RegionStat.Recoveries), ReadStat(RegionStat.PagesPrefetched), ReadStat(RegionStat.SequentialHits),
        ReadStat(RegionStat.PrefetchLate), ReadStat(RegionStat.StaleFaults), ReadStat(RegionStat.ManagedBytesAllocated),
        ReadStat(RegionStat.FailedWakes))
    {
        ResidentPages = ReadStat(RegionStat.ResidentPages),
        PeakResidentPages = ReadStat(RegionStat.PeakResidentPages),
        PagesEvicted = ReadStat(RegionStat.PagesEvicted),
        PagesWrittenBack = ReadStat(RegionStat.PagesWrittenBack),
        BytesWritten = ReadStat(RegionStat.BytesWritten),
        WriteErrors = ReadStat(RegionStat.WriteErrors),
        PagesUnmapped = ReadStat(RegionStat.PagesUnmapped),
        SecondChances = ReadStat(RegionStat.SecondChances),
        Flushes = ReadStat(RegionStat.Flushes),
        DirtyScanNanoseconds = ReadStat(RegionStat.DirtyScanNanoseconds),
        DirtyScannedPages = ReadStat(RegionStat.DirtyScannedPages),
        WriteFaults = ReadStat(RegionStat.WriteFaults),
        CallerFills = ReadStat(RegionStat.CallerFills),
    };

    /// <summary>How many of the pages in [firstPage, firstPage+count) the pager has filled (tests, diagnostics).</summary>
    internal long CountFilledPages(long firstPage, long count)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(firstPage);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(firstPage + count, _control.PageCount);
        return _control.CountFilled(firstPage, count);
    }

    string IRegionCounters.StoreKind => Store.Kind;

    internal long ReadStat(RegionStat stat) => Volatile.Read(ref _tornDown) != 0 ? 0 : _control.Read(stat);

    long IRegionCounters.ReadStat(RegionStat stat) => ReadStat(stat);

    void IRegionCounters.CopyLatency(Span<long> destination)
    {
        if (Volatile.Read(ref _tornDown) == 0)
        {
            _control.CopyLatency(destination);
        }
    }

    /// <summary>Adds a reference for a pinned view; false once disposal was requested.</summary>
    internal bool TryAddReference()
    {
        while (true)
        {
            int current = Volatile.Read(ref _references);
            if (current == 0 || IsDisposed)
            {
                return false;
            }
            if (Interlocked.CompareExchange(ref _references, current + 1, current) == current)
            {
                return true;
            }
        }
    }

    internal void ReleaseReference()
    {
        if (Interlocked.Decrement(ref _references) == 0)
        {
            TearDown();
        }
    }

    /// <summary>Unregisters the range (waking any waiting thread), tells the pagers, and unmaps it — at once, or at
    /// the last unpin of a view from <see cref="AsMemory"/>. A region that tracks writes is flushed first, so
    /// disposing never drops a write silently; a flush that fails is logged by the runtime (call <see cref="Flush"/>
    /// before disposing to get the error as an exception).</summary>
    public void Dispose()
    {
        FlushBeforeDisposal();
        if (Interlocked.Exchange(ref _disposeRequested, 1) == 0)
        {
            ReleaseReference();
        }
    }

    /// <summary>A region that tracks writes writes them back before it goes (Dispose, and the runtime's own Dispose).</summary>
    private void FlushBeforeDisposal()
    {
        if (!TracksWrites || IsDisposed)
        {
            return;
        }
        try
        {
            _runtime.Flush(this);
        }
#pragma warning disable CA1031 // Dispose must not throw; the failure is logged with what was lost.
        catch (Exception e) when (e is PagingException or ObjectDisposedException)
#pragma warning restore CA1031
        {
            _runtime.LogDisposeFlushFailed(this, e);
        }
    }

    /// <summary>Disposes on the thread pool: disposal waits for the pagers' replies.</summary>
    public ValueTask DisposeAsync() => new(Task.Run(Dispose));

    /// <summary>The runtime is going away: tear down now, pinned views or not.</summary>
    internal void ForceDispose()
    {
        FlushBeforeDisposal();
        Volatile.Write(ref _disposeRequested, 1);
        TearDown();
    }

    private void TearDown()
    {
        if (Interlocked.Exchange(ref _tornDown, 1) != 0)
        {
            return;
        }
        _runtime.RemoveRegion(this);
        _unmapper?.Dispose(); // the pager posts no more: stop the thread before the mapping it advises goes
        _arena.Dispose();
        _control.Dispose();
        _controlFd.Dispose();
    }
}

/// <summary>The <see cref="MemoryManager{T}"/> behind <see cref="Region.AsMemory"/>: a pin holds a reference on the
/// region, so the mapping outlives every pinned view.</summary>
internal sealed unsafe class RegionMemoryManager(Region region, long offset, int length) : MemoryManager<byte>
{
    public override Span<byte> GetSpan()
    {
        ObjectDisposedException.ThrowIf(region.IsDisposed, region);
        return new Span<byte>((byte*)region.Address + offset, length);
    }

    public override MemoryHandle Pin(int elementIndex = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(elementIndex);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(elementIndex, length);
        ObjectDisposedException.ThrowIf(!region.TryAddReference(), region);
        return new MemoryHandle((byte*)region.UserAddress + offset + elementIndex, default, this);
    }

    public override void Unpin() => region.ReleaseReference();

    protected override void Dispose(bool disposing)
    {
        // Nothing owned: the region owns the mapping.
    }
}
