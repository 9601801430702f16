using Paging.Testing;

namespace Paging.Allocator.Tests;

[Collection("serial")]
public sealed unsafe class PrefetchTests(RuntimeFixture fixture)
{
    private readonly PagingRuntime _runtime = fixture.Runtime;

    private static bool WaitUntil(Func<bool> condition, int seconds = 30) => SpinWait.SpinUntil(condition, TimeSpan.FromSeconds(seconds));

    [Theory]
    [InlineData(ArenaKind.Anonymous)]
    [InlineData(ArenaKind.Shmem)]
    public void SequentialTouchesReadAheadWithinTheRegionAndNeverRemapAPresentPage(ArenaKind arena)
    {
        // 8 MiB + 12 KiB: the last block is partial, so a block or window that crossed the end would fail the
        // mapping ioctl; the file is shorter than the region so the end also reads zeros.
        const long length = (8 << 20) + 12288;
        using var file = TestData.CreateFile(6 << 20);
        using var region = _runtime.CreateRegion(new RegionOptions { Arena = arena, Length = length, Store = PageStoreDescriptor.File(file.Path) });
        long pages = length / 4096;
        Run.Within(TimeSpan.FromSeconds(60), () =>
        {
            region.AsSpan(4096 * 100, 4096).Fill(0x3C); // a page written by the application mid-stream
            for (long p = 0; p < pages; p++)
            {
                if (p == 100)
                {
                    continue;
                }
                Run.AssertMatchesFile(region.AsSpan(p * 4096, 4096), p * 4096, file, $"page {p}");
            }
            Assert.True(region.AsSpan(4096 * 100, 4096).IndexOfAnyExcept((byte)0x3C) < 0, "read-ahead overwrote the application's page");
        }, "sequential");
        Assert.True(WaitUntil(() => region.CountFilledPages(0, pages) == pages), $"{region.CountFilledPages(0, pages)} of {pages} pages filled");
        var s = region.Statistics;
        Assert.Equal(0, s.AlreadyPresent); // EEXIST-free: no block or window touched a present page
        Assert.Equal(0, s.Errors);
        Assert.True(s.Faults * 8 < pages, $"{s.Faults} faults for {pages} sequential pages: read-ahead did not batch");
        Assert.True(s.PagesPrefetched > pages / 2);
        Assert.True(s.SequentialHits > 0);
        // Everything in the file was read once; nothing past the region's end was asked for. (An anonymous page whose
        // fault message raced with read-ahead is read again and then refused by UFFDIO_COPY with EEXIST: counted as a
        // stale fault, never mapped over the page.)
        Assert.InRange(s.BytesRead, file.Length, file.Length + s.StaleFaults * 4096 * 16);
    }

    [Theory]
    [InlineData(ArenaKind.Anonymous)]
    [InlineData(ArenaKind.Shmem)]
    public void RandomTouchesReadOnlyWhatTheyTouch(ArenaKind arena)
    {
        using var file = TestData.CreateFile(64 << 20);
        using var region = _runtime.CreateRegion(new RegionOptions { Arena = arena, Length = 64 << 20, Store = PageStoreDescriptor.File(file.Path) });
        var rng = new Random(17);
        var pages = Enumerable.Range(0, 16384).OrderBy(_ => rng.Next()).Take(2000).ToArray();
        Run.Within(TimeSpan.FromSeconds(60), () =>
        {
            foreach (int p in pages)
            {
                Run.AssertMatchesFile(region.AsSpan((long)p * 4096, 4096), (long)p * 4096, file, $"page {p}");
            }
        }, "random");
        var s = region.Statistics;
        double readPerTouched = (double)s.BytesRead / (pages.Length * 4096L);
        Assert.True(readPerTouched <= 1.1, $"read {readPerTouched:0.00}x the bytes touched");
    }

    [Theory]
    [InlineData(ArenaKind.Anonymous)]
    [InlineData(ArenaKind.Shmem)]
    public void PrefetchUnderConcurrentFaultsGivesTheRightBytesAndPreMaps(ArenaKind arena)
    {
        using var file = TestData.CreateFile(48 << 20);
        using var region = _runtime.CreateRegion(new RegionOptions { Arena = arena, Length = 48 << 20, Store = PageStoreDescriptor.File(file.Path) });
        long pages = region.Length / 4096;
        Run.Within(TimeSpan.FromSeconds(90), () =>
        {
            region.PrefetchRange(0, region.Length);
            var threads = Enumerable.Range(0, 4).Select(t => new Thread(() =>
            {
                var rng = new Random(t);
                for (int i = 0; i < 3000; i++)
                {
                    long p = rng.NextInt64(pages);
                    Run.AssertMatchesFile(region.AsSpan(p * 4096, 4096), p * 4096, file, $"thread {t} page {p}");
                }
            })).ToList();
            threads.ForEach(t => t.Start());
            threads.ForEach(t => t.Join());
        }, "prefetch + faults");
        Assert.True(WaitUntil(() => region.CountFilledPages(0, pages) == pages), "the prefetch did not complete");
        long faultsBefore = region.Statistics.Faults;
        Run.Within(TimeSpan.FromSeconds(30), () => Run.AssertMatchesFile(region.AsSpan(0, (int)region.Length), 0, file, "whole region"), "verify");
        Assert.Equal(faultsBefore, region.Statistics.Faults); // pre-mapped: touching it all faulted nothing
        Assert.Equal(0, region.Statistics.Errors);
        // Neither faults nor streaming allocate per page (12,288 pages; see RegionTests for the one-time bytes).
        Assert.True(region.Statistics.ManagedBytesAllocated < 1024, $"{region.Statistics.ManagedBytesAllocated} bytes allocated on the fault path");
    }

    [Fact]
    public void StreamingCanBeCancelled()
    {
        using var file = TestData.CreateFile(8 << 20);
        // A zero store beyond the file keeps the stream busy for a long time (1 GiB of pages to clear).
        using var region = _runtime.CreateRegion(new RegionOptions
        {
            Arena = ArenaKind.Shmem, Length = 1L << 30, Store = PageStoreDescriptor.File(file.Path), Prefetch = new PrefetchOptions { StreamAll = true },
        });
        long pages = region.Length / 4096;
        Assert.True(WaitUntil(() => region.Statistics.PagesFilled > 256), "streaming did not start");
        region.CancelPrefetch();
        long afterCancel = region.Statistics.PagesFilled;
        // At most the chunk in flight when the cancel arrived completes; then nothing more is filled.
        Assert.False(WaitUntil(() => region.Statistics.PagesFilled > afterCancel + 16, seconds: 1), "streaming went on after CancelPrefetch");
        Assert.True(region.Statistics.PagesFilled < pages);
        // The region still works on demand, and the streamed part is right.
        Run.Within(TimeSpan.FromSeconds(30), () =>
        {
            Run.AssertMatchesFile(region.AsSpan(0, 1 << 20), 0, file, "streamed part");
            Run.AssertMatchesFile(region.AsSpan((1L << 30) - 4096, 4096), (1L << 30) - 4096, file, "last page");
        }, "after cancel");
    }

    [Fact]
    public void PrefetchArgumentsAreChecked()
    {
        using var region = _runtime.CreateRegion(new RegionOptions { Length = 1 << 20 });
        Assert.Throws<ArgumentOutOfRangeException>(() => region.PrefetchRange(-1, 10));
        Assert.Throws<ArgumentOutOfRangeException>(() => region.PrefetchRange(0, (1 << 20) + 1));
        region.Dispose();
        Assert.Throws<ObjectDisposedException>(() => region.PrefetchRange(0, 4096));
    }
}
