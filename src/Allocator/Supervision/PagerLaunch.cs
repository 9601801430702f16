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
            // Beside the application (a project reference to src/Pager), or in the folder the Paging package's
            // buildTransitive targets copy it to.
            string[] candidates = [Path.Combine(AppContext.BaseDirectory, PagerFileName), Path.Combine(AppContext.BaseDirectory, PackageFolder, PagerFileName)];
            path = Array.Find(candidates, File.Exists) ?? throw new PagerException(
                $"the pager executable was not found at '{candidates[0]}' nor '{candidates[1]}': reference the Paging package (or the " +
                "Paging.Pager project), set PagingRuntimeOptions.PagerPath, or set PAGING_PAGER");
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
