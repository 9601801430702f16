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
}

/// <summary>An open file and the file offset of store offset 0 (see <see cref="PageStoreCapabilities.FileSource"/>).</summary>
/// <param name="File">The open file; owned by the store.</param>
/// <param name="Offset">The file offset of store offset 0.</param>
public sealed record FileSlice(SafeFileHandle File, long Offset);

/// <summary>
/// The source and sink of a region's pages. Runs inside the pager process, built there from a
/// <see cref="PageStoreDescriptor"/>; it is called by one fault thread at a time. Offsets are relative to the
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

    /// <summary>Writes <paramref name="source"/> at <paramref name="offset"/>. Reserved for write-back (the memory
    /// budget issue): the engine does not call it yet. Throws <see cref="PageStoreException"/>
    /// (<see cref="PageStoreError.ReadOnly"/> without <see cref="PageStoreCapabilities.Write"/>).</summary>
    void Write(long offset, ReadOnlySpan<byte> source);
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
