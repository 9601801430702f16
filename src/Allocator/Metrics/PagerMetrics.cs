using System.Diagnostics.Metrics;

namespace Paging.Metrics;

/// <summary>Instruments recorded inside the pager process (attach dotnet-counters to the pager's pid, meter "Paging.Pager").</summary>
internal static class PagerMetrics
{
    public static readonly Meter Meter = new("Paging.Pager", "1.0");

    /// <summary>Time from reading a batch of fault messages to the ioctl that resolved a run, in microseconds.</summary>
    public static readonly Histogram<double> ServiceTime = Meter.CreateHistogram<double>("paging.fault.service_time", "us",
        "time from reading a fault batch to resolving each run");

    /// <summary>Bytes read from stores.</summary>
    public static readonly Counter<long> BytesRead = Meter.CreateCounter<long>("paging.store.bytes_read", "By", "bytes read from page stores");
}
