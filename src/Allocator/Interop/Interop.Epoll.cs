using System.Runtime.InteropServices;

namespace Paging.Interop;

/// <summary>epoll: several fill threads wait on the userfaultfd with EPOLLEXCLUSIVE, so one fault wakes one
/// thread, not all of them (a thundering herd costs a ~30 µs vCPU wake per sleeper on this VM).</summary>
internal static unsafe partial class Libc
{
    internal const int EPOLL_CLOEXEC = 0x80000, EPOLL_CTL_ADD = 1;
    internal const uint EPOLLIN = 1, EPOLLEXCLUSIVE = 1u << 28;

    /// <summary>struct epoll_event is 12 bytes on x86_64 (packed) and 16 on arm64; this buffer fits both. Only the
    /// events word (offset 0) is used: the data word stays zero.</summary>
    internal const int EpollEventBytes = 16;

    [LibraryImport(Name, EntryPoint = "epoll_create1", SetLastError = true)]
    internal static partial FileDescriptor EpollCreate1(int flags);

    [LibraryImport(Name, EntryPoint = "epoll_ctl", SetLastError = true)]
    internal static partial int EpollCtl(FileDescriptor epfd, int op, FileDescriptor fd, byte* eventBuffer);

    [LibraryImport(Name, EntryPoint = "epoll_wait", SetLastError = true)]
    internal static partial int EpollWait(FileDescriptor epfd, byte* events, int maxEvents, int timeoutMilliseconds);

    /// <summary>Adds <paramref name="fd"/> to <paramref name="epfd"/> for <paramref name="events"/>.</summary>
    internal static void EpollAdd(FileDescriptor epfd, FileDescriptor fd, uint events, string what)
    {
        byte* ev = stackalloc byte[EpollEventBytes];
        new Span<byte>(ev, EpollEventBytes).Clear();
        *(uint*)ev = events;
        if (EpollCtl(epfd, EPOLL_CTL_ADD, fd, ev) != 0)
        {
            throw Error($"epoll_ctl(ADD, {what})");
        }
    }
}
