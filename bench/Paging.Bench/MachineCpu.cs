namespace Paging.Bench;

/// <summary>
/// How busy the whole machine was during a measured window: every vCPU, every process (the pager, nginx, s3rver, the
/// kernel), steal included, from the first line of /proc/stat. A row near 100% was bound by CPU, so whatever a
/// design adds per page lengthens it; a row well below waited (on requests, a device, the host). On this 2-vCPU guest
/// the 8-stream HTTP yardstick alone keeps both vCPUs 98–100% busy (docs/BENCHMARKS.md §30).
/// </summary>
/// <remarks>The harness runs one row at a time, so the last window timed is the row being reported; the scenarios
/// call <see cref="Begin"/> and <see cref="End"/> around exactly the span their seconds measure.</remarks>
internal static class MachineCpu
{
    private static double _startBusy = double.NaN;

    /// <summary>The busy fraction (0–1 of all vCPUs) of the last window timed, or -1 when /proc/stat is unreadable.</summary>
    public static double LastFraction { get; private set; } = -1;

    /// <summary>Starts a window.</summary>
    public static void Begin() => _startBusy = BusySeconds();

    /// <summary>Ends the window begun last, <paramref name="seconds"/> long by the caller's clock.</summary>
    public static void End(double seconds)
    {
        double now = BusySeconds();
        LastFraction = double.IsNaN(now) || double.IsNaN(_startBusy) || seconds <= 0
            ? -1
            : Math.Clamp((now - _startBusy) / (seconds * Environment.ProcessorCount), 0, 1);
        _startBusy = double.NaN;
    }

    /// <summary>Busy CPU seconds since boot, summed over vCPUs: user + nice + system + irq + softirq + steal (idle and
    /// iowait left out), in USER_HZ ticks (100 per second: a 10 ms grain, against rows of 0.1 s and more).</summary>
    private static double BusySeconds()
    {
        try
        {
            using var reader = new StreamReader("/proc/stat");
            string? line = reader.ReadLine();
            if (line is null || !line.StartsWith("cpu ", StringComparison.Ordinal))
            {
                return double.NaN;
            }
            var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (f.Length < 9)
            {
                return double.NaN;
            }
            long busy = 0;
            foreach (int i in (ReadOnlySpan<int>)[1, 2, 3, 6, 7, 8])
            {
                busy += long.Parse(f[i], System.Globalization.CultureInfo.InvariantCulture);
            }
            return busy / 100.0;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            return double.NaN;
        }
    }
}
