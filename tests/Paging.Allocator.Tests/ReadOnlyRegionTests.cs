using System.Globalization;
using Paging.Testing;

namespace Paging.Allocator.Tests;

/// <summary><see cref="RegionOptions.ReadOnly"/>: the region is mapped PROT_READ, filled as any other, and the
/// writable views refuse.</summary>
[Collection("runtime")]
public sealed unsafe class ReadOnlyRegionTests(RuntimeFixture fixture)
{
    private readonly PagingRuntime _runtime = fixture.Runtime;

    [Theory]
    [InlineData(ArenaKind.Anonymous)]
    [InlineData(ArenaKind.Shmem)]
    public void ARandomAndASequentialPassReadTheFile(ArenaKind arena)
    {
        // 6 MiB + 300 bytes of file in an 8 MiB region: a partial last page and pages past EOF read as zeros.
        using var file = TestData.CreateFile((6 << 20) + 300, seed: 101);
        using var region = _runtime.CreateRegion(new RegionOptions { Arena = arena, Length = 8 << 20, Store = PageStoreDescriptor.File(file.Path), ReadOnly = true });
        Assert.True(region.IsReadOnly);
        Assert.Equal("r--", Protection(region.Address));
        int pages = (int)(region.Length / region.PageSize);
        var order = Enumerable.Range(0, pages).ToArray();
        new Random(11).Shuffle(order);
        Run.Within(TimeSpan.FromSeconds(60), () =>
        {
            foreach (int p in order[..(pages / 2)])
            {
                _ = Volatile.Read(ref *(ulong*)(region.Pointer + (long)p * region.PageSize + 8 * (p % 512)));
            }
            long bad = TestData.FirstMismatch(region.AsReadOnlySpan(0, (int)region.Length), 0, file.Length, file.Seed);
            Assert.True(bad < 0, $"wrong byte at {bad}");
            region.Discard(0, region.Length); // dropped, then read again in order (read-ahead)
            bad = TestData.FirstMismatch(region.AsReadOnlyMemory(0, (int)region.Length).Span, 0, file.Length, file.Seed);
            Assert.True(bad < 0, $"wrong byte at {bad} after Discard");
        }, "read-only passes");
        long filled = Run.Settled(() => region.Statistics.PagesFilled, pages + pages / 2);
        Assert.True(filled >= pages + pages / 2, $"{filled} pages filled: the Discard did not drop them");
        Assert.Equal(0, region.Statistics.Errors);
    }

    [Fact]
    public void TheWritableViewsRefuseAndSayWhatToUse()
    {
        using var region = _runtime.CreateRegion(new RegionOptions { Length = 1 << 20, ReadOnly = true });
        var span = Assert.Throws<InvalidOperationException>(() => region.AsSpan(0, 4096).Length);
        Assert.Contains("AsReadOnlySpan", span.Message, StringComparison.Ordinal);
        var memory = Assert.Throws<InvalidOperationException>(() => region.AsMemory(0, 4096));
        Assert.Contains("AsReadOnlyMemory", memory.Message, StringComparison.Ordinal);
        Assert.True(region.AsReadOnlySpan(4096, 4096).IndexOfAnyExcept((byte)0) < 0, "a zero store's page is not zeros");
        using var writable = _runtime.CreateRegion(new RegionOptions { Length = 1 << 20 });
        Assert.False(writable.IsReadOnly);
        Assert.Equal("rw-", Protection(writable.Address));
    }

    [Fact]
    public void WriteBackAndAnAnonymousBudgetAreRefused()
    {
        using var file = TestData.CreateFile(1 << 20);
        var writeBack = Assert.Throws<ArgumentException>(() => _runtime.CreateRegion(new RegionOptions
        {
            Length = 1 << 20, Store = PageStoreDescriptor.File(file.Path, writable: true), WriteBack = true, ReadOnly = true,
        }));
        Assert.Contains("ReadOnly", writeBack.Message, StringComparison.Ordinal);
        var budget = Assert.Throws<ArgumentException>(() => _runtime.CreateRegion(new RegionOptions
        {
            Arena = ArenaKind.Anonymous, Length = 16 << 20, MemoryBudget = 4 << 20, ReadOnly = true,
        }));
        Assert.Contains("ArenaKind.Shmem", budget.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AShmemBudgetEvictsAndRereadsReadOnlyPages()
    {
        const long length = 32L << 20, budget = 8L << 20;
        using var file = TestData.CreateFile(length, seed: 103);
        using var region = _runtime.CreateRegion(new RegionOptions
        {
            Length = length, Store = PageStoreDescriptor.File(file.Path), MemoryBudget = budget, ReadOnly = true, Prefetch = PrefetchOptions.None,
        });
        var rng = new Random(13);
        Run.Within(TimeSpan.FromSeconds(120), () =>
        {
            for (int i = 0; i < 12_000; i++)
            {
                long off = rng.NextInt64(length / 4096) * 4096;
                long bad = TestData.FirstMismatch(region.AsReadOnlySpan(off, 4096), off, file.Length, file.Seed);
                Assert.True(bad < 0, $"touch {i}: page {off / 4096} byte {bad} is wrong");
            }
        }, "random reads under a budget");
        var stats = region.Statistics;
        Assert.True(stats.PagesEvicted > 2048, $"only {stats.PagesEvicted} pages evicted");
        Assert.True(stats.PeakResidentPages * 4096 <= budget + (2L << 20), $"peak {stats.PeakResidentPages} pages over a {budget >> 20} MiB budget");
        Assert.Equal(0, stats.PagesWrittenBack);
        Assert.Equal(0, stats.Errors);
    }

    /// <summary>The protection of the mapping that starts at <paramref name="address"/>, from /proc/self/maps.</summary>
    private static string Protection(nint address)
    {
        string start = ((ulong)address).ToString("x", CultureInfo.InvariantCulture) + "-";
        string line = File.ReadLines("/proc/self/maps").First(l => l.StartsWith(start, StringComparison.Ordinal));
        return line.Split(' ')[1][..3];
    }
}
