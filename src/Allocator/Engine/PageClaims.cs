using Paging.Interop;

namespace Paging.Engine;

/// <summary>
/// The in-flight table: one bit per page, set while a fill (or a Discard) owns the page, in pager-private memory
/// (anonymous, MAP_NORESERVE: a 1 TiB region's 32 MiB of bits commit only where pages are touched). A fault or a
/// read-ahead that finds a page claimed joins the fill in flight — the fill's UFFDIO_CONTINUE/COPY wakes every
/// thread waiting on its range — so a page is never filled twice at once, and no lock is taken per page.
/// </summary>
/// <para>A fault that meets a claimed page <see cref="Join"/>s it: the owner may have mapped the page already and the
/// page been unmapped again since (reclaim, DAMON, an eviction, a Discard), so the owner's ioctl is not enough — the
/// release reports joined pages and the releaser wakes them (a joined bit costs nothing when no fault joined).</para>
internal sealed class PageClaims(long pages) : PageBits(pages)
{
    private readonly PageBits _joined = new(pages);

    /// <summary>Claims one page; false when someone else holds it.</summary>
    public bool TryClaim(long page) => TrySet(page);

    public bool IsClaimed(long page) => IsSet(page);

    /// <summary>Records that a fault on <paramref name="page"/> waits for the claim's owner. False when the claim was
    /// released meanwhile (the owner may not have seen the mark): the caller wakes the page itself.</summary>
    public bool Join(long page)
    {
        _ = _joined.TrySet(page);
        // Full fences on both sides (Interlocked): the releaser clears the claim then reads the marks, the joiner sets
        // the mark then reads the claim, so one of the two sees the other.
        return IsSet(page);
    }

    /// <summary>Releases pages [first, first+count), a word at a time; true when a fault joined one of them (the marks
    /// are cleared): the caller must wake the range.</summary>
    public bool Release(long first, long count)
    {
        Clear(first, count);
        return _joined.TestAndClear(first, count);
    }

    public override void Dispose()
    {
        _joined.Dispose();
        base.Dispose();
    }
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

    /// <summary>The 64 bits of the word holding <paramref name="page"/> (bit i: page (page &amp; ~63) + i).</summary>
    public ulong Word(long page) => Volatile.Read(ref _bits[page >> 6]);

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

    /// <summary>Clears bits [first, first+count); true when any was set.</summary>
    public bool TestAndClear(long first, long count)
    {
        long end = first + count;
        bool any = false;
        while (first < end)
        {
            int bit = (int)(first & 63);
            int n = (int)Math.Min(64 - bit, end - first);
            ulong mask = n == 64 ? ulong.MaxValue : ((1UL << n) - 1) << bit;
            ref ulong word = ref _bits[first >> 6];
            // A plain read first (the caller's Interlocked clear of the claim is a full fence before it): no locked
            // instruction unless a fault joined.
            if ((Volatile.Read(ref word) & mask) != 0)
            {
                any |= (Interlocked.And(ref word, ~mask) & mask) != 0;
            }
            first += n;
        }
        return any;
    }

    public virtual void Dispose() => _mapping.Dispose();
}
