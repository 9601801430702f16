using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json;
using Paging.Backends.Network;
using Paging.Interop;
using Paging.Testing;
using Paging.Weights;
using Paging.Testing.Servers;
using Spectre.Console;

namespace Paging.Bench;

/// <summary>
/// <c>Paging.Bench weights [file] [--json] [--hot-only]</c>: opens a checkpoint through Paging and measures time to
/// first tensor, touching every tensor, touching every tenth tensor, and bytes read; against loading the whole file
/// with pread, mmap, and mmap + MADV_WILLNEED, with the page cache hot and cold (drop_caches), in one run. Without a
/// file, a ~2 GiB safetensors checkpoint of a 2048-wide, 19-layer transformer (BF16/F16/F32) is generated.
/// </summary>
internal static unsafe class WeightsBench
{
    private sealed record Row(string Measurement, string Cache, double Seconds, long BytesRead, string Note);

    /// <summary>The arena the Paging rows load into (--arena; shmem by default, as WeightsModel.Open).</summary>
    private static ArenaKind s_arena = ArenaKind.Shmem;

    public static int Run(string[] args)
    {
        int arenaAt = Array.IndexOf(args, "--arena");
        if (arenaAt >= 0)
        {
            string? name = arenaAt + 1 < args.Length ? args[arenaAt + 1] : null;
            s_arena = name switch
            {
                "shmem" => ArenaKind.Shmem,
                "hugetlb" => ArenaKind.HugeTlb,
                "anonymous" => ArenaKind.Anonymous,
                _ => ArenaKind.Shmem,
            };
            if (name is not ("shmem" or "hugetlb" or "anonymous"))
            {
                Console.Error.WriteLine($"error: --arena takes shmem, hugetlb or anonymous, not '{name}'");
                return 2;
            }
            args = [.. args.Where((_, i) => i != arenaAt && i != arenaAt + 1)];
        }
        bool json = args.Contains("--json");
        bool hotOnly = args.Contains("--hot-only");
        int urlAt = Array.IndexOf(args, "--url");
        string? url = urlAt >= 0 && urlAt + 1 < args.Length ? args[urlAt + 1] : null;
        if (urlAt >= 0 && url is null)
        {
            Console.Error.WriteLine("error: --url needs an http:// or https:// URL");
            return 2;
        }
        bool serve = args.Contains("--http");
        string? file = args.Where((a, i) => !a.StartsWith("--", StringComparison.Ordinal) && (urlAt < 0 || i != urlAt + 1)).FirstOrDefault();
        string dir = Path.Combine(Path.GetTempPath(), $"paging-weights-{Environment.ProcessId}");
        bool generated = file is null;
        var err = ProgressConsole.Create();
        // The generated checkpoint (2 GiB) goes when the run ends, however it ends (Ctrl-C, kill).
        using var deleteDir = generated ? LocalServers.DeleteWhenThisProcessEnds(Directory.CreateDirectory(dir).FullName) : null;
        try
        {
            if (generated)
            {
                file = Path.Combine(dir, "model.safetensors");
                err.Status().Start("generating a ~2 GiB safetensors checkpoint", _ => Generate(file));
            }
            var rows = new List<Row>();
            long length = new FileInfo(file!).Length;
            HugePageReservation? huge = null;
            if (s_arena == ArenaKind.HugeTlb)
            {
                // The whole checkpoint in 2 MiB pages (twice: a model and its warm-up may overlap while one closes).
                huge = HugePageReservation.TryReserve(2 * ((length + (2 << 20) - 1) / (2 << 20)), out string? why);
                if (huge is null)
                {
                    Console.Error.WriteLine($"error: --arena hugetlb: {why}");
                    return 1;
                }
            }
            using var reservation = huge;
            using var runtime = PagingRuntime.Start();
            // --http: the same checkpoint served by nginx on loopback; --url: any server's copy.
            using var nginx = serve && url is null ? NginxServer.Start(Path.GetDirectoryName(Path.GetFullPath(file!))!) : null;
            Uri? remote = url is not null ? new Uri(url) : nginx?.UrlOf(Path.GetFileName(file!));
            long remoteLength = remote is null ? 0 : RemoteLength(remote);
            // Untimed: JIT the parser and the pager's fault path once, so "first tensor" measures paging, not JIT.
            using (var warm = WeightsModel.Open(runtime, file!, s_arena))
            {
                Touch(warm.Tensors[Math.Min(1, warm.Tensors.Count - 1)], firstPageOnly: true);
                if (s_arena == ArenaKind.HugeTlb)
                {
                    // The huge page pool was just reserved from memory this VM had reported free to its host (free page
                    // reporting, page_reporting_order=11 on this machine's command line): the first write to each of its
                    // pages faults in the host — 4.9 s for the first 2 GiB load against 0.37 s for the next (measured).
                    // A pool reserved at boot and in use does not pay that: touch it once, untimed.
                    foreach (var t in warm.Tensors)
                    {
                        Touch(t);
                    }
                }
            }
            if (remote is not null)
            {
                // The same for the HTTP store's first use in the pager (HttpClient's code paths, the connection pool).
                using var warm = WeightsModel.Open(runtime, PageStoreDescriptor.Http(remote), remoteLength, s_arena);
                Touch(warm.Tensors[Math.Min(1, warm.Tensors.Count - 1)], firstPageOnly: true);
            }
            err.Progress().AutoClear(true).Start(ctx =>
            {
                string[] caches = hotOnly ? ["hot"] : ["hot", "cold"];
                var task = ctx.AddTask("weights", maxValue: caches.Length * 8);
                foreach (var cache in caches)
                {
                    void Prepare()
                    {
                        if (cache == "cold")
                        {
                            Scenarios.DropCaches();
                        }
                        else
                        {
                            Warm(file!, length);
                        }
                    }
                    Prepare();
                    rows.Add(Paging(runtime, file!, cache, "first tensor", m => Touch(m.Tensors[Math.Min(1, m.Tensors.Count - 1)], firstPageOnly: true)));
                    task.Increment(1);
                    if (remote is not null)
                    {
                        var store = PageStoreDescriptor.Http(remote);
                        Prepare();
                        rows.Add(Paging(runtime, store, remoteLength, cache, "first tensor over HTTP", m => Touch(m.Tensors[Math.Min(1, m.Tensors.Count - 1)], firstPageOnly: true)));
                        Prepare();
                        rows.Add(Paging(runtime, store, remoteLength, cache, "all tensors over HTTP", m => { foreach (var t in m.Tensors) { Touch(t); } }));
                        Prepare();
                        rows.Add(Paging(runtime, store, remoteLength, cache, "10% of tensors over HTTP", m => { for (int i = 0; i < m.Tensors.Count; i += 10) { Touch(m.Tensors[i]); } }));
                    }
                    Prepare();
                    rows.Add(Paging(runtime, file!, cache, "all tensors", m => { foreach (var t in m.Tensors) { Touch(t); } }));
                    task.Increment(1);
                    Prepare();
                    rows.Add(Paging(runtime, file!, cache, "all tensors, Prefetch(all)", m => { m.Prefetch(m.Tensors); foreach (var t in m.Tensors) { Touch(t); } }));
                    task.Increment(1);
                    Prepare();
                    rows.Add(Paging(runtime, file!, cache, "10% of tensors", m => { for (int i = 0; i < m.Tensors.Count; i += 10) { Touch(m.Tensors[i]); } }));
                    task.Increment(1);
                    Prepare();
                    rows.Add(Baseline("pread whole file (1 MiB reads)", cache, () => PreadAll(file!, length), length));
                    task.Increment(1);
                    Prepare();
                    rows.Add(Baseline("mmap, touch all", cache, () => MmapTouch(file!, length, willNeed: false), length));
                    task.Increment(1);
                    Prepare();
                    rows.Add(Baseline("mmap + MADV_WILLNEED, touch all", cache, () => MmapTouch(file!, length, willNeed: true), length));
                    task.Increment(1);
                    Prepare();
                    rows.Add(Baseline("mmap, touch 10% of tensors", cache, () => MmapTouchSubset(runtime, file!, length), 0));
                    task.Increment(1);
                }
            });
            Report(rows, file!, length, json);
            return 0;
        }
        finally
        {
            if (generated)
            {
                try { Directory.Delete(dir, true); } catch (IOException) { }
            }
        }
    }

    private static Row Paging(PagingRuntime runtime, string file, string cache, string what, Action<WeightsModel> work)
    {
        var sw = Stopwatch.StartNew();
        using var model = WeightsModel.Open(runtime, file, s_arena);
        work(model);
        double seconds = sw.Elapsed.TotalSeconds;
        return new Row("paging: " + what, cache, seconds, model.Region.Statistics.BytesRead, $"{model.Tensors.Count} tensors, {model.Region.Statistics.Faults} faults");
    }

    private static Row Paging(PagingRuntime runtime, PageStoreDescriptor store, long length, string cache, string what, Action<WeightsModel> work)
    {
        var sw = Stopwatch.StartNew();
        using var model = WeightsModel.Open(runtime, store, length, s_arena);
        work(model);
        double seconds = sw.Elapsed.TotalSeconds;
        return new Row("paging: " + what, cache, seconds, model.Region.Statistics.BytesRead, $"{model.Tensors.Count} tensors, {model.Region.Statistics.Faults} faults");
    }

    /// <summary>The object's length from a HEAD request (a plain client: what any loader would ask first).</summary>
    private static long RemoteLength(Uri url)
    {
        using var client = new HttpClient();
        using var response = client.Send(new HttpRequestMessage(HttpMethod.Head, url));
        response.EnsureSuccessStatusCode();
        return response.Content.Headers.ContentLength ?? throw new InvalidOperationException($"{url}: no Content-Length in the answer to HEAD");
    }

    private static Row Baseline(string what, string cache, Func<long> work, long bytes)
    {
        var sw = Stopwatch.StartNew();
        long read = work();
        return new Row(what, cache, sw.Elapsed.TotalSeconds, bytes > 0 ? bytes : read, "");
    }

    /// <summary>One 8-byte load per 4 KiB page of the tensor (or just its first page).</summary>
    private static ulong Touch(Tensor t, bool firstPageOnly = false)
    {
        ulong sum = 0;
        long n = t.Length;
        byte* p = t.Pointer;
        for (long off = 0; off + 8 <= n; off += 4096)
        {
            sum += Volatile.Read(ref *(ulong*)(p + off));
            if (firstPageOnly)
            {
                break;
            }
        }
        return sum;
    }

    private static long PreadAll(string file, long length)
    {
        // The whole file into memory, as a loader without mmap does (--no-mmap): the buffer is the loaded model.
        byte* buffer = (byte*)NativeMemory.AlignedAlloc((nuint)length, 4096);
        try
        {
            using var h = File.OpenHandle(file);
            for (long off = 0; off < length;)
            {
                int n = RandomAccess.Read(h, new Span<byte>(buffer + off, (int)Math.Min(1 << 20, length - off)), off);
                if (n <= 0)
                {
                    break;
                }
                off += n;
            }
            return length;
        }
        finally
        {
            NativeMemory.AlignedFree(buffer);
        }
    }

    private static long MmapTouch(string file, long length, bool willNeed)
    {
        var fd = Libc.Open(file, OpenFlags.ReadOnly | OpenFlags.CloseOnExec, 0);
        nint map = Libc.Mmap(0, (nuint)length, Protection.Read, MapFlags.Shared, fd, 0);
        try
        {
            if (willNeed)
            {
                _ = Libc.Madvise(map, (nuint)length, Advice.WillNeed);
            }
            ulong sum = 0;
            for (long off = 0; off < length; off += 4096)
            {
                sum += *((byte*)map + off);
            }
            GC.KeepAlive(sum);
            return length;
        }
        finally
        {
            _ = Libc.Munmap(map, (nuint)length);
            fd.Dispose();
        }
    }

    private static long MmapTouchSubset(PagingRuntime runtime, string file, long length)
    {
        // The tensor table comes from Paging's parser (header only); the touches go through a plain mmap.
        List<TensorInfo> tensors;
        using (var model = WeightsModel.Open(runtime, file))
        {
            tensors = [.. model.Header.Tensors];
        }
        var fd = Libc.Open(file, OpenFlags.ReadOnly | OpenFlags.CloseOnExec, 0);
        nint map = Libc.Mmap(0, (nuint)length, Protection.Read, MapFlags.Shared, fd, 0);
        try
        {
            long bytes = 0;
            ulong sum = 0;
            for (int i = 0; i < tensors.Count; i += 10)
            {
                for (long off = 0; off < tensors[i].Length; off += 4096)
                {
                    sum += *((byte*)map + tensors[i].Offset + off);
                }
                bytes += tensors[i].Length;
            }
            GC.KeepAlive(sum);
            return bytes;
        }
        finally
        {
            _ = Libc.Munmap(map, (nuint)length);
            fd.Dispose();
        }
    }

    private static void Warm(string file, long length) => _ = PreadAll(file, length);

    /// <summary>Embedding, 19 transformer layers (4 attention projections F16, 3 MLP projections BF16, 2 norms F32),
    /// final norm and head: ~2 GiB in layer order.</summary>
    public static void Generate(string path)
    {
        const long hidden = 2048, inter = 5632, vocab = 32000;
        var tensors = new List<(string, string, long[])> { ("model.embed_tokens.weight", "BF16", [vocab, hidden]) };
        for (int l = 0; l < 19; l++)
        {
            string p = $"model.layers.{l}.";
            tensors.Add((p + "input_layernorm.weight", "F32", [hidden]));
            foreach (var proj in new[] { "q_proj", "k_proj", "v_proj", "o_proj" })
            {
                tensors.Add((p + "self_attn." + proj + ".weight", "F16", [hidden, hidden]));
            }
            tensors.Add((p + "post_attention_layernorm.weight", "F32", [hidden]));
            tensors.Add((p + "mlp.gate_proj.weight", "BF16", [inter, hidden]));
            tensors.Add((p + "mlp.up_proj.weight", "BF16", [inter, hidden]));
            tensors.Add((p + "mlp.down_proj.weight", "BF16", [hidden, inter]));
        }
        tensors.Add(("model.norm.weight", "F32", [hidden]));
        tensors.Add(("lm_head.weight", "BF16", [vocab, hidden]));
        using var fs = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        var rng = new Random(3);
        SafetensorsReader.Write(fs, tensors, (i, data) => rng.NextBytes(data), new Dictionary<string, string> { ["format"] = "pt" });
        // On disk before anything is timed: otherwise the kernel writes the 2 GiB back while the first hot rows run
        // (measured: the first Paging row took 4.9 s against 0.37 s once the writeback was over).
        fs.Flush(flushToDisk: true);
    }

    private static void Report(List<Row> rows, string file, long length, bool json)
    {
        if (json)
        {
            foreach (var r in rows)
            {
                Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
                {
                    ["scenario"] = r.Measurement, ["cache"] = r.Cache, ["seconds"] = Math.Round(r.Seconds, 6),
                    ["bytes_read"] = r.BytesRead, ["note"] = r.Note,
                }));
            }
            return;
        }
        if (Console.IsOutputRedirected)
        {
            AnsiConsole.Profile.Width = 200;
        }
        var table = new Table().Border(TableBorder.Simple).Title($"weights: {Path.GetFileName(file)}, {length / (1 << 20)} MiB");
        foreach (var c in new[] { "measurement", "cache", "ms", "MiB read", "vs fastest full load", "note" })
        {
            table.AddColumn(new TableColumn(c).RightAligned());
        }
        foreach (var cache in rows.Select(r => r.Cache).Distinct())
        {
            var fullLoads = rows.Where(r => r.Cache == cache && (r.Measurement.StartsWith("pread", StringComparison.Ordinal) || r.Measurement.StartsWith("mmap", StringComparison.Ordinal)) && !r.Measurement.Contains("10%")).ToList();
            double fastest = fullLoads.Min(r => r.Seconds);
            foreach (var r in rows.Where(r => r.Cache == cache))
            {
                table.AddRow(r.Measurement, r.Cache, (r.Seconds * 1000).ToString("0.0"), (r.BytesRead / 1048576.0).ToString("0.0"),
                    (r.Seconds / fastest).ToString("0.000") + "x", r.Note);
            }
        }
        AnsiConsole.Write(table);
        AnsiConsole.MarkupLine("first tensor = open (header parsed through the region) + first page of the first layer tensor. Touch = one load per 4 KiB page.");
    }
}
