namespace Paging;

/// <summary>What a read produced.</summary>
public enum PageReadStatus
{
    /// <summary>The destination holds the bytes.</summary>
    Data = 0,

    /// <summary>Every byte is zero and the destination was not written; the runtime maps zero pages without a copy.</summary>
    Zero = 1,
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
    /// <summary>The store's settings are invalid; raised when it is built.</summary>
    Configuration,
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
}

/// <summary>
/// The source and sink of a region's pages. Runs inside the pager process, built there from a
/// <see cref="PageStoreDescriptor"/>; it is called by one fault thread at a time. Offsets are relative to the
/// region's start; reads past <see cref="Length"/> must yield zeros.
/// </summary>
public interface IPageStore : IDisposable
{
    /// <summary>Bytes the store holds; pages past it read as zeros.</summary>
    long Length { get; }

    /// <summary>True when <see cref="Write"/> is supported.</summary>
    bool CanWrite { get; }

    /// <summary>Fills <paramref name="destination"/> with the bytes at <paramref name="offset"/>, or returns
    /// <see cref="PageReadStatus.Zero"/> without writing when they are all zero. <paramref name="destination"/> may be
    /// the page cache itself (the staging mapping): write it once, in place. Throws <see cref="PageStoreException"/>.</summary>
    PageReadStatus Read(long offset, Span<byte> destination);

    /// <summary>Writes <paramref name="source"/> at <paramref name="offset"/> (write-back). Throws <see cref="PageStoreException"/>.</summary>
    void Write(long offset, ReadOnlySpan<byte> source);
}
