using Paging.Testing;

namespace Paging.Backends.Tests;

public sealed class ZeroStoreContract : PageStoreContract
{
    protected override bool SupportsWrite => false;

    protected override IPageStore CreateStore(bool writable, out Func<long, byte> expected)
    {
        expected = _ => 0;
        return new ZeroPageStore(ContentLength);
    }
}

/// <summary>A slice starting 8 KiB into the file: store offset 0 is file offset 8192.</summary>
public sealed class FileStoreContract : PageStoreContract, IDisposable
{
    private readonly TempFile _file = TestData.CreateFile(ContentLength + 8192, seed: 9);

    protected override IPageStore CreateStore(bool writable, out Func<long, byte> expected) =>
        TestStores.FileSlice(_file, 8192, writable, out expected);

    public void Dispose() => _file.Dispose();
}

/// <summary>A direct-when-cold file store keeps the contract (the suite's buffers are not page aligned: its cold reads
/// fall back to buffered ones; <see cref="FileStoreTests"/> checks the aligned O_DIRECT path).</summary>
public sealed class DirectWhenColdFileStoreContract : PageStoreContract, IDisposable
{
    private readonly TempFile _file = TestData.CreateFile(ContentLength + 8192, seed: 13);

    protected override IPageStore CreateStore(bool writable, out Func<long, byte> expected)
    {
        expected = TestStores.Expected(_file, 8192);
        return new FilePageStore(_file.Path, 8192, writable, directWhenCold: true);
    }

    public void Dispose() => _file.Dispose();
}

/// <summary>The fault-injecting wrapper keeps the contract when it injects nothing.</summary>
public sealed class FaultInjectingStoreContract : PageStoreContract, IDisposable
{
    private readonly TempFile _file = TestData.CreateFile(ContentLength + 8192, seed: 10);

    protected override IPageStore CreateStore(bool writable, out Func<long, byte> expected) =>
        new FaultInjectingPageStore(TestStores.FileSlice(_file, 8192, writable, out expected), failOffset: -1, failTimes: 0, PageStoreError.Io);

    public void Dispose() => _file.Dispose();
}

/// <summary>The compressed tier keeps the contract of the store it fronts.</summary>
public sealed class CompressedTierStoreContract : PageStoreContract, IDisposable
{
    private readonly TempFile _file = TestData.CreateFile(ContentLength + 8192, seed: 12);

    protected override IPageStore CreateStore(bool writable, out Func<long, byte> expected) =>
        new Paging.Backends.Compression.CompressedTierPageStore(TestStores.FileSlice(_file, 8192, writable, out expected), 4L << 20,
            Paging.Backends.Compression.PageCodec.For(Paging.Backends.Compression.PageCodecKind.Lz4), 4096);

    public void Dispose() => _file.Dispose();
}

/// <summary>What the tier adds: retained pages are served from memory (the inner store is not read), taken out when
/// served, dropped when the store is written, the oldest dropped at capacity; zeros, text-like and random pages.</summary>
public sealed class CompressedTierTests
{
    private static (Paging.Backends.Compression.CompressedTierPageStore Tier, MemoryPageStore Inner) Create(long capacity = 1L << 20)
    {
        var inner = new MemoryPageStore(new byte[8 << 20], writable: true);
        return (new Paging.Backends.Compression.CompressedTierPageStore(inner, capacity, Paging.Backends.Compression.PageCodec.For(Paging.Backends.Compression.PageCodecKind.Lz4), 4096), inner);
    }

    [Fact]
    public void RetainedPagesComeBackExactlyWithoutReadingTheStoreAndLeaveTheTier()
    {
        var (tier, inner) = Create();
        var pages = new byte[3 * 4096];
        pages.AsSpan(4096, 4096).Fill((byte)'a');                     // compressible
        new Random(3).NextBytes(pages.AsSpan(8192, 4096));             // incompressible: kept raw
        tier.Retain(40960, pages);                                     // page 0 of the three is all zeros: a flag
        Assert.True(tier.StoredBytes < 4096 + 200, $"{tier.StoredBytes} bytes stored for a zero, an 'a' and a random page");
        inner.Write(40960, Enumerable.Repeat((byte)0xEE, 3 * 4096).ToArray()); // the store changes under the tier (a test only)
        tier.Retain(40960, pages);
        long readsBefore = inner.Reads;
        var back = new byte[3 * 4096];
        Assert.Equal(PageReadStatus.Data, tier.Read(40960, back));
        Assert.Equal(pages, back);
        Assert.Equal(readsBefore, inner.Reads);
        Assert.Equal(3, tier.Hits);
        Assert.Equal(0, tier.StoredBytes);                             // served: out of the tier
        tier.Read(40960, back);                                        // now from the store (0xEE)
        Assert.All(back, b => Assert.Equal(0xEE, b));
        Assert.True(tier.Misses >= 3);
    }

    [Fact]
    public void AWriteDropsTheTiersCopyAndCapacityDropsTheOldest()
    {
        var (tier, _) = Create(capacity: 1L << 20);
        var rng = new Random(5);
        var page = new byte[4096];
        for (int i = 0; i < 300; i++)                                   // 300 random pages: 1.2 MB raw > 1 MiB
        {
            rng.NextBytes(page);
            tier.Retain(i * 4096L, page);
        }
        Assert.True(tier.StoredBytes <= 1L << 20);
        var back = new byte[4096];
        tier.Read(0, back);                                            // the oldest was dropped: a miss
        Assert.Equal(0, tier.Hits);
        tier.Write(299 * 4096L, new byte[4096]);                       // the newest: dropped by the write
        tier.Read(299 * 4096L, back);
        Assert.Equal(0, tier.Hits);
        Assert.All(back, b => Assert.Equal(0, b));
    }
}

public sealed partial class FileStoreTests
{
    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "posix_fadvise")]
    private static partial int PosixFadvise(int fd, long offset, long length, int advice);

    /// <summary>Drops the file's clean pages from the page cache (POSIX_FADV_DONTNEED), after writing them out.</summary>
    private static void DropFromPageCache(string path)
    {
        using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite);
        RandomAccess.FlushToDisk(handle);
        Assert.Equal(0, PosixFadvise((int)handle.DangerousGetHandle(), 0, 0, 4));
    }

    private static long CachedPages(string path)
    {
        using var handle = File.OpenHandle(path);
        long n = DirectIo.CachedPages(handle, 0, new FileInfo(path).Length, out int errno);
        Assert.True(n >= 0, $"cachestat failed: errno {errno}");
        return n;
    }

    [Fact]
    public unsafe void DirectWhenColdReadsAColdFileWithoutThePageCacheAndAHotOneThroughIt()
    {
        // 1 MiB + 3 KiB from 8 KiB into the file: the last read ends in a partial page (O_DIRECT reads up to the end
        // of the file, the rest is zeros). Aligned 64 KiB buffers, as the engine's fill buffers and mappings are.
        using var file = TestData.CreateFile((1 << 20) + 3072 + 8192, seed: 14);
        var expected = TestStores.Expected(file, 8192);
        using var store = new FilePageStore(file.Path, 8192, writable: false, directWhenCold: true);
        Assert.True(store.ReadsColdDirect);
        Assert.Null(store.FileSource); // no splice: it would read through the page cache
        const int chunk = 64 << 10;
        byte* buffer = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(chunk, 4096);
        try
        {
            void ReadAll()
            {
                for (long offset = 0; offset < store.Length + 4096; offset += chunk)
                {
                    var span = new Span<byte>(buffer, chunk);
                    span.Fill(0xAB);
                    var status = store.Read(offset, span);
                    Assert.Equal(offset >= store.Length ? PageReadStatus.Zero : PageReadStatus.Data, status);
                    if (status == PageReadStatus.Data)
                    {
                        for (int i = 0; i < chunk; i++)
                        {
                            if (span[i] != expected(offset + i))
                            {
                                Assert.Fail($"byte {offset + i}: {span[i]}, expected {expected(offset + i)}");
                            }
                        }
                    }
                }
            }

            DropFromPageCache(file.Path);
            Assert.Equal(0, CachedPages(file.Path));
            ReadAll();
            // Cold: read with O_DIRECT, so the page cache still holds none of it (a buffered read would have cached
            // all 259 pages; the read that meets the end of the file after the direct one is buffered but reads nothing).
            Assert.True(CachedPages(file.Path) <= 1, $"{CachedPages(file.Path)} pages cached after a cold direct read");

            _ = File.ReadAllBytes(file.Path); // hot now: buffered reads, the same bytes
            ReadAll();
        }
        finally
        {
            System.Runtime.InteropServices.NativeMemory.AlignedFree(buffer);
        }
    }

    [Fact]
    public void DirectWhenColdOnTmpfsReadsTheFile()
    {
        // tmpfs (/dev/shm) accepts O_DIRECT since Linux 6.6 and holds every page in its page cache: cachestat never
        // finds a range cold there, so every read is a buffered one.
        if (!Directory.Exists("/dev/shm"))
        {
            return;
        }
        using var file = TestData.CreateFile(3 * 4096, seed: 15, directory: "/dev/shm");
        using var store = new FilePageStore(file.Path, 0, writable: false, directWhenCold: true);
        var buffer = new byte[3 * 4096];
        Assert.Equal(PageReadStatus.Data, store.Read(0, buffer));
        var expected = TestStores.Expected(file);
        for (int i = 0; i < buffer.Length; i++)
        {
            Assert.Equal(expected(i), buffer[i]);
        }
    }

    [Fact]
    public void AMissingFileIsAConfigurationError()
    {
        var e = Assert.Throws<PageStoreException>(() => new FilePageStore("/nonexistent/x.bin", 0, false));
        Assert.Equal(PageStoreError.Configuration, e.Error);
        Assert.Contains("/nonexistent/x.bin", e.Message);
    }

    [Fact]
    public void TheFactoryValidatesItsSettings()
    {
        using var file = TestData.CreateFile(8192);
        var registry = BuiltInPageStores.CreateRegistry();
        PageStoreException Create(Dictionary<string, string> settings) => Assert.Throws<PageStoreException>(() =>
            registry.Create(new PageStoreContext(new PageStoreDescriptor("file", settings), 1 << 20, 4096)));
        Assert.Contains("'path'", Create([]).Message);
        Assert.Contains("not a multiple", Create(new() { ["path"] = file.Path, ["offset"] = "100" }).Message);
        Assert.Contains("'offset' is '-4096', not an integer in [0,", Create(new() { ["path"] = file.Path, ["offset"] = "-4096" }).Message);
        Assert.Contains("'offset' is 'abc', not an integer", Create(new() { ["path"] = file.Path, ["offset"] = "abc" }).Message);
        Assert.Contains("'writable' is 'yes', not true or false", Create(new() { ["path"] = file.Path, ["writable"] = "yes" }).Message);
        Assert.Contains("'direct_when_cold' setting is 'maybe', not true, false or auto", Create(new() { ["path"] = file.Path, ["direct_when_cold"] = "maybe" }).Message);
        // auto (the descriptor's default): direct-when-cold for hugetlbfs regions (2 MiB pages) only.
        var described = PageStoreDescriptor.File(file.Path);
        Assert.Equal("auto", described.Settings["direct_when_cold"]);
        using (var huge = (FilePageStore)registry.Create(new PageStoreContext(described, 2 << 20, 2 << 20)))
        using (var small = (FilePageStore)registry.Create(new PageStoreContext(described, 1 << 20, 4096)))
        using (var forced = (FilePageStore)registry.Create(new PageStoreContext(PageStoreDescriptor.File(file.Path, directWhenCold: true), 1 << 20, 4096)))
        {
            Assert.True(huge.ReadsColdDirect);
            Assert.False(small.ReadsColdDirect);
            Assert.NotNull(small.FileSource); // shmem fills keep splicing
            Assert.True(forced.ReadsColdDirect);
        }
        var unknown = Assert.Throws<PageStoreException>(() => registry.Create(new PageStoreContext(new PageStoreDescriptor("nfs"), 4096, 4096)));
        Assert.Contains("zero", unknown.Message);
    }

    [Fact]
    public void AReadWhollyPastEndOfFileIsAZeroPage()
    {
        using var file = TestData.CreateFile(4096);
        using var store = new FilePageStore(file.Path, 0, false);
        var buffer = new byte[4096];
        Array.Fill(buffer, (byte)1);
        Assert.Equal(PageReadStatus.Zero, store.Read(4096, buffer));
        Assert.Equal(PageReadStatus.Data, store.Read(0, buffer));
        Assert.Equal(4096, store.Length);
    }
}

public sealed class FaultInjectionTests
{
    [Fact]
    public void FailsAsConfiguredThenRecovers()
    {
        using var store = new FaultInjectingPageStore(new ZeroPageStore(1 << 20), failOffset: 8192, failTimes: 2, PageStoreError.Io);
        var buffer = new byte[4096];
        Assert.Equal(PageReadStatus.Zero, store.Read(0, buffer));
        var e = Assert.Throws<PageStoreException>(() => store.Read(8192, buffer));
        Assert.True(e.IsTransient);
        Assert.Throws<PageStoreException>(() => store.Read(4096, new byte[8192]));
        Assert.Equal(PageReadStatus.Zero, store.Read(8192, buffer));
        Assert.Equal(2, store.Failures);
    }
}

public sealed class DecoratorBatchTests
{
    /// <summary>A decorator's batch goes through the decorator: before, DelegatingPageStore handed batches to the inner
    /// store, so a latency (or fault-injecting, or decoding) store's ReadManyAsync skipped what it decorates.</summary>
    [Fact]
    public async Task ABatchReadOfALatencyStoreTakesItsDelay()
    {
        using var file = TestData.CreateFile(1 << 16, seed: 13);
        using var store = new LatencyPageStore(new FilePageStore(file.Path, 0, false), TimeSpan.FromMilliseconds(60));
        var requests = new[] { new PageReadRequest(0, new byte[4096]), new PageReadRequest(8192, new byte[4096]) };
        var watch = System.Diagnostics.Stopwatch.StartNew();
        await store.ReadManyAsync(requests, new PageReadStatus[2], CancellationToken.None);
        Assert.True(watch.Elapsed >= TimeSpan.FromMilliseconds(110), $"a batch of two 60 ms reads took {watch.ElapsedMilliseconds} ms");
        Assert.True(TestData.FirstMismatch(requests[1].Destination.Span, 8192, file.Length, file.Seed) < 0);
    }
}
