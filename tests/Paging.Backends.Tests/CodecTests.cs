using System.Buffers.Binary;
using System.Text;
using Paging.Backends.Compression;

namespace Paging.Backends.Tests;

/// <summary>The LZ4 and zstd codecs over the system libraries: round trips for every codec × block size × content
/// kind, corrupt and truncated input as Corrupt errors (never a wrong byte, never a read outside the buffers), and a
/// missing library as a configuration error that names the package.</summary>
public sealed class CodecTests
{
    public static TheoryData<PageCodecKind, int, string> Cases()
    {
        var data = new TheoryData<PageCodecKind, int, string>();
        foreach (var codec in new[] { PageCodecKind.Lz4, PageCodecKind.Zstd })
        {
            foreach (int block in new[] { 4096, 65536, 1 << 20 })
            {
                foreach (string content in new[] { "zeros", "random", "text", "weights" })
                {
                    data.Add(codec, block, content);
                }
            }
        }
        return data;
    }

    /// <summary>Content of a kind: zeros, random bytes (incompressible), text-like, and model-like (bf16 values of a
    /// smooth distribution: the high bytes repeat, the low bytes do not).</summary>
    internal static byte[] Content(string kind, int length, int seed = 7)
    {
        var bytes = new byte[length];
        var rng = new Random(seed);
        switch (kind)
        {
            case "random":
                rng.NextBytes(bytes);
                break;
            case "text":
                var words = "the pager fills a page from its store when a thread first touches it and maps it with one ioctl ".Split(' ');
                var sb = new StringBuilder();
                while (sb.Length < length)
                {
                    sb.Append(words[rng.Next(words.Length)]).Append(rng.Next(8) == 0 ? ".\n" : " ");
                }
                Encoding.ASCII.GetBytes(sb.ToString(0, length), bytes);
                break;
            case "weights":
                for (int i = 0; i + 1 < length; i += 2)
                {
                    float v = (float)(rng.NextDouble() * 2 - 1) * 0.02f;
                    BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(i), (ushort)(BitConverter.SingleToUInt32Bits(v) >> 16));
                }
                break;
        }
        return bytes;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void EveryCodecBlockSizeAndContentRoundTrips(PageCodecKind kind, int block, string content)
    {
        var codec = PageCodec.For(kind);
        var source = Content(content, block);
        var packed = new byte[codec.MaxCompressedLength(block)];
        foreach (int level in kind == PageCodecKind.Lz4 ? new[] { 1, 9 } : new[] { 1, 19 })
        {
            int n = codec.Compress(source, packed, level);
            Assert.InRange(n, 1, packed.Length);
            if (content == "zeros")
            {
                Assert.True(n < block / 50, $"{kind} compressed {block} zeros to {n} bytes");
            }
            var back = new byte[block];
            Array.Fill(back, (byte)0xCD);
            codec.Decompress(packed.AsSpan(0, n), back);
            Assert.True(source.AsSpan().SequenceEqual(back), $"{kind} level {level}: {content} block of {block} did not round-trip");
        }
    }

    [Theory]
    [InlineData(PageCodecKind.Lz4)]
    [InlineData(PageCodecKind.Zstd)]
    public void CorruptOrTruncatedBlocksAreCorruptErrors(PageCodecKind kind)
    {
        var codec = PageCodec.For(kind);
        var source = Content("text", 65536);
        var packed = new byte[codec.MaxCompressedLength(source.Length)];
        int n = codec.Compress(source, packed, 1);
        var destination = new byte[source.Length];
        var rng = new Random(3);
        int refused = 0;
        for (int i = 0; i < 2000; i++)
        {
            var bad = packed.AsSpan(0, n).ToArray();
            switch (i % 3)
            {
                case 0: bad = bad[..rng.Next(bad.Length)]; break;            // truncated
                case 1: bad[rng.Next(bad.Length)] ^= (byte)(1 << rng.Next(8)); break; // one bit flipped
                default: rng.NextBytes(bad.AsSpan(rng.Next(bad.Length / 2))); break; // garbage tail
            }
            try
            {
                codec.Decompress(bad, destination);
                // A flip in a literal decodes to a different byte: the codec cannot know (the pack's CRC32C does).
            }
            catch (PageStoreException e)
            {
                Assert.Equal(PageStoreError.Corrupt, e.Error);
                refused++;
            }
        }
        Assert.True(refused > 1000, $"only {refused} of 2000 damaged blocks were refused");
        // The wrong size is always refused: a block must fill its destination exactly.
        var e2 = Assert.Throws<PageStoreException>(() => codec.Decompress(packed.AsSpan(0, n), new byte[source.Length + 1]));
        Assert.Equal(PageStoreError.Corrupt, e2.Error);
    }

    [Fact]
    public void AMissingLibraryNamesThePackageToInstall()
    {
        var e = Assert.Throws<PageStoreException>(() => new Lz4Codec("liblz4-not-here.so.9"));
        Assert.Equal(PageStoreError.Configuration, e.Error);
        Assert.Contains("apt-get install liblz4-1", e.Message, StringComparison.Ordinal);
        var z = Assert.Throws<PageStoreException>(() => new ZstdCodec("libzstd-not-here.so.9"));
        Assert.Contains("apt-get install libzstd1", z.Message, StringComparison.Ordinal);
        Assert.True(PageCodec.IsAvailable(PageCodecKind.Lz4));
        Assert.True(PageCodec.IsAvailable(PageCodecKind.Zstd));
    }

    [Fact]
    public void ParallelDecompressionIsSafe()
    {
        var source = Content("weights", 1 << 16);
        foreach (var kind in new[] { PageCodecKind.Lz4, PageCodecKind.Zstd })
        {
            var codec = PageCodec.For(kind);
            var packed = new byte[codec.MaxCompressedLength(source.Length)];
            int n = codec.Compress(source, packed, 3);
            Parallel.For(0, 64, _ =>
            {
                var back = new byte[source.Length];
                codec.Decompress(packed.AsSpan(0, n), back);
                Assert.True(source.AsSpan().SequenceEqual(back));
            });
        }
    }
}
