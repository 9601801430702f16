using System.Runtime.CompilerServices;
using Microsoft.Win32.SafeHandles;
using Paging.Backends;
using Paging.Stores;

namespace Paging.BufferPool;

/// <summary>How a <see cref="PagedFile"/> is opened.</summary>
public sealed class PagedFileOptions
{
    /// <summary>Bytes of the file kept in memory (required; at least 4 MiB). Past it the pager evicts cold pages,
    /// writing dirty ones back first.</summary>
    public required long MemoryBudget { get; init; }

    /// <summary>Pages the file may grow to (default: its current size). The region reserves this much address space;
    /// page ids past the file's end read as zeros and are written back like any other page.</summary>
    public long? CapacityPages { get; init; }

    /// <summary>Read and write the file with O_DIRECT (default true): the budget is then the only memory its pages
    /// take, as in a database that manages its own cache. False shares the kernel's page cache.</summary>
    public bool DirectIo { get; init; } = true;

    /// <summary>The database reaches pages through <see cref="PagedFile.Fetch"/> (default true): a miss is read on the
    /// calling thread, and the eviction clock keeps the pages Fetch marked used since its last turn (a page reached only
    /// through <see cref="PagedFile.PagePointer"/> looks unused to it). False when pages are reached only by pointer:
    /// the clock then unmaps resident pages to see which are touched again (a second chance by fault, dearer per
    /// eviction), and <see cref="PagedFile.Fetch"/> throws.</summary>
    public bool UseFetch { get; init; } = true;

    /// <summary>Writes are written back (default true). False opens the file read-only: written pages then stay
    /// resident (a dirty page is never dropped) and Flush fails.</summary>
    public bool Writable { get; init; } = true;
}

/// <summary>
/// A database file as one virtual region (vmcache, SIGMOD'23): page id <c>p</c> lives at <c>Address + p × 4096</c>
/// for as long as the file is open; touching it brings it in, the pager evicts what the budget cannot hold (CLOCK,
/// second chance) and writes dirty pages back. There is no fix/unfix to pair: a pointer to a page is valid at any
/// time (an evicted page faults back in on the next touch, a read of it is always the latest write), so readers are
/// optimistic by construction. <see cref="Fetch"/> is the fast way in: it reads a missing page on the calling thread
/// (no fault, no pager round trip) and tells the eviction clock the page is in use. What the database still decides:
/// <see cref="Pin"/> pages that must never leave (a root), <see cref="Flush"/> at commit, its own latches between
/// threads that write the same page.
/// </summary>
public sealed unsafe class PagedFile : IDisposable
{
    /// <summary>The page size: 4 KiB.</summary>
    public const int PageSize = 4096;

    private readonly Region _region;
    private readonly SafeFileHandle _file;

    private PagedFile(Region region, string path, SafeFileHandle file)
    {
        _region = region;
        _file = file;
        Path = path;
    }

    /// <summary>Opens <paramref name="path"/> (which must exist) as a region of <see cref="PageSize"/>-byte pages. A file
    /// whose length is not a multiple of the page size ends in a partial page that reads as the file's bytes, then
    /// zeros; once that page is written back the file grows to the page's end (no write past the old end is dropped).</summary>
    /// <exception cref="ArgumentException">a budget under 4 MiB, or a capacity smaller than one page.</exception>
    /// <exception cref="PagerException">the pager cannot open the file (or O_DIRECT is not supported where it lives).</exception>
    public static PagedFile Open(PagingRuntime runtime, string path, PagedFileOptions options)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        ArgumentNullException.ThrowIfNull(options);
        long fileLength = new FileInfo(path).Length;
        long pages = options.CapacityPages ?? Math.Max(1, (fileLength + PageSize - 1) / PageSize);
        ArgumentOutOfRangeException.ThrowIfLessThan(pages, 1, nameof(options));
        // The application's own handle for caller fills (Fetch): read-only, O_DIRECT like the pager's when asked.
        var file = options.DirectIo ? DirectIo.Open(path, writable: false) : File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        Region region;
        try
        {
            region = runtime.CreateRegion(new RegionOptions
            {
                Arena = ArenaKind.Shmem,
                Length = pages * PageSize,
                Store = PageStoreDescriptor.File(path, writable: options.Writable, direct: options.DirectIo),
                MemoryBudget = options.MemoryBudget,
                WriteBack = true,
                // Page ids are random accesses: read what is touched, nothing around it.
                Prefetch = PrefetchOptions.None,
                CallerFills = options.UseFetch,
            });
        }
        catch
        {
            file.Dispose();
            throw;
        }
        return new PagedFile(region, path, file);
    }

    /// <summary>The file.</summary>
    public string Path { get; }

    /// <summary>Page ids are [0, PageCount).</summary>
    public long PageCount => _region.Length / PageSize;

    /// <summary>The address of page 0; page <c>p</c> is at <c>Address + p × PageSize</c> until <see cref="Dispose"/>.</summary>
    public nint Address => _region.Address;

    /// <summary>Page <paramref name="pageId"/> as a pointer (no bounds check on the hot path beyond a debug assert).</summary>
    public byte* PagePointer(long pageId)
    {
        System.Diagnostics.Debug.Assert((ulong)pageId < (ulong)PageCount);
        return (byte*)_region.Address + pageId * PageSize;
    }

    /// <summary>
    /// Page <paramref name="pageId"/>, brought in on the calling thread if it is not resident: one read of the file
    /// and one UFFDIO_COPY, with no fault, no message to the pager and no wake-up of its threads (vmcache's explicit
    /// miss; on this VM a fault's round trip costs more than the read itself, docs/BENCHMARKS.md §22). A resident page
    /// costs two loads and is marked used, which is all the eviction clock of a PagedFile looks at: a page reached
    /// only through <see cref="PagePointer"/> is still correct (a touch faults it in) but looks unused to the clock
    /// and leaves first. Nothing to release afterwards: the pointer stays valid, and a page evicted later faults back in.
    /// Safe from any number of threads: two fetching the same missing page read it once and the other touches it.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="pageId"/> is not in [0, PageCount).</exception>
    /// <exception cref="IOException">the file could not be read (the page stays not resident; a touch retries through the pager).</exception>
    /// <exception cref="ObjectDisposedException">the file was disposed.</exception>
    /// <exception cref="InvalidOperationException">the file was opened with <see cref="PagedFileOptions.UseFetch"/> false.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public byte* Fetch(long pageId)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((ulong)pageId, (ulong)PageCount, nameof(pageId));
        if (!_region.CallerFills)
        {
            ThrowFetchOff();
        }
        byte* page = (byte*)_region.Address + pageId * PageSize;
        if (_region.BeginCallerFill(pageId) == CallerFillStart.Begun)
        {
            ReadIn(pageId);
        }
        return page;
    }

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    private static void ThrowFetchOff() =>
        throw new InvalidOperationException("this PagedFile was opened with UseFetch = false: its pages are reached through PagePointer only (the pager's fills are not atomic against a Fetch there)");

    /// <summary>The miss path of <see cref="Fetch"/>: the page is read into a buffer on this thread's stack (aligned
    /// for O_DIRECT; no allocation) and installed.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ReadIn(long pageId)
    {
        byte* raw = stackalloc byte[2 * PageSize];
        byte* buffer = (byte*)(((nint)raw + PageSize - 1) & ~(nint)(PageSize - 1));
        int read = 0;
        try
        {
            // One read: a regular file reads short only at its end. Past the end: zeros, as the pager's store reads them.
            var span = new Span<byte>(buffer, PageSize);
            read = RandomAccess.Read(_file, span, pageId * PageSize);
            span[read..].Clear();
            AfterReadForTests?.Invoke(pageId);
        }
        catch
        {
            _region.AbortCallerFill(pageId);
            throw;
        }
        _ = _region.CompleteCallerFill(pageId, buffer, read);
    }

    /// <summary>Tests: called on a caller fill between its read and its install (to hold that window open).</summary>
    internal Action<long>? AfterReadForTests { get; set; }

    /// <summary>Page <paramref name="pageId"/> as a span.</summary>
    public Span<byte> Page(long pageId)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((ulong)pageId, (ulong)PageCount, nameof(pageId));
        return new Span<byte>(PagePointer(pageId), PageSize);
    }

    /// <summary>Keeps pages [first, first+count) resident until <see cref="Unpin"/> (never evicted).</summary>
    public void Pin(long first, long count = 1) => _region.Pin(first * PageSize, count * PageSize);

    /// <summary>Lets eviction take pages [first, first+count) again.</summary>
    public void Unpin(long first, long count = 1) => _region.Unpin(first * PageSize, count * PageSize);

    /// <summary>Hint: pages [first, first+count) are not needed for a while: written back if dirty, then dropped.</summary>
    public void Evict(long first, long count = 1) => _region.Evict(first * PageSize, count * PageSize);

    /// <summary>Hint: pages [first, first+count) are needed soon: read in the background.</summary>
    public void WillNeed(long first, long count = 1) => _region.WillNeed(first * PageSize, count * PageSize);

    /// <summary>Every page written before the call is in the file and durable (fdatasync) when this returns.</summary>
    public void Flush() => _region.Flush();

    /// <summary>Resident pages, faults, evictions, write-backs.</summary>
    public RegionStatistics Statistics => _region.Statistics;

    /// <summary>Writes back what is dirty (as <see cref="Region.Dispose"/> does for regions that track writes), then
    /// unmaps the file. Call <see cref="Flush"/> first to see a write-back error as an exception.</summary>
    public void Dispose()
    {
        _region.Dispose();
        _file.Dispose();
    }
}
