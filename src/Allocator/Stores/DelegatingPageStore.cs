namespace Paging.Stores;

/// <summary>
/// The base of store decorators (latency, fault injection, tiering): every call goes to the inner store unless
/// overridden. A decorator does not pass on <see cref="PageStoreCapabilities.FileSource"/>: the engine would splice
/// from the file and bypass the decorator's <see cref="Read"/>. Override <see cref="FileSource"/> to opt back in.
/// </summary>
public abstract class DelegatingPageStore : IPageStore
{
    /// <summary>Wraps <paramref name="inner"/>; disposing this store disposes it.</summary>
    protected DelegatingPageStore(IPageStore inner)
    {
        ArgumentNullException.ThrowIfNull(inner);
        Inner = inner;
    }

    /// <summary>The wrapped store.</summary>
    protected IPageStore Inner { get; }

    /// <inheritdoc />
    public virtual long Length => Inner.Length;

    /// <inheritdoc />
    public virtual PageStoreCapabilities Capabilities => Inner.Capabilities & ~PageStoreCapabilities.FileSource;

    /// <inheritdoc />
    public virtual FileSlice? FileSource => null;

    /// <inheritdoc />
    public virtual PageReadStatus Read(long offset, Span<byte> destination) => Inner.Read(offset, destination);

    /// <inheritdoc />
    public virtual ValueTask<PageReadStatus> ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken) =>
        Inner.ReadAsync(offset, destination, cancellationToken);

    /// <summary>Each request through this store's own <see cref="ReadAsync"/>: handing the batch to the inner store
    /// would bypass the decorator (its latency, its faults, its decoding). A decorator that keeps the inner store's
    /// bytes unchanged may override this to pass the batch on.</summary>
    public virtual ValueTask ReadManyAsync(ReadOnlyMemory<PageReadRequest> requests, Memory<PageReadStatus> statuses, CancellationToken cancellationToken) =>
        IPageStore.ReadEachAsync(this, requests, statuses, cancellationToken);

    /// <inheritdoc />
    public virtual void Write(long offset, ReadOnlySpan<byte> source) => Inner.Write(offset, source);

    /// <inheritdoc />
    public virtual void Flush() => Inner.Flush();

    /// <inheritdoc />
    public virtual void Retain(long offset, ReadOnlySpan<byte> pages) => Inner.Retain(offset, pages);

    /// <inheritdoc />
    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Disposes the inner store.</summary>
    protected virtual void Dispose(bool disposing)
    {
        if (disposing)
        {
            Inner.Dispose();
        }
    }
}
