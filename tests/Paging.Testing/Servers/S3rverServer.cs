using System.Diagnostics;
using System.Text.RegularExpressions;

namespace Paging.Testing.Servers;

/// <summary>
/// A real S3-compatible server (npm's s3rver, run by node) on a loopback port chosen by the server, with one bucket
/// and its data in its own folder. Credentials: s3rver accepts its default key pair (<see cref="AccessKey"/>).
/// Stopped and its folder deleted on dispose.
/// </summary>
public sealed partial class S3rverServer : IDisposable
{
    /// <summary>s3rver's default access key id.</summary>
    public const string AccessKey = "S3RVER";

    /// <summary>s3rver's default secret key.</summary>
    public const string SecretKey = "S3RVER";

    private readonly Process _process;
    private readonly string _directory;

    private S3rverServer(Process process, string directory, int port, string bucket)
    {
        _process = process;
        _directory = directory;
        Port = port;
        Bucket = bucket;
    }

    /// <summary>The loopback port.</summary>
    public int Port { get; }

    /// <summary>The bucket created at start.</summary>
    public string Bucket { get; }

    /// <summary>The endpoint URL.</summary>
    public Uri Endpoint => new($"http://127.0.0.1:{Port}/");

    [GeneratedRegex(@"listening on [^:\s]+:(\d+)")]
    private static partial Regex Listening();

    /// <summary>Starts s3rver with the bucket <paramref name="bucket"/>.</summary>
    public static S3rverServer Start(string bucket = "paging")
    {
        string script = LocalServers.S3rver;
        var directory = Directory.CreateTempSubdirectory("paging-s3rver-").FullName;
        var process = LocalServers.StartTied("node", [script, "-d", directory, "-a", "127.0.0.1", "-p", "0", "--configure-bucket", bucket, "--allow-mismatched-signatures"], directory);
        var port = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        var output = new System.Text.StringBuilder();
        void OnLine(object? sender, DataReceivedEventArgs e)
        {
            if (e.Data is null)
            {
                return;
            }
            lock (output)
            {
                output.AppendLine(e.Data);
            }
            var m = Listening().Match(e.Data);
            if (m.Success)
            {
                port.TrySetResult(int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture));
            }
        }
        process.OutputDataReceived += OnLine;
        process.ErrorDataReceived += OnLine;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (!port.Task.Wait(TimeSpan.FromSeconds(30)) || !LocalServers.WaitForPort(port.Task.Result, TimeSpan.FromSeconds(10)))
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
            process.Dispose();
            lock (output)
            {
                throw new LocalServerException($"s3rver did not start: {output}");
            }
        }
        return new S3rverServer(process, directory, port.Task.Result, bucket);
    }

    /// <inheritdoc />
    public void Dispose() => LocalServers.Stop(_process, _directory);
}
