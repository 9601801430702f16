using Xunit;

namespace Paging.Testing;

/// <summary>
/// The contract every <see cref="IPageStore"/> keeps; each store's test class derives from this and says how to build
/// the store over a known content. Checks: exact bytes at any page-aligned offset and size, zeros past the end
/// (reported as <see cref="PageReadStatus.Zero"/> or written as zeros), explicit errors for bad offsets and for writes
/// to a read-only store, and write-back round trips where writes are supported.
/// </summary>
public abstract class PageStoreContract
{
    /// <summary>Content length the tests use: 1 MiB + 3 KiB, so the last page is partial.</summary>
    protected const long ContentLength = (1 << 20) + 3072;

    /// <summary>Builds the store. <paramref name="expected"/> gives the byte at a store offset (0 past the end).</summary>
    protected abstract IPageStore CreateStore(bool writable, out Func<long, byte> expected);

    protected virtual bool SupportsWrite => true;

    private static void AssertRead(IPageStore store, Func<long, byte> expected, long offset, int length)
    {
        var buffer = new byte[length];
        Array.Fill(buffer, (byte)0xCD);
        var status = store.Read(offset, buffer);
        for (int i = 0; i < length; i++)
        {
            byte want = expected(offset + i);
            byte got = status == PageReadStatus.Zero ? (byte)0 : buffer[i];
            if (got != want)
            {
                Assert.Fail($"byte {offset + i}: expected {want}, got {got} (status {status})");
            }
        }
    }

    [Theory]
    [InlineData(0, 4096)]
    [InlineData(4096 * 5, 4096)]
    [InlineData(65536, 65536)]
    [InlineData(1 << 20, 4096)] // the partial last page
    [InlineData(0, (1 << 20) + 8192)] // across the end
    public void ReadsReturnTheContent(long offset, int length)
    {
        using var store = CreateStore(false, out var expected);
        AssertRead(store, expected, offset, length);
    }

    [Theory]
    [InlineData(0, 4096)]
    [InlineData(65536, 65536)]
    [InlineData(0, (1 << 20) + 8192)] // across the end
    public async Task AsyncReadsReturnTheContent(long offset, int length)
    {
        using var store = CreateStore(false, out var expected);
        var buffer = new byte[length];
        Array.Fill(buffer, (byte)0xCD);
        var status = await store.ReadAsync(offset, buffer, CancellationToken.None);
        for (int i = 0; i < length; i++)
        {
            byte got = status == PageReadStatus.Zero ? (byte)0 : buffer[i];
            Assert.True(got == expected(offset + i), $"byte {offset + i}: expected {expected(offset + i)}, got {got} (status {status})");
        }
    }

    /// <summary>A batch in no particular order, with adjacent runs (a store may coalesce them), a gap, a run across
    /// the end and one wholly past it: every destination gets its own bytes.</summary>
    [Fact]
    public async Task BatchedReadsReturnTheContent()
    {
        using var store = CreateStore(false, out var expected);
        long[] offsets = [12288, 0, 4096, 8192, 65536, 1 << 20, 8L << 20, 20480];
        int[] lengths = [4096, 4096, 4096, 4096, 16384, 8192, 4096, 8192];
        var requests = new PageReadRequest[offsets.Length];
        for (int i = 0; i < offsets.Length; i++)
        {
            var buffer = new byte[lengths[i]];
            Array.Fill(buffer, (byte)0xCD);
            requests[i] = new PageReadRequest(offsets[i], buffer);
        }
        var statuses = new PageReadStatus[requests.Length];
        await store.ReadManyAsync(requests, statuses, CancellationToken.None);
        for (int r = 0; r < requests.Length; r++)
        {
            var span = requests[r].Destination.Span;
            for (int i = 0; i < span.Length; i++)
            {
                byte got = statuses[r] == PageReadStatus.Zero ? (byte)0 : span[i];
                Assert.True(got == expected(offsets[r] + i), $"request {r}, byte {offsets[r] + i}: expected {expected(offsets[r] + i)}, got {got} (status {statuses[r]})");
            }
        }
    }

    [Fact]
    public void ReadsPastTheEndAreZero()
    {
        using var store = CreateStore(false, out var expected);
        AssertRead(store, expected, 64L << 20, 8192);
    }

    [Fact]
    public async Task ANegativeOffsetIsRejected()
    {
        using var store = CreateStore(false, out _);
        Assert.Throws<ArgumentOutOfRangeException>(() => store.Read(-4096, new byte[4096]));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await store.ReadAsync(-4096, new byte[4096], CancellationToken.None));
    }

    [Fact]
    public void WritesToAReadOnlyStoreFailWithReadOnly()
    {
        using var store = CreateStore(false, out _);
        Assert.Equal(PageStoreCapabilities.None, store.Capabilities & PageStoreCapabilities.Write);
        var e = Assert.Throws<PageStoreException>(() => store.Write(0, new byte[4096]));
        Assert.Equal(PageStoreError.ReadOnly, e.Error);
        Assert.False(e.IsTransient);
    }

    [Fact]
    public void WritesRoundTrip()
    {
        if (!SupportsWrite)
        {
            using var ro = CreateStore(true, out _);
            Assert.Throws<PageStoreException>(() => ro.Write(0, new byte[4096]));
            return;
        }
        using var store = CreateStore(true, out var expected);
        Assert.Equal(PageStoreCapabilities.Write, store.Capabilities & PageStoreCapabilities.Write);
        var page = new byte[4096];
        Array.Fill(page, (byte)0x42);
        store.Write(8192, page);
        var back = new byte[3 * 4096];
        Assert.Equal(PageReadStatus.Data, store.Read(4096, back));
        for (int i = 0; i < back.Length; i++)
        {
            byte want = i is >= 4096 and < 8192 ? (byte)0x42 : expected(4096 + i);
            Assert.True(back[i] == want, $"byte {4096 + i}: expected {want}, got {back[i]}");
        }
    }
}
