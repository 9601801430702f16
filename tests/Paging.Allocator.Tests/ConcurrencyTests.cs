using System.Diagnostics;
using System.Runtime.InteropServices;
using Paging.Testing;

namespace Paging.Allocator.Tests;

/// <summary>The concurrent fill engine: many fills in flight, no fault waiting behind an unrelated one, a read that
/// never completes ending in the timeout policy, faults and read-ahead racing on the same pages.</summary>
[Collection("serial")]
public sealed unsafe class ConcurrencyTests(RuntimeFixture fixture)
{
    private readonly PagingRuntime _runtime = fixture.Runtime;

    private static readonly string s_assembly = typeof(FaultInjectingPageStore).Assembly.Location;
    private static readonly string s_type = typeof(FaultInjectingPageStore).FullName!;

    private static PageStoreDescriptor Injecting(TempFile file, Dictionary<string, string> settings)
    {
        settings["inner"] = "file";
        settings["path"] = file.Path;
        return PageStoreDescriptor.Custom(s_assembly, s_type, settings);
    }

    /// <summary>Touches one page per thread, all at once; returns the wall time.</summary>
    private static TimeSpan TouchInParallel(Region region, TempFile file, int threads, long firstPage)
    {
        using var start = new Barrier(threads + 1);
        string? failure = null;
        var workers = Enumerable.Range(0, threads).Select(i => new Thread(() =>
        {
            long off = ((firstPage + i * 3L) % 1024) * 4096;
            start.SignalAndWait();
            long bad = TestData.FirstMismatch(region.AsSpan(off, 4096), off, file.Length, file.Seed);
            if (bad >= 0)
            {
                failure = $"thread {i}: wrong byte at {off + bad}";
            }
        })).ToList();
        workers.ForEach(w => w.Start());
        start.SignalAndWait();
        var watch = Stopwatch.StartNew();
        workers.ForEach(w => w.Join());
        Assert.True(failure is null, failure);
        return watch.Elapsed;
    }

    [Theory]
    [InlineData(true, ArenaKind.Shmem)]
    [InlineData(true, ArenaKind.Anonymous)]
    [InlineData(false, ArenaKind.Shmem)]
    public void SixtyFourFaultsOnASlowStoreAreServedInParallel(bool asyncStore, ArenaKind arena)
    {
        using var file = TestData.CreateFile(4 << 20);
        // 10 ms per read: served one at a time, 64 faults would take 640 ms.
        var store = asyncStore
            ? PageStoreDescriptor.WithLatency(PageStoreDescriptor.File(file.Path), TimeSpan.FromMilliseconds(10))
            : Injecting(file, new() { ["delay_us"] = "10000" });
        using var region = _runtime.CreateRegion(new RegionOptions { Arena = arena, Length = 4 << 20, Store = store, Prefetch = PrefetchOptions.None });
        // One fault first, untimed: the pager's first use of this path (JIT, pools) is not what is measured.
        Run.Within(TimeSpan.FromSeconds(30), () => Run.AssertMatchesFile(region.AsSpan(1000 * 4096, 4096), 1000 * 4096, file, "warm-up"), "warm-up");
        TimeSpan elapsed = default;
        Run.Within(TimeSpan.FromSeconds(30), () => elapsed = TouchInParallel(region, file, 64, 0), "64 parallel faults");
        // Asynchronous: all 64 reads in flight at once; synchronous: 32 fill threads, two rounds of 10 ms. Either takes
        // a few tens of ms on a quiet machine; the bound, half of the 640 ms one at a time would take, leaves room for
        // the other test assemblies running beside this one on 2 vCPUs.
        Assert.True(elapsed < TimeSpan.FromMilliseconds(320), $"64 faults on a 10 ms store took {elapsed.TotalMilliseconds:0} ms");
        Assert.Equal(65, Run.Settled(() => region.Statistics.PagesFilled, 65));

        if (asyncStore)
        {
            // Warm now: the asynchronous path allocates nothing per fault on a quiet machine (pooled fills, reused
            // deadlines; < 1 byte per fault measured). Under CI load a round can start while the last one's fills
            // are still returning to the pool, which then grows, and one loaded run showed ~31 bytes per fault whose
            // source was not found: the bound is 64 bytes per fault, which a Task or closure per fault would exceed.
            Run.Within(TimeSpan.FromSeconds(30), () => TouchInParallel(region, file, 64, 1), "second round");
            long before = region.Statistics.ManagedBytesAllocated;
            for (int round = 0; round < 4; round++)
            {
                Run.Within(TimeSpan.FromSeconds(30), () => TouchInParallel(region, file, 64, 1000 + round * 200), "warm round");
            }
            long allocated = region.Statistics.ManagedBytesAllocated - before;
            Assert.True(allocated < 4 * 64 * 64, $"four warm rounds of 64 asynchronous fills allocated {allocated} bytes");
        }
    }

    private static int MemfdCreate() => Native.MemfdCreate("sink", 1);

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void AReadThatNeverCompletesBlocksNothingElseAndEndsInTheTimeoutPolicy(bool asyncStore)
    {
        using var file = TestData.CreateFile(1 << 20);
        const long stalled = 40960;
        var store = Injecting(file, new() { ["stall_offset"] = stalled.ToString(System.Globalization.CultureInfo.InvariantCulture), ["async"] = asyncStore ? "true" : "false" });
        using var region = _runtime.CreateRegion(new RegionOptions
        {
            Arena = ArenaKind.Shmem, Length = 1 << 20, Store = store, Prefetch = PrefetchOptions.None, ReadTimeout = TimeSpan.FromSeconds(1),
        });
        long stuckResult = 0;
        int stuckErrno = 0;
        var stuckWatch = Stopwatch.StartNew();
        // A kernel access (pwrite from the region) to the stalled page: it waits in the fault, and gets EFAULT once the
        // page is poisoned (a user access would get SIGBUS, which would end the test process).
        var stuck = new Thread(() =>
        {
            int sink = MemfdCreate();
            try
            {
                stuckResult = Native.Pwrite(sink, region.Pointer + stalled, 4096, 0);
                stuckErrno = Marshal.GetLastPInvokeError();
            }
            finally
            {
                _ = Native.Close(sink);
            }
            stuckWatch.Stop();
        }) { IsBackground = true };
        stuck.Start();
        // The stalled page's fault has been read (its fill is in flight) before the other pages are touched.
        Assert.True(SpinWait.SpinUntil(() => region.Statistics.Faults >= 1, TimeSpan.FromSeconds(10)), "the stalled access never faulted");
        Run.Within(TimeSpan.FromSeconds(10), () =>
        {
            var watch = Stopwatch.StartNew();
            for (long off = 0; off < 1 << 20; off += 4096)
            {
                if (off != stalled)
                {
                    Run.AssertMatchesFile(region.AsSpan(off, 4096), off, file, "a page beside the stalled one");
                }
            }
            Assert.True(watch.Elapsed < TimeSpan.FromMilliseconds(900), $"the other pages took {watch.Elapsed.TotalMilliseconds:0} ms beside a stalled read");
        }, "other pages");
        Assert.True(stuck.Join(TimeSpan.FromSeconds(20)), "the access to the stalled page never ended");
        Assert.Equal(-1, stuckResult);
        Assert.Equal(14 /* EFAULT */, stuckErrno);
        Assert.InRange(stuckWatch.Elapsed.TotalSeconds, 0.9, 15);
        // The woken access returns inside the pager's poison ioctl, before the pager counts it: wait for the count.
        Assert.True(SpinWait.SpinUntil(() => region.Statistics.Poisoned >= 1, TimeSpan.FromSeconds(5)), region.Statistics.ToString());
        Assert.True(region.Statistics.Errors >= 1, region.Statistics.ToString());
    }

    [Theory]
    [InlineData(ArenaKind.Shmem)]
    [InlineData(ArenaKind.Anonymous)]
    public void FaultsAndReadAheadRacingOnTheSamePagesFillEachPageOnce(ArenaKind arena)
    {
        const long length = 32 << 20;
        using var file = TestData.CreateFile(length, seed: 5);
        // Out-of-order completions (async, 50–250 µs) keep many read-ahead windows and faults in flight together.
        var store = Injecting(file, new() { ["async"] = "true", ["delay_us"] = "50", ["jitter_us"] = "200" });
        using var region = _runtime.CreateRegion(new RegionOptions { Arena = arena, Length = length, Store = store });
        Run.Within(TimeSpan.FromSeconds(120), () =>
        {
            // Four sequential scanners start at staggered points and run into each other's read-ahead; two random
            // readers hit pages the scanners' windows have claimed but not filled.
            string? failure = null;
            var threads = Enumerable.Range(0, 6).Select(i => new Thread(() =>
            {
                var rng = new Random(i);
                for (int n = 0; n < 2048; n++)
                {
                    long off = i < 4 ? ((i * (length / 5) & ~4095L) + (long)n * 4096) % length : rng.NextInt64(length / 4096) * 4096;
                    long bad = TestData.FirstMismatch(region.AsSpan(off, 4096), off, file.Length, file.Seed);
                    if (bad >= 0)
                    {
                        failure = $"thread {i}: wrong byte at {off + bad}";
                        return;
                    }
                }
            })).ToList();
            threads.ForEach(t => t.Start());
            threads.ForEach(t => t.Join());
            Assert.True(failure is null, failure);
        }, "racing scanners");
        // Read-ahead may still be filling: stop it, and wait until the counters settle.
        region.CancelPrefetch();
        long filled = 0;
        var stats = region.Statistics;
        Assert.True(SpinWait.SpinUntil(() =>
        {
            stats = region.Statistics;
            filled = region.CountFilledPages(0, length / 4096);
            return stats.PagesFilled == filled && region.Statistics.PagesFilled == filled;
        }, TimeSpan.FromSeconds(10)), $"{stats.PagesFilled} fills for {filled} filled pages: some page was filled twice (or never counted)");
        Assert.Equal(0, stats.Errors);
        Assert.Equal(0, stats.AlreadyPresent); // nothing was mapped over a page another fill had mapped
    }

    /// <summary>The read-ahead marker of asynchronous stores: the first page of each window is filled but left
    /// unmapped (shmem) or left out (anonymous), so the scanner's fault on it starts the next window. A scanner that
    /// faults on a marker while its fill is still completing joins that fill and must be woken after the fill's claims
    /// are released (a wake before the release let the second fault wait for the finished fill forever: found by
    /// the weights harness over HTTP). Many passes of one sequential scanner over a jittery asynchronous store.</summary>
    [Theory]
    [InlineData(ArenaKind.Shmem)]
    [InlineData(ArenaKind.Anonymous)]
    public void SequentialScansOverAnAsynchronousStoreNeverHangOnAMarker(ArenaKind arena)
    {
        const long length = 16 << 20;
        using var file = TestData.CreateFile(length, seed: 6);
        var store = Injecting(file, new() { ["async"] = "true", ["delay_us"] = "20", ["jitter_us"] = "100" });
        long hits = 0;
        for (int pass = 0; pass < 12; pass++)
        {
            using var region = _runtime.CreateRegion(new RegionOptions { Arena = arena, Length = length, Store = store });
            Run.Within(TimeSpan.FromSeconds(30), () =>
            {
                for (long off = 0; off < length; off += 4096)
                {
                    long bad = TestData.FirstMismatch(region.AsSpan(off, 4096), off, file.Length, file.Seed);
                    Assert.True(bad < 0, $"pass {pass}: wrong byte at {off + bad}");
                }
            }, $"sequential scan, pass {pass}");
            hits += region.Statistics.SequentialHits;
        }
        // Markers make every window start with a sequential hit: at least one per 4 MiB window per pass.
        Assert.True(hits >= 12 * (length / (4 << 20)), $"{hits} sequential hits in 12 passes");
    }
}
