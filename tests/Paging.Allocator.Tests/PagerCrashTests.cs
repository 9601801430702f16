using System.Diagnostics;
using Paging.Testing;

namespace Paging.Allocator.Tests;

/// <summary>The pager is killed with SIGKILL again and again while threads fault: the standby takes over, every
/// thread that was blocked continues, every byte is right, and no pager outlives the runtime.</summary>
public sealed unsafe class PagerCrashTests
{
    [Theory]
    [InlineData(ArenaKind.Shmem)]
    [InlineData(ArenaKind.Anonymous)]
    public void KilledPagersAreReplacedWithoutLosingAFault(ArenaKind arena)
    {
        const int kills = 12;
        using var file = TestData.CreateFile(64 << 20, seed: 5);
        var runtime = PagingRuntime.Start();
        var pids = new HashSet<int>();
        try
        {
            using var region = runtime.CreateRegion(new RegionOptions { Arena = arena, Length = 64 << 20, Store = PageStoreDescriptor.File(file.Path) });
            // A page the application wrote: it must survive every restart (the page table stops refills).
            region.AsSpan(0, 4096).Fill(0x77);
            long pages = region.Length / 4096;
            long wrong = 0, reads = 0;
            int done = 0;
            Run.Within(TimeSpan.FromSeconds(240), () =>
            {
                var readers = Enumerable.Range(0, 3).Select(t => new Thread(() =>
                {
                    var rng = new Random(100 + t);
                    while (Volatile.Read(ref done) == 0)
                    {
                        if (rng.Next(32) == 0)
                        {
                            long w = 1 + rng.NextInt64(63);
                            _ = Native.Madvise(region.Address + (nint)(w << 20), 1 << 20, Native.MADV_DONTNEED);
                        }
                        long off = (1 + rng.NextInt64(pages - 1)) * 4096;
                        if (TestData.FirstMismatch(region.AsSpan(off, 4096), off, file.Length, file.Seed) >= 0)
                        {
                            Interlocked.Increment(ref wrong);
                        }
                        Interlocked.Increment(ref reads);
                    }
                })).ToList();
                readers.ForEach(r => r.Start());
                for (int k = 0; k < kills; k++)
                {
                    WaitFor(() => runtime.StandbyReady, "a standby pager");
                    long before = Interlocked.Read(ref reads);
                    WaitFor(() => Interlocked.Read(ref reads) > before + 200, "the readers to make progress");
                    pids.Add(runtime.ActivePagerPid);
                    runtime.KillActivePager();
                    WaitFor(() => runtime.PagerRestarts > k, "the failover");
                }
                long last = Interlocked.Read(ref reads);
                WaitFor(() => Interlocked.Read(ref reads) > last + 1000, "the readers to go on after the last kill");
                Volatile.Write(ref done, 1);
                readers.ForEach(r => r.Join());
            }, "pager crash workload");
            Assert.Equal(0, wrong);
            Assert.Equal(kills, runtime.PagerRestarts);
            Assert.True(region.AsSpan(0, 4096).IndexOfAnyExcept((byte)0x77) < 0, "the application's write was lost across restarts");
            Assert.True(region.Statistics.Recoveries >= kills, $"{region.Statistics.Recoveries} recoveries");
            pids.Add(runtime.ActivePagerPid);
        }
        finally
        {
            runtime.Dispose();
        }
        foreach (int pid in pids)
        {
            Assert.False(IsAlive(pid), $"pager {pid} outlived its runtime");
        }
    }

    [Fact]
    public void APagerThatCannotStartIsAClearError()
    {
        var e = Assert.Throws<PagerException>(() => PagingRuntime.Start(new PagingRuntimeOptions { PagerPath = "/nonexistent/Paging.Pager.dll" }));
        Assert.Contains("/nonexistent/Paging.Pager.dll", e.Message);
        // An executable that exits at once instead of speaking the protocol.
        e = Assert.Throws<PagerException>(() => PagingRuntime.Start(new PagingRuntimeOptions { PagerPath = "/bin/false", RequestTimeout = TimeSpan.FromSeconds(10) }));
        // Which message depends on a race: it exited before pidfd_open could watch it, or during the first request.
        Assert.True(e.Message.Contains("went away", StringComparison.Ordinal) || e.Message.Contains("exited at once", StringComparison.Ordinal), e.Message);
        Assert.Contains("stderr says why", e.Message);
    }

    [Fact]
    public void PagersExitWithTheirRuntime()
    {
        var runtime = PagingRuntime.Start();
        int active = runtime.ActivePagerPid;
        Assert.True(IsAlive(active));
        runtime.Dispose();
        Assert.False(IsAlive(active));
        Assert.Throws<ObjectDisposedException>(() => runtime.CreateRegion(new RegionOptions { Length = 4096 }));
    }

    private static bool IsAlive(int pid)
    {
        try
        {
            using var p = Process.GetProcessById(pid);
            return !p.HasExited && File.Exists($"/proc/{pid}/status") && !File.ReadAllText($"/proc/{pid}/status").Contains("State:\tZ", StringComparison.Ordinal);
        }
        catch (ArgumentException)
        {
            return false;
        }
    }

    internal static void WaitFor(Func<bool> condition, string what)
    {
        Assert.True(SpinWait.SpinUntil(condition, TimeSpan.FromSeconds(60)), $"timed out waiting for {what}");
    }
}
