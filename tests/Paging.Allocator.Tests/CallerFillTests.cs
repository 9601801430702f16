using System.Runtime.InteropServices;
using Paging.BufferPool;
using Paging.Testing;

namespace Paging.Allocator.Tests;

/// <summary>
/// Caller fills (<see cref="PagedFile.Fetch"/>): an application thread reads a missing page itself and installs it with
/// UFFDIO_COPY while, on the same pages, other threads fault (the pager fills with its own COPY), the clock evicts by
/// the referenced bits, and Evict and Flush write back. Every byte read is checked, and every write must reach the file.
/// </summary>
[Collection("serial")] // eviction at full speed from many threads: alone, so it loads no other test
public sealed unsafe class CallerFillTests(RuntimeFixture fixture)
{
    private readonly PagingRuntime _runtime = fixture.Runtime;

    /// <summary>As BudgetTests.Slack: fills already past their check when the evictor catches up, one page per
    /// application thread, plus the evictor's lag of one window.</summary>
    private const long Slack = 1 << 20;

    [Fact]
    public void FetchAndTouchUnderABudgetKeepTheBudgetAndEveryByteIsRight()
    {
        const long length = 64L << 20, budget = 16L << 20;
        using var file = TestData.CreateFile(length, seed: 61, directory: AppContext.BaseDirectory);
        using var db = PagedFile.Open(_runtime, file.Path, new PagedFileOptions { MemoryBudget = budget });
        long pages = db.PageCount, fetched = 0, touched = 0;
        string? failure = null;
        Run.Within(TimeSpan.FromSeconds(120), () =>
        {
            long deadline = Environment.TickCount64 + 4000;
            // Four threads fetch, four touch through the raw pointer (a fault the pager serves), all on the same pages:
            // the application's COPY and the pager's race, and the loser must meet EEXIST, never overwrite.
            var workers = Enumerable.Range(0, 8).Select(t => new Thread(() =>
            {
                var rng = new Random(t + 1);
                while (Environment.TickCount64 < deadline && Volatile.Read(ref failure) is null)
                {
                    long p = rng.NextInt64(pages);
                    byte* page = t < 4 ? db.Fetch(p) : db.PagePointer(p);
                    long bad = TestData.FirstMismatch(new ReadOnlySpan<byte>(page, PagedFile.PageSize), p * PagedFile.PageSize, file.Length, file.Seed);
                    if (bad >= 0)
                    {
                        // What was there (a zero page? another page's bytes?) and whether a second look sees it right.
                        var seen = new ReadOnlySpan<byte>(page, PagedFile.PageSize);
                        ulong actual = BitConverter.ToUInt64(seen.Slice((int)bad & ~7, 8)), expected = TestData.WordAt(p * PagedFile.PageSize + (bad & ~7), file.Seed);
                        bool zero = !seen.ContainsAnyExcept((byte)0);
                        long again = TestData.FirstMismatch(seen, p * PagedFile.PageSize, file.Length, file.Seed);
                        Interlocked.CompareExchange(ref failure, $"thread {t} ({(t < 4 ? "fetch" : "touch")}): wrong byte at offset {p * PagedFile.PageSize + bad} " +
                            $"(word {actual:x16}, expected {expected:x16}; page all zero: {zero}; read again: {(again < 0 ? "right" : $"wrong at {again}")}; {db.Statistics})", null);
                    }
                    Interlocked.Increment(ref t < 4 ? ref fetched : ref touched);
                }
            })).ToList();
            workers.ForEach(w => w.Start());
            workers.ForEach(w => w.Join());
        }, "fetches and touches under a budget");
        Assert.True(failure is null, failure);
        var stats = db.Statistics;
        Assert.True(stats.CallerFills > 1000, $"only {stats.CallerFills} caller fills in {fetched} fetches: {stats}");
        Assert.True(stats.MissingFaults > 100, $"the touching threads took only {stats.MissingFaults} faults in {touched} touches: {stats}");
        Assert.True(stats.PagesEvicted > 0, $"nothing was evicted: {stats}");
        Assert.True(stats.PeakResidentPages * PagedFile.PageSize <= budget + Slack, $"peak resident {stats.PeakResidentPages * PagedFile.PageSize >> 20} MiB over the {budget >> 20} MiB budget + {Slack >> 20} MiB slack ({stats})");
        Assert.Equal(0, stats.Errors);
        Assert.Equal(0, stats.PagesWrittenBack); // nothing was written
        // The clock reads the referenced bits: it unmaps only the pages it is about to evict (the unmapping clock
        // unmaps every resident page once per turn: 2.2-3.8 unmappings per eviction in the bufferpool harness). A few
        // stay after the unmapping (just filled, still in a CPU's LRU batch, where reclaim cannot take them): 5%.
        Assert.True(stats.PagesUnmapped <= stats.PagesEvicted + stats.PagesEvicted / 20, $"{stats.PagesUnmapped} pages unmapped for {stats.PagesEvicted} evicted: {stats}");
    }

    [Fact]
    public void FetchesRacingEvictionsOfTheSamePagesInstallNothingThatAPunchTakesAway()
    {
        // An eviction punches its pages out of the memfd; a fetch that found a page not filled installs it with
        // UFFDIO_COPY. A copy landing while the punch runs (after its first pass took the old page, before its second
        // pass) would be taken away by the punch after the fetch marked the page filled: a filled page with no bytes,
        // which the next eviction would then "write back" — zeros into the file. Four threads fetch 512 pages while
        // a fifth evicts all of them, over and over; nothing is ever written, so nothing may be written back.
        const long pages = 512;
        using var file = TestData.CreateFile(pages * PagedFile.PageSize, seed: 113, directory: AppContext.BaseDirectory);
        using var db = PagedFile.Open(_runtime, file.Path, new PagedFileOptions { MemoryBudget = 16L << 20 });
        string? failure = null;
        long evictions = 0;
        Run.Within(TimeSpan.FromSeconds(120), () =>
        {
            long deadline = Environment.TickCount64 + 4000;
            var evictor = new Thread(() =>
            {
                while (Environment.TickCount64 < deadline && Volatile.Read(ref failure) is null)
                {
                    db.Evict(0, pages);
                    evictions++;
                }
            });
            var fetchers = Enumerable.Range(0, 4).Select(t => new Thread(() =>
            {
                var rng = new Random(t + 7);
                while (Environment.TickCount64 < deadline && Volatile.Read(ref failure) is null)
                {
                    long p = rng.NextInt64(pages);
                    long bad = TestData.FirstMismatch(new ReadOnlySpan<byte>(db.Fetch(p), PagedFile.PageSize), p * PagedFile.PageSize, file.Length, file.Seed);
                    if (bad >= 0)
                    {
                        Interlocked.CompareExchange(ref failure, $"thread {t}: wrong byte at offset {p * PagedFile.PageSize + bad} ({db.Statistics})", null);
                    }
                }
            })).ToList();
            evictor.Start();
            fetchers.ForEach(f => f.Start());
            fetchers.ForEach(f => f.Join());
            evictor.Join();
        }, "fetches racing evictions");
        Assert.True(failure is null, failure);
        var stats = db.Statistics;
        Assert.True(evictions > 100 && stats.CallerFills > 1000, $"{evictions} evictions: {stats}");
        Assert.True(stats.PagesWrittenBack == 0, $"pages never written were written back: {stats}");
        Assert.Equal(0, stats.Errors);
    }

    [Fact]
    public void FetchFromTwoFilesKeepsTheRuntimesSharedBudget()
    {
        // A buffer pool over two files: the runtime's budget (16 MiB) binds, not the files' own (as large as the files).
        const long length = 32L << 20, budget = 16L << 20;
        using var runtime = PagingRuntime.Start(new PagingRuntimeOptions { MemoryBudget = budget });
        using var fileA = TestData.CreateFile(length, seed: 97, directory: AppContext.BaseDirectory);
        using var fileB = TestData.CreateFile(length, seed: 101, directory: AppContext.BaseDirectory);
        using var a = PagedFile.Open(runtime, fileA.Path, new PagedFileOptions { MemoryBudget = length });
        using var b = PagedFile.Open(runtime, fileB.Path, new PagedFileOptions { MemoryBudget = length });
        long peak = 0;
        string? failure = null;
        Run.Within(TimeSpan.FromSeconds(120), () =>
        {
            long deadline = Environment.TickCount64 + 3000;
            var workers = Enumerable.Range(0, 6).Select(t => new Thread(() =>
            {
                var rng = new Random(t + 31);
                while (Environment.TickCount64 < deadline && Volatile.Read(ref failure) is null)
                {
                    var (db, file) = (t & 1) == 0 ? (a, fileA) : (b, fileB);
                    long p = rng.NextInt64(db.PageCount);
                    long bad = TestData.FirstMismatch(new ReadOnlySpan<byte>(db.Fetch(p), PagedFile.PageSize), p * PagedFile.PageSize, file.Length, file.Seed);
                    if (bad >= 0)
                    {
                        Interlocked.CompareExchange(ref failure, $"thread {t}: wrong byte at offset {p * PagedFile.PageSize + bad}", null);
                    }
                }
            })).ToList();
            workers.ForEach(w => w.Start());
            while (workers.Any(w => w.IsAlive))
            {
                peak = Math.Max(peak, a.Statistics.ResidentPages + b.Statistics.ResidentPages);
                Thread.Sleep(1);
            }
            workers.ForEach(w => w.Join());
        }, "fetches from two files under a shared budget");
        Assert.True(failure is null, failure);
        var (sa, sb) = (a.Statistics, b.Statistics);
        Assert.True(sa.PagesEvicted > 0 && sb.PagesEvicted > 0, $"both files must have been evicted from: {sa} / {sb}");
        Assert.True(peak * PagedFile.PageSize <= budget + Slack, $"peak resident {peak * PagedFile.PageSize >> 20} MiB of both files over the shared {budget >> 20} MiB budget + {Slack >> 20} MiB slack");
    }

    [Fact]
    public void WritesThroughFetchAndTouchSurviveEvictionAndReachTheFile()
    {
        // Each thread owns one word of every page (word t) and counts its increments per page; a write lost anywhere —
        // a caller fill installing bytes older than a write-back, a pager fill overwriting an installed page, an
        // eviction racing a fill — leaves a word short of its count. A ninth thread evicts random ranges meanwhile.
        const long length = 32L << 20, budget = 8L << 20;
        const int threads = 6;
        using var file = TestData.CreateFile(length, seed: 67, directory: AppContext.BaseDirectory);
        long pages = length / PagedFile.PageSize;
        var counts = new long[threads, pages];
        using (var db = PagedFile.Open(_runtime, file.Path, new PagedFileOptions { MemoryBudget = budget }))
        {
            Run.Within(TimeSpan.FromSeconds(180), () =>
            {
                bool stop = false;
                var evictor = new Thread(() =>
                {
                    var rng = new Random(99);
                    while (!Volatile.Read(ref stop))
                    {
                        db.Evict(rng.NextInt64(pages - 64), 64);
                    }
                });
                evictor.Start();
                try
                {
                    var workers = Enumerable.Range(0, threads).Select(t => new Thread(() =>
                    {
                        var rng = new Random(t + 7);
                        long deadline = Environment.TickCount64 + 4000;
                        while (Environment.TickCount64 < deadline)
                        {
                            // A small hot set (pages 0..2047, 8 MiB: the budget) so pages are written, evicted and
                            // fetched again many times, plus the whole file.
                            long p = (rng.Next(2) == 0 ? rng.NextInt64(2048) : rng.NextInt64(pages));
                            byte* page = (t & 1) == 0 ? db.Fetch(p) : db.PagePointer(p);
                            ((ulong*)page)[t]++;
                            counts[t, p]++;
                        }
                    })).ToList();
                    workers.ForEach(w => w.Start());
                    workers.ForEach(w => w.Join());
                }
                finally
                {
                    Volatile.Write(ref stop, true);
                    evictor.Join();
                }
                db.Flush();
            }, "writes under eviction with caller fills");
            var stats = db.Statistics;
            Assert.True(stats.CallerFills > 1000 && stats.MissingFaults > 100, $"both paths must have filled pages: {stats}");
            Assert.True(stats.PagesEvicted > 0 && stats.PagesWrittenBack > 0, $"no eviction with write-back happened: {stats}");
            Assert.Equal(0, stats.WriteErrors);
        }
        var onDisk = MemoryMarshal.Cast<byte, ulong>(File.ReadAllBytes(file.Path));
        long total = 0;
        for (long p = 0; p < pages; p++)
        {
            for (int t = 0; t < threads; t++)
            {
                long w = p * 512 + t;
                ulong expected = TestData.WordAt(w * 8, file.Seed) + (ulong)counts[t, p];
                Assert.True(onDisk[(int)w] == expected, $"page {p}, thread {t}'s word: {onDisk[(int)w]:x} in the file, expected {expected:x} ({counts[t, p]} increments)");
                total += counts[t, p];
            }
        }
        Assert.True(total > 10_000, $"only {total} writes");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void KilledPagersLoseNoWriteMadeThroughFetch(bool useFetch)
    {
        // Writers through Fetch and through pointers under eviction while the active pager is killed four times: the
        // standby takes over the control block (the caller-filling and referenced bits with it), no thread hangs, and
        // after Flush every increment is in the file.
        const long length = 16L << 20, budget = 4L << 20;
        const int threads = 4, kills = 4;
        using var file = TestData.CreateFile(length, seed: 103, directory: AppContext.BaseDirectory);
        long pages = length / PagedFile.PageSize;
        long[,] counts;
        using var runtime = PagingRuntime.Start();
        using (var db = PagedFile.Open(runtime, file.Path, new PagedFileOptions { MemoryBudget = budget, UseFetch = useFetch }))
        {
            counts = Run.IncrementsWhilePagersAreKilled(runtime, pages, threads, kills,
                (t, p) => (nint)(useFetch && (t & 1) == 0 ? db.Fetch(p) : db.PagePointer(p)), db.Flush);
            var stats = db.Statistics;
            Assert.True((stats.CallerFills > 0) == useFetch && stats.PagesEvicted > 0, $"{stats}");
        }
        Run.AssertIncrementsInFile(file, counts);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void FlushesRacingTheEvictorLoseNoWrite(bool useFetch)
    {
        // A Flush's dirty scan re-protects every written page it walks, the unmapped ones included (an empty PTE becomes
        // a uffd-wp marker, which reads as clean), and records them as dirty only after its ioctl; the evictor, unmapping
        // and evicting the same pages meanwhile, must never take such a page for clean. Four writers under a budget a
        // quarter of the file, a fifth thread flushing over and over: afterwards every increment is in the file.
        const long length = 16L << 20, budget = 4L << 20;
        const int threads = 4;
        using var file = TestData.CreateFile(length, seed: 127, directory: AppContext.BaseDirectory);
        long pages = length / PagedFile.PageSize;
        var counts = new long[threads, pages];
        long flushes = 0;
        using (var db = PagedFile.Open(_runtime, file.Path, new PagedFileOptions { MemoryBudget = budget, UseFetch = useFetch }))
        {
            Run.Within(TimeSpan.FromSeconds(120), () =>
            {
                long deadline = Environment.TickCount64 + 4000;
                var flusher = new Thread(() =>
                {
                    while (Environment.TickCount64 < deadline)
                    {
                        db.Flush();
                        flushes++;
                    }
                });
                var writers = Enumerable.Range(0, threads).Select(t => new Thread(() =>
                {
                    var rng = new Random(t + 17);
                    while (Environment.TickCount64 < deadline)
                    {
                        long p = rng.NextInt64(pages);
                        ((ulong*)(useFetch && (t & 1) == 0 ? db.Fetch(p) : db.PagePointer(p)))[t]++;
                        counts[t, p]++;
                    }
                })).ToList();
                flusher.Start();
                writers.ForEach(w => w.Start());
                writers.ForEach(w => w.Join());
                flusher.Join();
            }, "writers and flushes under eviction");
            Assert.True(flushes > 10 && db.Statistics.PagesEvicted > 1000, $"{flushes} flushes: {db.Statistics}");
        }
        Run.AssertIncrementsInFile(file, counts);
    }

    [Fact]
    public void APageWrittenAndEvictedWhileAFetchReadsItKeepsTheWrite()
    {
        // The window the caller-filling bit closes: thread A has read page P from the file (old bytes) and not yet
        // installed it; meanwhile P is faulted in through the pager, written, and asked to be evicted. Evicting it
        // would write the new bytes back and punch the page, and A's install would then put the old bytes in memory.
        // The evictor must leave P alone while A reads it; A's install then meets the page and drops its copy.
        const long page = 10;
        using var file = TestData.CreateFile(1 << 20, seed: 79, directory: AppContext.BaseDirectory);
        using (var db = PagedFile.Open(_runtime, file.Path, new PagedFileOptions { MemoryBudget = 4L << 20 }))
        {
            using var read = new ManualResetEventSlim();
            using var proceed = new ManualResetEventSlim();
            db.AfterReadForTests = p =>
            {
                if (p == page)
                {
                    read.Set();
                    proceed.Wait(TimeSpan.FromSeconds(30));
                }
            };
            var fetcher = new Thread(() => db.Fetch(page));
            Run.Within(TimeSpan.FromSeconds(60), () =>
            {
                fetcher.Start();
                try
                {
                    Assert.True(read.Wait(TimeSpan.FromSeconds(30)), "the fetch never read the page");
                    ((ulong*)db.PagePointer(page))[0] = 0xFEED_F00D; // a fault: the pager fills P, then the write
                    db.Evict(page, 1);
                }
                finally
                {
                    proceed.Set();
                    fetcher.Join();
                }
            }, "a fetch racing a write and an eviction");
            Assert.Equal(0xFEED_F00DUL, ((ulong*)db.PagePointer(page))[0]);
            Assert.Equal(0, db.Statistics.CallerFills); // the fetch found the page installed and dropped its bytes
            db.Flush();
        }
        var onDisk = MemoryMarshal.Cast<byte, ulong>(File.ReadAllBytes(file.Path));
        Assert.Equal(0xFEED_F00DUL, onDisk[(int)(page * 512)]);
        Assert.Equal(TestData.WordAt(page * 4096 + 8, file.Seed), onDisk[(int)(page * 512) + 1]);
    }

    [Fact]
    public void FetchAllocatesNothingAndChecksItsArguments()
    {
        const long length = 8L << 20;
        using var file = TestData.CreateFile(length, seed: 71, directory: AppContext.BaseDirectory);
        var db = PagedFile.Open(_runtime, file.Path, new PagedFileOptions { MemoryBudget = 4L << 20 });
        try
        {
            for (long p = 0; p < 64; p++)
            {
                _ = db.Fetch(p); // the first misses and hits compile the paths
            }
            long before = GC.GetAllocatedBytesForCurrentThread();
            ulong sum = 0;
            for (long p = 0; p < db.PageCount; p++)
            {
                sum += *(ulong*)db.Fetch(p); // misses (past the budget: with eviction) and hits
                sum += *(ulong*)db.Fetch(p);
            }
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.True(allocated == 0, $"Fetch allocated {allocated} bytes over {2 * db.PageCount} calls");
            Assert.NotEqual(0UL, sum);
            Assert.True(db.Statistics.CallerFills >= db.PageCount - 64, $"{db.Statistics}");
            Assert.Throws<ArgumentOutOfRangeException>(() => db.Fetch(db.PageCount));
            Assert.Throws<ArgumentOutOfRangeException>(() => db.Fetch(-1));
        }
        finally
        {
            db.Dispose();
        }
        Assert.Throws<ObjectDisposedException>(() => db.Fetch(0));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void FetchOfAPartialLastPageReadsTheFileThenZeros(bool direct)
    {
        // 2 MiB + 104 bytes: the last page holds 104 bytes of the file (not a multiple of the 512-byte O_DIRECT block).
        const long length = (2L << 20) + 104;
        using var file = TestData.CreateFile(length, seed: 83, directory: AppContext.BaseDirectory);
        using var db = PagedFile.Open(_runtime, file.Path, new PagedFileOptions { MemoryBudget = 4L << 20, DirectIo = direct });
        long last = db.PageCount - 1;
        Assert.Equal(length / PagedFile.PageSize, last);
        var page = new ReadOnlySpan<byte>(db.Fetch(last), PagedFile.PageSize);
        Assert.Equal(-1, TestData.FirstMismatch(page, last * PagedFile.PageSize, length, file.Seed));
        Assert.Equal(1, db.Statistics.CallerFills);
        Assert.Equal(-1, TestData.FirstMismatch(new ReadOnlySpan<byte>(db.Fetch(0), PagedFile.PageSize), 0, length, file.Seed));
    }

    [Fact]
    public void APagedFileWithoutFetchRefusesItAndServesPointers()
    {
        const long length = 8L << 20;
        using var file = TestData.CreateFile(length, seed: 89, directory: AppContext.BaseDirectory);
        using var db = PagedFile.Open(_runtime, file.Path, new PagedFileOptions { MemoryBudget = 4L << 20, UseFetch = false });
        var e = Assert.Throws<InvalidOperationException>(() => db.Fetch(0));
        Assert.Contains("UseFetch", e.Message, StringComparison.Ordinal);
        for (long p = 0; p < db.PageCount; p++)
        {
            Assert.Equal(-1, TestData.FirstMismatch(new ReadOnlySpan<byte>(db.PagePointer(p), PagedFile.PageSize), p * PagedFile.PageSize, length, file.Seed));
        }
        Assert.Equal(0, db.Statistics.CallerFills);
        Assert.True(db.Statistics.PagesEvicted > 0, $"{db.Statistics}");
    }

    [Fact]
    public void CallerFillsAreRefusedOutsideShmem()
    {
        using var file = TestData.CreateFile(1 << 20, seed: 73);
        var e = Assert.Throws<ArgumentException>(() => _runtime.CreateRegion(new RegionOptions
        {
            Arena = ArenaKind.Anonymous, Length = 1 << 20, Store = PageStoreDescriptor.File(file.Path), CallerFills = true,
        }));
        Assert.Contains("Shmem", e.Message, StringComparison.Ordinal);
    }
}
