using System.Reflection.PortableExecutable;
using Paging.Supervision;

namespace Paging.Allocator.Tests;

public sealed class PagerLaunchTests
{
    [Fact]
    public void ApplicationsRunThePrecompiledPager()
    {
        // The build publishes the pager and its dependencies ReadyToRun into paging-pager/ (src/Pager/Paging.Pager.csproj)
        // and copies that folder to the projects that reference it; an application must pick that copy, and it must
        // be precompiled: a JIT-compiled pager made the first fault 2.5-5x slower (docs/BENCHMARKS.md §24).
        string? pager = PagerLaunch.Find(AppContext.BaseDirectory);
        Assert.Equal(Path.Combine(AppContext.BaseDirectory, PagerLaunch.PackageFolder, PagerLaunch.PagerFileName), pager);
        foreach (string assembly in new[] { PagerLaunch.PagerFileName, "Paging.Allocator.dll", "Paging.Backends.dll", "Paging.Backends.Network.dll" })
        {
            using var pe = new PEReader(File.OpenRead(Path.Combine(Path.GetDirectoryName(pager)!, assembly)));
            // A ReadyToRun image carries its native code behind the CLI header's ManagedNativeHeader directory.
            Assert.True(pe.PEHeaders.CorHeader!.ManagedNativeHeaderDirectory.Size > 0, $"{assembly} in {PagerLaunch.PackageFolder}/ is not ReadyToRun");
        }
    }
}
