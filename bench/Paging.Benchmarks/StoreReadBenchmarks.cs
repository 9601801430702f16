using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using Paging.Backends;
using Paging.Backends.Compression;

namespace Paging.Benchmarks;

/// <summary>
/// What a store adds to a one-page fault: one <see cref="IPageStore.Read"/> of a random 4 KiB page of a hot 64 MiB
/// file into an aligned buffer (the anonymous fill's copy buffer), for the plain file store (the baseline) and for
/// packs of the same file. Everything else on the fault path (the message, the claim, the mapping ioctl, the wake-up)
/// is the same for every store, and at 45–60 µs per fault on this VM its run-to-run noise is larger than a store's
/// cost, so issue #13's "LZ4 adds ≤ 1.5 µs per page" is measured here. The data is the harness's text-like data
/// (LZ4 ~2.5:1); the file and packs stay in the page cache (they are read once in setup).
/// </summary>
[MemoryDiagnoser]
public unsafe class StoreReadBenchmarks : IDisposable
{
    private const int FileBytes = 64 << 20;
    private const int Page = 4096;
    private string _dir = "";
    private IPageStore _store = null!;
    private byte* _buffer;
    private long[] _order = [];
    private int _next;

    /// <summary>file; lz4 or zstd with the block size of the pack.</summary>
    [Params("file", "lz4-4K", "lz4-64K", "zstd-4K")]
    public string Store { get; set; } = "file";

    [GlobalSetup]
    public void Setup()
    {
        _dir = Path.Combine(Path.GetTempPath(), $"paging-storebench-{Environment.ProcessId}");
        Directory.CreateDirectory(_dir);
        string path = Path.Combine(_dir, "data.bin");
        WriteTextLike(path);
        if (Store == "file")
        {
            _store = new FilePageStore(path, 0, writable: false);
        }
        else
        {
            var parts = Store.Split('-');
            var codec = parts[0] == "lz4" ? PageCodecKind.Lz4 : PageCodecKind.Zstd;
            int block = parts[1] == "4K" ? 4096 : 65536;
            string pack = Path.Combine(_dir, $"data.{Store}.pgz");
            using (var input = File.OpenRead(path))
            using (var output = File.Create(pack))
            {
                _ = PackWriter.Pack(input, output, codec, PackWriter.DefaultLevel(codec), block);
            }
            _store = new CompressedPageStore(new FilePageStore(pack, 0, writable: false), pack);
        }
        _buffer = (byte*)NativeMemory.AlignedAlloc(Page, Page);
        _order = Enumerable.Range(0, FileBytes / Page).Select(p => (long)p * Page).ToArray();
        new Random(1).Shuffle(_order);
        // Warm: every page read once (page cache, the pack's index, the codec's library).
        foreach (long offset in _order)
        {
            _ = _store.Read(offset, new Span<byte>(_buffer, Page));
        }
    }

    [GlobalCleanup]
    public void Dispose()
    {
        _store?.Dispose();
        if (_buffer != null)
        {
            NativeMemory.AlignedFree(_buffer);
            _buffer = null;
        }
        if (Directory.Exists(_dir))
        {
            Directory.Delete(_dir, recursive: true);
        }
        GC.SuppressFinalize(this);
    }

    /// <summary>One random page.</summary>
    [Benchmark]
    public PageReadStatus ReadRandomPage()
    {
        long offset = _order[_next];
        _next = _next + 1 == _order.Length ? 0 : _next + 1;
        return _store.Read(offset, new Span<byte>(_buffer, Page));
    }

    private static void WriteTextLike(string path)
    {
        // The harness's --data text: words of a small vocabulary (LZ4 ~2.5:1, zstd ~6:1).
        ReadOnlySpan<string> words = ["page ", "fault ", "userfaultfd ", "the ", "pager ", "fills ", "region ", "\n", "0.0213 ", "-1.5e-3 "];
        var rng = new Random(1);
        var buffer = new byte[1 << 20];
        using var fs = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.Read, 1 << 20);
        for (int mib = 0; mib < FileBytes >> 20; mib++)
        {
            for (int i = 0; i < buffer.Length;)
            {
                foreach (char c in words[rng.Next(words.Length)])
                {
                    if (i < buffer.Length)
                    {
                        buffer[i++] = (byte)c;
                    }
                }
            }
            fs.Write(buffer);
        }
    }
}
