using System.Diagnostics;
using Amazon.Runtime;
using Amazon.S3;
using Amazon.S3.Model;
using Paging.Backends.Network;
using Paging.Backends.Network.Http;
using Paging.Backends.Network.S3;
using Paging.Testing;
using Paging.Testing.Servers;

namespace Paging.Backends.Tests;

/// <summary>A real nginx on loopback serving the contract's content (and the fault proxy's upstream).</summary>
public sealed class NginxFixture : IDisposable
{
    public NginxFixture()
    {
        Server = NginxServer.Start();
        Content = TestData.CreateFile(PageStoreContractLength, seed: 21, directory: Server.Root, name: "content.bin");
        Directory.CreateDirectory(Path.Combine(Server.Root, "private"));
        Private = TestData.CreateFile(1 << 16, seed: 22, directory: Path.Combine(Server.Root, "private"), name: "secret.bin");
        File.WriteAllBytes(Path.Combine(Server.Root, "forbidden.bin"), new byte[4096]);
        using var input = File.OpenRead(Content.Path);
        using var output = File.Create(Path.Combine(Server.Root, "content.pgz"));
        Paging.Backends.Compression.PackWriter.Pack(input, output, Paging.Backends.Compression.PageCodecKind.Zstd, 3, 16384);
    }

    /// <summary>The contract's content length (1 MiB + 3 KiB).</summary>
    public const long PageStoreContractLength = (1 << 20) + 3072;

    public NginxServer Server { get; }

    public TempFile Content { get; }

    public TempFile Private { get; }

    public void Dispose() => Server.Dispose();
}

/// <summary>A real S3-compatible server (s3rver) with the contract's content as an object.</summary>
public sealed class S3Fixture : IDisposable
{
    public S3Fixture()
    {
        Server = S3rverServer.Start();
        Content = TestData.CreateFile(NginxFixture.PageStoreContractLength, seed: 23);
        using var client = Client();
        client.PutObjectAsync(Put(Server.Bucket, "data/content.bin", Content.Path)).GetAwaiter().GetResult();
    }

    public S3rverServer Server { get; }

    public TempFile Content { get; }

    public S3StoreOptions Options => new()
    {
        Endpoint = Server.Endpoint,
        AccessKey = S3rverServer.AccessKey,
        SecretKey = S3rverServer.SecretKey,
    };

    public AmazonS3Client Client() => new(new BasicAWSCredentials(S3rverServer.AccessKey, S3rverServer.SecretKey),
        new AmazonS3Config
        {
            ServiceURL = Server.Endpoint.AbsoluteUri,
            ForcePathStyle = true,
            AuthenticationRegion = "us-east-1",
            // s3rver 3.7 predates the SDK's default aws-chunked uploads with trailing checksums and would store the
            // chunk framing as the object's bytes.
            RequestChecksumCalculation = RequestChecksumCalculation.WHEN_REQUIRED,
        });

    public static PutObjectRequest Put(string bucket, string key, string path) =>
        new() { BucketName = bucket, Key = key, FilePath = path, UseChunkEncoding = false };

    public void Dispose()
    {
        Server.Dispose();
        Content.Dispose();
    }
}

public sealed class HttpStoreContract(NginxFixture nginx) : PageStoreContract, IClassFixture<NginxFixture>
{
    protected override bool SupportsWrite => false;

    protected override IPageStore CreateStore(bool writable, out Func<long, byte> expected)
    {
        expected = TestStores.Expected(nginx.Content);
        return new HttpPageStore(nginx.Server.UrlOf("content.bin"));
    }
}

/// <summary>The contract over HTTPS with HTTP/2 (nginx with a self-signed certificate the store is told to trust).</summary>
public sealed class HttpsStoreContract(NginxFixture nginx) : PageStoreContract, IClassFixture<NginxFixture>
{
    protected override bool SupportsWrite => false;

    protected override IPageStore CreateStore(bool writable, out Func<long, byte> expected)
    {
        expected = TestStores.Expected(nginx.Content);
        return new HttpPageStore(nginx.Server.HttpsUrlOf("content.bin"), new HttpStoreOptions { TrustedCertificatesPath = nginx.Server.CertificatePath });
    }
}

public sealed class S3StoreContract(S3Fixture s3) : PageStoreContract, IClassFixture<S3Fixture>
{
    protected override bool SupportsWrite => false;

    protected override IPageStore CreateStore(bool writable, out Func<long, byte> expected)
    {
        expected = TestStores.Expected(s3.Content);
        return new S3PageStore(s3.Server.Bucket, "data/content.bin", s3.Options);
    }
}

/// <summary>The HTTP store against nginx directly and through the fault-injecting proxy: every case is a clear error
/// or a correct retry — never a wrong byte, never a hang.</summary>
public sealed class HttpStoreTests(NginxFixture nginx) : IClassFixture<NginxFixture>
{
    private static readonly NetworkRetry Quick = new(4, TimeSpan.FromMilliseconds(5), TimeSpan.FromSeconds(5));

    private static void AssertContent(TempFile file, long offset, ReadOnlySpan<byte> bytes)
    {
        long mismatch = TestData.FirstMismatch(bytes, offset, file.Length, file.Seed);
        Assert.True(mismatch < 0, $"wrong byte {offset + mismatch}");
    }

    [Fact]
    public void OpeningPinsLengthAndETag()
    {
        using var store = new HttpPageStore(nginx.Server.UrlOf("content.bin"));
        Assert.Equal(nginx.Content.Length, store.Length);
        Assert.NotNull(store.ETag); // nginx sends strong ETags for static files
        Assert.Equal(PageStoreCapabilities.Asynchronous, store.Capabilities);
    }

    [Fact]
    public void NotFoundAndForbiddenAreClearConfigurationErrors()
    {
        var missing = Assert.Throws<PageStoreException>(() => new HttpPageStore(nginx.Server.UrlOf("nope.bin")));
        Assert.Equal(PageStoreError.Configuration, missing.Error);
        Assert.Contains("not found (404)", missing.Message);
        var forbidden = Assert.Throws<PageStoreException>(() => new HttpPageStore(nginx.Server.UrlOf("forbidden.bin")));
        Assert.Contains("access denied (403)", forbidden.Message);
        var noScheme = Assert.Throws<PageStoreException>(() => new HttpPageStore(new Uri("ftp://127.0.0.1/x")));
        Assert.Equal(PageStoreError.Configuration, noScheme.Error);
    }

    [Fact]
    public async Task AuthenticationHeadersAreSent()
    {
        var url = nginx.Server.UrlOf("private/secret.bin");
        var denied = Assert.Throws<PageStoreException>(() => new HttpPageStore(url));
        Assert.Contains("access denied (401)", denied.Message);
        using var store = new HttpPageStore(url, new HttpStoreOptions { Headers = new Dictionary<string, string> { ["Authorization"] = NginxServer.PrivateAuthorization } });
        var buffer = new byte[8192];
        Assert.Equal(PageReadStatus.Data, await store.ReadAsync(4096, buffer, CancellationToken.None));
        AssertContent(nginx.Private, 4096, buffer);
    }

    [Fact]
    public async Task AdjacentReadsOfABatchAreOneRequest()
    {
        using var store = new HttpPageStore(nginx.Server.UrlOf("content.bin"));
        var requests = Enumerable.Range(0, 16).Select(i => new PageReadRequest((15 - i) * 4096L, new byte[4096])).ToArray();
        long before = store.Requests;
        await store.ReadManyAsync(requests, new PageReadStatus[16], CancellationToken.None);
        Assert.Equal(1, store.Requests - before);
        foreach (var r in requests)
        {
            AssertContent(nginx.Content, r.Offset, r.Destination.Span);
        }
    }

    [Fact]
    public void AServerThatIgnoresRangeIsRefusedWhenOpened()
    {
        using var proxy = new FaultInjectingHttpProxy(nginx.Server.Port) { IgnoreRange = true };
        var e = Assert.Throws<PageStoreException>(() => new HttpPageStore(proxy.UrlOf("content.bin")));
        Assert.Equal(PageStoreError.Configuration, e.Error);
        Assert.Contains("ignores Range", e.Message);
    }

    [Fact]
    public async Task AServerThatStopsHonouringRangeIsAnErrorNotWrongBytes()
    {
        using var proxy = new FaultInjectingHttpProxy(nginx.Server.Port);
        using var store = new HttpPageStore(proxy.UrlOf("content.bin"), new HttpStoreOptions { Retry = Quick });
        proxy.IgnoreRange = true;
        var e = await Assert.ThrowsAsync<PageStoreException>(async () => await store.ReadAsync(8192, new byte[4096], CancellationToken.None));
        Assert.Equal(PageStoreError.Changed, e.Error);
    }

    [Fact]
    public async Task ServerErrorsAreRetried()
    {
        using var proxy = new FaultInjectingHttpProxy(nginx.Server.Port);
        using var store = new HttpPageStore(proxy.UrlOf("content.bin"), new HttpStoreOptions { Retry = Quick });
        using var meter = new NetworkMeterRecorder("http");
        proxy.FailNext(2);
        var buffer = new byte[65536];
        Assert.Equal(PageReadStatus.Data, await store.ReadAsync(65536, buffer, CancellationToken.None));
        AssertContent(nginx.Content, 65536, buffer);
        Assert.Equal(2, store.Retries);
        // What dotnet-counters shows of the pager (lower bounds: other tests' stores record on the same meter).
        Assert.True(meter["paging.network.retries"] >= 2, $"{meter["paging.network.retries"]} retries recorded");
        Assert.True(meter["paging.network.requests"] >= 3, $"{meter["paging.network.requests"]} requests recorded");
        Assert.True(meter["paging.network.bytes_fetched"] >= 65536, $"{meter["paging.network.bytes_fetched"]} bytes recorded");
    }

    [Fact]
    public async Task RetryAfterIsHonouredUpToTheAttemptTimeout()
    {
        using var proxy = new FaultInjectingHttpProxy(nginx.Server.Port) { RetryAfterSeconds = 1 };
        using var store = new HttpPageStore(proxy.UrlOf("content.bin"), new HttpStoreOptions { Retry = Quick }); // backoff ≤ 5 ms
        var buffer = new byte[4096];
        proxy.FailNext(1);
        var watch = Stopwatch.StartNew();
        Assert.Equal(PageReadStatus.Data, await store.ReadAsync(4096, buffer, CancellationToken.None));
        Assert.True(watch.Elapsed >= TimeSpan.FromMilliseconds(950), $"retried after {watch.ElapsedMilliseconds} ms, asked to wait 1 s");
        AssertContent(nginx.Content, 4096, buffer);
        Assert.Equal(1, store.Retries);

        // An hour is not waited: at most the attempt timeout (1 s here) before the next attempt.
        using var impatient = new HttpPageStore(proxy.UrlOf("content.bin"), new HttpStoreOptions { Retry = new(4, TimeSpan.FromMilliseconds(5), TimeSpan.FromSeconds(1)) });
        proxy.RetryAfterSeconds = 3600;
        proxy.FailNext(1);
        watch.Restart();
        Assert.Equal(PageReadStatus.Data, await impatient.ReadAsync(8192, buffer, CancellationToken.None));
        Assert.True(watch.Elapsed >= TimeSpan.FromMilliseconds(950) && watch.Elapsed < TimeSpan.FromSeconds(10), $"{watch.ElapsedMilliseconds} ms");
        AssertContent(nginx.Content, 8192, buffer);
    }

    [Fact]
    public async Task AServerThatAlwaysFailsIsAnIoErrorAfterTheRetries()
    {
        using var proxy = new FaultInjectingHttpProxy(nginx.Server.Port);
        using var store = new HttpPageStore(proxy.UrlOf("content.bin"), new HttpStoreOptions { Retry = Quick });
        using var meter = new NetworkMeterRecorder("http");
        proxy.ServerErrorRate = 1;
        var e = await Assert.ThrowsAsync<PageStoreException>(async () => await store.ReadAsync(0, new byte[4096], CancellationToken.None));
        Assert.Equal(PageStoreError.Io, e.Error);
        Assert.Contains("failed 4 time(s)", e.Message);
        Assert.True(meter["paging.network.failures"] >= 1, "the failed read was not recorded");
        Assert.Contains("503", e.Message);
    }

    [Fact]
    public async Task AHangingServerTimesOutInsteadOfHanging()
    {
        using var proxy = new FaultInjectingHttpProxy(nginx.Server.Port);
        // 1 s per attempt, 4 attempts: the store's opening goes through the same in-process proxy, which a loaded
        // machine (the whole solution's tests at once) has been seen to slow past 300 ms, and once past 1 s twice in a
        // row (a CI run with another test process thrashing huge pages beside it).
        using var store = new HttpPageStore(proxy.UrlOf("content.bin"), new HttpStoreOptions { Retry = new(4, TimeSpan.Zero, TimeSpan.FromSeconds(1)) });
        proxy.Hang = true;
        var watch = Stopwatch.StartNew();
        var e = await Assert.ThrowsAsync<PageStoreException>(async () => await store.ReadAsync(0, new byte[4096], CancellationToken.None));
        Assert.True(e.Error == PageStoreError.Io && e.Message.Contains("took longer than 1000 ms", StringComparison.Ordinal), $"{e.Error}: {e.Message}");
        Assert.True(watch.Elapsed > TimeSpan.FromMilliseconds(3900) && watch.Elapsed < TimeSpan.FromSeconds(20), $"{watch.ElapsedMilliseconds} ms: {e.Message}");
    }

    [Fact]
    public async Task ResetsAndTruncatedBodiesAreRetriedAndNoByteIsWrong()
    {
        using var proxy = new FaultInjectingHttpProxy(nginx.Server.Port, seed: 7) { ResetRate = 0.2, TruncateRate = 0.2 };
        using var store = new HttpPageStore(proxy.UrlOf("content.bin"), new HttpStoreOptions { Retry = new(20, TimeSpan.FromMilliseconds(1), TimeSpan.FromSeconds(5)) });
        var random = new Random(3);
        var reads = Enumerable.Range(0, 200).Select(async _ =>
        {
            long page = random.Next(0, (int)(nginx.Content.Length / 4096) + 1);
            int pages = random.Next(1, 17);
            var buffer = new byte[pages * 4096];
            var status = await store.ReadAsync(page * 4096, buffer, CancellationToken.None);
            if (status == PageReadStatus.Data)
            {
                AssertContent(nginx.Content, page * 4096, buffer);
            }
        }).ToArray();
        await Task.WhenAll(reads);
        Assert.True(proxy.Injected > 20, $"only {proxy.Injected} faults injected");
        Assert.True(store.Retries >= proxy.Injected / 2, $"{store.Retries} retries for {proxy.Injected} faults");
    }

    [Fact]
    public async Task AServerThatAnswersShorterRangesIsReadToTheEnd()
    {
        // 20,000 bytes per answer: the cuts fall inside pages and inside the targets of a coalesced batch.
        using var proxy = new FaultInjectingHttpProxy(nginx.Server.Port) { CapRangeBytes = 20_000 };
        using var store = new HttpPageStore(proxy.UrlOf("content.bin"), new HttpStoreOptions { Retry = Quick });
        long before = store.Requests;
        var run = new byte[256 * 1024];
        Assert.Equal(PageReadStatus.Data, await store.ReadAsync(4096, run, CancellationToken.None));
        AssertContent(nginx.Content, 4096, run);
        Assert.Equal((run.Length + 19_999) / 20_000, store.Requests - before); // the rest asked for each time, no retry
        Assert.Equal(0, store.Retries);

        var requests = Enumerable.Range(0, 16).Select(i => new PageReadRequest((40 + 15 - i) * 4096L, new byte[4096])).ToArray();
        await store.ReadManyAsync(requests, new PageReadStatus[16], CancellationToken.None);
        foreach (var r in requests)
        {
            AssertContent(nginx.Content, r.Offset, r.Destination.Span);
        }

        // Across the object's end (1 MiB + 3 KiB): 35,840 bytes in two answers, then zeros.
        var tail = new byte[65536];
        Assert.Equal(PageReadStatus.Data, await store.ReadAsync((1 << 20) - 32768, tail, CancellationToken.None));
        AssertContent(nginx.Content, (1 << 20) - 32768, tail.AsSpan(0, 32768 + 3072));
        Assert.True(tail.AsSpan(32768 + 3072).IndexOfAnyExcept((byte)0) < 0, "bytes past the end are not zero");
        Assert.True(proxy.Injected > 0);
    }

    [Fact]
    public async Task ShorterRangesWithResetsAndTruncatedBodiesGiveNoWrongByte()
    {
        // A failed answer is asked for again from where the last complete one ended, not from the read's start.
        using var proxy = new FaultInjectingHttpProxy(nginx.Server.Port, seed: 11) { CapRangeBytes = 12_288 + 100, ResetRate = 0.15, TruncateRate = 0.15 };
        using var store = new HttpPageStore(proxy.UrlOf("content.bin"), new HttpStoreOptions { Retry = new(20, TimeSpan.FromMilliseconds(1), TimeSpan.FromSeconds(5)) });
        var random = new Random(5);
        var reads = Enumerable.Range(0, 60).Select(async _ =>
        {
            long first = random.Next(0, (int)(nginx.Content.Length / 4096) + 1);
            int pages = random.Next(1, 33);
            var requests = Enumerable.Range(0, pages).Select(i => new PageReadRequest((first + i) * 4096L, new byte[4096])).ToArray();
            var statuses = new PageReadStatus[pages];
            await store.ReadManyAsync(requests, statuses, CancellationToken.None);
            for (int i = 0; i < pages; i++)
            {
                long available = Math.Clamp(nginx.Content.Length - requests[i].Offset, 0, 4096);
                if (statuses[i] == PageReadStatus.Data)
                {
                    AssertContent(nginx.Content, requests[i].Offset, requests[i].Destination.Span[..(int)available]);
                }
                Assert.True(requests[i].Destination.Span[(int)available..].IndexOfAnyExcept((byte)0) < 0);
            }
        }).ToArray();
        await Task.WhenAll(reads);
        Assert.True(store.Retries > 10, $"only {store.Retries} retries");
    }

    [Fact]
    public async Task ARedirectIsFollowedOnceThenItsTargetIsReadDirectly()
    {
        // A model hub's URL answers 302 to a signed CDN URL: one redirect when the store opens, not one per range.
        using var proxy = new FaultInjectingHttpProxy(nginx.Server.Port) { SignedRedirects = true };
        using var store = new HttpPageStore(proxy.UrlOf("r/content.bin"), new HttpStoreOptions { Retry = Quick });
        Assert.Equal(nginx.Content.Length, store.Length);
        Assert.Equal("/content.bin", store.ResolvedUrl.AbsolutePath);
        Assert.Equal("?sig=1", store.ResolvedUrl.Query);
        var random = new Random(5);
        for (int i = 0; i < 20; i++)
        {
            long offset = random.Next(0, (int)(nginx.Content.Length / 4096)) * 4096L;
            var buffer = new byte[4096 * random.Next(1, 9)];
            var status = await store.ReadAsync(offset, buffer, CancellationToken.None);
            int valid = (int)Math.Min(buffer.Length, nginx.Content.Length - offset);
            Assert.Equal(PageReadStatus.Data, status);
            AssertContent(nginx.Content, offset, buffer.AsSpan(0, valid));
        }
        Assert.Equal(1, proxy.Redirects);
        Assert.Equal(0, proxy.Expired);
    }

    [Fact]
    public async Task AnExpiredRedirectTargetIsRenewedThroughTheOriginalUrl()
    {
        using var proxy = new FaultInjectingHttpProxy(nginx.Server.Port) { SignedRedirects = true };
        using var store = new HttpPageStore(proxy.UrlOf("r/content.bin"), new HttpStoreOptions { Retry = Quick });
        var buffer = new byte[8192];
        await store.ReadAsync(0, buffer, CancellationToken.None);
        proxy.ExpireSignatures(); // the signed URL the store holds is refused from now on (403)
        for (int i = 1; i <= 3; i++)
        {
            Assert.Equal(PageReadStatus.Data, await store.ReadAsync(i * 65536L, buffer, CancellationToken.None));
            AssertContent(nginx.Content, i * 65536L, buffer);
        }
        Assert.Equal(1, proxy.Expired); // one refusal, then the fresh target serves the rest
        Assert.Equal(2, proxy.Redirects);
        Assert.Equal("?sig=2", store.ResolvedUrl.Query);
        Assert.Equal(0, store.Retries); // renewing is not a failed attempt
    }

    [Fact]
    public async Task TheCredentialIsNotSentToTheRedirectTarget()
    {
        using var proxy = new FaultInjectingHttpProxy(nginx.Server.Port) { SignedRedirects = true };
        var options = new HttpStoreOptions
        {
            Retry = Quick,
            Headers = new Dictionary<string, string> { ["Authorization"] = "Bearer secret", ["X-Client"] = "paging" },
        };
        using var store = new HttpPageStore(proxy.UrlOf("r/content.bin"), options);
        var buffer = new byte[4096];
        for (int i = 0; i < 4; i++)
        {
            await store.ReadAsync(i * 4096L, buffer, CancellationToken.None);
            AssertContent(nginx.Content, i * 4096L, buffer);
        }
        Assert.Equal(0, proxy.AuthorizationToTarget);
    }

    [Fact]
    public async Task AChangedETagMidReadIsChangedAndNotRetried()
    {
        using var proxy = new FaultInjectingHttpProxy(nginx.Server.Port);
        using var store = new HttpPageStore(proxy.UrlOf("content.bin"), new HttpStoreOptions { Retry = Quick });
        var buffer = new byte[4096];
        await store.ReadAsync(0, buffer, CancellationToken.None);
        proxy.ReplaceETag = "\"another-version\"";
        long before = proxy.Requests;
        var e = await Assert.ThrowsAsync<PageStoreException>(async () => await store.ReadAsync(4096, buffer, CancellationToken.None));
        Assert.Equal(PageStoreError.Changed, e.Error);
        Assert.False(e.IsTransient);
        Assert.Contains("changed since it was opened", e.Message);
        Assert.Equal(1, proxy.Requests - before);
    }

    [Fact]
    public async Task AServerWithoutValidatorsIsRefusedUnlessAllowed()
    {
        using var proxy = new FaultInjectingHttpProxy(nginx.Server.Port) { StripETag = true, StripLastModified = true };
        var e = Assert.Throws<PageStoreException>(() => new HttpPageStore(proxy.UrlOf("content.bin"), new HttpStoreOptions { Retry = Quick }));
        Assert.Equal(PageStoreError.Configuration, e.Error);
        Assert.Contains("neither a strong ETag nor Last-Modified", e.Message);
        Assert.Contains("AllowUnversioned", e.Message);
        // Allowed: pinned by length alone, every byte right.
        using var store = new HttpPageStore(proxy.UrlOf("content.bin"), new HttpStoreOptions { Retry = Quick, AllowUnversioned = true });
        Assert.Null(store.ETag);
        Assert.Null(store.LastModified);
        var buffer = new byte[65536];
        Assert.Equal(PageReadStatus.Data, await store.ReadAsync(8192, buffer, CancellationToken.None));
        AssertContent(nginx.Content, 8192, buffer);
        // The setting reaches the pager through the descriptor.
        var descriptor = HttpPageStore.Describe(proxy.UrlOf("content.bin"), new HttpStoreOptions { AllowUnversioned = true });
        Assert.Equal("true", descriptor.Settings[HttpPageStore.Settings.AllowUnversioned]);
        Assert.False(HttpPageStore.Describe(proxy.UrlOf("content.bin")).Settings.ContainsKey(HttpPageStore.Settings.AllowUnversioned));
    }

    [Fact]
    public async Task AServerWithLastModifiedAloneIsPinnedByIt()
    {
        using var file = TestData.CreateFile(1 << 16, seed: 31, directory: nginx.Server.Root, name: "dated.bin");
        File.SetLastWriteTimeUtc(file.Path, new DateTime(2026, 1, 1, 0, 0, 0, DateTimeKind.Utc));
        using var proxy = new FaultInjectingHttpProxy(nginx.Server.Port) { StripETag = true };
        using var store = new HttpPageStore(proxy.UrlOf("dated.bin"), new HttpStoreOptions { Retry = Quick });
        Assert.Null(store.ETag);
        Assert.Equal(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero), store.LastModified);
        var buffer = new byte[4096];
        Assert.Equal(PageReadStatus.Data, await store.ReadAsync(4096, buffer, CancellationToken.None));
        Assert.True(TestData.FirstMismatch(buffer, 4096, file.Length, file.Seed) < 0);
        // A new version of the same length, a second later: If-Unmodified-Since makes the server refuse (412).
        File.WriteAllBytes(file.Path, new byte[1 << 16]);
        File.SetLastWriteTimeUtc(file.Path, new DateTime(2026, 1, 1, 0, 0, 1, DateTimeKind.Utc));
        var e = await Assert.ThrowsAsync<PageStoreException>(async () => await store.ReadAsync(8192, buffer, CancellationToken.None));
        Assert.Equal(PageStoreError.Changed, e.Error);
        Assert.Contains("changed since it was opened", e.Message);
    }

    [Fact]
    public async Task AReplacedFileOnTheServerIsChanged()
    {
        using var file = TestData.CreateFile(1 << 16, seed: 30, directory: nginx.Server.Root, name: "replaced.bin");
        using var store = new HttpPageStore(nginx.Server.UrlOf("replaced.bin"));
        var buffer = new byte[4096];
        await store.ReadAsync(0, buffer, CancellationToken.None);
        // Same length, other bytes, another modification time: nginx's ETag (mtime-length) changes, If-Match fails.
        File.Delete(file.Path);
        using (TestData.CreateFile(1 << 16, seed: 31, directory: nginx.Server.Root, name: "replaced.bin"))
        {
            File.SetLastWriteTimeUtc(file.Path, DateTime.UtcNow.AddMinutes(5));
            var e = await Assert.ThrowsAsync<PageStoreException>(async () => await store.ReadAsync(4096, buffer, CancellationToken.None));
            Assert.Equal(PageStoreError.Changed, e.Error);
            Assert.Contains("412", e.Message);
        }
    }

    [Fact]
    public async Task ReadsAreInFlightTogether()
    {
        using var proxy = new FaultInjectingHttpProxy(nginx.Server.Port) { Latency = TimeSpan.FromMilliseconds(250) };
        using var store = new HttpPageStore(proxy.UrlOf("content.bin"));
        await store.ReadAsync(0, new byte[4096], CancellationToken.None); // connect once
        var watch = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, 16).Select(i => store.ReadAsync(i * 8192L, new byte[4096], CancellationToken.None).AsTask()));
        // 16 × 250 ms serialized would be 4 s; in flight together, 250 ms plus connection setup (a loaded CI machine
        // has been seen to add ~0.7 s to it).
        Assert.True(watch.Elapsed < TimeSpan.FromMilliseconds(2000), $"16 reads of 250 ms took {watch.ElapsedMilliseconds} ms");
    }

    [Fact]
    public async Task HttpsOffersHttp2WhenAskedAndReadsManyRangesOnIt()
    {
        using var store = new HttpPageStore(nginx.Server.HttpsUrlOf("content.bin"), new HttpStoreOptions { TrustedCertificatesPath = nginx.Server.CertificatePath, Http2 = true });
        Assert.Equal(System.Net.HttpVersion.Version20, store.ProtocolVersion);
        using var http11 = new HttpPageStore(nginx.Server.HttpsUrlOf("content.bin"), new HttpStoreOptions { TrustedCertificatesPath = nginx.Server.CertificatePath });
        Assert.Equal(System.Net.HttpVersion.Version11, http11.ProtocolVersion); // the default (see HttpStoreOptions.Http2)
        var reads = Enumerable.Range(0, 64).Select(async i =>
        {
            long offset = i * 16384L;
            var buffer = new byte[8192];
            Assert.Equal(PageReadStatus.Data, await store.ReadAsync(offset, buffer, CancellationToken.None));
            AssertContent(nginx.Content, offset, buffer);
        });
        await Task.WhenAll(reads);
    }

    [Fact]
    public void AnUntrustedCertificateIsAClearErrorAtOnce()
    {
        var watch = Stopwatch.StartNew();
        var e = Assert.Throws<PageStoreException>(() => new HttpPageStore(nginx.Server.HttpsUrlOf("content.bin")));
        Assert.Equal(PageStoreError.Configuration, e.Error);
        Assert.Contains("TLS handshake failed", e.Message);
        Assert.Contains("TrustedCertificatesPath", e.Message);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5), $"{watch.ElapsedMilliseconds} ms: a certificate error is not retried");
        // A file that holds no certificate is refused by name.
        string notPem = Path.GetTempFileName();
        try
        {
            File.WriteAllText(notPem, "not a certificate");
            var bad = Assert.Throws<PageStoreException>(() => new HttpPageStore(nginx.Server.HttpsUrlOf("content.bin"), new HttpStoreOptions { TrustedCertificatesPath = notPem }));
            Assert.Equal(PageStoreError.Configuration, bad.Error);
            Assert.Contains(notPem, bad.Message);
        }
        finally
        {
            File.Delete(notPem);
        }
    }

    [Fact]
    public async Task AnExplicitProxyCarriesEveryRequest()
    {
        // The fault-injecting proxy forwards what it gets to nginx, which takes the absolute-form request line of a
        // proxied request (GET http://host/path) as any HTTP/1.1 server must.
        using var proxy = new FaultInjectingHttpProxy(nginx.Server.Port);
        var descriptor = PageStoreDescriptor.Http(nginx.Server.UrlOf("content.bin"), new HttpStoreOptions { Proxy = proxy.UrlOf("") });
        Assert.Equal(proxy.UrlOf("").AbsoluteUri, descriptor.Settings["proxy"]);
        using var store = BuiltInPageStores.CreateRegistry().AddNetworkStores().Create(new PageStoreContext(descriptor, 2L << 20, 4096));
        var buffer = new byte[16384];
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal(PageReadStatus.Data, await store.ReadAsync(i * 65536L, buffer, CancellationToken.None));
            AssertContent(nginx.Content, i * 65536L, buffer);
        }
        Assert.Equal(5, proxy.Requests); // the opening request and the four reads
        var bad = new PageStoreDescriptor("http", new Dictionary<string, string> { ["url"] = nginx.Server.UrlOf("content.bin").AbsoluteUri, ["proxy"] = "not a url" });
        Assert.Contains("proxy 'not a url'", Assert.Throws<PageStoreException>(() => BuiltInPageStores.CreateRegistry().AddNetworkStores().Create(new PageStoreContext(bad, 4096, 4096))).Message);
    }

    [Fact]
    public void TheFactoryBuildsFromTheDescriptor()
    {
        var descriptor = PageStoreDescriptor.Http(nginx.Server.UrlOf("private/secret.bin"),
            new HttpStoreOptions { Headers = new Dictionary<string, string> { ["Authorization"] = NginxServer.PrivateAuthorization }, MaxConnections = 4 });
        Assert.Equal("http", descriptor.Kind);
        var registry = BuiltInPageStores.CreateRegistry().AddNetworkStores();
        using var store = registry.Create(new PageStoreContext(descriptor, 1 << 20, 4096));
        Assert.Equal(1 << 16, store.Length);
        var bad = new PageStoreDescriptor("http", new Dictionary<string, string> { ["url"] = "not a url" });
        Assert.Contains("not an absolute URL", Assert.Throws<PageStoreException>(() => registry.Create(new PageStoreContext(bad, 4096, 4096))).Message);
    }
}

public sealed class S3StoreTests(S3Fixture s3) : IClassFixture<S3Fixture>
{
    [Fact]
    public void AMissingKeyIsAConfigurationError()
    {
        var e = Assert.Throws<PageStoreException>(() => new S3PageStore(s3.Server.Bucket, "no/such/key", s3.Options));
        Assert.Equal(PageStoreError.Configuration, e.Error);
        Assert.Contains("no such bucket or key", e.Message);
    }

    [Fact]
    public async Task AReplacedObjectIsChanged()
    {
        using var client = s3.Client();
        using var first = TestData.CreateFile(1 << 16, seed: 40);
        using var second = TestData.CreateFile(1 << 16, seed: 41);
        await client.PutObjectAsync(S3Fixture.Put(s3.Server.Bucket, "replaced.bin", first.Path));
        using var store = new S3PageStore(s3.Server.Bucket, "replaced.bin", s3.Options with { Retry = new(2, TimeSpan.Zero, TimeSpan.FromSeconds(5)) });
        using var meter = new NetworkMeterRecorder("s3");
        var buffer = new byte[8192];
        await store.ReadAsync(8192, buffer, CancellationToken.None);
        Assert.True(TestData.FirstMismatch(buffer, 8192, first.Length, first.Seed) < 0);
        await client.PutObjectAsync(S3Fixture.Put(s3.Server.Bucket, "replaced.bin", second.Path));
        var e = await Assert.ThrowsAsync<PageStoreException>(async () => await store.ReadAsync(0, buffer, CancellationToken.None));
        Assert.Equal(PageStoreError.Changed, e.Error);
        // A changed object is permanent: recorded as a failure, never retried.
        Assert.True(meter["paging.network.failures"] >= 1, "the changed object's read was not recorded as a failure");
        Assert.True(meter["paging.network.bytes_fetched"] >= 8192, $"{meter["paging.network.bytes_fetched"]} bytes recorded");
        Assert.Equal(2, store.Requests);
        Assert.Equal(0, store.Retries);
    }

    [Fact]
    public void WritesAreRefusedWithTheReason()
    {
        using var store = new S3PageStore(s3.Server.Bucket, "data/content.bin", s3.Options);
        var e = Assert.Throws<PageStoreException>(() => store.Write(0, new byte[4096]));
        Assert.Equal(PageStoreError.ReadOnly, e.Error);
        Assert.Contains("immutable", e.Message);
    }
}

/// <summary>A region whose pages come from nginx and from s3rver through the pager process: every byte checked.</summary>
public sealed class NetworkRegionTests(NginxFixture nginx, S3Fixture s3, Xunit.Abstractions.ITestOutputHelper output) : IClassFixture<NginxFixture>, IClassFixture<S3Fixture>
{
    private static unsafe void TouchAll(Region region, TempFile file, int threads)
    {
        long pages = region.Length / 4096;
        var failures = new System.Collections.Concurrent.ConcurrentBag<string>();
        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
        {
            var random = new Random(t);
            for (long i = 0; i < pages; i++)
            {
                long page = (i * 7919 + t * 104729) % pages;
                var span = region.AsSpan(page * 4096, 4096);
                long mismatch = TestData.FirstMismatch(span, page * 4096, file.Length, file.Seed);
                if (mismatch >= 0)
                {
                    failures.Add($"page {page}: wrong byte at {page * 4096 + mismatch}");
                }
            }
        });
        Assert.Empty(failures);
    }

    [Theory]
    [InlineData(ArenaKind.Shmem, false)]
    [InlineData(ArenaKind.Anonymous, false)]
    [InlineData(ArenaKind.Shmem, true)]
    public void HttpRegionReadsEveryByte(ArenaKind arena, bool https)
    {
        // Over HTTPS the trusted certificate and the HTTP/2 choice travel in the descriptor to the pager, which opens
        // the connections.
        var store = https
            ? PageStoreDescriptor.Http(nginx.Server.HttpsUrlOf("content.bin"), new HttpStoreOptions { TrustedCertificatesPath = nginx.Server.CertificatePath, Http2 = true })
            : PageStoreDescriptor.Http(nginx.Server.UrlOf("content.bin"));
        using var runtime = PagingRuntime.Start();
        using var region = runtime.CreateRegion(new RegionOptions { Arena = arena, Length = 2L << 20, Store = store });
        TouchAll(region, nginx.Content, threads: 4);
        Assert.True(region.Statistics.PagesFilled > 0);
    }

    /// <summary>Through the pager, from a server that answers every range with at most 3,000 bytes, less than a page:
    /// every fill, whatever its size, is completed by further requests.</summary>
    [Theory]
    [InlineData(ArenaKind.Shmem)]
    [InlineData(ArenaKind.Anonymous)]
    public void HttpRegionFromAServerThatAnswersShorterRangesReadsEveryByte(ArenaKind arena)
    {
        using var proxy = new FaultInjectingHttpProxy(nginx.Server.Port) { CapRangeBytes = 3_000 };
        using var runtime = PagingRuntime.Start();
        using var region = runtime.CreateRegion(new RegionOptions { Arena = arena, Length = 2L << 20, Store = PageStoreDescriptor.Http(proxy.UrlOf("content.bin")) });
        TouchAll(region, nginx.Content, threads: 4);
        Assert.True(proxy.Injected > 0, "no range was cut");
        Assert.Equal(0, region.Statistics.Errors);
    }

    /// <summary>A checkpoint larger than its memory budget, over HTTP: cold pages are dropped and fetched again from
    /// the server when touched again (nothing to write back: the region is read-only), every byte checked.</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void AnHttpRegionOverItsBudgetEvictsAndRefetches(bool readOnly)
    {
        const long length = 24L << 20, budget = 6L << 20;
        using var file = TestData.CreateFile(length, seed: 52, directory: nginx.Server.Root, name: $"budget-{readOnly}.bin");
        using var runtime = PagingRuntime.Start();
        using var region = runtime.CreateRegion(new RegionOptions
        {
            Arena = ArenaKind.Shmem, Length = length, Store = PageStoreDescriptor.Http(nginx.Server.UrlOf($"budget-{readOnly}.bin")),
            MemoryBudget = budget, ReadOnly = readOnly,
        });
        string? failure = null;
        long touches = 0, pages = length / 4096;
        var deadline = Environment.TickCount64 + 3000;
        var workers = Enumerable.Range(0, 4).Select(t => new Thread(() =>
        {
            var rng = new Random(t + 5);
            while (Environment.TickCount64 < deadline && Volatile.Read(ref failure) is null)
            {
                // Half sequential runs (read-ahead fetches ahead of the budget), half random pages.
                long first = rng.NextInt64(pages), count = rng.Next(2) == 0 ? 1 : Math.Min(64, pages - first);
                for (long p = first; p < first + count; p++)
                {
                    long bad = TestData.FirstMismatch(region.AsReadOnlySpan(p * 4096, 4096), p * 4096, file.Length, file.Seed);
                    if (bad >= 0)
                    {
                        Interlocked.CompareExchange(ref failure, $"thread {t}: wrong byte at offset {p * 4096 + bad}", null);
                    }
                    Interlocked.Increment(ref touches);
                }
            }
        }) { IsBackground = true }).ToList();
        workers.ForEach(w => w.Start());
        // A fault that never resolves fails the test here instead of hanging the run.
        Assert.True(workers.All(w => w.Join(TimeSpan.FromSeconds(60))), "touching threads still blocked after 60 s");
        Assert.True(failure is null, failure);
        var stats = region.Statistics;
        output.WriteLine($"{touches} touches; {stats}");
        Assert.True(stats.PagesEvicted > 0, $"nothing was evicted: {stats}");
        Assert.True(stats.PeakResidentPages * 4096 <= budget + (1 << 20), $"peak resident {stats.PeakResidentPages * 4096 >> 20} MiB over the {budget >> 20} MiB budget ({stats})");
        Assert.True(stats.PagesFilled * 4096 > length, $"{stats.PagesFilled} pages filled: nothing fetched twice ({stats})");
        Assert.Equal(0, stats.Errors);
        Assert.Equal(0, stats.PagesWrittenBack);
        Assert.True(touches > 1000, $"only {touches} touches");
    }

    [Fact]
    public void S3RegionReadsEveryByte()
    {
        using var runtime = PagingRuntime.Start();
        using var region = runtime.CreateRegion(new RegionOptions
        {
            Arena = ArenaKind.Shmem,
            Length = 2L << 20,
            Store = PageStoreDescriptor.S3(s3.Server.Bucket, "data/content.bin", s3.Options),
        });
        TouchAll(region, s3.Content, threads: 4);
    }

    /// <summary>A pack served by nginx, read through the compressed store over the HTTP store, into both arenas.</summary>
    [Theory]
    [InlineData(ArenaKind.Shmem)]
    [InlineData(ArenaKind.Anonymous)]
    public void ACompressedPackOverHttpReadsEveryByte(ArenaKind arena)
    {
        using var runtime = PagingRuntime.Start();
        using var region = runtime.CreateRegion(new RegionOptions
        {
            Arena = arena,
            Length = 2L << 20,
            Store = PageStoreDescriptor.Compressed(PageStoreDescriptor.Http(nginx.Server.UrlOf("content.pgz"))),
        });
        TouchAll(region, nginx.Content, threads: 4);
    }

    [Fact]
    public void ACompressedPackInAFileReadsEveryByte()
    {
        using var runtime = PagingRuntime.Start();
        using var region = runtime.CreateRegion(new RegionOptions
        {
            Arena = ArenaKind.Shmem,
            Length = 2L << 20,
            Store = PageStoreDescriptor.Compressed(Path.Combine(nginx.Server.Root, "content.pgz")),
        });
        TouchAll(region, nginx.Content, threads: 4);
    }

    [Fact]
    public void ADamagedPackFailsRegionCreationClearly()
    {
        var path = Path.Combine(nginx.Server.Root, "damaged.pgz");
        var bytes = File.ReadAllBytes(Path.Combine(nginx.Server.Root, "content.pgz"));
        bytes[^2] ^= 1; // the index checksum
        File.WriteAllBytes(path, bytes);
        using var runtime = PagingRuntime.Start();
        var e = Assert.ThrowsAny<PagingException>(() => runtime.CreateRegion(new RegionOptions
        {
            Arena = ArenaKind.Shmem,
            Length = 2L << 20,
            Store = PageStoreDescriptor.Compressed(path),
        }));
        Assert.Contains("index's checksum", e.Message);
    }

    [Fact]
    public void AMissingObjectFailsRegionCreationClearly()
    {
        using var runtime = PagingRuntime.Start();
        var e = Assert.ThrowsAny<PagingException>(() => runtime.CreateRegion(new RegionOptions
        {
            Arena = ArenaKind.Shmem,
            Length = 1L << 20,
            Store = PageStoreDescriptor.Http(nginx.Server.UrlOf("missing.bin")),
        }));
        Assert.Contains("not found (404)", e.Message);
    }
}
