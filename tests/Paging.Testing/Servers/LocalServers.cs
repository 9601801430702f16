using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Paging.Testing.Servers;

/// <summary>
/// Finds (and, as root, installs) the real servers the network tests and the harness start on loopback: Debian's
/// nginx and npm's s3rver. <c>.ci/run</c> installs both first; a machine without them gets them the first time a test
/// needs them (apt-get, npm into <c>.servers/</c> beside Paging.sln), so the README's test command works on a fresh
/// machine too. Anything that cannot be installed is an exception that says what to run.
/// </summary>
public static class LocalServers
{
    /// <summary>The s3rver version installed (the one known to work offline here).</summary>
    public const string S3rverVersion = "3.7.1";

    private static readonly Lazy<string> s_nginx = new(FindOrInstallNginx);
    private static readonly Lazy<string> s_s3rver = new(FindOrInstallS3rver);

    /// <summary>The nginx binary.</summary>
    public static string Nginx => s_nginx.Value;

    /// <summary>The s3rver launcher script.</summary>
    public static string S3rver => s_s3rver.Value;

    /// <summary>Where s3rver is installed: the repository's <c>.servers</c> folder when this runs from a build inside
    /// the repository (as the tests and the harness do, and where .ci/run installs it), else
    /// <c>$XDG_CACHE_HOME/paging-servers</c> (or <c>~/.cache/paging-servers</c>) for a harness copied elsewhere.</summary>
    public static string ServersFolder
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "Paging.sln")))
                {
                    return Path.Combine(dir.FullName, ".servers");
                }
            }
            string cache = Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg
                ? xdg
                : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
            return Path.Combine(cache, "paging-servers");
        }
    }

    private static string FindOrInstallNginx()
    {
        foreach (var candidate in new[] { "/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx" })
        {
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }
        Run("apt-get", "install -y -qq nginx-light", TimeSpan.FromMinutes(5), "install nginx (apt-get install nginx)", allowFailure: true);
        if (!File.Exists("/usr/sbin/nginx"))
        {
            Run("apt-get", "update -qq", TimeSpan.FromMinutes(5), "apt-get update");
            Run("apt-get", "install -y -qq nginx", TimeSpan.FromMinutes(5), "install nginx (apt-get install nginx)");
        }
        return File.Exists("/usr/sbin/nginx") ? "/usr/sbin/nginx" : throw new LocalServerException("nginx is not installed: apt-get install nginx (.ci/run does)");
    }

    private static string FindOrInstallS3rver()
    {
        var prefix = ServersFolder;
        var script = Path.Combine(prefix, "node_modules", "s3rver", "bin", "s3rver.js");
        if (!File.Exists(script))
        {
            Run("npm", $"install --prefix \"{prefix}\" --no-audit --no-fund --silent s3rver@{S3rverVersion}", TimeSpan.FromMinutes(5),
                $"install s3rver (npm install --prefix {prefix} s3rver@{S3rverVersion}; .ci/run does)");
        }
        return File.Exists(script) ? script : throw new LocalServerException($"s3rver is not installed in {prefix}: npm install --prefix {prefix} s3rver@{S3rverVersion}");
    }

    private static void Run(string file, string arguments, TimeSpan timeout, string what, bool allowFailure = false)
    {
        var info = new ProcessStartInfo(file, arguments) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.Environment["DEBIAN_FRONTEND"] = "noninteractive";
        Process process;
        try
        {
            process = Process.Start(info)!;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new LocalServerException($"cannot {what}: {file} is not available ({e.Message})", e);
        }
        using (process)
        {
            var output = process.StandardOutput.ReadToEndAsync();
            var error = process.StandardError.ReadToEndAsync();
            if (!process.WaitForExit(timeout))
            {
                process.Kill(entireProcessTree: true);
                throw new LocalServerException($"cannot {what}: '{file} {arguments}' did not finish in {timeout.TotalMinutes:0} min");
            }
            if (process.ExitCode != 0 && !allowFailure)
            {
                throw new LocalServerException($"cannot {what}: '{file} {arguments}' exited with {process.ExitCode}: {error.Result}{output.Result}");
            }
        }
    }

    /// <summary>
    /// Starts a server tied to this process's life: a shell starts it, then waits on a pipe from us; when this process
    /// ends — even killed, or crashed in a fault, when no Dispose runs — the pipe closes and the shell stops the server,
    /// then deletes <paramref name="directory"/> (its files: s3rver keeps a copy of every object) if one is given.
    /// (A test host that crashed used to leave nginx and s3rver running, and a stopped harness their folders.) Standard
    /// output and error are redirected.
    /// </summary>
    public static Process StartTied(string file, IEnumerable<string> arguments, string? directory = null)
    {
        var info = new ProcessStartInfo("/bin/sh")
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        info.Environment[TiedDirectoryVariable] = directory ?? "";
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add($"\"$0\" \"$@\" & child=$!; cat >/dev/null; kill $child 2>/dev/null; wait $child; {RemoveTiedDirectory}");
        info.ArgumentList.Add(file);
        foreach (var a in arguments)
        {
            info.ArgumentList.Add(a);
        }
        return Process.Start(info)!;
    }

    private const string TiedDirectoryVariable = "PAGING_TIED_DIRECTORY";
    private const string RemoveTiedDirectory = "[ -z \"$PAGING_TIED_DIRECTORY\" ] || rm -rf -- \"$PAGING_TIED_DIRECTORY\"";

    /// <summary>Deletes <paramref name="directory"/> when this process ends, however it ends (Ctrl-C, SIGTERM, SIGKILL,
    /// a crash): a shell waits on a pipe from us and removes the folder when the pipe closes. For the harness's
    /// gigabyte-sized data files, which a stopped run used to leave in the temp folder. Disposing the returned process
    /// closes the pipe, which deletes the folder at once.</summary>
    public static Process DeleteWhenThisProcessEnds(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        var info = new ProcessStartInfo("/bin/sh") { UseShellExecute = false, RedirectStandardInput = true };
        info.Environment[TiedDirectoryVariable] = Path.GetFullPath(directory);
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add($"cat >/dev/null; {RemoveTiedDirectory}");
        return Process.Start(info)!;
    }

    /// <summary>Stops a server process (and its children) and deletes its folder.</summary>
    public static void Stop(Process process, string directory)
    {
        try
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
                process.WaitForExit(5000);
            }
        }
        catch (InvalidOperationException)
        {
            // Already gone.
        }
        process.Dispose();
        try
        {
            Directory.Delete(directory, recursive: true);
        }
        catch (IOException)
        {
            // A file still open by a dying worker: the temp folder is cleaned up later.
        }
    }

    /// <summary>A loopback port nobody listens on right now.</summary>
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>Waits until something accepts connections on the loopback <paramref name="port"/>.</summary>
    public static bool WaitForPort(int port, TimeSpan timeout, Func<bool>? stillRunning = null)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        while (Stopwatch.GetTimestamp() < deadline)
        {
            if (stillRunning is not null && !stillRunning())
            {
                return false;
            }
            try
            {
                using var client = new TcpClient();
                client.Connect(IPAddress.Loopback, port);
                return true;
            }
            catch (SocketException)
            {
                Thread.Sleep(20);
            }
        }
        return false;
    }
}

/// <summary>A local server (nginx, s3rver) could not be installed or started: what failed and what to run.</summary>
public sealed class LocalServerException : Exception
{
    /// <summary>Creates the exception.</summary>
    public LocalServerException(string message) : base(message)
    {
    }

    /// <summary>Creates the exception with its cause.</summary>
    public LocalServerException(string message, Exception inner) : base(message, inner)
    {
    }
}
