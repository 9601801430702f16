using System.Text.Json;
using Paging.Interop;
using Paging.Testing;
using Spectre.Console;

namespace Paging.Bench;

internal static unsafe class Program
{
    private static int Main(string[] args)
    {
        try
        {
            return Dispatch(args);
        }
        catch (Exception e) when (e is PagingException or IOException or UnauthorizedAccessException or Paging.Testing.Servers.LocalServerException)
        {
            // What a user gets wrong (a missing or unreadable file, a corrupt checkpoint, a store that cannot open):
            // one line that says what, not a stack trace.
            Console.Error.WriteLine($"error: {e.Message}");
            return 1;
        }
    }

    private static int Dispatch(string[] args)
    {
        if (args.Length > 0 && args[0] == "weights")
        {
            return WeightsBench.Run(args[1..]);
        }
        if (args.Length > 0 && args[0] == "dirtyscan")
        {
            return DirtyScanBench.Run(args[1..]);
        }
        if (args.Length > 0 && args[0] == "tier")
        {
            return TierBench.Run(args[1..]);
        }
        if (args.Length > 0 && args[0] == "startup")
        {
            return StartupBench.Run(args[1..]);
        }
        if (args.Length == 2 && args[0] == "startup-worker")
        {
            return StartupBench.Worker(args[1]);
        }
        if (args.Length > 0 && args[0] == "bufferpool")
        {
            return BufferPoolBench.Run(args[1..]);
        }
        if (args.Length == 10 && args[0] == "bufferpool-mmap-worker")
        {
            return BufferPoolBench.MmapWorker(args[1..]);
        }
        if (args.Length == 3 && args[0] == "latency-proxy")
        {
            return NetworkServers.RunLatencyProxy(int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture), int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture));
        }
        Options options;
        try
        {
            options = Options.Parse(args);
        }
        catch (HelpRequested)
        {
            Console.WriteLine(Options.Usage);
            return 0;
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine($"error: {e.Message}\n\n{Options.Usage}");
            return 2;
        }
        return new Harness(options, ProgressConsole.Create()).Run();
    }
}

internal sealed unsafe class Harness(Options options, IAnsiConsole progressConsole)
{
    private readonly List<Result> _results = [];
    private readonly List<string> _notes = [];
    private NetworkServers? _servers;
    private Dictionary<string, string> _packs = [];

    /// <summary>The first word of every page of the generated file: distinct per page, so a wrong page is a wrong sum.</summary>
    public static ulong PageWord(long offset) => ((ulong)offset * 0x9E3779B97F4A7C15UL) | 1;

    public int Run()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"paging-bench-{Environment.ProcessId}");
        string path = options.File ?? Path.Combine(dir, "data.bin");
        bool generated = options.File is null;
        long fileSize = generated ? options.FileSize : new FileInfo(path).Length & ~4095L;
        if (fileSize == 0)
        {
            throw new IOException($"'{path}' is shorter than one 4 KiB page: nothing to touch");
        }
        HugePageReservation? huge = null;
        // The data file and packs (a gigabyte or more) go when the run ends, however it ends (Ctrl-C, kill).
        Directory.CreateDirectory(dir);
        using var deleteDir = Paging.Testing.Servers.LocalServers.DeleteWhenThisProcessEnds(dir);
        try
        {
            if (generated)
            {
                Generate(path, fileSize, options.TextData);
            }
            if (options.Arenas.Contains(ArenaKind.HugeTlb))
            {
                huge = HugePageReservation.TryReserve((fileSize + (2 << 20) - 1) / (2 << 20), out string? why);
                if (huge is null)
                {
                    options.Arenas.Remove(ArenaKind.HugeTlb);
                    _notes.Add($"hugetlb skipped: {why}");
                }
            }
            var packs = new Dictionary<string, string>();
            foreach (var codec in options.Backends.Where(b => b is "lz4" or "zstd"))
            {
                // Packed once per run at the pack tool's default level, 64 KiB blocks by default (the tool's default; --pack-block).
                string pack = Path.Combine(dir, $"data.{codec}.pgz");
                progressConsole.Status().Start($"packing the data file ({codec})", _ =>
                {
                    using var input = File.OpenRead(path);
                    using var output = File.Create(pack);
                    var summary = Paging.Backends.Compression.PackWriter.Pack(input, output,
                        codec == "lz4" ? Paging.Backends.Compression.PageCodecKind.Lz4 : Paging.Backends.Compression.PageCodecKind.Zstd,
                        Paging.Backends.Compression.PackWriter.DefaultLevel(codec == "lz4" ? Paging.Backends.Compression.PageCodecKind.Lz4 : Paging.Backends.Compression.PageCodecKind.Zstd),
                        options.PackBlock);
                    _notes.Add($"{codec} pack: ratio {summary.Ratio:0.00} ({summary.OriginalBytes >> 20} MiB in {summary.PackedBytes >> 20} MiB)");
                });
                packs[codec] = pack;
            }
            _packs = packs;
            using var servers = NetworkServers.Start(options.Backends, path, progressConsole, options.HttpLatencyMicroseconds);
            _servers = servers;
            using var runtime = PagingRuntime.Start(options.RuntimeOptions());
            WarmUp(runtime, path, fileSize, huge is not null ? fileSize / (2 << 20) : 0);
            var fd = Libc.Open(path, OpenFlags.ReadOnly | OpenFlags.CloseOnExec, 0);
            if (fd.IsInvalid)
            {
                throw Libc.Error($"open({path})");
            }
            try
            {
                progressConsole.Progress().AutoClear(true).HideCompleted(false)
                    .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
                    .Start(ctx => RunAll(ctx, runtime, path, fd, fileSize, generated));
            }
            finally
            {
                fd.Dispose();
            }
            Report(fileSize, generated);
            if (options.PlotDirectory is { } plots)
            {
                foreach (var written in Charts.Write(plots, _results, $"{options.Pages} x 4 KiB, {options.Threads} thread(s)"))
                {
                    Console.Error.WriteLine($"wrote {written}");
                }
            }
            return 0;
        }
        finally
        {
            huge?.Dispose();
            // This run's own folder (the generated data, the packs of a --file): never the user's file.
            try { Directory.Delete(dir, true); } catch (IOException) { }
        }
    }

    /// <summary>256 MiB: the first S3 row then ran at 0.91-0.94x of the next (0.55-0.7x without; 512 MiB: 0.90-0.99x), for
    /// ~2 s of warm-up at s3rver's rate (BENCHMARKS §24).</summary>
    private const long NetworkWarmUpBytes = 256L << 20;

    /// <summary>
    /// Untimed: gets the pager's fault path past tier-0 JIT on every arena and every store of the run (a network
    /// store also opens its connections, and reads <see cref="NetworkWarmUpBytes"/> in order so that its client's
    /// tiered JIT is done), and touches every reserved huge page once. Guest memory that was never
    /// touched costs host-side faults in a VM (measured here: ~7 ms per fresh 2 MiB page against ~0.3 ms once backed),
    /// which would otherwise land on whichever scenario runs first.
    /// </summary>
    private void WarmUp(PagingRuntime runtime, string path, long fileSize, long hugePages)
    {
        if (hugePages > 0)
        {
            using var fd = Libc.MemfdCreate("paging-bench-warm", MemfdFlags.CloseOnExec | MemfdFlags.HugeTlb);
            if (!fd.IsInvalid)
            {
                long bytes = hugePages * (2 << 20);
                if (Libc.Ftruncate(fd, bytes) == 0)
                {
                    nint map = Libc.Mmap(0, (nuint)bytes, Protection.ReadWrite, MapFlags.Shared, fd, 0);
                    if (map != Libc.MAP_FAILED)
                    {
                        for (long off = 0; off < bytes; off += 4096)
                        {
                            ((byte*)map)[off] = 1;
                        }
                        _ = Libc.Munmap(map, (nuint)bytes);
                    }
                }
                fd.Dispose();
            }
        }
        foreach (string backend in options.Backends.Prepend("file").Distinct())
        {
            if (backend is "http" or "s3" or "lz4" or "zstd" && options.Arenas.Count > 0)
            {
                // A network store's client code (HttpClient, AWSSDK.S3) is large: its tiered JIT (tier 0, instrumented,
                // tier 1) took ~3.7 CPU-seconds of the pager's first S3 gigabyte (25-30% of all samples; the first S3
                // row ran at 0.55-0.7x of the next, BENCHMARKS §24). A long sequential read gets it past that off the clock.
                // A compressed store's code (block walk, CRC-32C, codec calls) too: read in 2 MiB pages it is called only
                // 128 times per 256 MiB, and a hugetlbfs-only run measured its first LZ4 row at ~2x the next
                // (BENCHMARKS §28), so it is warmed in 64 KiB reads (4,096 calls) whatever arenas the run measures.
                bool compressed = backend is "lz4" or "zstd";
                long length = Math.Min(fileSize, NetworkWarmUpBytes) & ~((2L << 20) - 1);
                if (length > 0)
                {
                    using var region = runtime.CreateRegion(new RegionOptions
                    {
                        Arena = compressed ? ArenaKind.Anonymous : options.Arenas[0], Length = length, Store = StoreFor(backend, path), ReadOnly = options.ReadOnly,
                    });
                    var offsets = Scenarios.Offsets("seq", (int)(length / Scenarios.Page), length);
                    Scenarios.Touch(region.Pointer, offsets, new long[offsets.Length], 1);
                }
            }
            foreach (var arena in options.Arenas)
            {
                foreach (bool readAhead in new[] { true, false })
                {
                    long length = arena == ArenaKind.HugeTlb ? 8L << 20 : 4L << 20;
                    using var region = runtime.CreateRegion(new RegionOptions
                    {
                        Arena = arena, Length = length, Store = StoreFor(backend, path), ReadOnly = options.ReadOnly,
                        Prefetch = readAhead ? new PrefetchOptions() : PrefetchOptions.None,
                    });
                    // Read-ahead on: the whole range in order (streams, windows); off: 64 one-page faults.
                    var offsets = readAhead ? Scenarios.Offsets("seq", (int)(length / Scenarios.Page), length) : Scenarios.Offsets("random", 64, length);
                    Scenarios.Touch(region.Pointer, offsets, new long[offsets.Length], 1);
                }
            }
        }
    }

    /// <summary>The store a scenario reads <paramref name="backend"/> through (with --store-delay-us, behind the latency
    /// decorator).</summary>
    private PageStoreDescriptor StoreFor(string backend, string path)
    {
        var store = backend switch
        {
            "file" => PageStoreDescriptor.File(path),
            "http" or "s3" => _servers!.Descriptor(backend),
            "lz4" or "zstd" => PageStoreDescriptor.Compressed(_packs[backend]),
            _ => PageStoreDescriptor.Zero(),
        };
        return options.StoreDelayMicroseconds > 0 ? PageStoreDescriptor.WithLatency(store, TimeSpan.FromMicroseconds(options.StoreDelayMicroseconds)) : store;
    }

    private void RunAll(ProgressContext ctx, PagingRuntime runtime, string path, FileDescriptor fd, long fileSize, bool generated)
    {
        foreach (string backend in options.Backends)
        {
            foreach (string pattern in options.Patterns)
            {
                bool cold = pattern is "cold" or "cold-random";
                bool network = backend is "http" or "s3";
                if (cold && backend is not ("file" or "lz4" or "zstd"))
                {
                    continue; // nothing to read cold from the zero store; servers on loopback keep their own caches
                }
                long[] offsets = Scenarios.Offsets(pattern is "random" or "cold-random" ? "random" : "seq", options.Pages, fileSize);
                if (backend is "file" or "http" or "s3" or "lz4" or "zstd" && !cold)
                {
                    // "Hot" means hot: earlier cold runs and huge page reservations may have evicted the file.
                    WarmFile(fd, fileSize);
                }
                var arenas = options.Arenas.Where(a => !(pattern == "refault" && a == ArenaKind.Anonymous)).ToList();
                var task = ctx.AddTask($"{backend}/{pattern}", maxValue: arenas.Count * options.ReadAhead.Count + (options.Baselines ? 1 : 0));
                Result? baseline = null;
                if (options.Baselines)
                {
                    if (cold && !Scenarios.DropCaches())
                    {
                        _notes.Add("cold runs skipped: cannot write /proc/sys/vm/drop_caches (run as root)");
                        continue;
                    }
                    baseline = network
                        ? MeasureRanges(backend, offsets, pattern, generated)
                        : backend is "file" or "lz4" or "zstd"
                        ? MeasureMmap(fd, fileSize, offsets, pattern, generated)
                        : MeasureAnonymous(fileSize, offsets, pattern);
                    _results.Add(baseline);
                    if (backend is "file" or "lz4" or "zstd" && pattern != "refault")
                    {
                        if (cold)
                        {
                            Scenarios.DropCaches();
                        }
                        var pread = MeasurePread(fd, offsets, pattern, generated);
                        _results.Add(pread);
                        if (pattern == "cold-random")
                        {
                            baseline = pread; // the issue's yardstick: 4 KiB preads at the same thread count
                        }
                    }
                    task.Increment(1);
                }
                foreach (var arena in arenas)
                {
                    foreach (bool readAhead in options.ReadAhead)
                    {
                        if (cold && !Scenarios.DropCaches())
                        {
                            _notes.Add("cold runs skipped: cannot write /proc/sys/vm/drop_caches (run as root)");
                            return;
                        }
                        var r = MeasurePaging(runtime, arena, backend, path, fileSize, offsets, pattern, generated, readAhead);
                        if (baseline is not null)
                        {
                            r.Baseline = baseline.Scenario;
                            r.BaselineNsPerPage = baseline.NsPerPage;
                        }
                        _results.Add(r);
                        task.Increment(1);
                    }
                }
                if (options.Baselines && network && pattern == "seq")
                {
                    // Context, not the yardstick, and after Paging's rows so that the gigabyte it frees does not
                    // change theirs: the same GETs into fresh memory that keeps every byte, as a loader without
                    // Paging does (the yardstick reuses one 1 MiB buffer per stream and keeps nothing).
                    _results.Add(MeasureRanges(backend, offsets, pattern, generated, keep: true));
                    GC.Collect();
                }
            }
        }
    }

    private static void WarmFile(FileDescriptor fd, long size)
    {
        const int chunk = 1 << 20;
        byte* buffer = (byte*)System.Runtime.InteropServices.NativeMemory.Alloc(chunk);
        try
        {
            for (long off = 0; off < size; off += chunk)
            {
                _ = Libc.Pread(fd, buffer, chunk, off);
            }
        }
        finally
        {
            System.Runtime.InteropServices.NativeMemory.Free(buffer);
        }
    }

    private Result MeasurePaging(PagingRuntime runtime, ArenaKind arena, string backend, string path, long fileSize, long[] offsets, string pattern, bool generated, bool readAhead)
    {
        using var region = runtime.CreateRegion(new RegionOptions
        {
            Arena = arena, Length = fileSize, Store = StoreFor(backend, path), ReadOnly = options.ReadOnly,
            Prefetch = !readAhead ? PrefetchOptions.None : options.MaxReadAhead is { } max ? new PrefetchOptions { MaxReadAheadBytes = max } : new PrefetchOptions(),
        });
        var latencies = new long[offsets.Length];
        if (pattern == "refault")
        {
            Scenarios.Touch(region.Pointer, offsets, latencies, options.Threads);
            _ = Libc.Madvise(region.Address, (nuint)region.Length, Advice.DontNeed);
        }
        var before = region.Statistics;
        var (seconds, sum) = Scenarios.Touch(region.Pointer, offsets, latencies, options.Threads);
        var after = region.Statistics;
        string name = (readAhead ? "paging" : "paging-1pg") + (options.ReadOnly ? "-ro" : "");
        string label = options.StoreDelayMicroseconds > 0 ? $"{backend}+{options.StoreDelayMicroseconds}us"
            : backend == "http" && options.HttpLatencyMicroseconds > 0 ? $"http+{options.HttpLatencyMicroseconds}us" : backend;
        var result = Make($"{name}/{Name(arena)}", Name(arena), label, pattern, offsets, latencies, seconds, after.Faults - before.Faults, Verify(backend, offsets, sum, generated));
        result.ReadAhead = readAhead ? "on" : "off";
        // Read-ahead may still be filling pages in the background; what it read by the end of the touches counts.
        result.BytesRead = backend != "zero" ? after.BytesRead - before.BytesRead : -1;
        result.ManagedBytes = after.ManagedBytesAllocated - before.ManagedBytesAllocated;
        return result;
    }

    /// <summary>The network baseline: the same bytes fetched with plain range GETs — for a sequential pattern the
    /// touched span in 1 MiB GETs from 8 streams (each page's latency is its GET's), for the others one 4 KiB GET per
    /// touch from --threads tasks.</summary>
    private Result MeasureRanges(string backend, long[] offsets, string pattern, bool generated, bool keep = false)
    {
        var latencies = new long[offsets.Length];
        // Untimed, as Paging's stores are warmed (WarmUp): the client's first requests (JIT, connections) off the clock.
        _ = _servers!.FetchAll(backend, offsets[..Math.Min(offsets.Length, 1024)], pattern, options.Threads, latencies, keep: false);
        MachineCpu.Begin();
        var start = System.Diagnostics.Stopwatch.GetTimestamp();
        ulong sum = _servers!.FetchAll(backend, offsets, pattern, options.Threads, latencies, keep);
        double seconds = System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalSeconds;
        MachineCpu.End(seconds);
        string how = pattern == "seq" ? keep ? "8 x 1 MiB GETs, kept" : "8 x 1 MiB GETs" : $"4 KiB GETs x {options.Threads}";
        return Make($"kernel/{backend}-ranges{(keep ? "-kept" : "")}", how, backend, pattern, offsets, latencies, seconds, 0, Verify(backend, offsets, sum, generated));
    }

    private Result MeasureMmap(FileDescriptor fd, long fileSize, long[] offsets, string pattern, bool generated) =>
        MeasureKernelMapping("kernel/mmap", "file mmap", "file", Protection.Read, MapFlags.Shared, fd, fileSize, offsets, pattern,
            sum => Verify("file", offsets, sum, generated));

    private Result MeasureAnonymous(long length, long[] offsets, string pattern) =>
        MeasureKernelMapping("kernel/anon", "anon first touch", "zero", Protection.ReadWrite,
            MapFlags.Private | MapFlags.Anonymous | MapFlags.NoReserve, null, length, offsets, pattern, sum => sum == 0);

    /// <summary>A kernel baseline: the same touches through a plain mapping (the kernel's own faults, fault-around and
    /// read-ahead). "refault" drops the mapping's PTEs after a first pass, as the Paging scenario does.</summary>
    private Result MeasureKernelMapping(string scenario, string arena, string backend, Protection prot, MapFlags flags, FileDescriptor? fd, long length,
        long[] offsets, string pattern, Func<ulong, bool> verify)
    {
        nint map = fd is null ? Libc.Mmap(0, (nuint)length, prot, flags, -1, 0) : Libc.Mmap(0, (nuint)length, prot, flags, fd, 0);
        if (map == Libc.MAP_FAILED)
        {
            throw Libc.Error($"mmap for the {scenario} baseline");
        }
        try
        {
            var latencies = new long[offsets.Length];
            if (pattern == "refault")
            {
                Scenarios.Touch((byte*)map, offsets, latencies, options.Threads);
                _ = Libc.Madvise(map, (nuint)length, Advice.DontNeed);
            }
            long before = Scenarios.KernelFaults();
            var (seconds, sum) = Scenarios.Touch((byte*)map, offsets, latencies, options.Threads);
            return Make(scenario, arena, backend, pattern, offsets, latencies, seconds, Scenarios.KernelFaults() - before, verify(sum));
        }
        finally
        {
            _ = Libc.Munmap(map, (nuint)length);
        }
    }

    private Result MeasurePread(FileDescriptor fd, long[] offsets, string pattern, bool generated)
    {
        var latencies = new long[offsets.Length];
        bool large = pattern == "cold";
        var (seconds, sum) = large ? Scenarios.PreadLarge(fd, offsets, latencies) : Scenarios.Pread(fd, offsets, latencies, options.Threads);
        return Make(large ? "kernel/pread-1MiB" : "kernel/pread", large ? "pread 1 MiB" : "pread 4K", "file", pattern, offsets, latencies, seconds, 0, Verify("file", offsets, sum, generated));
    }

    private Result Make(string scenario, string arena, string backend, string pattern, long[] offsets, long[] latencies, double seconds, long faults, bool verified)
    {
        var (p50, p99) = Scenarios.Percentiles(latencies);
        return new Result($"{scenario}/{backend}/{pattern}", arena, backend, pattern, offsets.Length, options.Threads, faults, seconds,
            seconds * 1e9 / offsets.Length, p50, p99, (long)offsets.Length * Scenarios.Page, verified) { CpuBusy = MachineCpu.LastFraction };
    }

    /// <summary>The sum of the touched words must equal the sum of what the file holds there (zero for the zero store).</summary>
    private static bool Verify(string backend, long[] offsets, ulong sum, bool generated)
    {
        if (backend == "zero")
        {
            return sum == 0;
        }
        if (!generated)
        {
            return true;
        }
        ulong expected = 0;
        foreach (long o in offsets)
        {
            expected += PageWord(o);
        }
        return expected == sum;
    }

    private static string Name(ArenaKind arena) => arena switch { ArenaKind.Anonymous => "anonymous", ArenaKind.Shmem => "shmem", _ => "hugetlb" };

    private static void Generate(string path, long size, bool text)
    {
        var buffer = new byte[1 << 20];
        var rng = new Random(1);
        if (text)
        {
            // Compressible like a text or a model's bf16 weights (LZ4 ~2.5:1, zstd ~6:1), for the compressed backends.
            ReadOnlySpan<string> words = ["page ", "fault ", "userfaultfd ", "the ", "pager ", "fills ", "region ", "\n", "0.0213 ", "-1.5e-3 "];
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
        }
        else
        {
            rng.NextBytes(buffer);
        }
        using var fs = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.Read, 1 << 20);
        for (long off = 0; off < size; off += buffer.Length)
        {
            int n = (int)Math.Min(buffer.Length, size - off);
            for (int p = 0; p < n; p += Scenarios.Page)
            {
                BitConverter.TryWriteBytes(buffer.AsSpan(p, 8), PageWord(off + p));
            }
            fs.Write(buffer, 0, n);
        }
        fs.Flush(true);
    }

    private void Report(long fileSize, bool generated)
    {
        if (options.Json)
        {
            foreach (var r in _results)
            {
                using var stream = new MemoryStream();
                using (var w = new Utf8JsonWriter(stream))
                {
                    w.WriteStartObject();
                    w.WriteString("scenario", r.Scenario);
                    w.WriteString("arena", r.Arena);
                    w.WriteString("backend", r.Backend);
                    w.WriteString("pattern", r.Pattern);
                    w.WriteNumber("pages", r.Pages);
                    w.WriteNumber("threads", r.Threads);
                    w.WriteNumber("faults", r.Faults);
                    w.WriteNumber("seconds", Math.Round(r.Seconds, 6));
                    w.WriteNumber("ns_per_page", Math.Round(r.NsPerPage, 1));
                    w.WriteNumber("p50_ns", Math.Round(r.P50Ns, 1));
                    w.WriteNumber("p99_ns", Math.Round(r.P99Ns, 1));
                    w.WriteNumber("gb_per_s", Math.Round(r.GBps, 3));
                    if (r.Baseline is null) { w.WriteNull("baseline"); } else { w.WriteString("baseline", r.Baseline); }
                    w.WriteNumber("baseline_ns_per_page", Math.Round(r.BaselineNsPerPage, 1));
                    w.WriteNumber("ratio", Math.Round(r.Ratio, 3));
                    w.WriteBoolean("verified", r.Verified);
                    w.WriteString("readahead", r.ReadAhead);
                    w.WriteNumber("bytes_read", r.BytesRead);
                    w.WriteNumber("read_per_touched", Math.Round(r.ReadPerTouched, 3));
                    w.WriteNumber("faults_avoided", r.Faults >= 0 ? r.Pages - r.Faults : 0);
                    w.WriteNumber("managed_bytes", r.ManagedBytes);
                    w.WriteNumber("cpu_busy", Math.Round(r.CpuBusy, 3));
                    w.WriteEndObject();
                }
                Console.WriteLine(System.Text.Encoding.UTF8.GetString(stream.ToArray()));
            }
            foreach (var n in _notes)
            {
                Console.Error.WriteLine(n);
            }
            return;
        }
        string title = $"Paging harness: {options.Pages} x 4 KiB touches per scenario over a {fileSize >> 20} MiB {(generated ? "generated, page-cache-hot " : "")}file, {options.Threads} thread(s)";
        string[] headers = ["scenario", "pages", "faults", "ns/page", "p50 ns", "p99 ns", "GB/s", "read/touched", "baseline", "ratio", "ok"];
        var rows = _results.Select(r => new[]
        {
            r.Scenario, r.Pages.ToString(), r.Faults.ToString(), r.NsPerPage.ToString("0"), r.P50Ns.ToString("0"), r.P99Ns.ToString("0"),
            r.GBps.ToString("0.000"), r.BytesRead >= 0 ? r.ReadPerTouched.ToString("0.00") : "", r.Baseline ?? "", r.Ratio > 0 ? r.Ratio.ToString("0.00") + "x" : "",
            r.Verified ? "yes" : "NO",
        }).ToList();
        if (Console.IsOutputRedirected)
        {
            // A file or a pipe: plain text, every column padded to its widest cell, so it stays aligned in docs/.
            Console.WriteLine(title);
            TextTable.Write(Console.Out, headers, rows);
        }
        else
        {
            var table = new Table().Border(TableBorder.Simple).Title(Markup.Escape(title));
            foreach (var c in headers)
            {
                table.AddColumn(new TableColumn(c).RightAligned());
            }
            foreach (var row in rows)
            {
                table.AddRow(row.Select(c => c == "NO" ? "[red]NO[/]" : Markup.Escape(c)).ToArray());
            }
            AnsiConsole.Write(table);
        }
        Console.WriteLine("ratio = Paging ns/page / baseline ns/page in this run (lower is better). Latency = one 8-byte load per page, fault included.");
        Console.WriteLine("paging = read-ahead on (default), paging-1pg = one page per fault. read/touched = bytes read from the store / bytes touched.");
        Console.WriteLine("cold = after drop_caches (on a VM the host may still cache the file: compare within the run only).");
        foreach (var n in _notes)
        {
            Console.WriteLine(n);
        }
    }
}
