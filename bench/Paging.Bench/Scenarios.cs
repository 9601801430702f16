using System.Diagnostics;
using System.Runtime.InteropServices;
using Paging.Interop;

namespace Paging.Bench;

/// <summary>One measured scenario.</summary>
internal sealed record Result(string Scenario, string Arena, string Backend, string Pattern, int Pages, int Threads, long Faults,
    double Seconds, double NsPerPage, double P50Ns, double P99Ns, long BytesTouched, bool Verified)
{
    public string ReadAhead { get; set; } = "";
    public long BytesRead { get; set; } = -1;

    /// <summary>Managed bytes the pager allocated serving the region in the measured window (the engine: none per
    /// fault; a network store's client library: per request); -1 for baselines.</summary>
    public long ManagedBytes { get; set; } = -1;

    /// <summary>How busy the whole machine was in the measured window, 0–1 of all vCPUs (<see cref="MachineCpu"/>);
    /// -1 when unknown.</summary>
    public double CpuBusy { get; init; } = -1;
    public double ReadPerTouched => BytesRead < 0 ? 0 : (double)BytesRead / BytesTouched;
    public string? Baseline { get; set; }
    public double BaselineNsPerPage { get; set; }
    public double Ratio => BaselineNsPerPage > 0 ? NsPerPage / BaselineNsPerPage : 0;
    public double GBps => BytesTouched / Seconds / 1e9;
}

/// <summary>
/// Touches pages and times every touch. A touch is one 8-byte load per 4 KiB page; its latency includes the fault
/// when there is one. The same offsets run through Paging and through the kernel baselines.
/// </summary>
internal static unsafe partial class Scenarios
{
    public const int Page = 4096;

    /// <summary>Offsets (bytes) of the pages a pattern touches, inside [0, span).</summary>
    public static long[] Offsets(string pattern, int pages, long span)
    {
        long total = span / Page;
        pages = (int)Math.Min(pages, total);
        var result = new long[pages];
        if (pattern == "random")
        {
            // Distinct pages, uniformly over the whole span (partial Fisher-Yates over page indices).
            var index = new int[total];
            for (int i = 0; i < total; i++)
            {
                index[i] = i;
            }
            var rng = new Random(42);
            for (int i = 0; i < pages; i++)
            {
                int j = i + rng.Next((int)(total - i));
                (index[i], index[j]) = (index[j], index[i]);
                result[i] = (long)index[i] * Page;
            }
        }
        else
        {
            for (int i = 0; i < pages; i++)
            {
                result[i] = (long)i * Page;
            }
        }
        return result;
    }

    /// <summary>Touches <paramref name="offsets"/> from <paramref name="threads"/> threads (contiguous shares), storing
    /// each touch's latency; returns the wall time in seconds and the sum of the words read.</summary>
    public static (double Seconds, ulong Sum) Touch(byte* basePtr, long[] offsets, long[] latencies, int threads)
    {
        ulong total = 0;
        using var start = new Barrier(threads + 1);
        var workers = new Thread[threads];
        int share = (offsets.Length + threads - 1) / threads;
        for (int t = 0; t < threads; t++)
        {
            int from = t * share, to = Math.Min(offsets.Length, from + share);
            workers[t] = new Thread(() =>
            {
                start.SignalAndWait();
                ulong sum = TouchRange(basePtr, offsets, latencies, from, to);
                Interlocked.Add(ref total, sum);
            }) { Name = $"toucher {t}" };
            workers[t].Start();
        }
        start.SignalAndWait();
        MachineCpu.Begin();
        long t0 = Stopwatch.GetTimestamp();
        foreach (var w in workers)
        {
            w.Join();
        }
        double seconds = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        MachineCpu.End(seconds);
        return (seconds, total);
    }

    private static ulong TouchRange(byte* basePtr, long[] offsets, long[] latencies, int from, int to)
    {
        ulong sum = 0;
        for (int i = from; i < to; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            sum += Volatile.Read(ref *(ulong*)(basePtr + offsets[i]));
            latencies[i] = Stopwatch.GetTimestamp() - t0;
        }
        return sum;
    }

    /// <summary>The pread baseline: each touch is one 4 KiB pread into a buffer, from <paramref name="threads"/>
    /// threads (contiguous shares, as the touches are split).</summary>
    public static (double Seconds, ulong Sum) Pread(FileDescriptor fd, long[] offsets, long[] latencies, int threads = 1)
    {
        ulong total = 0;
        using var start = new Barrier(threads + 1);
        var workers = new Thread[threads];
        int share = (offsets.Length + threads - 1) / threads;
        Exception? error = null;
        for (int t = 0; t < threads; t++)
        {
            int from = t * share, to = Math.Min(offsets.Length, from + share);
            workers[t] = new Thread(() =>
            {
                byte* buffer = (byte*)NativeMemory.AlignedAlloc(Page, Page);
                try
                {
                    start.SignalAndWait();
                    ulong sum = 0;
                    for (int i = from; i < to; i++)
                    {
                        long s = Stopwatch.GetTimestamp();
                        if (Libc.Pread(fd, buffer, Page, offsets[i]) != Page)
                        {
                            throw Libc.Error($"pread at {offsets[i]}");
                        }
                        sum += *(ulong*)buffer;
                        latencies[i] = Stopwatch.GetTimestamp() - s;
                    }
                    Interlocked.Add(ref total, sum);
                }
                catch (PagingSystemException e)
                {
                    error = e;
                }
                finally
                {
                    NativeMemory.AlignedFree(buffer);
                }
            }) { Name = $"pread {t}" };
            workers[t].Start();
        }
        start.SignalAndWait();
        MachineCpu.Begin();
        long t0 = Stopwatch.GetTimestamp();
        foreach (var w in workers)
        {
            w.Join();
        }
        double seconds = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        MachineCpu.End(seconds);
        return error is null ? (seconds, total) : throw error;
    }

    /// <summary>The large-pread baseline for cold reads: 1 MiB preads in order over the touched span.</summary>
    public static (double Seconds, ulong Sum) PreadLarge(FileDescriptor fd, long[] offsets, long[] latencies)
    {
        const int chunk = 1 << 20;
        byte* buffer = (byte*)NativeMemory.AlignedAlloc(chunk, Page);
        try
        {
            long span = offsets.Length == 0 ? 0 : offsets[^1] + Page;
            ulong sum = 0;
            MachineCpu.Begin();
            long t0 = Stopwatch.GetTimestamp();
            int k = 0;
            for (long off = 0; off < span; off += chunk)
            {
                long s = Stopwatch.GetTimestamp();
                nint got = Libc.Pread(fd, buffer, chunk, off);
                if (got <= 0)
                {
                    throw Libc.Error($"pread of 1 MiB at {off}");
                }
                long per = (Stopwatch.GetTimestamp() - s) / (chunk / Page);
                for (long p = 0; p < got && k < offsets.Length && off + p == offsets[k]; p += Page, k++)
                {
                    sum += *(ulong*)(buffer + p);
                    latencies[k] = per;
                }
            }
            double seconds = Stopwatch.GetElapsedTime(t0).TotalSeconds;
            MachineCpu.End(seconds);
            return (seconds, sum);
        }
        finally
        {
            NativeMemory.AlignedFree(buffer);
        }
    }

    /// <summary>Drops the page cache (root): the next reads of the data file come from the device (or the host's
    /// cache: on a VM only same-run ratios mean anything).</summary>
    public static bool DropCaches()
    {
        try
        {
            Libc.Sync();
            File.WriteAllText("/proc/sys/vm/drop_caches", "3");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>Stopwatch ticks to nanoseconds.</summary>
    public static double Ns(long ticks) => ticks * 1e9 / Stopwatch.Frequency;

    public static (double P50, double P99) Percentiles(long[] latencies)
    {
        var copy = (long[])latencies.Clone();
        Array.Sort(copy);
        return (Ns(copy[(int)((copy.Length - 1) * 0.50)]), Ns(copy[(int)((copy.Length - 1) * 0.99)]));
    }

    /// <summary>Minor + major page faults of this process so far (getrusage).</summary>
    public static long KernelFaults()
    {
        long* usage = stackalloc long[18];
        if (GetRusage(0, usage) != 0)
        {
            return 0;
        }
        return usage[8] + usage[9]; // ru_minflt, ru_majflt after two struct timevals and four longs
    }

    [LibraryImport("libc", EntryPoint = "getrusage")]
    private static partial int GetRusage(int who, long* usage);
}
