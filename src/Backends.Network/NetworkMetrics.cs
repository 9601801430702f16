using System.Diagnostics.Metrics;

namespace Paging.Backends.Network;

/// <summary>
/// The network stores' instruments, recorded where the stores run — the pager process (attach dotnet-counters to the
/// pager's pid: <c>dotnet-counters monitor --counters Paging.Backends.Network -p &lt;pager pid&gt;</c>). Each
/// measurement carries the tag <c>store</c> (<c>http</c>, <c>s3</c>). They count requests, not pages: a coalesced
/// request carries up to <see cref="RangedObjectStore.MaxRequestBytes"/>, so recording costs nothing per page.
/// </summary>
internal static class NetworkMetrics
{
    public static readonly Meter Meter = new("Paging.Backends.Network", "1.0");

    /// <summary>Ranged requests sent; every attempt counts.</summary>
    public static readonly Counter<long> Requests = Meter.CreateCounter<long>("paging.network.requests", "{request}",
        "ranged requests sent (every attempt counts)");

    /// <summary>Attempts that failed transiently (5xx, 429, reset, truncated body, timeout) and were tried again.</summary>
    public static readonly Counter<long> Retries = Meter.CreateCounter<long>("paging.network.retries", "{request}",
        "attempts that failed transiently and were retried");

    /// <summary>Reads that failed for good: every attempt failed, or the first failure was permanent (404, 403, a
    /// changed object).</summary>
    public static readonly Counter<long> Failures = Meter.CreateCounter<long>("paging.network.failures", "{request}",
        "reads that failed after every attempt or with a permanent error");

    /// <summary>Response body bytes received into destinations.</summary>
    public static readonly Counter<long> BytesFetched = Meter.CreateCounter<long>("paging.network.bytes_fetched", "By",
        "response body bytes received");
}
