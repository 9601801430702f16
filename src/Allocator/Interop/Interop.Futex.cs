using System.Runtime.InteropServices;

namespace Paging.Interop;

internal static unsafe partial class Libc
{
    /// <summary>futex(2): 202 on x86_64, 98 on arm64.</summary>
    private static long FutexNumber => RuntimeInformation.ProcessArchitecture == Architecture.Arm64 ? 98 : 202;

    // Shared (not FUTEX_PRIVATE_FLAG) operations: the word lives in a memfd both processes map.
    private const long FUTEX_WAIT = 0;
    private const long FUTEX_WAKE = 1;

    [LibraryImport(Name, EntryPoint = "syscall", SetLastError = true)]
    private static partial long Syscall(long number, int* address, long op, long value, Timespec* timeout, long address2, long value3);

    [StructLayout(LayoutKind.Sequential)]
    private struct Timespec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    /// <summary>Sleeps while <c>*address == expected</c>, at most <paramref name="timeoutMilliseconds"/> (negative:
    /// no limit). Returns at once when the word differs; spurious returns are allowed, so callers loop.</summary>
    internal static void FutexWait(int* address, int expected, int timeoutMilliseconds)
    {
        if (timeoutMilliseconds < 0)
        {
            _ = Syscall(FutexNumber, address, FUTEX_WAIT, expected, null, 0, 0);
            return;
        }
        var timeout = new Timespec { Seconds = timeoutMilliseconds / 1000, Nanoseconds = timeoutMilliseconds % 1000 * 1_000_000L };
        _ = Syscall(FutexNumber, address, FUTEX_WAIT, expected, &timeout, 0, 0);
    }

    /// <summary>Wakes every waiter on <paramref name="address"/>, in any process that maps it.</summary>
    internal static void FutexWakeAll(int* address) => _ = Syscall(FutexNumber, address, FUTEX_WAKE, int.MaxValue, null, 0, 0);
}
