namespace Paging;

/// <summary>A region's counters, read from its control block (the pager writes them; they survive pager restarts).</summary>
/// <param name="MissingFaults">Faults on pages not in memory.</param>
/// <param name="MinorFaults">Faults on pages in the page cache but not mapped (shmem/hugetlbfs).</param>
/// <param name="Messages">Fault messages read (several threads on one page are several messages).</param>
/// <param name="Batches">read(2) calls on the uffd that returned messages.</param>
/// <param name="PagesFilled">Pages filled from the store.</param>
/// <param name="ZeroPagesFilled">Pages resolved as zeros.</param>
/// <param name="BytesRead">Bytes read from the store.</param>
/// <param name="Resolutions">Resolving ioctls (COPY / ZEROPAGE / CONTINUE) that succeeded.</param>
/// <param name="AlreadyPresent">EEXIST outcomes on pages not expected to be present.</param>
/// <param name="Retries">Store reads or ioctls retried.</param>
/// <param name="Errors">Store or ioctl errors.</param>
/// <param name="Poisoned">Pages poisoned because the store could not produce them.</param>
/// <param name="Recoveries">Times a standby pager took this region over.</param>
/// <param name="PagesPrefetched">Pages filled by read-ahead, Prefetch or streaming rather than by a fault on them.</param>
/// <param name="SequentialHits">Faults recognised as the continuation of a sequential stream.</param>
/// <param name="PrefetchLate">Faults on pages a read-ahead window had scheduled but not yet filled.</param>
/// <param name="StaleFaults">Faults whose page was already mapped when the message was read.</param>
/// <param name="ManagedBytesAllocated">Managed bytes the pager's fault thread allocated serving this region (0 expected).</param>
/// <param name="FailedWakes">UFFDIO_WAKE calls the kernel refused (a thread may have stayed blocked until it faulted again).</param>
public readonly record struct RegionStatistics(
    long MissingFaults, long MinorFaults, long Messages, long Batches, long PagesFilled, long ZeroPagesFilled, long BytesRead,
    long Resolutions, long AlreadyPresent, long Retries, long Errors, long Poisoned, long Recoveries,
    long PagesPrefetched, long SequentialHits, long PrefetchLate, long StaleFaults, long ManagedBytesAllocated, long FailedWakes)
{
    /// <summary>Pages filled because a thread faulted on them (the rest were read ahead or streamed).</summary>
    public long PagesOnDemand => PagesFilled - PagesPrefetched;

    /// <summary>Faults the pager served.</summary>
    public long Faults => MissingFaults + MinorFaults;

    /// <summary>Pages resident now (filled, not evicted or discarded).</summary>
    public long ResidentPages { get; init; }

    /// <summary>The most pages ever resident at once.</summary>
    public long PeakResidentPages { get; init; }

    /// <summary>Pages evicted (budget or <see cref="Region.Evict"/>).</summary>
    public long PagesEvicted { get; init; }

    /// <summary>Dirty pages written back to the store.</summary>
    public long PagesWrittenBack { get; init; }

    /// <summary>Bytes written back to the store.</summary>
    public long BytesWritten { get; init; }

    /// <summary>Store writes that failed (their pages stayed dirty and resident).</summary>
    public long WriteErrors { get; init; }

    /// <summary>Pages the eviction clock unmapped (a touch maps them back with a MINOR fault).</summary>
    public long PagesUnmapped { get; init; }

    /// <summary>Unmapped pages touched again before the clock came back, so kept.</summary>
    public long SecondChances { get; init; }

    /// <summary>Flushes completed.</summary>
    public long Flushes { get; init; }

    /// <summary>Time the Flushes spent finding written pages (PAGEMAP_SCAN with re-protection), in ns.</summary>
    public long DirtyScanNanoseconds { get; init; }

    /// <summary>Resident pages those scans covered (DirtyScanNanoseconds / DirtyScannedPages = the scan's cost per page).</summary>
    public long DirtyScannedPages { get; init; }

    /// <summary>First writes that faulted to the pager (<see cref="WriteTracking.Synchronous"/> only; asynchronous
    /// tracking has none): one per page per write-back cycle.</summary>
    public long WriteFaults { get; init; }

    /// <summary>Pages the application read in on its own thread (<c>PagedFile.Fetch</c>), without a fault.</summary>
    public long CallerFills { get; init; }
}
