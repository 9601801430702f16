using BenchmarkDotNet.Running;

namespace Paging.Benchmarks;

/// <summary>BenchmarkDotNet suites: <c>dotnet run -c Release --project bench/Paging.Benchmarks -- --filter '*'</c>.</summary>
public static class Program
{
    public static void Main(string[] args) => BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
}
