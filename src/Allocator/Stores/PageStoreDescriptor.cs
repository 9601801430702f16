using System.Collections.ObjectModel;

namespace Paging.Stores;

/// <summary>
/// Describes a page store so the pager process can build it: a kind and string settings that cross the socket, or,
/// for a user's own store, an assembly path and type name the pager loads. A delegate created in the application
/// could never serve a fault (faults are served in another process), so this is data, not code. Each store's
/// factory lives with the store (Paging.Backends adds <c>PageStoreDescriptor.File(...)</c> and the others); the core
/// knows only <see cref="Zero"/> and <see cref="Custom"/>, and never reads a store's settings.
/// </summary>
public sealed class PageStoreDescriptor
{
    /// <summary>The kind of <see cref="Custom"/> descriptors.</summary>
    public const string CustomKind = "custom";

    /// <summary>Creates a descriptor.</summary>
    public PageStoreDescriptor(string kind, IReadOnlyDictionary<string, string>? settings = null, string? assemblyPath = null, string? typeName = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(kind);
        Kind = kind;
        Settings = new ReadOnlyDictionary<string, string>(new Dictionary<string, string>(settings ?? new Dictionary<string, string>(), StringComparer.Ordinal));
        AssemblyPath = assemblyPath;
        TypeName = typeName;
    }

    /// <summary>The store kind ("zero", "file", "custom", …).</summary>
    public string Kind { get; }

    /// <summary>Settings the store's factory reads.</summary>
    public IReadOnlyDictionary<string, string> Settings { get; }

    /// <summary>For a custom store: the assembly the pager loads.</summary>
    public string? AssemblyPath { get; }

    /// <summary>For a custom store: the type implementing <see cref="IPageStore"/>, with a constructor taking
    /// <see cref="PageStoreContext"/>.</summary>
    public string? TypeName { get; }

    /// <summary>Every page reads as zeros (<see cref="ZeroPageStore"/>).</summary>
    public static PageStoreDescriptor Zero() => new(ZeroPageStore.Kind);

    /// <summary>A user's own store: the pager loads <paramref name="assemblyPath"/> and creates <paramref name="typeName"/>.</summary>
    public static PageStoreDescriptor Custom(string assemblyPath, string typeName, IReadOnlyDictionary<string, string>? settings = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(assemblyPath);
        ArgumentException.ThrowIfNullOrWhiteSpace(typeName);
        return new(CustomKind, settings, Path.GetFullPath(assemblyPath), typeName);
    }

    /// <inheritdoc />
    public override string ToString() => Kind + (TypeName is null ? "" : ":" + TypeName);
}
