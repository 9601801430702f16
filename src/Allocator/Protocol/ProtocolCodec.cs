using System.Buffers.Binary;
using System.Text;

namespace Paging.Protocol;

/// <summary>Writes one protocol message into a buffer: the header, then the message's fields.</summary>
internal ref struct ProtocolWriter
{
    private readonly Span<byte> _buffer;

    public ProtocolWriter(Span<byte> buffer, MessageType type, ulong requestId)
    {
        _buffer = buffer;
        Length = 0;
        U32((uint)type);
        U32(PagerProtocol.Version);
        U64(requestId);
    }

    public int Length { get; private set; }

    public readonly ReadOnlySpan<byte> Written => _buffer[..Length];

    private Span<byte> Reserve(int n)
    {
        if (Length + n > _buffer.Length)
        {
            throw new PagerException($"a pager message exceeds {_buffer.Length} bytes (a setting is too long)");
        }
        var s = _buffer.Slice(Length, n);
        Length += n;
        return s;
    }

    public void U32(uint value) => BinaryPrimitives.WriteUInt32LittleEndian(Reserve(4), value);

    public void I32(int value) => BinaryPrimitives.WriteInt32LittleEndian(Reserve(4), value);

    public void U64(ulong value) => BinaryPrimitives.WriteUInt64LittleEndian(Reserve(8), value);

    public void Bool(bool value) => U32(value ? 1u : 0u);

    /// <summary>u32 byte length, then UTF-8 bytes (null is written as the empty string).</summary>
    public void Str(string? value)
    {
        value ??= "";
        int n = Encoding.UTF8.GetByteCount(value);
        if (Length + 4 + n > _buffer.Length)
        {
            throw new PagerException($"a pager message exceeds {_buffer.Length} bytes (a setting is too long)");
        }
        U32((uint)n);
        Encoding.UTF8.GetBytes(value, Reserve(n));
    }
}

/// <summary>Reads one protocol message; every read is bounds-checked, so a corrupt or truncated message is a
/// <see cref="PagerException"/>, never an out-of-range read.</summary>
internal ref struct ProtocolReader
{
    private static readonly UTF8Encoding s_strictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
    private readonly ReadOnlySpan<byte> _buffer;
    private int _position;

    public ProtocolReader(ReadOnlySpan<byte> buffer)
    {
        _buffer = buffer;
        _position = 0;
        if (buffer.Length < PagerProtocol.HeaderSize)
        {
            throw new PagerException($"pager message of {buffer.Length} bytes is shorter than its {PagerProtocol.HeaderSize}-byte header");
        }
        Type = (MessageType)U32();
        uint version = U32();
        if (version != PagerProtocol.Version)
        {
            throw new PagerException($"pager protocol version {version} does not match the library's {PagerProtocol.Version}: the pager and the library come from different builds");
        }
        RequestId = U64();
    }

    public MessageType Type { get; }

    public ulong RequestId { get; }

    /// <summary>Bytes not read yet.</summary>
    public readonly int Remaining => _buffer.Length - _position;

    private ReadOnlySpan<byte> Take(long n)
    {
        if (n < 0 || n > Remaining)
        {
            throw new PagerException($"truncated {Type} message: {n} more bytes needed at offset {_position}, {Remaining} left");
        }
        var s = _buffer.Slice(_position, (int)n);
        _position += (int)n;
        return s;
    }

    public uint U32() => BinaryPrimitives.ReadUInt32LittleEndian(Take(4));

    public int I32() => BinaryPrimitives.ReadInt32LittleEndian(Take(4));

    public ulong U64() => BinaryPrimitives.ReadUInt64LittleEndian(Take(8));

    public bool Bool() => U32() switch
    {
        0 => false,
        1 => true,
        var v => throw new PagerException($"{Type} message: a boolean field holds {v}, not 0 or 1"),
    };

    public string Str()
    {
        try
        {
            return s_strictUtf8.GetString(Take(U32()));
        }
        catch (DecoderFallbackException e)
        {
            throw new PagerException($"{Type} message: a string is not valid UTF-8", e);
        }
    }

    /// <summary>Throws when bytes are left over: a message longer than its type is malformed.</summary>
    public readonly void End()
    {
        if (Remaining != 0)
        {
            throw new PagerException($"{Type} message has {Remaining} unexpected trailing bytes");
        }
    }
}
