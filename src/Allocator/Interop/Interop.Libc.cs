using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

[assembly: DisableRuntimeMarshalling]

namespace Paging.Interop;

/// <summary>Native entry points, one partial file per syscall family (dotnet/runtime's Interop/Unix layout); the
/// syscall numbers are in Interop.SyscallNumbers.cs.</summary>
internal static partial class Libc
{
    internal const string Name = "libc";

    /// <summary>The errno of the last failed call, read right after it (every import has SetLastError = true).</summary>
    internal static Errno LastErrno => (Errno)Marshal.GetLastPInvokeError();

    /// <summary>Reads errno right after the failed call and builds an exception that says what failed.</summary>
    internal static PagingSystemException Error(string what, string? hint = null) => Error(LastErrno, what, hint);

    internal static PagingSystemException Error(Errno errno, string what, string? hint = null)
    {
        string message = $"{what} failed: {Marshal.GetPInvokeErrorMessage((int)errno)} ({errno})";
        if (hint is not null)
        {
            message += ". " + hint;
        }
        return new PagingSystemException(message, errno);
    }
}
