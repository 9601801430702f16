using System.Runtime.InteropServices;

namespace Paging.Interop;

/// <summary>Syscalls that glibc (2.36, Debian 12) does not wrap, called through syscall(2). The numbers differ per
/// architecture; these are linux-x64 and linux-arm64 (asm-generic), the two the library supports.</summary>
internal static class SyscallNumbers
{
    private static readonly bool s_arm64 = RuntimeInformation.ProcessArchitecture == Architecture.Arm64;

    /// <summary>userfaultfd(2): 323 on x86_64, 282 on arm64.</summary>
    public static long Userfaultfd => s_arm64 ? 282 : 323;

    /// <summary>pidfd_send_signal(2): 424 on both.</summary>
    public const long PidfdSendSignal = 424;

    /// <summary>pidfd_open(2): 434 on both.</summary>
    public const long PidfdOpen = 434;
}

internal static unsafe partial class Libc
{
    // syscall(2) is variadic; fixed integer signatures are ABI-correct on linux-x64 and linux-arm64 (KERNEL.md).
    [LibraryImport(Name, EntryPoint = "syscall", SetLastError = true)]
    internal static partial long Syscall(long number, long arg1);

    [LibraryImport(Name, EntryPoint = "syscall", SetLastError = true)]
    internal static partial long Syscall(long number, long arg1, long arg2);

    [LibraryImport(Name, EntryPoint = "syscall", SetLastError = true)]
    internal static partial long Syscall(long number, FileDescriptor fd, long arg2, long arg3, long arg4);
}
