namespace Paging;

/// <summary>How a region's memory is backed in the kernel.</summary>
public enum ArenaKind
{
    /// <summary>Private anonymous memory; pages are installed with UFFDIO_COPY / UFFDIO_ZEROPAGE. Pages live only in
    /// the application's address space.</summary>
    Anonymous = 0,

    /// <summary>A sealed memfd mapped twice: the pager fills the page cache through its own staging mapping
    /// (a file backend preads straight into it) and maps pages with UFFDIO_CONTINUE. Contents survive a pager restart.</summary>
    Shmem = 1,

    /// <summary>Like <see cref="Shmem"/> on a MFD_HUGETLB memfd of 2 MiB pages; every fault fills a whole huge page.
    /// Needs pages in /proc/sys/vm/nr_hugepages.</summary>
    HugeTlb = 2,
}
