using System.Runtime.CompilerServices;
using Paging.Testing;

namespace Paging.Allocator.Tests;

/// <summary>
/// The constraint the whole design rests on: a thread blocked in a fault at a non-interruptible point (a load in a
/// small non-inlined method) cannot be suspended by the GC. With faults served by the pager process, GCs wait at most
/// for the pager. Two readers go through a NoInlining accessor while a third thread collects every 5 ms.
/// PAGING_SOAK_SECONDS runs it longer (default 20 s).
/// </summary>
public sealed unsafe class GcStressTests
{
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static ulong ReadWord(byte* p) => *(ulong*)p;

    /// <summary>Two threads read random words of <paramref name="region"/> (checked against the file) while a third
    /// calls GC.Collect every 5 ms, for <paramref name="seconds"/>; <paramref name="dropWindows"/> also drops a random
    /// 1 MiB window's mappings every 64 reads, for fresh faults. Fails the test if it does not finish (a hang).</summary>
    internal static (long Reads, long Collections, long Wrong) ReadWhileCollecting(Region region, TempFile file, int seconds, bool dropWindows)
    {
        long pages = region.Length / 4096;
        long reads = 0, wrong = 0;
        long collections = WhileCollecting(seconds, 2, (t, stop) =>
        {
            var rng = new Random(t);
            while (DateTime.UtcNow < stop)
            {
                // A fresh fault every few reads: drop a random 1 MiB window's mappings (for anonymous memory this
                // discards the pages, so they are filled again from the file).
                if (dropWindows && rng.Next(64) == 0)
                {
                    long w = rng.NextInt64(region.Length >> 20) << 20;
                    _ = Native.Madvise(region.Address + (nint)w, 1 << 20, Native.MADV_DONTNEED);
                }
                long off = rng.NextInt64(pages) * 4096 + rng.Next(512) * 8;
                if (ReadWord(region.Pointer + off) != TestData.WordAt(off, file.Seed))
                {
                    Interlocked.Increment(ref wrong);
                }
                Interlocked.Increment(ref reads);
            }
        }, "GC stress");
        return (reads, collections, wrong);
    }

    /// <summary>Runs <paramref name="readers"/> threads of <paramref name="read"/> (its index, and when to stop) while
    /// another calls GC.Collect every 5 ms (the cadence), for <paramref name="seconds"/>. Fails the test if they
    /// do not finish (a hang). Returns the collections that ran.</summary>
    internal static long WhileCollecting(int seconds, int readers, Action<int, DateTime> read, string what)
    {
        long collections = 0;
        var stop = DateTime.UtcNow.AddSeconds(seconds);
        Run.Within(TimeSpan.FromSeconds(seconds + 60), () =>
        {
            var threads = Enumerable.Range(0, readers).Select(t => new Thread(() => read(t, stop)) { Name = $"reader {t}" }).ToList();
            var collector = new Thread(() =>
            {
                while (DateTime.UtcNow < stop)
                {
                    GC.Collect();
                    Interlocked.Increment(ref collections);
                    Thread.Sleep(5);
                }
            }) { Name = "collector" };
            threads.ForEach(r => r.Start());
            collector.Start();
            threads.ForEach(r => r.Join());
            collector.Join();
        }, what);
        return collections;
    }

    [Theory]
    [InlineData(ArenaKind.Shmem, false)]
    [InlineData(ArenaKind.Anonymous, false)]
    [InlineData(ArenaKind.Shmem, true)]
    public void ReadersAndCollectionsNeverHang(ArenaKind arena, bool streaming)
    {
        int seconds = int.TryParse(Environment.GetEnvironmentVariable("PAGING_SOAK_SECONDS"), out int s) ? s : 20;
        using var file = TestData.CreateFile(64 << 20, seed: 11);
        using var runtime = PagingRuntime.Start();
        using var region = runtime.CreateRegion(new RegionOptions
        {
            Arena = arena, Length = 64 << 20, Store = PageStoreDescriptor.File(file.Path), Prefetch = new PrefetchOptions { StreamAll = streaming },
        });
        var (_, collections, wrong) = ReadWhileCollecting(region, file, seconds, dropWindows: true);
        Assert.Equal(0, wrong);
        Assert.True(collections > seconds * 20, $"only {collections} collections ran");
        Assert.True(region.Statistics.Faults > 1000, $"only {region.Statistics.Faults} faults: the test did not exercise the pager");
        if (streaming)
        {
            Assert.True(region.Statistics.PagesPrefetched > 0, "streaming filled nothing");
        }
        Assert.Equal(0, region.Statistics.Errors);
    }
}

/// <summary>GC stress with eviction on (alone: it keeps both vCPUs busy for 20 s).</summary>
[Collection("serial")]
public sealed unsafe class GcStressWithEvictionTests
{
    /// <summary>The same with eviction on: a 16 MiB budget over 64 MiB, so the clock unmaps and punches pages under
    /// the readers while collections run.</summary>
    /// <para>Anonymous (synchronous tracking): the region's unmapper, a managed thread a collection stops, moves the
    /// evicted pages out; no fault may wait for it.</para>
    [Theory]
    [InlineData(ArenaKind.Shmem, WriteTracking.Auto)]
    [InlineData(ArenaKind.Anonymous, WriteTracking.Synchronous)]
    public void ReadersCollectionsAndEvictionNeverHang(ArenaKind arena, WriteTracking tracking)
    {
        int seconds = int.TryParse(Environment.GetEnvironmentVariable("PAGING_SOAK_SECONDS"), out int s) ? s : 20;
        using var file = TestData.CreateFile(64 << 20, seed: 13);
        using var runtime = PagingRuntime.Start(new PagingRuntimeOptions { WriteTracking = tracking });
        using var region = runtime.CreateRegion(new RegionOptions
        {
            Arena = arena, Length = 64 << 20, Store = PageStoreDescriptor.File(file.Path), MemoryBudget = 16 << 20, Prefetch = PrefetchOptions.None,
        });
        var (reads, collections, wrong) = GcStressTests.ReadWhileCollecting(region, file, seconds, dropWindows: false);
        Assert.Equal(0, wrong);
        Assert.True(region.Statistics.PagesEvicted > 0, $"nothing was evicted: {region.Statistics}");
        Assert.True(reads > 1000 && collections > seconds * 5, $"too little happened: {reads} reads, {collections} collections");
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static ulong ReadWord(byte* p) => *(ulong*)p;

    /// <summary>Caller fills under collections: two threads fetch (a collection may stop one between its read and its
    /// install, holding the page's caller-filling bit), two touch the same pages through pointers (faults the pager
    /// serves, never waiting on that bit), a fifth collects every 5 ms, eviction on. Nothing may hang; every word is
    /// checked. Half the soak time of the test above (10 s by default).</summary>
    [Fact]
    public void FetchTouchesCollectionsAndEvictionNeverHang()
    {
        int seconds = (int.TryParse(Environment.GetEnvironmentVariable("PAGING_SOAK_SECONDS"), out int s) ? s : 20) / 2;
        const long length = 64L << 20;
        using var file = TestData.CreateFile(length, seed: 17, directory: AppContext.BaseDirectory);
        using var runtime = PagingRuntime.Start();
        using var db = Paging.BufferPool.PagedFile.Open(runtime, file.Path, new Paging.BufferPool.PagedFileOptions { MemoryBudget = 16L << 20 });
        long reads = 0, wrong = 0;
        long collections = GcStressTests.WhileCollecting(seconds, 4, (t, stop) =>
        {
            var rng = new Random(t + 3);
            while (DateTime.UtcNow < stop)
            {
                long p = rng.NextInt64(db.PageCount);
                long off = p * 4096 + rng.Next(512) * 8;
                byte* page = t < 2 ? db.Fetch(p) : db.PagePointer(p);
                if (ReadWord(page + (off - p * 4096)) != TestData.WordAt(off, file.Seed))
                {
                    Interlocked.Increment(ref wrong);
                }
                Interlocked.Increment(ref reads);
            }
        }, "GC stress with caller fills");
        var stats = db.Statistics;
        Assert.Equal(0, wrong);
        Assert.True(stats.PagesEvicted > 0 && stats.CallerFills > 0 && stats.MissingFaults > 0, $"{stats}");
        Assert.True(reads > 1000 && collections > seconds * 5, $"too little happened: {reads} reads, {collections} collections");
    }
}
