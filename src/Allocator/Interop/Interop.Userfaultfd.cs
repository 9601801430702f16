using System.Runtime.InteropServices;

namespace Paging.Interop;

internal static unsafe partial class Libc
{
    internal static long SysUserfaultfd => RuntimeInformation.ProcessArchitecture == Architecture.Arm64 ? 282 : 323;

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

    internal const ulong UFFDIO_REGISTER_MODE_MISSING = 1, UFFDIO_REGISTER_MODE_WP = 2, UFFDIO_REGISTER_MODE_MINOR = 4;
    internal const ulong UFFDIO_COPY_MODE_DONTWAKE = 1;
    internal const ulong UFFDIO_ZEROPAGE_MODE_DONTWAKE = 1;
    internal const ulong UFFDIO_CONTINUE_MODE_DONTWAKE = 1;
    internal const ulong UFFDIO_POISON_MODE_DONTWAKE = 1;

    // Bits of uffdio_register.ioctls: 1 << _UFFDIO_xxx.
    internal const ulong UFFD_IOCTL_WAKE = 1 << 0x02, UFFD_IOCTL_COPY = 1 << 0x03, UFFD_IOCTL_ZEROPAGE = 1 << 0x04,
        UFFD_IOCTL_CONTINUE = 1 << 0x07, UFFD_IOCTL_POISON = 1 << 0x08;

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

    [StructLayout(LayoutKind.Sequential)]
    internal struct UffdioZeropage { public UffdioRange Range; public ulong Mode; public long Zeropage; }

    [StructLayout(LayoutKind.Sequential)]
    internal struct UffdioContinue { public UffdioRange Range; public ulong Mode; public long Mapped; }

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

    [LibraryImport(Name, EntryPoint = "syscall", SetLastError = true)]
    internal static partial long Syscall(long number, long arg1);

    [LibraryImport(Name, EntryPoint = "syscall", SetLastError = true)]
    internal static partial long Syscall(long number, long arg1, long arg2);

    [LibraryImport(Name, EntryPoint = "ioctl", SetLastError = true)]
    internal static partial int Ioctl(int fd, ulong request, void* argument);

    [LibraryImport(Name, EntryPoint = "ioctl", SetLastError = true)]
    internal static partial int Ioctl(int fd, ulong request, nint argument);
}
