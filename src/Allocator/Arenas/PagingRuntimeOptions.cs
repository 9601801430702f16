using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Paging;

/// <summary>How the runtime starts and supervises its pager processes.</summary>
public sealed class PagingRuntimeOptions
{
    /// <summary>Keep a second pager that has every region and takes over the moment the active one dies, without
    /// the application running any code (default true). Without it, the application's supervisor thread restarts
    /// the pager, and that thread can be parked by a GC that itself waits for a thread blocked in a fault.</summary>
    public bool Standby { get; init; } = true;

    /// <summary>The pager to run (Paging.Pager.dll or an executable). Default: PAGING_PAGER, else Paging.Pager.dll
    /// next to the application.</summary>
    public string? PagerPath { get; init; }

    /// <summary>How long a pager may take to start or to answer a request (default 30 s).</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Where the runtime logs pager restarts and errors.</summary>
    public ILoggerFactory LoggerFactory { get; init; } = NullLoggerFactory.Instance;
}
