using System.Runtime.InteropServices;

namespace Paging.Interop;

/// <summary>PAGEMAP_SCAN categories (include/uapi/linux/fs.h, 6.7+).</summary>
[Flags]
internal enum PageCategory : ulong
{
    None = 0,
    /// <summary>The range is registered for uffd write-protection.</summary>
    WpAllowed = 1 << 0,
    /// <summary>Written since it was last write-protected (a PTE without the uffd-wp bit: also a PTE that is empty).</summary>
    Written = 1 << 1,
    File = 1 << 2,
    Present = 1 << 3,
    /// <summary>Not present but not empty: for a shmem arena, the uffd-wp marker a write-protected PTE leaves behind
    /// when reclaim unmaps it — the proof that the page was not written before it was unmapped.</summary>
    Swapped = 1 << 4,
    PfnZero = 1 << 5,
    Huge = 1 << 6,
    SoftDirty = 1 << 7,
    All = 0xFF,
}

/// <summary>PAGEMAP_SCAN on /proc/&lt;pid&gt;/pagemap and process_madvise(2): how the pager reads which pages of the
/// application were written, re-protects them, and unmaps cold pages — all without the application's help.</summary>
internal static unsafe partial class Libc
{
    /// <summary>_IOWR('f', 16, struct pm_scan_arg): 0xC0606610 (KERNEL.md).</summary>
    internal const ulong PAGEMAP_SCAN = 0xC0606610;

    internal const ulong PM_SCAN_WP_MATCHING = 1;
    internal const ulong PM_SCAN_CHECK_WPASYNC = 2;

    /// <summary>MADV_PAGEOUT: the only advice that unmaps pages of another process (process_madvise allows COLD,
    /// PAGEOUT, WILLNEED and COLLAPSE remotely). For shmem without swap it unmaps and keeps the page cache.</summary>
    internal const int MADV_PAGEOUT = 21;

    /// <summary>process_madvise(2): 440 on both architectures.</summary>
    internal const long SYS_process_madvise = 440;

    /// <summary>struct pm_scan_arg, 96 bytes.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct PmScanArg
    {
        public ulong Size, Flags, Start, End, WalkEnd, Vec, VecLen, MaxPages;
        public ulong CategoryInverted, CategoryMask, CategoryAnyofMask, ReturnMask;
    }

    /// <summary>struct page_region, 24 bytes.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct PageRegion
    {
        public ulong Start, End, Categories;
    }

    [LibraryImport(Name, EntryPoint = "ioctl", SetLastError = true)]
    internal static partial long IoctlLong(FileDescriptor fd, ulong request, void* argument);

    [LibraryImport(Name, EntryPoint = "syscall", SetLastError = true)]
    internal static partial long Syscall(long number, FileDescriptor fd, IoVec* iov, long count, long advice, long flags);
}
