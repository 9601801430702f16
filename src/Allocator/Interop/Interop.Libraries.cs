using System.Runtime.InteropServices;
using System.Runtime.CompilerServices;

[assembly: DisableRuntimeMarshalling]

namespace Paging.Interop;

/// <summary>Native entry points, one partial file per syscall family (dotnet/runtime's Interop/Unix layout).</summary>
internal static partial class Libc
{
    internal const string Name = "libc";

    /// <summary>Reads errno right after the failed call (SetLastError = true) and builds an exception that says what failed.</summary>
    internal static PagingSystemException Error(string what, string? hint = null) => Error(Marshal.GetLastPInvokeError(), what, hint);

    internal static PagingSystemException Error(int errno, string what, string? hint = null)
    {
        string message = $"{what} failed: {Marshal.GetPInvokeErrorMessage(errno)} ({Errno.Name(errno)})";
        if (hint is not null)
        {
            message += ". " + hint;
        }
        return new PagingSystemException(message, errno);
    }
}

/// <summary>errno values used by the runtime (x86_64 and arm64 share these).</summary>
internal static class Errno
{
    internal const int EPERM = 1, ENOENT = 2, ESRCH = 3, EINTR = 4, EIO = 5, EBADF = 9, EAGAIN = 11, ENOMEM = 12,
        EFAULT = 14, EBUSY = 16, EEXIST = 17, EINVAL = 22, ENOSPC = 28, ENOSYS = 38, EPIPE = 32, ENOTTY = 25, ECONNRESET = 104;

    internal static string Name(int errno) => errno switch
    {
        EPERM => "EPERM", ENOENT => "ENOENT", ESRCH => "ESRCH", EINTR => "EINTR", EIO => "EIO", EBADF => "EBADF",
        EAGAIN => "EAGAIN", ENOMEM => "ENOMEM", EFAULT => "EFAULT", EBUSY => "EBUSY", EEXIST => "EEXIST",
        EINVAL => "EINVAL", ENOSPC => "ENOSPC", ENOSYS => "ENOSYS", EPIPE => "EPIPE", ENOTTY => "ENOTTY",
        _ => "errno " + errno,
    };
}
