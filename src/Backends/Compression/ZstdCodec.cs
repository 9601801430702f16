using System.Runtime.InteropServices;
using Paging.Stores;

namespace Paging.Backends.Compression;

/// <summary>Zstandard through libzstd.so.1. Decompression uses one ZSTD_DCtx per thread (created on first use and
/// kept: a fill thread lives as long as its pager), so a page costs no context allocation; the frame must carry its
/// content size and it must be exactly the destination's length.</summary>
public sealed unsafe class ZstdCodec : PageCodec
{
    private const string Library = "libzstd.so.1";
    private static readonly Lazy<ZstdCodec> s_instance = new(() => new ZstdCodec(Library));

    [ThreadStatic]
    private static nint t_dctx;

    private readonly delegate* unmanaged<byte*, nuint, byte*, nuint, int, nuint> _compress;
    private readonly delegate* unmanaged<nint, byte*, nuint, byte*, nuint, nuint> _decompressDctx;
    private readonly delegate* unmanaged<nint> _createDctx;
    private readonly delegate* unmanaged<nuint, nuint> _bound;
    private readonly delegate* unmanaged<nuint, uint> _isError;
    private readonly delegate* unmanaged<nuint, byte*> _errorName;
    private readonly delegate* unmanaged<byte*, nuint, ulong> _contentSize;
    private readonly int _minLevel, _maxLevel;

    internal ZstdCodec(string library)
    {
        nint h = NativeCodecLibrary.Load(library, "libzstd1");
        _compress = (delegate* unmanaged<byte*, nuint, byte*, nuint, int, nuint>)NativeCodecLibrary.Export(h, "ZSTD_compress", library);
        _decompressDctx = (delegate* unmanaged<nint, byte*, nuint, byte*, nuint, nuint>)NativeCodecLibrary.Export(h, "ZSTD_decompressDCtx", library);
        _createDctx = (delegate* unmanaged<nint>)NativeCodecLibrary.Export(h, "ZSTD_createDCtx", library);
        _bound = (delegate* unmanaged<nuint, nuint>)NativeCodecLibrary.Export(h, "ZSTD_compressBound", library);
        _isError = (delegate* unmanaged<nuint, uint>)NativeCodecLibrary.Export(h, "ZSTD_isError", library);
        _errorName = (delegate* unmanaged<nuint, byte*>)NativeCodecLibrary.Export(h, "ZSTD_getErrorName", library);
        _contentSize = (delegate* unmanaged<byte*, nuint, ulong>)NativeCodecLibrary.Export(h, "ZSTD_getFrameContentSize", library);
        _minLevel = ((delegate* unmanaged<int>)NativeCodecLibrary.Export(h, "ZSTD_minCLevel", library))();
        _maxLevel = ((delegate* unmanaged<int>)NativeCodecLibrary.Export(h, "ZSTD_maxCLevel", library))();
    }

    /// <summary>The codec (throws a configuration error when libzstd.so.1 is missing).</summary>
    public static ZstdCodec Instance => s_instance.Value;

    /// <inheritdoc />
    public override PageCodecKind Kind => PageCodecKind.Zstd;

    /// <inheritdoc />
    public override int MaxCompressedLength(int length) => checked((int)_bound((nuint)length));

    /// <summary>The library's ZSTD_minCLevel(): negative levels are zstd's fast modes; 0 is its default (3).</summary>
    public override int MinLevel => _minLevel;

    /// <summary>The library's ZSTD_maxCLevel() (22).</summary>
    public override int MaxLevel => _maxLevel;

    private string ErrorName(nuint code) => Marshal.PtrToStringUTF8((nint)_errorName(code)) ?? $"error {code}";

    /// <inheritdoc />
    public override int Compress(ReadOnlySpan<byte> source, Span<byte> destination, int level)
    {
        fixed (byte* s = source)
        fixed (byte* d = destination)
        {
            nuint n = _compress(d, (nuint)destination.Length, s, (nuint)source.Length, level);
            if (_isError(n) != 0)
            {
                throw new PageStoreException(PageStoreError.OutOfRange, $"zstd could not compress {source.Length} bytes: {ErrorName(n)}");
            }
            return (int)n;
        }
    }

    /// <inheritdoc />
    public override void Decompress(ReadOnlySpan<byte> source, Span<byte> destination)
    {
        fixed (byte* s = source)
        fixed (byte* d = destination)
        {
            // The frame header must declare exactly this many bytes (ZSTD_CONTENTSIZE_UNKNOWN/ERROR are huge values).
            ulong declared = _contentSize(s, (nuint)source.Length);
            if (declared != (ulong)destination.Length)
            {
                throw new PageStoreException(PageStoreError.Corrupt, declared >= ulong.MaxValue - 1
                    ? $"zstd frame of {source.Length} bytes has no readable content size (malformed header)"
                    : $"zstd frame of {source.Length} bytes declares {declared} bytes, {destination.Length} expected");
            }
            if (t_dctx == 0)
            {
                t_dctx = _createDctx();
                if (t_dctx == 0)
                {
                    throw new PageStoreException(PageStoreError.Io, "ZSTD_createDCtx failed (out of memory)");
                }
            }
            nuint n = _decompressDctx(t_dctx, d, (nuint)destination.Length, s, (nuint)source.Length);
            if (_isError(n) != 0 || n != (nuint)destination.Length)
            {
                throw new PageStoreException(PageStoreError.Corrupt, _isError(n) != 0
                    ? $"zstd frame of {source.Length} bytes is malformed: {ErrorName(n)}"
                    : $"zstd frame of {source.Length} bytes decompressed to {n} bytes, {destination.Length} expected");
            }
        }
    }
}
