using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.ObjectPool;
using Paging.Interop;
using Paging.Kernel;
using Paging.Logging;
using Paging.Metrics;
using Paging.Protocol;
using Paging.Simd;

namespace Paging.Engine;

/// <summary>
/// The pager's fault engine. Several fill threads wait on the userfaultfd (epoll, EPOLLEXCLUSIVE: one fault wakes one
/// thread). The thread that wakes drains the uffd, sorts and merges the messages into runs, claims the pages of each
/// run in the region's claim table (a page already claimed is being filled: its fill's ioctl wakes this fault too),
/// runs the first fill itself and queues the others for the other threads — so a slow read never holds up an
/// unrelated fault, and many reads are in flight at once. Stores that complete later (<c>Asynchronous</c>) are read
/// with ReadAsync, up to <see cref="MaxAsyncInFlight"/> at once per store, and whichever thread completes a read maps
/// its pages. Real faults always go before background work (read-ahead windows, prefetches, streaming), which is taken
/// in 64 KiB chunks between them. The fault path allocates nothing (counted per region) and takes no lock per page.
/// <para>Files: this one (threads, lifecycle, the fault batch), FaultEngine.Fill.cs (reading and mapping a run),
/// FaultEngine.Async.cs (fills of asynchronous stores), FaultEngine.Background.cs (read-ahead, prefetch, streaming),
/// FaultEngine.Commands.cs (regions added, removed, discarded; promotion), FaultEngine.Evict.cs (the memory budget's
/// clock and the evictor thread), FaultEngine.WriteBack.cs (Flush and checked snapshots), FillThread.cs, PageClaims.cs,
/// FillQueue.cs.</para>
/// </summary>
internal sealed unsafe partial class FaultEngine : IDisposable
{
    /// <summary>Messages read per read(2). 64 × 32 B = 2 KiB: more than the threads that can be blocked at once in
    /// any realistic application, so one read usually drains the queue.</summary>
    internal const int BatchMessages = 64;

    /// <summary>Largest run filled with one read and mapped with one ioctl: 64 × 4 KiB = 256 KiB, also the size of
    /// the per-thread anonymous copy buffer. Hugetlbfs runs are one 2 MiB page (their staging is the page cache).</summary>
    internal const int MaxRunBytes = 256 * 1024;

    /// <summary>Attempts per fill before the page is poisoned: transient errors and timeouts get two retries.</summary>
    internal const int FillAttempts = 3;

    /// <summary>Reads of one asynchronous store in flight at once: far above what a 2-vCPU machine's network stack
    /// needs (32 × 1 ms reads give 32,000 pages/s), low enough that a broken store cannot pin unbounded memory.</summary>
    internal const int MaxAsyncInFlight = 256;

    /// <summary>Fills queued for other threads: one uffd read yields at most 64 runs, so 4096 covers 64 batches.</summary>
    private const int UrgentCapacity = 4096;

    private readonly Userfaultfd _uffd;
    private readonly long _spinTicks;
    private readonly ILogger _logger;
    private readonly TimeSpan _stopTimeout;
    private readonly FileDescriptor _stop;   // eventfd: wakes every thread at Dispose
    private readonly FillQueue _urgent = new(UrgentCapacity);
    private readonly FillThread[] _threads;
    private readonly ObjectPool<AsyncFill> _asyncFills;
    private readonly Thread _watchdog;
    private readonly Lock _tableLock = new();
    private ServedRegion[] _regions = [];    // copy-on-write: fill threads read it without a lock
    private volatile bool _active;
    private volatile bool _stopping;
    private int _spinner;
    private int _running;
    private int _released;

    public FaultEngine(Userfaultfd uffd, long spinNanoseconds, int fillThreads, bool active, ILogger logger, TimeSpan? stopTimeout = null,
        long memoryBudget = 0, int applicationPid = 0)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(fillThreads, 1);
        _runtimeBudgetBytes = memoryBudget;
        _applicationPid = applicationPid;
        _uffd = uffd;
        _syncWrites = (uffd.Features & UffdFeatures.WpAsync) == 0;
        _spinTicks = spinNanoseconds * Stopwatch.Frequency / 1_000_000_000;
        _active = active;
        _logger = logger;
        _stopTimeout = stopTimeout ?? StopTimeout;
        _stop = FileDescriptor.Check(Libc.Eventfd(0, Libc.EFD_CLOEXEC | Libc.EFD_NONBLOCK), "eventfd");
        _asyncFills = new AsyncFill.Pool(this, MaxAsyncInFlight);
        _workPending = WorkPending;
        // One-time initialisations of the fault path, so none is charged to the first fault (which must allocate
        // nothing): the instruments, the span sort's comparer, PageCopy's path selection, the stopwatch.
        _ = PagerMetrics.ServiceTime.Enabled;
        Span<ulong> warm = [2, 1];
        warm.Sort();
        _ = PageCopy.Best;
        _ = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp()).TotalNanoseconds;
        _threads = new FillThread[fillThreads];
        try
        {
            for (int i = 0; i < fillThreads; i++)
            {
                _threads[i] = new FillThread(i, _uffd.Handle, _stop, active);
            }
        }
        catch
        {
            foreach (var t in _threads)
            {
                t?.Dispose();
            }
            _stop.Dispose();
            throw;
        }
        _running = fillThreads;
        foreach (var t in _threads)
        {
            t.Thread = new Thread(() => Run(t)) { IsBackground = true, Name = $"paging-fill-{t.Index}" };
            t.Thread.Start();
        }
        _watchdog = new Thread(Watch) { IsBackground = true, Name = "paging-watchdog" };
        _watchdog.Start();
    }

    /// <summary>How long <see cref="Dispose"/> waits for the fill threads: fills in progress (store reads) finish
    /// first. Past it, Dispose returns and the last thread to stop releases the buffers, regions and stores — never
    /// freed under a thread that may still use them (a network store can block for longer than this).</summary>
    internal static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(10);

    /// <summary>True once every fill thread has stopped.</summary>
    internal bool Stopped => Volatile.Read(ref _running) == 0;

    private ServedRegion? Find(ulong address, FillThread t)
    {
        var last = t.LastRegion;
        if (last is not null && address >= last.Start && address < last.End)
        {
            return last;
        }
        var regions = Volatile.Read(ref _regions);
        int lo = 0, hi = regions.Length - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            var r = regions[mid];
            if (address < r.Start)
            {
                hi = mid - 1;
            }
            else if (address >= r.End)
            {
                lo = mid + 1;
            }
            else
            {
                t.LastRegion = r;
                return r;
            }
        }
        return null;
    }

    /// <summary>Wakes up to <paramref name="count"/> idle fill threads at once (queued fills, background work): one
    /// eventfd each, so n fills start in parallel instead of one thread waking the next (~30 µs a link on this VM).</summary>
    private void SignalWork(int count = 1)
    {
        foreach (var t in _threads)
        {
            if (count <= 0)
            {
                return;
            }
            if (t.TryWake())
            {
                count--;
            }
        }
    }

    private bool WorkPending() => !_urgent.IsEmpty || (_active && HasBackgroundWork);

    private void Run(FillThread t)
    {
        try
        {
            Loop(t);
        }
        catch (ObjectDisposedException) when (_stopping)
        {
            // Abandoned by Dispose and the uffd was closed meanwhile: nothing is left to serve.
        }
        finally
        {
            // The last thread out releases everything if Dispose gave up waiting (full fences on both sides).
            if (Interlocked.Decrement(ref _running) == 0 && Volatile.Read(ref _abandoned) == 1)
            {
                Release();
            }
        }
    }

    private void Loop(FillThread t)
    {
        // Read the uffd only when epoll said it is readable (or right after a spin that found faults): after a batch
        // the thread goes to epoll_wait, which returns at once if more faults came meanwhile (level-triggered), instead
        // of a read that mostly finds the uffd empty (~1 µs a syscall here).
        bool faultsReady = true;
        while (!_stopping)
        {
            if (faultsReady && _active && DrainFaults(t))
            {
                faultsReady = false;
                continue;
            }
            faultsReady = false;
            if (_urgent.TryDequeue(out var fill))
            {
                Execute(t, ref fill);
                continue;
            }
            if (_active && BackgroundStep(t))
            {
                continue;
            }
            if (_active && _spinTicks > 0 && Interlocked.CompareExchange(ref _spinner, 1, 0) == 0)
            {
                // One thread at a time keeps polling the uffd for a while: a thread woken from a fault often faults
                // again within tens of µs, and a fill thread still awake saves its own wake-up (limits rows 4.1 vs
                // 4.7: 58 µs blocking, 18 µs with the handler spinning).
                bool got = false;
                long deadline = Stopwatch.GetTimestamp() + _spinTicks;
                while (!_stopping && Stopwatch.GetTimestamp() < deadline && _urgent.IsEmpty)
                {
                    if (DrainFaults(t))
                    {
                        got = true;
                        deadline = Stopwatch.GetTimestamp() + _spinTicks;
                    }
                    else
                    {
                        Thread.Yield();
                    }
                }
                Volatile.Write(ref _spinner, 0);
                if (got || !_urgent.IsEmpty)
                {
                    faultsReady = got;
                    continue;
                }
            }
            faultsReady = (t.Wait(_workPending) & FillThread.FaultsReady) != 0;
        }
    }

    /// <summary>Reads the uffd until it is empty; claims and plans the runs; queues all fills but the first, which
    /// this thread runs. False when there was no message.</summary>
    private bool DrainFaults(FillThread t)
    {
        // Allocation is counted where it happens, charged to the region concerned while the thread is inside it:
        // planning in ProcessBatch, each fill in Execute.
        t.PendingCount = 0;
        bool any = false;
        for (int round = 0; round < 16; round++)
        {
            int count = _uffd.ReadMessages(t.Messages, BatchMessages, out var readError);
            if (count <= 0)
            {
                if (count < 0)
                {
                    Log.ReadFailed(_logger, readError);
                    _stopping |= readError == Errno.EBADF;
                }
                break;
            }
            any = true;
            ProcessBatch(t, count, Stopwatch.GetTimestamp());
            if (count < BatchMessages)
            {
                break;
            }
        }
        if (!any)
        {
            return false;
        }
        // Everything but the first fill goes to the other threads now, so they read while this one reads too.
        for (int i = 1; i < t.PendingCount; i++)
        {
            if (!_urgent.TryEnqueue(t.Pending[i]))
            {
                Execute(t, ref t.Pending[i]); // queue full: do it here
            }
        }
        if (t.PendingCount > 1)
        {
            SignalWork(t.PendingCount - 1);
        }
        if (t.PendingCount > 0)
        {
            Execute(t, ref t.Pending[0]);
        }
        t.Pending.AsSpan(0, t.PendingCount).Clear();
        return true;
    }

    private void ProcessBatch(FillThread t, int count, long since)
    {
        int keys = 0;
        for (int i = 0; i < count; i++)
        {
            ref var m = ref t.Messages[i];
            if (m.Event == Libc.UFFD_EVENT_PAGEFAULT)
            {
                // Addresses are 4 KiB aligned (no EXACT_ADDRESS), so bit 0 is free to carry "this was a MINOR fault" and
                // bit 1 "a write to a write-protected page" (synchronous write tracking only).
                t.Keys[keys++] = (m.Address & ~0xFFFUL) | ((m.Flags & Libc.UFFD_PAGEFAULT_FLAG_MINOR) != 0 ? 1UL : 0UL) |
                    ((m.Flags & Libc.UFFD_PAGEFAULT_FLAG_WP) != 0 ? WriteFaultKey : 0UL);
            }
        }
        var sorted = new Span<ulong>(t.Keys, keys);
        sorted.Sort();
        int k = 0;
        bool counted = false;
        while (k < keys)
        {
            ulong address = sorted[k] & ~3UL;
            var region = Find(address, t);
            if (region is null || !region.TryEnter())
            {
                // A region being registered or removed right now: let the thread fault again.
                Wake(null, address, 4096);
                k++;
                continue;
            }
            long allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
            if (!counted)
            {
                region.Control.Add(RegionStat.Batches, 1);
                counted = true;
            }
            long first = (long)((address - region.Start) >> region.PageShift);
            long end = first + 1;
            long maxPages = Math.Max(1, MaxRunBytes >> region.PageShift);
            if ((sorted[k] & WriteFaultKey) != 0)
            {
                k = ServeWriteFaults(region, sorted, k);
                region.Exit();
                continue;
            }
            long minor = (long)(sorted[k] & 1), messages = 1;
            int j = k + 1;
            for (; j < keys; j++)
            {
                ulong a = sorted[j] & ~3UL;
                if (a >= region.End || (sorted[j] & WriteFaultKey) != 0)
                {
                    break;
                }
                long page = (long)((a - region.Start) >> region.PageShift);
                if (page == end - 1)
                {
                    // Another thread (or a re-raised fault) on the same page: resolved with it.
                }
                else if (page == end && end - first < maxPages)
                {
                    end++;
                }
                else
                {
                    break;
                }
                minor += (long)(sorted[j] & 1);
                messages++;
            }
            var control = region.Control;
            control.Add(RegionStat.MinorFaults, minor);
            control.Add(RegionStat.MissingFaults, messages - minor);
            control.Add(RegionStat.Messages, messages);
            long from = first, to = end;
            if (region.Policy.ReadAhead)
            {
                ExtendForReadAhead(region, first, end, ref from, ref to);
            }
            Plan(t, region, from, to, first, end, since, fromFault: true);
            long allocated = GC.GetAllocatedBytesForCurrentThread() - allocatedBefore;
            if (allocated != 0)
            {
                region.Control.Add(RegionStat.ManagedBytesAllocated, allocated);
            }
            region.Exit();
            k = j;
        }
    }

    /// <summary>
    /// Claims the pages of [from, to) that are neither filled nor claimed, in runs of at most <see cref="MaxRunBytes"/>,
    /// and adds a fill per run to the thread's pending list (fault path) or runs it now (background). Filled pages a
    /// thread faulted on are mapped again (a MINOR fault or a stale message). Claimed pages are someone else's fill,
    /// whose ioctl wakes this fault too.
    /// </summary>
    private void Plan(FillThread t, ServedRegion r, long from, long to, long demandFirst, long demandEnd, long since, bool fromFault, bool marker = false)
    {
        long maxRun = Math.Max(1, MaxRunBytes >> r.PageShift);
        var control = r.Control;
        var claims = r.Claims;
        long p = from;
        while (p < to)
        {
            if (control.IsFilled(p))
            {
                long q = p + 1;
                while (q < to && q - p < maxRun && control.IsFilled(q))
                {
                    q++;
                }
                long a = Math.Max(p, demandFirst), b = Math.Min(q, demandEnd);
                if (a < b)
                {
                    MapAgain(t, r, a, b - a);
                }
                p = q;
                continue;
            }
            if (!claims.TryClaim(p))
            {
                // In flight: the owner wakes the faulting threads when it releases the page (joined, see PageClaims).
                if (fromFault && p >= demandFirst && p < demandEnd)
                {
                    JoinOrWake(r, p);
                }
                p++;
                continue;
            }
            if (control.IsFilled(p))
            {
                ReleaseClaims(r, p, 1); // filled between the check and the claim: map it as filled
                continue;
            }
            long e = p + 1;
            while (e < to && e - p < maxRun && !control.IsFilled(e) && claims.TryClaim(e))
            {
                if (control.IsFilled(e))
                {
                    ReleaseClaims(r, e, 1);
                    break;
                }
                e++;
            }
            if (!r.TryEnter())
            {
                ReleaseClaims(r, p, e - p);
                return;
            }
            var fill = new Fill { Region = r, First = p, Count = e - p, DemandFirst = Math.Max(demandFirst, p), DemandEnd = Math.Min(demandEnd, e), Since = since, Marker = marker && p == from };
            if (fill.DemandEnd < fill.DemandFirst)
            {
                fill.DemandEnd = fill.DemandFirst;
            }
            if (fromFault && t.PendingCount < t.Pending.Length)
            {
                t.Pending[t.PendingCount++] = fill;
            }
            else
            {
                Execute(t, ref fill);
            }
            p = e;
        }
    }

    /// <summary>A fault on a page someone else has claimed waits for the owner: marks it joined, so the owner's release
    /// wakes it; wakes it now if the claim is already gone (the owner may have missed the mark).</summary>
    private void JoinOrWake(ServedRegion r, long page)
    {
        if (!r.Claims.Join(page))
        {
            Wake(r, r.Start + ((ulong)page << r.PageShift), (ulong)r.PageSize);
        }
    }

    /// <summary>UFFDIO_WAKE whose failure is counted (in the region's FailedWakes, when known) and logged: a wake that
    /// fails leaves a thread blocked until it faults again, which must leave a trace.</summary>
    private void Wake(ServedRegion? region, ulong start, ulong length)
    {
        var errno = _uffd.Wake(start, length);
        region?.Control.Add(RegionStat.Wakes, 1);
        if (errno != Errno.None)
        {
            region?.Control.Add(RegionStat.FailedWakes, 1);
            Log.UffdCallFailed(_logger, "UFFDIO_WAKE", length, start, errno);
        }
    }

    private void Watch()
    {
        while (!_stopping)
        {
            // Checked every 20 ms: a timeout is honoured within 20 ms of its deadline.
            Thread.Sleep(20);
            long now = Stopwatch.GetTimestamp();
            foreach (var t in _threads)
            {
                t.CheckTimeout(now, this);
            }
        }
    }

    private int _abandoned;
    private readonly Func<bool> _workPending;

    public void Dispose()
    {
        _stopping = true;
        Libc.Signal(_stop);
        long deadline = Stopwatch.GetTimestamp() + (long)(_stopTimeout.TotalSeconds * Stopwatch.Frequency);
        bool joined = true;
        foreach (var t in _threads)
        {
            var left = TimeSpan.FromSeconds(Math.Max(0, (double)(deadline - Stopwatch.GetTimestamp()) / Stopwatch.Frequency));
            joined &= t.Thread!.Join(left);
        }
        _watchdog.Join(TimeSpan.FromSeconds(1));
        _evictSignal.Set();
        joined &= _evictor?.Join(TimeSpan.FromSeconds(Math.Max(1, (double)(deadline - Stopwatch.GetTimestamp()) / Stopwatch.Frequency))) ?? true;
        if (joined && WaitForAsyncFills(deadline))
        {
            Release();
            return;
        }
        Log.FaultThreadStuck(_logger, _stopTimeout.TotalSeconds);
        Interlocked.Exchange(ref _abandoned, 1);
        if (Volatile.Read(ref _running) == 0 && Volatile.Read(ref _asyncInFlight) == 0)
        {
            Release(); // they stopped right after the timeout
        }
    }

    private bool WaitForAsyncFills(long deadline)
    {
        var spin = new SpinWait();
        while (Volatile.Read(ref _asyncInFlight) > 0)
        {
            if (Stopwatch.GetTimestamp() > deadline)
            {
                return false;
            }
            spin.SpinOnce(sleep1Threshold: 20);
        }
        return true;
    }

    private void Release()
    {
        if (Interlocked.Exchange(ref _released, 1) != 0)
        {
            return;
        }
        foreach (var r in _regions)
        {
            r.Dispose();
        }
        _regions = [];
        foreach (var t in _threads)
        {
            t.Dispose();
        }
        _stop.Dispose();
        _app?.Dispose();
        _evictScratch.Dispose();
        _commandScratch.Dispose();
        _evictSignal.Dispose();
    }
}
