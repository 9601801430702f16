using System.Globalization;
using System.Net;
using Amazon.Runtime;
using Amazon.S3;
using Amazon.S3.Model;
using Paging.Stores;

namespace Paging.Backends.Network.S3;

/// <summary>
/// Pages of one S3 object, read with ranged <c>GetObject</c> requests (AWSSDK.S3). The object's length and ETag are
/// read when the store opens (<c>HeadObject</c>); every ranged GET carries <c>If-Match</c> with that ETag and its
/// <c>Content-Range</c> must name the same length, so a replaced object is <see cref="PageStoreError.Changed"/>,
/// never mixed bytes. Endpoint, region and credentials come from the descriptor when given, else from the usual AWS
/// settings (environment variables, profile, instance role) of the pager process, which inherits the application's
/// environment. <see cref="S3StoreOptions.ForcePathStyle"/> (default on with an explicit endpoint) suits S3-compatible
/// servers. The SDK's own retries are off: <see cref="NetworkRetry"/> retries, once.
/// <para>Read-only: S3 objects are immutable and written whole, so in-place write-back needs a segment/manifest scheme
/// (dirty pages appended as new objects, a manifest naming the newest segment of each page), which belongs with the
/// write-back of the memory-budget work and is not built.</para>
/// </summary>
public sealed class S3PageStore : RangedObjectStore
{
    /// <summary>The store kind on the wire.</summary>
    public const string Kind = "s3";

    /// <summary>The setting keys.</summary>
    public static class Settings
    {
        /// <summary>The bucket.</summary>
        public const string Bucket = "bucket";

        /// <summary>The object key.</summary>
        public const string Key = "key";

        /// <summary>An endpoint URL for S3-compatible servers (http://127.0.0.1:4568); absent = AWS.</summary>
        public const string Endpoint = "endpoint";

        /// <summary>The region (us-east-1 …); absent = the AWS settings' region.</summary>
        public const string Region = "region";

        /// <summary>"true" for path-style addressing (http://host/bucket/key).</summary>
        public const string ForcePathStyle = "path_style";

        /// <summary>Access key id; with <see cref="SecretKey"/>, replaces the AWS settings' credentials.</summary>
        public const string AccessKey = "access_key";

        /// <summary>Secret access key.</summary>
        public const string SecretKey = "secret_key";

        /// <summary>Session token of temporary credentials.</summary>
        public const string SessionToken = "session_token";

        /// <summary>Connections per server.</summary>
        public const string MaxConnections = "max_connections";

        /// <summary>The largest coalesced request in bytes.</summary>
        public const string MaxRequestBytes = "max_request_bytes";
    }

    private readonly AmazonS3Client _client;
    private readonly string _bucket;
    private readonly string _key;
    private readonly string _etag;
    private readonly long _length;

    /// <summary>Opens s3://<paramref name="bucket"/>/<paramref name="key"/>. Throws <see cref="PageStoreException"/>:
    /// Configuration (no such bucket or key, access denied), Io (the server failed every attempt).</summary>
    public S3PageStore(string bucket, string key, S3StoreOptions? options = null)
        : base($"s3://{bucket}/{key}", (options ?? new()).Retry, (options ?? new()).MaxRequestBytes)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(bucket);
        ArgumentException.ThrowIfNullOrWhiteSpace(key);
        options ??= new();
        _bucket = bucket;
        _key = key;
        var config = new AmazonS3Config
        {
            MaxErrorRetry = 0,
            Timeout = options.Retry.AttemptTimeout,
            MaxConnectionsPerServer = options.MaxConnections,
            // Ranged GETs carry no whole-object checksum to validate; the pinned ETag and Content-Range are checked.
            ResponseChecksumValidation = ResponseChecksumValidation.WHEN_REQUIRED,
        };
        if (options.Endpoint is { } endpoint)
        {
            config.ServiceURL = endpoint.AbsoluteUri;
            config.ForcePathStyle = options.ForcePathStyle ?? true;
            config.AuthenticationRegion = options.Region ?? "us-east-1";
        }
        else
        {
            config.ForcePathStyle = options.ForcePathStyle ?? false;
            if (options.Region is { } region)
            {
                config.RegionEndpoint = Amazon.RegionEndpoint.GetBySystemName(region);
            }
        }
        try
        {
            _client = options.AccessKey is { } access && options.SecretKey is { } secret
                ? new AmazonS3Client(options.SessionToken is { } token ? new SessionAWSCredentials(access, secret, token) : new BasicAWSCredentials(access, secret), config)
                : new AmazonS3Client(config);
        }
        catch (AmazonClientException e)
        {
            throw new PageStoreException(PageStoreError.Configuration, $"{Description}: {e.Message} (set the credentials and region in S3StoreOptions or the AWS settings)", e);
        }
        try
        {
            (_length, _etag) = Probe();
        }
        catch
        {
            _client.Dispose();
            throw;
        }
    }

    /// <summary>Describes s3://<paramref name="bucket"/>/<paramref name="key"/>.</summary>
    public static PageStoreDescriptor Describe(string bucket, string key, S3StoreOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(bucket);
        ArgumentException.ThrowIfNullOrWhiteSpace(key);
        options ??= new();
        var settings = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            [Settings.Bucket] = bucket,
            [Settings.Key] = key,
            [Settings.MaxConnections] = options.MaxConnections.ToString(CultureInfo.InvariantCulture),
            [Settings.MaxRequestBytes] = options.MaxRequestBytes.ToString(CultureInfo.InvariantCulture),
        };
        void Set(string name, string? value)
        {
            if (value is not null)
            {
                settings[name] = value;
            }
        }
        Set(Settings.Endpoint, options.Endpoint?.AbsoluteUri);
        Set(Settings.Region, options.Region);
        Set(Settings.ForcePathStyle, options.ForcePathStyle switch { true => "true", false => "false", null => null });
        Set(Settings.AccessKey, options.AccessKey);
        Set(Settings.SecretKey, options.SecretKey);
        Set(Settings.SessionToken, options.SessionToken);
        options.Retry.WriteTo(settings);
        return new PageStoreDescriptor(Kind, settings);
    }

    /// <summary>Builds the store from a descriptor's settings (inside the pager).</summary>
    public static S3PageStore Create(PageStoreContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        Uri? endpoint = null;
        if (context.Settings.TryGetValue(Settings.Endpoint, out var text) && !Uri.TryCreate(text, UriKind.Absolute, out endpoint))
        {
            throw new PageStoreException(PageStoreError.Configuration, $"the s3 store's endpoint '{text}' is not an absolute URL");
        }
        string? Get(string name) => context.Settings.TryGetValue(name, out var v) ? v : null;
        var options = new S3StoreOptions
        {
            Endpoint = endpoint,
            Region = Get(Settings.Region),
            ForcePathStyle = context.Settings.ContainsKey(Settings.ForcePathStyle) ? context.GetBoolean(Settings.ForcePathStyle, false) : null,
            AccessKey = Get(Settings.AccessKey),
            SecretKey = Get(Settings.SecretKey),
            SessionToken = Get(Settings.SessionToken),
            MaxConnections = (int)context.GetInt64(Settings.MaxConnections, S3StoreOptions.DefaultMaxConnections, min: 1, max: 1024),
            MaxRequestBytes = (int)context.GetInt64(Settings.MaxRequestBytes, S3StoreOptions.DefaultMaxRequestBytes, min: 4096, max: 1 << 30),
            Retry = NetworkRetry.From(context),
        };
        return new S3PageStore(context.Require(Settings.Bucket), context.Require(Settings.Key), options);
    }

    /// <inheritdoc />
    public override long Length => _length;

    /// <summary>The ETag the object is pinned by.</summary>
    public string ETag => _etag;

    /// <inheritdoc />
    protected override string MetricsKind => "s3";

    /// <inheritdoc />
    protected override string ReadOnlyReason =>
        "S3 objects are immutable; write-back would need a segment/manifest scheme, which is not built (see S3PageStore)";

    private (long Length, string ETag) Probe()
    {
        for (int attempt = 1; ; attempt++)
        {
            Exception failure;
            try
            {
                using var cancellation = new CancellationTokenSource(Retry.AttemptTimeout);
                var head = _client.GetObjectMetadataAsync(new GetObjectMetadataRequest { BucketName = _bucket, Key = _key }, cancellation.Token)
                    .GetAwaiter().GetResult();
                if (string.IsNullOrEmpty(head.ETag))
                {
                    throw new PageStoreException(PageStoreError.Configuration, $"{Description}: the server sent no ETag; the store cannot pin the object's version");
                }
                return (head.ContentLength, head.ETag);
            }
            catch (AmazonS3Exception e)
            {
                failure = Classify(e, "opening the object");
                if (failure is PageStoreException { IsTransient: false })
                {
                    throw failure;
                }
            }
            catch (Exception e) when (e is OperationCanceledException or HttpRequestException or IOException or AmazonClientException)
            {
                failure = new PageStoreException(PageStoreError.Io, $"{Description}: {e.Message}", e);
            }
            if (attempt >= Retry.Attempts)
            {
                throw new PageStoreException(PageStoreError.Io, $"{Description}: could not open the object after {attempt} attempt(s); last: {failure.Message}", failure);
            }
            Thread.Sleep(Retry.Backoff(attempt));
        }
    }

    private PageStoreException Classify(AmazonServiceException e, string what)
    {
        int code = (int)e.StatusCode;
        return e.StatusCode switch
        {
            HttpStatusCode.NotFound => new PageStoreException(PageStoreError.Configuration, $"{Description}: no such bucket or key ({e.ErrorCode ?? "404"}) {what}", e),
            HttpStatusCode.Forbidden or HttpStatusCode.Unauthorized => new PageStoreException(PageStoreError.Configuration,
                $"{Description}: access denied ({e.ErrorCode ?? code.ToString(CultureInfo.InvariantCulture)}) {what}; check the credentials (S3StoreOptions or the AWS settings)", e),
            HttpStatusCode.PreconditionFailed => new PageStoreException(PageStoreError.Changed, $"{Description}: the object changed since it was opened (If-Match {_etag} failed) {what}", e),
            HttpStatusCode.RequestedRangeNotSatisfiable => new PageStoreException(PageStoreError.Changed, $"{Description}: the object is shorter than the {_length} bytes it had when it was opened {what}", e),
            _ when code >= 500 || code == 429 || code == 408 || code == 0 => new PageStoreException(PageStoreError.Io, $"{Description}: {code} {e.ErrorCode} {e.Message} {what}", e),
            _ => new PageStoreException(PageStoreError.Configuration, $"{Description}: {code} {e.ErrorCode} {e.Message} {what}", e),
        };
    }

    /// <inheritdoc />
    protected override async ValueTask<RangeBody> OpenRangeAsync(long start, long length, CancellationToken cancellationToken)
    {
        string what = $"reading bytes {start}-{start + length - 1}";
        GetObjectResponse response;
        try
        {
            response = await _client.GetObjectAsync(new GetObjectRequest
            {
                BucketName = _bucket,
                Key = _key,
                ByteRange = new ByteRange(start, start + length - 1),
                EtagToMatch = _etag,
            }, cancellationToken).ConfigureAwait(false);
        }
        catch (AmazonServiceException e)
        {
            throw Classify(e, what);
        }
        catch (AmazonClientException e)
        {
            throw new PageStoreException(PageStoreError.Io, $"{Description}: {e.Message} {what}", e);
        }
        try
        {
            string expected = $"bytes {start}-{start + length - 1}/{_length}";
            if (response.HttpStatusCode != HttpStatusCode.PartialContent || !string.Equals(response.ContentRange, expected, StringComparison.Ordinal))
            {
                throw new PageStoreException(PageStoreError.Changed,
                    $"{Description}: asked for {expected}, got {(int)response.HttpStatusCode} with Content-Range '{response.ContentRange}'");
            }
            if (!string.Equals(response.ETag, _etag, StringComparison.Ordinal))
            {
                throw new PageStoreException(PageStoreError.Changed, $"{Description}: the object changed since it was opened (ETag {response.ETag}, pinned {_etag})");
            }
            if (response.ContentLength != length)
            {
                throw new PageStoreException(PageStoreError.Changed, $"{Description}: Content-Length {response.ContentLength} for a range of {length} bytes");
            }
            return new RangeBody(response.ResponseStream, response, length);
        }
        catch
        {
            response.Dispose();
            throw;
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
}

/// <summary>Options of <see cref="S3PageStore"/>.</summary>
public sealed record S3StoreOptions
{
    /// <summary>32 connections: one per fill thread of the pager's default.</summary>
    public const int DefaultMaxConnections = 32;

    /// <summary>4 MiB per coalesced request (as the HTTP store).</summary>
    public const int DefaultMaxRequestBytes = 4 << 20;

    /// <summary>An S3-compatible server's endpoint; null = AWS.</summary>
    public Uri? Endpoint { get; init; }

    /// <summary>The region; null = the AWS settings' (us-east-1 with an explicit endpoint).</summary>
    public string? Region { get; init; }

    /// <summary>Path-style addressing; null = on with an explicit endpoint, off for AWS.</summary>
    public bool? ForcePathStyle { get; init; }

    /// <summary>Access key id; null = the AWS settings' credentials.</summary>
    public string? AccessKey { get; init; }

    /// <summary>Secret access key.</summary>
    public string? SecretKey { get; init; }

    /// <summary>Session token of temporary credentials.</summary>
    public string? SessionToken { get; init; }

    /// <summary>Connections per server.</summary>
    public int MaxConnections { get; init; } = DefaultMaxConnections;

    /// <summary>The largest coalesced request.</summary>
    public int MaxRequestBytes { get; init; } = DefaultMaxRequestBytes;

    /// <summary>Retries and per-attempt timeout.</summary>
    public NetworkRetry Retry { get; init; } = NetworkRetry.Default;
}
