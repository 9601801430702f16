using Microsoft.Extensions.Logging;

namespace Paging.Logging;

/// <summary>Every log line the library and the pager write, as source-generated [LoggerMessage] methods: no
/// allocation or formatting unless the level is enabled. Nothing on the fault path logs above Debug; the Error and
/// Critical lines below are the failures a fault path cannot hide (a store that fails, an ioctl the kernel refuses).</summary>
internal static partial class Log
{
    // ---- supervision (application process) ----

    [LoggerMessage(1, LogLevel.Warning, "pager {Dead} exited; pager {Pid} serves the faults now ({Restarts} restarts)")]
    public static partial void PagerReplaced(ILogger logger, int dead, int pid, int restarts);

    [LoggerMessage(2, LogLevel.Warning, "dropping the standby pager {Pid}: {Error}")]
    public static partial void DroppingStandby(ILogger logger, int pid, string error);

    [LoggerMessage(3, LogLevel.Warning, "pager {Pid} could not remove region {Id}: {Error}")]
    public static partial void RemoveFailed(ILogger logger, int pid, ulong id, string error);

    [LoggerMessage(4, LogLevel.Error, "could not restart the pager; retrying in 1 s")]
    public static partial void RestartFailed(ILogger logger, Exception error);

    [LoggerMessage(5, LogLevel.Error, "{Operation} of {Length} bytes at 0x{Address:x} failed with {Errno}: threads waiting there may stay blocked until they fault again")]
    public static partial void UffdCallFailed(ILogger logger, string operation, ulong length, ulong address, Errno errno);

    // ---- pager: control ----

    [LoggerMessage(20, LogLevel.Critical, "usage: Paging.Pager --fd <inherited socket fd> --app-pid <application pid>; the library starts the pager itself")]
    public static partial void Usage(ILogger logger);

    [LoggerMessage(21, LogLevel.Critical, "the application (pid {Pid}) is gone: {Error}")]
    public static partial void ApplicationGone(ILogger logger, int pid, string error);

    [LoggerMessage(22, LogLevel.Debug, "{Why}; pager exits")]
    public static partial void PagerExits(ILogger logger, string why);

    [LoggerMessage(23, LogLevel.Warning, "the active pager exited; this standby takes over")]
    public static partial void Promoting(ILogger logger);

    [LoggerMessage(24, LogLevel.Error, "pager request {Request} ({Type}) failed: {Error}")]
    public static partial void RequestFailed(ILogger logger, ulong request, uint type, string error);

    [LoggerMessage(25, LogLevel.Warning, "could not answer the application: {Error}")]
    public static partial void ReplyFailed(ILogger logger, string error);

    [LoggerMessage(26, LogLevel.Debug, "pager {Pid} serving application {App} as {Role}")]
    public static partial void Serving(ILogger logger, int pid, int app, string role);

    [LoggerMessage(27, LogLevel.Debug, "region {Id}: {Kind} {Length} bytes at 0x{Address:x}, store {Store}")]
    public static partial void RegionAdded(ILogger logger, ulong id, ArenaKind kind, ulong length, ulong address, string store);

    // ---- pager: fault engine ----

    [LoggerMessage(40, LogLevel.Critical, "poll on the userfaultfd failed: {Error}")]
    public static partial void PollFailed(ILogger logger, string error);

    [LoggerMessage(41, LogLevel.Error, "read(userfaultfd) failed with {Errno}")]
    public static partial void ReadFailed(ILogger logger, Errno errno);

    [LoggerMessage(42, LogLevel.Error, "store {Store} failed to read {Length} bytes at offset {Offset} of region {Region} after {Attempts} attempt(s); the pages are poisoned and a thread touching them gets SIGBUS")]
    public static partial void StoreReadFailed(ILogger logger, Exception error, string store, int length, long offset, ulong region, int attempts);

    [LoggerMessage(43, LogLevel.Critical, "cannot poison {Count} page(s) at 0x{Address:x} ({Errno}); the faulting threads will retry")]
    public static partial void PoisonFailed(ILogger logger, long count, ulong address, Errno errno);

    [LoggerMessage(44, LogLevel.Error, "UFFDIO_CONTINUE at 0x{Address:x} keeps failing with EFAULT; poisoning")]
    public static partial void ContinueKeepsFailing(ILogger logger, ulong address);

    [LoggerMessage(45, LogLevel.Error, "resolving {Length} bytes at 0x{Address:x} failed with {Errno}")]
    public static partial void ResolveFailed(ILogger logger, ulong length, ulong address, Errno errno);

    [LoggerMessage(47, LogLevel.Error, "store {Store} did not answer a read at offset {Offset} of region {Region} within {Seconds} s; the pages threads wait for are poisoned")]
    public static partial void StoreReadTimedOut(ILogger logger, string store, long offset, ulong region, double seconds);

    [LoggerMessage(46, LogLevel.Error, "the fault thread did not stop within {Seconds} s (a store call that does not return?); it releases its buffers and stores itself when it stops")]
    public static partial void FaultThreadStuck(ILogger logger, double seconds);

    [LoggerMessage(60, LogLevel.Warning, "eviction of region {Region} failed: {Reason}")]
    public static partial void EvictionFailed(ILogger logger, ulong region, string reason);

    [LoggerMessage(61, LogLevel.Error, "writing back {Length} bytes at offset {Offset} of region {Region} failed: {Reason}; the pages stay resident and dirty")]
    public static partial void WriteBackFailed(ILogger logger, long length, long offset, ulong region, string reason);

    [LoggerMessage(62, LogLevel.Warning, "region {Region}: a dirty scan was in progress when the previous pager stopped; every resident page is treated as dirty")]
    public static partial void DirtyScanInterrupted(ILogger logger, ulong region);

    [LoggerMessage(64, LogLevel.Information, "region {Region}: {Pages} pages mapped by the previous pager (or the application) were not yet marked filled; marked at takeover")]
    public static partial void PagesAdopted(ILogger logger, ulong region, long pages);

    [LoggerMessage(63, LogLevel.Error, "region {Region} was disposed but its final flush failed: writes since the last successful Flush may be lost: {Reason}")]
    public static partial void DisposeFlushFailed(ILogger logger, ulong region, string reason);
}
