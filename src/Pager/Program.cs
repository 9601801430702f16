using Microsoft.Extensions.Logging;
using Paging.Backends;
using Paging.Backends.Network;
using Paging.Engine;

namespace Paging.Pager;

/// <summary>The pager executable: started by the library with an inherited socket; serves faults until the
/// application exits. Logs to stderr at the level the application sends in Hello (PagingRuntimeOptions.PagerLogLevel;
/// Information until then).</summary>
internal static class Program
{
    private const string InlineCompletions = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    private static int Main(string[] args)
    {
        // Network stores complete their reads on the sockets' event thread instead of hopping to a thread-pool thread
        // first: the continuation (read the body, map the pages) never blocks, and each hop is a thread wake (~30 µs
        // on a 2-vCPU VM). Read once by System.Net.Sockets when it first starts, so it is set before any socket.
        if (Environment.GetEnvironmentVariable(InlineCompletions) is null)
        {
            Environment.SetEnvironmentVariable(InlineCompletions, "1");
        }
        // The log to a file instead of stderr (which `dotnet test` swallows): the pager inherits the application's
        // environment, so a test run can keep the log of every pager it starts, killed ones included.
        if (Environment.GetEnvironmentVariable("PAGING_DEBUG_PAGER_LOG") is { Length: > 0 } debugLog)
        {
            try
            {
                Console.SetError(new StreamWriter(debugLog, append: true) { AutoFlush = true });
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
            {
                Console.Error.WriteLine($"[pager {Environment.ProcessId}] Warning: PAGING_DEBUG_PAGER_LOG={debugLog} cannot be opened ({e.Message}): logging to stderr");
            }
        }
        using var loggerFactory = new StderrLoggerFactory(LogLevel.Information);
        return PagerHost.Run(args, BuiltInPageStores.CreateRegistry().AddNetworkStores(), loggerFactory, level => loggerFactory.Minimum = level);
    }
}

/// <summary>A minimal stderr logger: the pager must not depend on a logging stack that could block it.</summary>
internal sealed class StderrLoggerFactory(LogLevel minimum) : ILoggerFactory
{
    /// <summary>The level below which nothing is written; set once Hello arrives.</summary>
    public LogLevel Minimum { get; set; } = minimum;

    public void AddProvider(ILoggerProvider provider) { }

    public ILogger CreateLogger(string categoryName) => new StderrLogger(categoryName, this);

    public void Dispose() { }

    private sealed class StderrLogger(string category, StderrLoggerFactory factory) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= factory.Minimum && logLevel != LogLevel.None;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel))
            {
                return;
            }
            var line = $"[pager {Environment.ProcessId}] {logLevel}: {category}: {formatter(state, exception)}";
            if (exception is not null)
            {
                line += " | " + exception.GetType().Name + ": " + exception.Message;
            }
            Console.Error.WriteLine(line);
        }
    }
}
