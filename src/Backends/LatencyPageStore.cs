using System.Diagnostics;
using System.Threading.Tasks.Sources;
using Paging.Stores;

namespace Paging.Backends;

/// <summary>
/// A decorator that makes every read of the inner store take <see cref="Delay"/> longer, asynchronously, like a network
/// store: reads are in flight at once and complete out of a timer thread (the harness's <c>--store-delay-us</c>).
/// Allocation-free per read: the pending reads are pooled <see cref="IValueTaskSource{TResult}"/>s ordered by deadline.
/// </summary>
public sealed partial class LatencyPageStore : DelegatingPageStore
{
    /// <summary>The store kind on the wire.</summary>
    public const string Kind = "latency";

    /// <summary>The setting keys: the inner store's kind and the delay; every other setting goes to the inner store.</summary>
    public static class Settings
    {
        /// <summary>The inner store's kind (default "file").</summary>
        public const string Inner = "inner";

        /// <summary>Microseconds added to every read.</summary>
        public const string DelayMicroseconds = "delay_us";
    }

    private readonly Lock _lock = new();
    private readonly PriorityQueue<Pending, long> _due = new();
    private readonly Stack<Pending> _pool = new();
    private readonly Thread _timer;
    private readonly SemaphoreSlim _wake = new(0);
    private volatile bool _disposed;

    /// <summary>Wraps <paramref name="inner"/> with <paramref name="delay"/> per read.</summary>
    public LatencyPageStore(IPageStore inner, TimeSpan delay) : base(inner)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(delay, TimeSpan.Zero);
        Delay = delay;
        // Pre-sized to the engine's in-flight limit per store (256), so reads never allocate once started.
        for (int i = 0; i < 256; i++)
        {
            _pool.Push(new Pending(this));
        }
        _due.EnsureCapacity(256);
        _timer = new Thread(RunTimer) { IsBackground = true, Name = "paging-latency-store" };
        _timer.Start();
    }

    /// <summary>Describes a latency store over another store's descriptor.</summary>
    public static PageStoreDescriptor Describe(PageStoreDescriptor inner, TimeSpan delay)
    {
        ArgumentNullException.ThrowIfNull(inner);
        var settings = new Dictionary<string, string>(inner.Settings, StringComparer.Ordinal)
        {
            [Settings.Inner] = inner.Kind,
            [Settings.DelayMicroseconds] = ((long)delay.TotalMicroseconds).ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
        return new PageStoreDescriptor(Kind, settings);
    }

    /// <summary>Builds the inner store from the same settings, then wraps it (inside the pager).</summary>
    public static LatencyPageStore Create(PageStoreContext context, PageStoreRegistry registry)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(registry);
        string innerKind = context.Get(Settings.Inner, FilePageStore.Kind);
        if (innerKind == Kind)
        {
            throw new PageStoreException(PageStoreError.Configuration, "a latency store cannot wrap another latency store");
        }
        long us = context.GetInt64(Settings.DelayMicroseconds, 0, min: 0, max: 60_000_000);
        var inner = registry.Create(new PageStoreContext(new PageStoreDescriptor(innerKind, context.Settings), context.RegionLength, context.PageSize));
        return new LatencyPageStore(inner, TimeSpan.FromMicroseconds(us));
    }

    /// <summary>The delay added to every read.</summary>
    public TimeSpan Delay { get; }

    /// <inheritdoc />
    public override PageStoreCapabilities Capabilities => base.Capabilities | PageStoreCapabilities.Asynchronous;

    /// <inheritdoc />
    public override PageReadStatus Read(long offset, Span<byte> destination)
    {
        var until = Stopwatch.GetTimestamp() + (long)(Delay.TotalSeconds * Stopwatch.Frequency);
        Thread.Sleep(Delay);
        while (Stopwatch.GetTimestamp() < until)
        {
            Thread.SpinWait(16);
        }
        return Inner.Read(offset, destination);
    }

    /// <inheritdoc />
    public override ValueTask<PageReadStatus> ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        Pending p;
        lock (_lock)
        {
            p = _pool.Count > 0 ? _pool.Pop() : new Pending(this);
            p.Start(offset, destination, cancellationToken);
            _due.Enqueue(p, Stopwatch.GetTimestamp() + (long)(Delay.TotalSeconds * Stopwatch.Frequency));
        }
        _wake.Release();
        return new ValueTask<PageReadStatus>(p, p.Version);
    }

    private void RunTimer()
    {
        while (!_disposed)
        {
            Pending? ready = null;
            long wait;
            lock (_lock)
            {
                if (_due.TryPeek(out var next, out long deadline))
                {
                    wait = deadline - Stopwatch.GetTimestamp();
                    if (wait <= 0 || next.Cancelled)
                    {
                        ready = _due.Dequeue();
                    }
                }
                else
                {
                    wait = long.MaxValue;
                }
            }
            if (ready is not null)
            {
                ready.Complete();
                continue;
            }
            if (wait == long.MaxValue)
            {
                _wake.Wait(100);
            }
            else
            {
                // Every read has the same delay, so a read queued later is never due earlier: sleep until the head is
                // due, to the microsecond (managed waits round to whole milliseconds on Linux).
                Sleep(wait);
            }
        }
    }

    private static unsafe void Sleep(long stopwatchTicks)
    {
        long ns = stopwatchTicks * 1_000_000_000 / Stopwatch.Frequency;
        var ts = new Timespec { Seconds = ns / 1_000_000_000, Nanoseconds = ns % 1_000_000_000 };
        _ = Nanosleep(&ts, null);
    }

    [System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Sequential)]
    private struct Timespec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "nanosleep")]
    private static unsafe partial int Nanosleep(Timespec* request, Timespec* remaining);

    private void Return(Pending p)
    {
        lock (_lock)
        {
            _pool.Push(p);
        }
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        _disposed = true;
        _wake.Release();
        if (disposing)
        {
            _timer.Join(TimeSpan.FromSeconds(5));
            _wake.Dispose();
        }
        base.Dispose(disposing);
    }

    /// <summary>One read waiting for its deadline; reused after its result is taken.</summary>
    private sealed class Pending(LatencyPageStore owner) : IValueTaskSource<PageReadStatus>
    {
        // Completions run on the timer thread, as a network store's run on its I/O thread: no thread-pool hop.
        private ManualResetValueTaskSourceCore<PageReadStatus> _core = new() { RunContinuationsAsynchronously = false };
        private long _offset;
        private Memory<byte> _destination;
        private CancellationToken _cancellation;

        public short Version => _core.Version;

        public bool Cancelled => _cancellation.IsCancellationRequested;

        public void Start(long offset, Memory<byte> destination, CancellationToken cancellation)
        {
            _core.Reset();
            _offset = offset;
            _destination = destination;
            _cancellation = cancellation;
        }

        public void Complete()
        {
            if (_cancellation.IsCancellationRequested)
            {
                _core.SetException(new OperationCanceledException(_cancellation));
                return;
            }
            try
            {
                _core.SetResult(owner.Inner.Read(_offset, _destination.Span));
            }
#pragma warning disable CA1031 // The inner store's failure is the read's result, delivered to the awaiter.
            catch (Exception e)
#pragma warning restore CA1031
            {
                _core.SetException(e);
            }
        }

        public PageReadStatus GetResult(short token)
        {
            try
            {
                return _core.GetResult(token);
            }
            finally
            {
                _destination = default;
                owner.Return(this);
            }
        }

        public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

        public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
            _core.OnCompleted(continuation, state, token, flags);
    }
}
