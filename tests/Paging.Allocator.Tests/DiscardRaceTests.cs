using Paging.Testing;

namespace Paging.Allocator.Tests;

/// <summary>
/// Discard racing fills (issue: a hugetlbfs region read by three threads while a fourth discarded 2 MiB windows showed
/// huge pages whose first part read as zeros, for good). Readers check every byte they read against the file; the
/// discarder punches random windows; at the end every byte of the region is checked once more, so a page left
/// half-filled for good fails even if no reader happened to see it. PAGING_DISCARD_SECONDS sets the length per arena
/// (default 4 s).
/// </summary>
[Collection("runtime")]
public sealed unsafe class DiscardRaceTests(RuntimeFixture fixture, HugePagesFixture hugePages) : IClassFixture<HugePagesFixture>
{
    private readonly PagingRuntime _runtime = fixture.Runtime;

    [Theory]
    [InlineData(ArenaKind.HugeTlb)]
    [InlineData(ArenaKind.Shmem)]
    [InlineData(ArenaKind.Anonymous)]
    public void DiscardRacingReadsNeverMapsAWrongByte(ArenaKind arena)
    {
        Assert.NotNull(hugePages.Reservation);
        double seconds = double.TryParse(Environment.GetEnvironmentVariable("PAGING_DISCARD_SECONDS"), out double s) ? s : 4;
        const long window = 2 << 20;
        long length = 16L << 20; // 8 huge pages
        using var file = TestData.CreateFile(length, seed: 23);
        using var region = _runtime.CreateRegion(new RegionOptions
        {
            Arena = arena, Length = length, Store = PageStoreDescriptor.File(file.Path),
            // One page per fault: more fills in flight, each a separate chance to race a Discard.
            Prefetch = PrefetchOptions.None,
        });
        int chunk = arena == ArenaKind.HugeTlb ? 64 << 10 : 4096;
        long deadline = Environment.TickCount64 + (long)(seconds * 1000);
        string? failure = null;
        long reads = 0, discards = 0;
        Run.Within(TimeSpan.FromSeconds(seconds + 120), () =>
        {
            var readers = Enumerable.Range(0, 3).Select(t => new Thread(() =>
            {
                var rng = new Random(1000 + t);
                while (Environment.TickCount64 < deadline && Volatile.Read(ref failure) is null)
                {
                    long off = rng.NextInt64(length / chunk) * chunk;
                    long bad = TestData.FirstMismatch(region.AsSpan(off, chunk), off, file.Length, file.Seed);
                    if (bad >= 0)
                    {
                        Interlocked.CompareExchange(ref failure, $"reader {t}: wrong byte at offset {off + bad} (page {(off + bad) / region.PageSize}, {(off + bad) % region.PageSize} bytes in)", null);
                    }
                    Interlocked.Increment(ref reads);
                }
            }) { Name = $"discard-race reader {t}" }).ToList();
            var discarder = new Thread(() =>
            {
                var rng = new Random(7);
                while (Environment.TickCount64 < deadline && Volatile.Read(ref failure) is null)
                {
                    region.Discard(rng.NextInt64(length / window) * window, window);
                    Interlocked.Increment(ref discards);
                    Thread.SpinWait(rng.Next(1, 20_000));
                }
            }) { Name = "discard-race discarder" };
            readers.ForEach(r => r.Start());
            discarder.Start();
            readers.ForEach(r => r.Join());
            discarder.Join();
            Assert.True(failure is null, failure);
            // Nothing races any more: every byte of the region must be the file's.
            long last = TestData.FirstMismatch(region.AsSpan(0, (int)length), 0, file.Length, file.Seed);
            Assert.True(last < 0, $"after the race, wrong byte at offset {last} (page {last / region.PageSize}, {last % region.PageSize} bytes in)");
        }, $"discard race on {arena}");
        Assert.True(discards > 20 && reads > 100, $"too little happened: {reads} reads, {discards} discards");
        Assert.Equal(0, region.Statistics.Errors);
    }

    /// <summary>Lost wake-ups: a fault that met a page claimed by someone else (a fill, a Discard) was left to the
    /// owner's ioctl, and an owner that mapped nothing, or had mapped the page before a Discard unmapped it again, never
    /// woke it — the reader waited forever (before the fix, a loop like this one hung in 4 of 10 runs on anonymous memory
    /// and in every run on shmem). Few pages, so faults and discards meet on the same page all the time.</summary>
    [Theory]
    [InlineData(ArenaKind.Shmem)]
    [InlineData(ArenaKind.Anonymous)]
    public void FaultsOnPagesBeingDiscardedAreAlwaysWoken(ArenaKind arena)
    {
        const int pages = 64;
        using var file = TestData.CreateFile(pages * 4096L, seed: 29);
        using var region = _runtime.CreateRegion(new RegionOptions
        {
            Arena = arena, Length = pages * 4096L, Store = PageStoreDescriptor.File(file.Path), Prefetch = PrefetchOptions.None,
        });
        long deadline = Environment.TickCount64 + 2000;
        long reads = 0, discards = 0;
        string? failure = null;
        Run.Within(TimeSpan.FromSeconds(60), () =>
        {
            var threads = Enumerable.Range(0, 4).Select(t => new Thread(() =>
            {
                var rng = new Random(t);
                while (Environment.TickCount64 < deadline)
                {
                    long off = rng.Next(pages) * 4096L;
                    if (TestData.FirstMismatch(region.AsSpan(off, 4096), off, file.Length, file.Seed) >= 0)
                    {
                        Interlocked.CompareExchange(ref failure, $"wrong byte in page {off / 4096}", null);
                    }
                    Interlocked.Increment(ref reads);
                }
            })).Append(new Thread(() =>
            {
                var rng = new Random(99);
                while (Environment.TickCount64 < deadline)
                {
                    region.Discard(rng.Next(pages / 4) * 4 * 4096L, 4 * 4096);
                    Interlocked.Increment(ref discards);
                }
            })).ToList();
            threads.ForEach(t => t.Start());
            threads.ForEach(t => t.Join());
        }, $"faults racing discards on {arena}");
        Assert.True(failure is null, failure);
        Assert.True(reads > 1000 && discards > 100, $"too little happened: {reads} reads, {discards} discards");
    }
}
