using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Paging.Interop;
using Paging.Kernel;
using Paging.Logging;
using Paging.Metrics;
using Paging.Protocol;
using Paging.Simd;
using Paging.Stores;

namespace Paging.Engine;

/// <summary>
/// The pager's fault loop: one thread that reads uffd messages in batches, sorts and merges them into runs of
/// adjacent pages (racing faults on one page collapse into one), fills each run from the region's store and maps it
/// with one ioctl. Regions are added and removed by commands the control thread posts, applied between batches, so
/// the loop owns its region table and takes no lock. Nothing is allocated per fault: the message buffer, the sort
/// keys and the anonymous-arena copy buffer are allocated once.
/// </summary>
internal sealed unsafe partial class FaultService : IDisposable
{
    /// <summary>Messages read per read(2). 64 × 32 B = 2 KiB: more than the threads that can be blocked at once in
    /// any realistic application, so one read drains the queue.</summary>
    internal const int BatchMessages = 64;

    /// <summary>Largest run resolved with one fill and one ioctl: 64 × 4 KiB = 256 KiB, also the size of the
    /// anonymous copy buffer. Hugetlbfs runs are at most one 2 MiB page (their staging is the page cache itself).</summary>
    internal const int MaxRunBytes = 256 * 1024;

    /// <summary>Attempts per fill before the page is poisoned: transient I/O errors get two retries.</summary>
    private const int FillAttempts = 3;

    /// <summary>Background work done between two checks for faults: 64 KiB is a 5–10 µs pread from the page cache
    /// plus a 16-page CONTINUE (~4 µs, limits row 10.14), so a real fault waits at most ~15 µs behind streaming.</summary>
    internal const int BackgroundChunkBytes = 64 * 1024;

    /// <summary>Queued background ranges (read-ahead windows, prefetches, streams). Fixed, so the fault path can queue
    /// a read-ahead window without allocating; a window that does not fit is dropped (the stream faults again).</summary>
    internal const int WorkCapacity = 1024;

    // Read-ahead windows go before prefetches and streams, and run in the order they were scheduled, so the window
    // right ahead of a stream is filled before the one after it.
    private readonly WorkQueue _readAhead = new();
    private readonly WorkQueue _prefetch = new();

    private int WorkCount => _readAhead.Count + _prefetch.Count;

    private readonly Userfaultfd _uffd;
    private readonly long _spinNanoseconds;
    private readonly ILogger _logger;
    private readonly FileDescriptor _eventfd;
    private readonly ConcurrentQueue<Command> _commands = new();
    private readonly Thread _thread;
    private readonly Libc.UffdMsg* _messages;
    private readonly ulong* _keys;
    private readonly byte* _copyBuffer;
    private ServedRegion[] _regions = [];
    private ServedRegion? _last;
    private volatile bool _active;
    private volatile bool _stopping;
    private readonly TimeSpan _stopTimeout;
    private int _threadDone;   // the fault thread has left its loop and touches nothing any more
    private int _abandoned;    // Dispose gave up waiting: the thread frees what it uses when it finally stops
    private int _released;     // the buffers, regions and fds were released (exactly once)
    private FileDescriptor? _pipeRead;
    private FileDescriptor? _pipeWrite;
    private int _pipeCapacity;

    public FaultService(Userfaultfd uffd, long spinNanoseconds, bool active, ILogger logger, TimeSpan? stopTimeout = null)
    {
        _stopTimeout = stopTimeout ?? StopTimeout;
        _uffd = uffd;
        _spinNanoseconds = spinNanoseconds;
        _active = active;
        _logger = logger;
        _eventfd = FileDescriptor.Check(Libc.Eventfd(0, Libc.EFD_CLOEXEC | Libc.EFD_NONBLOCK), "eventfd");
        _messages = (Libc.UffdMsg*)NativeMemory.AlignedAlloc((nuint)(BatchMessages * sizeof(Libc.UffdMsg)), 64);
        _keys = (ulong*)NativeMemory.AlignedAlloc(BatchMessages * sizeof(ulong), 64);
        _copyBuffer = (byte*)NativeMemory.AlignedAlloc(MaxRunBytes, 4096);
        // Run the fault path's one-time initialisations now (the instruments, the span sort's comparer, PageCopy's
        // path selection), so they are not charged to the first fault: the fault path itself allocates nothing.
        _ = PagerMetrics.ServiceTime.Enabled;
        Span<ulong> warm = [2, 1];
        warm.Sort();
        _ = PageCopy.IsZero(_copyBuffer, 64, PageCopy.Best);
        _ = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp()).TotalNanoseconds;
        _thread = new Thread(Run) { IsBackground = true, Name = "paging-faults" };
        _thread.Start();
    }

    private abstract class Command : IDisposable
    {
        public readonly ManualResetEventSlim Done = new();
        public Exception? Error;

        public void Dispose() => Done.Dispose();
    }

    private sealed class AddCommand(ServedRegion region) : Command { public ServedRegion Region = region; }
    private sealed class RemoveCommand(ulong id) : Command { public ulong Id = id; }
    private sealed class PromoteCommand : Command;
    private sealed class PrefetchCommand(ulong id, long first, long end) : Command { public ulong Id = id; public long First = first, End = end; }
    private sealed class CancelCommand(ulong id) : Command { public ulong Id = id; }
    private sealed class DiscardCommand(ulong id, long first, long end) : Command { public ulong Id = id; public long First = first, End = end; }

    public void Add(ServedRegion region) => Post(new AddCommand(region));

    /// <summary>Queues pages [first, end) of a region for background filling and pre-mapping.</summary>
    public void Prefetch(ulong id, long first, long end) => Post(new PrefetchCommand(id, first, end));

    /// <summary>Drops every queued background range of a region; returns once the fault thread has done so.</summary>
    public void CancelPrefetch(ulong id) => Post(new CancelCommand(id));

    public void Remove(ulong id) => Post(new RemoveCommand(id));

    /// <summary>Punches pages [first, end) out of a shared arena on the fault thread, between fills, so no fill
    /// in flight lands half in a punched page (a fill writes the page cache through the staging mapping: a punch in
    /// the middle would leave a fresh zeroed page that the fill then completes only in part).</summary>
    public void Discard(ulong id, long first, long end) => Post(new DiscardCommand(id, first, end));

    /// <summary>Standby → active: start reading the uffd and wake every registered range, because the dead pager
    /// may have read messages it never resolved; their threads fault again and the messages come back.</summary>
    public void Promote() => Post(new PromoteCommand());

    private void Post(Command command)
    {
        _commands.Enqueue(command);
        Libc.Signal(_eventfd);
        command.Done.Wait();
        command.Dispose();
        if (command.Error is { } e)
        {
            throw new PagerException(e.Message, e);
        }
    }

    private void Run()
    {
        try
        {
            Loop();
        }
        catch (ObjectDisposedException) when (_stopping)
        {
            // Abandoned by Dispose, and the session closed the uffd meanwhile: nothing left to serve.
        }
        finally
        {
            // Dekker-style handshake with Dispose (full fences both ways): whichever side sees the other's flag
            // releases, so the buffers are freed exactly once and never while this thread may still use them.
            Interlocked.Exchange(ref _threadDone, 1);
            if (Interlocked.CompareExchange(ref _abandoned, 0, 0) == 1)
            {
                Release();
            }
        }
    }

    private void Loop()
    {
        var pfd = stackalloc Libc.PollFd[2];
        pfd[0] = new Libc.PollFd { Fd = _eventfd.Fd, Events = Libc.POLLIN };
        pfd[1] = new Libc.PollFd { Fd = _uffd.Handle.Fd, Events = Libc.POLLIN };
        while (!_stopping)
        {
            bool background = _active && WorkCount > 0;
            // With background work pending, poll does not sleep: it only asks whether a fault is waiting, which then
            // goes first (urgent faults jump the streaming queue).
            int n = Libc.Poll(pfd, _active ? 2u : 1u, background ? 0 : -1);
            if (n < 0)
            {
                var errno = Libc.LastErrno;
                if (errno != Errno.EINTR)
                {
                    Log.PollFailed(_logger, Libc.Error(errno, "poll").Message);
                    return;
                }
                continue;
            }
            if (pfd[0].Revents != 0)
            {
                Libc.Drain(_eventfd);
                ApplyCommands();
            }
            if (_active && (pfd[1].Revents & Libc.POLLIN) != 0)
            {
                if (ServeBatch() && !background && _spinNanoseconds > 0)
                {
                    SpinForMore();
                }
            }
            else if (background && WorkCount > 0)
            {
                // (Re-checked: a command applied just above may have cancelled the queued work.)
                BackgroundStep();
            }
        }
    }

    private void ApplyCommands()
    {
        while (_commands.TryDequeue(out var command))
        {
            try
            {
                switch (command)
                {
                    case AddCommand add:
                        {
                            if (Array.Exists(_regions, r => r.Id == add.Region.Id || (r.Start < add.Region.End && add.Region.Start < r.End)))
                            {
                                throw new PagerException($"region {add.Region.Id} at 0x{add.Region.Start:x} duplicates or overlaps a region this pager serves");
                            }
                            var list = new List<ServedRegion>(_regions) { add.Region };
                            list.Sort((a, b) => a.Start.CompareTo(b.Start));
                            _regions = [.. list];
                            if (_active)
                            {
                                WakeAll(add.Region);
                                if (add.Region.Policy.StreamAll)
                                {
                                    _prefetch.Push(add.Region, 0, add.Region.Pages);
                                }
                            }
                            break;
                        }
                    case RemoveCommand remove:
                        {
                            var region = Array.Find(_regions, r => r.Id == remove.Id);
                            if (region is not null)
                            {
                                _regions = Array.FindAll(_regions, r => r.Id != remove.Id);
                                _last = null;
                                _readAhead.Drop(region);
                                _prefetch.Drop(region);
                                region.Dispose();
                            }
                            break;
                        }
                    case PromoteCommand:
                        _active = true;
                        foreach (var region in _regions)
                        {
                            region.Control.Add(RegionStat.Recoveries, 1);
                            WakeAll(region);
                            if (region.Policy.StreamAll)
                            {
                                _prefetch.Push(region, 0, region.Pages);
                            }
                        }
                        break;
                    case PrefetchCommand prefetch:
                        {
                            var region = Array.Find(_regions, r => r.Id == prefetch.Id) ?? throw new PagerException($"no region {prefetch.Id}");
                            if (prefetch.First < 0 || prefetch.End > region.Pages || prefetch.First > prefetch.End)
                            {
                                throw new PagerException($"prefetch of pages [{prefetch.First}, {prefetch.End}) is outside region {prefetch.Id} ({region.Pages} pages)");
                            }
                            if (!_prefetch.Push(region, prefetch.First, prefetch.End))
                            {
                                throw new PagerException($"the pager's background queue is full ({WorkCapacity} ranges); prefetch larger ranges or fewer at a time");
                            }
                            break;
                        }
                    case DiscardCommand discard:
                        {
                            var region = Array.Find(_regions, r => r.Id == discard.Id) ?? throw new PagerException($"no region {discard.Id}");
                            if (discard.End > region.Pages || region.Memfd is null)
                            {
                                throw new PagerException($"discard of pages [{discard.First}, {discard.End}) does not fit region {discard.Id} ({region.Pages} pages, {region.Kind})");
                            }
                            // Bits first: a fault racing in after the punch must see the page as not filled.
                            region.Control.ClearFilled(discard.First, discard.End - discard.First);
                            long offset = discard.First << region.PageShift, length = (discard.End - discard.First) << region.PageShift;
                            // PUNCH_HOLE also unmaps the range from every mapping, the application's included.
                            if (Libc.Fallocate(region.Memfd, FallocateFlags.PunchHole | FallocateFlags.KeepSize, offset, length) != 0)
                            {
                                throw Libc.Error($"fallocate(PUNCH_HOLE) of {length} bytes at {offset} of region {discard.Id}");
                            }
                            break;
                        }
                    case CancelCommand cancel:
                        {
                            var region = Array.Find(_regions, r => r.Id == cancel.Id);
                            if (region is not null)
                            {
                                _readAhead.Drop(region);
                                _prefetch.Drop(region);
                                region.Streams.Reset();
                            }
                            break;
                        }
                }
            }
            catch (Exception e)
            {
                command.Error = e;
            }
            command.Done.Set();
        }
    }

    private void WakeAll(ServedRegion region) => Wake(region, region.Start, region.Length);

    /// <summary>UFFDIO_WAKE whose failure is counted (in the region's FailedWakes, when known) and logged: a wake that
    /// fails leaves a thread blocked until it faults again, which must leave a trace.</summary>
    private void Wake(ServedRegion? region, ulong start, ulong length)
    {
        var errno = _uffd.Wake(start, length);
        if (errno != Errno.None)
        {
            region?.Control.Add(RegionStat.FailedWakes, 1);
            Log.UffdCallFailed(_logger, "UFFDIO_WAKE", length, start, errno);
        }
    }

    private ServedRegion? Find(ulong address)
    {
        var last = _last;
        if (last is not null && address >= last.Start && address < last.End)
        {
            return last;
        }
        var regions = _regions;
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
                _last = r;
                return r;
            }
        }
        return null;
    }

    private bool ServeBatch()
    {
        // The fault path must not allocate: what this thread allocated per batch is counted in the region's
        // control block (ManagedBytesAllocated), so tests and dotnet-counters can prove it stays zero.
        long allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        bool served = ServeBatchCore();
        long allocated = GC.GetAllocatedBytesForCurrentThread() - allocatedBefore;
        if (allocated != 0)
        {
            _last?.Control.Add(RegionStat.ManagedBytesAllocated, allocated);
        }
        return served;
    }

    private bool ServeBatchCore()
    {
        int count = _uffd.ReadMessages(_messages, BatchMessages, out var readError);
        if (count <= 0)
        {
            if (count < 0)
            {
                Log.ReadFailed(_logger, readError);
                _stopping = readError == Errno.EBADF;
            }
            return false;
        }
        long batchStart = Stopwatch.GetTimestamp();
        int keys = 0;
        for (int i = 0; i < count; i++)
        {
            ref var m = ref _messages[i];
            if (m.Event == Libc.UFFD_EVENT_PAGEFAULT)
            {
                // Addresses are 4 KiB aligned (no EXACT_ADDRESS), so bit 0 is free to carry "this was a MINOR fault".
                _keys[keys++] = (m.Address & ~0xFFFUL) | ((m.Flags & Libc.UFFD_PAGEFAULT_FLAG_MINOR) != 0 ? 1UL : 0UL);
            }
        }
        var sorted = new Span<ulong>(_keys, keys);
        sorted.Sort();
        int k = 0;
        while (k < keys)
        {
            ulong address = sorted[k] & ~1UL;
            var region = Find(address);
            if (region is null)
            {
                // A region being registered or removed right now: let the thread fault again.
                Wake(null, address, 4096);
                k++;
                continue;
            }
            long first = (long)((address - region.Start) >> region.PageShift);
            long end = first + 1;
            long maxPages = Math.Max(1, MaxRunBytes >> region.PageShift);
            long minor = (long)(sorted[k] & 1), messages = 1;
            int j = k + 1;
            for (; j < keys; j++)
            {
                ulong a = sorted[j] & ~1UL;
                if (a >= region.End)
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
            var policy = region.Policy;
            if (policy.ReadAhead && region.Streams.OnFault(first, end, policy.BlockPages, policy.MaxWindowPages, region.Pages,
                    out long aheadFirst, out long aheadEnd, out bool late))
            {
                // A sequential stream: resolve the whole block now and read the next window in the background.
                control.Add(RegionStat.SequentialHits, 1);
                from = Math.Min(first, first / policy.BlockPages * policy.BlockPages);
                to = Math.Max(end, Math.Min(region.Pages, (first / policy.BlockPages + 1) * policy.BlockPages));
                if (late)
                {
                    control.Add(RegionStat.PrefetchLate, 1);
                    _readAhead.SkipAhead(region, first, to);
                }
                if (aheadEnd > aheadFirst)
                {
                    _ = _readAhead.Push(region, aheadFirst, aheadEnd); // full: dropped, the stream faults again
                }
            }
            MakePresent(region, from, to, first, end);
            long ns = (long)Stopwatch.GetElapsedTime(batchStart).TotalNanoseconds;
            control.RecordLatency(ns);
            PagerMetrics.ServiceTime.Record(ns / 1000.0);
            k = j;
        }
        if (_regions.Length > 0 && keys > 0)
        {
            _last?.Control.Add(RegionStat.Batches, 1);
        }
        return true;
    }

    /// <summary>
    /// After a batch, keep reading the uffd (non-blocking) for up to the spin time (PagingRuntimeOptions.PagerSpin) before sleeping in
    /// poll: a thread woken from a fault often faults again within a few tens of µs, and a pager that is still awake
    /// saves its own wake-up — on this VM waking a halted vCPU costs ~30 µs of a ~60 µs round trip (limits rows 4.1
    /// vs 4.7: 58 µs blocking, 18 µs with the handler spinning). Bounded, so an idle pager burns at most one spin.
    /// </summary>
    private void SpinForMore()
    {
        long spin = _spinNanoseconds * Stopwatch.Frequency / 1_000_000_000;
        long deadline = Stopwatch.GetTimestamp() + spin;
        while (Stopwatch.GetTimestamp() < deadline && !_stopping && WorkCount == 0 && _commands.IsEmpty)
        {
            if (ServeBatch())
            {
                deadline = Stopwatch.GetTimestamp() + spin;
            }
            else
            {
                Thread.SpinWait(32);
            }
        }
    }

    // ---------- making pages present ----------

    /// <summary>
    /// Makes pages [from, to) present: pages not yet filled are filled from the store and mapped; pages already
    /// filled are mapped only where a thread faulted on them ([faultFirst, faultEnd)), because elsewhere they may be
    /// mapped already and must never be refilled (a refill could overwrite the application's writes). The mapping
    /// ioctls run in DONTWAKE mode and the faulting pages get one wake at the end.
    /// </summary>
    private void MakePresent(ServedRegion r, long from, long to, long faultFirst, long faultEnd)
    {
        long maxRun = Math.Max(1, MaxRunBytes >> r.PageShift);
        var control = r.Control;
        long p = from;
        while (p < to)
        {
            bool filled = control.IsFilled(p);
            long q = p + 1;
            while (q < to && q - p < maxRun && control.IsFilled(q) == filled)
            {
                q++;
            }
            if (!filled)
            {
                if (Fill(r, p, q - p))
                {
                    control.Add(RegionStat.PagesPrefetched, q - p - Math.Max(0, Math.Min(q, faultEnd) - Math.Max(p, faultFirst)));
                }
                else
                {
                    // One bad page must not fail the good ones read with it: go page by page. Only a page a thread
                    // waits for is poisoned; a read-ahead page that fails stays unfilled and reports its error if and
                    // when it is touched.
                    for (long page = p; page < q; page++)
                    {
                        bool demand = page >= faultFirst && page < faultEnd;
                        if (Fill(r, page, 1))
                        {
                            control.Add(RegionStat.PagesPrefetched, demand ? 0 : 1);
                        }
                        else if (demand)
                        {
                            Poison(r, page, 1);
                        }
                    }
                }
            }
            else
            {
                long a = Math.Max(p, faultFirst), b = Math.Min(q, faultEnd);
                if (a < b)
                {
                    // Faulted although filled: shmem/hugetlbfs pages in the page cache whose mapping was dropped
                    // (MINOR fault), or a stale message; anonymous pages the application discarded. CONTINUE maps the
                    // page-cache page (EEXIST if already mapped); anonymous pages are read again (COPY is atomic:
                    // EEXIST if present).
                    if (r.Kind == ArenaKind.Anonymous)
                    {
                        if (!FillAnonymous(r, a, b - a, stale: true))
                        {
                            Poison(r, a, b - a);
                        }
                    }
                    else
                    {
                        Continue(r, a, b - a, stale: true);
                    }
                }
            }
            p = q;
        }
        if (faultEnd > faultFirst)
        {
            Wake(r, r.Start + ((ulong)faultFirst << r.PageShift), (ulong)(faultEnd - faultFirst) << r.PageShift);
            control.Add(RegionStat.Wakes, 1);
        }
    }

    private bool Fill(ServedRegion r, long page, long count) =>
        r.Kind == ArenaKind.Anonymous ? FillAnonymous(r, page, count, stale: false) : FillStaging(r, page, count) && Continue(r, page, count, stale: false);

    private void BackgroundStep()
    {
        long allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        var region = BackgroundStepCore();
        long allocated = GC.GetAllocatedBytesForCurrentThread() - allocatedBefore;
        if (allocated != 0)
        {
            region.Control.Add(RegionStat.ManagedBytesAllocated, allocated);
        }
    }

    private ServedRegion BackgroundStepCore()
    {
        var queue = _readAhead.Count > 0 ? _readAhead : _prefetch;
        ref var w = ref queue.Front;
        var r = w.Region;
        long end = Math.Min(w.End, w.Next + Math.Max(1, BackgroundChunkBytes >> r.PageShift));
        long next = w.Next;
        w.Next = end;
        if (end >= w.End)
        {
            queue.Pop();
        }
        MakePresent(r, next, end, 0, 0);
        return r;
    }

    // ---------- shmem / hugetlbfs: fill the page cache through the staging mapping, then UFFDIO_CONTINUE ----------

    private bool FillStaging(ServedRegion r, long page, long count)
    {
        long offset = page << r.PageShift;
        int length = checked((int)(count << r.PageShift));
        var destination = new Span<byte>(r.Staging!.Pointer + offset, length);
        if (r.SpliceSource is { } file && TrySpliceFill(r, file, offset, length, out long copied))
        {
            if (copied < length)
            {
                // Past end-of-file: zeros (also erasing anything a crashed pager left in those pages).
                destination[(int)copied..].Clear();
            }
            if (copied == 0)
            {
                r.Control.Add(RegionStat.ZeroPagesFilled, count);
            }
            // Counted in whole pages, as the pread path counts what it asked for (a partial last page is a page read).
            long read = Math.Min(length, (copied + r.PageSize - 1) & ~(long)(r.PageSize - 1));
            r.Control.Add(RegionStat.BytesRead, read);
            PagerMetrics.BytesRead.Add(read);
            r.Control.Add(RegionStat.PagesFilled, count);
            r.Control.MarkFilled(page, count);
            return true;
        }
        // Allocate and map the run's page-cache pages in one call: otherwise every 4 KiB of the staging write takes
        // its own kernel page fault on the way (the staging mapping is not registered, so the kernel serves them).
        _ = Libc.Madvise((nint)(r.Staging.Pointer + offset), (nuint)length, Advice.PopulateWrite);
        if (!TryRead(r, offset, destination, out var status))
        {
            return false;
        }
        if (status == PageReadStatus.Zero)
        {
            // Clearing (rather than leaving a hole) both allocates the page-cache page CONTINUE needs and erases
            // whatever a crashed pager may have half-written there.
            destination.Clear();
            r.Control.Add(RegionStat.ZeroPagesFilled, count);
        }
        r.Control.Add(RegionStat.PagesFilled, count);
        r.Control.MarkFilled(page, count);
        return true;
    }

    /// <summary>
    /// Copies [offset, offset+length) of a file-backed store into the shmem memfd with splice(2) (file → pipe → memfd,
    /// explicit offsets on both ends): a kernel-side copy that takes no page faults in the staging mapping. Returns
    /// false, having possibly written part of the range, when splice fails; the caller then fills the whole range the
    /// ordinary way (pread with retries, poisoning), which overwrites it. <paramref name="copied"/> stops short at EOF.
    /// (hugetlbfs has no write path, so it always takes the pread route.)
    /// </summary>
    private bool TrySpliceFill(ServedRegion r, FileSlice source, long offset, int length, out long copied)
    {
        copied = 0;
        if (_pipeWrite is null && !OpenPipe())
        {
            return false;
        }
        long inOffset = source.Offset + offset;
        long outOffset = offset;
        while (copied < length)
        {
            nint n = Libc.Splice(source.File, &inOffset, _pipeWrite!, null, (nuint)Math.Min(length - copied, _pipeCapacity), Libc.SPLICE_F_MOVE);
            if (n == 0)
            {
                break; // end of file
            }
            if (n < 0)
            {
                if (Libc.LastErrno == Errno.EINTR)
                {
                    continue;
                }
                return false; // nothing is in the pipe: the pread path reports the error with retries
            }
            long inPipe = n;
            while (inPipe > 0)
            {
                nint m = Libc.Splice(_pipeRead!, null, r.Memfd!, &outOffset, (nuint)inPipe, Libc.SPLICE_F_MOVE);
                if (m <= 0)
                {
                    if (m < 0 && Libc.LastErrno == Errno.EINTR)
                    {
                        continue;
                    }
                    ClosePipe(); // bytes may be stranded in it: start the next fill with an empty pipe
                    return false;
                }
                inPipe -= m;
            }
            copied += n;
        }
        return true;
    }

    private bool OpenPipe()
    {
        int* fds = stackalloc int[2];
        if (Libc.Pipe2(fds, OpenFlags.CloseOnExec) != 0)
        {
            return false;
        }
        _pipeRead = new FileDescriptor(fds[0]);
        _pipeWrite = new FileDescriptor(fds[1]);
        // A pipe holds 64 KiB by default; make one fill run (up to MaxRunBytes) one splice pair.
        int size = Libc.Fcntl(_pipeWrite, Libc.F_SETPIPE_SZ, MaxRunBytes);
        _pipeCapacity = size > 0 ? size : 65536;
        return true;
    }

    private void ClosePipe()
    {
        _pipeRead?.Dispose();
        _pipeWrite?.Dispose();
        _pipeRead = _pipeWrite = null;
    }

    /// <summary>Maps filled pages with UFFDIO_CONTINUE (DONTWAKE: the caller wakes the faulting pages once).
    /// <paramref name="stale"/>: the pages were filled before this fault was read, so one may be mapped already (a
    /// racing thread's message, or read-ahead that got there first): its EEXIST is counted as a stale fault, not as
    /// the block-overlaps-a-present-page error <see cref="RegionStat.AlreadyPresent"/> counts.</summary>
    private bool Continue(ServedRegion r, long page, long count, bool stale)
    {
        ulong start = r.Start + ((ulong)page << r.PageShift);
        ulong length = (ulong)count << r.PageShift;
        int refills = 0;
        while (length > 0)
        {
            var errno = _uffd.Continue(start, length, out long mapped);
            if (errno == Errno.None)
            {
                r.Control.Add(RegionStat.Resolutions, 1);
                return true;
            }
            if (mapped > 0)
            {
                start += (ulong)mapped;
                length -= (ulong)mapped;
                continue;
            }
            if (!HandleResolveError(r, errno, stale, ref start, ref length))
            {
                if (errno == Errno.EFAULT && refills++ < FillAttempts)
                {
                    // The page is not in the page cache although its bit is set: the application punched or
                    // MADV_REMOVEd it. Its contents are gone by the application's own hand; fill it again.
                    long p = (long)((start - r.Start) >> r.PageShift);
                    r.Control.ClearFilled(p);
                    if (!FillStaging(r, p, 1))
                    {
                        Poison(r, p, (long)(length >> r.PageShift));
                        return false;
                    }
                    continue;
                }
                if (errno == Errno.EFAULT)
                {
                    Log.ContinueKeepsFailing(_logger, start);
                    Poison(r, (long)((start - r.Start) >> r.PageShift), (long)(length >> r.PageShift));
                }
                return false;
            }
        }
        return true;
    }

    /// <summary>The error codes shared by COPY, ZEROPAGE and CONTINUE. Returns true when the loop should go on
    /// (range adjusted), false when the caller must decide (EFAULT) or give up (region gone).</summary>
    private bool HandleResolveError(ServedRegion r, Errno errno, bool stale, ref ulong start, ref ulong length)
    {
        switch (errno)
        {
            case Errno.EEXIST:
                // The first page is already mapped (a racing resolver or a re-raised fault). It is success, but the
                // failed ioctl woke nobody: wake the page's waiters and go on with the rest.
                ulong step = (ulong)r.PageSize;
                Wake(r, start, step);
                r.Control.Add(stale ? RegionStat.StaleFaults : RegionStat.AlreadyPresent, 1);
                r.Control.Add(RegionStat.Wakes, 1);
                start += step;
                length -= Math.Min(step, length);
                return true;
            case Errno.EAGAIN:
            case Errno.EINTR:
                // The mm is changing (an mremap/munmap in flight). We subscribe to no events, so this clears by itself.
                r.Control.Add(RegionStat.Retries, 1);
                Thread.Yield();
                return true;
            case Errno.ENOENT:
            case Errno.ESRCH:
            case Errno.EINVAL:
                // The range was unregistered or unmapped, or the application exited: nobody is waiting any more.
                return false;
            case Errno.EFAULT:
                return false;
            default:
                r.Control.Add(RegionStat.Errors, 1);
                Log.ResolveFailed(_logger, length, start, errno);
                Wake(r, start, length);
                return false;
        }
    }

    // ---------- anonymous: fill the pooled buffer, then UFFDIO_COPY (or ZEROPAGE) ----------

    /// <summary>Reads pages into the copy buffer and installs them (DONTWAKE). False when the store failed.
    /// <paramref name="stale"/> as for <see cref="Continue"/>.</summary>
    private bool FillAnonymous(ServedRegion r, long first, long count, bool stale)
    {
        long offset = first << r.PageShift;
        int length = checked((int)(count << r.PageShift));
        if (!TryRead(r, offset, new Span<byte>(_copyBuffer, length), out var status))
        {
            return false;
        }
        if (status == PageReadStatus.Data && PageCopy.IsZero(_copyBuffer, (nuint)length, PageCopy.Best))
        {
            // All-zero data (sparse files, zero-initialised tensors): map the shared zero page instead of copying
            // a page of zeros into a new one. The check reads the bytes just written, still in cache.
            status = PageReadStatus.Zero;
        }
        ulong start = r.Start + (ulong)offset;
        ulong remaining = (ulong)length;
        ulong source = (ulong)_copyBuffer;
        long present = 0;
        while (remaining > 0)
        {
            long done;
            var errno = status == PageReadStatus.Zero
                ? _uffd.ZeroPage(start, remaining, out done)
                : _uffd.Copy(start, source, remaining, out done);
            if (errno == Errno.None)
            {
                r.Control.Add(RegionStat.Resolutions, 1);
                break;
            }
            // Partial progress (the kernel's s64 out-field, never negative here: Userfaultfd clamps errnos).
            if (done > 0)
            {
                start += (ulong)done;
                source += (ulong)done;
                remaining -= (ulong)done;
                continue;
            }
            ulong before = start;
            if (!HandleResolveError(r, errno, stale, ref start, ref remaining))
            {
                return true; // the range is gone (unregistered) or the application exited: nothing to poison
            }
            if (errno == Errno.EEXIST)
            {
                present++;
            }
            source += start - before;
        }
        r.Control.Add(RegionStat.PagesFilled, count - present);
        if (status == PageReadStatus.Zero)
        {
            r.Control.Add(RegionStat.ZeroPagesFilled, count);
        }
        r.Control.MarkFilled(first, count);
        return true;
    }

    // ---------- the store, and what happens when it fails ----------

    private bool TryRead(ServedRegion r, long offset, Span<byte> destination, out PageReadStatus status)
    {
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                status = r.Store.Read(offset, destination);
                if (status == PageReadStatus.Data)
                {
                    r.Control.Add(RegionStat.BytesRead, destination.Length);
                    PagerMetrics.BytesRead.Add(destination.Length);
                }
                return true;
            }
#pragma warning disable CA1031 // A store is user code: whatever it throws becomes a retry or a poisoned page, never a dead pager.
            catch (Exception e)
#pragma warning restore CA1031
            {
                bool transient = e is PageStoreException { IsTransient: true } or IOException;
                if (transient && attempt < FillAttempts)
                {
                    r.Control.Add(RegionStat.Retries, 1);
                    continue;
                }
                r.Control.Add(RegionStat.Errors, 1);
                Log.StoreReadFailed(_logger, e, r.StoreName, destination.Length, offset, r.Id, attempt);
                status = default;
                return false;
            }
        }
    }

    /// <summary>Fails the faults on pages the store cannot produce: the touching thread gets SIGBUS, which is honest,
    /// where zeros would be a wrong byte and leaving it blocked would be a hang.</summary>
    private void Poison(ServedRegion r, long page, long count)
    {
        ulong start = r.Start + ((ulong)page << r.PageShift), length = (ulong)count << r.PageShift;
        var errno = _uffd.Poison(start, length);
        if (errno == Errno.None)
        {
            r.Control.Add(RegionStat.Poisoned, count);
            return;
        }
        Log.PoisonFailed(_logger, count, start, errno);
        Wake(r, start, length);
    }

    /// <summary>How long <see cref="Dispose"/> waits for the fault thread: a fill in progress (a store read) must
    /// finish first. Past it, Dispose returns and the thread releases its buffers, regions and stores itself when it
    /// stops — never freed under a thread that may still use them (a network store can block for longer than this).</summary>
    internal static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(10);

    /// <summary>True once the fault thread has stopped.</summary>
    internal bool Stopped => Volatile.Read(ref _threadDone) == 1;

    public void Dispose()
    {
        _stopping = true;
        Libc.Signal(_eventfd);
        if (_thread.Join(_stopTimeout))
        {
            Release();
            return;
        }
        Log.FaultThreadStuck(_logger, _stopTimeout.TotalSeconds);
        Interlocked.Exchange(ref _abandoned, 1);
        if (Interlocked.CompareExchange(ref _threadDone, 0, 0) == 1)
        {
            Release(); // it stopped right after the timeout
        }
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
        _eventfd.Dispose();
        ClosePipe();
        NativeMemory.AlignedFree(_messages);
        NativeMemory.AlignedFree(_keys);
        NativeMemory.AlignedFree(_copyBuffer);
    }
}
