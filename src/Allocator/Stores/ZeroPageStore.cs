namespace Paging.Stores;

/// <summary>Every page is zero: anonymous arenas map them with UFFDIO_ZEROPAGE, shared arenas clear the staging page.
/// The one store the core knows (a region's default, like anonymous memory); every other store lives in
/// Paging.Backends with its own descriptor factory.</summary>
public sealed class ZeroPageStore : IPageStore
{
    /// <summary>The store kind on the wire.</summary>
    public const string Kind = "zero";

    /// <summary>Creates a zero store of <paramref name="length"/> bytes.</summary>
    public ZeroPageStore(long length) => Length = length;

    /// <inheritdoc />
    public long Length { get; }

    /// <inheritdoc />
    public PageStoreCapabilities Capabilities => PageStoreCapabilities.None;

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
