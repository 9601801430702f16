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
        Assert.Equal(9, region.Statistics.PagesFilled);
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
        Assert.Equal(4, region.Statistics.PagesFilled);
    }

    [Fact]
    public void TooFewHugePagesIsAClearErrorAtCreation()
    {
        long free = HugePageReservation.Meminfo("HugePages_Free");
        var e = Assert.Throws<PagingSystemException>(() =>
            _runtime.CreateRegion(new RegionOptions { Arena = ArenaKind.HugeTlb, Length = (free + 64) * Huge }));
        Assert.Contains("nr_hugepages", e.Message);
    }
}
