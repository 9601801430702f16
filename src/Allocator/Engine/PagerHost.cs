using System.Globalization;
using Microsoft.Extensions.Logging;
using Paging.Interop;
using Paging.Logging;
using Paging.Protocol;
using Paging.Stores;

namespace Paging.Engine;

/// <summary>
/// The pager process's entry point (src/Pager is a thin host over this): parses the arguments the library passes,
/// takes the inherited socket and runs a <see cref="PagerSession"/> until the application exits or closes it.
/// </summary>
internal static class PagerHost
{
    /// <summary>Runs the pager: <c>--fd N</c> is the inherited socket, <c>--app-pid P</c> the application.
    /// <paramref name="setLogLevel"/> applies the level the application sends in Hello. Returns the exit code.</summary>
    public static int Run(string[] args, PageStoreRegistry registry, ILoggerFactory loggerFactory, Action<LogLevel>? setLogLevel = null)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(registry);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        var logger = loggerFactory.CreateLogger("Paging.Pager");
        int socketFd = -1, appPid = -1;
        for (int i = 0; i + 1 < args.Length; i += 2)
        {
            switch (args[i])
            {
                case "--fd": _ = int.TryParse(args[i + 1], NumberStyles.None, CultureInfo.InvariantCulture, out socketFd); break;
                case "--app-pid": _ = int.TryParse(args[i + 1], NumberStyles.None, CultureInfo.InvariantCulture, out appPid); break;
            }
        }
        if (socketFd < 3 || appPid <= 0)
        {
            Log.Usage(logger);
            return 2;
        }
        // The inherited fd was made without CLOEXEC for us; do not pass it on to anything this process starts.
        _ = Libc.Fcntl(socketFd, Libc.F_SETFD, Libc.FD_CLOEXEC);
        FileDescriptor appPidfd;
        try
        {
            appPidfd = Libc.PidfdOpen(appPid);
        }
        catch (PagingSystemException e)
        {
            Log.ApplicationGone(logger, appPid, e.Message);
            return 3;
        }
        using var session = new PagerSession(new PagerChannel(new FileDescriptor(socketFd)), appPid, appPidfd, registry, logger, setLogLevel);
        return session.Run();
    }
}
