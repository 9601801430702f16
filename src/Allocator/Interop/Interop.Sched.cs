using System.Runtime.InteropServices;

namespace Paging.Interop;

/// <summary>sched_setaffinity / sched_getaffinity (glibc wrappers; the mask is a cpu_set_t of 1024 bits).</summary>
internal static unsafe partial class Libc
{
    /// <summary>sizeof(cpu_set_t): 1024 CPUs.</summary>
    internal const int CpuSetBytes = 128;

    [LibraryImport(Name, EntryPoint = "sched_setaffinity", SetLastError = true)]
    internal static partial int SchedSetaffinity(int pid, nuint size, byte* mask);

    [LibraryImport(Name, EntryPoint = "sched_getaffinity", SetLastError = true)]
    internal static partial int SchedGetaffinity(int pid, nuint size, byte* mask);
}
