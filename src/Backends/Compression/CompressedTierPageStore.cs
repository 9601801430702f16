using System.Buffers;
using System.Diagnostics.Metrics;
using System.Globalization;
using Paging.Stores;

namespace Paging.Backends.Compression;

/// <summary>
/// A compressed memory tier in front of another store (zswap in user space). Pages the memory budget evicts are handed
/// to it (<see cref="IPageStore.Retain"/>) and kept compressed (LZ4 or zstd; all-zero pages as a flag, incompressible
/// ones raw) within its own budget, oldest dropped first; a fault on such a page is served by decompressing it instead
/// of reading the store, and the entry leaves the tier (the page is resident again). The tier only ever holds bytes the
/// inner store has too (clean pages, or dirty ones after their write-back), so dropping an entry, or the whole tier in a
/// crash, loses nothing; a write to the store drops the entries it covers.
/// <para>Metrics (meter "Paging.Backends"): paging.tier.hits, paging.tier.misses, paging.tier.stored_bytes (compressed),
/// paging.tier.original_bytes.</para>
/// </summary>
public sealed class CompressedTierPageStore : DelegatingPageStore
{
    /// <summary>The store kind on the wire.</summary>
    public const string Kind = "tiered";

    /// <summary>The setting keys; every other setting goes to the inner store.</summary>
    public static class Settings
    {
        /// <summary>The inner store's kind.</summary>
        public const string Inner = "tier_inner";

        /// <summary>Bytes of compressed pages the tier keeps.</summary>
        public const string Bytes = "tier_bytes";

        /// <summary>"lz4" (default) or "zstd".</summary>
        public const string Codec = "tier_codec";
    }

    private static readonly Meter s_meter = new("Paging.Backends", "1.0");
    private static readonly Counter<long> s_hits = s_meter.CreateCounter<long>("paging.tier.hits", "{page}", "faults served from the compressed tier");
    private static readonly Counter<long> s_misses = s_meter.CreateCounter<long>("paging.tier.misses", "{page}", "faults the tier could not serve");
    private static readonly UpDownCounter<long> s_stored = s_meter.CreateUpDownCounter<long>("paging.tier.stored_bytes", "By", "compressed bytes in the tiers");
    private static readonly UpDownCounter<long> s_original = s_meter.CreateUpDownCounter<long>("paging.tier.original_bytes", "By", "bytes the tiers' pages hold uncompressed (ratio = original / stored)");

    [ThreadStatic] private static Entry[]? t_taken;

    private readonly PageCodec _codec;
    private readonly int _pageSize;
    private readonly Lock _lock = new();
    private readonly Dictionary<long, Entry> _entries = [];
    private readonly Queue<(long Page, long Stamp)> _age = new();
    private long _stamp;
    private long _storedBytes, _originalBytes, _hits, _misses;

    private readonly record struct Entry(byte[]? Data, int Length, bool Raw, long Stamp);

    /// <summary>Wraps <paramref name="inner"/> with a tier of <paramref name="capacityBytes"/> compressed bytes.</summary>
    public CompressedTierPageStore(IPageStore inner, long capacityBytes, PageCodec codec, int pageSize) : base(inner)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacityBytes, 1 << 20);
        ArgumentNullException.ThrowIfNull(codec);
        CapacityBytes = capacityBytes;
        _codec = codec;
        _pageSize = pageSize;
    }

    /// <summary>Adjusts the byte counts (under the lock) and the meter's.</summary>
    private void Account(long stored, long original)
    {
        _storedBytes += stored;
        _originalBytes += original;
        s_stored.Add(stored);
        s_original.Add(original);
    }

    /// <summary>Describes a tier of <paramref name="capacityBytes"/> over <paramref name="inner"/>.</summary>
    public static PageStoreDescriptor Describe(PageStoreDescriptor inner, long capacityBytes, PageCodecKind codec = PageCodecKind.Lz4)
    {
        ArgumentNullException.ThrowIfNull(inner);
        ArgumentOutOfRangeException.ThrowIfLessThan(capacityBytes, 1L << 20);
        if (codec is not (PageCodecKind.Lz4 or PageCodecKind.Zstd))
        {
            throw new ArgumentOutOfRangeException(nameof(codec), codec, "the tier compresses with lz4 or zstd");
        }
        var settings = new Dictionary<string, string>(inner.Settings, StringComparer.Ordinal)
        {
            [Settings.Inner] = inner.Kind,
            [Settings.Bytes] = capacityBytes.ToString(CultureInfo.InvariantCulture),
            [Settings.Codec] = codec == PageCodecKind.Zstd ? "zstd" : "lz4",
        };
        return new PageStoreDescriptor(Kind, settings, inner.AssemblyPath, inner.TypeName);
    }

    /// <summary>Builds the inner store, then the tier (inside the pager). A missing codec library is a configuration error.</summary>
    public static CompressedTierPageStore Create(PageStoreContext context, PageStoreRegistry registry)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(registry);
        string innerKind = context.Require(Settings.Inner);
        if (innerKind == Kind)
        {
            throw new PageStoreException(PageStoreError.Configuration, "a compressed tier cannot wrap another tier");
        }
        long capacity = context.GetInt64(Settings.Bytes, 64L << 20, min: 1L << 20);
        var codec = context.Get(Settings.Codec, "lz4") switch
        {
            "lz4" => PageCodec.For(PageCodecKind.Lz4),
            "zstd" => PageCodec.For(PageCodecKind.Zstd),
            var other => throw new PageStoreException(PageStoreError.Configuration, $"unknown tier codec '{other}' (lz4 or zstd)"),
        };
        var inner = registry.Create(new PageStoreContext(new PageStoreDescriptor(innerKind, context.Settings, context.Descriptor.AssemblyPath, context.Descriptor.TypeName), context.RegionLength, context.PageSize));
        return new CompressedTierPageStore(inner, capacity, codec, context.PageSize);
    }

    /// <summary>Compressed bytes the tier may hold.</summary>
    public long CapacityBytes { get; }

    /// <summary>Faults served from the tier.</summary>
    public long Hits => Volatile.Read(ref _hits);

    /// <summary>Reads the tier could not serve.</summary>
    public long Misses => Volatile.Read(ref _misses);

    /// <summary>Compressed bytes held now.</summary>
    public long StoredBytes
    {
        get
        {
            lock (_lock)
            {
                return _storedBytes;
            }
        }
    }

    /// <summary>Uncompressed bytes of the pages held now.</summary>
    public long OriginalBytes
    {
        get
        {
            lock (_lock)
            {
                return _originalBytes;
            }
        }
    }

    /// <inheritdoc />
    public override PageStoreCapabilities Capabilities =>
        (base.Capabilities | PageStoreCapabilities.RetainsEvicted) & ~PageStoreCapabilities.Asynchronous;

    /// <inheritdoc />
    public override void Retain(long offset, ReadOnlySpan<byte> pages)
    {
        int bound = _codec.MaxCompressedLength(_pageSize);
        byte[] scratch = ArrayPool<byte>.Shared.Rent(bound);
        try
        {
            for (int at = 0; at + _pageSize <= pages.Length; at += _pageSize)
            {
                var page = pages.Slice(at, _pageSize);
                long key = (offset + at) / _pageSize;
                Entry entry;
                if (!page.ContainsAnyExcept((byte)0))
                {
                    entry = new Entry(null, 0, Raw: false, 0); // a zero page: a flag, no bytes
                }
                else
                {
                    int n;
                    try
                    {
                        n = _codec.Compress(page, scratch, level: 1);
                    }
                    catch (PageStoreException)
                    {
                        continue; // not kept: the inner store has it
                    }
                    bool raw = n <= 0 || n >= _pageSize;
                    var data = raw ? page.ToArray() : scratch.AsSpan(0, n).ToArray();
                    entry = new Entry(data, data.Length, raw, 0);
                }
                Put(key, entry);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(scratch);
        }
    }

    private void Put(long key, Entry entry)
    {
        lock (_lock)
        {
            entry = entry with { Stamp = ++_stamp };
            if (_entries.Remove(key, out var old))
            {
                Account(-old.Length, -_pageSize);
            }
            _entries[key] = entry;
            _age.Enqueue((key, entry.Stamp));
            Account(entry.Length, _pageSize);
            // Oldest first, until under the capacity; stale queue items (re-put or taken pages) are skipped.
            while (_storedBytes > CapacityBytes && _age.TryDequeue(out var oldest))
            {
                if (_entries.TryGetValue(oldest.Page, out var e) && e.Stamp == oldest.Stamp)
                {
                    _entries.Remove(oldest.Page);
                    Account(-e.Length, -_pageSize);
                }
            }
        }
    }

    /// <inheritdoc />
    public override PageReadStatus Read(long offset, Span<byte> destination)
    {
        if (offset % _pageSize == 0 && destination.Length % _pageSize == 0 && TryTake(offset, destination))
        {
            return PageReadStatus.Data;
        }
        Interlocked.Add(ref _misses, destination.Length / _pageSize);
        s_misses.Add(destination.Length / _pageSize);
        return Inner.Read(offset, destination);
    }

    /// <inheritdoc />
    public override ValueTask<PageReadStatus> ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return new(Read(offset, destination.Span));
    }

    /// <inheritdoc />
    public override ValueTask ReadManyAsync(ReadOnlyMemory<PageReadRequest> requests, Memory<PageReadStatus> statuses, CancellationToken cancellationToken) =>
        IPageStore.ReadEachAsync(this, requests, statuses, cancellationToken);

    /// <summary>Serves [offset, offset+destination.Length) from the tier when every page of it is there; the entries
    /// leave the tier.</summary>
    private bool TryTake(long offset, Span<byte> destination)
    {
        long first = offset / _pageSize;
        int count = destination.Length / _pageSize;
        // A fill is at most 64 pages (256 KiB): one per-thread array, nothing allocated per fault.
        var taken = count <= 64 ? (t_taken ??= new Entry[64]) : new Entry[count];
        lock (_lock)
        {
            for (int i = 0; i < count; i++)
            {
                if (!_entries.ContainsKey(first + i))
                {
                    return false;
                }
            }
            for (int i = 0; i < count; i++)
            {
                _entries.Remove(first + i, out taken[i]);
                Account(-taken[i].Length, -_pageSize);
            }
        }
        for (int i = 0; i < count; i++)
        {
            var page = destination.Slice(i * _pageSize, _pageSize);
            var e = taken[i];
            if (e.Data is null)
            {
                page.Clear();
            }
            else if (e.Raw)
            {
                e.Data.AsSpan(0, _pageSize).CopyTo(page);
            }
            else
            {
                _codec.Decompress(e.Data.AsSpan(0, e.Length), page);
            }
        }
        Array.Clear(taken, 0, count);
        Interlocked.Add(ref _hits, count);
        s_hits.Add(count);
        return true;
    }

    /// <inheritdoc />
    public override void Write(long offset, ReadOnlySpan<byte> source)
    {
        // The store gets new bytes: a copy in the tier would be stale.
        long first = offset / _pageSize, end = (offset + source.Length + _pageSize - 1) / _pageSize;
        lock (_lock)
        {
            for (long p = first; p < end; p++)
            {
                if (_entries.Remove(p, out var old))
                {
                    Account(-old.Length, -_pageSize);
                }
            }
        }
        base.Write(offset, source);
    }
}
