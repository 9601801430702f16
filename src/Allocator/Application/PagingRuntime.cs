using Microsoft.Extensions.Logging;
using Paging.Interop;
using Paging.Kernel;
using Paging.Logging;
using Paging.Metrics;
using Paging.Policies;
using Paging.Protocol;
using Paging.Supervision;

namespace Paging;

/// <summary>
/// Owns one userfaultfd and the pager processes that serve it, and creates regions on it. The application creates
/// the uffd and the memfds and hands them to the pager over a Unix socket (SCM_RIGHTS); faults are never served by
/// managed code in this process, because a thread blocked in a fault cannot be suspended by the GC, and a managed
/// fault handler here would then be parked by that GC: a deadlock (see ARCHITECTURE.md).
/// <para>Supervision: with <see cref="PagingRuntimeOptions.Standby"/> a second pager holds every region and takes
/// over by itself when the active one exits (it watches the active's pidfd), waking every registered range so the
/// faults the dead pager had read come back. This process then starts a new standby. Shmem and hugetlbfs contents live
/// in the memfds and survive; anonymous pages live in this process's own memory and survive too. What a restart can
/// cost is only the fills in flight, which are redone; the control block's page table guarantees a half-written page
/// is never mapped and an already-mapped page is never refilled.</para>
/// </summary>
public sealed class PagingRuntime : IDisposable, IAsyncDisposable
{
    private static readonly Lazy<PagingRuntime> s_shared = new(() => Start());

    private readonly Lock _lock = new();
    private readonly ILogger _logger;
    private readonly Userfaultfd _uffd;
    private readonly PagerSupervisor _supervisor;
    private readonly Dictionary<ulong, Region> _regions = [];
    private Region[] _regionList = []; // _regions' values, replaced under _lock: read without it by caller fills
    private readonly long _budgetBytes;
    private ulong _nextRegionId;
    private bool _disposed;

    private PagingRuntime(PagingRuntimeOptions options)
    {
        _logger = options.LoggerFactory.CreateLogger("Paging.Runtime");
        Capabilities = UffdCapabilities.Current;
        // WP_ASYNC and WP_HUGETLBFS_SHMEM change nothing for ranges registered without write-protection: they are what
        // regions with write tracking (a budget, write-back) need, asked for when the kernel has them. Without WP_ASYNC
        // a write to a protected page faults to the pager (synchronous tracking).
        WriteTracking = ResolveWriteTracking(options.WriteTracking, Capabilities.Features);
        var used = UffdFeatures.MissingShmem | UffdFeatures.MinorShmem | UffdFeatures.MissingHugetlbfs |
            UffdFeatures.MinorHugetlbfs | UffdFeatures.Poison | UffdFeatures.PagefaultFlagWp | UffdFeatures.WpHugetlbfsShmem | UffdFeatures.Move;
        if (WriteTracking == WriteTracking.Asynchronous)
        {
            used |= UffdFeatures.WpAsync;
        }
        var launch = PagerLaunch.Resolve(options.PagerPath);
        _budgetBytes = options.MemoryBudget ?? 0;
        var tunables = new PagerTunables((long)options.PagerSpin.TotalNanoseconds, (int)options.PagerLogLevel, options.FillThreads, options.MemoryBudget ?? 0);
        _uffd = Userfaultfd.Create(used & Capabilities.Features);
        try
        {
            _supervisor = new PagerSupervisor(_uffd, launch, tunables, options.Standby, options.RequestTimeout, _logger);
        }
        catch
        {
            _uffd.Dispose();
            throw;
        }
    }

    /// <summary>What asynchronous write tracking needs of the kernel: writes resolved without a fault (WP_ASYNC) on shmem.</summary>
    internal const UffdFeatures TrackingFeatures = UffdFeatures.WpAsync | UffdFeatures.WpHugetlbfsShmem;

    private static WriteTracking ResolveWriteTracking(WriteTracking asked, UffdFeatures kernel) => asked switch
    {
        WriteTracking.Asynchronous when (kernel & TrackingFeatures) != TrackingFeatures =>
            throw new PagingFeatureNotSupportedException($"WriteTracking.Asynchronous needs userfaultfd WP_ASYNC and WP_HUGETLBFS_SHMEM (Linux 6.7+); this kernel's uffd has {kernel}: use WriteTracking.Auto or Synchronous", TrackingFeatures & ~kernel),
        WriteTracking.Auto => (kernel & TrackingFeatures) == TrackingFeatures ? WriteTracking.Asynchronous : WriteTracking.Synchronous,
        _ => asked,
    };

    /// <summary>How this runtime's regions that track writes learn which pages were written (never Auto).</summary>
    public WriteTracking WriteTracking { get; }

    /// <summary>The features this runtime's userfaultfd was opened with (tests).</summary>
    internal UffdFeatures Features => _uffd.Features;

    /// <summary>The runtime's userfaultfd (a tracked anonymous region's unmapper moves pages with it).</summary>
    internal Userfaultfd Uffd => _uffd;

    /// <summary>Creates a userfaultfd and starts its pager (and standby). Throws <see cref="PagerException"/> when the
    /// pager cannot start and <see cref="PagingSystemException"/> when userfaultfd is not permitted.</summary>
    public static PagingRuntime Start(PagingRuntimeOptions? options = null) => new(options ?? new PagingRuntimeOptions());

    /// <summary>A process-wide runtime with default options, started on first use.</summary>
    public static PagingRuntime Shared => s_shared.Value;

    /// <summary>The kernel's userfaultfd features.</summary>
    public UffdCapabilities Capabilities { get; }

    /// <summary>The pid of the pager serving faults now (diagnostics).</summary>
    public int ActivePagerPid => _supervisor.ActivePagerPid;

    /// <summary>True when a standby pager holds every region and watches the active one.</summary>
    public bool StandbyReady => _supervisor.StandbyReady;

    /// <summary>How many times the active pager was replaced.</summary>
    public int PagerRestarts => _supervisor.Restarts;

    /// <summary>Reserves a region. Nothing is read or committed until a page is touched.</summary>
    /// <exception cref="ArgumentException">the length is not a multiple of the arena's page size.</exception>
    /// <exception cref="PagingFeatureNotSupportedException">the kernel lacks what the arena kind needs.</exception>
    /// <exception cref="PagerException">the pager could not build the store (e.g. it cannot open the file, or a file
    /// slice's offset is not a multiple of the page size).</exception>
    public Region CreateRegion(RegionOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        ObjectDisposedException.ThrowIf(_disposed, this);
        Capabilities.EnsureSupports(options.Arena);
        int pageSize = Arena.PageSizeOf(options.Arena);
        if (options.Length <= 0 || options.Length % pageSize != 0)
        {
            throw new ArgumentException($"region length {options.Length} must be a positive multiple of the {options.Arena} page size ({pageSize} bytes)", nameof(options));
        }
        long pages = options.Length / pageSize;
        if (options.ReadOnly && options.WriteBack)
        {
            throw new ArgumentException("a ReadOnly region cannot have WriteBack: nothing can be written to it (drop one of the two)", nameof(options));
        }
        if (options.CallerFills && options.Arena != ArenaKind.Shmem)
        {
            throw new ArgumentException($"caller fills need a Shmem arena, not {options.Arena}", nameof(options));
        }
        if (options.ReadOnly && options.MemoryBudget is not null && options.Arena == ArenaKind.Anonymous)
        {
            throw new ArgumentException("a MemoryBudget on a ReadOnly Anonymous arena is not supported: its eviction moves pages with UFFDIO_MOVE, which needs a writable mapping; use ArenaKind.Shmem (evicted by the pager alone) or drop ReadOnly", nameof(options));
        }
        if (options.TracksWrites)
        {
            if (options.Arena == ArenaKind.Anonymous && WriteTracking != WriteTracking.Synchronous)
            {
                throw new ArgumentException("MemoryBudget and WriteBack on an Anonymous arena need a runtime with PagingRuntimeOptions.WriteTracking = WriteTracking.Synchronous: an anonymous page lives only in its mapping, so evicting it means taking it away, and with asynchronous tracking a write landing between the dirty check and that would be lost (the kernel resolves it without telling the pager); with synchronous tracking a clean page is write-protected, so a write must wait for the pager. Or use ArenaKind.Shmem, whose pages stay in a file the pager can write back and punch", nameof(options));
            }
            if (options.Arena == ArenaKind.Anonymous && (_uffd.Features & UffdFeatures.Move) == 0)
            {
                throw new PagingFeatureNotSupportedException($"MemoryBudget and WriteBack on an Anonymous arena need userfaultfd MOVE (Linux 6.8+) to take pages away atomically; this kernel's uffd has {_uffd.Features}: use ArenaKind.Shmem", UffdFeatures.Move);
            }
            if (options.Arena == ArenaKind.HugeTlb && options.MemoryBudget is { } b && b < 8L * pageSize)
            {
                throw new ArgumentException($"a hugetlbfs region's memory budget must hold at least 8 huge pages ({8L * pageSize >> 20} MiB), not {b >> 20} MiB: the evictor keeps 1/8 of the budget free for fills in flight", nameof(options));
            }
            if (options.Arena != ArenaKind.Anonymous && (_uffd.Features & UffdFeatures.WpHugetlbfsShmem) == 0)
            {
                throw new PagingFeatureNotSupportedException($"write tracking on a {options.Arena} arena needs userfaultfd WP_HUGETLBFS_SHMEM (Linux 5.19+); this kernel's uffd has {_uffd.Features}", UffdFeatures.WpHugetlbfsShmem);
            }
        }
        Arena? arena = null;
        FileDescriptor? ctlFd = null;
        RegionControlBlock? control = null;
        bool registered = false;
        try
        {
            arena = Arena.Create(options.Arena, options.Length, options.TracksWrites, options.ReadOnly);
            control = RegionControlBlock.Create(pages, out ctlFd);
            var mode = options.Arena == ArenaKind.Anonymous ? UffdRegisterMode.Missing : UffdRegisterMode.Missing | UffdRegisterMode.Minor;
            if (options.TracksWrites)
            {
                mode |= UffdRegisterMode.WriteProtect;
            }
            var ioctls = _uffd.Register(arena.User.Address, options.Length, mode);
            registered = true;
            var needed = options.Arena == ArenaKind.Anonymous ? UffdIoctls.Copy | UffdIoctls.Wake : UffdIoctls.Continue | UffdIoctls.Wake;
            if (options.TracksWrites)
            {
                needed |= UffdIoctls.WriteProtect;
            }
            if (arena.Shadow is { } shadow)
            {
                // Registered exactly as the region (UFFDIO_MOVE wants the same protections on both sides, and a
                // destination registered with this uffd); never touched by the application, so it never faults.
                var shadowIoctls = _uffd.Register(shadow.Address, options.Length, mode);
                if ((shadowIoctls & UffdIoctls.Move) == 0)
                {
                    throw new PagingFeatureNotSupportedException($"the kernel registered the shadow of an anonymous region without UFFDIO_MOVE (has {shadowIoctls})", UffdFeatures.Move);
                }
            }
            if ((ioctls & needed) != needed)
            {
                throw new PagingFeatureNotSupportedException($"the kernel registered the {options.Arena} range without the ioctls it needs (has {ioctls}, needs {needed})", UffdFeatures.None);
            }
            var p = options.Prefetch;
            var policy = ReadAheadPolicy.For(p.ReadAhead, p.FaultAroundBytes, p.MaxReadAheadBytes, p.StreamAll, pageSize);
            Region region;
            lock (_lock)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                ulong id = ++_nextRegionId;
                region = new Region(this, id, arena, control, ctlFd, options.Store, options.Prefetch, options.TracksWrites, options.ReadOnly, options.CallerFills ? options.MemoryBudget ?? 0 : -1);
                var message = new AddRegionMessage(id, options.Arena, pageSize, (ulong)arena.User.Address, (ulong)options.Length, options.Store, policy, options.ReadTimeout,
                    options.MemoryBudget ?? 0, options.TracksWrites, (ulong)(arena.Shadow?.Address ?? 0), options.CallerFills);
                _supervisor.Add(message, arena.Memfd is null ? [ctlFd] : [ctlFd, arena.Memfd]);
                _regions.Add(id, region);
                Volatile.Write(ref _regionList, [.. _regions.Values]);
            }
            PagingMetrics.Track(region);
            return region;
        }
        catch
        {
            if (registered)
            {
                _ = _uffd.Unregister(arena!.User.Address, options.Length);
            }
            control?.Dispose();
            ctlFd?.Dispose();
            arena?.Dispose();
            throw;
        }
    }

    /// <summary>Takes a region out of service: no access after this returns can read a wrong byte or block.</summary>
    internal void RemoveRegion(Region region)
    {
        // mprotect first: a thread still touching the region after Dispose gets SIGSEGV, never a wrong byte
        // (once unregistered, an anonymous page would read as zeros). Then unregister, which wakes waiting threads.
        _ = Libc.Mprotect(region.UserAddress, (nuint)region.Length, Protection.None);
        var errno = _uffd.Unregister(region.UserAddress, region.Length);
        if (errno != Errno.None)
        {
            Log.UffdCallFailed(_logger, "UFFDIO_UNREGISTER", (ulong)region.Length, (ulong)region.UserAddress, errno);
        }
        lock (_lock)
        {
            _regions.Remove(region.Id);
            Volatile.Write(ref _regionList, [.. _regions.Values]);
        }
        _supervisor.Remove(region.Id);
        PagingMetrics.Untrack(region);
    }

    /// <summary>True when the runtime has a shared budget and its regions hold at least that much now (caller fills
    /// wait for the evictor then, as the pager's fills do). A sum over the regions' control blocks: a handful of loads.</summary>
    internal bool OverSharedBudget(long more)
    {
        if (_budgetBytes <= 0)
        {
            return false;
        }
        long total = more;
        foreach (var r in Volatile.Read(ref _regionList))
        {
            total += r.ResidentBytes;
        }
        return total > _budgetBytes;
    }

    internal void Prefetch(Region region, long firstPage, long endPage) => _supervisor.Prefetch(region.Id, firstPage, endPage);

    internal void CancelPrefetch(Region region) => _supervisor.CancelPrefetch(region.Id);

    internal void Discard(Region region, long firstPage, long endPage) => _supervisor.Discard(region.Id, firstPage, endPage);

    internal void Flush(Region region) => _supervisor.Flush(region.Id);

    internal void LogDisposeFlushFailed(Region region, Exception e) => Log.DisposeFlushFailed(_logger, region.Id, e.Message);

    internal void Evict(Region region, long firstPage, long endPage) => _supervisor.Evict(region.Id, firstPage, endPage);

    /// <summary>Kills the active pager with SIGKILL (failure tests). Returns its pid.</summary>
    internal int KillActivePager() => _supervisor.KillActivePager();

    /// <summary>Unregisters and unmaps every region, then stops the pagers (standby first) and closes the userfaultfd.</summary>
    public void Dispose()
    {
        Region[] regions;
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }
            regions = [.. _regions.Values];
        }
        foreach (var region in regions)
        {
            region.ForceDispose();
        }
        lock (_lock)
        {
            _disposed = true;
        }
        _supervisor.Dispose();
        _uffd.Dispose();
    }

    /// <summary>Disposes on the thread pool: disposal waits for the pagers' replies and exits.</summary>
    public ValueTask DisposeAsync() => new(Task.Run(Dispose));
}
