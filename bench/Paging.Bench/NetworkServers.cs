using Amazon.Runtime;
using Amazon.S3;
using Amazon.S3.Model;
using Paging.Backends.Network;
using Paging.Backends.Network.S3;
using Paging.Testing.Servers;
using Spectre.Console;

namespace Paging.Bench;

/// <summary>
/// The servers of the network backends, on loopback: nginx serving the data file's folder (--backend http) and
/// s3rver holding the data file as an object (--backend s3), and the plain clients of their baselines — HttpClient
/// range GETs and AWSSDK.S3 ranged GetObject — that fetch the same bytes without Paging.
/// </summary>
internal sealed class NetworkServers : IDisposable
{
    private const string Bucket = "paging-bench";
    private readonly string _name;
    private NginxServer? _nginx;
    private System.Diagnostics.Process? _proxy;
    private Uri? _proxyUrl;
    private S3rverServer? _s3;
    private HttpClient? _http;
    private AmazonS3Client? _s3Client;

    private NetworkServers(string name) => _name = name;

    public static NetworkServers Start(IReadOnlyCollection<string> backends, string path, IAnsiConsole console, int httpLatencyMicroseconds = 0)
    {
        var servers = new NetworkServers(Path.GetFileName(path));
        try
        {
            if (backends.Contains("http"))
            {
                servers._nginx = NginxServer.Start(Path.GetDirectoryName(path)!);
                if (httpLatencyMicroseconds > 0)
                {
                    servers.StartLatencyProxy(servers._nginx.Port, httpLatencyMicroseconds);
                }
                servers._http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 64, UseProxy = false });
            }
            if (backends.Contains("s3"))
            {
                servers._s3 = S3rverServer.Start(Bucket);
                servers._s3Client = new AmazonS3Client(new BasicAWSCredentials(S3rverServer.AccessKey, S3rverServer.SecretKey), new AmazonS3Config
                {
                    ServiceURL = servers._s3.Endpoint.AbsoluteUri,
                    ForcePathStyle = true,
                    AuthenticationRegion = "us-east-1",
                    MaxConnectionsPerServer = 64,
                    RequestChecksumCalculation = RequestChecksumCalculation.WHEN_REQUIRED, // s3rver 3.7 stores aws-chunked framing as data
                    ResponseChecksumValidation = ResponseChecksumValidation.WHEN_REQUIRED,
                });
                console.Status().Start($"uploading {new FileInfo(path).Length >> 20} MiB to s3rver", _ =>
                    servers._s3Client.PutObjectAsync(new PutObjectRequest { BucketName = Bucket, Key = servers._name, FilePath = path, UseChunkEncoding = false })
                        .GetAwaiter().GetResult());
                // s3rver keeps its copy of the object as a file: written back to the disk ~30 s later
                // (vm.dirty_expire_centisecs = 3000) it would land in whichever rows run then (measured: 1 GiB dirty
                // for the whole of an S3 run that did not sync). Written back now, off the clock.
                Paging.Interop.Libc.Sync();
            }
            return servers;
        }
        catch
        {
            servers.Dispose();
            throw;
        }
    }

    public PageStoreDescriptor Descriptor(string backend) => backend == "http"
        ? PageStoreDescriptor.Http(HttpUrl!)
        : PageStoreDescriptor.S3(Bucket, _name, new S3StoreOptions { Endpoint = _s3!.Endpoint, AccessKey = S3rverServer.AccessKey, SecretKey = S3rverServer.SecretKey });

    /// <summary>The URL of the data file on nginx (for `weights --url`).</summary>
    public Uri? HttpUrl => _proxyUrl is { } proxy ? new Uri(proxy, _name) : _nginx?.UrlOf(_name);

    /// <summary>The latency proxy runs in a process of its own (this executable, "latency-proxy"): in the harness's
    /// process its allocations could start a GC that waits for a touching thread blocked in a fault that waits for
    /// the proxy — the in-process deadlock ARCHITECTURE.md measures.</summary>
    private void StartLatencyProxy(int upstreamPort, int latencyMicroseconds)
    {
        // SelfProcess: started as `dotnet Paging.Bench.dll`, the process path is the muxer, not the harness.
        var info = SelfProcess.StartInfo("latency-proxy", upstreamPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
            latencyMicroseconds.ToString(System.Globalization.CultureInfo.InvariantCulture));
        info.RedirectStandardInput = true;
        _proxy = System.Diagnostics.Process.Start(info)!;
        string? line = _proxy.StandardOutput.ReadLine();
        if (line is null || !int.TryParse(line, out int port))
        {
            throw new InvalidOperationException($"the latency proxy did not start: '{line}'");
        }
        _proxyUrl = new Uri($"http://127.0.0.1:{port}/");
    }

    /// <summary>The proxy process: prints its port, serves until its standard input closes (the harness exited).</summary>
    public static int RunLatencyProxy(int upstreamPort, int latencyMicroseconds)
    {
        using var proxy = new FaultInjectingHttpProxy(upstreamPort) { Latency = TimeSpan.FromMicroseconds(latencyMicroseconds) };
        Console.WriteLine(proxy.Port);
        Console.Out.Flush();
        _ = Console.In.ReadToEnd();
        return 0;
    }

    /// <summary>Fetches [offset, offset + destination.Length) without Paging: one range GET.</summary>
    public async Task Fetch(string backend, long offset, Memory<byte> destination)
    {
        long last = offset + destination.Length - 1;
        if (backend == "http")
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, HttpUrl);
            request.Headers.Range = new System.Net.Http.Headers.RangeHeaderValue(offset, last);
            using var response = await _http!.SendAsync(request, HttpCompletionOption.ResponseHeadersRead).ConfigureAwait(false);
            if (response.StatusCode != System.Net.HttpStatusCode.PartialContent)
            {
                throw new IOException($"baseline GET bytes={offset}-{last}: {(int)response.StatusCode}");
            }
            using var body = await response.Content.ReadAsStreamAsync().ConfigureAwait(false);
            await body.ReadExactlyAsync(destination).ConfigureAwait(false);
        }
        else
        {
            using var response = await _s3Client!.GetObjectAsync(new GetObjectRequest { BucketName = Bucket, Key = _name, ByteRange = new ByteRange(offset, last) }).ConfigureAwait(false);
            await response.ResponseStream.ReadExactlyAsync(destination).ConfigureAwait(false);
        }
    }

    /// <summary>The baseline's fetches: for "seq" the touched span in 1 MiB GETs from 8 streams (each page's latency
    /// is its GET's), otherwise one 4 KiB GET per touch from <paramref name="threads"/> tasks. Returns the sum of
    /// every page's first word (checked against the file like the touches). With <paramref name="keep"/> ("seq" only)
    /// every GET lands in its own place of fresh arrays as large as the span, as a loader that keeps the bytes does;
    /// without it each stream reuses one 1 MiB buffer (the baseline: the network's cost alone).</summary>
    public ulong FetchAll(string backend, long[] offsets, string pattern, int threads, long[] latencies, bool keep = false)
    {
        ulong sum = 0;
        if (pattern == "seq")
        {
            const int chunk = 1 << 20, pagesPerChunk = chunk / Scenarios.Page, chunksPerArray = 1024;
            int chunks = (offsets.Length + pagesPerChunk - 1) / pagesPerChunk, next = -1;
            // 1 GiB arrays, uninitialized: their pages are first written by the GETs (as new byte[] of a loader would
            // be, minus the zeroing).
            byte[][] kept = keep
                ? Enumerable.Range(0, (chunks + chunksPerArray - 1) / chunksPerArray)
                    .Select(a => GC.AllocateUninitializedArray<byte>(Math.Min(chunksPerArray, chunks - a * chunksPerArray) * chunk)).ToArray()
                : [];
            var streams = Enumerable.Range(0, 8).Select(_ => Task.Run(async () =>
            {
                byte[]? reused = keep ? null : new byte[chunk];
                ulong local = 0;
                for (int c; (c = Interlocked.Increment(ref next)) < chunks;)
                {
                    int first = c * pagesPerChunk, pages = Math.Min(pagesPerChunk, offsets.Length - first);
                    var (buffer, at) = keep ? (kept[c / chunksPerArray], c % chunksPerArray * chunk) : (reused!, 0);
                    long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
                    await Fetch(backend, offsets[first], buffer.AsMemory(at, pages * Scenarios.Page));
                    long took = System.Diagnostics.Stopwatch.GetTimestamp() - t0;
                    for (int p = 0; p < pages; p++)
                    {
                        local += BitConverter.ToUInt64(buffer, at + p * Scenarios.Page);
                        latencies[first + p] = took;
                    }
                }
                Interlocked.Add(ref sum, local);
            })).ToArray();
            Task.WaitAll(streams);
        }
        else
        {
            int next = -1;
            var workers = Enumerable.Range(0, threads).Select(_ => Task.Run(async () =>
            {
                var buffer = new byte[Scenarios.Page];
                ulong local = 0;
                for (int i; (i = Interlocked.Increment(ref next)) < offsets.Length;)
                {
                    long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
                    await Fetch(backend, offsets[i], buffer);
                    latencies[i] = System.Diagnostics.Stopwatch.GetTimestamp() - t0;
                    local += BitConverter.ToUInt64(buffer, 0);
                }
                Interlocked.Add(ref sum, local);
            })).ToArray();
            Task.WaitAll(workers);
        }
        return sum;
    }

    public void Dispose()
    {
        _http?.Dispose();
        _s3Client?.Dispose();
        if (_proxy is not null)
        {
            _proxy.StandardInput.Close();
            if (!_proxy.WaitForExit(2000))
            {
                _proxy.Kill();
            }
            _proxy.Dispose();
        }
        _nginx?.Dispose();
        _s3?.Dispose();
    }
}
