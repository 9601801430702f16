namespace Paging;

/// <summary>userfaultfd feature bits (include/uapi/linux/userfaultfd.h, Linux 6.18).</summary>
[Flags]
public enum UffdFeatures : ulong
{
    /// <summary>No feature.</summary>
    None = 0,
    /// <summary>UFFD_FEATURE_PAGEFAULT_FLAG_WP.</summary>
    PagefaultFlagWp = 1 << 0,
    /// <summary>UFFD_FEATURE_EVENT_FORK.</summary>
    EventFork = 1 << 1,
    /// <summary>UFFD_FEATURE_EVENT_REMAP.</summary>
    EventRemap = 1 << 2,
    /// <summary>UFFD_FEATURE_EVENT_REMOVE.</summary>
    EventRemove = 1 << 3,
    /// <summary>UFFD_FEATURE_MISSING_HUGETLBFS: MISSING faults on hugetlbfs.</summary>
    MissingHugetlbfs = 1 << 4,
    /// <summary>UFFD_FEATURE_MISSING_SHMEM: MISSING faults on shmem.</summary>
    MissingShmem = 1 << 5,
    /// <summary>UFFD_FEATURE_EVENT_UNMAP.</summary>
    EventUnmap = 1 << 6,
    /// <summary>UFFD_FEATURE_SIGBUS.</summary>
    Sigbus = 1 << 7,
    /// <summary>UFFD_FEATURE_THREAD_ID.</summary>
    ThreadId = 1 << 8,
    /// <summary>UFFD_FEATURE_MINOR_HUGETLBFS: MINOR faults and UFFDIO_CONTINUE on hugetlbfs.</summary>
    MinorHugetlbfs = 1 << 9,
    /// <summary>UFFD_FEATURE_MINOR_SHMEM: MINOR faults and UFFDIO_CONTINUE on shmem.</summary>
    MinorShmem = 1 << 10,
    /// <summary>UFFD_FEATURE_EXACT_ADDRESS.</summary>
    ExactAddress = 1 << 11,
    /// <summary>UFFD_FEATURE_WP_HUGETLBFS_SHMEM.</summary>
    WpHugetlbfsShmem = 1 << 12,
    /// <summary>UFFD_FEATURE_WP_UNPOPULATED.</summary>
    WpUnpopulated = 1 << 13,
    /// <summary>UFFD_FEATURE_POISON: UFFDIO_POISON, used to fail a fault the backend cannot serve.</summary>
    Poison = 1 << 14,
    /// <summary>UFFD_FEATURE_WP_ASYNC.</summary>
    WpAsync = 1 << 15,
    /// <summary>UFFD_FEATURE_MOVE.</summary>
    Move = 1 << 16,
}
