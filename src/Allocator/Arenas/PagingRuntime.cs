using System.Globalization;
using Microsoft.Extensions.Logging;
using Paging.Faults;
using Paging.Interop;
using Paging.Metrics;
using Paging.Pages;

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
public sealed unsafe class PagingRuntime : IDisposable
{
    private const int HugePageSize = 2 * 1024 * 1024;
    private static readonly Lazy<PagingRuntime> s_shared = new(() => Start());

    private readonly Lock _lock = new();
    private readonly PagingRuntimeOptions _options;
    private readonly ILogger _logger;
    private readonly Userfaultfd _uffd;
    private readonly PagerLaunch _launch;
    private readonly Dictionary<ulong, Region> _regions = [];
    private readonly FileDescriptor _shutdown;
    private readonly Thread _supervisor;
    private PagerProcess? _active;
    private PagerProcess? _standby;
    private ulong _nextRegionId;
    private int _restarts;
    private bool _disposed;

    private PagingRuntime(PagingRuntimeOptions options)
    {
        _options = options;
        _logger = options.LoggerFactory.CreateLogger("Paging.Runtime");
        Capabilities = UffdCapabilities.Current;
        const UffdFeatures used = UffdFeatures.MissingShmem | UffdFeatures.MinorShmem | UffdFeatures.MissingHugetlbfs |
            UffdFeatures.MinorHugetlbfs | UffdFeatures.Poison;
        _launch = PagerLaunch.Resolve(options.PagerPath);
        _uffd = Userfaultfd.Create(used & Capabilities.Features, out _);
        _shutdown = FileDescriptor.FromResult(Libc.Eventfd(0, Libc.EFD_CLOEXEC | Libc.EFD_NONBLOCK), "eventfd");
        try
        {
            lock (_lock)
            {
                EnsurePagersLocked();
            }
        }
        catch
        {
            _active?.Dispose();
            _standby?.Dispose();
            _uffd.Dispose();
            _shutdown.Dispose();
            throw;
        }
        _supervisor = new Thread(Supervise) { IsBackground = true, Name = "paging-supervisor" };
        _supervisor.Start();
    }

    /// <summary>Creates a userfaultfd and starts its pager (and standby). Throws <see cref="PagerException"/> when the
    /// pager cannot start and <see cref="PagingSystemException"/> when userfaultfd is not permitted.</summary>
    public static PagingRuntime Start(PagingRuntimeOptions? options = null) => new(options ?? new PagingRuntimeOptions());

    /// <summary>A process-wide runtime with default options, started on first use.</summary>
    public static PagingRuntime Shared => s_shared.Value;

    /// <summary>The kernel's userfaultfd features.</summary>
    public UffdCapabilities Capabilities { get; }

    /// <summary>The pid of the pager serving faults now (diagnostics and tests).</summary>
    public int ActivePagerPid { get { lock (_lock) { return _active?.Pid ?? 0; } } }

    /// <summary>True when a standby pager holds every region and watches the active one.</summary>
    public bool StandbyReady { get { lock (_lock) { return _standby is { Armed: true } s && !s.HasExited; } } }

    /// <summary>How many times the active pager was replaced.</summary>
    public int PagerRestarts => Volatile.Read(ref _restarts);

    /// <summary>Reserves a region. Nothing is read or committed until a page is touched.</summary>
    /// <exception cref="ArgumentException">the length is not a positive multiple of the page size, or a file slice's
    /// offset is not page-aligned.</exception>
    /// <exception cref="PagingFeatureNotSupportedException">the kernel lacks what the arena kind needs.</exception>
    /// <exception cref="PagerException">the pager could not build the store (e.g. it cannot open the file).</exception>
    public Region CreateRegion(RegionOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        ObjectDisposedException.ThrowIf(_disposed, this);
        Capabilities.EnsureSupports(options.Arena);
        int pageSize = options.Arena == ArenaKind.HugeTlb ? HugePageSize : Environment.SystemPageSize;
        if (options.Length <= 0 || options.Length % pageSize != 0)
        {
            throw new ArgumentException($"region length {options.Length} must be a positive multiple of the {options.Arena} page size ({pageSize} bytes)", nameof(options));
        }
        if (options.Store.Settings.TryGetValue("offset", out var o) && long.TryParse(o, NumberStyles.Integer, CultureInfo.InvariantCulture, out long offset) && offset % pageSize != 0)
        {
            throw new ArgumentException($"the store offset {offset} must be a multiple of the {options.Arena} page size ({pageSize} bytes)", nameof(options));
        }
        long pages = options.Length / pageSize;
        Mapping? user = null;
        FileDescriptor? memfd = null;
        FileDescriptor? ctlFd = null;
        RegionControlBlock? control = null;
        bool registered = false;
        try
        {
            (user, memfd) = CreateArena(options.Arena, options.Length, pages);
            control = RegionControlBlock.Create(pages, out ctlFd);
            ulong mode = options.Arena == ArenaKind.Anonymous
                ? Libc.UFFDIO_REGISTER_MODE_MISSING
                : Libc.UFFDIO_REGISTER_MODE_MISSING | Libc.UFFDIO_REGISTER_MODE_MINOR;
            ulong ioctls = _uffd.Register(user.Address, options.Length, mode);
            registered = true;
            ulong needed = options.Arena == ArenaKind.Anonymous ? Libc.UFFD_IOCTL_COPY | Libc.UFFD_IOCTL_WAKE : Libc.UFFD_IOCTL_CONTINUE | Libc.UFFD_IOCTL_WAKE;
            if ((ioctls & needed) != needed)
            {
                throw new PagingFeatureNotSupportedException($"the kernel registered the {options.Arena} range without the ioctls it needs (has 0x{ioctls:x}, needs 0x{needed:x})", UffdFeatures.None);
            }
            Region region;
            lock (_lock)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                region = new Region(this, ++_nextRegionId, options.Arena, pageSize, user, memfd, control, ctlFd, options.Store, options.Prefetch);
                AddToPagersLocked(region);
                _regions.Add(region.Id, region);
            }
            PagingMetrics.Track(region);
            return region;
        }
        catch
        {
            if (registered)
            {
                _ = _uffd.Unregister(user!.Address, options.Length);
            }
            control?.Dispose();
            ctlFd?.Dispose();
            user?.Dispose();
            memfd?.Dispose();
            throw;
        }
    }

    private static (Mapping, FileDescriptor?) CreateArena(ArenaKind kind, long length, long pages)
    {
        const int rw = Libc.PROT_READ | Libc.PROT_WRITE;
        if (kind == ArenaKind.Anonymous)
        {
            return (Mapping.Map(length, rw, Libc.MAP_PRIVATE | Libc.MAP_ANONYMOUS | Libc.MAP_NORESERVE, -1, 0, $"mmap of a {length}-byte anonymous arena"), null);
        }
        bool huge = kind == ArenaKind.HugeTlb;
        var memfd = FileDescriptor.FromResult(
            Libc.MemfdCreate(huge ? "paging-hugetlb" : "paging-shmem", Libc.MFD_CLOEXEC | Libc.MFD_ALLOW_SEALING | (huge ? Libc.MFD_HUGETLB : 0)),
            "memfd_create", huge ? "hugetlbfs memfds need CONFIG_HUGETLBFS" : null);
        try
        {
            if (Libc.Ftruncate(memfd.Fd, length) != 0)
            {
                throw Libc.Error($"ftruncate of the {kind} memfd to {length} bytes");
            }
            // No one may shrink the file under a mapping (later accesses would SIGBUS) or grow it.
            if (Libc.Fcntl(memfd.Fd, Libc.F_ADD_SEALS, Libc.F_SEAL_SHRINK | Libc.F_SEAL_GROW) != 0)
            {
                throw Libc.Error($"F_ADD_SEALS on the {kind} memfd");
            }
            // Hugetlbfs reserves its pages at mmap (no MAP_NORESERVE), so a shortage is an error here rather than a
            // SIGBUS at first touch. Shmem memfds are VM_NORESERVE already.
            int flags = Libc.MAP_SHARED | (huge ? 0 : Libc.MAP_NORESERVE);
            string? hint = huge
                ? $"a {length >> 20} MiB hugetlbfs region needs {pages} free 2 MiB huge pages: raise /proc/sys/vm/nr_hugepages (now {ProcMeminfo.Read("HugePages_Free")} free of {ProcMeminfo.Read("HugePages_Total")})"
                : null;
            var user = Mapping.Map(length, rw, flags, memfd.Fd, 0, $"mmap of a {length}-byte {kind} arena", hint);
            return (user, memfd);
        }
        catch
        {
            memfd.Dispose();
            throw;
        }
    }

    private byte[] AddMessage(Region region, ulong requestId, out int length)
    {
        var buffer = new byte[PagerProtocol.MaxMessage];
        var w = new ProtocolWriter(buffer, PagerProtocol.MessageType.AddRegion, requestId);
        w.U64(region.Id);
        w.U32((uint)region.Arena);
        w.U32((uint)region.PageSize);
        w.U64((ulong)region.UserAddress);
        w.U64((ulong)region.Length);
        var store = region.Store;
        w.Str(store.Kind);
        w.Str(store.AssemblyPath);
        w.Str(store.TypeName);
        w.U32((uint)store.Settings.Count);
        foreach (var (k, v) in store.Settings)
        {
            w.Str(k);
            w.Str(v);
        }
        var policy = RegionPolicy.From(region.Prefetch, region.PageSize);
        w.U32(policy.ReadAhead ? 1u : 0u);
        w.U64((ulong)policy.BlockPages);
        w.U64((ulong)policy.MaxWindowPages);
        w.U32(policy.StreamAll ? 1u : 0u);
        length = w.Length;
        return buffer;
    }

    private void SendAdd(PagerProcess pager, Region region)
    {
        var message = AddMessage(region, pager.NextRequestId(), out int length);
        pager.Request(message.AsSpan(0, length), region.FdsForPager, _options.RequestTimeout, AddWhat(region));
    }

    private static string AddWhat(Region region) => $"add region {region.Id} ({region.Arena}, {region.Store})";

    private void AddToPagersLocked(Region region)
    {
        EnsurePagersLocked();
        var active = _active!;
        var standby = _standby != active ? _standby : null;
        string what = AddWhat(region);
        // Both pagers build the region at once, so creating a region costs one round trip, not two.
        bool standbyPending = false;
        if (standby is not null)
        {
            try
            {
                var message = AddMessage(region, standby.NextRequestId(), out int length);
                standby.Send(message.AsSpan(0, length), region.FdsForPager, what);
                standbyPending = true;
            }
            catch (PagerException e)
            {
                DropStandbyLocked(standby, e);
                standby = null;
            }
        }
        try
        {
            SendAdd(active, region);
        }
        catch (PagerException) when (active.HasExited)
        {
            // The active pager died under us: fail over and finish the add on whoever serves now.
            EnsurePagersLocked();
            if (_active == standby && standbyPending)
            {
                _active!.AwaitReply(_options.RequestTimeout, what); // the promoted standby already got this region
                standbyPending = false;
            }
            else
            {
                SendAdd(_active!, region);
            }
        }
        if (standbyPending)
        {
            try
            {
                standby!.AwaitReply(_options.RequestTimeout, what);
            }
            catch (PagerException e)
            {
                DropStandbyLocked(standby!, e);
            }
        }
        // A standby started during a failover above replayed the regions without this one.
        if (_standby is { } fresh && fresh != _active && fresh != standby)
        {
            try
            {
                SendAdd(fresh, region);
            }
            catch (PagerException e)
            {
                DropStandbyLocked(fresh, e);
            }
        }
    }

    /// <summary>A standby missing a region must never take over: kill it; the supervisor starts a fresh one.</summary>
    private void DropStandbyLocked(PagerProcess standby, PagerException why)
    {
        _logger.LogWarning("dropping the standby pager {Pid}: {Error}", standby.Pid, why.Message);
        standby.Kill();
        standby.Dispose();
        if (_standby == standby)
        {
            _standby = null;
        }
        Signal();
    }

    internal void RemoveRegion(Region region)
    {
        // mprotect first: a thread still touching the region after Dispose gets SIGSEGV, never a wrong byte
        // (once unregistered, an anonymous page would read as zeros). Then unregister, which wakes waiting threads.
        _ = Libc.Mprotect(region.UserAddress, (nuint)region.Length, Libc.PROT_NONE);
        _ = _uffd.Unregister(region.UserAddress, region.Length);
        lock (_lock)
        {
            _regions.Remove(region.Id);
            Span<byte> message = stackalloc byte[PagerProtocol.HeaderSize + 8];
            foreach (var pager in new[] { _active, _standby })
            {
                if (pager is null || pager.HasExited)
                {
                    continue;
                }
                var w = new ProtocolWriter(message, PagerProtocol.MessageType.RemoveRegion, pager.NextRequestId());
                w.U64(region.Id);
                try
                {
                    pager.Request(w.Written, [], _options.RequestTimeout, $"remove region {region.Id}");
                }
                catch (PagerException e)
                {
                    _logger.LogWarning("pager {Pid} could not remove region {Id}: {Error}", pager.Pid, region.Id, e.Message);
                }
            }
        }
        PagingMetrics.Untrack(region);
    }

    /// <summary>Sends a Prefetch or CancelPrefetch to the active pager. Background work is not replicated to the
    /// standby: after a failover, prefetches still queued are dropped (StreamAll regions start streaming again).</summary>
    internal void SendPrefetch(Region region, PagerProtocol.MessageType type, long firstPage, long endPage)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            EnsurePagersLocked();
            var active = _active!;
            Span<byte> message = stackalloc byte[PagerProtocol.HeaderSize + 24];
            var w = new ProtocolWriter(message, type, active.NextRequestId());
            w.U64(region.Id);
            if (type == PagerProtocol.MessageType.Prefetch)
            {
                w.U64((ulong)firstPage);
                w.U64((ulong)endPage);
            }
            active.Request(w.Written, [], _options.RequestTimeout, $"{type} on region {region.Id}");
        }
    }

    /// <summary>Makes sure an active pager runs (failing over to the standby or starting a new one) and, when
    /// configured, that an armed standby runs beside it.</summary>
    private void EnsurePagersLocked()
    {
        if (_active is null || _active.HasExited)
        {
            var dead = _active;
            if (_standby is { Armed: true } s && !s.HasExited)
            {
                // It saw the active's pidfd fire and promoted itself; it already has every region.
                s.Role = PagerProtocol.Role.Active;
                _active = s;
                _standby = null;
            }
            else
            {
                _standby?.Kill();
                _standby?.Dispose();
                _standby = null;
                _active = null;
                var fresh = PagerProcess.Start(_launch, _uffd, PagerProtocol.Role.Active, _options.RequestTimeout);
                try
                {
                    foreach (var region in _regions.Values)
                    {
                        SendAdd(fresh, region);
                    }
                }
                catch
                {
                    fresh.Kill();
                    fresh.Dispose();
                    throw;
                }
                _active = fresh;
            }
            if (dead is not null)
            {
                _restarts++;
                _logger.LogWarning("pager {Dead} exited; pager {Pid} serves the faults now ({Restarts} restarts)", dead.Pid, _active.Pid, _restarts);
                dead.Dispose();
            }
        }
        if (_options.Standby && (_standby is null || _standby.HasExited))
        {
            _standby?.Dispose();
            _standby = null;
            var standby = PagerProcess.Start(_launch, _uffd, PagerProtocol.Role.Standby, _options.RequestTimeout);
            try
            {
                foreach (var region in _regions.Values)
                {
                    SendAdd(standby, region);
                }
                Span<byte> arm = stackalloc byte[PagerProtocol.HeaderSize];
                var w = new ProtocolWriter(arm, PagerProtocol.MessageType.Arm, standby.NextRequestId());
                standby.Request(w.Written, [_active.Pidfd.Fd], _options.RequestTimeout, "arm the standby");
                standby.Armed = true;
            }
            catch
            {
                standby.Kill();
                standby.Dispose();
                throw;
            }
            _standby = standby;
        }
    }

    private void Signal()
    {
        ulong one = 1;
        _ = Libc.Write(_shutdown.Fd, &one, 8);
    }

    private void Supervise()
    {
        var pfd = stackalloc Libc.PollFd[3];
        int backoff = -1;
        while (true)
        {
            lock (_lock)
            {
                if (_disposed)
                {
                    return;
                }
                pfd[0] = new Libc.PollFd { Fd = _shutdown.Fd, Events = Libc.POLLIN };
                pfd[1] = new Libc.PollFd { Fd = _active?.Pidfd.Fd ?? -1, Events = Libc.POLLIN };
                pfd[2] = new Libc.PollFd { Fd = _standby?.Pidfd.Fd ?? -1, Events = Libc.POLLIN };
            }
            _ = Libc.Poll(pfd, 3, backoff);
            if (pfd[0].Revents != 0)
            {
                ulong value;
                _ = Libc.Read(_shutdown.Fd, &value, 8);
            }
            lock (_lock)
            {
                if (_disposed)
                {
                    return;
                }
                try
                {
                    EnsurePagersLocked();
                    backoff = -1;
                }
                catch (Exception e) when (e is PagingException or IOException)
                {
                    // Keep trying: faults wait (they do not fail) until a pager runs again.
                    _logger.LogError(e, "could not restart the pager; retrying in 1 s");
                    backoff = 1000;
                }
            }
        }
    }

    /// <summary>Kills the active pager with SIGKILL (for failure testing). Returns its pid.</summary>
    public int KillActivePager()
    {
        lock (_lock)
        {
            var active = _active ?? throw new InvalidOperationException("no pager is running");
            active.Kill();
            return active.Pid;
        }
    }

    /// <summary>Unregisters and unmaps every region, then stops the pagers and closes the userfaultfd.</summary>
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
            region.Dispose();
        }
        lock (_lock)
        {
            _disposed = true;
            Signal();
        }
        _supervisor.Join();
        lock (_lock)
        {
            _standby?.Dispose();
            _active?.Dispose();
            _standby = _active = null;
        }
        _uffd.Dispose();
        _shutdown.Dispose();
    }
}
