using System.Runtime.InteropServices;

namespace Paging.Interop;

/// <summary>poll(2). The pollfd array holds raw fds: every caller keeps the owning <see cref="FileDescriptor"/>s
/// alive across the call (they are fields of the caller's owner, disposed only after its loop has stopped).</summary>
internal static unsafe partial class Libc
{
    internal const short POLLIN = 1, POLLERR = 8, POLLHUP = 0x10, POLLNVAL = 0x20;

    [StructLayout(LayoutKind.Sequential)]
    internal struct PollFd { public int Fd; public short Events; public short Revents; }

    [LibraryImport(Name, EntryPoint = "poll", SetLastError = true)]
    internal static partial int Poll(PollFd* fds, nuint count, int timeoutMilliseconds);
}
