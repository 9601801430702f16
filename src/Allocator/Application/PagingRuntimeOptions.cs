using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Paging;

/// <summary>How the runtime starts and supervises its pager processes. Every value is checked when it is set.</summary>
public sealed class PagingRuntimeOptions
{
    /// <summary>Keep a second pager that has every region and takes over the moment the active one dies, without
    /// the application running any code (default true). Without it, the application's supervisor thread restarts
    /// the pager, and that thread can be parked by a GC that itself waits for a thread blocked in a fault.</summary>
    public bool Standby { get; init; } = true;

    /// <summary>The pager to run (Paging.Pager.dll or an executable). Default: PAGING_PAGER, else Paging.Pager.dll in
    /// the application's paging-pager folder (where the Paging package puts it, precompiled), else next to the
    /// application.</summary>
    public string? PagerPath { get; init; }

    /// <summary>How long a pager may take to start or to answer a request (default 30 s; positive, at most 24 days).</summary>
    public TimeSpan RequestTimeout
    {
        get;
        init
        {
            ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(value, TimeSpan.Zero, nameof(RequestTimeout));
            ArgumentOutOfRangeException.ThrowIfGreaterThan(value.TotalMilliseconds, int.MaxValue - 1, nameof(RequestTimeout));
            field = value;
        }
    } = TimeSpan.FromSeconds(30);

    /// <summary>How long a fill thread keeps polling the userfaultfd after serving faults before it sleeps (default
    /// zero: off; at most 1 s). With one fault thread, spinning saved a ~30 µs vCPU wake per fault on this 2-vCPU VM;
    /// with the fill-thread engine it costs more than it saves: random one-page faults measured p50 35–41 µs without
    /// a spin and 77–80 µs with 60 µs (and pinning one reader per vCPU, 83–91 µs), docs/BENCHMARKS.md.</summary>
    public TimeSpan PagerSpin
    {
        get;
        init
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, TimeSpan.Zero, nameof(PagerSpin));
            ArgumentOutOfRangeException.ThrowIfGreaterThan(value, TimeSpan.FromSeconds(1), nameof(PagerSpin));
            field = value;
        }
    } = TimeSpan.Zero;

    /// <summary>Fill threads per pager (default 32; 1 … 256). Faults on different pages are served in parallel by
    /// them, so a slow read never holds up an unrelated fault and a cold device sees many reads at once (32 matches
    /// the queue depth of the harness's 32-thread pread baseline). Idle threads sleep; one fault wakes one thread.</summary>
    public int FillThreads
    {
        get;
        init
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 1, nameof(FillThreads));
            ArgumentOutOfRangeException.ThrowIfGreaterThan(value, 256, nameof(FillThreads));
            field = value;
        }
    } = 32;

    /// <summary>The pagers' minimum log level, to their stderr (default Information).</summary>
    public LogLevel PagerLogLevel
    {
        get;
        init
        {
            if (!Enum.IsDefined(value))
            {
                throw new ArgumentOutOfRangeException(nameof(PagerLogLevel), value, "not a LogLevel");
            }
            field = value;
        }
    } = LogLevel.Information;

    /// <summary>Bytes all regions of this runtime keep resident together (null: no shared budget): a buffer pool's
    /// memory over several files. Past it the pager evicts from the regions that track writes (shmem regions with
    /// <see cref="RegionOptions.WriteBack"/> or their own <see cref="RegionOptions.MemoryBudget"/>); other regions
    /// count toward it but are never evicted. At least 4 MiB.</summary>
    public long? MemoryBudget
    {
        get;
        init
        {
            if (value is { } v && v < RegionOptions.MinimumBudget)
            {
                throw new ArgumentOutOfRangeException(nameof(MemoryBudget), v, $"a memory budget must be at least {RegionOptions.MinimumBudget >> 20} MiB");
            }
            field = value;
        }
    }

    /// <summary>How regions that track writes learn which pages were written (default <see cref="Paging.WriteTracking.Auto"/>:
    /// asynchronous where the kernel has WP_ASYNC, else synchronous). Asking for <see cref="Paging.WriteTracking.Asynchronous"/>
    /// on a kernel without it fails at <see cref="PagingRuntime.Start"/>.</summary>
    public WriteTracking WriteTracking
    {
        get;
        init
        {
            if (!Enum.IsDefined(value))
            {
                throw new ArgumentOutOfRangeException(nameof(WriteTracking), value, "not a WriteTracking");
            }
            field = value;
        }
    } = WriteTracking.Auto;

    /// <summary>Where the runtime logs pager restarts and errors.</summary>
    public ILoggerFactory LoggerFactory
    {
        get;
        init => field = value ?? throw new ArgumentNullException(nameof(LoggerFactory));
    } = NullLoggerFactory.Instance;
}
