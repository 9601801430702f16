using Paging.Faults;

namespace Paging.Allocator.Tests;

public sealed class ProtocolTests
{
    [Fact]
    public void MessagesRoundTrip()
    {
        var buffer = new byte[256];
        var w = new ProtocolWriter(buffer, PagerProtocol.MessageType.AddRegion, 42);
        w.U64(7);
        w.U32(2);
        w.Str("file");
        w.Str("é/ü");
        w.I32(-5);
        int length = w.Length;
        var r = new ProtocolReader(buffer.AsSpan(0, length));
        Assert.Equal(PagerProtocol.MessageType.AddRegion, r.Type);
        Assert.Equal(42UL, r.RequestId);
        Assert.Equal(7UL, r.U64());
        Assert.Equal(2U, r.U32());
        Assert.Equal("file", r.Str());
        Assert.Equal("é/ü", r.Str());
        Assert.Equal(-5, r.I32());
    }

    [Fact]
    public void TruncatedOrForeignMessagesAreRejected()
    {
        var buffer = new byte[64];
        var w = new ProtocolWriter(buffer, PagerProtocol.MessageType.Reply, 1);
        w.Str("hello");
        int length = w.Length;
        Assert.Throws<PagerException>(() => new ProtocolReader(buffer.AsSpan(0, 8)));
        Assert.Throws<PagerException>(() => { var r = new ProtocolReader(buffer.AsSpan(0, length - 2)); r.Str(); });
        buffer[4] = 99; // version
        var e = Assert.Throws<PagerException>(() => new ProtocolReader(buffer.AsSpan(0, length)));
        Assert.Contains("version", e.Message);
    }

    [Fact]
    public void AnOversizedSettingIsAnErrorNotAnOverflow()
    {
        var buffer = new byte[64];
        try
        {
            var w = new ProtocolWriter(buffer, PagerProtocol.MessageType.AddRegion, 1);
            w.Str(new string('x', 100));
            Assert.Fail("expected PagerException");
        }
        catch (PagerException e)
        {
            Assert.Contains("exceeds", e.Message);
        }
    }
}
