namespace Paging.Testing;

/// <summary>A store over a byte array (synchronous; zeros past its end): the inner store of pack tests, whose bytes a
/// test can damage at will.</summary>
public sealed class MemoryPageStore(byte[] bytes) : IPageStore
{
    public long Length => bytes.Length;

    public PageStoreCapabilities Capabilities => PageStoreCapabilities.None;

    public PageReadStatus Read(long offset, Span<byte> destination)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        destination.Clear();
        if (offset < bytes.Length)
        {
            int n = (int)Math.Min(destination.Length, bytes.Length - offset);
            bytes.AsSpan((int)offset, n).CopyTo(destination);
        }
        return PageReadStatus.Data;
    }

    public void Write(long offset, ReadOnlySpan<byte> source) => throw new PageStoreException(PageStoreError.ReadOnly, "a memory store is read-only");

    public void Dispose()
    {
    }
}
