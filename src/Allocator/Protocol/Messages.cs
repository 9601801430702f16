using Paging.Policies;
using Paging.Stores;

namespace Paging.Protocol;

// One type per message, each writing and reading itself; docs/PROTOCOL.md is the specification they follow. A Read
// validates what it can without context (enum values, geometry, counts) and ends with End(): a malformed message is a
// PagerException, which the pager turns into an error Reply.

/// <summary>Hello: the first message to a new pager. fds: [userfaultfd].</summary>
/// <param name="Role">Active or standby.</param>
/// <param name="Features">The features the uffd was opened with (the pager cannot ask the kernel again).</param>
/// <param name="SpinNanoseconds">How long the fault thread keeps polling after a batch before sleeping (0 = never).</param>
/// <param name="LogLevel">The pager's minimum log level (Microsoft.Extensions.Logging.LogLevel, 0 Trace … 6 None).</param>
/// <param name="FillThreads">Fill threads the pager runs (1 … 256).</param>
/// <param name="MemoryBudget">Bytes all regions of the runtime may keep resident together (0: no shared budget).</param>
internal readonly record struct HelloMessage(PagerRole Role, UffdFeatures Features, long SpinNanoseconds, int LogLevel, int FillThreads, long MemoryBudget = 0)
{
    public const int FdCount = 1;

    public ReadOnlySpan<byte> Write(Span<byte> buffer, ulong requestId)
    {
        var w = new ProtocolWriter(buffer, MessageType.Hello, requestId);
        w.U32((uint)Role);
        w.U64((ulong)Features);
        w.U64((ulong)SpinNanoseconds);
        w.I32(LogLevel);
        w.U32((uint)FillThreads);
        w.U64((ulong)MemoryBudget);
        return buffer[..w.Length];
    }

    public static HelloMessage Read(ref ProtocolReader r)
    {
        var role = (PagerRole)r.U32();
        var features = (UffdFeatures)r.U64();
        long spin = (long)r.U64();
        int level = r.I32();
        uint threads = r.U32();
        ulong budget = r.U64();
        r.End();
        if (budget > long.MaxValue)
        {
            throw new PagerException($"Hello: a memory budget of {budget} bytes is out of range");
        }
        if (threads is < 1 or > 256)
        {
            throw new PagerException($"Hello: {threads} fill threads is outside 1 … 256");
        }
        if (role is not (PagerRole.Active or PagerRole.Standby))
        {
            throw new PagerException($"Hello: unknown role {(uint)role}");
        }
        if (spin is < 0 or > 1_000_000_000)
        {
            throw new PagerException($"Hello: spin of {spin} ns is outside [0, 1 s]");
        }
        if (level is < 0 or > 6)
        {
            throw new PagerException($"Hello: log level {level} is outside 0 (Trace) … 6 (None)");
        }
        return new HelloMessage(role, features, spin, level, (int)threads, (long)budget);
    }
}

/// <summary>AddRegion: a registered range to serve. fds: [control block memfd] for anonymous arenas,
/// [control block memfd, arena memfd] for shmem and hugetlbfs.</summary>
/// <param name="Id">The region's id.</param>
/// <param name="Arena">Its arena kind.</param>
/// <param name="PageSize">Its page size.</param>
/// <param name="Address">Its start in the application.</param>
/// <param name="Length">Its length in bytes.</param>
/// <param name="Store">The store to build.</param>
/// <param name="Policy">Read-ahead settings.</param>
/// <param name="ReadTimeout">The deadline of one store read.</param>
/// <param name="MemoryBudget">Bytes the region may keep resident (0: none of its own).</param>
/// <param name="TrackWrites">The range is registered for write-protection (WP_ASYNC): pages are mapped protected, the
/// pager learns which were written with PAGEMAP_SCAN, writes them back and may evict them.</param>
/// <param name="ShadowAddress">A tracked anonymous region's shadow (as long as the region, registered with the same
/// uffd): where eviction moves pages with UFFDIO_MOVE; 0 for other regions.</param>
/// <param name="CallerFills">The application also reads pages in itself and installs them with UFFDIO_COPY (shmem,
/// synchronous stores): the pager then fills with UFFDIO_COPY too (atomic, so the two can race), never evicts a page an
/// application thread is reading in, and runs the clock on the referenced bitmap instead of unmapping pages.</param>
internal sealed record AddRegionMessage(
    ulong Id, ArenaKind Arena, int PageSize, ulong Address, ulong Length, PageStoreDescriptor Store, ReadAheadPolicy Policy, TimeSpan ReadTimeout,
    long MemoryBudget = 0, bool TrackWrites = false, ulong ShadowAddress = 0, bool CallerFills = false)
{
    public int FdCount => Arena == ArenaKind.Anonymous ? 1 : 2;

    public long Pages => (long)(Length / (ulong)PageSize);

    public ReadOnlySpan<byte> Write(Span<byte> buffer, ulong requestId)
    {
        var w = new ProtocolWriter(buffer, MessageType.AddRegion, requestId);
        w.U64(Id);
        w.U32((uint)Arena);
        w.U32((uint)PageSize);
        w.U64(Address);
        w.U64(Length);
        w.Str(Store.Kind);
        w.Str(Store.AssemblyPath);
        w.Str(Store.TypeName);
        w.U32((uint)Store.Settings.Count);
        foreach (var (k, v) in Store.Settings)
        {
            w.Str(k);
            w.Str(v);
        }
        w.Bool(Policy.ReadAhead);
        w.U64((ulong)Policy.BlockPages);
        w.U64((ulong)Policy.MaxWindowPages);
        w.Bool(Policy.StreamAll);
        w.U64((ulong)ReadTimeout.TotalMilliseconds);
        w.U64((ulong)MemoryBudget);
        w.Bool(TrackWrites);
        w.U64(ShadowAddress);
        w.Bool(CallerFills);
        return buffer[..w.Length];
    }

    public static AddRegionMessage Read(ref ProtocolReader r)
    {
        ulong id = r.U64();
        var arena = (ArenaKind)r.U32();
        uint pageSize = r.U32();
        ulong address = r.U64();
        ulong length = r.U64();
        string kind = r.Str(), assembly = r.Str(), type = r.Str();
        uint count = r.U32();
        if (count > PagerProtocol.MaxSettings)
        {
            throw new PagerException($"AddRegion {id}: {count} store settings is more than {PagerProtocol.MaxSettings}");
        }
        var settings = new Dictionary<string, string>((int)count, StringComparer.Ordinal);
        for (uint i = 0; i < count; i++)
        {
            string key = r.Str();
            if (!settings.TryAdd(key, r.Str()))
            {
                throw new PagerException($"AddRegion {id}: the store setting '{key}' appears twice");
            }
        }
        bool readAhead = r.Bool();
        ulong block = r.U64(), window = r.U64();
        bool streamAll = r.Bool();
        ulong timeoutMs = r.U64();
        ulong budget = r.U64();
        bool track = r.Bool();
        ulong shadow = r.U64();
        bool callerFills = r.Bool();
        r.End();
        if (budget > long.MaxValue)
        {
            throw new PagerException($"AddRegion {id}: a memory budget of {budget} bytes is out of range");
        }
        if (timeoutMs is < 1 or > 24UL * 3600 * 1000)
        {
            throw new PagerException($"AddRegion {id}: a read timeout of {timeoutMs} ms is outside 1 ms … 24 h");
        }
        if (!Enum.IsDefined(arena))
        {
            throw new PagerException($"AddRegion {id}: unknown arena kind {(uint)arena}");
        }
        uint expectedPage = arena == ArenaKind.HugeTlb ? 2u << 20 : 4096u;
        if (pageSize != expectedPage || length == 0 || length % pageSize != 0 || address % pageSize != 0 || address + length < address)
        {
            throw new PagerException($"AddRegion {id}: bad geometry ({arena}, page size {pageSize}, address 0x{address:x}, length {length})");
        }
        if (block < 1 || block > (1UL << 40) || window > (1UL << 40)) // window 0: automatic
        {
            throw new PagerException($"AddRegion {id}: bad prefetch policy (block {block} pages, window {window} pages)");
        }
        if (kind.Length == 0)
        {
            throw new PagerException($"AddRegion {id}: the store kind is empty");
        }
        var store = new PageStoreDescriptor(kind, settings, assembly.Length > 0 ? assembly : null, type.Length > 0 ? type : null);
        return new AddRegionMessage(id, arena, (int)pageSize, address, length, store, new ReadAheadPolicy(readAhead, (long)block, (long)window, streamAll),
            TimeSpan.FromMilliseconds(timeoutMs), (long)budget, track, shadow, callerFills);
    }
}

/// <summary>RemoveRegion: stop serving a region (the application has unregistered it). No fds.</summary>
internal readonly record struct RemoveRegionMessage(ulong Id)
{
    public ReadOnlySpan<byte> Write(Span<byte> buffer, ulong requestId)
    {
        var w = new ProtocolWriter(buffer, MessageType.RemoveRegion, requestId);
        w.U64(Id);
        return buffer[..w.Length];
    }

    public static RemoveRegionMessage Read(ref ProtocolReader r)
    {
        var m = new RemoveRegionMessage(r.U64());
        r.End();
        return m;
    }
}

/// <summary>Arm: makes a standby watch the active pager. fds: [pidfd of the active pager].</summary>
internal readonly record struct ArmMessage
{
    public const int FdCount = 1;

    public static ReadOnlySpan<byte> Write(Span<byte> buffer, ulong requestId)
    {
        var w = new ProtocolWriter(buffer, MessageType.Arm, requestId);
        return buffer[..w.Length];
    }

    public static ArmMessage Read(ref ProtocolReader r)
    {
        r.End();
        return default;
    }
}

/// <summary>Prefetch: fill and map pages [First, End) of a region in the background. No fds.</summary>
internal readonly record struct PrefetchMessage(ulong Id, long First, long End)
{
    public ReadOnlySpan<byte> Write(Span<byte> buffer, ulong requestId)
    {
        var w = new ProtocolWriter(buffer, MessageType.Prefetch, requestId);
        w.U64(Id);
        w.U64((ulong)First);
        w.U64((ulong)End);
        return buffer[..w.Length];
    }

    public static PrefetchMessage Read(ref ProtocolReader r)
    {
        ulong id = r.U64(), first = r.U64(), end = r.U64();
        r.End();
        if (first > end || end > long.MaxValue)
        {
            throw new PagerException($"Prefetch on region {id}: bad page range [{first}, {end})");
        }
        return new PrefetchMessage(id, (long)first, (long)end);
    }
}

/// <summary>Discard: punch pages [First, End) out of a shmem or hugetlbfs arena (and clear their page-table bits),
/// done by the pager between fills so no fill lands half in a punched page. No fds.</summary>
internal readonly record struct DiscardMessage(ulong Id, long First, long End)
{
    public ReadOnlySpan<byte> Write(Span<byte> buffer, ulong requestId)
    {
        var w = new ProtocolWriter(buffer, MessageType.Discard, requestId);
        w.U64(Id);
        w.U64((ulong)First);
        w.U64((ulong)End);
        return buffer[..w.Length];
    }

    public static DiscardMessage Read(ref ProtocolReader r)
    {
        ulong id = r.U64(), first = r.U64(), end = r.U64();
        r.End();
        if (first >= end || end > long.MaxValue)
        {
            throw new PagerException($"Discard on region {id}: bad page range [{first}, {end})");
        }
        return new DiscardMessage(id, (long)first, (long)end);
    }
}

/// <summary>Flush: write every page written before this request back to the store and make it durable; the reply
/// comes when it is (or says which write failed). No fds.</summary>
internal readonly record struct FlushMessage(ulong Id)
{
    public ReadOnlySpan<byte> Write(Span<byte> buffer, ulong requestId)
    {
        var w = new ProtocolWriter(buffer, MessageType.Flush, requestId);
        w.U64(Id);
        return buffer[..w.Length];
    }

    public static FlushMessage Read(ref ProtocolReader r)
    {
        var m = new FlushMessage(r.U64());
        r.End();
        return m;
    }
}

/// <summary>Evict: write pages [First, End) back if dirty, then drop them (the next touch reads them again). No fds.</summary>
internal readonly record struct EvictMessage(ulong Id, long First, long End)
{
    public ReadOnlySpan<byte> Write(Span<byte> buffer, ulong requestId)
    {
        var w = new ProtocolWriter(buffer, MessageType.Evict, requestId);
        w.U64(Id);
        w.U64((ulong)First);
        w.U64((ulong)End);
        return buffer[..w.Length];
    }

    public static EvictMessage Read(ref ProtocolReader r)
    {
        ulong id = r.U64(), first = r.U64(), end = r.U64();
        r.End();
        if (first >= end || end > long.MaxValue)
        {
            throw new PagerException($"Evict on region {id}: bad page range [{first}, {end})");
        }
        return new EvictMessage(id, (long)first, (long)end);
    }
}

/// <summary>CancelPrefetch: drop a region's queued background work. No fds.</summary>
internal readonly record struct CancelPrefetchMessage(ulong Id)
{
    public ReadOnlySpan<byte> Write(Span<byte> buffer, ulong requestId)
    {
        var w = new ProtocolWriter(buffer, MessageType.CancelPrefetch, requestId);
        w.U64(Id);
        return buffer[..w.Length];
    }

    public static CancelPrefetchMessage Read(ref ProtocolReader r)
    {
        var m = new CancelPrefetchMessage(r.U64());
        r.End();
        return m;
    }
}

/// <summary>Reply: the pager's answer to every request, with the request's id. Status 0 is success; otherwise an
/// errno (positive) or -1, and the message says why. No fds.</summary>
internal readonly record struct ReplyMessage(int Status, string Message)
{
    /// <summary>Longest message text sent (the rest is cut): keeps any reply far below <see cref="PagerProtocol.MaxMessage"/>.</summary>
    public const int MaxText = 4000;

    public ReadOnlySpan<byte> Write(Span<byte> buffer, ulong requestId)
    {
        var w = new ProtocolWriter(buffer, MessageType.Reply, requestId);
        w.I32(Status);
        w.Str(Message.Length > MaxText ? Message[..MaxText] : Message);
        return buffer[..w.Length];
    }

    public static ReplyMessage Read(ref ProtocolReader r)
    {
        var m = new ReplyMessage(r.I32(), r.Str());
        r.End();
        return m;
    }
}
