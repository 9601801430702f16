using System.Collections.Concurrent;
using Paging.Interop;
using Paging.Policies;
using Paging.Protocol;
using Paging.Stores;

namespace Paging.Engine;

/// <summary>The pager's view of one region: where it lives in the application, the staging mapping of its memfd
/// (shmem / hugetlbfs), its control block (page table and counters), its claim table (fills in flight) and its store.
/// Fill threads enter it while they work on it; removal waits until they have all left.</summary>
internal sealed unsafe class ServedRegion : IDisposable
{
    private const int Closed = 1 << 30; // added to _users by Close: TryEnter fails from then on
    private int _users;
    private int _inFlightAsync;
    private int _disposed;

    public ServedRegion(ulong id, ArenaKind kind, ulong start, ulong length, int pageSize, RegionControlBlock control,
        Mapping? staging, IPageStore store, string storeName, ReadAheadPolicy policy, FileDescriptor? memfd = null,
        TimeSpan? readTimeout = null, long memoryBudget = 0, bool trackWrites = false, ulong shadow = 0, bool callerFills = false)
    {
        TrackWrites = trackWrites;
        CallerFills = callerFills;
        Shadow = shadow;
        BudgetPages = memoryBudget / pageSize;
        Writable = (store.Capabilities & PageStoreCapabilities.Write) != 0;
        RetainsEvicted = (store.Capabilities & PageStoreCapabilities.RetainsEvicted) != 0;
        Memfd = memfd;
        IsAsync = (store.Capabilities & PageStoreCapabilities.Asynchronous) != 0;
        if (callerFills && (kind != ArenaKind.Shmem || IsAsync))
        {
            // Asynchronous fills read into the staging mapping, which would race the application's UFFDIO_COPY; the
            // hugetlbfs and anonymous clocks have no referenced bitmap. Only PagedFile asks (shmem, file store).
            throw new PagerException($"caller fills need a shmem arena and a synchronous store (region {id}: {kind}, store {storeName})");
        }
        Policy = policy.ForStore(pageSize, IsAsync, BudgetPages);
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
        Claims = new PageClaims(Pages);
        Cold = trackWrites ? new PageBits(Pages) : null;
        FreeQueue = shadow != 0 ? new PageBits(Pages) : null;
        Leaving = shadow != 0 ? new long[FaultEngine.ClockWindowPages] : null;
        ReadTimeout = readTimeout ?? TimeSpan.FromSeconds(30);
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

    /// <summary>The arena's memfd (shmem/hugetlbfs), kept for splice fills and Discard.</summary>
    public FileDescriptor? Memfd { get; }
    public IPageStore Store { get; }
    public string StoreName { get; }
    public ReadAheadPolicy Policy { get; }
    public long Pages { get; }

    /// <summary>Pages owned by a fill in flight (or a Discard).</summary>
    public PageClaims Claims { get; }

    /// <summary>Pages are mapped write-protected (WP_ASYNC): writes are learnt with PAGEMAP_SCAN, written back, and
    /// the region's pages can be evicted (shmem arenas).</summary>
    public bool TrackWrites { get; }

    /// <summary>The application reads pages in itself as well (<see cref="AddRegionMessage.CallerFills"/>): fills use
    /// UFFDIO_COPY, the evictor skips pages being read in and runs its clock on the referenced bitmap.</summary>
    public bool CallerFills { get; }

    /// <summary>The region's own memory budget in pages (0: none).</summary>
    public long BudgetPages { get; }

    /// <summary>The store's length when last asked, for counting the bytes a read took from it: asking costs a
    /// syscall for a file store (fstat: its file may grow), so it is asked again only for a read reaching past this.</summary>
    public long StoreLengthSeen;

    /// <summary>The store accepts writes: dirty pages can be written back (otherwise they stay resident).</summary>
    public bool Writable { get; }

    /// <summary>The store keeps evicted pages (a compressed tier): eviction hands it their bytes.</summary>
    public bool RetainsEvicted { get; }

    /// <summary>The eviction clock's bits: set when the clock unmapped a page, so a page still unmapped when the hand
    /// comes back was not touched in a whole turn (its touch would have mapped it again with a MINOR fault). Null
    /// for regions whose pages are never evicted.</summary>
    public PageBits? Cold { get; }

    /// <summary>A tracked anonymous region's shadow in the application (0 otherwise): eviction moves pages there
    /// (UFFDIO_MOVE) and the region's unmapper frees them.</summary>
    public ulong Shadow { get; }

    /// <summary>Shadow slots whose page is to be freed (an evicted page's bytes, or a stale copy of a page taken back),
    /// not yet handed to the unmapper; null without a shadow. Guarded by <see cref="ShadowLock"/>.</summary>
    public PageBits? FreeQueue { get; }

    /// <summary>How many bits of <see cref="FreeQueue"/> are set (changed with Interlocked: a fault that takes a page
    /// back from the shadow queues its slot without the lock).</summary>
    public long FreeCount;

    /// <summary>Pages of the move request handed to the unmapper and not yet settled (LeavingCount of them; at most
    /// one window's worth); null without a shadow.</summary>
    public long[]? Leaving { get; }

    /// <summary>How many entries of <see cref="Leaving"/> are in use.</summary>
    public int LeavingCount { get; set; }

    /// <summary>The request in the mailbox (if not done yet) moves pages (true) or frees shadow slots (false).</summary>
    public bool MoveOutstanding { get; set; }

    /// <summary>Where the next hand-over of shadow slots to free starts looking.</summary>
    public long ShadowCursor { get; set; }

    /// <summary>Serializes the evictor's and the command thread's use of the mailbox and the shadow. Held, with the
    /// mailbox idle, while the pager reads the region's pages out of the application: no move can start then, so a
    /// page found mapped stays mapped (reading a moved page would fault on the pager itself).</summary>
    public Lock ShadowLock { get; } = new();

    /// <summary>Makes a re-protecting dirty scan (Flush) and the evictor's reading of which unmapped pages are dirty
    /// atomic against each other. The scan turns the empty PTE of an unmapped, written page into a uffd-wp marker —
    /// which reads as clean — and records the page in the dirty bitmap only after its ioctl returns; an evictor that
    /// read the marker and then the bitmap in between took the page for clean and dropped its writes
    /// (CallerFillTests.FlushesRacingTheEvictorLoseNoWrite, a Flush in a loop beside writers under eviction: 3 runs of 6
    /// lost 2–37 writes without it). Each side holds it for one ioctl and a pass over at most one window of bits.</summary>
    public Lock DirtyLock { get; } = new();

    /// <summary>Where the eviction clock's hand is (the evictor thread's alone).</summary>
    public long Hand { get; set; }

    public long ResidentPages => Control.Read(RegionStat.ResidentPages);

    private long _pendingPages;

    /// <summary>Pages of asynchronous fills started (or queued for a slot) and not yet mapped: they will be resident
    /// without another budget check, so the budget counts them (<see cref="CommittedPages"/>).</summary>
    public long PendingPages => Volatile.Read(ref _pendingPages);

    /// <summary>Resident pages and pages on their way (<see cref="PendingPages"/>): what a budget is held to.</summary>
    public long CommittedPages => ResidentPages + PendingPages;

    public void AddPending(long pages) => Interlocked.Add(ref _pendingPages, pages);

    /// <summary>The store completes reads later: fills are started with ReadAsync and resolved by whichever thread
    /// completes them.</summary>
    public bool IsAsync { get; }

    /// <summary>A store read that takes longer is cancelled (async) or abandoned (sync) and counts as failed.</summary>
    public TimeSpan ReadTimeout { get; }

    /// <summary>The store's file, when it offers one (<see cref="PageStoreCapabilities.FileSource"/>) and the arena
    /// is shmem: fills then splice kernel-side.</summary>
    public FileSlice? SpliceSource { get; }

    /// <summary>Sequential streams of this region (guarded by <see cref="PolicyLock"/>).</summary>
    public StreamTracker Streams { get; } = new();

    /// <summary>Guards <see cref="Streams"/>: taken once per fault batch on the region, never per page.</summary>
    public Lock PolicyLock { get; } = new();

    /// <summary>Async fills that found the store at its in-flight limit; started as others complete.</summary>
    public ConcurrentQueue<Fill> Waiting { get; } = new();

    /// <summary>Enters the region for some work; false once it is being removed.</summary>
    public bool TryEnter()
    {
        while (true)
        {
            int users = Volatile.Read(ref _users);
            if (users >= Closed)
            {
                return false;
            }
            if (Interlocked.CompareExchange(ref _users, users + 1, users) == users)
            {
                return true;
            }
        }
    }

    /// <summary>Leaves the region; the last user out of a closed region disposes it.</summary>
    public void Exit()
    {
        if (Interlocked.Decrement(ref _users) == Closed)
        {
            DisposeOnce();
        }
    }

    /// <summary>Refuses new work, waits up to <paramref name="timeout"/> for the work in progress, and disposes the
    /// region — or leaves that to the last fill still inside (a store read abandoned by its deadline may return much
    /// later: its region stays alive until then, and is never disposed under it). True when disposed here.</summary>
    public bool Close(TimeSpan timeout)
    {
        if (Interlocked.Add(ref _users, Closed) == Closed)
        {
            DisposeOnce();
            return true;
        }
        var spin = new SpinWait();
        long deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        while (Volatile.Read(ref _disposed) == 0 && Environment.TickCount64 < deadline)
        {
            spin.SpinOnce(sleep1Threshold: 20);
        }
        return Volatile.Read(ref _disposed) != 0;
    }

    private void DisposeOnce()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            Store.Dispose();
            Staging?.Dispose();
            Memfd?.Dispose();
            Control.Dispose();
            Claims.Dispose();
            Cold?.Dispose();
            FreeQueue?.Dispose();
        }
    }

    /// <summary>Takes one of the store's in-flight slots; false at the limit.</summary>
    public bool TryStartAsync(int limit)
    {
        if (Interlocked.Increment(ref _inFlightAsync) <= limit)
        {
            return true;
        }
        Interlocked.Decrement(ref _inFlightAsync);
        return false;
    }

    public void EndAsync() => Interlocked.Decrement(ref _inFlightAsync);

    /// <summary>Disposes now (the engine is stopping and no fill thread is left).</summary>
    public void Dispose() => DisposeOnce();
}
