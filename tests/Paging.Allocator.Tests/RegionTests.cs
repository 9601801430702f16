using Paging.Testing;

namespace Paging.Allocator.Tests;

[Collection("runtime")]
public sealed unsafe class RegionTests(RuntimeFixture fixture)
{
    private readonly PagingRuntime _runtime = fixture.Runtime;

    public static TheoryData<ArenaKind, string> ArenaByStore => new()
    {
        { ArenaKind.Anonymous, "zero" }, { ArenaKind.Anonymous, "file" },
        { ArenaKind.Shmem, "zero" }, { ArenaKind.Shmem, "file" },
    };

    [Theory]
    [MemberData(nameof(ArenaByStore))]
    public void EveryByteMatchesTheSource(ArenaKind arena, string store)
    {
        // 8 MiB + 1000 bytes of file in a 12 MiB region: whole pages, a partial last page, and pages past EOF.
        using var file = TestData.CreateFile((8 << 20) + 1000);
        var descriptor = store == "file" ? PageStoreDescriptor.File(file.Path) : PageStoreDescriptor.Zero();
        long fileLength = store == "file" ? file.Length : 0;
        using var region = _runtime.CreateRegion(new RegionOptions { Arena = arena, Length = 12 << 20, Store = descriptor });
        int pages = (int)(region.Length / region.PageSize);
        // Touch pages in a random order, one word each, then check every byte.
        var order = Enumerable.Range(0, pages).ToArray();
        new Random(7).Shuffle(order);
        Run.Within(TimeSpan.FromSeconds(60), () =>
        {
            foreach (int p in order)
            {
                _ = Volatile.Read(ref *(ulong*)(region.Pointer + (long)p * region.PageSize + 8 * (p % 512)));
            }
            long bad = TestData.FirstMismatch(region.AsSpan(0, (int)region.Length), 0, fileLength, file.Seed);
            Assert.True(bad < 0, $"wrong byte at {bad}");
        }, "touch and verify");
        var stats = region.Statistics;
        Assert.Equal(pages, stats.PagesFilled);
        // Nothing per fault: over ~3000 faults the fault thread allocated less than one byte per fault (what it does
        // allocate is one-time lazy initialisation inside a store, e.g. the first pread through a SafeFileHandle).
        Assert.True(stats.ManagedBytesAllocated < stats.Faults, $"the fault path allocated {stats.ManagedBytesAllocated} bytes over {stats.Faults} faults");
        // Every page came either from a fault on it or from read-ahead around a sequential fault.
        Assert.True(stats.Faults >= stats.PagesOnDemand, $"{stats.Faults} faults for {stats.PagesOnDemand} pages filled on demand");
        Assert.Equal(0, stats.AlreadyPresent);
        Assert.Equal(0, stats.Errors);
        Assert.Equal(pages, region.CountFilledPages(0, pages));
        long expectedBytes = store == "file" ? (long)Math.Ceiling(file.Length / 4096.0) * 4096 : 0;
        // An anonymous page whose fault message was read after read-ahead had mapped it is read again to be sure
        // (its bit cannot tell a mapped page from one the application dropped with MADV_DONTNEED); the COPY then
        // finds it present and counts a stale fault. Each such fault may add one page of reading, no more.
        long rereads = arena == ArenaKind.Anonymous && store == "file" ? stats.StaleFaults * 4096 : 0;
        Assert.InRange(stats.BytesRead, expectedBytes, expectedBytes + rereads);
    }

    [Theory]
    [InlineData(ArenaKind.Anonymous)]
    [InlineData(ArenaKind.Shmem)]
    public void WritesSurviveDroppedMappings(ArenaKind arena)
    {
        using var file = TestData.CreateFile(1 << 20);
        using var region = _runtime.CreateRegion(new RegionOptions { Arena = arena, Length = 1 << 20, Store = PageStoreDescriptor.File(file.Path) });
        Run.Within(TimeSpan.FromSeconds(30), () =>
        {
            region.AsSpan(4096 * 3, 4096).Fill(0x5C);
            Run.AssertMatchesFile(region.AsSpan(0, 4096 * 3), 0, file, "before the write");
            if (arena == ArenaKind.Shmem)
            {
                // Dropping the PTEs makes the next touch a MINOR fault: the pager must map the page-cache page that
                // holds our write, never refill it from the file.
                Assert.Equal(0, Native.Madvise(region.Address, (nuint)region.Length, Native.MADV_DONTNEED));
                Assert.True(region.AsSpan(4096 * 3, 4096).IndexOfAnyExcept((byte)0x5C) < 0, "the write was lost");
                Run.AssertMatchesFile(region.AsSpan(0, 4096 * 3), 0, file, "after MADV_DONTNEED");
                Assert.True(region.Statistics.MinorFaults > 0);
            }
            else
            {
                Assert.True(region.AsSpan(4096 * 3, 4096).IndexOfAnyExcept((byte)0x5C) < 0, "the write was lost");
            }
        }, "write and re-read");
        Assert.Equal(0, region.Statistics.Errors);
    }

    [Theory]
    [InlineData(ArenaKind.Anonymous)]
    [InlineData(ArenaKind.Shmem)]
    public void ManyThreadsOnTheSameAndOnDifferentPages(ArenaKind arena)
    {
        const int threads = 6;
        using var file = TestData.CreateFile(32 << 20);
        using var region = _runtime.CreateRegion(new RegionOptions { Arena = arena, Length = 32 << 20, Store = PageStoreDescriptor.File(file.Path) });
        int pages = (int)(region.Length / 4096);
        var errors = new System.Collections.Concurrent.ConcurrentBag<string>();
        Run.Within(TimeSpan.FromSeconds(90), () =>
        {
            using var start = new Barrier(threads);
            var workers = Enumerable.Range(0, threads).Select(t => new Thread(() =>
            {
                start.SignalAndWait();
                // Half the threads walk the first half in the same order (racing on every page); the others take
                // disjoint pages of the second half.
                if (t % 2 == 0)
                {
                    for (int p = 0; p < pages / 2; p++)
                    {
                        Check(p);
                    }
                }
                else
                {
                    for (int p = pages / 2 + t / 2; p < pages; p += threads / 2)
                    {
                        Check(p);
                    }
                }
            })).ToList();
            workers.ForEach(w => w.Start());
            workers.ForEach(w => w.Join());
        }, "threads");
        Assert.Empty(errors);
        var stats = region.Statistics;
        if (arena == ArenaKind.Shmem)
        {
            // Racing faults on one page are filled once: a second fill could overwrite a write.
            Assert.Equal(pages, stats.PagesFilled);
        }
        Assert.Equal(pages, region.CountFilledPages(0, pages));
        Assert.Equal(0, stats.Errors);

        void Check(int p)
        {
            long bad = TestData.FirstMismatch(region.AsSpan((long)p * 4096, 4096), (long)p * 4096, file.Length, file.Seed);
            if (bad >= 0)
            {
                errors.Add($"page {p} byte {bad}");
            }
        }
    }

    [Theory]
    [InlineData(ArenaKind.Anonymous)]
    [InlineData(ArenaKind.Shmem)]
    public void OneTebibyteReservationTouchedSparsely(ArenaKind arena)
    {
        const long tib = 1L << 40;
        using var file = TestData.CreateFile(16 << 20);
        long rssBefore = Run.RssKiB();
        // One page per fault: this test counts resident pages exactly, which read-ahead around a chance pair of
        // adjacent touches would change.
        using var region = _runtime.CreateRegion(new RegionOptions
        {
            Arena = arena, Length = tib, Store = PageStoreDescriptor.File(file.Path), Prefetch = PrefetchOptions.None,
        });
        var rng = new Random(3);
        var offsets = Enumerable.Range(0, 2000).Select(i => i < 200 ? rng.NextInt64(file.Length / 4096) * 4096 : rng.NextInt64(tib / 4096) * 4096).ToArray();
        Run.Within(TimeSpan.FromSeconds(60), () =>
        {
            foreach (long off in offsets)
            {
                Run.AssertMatchesFile(region.AsSpan(off, 4096), off, file, $"page at {off}");
            }
        }, "sparse touches");
        // Exactly the touched pages are resident in the region's mapping (read from /proc/self/smaps, which other
        // tests running in parallel cannot disturb), and nothing is committed for the untouched 1 TiB.
        // Anonymous pages past the file are mapped to the shared zero page (UFFDIO_ZEROPAGE), which Rss does not count.
        long residentPages = offsets.Distinct().Count(o => arena == ArenaKind.Shmem || o < file.Length);
        Assert.Equal(residentPages * 4, Run.MappingRssKiB(region.Address));
        Assert.True(Run.RssKiB() - rssBefore < 1024 * 1024, "the process grew by more than 1 GiB");
        long distinct = offsets.Distinct().Count();
        Assert.Equal(distinct, Run.Settled(() => region.Statistics.PagesFilled, distinct));
    }

    [Theory]
    [InlineData(ArenaKind.Anonymous)]
    [InlineData(ArenaKind.Shmem)]
    public void AFileSliceMapsFromItsOffsetAndZeroesPastEndOfFile(ArenaKind arena)
    {
        using var file = TestData.CreateFile((4 << 20) + 100);
        const long sliceOffset = 1 << 20;
        using var region = _runtime.CreateRegion(new RegionOptions
        {
            Arena = arena, Length = 8 << 20, Store = PageStoreDescriptor.File(file.Path, sliceOffset),
        });
        Run.Within(TimeSpan.FromSeconds(30), () => Run.AssertMatchesFile(region.AsSpan(0, (int)region.Length), sliceOffset, file, "slice"), "slice");
        // Bytes [file end - slice offset, region end) must be zero, checked by AssertMatchesFile past fileLength.
        var stats = region.Statistics;
        Assert.Equal(2048, stats.PagesFilled);
        // The sequential walk sends read-ahead over the slice's end: only the slice's pages count as read (the last
        // one partial), never the zeros past it; an anonymous page whose fault raced read-ahead is read once more.
        long slicePages = (file.Length - sliceOffset + 4095) / 4096;
        Assert.InRange(stats.BytesRead, slicePages * 4096, (slicePages + stats.StaleFaults) * 4096);
    }

    [Theory]
    [InlineData(ArenaKind.Anonymous)]
    [InlineData(ArenaKind.Shmem)]
    public void SystemCallsOnUntouchedPagesFaultLikeTheApplication(ArenaKind arena)
    {
        // The kernel touches a region's pages on the application's behalf: write(2) reads them (copy_from_user), read(2)
        // writes them (copy_to_user), O_DIRECT pins them (get_user_pages). Each is a fault the pager serves (the uffd is
        // not created user-mode-only); none may fail with EFAULT, hang, or mix file and pager bytes.
        using var file = TestData.CreateFile(4 << 20, seed: 11);
        using var other = TestData.CreateFile(1 << 20, seed: 12);
        using var region = _runtime.CreateRegion(new RegionOptions
        {
            Arena = arena, Length = 4 << 20, Store = PageStoreDescriptor.File(file.Path), Prefetch = PrefetchOptions.None,
        });
        var copyPath = file.Path + ".copy";
        try
        {
            Run.Within(TimeSpan.FromSeconds(30), () =>
            {
                // write(2) of 1 MiB of untouched pages: the copy on disk is the file's bytes.
                using (var copy = File.OpenHandle(copyPath, FileMode.Create, FileAccess.Write))
                {
                    RandomAccess.Write(copy, region.AsSpan(1 << 20, 1 << 20), 0);
                }
                var copied = File.ReadAllBytes(copyPath);
                Assert.Equal(1 << 20, copied.Length);
                Assert.True(TestData.FirstMismatch(copied, 1 << 20, file.Length, file.Seed) < 0, "write(2) from the region wrote wrong bytes");
                // read(2) into untouched pages: after it they hold the other file's bytes (a fill after the read would
                // have overwritten them with the region's file).
                using (var source = File.OpenHandle(other.Path))
                {
                    Assert.Equal(1 << 20, RandomAccess.Read(source, region.AsSpan(2 << 20, 1 << 20), 0));
                }
                Assert.True(TestData.FirstMismatch(region.AsSpan(2 << 20, 1 << 20), 0, other.Length, other.Seed) < 0, "read(2) into the region");
                // O_DIRECT into untouched pages (pinned by get_user_pages, DMA-style), 64 KiB at a time.
                int direct = Native.Open(other.Path, Native.ODirect);
                Assert.True(direct >= 0, $"open(O_DIRECT) failed: errno {System.Runtime.InteropServices.Marshal.GetLastPInvokeError()}");
                try
                {
                    for (int off = 0; off < (1 << 20); off += 64 << 10)
                    {
                        nint n = Native.Pread(direct, (void*)(region.Pointer + (3 << 20) + off), 64 << 10, off);
                        Assert.True(n == 64 << 10, $"pread(O_DIRECT) into the region returned {n}, errno {System.Runtime.InteropServices.Marshal.GetLastPInvokeError()}");
                    }
                }
                finally
                {
                    _ = Native.Close(direct);
                }
                Assert.True(TestData.FirstMismatch(region.AsSpan(3 << 20, 1 << 20), 0, other.Length, other.Seed) < 0, "O_DIRECT read into the region");
                // Untouched by any of that: still the region's file.
                Run.AssertMatchesFile(region.AsSpan(0, 1 << 20), 0, file, "the first MiB");
            }, "system calls on the region");
        }
        finally
        {
            File.Delete(copyPath);
        }
        Assert.Equal(0, region.Statistics.Errors);
    }

    [Fact]
    public void BadInputIsAClearException()
    {
        using var file = TestData.CreateFile(1 << 20);
        var e1 = Assert.Throws<ArgumentException>(() => _runtime.CreateRegion(new RegionOptions { Length = 4097 }));
        Assert.Contains("multiple of", e1.Message);
        Assert.Throws<ArgumentException>(() => _runtime.CreateRegion(new RegionOptions { Length = 0 }));
        Assert.Throws<ArgumentException>(() => _runtime.CreateRegion(new RegionOptions { Length = -4096 }));
        var e2 = Assert.Throws<ArgumentOutOfRangeException>(() => PageStoreDescriptor.File(file.Path, 100));
        Assert.Contains("offset", e2.Message);
        // A 4 KiB-aligned offset is not enough for a hugetlbfs region: the pager's file store refuses it.
        using (HugePageReservation.Reserve(1))
        {
            var e5 = Assert.Throws<PagerException>(() => _runtime.CreateRegion(new RegionOptions { Arena = ArenaKind.HugeTlb, Length = 2 << 20, Store = PageStoreDescriptor.File(file.Path, 4096) }));
            Assert.Contains("not a multiple of the page size 2097152", e5.Message);
        }
        var e3 = Assert.Throws<ArgumentException>(() => _runtime.CreateRegion(new RegionOptions { Arena = ArenaKind.HugeTlb, Length = 1 << 20 }));
        Assert.Contains("2097152", e3.Message);
        var e4 = Assert.Throws<FileNotFoundException>(() => PageStoreDescriptor.File("/nonexistent/paging/file.bin"));
        Assert.Contains("/nonexistent/paging/file.bin", e4.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => PageStoreDescriptor.File(file.Path, -4096));
    }

    [Fact]
    public void StoreProblemsInThePagerSurfaceAtRegionCreation()
    {
        var gone = TestData.CreateFile(4096);
        var descriptor = PageStoreDescriptor.File(gone.Path);
        gone.Dispose(); // deleted between describing and creating
        var e = Assert.Throws<PagerException>(() => _runtime.CreateRegion(new RegionOptions { Length = 1 << 20, Store = descriptor }));
        Assert.Contains(gone.Path, e.Message);

        e = Assert.Throws<PagerException>(() => _runtime.CreateRegion(new RegionOptions { Length = 1 << 20, Store = new PageStoreDescriptor("s3-nope") }));
        Assert.Contains("unknown page store kind 's3-nope'", e.Message);

        e = Assert.Throws<PagerException>(() => _runtime.CreateRegion(new RegionOptions
        {
            Length = 1 << 20, Store = PageStoreDescriptor.Custom(typeof(FaultInjectingPageStore).Assembly.Location, "No.Such.Type"),
        }));
        Assert.Contains("No.Such.Type", e.Message);

        // The runtime is still healthy after refused regions.
        using var ok = _runtime.CreateRegion(new RegionOptions { Length = 1 << 20 });
        Run.Within(TimeSpan.FromSeconds(10), () => Assert.Equal(-1, ok.AsSpan(0, 1 << 20).IndexOfAnyExcept((byte)0)), "zero region");
    }

    [Fact]
    public void ARegionAfterDisposalThrows()
    {
        var region = _runtime.CreateRegion(new RegionOptions { Length = 1 << 20 });
        region.Dispose();
        region.Dispose(); // idempotent
        Assert.Throws<ObjectDisposedException>(() => region.AsSpan(0, 1));
        Assert.Throws<ObjectDisposedException>(() => region.Address);
        Assert.Throws<ObjectDisposedException>(() => region.CountFilledPages(0, 1));
    }

    [Fact]
    public void TransientStoreErrorsAreRetriedAndPermanentOnesPoisonThePage()
    {
        using var file = TestData.CreateFile(1 << 20);
        var settings = new Dictionary<string, string> { ["inner"] = "file", ["path"] = file.Path, ["fail_offset"] = "40960", ["fail_times"] = "1" };
        string assembly = typeof(FaultInjectingPageStore).Assembly.Location;
        string type = typeof(FaultInjectingPageStore).FullName!;
        using (var flaky = _runtime.CreateRegion(new RegionOptions { Arena = ArenaKind.Shmem, Length = 1 << 20, Store = PageStoreDescriptor.Custom(assembly, type, settings) }))
        {
            Run.Within(TimeSpan.FromSeconds(30), () => Run.AssertMatchesFile(flaky.AsSpan(0, 1 << 20), 0, file, "flaky store"), "flaky");
            Assert.True(flaky.Statistics.Retries >= 1);
            Assert.Equal(0, flaky.Statistics.Errors);
        }

        settings["fail_times"] = "-1";
        foreach (var arena in new[] { ArenaKind.Shmem, ArenaKind.Anonymous })
        {
            using var broken = _runtime.CreateRegion(new RegionOptions { Arena = arena, Length = 1 << 20, Store = PageStoreDescriptor.Custom(assembly, type, settings) });
            Run.Within(TimeSpan.FromSeconds(30), () =>
            {
                Run.AssertMatchesFile(broken.AsSpan(0, 40960), 0, file, "pages before the broken one");
                // A kernel access to the poisoned page fails with EFAULT (a user access would get SIGBUS): no hang,
                // and no wrong byte is ever mapped.
                int sink = Native.MemfdCreate("sink", 1);
                try
                {
                    nint n = Native.Pwrite(sink, broken.Pointer + 40960, 4096, 0);
                    Assert.Equal(-1, n);
                    Assert.Equal(14 /* EFAULT */, System.Runtime.InteropServices.Marshal.GetLastPInvokeError());
                }
                finally
                {
                    _ = Native.Close(sink);
                }
                Run.AssertMatchesFile(broken.AsSpan(45056, (1 << 20) - 45056), 45056, file, "pages after the broken one");
            }, "broken store");
            Assert.True(broken.Statistics.Errors >= 1);
            Assert.Equal(1, broken.Statistics.Poisoned);
        }
    }
}
