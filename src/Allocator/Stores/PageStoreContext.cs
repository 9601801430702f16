namespace Paging.Stores;

/// <summary>What a store's factory gets when the pager builds it.</summary>
public sealed class PageStoreContext
{
    /// <summary>Creates the context.</summary>
    public PageStoreContext(PageStoreDescriptor descriptor, long regionLength, int pageSize)
    {
        ArgumentNullException.ThrowIfNull(descriptor);
        Descriptor = descriptor;
        RegionLength = regionLength;
        PageSize = pageSize;
    }

    /// <summary>The descriptor the application sent.</summary>
    public PageStoreDescriptor Descriptor { get; }

    /// <summary>The settings of the descriptor.</summary>
    public IReadOnlyDictionary<string, string> Settings => Descriptor.Settings;

    /// <summary>The region's length in bytes.</summary>
    public long RegionLength { get; }

    /// <summary>The region's page size (4 KiB, or 2 MiB for hugetlbfs).</summary>
    public int PageSize { get; }

    /// <summary>A setting, or <paramref name="fallback"/> when absent.</summary>
    public string Get(string key, string fallback) => Settings.TryGetValue(key, out var v) ? v : fallback;

    /// <summary>A required setting; throws a configuration error naming it when absent.</summary>
    public string Require(string key) => Settings.TryGetValue(key, out var v)
        ? v
        : throw new PageStoreException(PageStoreError.Configuration, $"the '{Descriptor.Kind}' store needs the setting '{key}'");

    /// <summary>An integer setting in [<paramref name="min"/>, <paramref name="max"/>], or <paramref name="fallback"/>
    /// when absent; a configuration error naming it otherwise.</summary>
    public long GetInt64(string key, long fallback, long min = long.MinValue, long max = long.MaxValue)
    {
        if (!Settings.TryGetValue(key, out var text))
        {
            return fallback;
        }
        if (!long.TryParse(text, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out long value) || value < min || value > max)
        {
            throw new PageStoreException(PageStoreError.Configuration,
                $"the '{Descriptor.Kind}' store's setting '{key}' is '{text}', not an integer in [{min}, {max}]");
        }
        return value;
    }

    /// <summary>A boolean setting ("true"/"false"), or <paramref name="fallback"/> when absent.</summary>
    public bool GetBoolean(string key, bool fallback) => Settings.TryGetValue(key, out var text)
        ? text switch
        {
            "true" => true,
            "false" => false,
            _ => throw new PageStoreException(PageStoreError.Configuration, $"the '{Descriptor.Kind}' store's setting '{key}' is '{text}', not true or false"),
        }
        : fallback;
}
