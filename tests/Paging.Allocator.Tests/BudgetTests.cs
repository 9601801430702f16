using System.Runtime.InteropServices;
using Paging.Testing;

namespace Paging.Allocator.Tests;

/// <summary>
/// Memory budget, eviction, write tracking and write-back (shmem regions): the budget holds under concurrent random
/// touches with every byte checked; writes survive eviction and Flush and reach the file; a write racing its page's
/// write-back is never lost or torn; a store that refuses writes makes Flush fail; the options that cannot work are
/// refused with a reason.
/// </summary>
[Collection("serial")] // heavy (eviction at full speed, a million writes): alone, so they load no other test
public sealed unsafe class BudgetTests(RuntimeFixture fixture)
{
    private readonly PagingRuntime _runtime = fixture.Runtime;

    /// <summary>The slack stated in docs/BUFFER-POOL.md: fills already past their budget check when the evictor
    /// catches up, at most one run per application thread with read-ahead off (8 threads × 4 KiB here), plus the
    /// evictor's lag of one window. 1 MiB covers it with room; the assertion is on the peak the pager recorded.</summary>
    private const long Slack = 1 << 20;

    [Fact]
    public void BudgetHoldsUnderEightThreadsOfRandomTouchesAndEveryByteIsRight() => BudgetHoldsUnderRandomTouches(_runtime);

    internal static void BudgetHoldsUnderRandomTouches(PagingRuntime runtime, ArenaKind arena = ArenaKind.Shmem)
    {
        const long length = 64L << 20, budget = 16L << 20;
        using var file = TestData.CreateFile(length, seed: 41);
        using var region = runtime.CreateRegion(new RegionOptions
        {
            Arena = arena, Length = length, Store = PageStoreDescriptor.File(file.Path), MemoryBudget = budget, Prefetch = PrefetchOptions.None,
        });
        long touches = 0;
        Run.Within(TimeSpan.FromSeconds(120), () => touches = Run.RandomTouchesChecked(region, file, threads: 8, milliseconds: 4000), "random touches under a budget");
        var stats = region.Statistics;
        Assert.True(stats.PagesEvicted > 0, $"nothing was evicted: {stats}");
        Assert.True(stats.PeakResidentPages * 4096 <= budget + Slack, $"peak resident {stats.PeakResidentPages * 4096 >> 20} MiB over the {budget >> 20} MiB budget + {Slack >> 20} MiB slack ({stats})");
        Assert.Equal(0, stats.Errors);
        Assert.Equal(0, stats.PagesWrittenBack); // nothing was written: clean pages are never written back
        Assert.True(touches > 1000, $"only {touches} touches");
        // Cold pages touched again were taken back (shmem: a MINOR fault; anonymous: copied back from the shadow), and
        // every byte read was checked, so that path is covered too.
        Assert.True(stats.SecondChances > 0, $"no cold page was touched again: {stats}");
    }

    [Fact]
    public void RandomWritesUnderEvictionReachTheFileAfterFlush() => RandomWritesReachTheFile(_runtime);

    internal static void RandomWritesReachTheFile(PagingRuntime runtime, ArenaKind arena = ArenaKind.Shmem)
    {
        const long length = 32L << 20, budget = 8L << 20;
        const int threads = 4, writesPerThread = 25_000;
        using var file = TestData.CreateFile(length, seed: 43);
        var expected = TestData.Words(file);
        using (var region = runtime.CreateRegion(new RegionOptions
        {
            Arena = arena, Length = length, Store = PageStoreDescriptor.File(file.Path, writable: true), MemoryBudget = budget, Prefetch = PrefetchOptions.None,
        }))
        {
            Run.Within(TimeSpan.FromSeconds(180), () =>
            {
                Run.RandomWrites(region, expected, threads, writesPerThread, seed: 100);
                region.Flush();
            }, "writes under eviction");
            var stats = region.Statistics;
            Assert.True(stats.PagesEvicted > 0 && stats.PagesWrittenBack > 0, $"no eviction with write-back happened: {stats}");
            Assert.True(stats.PeakResidentPages * 4096 <= budget + Slack, $"peak {stats.PeakResidentPages * 4096 >> 20} MiB over budget ({stats})");
            Assert.Equal(0, stats.WriteErrors);
            // Synchronous tracking learns each first write from a fault; asynchronous tracking never takes one.
            Assert.True(runtime.WriteTracking == WriteTracking.Synchronous ? stats.WriteFaults > 0 : stats.WriteFaults == 0, $"{runtime.WriteTracking} tracking: {stats.WriteFaults} write faults");
            // Everything is in memory or in the file: read through the region once more.
            for (long w = 0; w < expected.Length; w++)
            {
                ulong got = ((ulong*)region.Pointer)[w];
                Assert.True(got == expected[w], $"word {w} (page {w / 512}) through the region: {got:x} expected {expected[w]:x}");
            }
        }
        // The region is gone: the file alone must hold every write.
        var bytes = File.ReadAllBytes(file.Path);
        var onDisk = MemoryMarshal.Cast<byte, ulong>(bytes);
        for (long w = 0; w < expected.Length; w++)
        {
            Assert.True(onDisk[(int)w] == expected[w], $"word {w} (page {w / 512}) in the file: {onDisk[(int)w]:x} expected {expected[w]:x}");
        }
    }

    [Fact]
    public void AWriteRacingItsWriteBackIsNeitherLostNorTorn() => WriteRacingWriteBack(_runtime);

    internal static void WriteRacingWriteBack(PagingRuntime runtime, ArenaKind arena = ArenaKind.Shmem)
    {
        // One page written whole over and over (every word = the same stamp), flushed over and over. After each Flush
        // the page in the file must be the page as it was at one instant (never bytes copied at different moments of
        // the writer's loop) and at least as new as the stamp written before that Flush began.
        const long length = 1L << 20;
        using var file = TestData.CreateFile(length, seed: 47);
        using var region = runtime.CreateRegion(new RegionOptions
        {
            Arena = arena, Length = length, Store = PageStoreDescriptor.File(file.Path, writable: true), WriteBack = true, Prefetch = PrefetchOptions.None,
        });
        ulong* page = (ulong*)(region.Pointer + 8192);
        long stamp = 0;
        bool stop = false;
        string? failure = null;
        int flushes = 0;
        Run.Within(TimeSpan.FromSeconds(120), () =>
        {
            var writer = new Thread(() =>
            {
                while (!Volatile.Read(ref stop))
                {
                    ulong v = (ulong)Interlocked.Increment(ref stamp);
                    for (int i = 0; i < 512; i++)
                    {
                        page[i] = v;
                    }
                }
            });
            writer.Start();
            try
            {
                SpinWait.SpinUntil(() => Volatile.Read(ref stamp) >= 2); // the page holds a whole stamp from now on
                using var handle = File.OpenHandle(file.Path);
                var buffer = new byte[4096];
                long deadline = Environment.TickCount64 + 3000;
                while (Environment.TickCount64 < deadline && failure is null)
                {
                    ulong before = (ulong)Math.Max(0, Volatile.Read(ref stamp) - 1); // the last stamp completely written
                    region.Flush();
                    flushes++;
                    RandomAccess.Read(handle, buffer, 8192);
                    var words = MemoryMarshal.Cast<byte, ulong>(buffer);
                    // The writer fills words 0..511 in order, so memory at any instant is N in a prefix and N-1 in the
                    // rest. A copy that is not of one instant shows anything else (a value twice, two steps, a gap).
                    ulong head = words[0];
                    int k = 1;
                    while (k < 512 && words[k] == head)
                    {
                        k++;
                    }
                    int boundary = k;
                    while (k < 512 && words[k] == head - 1)
                    {
                        k++;
                    }
                    if (k != 512)
                    {
                        failure = $"flush {flushes}: the page in the file is not memory at any one instant: word 0 = {head}, word {boundary} = {words[boundary]}, word {k} = {words[k]}";
                    }
                    else if (words[511] < before)
                    {
                        failure = $"flush {flushes}: the file has stamp {words[511]}, but {before} was written before the Flush began";
                    }
                }
            }
            finally
            {
                // Also when a Flush throws: the writer must stop before the region is unmapped under it.
                Volatile.Write(ref stop, true);
                writer.Join();
            }
        }, "write racing write-back");
        Assert.True(failure is null, failure);
        Assert.True(flushes > 10, $"only {flushes} flushes");
        Assert.Equal(0, region.Statistics.WriteErrors);
    }

    [Fact]
    public void FlushOfAReadOnlyStoreWithWrittenPagesFailsAndSaysWhy()
    {
        const long length = 1L << 20;
        using var file = TestData.CreateFile(length, seed: 53);
        using var region = _runtime.CreateRegion(new RegionOptions
        {
            Length = length, Store = PageStoreDescriptor.File(file.Path), WriteBack = true,
        });
        region.Pointer[100] = 1;
        var e = Assert.Throws<PagerException>(region.Flush);
        Assert.Contains("read-only", e.Message, StringComparison.Ordinal);
        Assert.Equal(1, region.Pointer[100]); // the write stays in memory
    }

    [Fact]
    public void AStoreThatFailsWritesMakesFlushFailAndTheWriteStays()
    {
        const long length = 4L << 20;
        using var file = TestData.CreateFile(length, seed: 59);
        var settings = new Dictionary<string, string> { ["inner"] = "file", ["path"] = file.Path, ["writable"] = "true", ["fail_writes"] = "true" };
        var region = _runtime.CreateRegion(new RegionOptions
        {
            Length = length, WriteBack = true,
            Store = PageStoreDescriptor.Custom(typeof(FaultInjectingPageStore).Assembly.Location, typeof(FaultInjectingPageStore).FullName!, settings),
        });
        ((ulong*)region.Pointer)[1000] = 0xFEED;
        var e = Assert.Throws<PagerException>(region.Flush);
        Assert.Contains("could not be written back", e.Message, StringComparison.Ordinal);
        Assert.Contains("injected Io failure", e.Message, StringComparison.Ordinal);
        Assert.True(region.Statistics.WriteErrors > 0);
        Assert.Equal(0xFEEDUL, ((ulong*)region.Pointer)[1000]); // still in memory, still dirty
        Assert.Throws<PagerException>(region.Flush);            // and a later Flush still reports it
        region.Dispose();                                      // logs the lost write; must not throw or hang
        Assert.Equal(TestData.WordAt(8000, file.Seed), MemoryMarshal.Cast<byte, ulong>(File.ReadAllBytes(file.Path))[1000]);
    }

    [Fact]
    public void TheCompressedTierServesEvictedPagesWithoutTheStore()
    {
        // Pass 1 reads a 32 MiB file through an 8 MiB budget: most pages are evicted into a 64 MiB tier. Then the file
        // is overwritten with 0xEE. Pass 2 must still see the original bytes everywhere: every page is either resident
        // or in the tier (a page read from the file again would show 0xEE).
        const long length = 32L << 20;
        using var file = TestData.CreateFile(length, seed: 71);
        using var region = _runtime.CreateRegion(new RegionOptions
        {
            Length = length, MemoryBudget = 8L << 20, Prefetch = PrefetchOptions.None,
            Store = PageStoreDescriptor.CompressedTier(PageStoreDescriptor.File(file.Path), 64L << 20),
        });
        Run.Within(TimeSpan.FromSeconds(120), () =>
        {
            for (long off = 0; off < length; off += 4096)
            {
                _ = Volatile.Read(ref *(ulong*)(region.Pointer + off));
            }
            long evicted = region.Statistics.PagesEvicted;
            Assert.True(evicted > 4096, $"only {evicted} pages evicted");
            var garbage = Enumerable.Repeat((byte)0xEE, 1 << 20).ToArray();
            using (var fs = new FileStream(file.Path, FileMode.Open, FileAccess.Write))
            {
                for (long off = 0; off < length; off += garbage.Length)
                {
                    fs.Write(garbage);
                }
            }
            for (long off = 0; off < length; off += 4096)
            {
                long bad = TestData.FirstMismatch(region.AsSpan(off, 4096), off, file.Length, file.Seed);
                Assert.True(bad < 0, $"page {off / 4096}: byte {bad} is not the original (read from the overwritten file, not the tier)");
            }
        }, "two passes through a tier");
    }

    [Fact]
    public void EvictWritesBackDropsAndKeepsPinnedPages() => EvictWritesBackAndKeepsPinned(_runtime);

    internal static void EvictWritesBackAndKeepsPinned(PagingRuntime runtime, ArenaKind arena = ArenaKind.Shmem)
    {
        const long length = 64 * 4096;
        using var file = TestData.CreateFile(length, seed: 57);
        using var region = runtime.CreateRegion(new RegionOptions
        {
            Arena = arena, Length = length, Store = PageStoreDescriptor.File(file.Path, writable: true), WriteBack = true, Prefetch = PrefetchOptions.None,
        });
        Run.Within(TimeSpan.FromSeconds(60), () =>
        {
            Run.AssertMatchesFile(region.AsSpan(0, (int)length), 0, file, "first read");
            region.Evict(0, length);                         // nothing written: nothing written back
            var clean = region.Statistics;
            Assert.Equal(64, clean.PagesEvicted);
            Assert.Equal(0, clean.PagesWrittenBack);
            Assert.Equal(0, region.CountFilledPages(0, 64));
            Run.AssertMatchesFile(region.AsSpan(0, (int)length), 0, file, "read again");
            region.AsSpan(10 * 4096 + 100, 200).Fill(0x5C); // two dirty pages
            region.AsSpan(40 * 4096, 4096).Fill(0x3D);
            region.Pin(63 * 4096, 4096);                     // one pinned: it stays
            region.Evict(0, length);
            var stats = region.Statistics;
            // Dirty pages go back in runs with their clean neighbours (one pwrite per run), so at least the two.
            Assert.True(stats.PagesWrittenBack >= 2, $"{stats.PagesWrittenBack} pages written back ({stats})");
            Assert.Equal(64 + 63, stats.PagesEvicted);
            Assert.Equal(1, region.CountFilledPages(0, 64));
            // Read back from the file, the writes included.
            Assert.True(region.AsSpan(10 * 4096 + 100, 200).IndexOfAnyExcept((byte)0x5C) < 0, "the first write was lost");
            Assert.True(region.AsSpan(40 * 4096, 4096).IndexOfAnyExcept((byte)0x3D) < 0, "the second write was lost");
            Run.AssertMatchesFile(region.AsSpan(0, 10 * 4096), 0, file, "after Evict");
        }, "evict");
        Assert.Equal(0, region.Statistics.Errors);
    }

    [Fact]
    public void EvictRightAfterAWriteTakesThePageAndItsBytes() => EvictRightAfterAWrite(_runtime);

    /// <summary>A write, then at once an Evict of its page, 300 times: the fault that recorded the write may still hold
    /// the page (its claim is released just after the writer is woken), and Evict must wait for it, not skip the page
    /// (a CI run once found one of two dirty anonymous pages still mapped after Evict).</summary>
    internal static unsafe void EvictRightAfterAWrite(PagingRuntime runtime, ArenaKind arena = ArenaKind.Shmem)
    {
        const long length = 16 * 4096;
        using var file = TestData.CreateFile(length, seed: 91);
        using var region = runtime.CreateRegion(new RegionOptions
        {
            Arena = arena, Length = length, Store = PageStoreDescriptor.File(file.Path, writable: true), WriteBack = true, Prefetch = PrefetchOptions.None,
        });
        var words = (ulong*)region.Pointer;
        Run.Within(TimeSpan.FromSeconds(60), () =>
        {
            for (int i = 1; i <= 300; i++)
            {
                long page = i % 16;
                _ = words[page * 512 + 1];                  // filled (a read), then written: a write fault in sync mode
                words[page * 512] = (ulong)i;
                region.Evict(page * 4096, 4096);
                Assert.True(region.CountFilledPages(page, 1) == 0, $"round {i}: page {page} is still resident after Evict ({region.Statistics})");
                Assert.Equal((ulong)i, words[page * 512]);  // read back from the file
            }
        }, "write then evict");
        Assert.Equal(0, region.Statistics.Errors);
    }

    [Fact]
    public void DisposingTheRuntimeWritesBackWhatTheRegionsWrote()
    {
        const long length = 1L << 20;
        using var file = TestData.CreateFile(length, seed: 73);
        var runtime = PagingRuntime.Start(new PagingRuntimeOptions { Standby = false });
        var region = runtime.CreateRegion(new RegionOptions { Length = length, Store = PageStoreDescriptor.File(file.Path, writable: true), WriteBack = true });
        ((ulong*)region.Pointer)[777] = 0xABCDEF;
        runtime.Dispose(); // the region is never disposed by the application: the runtime flushes it on the way out
        Assert.True(region.IsDisposed);
        Assert.Equal(0xABCDEFUL, MemoryMarshal.Cast<byte, ulong>(File.ReadAllBytes(file.Path))[777]);
    }

    [Fact]
    public void BudgetAndWriteBackAreRefusedWhereTheyCannotWork()
    {
        if (_runtime.WriteTracking == WriteTracking.Asynchronous)
        {
            var anon = Assert.Throws<ArgumentException>(() => _runtime.CreateRegion(new RegionOptions { Arena = ArenaKind.Anonymous, Length = 8 << 20, MemoryBudget = 4 << 20 }));
            Assert.Contains("WriteTracking.Synchronous", anon.Message, StringComparison.Ordinal); // says what to do
            Assert.Contains("lost", anon.Message, StringComparison.Ordinal); // and why
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => new RegionOptions { Length = 8 << 20, MemoryBudget = 4096 });
        using var plain = _runtime.CreateRegion(new RegionOptions { Length = 1 << 20 });
        Assert.Throws<InvalidOperationException>(plain.Flush);
        Assert.Throws<InvalidOperationException>(() => plain.Evict(0, 4096));
    }
}

/// <summary>Durability across crashes: the application killed with SIGKILL after a Flush, the pager killed while it
/// writes back. Every flushed write must be in the file; no word may hold bytes no write produced.</summary>
[Collection("serial")]
public sealed unsafe class WriteBackCrashTests(RuntimeFixture fixture)
{
    [Theory]
    [InlineData(ArenaKind.Shmem)]
    [InlineData(ArenaKind.Anonymous)] // in a runtime with synchronous write tracking
    public void AMillionWritesFlushedSurviveTheApplicationKilledWithSigkill(ArenaKind arena)
    {
        const long length = 16L << 20, budget = 12L << 20;
        const long writes = 1_000_000;
        const ulong seed = 0x1234_5678_9ABC_DEF1;
        using var file = TestData.CreateFile(length, seed: 61);
        string child = Path.Combine(AppContext.BaseDirectory, "Paging.CrashChild.dll");
        var psi = new System.Diagnostics.ProcessStartInfo("dotnet") { RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in new[] { "exec", child, file.Path, budget.ToString(System.Globalization.CultureInfo.InvariantCulture), writes.ToString(System.Globalization.CultureInfo.InvariantCulture), seed.ToString(System.Globalization.CultureInfo.InvariantCulture), arena == ArenaKind.Anonymous ? "anonymous" : "shmem" })
        {
            psi.ArgumentList.Add(a);
        }
        using var process = System.Diagnostics.Process.Start(psi)!;
        string? line = null;
        Run.Within(TimeSpan.FromSeconds(300), () => line = process.StandardOutput.ReadLine(), "the child's million writes and Flush");
        Assert.True(line is not null && line.StartsWith("FLUSHED", StringComparison.Ordinal), $"the child said '{line}' (exit {(process.HasExited ? process.ExitCode : -1)})");
        Thread.Sleep(300); // it keeps writing, unflushed, and evicting
        process.Kill();
        Assert.True(process.WaitForExit(30_000));
        // The flushed state: the last of the first million writes to each word.
        long pages = length / 4096;
        var expected = new Dictionary<long, ulong>();
        ulong rng = seed;
        for (long i = 0; i < writes; i++)
        {
            var (page, slot) = Paging.CrashChild.CrashWrites.Next(ref rng, pages);
            expected[page * 512 + slot] = Paging.CrashChild.CrashWrites.Value(i, page, slot);
        }
        var onDisk = MemoryMarshal.Cast<byte, ulong>(File.ReadAllBytes(file.Path));
        for (long w = 0; w < onDisk.Length; w++)
        {
            ulong got = onDisk[(int)w];
            long page = w / 512;
            int slot = (int)(w % 512);
            bool original = got == TestData.WordAt(w * 8, file.Seed);
            bool written = !original && (got >> 24) > 0 && (got & 0xFFFFFF) == Paging.CrashChild.CrashWrites.Check((long)(got >> 24) - 1, page, slot);
            Assert.True(original || written, $"word {w} (page {page}) holds {got:x}: neither the file's byte nor any write's");
            if (expected.TryGetValue(w, out ulong flushed))
            {
                Assert.True(written && got >= flushed, $"word {w} (page {page}): flushed {flushed:x}, the file has {got:x}");
            }
        }
        // Reopened: the region reads what the file holds.
        using var region = fixture.Runtime.CreateRegion(new RegionOptions { Length = length, Store = PageStoreDescriptor.File(file.Path) });
        Assert.True(region.AsSpan(0, (int)length).SequenceEqual(MemoryMarshal.AsBytes(onDisk)), "the reopened region differs from the file");
    }

    [Fact]
    public void APagerKilledDuringWriteBackLosesNothingFlushed()
    {
        using var runtime = PagingRuntime.Start(); // its own: this test kills pagers
        PagerKilledDuringWriteBack(runtime);
    }

    internal static void PagerKilledDuringWriteBack(PagingRuntime runtime, ArenaKind arena = ArenaKind.Shmem)
    {
        const long length = 16L << 20;
        using var file = TestData.CreateFile(length, seed: 67);
        var region = runtime.CreateRegion(new RegionOptions
        {
            Arena = arena, Length = length, Store = PageStoreDescriptor.File(file.Path, writable: true), MemoryBudget = 8L << 20, Prefetch = PrefetchOptions.None,
        });
        ulong* words = (ulong*)region.Pointer;
        var expected = TestData.Words(file);
        var rng = new Random(5);
        Run.Within(TimeSpan.FromSeconds(240), () =>
        {
            for (int round = 0; round < 3; round++)
            {
                for (int i = 0; i < 20_000; i++)
                {
                    long w = rng.NextInt64(expected.Length);
                    ulong v = ((ulong)round << 60) | (ulong)i << 8 | 0x5A;
                    words[w] = v;
                    expected[w] = v;
                }
                // Kill the pager while a Flush (or the evictor) writes back; the Flush may fail with it.
                var flush = Task.Run(() => { try { region.Flush(); } catch (PagerException) { } });
                Thread.Sleep(5 + round * 10);
                runtime.KillActivePager();
                flush.Wait();
                region.Flush(); // the standby took over: this one must succeed and cover everything
            }
        }, "writes, flushes and pager kills");
        Assert.True(runtime.PagerRestarts >= 3, $"only {runtime.PagerRestarts} restarts");
        region.Dispose();
        var onDisk = MemoryMarshal.Cast<byte, ulong>(File.ReadAllBytes(file.Path));
        for (long w = 0; w < expected.Length; w++)
        {
            Assert.True(onDisk[(int)w] == expected[w], $"word {w} (page {w / 512}): the file has {onDisk[(int)w]:x}, {expected[w]:x} was flushed");
        }
    }
}

/// <summary>The same budget, write-back, race and crash tests with <see cref="WriteTracking.Synchronous"/>: the mode a
/// kernel without WP_ASYNC or PAGEMAP_SCAN gets (forced here, where the kernel has both), in which every first write
/// faults to the pager and page presence is read from /proc/pid/pagemap.</summary>
[Collection("serial")]
public sealed class SynchronousWriteTrackingTests : IDisposable
{
    private readonly PagingRuntime _runtime = PagingRuntime.Start(new PagingRuntimeOptions { WriteTracking = WriteTracking.Synchronous });

    public void Dispose() => _runtime.Dispose();

    /// <summary>Writers under eviction while the active pager is killed four times: no writer may hang and every
    /// increment must reach the file. A pager killed between a UFFDIO_COPY and marking the page filled left a mapped,
    /// protected page that was not filled, and a write to it faulted forever (1–2 of 3 anonymous runs, before the
    /// pager that takes over marked such pages).</summary>
    [Theory]
    [InlineData(ArenaKind.Anonymous)]
    [InlineData(ArenaKind.Shmem)]
    public unsafe void WritersSurvivePagerKills(ArenaKind arena)
    {
        const long length = 16L << 20, budget = 4L << 20;
        const int threads = 4, kills = 4;
        using var file = TestData.CreateFile(length, seed: 107);
        long pages = length / 4096;
        long[,] counts;
        using var runtime = PagingRuntime.Start(new PagingRuntimeOptions { WriteTracking = WriteTracking.Synchronous });
        using (var region = runtime.CreateRegion(new RegionOptions
        {
            Arena = arena, Length = length, Store = PageStoreDescriptor.File(file.Path, writable: true), MemoryBudget = budget, Prefetch = PrefetchOptions.None,
        }))
        {
            counts = Run.IncrementsWhilePagersAreKilled(runtime, pages, threads, kills, (t, p) => (nint)(region.Pointer + p * 4096), region.Flush);
            Assert.True(region.Statistics.PagesEvicted > 0, $"{region.Statistics}");
        }
        Run.AssertIncrementsInFile(file, counts);
    }

    [Fact]
    public void TheRuntimeUsesTheModeAskedFor()
    {
        Assert.Equal(WriteTracking.Synchronous, _runtime.WriteTracking);
        Assert.Equal(0UL, (ulong)(_runtime.Features & UffdFeatures.WpAsync));
        using var auto = PagingRuntime.Start(new PagingRuntimeOptions { Standby = false });
        Assert.Equal(_runtime.Capabilities.Has(PagingRuntime.TrackingFeatures) ? WriteTracking.Asynchronous : WriteTracking.Synchronous, auto.WriteTracking);
    }

    [Fact]
    public void BudgetHoldsUnderRandomTouches() => BudgetTests.BudgetHoldsUnderRandomTouches(_runtime);

    [Fact]
    public void RandomWritesUnderEvictionReachTheFileAfterFlush() => BudgetTests.RandomWritesReachTheFile(_runtime);

    [Fact]
    public void AWriteRacingItsWriteBackIsNeitherLostNorTorn() => BudgetTests.WriteRacingWriteBack(_runtime);

    [Fact]
    public void EvictWritesBackDropsAndKeepsPinnedPages() => BudgetTests.EvictWritesBackAndKeepsPinned(_runtime);

    // Anonymous arenas: evicted with UFFDIO_MOVE into the region's shadow (needs synchronous tracking).

    [Fact]
    public void AnonymousBudgetHoldsUnderRandomTouches() => BudgetTests.BudgetHoldsUnderRandomTouches(_runtime, ArenaKind.Anonymous);

    [Fact]
    public void AnonymousRandomWritesUnderEvictionReachTheFileAfterFlush() => BudgetTests.RandomWritesReachTheFile(_runtime, ArenaKind.Anonymous);

    [Fact]
    public void AnonymousWriteRacingItsWriteBackIsNeitherLostNorTorn() => BudgetTests.WriteRacingWriteBack(_runtime, ArenaKind.Anonymous);

    [Fact]
    public void EvictRightAfterAWriteTakesThePageAndItsBytes() => BudgetTests.EvictRightAfterAWrite(_runtime);

    [Fact]
    public void AnonymousEvictRightAfterAWriteTakesThePageAndItsBytes() => BudgetTests.EvictRightAfterAWrite(_runtime, ArenaKind.Anonymous);

    [Fact]
    public void AnonymousEvictWritesBackDropsAndKeepsPinnedPages() => BudgetTests.EvictWritesBackAndKeepsPinned(_runtime, ArenaKind.Anonymous);

    [Fact]
    public unsafe void AnonymousWritesAreFlushedOnDisposeAndDiscardDropsThem()
    {
        const long length = 1L << 20;
        using var file = TestData.CreateFile(length, seed: 79);
        var region = _runtime.CreateRegion(new RegionOptions
        {
            Arena = ArenaKind.Anonymous, Length = length, Store = PageStoreDescriptor.File(file.Path, writable: true), WriteBack = true,
        });
        ulong* words = (ulong*)region.Pointer;
        words[3 * 512 + 7] = 0x1111;      // kept: written back when the region is disposed
        words[5 * 512 + 9] = 0x2222;      // dropped with its page by Discard
        region.Discard(5 * 4096, 4096);
        Assert.Equal(TestData.WordAt((5 * 512 + 9) * 8, file.Seed), words[5 * 512 + 9]); // read again from the file
        region.Dispose();
        var onDisk = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(File.ReadAllBytes(file.Path));
        Assert.Equal(0x1111UL, onDisk[3 * 512 + 7]);
        Assert.Equal(TestData.WordAt((5 * 512 + 9) * 8, file.Seed), onDisk[5 * 512 + 9]);
    }

    [Fact]
    public void AnonymousPagerKilledDuringWriteBackLosesNothingFlushed()
    {
        // A pager that dies leaves pages its unmapper moved into the shadow unsettled: its successor must take them back.
        using var runtime = PagingRuntime.Start(new PagingRuntimeOptions { WriteTracking = WriteTracking.Synchronous });
        WriteBackCrashTests.PagerKilledDuringWriteBack(runtime, ArenaKind.Anonymous);
    }

    [Fact]
    public void APagerKilledDuringWriteBackLosesNothingFlushed()
    {
        using var runtime = PagingRuntime.Start(new PagingRuntimeOptions { WriteTracking = WriteTracking.Synchronous }); // its own: it kills pagers
        WriteBackCrashTests.PagerKilledDuringWriteBack(runtime);
    }
}
