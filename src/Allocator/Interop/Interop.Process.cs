using System.Runtime.InteropServices;

namespace Paging.Interop;

internal static unsafe partial class Libc
{
    internal const long SysPidfdOpen = 434;
    internal const int SIGKILL = 9;

    [LibraryImport(Name, EntryPoint = "kill", SetLastError = true)]
    internal static partial int Kill(int pid, int signal);

}

internal static unsafe partial class Libc
{
    [LibraryImport(Name, EntryPoint = "syscall", SetLastError = true)]
    internal static partial long Syscall4(long number, long arg1, long arg2, long arg3, long arg4);
}
