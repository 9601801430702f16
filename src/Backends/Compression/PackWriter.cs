using System.Buffers.Binary;
using Paging.Simd;

namespace Paging.Backends.Compression;

/// <summary>What a pack run did (the tool's summary).</summary>
/// <param name="OriginalBytes">Bytes of the input.</param>
/// <param name="PackedBytes">Bytes of the pack file.</param>
/// <param name="Blocks">Blocks written.</param>
/// <param name="ZeroBlocks">Blocks stored as the zero flag.</param>
/// <param name="RawBlocks">Blocks stored raw (compression did not shrink them).</param>
public readonly record struct PackSummary(long OriginalBytes, long PackedBytes, long Blocks, long ZeroBlocks, long RawBlocks)
{
    /// <summary>Original / packed.</summary>
    public double Ratio => PackedBytes == 0 ? 0 : (double)OriginalBytes / PackedBytes;
}

/// <summary>
/// Writes a pack (<see cref="PackFile"/>) from a stream: blocks are compressed in parallel batches (every core), an
/// all-zero block becomes the zero flag, a block the codec does not shrink is stored raw.
/// </summary>
public static class PackWriter
{
    /// <summary>The level a pack is written at unless told: LZ4 HC level 9 (LZ4HC's own default), zstd 3. A pack is
    /// written once and read on every fault, and HC blocks decode faster as well as being smaller: on the harness's
    /// text-like data, 4 KiB blocks decode in 1.16–1.18 µs against 1.6–1.9 µs for LZ4's fast mode (level 1), at a
    /// ratio of 4.05 against 2.45, for ~5× the packing time (docs/BENCHMARKS.md §22).</summary>
    public static int DefaultLevel(PageCodecKind codec) => codec switch
    {
        PageCodecKind.Lz4 => 9,
        PageCodecKind.Zstd => 3,
        _ => 0,
    };

    /// <summary>Packs <paramref name="input"/> into <paramref name="output"/> (which must be seekable: the header is
    /// written last), at <paramref name="level"/> (from the codec's <see cref="PageCodec.MinLevel"/> to its
    /// <see cref="PageCodec.MaxLevel"/>, else <see cref="ArgumentOutOfRangeException"/>; ignored for
    /// <see cref="PageCodecKind.None"/>). <paramref name="progress"/> gets the input bytes done so far.</summary>
    public static PackSummary Pack(Stream input, Stream output, PageCodecKind codec, int level, int blockSize, Action<long>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(output);
        if (blockSize < PackFile.MinBlockSize || blockSize > PackFile.MaxBlockSize || (blockSize & (blockSize - 1)) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(blockSize), blockSize, $"a power of two in [{PackFile.MinBlockSize}, {PackFile.MaxBlockSize}]");
        }
        var compressor = codec == PageCodecKind.None ? null : PageCodec.For(codec);
        if (compressor is not null && (level < compressor.MinLevel || level > compressor.MaxLevel))
        {
            throw new ArgumentOutOfRangeException(nameof(level), level, $"{codec} levels are {compressor.MinLevel} to {compressor.MaxLevel}");
        }
        output.Position = 0;
        output.Write(new byte[PackFile.HeaderSize]);
        var entries = new List<byte[]>();
        long offset = PackFile.HeaderSize, length = 0, zero = 0, raw = 0;
        int batch = Math.Max(1, Environment.ProcessorCount) * 4;
        var inputs = new byte[batch][];
        var outputs = new byte[batch][];
        var sizes = new int[batch];
        var packedSizes = new int[batch];
        var kinds = new PackBlockKind[batch];
        for (int i = 0; i < batch; i++)
        {
            inputs[i] = new byte[blockSize];
            outputs[i] = new byte[compressor?.MaxCompressedLength(blockSize) ?? blockSize];
        }
        while (true)
        {
            int n = 0;
            for (; n < batch; n++)
            {
                int got = input.ReadAtLeast(inputs[n], blockSize, throwOnEndOfStream: false);
                if (got == 0)
                {
                    break;
                }
                sizes[n] = got;
                if (got < blockSize)
                {
                    n++;
                    break;
                }
            }
            if (n == 0)
            {
                break;
            }
            Parallel.For(0, n, i =>
            {
                var data = inputs[i].AsSpan(0, sizes[i]);
                if (PageCopy.IsZero(data))
                {
                    kinds[i] = PackBlockKind.Zero;
                    return;
                }
                int packed = compressor?.Compress(data, outputs[i], level) ?? int.MaxValue;
                packedSizes[i] = packed;
                kinds[i] = packed < data.Length ? (PackBlockKind)codec : PackBlockKind.Raw;
            });
            for (int i = 0; i < n; i++)
            {
                ReadOnlySpan<byte> stored = kinds[i] switch
                {
                    PackBlockKind.Zero => [],
                    PackBlockKind.Raw => inputs[i].AsSpan(0, sizes[i]),
                    _ => outputs[i].AsSpan(0, packedSizes[i]),
                };
                var entry = new byte[PackFile.EntrySize];
                BinaryPrimitives.WriteInt64LittleEndian(entry, offset);
                BinaryPrimitives.WriteInt32LittleEndian(entry.AsSpan(8), stored.Length);
                BinaryPrimitives.WriteUInt32LittleEndian(entry.AsSpan(12), kinds[i] == PackBlockKind.Zero ? 0 : Crc32C.Compute(stored));
                entry[16] = (byte)kinds[i];
                entries.Add(entry);
                output.Write(stored);
                offset += stored.Length;
                length += sizes[i];
                zero += kinds[i] == PackBlockKind.Zero ? 1 : 0;
                raw += kinds[i] == PackBlockKind.Raw ? 1 : 0;
            }
            progress?.Invoke(length);
            if (sizes[n - 1] < blockSize)
            {
                break;
            }
        }
        var index = new byte[entries.Count * PackFile.EntrySize];
        for (int i = 0; i < entries.Count; i++)
        {
            entries[i].CopyTo(index, i * PackFile.EntrySize);
        }
        output.Write(index);
        Span<byte> trailer = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(trailer, Crc32C.Compute(index));
        output.Write(trailer);
        long fileLength = output.Position;
        Span<byte> h = stackalloc byte[PackFile.HeaderSize];
        h.Clear();
        PackFile.Magic.CopyTo(h);
        BinaryPrimitives.WriteUInt32LittleEndian(h[8..], PackFile.Version);
        BinaryPrimitives.WriteInt32LittleEndian(h[16..], blockSize);
        BinaryPrimitives.WriteInt64LittleEndian(h[24..], length);
        BinaryPrimitives.WriteInt64LittleEndian(h[32..], entries.Count);
        BinaryPrimitives.WriteInt64LittleEndian(h[40..], offset);
        BinaryPrimitives.WriteUInt32LittleEndian(h[60..], Crc32C.Compute(h[..60]));
        output.Position = 0;
        output.Write(h);
        output.Position = fileLength;
        output.Flush();
        return new PackSummary(length, fileLength, entries.Count, zero, raw);
    }
}
