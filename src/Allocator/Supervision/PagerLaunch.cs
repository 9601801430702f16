namespace Paging.Supervision;

/// <summary>How to start the pager: the file to execute and the arguments before ours.</summary>
internal sealed record PagerLaunch(string FileName, IReadOnlyList<string> PrefixArguments)
{
    /// <summary>The pager's entry assembly.</summary>
    public const string PagerFileName = "Paging.Pager.dll";

    /// <summary>The output subfolder the Paging package copies the pager into (build/Paging.targets).</summary>
    public const string PackageFolder = "paging-pager";

    public override string ToString() => string.Join(' ', [FileName, .. PrefixArguments]);

    /// <summary>Finds the pager: an explicit path, the PAGING_PAGER environment variable, or Paging.Pager.dll next to
    /// the application. A .dll runs under the same dotnet host that runs this process.</summary>
    public static PagerLaunch Resolve(string? explicitPath)
    {
        string? path = explicitPath ?? Environment.GetEnvironmentVariable("PAGING_PAGER");
        if (path is null)
        {
            path = Find(AppContext.BaseDirectory) ?? throw new PagerException(
                $"the pager executable was not found at '{Candidates(AppContext.BaseDirectory)[0]}' nor '{Candidates(AppContext.BaseDirectory)[1]}': " +
                "reference the Paging package (or the Paging.Pager project), set PagingRuntimeOptions.PagerPath, or set PAGING_PAGER");
        }
        else if (!File.Exists(path))
        {
            throw new PagerException($"the pager executable was not found at '{path}' (PagingRuntimeOptions.PagerPath or PAGING_PAGER)");
        }
        if (!path.EndsWith(".dll", StringComparison.OrdinalIgnoreCase))
        {
            return new PagerLaunch(path, []);
        }
        return new PagerLaunch(DotnetHost(), [path]);
    }

    /// <summary>The pager an application in <paramref name="directory"/> runs by default, or null.</summary>
    internal static string? Find(string directory) => Array.Find(Candidates(directory), File.Exists);

    // In the folder the Paging package's buildTransitive targets copy it to (a project reference to src/Pager puts its
    // ReadyToRun copy there too), else beside the application (a project reference built without it).
    private static string[] Candidates(string directory) => [Path.Combine(directory, PackageFolder, PagerFileName), Path.Combine(directory, PagerFileName)];

    private static string DotnetHost()
    {
        if (Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { } hostPath && File.Exists(hostPath))
        {
            return hostPath;
        }
        // .../shared/Microsoft.NETCore.App/<version>/ -> the dotnet root holding the muxer.
        var runtimeDir = System.Runtime.InteropServices.RuntimeEnvironment.GetRuntimeDirectory();
        var candidate = Path.GetFullPath(Path.Combine(runtimeDir, "..", "..", "..", "dotnet"));
        if (File.Exists(candidate))
        {
            return candidate;
        }
        if (Environment.ProcessPath is { } self && Path.GetFileNameWithoutExtension(self) == "dotnet")
        {
            return self;
        }
        return "dotnet";
    }
}
