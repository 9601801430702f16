using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Paging.Engine;
using Paging.Interop;
using Paging.Policies;
using Paging.Protocol;
using Paging.Supervision;

namespace Paging.Allocator.Tests;

/// <summary>Construction and shutdown hazards: a fault thread stuck in a store outlives Dispose without having its
/// memory freed under it; an orderly shutdown never promotes the standby; a runtime that fails to start leaks no
/// userfaultfd; uffd calls report their errno.</summary>
[Collection("serial")]
public sealed unsafe class ShutdownTests
{
    /// <summary>Blocks every read until released; records what happened around disposal.</summary>
    private sealed class GateStore : IPageStore
    {
        public readonly ManualResetEventSlim Entered = new(), Gate = new();
        public volatile bool Reading, DisposedWhileReading, Disposed;

        public long Length => 1 << 20;

        public PageStoreCapabilities Capabilities => PageStoreCapabilities.None;

        public PageReadStatus Read(long offset, Span<byte> destination)
        {
            Reading = true;
            Entered.Set();
            Gate.Wait();
            destination.Fill(0x5A);
            Reading = false;
            return PageReadStatus.Data;
        }

        public void Write(long offset, ReadOnlySpan<byte> source) => throw new NotSupportedException();

        public void Dispose()
        {
            DisposedWhileReading |= Reading;
            Disposed = true;
        }
    }

    [Fact]
    public void AFaultThreadStuckInAStoreIsNotFreedUnderAndReleasesWhenItStops()
    {
        using var uffd = Kernel.Userfaultfd.Create(UffdFeatures.None);
        const long length = 1 << 20;
        // An anonymous range registered in this process. Nothing here touches it: the fill is background work.
        using var map = Mapping.Map(length, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous | MapFlags.NoReserve, null, 0, "test mapping");
        _ = uffd.Register(map.Address, length, UffdRegisterMode.Missing);
        var control = RegionControlBlock.Create(length / 4096, out var ctlFd);
        using var ownedCtl = ctlFd;
        var store = new GateStore();
        var region = new ServedRegion(1, ArenaKind.Anonymous, (ulong)map.Address, length, 4096, control, null, store, "gate", new ReadAheadPolicy(false, 1, 1, false));
        var faults = new FaultEngine(uffd, 0, fillThreads: 2, active: true, NullLogger.Instance, stopTimeout: TimeSpan.FromMilliseconds(200));
        faults.Add(region);
        faults.Prefetch(1, 0, 1);
        Assert.True(store.Entered.Wait(TimeSpan.FromSeconds(10)), "the background fill never reached the store");

        var watch = Stopwatch.StartNew();
        faults.Dispose();
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5), $"Dispose waited {watch.Elapsed} for a stuck store");
        Assert.False(faults.Stopped);
        Assert.False(store.Disposed, "the store was disposed while the fault thread was inside it");

        store.Gate.Set();
        // The thread finishes its fill (into its own buffer, still allocated), stops, and releases everything.
        Assert.True(SpinWait.SpinUntil(() => store.Disposed, TimeSpan.FromSeconds(10)), "the abandoned thread never released the region");
        Assert.True(faults.Stopped);
        Assert.False(store.DisposedWhileReading);
        // The fill it completed is there, byte for byte.
        Assert.Equal(0x5A, map.Pointer[4095]);
        _ = uffd.Unregister(map.Address, length);
    }

    [Fact]
    public void KernelCallsReturnTheirErrnoInsteadOfDroppingIt()
    {
        using var uffd = Kernel.Userfaultfd.Create(UffdFeatures.None);
        Assert.Equal(Errno.EINVAL, uffd.Wake(4097, 4096)); // unaligned
        using var map = Mapping.Map(1 << 20, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous, null, 0, "unregistered");
        // COPY into a range this uffd never registered: the kernel says so (ENOENT on 6.x), and it is reported.
        var errno = uffd.Copy((ulong)map.Address, (ulong)map.Address, 4096, out long copied);
        Assert.NotEqual(Errno.None, errno);
        Assert.Equal(0, copied);
        Assert.NotEqual(Errno.None, uffd.Unregister(4097, 4096));
    }

    private static string WrapperScript(string body)
    {
        string path = Path.Combine(Path.GetTempPath(), $"paging-pager-wrapper-{Environment.ProcessId}-{Guid.NewGuid():N}.sh");
        File.WriteAllText(path, "#!/bin/sh\n" + body + "\n");
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        return path;
    }

    private static string Quote(string s) => "'" + s.Replace("'", "'\\''", StringComparison.Ordinal) + "'";

    [Fact]
    public void AnOrderlyShutdownNeverPromotesTheStandby()
    {
        string log = Path.Combine(Path.GetTempPath(), $"paging-pager-log-{Environment.ProcessId}-{Guid.NewGuid():N}.txt");
        var launch = PagerLaunch.Resolve(null);
        // The real pager, with its stderr appended to a file this test reads.
        string script = WrapperScript($"exec {Quote(launch.FileName)} {string.Join(' ', launch.PrefixArguments.Select(Quote))} \"$@\" 2>>{Quote(log)}");
        try
        {
            var options = new PagingRuntimeOptions { PagerPath = script, PagerLogLevel = LogLevel.Debug };
            for (int round = 0; round < 4; round++)
            {
                using var runtime = PagingRuntime.Start(options);
                Assert.True(runtime.StandbyReady);
                using var region = runtime.CreateRegion(new RegionOptions { Length = 1 << 20 });
                Run.Within(TimeSpan.FromSeconds(20), () => Assert.Equal(0, region.AsSpan(0, 4096)[17]), "touch");
            }
            string text = File.ReadAllText(log);
            Assert.False(text.Contains("takes over", StringComparison.Ordinal), text);
            // Every pager that served (Debug line "serving application") left through an orderly exit.
            Assert.True(CountOf(text, "pager exits") == CountOf(text, "serving application") && CountOf(text, "pager exits") >= 8, text);

            // The same log does show a promotion when the active pager really dies: the check above can fail.
            using (var runtime = PagingRuntime.Start(options))
            {
                runtime.KillActivePager();
                Assert.True(SpinWait.SpinUntil(() => File.ReadAllText(log).Contains("takes over", StringComparison.Ordinal), TimeSpan.FromSeconds(20)));
            }
        }
        finally
        {
            File.Delete(script);
            File.Delete(log);
        }
    }

    private static int CountOf(string text, string what)
    {
        int n = 0;
        for (int at = text.IndexOf(what, StringComparison.Ordinal); at >= 0; at = text.IndexOf(what, at + 1, StringComparison.Ordinal))
        {
            n++;
        }
        return n;
    }

    private static int UserfaultfdCount() => Directory.EnumerateFileSystemEntries("/proc/self/fd")
        .Count(fd => new FileInfo(fd).LinkTarget?.Contains("userfaultfd", StringComparison.Ordinal) == true);

    [Fact]
    public void ARuntimeWhosePagerCannotStartLeaksNoUserfaultfd()
    {
        string script = WrapperScript("exit 3");
        try
        {
            int before = UserfaultfdCount();
            for (int i = 0; i < 3; i++)
            {
                var e = Assert.Throws<PagerException>(() => PagingRuntime.Start(new PagingRuntimeOptions { PagerPath = script }));
                Assert.Contains("went away", e.Message);
            }
            Assert.Equal(before, UserfaultfdCount());
        }
        finally
        {
            File.Delete(script);
        }
    }
}
