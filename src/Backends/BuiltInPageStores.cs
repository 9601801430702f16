namespace Paging.Backends;

/// <summary>The stores every pager knows: "zero" and "file".</summary>
public static class BuiltInPageStores
{
    /// <summary>A registry with the built-in kinds.</summary>
    public static PageStoreRegistry CreateRegistry() => new PageStoreRegistry()
        .Add("zero", c => new ZeroPageStore(c.RegionLength))
        .Add("file", FilePageStore.Create);
}
