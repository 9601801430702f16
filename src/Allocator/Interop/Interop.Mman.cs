using System.Runtime.InteropServices;

namespace Paging.Interop;

/// <summary>mmap(2) protections.</summary>
[Flags]
internal enum Protection
{
    None = 0,
    Read = 1,
    Write = 2,
    ReadWrite = Read | Write,
}

/// <summary>mmap(2) flags.</summary>
[Flags]
internal enum MapFlags
{
    Shared = 1,
    Private = 2,
    Fixed = 0x10,
    Anonymous = 0x20,
    NoReserve = 0x4000,
    Populate = 0x8000,
    HugeTlb = 0x40000,
}

/// <summary>madvise(2) advice values (not flags: one at a time).</summary>
internal enum Advice
{
    WillNeed = 3,
    DontNeed = 4,
    Remove = 9,
    /// <summary>MADV_DONTFORK: a child of fork(2) does not get the range (its pages stay exclusive to this process).</summary>
    DontFork = 10,
    HugePage = 14,
    NoHugePage = 15,
    PopulateRead = 22,
    PopulateWrite = 23,
}

/// <summary>Memory mappings: mmap, munmap, madvise, mprotect.</summary>
internal static unsafe partial class Libc
{
    internal static readonly nint MAP_FAILED = -1;

    [LibraryImport(Name, EntryPoint = "mmap", SetLastError = true)]
    internal static partial nint Mmap(nint address, nuint length, Protection prot, MapFlags flags, FileDescriptor fd, long offset);

    /// <summary>Anonymous mappings (no fd: -1).</summary>
    [LibraryImport(Name, EntryPoint = "mmap", SetLastError = true)]
    internal static partial nint Mmap(nint address, nuint length, Protection prot, MapFlags flags, int fd, long offset);

    [LibraryImport(Name, EntryPoint = "munmap", SetLastError = true)]
    internal static partial int Munmap(nint address, nuint length);

    [LibraryImport(Name, EntryPoint = "madvise", SetLastError = true)]
    internal static partial int Madvise(nint address, nuint length, Advice advice);

    [LibraryImport(Name, EntryPoint = "mprotect", SetLastError = true)]
    internal static partial int Mprotect(nint address, nuint length, Protection prot);
}
