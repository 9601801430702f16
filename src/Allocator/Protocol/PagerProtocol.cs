namespace Paging.Protocol;

/// <summary>
/// The pager protocol: little-endian binary messages over a SOCK_SEQPACKET Unix socket (one message per packet), file
/// descriptors as SCM_RIGHTS. docs/PROTOCOL.md is its specification (every message, field, size and fd, and the
/// control-block layout); each message type in Messages.cs writes and reads itself, side by side.
/// </summary>
internal static class PagerProtocol
{
    /// <summary>Bumped on any change to a message or to the control block. 2: Hello carries the pager's tunables.
    /// 3: Hello carries the fill thread count, AddRegion the read timeout. 4: memory budgets (Hello, AddRegion), write
    /// tracking (AddRegion), Flush and Evict, control block PGGCTL02 (dirty and pinned bitmaps).</summary>
    public const uint Version = 6;

    /// <summary>u32 type, u32 version, u64 request id.</summary>
    public const int HeaderSize = 16;

    /// <summary>The largest message either side sends or accepts (a packet; the socket keeps message boundaries).</summary>
    public const int MaxMessage = 65536;

    /// <summary>Most fds one message carries (AddRegion: control block and memfd).</summary>
    public const int MaxFds = 4;

    /// <summary>Store settings per region: far above any real store, low enough that a corrupt count is caught.</summary>
    public const int MaxSettings = 1024;
}

/// <summary>Message types (u32 on the wire).</summary>
internal enum MessageType : uint
{
    Hello = 1,
    AddRegion = 2,
    RemoveRegion = 3,
    Arm = 4,
    Prefetch = 5,
    CancelPrefetch = 6,
    Discard = 7,
    Flush = 8,
    Evict = 9,
    Reply = 100,
}

/// <summary>What a pager is started as (u32 on the wire).</summary>
internal enum PagerRole : uint
{
    /// <summary>Reads and serves faults.</summary>
    Active = 0,

    /// <summary>Holds every region and takes over when the active pager it watches exits.</summary>
    Standby = 1,
}
