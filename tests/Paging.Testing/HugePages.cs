using System.Runtime.InteropServices;

namespace Paging.Testing;

/// <summary>Raises vm.nr_hugepages (as root) for a test or a benchmark run and restores the old value: on Dispose, and
/// also when the process is stopped with Ctrl-C, SIGTERM or SIGQUIT — a stopped run must not leave memory reserved as
/// huge pages (finally blocks and Dispose do not run on a signal).</summary>
public sealed class HugePageReservation : IDisposable
{
    private const string Sysctl = "/proc/sys/vm/nr_hugepages";
    private readonly long _previous;
    private readonly PosixSignalRegistration[] _signals;
    private int _restored;

    private HugePageReservation(long previous)
    {
        _previous = previous;
        // The handler runs before the signal's default action, which still ends the process. Pages still mapped when
        // the value drops become surplus pages and are freed when they are unmapped at exit.
        _signals = [.. new[] { PosixSignal.SIGINT, PosixSignal.SIGTERM, PosixSignal.SIGQUIT }.Select(s => PosixSignalRegistration.Create(s, _ => Restore()))];
    }

    /// <summary>Makes at least <paramref name="free"/> 2 MiB pages free. Throws when the kernel cannot provide them
    /// (not root, or memory too fragmented), with the numbers.</summary>
    public static HugePageReservation Reserve(long free)
    {
        long previous = long.Parse(File.ReadAllText(Sysctl).Trim(), System.Globalization.CultureInfo.InvariantCulture);
        long total = Meminfo("HugePages_Total"), available = Meminfo("HugePages_Free");
        long want = previous + Math.Max(0, free - available);
        File.WriteAllText(Sysctl, want.ToString(System.Globalization.CultureInfo.InvariantCulture));
        long now = Meminfo("HugePages_Free");
        if (now < free)
        {
            File.WriteAllText(Sysctl, previous.ToString(System.Globalization.CultureInfo.InvariantCulture));
            throw new InvalidOperationException($"asked for {free} free huge pages (had {available} of {total}); the kernel gave {now}");
        }
        return new HugePageReservation(previous);
    }

    /// <summary><see cref="Reserve"/>, or null with the reason (not root, not enough memory).</summary>
    public static HugePageReservation? TryReserve(long free, out string? why)
    {
        try
        {
            why = null;
            return Reserve(free);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or InvalidOperationException)
        {
            why = e is InvalidOperationException ? e.Message : $"cannot raise {Sysctl} ({e.Message}): run as root";
            return null;
        }
    }

    public static long Meminfo(string field) => Paging.Interop.ProcMeminfo.Read(field);

    private void Restore()
    {
        if (Interlocked.Exchange(ref _restored, 1) == 0)
        {
            File.WriteAllText(Sysctl, _previous.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }
    }

    public void Dispose()
    {
        foreach (var signal in _signals)
        {
            signal.Dispose();
        }
        Restore();
    }
}
