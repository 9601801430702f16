using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Paging.Testing.Servers;

/// <summary>
/// An HTTP/1.1 proxy on loopback in front of a real server (nginx) that injects the failures a network store must
/// survive: latency, 503s (at a rate, or the first N requests), connections reset before the answer, bodies cut in
/// the middle, a server that ignores <c>Range</c> (the header is dropped, so upstream answers 200 with the whole
/// body), and a changed object (<see cref="ReplaceETag"/> rewrites the ETag of later answers, as if the object had
/// been replaced mid-read), and signed redirects like a model hub's (<see cref="SignedRedirects"/>: <c>/r/path</c> answers
/// 302 to <c>/path?sig=N</c>, and a signature older than <see cref="ExpireSignatures"/> is refused with 403, as an
/// expired pre-signed URL is). Keep-alive on both sides. GET and HEAD only; upstream bodies must have a Content-Length
/// (nginx's static files do).
/// <para>Never run it in a process that touches Paging regions through it: its allocations can start a GC that waits
/// for a thread blocked in a fault that waits for the proxy (the harness runs it as a process of its own).</para>
/// </summary>
public sealed class FaultInjectingHttpProxy : IDisposable
{
    private readonly TcpListener _listener;
    private readonly IPEndPoint _upstream;
    private readonly CancellationTokenSource _stop = new();
    private readonly Random _random;
    private readonly Lock _lock = new();
    private int _failFirst;
    private long _requests;
    private long _injected;
    private long _signature = 1, _redirects, _expired, _authorizationToTarget;

    /// <summary>Starts a proxy to <paramref name="upstreamPort"/> on loopback.</summary>
    public FaultInjectingHttpProxy(int upstreamPort, int seed = 1)
    {
        _upstream = new IPEndPoint(IPAddress.Loopback, upstreamPort);
        _random = new Random(seed);
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start(512);
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _ = AcceptLoop();
    }

    /// <summary>The proxy's port.</summary>
    public int Port { get; }

    /// <summary>The proxy URL of a path on the upstream server.</summary>
    public Uri UrlOf(string path) => new($"http://127.0.0.1:{Port}/{path.TrimStart('/')}");

    /// <summary>Added before each answer.</summary>
    public TimeSpan Latency { get; set; }

    /// <summary>Share of requests answered 503.</summary>
    public double ServerErrorRate { get; set; }

    /// <summary>Share of requests whose connection is reset (RST) before any answer.</summary>
    public double ResetRate { get; set; }

    /// <summary>Share of answers whose body is cut in the middle (then the connection is closed).</summary>
    public double TruncateRate { get; set; }

    /// <summary>Drop the Range header: upstream answers 200 with the whole body.</summary>
    public bool IgnoreRange { get; set; }

    /// <summary>When set, every answer's ETag is replaced by this one (the object "changed").</summary>
    public string? ReplaceETag { get; set; }

    /// <summary>When positive, a Range asking for more bytes is cut to its first this many before it goes upstream, so
    /// the server answers 206 with a shorter Content-Range than asked (servers and CDNs that cap a range's size).</summary>
    public long CapRangeBytes { get; set; }

    /// <summary>The Retry-After (seconds) of the 503s it injects; 0 by default.</summary>
    public int RetryAfterSeconds { get; set; }

    /// <summary>When set, answers lose their ETag (a server that pins by Last-Modified alone).</summary>
    public bool StripETag { get; set; }

    /// <summary>When set, answers lose their Last-Modified (with <see cref="StripETag"/>: a server with no validators).</summary>
    public bool StripLastModified { get; set; }

    /// <summary>Never answer: hold the connection open (a server that hangs).</summary>
    public bool Hang { get; set; }

    /// <summary>Serve <c>/r/path</c> as a redirect to a signed <c>/path?sig=N</c>; refuse expired signatures (403).</summary>
    public bool SignedRedirects { get; set; }

    /// <summary>Makes every signature handed out so far expire: later requests with one are refused (403).</summary>
    public void ExpireSignatures() => Interlocked.Increment(ref _signature);

    /// <summary>Redirects answered.</summary>
    public long Redirects => Interlocked.Read(ref _redirects);

    /// <summary>Requests with an expired signature (answered 403).</summary>
    public long Expired => Interlocked.Read(ref _expired);

    /// <summary>Requests to a signed URL that carried an Authorization header (a credential sent to the redirect's
    /// target, which HttpClient itself never does).</summary>
    public long AuthorizationToTarget => Interlocked.Read(ref _authorizationToTarget);

    /// <summary>Answer the next <paramref name="n"/> requests with 503.</summary>
    public void FailNext(int n) => Interlocked.Exchange(ref _failFirst, n);

    /// <summary>Requests seen.</summary>
    public long Requests => Interlocked.Read(ref _requests);

    /// <summary>Requests that got a fault.</summary>
    public long Injected => Interlocked.Read(ref _injected);

    private double Next()
    {
        lock (_lock)
        {
            return _random.NextDouble();
        }
    }

    private async Task AcceptLoop()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptSocketAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }
            client.NoDelay = true;
            _ = Serve(client);
        }
    }

    private async Task Serve(Socket client)
    {
        using var clientStream = new NetworkStream(client, ownsSocket: true);
        Socket? upstream = null;
        NetworkStream? upstreamStream = null;
        try
        {
            var buffer = new List<byte>(4096);
            while (!_stop.IsCancellationRequested)
            {
                var head = await ReadHead(clientStream, buffer).ConfigureAwait(false);
                if (head is null)
                {
                    return;
                }
                Interlocked.Increment(ref _requests);
                if (Hang)
                {
                    Interlocked.Increment(ref _injected);
                    await Task.Delay(Timeout.Infinite, _stop.Token).ConfigureAwait(false);
                }
                if (Latency > TimeSpan.Zero)
                {
                    await Task.Delay(Latency, _stop.Token).ConfigureAwait(false);
                }
                if (ResetRate > 0 && Next() < ResetRate)
                {
                    Interlocked.Increment(ref _injected);
                    client.LingerState = new LingerOption(true, 0);
                    client.Close();
                    return;
                }
                if (Interlocked.Decrement(ref _failFirst) >= 0 || (ServerErrorRate > 0 && Next() < ServerErrorRate))
                {
                    Interlocked.Increment(ref _injected);
                    var answer = Encoding.ASCII.GetBytes($"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: {RetryAfterSeconds}\r\n\r\n");
                    await clientStream.WriteAsync(answer, _stop.Token).ConfigureAwait(false);
                    continue;
                }
                var lines = head.Split("\r\n");
                if (SignedRedirects && await AnswerSigned(clientStream, lines).ConfigureAwait(false))
                {
                    continue;
                }
                var request = new StringBuilder(lines[0]).Append("\r\n");
                foreach (var line in lines.Skip(1))
                {
                    if (line.Length == 0 || (IgnoreRange && line.StartsWith("Range:", StringComparison.OrdinalIgnoreCase)))
                    {
                        continue;
                    }
                    if (CapRangeBytes > 0 && line.StartsWith("Range: bytes=", StringComparison.OrdinalIgnoreCase) &&
                        line["Range: bytes=".Length..].Split('-') is [var from, var to] &&
                        long.TryParse(from, out long first) && long.TryParse(to, out long last) && last - first + 1 > CapRangeBytes)
                    {
                        Interlocked.Increment(ref _injected);
                        request.Append("Range: bytes=").Append(first).Append('-').Append(first + CapRangeBytes - 1).Append("\r\n");
                        continue;
                    }
                    request.Append(line).Append("\r\n");
                }
                request.Append("\r\n");
                if (upstream is null)
                {
                    upstream = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                    await upstream.ConnectAsync(_upstream, _stop.Token).ConfigureAwait(false);
                    upstreamStream = new NetworkStream(upstream, ownsSocket: true);
                }
                await upstreamStream!.WriteAsync(Encoding.ASCII.GetBytes(request.ToString()), _stop.Token).ConfigureAwait(false);
                var upstreamBuffer = new List<byte>(4096);
                var responseHead = await ReadHead(upstreamStream, upstreamBuffer).ConfigureAwait(false)
                    ?? throw new IOException("upstream closed the connection");
                long contentLength = 0;
                var response = new StringBuilder();
                foreach (var line in responseHead.Split("\r\n"))
                {
                    if (line.Length == 0)
                    {
                        continue;
                    }
                    if (line.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase))
                    {
                        contentLength = long.Parse(line.AsSpan(15).Trim(), System.Globalization.CultureInfo.InvariantCulture);
                    }
                    if ((StripETag && line.StartsWith("ETag:", StringComparison.OrdinalIgnoreCase)) ||
                        (StripLastModified && line.StartsWith("Last-Modified:", StringComparison.OrdinalIgnoreCase)))
                    {
                        continue;
                    }
                    if (ReplaceETag is { } etag && line.StartsWith("ETag:", StringComparison.OrdinalIgnoreCase))
                    {
                        response.Append("ETag: ").Append(etag).Append("\r\n");
                        continue;
                    }
                    response.Append(line).Append("\r\n");
                }
                response.Append("\r\n");
                bool head_ = lines[0].StartsWith("HEAD ", StringComparison.Ordinal);
                var body = new byte[head_ ? 0 : contentLength];
                int have = Math.Min(upstreamBuffer.Count, body.Length);
                upstreamBuffer.CopyTo(0, body, 0, have);
                await upstreamStream.ReadExactlyAsync(body.AsMemory(have), _stop.Token).ConfigureAwait(false);
                await clientStream.WriteAsync(Encoding.ASCII.GetBytes(response.ToString()), _stop.Token).ConfigureAwait(false);
                if (body.Length > 1 && TruncateRate > 0 && Next() < TruncateRate)
                {
                    Interlocked.Increment(ref _injected);
                    await clientStream.WriteAsync(body.AsMemory(0, body.Length / 2), _stop.Token).ConfigureAwait(false);
                    await clientStream.FlushAsync(_stop.Token).ConfigureAwait(false);
                    client.Shutdown(SocketShutdown.Both);
                    return;
                }
                await clientStream.WriteAsync(body, _stop.Token).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
        {
            // The client went away, the proxy stopped, or a fault closed the connection.
        }
        finally
        {
            upstreamStream?.Dispose();
        }
    }

    /// <summary>Signed redirects: true when the request was answered here (302 or 403); a request with the current
    /// signature goes upstream (nginx ignores the query string of a static file).</summary>
    private async Task<bool> AnswerSigned(NetworkStream client, string[] lines)
    {
        var parts = lines[0].Split(' ');
        string target = parts.Length == 3 ? parts[1] : "";
        string? answer = null;
        if (target.StartsWith("/r/", StringComparison.Ordinal))
        {
            Interlocked.Increment(ref _redirects);
            answer = $"HTTP/1.1 302 Found\r\nLocation: {target[2..]}?sig={Interlocked.Read(ref _signature)}\r\nContent-Length: 0\r\n\r\n";
        }
        else if (target.IndexOf("?sig=", StringComparison.Ordinal) is int at and >= 0)
        {
            if (lines.Any(l => l.StartsWith("Authorization:", StringComparison.OrdinalIgnoreCase)))
            {
                Interlocked.Increment(ref _authorizationToTarget);
            }
            if (target[(at + 5)..] != Interlocked.Read(ref _signature).ToString(System.Globalization.CultureInfo.InvariantCulture))
            {
                Interlocked.Increment(ref _expired);
                answer = "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
            }
        }
        if (answer is null)
        {
            return false;
        }
        await client.WriteAsync(Encoding.ASCII.GetBytes(answer), _stop.Token).ConfigureAwait(false);
        return true;
    }

    /// <summary>Reads up to the blank line; bytes after it stay in <paramref name="buffer"/>. Null at end of stream.</summary>
    private async Task<string?> ReadHead(Stream stream, List<byte> buffer)
    {
        var chunk = new byte[8192];
        while (true)
        {
            for (int i = 3; i < buffer.Count; i++)
            {
                if (buffer[i - 3] == '\r' && buffer[i - 2] == '\n' && buffer[i - 1] == '\r' && buffer[i] == '\n')
                {
                    var head = Encoding.ASCII.GetString(buffer.GetRange(0, i + 1).ToArray());
                    buffer.RemoveRange(0, i + 1);
                    return head;
                }
            }
            int n = await stream.ReadAsync(chunk, _stop.Token).ConfigureAwait(false);
            if (n == 0)
            {
                return null;
            }
            buffer.AddRange(chunk.AsSpan(0, n));
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
        _stop.Dispose();
    }
}
