using Paging.Stores;

namespace Paging.Backends;

/// <summary>The stores every pager knows: the core's "zero" and this assembly's kinds ("file", the "latency"
/// decorator, the "compressed" pack reader and the "tiered" compressed memory tier).</summary>
public static class BuiltInPageStores
{
    /// <summary>A registry with the built-in kinds.</summary>
    public static PageStoreRegistry CreateRegistry()
    {
        var registry = new PageStoreRegistry().Add(FilePageStore.Kind, FilePageStore.Create);
        registry.Add(Compression.CompressedPageStore.Kind, c => Compression.CompressedPageStore.Create(c, registry));
        registry.Add(Compression.CompressedTierPageStore.Kind, c => Compression.CompressedTierPageStore.Create(c, registry));
        return registry.Add(LatencyPageStore.Kind, c => LatencyPageStore.Create(c, registry));
    }
}
