using static Paging.Weights.Tests.RawFormats;

namespace Paging.Weights.Tests;

/// <summary>
/// One test per rule of the reference readers (docs/WEIGHTS-FORMATS.md): huggingface/safetensors
/// (<c>SafeTensors::read_metadata</c>, <c>Metadata::validate</c>, <c>Dtype::bitsize</c>) and llama.cpp's
/// <c>gguf_init_from_file</c> with ggml's type table. Files are built byte by byte from the references' definitions.
/// </summary>
public sealed unsafe class ReferenceRulesTests
{
    private static WeightsHeader ParseSafetensors(byte[] file)
    {
        using var buffer = new GuardedBuffer(file.Length + 1);
        return SafetensorsReader.Parse(buffer.Place(file), file.Length);
    }

    private static WeightsHeader ParseGguf(byte[] file)
    {
        using var buffer = new GuardedBuffer(file.Length + 1);
        return GgufReader.Parse(buffer.Place(file), file.Length);
    }

    private static string SafetensorsError(byte[] file) => Assert.Throws<WeightsFormatException>(() => ParseSafetensors(file)).Message;

    private static string GgufError(byte[] file) => Assert.Throws<WeightsFormatException>(() => ParseGguf(file)).Message;

    private const string A8 = """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""";

    // ---------------- safetensors: accepted ----------------

    [Fact]
    public void St_HeaderPaddedWithSpacesIsAccepted() => Assert.Single(ParseSafetensors(Safetensors(A8, 8, padding: "      ")).Tensors);

    [Fact]
    public void St_WhitespaceBeforeTheObjectIsAccepted() => Assert.Single(ParseSafetensors(Safetensors(" \n\t" + A8, 8)).Tensors);

    [Fact]
    public void St_MetadataNullIsAccepted()
    {
        var h = ParseSafetensors(Safetensors("""{"__metadata__":null,"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 8));
        Assert.Single(h.Tensors);
        Assert.Empty(h.Metadata);
    }

    [Fact]
    public void St_MetadataAbsentOrEmptyAndNoTensorsIsAccepted()
    {
        Assert.Empty(ParseSafetensors(Safetensors("{}", 0)).Tensors);
        Assert.Empty(ParseSafetensors(Safetensors("""{"__metadata__":{}}""", 0)).Tensors);
        Assert.Equal("pt", ParseSafetensors(Safetensors("""{"__metadata__":{"format":"pt"}}""", 0)).Metadata["format"]);
    }

    [Fact]
    public void St_UnknownFieldsInATensorAreIgnored() =>
        Assert.Single(ParseSafetensors(Safetensors("""{"a":{"dtype":"F32","x":{"y":[1,null,"z"]},"shape":[2],"data_offsets":[0,8],"quant":true}}""", 8)).Tensors);

    [Fact]
    public void St_ARepeatedTensorNameKeepsTheLastEntry()
    {
        // serde's map semantics: the later entry replaces the earlier; the data must then fit the survivor.
        var h = ParseSafetensors(Safetensors("""{"a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 8));
        Assert.Equal("F32", Assert.Single(h.Tensors).DType);
    }

    [Fact]
    public void St_TensorsInAnyOrderAreSortedByOffset()
    {
        var h = ParseSafetensors(Safetensors("""{"b":{"dtype":"U8","shape":[4],"data_offsets":[8,12]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 12));
        Assert.Equal(["a", "b"], h.Tensors.Select(t => t.Name));
    }

    [Theory]
    [InlineData("F4", 4, 2)]          // 4 bits: two elements per byte
    [InlineData("F6_E2M3", 4, 3)]     // 6 bits: four elements in three bytes
    [InlineData("F6_E3M2", 8, 6)]
    [InlineData("F8_E8M0", 3, 3)]
    [InlineData("F8_E5M2", 3, 3)]
    [InlineData("F8_E4M3", 3, 3)]
    [InlineData("BOOL", 3, 3)]
    [InlineData("C64", 2, 16)]
    [InlineData("BF16", 2, 4)]
    [InlineData("U64", 1, 8)]
    public void St_EveryReferenceDTypeHasItsBitWidth(string dtype, int elements, int bytes)
    {
        var h = ParseSafetensors(Safetensors($$$"""{"t":{"dtype":"{{{dtype}}}","shape":[{{{elements}}}],"data_offsets":[0,{{{bytes}}}]}}""", bytes));
        Assert.Equal(bytes, Assert.Single(h.Tensors).Length);
    }

    [Fact]
    public void St_TheDTypeTableIsTheReferences() =>
        Assert.Equal(["BF16", "BOOL", "C64", "F16", "F32", "F4", "F64", "F6_E2M3", "F6_E3M2", "F8_E4M3", "F8_E5M2", "F8_E8M0", "I16", "I32", "I64", "I8", "U16", "U32", "U64", "U8"],
            SafetensorsReader.DTypes.Order(StringComparer.Ordinal));

    [Fact]
    public void St_ScalarsAndEmptyTensorsAreAccepted()
    {
        var h = ParseSafetensors(Safetensors("""{"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"e":{"dtype":"F16","shape":[3,0],"data_offsets":[4,4]}}""", 4));
        Assert.Equal(2, h.Tensors.Count);
    }

    // ---------------- safetensors: refused ----------------

    [Fact]
    public void St_BytesAfterTheLastTensorAreRefused() => Assert.Contains("after the last tensor", SafetensorsError(Safetensors(A8, 9)));

    [Fact]
    public void St_DataShorterThanDeclaredIsRefused() => Assert.Contains("shorter than declared", SafetensorsError(Safetensors(A8, 7)));

    [Fact]
    public void St_AGapBetweenTensorsIsRefused() =>
        Assert.Contains("without gaps", SafetensorsError(Safetensors("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[1],"data_offsets":[9,10]}}""", 10)));

    [Fact]
    public void St_OverlappingTensorsAreRefused() =>
        Assert.Contains("without gaps or overlap", SafetensorsError(Safetensors("""{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}""", 16)));

    [Fact]
    public void St_TheFirstTensorMustStartAtZero() =>
        Assert.Contains("not at 0", SafetensorsError(Safetensors("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""", 12)));

    [Fact]
    public void St_ASubByteTensorMustBeWholeBytes() =>
        Assert.Contains("not a whole number of bytes", SafetensorsError(Safetensors("""{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}""", 2)));

    [Fact]
    public void St_TheHeaderMustBeUtf8()
    {
        var file = Safetensors(A8, 8);
        file[12] = 0xFF; // inside the key "a"
        Assert.Contains("not valid UTF-8", SafetensorsError(file));
    }

    [Fact]
    public void St_OnlyWhitespaceMayFollowTheObject()
    {
        Assert.Contains("invalid JSON", SafetensorsError(Safetensors(A8, 8, padding: "\0\0\0")));
        Assert.Contains("invalid JSON", SafetensorsError(Safetensors(A8, 8, padding: " x")));
    }

    [Fact]
    public void St_MetadataValuesMustBeStringsAndAppearOnce()
    {
        Assert.Contains("values must be strings", SafetensorsError(Safetensors("""{"__metadata__":{"k":1}}""", 0)));
        Assert.Contains("must be an object of strings or null", SafetensorsError(Safetensors("""{"__metadata__":"x"}""", 0)));
        Assert.Contains("duplicate field '__metadata__'", SafetensorsError(Safetensors("""{"__metadata__":{},"__metadata__":{}}""", 0)));
    }

    [Fact]
    public void St_ARepeatedFieldInATensorIsRefused() =>
        Assert.Contains("the field 'dtype' twice", SafetensorsError(Safetensors("""{"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 8)));

    [Fact]
    public void St_UnknownDTypesAndBadNumbersAreRefused()
    {
        Assert.Contains("unknown dtype 'F8_E4M3FNUZ'", SafetensorsError(Safetensors("""{"a":{"dtype":"F8_E4M3FNUZ","shape":[2],"data_offsets":[0,2]}}""", 2)));
        Assert.Contains("non-negative", SafetensorsError(Safetensors("""{"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}""", 8)));
        Assert.Contains("non-negative", SafetensorsError(Safetensors("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,-8]}}""", 8)));
        Assert.Contains("exactly two offsets", SafetensorsError(Safetensors("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}}""", 8)));
    }

    [Fact]
    public void St_TheHeaderIsAnObjectOfAtMost100MB()
    {
        Assert.Contains("StartObject", SafetensorsError(Safetensors("[1,2]", 0)));
        var file = Safetensors("{}", 0);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(file, 100_000_001);
        Assert.Contains("exceeds the 100000000-byte limit", SafetensorsError(file));
    }

    // ---------------- GGUF: accepted ----------------

    private static RawTensor F32(string name, long n, ulong offset) => new(name, [n], 0, offset);

    [Fact]
    public void Gguf_ABoolIsAnyByteNonZeroMeaningTrue()
    {
        var h = ParseGguf(Gguf([.. GeneralKeys, ("x.flag", Value.Bool(2)), ("x.off", Value.Bool(0))], [], 0));
        Assert.Equal(("true", "false"), (h.Metadata["x.flag"], h.Metadata["x.off"]));
    }

    [Fact]
    public void Gguf_StringsAreBytesNotValidatedUtf8()
    {
        var h = ParseGguf(Gguf([.. GeneralKeys, ("x.raw", Value.StrBytes([0x61, 0xFF, 0xFE, 0x62]))], [F32("w", 8, 0)], 32));
        Assert.StartsWith("a", h.Metadata["x.raw"], StringComparison.Ordinal);
    }

    [Fact]
    public void Gguf_StringsLongerThanAMebibyteAreAccepted()
    {
        var h = ParseGguf(Gguf([.. GeneralKeys, ("tokenizer.chat_template", Value.Str(new string('x', 3 << 20)))], [], 0));
        Assert.Equal(3 << 20, h.Metadata["tokenizer.chat_template"].Length);
    }

    [Fact]
    public void Gguf_AMetadataOnlySplitShardMayEndRightAfterItsHeader()
    {
        var file = Gguf([.. GeneralKeys, ("split.no", Value.Bytes16(0)), ("split.count", Value.Bytes16(3)), ("split.tensors.count", Value.Bytes32(500))], [], 0, padToAlignment: false);
        Assert.NotEqual(0, file.Length % 32); // not aligned: a reader that insists on a data section would refuse it
        var h = ParseGguf(file);
        Assert.Empty(h.Tensors);
        Assert.Equal("3", h.Metadata["split.count"]);
    }

    [Fact]
    public void Gguf_AShardWithTensorsAndSplitKeysIsAccepted()
    {
        var h = ParseGguf(Gguf([.. GeneralKeys, ("split.no", Value.Bytes16(1)), ("split.count", Value.Bytes16(3))], [F32("blk.7.w", 8, 0), F32("blk.8.w", 16, 32)], 96));
        Assert.Equal(2, h.Tensors.Count);
    }

    [Fact]
    public void Gguf_Version2IsAccepted() => Assert.Single(ParseGguf(Gguf(GeneralKeys, [F32("w", 8, 0)], 32, version: 2)).Tensors);

    [Fact]
    public void Gguf_ANameOf63BytesAndAnEmptyNameAreAccepted()
    {
        var h = ParseGguf(Gguf(GeneralKeys, [F32(new string('n', 63), 8, 0), F32("", 8, 32)], 64));
        Assert.Equal(2, h.Tensors.Count);
    }

    [Theory]
    [InlineData(34, "TQ1_0", 256, 54)]
    [InlineData(35, "TQ2_0", 256, 66)]
    [InlineData(39, "MXFP4", 32, 17)]
    [InlineData(40, "NVFP4", 64, 36)]
    [InlineData(41, "Q1_0", 128, 18)]
    [InlineData(42, "Q2_0", 64, 18)]
    [InlineData(29, "IQ1_M", 256, 56)]
    [InlineData(30, "BF16", 1, 2)]
    [InlineData(15, "Q8_K", 256, 292)]
    public void Gguf_TheNewestTypesHaveTheReferencesBlockSizes(int type, string name, int block, int bytes)
    {
        // Two rows of two blocks each: 4 blocks.
        long length = 4L * bytes;
        long padded = (length + 31) / 32 * 32;
        var h = ParseGguf(Gguf(GeneralKeys, [new RawTensor("w", [2 * block, 2], type, 0)], padded));
        var t = Assert.Single(h.Tensors);
        Assert.Equal((name, length), (t.DType, t.Length));
        Assert.Contains(GgufReader.Types, x => x.Id == (uint)type && x.BlockSize == block && x.BlockBytes == bytes);
    }

    [Fact]
    public void Gguf_TensorsAreContiguousEachPaddedToTheAlignment()
    {
        var file = Gguf([.. GeneralKeys, ("general.alignment", Value.U32(64))], [F32("a", 3, 0), F32("b", 40, 64), F32("c", 1, 256)], 320, alignment: 64);
        var h = ParseGguf(file);
        Assert.Equal([0L, 64, 256], h.Tensors.Select(t => t.Offset - h.DataStart));
    }

    // ---------------- GGUF: refused ----------------

    [Fact]
    public void Gguf_ANameOf64BytesIsRefused() => Assert.Contains("at most 63", GgufError(Gguf(GeneralKeys, [F32(new string('n', 64), 8, 0)], 32)));

    [Fact]
    public void Gguf_AnOffsetOtherThanThePaddedEndOfThePreviousIsRefused()
    {
        // Aligned and inside the file, but leaves a gap: the reference requires offset == running padded size.
        Assert.Contains("expected 32", GgufError(Gguf(GeneralKeys, [F32("a", 8, 0), F32("b", 8, 64)], 96)));
        Assert.Contains("expected 0", GgufError(Gguf(GeneralKeys, [F32("a", 8, 32)], 64)));
    }

    [Theory]
    [InlineData(4)]   // Q4_2, removed
    [InlineData(5)]   // Q4_3, removed
    [InlineData(31)]  // Q4_0_4_4, removed from gguf files
    [InlineData(36)]  // IQ4_NL_4_4, removed
    public void Gguf_RemovedTypesAreRefusedByName(int type) =>
        Assert.Contains($"unknown ggml type {type} (a type the reference removed)", GgufError(Gguf(GeneralKeys, [new RawTensor("w", [256], type, 0)], 256)));

    [Fact]
    public void Gguf_ATypeUnknownToTheReferenceIsRefusedByNumber()
    {
        Assert.Contains("unknown ggml type 43", GgufError(Gguf(GeneralKeys, [new RawTensor("w", [32], 43, 0)], 32)));
        Assert.Contains("unknown ggml type -1", GgufError(Gguf(GeneralKeys, [new RawTensor("w", [32], -1, 0)], 32)));
    }

    [Fact]
    public void Gguf_ARowThatIsNotWholeBlocksIsRefused() =>
        Assert.Contains("not a multiple of its block size 32", GgufError(Gguf(GeneralKeys, [new RawTensor("w", [16], 39, 0)], 32)));

    [Fact]
    public void Gguf_KeysAreNonEmptyAndUnique()
    {
        Assert.Contains("is empty", GgufError(Gguf([("", Value.U8(1))], [], 0)));
        Assert.Contains("duplicate key 'general.name'", GgufError(Gguf([.. GeneralKeys, ("general.name", Value.Str("again"))], [], 0)));
    }

    [Fact]
    public void Gguf_TheAlignmentIsAU32PowerOfTwo()
    {
        Assert.Contains("must be of type u32", GgufError(Gguf([("general.alignment", Value.U64(64))], [], 0)));
        Assert.Contains("not a power of 2", GgufError(Gguf([("general.alignment", Value.U32(48))], [], 0)));
        Assert.Contains("not a power of 2", GgufError(Gguf([("general.alignment", Value.U32(0))], [], 0)));
    }

    [Theory]
    [InlineData(0u, "bad version 0")]
    [InlineData(1u, "GGUFv1")]
    [InlineData(4u, "unsupported version 4")]
    [InlineData(0x03000000u, "other byte order")]
    public void Gguf_OnlyVersions2And3(uint version, string expected) => Assert.Contains(expected, GgufError(Gguf(GeneralKeys, [], 0, version: version)));

    [Fact]
    public void Gguf_ArraysDoNotNest()
    {
        byte[] inner = [.. BitConverter.GetBytes(0u), .. BitConverter.GetBytes(0UL)];
        Assert.Contains("nests arrays", GgufError(Gguf([("x.nested", Value.Array(9, 1, inner))], [], 0)));
    }

    [Fact]
    public void Gguf_AnArrayLongerThanTheFileIsRefused() =>
        Assert.Contains("claims 1000000", GgufError(Gguf([("x.a", Value.Array(4, 1_000_000, new byte[16]))], [], 0)));

    [Fact]
    public void Gguf_NegativeDimensionsAreRefused() => Assert.Contains("negative", GgufError(Gguf(GeneralKeys, [F32("w", -8, 0)], 32)));

    [Fact]
    public void Gguf_TensorDataMustBeInsideTheFile()
    {
        Assert.Contains("shorter than declared", GgufError(Gguf(GeneralKeys, [F32("w", 64, 0)], 100)));
        // A tensor (even an empty one) needs the data section, which starts at the next multiple of the alignment.
        var unpadded = Enumerable.Range(1, 32).Select(n => Gguf(GeneralKeys, [F32(new string('w', n), 0, 0)], 0, padToAlignment: false)).First(f => f.Length % 32 != 0);
        Assert.Contains("past the end", GgufError(unpadded));
    }

    [Fact]
    public void Gguf_TheRulesTableInTheDocsNamesEveryRule()
    {
        string doc = File.ReadAllText(Path.Combine(FindRoot(), "docs", "WEIGHTS-FORMATS.md"));
        foreach (var test in typeof(ReferenceRulesTests).GetMethods().Where(m => m.Name.StartsWith("St_", StringComparison.Ordinal) || m.Name.StartsWith("Gguf_", StringComparison.Ordinal)))
        {
            if (test.Name != nameof(Gguf_TheRulesTableInTheDocsNamesEveryRule))
            {
                Assert.True(doc.Contains(test.Name, StringComparison.Ordinal), $"docs/WEIGHTS-FORMATS.md does not list {test.Name}");
            }
        }
    }

    private static string FindRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            if (File.Exists(Path.Combine(d.FullName, "Paging.sln")))
            {
                return d.FullName;
            }
        }
        throw new InvalidOperationException("repository root not found");
    }
}
