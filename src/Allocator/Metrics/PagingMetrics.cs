using System.Diagnostics.Metrics;
using Paging.Protocol;

namespace Paging.Metrics;

/// <summary>
/// Application-side instruments (meter "Paging", visible with <c>dotnet-counters monitor --counters Paging</c> on the
/// application's pid). They read the regions' control blocks, which the pager updates, so they stay right across
/// pager restarts.
/// </summary>
internal static class PagingMetrics
{
    public static readonly Meter Meter = new("Paging", "1.0");

    private static readonly List<IRegionCounters> s_regions = [];

    static PagingMetrics()
    {
        Meter.CreateObservableCounter("paging.faults", () => Measure(
            (RegionStat.MissingFaults, "missing"), (RegionStat.MinorFaults, "minor")), "{fault}", "page faults served, by kind");
        Meter.CreateObservableCounter("paging.pages_filled", () => Sum(RegionStat.PagesFilled), "{page}", "pages filled from stores");
        Meter.CreateObservableCounter("paging.caller_fills", () => Sum(RegionStat.CallerFills), "{page}", "pages the application read in on its own thread (PagedFile.Fetch)");
        Meter.CreateObservableCounter("paging.zero_pages", () => Sum(RegionStat.ZeroPagesFilled), "{page}", "pages resolved as zeros");
        Meter.CreateObservableCounter("paging.bytes_read", MeasureBytesByStore, "By", "bytes read from stores, by store kind");
        Meter.CreateObservableCounter("paging.errors", () => Sum(RegionStat.Errors), "{error}", "store or ioctl errors");
        Meter.CreateObservableGauge("paging.fault.service_time.p50", () => Percentile(0.50), "ns", "pager service time p50 (log2 buckets)");
        Meter.CreateObservableGauge("paging.fault.service_time.p99", () => Percentile(0.99), "ns", "pager service time p99 (log2 buckets)");
    }

    public static void Track(IRegionCounters region)
    {
        lock (s_regions)
        {
            s_regions.Add(region);
        }
    }

    public static void Untrack(IRegionCounters region)
    {
        lock (s_regions)
        {
            s_regions.Remove(region);
        }
    }

    private static long Sum(RegionStat stat)
    {
        lock (s_regions)
        {
            long total = 0;
            foreach (var r in s_regions)
            {
                total += r.ReadStat(stat);
            }
            return total;
        }
    }

    private static IEnumerable<Measurement<long>> Measure(params (RegionStat Stat, string Kind)[] stats)
    {
        foreach (var (stat, kind) in stats)
        {
            yield return new Measurement<long>(Sum(stat), new KeyValuePair<string, object?>("kind", kind));
        }
    }

    private static IEnumerable<Measurement<long>> MeasureBytesByStore()
    {
        Dictionary<string, long> byStore = [];
        lock (s_regions)
        {
            foreach (var r in s_regions)
            {
                byStore[r.StoreKind] = byStore.GetValueOrDefault(r.StoreKind) + r.ReadStat(RegionStat.BytesRead);
            }
        }
        foreach (var (store, bytes) in byStore)
        {
            yield return new Measurement<long>(bytes, new KeyValuePair<string, object?>("store", store));
        }
    }

    private static double Percentile(double q)
    {
        Span<long> total = stackalloc long[RegionControlBlock.LatencyBuckets];
        Span<long> one = stackalloc long[RegionControlBlock.LatencyBuckets];
        lock (s_regions)
        {
            foreach (var r in s_regions)
            {
                r.CopyLatency(one);
                for (int i = 0; i < one.Length; i++)
                {
                    total[i] += one[i];
                }
            }
        }
        return LatencyHistogram.Percentile(total, q);
    }
}

/// <summary>What the application-side instruments read of a region: its control block's counters.</summary>
internal interface IRegionCounters
{
    /// <summary>The store kind, the tag of paging.bytes_read.</summary>
    string StoreKind { get; }

    /// <summary>A counter (0 once the region is disposed).</summary>
    long ReadStat(RegionStat stat);

    /// <summary>The service-time histogram (left unchanged once the region is disposed).</summary>
    void CopyLatency(Span<long> destination);
}

/// <summary>Reads percentiles out of log2 buckets (bucket b holds [2^(b-1), 2^b) ns; the bucket's geometric middle is
/// reported, so a value is within a factor of 1.42 of the truth).</summary>
internal static class LatencyHistogram
{
    public static double Percentile(ReadOnlySpan<long> buckets, double q)
    {
        long count = 0;
        foreach (long b in buckets)
        {
            count += b;
        }
        if (count == 0)
        {
            return 0;
        }
        long rank = (long)Math.Ceiling(q * count);
        long seen = 0;
        for (int i = 0; i < buckets.Length; i++)
        {
            seen += buckets[i];
            if (seen >= rank)
            {
                return i == 0 ? 0 : Math.Pow(2, i - 0.5);
            }
        }
        return Math.Pow(2, buckets.Length);
    }
}
