using Paging.Stores;

namespace Paging.Backends;

/// <summary>The stores every pager knows: the core's "zero" and this assembly's kinds ("file", and the "latency"
/// decorator).</summary>
public static class BuiltInPageStores
{
    /// <summary>A registry with the built-in kinds.</summary>
    public static PageStoreRegistry CreateRegistry()
    {
        var registry = new PageStoreRegistry().Add(FilePageStore.Kind, FilePageStore.Create);
        return registry.Add(LatencyPageStore.Kind, c => LatencyPageStore.Create(c, registry));
    }
}
