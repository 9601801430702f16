using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Paging.Stores;

namespace Paging.Backends.Network.Http;

/// <summary>
/// Pages of one object on an HTTP(S) server, read with <c>Range</c> requests. When it opens the object (a
/// <c>bytes=0-0</c> request) the store learns its length and pins it: by a strong <c>ETag</c> (every later request
/// carries <c>If-Match</c>), else by <c>Last-Modified</c> (<c>If-Unmodified-Since</c>); every response must then name
/// the same validator and the same total length in <c>Content-Range</c>, or the read fails with
/// <see cref="PageStoreError.Changed"/> — bytes of two versions are never mixed in one region. A server that ignores
/// <c>Range</c> (200 with the whole body) is refused when the store opens. Bodies are requested with
/// <c>Accept-Encoding: identity</c> (byte ranges of an encoded body would be the wrong bytes). Connections are pooled
/// (<see cref="SocketsHttpHandler"/>, <see cref="HttpStoreOptions.MaxConnections"/> per server), HTTP/1.1 by default;
/// with <see cref="HttpStoreOptions.Http2"/> HTTP/2 where TLS negotiates it. TLS trusts the system's roots, or only
/// the certificates of <see cref="HttpStoreOptions.TrustedCertificatesPath"/>. Read-only.
/// <para>Redirects (a model hub's URL that answers 302 to a signed CDN URL): the store opens the object through them
/// and then sends its range requests straight to where they led (<see cref="ResolvedUrl"/>), one round trip each
/// instead of two; when that URL stops answering (401, 403, 404 or 410: a pre-signed URL expired) the request goes
/// through the original URL again, which redirects to a fresh one. As HttpClient does when it follows a redirect, a
/// request to the redirect's target carries no <c>Authorization</c> header (the other configured headers are sent).</para>
/// </summary>
public sealed class HttpPageStore : RangedObjectStore
{
    /// <summary>The store kind on the wire.</summary>
    public const string Kind = "http";

    /// <summary>The setting keys.</summary>
    public static class Settings
    {
        /// <summary>The absolute http:// or https:// URL.</summary>
        public const string Url = "url";

        /// <summary>Prefix of request headers: <c>header.Authorization</c> = <c>Bearer …</c>.</summary>
        public const string HeaderPrefix = "header.";

        /// <summary>Connections per server.</summary>
        public const string MaxConnections = "max_connections";

        /// <summary>The largest coalesced request in bytes.</summary>
        public const string MaxRequestBytes = "max_request_bytes";

        /// <summary>An http:// proxy for every request (else the environment's http_proxy/https_proxy/no_proxy).</summary>
        public const string Proxy = "proxy";

        /// <summary>"true" or "false": offer HTTP/2 to TLS servers.</summary>
        public const string Http2 = "http2";

        /// <summary>A PEM file of the certificates to trust as roots for TLS, instead of the system's.</summary>
        public const string TrustedCertificates = "ca_file";

        /// <summary>"true" or "false": read an object whose server sends neither a strong ETag nor Last-Modified.</summary>
        public const string AllowUnversioned = "allow_unversioned";
    }

    private readonly HttpClient _client;
    private readonly Uri _url;
    private Uri? _target; // where _url redirected to (null when it did not): range requests go there directly
    private readonly KeyValuePair<string, string>[] _headers;
    private readonly EntityTagHeaderValue? _etag;
    private readonly DateTimeOffset? _lastModified;
    private readonly long _length;
    private readonly bool _http2;

    /// <summary>Opens <paramref name="url"/>: one request learns and pins its length and validator. Throws
    /// <see cref="PageStoreException"/>: Configuration (not found, denied, no range support, encoded body), Io (the
    /// server failed every attempt).</summary>
    public HttpPageStore(Uri url, HttpStoreOptions? options = null)
        : base(Check(url).ToString(), (options ?? new()).Retry, (options ?? new()).MaxRequestBytes)
    {
        options ??= new();
        _url = url;
        _headers = [.. options.Headers];
        _http2 = options.Http2;
        _client = new HttpClient(Handlers.GetOrAdd(new HandlerKey(url.Scheme, url.Authority, options.MaxConnections, options.Retry.AttemptTimeout, options.TrustedCertificatesPath, options.Proxy), NewHandler), disposeHandler: false)
        {
            Timeout = Timeout.InfiniteTimeSpan, // each attempt has its own deadline (NetworkRetry.AttemptTimeout)
        };
        try
        {
            (_length, _etag, _lastModified, var final) = Probe();
            _target = Redirected(final);
            if (_etag is null && _lastModified is null && _length > 0 && !options.AllowUnversioned)
            {
                // Only the total length would be checked: a new version of the same length would be read into the
                // region beside pages of the old one, the mixed bytes the store exists to refuse.
                throw new PageStoreException(PageStoreError.Configuration,
                    $"{Description}: the server sends neither a strong ETag nor Last-Modified, so a change of the object while it is mapped could not be detected " +
                    $"(only its length); serve it with one of them, or set HttpStoreOptions.AllowUnversioned to read it pinned by its length alone");
            }
        }
        catch
        {
            _client.Dispose();
            throw;
        }
    }

    /// <summary>One connection pool per server and pool settings, shared by every store of the pager process: the
    /// shards of one checkpoint, or a region created again, reuse warm connections (no TCP or TLS handshake before
    /// their first page). Lives as long as the pager.</summary>
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<HandlerKey, SocketsHttpHandler> Handlers = new();

    private readonly record struct HandlerKey(string Scheme, string Authority, int MaxConnections, TimeSpan ConnectTimeout, string? TrustedCertificates, Uri? Proxy);

    private static SocketsHttpHandler NewHandler(HandlerKey key) => new()
    {
        SslOptions = TlsOptions(key.TrustedCertificates),
        MaxConnectionsPerServer = key.MaxConnections,
        // Idle connections are kept a minute (a model load pauses between tensors) and renewed every 10 minutes
        // so a DNS change is seen.
        PooledConnectionIdleTimeout = TimeSpan.FromMinutes(1),
        PooledConnectionLifetime = TimeSpan.FromMinutes(10),
        ConnectTimeout = key.ConnectTimeout,
        AutomaticDecompression = DecompressionMethods.None,
        EnableMultipleHttp2Connections = true,
        UseCookies = false,
        // An explicit proxy, else the environment's (http_proxy, https_proxy, all_proxy, no_proxy), as curl does.
        UseProxy = true,
        Proxy = key.Proxy is { } proxy ? new WebProxy(proxy) : HttpClient.DefaultProxy,
    };

    private static SslClientAuthenticationOptions TlsOptions(string? trustedCertificates)
    {
        var options = new SslClientAuthenticationOptions();
        if (trustedCertificates is not null)
        {
            // A private CA or a self-signed server: its certificates are the only roots (the host name is still checked).
            var policy = new X509ChainPolicy { TrustMode = X509ChainTrustMode.CustomRootTrust, RevocationMode = X509RevocationMode.NoCheck };
            policy.CustomTrustStore.AddRange(LoadCertificates(trustedCertificates));
            options.CertificateChainPolicy = policy;
        }
        return options;
    }

    private static X509Certificate2Collection LoadCertificates(string path)
    {
        var certificates = new X509Certificate2Collection();
        try
        {
            certificates.ImportFromPemFile(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException)
        {
            throw new PageStoreException(PageStoreError.Configuration, $"the trusted certificates file '{path}' cannot be read as PEM certificates: {e.Message}", e);
        }
        return certificates.Count > 0 ? certificates
            : throw new PageStoreException(PageStoreError.Configuration, $"the trusted certificates file '{path}' holds no PEM certificate");
    }

    private static Uri Check(Uri url)
    {
        ArgumentNullException.ThrowIfNull(url);
        if (!url.IsAbsoluteUri || (url.Scheme != Uri.UriSchemeHttp && url.Scheme != Uri.UriSchemeHttps))
        {
            throw new PageStoreException(PageStoreError.Configuration, $"'{url}' is not an absolute http:// or https:// URL");
        }
        return url;
    }

    /// <summary>Describes the object at <paramref name="url"/>.</summary>
    public static PageStoreDescriptor Describe(Uri url, HttpStoreOptions? options = null)
    {
        Check(url);
        options ??= new();
        var settings = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            [Settings.Url] = url.AbsoluteUri,
            [Settings.MaxConnections] = options.MaxConnections.ToString(CultureInfo.InvariantCulture),
            [Settings.MaxRequestBytes] = options.MaxRequestBytes.ToString(CultureInfo.InvariantCulture),
        };
        foreach (var (name, value) in options.Headers)
        {
            settings[Settings.HeaderPrefix + name] = value;
        }
        settings[Settings.Http2] = options.Http2 ? "true" : "false";
        if (options.AllowUnversioned)
        {
            settings[Settings.AllowUnversioned] = "true";
        }
        if (options.Proxy is { } proxy)
        {
            settings[Settings.Proxy] = proxy.AbsoluteUri;
        }
        if (options.TrustedCertificatesPath is { } ca)
        {
            settings[Settings.TrustedCertificates] = Path.GetFullPath(ca);
        }
        options.Retry.WriteTo(settings);
        return new PageStoreDescriptor(Kind, settings);
    }

    private static bool Boolean(PageStoreContext context, string key) => context.Get(key, "false") switch
    {
        "true" => true,
        "false" => false,
        var other => throw new PageStoreException(PageStoreError.Configuration, $"the http store's '{key}' setting is '{other}', not true or false"),
    };

    /// <summary>Builds the store from a descriptor's settings (inside the pager).</summary>
    public static HttpPageStore Create(PageStoreContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        string text = context.Require(Settings.Url);
        if (!Uri.TryCreate(text, UriKind.Absolute, out var url))
        {
            throw new PageStoreException(PageStoreError.Configuration, $"the http store's url '{text}' is not an absolute URL");
        }
        var options = new HttpStoreOptions
        {
            MaxConnections = (int)context.GetInt64(Settings.MaxConnections, HttpStoreOptions.DefaultMaxConnections, min: 1, max: 1024),
            MaxRequestBytes = (int)context.GetInt64(Settings.MaxRequestBytes, HttpStoreOptions.DefaultMaxRequestBytes, min: 4096, max: 1 << 30),
            Retry = NetworkRetry.From(context),
            TrustedCertificatesPath = context.Settings.TryGetValue(Settings.TrustedCertificates, out var ca) ? ca : null,
            Proxy = context.Settings.TryGetValue(Settings.Proxy, out var proxy)
                ? Uri.TryCreate(proxy, UriKind.Absolute, out var proxyUrl) ? proxyUrl
                    : throw new PageStoreException(PageStoreError.Configuration, $"the http store's proxy '{proxy}' is not an absolute URL")
                : null,
            Http2 = Boolean(context, Settings.Http2),
            AllowUnversioned = Boolean(context, Settings.AllowUnversioned),
            Headers = context.Settings.Where(s => s.Key.StartsWith(Settings.HeaderPrefix, StringComparison.Ordinal))
                .ToDictionary(s => s.Key[Settings.HeaderPrefix.Length..], s => s.Value, StringComparer.OrdinalIgnoreCase),
        };
        return new HttpPageStore(url, options);
    }

    /// <inheritdoc />
    public override long Length => _length;

    /// <summary>The HTTP version the server answered the opening request with (2.0 where TLS negotiated HTTP/2).</summary>
    public Version ProtocolVersion { get; private set; } = HttpVersion.Version11;

    /// <summary>Where range requests go: the URL the store was opened with, or where it redirected to.</summary>
    public Uri ResolvedUrl => Volatile.Read(ref _target) ?? _url;

    /// <summary>The URL a request ended at, if redirects took it away from <see cref="_url"/>.</summary>
    private Uri? Redirected(Uri? final) => final is not null && final != _url ? final : null;

    /// <summary>The strong ETag the object is pinned by, if the server sent one.</summary>
    public string? ETag => _etag?.ToString();

    /// <summary>The Last-Modified date the object is pinned by when it has no strong ETag.</summary>
    public DateTimeOffset? LastModified => _lastModified;

    /// <inheritdoc />
    protected override string MetricsKind => "http";

    /// <inheritdoc />
    protected override string ReadOnlyReason => "HTTP objects are read with range requests; there is no write-back to a URL";

    private HttpRequestMessage NewRequest(long start, long length, bool pinned, Uri? target = null)
    {
        // A request made by hand is HTTP/1.1 unless told (HttpClient.DefaultRequestVersion only applies to its own
        // helpers): with Http2, ask for HTTP/2, which TLS's ALPN grants where the server offers it, else 1.1.
        var request = new HttpRequestMessage(HttpMethod.Get, target ?? _url)
        {
            Version = _http2 ? HttpVersion.Version20 : HttpVersion.Version11,
            VersionPolicy = HttpVersionPolicy.RequestVersionOrLower,
        };
        request.Headers.Range = new RangeHeaderValue(start, start + length - 1);
        request.Headers.AcceptEncoding.Add(new StringWithQualityHeaderValue("identity"));
        foreach (var (name, value) in _headers)
        {
            if (target is not null && name.Equals("Authorization", StringComparison.OrdinalIgnoreCase))
            {
                continue; // the credential is for the original server; HttpClient drops it on a redirect too
            }
            if (!request.Headers.TryAddWithoutValidation(name, value))
            {
                throw new PageStoreException(PageStoreError.Configuration, $"{Description}: '{name}' cannot be sent as a request header");
            }
        }
        if (pinned)
        {
            if (_etag is not null)
            {
                request.Headers.IfMatch.Add(_etag);
            }
            else if (_lastModified is { } lm)
            {
                request.Headers.IfUnmodifiedSince = lm;
            }
        }
        return request;
    }

    private (long Length, EntityTagHeaderValue? ETag, DateTimeOffset? LastModified, Uri? Final) Probe()
    {
        for (int attempt = 1; ; attempt++)
        {
            Exception failure;
            try
            {
                using var cancellation = new CancellationTokenSource(Retry.AttemptTimeout);
                using var request = NewRequest(0, 1, pinned: false);
                // SocketsHttpHandler has no synchronous send for HTTP/2: then asynchronous underneath.
                using var response = _http2
                    ? _client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellation.Token).GetAwaiter().GetResult()
                    : _client.Send(request, HttpCompletionOption.ResponseHeadersRead, cancellation.Token);
                var etag = response.Headers.ETag is { IsWeak: false } strong ? strong : null;
                var lastModified = response.Content.Headers.LastModified;
                var final = response.RequestMessage?.RequestUri;
                ProtocolVersion = response.Version;
                switch (response.StatusCode)
                {
                    case HttpStatusCode.PartialContent:
                        CheckEncoding(response);
                        if (response.Content.Headers.ContentRange is not { HasLength: true, From: 0, To: 0, Length: long total })
                        {
                            throw new PageStoreException(PageStoreError.Configuration,
                                $"{Description}: the answer to bytes=0-0 has Content-Range '{response.Content.Headers.ContentRange}', not 'bytes 0-0/<length>'");
                        }
                        return (total, etag, lastModified, final);
                    case HttpStatusCode.RequestedRangeNotSatisfiable:
                        // Only an empty object has no byte 0: 'Content-Range: bytes */0'.
                        if (response.Content.Headers.ContentRange is { HasLength: true, Length: 0 })
                        {
                            return (0, etag, lastModified, final);
                        }
                        throw new PageStoreException(PageStoreError.Configuration, $"{Description}: the server refused bytes=0-0 (416) for an object that is not empty");
                    case HttpStatusCode.OK:
                        if (response.Content.Headers.ContentLength == 0)
                        {
                            return (0, etag, lastModified, final);
                        }
                        throw new PageStoreException(PageStoreError.Configuration,
                            $"{Description}: the server ignores Range requests (200 with the whole body for bytes=0-0); Paging reads pages with range requests and needs a server that answers them with 206 (Accept-Ranges: bytes)");
                    default:
                        failure = StatusError(response, "opening the object");
                        if (failure is PageStoreException { IsTransient: false })
                        {
                            throw failure;
                        }
                        break;
                }
            }
            catch (OperationCanceledException e)
            {
                failure = new PageStoreException(PageStoreError.Io, $"{Description}: no answer within {Retry.AttemptTimeout.TotalMilliseconds:0} ms", e);
            }
            catch (HttpRequestException e) when (e.InnerException is AuthenticationException tls)
            {
                // Not transient: the same certificate fails every attempt.
                throw new PageStoreException(PageStoreError.Configuration,
                    $"{Description}: the TLS handshake failed ({tls.Message}); the server's certificate is not trusted or does not name the host — " +
                    "for a private CA or a self-signed server set HttpStoreOptions.TrustedCertificatesPath to its PEM file", e);
            }
            catch (HttpRequestException e)
            {
                failure = new PageStoreException(PageStoreError.Io, $"{Description}: {e.Message}", e);
            }
            if (attempt >= Retry.Attempts)
            {
                throw new PageStoreException(PageStoreError.Io, $"{Description}: could not open the object after {attempt} attempt(s); last: {failure.Message}", failure);
            }
            Thread.Sleep(Retry.Delay(attempt, (failure as PageStoreException)?.RetryAfter));
        }
    }

    private void CheckEncoding(HttpResponseMessage response)
    {
        foreach (var encoding in response.Content.Headers.ContentEncoding)
        {
            if (!encoding.Equals("identity", StringComparison.OrdinalIgnoreCase))
            {
                throw new PageStoreException(PageStoreError.Configuration,
                    $"{Description}: the server sent the body with Content-Encoding '{encoding}' although identity was asked; byte ranges of an encoded body are not the object's bytes");
            }
        }
    }

    private PageStoreException StatusError(HttpResponseMessage response, string what)
    {
        var status = response.StatusCode;
        int code = (int)status;
        var error = status switch
        {
            HttpStatusCode.NotFound or HttpStatusCode.Gone => new PageStoreException(PageStoreError.Configuration, $"{Description}: not found ({code}) {what}"),
            HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden => new PageStoreException(PageStoreError.Configuration,
                $"{Description}: access denied ({code}) {what}; set the credentials the server expects as a request header (HttpStoreOptions.Headers, e.g. Authorization)"),
            HttpStatusCode.PreconditionFailed => new PageStoreException(PageStoreError.Changed,
                $"{Description}: the object changed since it was opened (412 to If-Match {ETag ?? LastModified?.ToString("R", CultureInfo.InvariantCulture)}) {what}"),
            HttpStatusCode.RequestedRangeNotSatisfiable => new PageStoreException(PageStoreError.Changed,
                $"{Description}: the object is shorter than the {_length} bytes it had when it was opened (416) {what}"),
            HttpStatusCode.RequestTimeout or HttpStatusCode.TooManyRequests => new PageStoreException(PageStoreError.Io, $"{Description}: {code} {status} {what}"),
            _ when code >= 500 => new PageStoreException(PageStoreError.Io, $"{Description}: server error {code} {what}"),
            _ => new PageStoreException(PageStoreError.Configuration, $"{Description}: unexpected status {code} {status} {what}"),
        };
        return error.IsTransient && RetryAfter(response) is { } wait
            ? new PageStoreException(error.Error, $"{error.Message} (Retry-After {wait.TotalSeconds:0.###} s)") { RetryAfter = wait }
            : error;
    }

    /// <summary>The server's Retry-After (seconds, or a date), if it sent one that parses.</summary>
    private static TimeSpan? RetryAfter(HttpResponseMessage response) => response.Headers.RetryAfter switch
    {
        { Delta: { } delta } => delta,
        { Date: { } date } => date - DateTimeOffset.UtcNow is var wait && wait > TimeSpan.Zero ? wait : TimeSpan.Zero,
        _ => null,
    };

    /// <inheritdoc />
    protected override async ValueTask<RangeBody> OpenRangeAsync(long start, long length, CancellationToken cancellationToken)
    {
        var target = Volatile.Read(ref _target);
        var request = NewRequest(start, length, pinned: true, target);
        HttpResponseMessage? response = null;
        try
        {
            response = await _client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken).ConfigureAwait(false);
            if (target is not null && response.StatusCode is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden or HttpStatusCode.NotFound or HttpStatusCode.Gone)
            {
                // Where the URL redirected to stopped answering (a pre-signed URL expired): through the original URL
                // again, which redirects to a fresh one; later requests go there.
                response.Dispose();
                response = null;
                request.Dispose();
                request = NewRequest(start, length, pinned: true);
                response = await _client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken).ConfigureAwait(false);
                if (response.IsSuccessStatusCode)
                {
                    Volatile.Write(ref _target, Redirected(response.RequestMessage?.RequestUri));
                }
            }
            string what = $"reading bytes {start}-{start + length - 1}";
            if (response.StatusCode == HttpStatusCode.OK)
            {
                throw new PageStoreException(PageStoreError.Changed,
                    $"{Description}: the server answered a range request with 200 (the whole body) {what}; it answered ranges when the store opened the object");
            }
            if (response.StatusCode != HttpStatusCode.PartialContent)
            {
                throw StatusError(response, what);
            }
            CheckEncoding(response);
            var range = response.Content.Headers.ContentRange;
            // The same start and no further than asked; a shorter range is allowed (RangedObjectStore asks for the
            // rest): some servers and CDNs cap the bytes of one response.
            if (range is not { HasRange: true, HasLength: true, From: long from, To: long to } || from != start || to < start || to > start + length - 1)
            {
                throw new PageStoreException(PageStoreError.Changed, $"{Description}: asked for bytes {start}-{start + length - 1}, got Content-Range '{range}'");
            }
            long carried = to - start + 1;
            if (range.Length != _length)
            {
                throw new PageStoreException(PageStoreError.Changed, $"{Description}: the object is now {range.Length} bytes long, {_length} when it was opened");
            }
            if (_etag is not null && !Equals(response.Headers.ETag, _etag))
            {
                throw new PageStoreException(PageStoreError.Changed, $"{Description}: the object changed since it was opened (ETag {response.Headers.ETag?.ToString() ?? "missing"}, pinned {_etag})");
            }
            if (_etag is null && _lastModified is { } pinned && response.Content.Headers.LastModified is { } now && now != pinned)
            {
                throw new PageStoreException(PageStoreError.Changed, $"{Description}: the object changed since it was opened (Last-Modified {now:R}, pinned {pinned:R})");
            }
            if (response.Content.Headers.ContentLength is { } contentLength && contentLength != carried)
            {
                throw new PageStoreException(PageStoreError.Changed, $"{Description}: Content-Length {contentLength} for a range of {carried} bytes");
            }
            var stream = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
            var body = new RangeBody(stream, new Owner(request, response), carried);
            response = null;
            request = null;
            return body;
        }
        finally
        {
            response?.Dispose();
            request?.Dispose();
        }
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _client.Dispose();
        }
        base.Dispose(disposing);
    }

    private sealed class Owner(HttpRequestMessage request, HttpResponseMessage response) : IDisposable
    {
        public void Dispose()
        {
            response.Dispose();
            request.Dispose();
        }
    }
}

/// <summary>Options of <see cref="HttpPageStore"/>.</summary>
public sealed record HttpStoreOptions
{
    /// <summary>32 connections: one per fill thread of the pager's default (32), so a fill never queues for a
    /// connection behind another.</summary>
    public const int DefaultMaxConnections = 32;

    /// <summary>4 MiB: large enough that a coalesced read-ahead window is one request, small enough that a retry
    /// repeats little.</summary>
    public const int DefaultMaxRequestBytes = 4 << 20;

    /// <summary>Request headers sent with every request (authentication: <c>Authorization</c>, a CDN token …).</summary>
    public IReadOnlyDictionary<string, string> Headers { get; init; } = new Dictionary<string, string>();

    /// <summary>Connections per server.</summary>
    public int MaxConnections { get; init; } = DefaultMaxConnections;

    /// <summary>The largest coalesced request.</summary>
    public int MaxRequestBytes { get; init; } = DefaultMaxRequestBytes;

    /// <summary>Retries and per-attempt timeout.</summary>
    public NetworkRetry Retry { get; init; } = NetworkRetry.Default;

    /// <summary>The proxy every request goes through (http://host:port); null: the pager's environment decides
    /// (<c>http_proxy</c>, <c>https_proxy</c>, <c>all_proxy</c>, <c>no_proxy</c> — inherited from the application), as for curl.</summary>
    public Uri? Proxy { get; init; }

    /// <summary>Offer HTTP/2 to TLS servers (ALPN; plain http:// stays HTTP/1.1). Off by default: over TLS from nginx
    /// on loopback, 8 × 4 MiB range requests in flight read 0.58–0.77 GB/s on HTTP/1.1 connections against 0.37–0.43
    /// on one HTTP/2 connection, and random 4 KiB reads 16 at a time were the same (22.0–22.5k against 22.6–22.7k/s),
    /// so bulk loads go faster on a pool of HTTP/1.1 connections (docs/NETWORK-STORES.md).</summary>
    public bool Http2 { get; init; }

    /// <summary>A PEM file of certificates to trust as the roots of the server's TLS certificate <i>instead of</i> the
    /// system's (a private CA, or a self-signed server certificate itself); null: the system's trust store. The host
    /// name is checked either way. Read by the pager when the store opens.</summary>
    public string? TrustedCertificatesPath { get; init; }

    /// <summary>Read an object whose server sends neither a strong <c>ETag</c> nor <c>Last-Modified</c> (a dynamic
    /// endpoint, a weak ETag only). Off by default: the store then has nothing to pin but the object's length, and a
    /// new version of the same length would be read beside pages of the old one, so opening such an object fails with
    /// a <see cref="PageStoreError.Configuration"/> error that says so. Set it for objects known not to change while
    /// they are mapped.</summary>
    public bool AllowUnversioned { get; init; }
}
