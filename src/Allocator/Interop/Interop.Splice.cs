using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Paging.Interop;

/// <summary>Pipes and splice(2): kernel-side copies from a file into a memfd.</summary>
internal static unsafe partial class Libc
{
    internal const int F_SETPIPE_SZ = 1031;
    internal const uint SPLICE_F_MOVE = 1;

    [LibraryImport(Name, EntryPoint = "pipe2", SetLastError = true)]
    internal static partial int Pipe2(int* fds, OpenFlags flags);

    [LibraryImport(Name, EntryPoint = "splice", SetLastError = true)]
    internal static partial nint Splice(SafeFileHandle fdIn, long* offIn, FileDescriptor fdOut, long* offOut, nuint length, uint flags);

    [LibraryImport(Name, EntryPoint = "splice", SetLastError = true)]
    internal static partial nint Splice(FileDescriptor fdIn, long* offIn, FileDescriptor fdOut, long* offOut, nuint length, uint flags);
}
