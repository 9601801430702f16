using System.Runtime.InteropServices;

namespace Paging.Weights.Tests;

/// <summary>Generated checkpoints with deterministic bytes, and a guard-paged buffer for parsing raw headers.</summary>
internal static class Checkpoints
{
    /// <summary>Every dtype of the reference reader (the first 15 in their historical order: tests index into it).</summary>
    public static readonly string[] SafetensorsDTypes = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "I64", "U64", "F64",
        "F8_E8M0", "C64", "F4", "F6_E2M3", "F6_E3M2"];

    public static void Fill(int index, Span<byte> data)
    {
        for (int i = 0; i < data.Length; i++)
        {
            data[i] = (byte)(index * 31 + i * 7 + (i >> 9));
        }
    }

    public static string TempPath(string ext) => Path.Combine(Path.GetTempPath(), $"paging-weights-{Environment.ProcessId}-{Guid.NewGuid():N}.{ext}");

    public static string WriteSafetensors(IReadOnlyList<(string, string, long[])> tensors, Dictionary<string, string>? metadata = null)
    {
        var path = TempPath("safetensors");
        using var fs = File.Create(path);
        SafetensorsReader.Write(fs, tensors, Fill, metadata);
        return path;
    }

    public static byte[] SafetensorsBytes(IReadOnlyList<(string, string, long[])> tensors)
    {
        var ms = new MemoryStream();
        SafetensorsReader.Write(ms, tensors, Fill);
        return ms.ToArray();
    }

    public static byte[] GgufBytes(IReadOnlyList<(string, string, long[])> tensors, uint alignment = 32, bool alignmentKey = false)
    {
        var ms = new MemoryStream();
        GgufReader.Write(ms, new Dictionary<string, string> { ["general.name"] = "test", ["general.architecture"] = "llama" }, tensors, Fill, alignment, alignmentKey);
        return ms.ToArray();
    }
}

/// <summary>Bytes placed so that the byte after the last one is a PROT_NONE page: a parser that reads past the end
/// crashes the test run instead of silently reading garbage.</summary>
internal sealed unsafe partial class GuardedBuffer : IDisposable
{
    private readonly nint _map;
    private readonly nuint _mapLength;

    public GuardedBuffer(int capacity)
    {
        long pages = (capacity + 4095) / 4096 + 1;
        _mapLength = (nuint)(pages * 4096);
        _map = Mmap(0, _mapLength, 3, 0x22, -1, 0);
        if (_map == -1)
        {
            throw new InvalidOperationException("mmap failed");
        }
        if (Mprotect(_map + (nint)((pages - 1) * 4096), 4096, 0) != 0)
        {
            throw new InvalidOperationException("mprotect failed");
        }
        End = (byte*)_map + (pages - 1) * 4096;
    }

    public byte* End { get; }

    /// <summary>Copies <paramref name="data"/> to end right at the guard page; returns its start.</summary>
    public byte* Place(ReadOnlySpan<byte> data)
    {
        byte* start = End - data.Length;
        data.CopyTo(new Span<byte>(start, data.Length));
        return start;
    }

    public void Dispose() => _ = Munmap(_map, _mapLength);

    [LibraryImport("libc", EntryPoint = "mmap")]
    private static partial nint Mmap(nint a, nuint l, int p, int f, int fd, long o);

    [LibraryImport("libc", EntryPoint = "mprotect")]
    private static partial int Mprotect(nint a, nuint l, int p);

    [LibraryImport("libc", EntryPoint = "munmap")]
    private static partial int Munmap(nint a, nuint l);
}
