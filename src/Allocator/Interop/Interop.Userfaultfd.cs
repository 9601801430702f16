using System.Runtime.InteropServices;

namespace Paging.Interop;

/// <summary>UFFDIO_REGISTER modes.</summary>
[Flags]
internal enum UffdRegisterMode : ulong
{
    Missing = 1,
    WriteProtect = 2,
    Minor = 4,
}

/// <summary>Bits of uffdio_register.ioctls: 1 &lt;&lt; _UFFDIO_xxx.</summary>
[Flags]
internal enum UffdIoctls : ulong
{
    None = 0,
    Wake = 1 << 0x02,
    Copy = 1 << 0x03,
    ZeroPage = 1 << 0x04,
    WriteProtect = 1 << 0x06,
    Continue = 1 << 0x07,
    Poison = 1 << 0x08,
    Move = 1 << 0x05,
}

/// <summary>userfaultfd: the ioctl numbers and structs of include/uapi/linux/userfaultfd.h (6.18; sizes asserted in
/// InteropTests). The syscall number is in Interop.SyscallNumbers.cs.</summary>
internal static unsafe partial class Libc
{
    internal const int UFFD_USER_MODE_ONLY = 1;
    internal const ulong USERFAULTFD_IOC_NEW = 0xAA00;

    internal const ulong UFFDIO_API = 0xC018AA3F;
    internal const ulong UFFDIO_REGISTER = 0xC020AA00;
    internal const ulong UFFDIO_UNREGISTER = 0x8010AA01;
    internal const ulong UFFDIO_WAKE = 0x8010AA02;
    internal const ulong UFFDIO_COPY = 0xC028AA03;
    internal const ulong UFFDIO_ZEROPAGE = 0xC020AA04;
    internal const ulong UFFDIO_MOVE = 0xC028AA05;
    internal const ulong UFFDIO_WRITEPROTECT = 0xC018AA06;
    internal const ulong UFFDIO_CONTINUE = 0xC020AA07;
    internal const ulong UFFDIO_POISON = 0xC020AA08;

    internal const ulong UFFD_API = 0xAA;

    internal const ulong UFFDIO_COPY_MODE_DONTWAKE = 1, UFFDIO_COPY_MODE_WP = 2;
    internal const ulong UFFDIO_MOVE_MODE_DONTWAKE = 1, UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES = 2;
    internal const ulong UFFDIO_ZEROPAGE_MODE_DONTWAKE = 1;
    internal const ulong UFFDIO_CONTINUE_MODE_DONTWAKE = 1;
    internal const ulong UFFDIO_CONTINUE_MODE_WP = 2;
    internal const ulong UFFDIO_WRITEPROTECT_MODE_WP = 1, UFFDIO_WRITEPROTECT_MODE_DONTWAKE = 2;
    internal const ulong UFFDIO_POISON_MODE_DONTWAKE = 1;

    internal const byte UFFD_EVENT_PAGEFAULT = 0x12;
    internal const ulong UFFD_PAGEFAULT_FLAG_WRITE = 1, UFFD_PAGEFAULT_FLAG_WP = 2, UFFD_PAGEFAULT_FLAG_MINOR = 4;

    [StructLayout(LayoutKind.Sequential)]
    internal struct UffdioApi { public ulong Api, Features, Ioctls; }

    [StructLayout(LayoutKind.Sequential)]
    internal struct UffdioRange { public ulong Start, Len; }

    [StructLayout(LayoutKind.Sequential)]
    internal struct UffdioRegister { public UffdioRange Range; public ulong Mode, Ioctls; }

    [StructLayout(LayoutKind.Sequential)]
    internal struct UffdioCopy { public ulong Dst, Src, Len, Mode; public long Copy; }

    /// <summary>struct uffdio_move, 40 bytes: the pages of [Src, Src+Len) move to [Dst, Dst+Len) of the same process.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct UffdioMove { public ulong Dst, Src, Len, Mode; public long Move; }

    [StructLayout(LayoutKind.Sequential)]
    internal struct UffdioZeropage { public UffdioRange Range; public ulong Mode; public long Zeropage; }

    [StructLayout(LayoutKind.Sequential)]
    internal struct UffdioContinue { public UffdioRange Range; public ulong Mode; public long Mapped; }

    [StructLayout(LayoutKind.Sequential)]
    internal struct UffdioWriteprotect { public UffdioRange Range; public ulong Mode; }

    [StructLayout(LayoutKind.Sequential)]
    internal struct UffdioPoison { public UffdioRange Range; public ulong Mode; public long Updated; }

    /// <summary>struct uffd_msg, 32 bytes; only the pagefault arm of the union is read.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 32)]
    internal struct UffdMsg
    {
        [FieldOffset(0)] public byte Event;
        [FieldOffset(8)] public ulong Flags;
        [FieldOffset(16)] public ulong Address;
        [FieldOffset(24)] public uint Ptid;
    }

    [LibraryImport(Name, EntryPoint = "ioctl", SetLastError = true)]
    internal static partial int Ioctl(FileDescriptor fd, ulong request, void* argument);

    [LibraryImport(Name, EntryPoint = "ioctl", SetLastError = true)]
    internal static partial int Ioctl(FileDescriptor fd, ulong request, nint argument);
}
