namespace Paging.Kernel;

/// <summary>What the running kernel's userfaultfd offers, probed once.</summary>
public sealed class UffdCapabilities
{
    private static readonly Lazy<UffdCapabilities> s_current = new(() => new UffdCapabilities(Userfaultfd.Probe()));

    internal UffdCapabilities(UffdFeatures features) => Features = features;

    /// <summary>Probes this kernel (creates and closes a userfaultfd). Throws <see cref="PagingSystemException"/>
    /// when userfaultfd cannot be created at all, with the reason and what to do.</summary>
    public static UffdCapabilities Current => s_current.Value;

    /// <summary>Every feature the kernel reported in the UFFDIO_API handshake.</summary>
    public UffdFeatures Features { get; }

    /// <summary>True when every feature in <paramref name="features"/> is present.</summary>
    public bool Has(UffdFeatures features) => (Features & features) == features;

    /// <summary>The features an arena kind needs: anonymous needs none beyond MISSING faults; shmem and hugetlbfs
    /// need MISSING and MINOR faults on their file type (UFFDIO_CONTINUE is how pages are mapped).</summary>
    public static UffdFeatures Required(ArenaKind kind) => kind switch
    {
        ArenaKind.Anonymous => UffdFeatures.None,
        ArenaKind.Shmem => UffdFeatures.MissingShmem | UffdFeatures.MinorShmem,
        ArenaKind.HugeTlb => UffdFeatures.MissingHugetlbfs | UffdFeatures.MinorHugetlbfs,
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown arena kind"),
    };

    /// <summary>Throws <see cref="PagingFeatureNotSupportedException"/> naming the features missing for <paramref name="kind"/>.</summary>
    public void EnsureSupports(ArenaKind kind)
    {
        var missing = Required(kind) & ~Features;
        if (missing != UffdFeatures.None)
        {
            throw new PagingFeatureNotSupportedException(
                $"{kind} arenas need userfaultfd features {missing}, which this kernel ({Environment.OSVersion.Version}) does not report; " +
                $"use an Anonymous arena or a kernel >= 5.14 (MINOR faults on shmem)", missing);
        }
    }

    /// <inheritdoc />
    public override string ToString() => Features.ToString();
}
