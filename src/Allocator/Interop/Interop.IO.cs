using System.Runtime.InteropServices;

namespace Paging.Interop;

/// <summary>open(2) flags.</summary>
[Flags]
internal enum OpenFlags
{
    ReadOnly = 0,
    WriteOnly = 1,
    ReadWrite = 2,
    Create = 0x40,
    NonBlock = 0x800,
    CloseOnExec = 0x80000,
}

/// <summary>Files: open, close, read, write, pread, pwrite, sync.</summary>
internal static unsafe partial class Libc
{
    [LibraryImport(Name, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial FileDescriptor Open(string path, OpenFlags flags, int mode);

    /// <summary>Closes a raw fd that no <see cref="FileDescriptor"/> owns (received over SCM_RIGHTS and refused).</summary>
    [LibraryImport(Name, EntryPoint = "close", SetLastError = true)]
    internal static partial int Close(int fd);

    [LibraryImport(Name, EntryPoint = "read", SetLastError = true)]
    internal static partial nint Read(FileDescriptor fd, void* buffer, nuint count);

    [LibraryImport(Name, EntryPoint = "write", SetLastError = true)]
    internal static partial nint Write(FileDescriptor fd, void* buffer, nuint count);

    [LibraryImport(Name, EntryPoint = "pread", SetLastError = true)]
    internal static partial nint Pread(FileDescriptor fd, void* buffer, nuint count, long offset);

    [LibraryImport(Name, EntryPoint = "pwrite", SetLastError = true)]
    internal static partial nint Pwrite(FileDescriptor fd, void* buffer, nuint count, long offset);

    [LibraryImport(Name, EntryPoint = "sync")]
    internal static partial void Sync();
}
