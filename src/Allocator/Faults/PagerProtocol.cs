using System.Buffers.Binary;
using System.Text;

namespace Paging.Faults;

/// <summary>
/// The pager protocol: little-endian binary messages over a SOCK_SEQPACKET Unix socket (one message per packet),
/// file descriptors as SCM_RIGHTS. Simple enough for a C or Rust application to speak.
/// <code>
/// header   : u32 type, u32 version, u64 request id
/// Hello    : u32 role (0 active, 1 standby), u64 uffd features           fds: [uffd]
/// AddRegion: u64 id, u32 arena, u32 page size, u64 address, u64 length,
///            str kind, str assembly, str type, u32 n, n × (str key, str value),
///            u32 read-ahead (0/1), u64 block pages, u64 max window pages, u32 stream all (0/1)
///                                                                        fds: [control memfd, data memfd?]
/// RemoveRegion: u64 id
/// Prefetch : u64 id, u64 first page, u64 end page
/// CancelPrefetch: u64 id
/// Arm      : (none)                                                      fds: [pidfd of the active pager]
/// Reply    : i32 status (0 = ok, else errno-like), str message
/// str      : u32 byte length, UTF-8 bytes
/// </code>
/// </summary>
internal static class PagerProtocol
{
    public const uint Version = 1;
    public const int HeaderSize = 16;
    public const int MaxMessage = 65536;
    public const int MaxFds = 4;

    public enum MessageType : uint { Hello = 1, AddRegion = 2, RemoveRegion = 3, Arm = 4, Prefetch = 5, CancelPrefetch = 6, Reply = 100 }

    public enum Role : uint { Active = 0, Standby = 1 }
}

/// <summary>Writes one protocol message into a buffer.</summary>
internal ref struct ProtocolWriter
{
    private readonly Span<byte> _buffer;

    public ProtocolWriter(Span<byte> buffer, PagerProtocol.MessageType type, ulong requestId)
    {
        _buffer = buffer;
        Length = 0;
        U32((uint)type);
        U32(PagerProtocol.Version);
        U64(requestId);
    }

    public int Length { get; private set; }

    public ReadOnlySpan<byte> Written => _buffer[..Length];

    public void U32(uint value) { BinaryPrimitives.WriteUInt32LittleEndian(_buffer[Length..], value); Length += 4; }

    public void I32(int value) { BinaryPrimitives.WriteInt32LittleEndian(_buffer[Length..], value); Length += 4; }

    public void U64(ulong value) { BinaryPrimitives.WriteUInt64LittleEndian(_buffer[Length..], value); Length += 8; }

    public void Str(string? value)
    {
        value ??= "";
        int n = Encoding.UTF8.GetByteCount(value);
        if (Length + 4 + n > _buffer.Length)
        {
            throw new PagerException($"a pager message exceeds {_buffer.Length} bytes (a setting is too long)");
        }
        U32((uint)n);
        Encoding.UTF8.GetBytes(value, _buffer[Length..]);
        Length += n;
    }
}

/// <summary>Reads one protocol message; every read is bounds-checked so a corrupt message is an exception.</summary>
internal ref struct ProtocolReader
{
    private readonly ReadOnlySpan<byte> _buffer;
    private int _position;

    public ProtocolReader(ReadOnlySpan<byte> buffer)
    {
        _buffer = buffer;
        _position = 0;
        if (buffer.Length < PagerProtocol.HeaderSize)
        {
            throw new PagerException($"pager message of {buffer.Length} bytes is shorter than its header");
        }
        Type = (PagerProtocol.MessageType)U32();
        uint version = U32();
        if (version != PagerProtocol.Version)
        {
            throw new PagerException($"pager protocol version {version} does not match the library's {PagerProtocol.Version}: the pager and the library come from different builds");
        }
        RequestId = U64();
    }

    public PagerProtocol.MessageType Type { get; }

    public ulong RequestId { get; }

    private ReadOnlySpan<byte> Take(int n)
    {
        if (n < 0 || _position + n > _buffer.Length)
        {
            throw new PagerException("truncated pager message");
        }
        var s = _buffer.Slice(_position, n);
        _position += n;
        return s;
    }

    public uint U32() => BinaryPrimitives.ReadUInt32LittleEndian(Take(4));

    public int I32() => BinaryPrimitives.ReadInt32LittleEndian(Take(4));

    public ulong U64() => BinaryPrimitives.ReadUInt64LittleEndian(Take(8));

    public string Str() => Encoding.UTF8.GetString(Take(checked((int)U32())));
}
