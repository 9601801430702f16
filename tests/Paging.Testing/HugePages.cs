using System.Runtime.InteropServices;

namespace Paging.Testing;

/// <summary>Raises vm.nr_hugepages (as root) for a test or a benchmark run and gives back what it added: on Dispose, and
/// also when the process is stopped with Ctrl-C, SIGTERM or SIGQUIT — a stopped run must not leave memory reserved as
/// huge pages (finally blocks and Dispose do not run on a signal). Each reservation gives back its own pages, not "the
/// value before it", so reservations that overlap (test classes run in parallel) end where they started.</summary>
public sealed class HugePageReservation : IDisposable
{
    private const string Sysctl = "/proc/sys/vm/nr_hugepages";
    private static readonly Lock s_lock = new();
    private static readonly List<HugePageReservation> s_active = [];

    // One handler per signal for the process's life: it runs before the signal's default action, which still ends
    // the process. Pages still mapped when the value drops become surplus pages, freed when they are unmapped at exit.
    private static PosixSignalRegistration[]? s_signals;

    private readonly long _added;

    private HugePageReservation(long added) => _added = added;

    /// <summary>Makes at least <paramref name="free"/> 2 MiB pages free. Throws when the kernel cannot provide them
    /// (not root, or memory too fragmented), with the numbers.</summary>
    public static HugePageReservation Reserve(long free)
    {
        lock (s_lock)
        {
            long previous = Read();
            long total = Meminfo("HugePages_Total"), available = Meminfo("HugePages_Free");
            Write(previous + Math.Max(0, free - available));
            long added = Read() - previous; // the kernel may give fewer than asked
            long now = Meminfo("HugePages_Free");
            if (now < free)
            {
                Write(Read() - added);
                throw new InvalidOperationException($"asked for {free} free huge pages (had {available} of {total}); the kernel gave {now}");
            }
            var reservation = new HugePageReservation(added);
            s_active.Add(reservation);
            s_signals ??= [.. new[] { PosixSignal.SIGINT, PosixSignal.SIGTERM, PosixSignal.SIGQUIT }.Select(s => PosixSignalRegistration.Create(s, _ => ReleaseAll()))];
            return reservation;
        }
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

    private static long Read() => long.Parse(File.ReadAllText(Sysctl).Trim(), System.Globalization.CultureInfo.InvariantCulture);

    private static void Write(long pages) => File.WriteAllText(Sysctl, Math.Max(0, pages).ToString(System.Globalization.CultureInfo.InvariantCulture));

    private static void ReleaseAll()
    {
        lock (s_lock)
        {
            foreach (var r in s_active)
            {
                Write(Read() - r._added);
            }
            s_active.Clear();
        }
    }

    public void Dispose()
    {
        lock (s_lock)
        {
            if (s_active.Remove(this))
            {
                Write(Read() - _added);
            }
        }
    }
}
