using Paging.Stores;

namespace Paging.Backends.Compression;

/// <summary>The codecs a packed store can use; the byte value is what a pack file stores per block.</summary>
public enum PageCodecKind : byte
{
    /// <summary>Stored as is (incompressible data).</summary>
    None = 0,

    /// <summary>LZ4 block format (liblz4.so.1): ~0.7 µs to decompress a 4 KiB page on this CPU.</summary>
    Lz4 = 1,

    /// <summary>Zstandard (libzstd.so.1): a better ratio, slower to decompress.</summary>
    Zstd = 2,
}

/// <summary>
/// A block codec over the system's native library (no managed LZ4/zstd package resolves here). Thread-safe: fill
/// threads decompress concurrently. Compress and decompress work span to span, so a fill decompresses straight into the
/// staging mapping. Corrupt input is a <see cref="PageStoreException"/> (<see cref="PageStoreError.Corrupt"/>); a missing
/// library is a <see cref="PageStoreException"/> (<see cref="PageStoreError.Configuration"/>) that says what to install.
/// </summary>
public abstract class PageCodec
{
    /// <summary>The codec's kind.</summary>
    public abstract PageCodecKind Kind { get; }

    /// <summary>The largest compressed size of <paramref name="length"/> bytes (the destination to give
    /// <see cref="Compress"/>).</summary>
    public abstract int MaxCompressedLength(int length);

    /// <summary>The lowest compression level the codec takes.</summary>
    public abstract int MinLevel { get; }

    /// <summary>The highest compression level the codec takes (its library would quietly use this one for any higher).</summary>
    public abstract int MaxLevel { get; }

    /// <summary>Compresses <paramref name="source"/> into <paramref name="destination"/> at <paramref name="level"/>
    /// (from <see cref="MinLevel"/> to <see cref="MaxLevel"/>); returns the compressed length.</summary>
    public abstract int Compress(ReadOnlySpan<byte> source, Span<byte> destination, int level);

    /// <summary>Decompresses <paramref name="source"/> into exactly <paramref name="destination"/>.Length bytes; anything
    /// else (a short or long result, a malformed stream) is a <see cref="PageStoreError.Corrupt"/> error.</summary>
    public abstract void Decompress(ReadOnlySpan<byte> source, Span<byte> destination);

    /// <summary>The codec of a kind; throws a configuration error when its library is missing.</summary>
    public static PageCodec For(PageCodecKind kind) => kind switch
    {
        PageCodecKind.Lz4 => Lz4Codec.Instance,
        PageCodecKind.Zstd => ZstdCodec.Instance,
        _ => throw new PageStoreException(PageStoreError.Configuration, $"no codec for {kind}"),
    };

    /// <summary>True when the codec's native library can be loaded on this machine.</summary>
    public static bool IsAvailable(PageCodecKind kind)
    {
        try
        {
            _ = For(kind);
            return true;
        }
        catch (PageStoreException)
        {
            return false;
        }
    }
}
