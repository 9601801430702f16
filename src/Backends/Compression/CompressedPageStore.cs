using System.Buffers;
using System.Globalization;
using Paging.Simd;
using Paging.Stores;

namespace Paging.Backends.Compression;

/// <summary>
/// The pages of a pack (<see cref="PackFile"/>), read through another store that holds the pack file's bytes — a file
/// (<c>PageStoreDescriptor.Compressed(path)</c>) or any store, a network one included
/// (<c>PageStoreDescriptor.Compressed(PageStoreDescriptor.Http(url))</c>). A read fetches the stored bytes of the blocks it
/// covers in one inner read, checks each block's CRC-32C and decompresses it straight into the destination (the
/// staging mapping for shmem: no intermediate copy) when the destination covers the whole block; a read of part of a
/// block decompresses it into a pooled buffer and copies the part with <see cref="PageCopy"/>. A read wholly inside
/// zero blocks is <see cref="PageReadStatus.Zero"/> (mapped without a copy). Asynchronous when the inner store is.
/// Read-only.
/// </summary>
public sealed class CompressedPageStore : DelegatingPageStore
{
    /// <summary>The store kind on the wire.</summary>
    public const string Kind = "compressed";

    /// <summary>The setting keys: the inner store's kind; every other setting goes to the inner store.</summary>
    public static class Settings
    {
        /// <summary>The inner store's kind (default "file").</summary>
        public const string Inner = "pack_inner";
    }

    private readonly PackFile _pack;

    // The pack file's length, read once: a pack is immutable (a changed file fails its blocks' CRCs), and asking the
    // inner store each read would cost a file store an fstat per fault (~1 µs here, a third of an LZ4 page read).
    private readonly long _innerLength;

    // The last block a thread decoded for a read of part of it (a page fault inside a 64 KiB block): the next pages
    // of a sequential scan, or a read-ahead chunk that straddles two blocks, are copied from it instead of reading and
    // decompressing the block again (16 decodes of one 64 KiB block for 16 one-page faults, without it). One block per
    // fill thread: the pager's 32 threads hold at most 32 × the block size (2 MiB at 64 KiB).
    [ThreadStatic]
    private static byte[]? t_block;
    [ThreadStatic]
    private static CompressedPageStore? t_blockOwner;
    [ThreadStatic]
    private static long t_blockIndex;

    /// <summary>Opens the pack held by <paramref name="inner"/> (which this store then owns).</summary>
    public CompressedPageStore(IPageStore inner, string name) : base(inner)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        try
        {
            _innerLength = inner.Length;
            long innerLength = _innerLength;
            _pack = PackFile.Open(name, innerLength, (offset, destination) => ReadInner(inner, innerLength, offset, destination));
        }
        catch
        {
            inner.Dispose();
            throw;
        }
    }

    /// <summary>Describes the pack in the file at <paramref name="path"/>.</summary>
    public static PageStoreDescriptor Describe(string path) => Describe(FilePageStore.Describe(path));

    /// <summary>Describes a pack whose bytes another store holds.</summary>
    public static PageStoreDescriptor Describe(PageStoreDescriptor inner)
    {
        ArgumentNullException.ThrowIfNull(inner);
        if (inner.Kind == Kind || inner.Settings.ContainsKey(Settings.Inner))
        {
            throw new ArgumentException("a compressed store cannot hold another compressed store", nameof(inner));
        }
        var settings = new Dictionary<string, string>(inner.Settings, StringComparer.Ordinal) { [Settings.Inner] = inner.Kind };
        return new PageStoreDescriptor(Kind, settings);
    }

    /// <summary>Builds the inner store from the same settings, then opens the pack (inside the pager).</summary>
    public static CompressedPageStore Create(PageStoreContext context, PageStoreRegistry registry)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(registry);
        string innerKind = context.Get(Settings.Inner, FilePageStore.Kind);
        if (innerKind == Kind)
        {
            throw new PageStoreException(PageStoreError.Configuration, "a compressed store cannot hold another compressed store");
        }
        var innerSettings = context.Settings.Where(s => s.Key != Settings.Inner).ToDictionary(s => s.Key, s => s.Value, StringComparer.Ordinal);
        var inner = registry.Create(new PageStoreContext(new PageStoreDescriptor(innerKind, innerSettings), long.MaxValue / 2, 4096));
        string name = innerSettings.TryGetValue("path", out var path) ? path : innerSettings.TryGetValue("url", out var url) ? url : innerKind;
        return new CompressedPageStore(inner, name);
    }

    /// <summary>The pack's layout.</summary>
    public PackFile Pack => _pack;

    /// <inheritdoc />
    public override long Length => _pack.Length;

    /// <inheritdoc />
    public override PageStoreCapabilities Capabilities => Inner.Capabilities & PageStoreCapabilities.Asynchronous;

    private static int ReadInner(IPageStore inner, long innerLength, long offset, Span<byte> destination)
    {
        long available = Math.Clamp(innerLength - offset, 0, destination.Length);
        if (available == 0)
        {
            return 0;
        }
        var status = inner.Read(offset, destination[..(int)available]);
        if (status == PageReadStatus.Zero)
        {
            destination[..(int)available].Clear();
        }
        return (int)available;
    }

    /// <summary>The blocks [first, end) that [offset, offset + length) covers, and the pack-file range of their
    /// stored bytes.</summary>
    private (long First, long End, long StoredOffset, int StoredLength) Span(long offset, int length)
    {
        long stop = Math.Min(offset + length, _pack.Length);
        long first = offset >> _pack.BlockShift;
        long end = stop <= offset ? first : (stop + _pack.BlockSize - 1) >> _pack.BlockShift;
        if (first >= end)
        {
            return (first, first, 0, 0);
        }
        var blocks = _pack.Blocks;
        long storedOffset = blocks[(int)first].Offset;
        long storedEnd = blocks[(int)(end - 1)].Offset + blocks[(int)(end - 1)].Length;
        return (first, end, storedOffset, checked((int)(storedEnd - storedOffset)));
    }

    private bool AllZero(long first, long end)
    {
        for (long b = first; b < end; b++)
        {
            if (_pack.Blocks[(int)b].Kind != PackBlockKind.Zero)
            {
                return false;
            }
        }
        return true;
    }

    /// <inheritdoc />
    public override PageReadStatus Read(long offset, Span<byte> destination)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        var (first, end, storedOffset, storedLength) = Span(offset, destination.Length);
        if (first >= end || AllZero(first, end))
        {
            return PageReadStatus.Zero;
        }
        if (TryCopyCached(offset, destination, first, end))
        {
            return PageReadStatus.Data;
        }
        byte[] stored = ArrayPool<byte>.Shared.Rent(Math.Max(storedLength, 1));
        try
        {
            int got = ReadInner(Inner, _innerLength, storedOffset, stored.AsSpan(0, storedLength));
            Decode(offset, destination, first, end, stored.AsSpan(0, got), storedOffset);
            return PageReadStatus.Data;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(stored);
        }
    }

    /// <inheritdoc />
    public override async ValueTask<PageReadStatus> ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        if ((Inner.Capabilities & PageStoreCapabilities.Asynchronous) == 0)
        {
            cancellationToken.ThrowIfCancellationRequested();
            return Read(offset, destination.Span);
        }
        var (first, end, storedOffset, storedLength) = Span(offset, destination.Length);
        if (first >= end || AllZero(first, end))
        {
            return PageReadStatus.Zero;
        }
        if (TryCopyCached(offset, destination.Span, first, end))
        {
            return PageReadStatus.Data;
        }
        byte[] stored = ArrayPool<byte>.Shared.Rent(Math.Max(storedLength, 1));
        try
        {
            int got = (int)Math.Clamp(_innerLength - storedOffset, 0, storedLength);
            if (got > 0 && await Inner.ReadAsync(storedOffset, stored.AsMemory(0, got), cancellationToken).ConfigureAwait(false) == PageReadStatus.Zero)
            {
                stored.AsSpan(0, got).Clear();
            }
            Decode(offset, destination.Span, first, end, stored.AsSpan(0, got), storedOffset);
            return PageReadStatus.Data;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(stored);
        }
    }

    /// <summary>A read inside the one block this thread decoded last: copied from it.</summary>
    private bool TryCopyCached(long offset, Span<byte> destination, long first, long end)
    {
        if (end - first != 1 || t_blockOwner != this || t_blockIndex != first || t_block is null)
        {
            return false;
        }
        long blockStart = first << _pack.BlockShift;
        long hi = Math.Min(offset + destination.Length, blockStart + _pack.BlockLength(first));
        var target = destination[..(int)(hi - offset)];
        PageCopy.Copy(t_block.AsSpan((int)(offset - blockStart), target.Length), target, nonTemporal: false);
        destination[target.Length..].Clear();
        return true;
    }

    /// <summary>Decodes blocks [first, end) into the part of <paramref name="destination"/> they overlap; bytes past
    /// the pack's length are zero.</summary>
    private void Decode(long offset, Span<byte> destination, long first, long end, ReadOnlySpan<byte> stored, long storedOffset)
    {
        {
            for (long b = first; b < end; b++)
            {
                var block = _pack.Blocks[(int)b];
                long blockStart = b << _pack.BlockShift;
                int blockLength = _pack.BlockLength(b);
                long from = block.Offset - storedOffset;
                var bytes = from + block.Length <= stored.Length ? stored.Slice((int)from, block.Length) : stored[(int)Math.Min(from, stored.Length)..];
                long lo = Math.Max(offset, blockStart), hi = Math.Min(offset + destination.Length, blockStart + blockLength);
                var target = destination.Slice((int)(lo - offset), (int)(hi - lo));
                if (lo == blockStart && hi == blockStart + blockLength)
                {
                    _pack.Decode(b, bytes, target); // the whole block: straight into the destination
                }
                else
                {
                    if (t_blockOwner != this || t_blockIndex != b)
                    {
                        if (t_block is null || t_block.Length < _pack.BlockSize)
                        {
                            t_block = new byte[_pack.BlockSize];
                        }
                        t_blockOwner = null; // invalid until decoded: a corrupt block must not stay cached
                        _pack.Decode(b, bytes, t_block.AsSpan(0, blockLength));
                        t_blockOwner = this;
                        t_blockIndex = b;
                    }
                    PageCopy.Copy(t_block.AsSpan((int)(lo - blockStart), (int)(hi - lo)), target, nonTemporal: false);
                }
            }
            long covered = Math.Clamp(_pack.Length - offset, 0, destination.Length);
            destination[(int)covered..].Clear();
        }
    }

    /// <inheritdoc />
    public override void Write(long offset, ReadOnlySpan<byte> source) =>
        throw new PageStoreException(PageStoreError.ReadOnly, $"{_pack.Name} is a pack: packs are written whole by the pack tool, not page by page");

    /// <summary>A short description for logs.</summary>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"pack {_pack.Name}: {_pack.Blocks.Length} blocks of {_pack.BlockSize}, {_pack.Length} bytes in {_pack.StoredBytes}");
}
