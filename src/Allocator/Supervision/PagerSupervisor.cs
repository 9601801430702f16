using Microsoft.Extensions.Logging;
using Paging.Interop;
using Paging.Kernel;
using Paging.Logging;
using Paging.Protocol;

namespace Paging.Supervision;

/// <summary>
/// Keeps a pager serving the userfaultfd: an active pager and, when asked, an armed standby that holds every region
/// and promotes itself on the active's pidfd. This side then makes the promoted standby active and starts a new
/// standby; without a standby, its thread starts a new active pager and replays every region. Regions are kept as
/// their AddRegion messages and fds, so a new pager gets exactly what the first one got.
/// <para>Orderly shutdown closes the standby first (it exits on the closed socket, without promoting itself), then
/// the active pager.</para>
/// </summary>
internal sealed unsafe class PagerSupervisor : IDisposable
{
    private sealed record Registered(AddRegionMessage Message, FileDescriptor[] Fds)
    {
        public int[] RawFds() => Array.ConvertAll(Fds, f => f.Fd);
    }

    private readonly Lock _lock = new();
    private readonly Userfaultfd _uffd;
    private readonly PagerLaunch _launch;
    private readonly PagerTunables _tunables;
    private readonly bool _keepStandby;
    private readonly TimeSpan _timeout;
    private readonly ILogger _logger;
    private readonly Dictionary<ulong, Registered> _regions = [];
    private readonly byte[] _buffer = new byte[PagerProtocol.MaxMessage];
    private readonly FileDescriptor _wakeup;
    private readonly Thread _thread;
    private PagerProcess? _active;
    private PagerProcess? _standby;
    private int _restarts;
    private bool _disposed;

    public PagerSupervisor(Userfaultfd uffd, PagerLaunch launch, PagerTunables tunables, bool keepStandby, TimeSpan timeout, ILogger logger)
    {
        _uffd = uffd;
        _launch = launch;
        _tunables = tunables;
        _keepStandby = keepStandby;
        _timeout = timeout;
        _logger = logger;
        _wakeup = FileDescriptor.Check(Libc.Eventfd(0, Libc.EFD_CLOEXEC | Libc.EFD_NONBLOCK), "eventfd");
        try
        {
            lock (_lock)
            {
                EnsurePagersLocked();
            }
        }
        catch
        {
            StopPagers();
            _wakeup.Dispose();
            throw;
        }
        _thread = new Thread(Supervise) { IsBackground = true, Name = "paging-supervisor" };
        _thread.Start();
    }

    /// <summary>The pid of the pager serving faults now.</summary>
    public int ActivePagerPid { get { lock (_lock) { return _active?.Pid ?? 0; } } }

    /// <summary>True when an armed standby watches the active pager.</summary>
    public bool StandbyReady { get { lock (_lock) { return _standby is { Armed: true } s && !s.HasExited; } } }

    /// <summary>How many times the active pager was replaced.</summary>
    public int Restarts => Volatile.Read(ref _restarts);

    /// <summary>Hands a region to the pagers (both at once: one round trip, not two) and keeps it for replays.</summary>
    public void Add(AddRegionMessage message, FileDescriptor[] fds)
    {
        var registered = new Registered(message, fds);
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            AddLocked(registered);
            _regions.Add(message.Id, registered);
        }
    }

    private static string AddWhat(AddRegionMessage m) => $"add region {m.Id} ({m.Arena}, {m.Store})";

    private void SendAdd(PagerProcess pager, Registered r) =>
        pager.Request(r.Message.Write(_buffer, pager.NextRequestId()), r.RawFds(), _timeout, AddWhat(r.Message));

    private void AddLocked(Registered region)
    {
        EnsurePagersLocked();
        var active = _active!;
        var standby = _standby != active ? _standby : null;
        string what = AddWhat(region.Message);
        bool standbyPending = false;
        if (standby is not null)
        {
            try
            {
                standby.Send(region.Message.Write(_buffer, standby.NextRequestId()), region.RawFds(), what);
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
                _active!.AwaitReply(_timeout, what); // the promoted standby already got this region
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
                standby!.AwaitReply(_timeout, what);
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

    /// <summary>Tells every pager to stop serving a region (the application has unregistered it already).
    /// Failures are logged: the region is gone either way.</summary>
    public void Remove(ulong id)
    {
        lock (_lock)
        {
            _regions.Remove(id);
            foreach (var pager in new[] { _active, _standby })
            {
                if (pager is null || pager.HasExited)
                {
                    continue;
                }
                try
                {
                    pager.Request(new RemoveRegionMessage(id).Write(_buffer, pager.NextRequestId()), [], _timeout, $"remove region {id}");
                }
                catch (PagerException e)
                {
                    Log.RemoveFailed(_logger, pager.Pid, id, e.Message);
                }
            }
        }
    }

    /// <summary>Sends background work to the active pager. Not replicated to the standby: after a failover, queued
    /// prefetches are dropped (StreamAll regions start streaming again).</summary>
    public void Prefetch(ulong id, long firstPage, long endPage)
    {
        lock (_lock)
        {
            var active = ActiveLocked();
            active.Request(new PrefetchMessage(id, firstPage, endPage).Write(_buffer, active.NextRequestId()), [], _timeout, $"prefetch on region {id}");
        }
    }

    /// <summary>Drops a region's queued background work in the active pager.</summary>
    public void CancelPrefetch(ulong id)
    {
        lock (_lock)
        {
            var active = ActiveLocked();
            active.Request(new CancelPrefetchMessage(id).Write(_buffer, active.NextRequestId()), [], _timeout, $"cancel prefetch on region {id}");
        }
    }

    /// <summary>Has the active pager punch pages [first, end) out of a shared arena, serialized with its fills.</summary>
    public void Discard(ulong id, long firstPage, long endPage)
    {
        lock (_lock)
        {
            var active = ActiveLocked();
            active.Request(new DiscardMessage(id, firstPage, endPage).Write(_buffer, active.NextRequestId()), [], _timeout, $"discard on region {id}");
        }
    }

    /// <summary>Has the active pager write back every page of the region written so far and make it durable. Waits up
    /// to <see cref="FlushTimeout"/>: a flush writes as much as the region holds dirty.</summary>
    public void Flush(ulong id)
    {
        lock (_lock)
        {
            RetryOnFailoverLocked(active => active.Request(new FlushMessage(id).Write(_buffer, active.NextRequestId()), [], FlushTimeout, $"flush of region {id}"));
        }
    }

    /// <summary>Runs an idempotent request on the active pager; when that pager dies under it, runs it once more on its
    /// successor (the standby, which has every region and the dirty bitmap in shared memory) instead of failing.</summary>
    private void RetryOnFailoverLocked(Action<PagerProcess> request)
    {
        var active = ActiveLocked();
        try
        {
            request(active);
        }
        catch (PagerException) when (active.HasExited || active.Process.WaitForExit(2000))
        {
            request(ActiveLocked());
        }
    }

    /// <summary>Has the active pager write back and drop pages [first, end).</summary>
    public void Evict(ulong id, long firstPage, long endPage)
    {
        lock (_lock)
        {
            RetryOnFailoverLocked(active => active.Request(new EvictMessage(id, firstPage, endPage).Write(_buffer, active.NextRequestId()), [], FlushTimeout, $"evict on region {id}"));
        }
    }

    /// <summary>How long a Flush or Evict may take: 10 minutes is 60 GiB at the 100 MB/s of a slow disk.</summary>
    internal static readonly TimeSpan FlushTimeout = TimeSpan.FromMinutes(10);

    private PagerProcess ActiveLocked()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        EnsurePagersLocked();
        return _active!;
    }

    /// <summary>SIGKILLs the active pager (failure tests). Returns its pid.</summary>
    public int KillActivePager()
    {
        lock (_lock)
        {
            var active = _active ?? throw new InvalidOperationException("no pager is running");
            active.Kill();
            return active.Pid;
        }
    }

    /// <summary>A standby missing a region must never take over: kill it; the supervisor thread starts a fresh one.</summary>
    private void DropStandbyLocked(PagerProcess standby, PagerException why)
    {
        Log.DroppingStandby(_logger, standby.Pid, why.Message);
        standby.Kill();
        standby.Dispose();
        if (_standby == standby)
        {
            _standby = null;
        }
        Libc.Signal(_wakeup);
    }

    /// <summary>Makes sure an active pager runs (failing over to the standby or starting a new one) and, when
    /// configured, that an armed standby runs beside it.</summary>
    private void EnsurePagersLocked()
    {
        PagerProcess? spawnedStandby = null;
        if (_active is null || _active.HasExited)
        {
            var dead = _active;
            if (_standby is { Armed: true } s && !s.HasExited)
            {
                // It saw the active's pidfd fire and promoted itself; it already has every region.
                s.Role = PagerRole.Active;
                _active = s;
                _standby = null;
            }
            else
            {
                _standby?.Kill();
                _standby?.Dispose();
                _standby = null;
                _active = null;
                // Both pagers are spawned before either is waited for: each spends ~0.2 s starting its runtime on this
                // VM, and booting them side by side takes PagingRuntime.Start from the sum of the two to about one
                // (BENCHMARKS §24). The standby is introduced and armed below, once the active has answered.
                var fresh = PagerProcess.Spawn(_launch, PagerRole.Active);
                try
                {
                    spawnedStandby = _keepStandby ? PagerProcess.Spawn(_launch, PagerRole.Standby) : null;
                    fresh.Introduce(_uffd, _tunables, _timeout);
                    foreach (var region in _regions.Values)
                    {
                        SendAdd(fresh, region);
                    }
                }
                catch
                {
                    fresh.Kill();
                    fresh.Dispose();
                    spawnedStandby?.Kill();
                    spawnedStandby?.Dispose();
                    throw;
                }
                _active = fresh;
            }
            if (dead is not null)
            {
                _restarts++;
                Log.PagerReplaced(_logger, dead.Pid, _active.Pid, _restarts);
                dead.Dispose();
            }
        }
        if (_keepStandby && (_standby is null || _standby.HasExited))
        {
            _standby?.Dispose();
            _standby = null;
            var standby = spawnedStandby ?? PagerProcess.Spawn(_launch, PagerRole.Standby);
            spawnedStandby = null;
            try
            {
                standby.Introduce(_uffd, _tunables, _timeout);
                foreach (var region in _regions.Values)
                {
                    SendAdd(standby, region);
                }
                standby.Request(ArmMessage.Write(_buffer, standby.NextRequestId()), [_active.Pidfd.Fd], _timeout, "arm the standby");
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
                pfd[0] = new Libc.PollFd { Fd = _wakeup.Fd, Events = Libc.POLLIN };
                pfd[1] = new Libc.PollFd { Fd = _active?.Pidfd.Fd ?? -1, Events = Libc.POLLIN };
                pfd[2] = new Libc.PollFd { Fd = _standby?.Pidfd.Fd ?? -1, Events = Libc.POLLIN };
            }
            _ = Libc.Poll(pfd, 3, backoff);
            if (pfd[0].Revents != 0)
            {
                Libc.Drain(_wakeup);
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
                    Log.RestartFailed(_logger, e);
                    backoff = 1000;
                }
            }
        }
    }

    private void StopPagers()
    {
        // The standby first: it exits on its closed socket. Were the active closed first, the standby would see
        // the active's pidfd fire and promote itself during an orderly shutdown.
        _standby?.Dispose();
        _active?.Dispose();
        _standby = _active = null;
    }

    /// <summary>Stops the supervisor thread, then the standby, then the active pager.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
            Libc.Signal(_wakeup);
        }
        _thread.Join();
        lock (_lock)
        {
            StopPagers();
        }
        _wakeup.Dispose();
    }
}
