namespace Paging.Bench;

/// <summary>
/// <c>Paging.Bench dirtyscan [--data-mib N]</c>: what a Flush's dirty scan costs per resident page (the pager's
/// PAGEMAP_SCAN with re-protection over the resident runs and the dirty bitmap updates, timed in the pager:
/// RegionStatistics.DirtyScanNanoseconds / DirtyScannedPages), with nothing written, every 16th page written and every
/// page written — to compare with rows 11.4, 11.5 and 11.3 of ../shared/limits.
/// </summary>
internal static unsafe class DirtyScanBench
{
    public static int Run(string[] args)
    {
        long data = BenchData.DataBytes(args, 1024L << 20);
        string path = BenchData.PathFor($"dirtyscan-{data >> 20}m.bin");
        using (var f = new FileStream(path, FileMode.Create, FileAccess.Write))
        {
            f.SetLength(data);
        }
        using var runtime = PagingRuntime.Start();
        using var region = runtime.CreateRegion(new RegionOptions
        {
            Length = data, Store = PageStoreDescriptor.File(path, writable: true), WriteBack = true,
        });
        long pages = data / 4096;
        for (long p = 0; p < pages; p++)
        {
            _ = Volatile.Read(ref *(ulong*)(region.Pointer + p * 4096)); // resident (read-ahead maps runs at once)
        }
        region.Flush();
        Console.WriteLine($"{data >> 20} MiB shmem region, {region.Statistics.ResidentPages} resident pages; ns per resident page of a Flush's dirty scan:");
        foreach (var (name, stride) in new[] { ("nothing written (limits 11.4)", 0L), ("every 16th page written (limits 11.5)", 16L), ("every page written (limits 11.3)", 1L) })
        {
            var samples = new List<double>();
            for (int rep = 0; rep < 5; rep++)
            {
                if (stride > 0)
                {
                    for (long p = 0; p < pages; p += stride)
                    {
                        *(ulong*)(region.Pointer + p * 4096) = (ulong)rep;
                    }
                }
                var before = region.Statistics;
                region.Flush();
                var after = region.Statistics;
                samples.Add((double)(after.DirtyScanNanoseconds - before.DirtyScanNanoseconds) / (after.DirtyScannedPages - before.DirtyScannedPages));
            }
            samples.Sort();
            Console.WriteLine($"  {name,-40} median {samples[2],7:F2} ns/page (min {samples[0]:F2}, max {samples[^1]:F2})");
        }
        return 0;
    }
}

/// <summary>Where the buffer-pool, tier and dirty-scan modes keep their generated files, and their --data-mib.</summary>
internal static class BenchData
{
    /// <summary>A file under bufferpool-data/ next to the harness (not /tmp: O_DIRECT needs a real file system).</summary>
    public static string PathFor(string name)
    {
        string dir = Path.Combine(AppContext.BaseDirectory, "bufferpool-data");
        Directory.CreateDirectory(dir);
        return Path.Combine(dir, name);
    }

    /// <summary>--data-mib N as bytes, or <paramref name="fallback"/>.</summary>
    public static long DataBytes(string[] args, long fallback)
    {
        int at = Array.IndexOf(args, "--data-mib");
        return at >= 0 && at + 1 < args.Length ? long.Parse(args[at + 1], System.Globalization.CultureInfo.InvariantCulture) << 20 : fallback;
    }
}
