using System.Runtime.InteropServices;

namespace Paging.Interop;

/// <summary>process_vm_readv(2): the pager reads an anonymous region's pages out of the application (write-back of
/// tracked anonymous regions, whose pages live only in the application's page tables).</summary>
internal static unsafe partial class Libc
{
    [LibraryImport(Name, EntryPoint = "process_vm_readv", SetLastError = true)]
    internal static partial nint ProcessVmReadv(int pid, IoVec* local, nuint localCount, IoVec* remote, nuint remoteCount, nuint flags);
}
