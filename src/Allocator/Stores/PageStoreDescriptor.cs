using System.Collections.ObjectModel;

namespace Paging;

/// <summary>
/// Describes a page store so the pager process can build it: a kind and string settings that cross the socket, or,
/// for a user's own store, an assembly path and type name the pager loads. A delegate created in the application
/// could never serve a fault (faults are served in another process), so this is data, not code.
/// </summary>
public sealed class PageStoreDescriptor
{
    /// <summary>Creates a descriptor.</summary>
    public PageStoreDescriptor(string kind, IReadOnlyDictionary<string, string>? settings = null, string? assemblyPath = null, string? typeName = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(kind);
        Kind = kind;
        Settings = new ReadOnlyDictionary<string, string>(new Dictionary<string, string>(settings ?? new Dictionary<string, string>(), StringComparer.Ordinal));
        AssemblyPath = assemblyPath;
        TypeName = typeName;
    }

    /// <summary>The store kind ("zero", "file", or "custom").</summary>
    public string Kind { get; }

    /// <summary>Settings the store's factory reads.</summary>
    public IReadOnlyDictionary<string, string> Settings { get; }

    /// <summary>For a custom store: the assembly the pager loads.</summary>
    public string? AssemblyPath { get; }

    /// <summary>For a custom store: the type implementing <see cref="IPageStore"/>, with a constructor taking
    /// <see cref="PageStoreContext"/>.</summary>
    public string? TypeName { get; }

    /// <summary>Every page reads as zeros.</summary>
    public static PageStoreDescriptor Zero() => new("zero");

    /// <summary>A page-aligned slice of a file starting at <paramref name="offset"/>; pages past end-of-file read
    /// as zeros. The file must exist; <paramref name="writable"/> opens it for write-back.</summary>
    public static PageStoreDescriptor File(string path, long offset = 0, bool writable = false)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        var full = System.IO.Path.GetFullPath(path);
        if (!System.IO.File.Exists(full))
        {
            throw new FileNotFoundException($"the page store file '{full}' does not exist", full);
        }
        return new("file", new Dictionary<string, string>
        {
            ["path"] = full,
            ["offset"] = offset.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["writable"] = writable ? "true" : "false",
        });
    }

    /// <summary>A user's own store: the pager loads <paramref name="assemblyPath"/> and creates <paramref name="typeName"/>.</summary>
    public static PageStoreDescriptor Custom(string assemblyPath, string typeName, IReadOnlyDictionary<string, string>? settings = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(assemblyPath);
        ArgumentException.ThrowIfNullOrWhiteSpace(typeName);
        return new("custom", settings, System.IO.Path.GetFullPath(assemblyPath), typeName);
    }

    /// <inheritdoc />
    public override string ToString() => Kind + (Settings.TryGetValue("path", out var p) ? ":" + p : "");
}

/// <summary>What a store's factory gets when the pager builds it.</summary>
public sealed class PageStoreContext
{
    /// <summary>Creates the context.</summary>
    public PageStoreContext(PageStoreDescriptor descriptor, long regionLength, int pageSize)
    {
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
}

/// <summary>Builds stores by kind inside the pager. Paging.Backends registers the built-in kinds.</summary>
public sealed class PageStoreRegistry
{
    private readonly Dictionary<string, Func<PageStoreContext, IPageStore>> _factories = new(StringComparer.Ordinal);

    /// <summary>Registers (or replaces) the factory of a kind.</summary>
    public PageStoreRegistry Add(string kind, Func<PageStoreContext, IPageStore> factory)
    {
        _factories[kind] = factory;
        return this;
    }

    /// <summary>The kinds registered.</summary>
    public IEnumerable<string> Kinds => _factories.Keys;

    /// <summary>Builds the store a descriptor names. Throws <see cref="PageStoreException"/> (Configuration) when the
    /// kind is unknown or the custom type cannot be loaded.</summary>
    public IPageStore Create(PageStoreContext context)
    {
        var d = context.Descriptor;
        if (d.Kind == "custom")
        {
            return CreateCustom(context);
        }
        if (!_factories.TryGetValue(d.Kind, out var factory))
        {
            throw new PageStoreException(PageStoreError.Configuration,
                $"unknown page store kind '{d.Kind}'; this pager knows: {string.Join(", ", _factories.Keys)}, custom");
        }
        return factory(context);
    }

    [System.Diagnostics.CodeAnalysis.UnconditionalSuppressMessage("Trimming", "IL2026", Justification = "custom stores are loaded by name by design")]
    [System.Diagnostics.CodeAnalysis.UnconditionalSuppressMessage("Trimming", "IL2057", Justification = "custom stores are loaded by name by design")]
    [System.Diagnostics.CodeAnalysis.UnconditionalSuppressMessage("Trimming", "IL2072", Justification = "custom stores are loaded by name by design")]
    private static IPageStore CreateCustom(PageStoreContext context)
    {
        var d = context.Descriptor;
        try
        {
            var assembly = System.Reflection.Assembly.LoadFrom(d.AssemblyPath!);
            var type = assembly.GetType(d.TypeName!, throwOnError: true)!;
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
        catch (Exception e)
        {
            var inner = e is System.Reflection.TargetInvocationException { InnerException: { } ie } ? ie : e;
            throw new PageStoreException(PageStoreError.Configuration,
                $"could not create custom store {d.TypeName} from {d.AssemblyPath}: {inner.Message}", inner);
        }
    }
}
