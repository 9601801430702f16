using System.Buffers.Binary;
using System.Globalization;
using System.Numerics;
using System.Text;

namespace Paging.Weights;

/// <summary>
/// Parses a GGUF (v2/v3) header: magic "GGUF", version, tensor and key-value counts, typed key-values, tensor infos;
/// the data section starts at the next multiple of general.alignment (default 32). Strict: every read is
/// bounds-checked against the file, counts and string lengths are bounded by what the file could hold, tensor types
/// are known ggml types whose block size divides the first dimension, offsets are aligned, inside the file and do not
/// overlap, names are unique.
/// </summary>
public static unsafe class GgufReader
{
    private const uint Magic = 0x46554747; // "GGUF" little-endian
    private const int MaxDims = 4; // GGML_MAX_DIMS

    // ggml_type -> (name, block size in elements, bytes per block)
    private static readonly Dictionary<uint, (string Name, int Block, int Bytes)> s_types = new()
    {
        [0] = ("F32", 1, 4), [1] = ("F16", 1, 2), [2] = ("Q4_0", 32, 18), [3] = ("Q4_1", 32, 20),
        [6] = ("Q5_0", 32, 22), [7] = ("Q5_1", 32, 24), [8] = ("Q8_0", 32, 34), [9] = ("Q8_1", 32, 36),
        [10] = ("Q2_K", 256, 84), [11] = ("Q3_K", 256, 110), [12] = ("Q4_K", 256, 144), [13] = ("Q5_K", 256, 176),
        [14] = ("Q6_K", 256, 210), [15] = ("Q8_K", 256, 292), [16] = ("IQ2_XXS", 256, 66), [17] = ("IQ2_XS", 256, 74),
        [18] = ("IQ3_XXS", 256, 98), [19] = ("IQ1_S", 256, 50), [20] = ("IQ4_NL", 32, 18), [21] = ("IQ3_S", 256, 110),
        [22] = ("IQ2_S", 256, 82), [23] = ("IQ4_XS", 256, 136), [24] = ("I8", 1, 1), [25] = ("I16", 1, 2),
        [26] = ("I32", 1, 4), [27] = ("I64", 1, 8), [28] = ("F64", 1, 8), [29] = ("IQ1_M", 256, 56), [30] = ("BF16", 1, 2),
    };

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

        public string Str(string what, int maxBytes = 1 << 20)
        {
            ulong n = U64(what + " length");
            if (n > (ulong)maxBytes)
            {
                throw new WeightsFormatException($"gguf: {what} is {n} bytes long, more than the {maxBytes}-byte limit");
            }
            var bytes = Bytes((long)n, what);
            try
            {
                return new UTF8Encoding(false, true).GetString(bytes);
            }
            catch (DecoderFallbackException)
            {
                throw new WeightsFormatException($"gguf: {what} at offset {Position - (long)n} is not valid UTF-8");
            }
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
        if (version is not (2 or 3))
        {
            throw new WeightsFormatException($"gguf: unsupported version {version} (2 and 3 are supported)");
        }
        ulong tensorCount = c.U64("the tensor count");
        ulong kvCount = c.U64("the key-value count");
        // Every tensor info takes at least 8+4+8+4+8 bytes and every key-value at least 8+4+1: a count the file could
        // not hold is corrupt, and must not drive an allocation.
        if (tensorCount > (ulong)(fileLength / 32) || kvCount > (ulong)(fileLength / 13))
        {
            throw new WeightsFormatException($"gguf: truncated header or corrupt counts: {tensorCount} tensors and {kvCount} key-values cannot fit in a {fileLength}-byte file");
        }
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        long alignment = 32;
        for (ulong i = 0; i < kvCount; i++)
        {
            string key = c.Str($"key {i}", 65536);
            uint type = c.U32($"the type of '{key}'");
            string? value = ReadValue(ref c, type, key, depth: 0);
            if (!metadata.TryAdd(key, value ?? ""))
            {
                throw new WeightsFormatException($"gguf: duplicate key '{key}'");
            }
            if (key == "general.alignment")
            {
                if (type != 4 || !long.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out alignment) ||
                    alignment == 0 || !BitOperations.IsPow2(alignment))
                {
                    throw new WeightsFormatException($"gguf: general.alignment must be a u32 power of two, found '{value}' (type {type})");
                }
            }
        }
        var infos = new List<(string Name, uint Type, long[] Dims, ulong Offset)>((int)tensorCount);
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (ulong i = 0; i < tensorCount; i++)
        {
            string name = c.Str($"the name of tensor {i}", 65536);
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
                ulong dim = c.U64($"dimension {d} of '{name}'");
                if (dim > long.MaxValue)
                {
                    throw new WeightsFormatException($"gguf: dimension {d} of tensor '{name}' is out of range");
                }
                dims[d] = (long)dim;
            }
            uint type = c.U32($"the type of '{name}'");
            ulong offset = c.U64($"the offset of '{name}'");
            infos.Add((name, type, dims, offset));
        }
        long dataStart = (c.Position + alignment - 1) / alignment * alignment;
        var tensors = new List<TensorInfo>(infos.Count);
        foreach (var (name, type, dims, offset) in infos)
        {
            if (!s_types.TryGetValue(type, out var t))
            {
                throw new WeightsFormatException($"gguf: tensor '{name}' has unknown ggml type {type}");
            }
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
            if (offset % (ulong)alignment != 0)
            {
                throw new WeightsFormatException($"gguf: tensor '{name}' offset {offset} is not a multiple of the alignment {alignment}");
            }
            if (offset > (ulong)(long.MaxValue - dataStart))
            {
                throw new WeightsFormatException($"gguf: tensor '{name}' offset {offset} is out of range");
            }
            // GGUF lists dimensions innermost first; expose them outermost first like safetensors and numpy.
            var shape = dims.Reverse().ToArray();
            tensors.Add(new TensorInfo(name, t.Name, [.. shape], dataStart + (long)offset, bytes));
        }
        TensorChecks.CheckLayout(tensors, dataStart, fileLength, "gguf");
        return new WeightsHeader("gguf", tensors, metadata, dataStart);
    }

    /// <summary>Reads one value; returns its text for scalars and strings, a summary for arrays.</summary>
    private static string? ReadValue(ref Cursor c, uint type, string key, int depth)
    {
        switch (type)
        {
            case 0: return c.Bytes(1, key)[0].ToString(CultureInfo.InvariantCulture);
            case 1: return ((sbyte)c.Bytes(1, key)[0]).ToString(CultureInfo.InvariantCulture);
            case 2: return BinaryPrimitives.ReadUInt16LittleEndian(c.Bytes(2, key)).ToString(CultureInfo.InvariantCulture);
            case 3: return BinaryPrimitives.ReadInt16LittleEndian(c.Bytes(2, key)).ToString(CultureInfo.InvariantCulture);
            case 4: return c.U32(key).ToString(CultureInfo.InvariantCulture);
            case 5: return ((int)c.U32(key)).ToString(CultureInfo.InvariantCulture);
            case 6: return BitConverter.UInt32BitsToSingle(c.U32(key)).ToString(CultureInfo.InvariantCulture);
            case 7:
                {
                    byte b = c.Bytes(1, key)[0];
                    return b switch { 0 => "false", 1 => "true", _ => throw new WeightsFormatException($"gguf: '{key}' is a bool of value {b}") };
                }
            case 8: return c.Str($"the value of '{key}'");
            case 9:
                {
                    if (depth > 0)
                    {
                        throw new WeightsFormatException($"gguf: '{key}' nests arrays");
                    }
                    uint elementType = c.U32($"the element type of '{key}'");
                    ulong count = c.U64($"the length of '{key}'");
                    long minElement = elementType switch { 0 or 1 or 7 => 1, 2 or 3 => 2, 4 or 5 or 6 => 4, 8 or 10 or 11 or 12 => 8, _ => 1 };
                    if (count > (ulong)((c.Length - c.Position) / minElement))
                    {
                        throw new WeightsFormatException($"gguf: array '{key}' claims {count} elements, more than the rest of the file holds");
                    }
                    for (ulong i = 0; i < count; i++)
                    {
                        if (elementType == 8)
                        {
                            // Skip strings without decoding them (tokenizer vocabularies have 100k+ entries).
                            ulong n = c.U64($"'{key}'[{i}] length");
                            if (n > 1 << 20)
                            {
                                throw new WeightsFormatException($"gguf: '{key}'[{i}] is {n} bytes long, more than the 1 MiB limit");
                            }
                            c.Skip((long)n, $"'{key}'[{i}]");
                        }
                        else
                        {
                            _ = ReadValue(ref c, elementType, key, depth + 1);
                        }
                    }
                    return $"[{count} x type {elementType}]";
                }
            case 10: return c.U64(key).ToString(CultureInfo.InvariantCulture);
            case 11: return ((long)c.U64(key)).ToString(CultureInfo.InvariantCulture);
            case 12: return BitConverter.UInt64BitsToDouble(c.U64(key)).ToString(CultureInfo.InvariantCulture);
            default: throw new WeightsFormatException($"gguf: '{key}' has unknown value type {type}");
        }
    }

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
