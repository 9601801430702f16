using Paging.Engine;
using Paging.Policies;

namespace Paging.Allocator.Tests;

/// <summary>The pager's read-ahead decisions and background queue, without a kernel in the way.</summary>
public sealed class ReadAheadLogicTests
{
    [Fact]
    public void ASequentialStreamIsDetectedAndItsWindowDoublesUpToTheMaximum()
    {
        var t = new StreamTracker();
        Assert.False(t.OnFault(100, 101, blockPages: 16, maxWindowPages: 128, regionPages: 100_000, out _, out _, out _));
        Assert.True(t.OnFault(101, 102, 16, 128, 100_000, out long a1, out long e1, out bool late1));
        Assert.False(late1);
        Assert.Equal(112, a1); // after the block [96, 112) the fault resolves
        Assert.Equal(32, e1 - a1); // first window: two blocks
        // The thread reaches the end of that window: the next window is twice as large, then capped.
        Assert.True(t.OnFault(e1, e1 + 1, 16, 128, 100_000, out long a2, out long e2, out _));
        Assert.Equal(64, e2 - a2);
        Assert.True(t.OnFault(e2, e2 + 1, 16, 128, 100_000, out long a3, out long e3, out _));
        Assert.Equal(128, e3 - a3);
        Assert.True(t.OnFault(e3, e3 + 1, 16, 128, 100_000, out long a4, out long e4, out _));
        Assert.Equal(128, e4 - a4);
    }

    [Fact]
    public void TheAutomaticWindowIsFourMiBAndSixteenForANetworkStoreAndAnExplicitOneIsKept()
    {
        var auto = ReadAheadPolicy.For(readAhead: true, faultAroundBytes: 64 * 1024, maxReadAheadBytes: 0, streamAll: false, pageSize: 4096);
        Assert.Equal(0, auto.MaxWindowPages); // automatic on the wire: the pager decides, knowing the store
        Assert.Equal(1024, auto.ForStore(4096, asynchronous: false).MaxWindowPages);
        Assert.Equal(4096, auto.ForStore(4096, asynchronous: true).MaxWindowPages);
        // Huge pages: 4 (synchronous) and 8 (asynchronous) at least, asked for or not.
        Assert.Equal(4, auto.ForStore(2 << 20, asynchronous: false).MaxWindowPages);
        Assert.Equal(8, auto.ForStore(2 << 20, asynchronous: true).MaxWindowPages);

        var pinned = ReadAheadPolicy.For(true, 64 * 1024, maxReadAheadBytes: 4 << 20, false, 4096);
        Assert.Equal(1024, pinned.ForStore(4096, asynchronous: true).MaxWindowPages); // a loader's choice stands
        Assert.Equal(8, ReadAheadPolicy.For(true, 64 * 1024, 4 << 20, false, 2 << 20).ForStore(2 << 20, asynchronous: true).MaxWindowPages);
        Assert.Equal(16, ReadAheadPolicy.For(true, 64 * 1024, 32 << 20, false, 2 << 20).ForStore(2 << 20, asynchronous: false).MaxWindowPages);

        Assert.Equal(0, new PrefetchOptions().MaxReadAheadBytes);
        Assert.Throws<ArgumentOutOfRangeException>(() => new PrefetchOptions { MaxReadAheadBytes = -1 });
    }

    [Fact]
    public void UnderABudgetTheWindowIsAtMostAnEighthOfIt()
    {
        var auto = ReadAheadPolicy.For(readAhead: true, faultAroundBytes: 64 * 1024, maxReadAheadBytes: 0, streamAll: false, pageSize: 4096);
        // 6 MiB budget = 1536 pages: 192-page windows, for a network store (16 MiB automatic) and a file (4 MiB).
        Assert.Equal(192, auto.ForStore(4096, asynchronous: true, budgetPages: 1536).MaxWindowPages);
        Assert.Equal(192, auto.ForStore(4096, asynchronous: false, budgetPages: 1536).MaxWindowPages);
        // A pinned window too: a window near the budget's size evicts its own pages before they are read.
        var pinned = ReadAheadPolicy.For(true, 64 * 1024, maxReadAheadBytes: 64 << 20, false, 4096);
        Assert.Equal(192, pinned.ForStore(4096, asynchronous: true, budgetPages: 1536).MaxWindowPages);
        // A large budget leaves the window alone (1 GiB: 32 MiB > 16 MiB); no budget, as before.
        Assert.Equal(4096, auto.ForStore(4096, asynchronous: true, budgetPages: 262_144).MaxWindowPages);
        Assert.Equal(4096, auto.ForStore(4096, asynchronous: true, budgetPages: 0).MaxWindowPages);
        // Huge pages: the budget wins over the 8-page network minimum (16 huge pages of budget: 2), never below one page.
        Assert.Equal(2, auto.ForStore(2 << 20, asynchronous: true, budgetPages: 16).MaxWindowPages);
        Assert.Equal(1, auto.ForStore(2 << 20, asynchronous: true, budgetPages: 4).MaxWindowPages);
    }

    [Fact]
    public void RandomFaultsNeverReadAheadAndAFaultInsideAWindowIsLate()
    {
        var t = new StreamTracker();
        var rng = new Random(1);
        int hits = 0;
        for (int i = 0; i < 1000; i++)
        {
            long p = rng.NextInt64(1_000_000) * 3; // never adjacent
            hits += t.OnFault(p, p + 1, 16, 1024, 10_000_000, out _, out _, out _) ? 1 : 0;
        }
        Assert.Equal(0, hits);
        var s = new StreamTracker();
        s.OnFault(0, 1, 16, 1024, 100_000, out _, out _, out _);
        s.OnFault(1, 2, 16, 1024, 100_000, out _, out long end, out _);
        Assert.True(s.OnFault(end - 5, end - 4, 16, 1024, 100_000, out _, out _, out bool late));
        Assert.True(late);
    }

    [Fact]
    public void WindowsStopAtTheRegionsEnd()
    {
        var t = new StreamTracker();
        t.OnFault(990, 991, 16, 1024, 1000, out _, out _, out _);
        Assert.True(t.OnFault(991, 992, 16, 1024, 1000, out long a, out long e, out _));
        Assert.True(a <= e);
        Assert.Equal(1000, e);
    }

    [Fact]
    public void TheQueueKeepsOrderDropsARegionAndSkipsAhead()
    {
        var q = new WorkQueue();
        // Identity is all the queue compares, so no real region (mappings, store) is needed.
        var r1 = (ServedRegion)System.Runtime.CompilerServices.RuntimeHelpers.GetUninitializedObject(typeof(ServedRegion));
        var r2 = (ServedRegion)System.Runtime.CompilerServices.RuntimeHelpers.GetUninitializedObject(typeof(ServedRegion));
        Assert.True(q.Push(r1, 0, 10));
        Assert.True(q.Push(r2, 0, 10));
        Assert.True(q.Push(r1, 20, 30));
        q.Drop(r2);
        Assert.Equal(2, q.Count);
        Assert.Same(r1, q.Front.Region);
        q.SkipAhead(r1, page: 5, resolvedEnd: 8);
        Assert.Equal(8, q.Front.Next);
        q.Pop();
        Assert.Equal(20, q.Front.Next);
        for (int i = 1; i < FaultEngine.WorkCapacity; i++)
        {
            Assert.True(q.Push(r2, i, i + 1));
        }
        Assert.False(q.Push(r2, 0, 1)); // full: the caller drops the window
    }
}
