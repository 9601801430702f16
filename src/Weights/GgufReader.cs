using System.Buffers.Binary;
using System.Globalization;
using System.Numerics;
using System.Text;

namespace Paging.Weights;

/// <summary>
/// Parses a GGUF (v2/v3) header as the reference reader does (llama.cpp's <c>gguf_init_from_file</c>, ggml/src/gguf.cpp;
/// docs/WEIGHTS-FORMATS.md lists every rule): magic "GGUF", version 2 or 3, tensor and key-value counts, typed
/// key-values (non-empty unique keys; strings are bytes, up to 1 GiB; a bool is any byte, non-zero meaning true;
/// arrays of one level), general.alignment a u32 power of two (default 32), tensor infos (unique names shorter than
/// 64 bytes, up to 4 non-negative dimensions, a known ggml type whose block size divides the first dimension, each
/// tensor's offset exactly where the previous one's padded data ends). With tensors, the data section starts at the
/// next multiple of the alignment; without (a metadata-only split shard), the file may end right after the header.
/// Every tensor's bytes must lie inside the file (llama.cpp's loader refuses a truncated file).
/// </summary>
public static unsafe class GgufReader
{
    private const uint Magic = 0x46554747; // "GGUF" little-endian
    private const int MaxDims = 4; // GGML_MAX_DIMS

    /// <summary>GGML_MAX_NAME: a tensor name must be shorter than this many bytes (the reference rejects longer).</summary>
    private const int MaxNameBytes = 64;

    /// <summary>GGUF_MAX_STRING_LENGTH and GGUF_MAX_ARRAY_ELEMENTS of the reference reader: 2^30 each.</summary>
    private const ulong MaxStringBytes = 1UL << 30, MaxArrayElements = 1UL << 30;

    // ggml_type -> (name, block size in elements, bytes per block): the reference's enum ggml_type (ggml.h) and type
    // traits (ggml.c / ggml-common.h block structs). Gaps are types the reference removed (Q4_2/Q4_3 = 4/5, the
    // repacked Q4_0_x_y = 31-33 and IQ4_NL_x_y = 36-38): their block size is 0 there, and a file using them is refused.
    private static readonly Dictionary<uint, (string Name, int Block, int Bytes)> s_types = new()
    {
        [0] = ("F32", 1, 4), [1] = ("F16", 1, 2), [2] = ("Q4_0", 32, 18), [3] = ("Q4_1", 32, 20),
        [6] = ("Q5_0", 32, 22), [7] = ("Q5_1", 32, 24), [8] = ("Q8_0", 32, 34), [9] = ("Q8_1", 32, 36),
        [10] = ("Q2_K", 256, 84), [11] = ("Q3_K", 256, 110), [12] = ("Q4_K", 256, 144), [13] = ("Q5_K", 256, 176),
        [14] = ("Q6_K", 256, 210), [15] = ("Q8_K", 256, 292), [16] = ("IQ2_XXS", 256, 66), [17] = ("IQ2_XS", 256, 74),
        [18] = ("IQ3_XXS", 256, 98), [19] = ("IQ1_S", 256, 50), [20] = ("IQ4_NL", 32, 18), [21] = ("IQ3_S", 256, 110),
        [22] = ("IQ2_S", 256, 82), [23] = ("IQ4_XS", 256, 136), [24] = ("I8", 1, 1), [25] = ("I16", 1, 2),
        [26] = ("I32", 1, 4), [27] = ("I64", 1, 8), [28] = ("F64", 1, 8), [29] = ("IQ1_M", 256, 56), [30] = ("BF16", 1, 2),
        // Ternary: block_tq1_0 = 48 + 4 + 2 bytes, block_tq2_0 = 64 + 2 bytes, per 256 elements.
        [34] = ("TQ1_0", 256, 54), [35] = ("TQ2_0", 256, 66),
        // FP4: MXFP4 (gpt-oss) = one E8M0 scale + 16 bytes per 32; NVFP4 = 4 UE4M3 scales + 32 bytes per 64.
        [39] = ("MXFP4", 32, 17), [40] = ("NVFP4", 64, 36),
        // 1- and 2-bit: block_q1_0 = f16 + 16 bytes per 128; block_q2_0 = f16 + 16 bytes per 64.
        [41] = ("Q1_0", 128, 18), [42] = ("Q2_0", 64, 18),
    };

    /// <summary>GGML_TYPE_COUNT of the reference this table follows: ids at or above it are unknown types.</summary>
    internal const uint TypeCount = 43;

    /// <summary>The ggml types this reader knows: id, name, block size in elements, bytes per block.</summary>
    public static IEnumerable<(uint Id, string Name, int BlockSize, int BlockBytes)> Types =>
        s_types.OrderBy(kv => kv.Key).Select(kv => (kv.Key, kv.Value.Name, kv.Value.Block, kv.Value.Bytes));

    /// <summary>The ggml type id of a name (for writers), or -1.</summary>
    public static int TypeId(string name) => s_types.FirstOrDefault(kv => kv.Value.Name == name) is var kv && kv.Value.Name == name ? (int)kv.Key : -1;

    /// <summary>Bytes of a tensor of ggml type <paramref name="type"/> with first dimension <paramref name="ne0"/>
    /// and <paramref name="rows"/> rows.</summary>
    internal static long ByteLength(uint type, long ne0, long rows) => ne0 / s_types[type].Block * s_types[type].Bytes * rows;

    private ref struct Cursor(byte* p, long length)
    {
        private readonly byte* _p = p;
        public readonly long Length = length;
        public long Position;

        private void Need(long n, string what)
        {
            if (n < 0 || n > Length - Position)
            {
                throw new WeightsFormatException($"gguf: truncated header: {what} needs {n} bytes at offset {Position}, the file has {Length}");
            }
        }

        public uint U32(string what)
        {
            Need(4, what);
            uint v = BinaryPrimitives.ReadUInt32LittleEndian(new ReadOnlySpan<byte>(_p + Position, 4));
            Position += 4;
            return v;
        }

        public ulong U64(string what)
        {
            Need(8, what);
            ulong v = BinaryPrimitives.ReadUInt64LittleEndian(new ReadOnlySpan<byte>(_p + Position, 8));
            Position += 8;
            return v;
        }

        public void Skip(long n, string what)
        {
            Need(n, what);
            Position += n;
        }

        public ReadOnlySpan<byte> Bytes(long n, string what)
        {
            Need(n, what);
            var s = new ReadOnlySpan<byte>(_p + Position, (int)n);
            Position += n;
            return s;
        }

        /// <summary>A GGUF string: u64 length, then bytes. The reference does not validate UTF-8, so neither does
        /// this: invalid sequences decode to U+FFFD.</summary>
        public string Str(string what)
        {
            ulong n = U64(what + " length");
            if (n > MaxStringBytes)
            {
                throw new WeightsFormatException($"gguf: {what} is {n} bytes long, more than the reference's {MaxStringBytes}-byte limit");
            }
            if (n > (ulong)(Length - Position))
            {
                throw new WeightsFormatException($"gguf: truncated header: {what} needs {n} bytes at offset {Position}, the file has {Length}");
            }
            return Encoding.UTF8.GetString(Bytes((long)n, what));
        }

        /// <summary>Skips a string without decoding it (tokenizer vocabularies have 100k+ entries).</summary>
        public void SkipStr(string what)
        {
            ulong n = U64(what + " length");
            if (n > MaxStringBytes || n > (ulong)(Length - Position))
            {
                throw new WeightsFormatException($"gguf: {what} is {n} bytes long, beyond the end of the file or the {MaxStringBytes}-byte limit");
            }
            Position += (long)n;
        }
    }

    /// <summary>Parses the header of a GGUF file. Throws <see cref="WeightsFormatException"/>.</summary>
    public static WeightsHeader Parse(byte* file, long fileLength)
    {
        var c = new Cursor(file, fileLength);
        uint magic = c.U32("the magic");
        if (magic != Magic)
        {
            throw new WeightsFormatException($"gguf: bad magic 0x{magic:x8} (expected 'GGUF')");
        }
        uint version = c.U32("the version");
        if (version == 0 || (version & 0xFFFF) == 0)
        {
            throw new WeightsFormatException($"gguf: bad version {version} (0x{version:x8}: a file of the other byte order?)");
        }
        if (version is not (2 or 3))
        {
            throw new WeightsFormatException($"gguf: unsupported version {version} ({(version == 1 ? "GGUFv1 is no longer supported by the reference either" : "2 and 3 are supported")})");
        }
        ulong tensorCount = c.U64("the tensor count");
        ulong kvCount = c.U64("the key-value count");
        // The reference reads them as int64 and refuses negatives. Beyond that, every tensor info takes at least
        // 8 + 4 + 4 + 8 bytes (empty name, no dimensions) and every key-value at least 8 + 1 + 4 + 1: a count the
        // file could not hold is corrupt, and must not drive an allocation.
        if (tensorCount > long.MaxValue || kvCount > long.MaxValue)
        {
            throw new WeightsFormatException($"gguf: negative tensor or key-value count ({(long)tensorCount}, {(long)kvCount})");
        }
        if (tensorCount > (ulong)(fileLength / 24) || kvCount > (ulong)(fileLength / 14))
        {
            throw new WeightsFormatException($"gguf: truncated header or corrupt counts: {tensorCount} tensors and {kvCount} key-values cannot fit in a {fileLength}-byte file");
        }
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        long alignment = 32;
        for (ulong i = 0; i < kvCount; i++)
        {
            string key = c.Str($"key {i}");
            if (key.Length == 0)
            {
                throw new WeightsFormatException($"gguf: key {i} is empty");
            }
            if (metadata.ContainsKey(key))
            {
                throw new WeightsFormatException($"gguf: duplicate key '{key}'");
            }
            uint type = c.U32($"the type of '{key}'");
            string value = ReadValue(ref c, type, key);
            metadata.Add(key, value);
            if (key == "general.alignment")
            {
                if (type != 4)
                {
                    throw new WeightsFormatException($"gguf: general.alignment must be of type u32 (4), found type {type}");
                }
                alignment = long.Parse(value, CultureInfo.InvariantCulture);
                if (alignment == 0 || !BitOperations.IsPow2(alignment))
                {
                    throw new WeightsFormatException($"gguf: general.alignment {alignment} is not a power of 2");
                }
            }
        }
        var infos = new List<(string Name, uint Type, long[] Dims, ulong Offset)>((int)tensorCount);
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (ulong i = 0; i < tensorCount; i++)
        {
            long nameAt = c.Position + 8;
            string name = c.Str($"the name of tensor {i}");
            if (c.Position - nameAt >= MaxNameBytes)
            {
                throw new WeightsFormatException($"gguf: tensor {i} name '{name}' is {c.Position - nameAt} bytes, the reference allows at most {MaxNameBytes - 1}");
            }
            if (!names.Add(name))
            {
                throw new WeightsFormatException($"gguf: duplicate tensor '{name}'");
            }
            uint nDims = c.U32($"the rank of '{name}'");
            if (nDims > MaxDims)
            {
                throw new WeightsFormatException($"gguf: tensor '{name}' has {nDims} dimensions, more than {MaxDims}");
            }
            var dims = new long[nDims];
            for (int d = 0; d < nDims; d++)
            {
                long dim = (long)c.U64($"dimension {d} of '{name}'");
                if (dim < 0)
                {
                    throw new WeightsFormatException($"gguf: dimension {d} of tensor '{name}' is negative ({dim})");
                }
                dims[d] = dim;
            }
            // The reference: the element count must be representable (ne0*ne1*ne2*ne3 < INT64_MAX).
            long ne0 = nDims > 0 ? dims[0] : 1, ne1 = nDims > 1 ? dims[1] : 1, ne2 = nDims > 2 ? dims[2] : 1, ne3 = nDims > 3 ? dims[3] : 1;
            if (ne0 > 0 && ne1 > 0 && ne2 > 0 && ne3 > 0 &&
                (long.MaxValue / ne1 <= ne0 || long.MaxValue / ne2 <= ne0 * ne1 || long.MaxValue / ne3 <= ne0 * ne1 * ne2))
            {
                throw new WeightsFormatException($"gguf: the dimensions of tensor '{name}' overflow 64 bits");
            }
            int type = (int)c.U32($"the type of '{name}'");
            if (type < 0 || !s_types.ContainsKey((uint)type))
            {
                throw new WeightsFormatException($"gguf: tensor '{name}' has unknown ggml type {type}" +
                    (type is >= 0 and < (int)TypeCount ? " (a type the reference removed)" : $" (the reference knows 0 to {TypeCount - 1})"));
            }
            ulong offset = c.U64($"the offset of '{name}'");
            infos.Add((name, (uint)type, dims, offset));
        }
        // With tensors, the data section starts at the next multiple of the alignment, which must be inside the file;
        // a metadata-only file (the first shard of a split model) may end right after its header.
        long dataStart = c.Position;
        if (infos.Count > 0)
        {
            dataStart = (c.Position + alignment - 1) / alignment * alignment;
            if (dataStart > fileLength)
            {
                throw new WeightsFormatException($"gguf: the data section would start at {dataStart}, past the end of the {fileLength}-byte file");
            }
        }
        var tensors = new List<TensorInfo>(infos.Count);
        long expected = 0;
        foreach (var (name, type, dims, offset) in infos)
        {
            var t = s_types[type];
            long ne0 = dims.Length > 0 ? dims[0] : 1;
            long rows = 1;
            for (int d = 1; d < dims.Length; d++)
            {
                rows = TensorChecks.MultiplyChecked(rows, dims[d], "gguf", name);
            }
            if (ne0 % t.Block != 0)
            {
                throw new WeightsFormatException($"gguf: tensor '{name}' of type {t.Name} has first dimension {ne0}, not a multiple of its block size {t.Block}");
            }
            long bytes = TensorChecks.MultiplyChecked(TensorChecks.MultiplyChecked(ne0 / t.Block, t.Bytes, "gguf", name), rows, "gguf", name);
            // The reference requires each tensor exactly where the previous one's data, padded to the alignment, ends.
            if (offset != (ulong)expected)
            {
                throw new WeightsFormatException($"gguf: tensor '{name}' has offset {offset}, expected {expected} (tensors are stored in order, each padded to the alignment {alignment})");
            }
            long padded = bytes > long.MaxValue - alignment ? throw new WeightsFormatException($"gguf: tensor '{name}' size overflows") : (bytes + alignment - 1) / alignment * alignment;
            expected = expected > long.MaxValue - padded ? throw new WeightsFormatException($"gguf: tensor '{name}' size overflows") : expected + padded;
            // GGUF lists dimensions innermost first; expose them outermost first like safetensors and numpy.
            tensors.Add(new TensorInfo(name, t.Name, [.. dims.Reverse()], dataStart + (long)offset, bytes));
        }
        TensorChecks.CheckLayout(tensors, dataStart, fileLength, "gguf");
        return new WeightsHeader("gguf", tensors, metadata, dataStart);
    }

    /// <summary>Reads one value (an array is one level of scalars or strings); returns its text for scalars and
    /// strings, a summary for arrays.</summary>
    private static string ReadValue(ref Cursor c, uint type, string key)
    {
        if (type == 9)
        {
            uint elementType = c.U32($"the element type of '{key}'");
            ulong count = c.U64($"the length of '{key}'");
            long size = ScalarSize(elementType, key, inArray: true);
            // The reference: at most 2^30 elements, and n × element size (8 per string: its length) must fit in the
            // rest of the file.
            if (count > MaxArrayElements || count > (ulong)((c.Length - c.Position) / size))
            {
                throw new WeightsFormatException($"gguf: array '{key}' claims {count} elements, more than the rest of the file holds or the reference's {MaxArrayElements}-element limit");
            }
            for (ulong i = 0; i < count; i++)
            {
                if (elementType == 8)
                {
                    c.SkipStr($"'{key}'[{i}]");
                }
                else
                {
                    c.Skip(size, $"'{key}'[{i}]");
                }
            }
            return $"[{count} x type {elementType}]";
        }
        _ = ScalarSize(type, key, inArray: false);
        switch (type)
        {
            case 0: return c.Bytes(1, key)[0].ToString(CultureInfo.InvariantCulture);
            case 1: return ((sbyte)c.Bytes(1, key)[0]).ToString(CultureInfo.InvariantCulture);
            case 2: return BinaryPrimitives.ReadUInt16LittleEndian(c.Bytes(2, key)).ToString(CultureInfo.InvariantCulture);
            case 3: return BinaryPrimitives.ReadInt16LittleEndian(c.Bytes(2, key)).ToString(CultureInfo.InvariantCulture);
            case 4: return c.U32(key).ToString(CultureInfo.InvariantCulture);
            case 5: return ((int)c.U32(key)).ToString(CultureInfo.InvariantCulture);
            case 6: return BitConverter.UInt32BitsToSingle(c.U32(key)).ToString(CultureInfo.InvariantCulture);
            case 7: return c.Bytes(1, key)[0] != 0 ? "true" : "false"; // the reference: any non-zero byte is true
            case 8: return c.Str($"the value of '{key}'");
            case 10: return c.U64(key).ToString(CultureInfo.InvariantCulture);
            case 11: return ((long)c.U64(key)).ToString(CultureInfo.InvariantCulture);
            default: return BitConverter.UInt64BitsToDouble(c.U64(key)).ToString(CultureInfo.InvariantCulture); // 12
        }
    }

    /// <summary>Bytes of a scalar value type (8 for a string: its length prefix), or an error naming the key for an
    /// unknown type or an array inside an array.</summary>
    private static long ScalarSize(uint type, string key, bool inArray) => type switch
    {
        0 or 1 or 7 => 1,
        2 or 3 => 2,
        4 or 5 or 6 => 4,
        8 or 10 or 11 or 12 => 8,
        9 when inArray => throw new WeightsFormatException($"gguf: '{key}' nests arrays"),
        _ => throw new WeightsFormatException($"gguf: '{key}' has unknown value type {type}"),
    };

    /// <summary>Writes a GGUF v3 file (tests and fuzzing): string key-values, tensors of the given ggml types, data
    /// aligned to <paramref name="alignment"/>, each tensor's bytes from <paramref name="fill"/>.</summary>
    internal static void Write(Stream output, IReadOnlyDictionary<string, string> strings, IReadOnlyList<(string Name, string Type, long[] Dims)> tensors,
        Action<int, Span<byte>> fill, uint alignment = 32, bool writeAlignmentKey = false)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(strings);
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentNullException.ThrowIfNull(fill);
        using var w = new BinaryWriter(output, Encoding.UTF8, leaveOpen: true);
        void Str(string s)
        {
            var b = Encoding.UTF8.GetBytes(s);
            w.Write((ulong)b.Length);
            w.Write(b);
        }
        w.Write(Magic);
        w.Write(3u);
        w.Write((ulong)tensors.Count);
        w.Write((ulong)(strings.Count + (writeAlignmentKey ? 1 : 0)));
        if (writeAlignmentKey)
        {
            Str("general.alignment");
            w.Write(4u);
            w.Write(alignment);
        }
        foreach (var (k, v) in strings)
        {
            Str(k);
            w.Write(8u);
            Str(v);
        }
        var lengths = new long[tensors.Count];
        ulong offset = 0;
        for (int i = 0; i < tensors.Count; i++)
        {
            var (name, typeName, dims) = tensors[i];
            uint type = (uint)TypeId(typeName);
            long rows = 1;
            for (int d = 1; d < dims.Length; d++)
            {
                rows *= dims[d];
            }
            lengths[i] = ByteLength(type, dims.Length > 0 ? dims[0] : 1, rows);
            Str(name);
            w.Write((uint)dims.Length);
            foreach (long d in dims)
            {
                w.Write((ulong)d);
            }
            w.Write(type);
            w.Write(offset);
            offset += ((ulong)lengths[i] + alignment - 1) / alignment * alignment;
        }
        w.Flush();
        long position = output.Position;
        long dataStart = (position + alignment - 1) / alignment * alignment;
        w.Write(new byte[dataStart - position]);
        for (int i = 0; i < tensors.Count; i++)
        {
            var data = new byte[lengths[i]];
            fill(i, data);
            w.Write(data);
            long padded = (lengths[i] + alignment - 1) / alignment * alignment;
            w.Write(new byte[padded - lengths[i]]);
        }
    }
}
