using System.Runtime.InteropServices;
using Paging.Interop;

namespace Paging.Faults;

/// <summary>
/// One userfaultfd: creation (syscall, then the /dev/userfaultfd fallback), the UFFDIO_API handshake and the
/// ioctls. The application creates it; the pager receives the same fd over SCM_RIGHTS and uses the resolving ioctls.
/// </summary>
internal sealed unsafe class Userfaultfd : IDisposable
{
    private const string PermissionHint =
        "userfaultfd is not permitted: run as root, grant CAP_SYS_PTRACE, or set vm.unprivileged_userfaultfd=1";

    public Userfaultfd(FileDescriptor fd, UffdFeatures features)
    {
        Handle = fd;
        Features = features;
    }

    public FileDescriptor Handle { get; }

    public int Fd => Handle.Fd;

    /// <summary>The features this fd was opened with (the handshake's answer, masked to what was asked).</summary>
    public UffdFeatures Features { get; }

    public void Dispose() => Handle.Dispose();

    /// <summary>Creates a uffd and completes the API handshake asking for <paramref name="wanted"/>.</summary>
    public static Userfaultfd Create(UffdFeatures wanted, out UffdFeatures supported)
    {
        var fd = OpenRaw();
        try
        {
            var api = new Libc.UffdioApi { Api = Libc.UFFD_API, Features = (ulong)wanted };
            if (Libc.Ioctl(fd.Fd, Libc.UFFDIO_API, &api) != 0)
            {
                throw Libc.Error($"UFFDIO_API asking for features {wanted}");
            }
            supported = (UffdFeatures)api.Features;
            return new Userfaultfd(fd, wanted);
        }
        catch
        {
            fd.Dispose();
            throw;
        }
    }

    /// <summary>Asks the kernel which features it has, without keeping the fd.</summary>
    public static UffdFeatures Probe()
    {
        using var fd = OpenRaw();
        var api = new Libc.UffdioApi { Api = Libc.UFFD_API, Features = 0 };
        if (Libc.Ioctl(fd.Fd, Libc.UFFDIO_API, &api) != 0)
        {
            throw Libc.Error("UFFDIO_API probe");
        }
        return (UffdFeatures)api.Features;
    }

    private static FileDescriptor OpenRaw()
    {
        const int flags = Libc.O_CLOEXEC | Libc.O_NONBLOCK;
        int fd = (int)Libc.Syscall(Libc.SysUserfaultfd, flags);
        if (fd >= 0)
        {
            return new FileDescriptor(fd);
        }
        int errno = Marshal.GetLastPInvokeError();
        if (errno == Errno.ENOSYS)
        {
            throw Libc.Error(errno, "userfaultfd()", "this kernel was built without CONFIG_USERFAULTFD");
        }
        if (errno != Errno.EPERM)
        {
            throw Libc.Error(errno, "userfaultfd()");
        }
        // EPERM: the syscall is restricted (vm.unprivileged_userfaultfd=0); /dev/userfaultfd is governed by file
        // permissions instead.
        int dev = Libc.Open("/dev/userfaultfd", Libc.O_RDWR | Libc.O_CLOEXEC, 0);
        if (dev < 0)
        {
            throw Libc.Error(errno, "userfaultfd()", PermissionHint);
        }
        using var device = new FileDescriptor(dev);
        int created = Libc.Ioctl(dev, Libc.USERFAULTFD_IOC_NEW, (nint)flags);
        return FileDescriptor.FromResult(created, "ioctl(/dev/userfaultfd, USERFAULTFD_IOC_NEW)", PermissionHint);
    }

    /// <summary>Registers [start, start+length) and returns the ioctls the kernel allows on it.</summary>
    public ulong Register(nint start, long length, ulong mode)
    {
        var reg = new Libc.UffdioRegister { Range = new() { Start = (ulong)start, Len = (ulong)length }, Mode = mode };
        if (Libc.Ioctl(Fd, Libc.UFFDIO_REGISTER, &reg) != 0)
        {
            throw Libc.Error($"UFFDIO_REGISTER of {length} bytes at 0x{start:x} (mode {mode})");
        }
        return reg.Ioctls;
    }

    /// <summary>Unregisters the range; the kernel wakes every thread still waiting in it.</summary>
    public int Unregister(nint start, long length)
    {
        var range = new Libc.UffdioRange { Start = (ulong)start, Len = (ulong)length };
        return Libc.Ioctl(Fd, Libc.UFFDIO_UNREGISTER, &range) == 0 ? 0 : Marshal.GetLastPInvokeError();
    }

    public static int Wake(int fd, ulong start, ulong length)
    {
        var range = new Libc.UffdioRange { Start = start, Len = length };
        return Libc.Ioctl(fd, Libc.UFFDIO_WAKE, &range) == 0 ? 0 : Marshal.GetLastPInvokeError();
    }
}
