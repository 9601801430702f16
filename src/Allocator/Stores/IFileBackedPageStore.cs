using Microsoft.Win32.SafeHandles;

namespace Paging;

/// <summary>
/// A store whose bytes are a slice of a file. The pager then fills shmem and hugetlbfs arenas with splice(2), file →
/// pipe → memfd, a copy inside the kernel that needs no page-table entries in the pager's staging mapping: measured
/// here at 1.5 µs per 4 KiB page against 3.2 µs for a pread into the mapping (64 MiB, page cache hot;
/// bench/probe-splice.py).
/// </summary>
public interface IFileBackedPageStore : IPageStore
{
    /// <summary>The open file.</summary>
    SafeFileHandle File { get; }

    /// <summary>The file offset of store offset 0.</summary>
    long FileOffset { get; }
}
