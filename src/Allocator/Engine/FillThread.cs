using System.Diagnostics;
using System.Runtime.InteropServices;
using Paging.Interop;

namespace Paging.Engine;

/// <summary>
/// One fill thread's own things: its epoll set (the uffd and the work eventfd with EPOLLEXCLUSIVE, the stop eventfd
/// without), its message and sort buffers, its anonymous copy buffer, its splice pipe, its pending fills, and the
/// watchdog slot through which a synchronous store read that outlives its deadline is abandoned.
/// </summary>
internal sealed unsafe class FillThread : IDisposable
{
    /// <summary>The slot's states, in the low two bits of <see cref="_slot"/> under a sequence number (no ABA): a CAS
    /// decides whether the thread maps its pages or the watchdog poisons them.</summary>
    internal const long Idle = 0, Reading = 1, Resolving = 2, TimedOut = 3;

    /// <summary>What woke <see cref="Wait"/>: bits, one per file descriptor of the epoll set.</summary>
    internal const int FaultsReady = 1, WokenUp = 2, Stopping = 4;

    private readonly FileDescriptor _epoll;
    private readonly FileDescriptor _wakeup;
    private int _idle;
    private readonly byte* _events;
    private long _slot;
    private long _readSince;
    private long _deadlineTicks;
    private Fill _current;

    public FillThread(int index, FileDescriptor uffd, FileDescriptor stop, bool watchFaults)
    {
        Index = index;
        _uffd = uffd;
        _wakeup = FileDescriptor.Check(Libc.Eventfd(0, Libc.EFD_CLOEXEC | Libc.EFD_NONBLOCK), "eventfd");
        _epoll = FileDescriptor.Check(Libc.EpollCreate1(Libc.EPOLL_CLOEXEC), "epoll_create1");
        if (watchFaults)
        {
            WatchFaults();
        }
        Libc.EpollAdd(_epoll, _wakeup, Libc.EPOLLIN, "wakeup eventfd", WokenUp);
        Libc.EpollAdd(_epoll, stop, Libc.EPOLLIN, "stop eventfd", Stopping);
        Messages = (Libc.UffdMsg*)NativeMemory.AlignedAlloc((nuint)(FaultEngine.BatchMessages * sizeof(Libc.UffdMsg)), 64);
        Keys = (ulong*)NativeMemory.AlignedAlloc(FaultEngine.BatchMessages * sizeof(ulong), 64);
        CopyBuffer = (byte*)NativeMemory.AlignedAlloc(FaultEngine.MaxRunBytes, 4096);
        _events = (byte*)NativeMemory.Alloc(MaxEvents * Libc.EpollEventBytes);
    }

    public int Index { get; }

    /// <summary>Adds the uffd to this thread's epoll set. A standby pager's threads do not watch it until promotion:
    /// with EPOLLEXCLUSIVE a fault wakes the first waiting epoll set on the uffd's queue, which could be a standby's
    /// that may not serve it (it would spin on the readable uffd while the active pager's busy threads finish).</summary>
    public void WatchFaults() => Libc.EpollAdd(_epoll, _uffd, Libc.EPOLLIN | Libc.EPOLLEXCLUSIVE, "userfaultfd", FaultsReady);

    private readonly FileDescriptor _uffd;

    public Thread? Thread { get; set; }

    public Libc.UffdMsg* Messages { get; }

    public ulong* Keys { get; }

    /// <summary>Anonymous fills read into this, then UFFDIO_COPY it.</summary>
    public byte* CopyBuffer { get; }

    /// <summary>Fills planned from one drain of the uffd: at most one per run, 16 reads of 64 messages.</summary>
    public Fill[] Pending { get; } = new Fill[16 * FaultEngine.BatchMessages];

    public int PendingCount { get; set; }

    /// <summary>PAGEMAP_SCAN results of a run mapped again in a region whose writes are tracked (a run is at most 64 pages).</summary>
    public PageCategory[] Categories { get; } = new PageCategory[64];

    public Libc.PageRegion[] ScanRegions { get; } = new Libc.PageRegion[64];

    public ServedRegion? LastRegion { get; set; }

    public FileDescriptor? PipeRead { get; set; }

    public FileDescriptor? PipeWrite { get; set; }

    public int PipeCapacity { get; set; }

    /// <summary>Sleeps until a fault, work handed to this thread, or the stop signal; returns what woke it
    /// (<see cref="FaultsReady"/>, <see cref="WokenUp"/>, <see cref="Stopping"/>; 0 when work was already pending).
    /// While it sleeps it is idle: <see cref="TryWake"/> can give it work. The wake-up eventfd is read only when it
    /// fired, and the caller reads the uffd only when it is readable: on this VM a syscall costs ~1 µs and a fault
    /// took seven of them before (epoll_wait, read of the message, an eventfd read, pread, ioctl, a read that found
    /// the uffd empty, epoll_wait again).</summary>
    public int Wait(Func<bool> workPending)
    {
        Volatile.Write(ref _idle, 1);
        int woke = 0;
        // Work queued between the caller's last look and the idle mark would find no idle thread: look again.
        if (!workPending())
        {
            int n = Libc.EpollWait(_epoll, _events, MaxEvents, -1);
            for (int i = 0; i < n; i++)
            {
                woke |= (int)Libc.EpollTag(_events, i);
            }
        }
        // A TryWake that raced the return still signals the eventfd; the next Wait then returns at once and drains
        // it (one spare round, never a lost wake-up).
        if (Interlocked.Exchange(ref _idle, 0) == 0 || (woke & WokenUp) != 0)
        {
            Libc.Drain(_wakeup);
        }
        return woke;
    }

    private const int MaxEvents = 4;

    /// <summary>Wakes this thread if it is idle (one wake-up per idle period). False when it is busy.</summary>
    public bool TryWake()
    {
        if (Volatile.Read(ref _idle) == 0 || Interlocked.Exchange(ref _idle, 0) == 0)
        {
            return false;
        }
        Libc.Signal(_wakeup);
        return true;
    }

    /// <summary>Marks the start of a synchronous store read of <paramref name="fill"/>.</summary>
    public void BeginRead(in Fill fill)
    {
        long sequence = (Volatile.Read(ref _slot) >> 2) + 1;
        _current = fill;
        _deadlineTicks = (long)(fill.Region.ReadTimeout.TotalSeconds * Stopwatch.Frequency);
        Volatile.Write(ref _readSince, Stopwatch.GetTimestamp());
        Volatile.Write(ref _slot, sequence << 2 | Reading);
    }

    /// <summary>The read returned: true when this thread may map the pages, false when the watchdog timed it out
    /// (the waiting pages were poisoned; the fill is abandoned).</summary>
    public bool TryBeginResolve()
    {
        long slot = Volatile.Read(ref _slot);
        return (slot & 3) == Reading && Interlocked.CompareExchange(ref _slot, (slot & ~3L) | Resolving, slot) == slot;
    }

    public void EndFill() => Volatile.Write(ref _slot, Volatile.Read(ref _slot) & ~3L);

    /// <summary>Called by the watchdog: a read past its region's deadline is abandoned and its waiting pages poisoned.</summary>
    public void CheckTimeout(long now, FaultEngine engine)
    {
        long slot = Volatile.Read(ref _slot);
        if ((slot & 3) != Reading)
        {
            return;
        }
        long since = Volatile.Read(ref _readSince);
        long deadline = _deadlineTicks;
        var fill = _current;
        // The fill read above belongs to this slot's sequence only if the slot is unchanged: the CAS checks that.
        if (fill.Region is null || now - since < deadline)
        {
            return;
        }
        if (Interlocked.CompareExchange(ref _slot, (slot & ~3L) | TimedOut, slot) == slot)
        {
            engine.OnReadTimedOut(fill);
        }
    }

    public void Dispose()
    {
        _epoll.Dispose();
        _wakeup.Dispose();
        PipeRead?.Dispose();
        PipeWrite?.Dispose();
        NativeMemory.AlignedFree(Messages);
        NativeMemory.AlignedFree(Keys);
        NativeMemory.AlignedFree(CopyBuffer);
        NativeMemory.Free(_events);
    }
}
