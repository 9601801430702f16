using System.Buffers.Binary;
using Paging.Simd;
using Paging.Stores;

namespace Paging.Backends.Compression;

/// <summary>How one block of a pack is stored (the byte in its index entry).</summary>
public enum PackBlockKind : byte
{
    /// <summary>The block's bytes as they are (incompressible data).</summary>
    Raw = 0,

    /// <summary>LZ4 block format.</summary>
    Lz4 = 1,

    /// <summary>Zstandard frame.</summary>
    Zstd = 2,

    /// <summary>Every byte is zero; nothing is stored.</summary>
    Zero = 3,
}

/// <summary>One block's index entry.</summary>
/// <param name="Offset">Pack-file offset of the stored bytes.</param>
/// <param name="Length">Stored bytes (0 for a zero block).</param>
/// <param name="Crc">CRC-32C of the stored bytes.</param>
/// <param name="Kind">How they are stored.</param>
public readonly record struct PackBlock(long Offset, int Length, uint Crc, PackBlockKind Kind);

/// <summary>
/// The pack format (<c>.pgz</c>, docs/PACK-FORMAT.md): a 64-byte header, the blocks' stored bytes, an index of 24 bytes
/// per block, and a 4-byte CRC-32C of the index. Every block but the last holds <see cref="BlockSize"/> bytes of the
/// original (a power of two from 4 KiB to 1 MiB, chosen when packing); each is stored raw, compressed (LZ4, zstd) or as
/// a zero flag, with its own CRC-32C. <see cref="Open"/> is the strict reader: any header, index or layout that is not
/// exactly what <see cref="PackWriter"/> writes is a <see cref="PageStoreException"/> (<see cref="PageStoreError.Corrupt"/>)
/// naming what is wrong; a block's bytes are checked (CRC, exact decompressed size) when it is read.
/// </summary>
public sealed class PackFile
{
    /// <summary>"PGZPACK\0".</summary>
    public static ReadOnlySpan<byte> Magic => "PGZPACK\0"u8;

    /// <summary>The only version this reader reads.</summary>
    public const uint Version = 1;

    /// <summary>Header bytes.</summary>
    public const int HeaderSize = 64;

    /// <summary>Index bytes per block.</summary>
    public const int EntrySize = 24;

    /// <summary>Smallest block: one page.</summary>
    public const int MinBlockSize = 4096;

    /// <summary>Largest block: 1 MiB (a read of one page decompresses at most this much).</summary>
    public const int MaxBlockSize = 1 << 20;

    private readonly PackBlock[] _blocks;

    private PackFile(string name, int blockSize, long length, PackBlock[] blocks, long indexOffset)
    {
        Name = name;
        BlockSize = blockSize;
        BlockShift = System.Numerics.BitOperations.Log2((uint)blockSize);
        Length = length;
        _blocks = blocks;
        IndexOffset = indexOffset;
    }

    /// <summary>What errors call the pack (a path or URL).</summary>
    public string Name { get; }

    /// <summary>Original bytes per block.</summary>
    public int BlockSize { get; }

    /// <summary>Log2 of <see cref="BlockSize"/>.</summary>
    public int BlockShift { get; }

    /// <summary>Original length.</summary>
    public long Length { get; }

    /// <summary>Pack-file offset of the index.</summary>
    public long IndexOffset { get; }

    /// <summary>The blocks.</summary>
    public ReadOnlySpan<PackBlock> Blocks => _blocks;

    /// <summary>Original bytes held by block <paramref name="index"/> (the last may be short).</summary>
    public int BlockLength(long index) => (int)Math.Min(BlockSize, Length - (index << BlockShift));

    /// <summary>Stored bytes of all blocks.</summary>
    public long StoredBytes
    {
        get
        {
            long sum = 0;
            foreach (var b in _blocks)
            {
                sum += b.Length;
            }
            return sum;
        }
    }

    private static PageStoreException Corrupt(string name, string what) => new(PageStoreError.Corrupt, $"{name}: not a valid pack: {what}");

    /// <summary>Reads and checks the header and index. <paramref name="read"/> reads exactly the bytes asked at a
    /// pack-file offset (short only at the end of the file: it returns how many it read).</summary>
    public static PackFile Open(string name, long fileLength, Func<long, Span<byte>, int> read)
    {
        ArgumentNullException.ThrowIfNull(read);
        if (fileLength < HeaderSize + 4)
        {
            throw Corrupt(name, $"{fileLength} bytes, shorter than a header and an index checksum ({HeaderSize + 4})");
        }
        Span<byte> h = stackalloc byte[HeaderSize];
        if (read(0, h) != HeaderSize)
        {
            throw Corrupt(name, "the header is truncated");
        }
        if (!h[..8].SequenceEqual(Magic))
        {
            throw Corrupt(name, "no PGZPACK magic at offset 0");
        }
        uint version = BinaryPrimitives.ReadUInt32LittleEndian(h[8..]);
        if (version != Version)
        {
            throw Corrupt(name, $"version {version}; this reader reads version {Version}");
        }
        uint headerCrc = BinaryPrimitives.ReadUInt32LittleEndian(h[60..]);
        if (Crc32C.Compute(h[..60]) != headerCrc)
        {
            throw Corrupt(name, "the header's checksum does not match");
        }
        uint flags = BinaryPrimitives.ReadUInt32LittleEndian(h[12..]);
        int blockSize = BinaryPrimitives.ReadInt32LittleEndian(h[16..]);
        long length = BinaryPrimitives.ReadInt64LittleEndian(h[24..]);
        long count = BinaryPrimitives.ReadInt64LittleEndian(h[32..]);
        long indexOffset = BinaryPrimitives.ReadInt64LittleEndian(h[40..]);
        if (flags != 0 || BinaryPrimitives.ReadUInt32LittleEndian(h[20..]) != 0 || BinaryPrimitives.ReadInt64LittleEndian(h[48..]) != 0
            || BinaryPrimitives.ReadUInt32LittleEndian(h[56..]) != 0)
        {
            throw Corrupt(name, "reserved header fields are not zero");
        }
        if (blockSize < MinBlockSize || blockSize > MaxBlockSize || (blockSize & (blockSize - 1)) != 0)
        {
            throw Corrupt(name, $"block size {blockSize} is not a power of two in [{MinBlockSize}, {MaxBlockSize}]");
        }
        if (length < 0 || count != (length + blockSize - 1) / blockSize)
        {
            throw Corrupt(name, $"{count} blocks for an original length of {length} in blocks of {blockSize}");
        }
        if (count > (fileLength - HeaderSize - 4) / EntrySize || indexOffset != fileLength - 4 - count * EntrySize || indexOffset < HeaderSize)
        {
            throw Corrupt(name, $"the index of {count} blocks at {indexOffset} does not end 4 bytes before the end of the {fileLength}-byte file");
        }
        int indexBytes = checked((int)(count * EntrySize));
        var index = new byte[indexBytes + 4];
        if (read(indexOffset, index) != index.Length)
        {
            throw Corrupt(name, "the index is truncated");
        }
        if (Crc32C.Compute(index.AsSpan(0, indexBytes)) != BinaryPrimitives.ReadUInt32LittleEndian(index.AsSpan(indexBytes)))
        {
            throw Corrupt(name, "the index's checksum does not match");
        }
        var blocks = new PackBlock[count];
        long expectedOffset = HeaderSize;
        for (long i = 0; i < count; i++)
        {
            var e = index.AsSpan((int)(i * EntrySize), EntrySize);
            long offset = BinaryPrimitives.ReadInt64LittleEndian(e);
            int stored = BinaryPrimitives.ReadInt32LittleEndian(e[8..]);
            uint crc = BinaryPrimitives.ReadUInt32LittleEndian(e[12..]);
            var kind = (PackBlockKind)e[16];
            int original = (int)Math.Min(blockSize, length - i * blockSize);
            if (e[17] != 0 || e[18] != 0 || e[19] != 0 || BinaryPrimitives.ReadUInt32LittleEndian(e[20..]) != 0)
            {
                throw Corrupt(name, $"block {i}: reserved index fields are not zero");
            }
            // Blocks are stored in order, back to back, from the end of the header to the index.
            if (offset != expectedOffset)
            {
                throw Corrupt(name, $"block {i} is at {offset}, expected {expectedOffset} (blocks are stored in order, back to back)");
            }
            bool fits = kind switch
            {
                PackBlockKind.Zero => stored == 0,
                PackBlockKind.Raw => stored == original,
                PackBlockKind.Lz4 or PackBlockKind.Zstd => stored > 0 && stored < original,
                _ => throw Corrupt(name, $"block {i} has unknown kind {(byte)kind}"),
            };
            if (!fits)
            {
                throw Corrupt(name, $"block {i}: {stored} stored bytes for a {kind} block of {original} bytes");
            }
            if (kind == PackBlockKind.Zero && crc != 0)
            {
                throw Corrupt(name, $"block {i}: a zero block with a checksum");
            }
            expectedOffset = offset + stored;
            blocks[i] = new PackBlock(offset, stored, crc, kind);
        }
        if (expectedOffset != indexOffset)
        {
            throw Corrupt(name, $"the blocks end at {expectedOffset}, the index starts at {indexOffset}");
        }
        // A codec the pack uses must be loadable now: a missing library is an error when the store opens, not at a fault.
        foreach (var b in blocks)
        {
            if (b.Kind is PackBlockKind.Lz4 or PackBlockKind.Zstd)
            {
                _ = PageCodec.For((PageCodecKind)b.Kind);
            }
        }
        return new PackFile(name, blockSize, length, blocks, indexOffset);
    }

    /// <summary>Checks block <paramref name="index"/>'s stored bytes and writes its original bytes to
    /// <paramref name="destination"/> (exactly <see cref="BlockLength"/> bytes). Zero blocks clear it.</summary>
    public void Decode(long index, ReadOnlySpan<byte> stored, Span<byte> destination)
    {
        var b = _blocks[index];
        if (destination.Length != BlockLength(index))
        {
            throw new ArgumentException($"block {index} holds {BlockLength(index)} bytes, not {destination.Length}", nameof(destination));
        }
        if (stored.Length != b.Length)
        {
            throw Corrupt(Name, $"block {index}: read {stored.Length} of its {b.Length} stored bytes (the file is shorter than its index says)");
        }
        if (b.Kind == PackBlockKind.Zero)
        {
            destination.Clear();
            return;
        }
        if (Crc32C.Compute(stored) != b.Crc)
        {
            throw Corrupt(Name, $"block {index} (at {b.Offset}, {b.Length} bytes): checksum mismatch");
        }
        try
        {
            switch (b.Kind)
            {
                case PackBlockKind.Raw:
                    PageCopy.Copy(stored, destination, nonTemporal: false);
                    break;
                default:
                    PageCodec.For((PageCodecKind)b.Kind).Decompress(stored, destination);
                    break;
            }
        }
        catch (PageStoreException e) when (e.Error == PageStoreError.Corrupt)
        {
            throw new PageStoreException(PageStoreError.Corrupt, $"{Name}: block {index} (at {b.Offset}): {e.Message}", e);
        }
    }
}
