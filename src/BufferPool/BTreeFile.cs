using System.Buffers.Binary;
using System.Runtime.CompilerServices;

namespace Paging.BufferPool;

/// <summary>
/// The B+tree of the buffer-pool benchmark (vmcache's workload): 4 KiB nodes, 8-byte keys, 120-byte values, built
/// bottom-up into a file. Page 0 is the meta page (magic, root, height, key count); a node starts with a 16-byte header
/// (kind, count); a leaf holds up to 31 (key, value) pairs of 128 bytes, an inner node up to 255 (first key, child)
/// pairs. Keys are 0 … Keys−1; a value's first 8 bytes are <see cref="ValueWord"/>(key), the next 8 a version the
/// update workload increments.
/// </summary>
public static unsafe class BTreeFile
{
    /// <summary>"PGBTREE1".</summary>
    public const ulong Magic = 0x3145455254424750;
    /// <summary>Node size.</summary>
    public const int PageSize = 4096;

    /// <summary>Node header: u32 kind, u32 count, 8 reserved bytes.</summary>
    public const int HeaderBytes = 16;

    /// <summary>Value size (the workload's 120 bytes).</summary>
    public const int ValueBytes = 120;

    /// <summary>A leaf entry: key and value.</summary>
    public const int LeafEntryBytes = 8 + ValueBytes;

    /// <summary>Entries per leaf: 31.</summary>
    public const int LeafCapacity = (PageSize - HeaderBytes) / LeafEntryBytes;

    /// <summary>Entries per inner node (first key, child page): 255.</summary>
    public const int InnerCapacity = (PageSize - HeaderBytes) / 16;
    private const uint LeafKind = 1, InnerKind = 2;

    /// <summary>The first word of key's value: distinct per key, so a lookup that lands on a wrong entry is caught.</summary>
    public static ulong ValueWord(long key) => ((ulong)key * 0x9E3779B97F4A7C15UL) ^ 0x5A5A_1234_0000_0001UL;

    /// <summary>Writes a tree of <paramref name="keys"/> keys to <paramref name="path"/> (the file is replaced). Returns its page count.</summary>
    public static long Build(string path, long keys, Action<double>? progress = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(keys, 1);
        long leaves = (keys + LeafCapacity - 1) / LeafCapacity;
        var levels = new List<(long First, long Count)> { (1, leaves) };
        long next = 1 + leaves;
        while (levels[^1].Count > 1)
        {
            long count = (levels[^1].Count + InnerCapacity - 1) / InnerCapacity;
            levels.Add((next, count));
            next += count;
        }
        long pages = next;
        using var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.Read, 1 << 20);
        var page = new byte[PageSize];
        // Meta.
        BinaryPrimitives.WriteUInt64LittleEndian(page, Magic);
        BinaryPrimitives.WriteInt64LittleEndian(page.AsSpan(8), levels[^1].First);
        BinaryPrimitives.WriteInt32LittleEndian(page.AsSpan(16), levels.Count);
        BinaryPrimitives.WriteInt64LittleEndian(page.AsSpan(24), keys);
        file.Write(page);
        for (long leaf = 0; leaf < leaves; leaf++)
        {
            Array.Clear(page);
            long first = leaf * LeafCapacity;
            int count = (int)Math.Min(LeafCapacity, keys - first);
            BinaryPrimitives.WriteUInt32LittleEndian(page, LeafKind);
            BinaryPrimitives.WriteUInt32LittleEndian(page.AsSpan(4), (uint)count);
            for (int i = 0; i < count; i++)
            {
                var e = page.AsSpan(HeaderBytes + i * LeafEntryBytes, LeafEntryBytes);
                BinaryPrimitives.WriteInt64LittleEndian(e, first + i);
                BinaryPrimitives.WriteUInt64LittleEndian(e[8..], ValueWord(first + i));
                e[24..].Fill((byte)(first + i));
            }
            file.Write(page);
            if (progress is not null && (leaf & 4095) == 0)
            {
                progress((double)leaf / pages);
            }
        }
        for (int level = 1; level < levels.Count; level++)
        {
            var (childFirst, childCount) = levels[level - 1];
            long keysPerChild = LeafCapacity;
            for (int l = 1; l < level; l++)
            {
                keysPerChild *= InnerCapacity;
            }
            for (long node = 0; node < levels[level].Count; node++)
            {
                Array.Clear(page);
                long firstChild = node * InnerCapacity;
                int count = (int)Math.Min(InnerCapacity, childCount - firstChild);
                BinaryPrimitives.WriteUInt32LittleEndian(page, InnerKind);
                BinaryPrimitives.WriteUInt32LittleEndian(page.AsSpan(4), (uint)count);
                for (int i = 0; i < count; i++)
                {
                    var e = page.AsSpan(HeaderBytes + i * 16, 16);
                    BinaryPrimitives.WriteInt64LittleEndian(e, (firstChild + i) * keysPerChild);
                    BinaryPrimitives.WriteInt64LittleEndian(e[8..], childFirst + firstChild + i);
                }
                file.Write(page);
            }
        }
        file.Flush(flushToDisk: true);
        progress?.Invoke(1);
        return pages;
    }

    /// <summary>Keys a tree of <paramref name="bytes"/> bytes holds (leaves dominate: 31 keys per 4 KiB).</summary>
    public static long KeysFor(long bytes) => Math.Max(1, bytes / PageSize * LeafCapacity);

    /// <summary>The page that holds <paramref name="key"/>'s entry and the entry's offset in it, descending from the
    /// root through <paramref name="pages"/>. Throws <see cref="InvalidDataException"/> on a node that is not one.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static byte* FindValue<TPages>(ref TPages pages, long key, out long leafPage) where TPages : struct, IPageAccess
    {
        byte* meta = pages.Fix(0);
        long node = *(long*)(meta + 8);
        int height = *(int*)(meta + 16);
        pages.Unfix(0, dirty: false);
        for (int level = height; level > 1; level--)
        {
            byte* p = pages.Fix(node);
            if (*(uint*)p != InnerKind)
            {
                throw new InvalidDataException($"page {node} should be an inner node");
            }
            int count = (int)*(uint*)(p + 4);
            // The last entry whose first key is <= key.
            int lo = 0, hi = count - 1;
            while (lo < hi)
            {
                int mid = (lo + hi + 1) >>> 1;
                if (*(long*)(p + HeaderBytes + mid * 16) <= key)
                {
                    lo = mid;
                }
                else
                {
                    hi = mid - 1;
                }
            }
            long child = *(long*)(p + HeaderBytes + lo * 16 + 8);
            pages.Unfix(node, dirty: false);
            node = child;
        }
        byte* leaf = pages.Fix(node);
        if (*(uint*)leaf != LeafKind)
        {
            throw new InvalidDataException($"page {node} should be a leaf");
        }
        int n = (int)*(uint*)(leaf + 4);
        int a = 0, b = n - 1;
        while (a <= b)
        {
            int mid = (a + b) >>> 1;
            long k = *(long*)(leaf + HeaderBytes + mid * LeafEntryBytes);
            if (k == key)
            {
                leafPage = node;
                return leaf + HeaderBytes + mid * LeafEntryBytes + 8; // still fixed: the caller unfixes leafPage
            }
            if (k < key)
            {
                a = mid + 1;
            }
            else
            {
                b = mid - 1;
            }
        }
        pages.Unfix(node, dirty: false);
        throw new InvalidDataException($"key {key} is not in leaf {node}");
    }
}

/// <summary>How the B+tree reaches its pages: a pointer per page id while fixed.</summary>
public unsafe interface IPageAccess
{
    /// <summary>The page's bytes, valid until <see cref="Unfix"/>.</summary>
    byte* Fix(long pageId);

    /// <summary>Done with the page; <paramref name="dirty"/> when it was written.</summary>
    void Unfix(long pageId, bool dirty);
}

/// <summary>Pages at fixed addresses (a Paging region, an mmap): fixing is pointer arithmetic.</summary>
public readonly unsafe struct MappedPages(nint baseAddress) : IPageAccess
{
    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public byte* Fix(long pageId) => (byte*)baseAddress + pageId * BTreeFile.PageSize;

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Unfix(long pageId, bool dirty)
    {
    }
}

/// <summary>The pages of a <see cref="PagedFile"/> reached through <see cref="PagedFile.Fetch"/>: a missing page is read
/// on the calling thread, a resident one is marked used for the eviction clock.</summary>
public readonly unsafe struct FetchedPages(PagedFile file) : IPageAccess
{
    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public byte* Fix(long pageId) => file.Fetch(pageId);

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Unfix(long pageId, bool dirty)
    {
    }
}
