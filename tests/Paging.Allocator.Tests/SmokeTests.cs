using Paging.Testing;

namespace Paging.Allocator.Tests;

public sealed unsafe class SmokeTests
{
    [Fact]
    public void ShmemFileRegionReadsTheFile()
    {
        using var file = TestData.CreateFile(1 << 20);
        using var runtime = PagingRuntime.Start(new PagingRuntimeOptions { Standby = false });
        using var region = runtime.CreateRegion(new RegionOptions { Arena = ArenaKind.Shmem, Length = 1 << 20, Store = PageStoreDescriptor.File(file.Path) });
        var span = region.AsSpan(0, 1 << 20);
        Assert.Equal(-1, TestData.FirstMismatch(span, 0, file.Length, file.Seed));
        Assert.Equal(256, region.Statistics.PagesFilled);
    }
}
