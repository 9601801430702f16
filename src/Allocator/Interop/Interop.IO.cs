using System.Runtime.InteropServices;

namespace Paging.Interop;

internal static unsafe partial class Libc
{
    internal const int O_RDONLY = 0, O_WRONLY = 1, O_RDWR = 2, O_CREAT = 0x40, O_NONBLOCK = 0x800, O_CLOEXEC = 0x80000;

    [LibraryImport(Name, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int Open(string path, int flags, int mode);

    [LibraryImport(Name, EntryPoint = "close", SetLastError = true)]
    internal static partial int Close(int fd);

    [LibraryImport(Name, EntryPoint = "read", SetLastError = true)]
    internal static partial nint Read(int fd, void* buffer, nuint count);

    [LibraryImport(Name, EntryPoint = "write", SetLastError = true)]
    internal static partial nint Write(int fd, void* buffer, nuint count);

    [LibraryImport(Name, EntryPoint = "pread", SetLastError = true)]
    internal static partial nint Pread(int fd, void* buffer, nuint count, long offset);

    [LibraryImport(Name, EntryPoint = "pwrite", SetLastError = true)]
    internal static partial nint Pwrite(int fd, void* buffer, nuint count, long offset);

}

internal static unsafe partial class Libc
{
    [LibraryImport(Name, EntryPoint = "sync")]
    internal static partial void Sync();
}

internal static unsafe partial class Libc
{
    internal const int F_SETPIPE_SZ = 1031;
    internal const uint SPLICE_F_MOVE = 1;

    [LibraryImport(Name, EntryPoint = "pipe2", SetLastError = true)]
    internal static partial int Pipe2(int* fds, int flags);

    [LibraryImport(Name, EntryPoint = "splice", SetLastError = true)]
    internal static partial nint Splice(int fdIn, long* offIn, int fdOut, long* offOut, nuint length, uint flags);
}
