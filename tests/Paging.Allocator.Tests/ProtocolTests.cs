using System.Buffers.Binary;
using Paging.Policies;
using Paging.Protocol;
using Paging.Supervision;

namespace Paging.Allocator.Tests;

/// <summary>Every message of docs/PROTOCOL.md round-trips through its Write and Read; malformed messages are
/// PagerExceptions; a real pager fed 10,000+ random and truncated messages answers each with an error and lives.</summary>
public sealed class ProtocolTests
{
    private static readonly byte[] s_buffer = new byte[PagerProtocol.MaxMessage];

    private static ProtocolReader ReaderOf(ReadOnlySpan<byte> written, MessageType type, ulong id)
    {
        var r = new ProtocolReader(written);
        Assert.Equal(type, r.Type);
        Assert.Equal(id, r.RequestId);
        return r;
    }

    [Fact]
    public void TheUnmapMailboxCoalescesRangesTakesOneRequestAtATimeAndStops()
    {
        // Two attachments of one control block, as the application and the pager have.
        using var app = RegionControlBlock.Create(1024, out var fd);
        using (fd)
        using (var pager = RegionControlBlock.Attach(fd, 1024))
        {
            Assert.True(pager.UnmapMailboxFree);
            Assert.Equal(0, pager.TryPostUnmap([]));
            // The application waits without a deadline on its mapping; the pager's post through its own mapping must
            // wake it (a shared futex: the two mappings are different addresses).
            int seq = 0;
            var first = new Thread(() => seq = app.WaitForUnmapRequest(0, timeoutMilliseconds: -1)) { IsBackground = true };
            first.Start();
            Thread.Sleep(50); // let it fall asleep; if it has not yet, its wait returns at once and the test still holds
            // 3 runs: [1,4), [10,11), [20,22).
            Assert.Equal(6, pager.TryPostUnmap([1, 2, 3, 10, 20, 21]));
            Assert.True(first.Join(TimeSpan.FromSeconds(10)), "the pager's post did not wake the application's waiter");
            Assert.Equal(1, seq);
            Assert.False(pager.UnmapMailboxFree);
            Assert.Equal(0, pager.TryPostUnmap([5])); // busy until the application is done: nothing waits
            var ranges = new (long First, long Count)[RegionControlBlock.UnmapSlots];
            int n = app.ReadUnmapRanges(ranges);
            Assert.Equal([(1L, 3L), (10L, 1L), (20L, 2L)], ranges[..n]);
            app.CompleteUnmap(seq);
            Assert.True(pager.UnmapMailboxFree);
            // More runs than one request holds: the first UnmapSlots go, the caller learns how many pages that was.
            long[] scattered = [.. Enumerable.Range(0, RegionControlBlock.UnmapSlots + 10).Select(i => (long)i * 2)];
            Assert.Equal(RegionControlBlock.UnmapSlots, pager.TryPostUnmap(scattered));
            Assert.Equal(2, app.WaitForUnmapRequest(seq, timeoutMilliseconds: 1000));
            Assert.Equal(RegionControlBlock.UnmapSlots, app.ReadUnmapRanges(ranges));
            // No request: the wait times out and reports the same number.
            app.CompleteUnmap(2);
            Assert.Equal(2, app.WaitForUnmapRequest(2, timeoutMilliseconds: 20));
            // Stop wakes a waiter at once and closes the mailbox to the pager.
            var waiter = new Thread(() => app.WaitForUnmapRequest(2, timeoutMilliseconds: -1)) { IsBackground = true };
            waiter.Start();
            Thread.Sleep(50);
            app.StopUnmapper();
            Assert.True(waiter.Join(TimeSpan.FromSeconds(10)), "StopUnmapper did not wake the waiting thread");
            Assert.True(app.UnmapperStopping);
            Assert.Equal(0, pager.TryPostUnmap([7]));
        }
    }

    [Fact]
    public void AMoveRequestCarriesNegativeCounts()
    {
        // Tracked anonymous regions: the unmapper tells a move (region → shadow) from a free by the count's sign.
        using var app = RegionControlBlock.Create(1024, out var fd);
        using (fd)
        using (var pager = RegionControlBlock.Attach(fd, 1024))
        {
            Assert.Equal(4, pager.TryPostUnmap([7, 8, 9, 30], move: true));
            var ranges = new (long First, long Count)[RegionControlBlock.UnmapSlots];
            int n = app.ReadUnmapRanges(ranges);
            Assert.Equal([(7L, -3L), (30L, -1L)], ranges[..n]);
            app.CompleteUnmap(1);
            Assert.Equal(1, pager.TryPostUnmap([5]));
            n = app.ReadUnmapRanges(ranges);
            Assert.Equal([(5L, 1L)], ranges[..n]);
        }
    }

    [Fact]
    public void HelloRoundTrips()
    {
        var m = new HelloMessage(PagerRole.Standby, UffdFeatures.MinorShmem | UffdFeatures.Poison, 60_000, 3, 8, 64L << 20);
        var bytes = m.Write(s_buffer, 7).ToArray();
        Assert.Equal(PagerProtocol.HeaderSize + 36, bytes.Length);
        var r = ReaderOf(bytes, MessageType.Hello, 7);
        Assert.Equal(m, HelloMessage.Read(ref r));
    }

    [Fact]
    public void FlushAndEvictRoundTripAndEvictRefusesAnEmptyRange()
    {
        var flush = new FlushMessage(9);
        var r = ReaderOf(flush.Write(s_buffer, 3).ToArray(), MessageType.Flush, 3);
        Assert.Equal(flush, FlushMessage.Read(ref r));
        var evict = new EvictMessage(9, 16, 32);
        r = ReaderOf(evict.Write(s_buffer, 4).ToArray(), MessageType.Evict, 4);
        Assert.Equal(evict, EvictMessage.Read(ref r));
        var empty = new EvictMessage(9, 32, 32).Write(s_buffer, 5).ToArray();
        Assert.Throws<PagerException>(() =>
        {
            var rr = new ProtocolReader(empty);
            EvictMessage.Read(ref rr);
        });
    }

    [Fact]
    public void AddRegionRoundTripsWithItsStoreAndPolicy()
    {
        var store = new PageStoreDescriptor("file", new Dictionary<string, string> { ["path"] = "/data/é.bin", ["offset"] = "4096" });
        var m = new AddRegionMessage(42, ArenaKind.Shmem, 4096, 0x7f00_0000_0000, 1UL << 40, store, new ReadAheadPolicy(true, 16, 1024, false), TimeSpan.FromSeconds(30), 256L << 20, TrackWrites: true, CallerFills: true);
        var r = ReaderOf(m.Write(s_buffer, 9), MessageType.AddRegion, 9);
        var back = AddRegionMessage.Read(ref r);
        Assert.Equal((m.Id, m.Arena, m.PageSize, m.Address, m.Length, m.Policy), (back.Id, back.Arena, back.PageSize, back.Address, back.Length, back.Policy));
        Assert.Equal((m.MemoryBudget, m.TrackWrites, m.CallerFills), (back.MemoryBudget, back.TrackWrites, back.CallerFills));
        Assert.Equal(store.Kind, back.Store.Kind);
        Assert.Equal(store.Settings, back.Store.Settings);
        Assert.Null(back.Store.AssemblyPath);
        Assert.Equal(2, back.FdCount);

        var custom = PageStoreDescriptor.Custom("/x/y.dll", "A.B", new Dictionary<string, string> { ["k"] = "v" });
        var m2 = m with { Arena = ArenaKind.HugeTlb, PageSize = 2 << 20, Store = custom };
        r = ReaderOf(m2.Write(s_buffer, 10), MessageType.AddRegion, 10);
        var back2 = AddRegionMessage.Read(ref r);
        Assert.Equal(("/x/y.dll", "A.B"), (back2.Store.AssemblyPath, back2.Store.TypeName));

        // A window of 0 is the automatic one and crosses the wire as such.
        var m3 = m with { Policy = new ReadAheadPolicy(true, 16, 0, false) };
        r = ReaderOf(m3.Write(s_buffer, 11), MessageType.AddRegion, 11);
        Assert.Equal(0, AddRegionMessage.Read(ref r).Policy.MaxWindowPages);
    }

    [Fact]
    public void TheSmallMessagesRoundTrip()
    {
        var r = ReaderOf(new RemoveRegionMessage(5).Write(s_buffer, 1), MessageType.RemoveRegion, 1);
        Assert.Equal(new RemoveRegionMessage(5), RemoveRegionMessage.Read(ref r));
        r = ReaderOf(new PrefetchMessage(5, 10, 20).Write(s_buffer, 2), MessageType.Prefetch, 2);
        Assert.Equal(new PrefetchMessage(5, 10, 20), PrefetchMessage.Read(ref r));
        r = ReaderOf(new CancelPrefetchMessage(6).Write(s_buffer, 3), MessageType.CancelPrefetch, 3);
        Assert.Equal(new CancelPrefetchMessage(6), CancelPrefetchMessage.Read(ref r));
        r = ReaderOf(new DiscardMessage(7, 0, 512).Write(s_buffer, 4), MessageType.Discard, 4);
        Assert.Equal(new DiscardMessage(7, 0, 512), DiscardMessage.Read(ref r));
        r = ReaderOf(ArmMessage.Write(s_buffer, 5), MessageType.Arm, 5);
        _ = ArmMessage.Read(ref r);
        r = ReaderOf(new ReplyMessage(-1, "no such région").Write(s_buffer, 6), MessageType.Reply, 6);
        Assert.Equal(new ReplyMessage(-1, "no such région"), ReplyMessage.Read(ref r));
    }

    [Fact]
    public void MalformedMessagesAreRejectedWithTheReason()
    {
        var valid = new PrefetchMessage(1, 0, 8).Write(s_buffer, 1).ToArray();
        Assert.Contains("header", Assert.Throws<PagerException>(() => new ProtocolReader(valid.AsSpan(0, 8))).Message);
        Assert.Contains("truncated", Assert.Throws<PagerException>(() => { var r = new ProtocolReader(valid.AsSpan(0, valid.Length - 2)); PrefetchMessage.Read(ref r); }).Message);
        var longer = valid.Concat(new byte[4]).ToArray();
        Assert.Contains("trailing", Assert.Throws<PagerException>(() => { var r = new ProtocolReader(longer); PrefetchMessage.Read(ref r); }).Message);
        var backwards = new PrefetchMessage(1, 8, 0).Write(s_buffer, 1).ToArray();
        Assert.Contains("bad page range", Assert.Throws<PagerException>(() => { var r = new ProtocolReader(backwards); PrefetchMessage.Read(ref r); }).Message);
        var version = valid.ToArray();
        version[4] = 99;
        Assert.Contains("version", Assert.Throws<PagerException>(() => new ProtocolReader(version)).Message);

        var add = new AddRegionMessage(1, ArenaKind.Shmem, 4096, 0x10000, 8192, PageStoreDescriptor.Zero(), new ReadAheadPolicy(true, 16, 64, false), TimeSpan.FromSeconds(30));
        var badArena = add.Write(s_buffer, 1).ToArray();
        BinaryPrimitives.WriteUInt32LittleEndian(badArena.AsSpan(PagerProtocol.HeaderSize + 8), 9);
        Assert.Contains("arena", Assert.Throws<PagerException>(() => { var r = new ProtocolReader(badArena); AddRegionMessage.Read(ref r); }).Message);
        var badGeometry = (add with { Length = 4097 }).Write(s_buffer, 1).ToArray();
        Assert.Contains("geometry", Assert.Throws<PagerException>(() => { var r = new ProtocolReader(badGeometry); AddRegionMessage.Read(ref r); }).Message);
        var hugeString = add.Write(s_buffer, 1).ToArray();
        BinaryPrimitives.WriteUInt32LittleEndian(hugeString.AsSpan(PagerProtocol.HeaderSize + 32), uint.MaxValue); // the store kind's length
        Assert.Contains("truncated", Assert.Throws<PagerException>(() => { var r = new ProtocolReader(hugeString); AddRegionMessage.Read(ref r); }).Message);
    }

    [Fact]
    public void AnOversizedSettingIsAnErrorNotAnOverflow()
    {
        var store = new PageStoreDescriptor("file", new Dictionary<string, string> { ["path"] = new string('x', PagerProtocol.MaxMessage) });
        var add = new AddRegionMessage(1, ArenaKind.Shmem, 4096, 0x10000, 8192, store, new ReadAheadPolicy(true, 16, 64, false), TimeSpan.FromSeconds(30));
        Assert.Contains("exceeds", Assert.Throws<PagerException>(() => add.Write(s_buffer, 1)).Message);
    }

    /// <summary>PAGING_PROTOCOL_FUZZ_CASES (default 12,000): random, truncated and bit-flipped messages, each sent to
    /// a live pager, which must answer every one with an error Reply (or a success for the rare valid mutation) and
    /// still be running at the end.</summary>
    [Fact]
    public void APagerFedGarbageRepliesWithErrorsAndSurvives()
    {
        int cases = int.TryParse(Environment.GetEnvironmentVariable("PAGING_PROTOCOL_FUZZ_CASES"), out int n) ? n : 12_000;
        using var uffd = Userfaultfd.Create(UffdFeatures.None);
        var launch = PagerLaunch.Resolve(null);
        // Log level None: the pager would otherwise log every refused request.
        using var pager = PagerProcess.Start(launch, uffd, PagerRole.Active, new PagerTunables(0, 6, 2), TimeSpan.FromSeconds(30));
        var rng = new Random(12345);
        var seeds = new List<byte[]>
        {
            new HelloMessage(PagerRole.Active, UffdFeatures.None, 0, 6, 2).Write(s_buffer, 1).ToArray(),
            new AddRegionMessage(1, ArenaKind.Shmem, 4096, 0x10000, 8192, PageStoreDescriptor.Zero(), new ReadAheadPolicy(true, 16, 64, false), TimeSpan.FromSeconds(30)).Write(s_buffer, 1).ToArray(),
            new RemoveRegionMessage(1).Write(s_buffer, 1).ToArray(),
            new PrefetchMessage(1, 0, 2).Write(s_buffer, 1).ToArray(),
            new CancelPrefetchMessage(1).Write(s_buffer, 1).ToArray(),
            new DiscardMessage(1, 0, 1).Write(s_buffer, 1).ToArray(),
            ArmMessage.Write(s_buffer, 1).ToArray(),
        };
        int errors = 0;
        for (int i = 0; i < cases; i++)
        {
            byte[] message;
            var seed = seeds[rng.Next(seeds.Count)];
            switch (rng.Next(4))
            {
                case 0: // truncated
                    message = seed[..rng.Next(seed.Length)];
                    break;
                case 1: // bit flips past the version (a wrong version is too easy a rejection)
                    message = seed.ToArray();
                    for (int f = rng.Next(1, 4); f > 0; f--)
                    {
                        int at = rng.Next(message.Length);
                        message[at == 4 ? 0 : at] ^= (byte)(1 << rng.Next(8));
                    }
                    break;
                case 2: // a valid header of any type, then random bytes
                    message = new byte[PagerProtocol.HeaderSize + rng.Next(64)];
                    rng.NextBytes(message);
                    BinaryPrimitives.WriteUInt32LittleEndian(message, (uint)rng.Next(0, 9));
                    BinaryPrimitives.WriteUInt32LittleEndian(message.AsSpan(4), PagerProtocol.Version);
                    break;
                default: // pure noise
                    message = new byte[rng.Next(0, 200)];
                    rng.NextBytes(message);
                    break;
            }
            if (message.Length == 0)
            {
                message = [0];
            }
            try
            {
                pager.Request(message, [], TimeSpan.FromSeconds(10), $"fuzz case {i}");
            }
            catch (PagerException e) when (e.Message.Contains("refused", StringComparison.Ordinal))
            {
                errors++;
            }
        }
        Assert.False(pager.HasExited, "the pager died on a malformed message");
        Assert.True(errors > cases * 9 / 10, $"only {errors} of {cases} garbage messages were refused");
        // And it still serves a well-formed request.
        pager.Request(new CancelPrefetchMessage(12345).Write(s_buffer, pager.NextRequestId()), [], TimeSpan.FromSeconds(10), "a valid request after the fuzz");
    }
}
