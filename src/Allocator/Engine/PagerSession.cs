using Microsoft.Extensions.Logging;
using Paging.Interop;
using Paging.Kernel;
using Paging.Logging;
using Paging.Protocol;
using Paging.Stores;

namespace Paging.Engine;

/// <summary>
/// One pager's control loop: receives the uffd and the regions from the application, builds each region's store, and
/// serves faults with its <see cref="FaultEngine"/>. A standby does the same but reads no faults until the active
/// pager it watches (a pidfd) exits. Every request gets a Reply; a malformed one gets an error Reply and changes
/// nothing. It exits when the application exits or closes the socket: a pager never outlives its application.
/// </summary>
internal sealed unsafe class PagerSession(PagerChannel channel, int appPid, FileDescriptor appPidfd, PageStoreRegistry registry,
    ILogger logger, Action<LogLevel>? setLogLevel) : IDisposable
{
    private readonly byte[] _buffer = new byte[PagerProtocol.MaxMessage];
    private readonly byte[] _reply = new byte[PagerProtocol.MaxMessage];
    private Userfaultfd? _uffd;
    private FaultEngine? _faults;
    private FileDescriptor? _activePidfd;

    public int Run()
    {
        Span<int> fds = stackalloc int[PagerProtocol.MaxFds];
        var pfd = stackalloc Libc.PollFd[3];
        while (true)
        {
            pfd[0] = new Libc.PollFd { Fd = channel.Socket.Fd, Events = Libc.POLLIN };
            pfd[1] = new Libc.PollFd { Fd = appPidfd.Fd, Events = Libc.POLLIN };
            pfd[2] = new Libc.PollFd { Fd = _activePidfd?.Fd ?? -1, Events = Libc.POLLIN };
            int n = Libc.Poll(pfd, 3, -1);
            if (n < 0)
            {
                if (Libc.LastErrno == Errno.EINTR)
                {
                    continue;
                }
                throw Libc.Error("poll in the pager's control loop");
            }
            if (pfd[1].Revents != 0)
            {
                Log.PagerExits(logger, $"application {appPid} exited");
                return 0;
            }
            if (pfd[0].Revents != 0)
            {
                // Messages (and an orderly close) before a promotion: at shutdown the application closes the standby's
                // socket first, and a standby that sees the close must exit, not take over.
                int length = channel.Receive(_buffer, fds, out int fdCount, 0);
                if (length == 0)
                {
                    Log.PagerExits(logger, "the application closed the pager socket");
                    return 0;
                }
                if (length > 0)
                {
                    Handle(_buffer.AsSpan(0, length), fds[..fdCount]);
                }
                continue;
            }
            if (pfd[2].Revents != 0)
            {
                Log.Promoting(logger);
                _activePidfd!.Dispose();
                _activePidfd = null;
                _faults?.Promote();
            }
        }
    }

    /// <summary>Applies one request and replies. Every failure, including a malformed message, is an error reply.</summary>
    internal void Handle(ReadOnlySpan<byte> message, ReadOnlySpan<int> fds)
    {
        var owned = new List<FileDescriptor>(fds.Length);
        foreach (int fd in fds)
        {
            owned.Add(new FileDescriptor(fd));
        }
        ulong request = 0;
        uint type = 0;
        try
        {
            var reader = new ProtocolReader(message);
            request = reader.RequestId;
            type = (uint)reader.Type;
            switch (reader.Type)
            {
                case MessageType.Hello:
                    Hello(HelloMessage.Read(ref reader), owned);
                    break;
                case MessageType.AddRegion:
                    AddRegion(AddRegionMessage.Read(ref reader), owned);
                    break;
                case MessageType.RemoveRegion:
                    Faults.Remove(RemoveRegionMessage.Read(ref reader).Id);
                    break;
                case MessageType.Prefetch:
                    {
                        var m = PrefetchMessage.Read(ref reader);
                        Faults.Prefetch(m.Id, m.First, m.End);
                        break;
                    }
                case MessageType.CancelPrefetch:
                    Faults.CancelPrefetch(CancelPrefetchMessage.Read(ref reader).Id);
                    break;
                case MessageType.Discard:
                    {
                        var m = DiscardMessage.Read(ref reader);
                        Faults.Discard(m.Id, m.First, m.End);
                        break;
                    }
                case MessageType.Flush:
                    Faults.Flush(FlushMessage.Read(ref reader).Id);
                    break;
                case MessageType.Evict:
                    {
                        var m = EvictMessage.Read(ref reader);
                        Faults.Evict(m.Id, m.First, m.End);
                        break;
                    }
                case MessageType.Arm:
                    _ = ArmMessage.Read(ref reader);
                    if (_activePidfd is not null)
                    {
                        throw new PagerException("Arm sent twice");
                    }
                    _activePidfd = Take(owned, 0, "the active pager's pidfd");
                    break;
                default:
                    throw new PagerException($"unknown pager message type {(uint)reader.Type}");
            }
            Reply(request, 0, "");
        }
#pragma warning disable CA1031 // Any failure of one request is that request's error reply; the pager serves on.
        catch (Exception e)
#pragma warning restore CA1031
        {
            Log.RequestFailed(logger, request, type, e.Message);
            Reply(request, e is PagingSystemException s ? (int)s.Errno : -1, e.Message);
        }
        finally
        {
            foreach (var fd in owned)
            {
                fd.Dispose();
            }
        }
    }

    private FaultEngine Faults => _faults ?? throw new PagerException("the pager got a request before Hello");

    private static FileDescriptor Take(List<FileDescriptor> owned, int index, string what)
    {
        if (index >= owned.Count)
        {
            throw new PagerException($"the message did not carry {what}");
        }
        var fd = owned[index];
        owned[index] = new FileDescriptor(); // ownership moves to the caller
        return fd;
    }

    private void Hello(HelloMessage hello, List<FileDescriptor> owned)
    {
        if (_faults is not null)
        {
            throw new PagerException("Hello sent twice");
        }
        _uffd = new Userfaultfd(Take(owned, 0, "the userfaultfd"), hello.Features);
        setLogLevel?.Invoke((LogLevel)hello.LogLevel);
        _faults = new FaultEngine(_uffd, hello.SpinNanoseconds, hello.FillThreads, hello.Role == PagerRole.Active, logger,
            memoryBudget: hello.MemoryBudget, applicationPid: appPid);
        Log.Serving(logger, Environment.ProcessId, appPid, hello.Role.ToString());
    }

    private void AddRegion(AddRegionMessage m, List<FileDescriptor> owned)
    {
        var faults = Faults;
        using var ctlFd = Take(owned, 0, "the region's control block");
        var control = RegionControlBlock.Attach(ctlFd, m.Pages);
        Mapping? staging = null;
        IPageStore? store = null;
        FileDescriptor? memfd = null;
        try
        {
            if (m.Arena != ArenaKind.Anonymous)
            {
                memfd = Take(owned, 1, "the region's memfd");
                staging = Mapping.Map((long)m.Length, Protection.ReadWrite, MapFlags.Shared | MapFlags.NoReserve, memfd, 0, "mmap of the staging mapping");
            }
            store = registry.Create(new PageStoreContext(m.Store, (long)m.Length, m.PageSize));
            faults.Add(new ServedRegion(m.Id, m.Arena, m.Address, m.Length, m.PageSize, control, staging, store, m.Store.Kind, m.Policy, memfd, m.ReadTimeout,
                m.MemoryBudget, m.TrackWrites, m.ShadowAddress, m.CallerFills));
            Log.RegionAdded(logger, m.Id, m.Arena, m.Length, m.Address, m.Store.ToString());
        }
        catch
        {
            store?.Dispose();
            staging?.Dispose();
            memfd?.Dispose();
            control.Dispose();
            throw;
        }
    }

    private void Reply(ulong request, int status, string message)
    {
        try
        {
            channel.Send(new ReplyMessage(status, message).Write(_reply, request), []);
        }
        catch (PagingSystemException e)
        {
            Log.ReplyFailed(logger, e.Message);
        }
    }

    public void Dispose()
    {
        _faults?.Dispose();
        _uffd?.Dispose();
        appPidfd.Dispose();
        _activePidfd?.Dispose();
        channel.Dispose();
    }
}
