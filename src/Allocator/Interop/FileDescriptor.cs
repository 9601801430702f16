using System.Runtime.InteropServices;

namespace Paging.Interop;

/// <summary>Owns one file descriptor; closing it is the only way it is released.</summary>
internal sealed class FileDescriptor : SafeHandle
{
    public FileDescriptor(int fd) : base(-1, ownsHandle: true) => SetHandle(fd);

    public FileDescriptor() : base(-1, ownsHandle: true) { }

    public override bool IsInvalid => handle == -1;

    /// <summary>The raw fd; valid while this handle is alive.</summary>
    public int Fd => (int)handle;

    protected override bool ReleaseHandle() => Libc.Close((int)handle) == 0;

    /// <summary>Takes ownership of a raw fd returned by a syscall, or throws the call's error if it is negative.</summary>
    public static FileDescriptor FromResult(int fd, string what, string? hint = null)
    {
        if (fd < 0)
        {
            throw Libc.Error(what, hint);
        }
        return new FileDescriptor(fd);
    }

    public static FileDescriptor OpenPidfd(int pid)
    {
        long fd = Libc.Syscall(Libc.SysPidfdOpen, pid, 0);
        return FromResult((int)fd, $"pidfd_open({pid})");
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

    public static Mapping Map(long length, int prot, int flags, int fd, long offset, string what, string? hint = null)
    {
        nint address = Libc.Mmap(0, (nuint)length, prot, flags, fd, offset);
        if (address == Libc.MAP_FAILED)
        {
            throw Libc.Error(what, hint);
        }
        return new Mapping(address, length);
    }
}
