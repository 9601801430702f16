using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Paging.Interop;
using Paging.Metrics;
using Paging.Pages;

namespace Paging.Faults;

/// <summary>
/// The pager's fault loop: one thread that reads uffd messages in batches, sorts and merges them into runs of
/// adjacent pages (racing faults on one page collapse into one), fills each run from the region's store and maps it
/// with one ioctl. Regions are added and removed by commands the control thread posts, applied between batches, so
/// the loop owns its region table and takes no lock. Nothing is allocated per fault: the message buffer, the sort
/// keys and the anonymous-arena copy buffer are allocated once.
/// </summary>
internal sealed unsafe class FaultService : IDisposable
{
    /// <summary>Messages read per read(2). 64 × 32 B = 2 KiB: more than the threads that can be blocked at once in
    /// any realistic application, so one read drains the queue.</summary>
    internal const int BatchMessages = 64;

    /// <summary>Largest run resolved with one fill and one ioctl: 64 × 4 KiB = 256 KiB, also the size of the
    /// anonymous copy buffer. Hugetlbfs runs are at most one 2 MiB page (their staging is the page cache itself).</summary>
    internal const int MaxRunBytes = 256 * 1024;

    /// <summary>Attempts per fill before the page is poisoned: transient I/O errors get two retries.</summary>
    private const int FillAttempts = 3;

    private readonly int _uffd;
    private readonly UffdFeatures _features;
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

    public FaultService(int uffd, UffdFeatures features, bool active, ILogger logger)
    {
        _uffd = uffd;
        _features = features;
        _active = active;
        _logger = logger;
        _eventfd = FileDescriptor.FromResult(Libc.Eventfd(0, Libc.EFD_CLOEXEC | Libc.EFD_NONBLOCK), "eventfd");
        _messages = (Libc.UffdMsg*)NativeMemory.AlignedAlloc((nuint)(BatchMessages * sizeof(Libc.UffdMsg)), 64);
        _keys = (ulong*)NativeMemory.AlignedAlloc(BatchMessages * sizeof(ulong), 64);
        _copyBuffer = (byte*)NativeMemory.AlignedAlloc(MaxRunBytes, 4096);
        _thread = new Thread(Run) { IsBackground = true, Name = "paging-faults" };
        _thread.Start();
    }

    public bool IsActive => _active;

    private abstract class Command
    {
        public readonly ManualResetEventSlim Done = new();
        public Exception? Error;
    }

    private sealed class AddCommand(ServedRegion region) : Command { public ServedRegion Region = region; }
    private sealed class RemoveCommand(ulong id) : Command { public ulong Id = id; }
    private sealed class PromoteCommand : Command;

    public void Add(ServedRegion region) => Post(new AddCommand(region));

    public void Remove(ulong id) => Post(new RemoveCommand(id));

    /// <summary>Standby → active: start reading the uffd and wake every registered range, because the dead pager
    /// may have read messages it never resolved; their threads fault again and the messages come back.</summary>
    public void Promote() => Post(new PromoteCommand());

    private void Post(Command command)
    {
        _commands.Enqueue(command);
        ulong one = 1;
        _ = Libc.Write(_eventfd.Fd, &one, 8);
        command.Done.Wait();
        command.Done.Dispose();
        if (command.Error is { } e)
        {
            throw new PagerException(e.Message, e);
        }
    }

    private void Run()
    {
        var pfd = stackalloc Libc.PollFd[2];
        pfd[0] = new Libc.PollFd { Fd = _eventfd.Fd, Events = Libc.POLLIN };
        pfd[1] = new Libc.PollFd { Fd = _uffd, Events = Libc.POLLIN };
        while (!_stopping)
        {
            int n = Libc.Poll(pfd, _active ? 2u : 1u, -1);
            if (n < 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                if (errno != Errno.EINTR)
                {
                    _logger.LogCritical("poll on the userfaultfd failed: {Error}", Libc.Error(errno, "poll").Message);
                    return;
                }
                continue;
            }
            if (pfd[0].Revents != 0)
            {
                ulong value;
                _ = Libc.Read(_eventfd.Fd, &value, 8);
                ApplyCommands();
            }
            if (_active && (pfd[1].Revents & Libc.POLLIN) != 0)
            {
                ServeBatch();
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
                            var list = new List<ServedRegion>(_regions) { add.Region };
                            list.Sort((a, b) => a.Start.CompareTo(b.Start));
                            _regions = [.. list];
                            if (_active)
                            {
                                WakeAll(add.Region);
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
                        }
                        break;
                }
            }
            catch (Exception e)
            {
                command.Error = e;
            }
            command.Done.Set();
        }
    }

    private void WakeAll(ServedRegion region) => _ = Userfaultfd.Wake(_uffd, region.Start, region.Length);

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

    private void ServeBatch()
    {
        nint got = Libc.Read(_uffd, _messages, (nuint)(BatchMessages * sizeof(Libc.UffdMsg)));
        if (got <= 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (got < 0 && errno != Errno.EAGAIN && errno != Errno.EINTR)
            {
                _logger.LogError("read(userfaultfd) failed: {Error}", Libc.Error(errno, "read").Message);
                _stopping = errno == Errno.EBADF;
            }
            return;
        }
        long batchStart = Stopwatch.GetTimestamp();
        int count = (int)(got / sizeof(Libc.UffdMsg));
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
                _ = Userfaultfd.Wake(_uffd, address, 4096);
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
            if (region.Kind == ArenaKind.Anonymous)
            {
                ResolveAnonymous(region, first, end - first);
            }
            else
            {
                ResolveShared(region, first, end - first);
            }
            long ns = (long)Stopwatch.GetElapsedTime(batchStart).TotalNanoseconds;
            control.RecordLatency(ns);
            PagerMetrics.ServiceTime.Record(ns / 1000.0);
            k = j;
        }
        if (_regions.Length > 0 && keys > 0)
        {
            _last?.Control.Add(RegionStat.Batches, 1);
        }
    }

    // ---------- shmem / hugetlbfs: fill the page cache through the staging mapping, then UFFDIO_CONTINUE ----------

    private void ResolveShared(ServedRegion r, long first, long count)
    {
        long end = first + count;
        long p = first;
        while (p < end)
        {
            bool filled = r.Control.IsFilled(p);
            long q = p + 1;
            while (q < end && r.Control.IsFilled(q) == filled)
            {
                q++;
            }
            // A page whose bit is set was completely written (by this pager or an earlier one) and may hold the
            // application's writes: never fill it again, only map it. A page without the bit may hold a dead pager's
            // partial write: fill it whole.
            if (filled || FillStaging(r, p, q - p))
            {
                Continue(r, p, q - p);
            }
            else
            {
                Poison(r, p, q - p);
            }
            p = q;
        }
    }

    private bool FillStaging(ServedRegion r, long page, long count)
    {
        long offset = page << r.PageShift;
        int length = checked((int)(count << r.PageShift));
        var destination = new Span<byte>(r.Staging!.Pointer + offset, length);
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

    private void Continue(ServedRegion r, long page, long count)
    {
        ulong start = r.Start + ((ulong)page << r.PageShift);
        ulong length = (ulong)count << r.PageShift;
        int refills = 0;
        while (length > 0)
        {
            var c = new Libc.UffdioContinue { Range = new() { Start = start, Len = length } };
            if (Libc.Ioctl(_uffd, Libc.UFFDIO_CONTINUE, &c) == 0)
            {
                r.Control.Add(RegionStat.Resolutions, 1);
                return;
            }
            int errno = Marshal.GetLastPInvokeError();
            if (c.Mapped > 0)
            {
                start += (ulong)c.Mapped;
                length -= (ulong)c.Mapped;
                continue;
            }
            if (!HandleResolveError(r, errno, ref start, ref length))
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
                        return;
                    }
                    continue;
                }
                if (errno == Errno.EFAULT)
                {
                    _logger.LogError("UFFDIO_CONTINUE at 0x{Address:x} keeps failing with EFAULT; poisoning", start);
                    Poison(r, (long)((start - r.Start) >> r.PageShift), (long)(length >> r.PageShift));
                }
                return;
            }
        }
    }

    /// <summary>The error codes shared by COPY, ZEROPAGE and CONTINUE. Returns true when the loop should go on
    /// (range adjusted), false when the caller must decide (EFAULT) or give up (region gone).</summary>
    private bool HandleResolveError(ServedRegion r, int errno, ref ulong start, ref ulong length)
    {
        switch (errno)
        {
            case Errno.EEXIST:
                // The first page is already mapped (a racing resolver or a re-raised fault). It is success, but the
                // failed ioctl woke nobody: wake the page's waiters and go on with the rest.
                ulong step = (ulong)r.PageSize;
                _ = Userfaultfd.Wake(_uffd, start, step);
                r.Control.Add(RegionStat.AlreadyPresent, 1);
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
                _logger.LogError("resolving {Length} bytes at 0x{Address:x} failed: {Error}", length, start, Libc.Error(errno, "uffd ioctl").Message);
                _ = Userfaultfd.Wake(_uffd, start, length);
                return false;
        }
    }

    // ---------- anonymous: fill the pooled buffer, then UFFDIO_COPY (or ZEROPAGE) ----------

    private void ResolveAnonymous(ServedRegion r, long first, long count)
    {
        long offset = first << r.PageShift;
        int length = checked((int)(count << r.PageShift));
        if (!TryRead(r, offset, new Span<byte>(_copyBuffer, length), out var status))
        {
            Poison(r, first, count);
            return;
        }
        if (status == PageReadStatus.Data && PageCopy.IsZero(_copyBuffer, (nuint)length, PageCopy.Best))
        {
            // All-zero data (sparse files, zero-initialised tensors): map the shared zero page instead of copying
            // a page of zeros into a new one. The check reads the 4 KiB just written, still in L1: ~60 ns.
            status = PageReadStatus.Zero;
        }
        ulong start = r.Start + (ulong)offset;
        ulong remaining = (ulong)length;
        ulong source = (ulong)_copyBuffer;
        while (remaining > 0)
        {
            int rc;
            long done;
            if (status == PageReadStatus.Zero)
            {
                var z = new Libc.UffdioZeropage { Range = new() { Start = start, Len = remaining } };
                rc = Libc.Ioctl(_uffd, Libc.UFFDIO_ZEROPAGE, &z);
                done = z.Zeropage;
            }
            else
            {
                var c = new Libc.UffdioCopy { Dst = start, Src = source, Len = remaining };
                rc = Libc.Ioctl(_uffd, Libc.UFFDIO_COPY, &c);
                done = c.Copy;
            }
            if (rc == 0)
            {
                r.Control.Add(RegionStat.Resolutions, 1);
                break;
            }
            int errno = Marshal.GetLastPInvokeError();
            // Partial progress is reported in the s64 out-field; a negative value is an errno, not a count.
            if (done > 0)
            {
                start += (ulong)done;
                source += (ulong)done;
                remaining -= (ulong)done;
                continue;
            }
            ulong before = start;
            if (!HandleResolveError(r, errno, ref start, ref remaining))
            {
                return;
            }
            source += start - before;
        }
        r.Control.Add(RegionStat.PagesFilled, count);
        if (status == PageReadStatus.Zero)
        {
            r.Control.Add(RegionStat.ZeroPagesFilled, count);
        }
        r.Control.MarkFilled(first, count);
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
            catch (Exception e)
            {
                bool transient = e is PageStoreException { IsTransient: true } or IOException;
                if (transient && attempt < FillAttempts)
                {
                    r.Control.Add(RegionStat.Retries, 1);
                    continue;
                }
                r.Control.Add(RegionStat.Errors, 1);
                _logger.LogError(e, "store {Store} failed to read {Length} bytes at offset {Offset} of region {Region} after {Attempts} attempt(s); the pages are poisoned and a thread touching them gets SIGBUS",
                    r.StoreName, destination.Length, offset, r.Id, attempt);
                status = default;
                return false;
            }
        }
    }

    /// <summary>Fails the faults on pages the store cannot produce: the touching thread gets SIGBUS, which is honest,
    /// where zeros would be a wrong byte and leaving it blocked would be a hang.</summary>
    private void Poison(ServedRegion r, long page, long count)
    {
        var p = new Libc.UffdioPoison { Range = new() { Start = r.Start + ((ulong)page << r.PageShift), Len = (ulong)count << r.PageShift } };
        if ((_features & UffdFeatures.Poison) != 0 && Libc.Ioctl(_uffd, Libc.UFFDIO_POISON, &p) == 0)
        {
            r.Control.Add(RegionStat.Poisoned, count);
            return;
        }
        _logger.LogCritical("cannot poison {Count} page(s) at 0x{Address:x} (UFFDIO_POISON unavailable or failed); the faulting threads will retry",
            count, p.Range.Start);
        _ = Userfaultfd.Wake(_uffd, p.Range.Start, p.Range.Len);
    }

    public void Dispose()
    {
        _stopping = true;
        ulong one = 1;
        _ = Libc.Write(_eventfd.Fd, &one, 8);
        _thread.Join(TimeSpan.FromSeconds(5));
        foreach (var r in _regions)
        {
            r.Dispose();
        }
        _regions = [];
        _eventfd.Dispose();
        NativeMemory.AlignedFree(_messages);
        NativeMemory.AlignedFree(_keys);
        NativeMemory.AlignedFree(_copyBuffer);
    }
}
