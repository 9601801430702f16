namespace Paging.Testing;

/// <summary>A store over a byte array (synchronous; zeros past its end): the inner store of pack tests, whose bytes a
/// test can damage at will.</summary>
public sealed class MemoryPageStore(byte[] bytes, bool writable = false) : IPageStore
{
    private long _reads;

    public long Length => bytes.Length;

    public PageStoreCapabilities Capabilities => writable ? PageStoreCapabilities.Write : PageStoreCapabilities.None;

    /// <summary>Reads served (a decorator's tests check it was or was not asked).</summary>
    public long Reads => Volatile.Read(ref _reads);

    public PageReadStatus Read(long offset, Span<byte> destination)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        Interlocked.Increment(ref _reads);
        destination.Clear();
        if (offset < bytes.Length)
        {
            int n = (int)Math.Min(destination.Length, bytes.Length - offset);
            bytes.AsSpan((int)offset, n).CopyTo(destination);
        }
        return PageReadStatus.Data;
    }

    public void Write(long offset, ReadOnlySpan<byte> source)
    {
        if (!writable)
        {
            throw new PageStoreException(PageStoreError.ReadOnly, "this memory store is read-only");
        }
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(offset + source.Length, bytes.Length, nameof(offset));
        source.CopyTo(bytes.AsSpan((int)offset));
    }

    public void Dispose()
    {
    }
}
