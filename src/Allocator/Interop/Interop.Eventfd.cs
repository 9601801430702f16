using System.Runtime.InteropServices;

namespace Paging.Interop;

/// <summary>eventfd(2): wakes a thread sleeping in poll.</summary>
internal static unsafe partial class Libc
{
    internal const int EFD_NONBLOCK = 0x800, EFD_CLOEXEC = 0x80000;

    [LibraryImport(Name, EntryPoint = "eventfd", SetLastError = true)]
    internal static partial FileDescriptor Eventfd(uint initial, int flags);

    /// <summary>Adds one to an eventfd (wakes its poller).</summary>
    internal static void Signal(FileDescriptor eventfd)
    {
        ulong one = 1;
        _ = Write(eventfd, &one, 8);
    }

    /// <summary>Resets an eventfd's counter (non-blocking fd).</summary>
    internal static void Drain(FileDescriptor eventfd)
    {
        ulong value;
        _ = Read(eventfd, &value, 8);
    }
}
