namespace Paging;

/// <summary>How the pager learns which pages a region's application wrote (regions with a budget or write-back).</summary>
public enum WriteTracking
{
    /// <summary><see cref="Asynchronous"/> where the kernel has it (Linux 6.7+), else <see cref="Synchronous"/>.</summary>
    Auto = 0,

    /// <summary>UFFD_FEATURE_WP_ASYNC + PAGEMAP_SCAN: pages are mapped write-protected and the kernel lifts the protection
    /// at the first write without a fault; the pager asks which pages were written with one PAGEMAP_SCAN per range.
    /// No fault per first write. Needs Linux 6.7+.</summary>
    Asynchronous = 1,

    /// <summary>Synchronous write-protect faults: pages are mapped write-protected and the first write to each faults to
    /// the pager, which marks the page dirty and lifts the protection (one fault round trip per page per write-back
    /// cycle). Write-back re-protects a run before it copies it, so no rescan is needed. Works on kernels without
    /// WP_ASYNC or PAGEMAP_SCAN (page presence is read from /proc/&lt;pid&gt;/pagemap); shmem and hugetlbfs need
    /// UFFD_FEATURE_WP_HUGETLBFS_SHMEM (Linux 5.19+).</summary>
    Synchronous = 2,
}
