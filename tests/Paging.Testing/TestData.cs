using System.Buffers.Binary;

namespace Paging.Testing;

/// <summary>Deterministic file contents: every 8-byte word encodes its own file offset and a seed, so any misplaced,
/// stale or zeroed page is detected by position.</summary>
public static class TestData
{
    public static ulong WordAt(long offset, ulong seed) => ((ulong)offset * 0x9E3779B97F4A7C15UL) ^ seed ^ 0xA5A5_0000_0000_5A5AUL;

    public static void Fill(Span<byte> destination, long fileOffset, ulong seed)
    {
        Span<byte> word = stackalloc byte[8];
        for (int i = 0; i < destination.Length; i += 8)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(word, WordAt(fileOffset + i, seed));
            word[..Math.Min(8, destination.Length - i)].CopyTo(destination[i..]);
        }
    }

    /// <summary>The file's content as words (one per 8 bytes): the starting model of tests that write into it.</summary>
    public static ulong[] Words(TempFile file)
    {
        var words = new ulong[file.Length / 8];
        for (long w = 0; w < words.Length; w++)
        {
            words[w] = WordAt(w * 8, file.Seed);
        }
        return words;
    }

    /// <summary>Creates a file of <paramref name="length"/> bytes (a multiple of 8) in a temp folder.</summary>
    public static TempFile CreateFile(long length, ulong seed = 1, string? directory = null, string? name = null)
    {
        var path = Path.Combine(directory ?? Path.GetTempPath(), name ?? $"paging-test-{Environment.ProcessId}-{Guid.NewGuid():N}.bin");
        using (var fs = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
        {
            var buffer = new byte[1 << 20];
            for (long off = 0; off < length; off += buffer.Length)
            {
                int n = (int)Math.Min(buffer.Length, length - off);
                Fill(buffer.AsSpan(0, n), off, seed);
                fs.Write(buffer, 0, n);
            }
        }
        return new TempFile(path, length, seed);
    }

    /// <summary>Returns the offset of the first byte in <paramref name="actual"/> that differs from the file's
    /// content at <paramref name="fileOffset"/> (bytes at or past <paramref name="fileLength"/> must be zero), or -1.</summary>
    public static long FirstMismatch(ReadOnlySpan<byte> actual, long fileOffset, long fileLength, ulong seed)
    {
        Span<byte> word = stackalloc byte[8];
        for (int i = 0; i < actual.Length; i += 8)
        {
            long at = fileOffset + i;
            BinaryPrimitives.WriteUInt64LittleEndian(word, WordAt(at, seed));
            if (at + 8 > fileLength)
            {
                // Bytes at or past end-of-file read as zeros (a word may straddle it).
                word[(int)Math.Clamp(fileLength - at, 0, 8)..].Clear();
            }
            int n = Math.Min(8, actual.Length - i);
            if (!actual.Slice(i, n).SequenceEqual(word[..n]))
            {
                return i;
            }
        }
        return -1;
    }
}

public sealed class TempFile(string path, long length, ulong seed) : IDisposable
{
    public string Path { get; } = path;
    public long Length { get; } = length;
    public ulong Seed { get; } = seed;

    public void Dispose()
    {
        try { File.Delete(Path); } catch (IOException) { }
    }
}

/// <summary>Stores over known content, for the contract suite.</summary>
public static class TestStores
{
    /// <summary>A file store over <paramref name="file"/> starting at <paramref name="sliceOffset"/>, and the byte
    /// expected at each store offset.</summary>
    public static IPageStore FileSlice(TempFile file, long sliceOffset, bool writable, out Func<long, byte> expected)
    {
        expected = Expected(file, sliceOffset);
        return new Paging.Backends.FilePageStore(file.Path, sliceOffset, writable);
    }

    /// <summary>The byte expected at each store offset of a store over <paramref name="file"/> from
    /// <paramref name="sliceOffset"/> (zeros past its end).</summary>
    public static Func<long, byte> Expected(TempFile file, long sliceOffset = 0) => offset =>
    {
        long at = offset + sliceOffset;
        if (at >= file.Length)
        {
            return 0;
        }
        Span<byte> word = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(word, TestData.WordAt(at & ~7L, file.Seed));
        return word[(int)(at & 7)];
    };
}
