using System.Buffers;
using Paging.Simd;
using Paging.Stores;

namespace Paging.Backends.Network;

/// <summary>
/// The base of stores that read byte ranges of one remote object (HTTP, S3): a read becomes one ranged request whose
/// body is streamed straight into the destination (the staging mapping, for shmem and hugetlbfs arenas — no bounce
/// buffer); bytes past the object's end read as zeros; adjacent reads of a batch (<see cref="ReadManyAsync"/>) are
/// coalesced into one request of at most <see cref="MaxRequestBytes"/>, and the requests of a batch are in flight
/// together. Transient failures are retried by <see cref="NetworkRetry"/>; a body shorter than announced is a transient
/// failure (never a short page); a changed object is <see cref="PageStoreError.Changed"/>. A server may answer a range
/// with a shorter one from the same start (servers and CDNs that cap a response's size): the rest is asked for next.
/// A subclass opens one range (<see cref="OpenRangeAsync"/>) and validates what the server says about it.
/// </summary>
public abstract class RangedObjectStore : IPageStore
{
    private long _requests;
    private long _retries;
    private long _bytesFetched;

    /// <summary>Creates the base.</summary>
    /// <param name="description">Names the object in errors (a URL, s3://bucket/key).</param>
    /// <param name="retry">The retry policy.</param>
    /// <param name="maxRequestBytes">The largest coalesced request.</param>
    protected RangedObjectStore(string description, NetworkRetry retry, int maxRequestBytes)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(description);
        ArgumentNullException.ThrowIfNull(retry);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxRequestBytes, 4096);
        Description = description;
        Retry = retry;
        MaxRequestBytes = maxRequestBytes;
    }

    /// <summary>The object, as errors name it.</summary>
    public string Description { get; }

    /// <summary>The retry policy.</summary>
    public NetworkRetry Retry { get; }

    /// <summary>The largest request a batch is coalesced into.</summary>
    public int MaxRequestBytes { get; }

    /// <summary>The object's length, fixed when the store opened it (a later change is an error).</summary>
    public abstract long Length { get; }

    /// <summary>Reads complete later, many in flight at once.</summary>
    public PageStoreCapabilities Capabilities => PageStoreCapabilities.Asynchronous;

    /// <summary>Ranged requests sent (each attempt counts).</summary>
    public long Requests => Volatile.Read(ref _requests);

    /// <summary>Attempts that failed transiently and were retried.</summary>
    public long Retries => Volatile.Read(ref _retries);

    /// <summary>Body bytes received into destinations.</summary>
    public long BytesFetched => Volatile.Read(ref _bytesFetched);

    /// <summary>The value of the <c>store</c> tag on this store's <see cref="NetworkMetrics"/> measurements.</summary>
    protected virtual string MetricsKind => "network";

    private KeyValuePair<string, object?> MetricsTag => new("store", MetricsKind);

    /// <summary>Sends the request for [<paramref name="start"/>, <paramref name="start"/> + <paramref name="length"/>)
    /// and returns its body once the response's status and headers say it is that range of the pinned object, or a
    /// shorter range from the same start (<see cref="RangeBody.Length"/>; at least one byte).
    /// Throws <see cref="PageStoreException"/>: <see cref="PageStoreError.Io"/> for what a retry may fix (5xx, 429,
    /// connection errors), <see cref="PageStoreError.Changed"/> for a different object, others for the rest.</summary>
    protected abstract ValueTask<RangeBody> OpenRangeAsync(long start, long length, CancellationToken cancellationToken);

    /// <summary>Reads synchronously: the slow path (the engine uses <see cref="ReadAsync"/> for this store). The
    /// bytes go through a pooled buffer and <see cref="PageCopy"/>: a span cannot cross the awaits of a request.</summary>
    public PageReadStatus Read(long offset, Span<byte> destination)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        byte[] buffer = ArrayPool<byte>.Shared.Rent(destination.Length);
        try
        {
            var status = ReadAsync(offset, buffer.AsMemory(0, destination.Length), CancellationToken.None).AsTask().GetAwaiter().GetResult();
            if (status == PageReadStatus.Data)
            {
                PageCopy.Copy(buffer.AsSpan(0, destination.Length), destination, nonTemporal: false);
            }
            return status;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>One ranged request (retried as the policy says) streamed into <paramref name="destination"/>; the
    /// part past the object's end is zeroed; a read wholly past it is <see cref="PageReadStatus.Zero"/>.</summary>
    public async ValueTask<PageReadStatus> ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        long available = Math.Clamp(Length - offset, 0, destination.Length);
        if (available == 0)
        {
            return PageReadStatus.Zero;
        }
        var target = new Target(destination[..(int)available]);
        await FetchAsync(offset, available, new ReadOnlyMemory<Target>([target]), cancellationToken).ConfigureAwait(false);
        destination.Span[(int)available..].Clear();
        return PageReadStatus.Data;
    }

    /// <summary>Coalesces adjacent requests (in offset order, up to <see cref="MaxRequestBytes"/>) into one ranged
    /// request each, and keeps those requests in flight together.</summary>
    public async ValueTask ReadManyAsync(ReadOnlyMemory<PageReadRequest> requests, Memory<PageReadStatus> statuses, CancellationToken cancellationToken)
    {
        if (statuses.Length < requests.Length)
        {
            throw new ArgumentException($"{statuses.Length} statuses for {requests.Length} requests", nameof(statuses));
        }
        int n = requests.Length;
        var order = new int[n];
        for (int i = 0; i < n; i++)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(requests.Span[i].Offset, nameof(requests));
            order[i] = i;
        }
        var span = requests.Span;
        var offsets = new long[n];
        for (int i = 0; i < n; i++)
        {
            offsets[i] = span[i].Offset;
        }
        Array.Sort(offsets, order);
        var fetches = new List<Task>();
        long length = Length;
        int k = 0;
        while (k < n)
        {
            var first = span[order[k]];
            long available = Math.Clamp(length - first.Offset, 0, first.Destination.Length);
            if (available == 0)
            {
                statuses.Span[order[k++]] = PageReadStatus.Zero;
                continue;
            }
            // Extend the run while the next request starts where this one ends (and this one is not cut by the end).
            var targets = new List<Target> { new(first.Destination[..(int)available]) };
            statuses.Span[order[k]] = PageReadStatus.Data;
            first.Destination.Span[(int)available..].Clear();
            long start = first.Offset, end = first.Offset + available;
            bool open = available == first.Destination.Length;
            int j = k + 1;
            for (; j < n && open; j++)
            {
                var next = span[order[j]];
                long nextAvailable = Math.Clamp(length - next.Offset, 0, next.Destination.Length);
                if (next.Offset != end || nextAvailable == 0 || end - start + nextAvailable > MaxRequestBytes)
                {
                    break;
                }
                targets.Add(new(next.Destination[..(int)nextAvailable]));
                next.Destination.Span[(int)nextAvailable..].Clear();
                statuses.Span[order[j]] = PageReadStatus.Data;
                end += nextAvailable;
                open = nextAvailable == next.Destination.Length;
            }
            fetches.Add(FetchAsync(start, end - start, targets.ToArray(), cancellationToken).AsTask());
            k = j;
        }
        await Task.WhenAll(fetches).ConfigureAwait(false);
    }

    /// <summary>Network stores are read-only: an object is replaced whole, not written in place.</summary>
    public virtual void Write(long offset, ReadOnlySpan<byte> source) =>
        throw new PageStoreException(PageStoreError.ReadOnly, $"{Description} is read-only: {ReadOnlyReason}");

    /// <summary>Why <see cref="Write"/> is refused, for its error.</summary>
    protected virtual string ReadOnlyReason => "a network store reads ranges of an immutable object";

    private async ValueTask FetchAsync(long start, long length, ReadOnlyMemory<Target> targets, CancellationToken cancellationToken)
    {
        long done = 0; // bytes of complete bodies so far, which end at doneOffset in targets[doneTarget]
        int doneTarget = 0, doneOffset = 0;
        for (int attempt = 1; ; attempt++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            Exception failure;
            using (var attemptCancellation = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
            {
                attemptCancellation.CancelAfter(Retry.AttemptTimeout);
                try
                {
                    Interlocked.Increment(ref _requests);
                    NetworkMetrics.Requests.Add(1, MetricsTag);
                    long from = start + done;
                    using var body = await OpenRangeAsync(from, length - done, attemptCancellation.Token).ConfigureAwait(false);
                    if (body.Length < 1 || body.Length > length - done)
                    {
                        throw new InvalidOperationException($"{GetType().Name}.OpenRangeAsync returned a body of {body.Length} bytes for a range of {length - done}");
                    }
                    // Into the targets from where the last complete body ended; a failed body is read again from there.
                    int i = doneTarget, at = doneOffset;
                    long received = 0;
                    while (received < body.Length)
                    {
                        var t = targets.Span[i].Destination;
                        int want = (int)Math.Min(t.Length - at, body.Length - received);
                        int n = await body.Stream.ReadAtLeastAsync(t.Slice(at, want), want, throwOnEndOfStream: false, attemptCancellation.Token).ConfigureAwait(false);
                        received += n;
                        if (n < want)
                        {
                            throw new PageStoreException(PageStoreError.Io,
                                $"{Description}: the body of bytes {from}-{from + body.Length - 1} ended after {received} of {body.Length} bytes");
                        }
                        at += n;
                        if (at == t.Length)
                        {
                            i++;
                            at = 0;
                        }
                    }
                    Interlocked.Add(ref _bytesFetched, received);
                    NetworkMetrics.BytesFetched.Add(received, MetricsTag);
                    done += received;
                    (doneTarget, doneOffset) = (i, at);
                    if (done == length)
                    {
                        return;
                    }
                    // A shorter range than asked: progress, not a failure. The rest is a new request with fresh
                    // attempts (each answer carries at least one byte, so this ends).
                    attempt = 0;
                    continue;
                }
                catch (OperationCanceledException e) when (!cancellationToken.IsCancellationRequested)
                {
                    failure = new PageStoreException(PageStoreError.Io, $"{Description}: bytes {start}-{start + length - 1} took longer than {Retry.AttemptTimeout.TotalMilliseconds:0} ms", e);
                }
                catch (PageStoreException e) when (e.IsTransient)
                {
                    failure = e;
                }
                catch (PageStoreException)
                {
                    NetworkMetrics.Failures.Add(1, MetricsTag); // permanent: not retried
                    throw;
                }
                catch (Exception e) when (e is IOException or HttpRequestException)
                {
                    failure = new PageStoreException(PageStoreError.Io, $"{Description}: bytes {start}-{start + length - 1}: {e.Message}", e);
                }
            }
            if (attempt >= Retry.Attempts)
            {
                NetworkMetrics.Failures.Add(1, MetricsTag);
                throw new PageStoreException(PageStoreError.Io,
                    $"{Description}: bytes {start}-{start + length - 1} failed {attempt} time(s); last: {failure.Message}", failure);
            }
            Interlocked.Increment(ref _retries);
            NetworkMetrics.Retries.Add(1, MetricsTag);
            await Task.Delay(Retry.Delay(attempt, (failure as PageStoreException)?.RetryAfter), cancellationToken).ConfigureAwait(false);
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases the client.</summary>
    protected virtual void Dispose(bool disposing)
    {
    }

    private readonly record struct Target(Memory<byte> Destination);
}

/// <summary>The body of one validated range response and what owns it (the response).</summary>
/// <param name="Stream">The body.</param>
/// <param name="Owner">Disposed with the body.</param>
/// <param name="Length">The bytes it carries from the range's start: what was asked, or fewer when the server answered
/// a shorter range.</param>
public readonly record struct RangeBody(Stream Stream, IDisposable Owner, long Length) : IDisposable
{
    /// <inheritdoc />
    public void Dispose()
    {
        Stream.Dispose();
        Owner.Dispose();
    }
}
