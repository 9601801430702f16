using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace Paging.Weights;

/// <summary>
/// Parses a safetensors header exactly as the reference reader does (the huggingface/safetensors crate,
/// <c>SafeTensors::read_metadata</c>; docs/WEIGHTS-FORMATS.md lists every rule): an 8-byte little-endian header
/// length (at most 100,000,000), that many bytes of UTF-8 JSON — an object, with JSON whitespace only around it —
/// mapping tensor names to {dtype, shape, data_offsets} (offsets relative to the data start), plus an optional
/// <c>"__metadata__"</c> object of strings (or <c>null</c>). Fields a tensor entry does not know are ignored, as serde
/// ignores them; a repeated field is an error; a repeated tensor name keeps the last entry (serde's map semantics).
/// Sorted by offsets, the tensors must tile the data section from 0 without gaps, each exactly shape × dtype bits / 8
/// bytes (a whole number of bytes), and the last must end at the end of the file: trailing bytes are an error.
/// </summary>
public static unsafe class SafetensorsReader
{
    /// <summary>The largest header accepted (the reference implementation's limit: 100 MB).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    // The reference crate's Dtype::bitsize (safetensors 0.6+): the 4- and 6-bit float types pack several elements
    // per byte, so a tensor's size is elements × bits / 8 and must be a whole number of bytes.
    private static readonly Dictionary<string, int> s_dtypeBits = new(StringComparer.Ordinal)
    {
        ["F4"] = 4, ["F6_E2M3"] = 6, ["F6_E3M2"] = 6,
        ["BOOL"] = 8, ["U8"] = 8, ["I8"] = 8, ["F8_E5M2"] = 8, ["F8_E4M3"] = 8, ["F8_E8M0"] = 8,
        ["I16"] = 16, ["U16"] = 16, ["F16"] = 16, ["BF16"] = 16,
        ["I32"] = 32, ["U32"] = 32, ["F32"] = 32,
        ["I64"] = 64, ["U64"] = 64, ["F64"] = 64, ["C64"] = 64,
    };

    /// <summary>The dtypes the reference reader knows.</summary>
    public static IEnumerable<string> DTypes => s_dtypeBits.Keys;

    /// <summary>The width of one element of a dtype in bits (4 for F4, 6 for the F6 types), or 0 when unknown.</summary>
    public static int DTypeBits(string dtype) => s_dtypeBits.GetValueOrDefault(dtype);

    private readonly record struct Entry(string DType, long[] Shape, ulong Begin, ulong End);

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
        if (!System.Text.Unicode.Utf8.IsValid(json))
        {
            throw new WeightsFormatException("safetensors: the header is not valid UTF-8");
        }
        long dataStart = 8 + (long)headerLength;
        var entries = new Dictionary<string, Entry>(StringComparer.Ordinal);
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        bool sawMetadata = false;
        // serde_json's recursion limit is 128; ignored fields may nest that deep.
        var reader = new Utf8JsonReader(json, new JsonReaderOptions { MaxDepth = 128 });
        try
        {
            Expect(ref reader, JsonTokenType.StartObject, "the header (a JSON object)");
            while (true)
            {
                Read(ref reader);
                if (reader.TokenType == JsonTokenType.EndObject)
                {
                    break;
                }
                string name = reader.GetString()!;
                if (name == "__metadata__")
                {
                    if (sawMetadata)
                    {
                        throw new WeightsFormatException("safetensors: duplicate field '__metadata__'");
                    }
                    sawMetadata = true;
                    ReadMetadata(ref reader, metadata);
                }
                else
                {
                    entries[name] = ReadTensor(ref reader, name); // a repeated name keeps the last entry, as serde's map does
                }
            }
            // Only JSON whitespace may follow the object (writers pad with spaces); anything else is an error here.
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
        var tensors = new List<TensorInfo>(entries.Count);
        ulong position = 0;
        // Like the reference: sort by (begin, end), then the tensors must tile [0, end of data) in that order.
        foreach (var (name, e) in entries.OrderBy(kv => kv.Value.Begin).ThenBy(kv => kv.Value.End))
        {
            if (e.Begin != position || e.End < e.Begin)
            {
                throw new WeightsFormatException(e.End < e.Begin
                    ? $"safetensors: tensor '{name}' has data_offsets [{e.Begin}, {e.End}) that end before they begin"
                    : $"safetensors: tensor '{name}' starts at data offset {e.Begin}, not at {position} where the previous tensor ends (tensors must tile the data section without gaps or overlap)");
            }
            position = e.End;
            ulong elements = 1;
            foreach (long d in e.Shape)
            {
                elements = MultiplyChecked(elements, (ulong)d, name);
            }
            ulong bits = MultiplyChecked(elements, (ulong)DTypeBits(e.DType), name);
            if (bits % 8 != 0)
            {
                throw new WeightsFormatException($"safetensors: tensor '{name}' is {e.DType}[{string.Join(',', e.Shape)}] = {bits} bits, not a whole number of bytes");
            }
            if (bits / 8 != e.End - e.Begin)
            {
                throw new WeightsFormatException($"safetensors: tensor '{name}' is {e.DType}[{string.Join(',', e.Shape)}] = {bits / 8} bytes but its data_offsets span {e.End - e.Begin}");
            }
            tensors.Add(new TensorInfo(name, e.DType, [.. e.Shape], dataStart + (long)e.Begin, (long)(e.End - e.Begin)));
        }
        if (position != (ulong)(fileLength - dataStart))
        {
            throw new WeightsFormatException(position > (ulong)(fileLength - dataStart)
                ? $"safetensors: the tensors end at data offset {position} but the file holds {fileLength - dataStart} bytes of data: the data is shorter than declared (truncated file?)"
                : $"safetensors: the tensors end at data offset {position} but the file holds {fileLength - dataStart} bytes of data: {fileLength - dataStart - (long)position} bytes after the last tensor (the reference reader refuses trailing bytes)");
        }
        return new WeightsHeader("safetensors", tensors, metadata, dataStart);
    }

    private static ulong MultiplyChecked(ulong a, ulong b, string name)
    {
        try
        {
            return checked(a * b);
        }
        catch (OverflowException)
        {
            throw new WeightsFormatException($"safetensors: the size of tensor '{name}' overflows 64 bits");
        }
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

    /// <summary>"__metadata__": null, or an object of strings (a repeated key keeps the last value).</summary>
    private static void ReadMetadata(ref Utf8JsonReader reader, Dictionary<string, string> metadata)
    {
        Read(ref reader);
        if (reader.TokenType == JsonTokenType.Null)
        {
            return;
        }
        if (reader.TokenType != JsonTokenType.StartObject)
        {
            throw new WeightsFormatException($"safetensors: __metadata__ must be an object of strings or null, found {reader.TokenType}");
        }
        while (true)
        {
            Read(ref reader);
            if (reader.TokenType == JsonTokenType.EndObject)
            {
                return;
            }
            string key = reader.GetString()!;
            Expect(ref reader, JsonTokenType.String, $"__metadata__.{key} (values must be strings)");
            metadata[key] = reader.GetString()!;
        }
    }

    private static Entry ReadTensor(ref Utf8JsonReader reader, string name)
    {
        Expect(ref reader, JsonTokenType.StartObject, $"tensor '{name}'");
        string? dtype = null;
        List<long>? shape = null;
        ulong begin = 0, end = 0;
        bool offsets = false;
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
                case "dtype":
                    if (dtype is not null)
                    {
                        throw Repeated(name, field);
                    }
                    Expect(ref reader, JsonTokenType.String, $"'{name}'.dtype");
                    dtype = reader.GetString()!;
                    if (DTypeBits(dtype) == 0)
                    {
                        throw new WeightsFormatException($"safetensors: tensor '{name}' has unknown dtype '{dtype}' (known: {string.Join(", ", DTypes)})");
                    }
                    break;
                case "shape":
                    if (shape is not null)
                    {
                        throw Repeated(name, field);
                    }
                    Expect(ref reader, JsonTokenType.StartArray, $"'{name}'.shape");
                    shape = [];
                    while (true)
                    {
                        Read(ref reader);
                        if (reader.TokenType == JsonTokenType.EndArray)
                        {
                            break;
                        }
                        // The reference reads usize: a non-negative integer. (Beyond 2^63 - 1 the size overflows
                        // anyway unless another dimension is 0; such a dimension is refused here.)
                        if (reader.TokenType != JsonTokenType.Number || !reader.TryGetInt64(out long dim) || dim < 0)
                        {
                            throw new WeightsFormatException($"safetensors: tensor '{name}' has a dimension that is not a non-negative 64-bit integer");
                        }
                        shape.Add(dim);
                    }
                    break;
                case "data_offsets":
                    if (offsets)
                    {
                        throw Repeated(name, field);
                    }
                    Expect(ref reader, JsonTokenType.StartArray, $"'{name}'.data_offsets");
                    begin = ReadOffset(ref reader, name);
                    end = ReadOffset(ref reader, name);
                    Expect(ref reader, JsonTokenType.EndArray, $"'{name}'.data_offsets (exactly two offsets)");
                    offsets = true;
                    break;
                default:
                    // serde ignores fields it does not know (TensorInfo has no deny_unknown_fields).
                    reader.Skip();
                    break;
            }
        }
        if (dtype is null || shape is null || !offsets)
        {
            throw new WeightsFormatException($"safetensors: tensor '{name}' lacks {(dtype is null ? "dtype" : shape is null ? "shape" : "data_offsets")}");
        }
        return new Entry(dtype, [.. shape], begin, end);
    }

    private static WeightsFormatException Repeated(string name, string field) =>
        new($"safetensors: tensor '{name}' has the field '{field}' twice");

    private static ulong ReadOffset(ref Utf8JsonReader reader, string name)
    {
        Read(ref reader);
        if (reader.TokenType != JsonTokenType.Number || !reader.TryGetUInt64(out ulong value))
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
                long bytes = shape.Aggregate(1L, (a, b) => a * b) * DTypeBits(dtype) / 8;
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
