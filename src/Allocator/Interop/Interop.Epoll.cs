using System.Runtime.InteropServices;

namespace Paging.Interop;

/// <summary>epoll: several fill threads wait on the userfaultfd with EPOLLEXCLUSIVE, so one fault wakes one
/// thread, not all of them (a thundering herd costs a ~30 µs vCPU wake per sleeper on this VM).</summary>
internal static unsafe partial class Libc
{
    internal const int EPOLL_CLOEXEC = 0x80000, EPOLL_CTL_ADD = 1;
    internal const uint EPOLLIN = 1, EPOLLEXCLUSIVE = 1u << 28;

    /// <summary>Room for one struct epoll_event: 12 bytes on x86_64 (packed), 16 on arm64.</summary>
    internal const int EpollEventBytes = 16;

    /// <summary>sizeof(struct epoll_event): packed on x86_64 (u32 events, u64 data at offset 4), naturally aligned
    /// elsewhere (data at offset 8).</summary>
    internal static readonly int EpollEventStride = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 12 : 16;

    private static readonly int EpollDataOffset = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 4 : 8;

    /// <summary>The data word (the tag given to <see cref="EpollAdd"/>) of the <paramref name="index"/>th event that
    /// epoll_wait wrote to <paramref name="events"/>.</summary>
    internal static ulong EpollTag(byte* events, int index) => *(ulong*)(events + index * EpollEventStride + EpollDataOffset);

    [LibraryImport(Name, EntryPoint = "epoll_create1", SetLastError = true)]
    internal static partial FileDescriptor EpollCreate1(int flags);

    [LibraryImport(Name, EntryPoint = "epoll_ctl", SetLastError = true)]
    internal static partial int EpollCtl(FileDescriptor epfd, int op, FileDescriptor fd, byte* eventBuffer);

    [LibraryImport(Name, EntryPoint = "epoll_wait", SetLastError = true)]
    internal static partial int EpollWait(FileDescriptor epfd, byte* events, int maxEvents, int timeoutMilliseconds);

    /// <summary>Adds <paramref name="fd"/> to <paramref name="epfd"/> for <paramref name="events"/>; epoll_wait reports
    /// it with <paramref name="tag"/> in the event's data (see <see cref="EpollTag"/>).</summary>
    internal static void EpollAdd(FileDescriptor epfd, FileDescriptor fd, uint events, string what, ulong tag = 0)
    {
        byte* ev = stackalloc byte[EpollEventBytes];
        new Span<byte>(ev, EpollEventBytes).Clear();
        *(uint*)ev = events;
        *(ulong*)(ev + EpollDataOffset) = tag;
        if (EpollCtl(epfd, EPOLL_CTL_ADD, fd, ev) != 0)
        {
            throw Error($"epoll_ctl(ADD, {what})");
        }
    }
}
