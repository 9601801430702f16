using System.Runtime.InteropServices;

namespace Paging.Interop;

/// <summary>Owns one file descriptor; closing it is the only way it is released. P/Invokes take it (not an int), so
/// the fd cannot be closed and reused under a call in flight.</summary>
internal sealed class FileDescriptor : SafeHandle
{
    public FileDescriptor(int fd) : base(-1, ownsHandle: true) => SetHandle(fd);

    /// <summary>An invalid handle (also what LibraryImport creates for a returned fd).</summary>
    public FileDescriptor() : base(-1, ownsHandle: true) { }

    public override bool IsInvalid => handle == -1;

    /// <summary>The raw fd, for poll arrays and for passing over SCM_RIGHTS; valid while this handle is alive.</summary>
    public int Fd => (int)handle;

    protected override bool ReleaseHandle() => Libc.Close((int)handle) == 0;

    /// <summary>Returns <paramref name="fd"/>, or disposes it and throws the call's error when the call failed.</summary>
    public static FileDescriptor Check(FileDescriptor fd, string what, string? hint = null)
    {
        if (fd.IsInvalid)
        {
            var error = Libc.Error(what, hint);
            fd.Dispose();
            throw error;
        }
        return fd;
    }
}

/// <summary>Owns one mmap'd range; disposing unmaps it.</summary>
internal sealed unsafe class Mapping : SafeHandle
{
    private Mapping(nint address, long length) : base(-1, ownsHandle: true)
    {
        SetHandle(address);
        Length = length;
    }

    public override bool IsInvalid => handle == -1 || handle == 0;

    public nint Address => handle;

    public byte* Pointer => (byte*)handle;

    public long Length { get; }

    protected override bool ReleaseHandle() => Libc.Munmap(handle, (nuint)Length) == 0;

    public static Mapping Map(long length, Protection prot, MapFlags flags, FileDescriptor? fd, long offset, string what, string? hint = null)
    {
        nint address = fd is null
            ? Libc.Mmap(0, (nuint)length, prot, flags, -1, offset)
            : Libc.Mmap(0, (nuint)length, prot, flags, fd, offset);
        if (address == Libc.MAP_FAILED)
        {
            throw Libc.Error(what, hint);
        }
        return new Mapping(address, length);
    }
}
