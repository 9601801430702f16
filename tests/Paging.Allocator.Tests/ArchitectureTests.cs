using System.Reflection;
using System.Reflection.Emit;

namespace Paging.Allocator.Tests;

/// <summary>The folder structure of src/Allocator is the architecture (README, Layout): folders by process and role,
/// and no two folders depending on each other both ways. Read from the compiled assembly — signatures, fields and
/// every type, method and field token in the IL of every method — so a new reference that breaks it fails here.</summary>
public sealed class ArchitectureTests
{
    /// <summary>The public API sits in folder Application but in the root namespace Paging (users write `using
    /// Paging;`); these are its types. The other root types are the shared vocabulary (ArenaKind, Errno, exceptions).</summary>
    private static readonly HashSet<string> s_applicationTypes =
        ["PagingRuntime", "Region", "RegionMemoryManager", "Arena", "RegionOptions", "PrefetchOptions", "PagingRuntimeOptions", "RegionStatistics", "Unmapper"];

    private static readonly Dictionary<short, OpCode> s_opcodes = typeof(OpCodes).GetFields(BindingFlags.Public | BindingFlags.Static)
        .Select(f => (OpCode)f.GetValue(null)!).ToDictionary(o => o.Value);

    private static string? FolderOf(Type type)
    {
        while (type.DeclaringType is not null)
        {
            type = type.DeclaringType;
        }
        if (type.Assembly != typeof(PagingRuntime).Assembly || type.Namespace is null || !type.Namespace.StartsWith("Paging", StringComparison.Ordinal))
        {
            return null;
        }
        if (type.Namespace == "Paging")
        {
            return s_applicationTypes.Contains(type.Name) ? "Application" : "(root)";
        }
        return type.Namespace["Paging.".Length..].Split('.')[0];
    }

    private static IEnumerable<Type> Referenced(Type type)
    {
        const BindingFlags all = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
        if (type.BaseType is { } b)
        {
            yield return b;
        }
        foreach (var i in type.GetInterfaces())
        {
            yield return i;
        }
        foreach (var f in type.GetFields(all))
        {
            yield return f.FieldType;
        }
        foreach (var m in type.GetMethods(all).Cast<MethodBase>().Concat(type.GetConstructors(all)))
        {
            if (m is MethodInfo mi)
            {
                yield return mi.ReturnType;
            }
            foreach (var p in m.GetParameters())
            {
                yield return p.ParameterType;
            }
            byte[]? il = m.GetMethodBody()?.GetILAsByteArray();
            if (il is null)
            {
                continue;
            }
            for (int pos = 0; pos < il.Length;)
            {
                short value = il[pos] == 0xFE ? (short)(0xFE00 | il[pos + 1]) : il[pos];
                var op = s_opcodes[value];
                pos += op.Size;
                int operand = op.OperandType switch
                {
                    OperandType.InlineNone => 0,
                    OperandType.ShortInlineBrTarget or OperandType.ShortInlineI or OperandType.ShortInlineVar => 1,
                    OperandType.InlineVar => 2,
                    OperandType.InlineI8 or OperandType.InlineR => 8,
                    OperandType.InlineSwitch => 4 + 4 * BitConverter.ToInt32(il, pos),
                    _ => 4,
                };
                if (op.OperandType is OperandType.InlineMethod or OperandType.InlineField or OperandType.InlineType or OperandType.InlineTok)
                {
                    Type? t = null;
                    try
                    {
                        var member = m.Module.ResolveMember(BitConverter.ToInt32(il, pos), type.IsGenericType ? type.GetGenericArguments() : null,
                            m.IsGenericMethod ? m.GetGenericArguments() : null);
                        t = member as Type ?? member?.DeclaringType;
                    }
                    catch (ArgumentException)
                    {
                    }
                    if (t is not null)
                    {
                        yield return t;
                    }
                }
                pos += operand;
            }
        }
    }

    private static IEnumerable<Type> Expand(Type t)
    {
        if (t.HasElementType)
        {
            return Expand(t.GetElementType()!);
        }
        return t.IsGenericType ? t.GetGenericArguments().SelectMany(Expand).Append(t) : [t];
    }

    private static Dictionary<string, HashSet<string>> FolderDependencies()
    {
        var deps = new Dictionary<string, HashSet<string>>();
        foreach (var type in typeof(PagingRuntime).Assembly.GetTypes())
        {
            if (FolderOf(type) is not { } from)
            {
                continue;
            }
            var set = deps.TryGetValue(from, out var s) ? s : deps[from] = [];
            foreach (var to in Referenced(type).SelectMany(Expand).Select(FolderOf))
            {
                if (to is not null && to != from)
                {
                    set.Add(to);
                }
            }
        }
        return deps;
    }

    [Fact]
    public void NoTwoFoldersDependOnEachOtherBothWays()
    {
        var deps = FolderDependencies();
        Assert.True(deps.Count >= 10, $"found only {deps.Count} folders: {string.Join(", ", deps.Keys)}");
        var cycles = deps.SelectMany(a => a.Value.Where(b => string.CompareOrdinal(a.Key, b) < 0 && deps.TryGetValue(b, out var back) && back.Contains(a.Key))
            .Select(b => $"{a.Key} <-> {b}")).ToList();
        Assert.True(cycles.Count == 0, "folders that depend on each other: " + string.Join(", ", cycles));
        Assert.Empty(deps["(root)"]);
    }

    [Fact]
    public void ThePagerSideNeverUsesTheApplicationSide()
    {
        var deps = FolderDependencies();
        foreach (var pagerSide in new[] { "Engine", "Policies", "Protocol", "Kernel", "Interop", "Stores", "Metrics", "Simd", "Logging" })
        {
            Assert.False(deps[pagerSide].Contains("Application") || deps[pagerSide].Contains("Supervision"),
                $"{pagerSide} uses the application side: {string.Join(", ", deps[pagerSide])}");
        }
        Assert.DoesNotContain("Engine", deps["Application"]);
        Assert.DoesNotContain("Engine", deps["Supervision"]);
    }
}
