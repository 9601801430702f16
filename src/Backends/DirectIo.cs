using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using Paging.Stores;

namespace Paging.Backends;

/// <summary>open(2) with O_DIRECT, which <see cref="FileOptions"/> cannot ask for on Linux, and cachestat(2) (how
/// much of a range the page cache holds).</summary>
internal static partial class DirectIo
{
    private const int ReadOnly = 0, ReadWrite = 2, CloseOnExec = 0x80000;

    /// <summary>O_DIRECT on x86_64 and arm64 (asm-generic: 0x10000 on arm64).</summary>
    private static int Direct => RuntimeInformation.ProcessArchitecture == Architecture.Arm64 ? 0x10000 : 0x4000;

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int OpenNative(string path, int flags, int mode);

    /// <summary>cachestat(2) (Linux 6.5): 451 on x86_64 and arm64 alike (the generic syscall table).</summary>
    private const long CachestatSyscall = 451;

    [StructLayout(LayoutKind.Sequential)]
    private struct CachestatRange
    {
        public ulong Offset;
        public ulong Length;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct Cachestat
    {
        public ulong Cache, Dirty, Writeback, Evicted, RecentlyEvicted;
    }

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static unsafe partial long SyscallCachestat(long number, int fd, CachestatRange* range, Cachestat* stat, uint flags);

    /// <summary>How many pages of [offset, offset+length) the page cache holds (cachestat(2): it only counts —
    /// unlike a read with RWF_NOWAIT, which starts the kernel's read-ahead of a range it finds missing); -1 with
    /// <paramref name="errno"/> (ENOSYS before Linux 6.5).</summary>
    public static unsafe long CachedPages(SafeFileHandle file, long offset, long length, out int errno)
    {
        bool added = false;
        try
        {
            file.DangerousAddRef(ref added);
            var range = new CachestatRange { Offset = (ulong)offset, Length = (ulong)length };
            Cachestat stat;
            long r = SyscallCachestat(CachestatSyscall, (int)file.DangerousGetHandle(), &range, &stat, 0);
            errno = r < 0 ? Marshal.GetLastPInvokeError() : 0;
            return r < 0 ? -1 : (long)stat.Cache;
        }
        finally
        {
            if (added)
            {
                file.DangerousRelease();
            }
        }
    }

    public static SafeFileHandle Open(string path, bool writable)
    {
        int fd = OpenNative(path, (writable ? ReadWrite : ReadOnly) | Direct | CloseOnExec, 0);
        if (fd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            throw new PageStoreException(PageStoreError.Configuration, $"cannot open '{path}' with O_DIRECT: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno}); the file system may not support direct I/O (tmpfs does not)");
        }
        return new SafeFileHandle(fd, ownsHandle: true);
    }
}
