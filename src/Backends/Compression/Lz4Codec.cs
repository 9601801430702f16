using Paging.Stores;

namespace Paging.Backends.Compression;

/// <summary>LZ4 block format through liblz4.so.1 (LZ4_compress_default / LZ4_compress_HC for levels above 1,
/// LZ4_decompress_safe, which never reads or writes outside its buffers).</summary>
public sealed unsafe class Lz4Codec : PageCodec
{
    private const string Library = "liblz4.so.1";
    private static readonly Lazy<Lz4Codec> s_instance = new(() => new Lz4Codec(Library));

    private readonly delegate* unmanaged<byte*, byte*, int, int, int> _compress;
    private readonly delegate* unmanaged<byte*, byte*, int, int, int, int> _compressHc;
    private readonly delegate* unmanaged<byte*, byte*, int, int, int> _decompress;
    private readonly delegate* unmanaged<int, int> _bound;

    /// <summary>Loads <paramref name="library"/> (tests pass a name that does not exist to see the error).</summary>
    internal Lz4Codec(string library)
    {
        nint h = NativeCodecLibrary.Load(library, "liblz4-1");
        _compress = (delegate* unmanaged<byte*, byte*, int, int, int>)NativeCodecLibrary.Export(h, "LZ4_compress_default", library);
        _compressHc = (delegate* unmanaged<byte*, byte*, int, int, int, int>)NativeCodecLibrary.Export(h, "LZ4_compress_HC", library);
        _decompress = (delegate* unmanaged<byte*, byte*, int, int, int>)NativeCodecLibrary.Export(h, "LZ4_decompress_safe", library);
        _bound = (delegate* unmanaged<int, int>)NativeCodecLibrary.Export(h, "LZ4_compressBound", library);
    }

    /// <summary>The codec (throws a configuration error when liblz4.so.1 is missing).</summary>
    public static Lz4Codec Instance => s_instance.Value;

    /// <inheritdoc />
    public override PageCodecKind Kind => PageCodecKind.Lz4;

    /// <inheritdoc />
    public override int MaxCompressedLength(int length) => _bound(length);

    /// <summary>1: LZ4's fast mode (LZ4_compress_default).</summary>
    public override int MinLevel => 1;

    /// <summary>12: LZ4HC_CLEVEL_MAX (lz4hc.h); levels 2 to 12 are LZ4 HC.</summary>
    public override int MaxLevel => 12;

    /// <inheritdoc />
    public override int Compress(ReadOnlySpan<byte> source, Span<byte> destination, int level)
    {
        fixed (byte* s = source)
        fixed (byte* d = destination)
        {
            int n = level <= 1 ? _compress(s, d, source.Length, destination.Length) : _compressHc(s, d, source.Length, destination.Length, level);
            if (n <= 0)
            {
                throw new PageStoreException(PageStoreError.OutOfRange, $"LZ4 could not compress {source.Length} bytes into {destination.Length}");
            }
            return n;
        }
    }

    /// <inheritdoc />
    public override void Decompress(ReadOnlySpan<byte> source, Span<byte> destination)
    {
        fixed (byte* s = source)
        fixed (byte* d = destination)
        {
            int n = _decompress(s, d, source.Length, destination.Length);
            if (n != destination.Length)
            {
                throw new PageStoreException(PageStoreError.Corrupt, n < 0
                    ? $"LZ4 block of {source.Length} bytes is malformed (error {n})"
                    : $"LZ4 block of {source.Length} bytes decompressed to {n} bytes, {destination.Length} expected");
            }
        }
    }
}
