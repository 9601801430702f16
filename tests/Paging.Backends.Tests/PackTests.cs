using System.Buffers.Binary;
using Paging.Backends.Compression;
using Paging.Testing;

namespace Paging.Backends.Tests;

/// <summary>Contents a pack must round-trip: zeros, random (incompressible), text-like, model-like (bf16 weights:
/// random mantissas, a few exponents), and a mix with zero runs and a partial last block.</summary>
public static class PackContent
{
    public static byte[] Make(string kind, int length, int seed = 1)
    {
        var data = new byte[length];
        var rng = new Random(seed);
        switch (kind)
        {
            case "zeros":
                break;
            case "random":
                rng.NextBytes(data);
                break;
            case "text":
                var words = new[] { "page ", "fault ", "userfaultfd ", "the ", "pager ", "fills ", "region ", "\n" };
                for (int i = 0; i < length;)
                {
                    var w = words[rng.Next(words.Length)];
                    for (int k = 0; k < w.Length && i < length; k++)
                    {
                        data[i++] = (byte)w[k];
                    }
                }
                break;
            case "model":
                for (int i = 0; i + 1 < length; i += 2)
                {
                    // bf16 around N(0, 0.02): sign random, exponent in a narrow band, mantissa random.
                    ushort v = (ushort)((rng.Next(2) << 15) | ((0x78 + rng.Next(6)) << 7) | rng.Next(128));
                    BinaryPrimitives.WriteUInt16LittleEndian(data.AsSpan(i), v);
                }
                break;
            case "mixed":
                rng.NextBytes(data);
                for (int z = 0; z < length; z += 3 * 65536)
                {
                    data.AsSpan(z, Math.Min(100_000, length - z)).Clear();
                }
                break;
            default:
                throw new ArgumentException(kind);
        }
        return data;
    }

    public static byte[] Pack(byte[] data, PageCodecKind codec, int blockSize, out PackSummary summary, int? level = null)
    {
        using var output = new MemoryStream();
        summary = PackWriter.Pack(new MemoryStream(data), output, codec, level ?? PackWriter.DefaultLevel(codec), blockSize);
        return output.ToArray();
    }
}

public sealed class PackTests
{
    [Fact]
    public void Crc32CMatchesTheCheckValueOnBothPaths()
    {
        Assert.Equal(0xE3069283u, Crc32C.Compute("123456789"u8));
        Assert.Equal(0xE3069283u, Crc32C.ComputeWithTable("123456789"u8));
        var data = PackContent.Make("random", 100_003);
        for (int n = 0; n < 64; n++)
        {
            Assert.Equal(Crc32C.ComputeWithTable(data.AsSpan(n, 1000 + n)), Crc32C.Compute(data.AsSpan(n, 1000 + n)));
        }
    }

    /// <summary>Every codec × block size × content kind at the default level, and LZ4's fast mode (level 1) too.</summary>
    public static TheoryData<PageCodecKind, int, string, int> Cases()
    {
        var data = new TheoryData<PageCodecKind, int, string, int>();
        foreach (var codec in new[] { PageCodecKind.None, PageCodecKind.Lz4, PageCodecKind.Zstd })
        {
            foreach (int block in new[] { 4096, 65536, 1 << 20 })
            {
                foreach (var kind in new[] { "zeros", "random", "text", "model", "mixed" })
                {
                    data.Add(codec, block, kind, PackWriter.DefaultLevel(codec));
                    if (codec == PageCodecKind.Lz4)
                    {
                        data.Add(codec, block, kind, 1);
                    }
                }
            }
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task EveryCodecBlockSizeAndContentRoundTrips(PageCodecKind codec, int blockSize, string kind, int level)
    {
        var original = PackContent.Make(kind, (3 << 20) + 4096 + 1000, seed: blockSize);
        var pack = PackContent.Pack(original, codec, blockSize, out var summary, level);
        Assert.Equal(original.Length, summary.OriginalBytes);
        Assert.Equal(pack.Length, summary.PackedBytes);
        if (kind == "zeros")
        {
            Assert.Equal(summary.Blocks, summary.ZeroBlocks);
        }
        if (kind is "text" && codec != PageCodecKind.None)
        {
            Assert.True(summary.Ratio > 2, $"ratio {summary.Ratio:0.00}");
        }
        using var store = new CompressedPageStore(new MemoryPageStore(pack), "test.pgz");
        Assert.Equal(original.Length, store.Length);
        var rng = new Random(7);
        // Aligned pages, whole blocks, reads across blocks and past the end, odd offsets inside a block.
        // Also a read that starts inside the partial last block's block but past the data (the pager reads whole pages).
        long lastPage = (original.Length + 4095) / 4096 * 4096;
        var reads = new List<(long Offset, int Length)> { (0, original.Length), (0, 4096), (blockSize, blockSize), (original.Length - 5000, 8192), (lastPage, 4096), (lastPage - 4096, 12288) };
        for (int i = 0; i < 30; i++)
        {
            reads.Add((rng.NextInt64(original.Length / 4096) * 4096, 4096 * rng.Next(1, 40)));
        }
        foreach (var (offset, length) in reads)
        {
            var buffer = new byte[length];
            Array.Fill(buffer, (byte)0xCD);
            var status = i2(store.Read(offset, buffer), buffer);
            AssertSame(original, offset, buffer, status);
            Array.Fill(buffer, (byte)0xCD);
            status = i2(await store.ReadAsync(offset, buffer, CancellationToken.None), buffer);
            AssertSame(original, offset, buffer, status);
        }

        static PageReadStatus i2(PageReadStatus s, byte[] b)
        {
            if (s == PageReadStatus.Zero)
            {
                Array.Clear(b);
            }
            return s;
        }
    }

    private static void AssertSame(byte[] original, long offset, byte[] got, PageReadStatus status)
    {
        for (int i = 0; i < got.Length; i++)
        {
            byte want = offset + i < original.Length ? original[offset + i] : (byte)0;
            if (got[i] != want)
            {
                Assert.Fail($"byte {offset + i}: expected {want}, got {got[i]} (status {status})");
            }
        }
    }

    /// <summary>A level the codec does not have is refused by name (liblz4 and libzstd would quietly use their
    /// highest); each codec's lowest and highest levels pack and read back.</summary>
    [Theory]
    [InlineData(PageCodecKind.Lz4)]
    [InlineData(PageCodecKind.Zstd)]
    public void LevelsOutsideTheCodecsRangeAreRefused(PageCodecKind codec)
    {
        var codecImpl = PageCodec.For(codec);
        var original = PackContent.Make("text", 3 * 4096 + 100, seed: 5);
        foreach (int bad in new[] { codecImpl.MaxLevel + 1, 99, codecImpl.MinLevel - 1 })
        {
            var e = Assert.Throws<ArgumentOutOfRangeException>(() => PackContent.Pack(original, codec, 4096, out _, bad));
            Assert.Contains($"{codec} levels are {codecImpl.MinLevel} to {codecImpl.MaxLevel}", e.Message, StringComparison.Ordinal);
        }
        foreach (int level in new[] { codecImpl.MinLevel, codecImpl.MaxLevel })
        {
            using var store = new CompressedPageStore(new MemoryPageStore(PackContent.Pack(original, codec, 4096, out _, level)), "test.pgz");
            var back = new byte[original.Length];
            store.Read(0, back);
            Assert.Equal(original, back);
        }
        Assert.Equal(codec == PageCodecKind.Lz4 ? 12 : 22, codecImpl.MaxLevel);
    }

    /// <summary>The strict reader against damaged packs: every case either reads the exact original bytes (the damage
    /// was harmless — impossible here, every byte is covered by a checksum) or fails with Corrupt; nothing else, never a
    /// wrong byte. PAGING_FUZZ_CASES sets the count (default 100000).</summary>
    [Fact]
    public void DamagedPacksAreCorruptErrorsNeverWrongBytes()
    {
        int cases = int.TryParse(Environment.GetEnvironmentVariable("PAGING_FUZZ_CASES"), out int n) ? n : 100_000;
        var original = PackContent.Make("random", 40_000 + 3 * 4096, seed: 3); // raw blocks, a partial last block
        original.AsSpan(4096, 4096).Fill(7); // a compressible block
        original.AsSpan(8192, 8192).Clear(); // zero blocks
        var good = PackContent.Pack(original, PageCodecKind.Lz4, 4096, out var summary);
        Assert.True(summary.ZeroBlocks > 0 && summary.RawBlocks > 0 && summary.Blocks > summary.ZeroBlocks + summary.RawBlocks, $"{summary}");
        var rng = new Random(11);
        var buffer = new byte[original.Length + 4096];
        int corrupt = 0, harmless = 0;
        for (int c = 0; c < cases; c++)
        {
            var bad = Damage(good, rng);
            try
            {
                using var store = new CompressedPageStore(new MemoryPageStore(bad), "fuzz.pgz");
                // Read it all, then a few pages on their own (partial-block and whole-block paths).
                var status = store.Read(0, buffer);
                if (status == PageReadStatus.Zero)
                {
                    Array.Clear(buffer);
                }
                if (store.Length != original.Length || !buffer.AsSpan(0, original.Length).SequenceEqual(original) || buffer.AsSpan(original.Length).ContainsAnyExcept((byte)0))
                {
                    Assert.Fail($"case {c}: a damaged pack read without an error and gave other bytes");
                }
                harmless++;
            }
            catch (PageStoreException e) when (e.Error == PageStoreError.Corrupt)
            {
                corrupt++;
            }
        }
        Assert.Equal(cases, corrupt + harmless);
        Assert.True(corrupt > cases * 0.9, $"{corrupt} of {cases} damaged packs were refused");
    }

    private static byte[] Damage(byte[] good, Random rng)
    {
        switch (rng.Next(5))
        {
            case 0: // one bit
            {
                var b = (byte[])good.Clone();
                int at = rng.Next(b.Length);
                b[at] ^= (byte)(1 << rng.Next(8));
                return b;
            }
            case 1: // a few random bytes
            {
                var b = (byte[])good.Clone();
                for (int k = rng.Next(1, 6); k > 0; k--)
                {
                    b[rng.Next(b.Length)] = (byte)rng.Next(256);
                }
                return b;
            }
            case 2: // truncated
                return good.AsSpan(0, rng.Next(good.Length)).ToArray();
            case 3: // bytes appended
            {
                var b = new byte[good.Length + rng.Next(1, 100)];
                good.CopyTo(b, 0);
                rng.NextBytes(b.AsSpan(good.Length));
                return b;
            }
            default: // a header or index field set to a random value, checksum left alone
            {
                var b = (byte[])good.Clone();
                int at = rng.Next(2) == 0 ? rng.Next(PackFile.HeaderSize) : b.Length - 4 - rng.Next(Math.Min(b.Length - 4, 200));
                b[at] = (byte)rng.Next(256);
                return b;
            }
        }
    }

    [Fact]
    public void TheToolsErrorsNameTheBlock()
    {
        var original = PackContent.Make("text", 64 * 1024);
        var pack = PackContent.Pack(original, PageCodecKind.Lz4, 4096, out _);
        pack[PackFile.HeaderSize + 10] ^= 0x40; // inside block 0's stored bytes
        using var store = new CompressedPageStore(new MemoryPageStore(pack), "named.pgz");
        var e = Assert.Throws<PageStoreException>(() => store.Read(0, new byte[4096]));
        Assert.Equal(PageStoreError.Corrupt, e.Error);
        Assert.Contains("named.pgz", e.Message);
        Assert.Contains("block 0", e.Message);
        Assert.Contains("checksum", e.Message);
    }
}

/// <summary>The contract suite over a pack of the contract's content (LZ4, 64 KiB blocks) in a file.</summary>
public sealed class CompressedStoreContract : PageStoreContract, IDisposable
{
    private readonly TempFile _content = TestData.CreateFile(ContentLength, seed: 12);
    private readonly string _pack = Path.Combine(Path.GetTempPath(), $"paging-pack-{Environment.ProcessId}-{Guid.NewGuid():N}.pgz");

    public CompressedStoreContract()
    {
        using var input = File.OpenRead(_content.Path);
        using var output = File.Create(_pack);
        PackWriter.Pack(input, output, PageCodecKind.Lz4, 1, 65536);
    }

    protected override bool SupportsWrite => false;

    protected override IPageStore CreateStore(bool writable, out Func<long, byte> expected)
    {
        expected = TestStores.Expected(_content);
        return BuiltInPageStores.CreateRegistry().Create(new PageStoreContext(PageStoreDescriptor.Compressed(_pack), 4 << 20, 4096));
    }

    public void Dispose()
    {
        _content.Dispose();
        File.Delete(_pack);
    }
}
