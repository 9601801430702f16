using Paging.Stores;

namespace Paging.Backends;

/// <summary>The stores every pager knows: the core's "zero" and this assembly's kinds.</summary>
public static class BuiltInPageStores
{
    /// <summary>A registry with the built-in kinds.</summary>
    public static PageStoreRegistry CreateRegistry() => new PageStoreRegistry()
        .Add(FilePageStore.Kind, FilePageStore.Create);
}
