using Paging.Testing;

namespace Paging.Allocator.Tests;

/// <summary>Reserves 2 MiB pages for its tests (as root) and gives back the old vm.nr_hugepages.</summary>
public sealed class HugePagesFixture : IDisposable
{
    public const int Pages = 40;

    public HugePageReservation Reservation { get; } = HugePageReservation.Reserve(Pages);

    public void Dispose() => Reservation.Dispose();
}

[Collection("runtime")]
public sealed unsafe class HugeTlbTests(RuntimeFixture fixture, HugePagesFixture hugePages) : IClassFixture<HugePagesFixture>
{
    private const int Huge = 2 << 20;
    private readonly PagingRuntime _runtime = fixture.Runtime;

    [Theory]
    [InlineData("zero")]
    [InlineData("file")]
    public void EveryByteMatchesTheSource(string store)
    {
        Assert.NotNull(hugePages.Reservation);
        // 9 huge pages of region over 5.5 huge pages of file.
        using var file = TestData.CreateFile(5 * Huge + Huge / 2);
        var descriptor = store == "file" ? PageStoreDescriptor.File(file.Path) : PageStoreDescriptor.Zero();
        using var region = _runtime.CreateRegion(new RegionOptions { Arena = ArenaKind.HugeTlb, Length = 9L * Huge, Store = descriptor });
        Assert.Equal(Huge, region.PageSize);
        Run.Within(TimeSpan.FromSeconds(60), () =>
        {
            // One 4 KiB touch in the middle of each huge page, in reverse: each fault fills the whole 2 MiB page.
            for (int p = 8; p >= 0; p--)
            {
                _ = Volatile.Read(ref *(long*)(region.Pointer + (long)p * Huge + 777 * 8));
            }
            long bad = TestData.FirstMismatch(region.AsSpan(0, (int)region.Length), 0, store == "file" ? file.Length : 0, file.Seed);
            Assert.True(bad < 0, $"wrong byte at {bad}");
        }, "hugetlb touch");
        Assert.Equal(9, Run.Settled(() => region.Statistics.PagesFilled, 9));
        Assert.Equal(0, region.Statistics.Errors);
    }

    [Fact]
    public void AReadOnlyRegionReadsTheFile()
    {
        Assert.NotNull(hugePages.Reservation);
        using var file = TestData.CreateFile(3 * Huge + 5000, seed: 107);
        using var region = _runtime.CreateRegion(new RegionOptions { Arena = ArenaKind.HugeTlb, Length = 4L * Huge, Store = PageStoreDescriptor.File(file.Path), ReadOnly = true });
        Assert.True(region.IsReadOnly);
        Run.Within(TimeSpan.FromSeconds(60), () =>
        {
            long bad = TestData.FirstMismatch(region.AsReadOnlySpan(0, (int)region.Length), 0, file.Length, file.Seed);
            Assert.True(bad < 0, $"wrong byte at {bad}");
        }, "hugetlb read-only");
        Assert.Equal(4, Run.Settled(() => region.Statistics.PagesFilled, 4));
        Assert.Equal(0, region.Statistics.Errors);
    }

    [Fact]
    public void ThreadsFaultingInsideOneHugePageShareOneFill()
    {
        using var file = TestData.CreateFile(4L * Huge);
        using var region = _runtime.CreateRegion(new RegionOptions { Arena = ArenaKind.HugeTlb, Length = 4L * Huge, Store = PageStoreDescriptor.File(file.Path) });
        Run.Within(TimeSpan.FromSeconds(60), () =>
        {
            var threads = Enumerable.Range(0, 4).Select(t => new Thread(() =>
            {
                for (int p = 0; p < 4; p++)
                {
                    long off = (long)p * Huge + t * 4096 * 7;
                    Run.AssertMatchesFile(region.AsSpan(off, 4096), off, file, $"thread {t} page {p}");
                }
            })).ToList();
            threads.ForEach(t => t.Start());
            threads.ForEach(t => t.Join());
        }, "hugetlb threads");
        Assert.Equal(4, Run.Settled(() => region.Statistics.PagesFilled, 4));
    }

    [Fact]
    public void TooFewHugePagesIsAClearErrorAtCreation()
    {
        long free = HugePageReservation.Meminfo("HugePages_Free");
        var e = Assert.Throws<PagingSystemException>(() =>
            _runtime.CreateRegion(new RegionOptions { Arena = ArenaKind.HugeTlb, Length = (free + 64) * Huge }));
        Assert.Contains("nr_hugepages", e.Message);
    }

    /// <summary>The runtime for a test's write tracking: the shared one (Auto), or its own.</summary>
    private PagingRuntime RuntimeFor(WriteTracking tracking, out PagingRuntime? own)
    {
        own = tracking == WriteTracking.Auto ? null : PagingRuntime.Start(new PagingRuntimeOptions { WriteTracking = tracking, Standby = false });
        return own ?? _runtime;
    }

    [Theory]
    [InlineData(WriteTracking.Auto)]
    [InlineData(WriteTracking.Synchronous)]
    public void ABudgetHoldsUnderRandomTouchesAndEveryByteIsRight(WriteTracking tracking)
    {
        var runtime = RuntimeFor(tracking, out var own);
        using var _ = own;
        // 32 huge pages of file behind a budget of 8: the clock asks the region's unmapper to unmap huge pages (the pager
        // cannot), a touch maps one back with a MINOR fault, one left alone is evicted (punched out of the memfd).
        const long length = 32L * Huge, budget = 8L * Huge;
        const int threads = 4;
        using var file = TestData.CreateFile(length, seed: 51);
        using var region = runtime.CreateRegion(new RegionOptions
        {
            Arena = ArenaKind.HugeTlb, Length = length, Store = PageStoreDescriptor.File(file.Path), MemoryBudget = budget, Prefetch = PrefetchOptions.None,
        });
        long touches = 0;
        Run.Within(TimeSpan.FromSeconds(120), () => touches = Run.RandomTouchesChecked(region, file, threads, milliseconds: 3000), "random touches under a hugetlbfs budget");
        var stats = region.Statistics;
        Assert.True(stats.PagesUnmapped > 0 && stats.PagesEvicted > 0, $"nothing was unmapped or evicted: {stats}");
        // Slack: a fill already past its budget check per touching thread (one huge page each).
        Assert.True(stats.PeakResidentPages <= budget / Huge + threads, $"peak resident {stats.PeakResidentPages} huge pages over the budget of {budget / Huge} + {threads} ({stats})");
        Assert.Equal(0, stats.Errors);
        Assert.Equal(0, stats.PagesWrittenBack); // clean pages (the uffd-wp marker the unmapping leaves proves it) are never written
        Assert.True(touches > 100, $"only {touches} touches");
    }

    [Theory]
    [InlineData(WriteTracking.Auto)]
    [InlineData(WriteTracking.Synchronous)]
    public void WritesUnderEvictionReachTheFileAfterFlush(WriteTracking tracking)
    {
        var runtime = RuntimeFor(tracking, out var own);
        using var _ = own;
        const long length = 16L * Huge, budget = 8L * Huge;
        const int threads = 2, writesPerThread = 20_000;
        using var file = TestData.CreateFile(length, seed: 53);
        var expected = TestData.Words(file);
        using (var region = runtime.CreateRegion(new RegionOptions
        {
            Arena = ArenaKind.HugeTlb, Length = length, Store = PageStoreDescriptor.File(file.Path, writable: true), MemoryBudget = budget,
            Prefetch = PrefetchOptions.None,
        }))
        {
            Run.Within(TimeSpan.FromSeconds(180), () =>
            {
                Run.RandomWrites(region, expected, threads, writesPerThread, seed: 200); // every huge page gets writes from both
                region.Flush();
            }, "writes under hugetlbfs eviction");
            var stats = region.Statistics;
            Assert.True(stats.PagesEvicted > 0 && stats.PagesWrittenBack > 0, $"no eviction with write-back happened: {stats}");
            Assert.Equal(0, stats.WriteErrors);
            for (long w = 0; w < expected.Length; w++)
            {
                ulong got = ((ulong*)region.Pointer)[w];
                Assert.True(got == expected[w], $"word {w} (huge page {w * 8 / Huge}) through the region: {got:x} expected {expected[w]:x}");
            }
        }
        var onDisk = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(File.ReadAllBytes(file.Path));
        for (long w = 0; w < expected.Length; w++)
        {
            Assert.True(onDisk[(int)w] == expected[w], $"word {w} (huge page {w * 8 / Huge}) in the file: {onDisk[(int)w]:x} expected {expected[w]:x}");
        }
    }

    [Fact]
    public void EvictWritesBackAndDropsHugePagesAndTheyReadBackRight()
    {
        const long length = 6L * Huge;
        using var file = TestData.CreateFile(length, seed: 55);
        using var region = _runtime.CreateRegion(new RegionOptions
        {
            Arena = ArenaKind.HugeTlb, Length = length, Store = PageStoreDescriptor.File(file.Path, writable: true), WriteBack = true,
            Prefetch = PrefetchOptions.None,
        });
        Run.Within(TimeSpan.FromSeconds(60), () =>
        {
            Run.AssertMatchesFile(region.AsSpan(0, (int)length), 0, file, "first read");
            region.AsSpan(3 * Huge + 4096, 4096).Fill(0x7E); // one dirty huge page
            region.Pin(5 * Huge, Huge);                       // one pinned: it stays
            region.Evict(0, length);
            var stats = region.Statistics;
            Assert.Equal(5, stats.PagesEvicted);
            Assert.Equal(1, stats.PagesWrittenBack);
            Assert.Equal(1, region.CountFilledPages(0, 6));
            // Read back: from the file, the write included.
            Assert.True(region.AsSpan(3 * Huge + 4096, 4096).IndexOfAnyExcept((byte)0x7E) < 0, "the write was lost");
            Run.AssertMatchesFile(region.AsSpan(0, 3 * Huge), 0, file, "after Evict");
        }, "evict huge pages");
        Assert.Equal(0, region.Statistics.Errors);
    }

    [Fact]
    public void ABudgetOfFewerThanEightHugePagesIsRefused()
    {
        var e = Assert.Throws<ArgumentException>(() => _runtime.CreateRegion(new RegionOptions
        {
            Arena = ArenaKind.HugeTlb, Length = 16L * Huge, MemoryBudget = 4L * Huge,
        }));
        Assert.Contains("8 huge pages", e.Message, StringComparison.Ordinal);
    }

    /// <summary>Two reservations that overlap without nesting (A, B, then A's end before B's) leave vm.nr_hugepages where
    /// it was: each gives back what it added. (Restoring "the value before me" left B's predecessor's pages reserved.)
    /// In the runtime collection, so no other test class changes the value meanwhile.</summary>
    [Fact]
    public void OverlappingReservationsGiveBackExactlyWhatTheyAdded()
    {
        long Value() => long.Parse(File.ReadAllText("/proc/sys/vm/nr_hugepages").Trim(), System.Globalization.CultureInfo.InvariantCulture);
        long start = Value();
        var a = HugePageReservation.Reserve(HugePageReservation.Meminfo("HugePages_Free") + 2);
        long afterA = Value();
        var b = HugePageReservation.Reserve(HugePageReservation.Meminfo("HugePages_Free") + 3);
        Assert.True(afterA >= start + 2 && Value() >= afterA + 3, $"start {start}, after A {afterA}, after B {Value()}");
        a.Dispose();
        b.Dispose();
        Assert.Equal(start, Value());
        b.Dispose(); // twice: nothing more given back
        Assert.Equal(start, Value());
    }
}
