using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using Paging.Stores;

namespace Paging.Backends;

/// <summary>open(2) with O_DIRECT, which <see cref="FileOptions"/> cannot ask for on Linux.</summary>
internal static partial class DirectIo
{
    private const int ReadOnly = 0, ReadWrite = 2, CloseOnExec = 0x80000;

    /// <summary>O_DIRECT on x86_64 and arm64 (asm-generic: 0x10000 on arm64).</summary>
    private static int Direct => RuntimeInformation.ProcessArchitecture == Architecture.Arm64 ? 0x10000 : 0x4000;

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int OpenNative(string path, int flags, int mode);

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
