using Microsoft.Win32.SafeHandles;

namespace Paging.Stores;

/// <summary>What a read produced.</summary>
public enum PageReadStatus
{
    /// <summary>The destination holds the bytes.</summary>
    Data = 0,

    /// <summary>Every byte is zero and the destination was not written; the runtime maps zero pages without a copy.</summary>
    Zero = 1,
}

/// <summary>What a store can do beyond reading, so the engine asks instead of testing types.</summary>
[Flags]
public enum PageStoreCapabilities
{
    /// <summary>Reads only.</summary>
    None = 0,

    /// <summary><see cref="IPageStore.Write"/> is supported (write-back).</summary>
    Write = 1,

    /// <summary><see cref="IPageStore.FileSource"/> names a file slice whose bytes are the store's bytes, unchanged:
    /// the engine may copy them kernel-side (splice) instead of calling <see cref="IPageStore.Read"/>.</summary>
    FileSource = 2,

    /// <summary>Reads may complete later (a network, a device queue): the engine calls
    /// <see cref="IPageStore.ReadAsync"/> and keeps many reads in flight instead of blocking a fill thread in
    /// <see cref="IPageStore.Read"/>.</summary>
    Asynchronous = 4,

    /// <summary>The store wants the bytes of pages the budget evicts (<see cref="IPageStore.Retain"/>): a compressed
    /// memory tier keeps them so their next fault is served without a device read.</summary>
    RetainsEvicted = 8,
}

/// <summary>One read of a batch (<see cref="IPageStore.ReadManyAsync"/>).</summary>
/// <param name="Offset">Store offset of the first byte.</param>
/// <param name="Destination">Where the bytes go (possibly the page cache itself; valid until the batch completes).</param>
public readonly record struct PageReadRequest(long Offset, Memory<byte> Destination);

/// <summary>An open file and the file offset of store offset 0 (see <see cref="PageStoreCapabilities.FileSource"/>).</summary>
/// <param name="File">The open file; owned by the store.</param>
/// <param name="Offset">The file offset of store offset 0.</param>
public sealed record FileSlice(SafeFileHandle File, long Offset);

/// <summary>
/// The source and sink of a region's pages. Runs inside the pager process, built there from a
/// <see cref="PageStoreDescriptor"/>; several fill threads may call it at once (each on its own range), so a store
/// must be safe for concurrent reads (pread-style). Offsets are relative to the
/// region's start; reads past <see cref="Length"/> must yield zeros. Errors are <see cref="PageStoreException"/>s
/// whose <see cref="PageStoreException.Error"/> tells the engine whether to retry (Io) or give up (the rest).
/// </summary>
public interface IPageStore : IDisposable
{
    /// <summary>Bytes the store holds; pages past it read as zeros.</summary>
    long Length { get; }

    /// <summary>What the store supports beyond <see cref="Read"/>.</summary>
    PageStoreCapabilities Capabilities { get; }

    /// <summary>The file slice behind the store when <see cref="Capabilities"/> has
    /// <see cref="PageStoreCapabilities.FileSource"/>; otherwise null.</summary>
    FileSlice? FileSource => null;

    /// <summary>Fills <paramref name="destination"/> with the bytes at <paramref name="offset"/>, or returns
    /// <see cref="PageReadStatus.Zero"/> without writing when they are all zero. <paramref name="destination"/> may be
    /// the page cache itself (the staging mapping): write it once, in place. Throws <see cref="PageStoreException"/>.</summary>
    PageReadStatus Read(long offset, Span<byte> destination);

    /// <summary>Reads like <see cref="Read"/>, possibly completing later; many may be in flight at once, on different
    /// threads. <paramref name="destination"/> is valid only until the returned task completes (it is pooled and may
    /// be the page cache itself): never touch it afterwards. A read that does not finish before the region's deadline
    /// is cancelled through <paramref name="cancellationToken"/> and counted as a failed read (retried, then the
    /// pages are poisoned). The default runs <see cref="Read"/> inline: a synchronous store stays as cheap as before
    /// (a completed <see cref="ValueTask{TResult}"/>, no allocation).</summary>
    ValueTask<PageReadStatus> ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return new(Read(offset, destination.Span));
    }

    /// <summary>Reads several runs in one call, so a store can coalesce them (one network request for adjacent runs).
    /// <paramref name="statuses"/>[i] receives the outcome of <paramref name="requests"/>[i]. The default issues the
    /// reads one after another through <see cref="ReadAsync"/> (<see cref="ReadEachAsync"/>).</summary>
    ValueTask ReadManyAsync(ReadOnlyMemory<PageReadRequest> requests, Memory<PageReadStatus> statuses, CancellationToken cancellationToken) =>
        ReadEachAsync(this, requests, statuses, cancellationToken);

    /// <summary>A batch read as one <see cref="ReadAsync"/> of <paramref name="store"/> per request, in order: the
    /// default of <see cref="ReadManyAsync"/>, and of decorators, whose batches must go through their own reads.</summary>
    static async ValueTask ReadEachAsync(IPageStore store, ReadOnlyMemory<PageReadRequest> requests, Memory<PageReadStatus> statuses, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(store);
        if (statuses.Length < requests.Length)
        {
            throw new ArgumentException($"{statuses.Length} statuses for {requests.Length} requests", nameof(statuses));
        }
        for (int i = 0; i < requests.Length; i++)
        {
            var r = requests.Span[i];
            var status = await store.ReadAsync(r.Offset, r.Destination, cancellationToken).ConfigureAwait(false);
            statuses.Span[i] = status;
        }
    }

    /// <summary>Writes <paramref name="source"/> (whole pages) at <paramref name="offset"/>: write-back of dirty pages,
    /// from the engine's write-back thread or a Flush, several at once on different ranges. Throws
    /// <see cref="PageStoreException"/> (<see cref="PageStoreError.ReadOnly"/> without
    /// <see cref="PageStoreCapabilities.Write"/>); a failed write leaves the pages dirty and resident.</summary>
    void Write(long offset, ReadOnlySpan<byte> source);

    /// <summary>Called (with <see cref="PageStoreCapabilities.RetainsEvicted"/>) with the bytes of whole pages at
    /// <paramref name="offset"/> that the memory budget is evicting. They are the store's bytes already (clean, or
    /// written back just before), so a store may keep them or not: dropping them loses nothing. Must not throw.</summary>
    void Retain(long offset, ReadOnlySpan<byte> pages)
    {
    }

    /// <summary>Makes every <see cref="Write"/> that returned durable (a file store: fdatasync). Region.Flush calls it
    /// after writing the region's dirty pages back. The default does nothing: for a store whose writes are durable when
    /// they return.</summary>
    void Flush()
    {
    }
}

/// <summary>Why a store operation failed.</summary>
public enum PageStoreError
{
    /// <summary>An I/O error from the device, file or network; the operation may succeed if retried.</summary>
    Io,
    /// <summary>The offset or length is outside what the store accepts.</summary>
    OutOfRange,
    /// <summary>The store is read-only.</summary>
    ReadOnly,
    /// <summary>The store's data is corrupt (checksum, framing).</summary>
    Corrupt,
    /// <summary>The store's settings are invalid, or its source cannot be opened (not found, access denied); raised
    /// when it is built, or later when the source stops accepting the store's credentials.</summary>
    Configuration,
    /// <summary>The source changed since the store opened it (another ETag, Last-Modified or length): its bytes can no
    /// longer be mixed with the pages already mapped. Not retried.</summary>
    Changed,
}

/// <summary>A store operation failed; <see cref="Error"/> says how.</summary>
public sealed class PageStoreException : PagingException
{
    /// <summary>Creates the exception.</summary>
    public PageStoreException(PageStoreError error, string message, Exception? inner = null) : base(message, inner) => Error = error;

    /// <summary>The kind of failure.</summary>
    public PageStoreError Error { get; }

    /// <summary>True for errors worth retrying (<see cref="PageStoreError.Io"/>).</summary>
    public bool IsTransient => Error == PageStoreError.Io;

    /// <summary>How long the source asked to be left alone before the next attempt, when it said (HTTP
    /// <c>Retry-After</c> on a 429 or 503); null when it did not.</summary>
    public TimeSpan? RetryAfter { get; init; }
}
