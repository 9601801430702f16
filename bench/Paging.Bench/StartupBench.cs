using System.Diagnostics;
using System.Globalization;

namespace Paging.Bench;

/// <summary>
/// <c>Paging.Bench startup [--runs N] [--json]</c>: what an application waits for before its first page arrives, each run
/// in a fresh process so the pager starts with a cold JIT, as it does in a real start: <see cref="PagingRuntime.Start"/>
/// (the pager and its standby), <see cref="PagingRuntime.CreateRegion"/> (shmem, a 64 MiB file store, read-only), the
/// first fault, then one load per page of the rest in order (read-ahead). Medians over the runs, and every run. To
/// compare two pagers (a ReadyToRun build, say), run it once with <c>PAGING_PAGER</c> pointing at each (BENCHMARKS §24).
/// </summary>
internal static unsafe class StartupBench
{
    private const long Length = 64L << 20;
    private static readonly string[] Stages = ["start_ms", "create_region_ms", "first_fault_ms", "rest_ms"];

    public static int Run(string[] args)
    {
        int runs = 5;
        bool json = false;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--runs" when i + 1 < args.Length && int.TryParse(args[i + 1], NumberStyles.None, CultureInfo.InvariantCulture, out runs) && runs is >= 1 and <= 1000:
                    i++;
                    break;
                case "--json":
                    json = true;
                    break;
                default:
                    Console.Error.WriteLine("usage: Paging.Bench startup [--runs N (1-1000, default 5)] [--json]");
                    return 2;
            }
        }
        string path = BenchData.PathFor("startup-64m.bin");
        if (!File.Exists(path) || new FileInfo(path).Length != Length)
        {
            var bytes = new byte[Length];
            new Random(7).NextBytes(bytes);
            File.WriteAllBytes(path, bytes);
        }
        var samples = new List<double[]>();
        for (int r = 0; r < runs; r++)
        {
            using var child = Process.Start(SelfProcess.StartInfo("startup-worker", path))!;
            string output = child.StandardOutput.ReadToEnd();
            child.WaitForExit();
            if (child.ExitCode != 0)
            {
                throw new PagerException($"the start-up worker failed (exit {child.ExitCode}): {output}");
            }
            samples.Add(output.Trim().Split('\n')[^1].Split(' ').Select(s => double.Parse(s, CultureInfo.InvariantCulture)).ToArray());
        }
        double Median(int stage)
        {
            var v = samples.Select(s => s[stage]).Order().ToArray();
            return v.Length % 2 == 1 ? v[v.Length / 2] : (v[v.Length / 2 - 1] + v[v.Length / 2]) / 2;
        }
        string pager = Paging.Supervision.PagerLaunch.Resolve(null).ToString(); // what the workers ran (PAGING_PAGER, or the default)
        if (json)
        {
            var row = new Dictionary<string, object> { ["scenario"] = "startup", ["runs"] = runs, ["pager"] = pager };
            for (int s = 0; s < Stages.Length; s++)
            {
                row[Stages[s]] = Math.Round(Median(s), 2);
                row[Stages[s] + "_runs"] = samples.Select(x => Math.Round(x[s], 2)).ToArray();
            }
            Console.WriteLine(System.Text.Json.JsonSerializer.Serialize(row));
            return 0;
        }
        Console.WriteLine($"start-up, {runs} fresh processes, pager {pager}; ms, median (every run):");
        string[] names = ["PagingRuntime.Start (two pagers)", "CreateRegion (shmem, 64 MiB file)", "first fault", "the other 16,383 pages"];
        for (int s = 0; s < Stages.Length; s++)
        {
            Console.WriteLine($"  {names[s],-36} {Median(s),8:F1}   ({string.Join(" ", samples.Select(x => x[s].ToString("F1", CultureInfo.InvariantCulture)))})");
        }
        return 0;
    }

    /// <summary>The child: one start-up, timed; prints the four stages in ms on one line.</summary>
    public static int Worker(string path)
    {
        var clock = Stopwatch.StartNew();
        using var runtime = PagingRuntime.Start();
        double start = clock.Elapsed.TotalMilliseconds;
        clock.Restart();
        using var region = runtime.CreateRegion(new RegionOptions
        {
            Arena = ArenaKind.Shmem, Length = Length, Store = PageStoreDescriptor.File(path), ReadOnly = true,
        });
        double create = clock.Elapsed.TotalMilliseconds;
        clock.Restart();
        long sum = region.Pointer[0];
        double first = clock.Elapsed.TotalMilliseconds;
        clock.Restart();
        for (long offset = Scenarios.Page; offset < Length; offset += Scenarios.Page)
        {
            sum += region.Pointer[offset];
        }
        double rest = clock.Elapsed.TotalMilliseconds;
        GC.KeepAlive(sum);
        Console.WriteLine(string.Join(' ', new[] { start, create, first, rest }.Select(v => v.ToString("F3", CultureInfo.InvariantCulture))));
        return 0;
    }
}

/// <summary>Starts this harness again as a child process (a worker mode), however it was started (apphost or
/// <c>dotnet Paging.Bench.dll</c>), with standard output captured.</summary>
internal static class SelfProcess
{
    public static ProcessStartInfo StartInfo(params string[] args)
    {
        var self = Environment.ProcessPath!;
        var psi = new ProcessStartInfo(self) { RedirectStandardOutput = true, UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(self) == "dotnet")
        {
            psi.ArgumentList.Add(typeof(SelfProcess).Assembly.Location);
        }
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        return psi;
    }
}
