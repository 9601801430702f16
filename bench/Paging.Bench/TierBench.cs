using System.Diagnostics;
using Paging.BufferPool;

namespace Paging.Bench;

/// <summary>
/// <c>Paging.Bench tier [--data-mib N]</c>: what a re-fault costs when the compressed tier holds the evicted page,
/// against the same fault read from the file store with the page cache dropped. A B+tree file (compressible values),
/// a region with a budget of a quarter of it: pass 1 touches every page, then Evict drops them all (into a tier big
/// enough for all of them); pass 2 touches a fifth of the pages in random order, timed (under the budget: no eviction
/// while timed). The cold scenario runs pass 2 on a fresh region without a tier after drop_caches.
/// </summary>
internal static unsafe class TierBench
{
    public static int Run(string[] args)
    {
        long data = BenchData.DataBytes(args, 128L << 20);
        string path = BenchData.PathFor($"tier-{data >> 20}m.db");
        BTreeFile.Build(path, BTreeFile.KeysFor(data));
        long length = new FileInfo(path).Length / 4096 * 4096;
        long pages = length / 4096;
        var order = Enumerable.Range(0, (int)pages).Select(p => (long)p).ToArray();
        new Random(11).Shuffle(order);
        var sample = order[..(int)(pages / 5)]; // a fifth: under the budget of a quarter
        using var runtime = PagingRuntime.Start();

        // Tier: budget 1/4, tier large enough for everything evicted.
        double tierNs;
        long hits;
        {
            using var region = runtime.CreateRegion(new RegionOptions
            {
                Length = length, MemoryBudget = length / 4, Prefetch = PrefetchOptions.None,
                Store = PageStoreDescriptor.CompressedTier(PageStoreDescriptor.File(path), length),
            });
            Touch(region, Enumerable.Range(0, (int)pages).Select(p => (long)p).ToArray());
            // Everything out (written back where dirty — nothing here — and handed to the tier), so the timed pass
            // re-faults pages the tier holds, and touches fewer than the budget: no eviction runs while it is timed.
            region.Evict(0, length);
            var before = region.Statistics;
            tierNs = Touch(region, sample);
            hits = region.Statistics.PagesFilled - before.PagesFilled;
        }
        // Cold file store: same budget, no tier, page cache dropped before the timed pass.
        double coldNs;
        {
            using var region = runtime.CreateRegion(new RegionOptions
            {
                Length = length, MemoryBudget = length / 4, Prefetch = PrefetchOptions.None, Store = PageStoreDescriptor.File(path),
            });
            Interop.Libc.Sync();
            File.WriteAllText("/proc/sys/vm/drop_caches", "3");
            coldNs = Touch(region, sample);
        }
        Console.WriteLine($"{data >> 20} MiB B+tree file, budget {length / 4 >> 20} MiB; {sample.Length} of its {pages} pages touched in random order, after all were evicted (tier) or the page cache was dropped (cold)");
        Console.WriteLine($"re-fault from the compressed tier (LZ4): {tierNs / 1000:F1} µs per page ({hits} pages filled in the pass)");
        Console.WriteLine($"fault from the file store, page cache dropped: {coldNs / 1000:F1} µs per page");
        Console.WriteLine($"tier = {coldNs / tierNs:F1}x faster");
        return 0;
    }

    private static double Touch(Region region, long[] order)
    {
        var clock = Stopwatch.StartNew();
        ulong sum = 0;
        foreach (long p in order)
        {
            sum += Volatile.Read(ref *(ulong*)(region.Pointer + p * 4096));
        }
        GC.KeepAlive(sum);
        return clock.Elapsed.TotalNanoseconds / order.Length;
    }
}
