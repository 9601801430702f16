using System.Runtime.InteropServices;

namespace Paging.Interop;

/// <summary>memfd_create(2) flags.</summary>
[Flags]
internal enum MemfdFlags : uint
{
    None = 0,
    CloseOnExec = 1,
    AllowSealing = 2,
    HugeTlb = 4,
}

/// <summary>F_ADD_SEALS seals.</summary>
[Flags]
internal enum SealFlags
{
    None = 0,
    Seal = 1,
    Shrink = 2,
    Grow = 4,
    Write = 8,
}

/// <summary>fallocate(2) modes.</summary>
[Flags]
internal enum FallocateFlags
{
    None = 0,
    KeepSize = 1,
    PunchHole = 2,
}

/// <summary>memfds and file descriptor control: memfd_create, ftruncate, fallocate, fcntl.</summary>
internal static unsafe partial class Libc
{
    internal const int F_DUPFD = 0, F_SETFD = 2, F_ADD_SEALS = 1033, FD_CLOEXEC = 1;

    [LibraryImport(Name, EntryPoint = "memfd_create", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial FileDescriptor MemfdCreate(string name, MemfdFlags flags);

    [LibraryImport(Name, EntryPoint = "ftruncate", SetLastError = true)]
    internal static partial int Ftruncate(FileDescriptor fd, long length);

    [LibraryImport(Name, EntryPoint = "fallocate", SetLastError = true)]
    internal static partial int Fallocate(FileDescriptor fd, FallocateFlags mode, long offset, long length);

    [LibraryImport(Name, EntryPoint = "fcntl", SetLastError = true)]
    internal static partial int Fcntl(FileDescriptor fd, int command, int argument);

    /// <summary>fcntl on an fd no <see cref="FileDescriptor"/> owns yet (the inherited socket before it is wrapped).</summary>
    [LibraryImport(Name, EntryPoint = "fcntl", SetLastError = true)]
    internal static partial int Fcntl(int fd, int command, int argument);
}
