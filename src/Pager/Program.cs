using Microsoft.Extensions.Logging;
using Paging.Backends;
using Paging.Faults;

namespace Paging.Pager;

/// <summary>The pager executable: started by the library with an inherited socket; serves faults until the
/// application exits. Log level from PAGING_PAGER_LOG (Trace..Critical, default Information), to stderr.</summary>
internal static class Program
{
    private static int Main(string[] args)
    {
        var level = Enum.TryParse<LogLevel>(Environment.GetEnvironmentVariable("PAGING_PAGER_LOG"), ignoreCase: true, out var l) ? l : LogLevel.Information;
        using var loggerFactory = new StderrLoggerFactory(level);
        return PagerHost.Run(args, BuiltInPageStores.CreateRegistry(), loggerFactory);
    }
}

/// <summary>A minimal stderr logger: the pager must not depend on a logging stack that could block it.</summary>
internal sealed class StderrLoggerFactory(LogLevel minimum) : ILoggerFactory
{
    public void AddProvider(ILoggerProvider provider) { }

    public ILogger CreateLogger(string categoryName) => new StderrLogger(categoryName, minimum);

    public void Dispose() { }

    private sealed class StderrLogger(string category, LogLevel minimum) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= minimum;

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
