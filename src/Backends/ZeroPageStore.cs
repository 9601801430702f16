namespace Paging.Backends;

/// <summary>Every page is zero: anonymous arenas map them with UFFDIO_ZEROPAGE, shared arenas clear the staging page.</summary>
public sealed class ZeroPageStore : IPageStore
{
    /// <summary>Creates a zero store of <paramref name="length"/> bytes.</summary>
    public ZeroPageStore(long length) => Length = length;

    /// <inheritdoc />
    public long Length { get; }

    /// <inheritdoc />
    public bool CanWrite => false;

    /// <inheritdoc />
    public PageReadStatus Read(long offset, Span<byte> destination)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        return PageReadStatus.Zero;
    }

    /// <inheritdoc />
    public void Write(long offset, ReadOnlySpan<byte> source) =>
        throw new PageStoreException(PageStoreError.ReadOnly, "the zero store cannot be written");

    /// <inheritdoc />
    public void Dispose() { }
}
