using Paging.Interop;

namespace Paging.Kernel;

/// <summary>
/// One userfaultfd: creation (syscall, then the /dev/userfaultfd fallback), the UFFDIO_API handshake and the
/// ioctls. The application creates it and registers ranges (errors are exceptions: they happen once, at region
/// creation); the pager receives the same fd over SCM_RIGHTS and resolves faults with the calls that return an
/// <see cref="Errno"/> — on the fault path EEXIST, EAGAIN and EFAULT are outcomes to act on, not exceptions.
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

    /// <summary>The features this fd was opened with (the handshake's answer, masked to what was asked).</summary>
    public UffdFeatures Features { get; }

    public void Dispose() => Handle.Dispose();

    /// <summary>Creates a uffd and completes the API handshake asking for <paramref name="wanted"/>.</summary>
    public static Userfaultfd Create(UffdFeatures wanted)
    {
        var fd = OpenRaw();
        try
        {
            var api = new Libc.UffdioApi { Api = Libc.UFFD_API, Features = (ulong)wanted };
            if (Libc.Ioctl(fd, Libc.UFFDIO_API, &api) != 0)
            {
                throw Libc.Error($"UFFDIO_API asking for features {wanted}");
            }
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
        if (Libc.Ioctl(fd, Libc.UFFDIO_API, &api) != 0)
        {
            throw Libc.Error("UFFDIO_API probe");
        }
        return (UffdFeatures)api.Features;
    }

    private static FileDescriptor OpenRaw()
    {
        const int flags = (int)(OpenFlags.CloseOnExec | OpenFlags.NonBlock);
        long fd = Libc.Syscall(SyscallNumbers.Userfaultfd, flags);
        if (fd >= 0)
        {
            return new FileDescriptor((int)fd);
        }
        var errno = Libc.LastErrno;
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
        using var device = Libc.Open("/dev/userfaultfd", OpenFlags.ReadWrite | OpenFlags.CloseOnExec, 0);
        if (device.IsInvalid)
        {
            throw Libc.Error(errno, "userfaultfd()", PermissionHint);
        }
        int created = Libc.Ioctl(device, Libc.USERFAULTFD_IOC_NEW, flags);
        if (created < 0)
        {
            throw Libc.Error("ioctl(/dev/userfaultfd, USERFAULTFD_IOC_NEW)", PermissionHint);
        }
        return new FileDescriptor(created);
    }

    /// <summary>Registers [start, start+length) and returns the ioctls the kernel allows on it.</summary>
    public UffdIoctls Register(nint start, long length, UffdRegisterMode mode)
    {
        var reg = new Libc.UffdioRegister { Range = new() { Start = (ulong)start, Len = (ulong)length }, Mode = (ulong)mode };
        if (Libc.Ioctl(Handle, Libc.UFFDIO_REGISTER, &reg) != 0)
        {
            throw Libc.Error($"UFFDIO_REGISTER of {length} bytes at 0x{start:x} (mode {mode})");
        }
        return (UffdIoctls)reg.Ioctls;
    }

    /// <summary>Unregisters the range; the kernel wakes every thread still waiting in it.</summary>
    public Errno Unregister(nint start, long length)
    {
        var range = new Libc.UffdioRange { Start = (ulong)start, Len = (ulong)length };
        return Libc.Ioctl(Handle, Libc.UFFDIO_UNREGISTER, &range) == 0 ? Errno.None : Libc.LastErrno;
    }

    /// <summary>Wakes the threads waiting on [start, start+length) so they fault again.</summary>
    public Errno Wake(ulong start, ulong length)
    {
        var range = new Libc.UffdioRange { Start = start, Len = length };
        return Libc.Ioctl(Handle, Libc.UFFDIO_WAKE, &range) == 0 ? Errno.None : Libc.LastErrno;
    }

    /// <summary>UFFDIO_CONTINUE: maps page-cache pages and wakes the threads waiting on the pages mapped.
    /// <paramref name="mapped"/> is the progress in bytes (partial when the call failed part-way).</summary>
    public Errno Continue(ulong start, ulong length, out long mapped, bool writeProtect = false)
    {
        var c = new Libc.UffdioContinue { Range = new() { Start = start, Len = length }, Mode = writeProtect ? Libc.UFFDIO_CONTINUE_MODE_WP : 0 };
        int rc = Libc.Ioctl(Handle, Libc.UFFDIO_CONTINUE, &c);
        var errno = rc == 0 ? Errno.None : Libc.LastErrno;
        // A negative out-field is an errno, not a count.
        mapped = rc == 0 ? (long)length : Math.Max(0, c.Mapped);
        return errno;
    }

    /// <summary>UFFDIO_WRITEPROTECT: protects (or unprotects) [start, start+length). An unprotect wakes the threads
    /// waiting on the range only with <paramref name="wake"/> (it resolves their write faults); a protect never wakes,
    /// and the kernel refuses WP together with DONTWAKE (EINVAL, fs/userfaultfd.c), so none is passed with it.</summary>
    public Errno WriteProtect(ulong start, ulong length, bool protect, bool wake = false)
    {
        ulong mode = protect ? Libc.UFFDIO_WRITEPROTECT_MODE_WP : wake ? 0 : Libc.UFFDIO_WRITEPROTECT_MODE_DONTWAKE;
        var w = new Libc.UffdioWriteprotect { Range = new() { Start = start, Len = length }, Mode = mode };
        return Libc.Ioctl(Handle, Libc.UFFDIO_WRITEPROTECT, &w) == 0 ? Errno.None : Libc.LastErrno;
    }

    /// <summary>UFFDIO_COPY of <paramref name="length"/> bytes from <paramref name="source"/>, waking the waiters;
    /// with <paramref name="writeProtect"/> the pages are mapped write-protected (tracked anonymous regions).</summary>
    public Errno Copy(ulong destination, ulong source, ulong length, out long copied, bool writeProtect = false)
    {
        var c = new Libc.UffdioCopy { Dst = destination, Src = source, Len = length, Mode = writeProtect ? Libc.UFFDIO_COPY_MODE_WP : 0 };
        int rc = Libc.Ioctl(Handle, Libc.UFFDIO_COPY, &c);
        var errno = rc == 0 ? Errno.None : Libc.LastErrno;
        copied = rc == 0 ? (long)length : Math.Max(0, c.Copy);
        return errno;
    }

    /// <summary>UFFDIO_MOVE (Linux 6.8+): moves the anonymous pages of [source, source+length) to [destination, ...) in
    /// the application, atomically per page (a thread touching a source page after its move faults), without waking
    /// anyone. Holes in the source are skipped. <paramref name="moved"/> is the progress in bytes.</summary>
    public Errno Move(ulong destination, ulong source, ulong length, out long moved)
    {
        var m = new Libc.UffdioMove { Dst = destination, Src = source, Len = length, Mode = Libc.UFFDIO_MOVE_MODE_DONTWAKE | Libc.UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES };
        int rc = Libc.Ioctl(Handle, Libc.UFFDIO_MOVE, &m);
        var errno = rc == 0 ? Errno.None : Libc.LastErrno;
        moved = rc == 0 ? (long)length : Math.Max(0, m.Move);
        return errno;
    }

    /// <summary>UFFDIO_ZEROPAGE: maps the shared zero page, waking the waiters.</summary>
    public Errno ZeroPage(ulong start, ulong length, out long done)
    {
        var z = new Libc.UffdioZeropage { Range = new() { Start = start, Len = length } };
        int rc = Libc.Ioctl(Handle, Libc.UFFDIO_ZEROPAGE, &z);
        var errno = rc == 0 ? Errno.None : Libc.LastErrno;
        done = rc == 0 ? (long)length : Math.Max(0, z.Zeropage);
        return errno;
    }

    /// <summary>UFFDIO_POISON: a later access gets SIGBUS (EFAULT for a kernel access). Wakes the waiters.</summary>
    public Errno Poison(ulong start, ulong length)
    {
        if ((Features & UffdFeatures.Poison) == 0)
        {
            return Errno.ENOSYS;
        }
        var p = new Libc.UffdioPoison { Range = new() { Start = start, Len = length } };
        return Libc.Ioctl(Handle, Libc.UFFDIO_POISON, &p) == 0 ? Errno.None : Libc.LastErrno;
    }

    /// <summary>Reads up to <paramref name="capacity"/> messages without blocking. Returns the count (0 when none
    /// are queued) or -1 with <paramref name="error"/> set.</summary>
    public int ReadMessages(Libc.UffdMsg* buffer, int capacity, out Errno error)
    {
        nint got = Libc.Read(Handle, buffer, (nuint)(capacity * sizeof(Libc.UffdMsg)));
        if (got >= 0)
        {
            error = Errno.None;
            return (int)(got / sizeof(Libc.UffdMsg));
        }
        error = Libc.LastErrno;
        return error is Errno.EAGAIN or Errno.EINTR ? 0 : -1;
    }
}
