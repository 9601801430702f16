using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace Paging.Weights;

/// <summary>
/// Parses a safetensors header: an 8-byte little-endian header length, then that many bytes of JSON mapping tensor
/// names to {dtype, shape, data_offsets} (offsets relative to the data start), plus an optional "__metadata__" object
/// of strings. Strict: size limits, known dtypes, shape × dtype size = byte length (overflow-checked), offsets inside
/// the file, no overlap, no duplicate keys, no unknown fields.
/// </summary>
public static unsafe class SafetensorsReader
{
    /// <summary>The largest header accepted (the reference implementation's limit: 100 MB).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    private static readonly Dictionary<string, int> s_dtypeSizes = new(StringComparer.Ordinal)
    {
        ["BOOL"] = 1, ["U8"] = 1, ["I8"] = 1, ["F8_E5M2"] = 1, ["F8_E4M3"] = 1,
        ["I16"] = 2, ["U16"] = 2, ["F16"] = 2, ["BF16"] = 2,
        ["I32"] = 4, ["U32"] = 4, ["F32"] = 4,
        ["I64"] = 8, ["U64"] = 8, ["F64"] = 8,
    };

    /// <summary>The element size of a dtype, or 0 when unknown.</summary>
    public static int DTypeSize(string dtype) => s_dtypeSizes.GetValueOrDefault(dtype);

    /// <summary>Parses the header at <paramref name="file"/> (the whole file, <paramref name="fileLength"/> bytes,
    /// readable memory: a Paging region or a pinned buffer). Throws <see cref="WeightsFormatException"/>.</summary>
    public static WeightsHeader Parse(byte* file, long fileLength)
    {
        if (fileLength < 8)
        {
            throw new WeightsFormatException($"safetensors: the file is {fileLength} bytes, shorter than the 8-byte header length");
        }
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(new ReadOnlySpan<byte>(file, 8));
        if (headerLength > MaxHeaderBytes)
        {
            throw new WeightsFormatException($"safetensors: header length {headerLength} exceeds the {MaxHeaderBytes}-byte limit");
        }
        if ((long)headerLength > fileLength - 8)
        {
            throw new WeightsFormatException($"safetensors: header length {headerLength} is beyond the end of the {fileLength}-byte file (truncated header)");
        }
        var json = new ReadOnlySpan<byte>(file + 8, (int)headerLength);
        if (json.Length == 0 || json[0] != (byte)'{')
        {
            throw new WeightsFormatException("safetensors: the header is not a JSON object (bad magic: does not start with '{')");
        }
        long dataStart = 8 + (long)headerLength;
        var tensors = new List<TensorInfo>();
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        var names = new HashSet<string>(StringComparer.Ordinal);
        var reader = new Utf8JsonReader(json, new JsonReaderOptions { MaxDepth = 8 });
        try
        {
            Expect(ref reader, JsonTokenType.StartObject, "the header");
            while (true)
            {
                Read(ref reader);
                if (reader.TokenType == JsonTokenType.EndObject)
                {
                    break;
                }
                string name = reader.GetString()!;
                if (!names.Add(name))
                {
                    throw new WeightsFormatException($"safetensors: duplicate key '{name}' in the header");
                }
                if (name == "__metadata__")
                {
                    ReadMetadata(ref reader, metadata);
                }
                else
                {
                    tensors.Add(ReadTensor(ref reader, name, dataStart));
                }
            }
            // Trailing bytes may only be the spaces writers pad with.
            if (reader.Read())
            {
                throw new WeightsFormatException("safetensors: invalid JSON: trailing content after the header object");
            }
        }
        catch (JsonException e)
        {
            throw new WeightsFormatException($"safetensors: invalid JSON in the header at byte {reader.BytesConsumed}: {e.Message}", e);
        }
        catch (InvalidOperationException e)
        {
            throw new WeightsFormatException($"safetensors: invalid JSON value in the header at byte {reader.BytesConsumed}: {e.Message}", e);
        }
        TensorChecks.CheckLayout(tensors, dataStart, fileLength, "safetensors");
        return new WeightsHeader("safetensors", tensors, metadata, dataStart);
    }

    private static void Read(ref Utf8JsonReader reader)
    {
        if (!reader.Read())
        {
            throw new WeightsFormatException("safetensors: invalid JSON: the header ends early");
        }
    }

    private static void Expect(ref Utf8JsonReader reader, JsonTokenType type, string what)
    {
        Read(ref reader);
        if (reader.TokenType != type)
        {
            throw new WeightsFormatException($"safetensors: expected {type} for {what}, found {reader.TokenType}");
        }
    }

    private static void ReadMetadata(ref Utf8JsonReader reader, Dictionary<string, string> metadata)
    {
        Expect(ref reader, JsonTokenType.StartObject, "__metadata__");
        while (true)
        {
            Read(ref reader);
            if (reader.TokenType == JsonTokenType.EndObject)
            {
                return;
            }
            string key = reader.GetString()!;
            Expect(ref reader, JsonTokenType.String, $"__metadata__.{key} (values must be strings)");
            if (!metadata.TryAdd(key, reader.GetString()!))
            {
                throw new WeightsFormatException($"safetensors: duplicate key '__metadata__.{key}'");
            }
        }
    }

    private static TensorInfo ReadTensor(ref Utf8JsonReader reader, string name, long dataStart)
    {
        Expect(ref reader, JsonTokenType.StartObject, $"tensor '{name}'");
        string? dtype = null;
        List<long>? shape = null;
        long begin = -1, end = -1;
        while (true)
        {
            Read(ref reader);
            if (reader.TokenType == JsonTokenType.EndObject)
            {
                break;
            }
            string field = reader.GetString()!;
            switch (field)
            {
                case "dtype" when dtype is null:
                    Expect(ref reader, JsonTokenType.String, $"'{name}'.dtype");
                    dtype = reader.GetString()!;
                    break;
                case "shape" when shape is null:
                    Expect(ref reader, JsonTokenType.StartArray, $"'{name}'.shape");
                    shape = [];
                    while (true)
                    {
                        Read(ref reader);
                        if (reader.TokenType == JsonTokenType.EndArray)
                        {
                            break;
                        }
                        if (reader.TokenType != JsonTokenType.Number || !reader.TryGetInt64(out long dim) || dim < 0)
                        {
                            throw new WeightsFormatException($"safetensors: tensor '{name}' has a dimension that is not a non-negative 64-bit integer");
                        }
                        if (shape.Count == 64)
                        {
                            throw new WeightsFormatException($"safetensors: tensor '{name}' has more than 64 dimensions");
                        }
                        shape.Add(dim);
                    }
                    break;
                case "data_offsets" when begin < 0:
                    Expect(ref reader, JsonTokenType.StartArray, $"'{name}'.data_offsets");
                    begin = ReadOffset(ref reader, name);
                    end = ReadOffset(ref reader, name);
                    Expect(ref reader, JsonTokenType.EndArray, $"'{name}'.data_offsets (exactly two offsets)");
                    break;
                default:
                    throw new WeightsFormatException($"safetensors: tensor '{name}' has an unknown or repeated field '{field}'");
            }
        }
        if (dtype is null || shape is null || begin < 0)
        {
            throw new WeightsFormatException($"safetensors: tensor '{name}' lacks {(dtype is null ? "dtype" : shape is null ? "shape" : "data_offsets")}");
        }
        int size = DTypeSize(dtype);
        if (size == 0)
        {
            throw new WeightsFormatException($"safetensors: tensor '{name}' has unknown dtype '{dtype}'");
        }
        if (end < begin)
        {
            throw new WeightsFormatException($"safetensors: tensor '{name}' has data_offsets [{begin}, {end}) that end before they begin");
        }
        long elements = 1;
        foreach (long d in shape)
        {
            elements = TensorChecks.MultiplyChecked(elements, d, "safetensors", name);
        }
        long bytes = TensorChecks.MultiplyChecked(elements, size, "safetensors", name);
        if (bytes != end - begin)
        {
            throw new WeightsFormatException($"safetensors: tensor '{name}' is {dtype}[{string.Join(',', shape)}] = {bytes} bytes but its data_offsets span {end - begin}");
        }
        if (begin > long.MaxValue - dataStart)
        {
            throw new WeightsFormatException($"safetensors: tensor '{name}' has offsets out of range");
        }
        return new TensorInfo(name, dtype, [.. shape], dataStart + begin, bytes);
    }

    private static long ReadOffset(ref Utf8JsonReader reader, string name)
    {
        Read(ref reader);
        if (reader.TokenType != JsonTokenType.Number || !reader.TryGetInt64(out long value) || value < 0)
        {
            throw new WeightsFormatException($"safetensors: tensor '{name}' has a data offset that is not a non-negative 64-bit integer");
        }
        return value;
    }

    /// <summary>Writes a safetensors file (tests and the harness generate checkpoints with it). Tensors are laid out
    /// in the given order; <paramref name="fill"/> writes each tensor's bytes.</summary>
    internal static void Write(Stream output, IReadOnlyList<(string Name, string DType, long[] Shape)> tensors, Action<int, Span<byte>> fill,
        IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentNullException.ThrowIfNull(fill);
        var header = new MemoryStream();
        long offset = 0;
        var lengths = new long[tensors.Count];
        using (var w = new Utf8JsonWriter(header))
        {
            w.WriteStartObject();
            if (metadata is not null)
            {
                w.WriteStartObject("__metadata__");
                foreach (var (k, v) in metadata)
                {
                    w.WriteString(k, v);
                }
                w.WriteEndObject();
            }
            for (int i = 0; i < tensors.Count; i++)
            {
                var (name, dtype, shape) = tensors[i];
                long bytes = shape.Aggregate(1L, (a, b) => a * b) * DTypeSize(dtype);
                lengths[i] = bytes;
                w.WriteStartObject(name);
                w.WriteString("dtype", dtype);
                w.WriteStartArray("shape");
                foreach (long d in shape)
                {
                    w.WriteNumberValue(d);
                }
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + bytes);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += bytes;
            }
            w.WriteEndObject();
        }
        // Pad the header with spaces so the data starts 8-byte aligned, as the reference writer does.
        long pad = (8 - (header.Length % 8)) % 8;
        Span<byte> len = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)(header.Length + pad));
        output.Write(len);
        header.WriteTo(output);
        output.Write(Encoding.ASCII.GetBytes(new string(' ', (int)pad)));
        var buffer = new byte[1 << 20];
        for (int i = 0; i < tensors.Count; i++)
        {
            if (lengths[i] <= buffer.Length)
            {
                var span = buffer.AsSpan(0, (int)lengths[i]);
                fill(i, span);
                output.Write(span);
            }
            else
            {
                var big = new byte[lengths[i]];
                fill(i, big);
                output.Write(big);
            }
        }
    }
}
