using System.Runtime.InteropServices;

namespace Paging.Interop;

/// <summary>Unix sockets: socketpair, sendmsg, recvmsg with SCM_RIGHTS.</summary>
internal static unsafe partial class Libc
{
    internal const int AF_UNIX = 1, SOCK_SEQPACKET = 5, SOCK_CLOEXEC = 0x80000;
    internal const int SOL_SOCKET = 1, SCM_RIGHTS = 1;
    internal const int MSG_NOSIGNAL = 0x4000, MSG_CMSG_CLOEXEC = 0x40000000, MSG_TRUNC = 0x20, MSG_CTRUNC = 0x8;

    [StructLayout(LayoutKind.Sequential)]
    internal struct IoVec { public void* Base; public nuint Length; }

    [StructLayout(LayoutKind.Sequential)]
    internal struct MsgHdr
    {
        public void* Name;
        public uint NameLength;
        public IoVec* Iov;
        public nuint IovLength;
        public void* Control;
        public nuint ControlLength;
        public int Flags;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct CmsgHdr { public nuint Length; public int Level; public int Type; }

    [LibraryImport(Name, EntryPoint = "socketpair", SetLastError = true)]
    internal static partial int Socketpair(int domain, int type, int protocol, int* sv);

    [LibraryImport(Name, EntryPoint = "sendmsg", SetLastError = true)]
    internal static partial nint Sendmsg(FileDescriptor fd, MsgHdr* message, int flags);

    [LibraryImport(Name, EntryPoint = "recvmsg", SetLastError = true)]
    internal static partial nint Recvmsg(FileDescriptor fd, MsgHdr* message, int flags);
}
