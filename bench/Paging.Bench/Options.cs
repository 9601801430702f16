namespace Paging.Bench;

/// <summary>Command-line options of the harness.</summary>
internal sealed class Options
{
    public List<ArenaKind> Arenas { get; } = [ArenaKind.Anonymous, ArenaKind.Shmem, ArenaKind.HugeTlb];
    public List<string> Backends { get; } = ["zero", "file"];
    public List<string> Patterns { get; } = ["seq", "random", "cold"];
    public List<bool> ReadAhead { get; } = [true, false];
    public long FileSize { get; set; } = 1L << 30;
    public int Pages { get; set; } = 65536;
    public int Threads { get; set; } = 1;
    public bool Json { get; set; }
    public bool Baselines { get; set; } = true;
    public bool ReadOnly { get; set; }
    public int? MaxReadAhead { get; set; }
    public string? File { get; set; }
    public string? PlotDirectory { get; set; }
    public int StoreDelayMicroseconds { get; set; }
    public int HttpLatencyMicroseconds { get; set; }
    public bool? Text { get; set; }
    public int PackBlock { get; set; } = 64 * 1024;

    /// <summary>Generate compressible data: asked for, or by default when a compressed backend runs.</summary>
    public bool TextData => Text ?? Backends.Any(b => b is "lz4" or "zstd");
    public int? PagerSpinMicroseconds { get; set; }
    public int? FillThreads { get; set; }

    /// <summary>The runtime options these flags ask for.</summary>
    public PagingRuntimeOptions RuntimeOptions()
    {
        var defaults = new PagingRuntimeOptions();
        return new PagingRuntimeOptions
        {
            PagerSpin = PagerSpinMicroseconds is { } us ? TimeSpan.FromMicroseconds(us) : defaults.PagerSpin,
            FillThreads = FillThreads ?? defaults.FillThreads,
        };
    }

    public const string Usage = """
        Paging.Bench — the paging benchmark harness. With no arguments: a 1 GiB data file in a temp folder, every
        arena (anonymous, shmem, hugetlb) x backend (zero, file) x pattern (seq, random), 65536 4 KiB touches each,
        plus kernel baselines (mmap of the file, pread, anonymous first touch) in the same run.

          --arena a,b        anonymous | shmem | hugetlb (default: all)
          --backend a,b      zero | file | http | s3 (default: zero,file). http: the data file served by nginx on
                             loopback, with a baseline of plain HttpClient range GETs of the same bytes
                             (kernel/http-ranges: 8 streams x 1 MiB for seq, 4 KiB GETs from --threads tasks for
                             random; for seq also kernel/http-ranges-kept, the same GETs into fresh arrays that
                             keep every byte, as a loader without Paging would); s3: the file as an object in
                             s3rver on loopback, baseline the same GETs through AWSSDK.S3 (kernel/s3-ranges, and
                             kernel/s3-ranges-kept). The harness starts the servers.
                             lz4, zstd: the data file packed once (64 KiB blocks) and read through the compressed
                             store (PageStoreDescriptor.Compressed), with the file baselines
          --pack-block SIZE  block size of the harness's packs (default 64K; 4K … 1M)
          --data x           random | text: the generated file's bytes (default random; text, ~2.5:1 with LZ4, when
                             a compressed backend runs)
          --http-latency-us N  http backend: put a proxy on loopback in front of nginx that delays every answer by
                             N µs (a network's round trip), for Paging and the baseline alike
          --pattern a,b      seq | random | cold (seq after drop_caches; file backend only) | cold-random (random
                             after drop_caches, with a pread baseline at the same --threads) | refault (seq after
                             dropping the mappings: pure MINOR faults; shmem/hugetlb only). Default: seq,random,cold
          --readahead x      on | off | both (default both): read-ahead and fault-around, or one page per fault
          --pages N          4 KiB touches per scenario (default 65536)
          --threads N        touching threads (default 1); the pread baselines use as many
          --pager-spin-us N  how long a fill thread polls the uffd after a batch (PagingRuntimeOptions.PagerSpin)
          --fill-threads N   fill threads per pager (PagingRuntimeOptions.FillThreads)
          --store-delay-us N every store read takes N µs more, asynchronously (the latency decorator, like a
                             network store); scenario names get "+N us"
          --size BYTES       data file size (default 1073741824; suffixes K, M, G)
          --file PATH        use this file instead of generating one
          --max-readahead SIZE  the largest read-ahead window (PrefetchOptions.MaxReadAheadBytes; default: the
                             pager's automatic choice, 4M, 16M for http and s3)
          --read-only        map Paging's regions read-only (RegionOptions.ReadOnly; the touches only load):
                             scenario names get "-ro" (paging-ro, paging-1pg-ro)
          --no-baselines     skip the kernel baselines
          --json             one JSON object per scenario on stdout (progress goes to stderr); cpu_busy is how
                             busy all vCPUs were during the row (0-1, every process and steal, /proc/stat)
          --plot DIR         also write SVG charts to DIR: ns-per-page.svg and latency.svg (p50, p99) per scenario

        Paging.Bench weights [FILE] [--json] [--hot-only] [--http | --url URL] [--arena shmem|hugetlb|anonymous]
          lazy model loading: time to first tensor, all tensors, 10% of tensors, bytes read, against pread / mmap /
          mmap + MADV_WILLNEED full loads, hot and cold. Without FILE: a generated ~2 GiB safetensors checkpoint.
          --http also loads the same checkpoint from nginx on loopback (started by the harness) through the HTTP
          store; --url loads it from URL (the same checkpoint on any server). --arena: where Paging loads it
          (default shmem; hugetlb reserves 2 MiB pages for the run as root and gives them back).

        Paging.Bench startup [--runs N] [--json]
          what an application waits for before its first page, each run in a fresh process (a cold JIT):
          PagingRuntime.Start, CreateRegion (shmem, 64 MiB file), the first fault, the rest of the region; medians.
          PAGING_PAGER=<pager> compares another pager build (a ReadyToRun one, say).

        Also: bufferpool, dirtyscan, tier (docs/BENCHMARKS.md §10-§12).
        """;

    public static Options Parse(string[] args)
    {
        var o = new Options();
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            switch (args[i])
            {
                case "--arena":
                    o.Arenas.Clear();
                    o.Arenas.AddRange(Next().Split(',').Select(ParseArena));
                    break;
                case "--backend":
                    o.Backends.Clear();
                    o.Backends.AddRange(Next().Split(',').Select(b => b is "zero" or "file" or "http" or "s3" or "lz4" or "zstd" ? b : throw new ArgumentException($"unknown backend '{b}' (zero, file, http, s3, lz4, zstd)")));
                    break;
                case "--pattern":
                    o.Patterns.Clear();
                    o.Patterns.AddRange(Next().Split(',').Select(p => p is "seq" or "random" or "refault" or "cold" or "cold-random" ? p : throw new ArgumentException($"unknown pattern '{p}' (seq, random, cold, cold-random, refault)")));
                    break;
                case "--readahead":
                    o.ReadAhead.Clear();
                    o.ReadAhead.AddRange(Next() switch
                    {
                        "on" => [true],
                        "off" => [false],
                        "both" => [true, false],
                        var x => throw new ArgumentException($"--readahead takes on, off or both, not '{x}'"),
                    });
                    break;
                case "--pages": o.Pages = Positive(Next(), "--pages"); break;
                case "--threads": o.Threads = Positive(Next(), "--threads"); break;
                case "--pager-spin-us": o.PagerSpinMicroseconds = int.TryParse(Next(), out int ps) && ps >= 0 ? ps : throw new ArgumentException("--pager-spin-us takes a non-negative integer"); break;
                case "--fill-threads": o.FillThreads = Positive(Next(), "--fill-threads"); break;
                case "--pack-block": o.PackBlock = (int)ParseSize(Next()); break;
                case "--data": o.Text = Next() switch { "text" => true, "random" => false, var x => throw new ArgumentException($"--data takes text or random, not '{x}'") }; break;
                case "--http-latency-us": o.HttpLatencyMicroseconds = int.TryParse(Next(), out int hl) && hl >= 0 ? hl : throw new ArgumentException("--http-latency-us takes a non-negative integer"); break;
                case "--store-delay-us": o.StoreDelayMicroseconds = int.TryParse(Next(), out int d) && d >= 0 ? d : throw new ArgumentException("--store-delay-us takes a non-negative integer"); break;
                case "--size": o.FileSize = ParseSize(Next()); break;
                case "--file": o.File = Next(); break;
                case "--no-baselines": o.Baselines = false; break;
                case "--read-only": o.ReadOnly = true; break;
                case "--max-readahead": o.MaxReadAhead = checked((int)ParseSize(Next())); break;
                case "--json": o.Json = true; break;
                case "--plot": o.PlotDirectory = Next(); break;
                case "-h" or "--help": throw new HelpRequested();
                default: throw new ArgumentException($"unknown argument '{args[i]}'");
            }
        }
        if (o.FileSize % 4096 != 0 || o.FileSize < 4096)
        {
            throw new ArgumentException("--size must be a positive multiple of 4096");
        }
        return o;
    }

    private static ArenaKind ParseArena(string s) => s switch
    {
        "anonymous" or "anon" => ArenaKind.Anonymous,
        "shmem" => ArenaKind.Shmem,
        "hugetlb" => ArenaKind.HugeTlb,
        _ => throw new ArgumentException($"unknown arena '{s}' (anonymous, shmem, hugetlb)"),
    };

    private static int Positive(string s, string name) =>
        int.TryParse(s, out int v) && v > 0 ? v : throw new ArgumentException($"{name} must be a positive integer, not '{s}'");

    private static long ParseSize(string s)
    {
        long mult = char.ToUpperInvariant(s[^1]) switch { 'K' => 1L << 10, 'M' => 1L << 20, 'G' => 1L << 30, _ => 1 };
        var digits = mult == 1 ? s : s[..^1];
        return long.TryParse(digits, out long v) && v > 0 ? v * mult : throw new ArgumentException($"bad size '{s}'");
    }
}

internal sealed class HelpRequested : Exception;
