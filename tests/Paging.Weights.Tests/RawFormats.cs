using System.Buffers.Binary;
using System.Text;

namespace Paging.Weights.Tests;

/// <summary>Byte-level builders written from the format references (not from our writers), so a test can make any
/// file the references accept or refuse: every field explicit, nothing validated.</summary>
internal static class RawFormats
{
    /// <summary>A safetensors file: the header length, the header bytes as given, then <paramref name="dataBytes"/>
    /// bytes of data.</summary>
    public static byte[] Safetensors(string json, long dataBytes, string padding = "")
    {
        var header = Encoding.UTF8.GetBytes(json + padding);
        var file = new byte[8 + header.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)header.Length);
        header.CopyTo(file, 8);
        return file;
    }

    /// <summary>A GGUF value: its type id and its bytes (after the type).</summary>
    public readonly record struct Value(uint Type, byte[] Bytes)
    {
        public static Value U8(byte v) => new(0, [v]);
        public static Value Bool(byte raw) => new(7, [raw]);
        public static Value U32(uint v) => new(4, BitConverter.GetBytes(v));
        public static Value U64(ulong v) => new(10, BitConverter.GetBytes(v));
        public static Value Bytes16(ushort v) => new(2, BitConverter.GetBytes(v));
        public static Value Bytes32(int v) => new(5, BitConverter.GetBytes(v));
        public static Value Str(string s) => StrBytes(Encoding.UTF8.GetBytes(s));
        public static Value StrBytes(byte[] b) => new(8, [.. BitConverter.GetBytes((ulong)b.Length), .. b]);
        public static Value Array(uint elementType, ulong count, byte[] elements) =>
            new(9, [.. BitConverter.GetBytes(elementType), .. BitConverter.GetBytes(count), .. elements]);
    }

    /// <summary>A GGUF tensor info as written: name bytes, dims (innermost first), type id, offset.</summary>
    public readonly record struct RawTensor(byte[] Name, long[] Dims, int Type, ulong Offset)
    {
        public RawTensor(string name, long[] dims, int type, ulong offset) : this(Encoding.UTF8.GetBytes(name), dims, type, offset) { }
    }

    /// <summary>A GGUF file: magic, version, counts, the key-values, the tensor infos, then (when
    /// <paramref name="padToAlignment"/>) zeros up to the alignment, then <paramref name="dataBytes"/> bytes.</summary>
    public static byte[] Gguf(IEnumerable<(string Key, Value Value)> kvs, IEnumerable<RawTensor> tensors, long dataBytes,
        uint version = 3, int alignment = 32, bool padToAlignment = true)
    {
        var ms = new MemoryStream();
        var w = new BinaryWriter(ms);
        var kvList = kvs.ToList();
        var tList = tensors.ToList();
        w.Write(0x46554747u);
        w.Write(version);
        w.Write((ulong)tList.Count);
        w.Write((ulong)kvList.Count);
        foreach (var (key, value) in kvList)
        {
            var k = Encoding.UTF8.GetBytes(key);
            w.Write((ulong)k.Length);
            w.Write(k);
            w.Write(value.Type);
            w.Write(value.Bytes);
        }
        foreach (var t in tList)
        {
            w.Write((ulong)t.Name.Length);
            w.Write(t.Name);
            w.Write((uint)t.Dims.Length);
            foreach (long d in t.Dims)
            {
                w.Write(d);
            }
            w.Write(t.Type);
            w.Write(t.Offset);
        }
        if (padToAlignment)
        {
            while (ms.Length % alignment != 0)
            {
                w.Write((byte)0);
            }
        }
        w.Write(new byte[dataBytes]);
        return ms.ToArray();
    }

    /// <summary>The general.* keys a real file has.</summary>
    public static (string, Value)[] GeneralKeys => [("general.architecture", Value.Str("llama")), ("general.name", Value.Str("t"))];
}
