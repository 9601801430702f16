using Paging.Interop;

namespace Paging.Engine;

/// <summary>
/// The in-flight table: one bit per page, set while a fill (or a Discard) owns the page, in pager-private memory
/// (anonymous, MAP_NORESERVE: a 1 TiB region's 32 MiB of bits commit only where pages are touched). A fault or a
/// read-ahead that finds a page claimed joins the fill in flight — the fill's UFFDIO_CONTINUE/COPY wakes every
/// thread waiting on its range — so a page is never filled twice at once, and no lock is taken per page.
/// </summary>
internal sealed class PageClaims(long pages) : PageBits(pages)
{
    /// <summary>Claims one page; false when someone else holds it.</summary>
    public bool TryClaim(long page) => TrySet(page);

    public bool IsClaimed(long page) => IsSet(page);

    /// <summary>Releases pages [first, first+count), a word at a time.</summary>
    public void Release(long first, long count) => Clear(first, count);
}

/// <summary>One bit per page in pager-private memory (anonymous, MAP_NORESERVE: committed only where pages are
/// touched), set and cleared atomically: the claim table, and the eviction clock's "unmapped, not touched since" bits.</summary>
internal unsafe class PageBits : IDisposable
{
    private readonly Mapping _mapping;
    private readonly ulong* _bits;

    public PageBits(long pages)
    {
        Pages = pages;
        long bytes = Math.Max(4096, (pages + 63) / 64 * 8 + 4095 & ~4095L);
        _mapping = Mapping.Map(bytes, Protection.ReadWrite, MapFlags.Private | MapFlags.Anonymous | MapFlags.NoReserve, null, 0, "mmap of a page claim table");
        _bits = (ulong*)_mapping.Pointer;
    }

    public long Pages { get; }

    /// <summary>Sets one bit; false when it was set already.</summary>
    public bool TrySet(long page)
    {
        ulong bit = 1UL << (int)(page & 63);
        return (Interlocked.Or(ref _bits[page >> 6], bit) & bit) == 0;
    }

    public bool IsSet(long page) => (Volatile.Read(ref _bits[page >> 6]) & (1UL << (int)(page & 63))) != 0;

    /// <summary>Clears bits [first, first+count), a word at a time.</summary>
    public void Clear(long first, long count)
    {
        long end = first + count;
        while (first < end)
        {
            int bit = (int)(first & 63);
            int n = (int)Math.Min(64 - bit, end - first);
            ulong mask = n == 64 ? ulong.MaxValue : ((1UL << n) - 1) << bit;
            Interlocked.And(ref _bits[first >> 6], ~mask);
            first += n;
        }
    }

    public void Dispose() => _mapping.Dispose();
}
