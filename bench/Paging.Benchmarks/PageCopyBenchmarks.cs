using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;

namespace Paging.Benchmarks;

/// <summary>
/// One copy of <see cref="Size"/> bytes per operation. Hot: the same 2 buffers every time (they stay in cache).
/// ColdStream: walks 1 GiB source and destination buffers in order, so every copy misses the cache (the limits
/// program's "cold" rows do the same). ColdRandom: the same buffers in a random chunk order (no prefetcher help).
/// </summary>
[MemoryDiagnoser]
[GroupBenchmarksBy(BenchmarkLogicalGroupRule.ByCategory)]
[CategoriesColumn]
public unsafe class PageCopyBenchmarks
{
    private const long Arena = 1L << 30;
    private byte* _src;
    private byte* _dst;
    private long[] _order = [];
    private int _next;

    [Params(4096, 65536, 2 << 20)]
    public int Size { get; set; }

    [Params("Hot", "ColdStream", "ColdRandom")]
    public string Mode { get; set; } = "Hot";

    [GlobalSetup]
    public void Setup()
    {
        _src = (byte*)NativeMemory.AlignedAlloc((nuint)Arena, 4096);
        _dst = (byte*)NativeMemory.AlignedAlloc((nuint)Arena, 4096);
        // Touch every page of both buffers once so no benchmark measures first-touch page faults.
        new Span<byte>(_src, (int)Arena).Fill(1);
        new Span<byte>(_dst, (int)Arena).Clear();
        long chunks = Arena / Size;
        _order = new long[chunks];
        for (long i = 0; i < chunks; i++)
        {
            _order[i] = i * Size;
        }
        if (Mode == "ColdRandom")
        {
            new Random(1).Shuffle(_order);
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        NativeMemory.AlignedFree(_src);
        NativeMemory.AlignedFree(_dst);
    }

    private long NextOffset()
    {
        if (Mode == "Hot")
        {
            return 0;
        }
        long off = _order[_next];
        _next = _next + 1 == _order.Length ? 0 : _next + 1;
        return off;
    }

    [Benchmark(Baseline = true)]
    [BenchmarkCategory("copy")]
    public void Memcpy()
    {
        long o = NextOffset();
        _ = NativeMethods.Memcpy(_dst + o, _src + o, (nuint)Size);
    }

    [Benchmark]
    [BenchmarkCategory("copy")]
    public void BufferMemoryCopy()
    {
        long o = NextOffset();
        Buffer.MemoryCopy(_src + o, _dst + o, Size, Size);
    }

    [Benchmark]
    [BenchmarkCategory("copy")]
    public void SpanCopyTo()
    {
        long o = NextOffset();
        new ReadOnlySpan<byte>(_src + o, Size).CopyTo(new Span<byte>(_dst + o, Size));
    }

    [Benchmark]
    [BenchmarkCategory("copy")]
    [Arguments(PageCopyPath.Avx512, false)]
    [Arguments(PageCopyPath.Avx512, true)]
    [Arguments(PageCopyPath.Avx2, false)]
    [Arguments(PageCopyPath.Avx2, true)]
    [Arguments(PageCopyPath.Vector128, false)]
    [Arguments(PageCopyPath.Vector128, true)]
    [Arguments(PageCopyPath.Scalar, false)]
    public void PageCopyPathStore(PageCopyPath path, bool nonTemporal)
    {
        long o = NextOffset();
        PageCopy.Copy(_dst + o, _src + o, (nuint)Size, nonTemporal, path);
    }
}

/// <summary>The all-zero check against the BCL's IndexOfAnyExcept, on a zero page (the worst case: read it all).</summary>
[MemoryDiagnoser]
public unsafe class ZeroCheckBenchmarks
{
    private byte* _page;

    [Params(4096, 2 << 20)]
    public int Size { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _page = (byte*)NativeMemory.AlignedAlloc((nuint)Size, 4096);
        new Span<byte>(_page, Size).Clear();
    }

    [GlobalCleanup]
    public void Cleanup() => NativeMemory.AlignedFree(_page);

    [Benchmark(Baseline = true)]
    public bool IndexOfAnyExcept() => new ReadOnlySpan<byte>(_page, Size).IndexOfAnyExcept((byte)0) < 0;

    [Benchmark]
    public bool PageCopyIsZero() => PageCopy.IsZero(_page, (nuint)Size, PageCopy.Best);
}

internal static unsafe partial class NativeMethods
{
    [LibraryImport("libc", EntryPoint = "memcpy")]
    public static partial void* Memcpy(void* destination, void* source, nuint length);
}
