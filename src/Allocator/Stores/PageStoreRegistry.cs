namespace Paging.Stores;

/// <summary>Builds stores by kind inside the pager. The core registers "zero"; Paging.Backends adds its kinds.</summary>
public sealed class PageStoreRegistry
{
    private readonly Dictionary<string, Func<PageStoreContext, IPageStore>> _factories = new(StringComparer.Ordinal)
    {
        [ZeroPageStore.Kind] = c => new ZeroPageStore(c.RegionLength),
    };

    /// <summary>Registers (or replaces) the factory of a kind.</summary>
    public PageStoreRegistry Add(string kind, Func<PageStoreContext, IPageStore> factory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(kind);
        ArgumentNullException.ThrowIfNull(factory);
        if (kind == PageStoreDescriptor.CustomKind)
        {
            throw new ArgumentException($"'{PageStoreDescriptor.CustomKind}' is the kind of stores loaded by type name", nameof(kind));
        }
        _factories[kind] = factory;
        return this;
    }

    /// <summary>The kinds registered.</summary>
    public IEnumerable<string> Kinds => _factories.Keys;

    /// <summary>Builds the store a descriptor names. Throws <see cref="PageStoreException"/> (Configuration) when the
    /// kind is unknown or the custom type cannot be loaded.</summary>
    public IPageStore Create(PageStoreContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var d = context.Descriptor;
        if (d.Kind == PageStoreDescriptor.CustomKind)
        {
            return CreateCustom(context);
        }
        if (!_factories.TryGetValue(d.Kind, out var factory))
        {
            throw new PageStoreException(PageStoreError.Configuration,
                $"unknown page store kind '{d.Kind}'; this pager knows: {string.Join(", ", _factories.Keys)}, {PageStoreDescriptor.CustomKind}");
        }
        return factory(context);
    }

    [System.Diagnostics.CodeAnalysis.UnconditionalSuppressMessage("Trimming", "IL2026", Justification = "custom stores are loaded by name by design")]
    [System.Diagnostics.CodeAnalysis.UnconditionalSuppressMessage("Trimming", "IL2057", Justification = "custom stores are loaded by name by design")]
    [System.Diagnostics.CodeAnalysis.UnconditionalSuppressMessage("Trimming", "IL2072", Justification = "custom stores are loaded by name by design")]
    private static IPageStore CreateCustom(PageStoreContext context)
    {
        var d = context.Descriptor;
        if (d.AssemblyPath is null || d.TypeName is null)
        {
            throw new PageStoreException(PageStoreError.Configuration, "a custom store needs an assembly path and a type name");
        }
        try
        {
            var assembly = System.Reflection.Assembly.LoadFrom(d.AssemblyPath);
            var type = assembly.GetType(d.TypeName, throwOnError: true)!;
            if (!typeof(IPageStore).IsAssignableFrom(type))
            {
                throw new PageStoreException(PageStoreError.Configuration, $"{d.TypeName} does not implement IPageStore");
            }
            return (IPageStore)Activator.CreateInstance(type, context)!;
        }
        catch (PageStoreException)
        {
            throw;
        }
#pragma warning disable CA1031 // Loading user code can throw anything; each failure becomes one configuration error.
        catch (Exception e)
#pragma warning restore CA1031
        {
            var inner = e is System.Reflection.TargetInvocationException { InnerException: { } ie } ? ie : e;
            throw new PageStoreException(PageStoreError.Configuration,
                $"could not create custom store {d.TypeName} from {d.AssemblyPath}: {inner.Message}", inner);
        }
    }
}
