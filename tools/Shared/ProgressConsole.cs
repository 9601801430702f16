using Spectre.Console;

namespace Paging.Cli;

/// <summary>The console the command-line programs (the harness, the pack tool) draw their progress on: standard error,
/// so what they print on standard output (<c>--json</c>, tables, summaries) stays clean. Redirected to a file or a pipe, it writes plain lines (no colour or cursor escapes): a CI log
/// or <c>2&gt;run.log</c> should read as text.</summary>
internal static class ProgressConsole
{
    public static IAnsiConsole Create() => AnsiConsole.Create(new AnsiConsoleSettings
    {
        Out = new AnsiConsoleOutput(Console.Error),
        Ansi = Console.IsErrorRedirected ? AnsiSupport.No : AnsiSupport.Detect,
        ColorSystem = Console.IsErrorRedirected ? ColorSystemSupport.NoColors : ColorSystemSupport.Detect,
    });
}
