namespace Paging.Testing;

/// <summary>
/// Wraps a store and misbehaves on purpose. Built by the pager as a custom store (assembly = this one), with settings:
/// <c>inner</c> ("zero" or "file" plus the file settings), <c>fail_offset</c> (reads touching this region offset
/// fail), <c>fail_times</c> (how many times, -1 = always; default -1), <c>error</c> (Io, Corrupt...),
/// <c>async</c> ("true": reads complete later, on the thread pool), <c>delay_us</c> (every read takes this long),
/// <c>jitter_us</c> (plus a random part: completions come out of order), <c>stall_offset</c> (reads touching this
/// offset never complete: async ones until cancelled, synchronous ones for 60 s), <c>fail_writes</c> ("true": every
/// Write fails with Io, as a full or dead disk). Also usable directly.
/// </summary>
public sealed class FaultInjectingPageStore : DelegatingPageStore
{
    private readonly long _failOffset;
    private readonly PageStoreError _error;
    private readonly bool _async;
    private readonly int _delayMicroseconds;
    private readonly int _jitterMicroseconds;
    private readonly long _stallOffset;
    private int _failuresLeft;

    public FaultInjectingPageStore(PageStoreContext context)
        : this(BuiltInPageStores.CreateRegistry().Create(new PageStoreContext(
                new PageStoreDescriptor(context.Get("inner", "zero"), context.Settings), context.RegionLength, context.PageSize)),
            context.GetInt64("fail_offset", -1),
            (int)context.GetInt64("fail_times", -1, min: -1, max: int.MaxValue),
            Enum.Parse<PageStoreError>(context.Get("error", "Io")),
            context.GetBoolean("async", false),
            (int)context.GetInt64("delay_us", 0, min: 0, max: 60_000_000),
            (int)context.GetInt64("jitter_us", 0, min: 0, max: 60_000_000),
            context.GetInt64("stall_offset", -1))
    {
        FailWrites = context.GetBoolean("fail_writes", false);
    }

    /// <summary>Every <see cref="Write"/> throws (Io).</summary>
    public bool FailWrites { get; init; }

    public override void Write(long offset, ReadOnlySpan<byte> source)
    {
        if (FailWrites)
        {
            throw new PageStoreException(PageStoreError.Io, $"injected Io failure writing {source.Length} bytes at offset {offset}");
        }
        base.Write(offset, source);
    }

    public FaultInjectingPageStore(IPageStore inner, long failOffset, int failTimes, PageStoreError error,
        bool isAsync = false, int delayMicroseconds = 0, int jitterMicroseconds = 0, long stallOffset = -1) : base(inner)
    {
        _failOffset = failOffset;
        _failuresLeft = failTimes;
        _error = error;
        _async = isAsync;
        _delayMicroseconds = delayMicroseconds;
        _jitterMicroseconds = jitterMicroseconds;
        _stallOffset = stallOffset;
    }

    public int Failures => Volatile.Read(ref _failures);

    private int _failures;

    public override PageStoreCapabilities Capabilities => base.Capabilities | (_async ? PageStoreCapabilities.Asynchronous : 0);

    private static bool Covers(long at, long offset, int length) => at >= 0 && offset <= at && at < offset + length;

    private int DelayMicroseconds() => _delayMicroseconds + (_jitterMicroseconds > 0 ? Random.Shared.Next(_jitterMicroseconds) : 0);

    private PageReadStatus ReadNow(long offset, Span<byte> destination)
    {
        if (Covers(_failOffset, offset, destination.Length) && Volatile.Read(ref _failuresLeft) != 0)
        {
            if (Volatile.Read(ref _failuresLeft) > 0)
            {
                Interlocked.Decrement(ref _failuresLeft);
            }
            Interlocked.Increment(ref _failures);
            // Scribble first: a failed read must never leave bytes the runtime would map.
            destination.Fill(0xEE);
            throw new PageStoreException(_error, $"injected {_error} failure reading offset {offset}");
        }
        return Inner.Read(offset, destination);
    }

    public override PageReadStatus Read(long offset, Span<byte> destination)
    {
        if (Covers(_stallOffset, offset, destination.Length))
        {
            Thread.Sleep(TimeSpan.FromSeconds(60));
        }
        int delay = DelayMicroseconds();
        if (delay > 0)
        {
            Thread.Sleep(TimeSpan.FromMicroseconds(delay));
        }
        return ReadNow(offset, destination);
    }

    public override async ValueTask<PageReadStatus> ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        if (!_async)
        {
            return Read(offset, destination.Span);
        }
        if (Covers(_stallOffset, offset, destination.Length))
        {
            await Task.Delay(Timeout.Infinite, cancellationToken).ConfigureAwait(false);
        }
        int delay = DelayMicroseconds();
        await Task.Delay(TimeSpan.FromMicroseconds(Math.Max(delay, 1)), cancellationToken).ConfigureAwait(false);
        return ReadNow(offset, destination.Span);
    }
}
