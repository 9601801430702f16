using System.Buffers.Binary;
using System.Text;

namespace Paging.Weights.Tests;

public sealed unsafe class FormatErrorTests
{
    private static WeightsFormatException ParseError(byte[] file)
    {
        using var buffer = new GuardedBuffer(file.Length + 16);
        byte* p = buffer.Place(file);
        return Assert.Throws<WeightsFormatException>(() =>
        {
            if (file.Length >= 4 && BinaryPrimitives.ReadUInt32LittleEndian(file) == 0x46554747)
            {
                GgufReader.Parse(p, file.Length);
            }
            else
            {
                SafetensorsReader.Parse(p, file.Length);
            }
        });
    }

    private static byte[] Safetensors(string json, int dataBytes)
    {
        var header = Encoding.UTF8.GetBytes(json);
        var file = new byte[8 + header.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)header.Length);
        header.CopyTo(file, 8);
        return file;
    }

    [Theory]
    [InlineData("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 8, null)]
    [InlineData("""[1,2]""", 0, "expected StartObject")]
    [InlineData("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}""", 8, "invalid JSON")]
    [InlineData("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}""", 16, "not at 0")]
    [InlineData("""{"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}}""", 8, "unknown dtype 'F33'")]
    [InlineData("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 4, "data is shorter than declared")]
    [InlineData("""{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}""", 16, "without gaps or overlap")]
    [InlineData("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}""", 8, "end before they begin")]
    [InlineData("""{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}""", 8, "= 12 bytes but its data_offsets span 8")]
    [InlineData("""{"a":{"dtype":"F64","shape":[4611686018427387904,4],"data_offsets":[0,8]}}""", 8, "overflow")]
    [InlineData("""{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,8]}}""", 8, "non-negative")]
    [InlineData("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"dtype":"F32"}}""", 8, "the field 'dtype' twice")]
    [InlineData("""{"a":{"dtype":"F32","shape":[2]}}""", 8, "lacks data_offsets")]
    [InlineData("""{"__metadata__":{"k":1}}""", 0, "values must be strings")]
    public void SafetensorsProblemsAreNamed(string json, int dataBytes, string? expected)
    {
        var file = Safetensors(json, dataBytes);
        if (expected is null)
        {
            using var buffer = new GuardedBuffer(file.Length);
            var header = SafetensorsReader.Parse(buffer.Place(file), file.Length);
            Assert.Single(header.Tensors);
            return;
        }
        var e = ParseError(file);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void SafetensorsHeaderLengthProblems()
    {
        Assert.Contains("shorter than the 8-byte header length", ParseError([1, 2, 3]).Message);
        var file = Safetensors("{}", 0);
        BinaryPrimitives.WriteUInt64LittleEndian(file, 1000);
        Assert.Contains("beyond the end", ParseError(file).Message);
        BinaryPrimitives.WriteUInt64LittleEndian(file, ulong.MaxValue);
        Assert.Contains("exceeds", ParseError(file).Message);
        // Truncated header: the JSON is cut short by the declared length.
        var cut = Safetensors("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 8);
        BinaryPrimitives.WriteUInt64LittleEndian(cut, 20);
        Assert.Contains("invalid JSON", ParseError(cut).Message);
    }

    private static byte[] ValidGguf() => Checkpoints.GgufBytes([("w", "F32", [8, 2]), ("q", "Q4_0", [32])]);

    [Fact]
    public void GgufProblemsAreNamed()
    {
        var good = ValidGguf();
        using (var buffer = new GuardedBuffer(good.Length))
        {
            Assert.Equal(2, GgufReader.Parse(buffer.Place(good), good.Length).Tensors.Count);
        }

        var badMagic = (byte[])good.Clone();
        badMagic[3] = (byte)'X';
        // Not GGUF magic any more, so it is read as safetensors: its first 8 bytes are no sane header length.
        Assert.IsType<WeightsFormatException>(ParseError(badMagic));

        var badVersion = (byte[])good.Clone();
        BinaryPrimitives.WriteUInt32LittleEndian(badVersion.AsSpan(4), 4);
        Assert.Contains("unsupported version 4", ParseError(badVersion).Message);

        Assert.Contains("truncated header", ParseError(good[..40]).Message);

        var hugeCount = (byte[])good.Clone();
        BinaryPrimitives.WriteUInt64LittleEndian(hugeCount.AsSpan(8), 1UL << 40);
        Assert.Contains("cannot fit", ParseError(hugeCount).Message);
        BinaryPrimitives.WriteUInt64LittleEndian(hugeCount.AsSpan(8), ulong.MaxValue); // -1 as the reference's int64
        Assert.Contains("negative tensor or key-value count", ParseError(hugeCount).Message);

        Assert.Contains("data is shorter than declared", ParseError(good[..^40]).Message);

        var unknownType = Checkpoints.GgufBytes([("w", "F32", [8])]);
        int typeAt = unknownType.AsSpan().IndexOf("w"u8) + 1 + 4 + 8; // name, n_dims, one dim
        BinaryPrimitives.WriteUInt32LittleEndian(unknownType.AsSpan(typeAt), 99);
        Assert.Contains("unknown ggml type 99", ParseError(unknownType).Message);

        var blocks = Checkpoints.GgufBytes([("w", "F32", [8])]);
        BinaryPrimitives.WriteUInt32LittleEndian(blocks.AsSpan(typeAt), 2); // Q4_0 needs multiples of 32
        Assert.Contains("not a multiple of its block size 32", ParseError(blocks).Message);

        var misaligned = Checkpoints.GgufBytes([("w", "F32", [8])]);
        BinaryPrimitives.WriteUInt64LittleEndian(misaligned.AsSpan(typeAt + 4), 4);
        Assert.Contains("has offset 4, expected 0", ParseError(misaligned).Message);

        var overflow = Checkpoints.GgufBytes([("w", "F32", [8, 2])]);
        int dimAt = overflow.AsSpan().IndexOf("w"u8) + 1 + 4 + 8;
        BinaryPrimitives.WriteUInt64LittleEndian(overflow.AsSpan(dimAt), long.MaxValue);
        Assert.Contains("overflow", ParseError(overflow).Message);

        var badAlignment = Checkpoints.GgufBytes([("w", "F32", [8])], alignment: 64, alignmentKey: true);
        int alignAt = badAlignment.AsSpan().IndexOf("general.alignment"u8) + "general.alignment".Length + 4;
        BinaryPrimitives.WriteUInt32LittleEndian(badAlignment.AsSpan(alignAt), 48);
        Assert.Contains("not a power of 2", ParseError(badAlignment).Message);

        var duplicate = Checkpoints.GgufBytes([("w", "F32", [8]), ("w", "F32", [8])]);
        Assert.Contains("duplicate tensor 'w'", ParseError(duplicate).Message);
    }
}
