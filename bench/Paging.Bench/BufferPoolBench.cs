using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Paging.BufferPool;
using Paging.Interop;
using Spectre.Console;

namespace Paging.Bench;

/// <summary>
/// <c>Paging.Bench bufferpool [--data-mib N] [--budget-mib N] [--threads 1,4] [--seconds S] [--warmup S] [--warmup-max S] [--json]
/// [--lookups-only] [--mmap-read-around] [--pager-spin-us N] [--write-tracking auto|async|sync]</c>: the vmcache workload. A B+tree of 4 KiB nodes (8-byte keys, 120-byte values) 4× the memory
/// budget, uniform random lookups (and a 90/10 lookup/update mix), N threads, four ways in one run: Paging (a
/// <see cref="PagedFile"/>: one region, the budget, O_DIRECT store) with the tree's nodes reached through
/// <see cref="PagedFile.Fetch"/> (row paging/...) and through plain pointers (paging-touch/...), mmap of the same file in a cgroup v2 whose
/// memory.max is the budget (a child process, page cache dropped first; MADV_RANDOM as a DBMS on mmap sets it, or the
/// kernel's default read-around with --mmap-read-around), and a classic pread buffer pool (hash table
/// + CLOCK, O_DIRECT) with the same number of frames. Each run warms up until its cache is full (at least --warmup
/// seconds, at most --warmup-max: the three fill their caches at different rates, and a window measured while one is
/// still filling would compare a cold cache with a warm one), then measures.
/// </summary>
internal static unsafe class BufferPoolBench
{
    private sealed record Row(string Scenario, int Threads, long Ops, double Seconds, double OpsPerSecond, long P50Ns, long P99Ns,
        long ResidentBytes, long BytesRead, long BytesWritten, double WarmupSeconds, bool CacheFull);

    private sealed record Settings(long DataBytes, long BudgetBytes, int[] Threads, double Seconds, double Warmup, bool Json, bool Mixed, bool MmapReadAround = false, int PagerSpinMicroseconds = 0,
        WriteTracking Tracking = WriteTracking.Auto, double WarmupMax = 120);

    public static int Run(string[] args)
    {
        Settings settings;
        try
        {
            settings = Parse(args);
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine($"error: {e.Message}\nusage: Paging.Bench bufferpool [--data-mib N] [--budget-mib N] [--threads 1,4] [--seconds S] [--warmup S] [--warmup-max S] [--lookups-only] [--mmap-read-around] [--pager-spin-us N] [--write-tracking auto|async|sync] [--json]");
            return 2;
        }
        var err = ProgressConsole.Create();
        string path = BenchData.PathFor($"btree-{settings.DataBytes >> 20}m.db");
        long keys = BTreeFile.KeysFor(settings.DataBytes);
        err.Progress().Start(ctx =>
        {
            var task = ctx.AddTask($"building a {settings.DataBytes >> 20} MiB B+tree ({keys:N0} keys)", maxValue: 1);
            BTreeFile.Build(path, keys, f => task.Value = f);
        });
        var rows = new List<Row>();
        string[] variants = settings.Mixed ? ["lookup", "mixed"] : ["lookup"];
        foreach (int threads in settings.Threads)
        {
            foreach (string variant in variants)
            {
                bool mixed = variant == "mixed";
                // Every scenario starts from the same file contents and a cold page cache.
                err.MarkupLine($"[grey]{threads} threads, {variant}: paging (Fetch)[/]");
                rows.Add(RunPaging(path, keys, settings, threads, mixed, fetch: true));
                err.MarkupLine($"[grey]{threads} threads, {variant}: paging (plain pointers: a miss is a fault)[/]");
                rows.Add(RunPaging(path, keys, settings, threads, mixed, fetch: false));
                err.MarkupLine($"[grey]{threads} threads, {variant}: mmap in a cgroup[/]");
                rows.Add(RunMmap(path, keys, settings, threads, mixed));
                err.MarkupLine($"[grey]{threads} threads, {variant}: pread pool[/]");
                rows.Add(RunPreadPool(path, keys, settings, threads, mixed));
            }
        }
        if (settings.Json)
        {
            foreach (var r in rows)
            {
                Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
                {
                    ["scenario"] = r.Scenario, ["threads"] = r.Threads, ["ops"] = r.Ops, ["seconds"] = Math.Round(r.Seconds, 3),
                    ["ops_per_s"] = Math.Round(r.OpsPerSecond), ["p50_ns"] = r.P50Ns, ["p99_ns"] = r.P99Ns,
                    ["resident_bytes"] = r.ResidentBytes, ["bytes_read"] = r.BytesRead, ["bytes_written"] = r.BytesWritten,
                    ["data_bytes"] = settings.DataBytes, ["budget_bytes"] = settings.BudgetBytes,
                    ["warmup_s"] = Math.Round(r.WarmupSeconds, 1), ["cache_full"] = r.CacheFull,
                }));
            }
        }
        else
        {
            Console.WriteLine($"B+tree {settings.DataBytes >> 20} MiB ({keys:N0} keys), budget {settings.BudgetBytes >> 20} MiB, warm-up until the cache is full ({settings.Warmup}-{settings.WarmupMax} s), measured {settings.Seconds} s");
            Console.WriteLine($"{"scenario",-34} {"thr",3} {"ops/s",12} {"p50 µs",8} {"p99 µs",8} {"resident MiB",13} {"read MiB",9} {"written MiB",11} {"warm-up s",10}");
            foreach (var r in rows)
            {
                Console.WriteLine($"{r.Scenario,-34} {r.Threads,3} {r.OpsPerSecond,12:N0} {r.P50Ns / 1000.0,8:F1} {r.P99Ns / 1000.0,8:F1} {r.ResidentBytes / 1048576.0,13:F0} {r.BytesRead / 1048576.0,9:F0} {r.BytesWritten / 1048576.0,11:F0} {r.WarmupSeconds,9:F1}{(r.CacheFull ? " " : "!")}");
            }
            if (rows.Any(r => !r.CacheFull))
            {
                Console.WriteLine($"! the cache was not full after --warmup-max {settings.WarmupMax} s: that row measured a cache still filling");
            }
            foreach (int threads in settings.Threads)
            {
                foreach (string variant in variants)
                {
                    double Rate(string prefix) => rows.First(r => r.Threads == threads && r.Scenario.StartsWith(prefix + "/", StringComparison.Ordinal) && r.Scenario.EndsWith("/" + variant, StringComparison.Ordinal)).OpsPerSecond;
                    string mmap = settings.MmapReadAround ? "mmap-read-around" : "mmap";
                    Console.WriteLine($"{threads} threads, {variant}: paging = {Rate("paging") / Rate(mmap):F2}x {mmap}, {Rate("paging") / Rate("pread-pool"):F2}x the pread pool; without Fetch {Rate("paging-touch") / Rate(mmap):F2}x and {Rate("paging-touch") / Rate("pread-pool"):F2}x");
                }
            }
        }
        return 0;
    }

    private static Settings Parse(string[] args)
    {
        long data = 1024L << 20, budget = -1;
        int[] threads = [4];
        double seconds = 5, warmup = 3, warmupMax = 120;
        bool json = false, mixed = true, readAround = false;
        int spin = 0;
        var tracking = WriteTracking.Auto;
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            switch (args[i])
            {
                case "--data-mib": data = long.Parse(Next(), CultureInfo.InvariantCulture) << 20; break;
                case "--budget-mib": budget = long.Parse(Next(), CultureInfo.InvariantCulture) << 20; break;
                case "--threads": threads = [.. Next().Split(',').Select(t => int.Parse(t, CultureInfo.InvariantCulture))]; break;
                case "--seconds": seconds = double.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--warmup": warmup = double.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--warmup-max": warmupMax = double.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--json": json = true; break;
                case "--lookups-only": mixed = false; break;
                case "--mmap-read-around": readAround = true; break;
                case "--pager-spin-us": spin = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--write-tracking":
                    tracking = Next() switch
                    {
                        "auto" => WriteTracking.Auto,
                        "async" => WriteTracking.Asynchronous,
                        "sync" => WriteTracking.Synchronous,
                        var x => throw new ArgumentException($"--write-tracking takes auto, async or sync, not '{x}'"),
                    };
                    break;
                default: throw new ArgumentException($"unknown option {args[i]}");
            }
        }
        if (budget < 0)
        {
            budget = data / 4;
        }
        if (data < (16L << 20) || budget < RegionOptions.MinimumBudget || threads.Any(t => t is < 1 or > 256) || seconds <= 0 || warmup < 0 || warmupMax < warmup)
        {
            throw new ArgumentException("need --data-mib >= 16, --budget-mib >= 4, threads 1..256, --seconds > 0, 0 <= --warmup <= --warmup-max");
        }
        return new Settings(data, budget, threads, seconds, warmup, json, mixed, readAround, spin, tracking, warmupMax);
    }

    private static void DropCaches()
    {
        Libc.Sync();
        try
        {
            File.WriteAllText("/proc/sys/vm/drop_caches", "3");
        }
        catch (UnauthorizedAccessException)
        {
            // Not root: the page cache stays warm; the cgroup still bounds mmap's use of it from here on.
        }
    }

    /// <summary>Paging: with <paramref name="fetch"/> the B+tree reaches its nodes through PagedFile.Fetch (a miss is read
    /// on the calling thread; the clock sees every use), otherwise through plain pointers in a PagedFile opened with
    /// UseFetch = false (a miss is a fault the pager serves; the clock unmaps pages to see touches). Rows paging/...
    /// and paging-touch/....</summary>
    private static Row RunPaging(string path, long keys, Settings s, int threads, bool mixed, bool fetch)
    {
        DropCaches();
        using var runtime = PagingRuntime.Start(new PagingRuntimeOptions { PagerSpin = TimeSpan.FromMicroseconds(s.PagerSpinMicroseconds), WriteTracking = s.Tracking });
        using var file = PagedFile.Open(runtime, path, new PagedFileOptions { MemoryBudget = s.BudgetBytes, UseFetch = fetch });
        var fetched = new FetchedPages(file);
        var pointers = new MappedPages(file.Address);
        var before = default(RegionStatistics);
        // Full: the resident pages reached the level where the evictor starts (budget − 1/16, FaultEngine.High).
        long budgetPages = s.BudgetBytes / PagedFile.PageSize;
        var (ops, seconds, p50, p99, warmup, full) = Drive(keys, s, threads, mixed, fetch ? (ref rng, update) => Operation(ref fetched, ref rng, keys, update) : (ref rng, update) => Operation(ref pointers, ref rng, keys, update),
            onMeasureStart: () => before = file.Statistics, warm: () => file.Statistics.PeakResidentPages >= budgetPages - budgetPages / 16);
        var after = file.Statistics;
        string mode = runtime.WriteTracking == WriteTracking.Synchronous ? "-syncwp" : "";
        return new Row($"{(fetch ? "paging" : "paging-touch")}/bufferpool/{(mixed ? "mixed" : "lookup")}{mode}", threads, ops, seconds, ops / seconds, p50, p99,
            after.ResidentPages * PagedFile.PageSize, after.BytesRead - before.BytesRead, after.BytesWritten - before.BytesWritten, warmup, full);
    }

    private static Row RunPreadPool(string path, long keys, Settings s, int threads, bool mixed)
    {
        DropCaches();
        using var pool = new PreadPool(path, s.BudgetBytes);
        var pages = new PoolPages(pool);
        long read0 = 0, written0 = 0;
        var (ops, seconds, p50, p99, warmup, full) = Drive(keys, s, threads, mixed, (ref rng, update) => Operation(ref pages, ref rng, keys, update),
            onMeasureStart: () => (read0, written0) = (pool.BytesRead, pool.BytesWritten),
            warm: () => pool.ResidentBytes >= s.BudgetBytes - s.BudgetBytes / 16);
        return new Row($"pread-pool/bufferpool/{(mixed ? "mixed" : "lookup")}", threads, ops, seconds, ops / seconds, p50, p99,
            pool.ResidentBytes, pool.BytesRead - read0, pool.BytesWritten - written0, warmup, full);
    }

    /// <summary>The mmap scenario runs in a child process moved into a fresh cgroup (memory.max = the budget, no swap):
    /// the page cache it faults in is charged there and reclaimed at the limit, as for a DBMS on mmap.</summary>
    private static Row RunMmap(string path, long keys, Settings s, int threads, bool mixed)
    {
        DropCaches();
        string cgroup;
        try
        {
            cgroup = MemoryCgroup.Create($"paging-bench-{Environment.ProcessId}-{threads}-{(mixed ? 1 : 0)}", s.BudgetBytes);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new PagerException($"the mmap scenario needs a memory cgroup (v2 memory.max or v1 memory.limit_in_bytes; run as root): {e.Message}");
        }
        try
        {
            var psi = SelfProcess.StartInfo("bufferpool-mmap-worker", path, keys.ToString(CultureInfo.InvariantCulture), threads.ToString(CultureInfo.InvariantCulture),
                s.Seconds.ToString(CultureInfo.InvariantCulture), s.Warmup.ToString(CultureInfo.InvariantCulture), (mixed ? 1 : 0) + (s.MmapReadAround ? 2 : 0) + "", cgroup,
                s.BudgetBytes.ToString(CultureInfo.InvariantCulture), s.WarmupMax.ToString(CultureInfo.InvariantCulture));
            using var child = Process.Start(psi)!;
            string output = child.StandardOutput.ReadToEnd();
            child.WaitForExit();
            if (child.ExitCode != 0)
            {
                throw new PagerException($"the mmap worker failed (exit {child.ExitCode}): {output}");
            }
            var row = JsonSerializer.Deserialize<Row>(output.Trim().Split('\n')[^1])!;
            return row;
        }
        finally
        {
            try
            {
                Directory.Delete(cgroup);
            }
            catch (IOException)
            {
                // still populated for a moment after the child exits: left for the next boot
            }
        }
    }

    /// <summary>The child side of <see cref="RunMmap"/>: joins the cgroup, maps the file, runs, prints one JSON row.</summary>
    public static int MmapWorker(string[] args)
    {
        string path = args[0], cgroup = args[6];
        long keys = long.Parse(args[1], CultureInfo.InvariantCulture);
        int threads = int.Parse(args[2], CultureInfo.InvariantCulture);
        double seconds = double.Parse(args[3], CultureInfo.InvariantCulture), warmup = double.Parse(args[4], CultureInfo.InvariantCulture);
        int flags = int.Parse(args[5], CultureInfo.InvariantCulture);
        bool mixed = (flags & 1) != 0, readAround = (flags & 2) != 0;
        long limit = long.Parse(args[7], CultureInfo.InvariantCulture);
        double warmupMax = double.Parse(args[8], CultureInfo.InvariantCulture);
        // Join after start-up: the runtime's own memory stays charged where it was (charges do not move with a task),
        // so the budget is all page cache.
        File.WriteAllText(Path.Combine(cgroup, "cgroup.procs"), Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
        long length = new FileInfo(path).Length;
        using var fd = FileDescriptor.Check(Libc.Open(path, OpenFlags.ReadWrite | OpenFlags.CloseOnExec, 0), $"open({path})");
        using var map = Mapping.Map(length, Protection.ReadWrite, MapFlags.Shared, fd, 0, "mmap of the B+tree");
        // MADV_RANDOM: no read-around on faults, as a DBMS on mmap asks (without it every 4 KiB miss reads 128 KiB
        // and the cgroup thrashes far worse).
        if (!readAround)
        {
            _ = Libc.Madvise(map.Address, (nuint)length, (Advice)1);
        }
        var pages = new MappedPages(map.Address);
        var s = new Settings(length, 0, [threads], seconds, warmup, true, mixed, WarmupMax: warmupMax);
        long read0 = 0, written0 = 0;
        // Full: the cgroup's charge (the page cache this process faulted in) reached 15/16 of its limit.
        var (ops, measured, p50, p99, warmed, full) = Drive(keys, s, threads, mixed, (ref rng, update) => Operation(ref pages, ref rng, keys, update),
            onMeasureStart: () => (read0, written0) = (IoBytes("read_bytes:"), IoBytes("write_bytes:")), warm: () => MemoryCgroup.Usage(cgroup) >= limit - limit / 16);
        long resident = MemoryCgroup.Usage(cgroup);
        // Written: /proc/self/io's write_bytes, which the kernel counts when a clean page of a file becomes dirty
        // (folio_account_dirtied): the bytes its writeback will send, as Paging and the pool count pages written back.
        var row = new Row($"{(readAround ? "mmap-read-around" : "mmap")}/bufferpool/{(mixed ? "mixed" : "lookup")}", threads, ops, measured, ops / measured, p50, p99, resident,
            IoBytes("read_bytes:") - read0, IoBytes("write_bytes:") - written0, warmed, full);
        Console.WriteLine(JsonSerializer.Serialize(row));
        return 0;
    }

    /// <summary>A counter of /proc/self/io (<c>read_bytes:</c>, <c>write_bytes:</c>).</summary>
    private static long IoBytes(string field)
    {
        foreach (var line in File.ReadLines("/proc/self/io"))
        {
            if (line.StartsWith(field, StringComparison.Ordinal))
            {
                return long.Parse(line.AsSpan(field.Length).Trim(), CultureInfo.InvariantCulture);
            }
        }
        return 0;
    }

    private delegate bool Op(ref ulong rng, bool update);

    /// <summary>One lookup (or update): a uniformly random key, descended to its leaf, its value checked.</summary>
    private static bool Operation<TPages>(ref TPages pages, ref ulong rng, long keys, bool update) where TPages : struct, IPageAccess
    {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        long key = (long)(rng % (ulong)keys);
        byte* value = BTreeFile.FindValue(ref pages, key, out long leaf);
        bool ok = *(ulong*)value == BTreeFile.ValueWord(key);
        if (update)
        {
            Interlocked.Increment(ref *(long*)(value + 8));
        }
        pages.Unfix(leaf, update);
        return ok;
    }

    /// <summary>Runs <paramref name="threads"/> threads of operations: warm-up (at least <see cref="Settings.Warmup"/>,
    /// then until <paramref name="warm"/> says the cache is full, at most <see cref="Settings.WarmupMax"/>), then the
    /// measured window; every 8th operation is timed for the percentiles.</summary>
    private static (long Ops, double Seconds, long P50, long P99, double WarmupSeconds, bool CacheFull) Drive(long keys, Settings s, int threads, bool mixed, Op op,
        Action onMeasureStart, Func<bool> warm)
    {
        _ = keys;
        long phase = 0; // 0 warm-up, 1 measuring, 2 stop
        long[] counts = new long[threads];
        var samples = new List<long>[threads];
        string? failure = null;
        var workers = Enumerable.Range(0, threads).Select(t => new Thread(() =>
        {
            ulong rng = 0x9E3779B97F4A7C15UL ^ (ulong)(t + 1) * 0xD1B54A32D192ED03UL;
            var mine = samples[t] = new List<long>(1 << 16);
            long n = 0;
            while (true)
            {
                long p = Volatile.Read(ref phase);
                if (p == 2)
                {
                    break;
                }
                bool update = mixed && (rng & 15) < 2; // ~1 in 8 of the ops: 12.5 % updates
                bool timed = p == 1 && (n & 7) == 0;
                long t0 = timed ? Stopwatch.GetTimestamp() : 0;
                if (!op(ref rng, update))
                {
                    Interlocked.CompareExchange(ref failure, $"thread {t}: a lookup returned a wrong value", null);
                }
                if (timed)
                {
                    mine.Add(Stopwatch.GetTimestamp() - t0);
                }
                if (p == 1)
                {
                    n++;
                }
            }
            counts[t] = n;
        }) { IsBackground = true, Name = $"bufferpool-{t}" }).ToList();
        var warming = Stopwatch.StartNew();
        workers.ForEach(w => w.Start());
        Thread.Sleep(TimeSpan.FromSeconds(s.Warmup));
        bool full;
        while (!(full = warm()) && warming.Elapsed.TotalSeconds < s.WarmupMax && Volatile.Read(ref failure) is null)
        {
            Thread.Sleep(100);
        }
        double warmupSeconds = warming.Elapsed.TotalSeconds;
        onMeasureStart();
        var clock = Stopwatch.StartNew();
        Volatile.Write(ref phase, 1);
        Thread.Sleep(TimeSpan.FromSeconds(s.Seconds));
        Volatile.Write(ref phase, 2);
        double seconds = clock.Elapsed.TotalSeconds;
        workers.ForEach(w => w.Join());
        if (failure is not null)
        {
            throw new InvalidDataException(failure);
        }
        var all = samples.SelectMany(x => x).Order().ToArray();
        double toNs = 1e9 / Stopwatch.Frequency;
        long P(double q) => all.Length == 0 ? 0 : (long)(all[Math.Min(all.Length - 1, (int)(q * all.Length))] * toNs);
        return (counts.Sum(), seconds, P(0.5), P(0.99), warmupSeconds, full);
    }
}

/// <summary>A memory cgroup limited to a number of bytes: v2 (memory.max, memory.swap.max) where the memory
/// controller is on the unified hierarchy, else v1 (memory.limit_in_bytes) — this VM mounts memory as v1.</summary>
internal static class MemoryCgroup
{
    private const string V2 = "/sys/fs/cgroup";
    private const string V1 = "/sys/fs/cgroup/memory";

    public static string Create(string name, long limit)
    {
        string value = limit.ToString(CultureInfo.InvariantCulture);
        if (File.Exists(Path.Combine(V2, "cgroup.controllers")) && File.ReadAllText(Path.Combine(V2, "cgroup.controllers")).Contains("memory", StringComparison.Ordinal))
        {
            string control = Path.Combine(V2, "cgroup.subtree_control");
            if (!File.ReadAllText(control).Contains("memory", StringComparison.Ordinal))
            {
                File.WriteAllText(control, "+memory");
            }
            string dir = Path.Combine(V2, name);
            Directory.CreateDirectory(dir);
            File.WriteAllText(Path.Combine(dir, "memory.max"), value);
            if (File.Exists(Path.Combine(dir, "memory.swap.max")))
            {
                File.WriteAllText(Path.Combine(dir, "memory.swap.max"), "0");
            }
            return dir;
        }
        if (!File.Exists(Path.Combine(V1, "memory.limit_in_bytes")))
        {
            throw new IOException("no memory cgroup controller is mounted (neither v2 with memory nor v1 at /sys/fs/cgroup/memory)");
        }
        string v1 = Path.Combine(V1, name);
        Directory.CreateDirectory(v1);
        File.WriteAllText(Path.Combine(v1, "memory.limit_in_bytes"), value);
        return v1;
    }

    /// <summary>Bytes charged to the cgroup now (page cache included).</summary>
    public static long Usage(string dir)
    {
        string v2 = Path.Combine(dir, "memory.current");
        string file = File.Exists(v2) ? v2 : Path.Combine(dir, "memory.usage_in_bytes");
        return long.Parse(File.ReadAllText(file).Trim(), CultureInfo.InvariantCulture);
    }
}
