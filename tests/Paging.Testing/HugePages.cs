namespace Paging.Testing;

/// <summary>Raises vm.nr_hugepages for a test (as root) and restores the old value.</summary>
public sealed class HugePageReservation : IDisposable
{
    private const string Sysctl = "/proc/sys/vm/nr_hugepages";
    private readonly long _previous;

    private HugePageReservation(long previous) => _previous = previous;

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

    public static long Meminfo(string field) => Paging.Interop.ProcMeminfo.Read(field);

    public void Dispose() => File.WriteAllText(Sysctl, _previous.ToString(System.Globalization.CultureInfo.InvariantCulture));
}
